//! `ualign invite`: single-participant invitation codes. Each code admits one pseudonym,
//! made with it; the database keeps only the code's SHA-256, so the file written here (or
//! the standard output) is the only copy of the codes. The file is made new (never
//! overwritten), readable by its owner only, and in place before the database commits.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::values;
use ualign_core::study;

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// How many codes, 1 to 100000
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<usize, 1, 100_000>)]
    count: usize,
    /// CSV file to create (`code,participant`); without it the codes go to standard output
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Creates `path` for the codes: new, owner-only.
fn create_new(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| {
        format!("cannot create {} (it must not exist yet: invitation codes are never overwritten)", path.display())
    })
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (study, mut store, _) = self.target.open()?;
        let codes: Vec<(String, String)> =
            (0..self.count).map(|_| (study::new_invitation_code(), study::new_pseudonym())).collect();
        let mut csv = String::from("code,participant\n");
        for (code, p) in &codes {
            csv.push_str(&format!("{code},{p}\n"));
        }
        let hashed: Vec<(String, String)> = codes.iter().map(|(c, p)| (study::invitation_hash(c), p.clone())).collect();
        match &self.out {
            Some(path) => {
                if path.exists() {
                    anyhow::bail!(
                        "{} exists already: it must not exist yet (invitation codes are never overwritten)",
                        path.display()
                    );
                }
                // The file first: a code the database admits must never be lost.
                let partial = path.with_extension("partial");
                let mut f = create_new(&partial)?;
                f.write_all(csv.as_bytes())
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", partial.display()))?;
                if let Err(e) = store.add_invitations(&hashed) {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e.into());
                }
                // A link never replaces a file that appeared meanwhile.
                std::fs::hard_link(&partial, path).with_context(|| {
                    format!("the codes are stored; they are in {} (not moved to {})", partial.display(), path.display())
                })?;
                let _ = std::fs::remove_file(&partial);
                let (made, used) = store.invitation_counts()?;
                eprintln!(
                    "{} invitation codes for study `{}` in {} (readable by you only; the database keeps only their hashes). {made} made in all, {used} used.",
                    self.count,
                    study.name,
                    path.display()
                );
            }
            None => {
                store.add_invitations(&hashed)?;
                print!("{csv}");
            }
        }
        Ok(())
    }
}

//! `ualign invite`: single-participant invitation codes. Each code admits one pseudonym,
//! made with it; the database keeps only the code's SHA-256, so the file written here (or
//! the standard output) is the only copy of the codes. The file is made new (never
//! overwritten), readable by its owner only, and in place before the database commits.
//! `--participant ID` makes a new return code for one participant already in the study
//! (who lost theirs): their earlier code stops admitting them.

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
    #[arg(long, allow_negative_numbers = true, value_parser = values::whole::<usize, 1, 100_000>, required_unless_present = "participant", conflicts_with = "participant")]
    count: Option<usize>,
    /// A new return code for this participant of the study, replacing their earlier code
    /// or invitation (for one who lost it: make sure it is them first)
    #[arg(long, value_name = "ID")]
    participant: Option<String>,
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
        let codes: Vec<(String, String)> = match &self.participant {
            Some(p) => vec![(study::new_invitation_code(), p.clone())],
            None => {
                (0..self.count.unwrap_or(1)).map(|_| (study::new_invitation_code(), study::new_pseudonym())).collect()
            }
        };
        let mut csv = String::from("code,participant\n");
        for (code, p) in &codes {
            csv.push_str(&format!("{code},{p}\n"));
        }
        let hashed: Vec<(String, String)> = codes.iter().map(|(c, p)| (study::invitation_hash(c), p.clone())).collect();
        let db = store.path().to_path_buf();
        let mut commit = || -> anyhow::Result<()> {
            match &self.participant {
                Some(p) => {
                    if !store.replace_return_code(p, &hashed[0].0)? {
                        anyhow::bail!(
                            "study `{}` has no participant `{p}` in {}: check the ID (as in `ualign export`), or the --db",
                            study.name,
                            db.display()
                        );
                    }
                    Ok(())
                }
                None => Ok(store.add_invitations(&hashed)?),
            }
        };
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
                if let Err(e) = commit() {
                    let _ = std::fs::remove_file(&partial);
                    return Err(e);
                }
                // A link never replaces a file that appeared meanwhile.
                std::fs::hard_link(&partial, path).with_context(|| {
                    format!("the codes are stored; they are in {} (not moved to {})", partial.display(), path.display())
                })?;
                let _ = std::fs::remove_file(&partial);
                let (made, used) = store.invitation_counts()?;
                match &self.participant {
                    Some(p) => eprintln!(
                        "a new return code for {p} in {} (readable by you only); their earlier code no longer admits them.",
                        path.display()
                    ),
                    None => eprintln!(
                        "{} invitation codes for study `{}` in {} (readable by you only; the database keeps only their hashes). {made} made in all, {used} used.",
                        codes.len(),
                        study.name,
                        path.display()
                    ),
                }
            }
            None => {
                commit()?;
                print!("{csv}");
            }
        }
        Ok(())
    }
}

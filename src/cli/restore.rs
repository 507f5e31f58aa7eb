//! `ualign restore`: writes the study text stored in a database back to the study file,
//! whatever the file holds now (edited, broken, renamed inside, or gone). The edited file
//! is kept beside it, never overwritten, so no edit is lost either.

use std::path::{Path, PathBuf};

use anyhow::Context;

use ualign_core::store::{Store, StoreError};
use ualign_core::study;

#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// The study file to write the stored text to
    study: PathBuf,
    /// Database file (default: db/<name>.sqlite, with the name read from the study file)
    #[arg(long)]
    db: Option<PathBuf>,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let db = match &self.db {
            Some(db) => db.clone(),
            None => default_db(&self.study)?,
        };
        let store =
            Store::open_existing(&db).with_context(|| format!("reading the stored study of {}", db.display()))?;
        let stored = store.stored_study()?.ok_or_else(|| StoreError::NoStudy { path: db.clone() })?;
        let now = std::fs::read(&self.study).ok();
        if now.as_deref() == Some(stored.source.as_bytes()) {
            println!(
                "{} already holds the study text stored in {}; nothing written",
                self.study.display(),
                db.display()
            );
        } else {
            let kept = match &now {
                Some(bytes) => Some(keep_edited(&self.study, bytes)?),
                None => None,
            };
            write_replacing(&self.study, stored.source.as_bytes())?;
            println!(
                "wrote the study text stored in {} (recorded {}) to {}{}",
                db.display(),
                stored.created_at,
                self.study.display(),
                kept.map(|k| format!("; your edited version is kept as {}", k.display())).unwrap_or_default()
            );
        }
        // A prompts file is not part of the stored text: say if it, too, was changed.
        let (restored, _) = study::load(&self.study)
            .with_context(|| format!("{} holds the stored text but does not load as it did", self.study.display()))?;
        let changes = store.study_changes(&restored)?;
        if !changes.is_empty() {
            anyhow::bail!(
                "{} now holds the stored text, but the prompts it names differ from the stored prompts:\n  {}\n  restore the prompts file from a backup or version control",
                self.study.display(),
                changes.join("\n  ")
            );
        }
        Ok(())
    }
}

/// The database the study file names: its `name`, read leniently, since an edit may have
/// broken the rest of the file.
fn default_db(study_path: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(study_path)
        .with_context(|| format!("cannot read {}; pass the database with --db PATH", study_path.display()))?;
    let name = study::declared_name(&text).with_context(|| {
        format!("{} has no readable `name`, so its database is unknown; pass it with --db PATH", study_path.display())
    })?;
    Ok(study::default_db_path(study_path, &name))
}

/// Copies the edited file to `FILE.edited` (or `FILE.edited.2`, …: never over an earlier one).
fn keep_edited(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    for n in 1..1000 {
        let suffix = if n == 1 { ".edited".to_string() } else { format!(".edited.{n}") };
        let mut name = path.as_os_str().to_owned();
        name.push(&suffix);
        let kept = PathBuf::from(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&kept) {
            Ok(mut f) => {
                f.write_all(bytes)
                    .and_then(|()| f.sync_all())
                    .with_context(|| format!("writing {}", kept.display()))?;
                return Ok(kept);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot keep the edited file as {}", kept.display())),
        }
    }
    anyhow::bail!("{} has 999 kept edited versions beside it; move some away", path.display())
}

/// Writes a whole file or nothing: a sibling temporary file renamed over the target.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".restoring-{}", std::process::id()));
    let tmp = PathBuf::from(name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

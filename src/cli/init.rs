use std::path::PathBuf;

use crate::store::Opened;

#[derive(clap::Args)]
pub struct Cmd {
    /// The study file (TOML)
    study: PathBuf,
    /// Database file (default: db/<study name>.sqlite)
    #[arg(long)]
    db: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.study)?;
        let (store, opened) = super::open_store(&study, self.db.as_ref())?;
        let (participants, trials, answers) = store.counts()?;
        match opened {
            Opened::Created => println!("created {} for study `{}`", store.path().display(), study.name),
            Opened::Existing => println!(
                "opened {} for study `{}`: {participants} participants, {trials} trials, {answers} answers",
                store.path().display(),
                study.name
            ),
        }
        Ok(())
    }
}

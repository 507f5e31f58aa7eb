//! `ualign init`: creates (or opens) the study's database and records the study, or says
//! what is already in it.

use ualign_core::store::Opened;

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let (study, store, opened) = self.target.create()?;
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

//! `ualign check`: is a study's database sound? SQLite's full integrity check (it reads
//! every page), its foreign-key check, and the counts of what is stored. Opening a
//! database for work only reads its header and schema, so this is the command to run
//! after a crash, a full disk or a copy between machines (stats, plot, export and the
//! dashboard run the integrity check too).

use anyhow::Context;

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // The database is checked whatever the study file now says: it is what a crash,
        // a full disk or a bad copy may have damaged.
        let (store, integrity) = super::open_stored_for_reading(&self.target)?;
        let path = store.path().display().to_string();
        integrity.finish().with_context(|| format!("checking {path}"))?;
        let name = store.stored_study()?.map(|s| s.name).unwrap_or_default();
        let problems = store.foreign_key_problems()?;
        if !problems.is_empty() {
            anyhow::bail!(
                "database {path} passed SQLite's integrity check but {} row(s) break its references:\n  {}\n  the file was edited outside ualign; restore it from a backup",
                problems.len(),
                problems.join("\n  ")
            );
        }
        let (participants, trials, answers) = store.counts()?;
        println!(
            "{path}: sound (SQLite's integrity and foreign-key checks pass); study `{name}`: {participants} participants, {trials} trials, {answers} answers"
        );
        Ok(())
    }
}

//! `ualign export`: the study's tables as CSV or JSONL, read from one snapshot, after
//! SQLite's full integrity check has passed.

use std::path::PathBuf;

use ualign_core::export::{Format, read_tables, write_tables};

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    #[arg(long, value_enum, default_value = "csv")]
    format: FormatArg,
    /// Folder to write candidates, trials, participants and study.toml into
    #[arg(long)]
    out: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Csv,
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Csv => Format::Csv,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        // Only what is stored is written, so a study file edited since is no obstacle.
        let (store, integrity) = super::open_stored_for_reading(&self.target)?;
        let tables = read_tables(&store);
        // Nothing is written from a damaged file, and the damage is what is reported.
        integrity.finish()?;
        let tables = tables?;
        for (file, rows) in write_tables(&tables, self.format.into(), &self.out)? {
            println!("wrote {} ({rows} rows)", file.display());
        }
        Ok(())
    }
}

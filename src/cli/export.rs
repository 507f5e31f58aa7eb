use std::path::PathBuf;

use anyhow::Context;

use crate::exchange::export::{Format, export};
use crate::store::Store;

#[derive(clap::Args)]
pub struct Cmd {
    /// The study file (TOML)
    study: PathBuf,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Folder to write candidates, trials, participants and study.toml into
    #[arg(long)]
    out: PathBuf,
    /// Database file (default: db/<study name>.sqlite)
    #[arg(long)]
    db: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.study)?;
        let path = super::db_path(&study, self.db.as_ref());
        let mut store = Store::open_existing(&path)?;
        store.record_study(&study).context("checking the database against the study file")?;
        for (file, rows) in export(&store, self.format, &self.out)? {
            println!("wrote {} ({rows} rows)", file.display());
        }
        Ok(())
    }
}

use std::path::PathBuf;

use crate::exchange::export::{Format, export};

#[derive(clap::Args)]
pub struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    #[arg(long, value_enum, default_value = "csv")]
    format: Format,
    /// Folder to write candidates, trials, participants and study.toml into
    #[arg(long)]
    out: PathBuf,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (_, store) = self.target.open_existing()?;
        for (file, rows) in export(&store, self.format, &self.out)? {
            println!("wrote {} ({rows} rows)", file.display());
        }
        Ok(())
    }
}

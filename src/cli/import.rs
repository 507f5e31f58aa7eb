//! `ualign import`: fills an imported policy's pools from a JSONL file. The file is read
//! and checked before the database is opened, so a bad file leaves nothing behind.

use std::path::PathBuf;

use ualign_core::pools::import::{read_candidates, store_candidates};

#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// The imported policy whose pools are filled
    #[arg(long)]
    policy: String,
    /// JSONL file: {"prompt_id": ..., "text": ..., "sample_index"?: n, ...metadata} a line
    #[arg(long)]
    candidates: PathBuf,
    /// Replace the policy's candidates with this file's (refused once a participant has seen one)
    #[arg(long)]
    replace: bool,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.target.study)?;
        let candidates = read_candidates(&study, &self.policy, &self.candidates)?;
        let (mut store, _) = super::open_store(&study, self.target.db.as_ref())?;
        let report = store_candidates(&mut store, &study, &self.candidates, &candidates, self.replace)?;
        let replaced = if report.replaced > 0 {
            format!(", replacing its {} earlier candidates", report.replaced)
        } else {
            String::new()
        };
        println!(
            "imported {} candidates for {} prompts into policy `{}`{replaced} ({})",
            report.imported,
            report.prompts,
            self.policy,
            store.path().display()
        );
        if !report.short_pools.is_empty() {
            eprintln!("warning: {} prompts have fewer candidates than pool_size:", report.short_pools.len());
            for (p, have, want) in report.short_pools.iter().take(10) {
                eprintln!("  {p}: {have} of {want}");
            }
            eprintln!(
                "  trials that draw a missing sample cannot be shown; import a complete file with --replace before running participants"
            );
        }
        Ok(())
    }
}

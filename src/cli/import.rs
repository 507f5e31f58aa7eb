use std::path::PathBuf;

use crate::exchange::import::import_candidates;

#[derive(clap::Args)]
pub struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// The imported policy whose pools are filled
    #[arg(long)]
    policy: String,
    /// JSONL file: {"prompt_id": ..., "text": ..., "sample_index"?: n, ...metadata} a line
    #[arg(long)]
    candidates: PathBuf,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (study, mut store, _) = self.target.open()?;
        let report = import_candidates(&mut store, &study, &self.policy, &self.candidates)?;
        println!(
            "imported {} candidates for {} prompts into policy `{}` ({})",
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
                "  trials that draw a missing sample cannot be shown; import the rest before running participants"
            );
        }
        Ok(())
    }
}

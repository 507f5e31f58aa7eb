//! `ualign validate`: checks a study file and lists every problem with its place, or
//! summarises the study it describes.

use std::path::PathBuf;
use std::process::ExitCode;

use ualign_core::study::{self, Design, PolicySource, StudyError};

#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// The study file (TOML)
    study: PathBuf,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let (study, warnings) = match study::load(&self.study) {
            Ok(x) => x,
            Err(StudyError::Invalid(diags)) => {
                eprintln!("{}", StudyError::Invalid(diags));
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        };
        for w in &warnings {
            eprintln!("{w}");
        }
        let models = study.policies.iter().filter(|p| matches!(p.source, PolicySource::Model { .. })).count();
        println!("{}: valid study `{}` ({})", self.study.display(), study.name, study.title);
        println!("  prompts:   {}", study.prompts.len());
        println!(
            "  policies:  {} ({} model, {} imported)",
            study.policies.len(),
            models,
            study.policies.len() - models
        );
        for p in &study.policies {
            println!("    {:<16} pool {} per prompt", p.name, p.pool_size);
        }
        println!("  blocks:    {}", study.blocks.len());
        for b in &study.blocks {
            let what = match &b.design {
                Design::BestOfK { policy_a, policy_b, k } => format!("best_of_k: {policy_a} (k = {k:?}) vs {policy_b}"),
                Design::Rank { policies, m, mode } => {
                    format!("rank ({}): {m} of {}", mode.as_str(), policies.join(", "))
                }
            };
            println!(
                "    {:<16} {what}; {} trials, {} attention checks, {} repeats, {} prompts",
                b.name,
                b.trials,
                b.attention_checks,
                b.repeat_count(),
                b.prompts.len()
            );
        }
        println!("  trials per participant: {}", study.trials_per_participant());
        println!("  database:  {}", study.default_db_path().display());
        Ok(ExitCode::SUCCESS)
    }
}

//! `ualign validate`: checks a study file and lists every problem with its place, or
//! summarises the study it describes.

use std::path::PathBuf;
use std::process::ExitCode;

use ualign_core::study::{self, Design, PolicySource, StudyError};

#[derive(clap::Args)]
pub(crate) struct Cmd {
    /// The study file (TOML)
    study: PathBuf,
    /// Also check the file against this database (default: the study's own database, when it exists)
    #[arg(long)]
    db: Option<PathBuf>,
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
        let count = |f: fn(&PolicySource) -> bool| study.policies.iter().filter(|p| f(&p.source)).count();
        let models = count(|s| matches!(s, PolicySource::Model { .. }));
        let servers = count(|s| matches!(s, PolicySource::Server { .. }));
        println!("{}: valid study `{}` ({})", self.study.display(), study.name, study.title);
        println!("  prompts:   {}", study.prompts.len());
        println!(
            "  policies:  {} ({} model, {} server, {} imported)",
            study.policies.len(),
            models,
            servers,
            study.policies.len() - models - servers
        );
        for p in &study.policies {
            let from = match &p.source {
                PolicySource::Server { server, .. } => format!(
                    "; server {} model `{}` ({} endpoint, {} at once{})",
                    server.base_url,
                    server.model,
                    server.endpoint.as_str(),
                    server.concurrency,
                    server.api_key_env.as_ref().map(|v| format!(", key from ${v}")).unwrap_or_default()
                ),
                _ => String::new(),
            };
            println!("    {:<16} pool {} per prompt{from}", p.name, p.pool_size);
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
        self.against_database(&study)
    }

    /// Whether the study's database still holds this study: a file edited in meaning
    /// after `init` is valid as a study, but every command on its database refuses it.
    fn against_database(&self, study: &study::Study) -> anyhow::Result<ExitCode> {
        let path = self.db.clone().unwrap_or_else(|| study.default_db_path());
        if self.db.is_none() && !path.exists() {
            println!("  database:  {} (not made yet: `ualign init {}`)", path.display(), self.study.display());
            return Ok(ExitCode::SUCCESS);
        }
        let store = ualign_core::store::Store::open_existing(&path)?;
        let changes = store.study_changes(study)?;
        if !changes.is_empty() {
            println!("  database:  {} holds another version of this study", path.display());
            eprintln!(
                "{} has changed in meaning since {} was made from it:\n  {}\n  every command on that database refuses this file: `ualign restore {}{}` puts the stored version back (your edit is kept beside it),\n  or give the changed study a new `name`, or a new database with `ualign init {} --db NEW.sqlite`",
                self.study.display(),
                path.display(),
                changes.join("\n  "),
                self.study.display(),
                self.db.as_ref().map(|d| format!(" --db {}", d.display())).unwrap_or_default(),
                self.study.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        let note = if store.study_text_differs(study)? {
            " (the file differs from the stored text only in comments or layout)"
        } else {
            ""
        };
        println!("  database:  {} holds this study{note}", path.display());
        Ok(ExitCode::SUCCESS)
    }
}

//! `ualign simulate`: synthetic participants from a named population, through the real
//! scheduler, session and store.

use anyhow::Context;

use ualign_core::simulate::{Answering, Cohort, Population, simulate_answering};

/// Synthetic participants answering through the same scheduler and store as real ones.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// Synthetic participants to add (1 to 1000000)
    #[arg(long, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 1, 1_000_000>)]
    participants: usize,
    /// cyclic, condorcet:P, pl:S, mallows:PHI:C or plmix:C:S[:W1,W2,…]
    #[arg(long)]
    population: Population,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::values::whole::<u64, 0, { u64::MAX }>)]
    seed: u64,
    /// Number the participants from I (ids sim-SEED-I…): fresh participants of the same population as an earlier run of this seed
    #[arg(long, value_name = "I", default_value_t = 0, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 0, 1_000_000_000>)]
    first: usize,
    /// β: a shown text's log-worth gains β·(length/mean length − 1), so participants favour longer (β > 0) or shorter texts (pl and plmix populations)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::values::finite)]
    length_bias: f64,
    /// ν ≥ 0: participants answer "no preference" on pick trials with Davidson's probability ν·e^(mean worth) / (Σ e^worth + ν·e^(mean worth)) (pl and plmix populations)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::values::non_negative)]
    no_preference: f64,
    /// Write each answer's commit time (ms, waiting for other writers included) to FILE, one a line: for load tests
    #[arg(long, value_name = "FILE")]
    commit_times: Option<std::path::PathBuf>,
    /// Write the truth behind the answers to FILE (JSONL): per participant and prompt, their order over the prompt's distinct responses
    #[arg(long, value_name = "FILE")]
    latent_out: Option<std::path::PathBuf>,
    #[command(flatten)]
    engine: super::EngineArgs,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.target.study)?;
        let answering = Answering { length_bias: self.length_bias, no_preference: self.no_preference };
        // Before the database is opened (and perhaps made): nothing to undo.
        answering.check(&study, &self.population)?;
        if self.first > 0 && self.latent_out.is_some() {
            anyhow::bail!(
                "--latent-out writes the truth of participants numbered from 0; it cannot be given with --first"
            );
        }
        let cancel = super::cancel_on_ctrl_c();
        let mut store = super::generate::open_and_fill(&study, self.target.db.as_ref(), self.engine, Some(&cancel))?;
        let cohort =
            Cohort { population: &self.population, participants: self.participants, first: self.first, answering };
        let done = simulate_answering(&study, &mut store, &cohort, self.seed)?;
        if let Some(path) = &self.commit_times {
            let lines: String = done.commit_ms.iter().map(|ms| format!("{ms:.4}\n")).collect();
            std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &self.latent_out {
            let orders =
                ualign_core::simulate::latent_orders(&study, &store, self.participants, &self.population, self.seed)?;
            let mut lines = String::new();
            for o in &orders {
                lines.push_str(&serde_json::to_string(o)?);
                lines.push('\n');
            }
            std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
            println!("{} latent orders written to {}", orders.len(), path.display());
        }
        let ms = |q| done.commit_quantile(q).map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "{} simulated participants gave {} answers ({}); answer commits p50 {} ms, p99 {} ms",
            self.participants,
            done.answers,
            store.path().display(),
            ms(0.5),
            ms(0.99)
        );
        Ok(())
    }
}

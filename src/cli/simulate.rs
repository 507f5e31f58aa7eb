use crate::simulate::{Population, simulate};

/// Synthetic participants answering through the same scheduler and store as real ones.
#[derive(clap::Args)]
pub struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// Synthetic participants to add (1 to 1000000)
    #[arg(long, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 1, 1_000_000>)]
    participants: usize,
    /// cyclic, condorcet:P, pl:S or mallows:PHI:C
    #[arg(long)]
    population: Population,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::values::whole::<u64, 0, { u64::MAX }>)]
    seed: u64,
    #[command(flatten)]
    engine: super::EngineArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let study = super::load_study(&self.target.study)?;
        let cancel = super::cancel_on_ctrl_c();
        let mut store = super::generate::open_and_fill(&study, self.target.db.as_ref(), self.engine, Some(&cancel))?;
        let n = simulate(&study, &mut store, self.participants, &self.population, self.seed)?;
        println!("{} simulated participants gave {n} answers ({})", self.participants, store.path().display());
        Ok(())
    }
}

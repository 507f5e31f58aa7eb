use crate::simulate::{Population, simulate};

/// Synthetic participants answering through the same scheduler and store as real ones.
#[derive(clap::Args)]
pub struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    #[arg(long)]
    participants: usize,
    /// cyclic, condorcet:P, pl:S or mallows:PHI:C
    #[arg(long)]
    population: Population,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    engine: super::EngineArgs,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (study, mut store, _) = self.target.open()?;
        let cancel = super::cancel_on_ctrl_c();
        super::generate::fill(&study, &mut store, self.engine, Some(&cancel))?;
        let n = simulate(&study, &mut store, self.participants, &self.population, self.seed)?;
        println!("{} simulated participants gave {n} answers ({})", self.participants, store.path().display());
        Ok(())
    }
}

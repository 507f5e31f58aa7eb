//! `ualign power`: participants needed for a target on f(k), by simulation from an
//! assumed population or a pilot's fitted model.

use ualign_core::analysis::report::{Options, Report};
use ualign_core::simulate::power::{PowerOptions, PowerReport, Source, Target, power};
use ualign_core::simulate::{Answering, Population};

/// How many participants a study needs: for f(k) intervals of a chosen width, or to show
/// f(k) > 1/2 with a chosen power, at every k (simulated through the real schedule).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["population", "pilot"])))]
#[command(group(clap::ArgGroup::new("goal").required(true).args(["half_width", "exceed_half"])))]
pub(crate) struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// An assumed population, as `simulate` takes it (the pools come from --db)
    #[arg(long, value_parser = population)]
    population: Option<String>,
    /// A pilot's database: its answers' latent-class Plackett–Luce fit is the population, its pools the pools
    #[arg(long, value_name = "DB")]
    pilot: Option<std::path::PathBuf>,
    /// Target: every f(k) 95% interval at most ±H wide
    #[arg(long, value_name = "H", value_parser = half_width)]
    half_width: Option<f64>,
    /// Target: every f(k) 95% interval above 1/2 (A shown to beat B)
    #[arg(long)]
    exceed_half: bool,
    /// Share of simulated studies that must reach the target: the power (or assurance)
    #[arg(long, default_value_t = 0.8, value_parser = share)]
    power: f64,
    /// Synthetic participants in the bank the studies are drawn from (100 to 1000000)
    #[arg(long, default_value_t = 20_000, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 100, 1_000_000>)]
    bank: usize,
    /// Simulated studies per number of participants tried (50 to 100000)
    #[arg(long, default_value_t = 400, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 50, 100_000>)]
    studies: usize,
    /// The largest number of participants searched (20 to 10000000)
    #[arg(long, default_value_t = 100_000, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 20, 10_000_000>)]
    max_participants: usize,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = super::values::whole::<u64, 0, { u64::MAX }>)]
    seed: u64,
    /// As `simulate --length-bias`: the assumed participants favour longer texts (β)
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::values::finite)]
    length_bias: f64,
    /// As `simulate --no-preference`: Davidson's ν of the assumed participants
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true, value_parser = super::values::non_negative)]
    no_preference: f64,
    /// Machine-readable output
    #[arg(long)]
    json: bool,
}

fn population(s: &str) -> Result<String, String> {
    s.parse::<Population>().map(|_| s.to_string())
}

fn half_width(s: &str) -> Result<f64, String> {
    match super::values::finite(s)? {
        v if v > 0.0 && v < 0.5 => Ok(v),
        _ => Err(format!("`{s}`: give a half-width above 0 and below 0.5, e.g. 0.05")),
    }
}

fn share(s: &str) -> Result<f64, String> {
    match super::values::finite(s)? {
        v if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("`{s}`: give a share above 0 and below 1, e.g. 0.8")),
    }
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let target = match self.half_width {
            Some(h) => Target::HalfWidth(h),
            None => Target::ExceedHalf,
        };
        let opts = PowerOptions {
            target,
            assurance: self.power,
            bank: self.bank,
            studies: self.studies,
            max_participants: self.max_participants,
            seed: self.seed,
            answering: Answering { length_bias: self.length_bias, no_preference: self.no_preference },
        };
        let args = super::StudyArgs { study: self.target.study.clone(), db: self.pilot.clone().or(self.target.db) };
        let (study, store, integrity) = args.open_for_reading()?;
        let (source, name) = match (self.population, &self.pilot) {
            (Some(pop), _) => {
                let parsed = pop.parse::<Population>().map_err(anyhow::Error::msg)?;
                opts.answering.check(&study, &parsed)?;
                (Source::Population(parsed), format!("the assumed population {pop}"))
            }
            (None, Some(path)) => {
                if opts.answering != Answering::default() {
                    anyhow::bail!(
                        "--length-bias and --no-preference describe an assumed population: give them with --population, not --pilot"
                    );
                }
                // Only the fit is needed: no bootstrap of anything.
                let base = Options::for_study(&study);
                let model = ualign_core::analysis::model::ModelOptions { replicates: 0, ..base.model };
                let fast = Options { replicates: 1, worth_replicates: 0, orders_replicates: 0, model, ..base };
                let report = Report::compute(&study, &store, &fast)?;
                let Some(fit) = report.population_model else {
                    anyhow::bail!(
                        "the pilot {} has no answers to fit a population to: run the pilot first, or give --population",
                        path.display()
                    );
                };
                let name = format!(
                    "pilot {} ({} participants, {} classes, weights {}; its \"no preference\" answers are not modelled: the bank never ties)",
                    path.display(),
                    fit.participants,
                    fit.classes,
                    fit.weights.iter().map(|w| format!("{w:.2}")).collect::<Vec<_>>().join("/")
                );
                (Source::fitted(&fit, &store.all_candidates()?), name)
            }
            (None, None) => unreachable!("clap requires --population or --pilot"),
        };
        let report = power(&study, &store, &source, &name, &opts)?;
        integrity.finish()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report));
        }
        Ok(())
    }
}

fn render(r: &PowerReport) -> String {
    let goal = match r.target {
        Target::HalfWidth(h) => format!("every f(k) 95% interval within ±{h}"),
        Target::ExceedHalf => "every f(k) 95% interval above 1/2".to_string(),
    };
    let mut s = format!(
        "study {}: participants needed for {goal} in {:.0}% of {} simulated studies\nfrom {}; bank of {} synthetic participants\n{:<12} {:<12} {:>3} {:>7} {:>7} {:>7} {:>9} {:>12} {:>9}\n",
        r.study,
        100.0 * r.assurance,
        r.studies,
        r.source,
        r.bank,
        "policy A",
        "policy B",
        "k",
        "f(k)",
        "trials",
        "deff",
        "approx.",
        "participants",
        "reached"
    );
    let num = |v: Option<usize>| v.map_or("-".to_string(), |n| n.to_string());
    for row in &r.rows {
        s.push_str(&format!(
            "{:<12} {:<12} {:>3} {:>7.3} {:>7.2} {:>7.2} {:>9} {:>12} {:>9}\n",
            row.policy_a,
            row.policy_b,
            row.k,
            row.rate,
            row.trials_per_participant,
            row.design_effect,
            num(row.approximate),
            num(row.participants),
            row.achieved.map_or("-".to_string(), |a| format!("{:.0}%", 100.0 * a)),
        ));
        if let Some(note) = &row.note {
            s.push_str(&format!("  k = {}: {note}\n", row.k));
        }
    }
    s.push_str(&match (r.participants, r.achieved) {
        (Some(n), Some(a)) => {
            format!("{n} participants reach the target at every k at once, in {:.0}% of simulated studies\n", 100.0 * a)
        }
        _ => "no number of participants within the search reaches the target at every k (see the notes)\n".into(),
    });
    s.push_str("(trials: a participant's answered trials of the row; deff: the design effect, the variance of f(k) over that of as many independent trials; approx.: the normal approximation's N; participants: the smallest N, from 20, at which the share of simulated studies reaching the target is at least the power, each study judged by the normal approximation of stats's cluster interval)\n");
    s
}

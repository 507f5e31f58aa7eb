use serde_json::json;

use crate::analysis::fk::{self, FkRow};

/// Report what the answers so far say: empirical f(k) against k/(k+1).
#[derive(clap::Args)]
pub struct Cmd {
    #[command(flatten)]
    target: super::StudyArgs,
    /// Machine-readable output (schema in README.md)
    #[arg(long)]
    json: bool,
    /// Bootstrap replicates for the intervals
    #[arg(long, default_value_t = 2000)]
    replicates: usize,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (study, store) = self.target.open_existing()?;
        let rows = fk::compute(&fk::observations(&store)?, self.replicates, study.seed);
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "study": study.name, "convention": fk::CONVENTION, "fk": rows })
                )?
            );
        } else {
            print!("{}", render_fk(&rows));
        }
        Ok(())
    }
}

/// The f(k) table as text.
pub(crate) fn render_fk(rows: &[FkRow]) -> String {
    if rows.is_empty() {
        return "no answered best_of_k trials yet\n".into();
    }
    let mut s = format!(
        "empirical f(k): how often the favourite among k candidates of A and one of B was A's\n{:<12} {:<12} {:>3} {:>5} {:>5} {:>7}  {:<17} {:<17} {:>7}\n",
        "policy A", "policy B", "k", "n", "part.", "rate", "95% CI (cluster)", "95% CI (Wilson)", "k/(k+1)"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:<12} {:>3} {:>5} {:>5} {:>7.3}  [{:.3}, {:.3}]    [{:.3}, {:.3}]    {:>7.3}\n",
            r.policy_a,
            r.policy_b,
            r.k,
            r.n,
            r.participants,
            r.rate,
            r.ci_low,
            r.ci_high,
            r.wilson_low,
            r.wilson_high,
            r.bound
        ));
    }
    s.push_str(&format!("({})\n", fk::CONVENTION));
    s
}

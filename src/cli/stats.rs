use serde_json::json;

use crate::analysis::diversity::{self, Diversity};
use crate::analysis::fk::{self, FkRow};
use crate::analysis::quality::{self, Quality};

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
    /// Answers faster than this (ms) are flagged
    #[arg(long, default_value_t = 1500)]
    too_fast_ms: u64,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let (study, store) = self.target.open_existing()?;
        let rows = fk::compute(&fk::observations(&store)?, self.replicates, study.seed);
        let mut pools = Vec::new();
        for policy in &study.policies {
            for prompt in &study.prompts {
                let texts: Vec<String> = store
                    .stored_samples(&policy.name, &prompt.id)?
                    .into_iter()
                    .filter_map(|i| store.candidate(&policy.name, &prompt.id, i).ok().flatten().map(|c| c.text))
                    .collect();
                if !texts.is_empty() {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    pools.push(diversity::diversity(&policy.name, &prompt.id, &refs));
                }
            }
        }
        let checks = quality::quality(&store, self.too_fast_ms)?;
        let rankings = crate::analysis::ranking::participant_rankings(&store)?;
        if self.json {
            let out = json!({
                "study": study.name, "convention": fk::CONVENTION, "fk": rows,
                "rankings": rankings, "diversity": pools, "quality": checks,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            print!("{}", render_fk(&rows));
            println!("\nper-participant rankings: {} (participant, prompt) pairs; see --json", rankings.len());
            print!("{}", render_diversity(&pools));
            print!("{}", render_quality(&checks));
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

fn render_diversity(rows: &[Diversity]) -> String {
    let mut by_policy: std::collections::BTreeMap<&str, Vec<&Diversity>> = Default::default();
    for r in rows {
        by_policy.entry(r.policy.as_str()).or_default().push(r);
    }
    let mut s = format!(
        "\ndiversity of the pools (mean over prompts)\n{:<12} {:>7} {:>8} {:>10} {:>10} {:>10}\n",
        "policy", "prompts", "unique", "distinct-1", "distinct-2", "edit dist."
    );
    for (p, rs) in by_policy {
        let m = |f: fn(&Diversity) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64;
        s.push_str(&format!(
            "{:<12} {:>7} {:>8.3} {:>10.3} {:>10.3} {:>10.3}\n",
            p,
            rs.len(),
            m(|r| r.unique_text_ratio),
            m(|r| r.distinct_1),
            m(|r| r.distinct_2),
            m(|r| r.mean_pairwise_edit_distance)
        ));
    }
    s
}

fn render_quality(q: &Quality) -> String {
    let mut s = String::from("\ndata quality\n");
    for b in &q.position_bias {
        s.push_str(&format!(
            "  choices by displayed slot ({} slots, {} trials): {:?}; chi-square {:.2}, p = {:.3}\n",
            b.slots, b.trials, b.counts, b.chi_square, b.p_value
        ));
    }
    if let Some(m) = q.median_response_ms {
        s.push_str(&format!("  median response time: {m} ms\n"));
    }
    s.push_str(&format!("  participants with answers under {} ms: {}\n", q.too_fast_ms, q.too_fast.len()));
    let failed = q.attention.iter().filter(|(_, f, _)| *f > 0).count();
    s.push_str(&format!("  participants failing an attention check: {failed} of {}\n", q.attention.len()));
    let (same, n) = q.repeat_agreement;
    if n > 0 {
        s.push_str(&format!(
            "  repeated trials answered the same: {same} of {n} ({:.0}%)\n",
            100.0 * same as f64 / n as f64
        ));
    }
    s
}

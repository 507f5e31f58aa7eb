//! The counterfactual analysis over each prompt's pool: which single-output policy over the
//! pool certifies what win rate when k samples of it face any single response, computed
//! exactly from the participants' own rankings (no Monte Carlo).
//!
//! The pool of a prompt is every stored candidate of the policies that `rank` blocks draw
//! from; identical texts are one response. The game needs each participant's preference
//! over every response, so a participant counts for a prompt only when their rank trials
//! covered all of its responses (an `order` block with `m` equal to the pool size does
//! this in one trial; several trials combine through a Plackett–Luce fit). Participants
//! whose trials saw only part of the pool are left out and counted.
//!
//! Policies: `base` (the pool's empirical distribution), `greedy` (a point mass on the
//! text of a temperature-0 policy, when one is in the pool), `nlhf` (the maximal lottery of
//! the participants' pairwise majorities, by LP) and `ne` (a symmetric equilibrium of the
//! (k+1)-player game: `equilibria::ne_k_from`, Newton on the support from a warm start,
//! optimistic Hedge when the support guess fails). For each: the certified f(k) = 1 − max_y u(y; x)
//! and the gap max_y u(y; x) − 1/(k+1) (zero exactly at an equilibrium).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::equilibria::{self, Order};
use super::ranking::{RankObservation, Ranking};
use crate::store::Candidate;

/// NE_k is solved until the equal-share gap is below this.
pub(crate) const NE_TOLERANCE: f64 = 1e-6;
/// Hedge steps allowed per (prompt, k); the gap reached is reported either way.
pub(crate) const NE_MAX_ITER: usize = 20_000;
/// Hedge steps allowed per (prompt, k) on a bootstrap resample, started from the full
/// sample's equilibrium (Newton on the support nearly always finishes first).
const RESAMPLE_MAX_ITER: usize = 2_000;

/// A candidate of a prompt's pool.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PoolCandidate {
    pub(crate) id: i64,
    pub(crate) policy: String,
    pub(crate) text: String,
}

/// Mass on one response: `candidate` is its smallest candidate id, `copies` how many pool
/// candidates carry the same text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mass {
    pub candidate: i64,
    pub copies: usize,
    pub p: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EquilibriumRow {
    pub prompt: String,
    pub k: u32,
    /// `base`, `greedy`, `nlhf` or `ne`.
    pub policy: &'static str,
    /// One entry per response of the pool, in candidate-id order.
    pub distribution: Vec<Mass>,
    pub certified_win_rate: f64,
    pub gap: f64,
    pub bound: f64,
    /// Participants whose rankings covered the whole pool (`orders`), or whose choices the
    /// model was fitted to (`pl_mixture`).
    pub participants: usize,
    /// `orders`: exact, over the participants' own rankings of the whole pool;
    /// `pl_mixture`: over the population the latent-class Plackett–Luce model describes.
    pub method: &'static str,
    /// A 95% interval for the rate this policy certifies on the population the
    /// participants stand for (not on their own answers, where an equilibrium solved on
    /// them certifies its bound by construction): from a bootstrap over participants of
    /// the whole analysis, the policy re-solved on each resample (`HeldOut`). Absent
    /// with fewer than 2 participants (or no replicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
    /// How much the rate on the analysed answers overstates the rate on the population,
    /// on average over the bootstrap (a policy optimal for its own data is worse on new
    /// data): `certified_win_rate − optimism` is the bias-corrected estimate. Near 0 for
    /// the fixed policies (base, greedy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimism: Option<f64>,
}

/// A row's interval from its bootstrap errors e_b = (the rate the analysis of resample b
/// reports for its own policy) − (that policy's rate under the full sample, which plays
/// the population in the bootstrap's world). The bootstrap's error stands for the
/// error of the real analysis against the real population, so the interval is
/// [rate − q97.5(e), rate − q2.5(e)] (the basic bootstrap of the whole procedure, which
/// for NE_k, whose own rate is k/(k+1) on every resample, is the percentile interval of
/// the re-solved equilibria's rates under the full sample), and `optimism` is mean(e).
pub(crate) struct HeldOut {
    pub(crate) low: Option<f64>,
    pub(crate) high: Option<f64>,
    pub(crate) optimism: Option<f64>,
}

impl HeldOut {
    pub(crate) fn of(rate: f64, mut errors: Vec<f64>) -> Self {
        errors.retain(|v| v.is_finite());
        if errors.is_empty() {
            return Self { low: None, high: None, optimism: None };
        }
        let optimism = errors.iter().sum::<f64>() / errors.len() as f64;
        let (lo, hi) = super::fk::percentile_95(&mut errors);
        Self {
            low: Some((rate - hi).clamp(0.0, 1.0)),
            high: Some((rate - lo).clamp(0.0, 1.0)),
            optimism: Some(optimism),
        }
    }
}

/// A prompt that could not be analysed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub prompt: String,
    pub(crate) responses: usize,
    pub participants_covering: usize,
    pub participants_partial: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Counterfactual {
    pub(crate) rows: Vec<EquilibriumRow>,
    pub(crate) skipped: Vec<Skipped>,
}

/// The participant bootstrap of the exact rows: how many resamples, from which seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resampling {
    pub(crate) replicates: usize,
    pub(crate) seed: u64,
}

/// Per prompt and k in `ks`. `greedy_policies`: policies decoded at temperature 0.
pub(crate) fn analyse(
    pools: &BTreeMap<String, Vec<PoolCandidate>>,
    rankings: &[Ranking],
    greedy_policies: &BTreeSet<String>,
    ks: &[u32],
    resampling: Resampling,
) -> Counterfactual {
    let mut by_prompt: HashMap<&str, Vec<&Ranking>> = HashMap::new();
    for r in rankings {
        by_prompt.entry(r.prompt.as_str()).or_default().push(r);
    }
    // Prompts are independent: solved in parallel, collected in prompt order.
    use rayon::prelude::*;
    let results: Vec<Result<Vec<EquilibriumRow>, Skipped>> = pools
        .par_iter()
        .map(|(prompt, pool)| {
            let ranked = by_prompt.get(prompt.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            analyse_prompt(prompt, pool, ranked, greedy_policies, ks, resampling)
        })
        .collect();
    let mut out = Counterfactual::default();
    for r in results {
        match r {
            Ok(rows) => out.rows.extend(rows),
            Err(s) => out.skipped.push(s),
        }
    }
    out
}

/// A prompt's pool as responses: its distinct texts, in order of their smallest candidate
/// id, with how many candidates carry each.
pub(crate) struct Responses {
    pub(crate) masses: Vec<Mass>,
    of_id: HashMap<i64, usize>,
}

/// Each pool candidate's response (the smallest candidate id of its text in its pool), and
/// how many responses each prompt's pool has.
pub(crate) fn responses_of(
    pools: &BTreeMap<String, Vec<PoolCandidate>>,
) -> (HashMap<i64, i64>, BTreeMap<String, usize>) {
    let mut stand_for = HashMap::new();
    let mut count = BTreeMap::new();
    for (prompt, pool) in pools {
        let r = Responses::of(pool);
        stand_for.extend(r.of_id.iter().map(|(&id, &i)| (id, r.masses[i].candidate)));
        count.insert(prompt.clone(), r.masses.len());
    }
    (stand_for, count)
}

/// What the exact analysis counts (its input to [`analyse`]), from the observations by
/// text and each prompt's number of responses ([`responses_of`]): per participant and
/// prompt, their stated orders of a whole pool (one as given, several combined), and an
/// empty ranking for those who have none (counted as covering part of the pool). A
/// ranking estimated from picks, or from orders of parts of a pool, is no participant's
/// ranking of the pool however many responses it names.
pub(crate) fn stated_orders(
    texts: &BTreeMap<(String, String), Vec<RankObservation>>,
    responses: &BTreeMap<String, usize>,
) -> Vec<Ranking> {
    let whole = |prompt: &str, o: &RankObservation| {
        responses.get(prompt).is_some_and(|&n| o.shown.len() == n)
            && o.ordering.as_ref().is_some_and(|ord| ord.len() == o.shown.len())
    };
    let mut stated = BTreeMap::new();
    let mut rest = Vec::new();
    for ((participant, prompt), obs) in texts {
        let orders: Vec<RankObservation> = obs.iter().filter(|o| whole(prompt, o)).cloned().collect();
        if orders.is_empty() {
            let (participant, prompt) = (participant.clone(), prompt.clone());
            rest.push(Ranking { participant, prompt, order: Vec::new(), method: "order", certainty: None });
        } else {
            stated.insert((participant.clone(), prompt.clone()), orders);
        }
    }
    let mut out = super::ranking::rankings_of(&stated);
    out.extend(rest);
    out
}

impl Responses {
    pub(crate) fn of(pool: &[PoolCandidate]) -> Self {
        let mut sorted: Vec<&PoolCandidate> = pool.iter().collect();
        sorted.sort_by_key(|c| c.id);
        let mut of_text: HashMap<&str, usize> = HashMap::new();
        let mut of_id: HashMap<i64, usize> = HashMap::new();
        let mut masses: Vec<Mass> = Vec::new();
        for c in &sorted {
            let r = *of_text.entry(c.text.as_str()).or_insert_with(|| {
                masses.push(Mass { candidate: c.id, copies: 0, p: 0.0 });
                masses.len() - 1
            });
            masses[r].copies += 1;
            of_id.insert(c.id, r);
        }
        Self { masses, of_id }
    }

    /// Each participant's strict order over the responses (a text at its best position),
    /// for those whose rankings cover every response; and how many only part of them.
    fn covering_orders(&self, rankings: &[&Ranking]) -> (Vec<Order>, usize) {
        let n = self.masses.len();
        let mut orders: Vec<Order> = Vec::new();
        let mut partial = 0;
        for r in rankings {
            let mut seen = vec![false; n];
            let mut order = Vec::with_capacity(n);
            for id in &r.order {
                if let Some(&resp) = self.of_id.get(id)
                    && !seen[resp]
                {
                    seen[resp] = true;
                    order.push(resp);
                }
            }
            if order.len() == n {
                orders.push(order);
            } else {
                partial += 1;
            }
        }
        (orders, partial)
    }

    /// Greedy: a point mass on the most common text of the temperature-0 policies'
    /// candidates, if the pool has any.
    pub(crate) fn greedy(&self, pool: &[PoolCandidate], greedy_policies: &BTreeSet<String>) -> Option<Vec<f64>> {
        let n = self.masses.len();
        let mut counts = vec![0usize; n];
        for c in pool.iter().filter(|c| greedy_policies.contains(&c.policy)) {
            counts[self.of_id[&c.id]] += 1;
        }
        let best = (0..n).max_by_key(|&i| (counts[i], std::cmp::Reverse(i)));
        best.filter(|&i| counts[i] > 0).map(|i| {
            let mut x = vec![0.0; n];
            x[i] = 1.0;
            x
        })
    }

    pub(crate) fn with(&self, p: &[f64]) -> Vec<Mass> {
        self.masses.iter().zip(p).map(|(m, &p)| Mass { p, ..m.clone() }).collect()
    }
}

fn analyse_prompt(
    prompt: &str,
    pool: &[PoolCandidate],
    rankings: &[&Ranking],
    greedy_policies: &BTreeSet<String>,
    ks: &[u32],
    resampling: Resampling,
) -> Result<Vec<EquilibriumRow>, Skipped> {
    let responses = Responses::of(pool);
    let n = responses.masses.len();
    let (orders, partial) = responses.covering_orders(rankings);
    let skip = |reason: String| Skipped {
        prompt: prompt.to_string(),
        responses: n,
        participants_covering: orders.len(),
        participants_partial: partial,
        reason,
    };
    if n == 0 {
        return Err(skip("the pool has no candidates".into()));
    }
    if orders.is_empty() {
        return Err(skip(format!(
            "no participant put all {n} distinct responses of the pool ({} candidates) in order in one trial; add an order block with m = {} over the rank policies (the population model stands in meanwhile)",
            pool.len(),
            pool.len().min(16)
        )));
    }
    let total = pool.len() as f64;
    let base: Vec<f64> = responses.masses.iter().map(|m| m.copies as f64 / total).collect();
    let greedy = responses.greedy(pool, greedy_policies);
    let nlhf = equilibria::maximal_lottery(&orders, n).map_err(skip)?;
    let policies = Policies { base, greedy, nlhf };
    let mut rows = certified_rows(prompt, &responses, &orders, &policies, ks);
    if orders.len() >= 2 {
        let replicates = resample_rows(prompt, &orders, &policies, &rows, resampling);
        for (j, row) in rows.iter_mut().enumerate() {
            let held_out = HeldOut::of(row.certified_win_rate, replicates.iter().map(|r| r[j]).collect());
            (row.ci_low, row.ci_high, row.optimism) = (held_out.low, held_out.high, held_out.optimism);
        }
    }
    Ok(rows)
}

/// Each replicate's error of every row (in the rows' order), `[replicate][row]`: the
/// prompt's analysis repeated on a resample of its participants' orders (NLHF and every
/// NE_k re-solved on it, NE_k from the full sample's), the rate it certifies there less
/// the rate its policy certifies over the full sample (see [`HeldOut`]).
fn resample_rows(
    prompt: &str,
    orders: &[Order],
    p: &Policies,
    rows: &[EquilibriumRow],
    resampling: Resampling,
) -> Vec<Vec<f64>> {
    use rand::Rng;
    let n = p.base.len();
    let k_max = rows.iter().map(|r| r.k).max().unwrap_or(1);
    let worst = |u: &[f64]| u.iter().copied().fold(0.0, f64::max);
    (0..resampling.replicates)
        .map(|b| {
            let mut rng = crate::seed::simulation(resampling.seed, &["orders-bootstrap", prompt, &b.to_string()]);
            let drawn: Vec<Order> =
                (0..orders.len()).map(|_| orders[rng.random_range(0..orders.len())].clone()).collect();
            let nlhf = equilibria::maximal_lottery(&drawn, n).unwrap_or_else(|_| p.nlhf.clone());
            // Fixed policies: their rate on the resample less their rate on the sample.
            let own = |x: &[f64]| equilibria::payoffs_up_to(&drawn, x, k_max);
            let (base, greedy, nlhf_own) = (own(&p.base), p.greedy.as_deref().map(own), own(&nlhf));
            let nlhf_held = equilibria::payoffs_up_to(orders, &nlhf, k_max);
            // NE_1 is the maximal lottery; NE_k from the full sample's, or where that does
            // not reach the value, from the resample's NE_(k−1), as the full analysis goes.
            let mut previous = nlhf.clone();
            rows.iter()
                .map(|row| {
                    let k = row.k as usize;
                    let (own, held) = match row.policy {
                        "base" => (worst(&base[k - 1]), 1.0 - row.certified_win_rate),
                        "greedy" => {
                            (greedy.as_ref().map_or(f64::NAN, |g| worst(&g[k - 1])), 1.0 - row.certified_win_rate)
                        }
                        "nlhf" => (worst(&nlhf_own[k - 1]), worst(&nlhf_held[k - 1])),
                        _ if k == 1 => (worst(&nlhf_own[0]), worst(&nlhf_held[0])),
                        _ => {
                            let start: Vec<f64> = row.distribution.iter().map(|m| m.p).collect();
                            let ne = resolve_ne(&drawn, start, &previous, row.k);
                            let held = equilibria::payoffs(orders, &ne.distribution, row.k);
                            previous = ne.distribution;
                            (ne.gap + 1.0 / (row.k as f64 + 1.0), worst(&held))
                        }
                    };
                    // Certified rates are 1 − the largest payoff: own rate − held-out rate.
                    held - own
                })
                .collect()
        })
        .collect()
}

/// NE_k of a resample's orders, from the full sample's NE_k and, where that does not
/// reach the value, from the resample's NE_(k−1) (`previous`), whichever comes closer.
fn resolve_ne(drawn: &[Order], start: Vec<f64>, previous: &[f64], k: u32) -> equilibria::Equilibrium {
    let ne = equilibria::ne_k_from(drawn, start, k, NE_TOLERANCE, RESAMPLE_MAX_ITER);
    if ne.gap <= NE_TOLERANCE {
        return ne;
    }
    let other = equilibria::ne_k_from(drawn, previous.to_vec(), k, NE_TOLERANCE, RESAMPLE_MAX_ITER);
    if other.gap < ne.gap { other } else { ne }
}

/// The fixed single-output policies of a prompt's pool.
struct Policies {
    base: Vec<f64>,
    greedy: Option<Vec<f64>>,
    nlhf: Vec<f64>,
}

/// The certified rows of every policy at every k.
fn certified_rows(
    prompt: &str,
    responses: &Responses,
    orders: &[Order],
    p: &Policies,
    ks: &[u32],
) -> Vec<EquilibriumRow> {
    let mut rows = Vec::new();
    // At k = 1 the game is the symmetric two-player majority game, whose equilibrium is the
    // maximal lottery: start there, then each k from the equilibrium of k − 1.
    let mut ne_start = p.nlhf.clone();
    // The fixed policies' payoffs for every k in one pass each.
    let k_max = ks.iter().copied().max().unwrap_or(0);
    let fixed = |x: &Vec<f64>| equilibria::payoffs_up_to(orders, x, k_max);
    let (base_u, greedy_u, nlhf_u) = (fixed(&p.base), p.greedy.as_ref().map(fixed), fixed(&p.nlhf));
    for &k in ks {
        let bound = k as f64 / (k as f64 + 1.0);
        let at = |u: &[Vec<f64>]| u[k as usize - 1].clone();
        let mut row = |policy: &'static str, x: &[f64], u: Vec<f64>| {
            let worst = u.iter().copied().fold(0.0, f64::max);
            rows.push(EquilibriumRow {
                prompt: prompt.to_string(),
                k,
                policy,
                distribution: responses.with(x),
                certified_win_rate: 1.0 - worst,
                gap: (worst - 1.0 / (k as f64 + 1.0)).max(0.0),
                bound,
                participants: orders.len(),
                method: "orders",
                ci_low: None,
                ci_high: None,
                optimism: None,
            });
        };
        row("base", &p.base, at(&base_u));
        if let (Some(g), Some(gu)) = (&p.greedy, &greedy_u) {
            row("greedy", g, at(gu));
        }
        row("nlhf", &p.nlhf, at(&nlhf_u));
        let ne = equilibria::ne_k_from(orders, ne_start, k, NE_TOLERANCE, NE_MAX_ITER);
        row("ne", &ne.distribution, equilibria::payoffs(orders, &ne.distribution, k));
        ne_start = ne.distribution;
    }
    rows
}

/// The pools of every prompt: candidates of `policies` (the ones rank blocks draw from).
pub(crate) fn pools(candidates: &[Candidate], policies: &BTreeSet<String>) -> BTreeMap<String, Vec<PoolCandidate>> {
    let mut out: BTreeMap<String, Vec<PoolCandidate>> = BTreeMap::new();
    for c in candidates.iter().filter(|c| policies.contains(&c.policy)) {
        out.entry(c.prompt_id.clone()).or_default().push(PoolCandidate {
            id: c.id,
            policy: c.policy.clone(),
            text: c.text.clone(),
        });
    }
    out
}

/// The rows a summary shows: per prompt, the exact (`orders`) rows where the prompt has
/// them, else the model's (`pl_mixture`); and whether any of the model's are among them.
pub(crate) fn shown_rows(rows: &[EquilibriumRow]) -> (Vec<&EquilibriumRow>, bool) {
    let exact: BTreeSet<&str> = rows.iter().filter(|r| r.method == "orders").map(|r| r.prompt.as_str()).collect();
    let shown: Vec<&EquilibriumRow> =
        rows.iter().filter(|r| r.method == "orders" || !exact.contains(r.prompt.as_str())).collect();
    let model = shown.iter().any(|r| r.method != "orders");
    (shown, model)
}

/// Mean 95% interval over the prompts per (policy, k), where every row of the (policy, k)
/// has one (a mean over some prompts would not be the curve's).
pub fn mean_intervals(rows: &[&EquilibriumRow]) -> BTreeMap<(&'static str, u32), (f64, f64)> {
    let mut acc: BTreeMap<(&'static str, u32), (f64, f64, usize, bool)> = BTreeMap::new();
    for r in rows {
        let e = acc.entry((r.policy, r.k)).or_insert((0.0, 0.0, 0, true));
        match (r.ci_low, r.ci_high) {
            (Some(lo), Some(hi)) => (e.0, e.1, e.2) = (e.0 + lo, e.1 + hi, e.2 + 1),
            _ => e.3 = false,
        }
    }
    acc.into_iter()
        .filter(|(_, e)| e.3 && e.2 > 0)
        .map(|(key, e)| (key, (e.0 / e.2 as f64, e.1 / e.2 as f64)))
        .collect()
}

/// Mean certified f(k) over the analysed prompts, per (policy, k): the curves of a plot.
pub fn mean_certified<'a>(
    rows: impl IntoIterator<Item = &'a EquilibriumRow>,
) -> BTreeMap<(&'static str, u32), (f64, usize)> {
    let mut acc: BTreeMap<(&'static str, u32), (f64, usize)> = BTreeMap::new();
    for r in rows {
        let e = acc.entry((r.policy, r.k)).or_default();
        e.0 += r.certified_win_rate;
        e.1 += 1;
    }
    acc.values_mut().for_each(|(s, n)| *s /= *n as f64);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(texts: &[&str], policy: &str, first_id: i64) -> Vec<PoolCandidate> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| PoolCandidate { id: first_id + i as i64, policy: policy.into(), text: t.to_string() })
            .collect()
    }

    fn ranking(p: &str, order: &[i64]) -> Ranking {
        Ranking { participant: p.into(), prompt: "q".into(), order: order.to_vec(), method: "order", certainty: None }
    }

    #[test]
    fn cyclic_participants_give_ne_the_bound_and_greedy_one_half() {
        // Pool: greedy text "a" twice (ids 1, 2), then "b", "c" from a sampled policy.
        let mut p = pool(&["a", "a"], "greedy", 1);
        p.extend(pool(&["b", "c"], "sampled", 3));
        let pools = BTreeMap::from([("q".to_string(), p)]);
        // Cyclic over the three responses; participant 4 saw only two candidates.
        let rankings =
            vec![ranking("1", &[1, 3, 4]), ranking("2", &[3, 4, 2]), ranking("3", &[4, 1, 3]), ranking("4", &[3, 1])];
        let greedy = BTreeSet::from(["greedy".to_string()]);
        let cf = analyse(&pools, &rankings, &greedy, &[1, 2, 4], Resampling { replicates: 20, seed: 7 });
        assert!(cf.skipped.is_empty());
        let get = |policy: &str, k: u32| cf.rows.iter().find(|r| r.policy == policy && r.k == k).unwrap();
        for k in [1, 2, 4] {
            let ne = get("ne", k);
            assert_eq!(ne.participants, 3);
            assert!((ne.certified_win_rate - k as f64 / (k as f64 + 1.0)).abs() < 1e-6, "{ne:?}");
            assert!(ne.gap < 1e-6);
            // A point mass on "a" loses to "c", which two participants in three prefer:
            // certified 1/3 at every k.
            let g = get("greedy", k);
            assert!((g.certified_win_rate - 1.0 / 3.0).abs() < 1e-12, "{g:?}");
            assert_eq!(g.distribution.iter().map(|m| m.p).collect::<Vec<_>>(), [1.0, 0.0, 0.0]);
        }
        // Base: "a" has two of four candidates.
        let b = get("base", 1);
        assert_eq!(
            b.distribution.iter().map(|m| (m.candidate, m.copies)).collect::<Vec<_>>(),
            [(1, 2), (3, 1), (4, 1)]
        );
        assert_eq!(b.distribution[0].p, 0.5);
        // NLHF on a 3-cycle is uniform.
        for m in &get("nlhf", 1).distribution {
            assert!((m.p - 1.0 / 3.0).abs() < 1e-9);
        }
    }

    #[test]
    fn prompts_without_covering_participants_are_reported() {
        let pools = BTreeMap::from([("q".to_string(), pool(&["a", "b", "c"], "s", 1))]);
        let cf =
            analyse(&pools, &[ranking("1", &[1, 2])], &BTreeSet::new(), &[1], Resampling { replicates: 20, seed: 7 });
        assert!(cf.rows.is_empty());
        assert_eq!(cf.skipped.len(), 1);
        assert_eq!(cf.skipped[0].participants_partial, 1);
        assert!(cf.skipped[0].reason.contains("m = 3"), "{}", cf.skipped[0].reason);
    }
}

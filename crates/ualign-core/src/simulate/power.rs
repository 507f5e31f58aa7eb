//! `ualign power`: how many participants a study needs for a chosen precision of f(k), or
//! for a chosen power to show f(k) > 1/2, by simulation.
//!
//! A bank of synthetic participants answers the study as `simulate` would — through the
//! real schedule ([`schedule::plan`]), so each gets the trials, k's and copies a real
//! participant gets — from an assumed population or from a pilot's fitted latent-class
//! Plackett–Luce model (a class drawn per participant by its weight, each pick a draw
//! from the class's worths). Each bank participant's score and trial count per f(k) row
//! is kept. Then, per row:
//!
//! 1. the normal approximation of the cluster interval over participants gives a first N:
//!    the ratio estimator's variance per participant V = mean((s_i − r·n_i)²)/n̄² holds the
//!    design effect of many trials per participant (V over r(1−r)/n̄, reported);
//! 2. studies of N participants drawn from the bank (with replacement, `studies` of
//!    them, each on a stream of its own so the study of N + 1 is that of N with one
//!    more) are each judged by the normal approximation of `stats`'s cluster interval —
//!    r̂ ± 1.96·SE from its own participants — and N is the smallest, from 20
//!    (below which `stats` gives no cluster interval), at which at least `assurance` of
//!    them reach the target: every such study's interval is at most ±H wide, or excludes
//!    1/2 from above. The study's N is searched the same way with every row judged in
//!    each study at once: rows that each reach the target in 80% of studies reach it
//!    together in fewer.
//!
//! The bank is a finite sample of the population (its rate is reported); `power`'s
//! figures are checked against studies simulated and analysed by `simulate` and `stats`
//! themselves (`benches/peers/power_check.py`).

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Answering, Population, Preference, answering_worths, preference, rank, rng_for, ties};
use crate::analysis::fk::{MIN_CLUSTER_PARTICIPANTS, slot_split_score};
use crate::analysis::model::PopulationModel;
use crate::schedule::{self, TrialKind};
use crate::store::{Candidate, Store, StoreError};
use crate::study::Study;

/// A fitted class: its weight, and per prompt each text's log-worth.
pub type FittedClass = (f64, HashMap<String, HashMap<String, f64>>);

/// Where the bank's participants come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An assumed population, as `simulate --population` takes it.
    Population(Population),
    /// A pilot's fitted classes: weight, and per prompt each text's log-worth.
    Fitted(Vec<FittedClass>),
}

impl Source {
    /// The classes of a fitted population model, their worths keyed by text.
    pub fn fitted(model: &PopulationModel, candidates: &[Candidate]) -> Self {
        let text: HashMap<i64, &str> = candidates.iter().map(|c| (c.id, c.text.as_str())).collect();
        Source::Fitted(
            model
                .class_worths
                .iter()
                .map(|c| {
                    let prompts = c
                        .prompts
                        .iter()
                        .map(|p| {
                            let worths = p
                                .candidates
                                .iter()
                                .zip(&p.log_worths)
                                .filter_map(|(id, w)| Some((text.get(id)?.to_string(), *w)))
                                .collect();
                            (p.prompt.clone(), worths)
                        })
                        .collect();
                    (c.weight, prompts)
                })
                .collect(),
        )
    }
}

/// What a study should reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    /// Every f(k) interval at most ±H.
    HalfWidth(f64),
    /// Every f(k) interval above 1/2 (A shown to beat B).
    ExceedHalf,
}

#[derive(Debug, Clone)]
pub struct PowerOptions {
    pub target: Target,
    /// The share of simulated studies that must reach the target (power, or assurance).
    pub assurance: f64,
    /// Synthetic participants in the bank.
    pub bank: usize,
    /// Simulated studies per N tried.
    pub studies: usize,
    /// The largest N searched.
    pub max_participants: usize,
    pub seed: u64,
    /// How the bank's participants answer beyond their preference (assumed populations).
    pub answering: Answering,
}

/// One f(k) row's answer.
#[derive(Debug, Clone, Serialize)]
pub struct PowerRow {
    pub policy_a: String,
    pub policy_b: String,
    pub k: u32,
    /// The bank's f(k): the population's, up to the bank's own sampling error.
    pub rate: f64,
    /// That error: the standard error of `rate` over the bank.
    pub bank_se: f64,
    /// Mean answered trials of the row per participant.
    pub trials_per_participant: f64,
    /// The variance of the rate over that of as many independent trials.
    pub design_effect: f64,
    /// The normal approximation's N (step 1).
    pub approximate: Option<usize>,
    /// The simulated N (step 2); none where the target cannot be reached.
    pub participants: Option<usize>,
    /// The share of simulated studies of `participants` that reached the target.
    pub achieved: Option<f64>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PowerReport {
    pub study: String,
    pub source: String,
    pub target: Target,
    pub assurance: f64,
    pub bank: usize,
    pub studies: usize,
    pub rows: Vec<PowerRow>,
    /// The N at which at least the assurance of studies reach the target in every row at
    /// once (none if some row cannot).
    pub participants: Option<usize>,
    /// The share of studies of `participants` that did.
    pub achieved: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PowerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the pool of policy `{policy}` for prompt `{prompt}` has no sample {sample}: generate or import the study's pools first (`ualign generate`, `ualign import`)"
    )]
    MissingPool { policy: String, prompt: String, sample: u32 },
    #[error("the study has no best_of_k block: there is no f(k) to plan for")]
    NoBestOfK,
}

/// An f(k) row: (A, B, k).
type RowKey = (String, String, u32);

/// The bank: its f(k) rows, and each participant's (score, trials) in every row ((0, 0)
/// where they saw none of the row), kept together so a study draws whole participants.
struct Bank {
    rows: Vec<RowKey>,
    people: Vec<Vec<(f64, usize)>>,
}

/// How many participants the study needs, per f(k) row and for all of them.
pub fn power(
    study: &Study,
    store: &Store,
    source: &Source,
    name: &str,
    opts: &PowerOptions,
) -> Result<PowerReport, PowerError> {
    if matches!(source, Source::Fitted(c) if c.is_empty()) {
        return Err(PowerError::NoBestOfK);
    }
    let bank = bank(study, store, source, opts)?;
    if bank.rows.is_empty() {
        return Err(PowerError::NoBestOfK);
    }
    let column = |r: usize| -> Vec<(f64, usize)> { bank.people.iter().map(|p| p[r]).collect() };
    let rows: Vec<PowerRow> =
        bank.rows.iter().enumerate().map(|(i, (a, b, k))| row((a, b, *k), &column(i), opts)).collect();
    // Every row at once: a study counts where all its rows reach the target (rows that
    // each reach it in 80% of studies reach it together in fewer).
    let participants = rows.iter().map(|r| r.participants).collect::<Option<Vec<usize>>>().and_then(|v| {
        let first = v.into_iter().max()?;
        let all = |drawn: &[usize]| {
            (0..bank.rows.len())
                .all(|r| reaches(&drawn.iter().map(|&i| bank.people[i][r]).collect::<Vec<_>>(), opts.target))
        };
        search(first, opts, |n| share(bank.people.len(), n, opts, all))
    });
    Ok(PowerReport {
        study: study.name.clone(),
        source: name.to_string(),
        target: opts.target,
        assurance: opts.assurance,
        bank: opts.bank,
        studies: opts.studies,
        rows,
        participants: participants.map(|p| p.0),
        achieved: participants.map(|p| p.1),
    })
}

/// The bank: `opts.bank` synthetic participants' scores per row.
fn bank(study: &Study, store: &Store, source: &Source, opts: &PowerOptions) -> Result<Bank, PowerError> {
    let candidates = store.all_candidates()?;
    let policies: Vec<&str> = study.policies.iter().map(|p| p.name.as_str()).collect();
    let mut text_of: HashMap<(&str, &str, u32), &str> = HashMap::new();
    let mut pools: HashMap<&str, Vec<String>> = HashMap::new();
    for c in candidates.iter().filter(|c| policies.contains(&c.policy.as_str())) {
        text_of.insert((c.policy.as_str(), c.prompt_id.as_str(), c.sample_index), c.text.as_str());
        pools.entry(c.prompt_id.as_str()).or_default().push(c.text.clone());
    }
    for pool in pools.values_mut() {
        pool.sort();
        pool.dedup();
    }
    let mut people: Vec<BTreeMap<RowKey, (f64, usize)>> = Vec::with_capacity(opts.bank);
    let mut draw = rng_for(opts.seed, &["power", "classes"]);
    for i in 0..opts.bank {
        let who = format!("power-{}-{i}", opts.seed);
        let mut answers = rng_for(opts.seed, &["answers", &who]);
        let class = match source {
            Source::Fitted(classes) => pick_class(classes, &mut draw),
            Source::Population(_) => 0,
        };
        let mut prefs: HashMap<String, Preference> = HashMap::new();
        let mut mine: BTreeMap<(String, String, u32), (f64, usize)> = BTreeMap::new();
        for t in schedule::plan(study, &who) {
            let (TrialKind::BestOfK, Some(k), Some(a), Some(b)) = (t.kind, t.k, &t.policy_a, &t.policy_b) else {
                continue;
            };
            let mut texts = Vec::with_capacity(t.slots.len());
            for s in &t.slots {
                let Some(text) = text_of.get(&(s.policy.as_str(), t.prompt_id.as_str(), s.sample)) else {
                    return Err(PowerError::MissingPool {
                        policy: s.policy.clone(),
                        prompt: t.prompt_id.clone(),
                        sample: s.sample,
                    });
                };
                texts.push(text.to_string());
            }
            let pool = &pools[t.prompt_id.as_str()];
            let pref = prefs.entry(t.prompt_id.clone()).or_insert_with(|| match source {
                Source::Population(pop) => preference(pop, pool.len(), i, opts.bank, opts.seed, &t.prompt_id, &who),
                Source::Fitted(classes) => {
                    let worths = classes[class].1.get(&t.prompt_id);
                    Preference::Worths(
                        pool.iter().map(|x| worths.and_then(|w| w.get(x)).copied().unwrap_or(0.0)).collect(),
                    )
                }
            });
            let shown: Vec<usize> = texts.iter().map(|x| pool.binary_search(x).unwrap_or(0)).collect();
            let mut distinct = shown.clone();
            distinct.sort_unstable();
            distinct.dedup();
            let biased = answering_worths(pref, pool, &distinct, opts.answering);
            let pref = biased.as_ref().unwrap_or(pref);
            let score = if ties(pref, &distinct, opts.answering.no_preference, &mut answers) {
                0.5
            } else {
                let best = rank(pref, &distinct, &mut answers)[0];
                let choice = shown.iter().position(|&x| x == best).unwrap_or(0);
                slot_split_score(&t.slots, &texts, choice)
            };
            let e = mine.entry((a.clone(), b.clone(), k)).or_default();
            e.0 += score;
            e.1 += 1;
        }
        people.push(mine);
    }
    let mut rows: Vec<(String, String, u32)> = people.iter().flat_map(|m| m.keys().cloned()).collect();
    rows.sort();
    rows.dedup();
    let people =
        people.iter().map(|m| rows.iter().map(|key| m.get(key).copied().unwrap_or_default()).collect()).collect();
    Ok(Bank { rows, people })
}

/// A class by its weight.
fn pick_class(classes: &[FittedClass], rng: &mut ChaCha8Rng) -> usize {
    let mut u = rng.random::<f64>() * classes.iter().map(|c| c.0).sum::<f64>();
    for (i, c) in classes.iter().enumerate() {
        if u < c.0 {
            return i;
        }
        u -= c.0;
    }
    classes.len().saturating_sub(1)
}

const Z95: f64 = 1.959_963_984_540_054;

/// The rate and the per-participant variance of the ratio estimator, V.
fn moments(per: &[(f64, usize)]) -> (f64, f64, f64) {
    let s: f64 = per.iter().map(|p| p.0).sum();
    let n: f64 = per.iter().map(|p| p.1 as f64).sum();
    let r = s / n;
    let n_bar = n / per.len() as f64;
    let v = per.iter().map(|p| (p.0 - r * p.1 as f64).powi(2)).sum::<f64>() / per.len() as f64 / (n_bar * n_bar);
    (r, n_bar, v)
}

/// Whether a study of these participants reaches the target, judged as `stats` would.
fn reaches(per: &[(f64, usize)], target: Target) -> bool {
    let (r, _, v) = moments(per);
    let half = Z95 * (v / per.len() as f64).sqrt();
    match target {
        Target::HalfWidth(h) => half <= h,
        Target::ExceedHalf => r - half > 0.5,
    }
}

/// The share of `opts.studies` studies of `n` participants drawn (with replacement) from
/// a bank of `bank` that `judge` passes. Each study has its own stream, so the study of
/// n + 1 participants is the study of n with one more: the share moves with n alone.
fn share(bank: usize, n: usize, opts: &PowerOptions, judge: impl Fn(&[usize]) -> bool) -> f64 {
    let mut drawn = Vec::with_capacity(n);
    let hits = (0..opts.studies)
        .filter(|j| {
            let mut rng = rng_for(opts.seed, &["power", "studies", &j.to_string()]);
            drawn.clear();
            drawn.extend((0..n).map(|_| rng.random_range(0..bank)));
            judge(&drawn)
        })
        .count();
    hits as f64 / opts.studies as f64
}

/// The z of a one-sided `p`: Φ⁻¹(p) by Acklam's rational approximation (|error| < 1.2e-9).
fn z_of(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        let q = (-2.0 * q.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail(p)
    } else if p > 1.0 - 0.02425 {
        -tail(1.0 - p)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

fn row((a, b, k): (&str, &str, u32), per: &[(f64, usize)], opts: &PowerOptions) -> PowerRow {
    let (r, n_bar, v) = moments(per);
    let design_effect = if r > 0.0 && r < 1.0 { v / (r * (1.0 - r) / n_bar) } else { f64::NAN };
    let approximate = match opts.target {
        Target::HalfWidth(h) => Some(v * (Z95 / h).powi(2)),
        Target::ExceedHalf if r > 0.5 => Some(v * ((Z95 + z_of(opts.assurance)) / (r - 0.5)).powi(2)),
        Target::ExceedHalf => None,
    }
    .map(|n| (n.ceil() as usize).max(1));
    let mut out = PowerRow {
        policy_a: a.to_string(),
        policy_b: b.to_string(),
        k,
        rate: r,
        bank_se: (v / per.len() as f64).sqrt(),
        trials_per_participant: n_bar,
        design_effect,
        approximate,
        participants: None,
        achieved: None,
        note: None,
    };
    let Some(first) = approximate else {
        out.note =
            Some(format!("the population's f({k}) is {r:.3}, not above 1/2: no number of participants shows it above"));
        return out;
    };
    let bank_se = out.bank_se;
    let judge = |drawn: &[usize]| reaches(&drawn.iter().map(|&i| per[i]).collect::<Vec<_>>(), opts.target);
    match search(first, opts, |n| share(per.len(), n, opts, judge)) {
        Some((n, achieved)) => {
            out.participants = Some(n);
            out.achieved = Some(achieved);
            // Above 1/2, N goes with 1/(r − 1/2)²: the bank's own error on r moves it.
            let spread = |d: f64| v * ((Z95 + z_of(opts.assurance)) / d).powi(2);
            if opts.target == Target::ExceedHalf && r - 0.5 - 2.0 * bank_se <= 0.0 {
                out.note = Some(format!(
                    "f({k}) = {r:.3} is within 2 of the bank's standard errors ({bank_se:.4}) of 1/2: N is not known; raise --bank"
                ));
            } else if opts.target == Target::ExceedHalf
                && spread(r - 0.5 - 2.0 * bank_se) > 1.2 * spread(r - 0.5 + 2.0 * bank_se)
            {
                out.note = Some(format!(
                    "the bank's f({k}) is uncertain by ±{:.3}: N could be {:.0} to {:.0}; raise --bank to narrow it",
                    2.0 * bank_se,
                    spread(r - 0.5 + 2.0 * bank_se).ceil(),
                    spread(r - 0.5 - 2.0 * bank_se).ceil()
                ));
            } else if n == MIN_CLUSTER_PARTICIPANTS && first < n {
                out.note =
                    Some(format!("{first} would do, but `stats` gives a cluster interval only from {n} participants"));
            }
        }
        None => {
            out.note = Some(format!("not reached within {} participants", opts.max_participants));
        }
    }
    out
}

/// The smallest N from 20 at which the share of simulated studies reaching the target is
/// at least the assurance: up from the approximation by a tenth until reached, then down
/// by bisection to the smallest.
fn search(first: usize, opts: &PowerOptions, share_at: impl Fn(usize) -> f64) -> Option<(usize, f64)> {
    let ok = |n: usize| {
        let s = share_at(n);
        (s >= opts.assurance).then_some(s)
    };
    let floor = MIN_CLUSTER_PARTICIPANTS;
    if let Some(s) = ok(floor) {
        return Some((floor, s));
    }
    // `lo` falls short; grow `hi` until it reaches the target, never past the limit.
    if opts.max_participants <= floor {
        return None;
    }
    let mut lo = floor;
    let mut hi = first.clamp(floor + 1, opts.max_participants);
    let mut found = loop {
        if let Some(s) = ok(hi) {
            break (hi, s);
        }
        lo = hi;
        if hi >= opts.max_participants {
            return None;
        }
        hi = ((hi as f64 * 1.1).ceil() as usize).max(hi + 1).min(opts.max_participants);
    };
    while found.0 - lo > 1 {
        let mid = (lo + found.0) / 2;
        match ok(mid) {
            Some(s) => found = (mid, s),
            None => lo = mid,
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_normal_quantile_is_right() {
        for (p, z) in
            [(0.5, 0.0), (0.8, 0.841_621_233_572_914), (0.975, 1.959_963_984_540_054), (0.01, -2.326_347_874_040_841)]
        {
            assert!((z_of(p) - z).abs() < 1e-8, "{p}: {} vs {z}", z_of(p));
        }
    }

    fn opts(target: Target) -> PowerOptions {
        PowerOptions {
            target,
            assurance: 0.8,
            bank: 0,
            studies: 400,
            max_participants: 100_000,
            seed: 1,
            answering: Answering::default(),
        }
    }

    /// Participants who each answer 4 trials, winning each with their own probability
    /// (half of them 0.9, half 0.5): r = 0.7, strongly clustered.
    fn clustered() -> Vec<(f64, usize)> {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        (0..4000)
            .map(|i| {
                let p = if i % 2 == 0 { 0.9 } else { 0.5 };
                ((0..4).filter(|_| rng.random::<f64>() < p).count() as f64, 4)
            })
            .collect()
    }

    #[test]
    fn the_design_effect_and_the_closed_form_n_are_those_of_the_cluster_variance() {
        let per = clustered();
        let r = row(("a", "b", 1), &per, &opts(Target::ExceedHalf));
        assert!((r.rate - 0.7).abs() < 0.01, "{r:?}");
        // Var of a participant's mean: p(1−p)/4 averaged, plus the spread of p (0.04):
        // (0.09·0.5 + 0.25·0.5)/4 + 0.04 = 0.0825; independent trials: 0.21/4 = 0.0525.
        assert!((r.design_effect - 0.0825 / 0.0525).abs() < 0.1, "{r:?}");
        // N = V ((1.96 + 0.8416) / 0.2)² = 0.0825 · 196.2 ≈ 16.2 → 17, below the floor.
        assert!(r.approximate.unwrap().abs_diff(17) <= 1, "{r:?}");
        assert_eq!(r.participants, Some(MIN_CLUSTER_PARTICIPANTS));
        // A half-width of ±0.02: N = 0.0825 (1.96/0.02)² ≈ 792; the simulated N is near
        // it, and at it at least 80% of studies reach the target.
        let r = row(("a", "b", 1), &per, &opts(Target::HalfWidth(0.02)));
        let (n, approx) = (r.participants.unwrap(), r.approximate.unwrap());
        assert!(approx.abs_diff(792) < 30 && n.abs_diff(approx) < approx / 10, "{r:?}");
        let o = opts(Target::HalfWidth(0.02));
        let judge = |d: &[usize]| reaches(&d.iter().map(|&i| per[i]).collect::<Vec<_>>(), o.target);
        assert!(r.achieved.unwrap() >= 0.8 && share(per.len(), n - 1, &o, judge) < 0.8, "{r:?}");
    }

    #[test]
    fn a_row_not_above_one_half_cannot_be_shown_above_it() {
        let per: Vec<(f64, usize)> = (0..100).map(|i| ((i % 2) as f64, 1)).collect();
        let r = row(("a", "b", 2), &per, &opts(Target::ExceedHalf));
        assert!(r.participants.is_none() && r.note.unwrap().contains("not above 1/2"));
    }
}

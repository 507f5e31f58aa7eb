//! How much participants agree, per prompt.
//!
//! - **Kendall's W** over the participants' stated orders of a prompt's whole pool (the
//!   rankings the exact `orders` rows rest on): 1 when every participant gave the same
//!   order, 0 when the orders cancel; with the Friedman test of "no agreement"
//!   (χ² = m(n − 1)W on n − 1 degrees of freedom).
//! - **Krippendorff's α** (nominal) over pairwise preferences, for every kind of answer:
//!   designs show each participant different subsets of a pool (rank trials draw m of its
//!   candidates, best_of_k trials k + 1 samples), so few participants ever see one same
//!   set. The units are instead the pairs of responses of the prompt; a participant's
//!   value for a pair is which of the two they preferred, by the majority of their answers
//!   that rank the two (an order ranks every pair in it; a pick ranks the text picked above
//!   each other text shown; a pair they split evenly has no value). Each pair is counted in
//!   both orientations, so α does not depend on which of the two is named first. α = 1:
//!   every two participants who ranked a pair agree; 0: they agree as often as chance;
//!   below 0: systematically opposed, as two groups with opposite tastes are. A population
//!   that disagrees is where k > 1 candidates matter.
//!
//! Responses are texts: copies of one text are one response. Repeats and attention checks
//! are not answers here (the store leaves them out), nor are skips and "no preference".

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::quality::chi2_sf;
use crate::store::{BestOfKAnswer, Candidate, RankAnswer};

/// Below this many participants with a value for some pair, α gets no interval (as f(k)).
pub const MIN_BOOTSTRAP_PARTICIPANTS: usize = super::fk::MIN_CLUSTER_PARTICIPANTS;

/// One prompt's agreement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub prompt: String,
    /// Participants with a value for at least one pair.
    pub participants: usize,
    /// Pairs of responses ranked by at least two participants (the units α is made of).
    pub pairs: usize,
    /// Krippendorff's α over pairwise preferences; null where no pair was ranked by two
    /// participants, or where all of them agree on every pair and chance would too.
    pub alpha: Option<f64>,
    /// 95% percentile bootstrap over participants; null below
    /// [`MIN_BOOTSTRAP_PARTICIPANTS`] participants.
    pub alpha_low: Option<f64>,
    pub alpha_high: Option<f64>,
    /// Kendall's W over stated orders of the whole pool; null with fewer than two.
    pub kendall_w: Option<f64>,
    /// Participants with a stated order of the whole pool, and the pool's responses.
    pub w_raters: usize,
    pub w_items: usize,
    /// The Friedman test's p-value for "the orders agree no more than chance".
    pub w_p_value: Option<f64>,
}

/// A participant's preferences among pairs of one prompt: per pair (lo, hi) of response
/// ids, the number of answers preferring lo minus those preferring hi.
type Net = BTreeMap<(i64, i64), i64>;

/// Every prompt's agreement, in prompt order. `whole_orders`: per prompt, each stated
/// order of its whole pool (responses best first; one per participant). `replicates`
/// bootstrap resamples, seeded by `seed`.
pub fn compute(
    candidates: &[Candidate],
    rank_answers: &[RankAnswer],
    best_of_k: &[BestOfKAnswer],
    whole_orders: &BTreeMap<String, Vec<Vec<i64>>>,
    replicates: usize,
    seed: u64,
) -> Vec<Agreement> {
    let nets = pairwise(candidates, rank_answers, best_of_k);
    let mut prompts: Vec<&String> = nets.keys().chain(whole_orders.keys()).collect();
    prompts.sort();
    prompts.dedup();
    // Prompts are independent (each bootstrap seeded by its prompt): in parallel, the same
    // result however many threads.
    use rayon::prelude::*;
    prompts
        .into_par_iter()
        .map(|prompt| {
            // Per participant, their values: (pair, lo preferred?).
            let coders: Vec<PairValues> = nets
                .get(prompt)
                .map(|by_p| {
                    by_p.values()
                        .map(|net| net.iter().filter(|&(_, &d)| d != 0).map(|(&pair, &d)| (pair, d > 0)).collect())
                        .filter(|v: &Vec<_>| !v.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            let (alpha, pairs) = pairwise_alpha(&coders);
            let (alpha_low, alpha_high) = if coders.len() < MIN_BOOTSTRAP_PARTICIPANTS || alpha.is_none() {
                (None, None)
            } else {
                bootstrap(&coders, replicates, crate::seed::agreement_bootstrap(seed, prompt))
            };
            let orders = whole_orders.get(prompt).map(Vec::as_slice).unwrap_or_default();
            let (kendall_w, w_p_value) = kendall_w(orders).unzip();
            Agreement {
                prompt: prompt.clone(),
                participants: coders.len(),
                pairs,
                alpha,
                alpha_low,
                alpha_high,
                kendall_w,
                w_raters: orders.len(),
                w_items: orders.first().map_or(0, Vec::len),
                w_p_value,
            }
        })
        .collect()
}

/// Per prompt and participant, their net preferences among pairs of responses.
fn pairwise(
    candidates: &[Candidate],
    rank_answers: &[RankAnswer],
    best_of_k: &[BestOfKAnswer],
) -> BTreeMap<String, BTreeMap<String, Net>> {
    // Each candidate's prompt, and the response it is: the smallest id of its text there.
    let mut first: HashMap<(&str, &str), i64> = HashMap::new();
    for c in candidates {
        let id = first.entry((c.prompt_id.as_str(), c.text.as_str())).or_insert(c.id);
        *id = (*id).min(c.id);
    }
    let of: HashMap<i64, (&str, i64)> = candidates
        .iter()
        .map(|c| (c.id, (c.prompt_id.as_str(), first[&(c.prompt_id.as_str(), c.text.as_str())])))
        .collect();
    let mut out: BTreeMap<String, BTreeMap<String, Net>> = BTreeMap::new();
    let mut add = |participant: &str, shown: &[i64], best_first: &[usize], ordered: bool| {
        let Some(&(prompt, _)) = shown.first().and_then(|id| of.get(id)) else { return };
        let resp: Vec<i64> = shown.iter().filter_map(|id| of.get(id).map(|r| r.1)).collect();
        if resp.len() != shown.len() {
            return;
        }
        let net = out.entry(prompt.to_string()).or_default().entry(participant.to_string()).or_default();
        let mut prefer = |better: i64, worse: i64| {
            if better != worse {
                let (pair, sign) = if better < worse { ((better, worse), 1) } else { ((worse, better), -1) };
                *net.entry(pair).or_default() += sign;
            }
        };
        // An order ranks each displayed slot above every later one (a response shown
        // twice counts where it first appears); a pick ranks its slot above every other.
        let mut seen = Vec::new();
        for (i, &slot) in best_first.iter().enumerate() {
            let Some(&better) = resp.get(slot) else { return };
            if seen.contains(&better) {
                continue;
            }
            seen.push(better);
            if ordered || i == 0 {
                let rest: Vec<i64> = if ordered {
                    best_first[i + 1..].iter().filter_map(|&s| resp.get(s).copied()).collect()
                } else {
                    resp.clone()
                };
                let mut done = Vec::new();
                for worse in rest {
                    if !seen.contains(&worse) && !done.contains(&worse) {
                        done.push(worse);
                        prefer(better, worse);
                    }
                }
            }
        }
    };
    for a in rank_answers {
        match (&a.ordering, a.choice) {
            (Some(ord), _) => add(&a.participant, &a.shown, ord, true),
            (None, Some(c)) => add(&a.participant, &a.shown, &[c], false),
            (None, None) => {}
        }
    }
    for a in best_of_k {
        if let (Some(c), false) = (a.choice, a.candidate_ids.is_empty()) {
            add(&a.participant, &a.candidate_ids, &[c], false);
        }
    }
    out
}

/// A coder's values: per pair (lower id, higher id), whether they preferred the lower.
pub type PairValues = Vec<((i64, i64), bool)>;

/// Krippendorff's α (nominal) of pairwise preferences, each pair counted in both
/// orientations; and the number of pairs with values from at least two coders.
pub fn pairwise_alpha(coders: &[PairValues]) -> (Option<f64>, usize) {
    alpha_of(coders.iter().map(|c| (c, 1.0)))
}

/// α of coders each counted `weight` times (a bootstrap resample draws some twice). A
/// coder's copies are one coder: a value is paired only with other coders' values (as
/// Krippendorff's coincidences pair values of different coders), so drawing a coder twice
/// does not make them agree with themselves. With every weight 1 this is the textbook α.
fn alpha_of<'a>(coders: impl Iterator<Item = (&'a PairValues, f64)>) -> (Option<f64>, usize) {
    let (coders, weights): (Vec<&PairValues>, Vec<f64>) = coders.unzip();
    Units::of(&coders).alpha(&weights, &mut Sums::default())
}

/// The coders' values with every pair numbered (in pair order), for α at many weightings
/// (the bootstrap's resamples) without a map per resample.
struct Units {
    pairs: usize,
    /// Per coder, their values: (the pair's number, preferred the lower id?).
    values: Vec<Vec<(u32, bool)>>,
}

/// Per pair, the sums α is made of (kept from one resample to the next).
#[derive(Default)]
struct Sums {
    /// Coders with a value (and a weight above 0).
    count: Vec<u32>,
    /// Their weights: preferred the lower, preferred the higher.
    lower: Vec<f64>,
    higher: Vec<f64>,
    /// The pair's coincidence cells (lower, higher) plus its mirror's.
    o_cd: Vec<f64>,
}

impl Units {
    fn of(coders: &[&PairValues]) -> Self {
        let mut number: BTreeMap<(i64, i64), u32> = BTreeMap::new();
        for &(pair, _) in coders.iter().copied().flatten() {
            number.insert(pair, 0);
        }
        for (i, n) in number.values_mut().enumerate() {
            *n = i as u32;
        }
        let values = coders.iter().map(|c| c.iter().map(|&(pair, lo)| (number[&pair], lo)).collect()).collect();
        Self { pairs: number.len(), values }
    }

    /// α with coder i counted `weights[i]` times (0: not drawn), and the number of pairs
    /// with values from two coders or more.
    fn alpha(&self, weights: &[f64], s: &mut Sums) -> (Option<f64>, usize) {
        for v in [&mut s.lower, &mut s.higher, &mut s.o_cd] {
            v.clear();
            v.resize(self.pairs, 0.0);
        }
        s.count.clear();
        s.count.resize(self.pairs, 0);
        let drawn = || self.values.iter().zip(weights).filter(|&(_, &w)| w > 0.0);
        for (values, &w) in drawn() {
            for &(u, lo) in values {
                let u = u as usize;
                s.count[u] += 1;
                if lo {
                    s.lower[u] += w;
                } else {
                    s.higher[u] += w;
                }
            }
        }
        // In a pair with m values, a of them "lower preferred" and b "higher", a value of
        // coder c pairs with the m − w_c values of the others, each pairing weighted
        // 1/(m − w_c): the coincidence cell (lower, higher) of the pair plus that of its
        // mirror is Σ_{c: lower} w_c·b/(m − w_c) + Σ_{c: higher} w_c·a/(m − w_c)
        // (2ab/(m − 1) when every w is 1), and n_lower = n_higher = Σ m.
        for (values, &w) in drawn() {
            for &(u, lo) in values {
                let u = u as usize;
                if s.count[u] >= 2 {
                    let (a, b) = (s.lower[u], s.higher[u]);
                    s.o_cd[u] += w * if lo { b } else { a } / (a + b - w);
                }
            }
        }
        let (mut n, mut o_cd, mut pairs) = (0.0, 0.0, 0);
        for u in (0..self.pairs).filter(|&u| s.count[u] >= 2) {
            pairs += 1;
            n += 2.0 * (s.lower[u] + s.higher[u]);
            o_cd += s.o_cd[u];
        }
        if pairs == 0 {
            return (None, 0);
        }
        // α = 1 − (n − 1)·D_o / D_e, D_o = 2·o_cd (both off-diagonal cells), D_e = 2·n_c·n_d.
        let n_c = n / 2.0;
        (Some(1.0 - (n - 1.0) * o_cd / (n_c * n_c)), pairs)
    }
}

/// The 95% percentile interval of α over `replicates` resamples of the coders.
fn bootstrap(coders: &[PairValues], replicates: usize, seed: u64) -> (Option<f64>, Option<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let units = Units::of(&coders.iter().collect::<Vec<_>>());
    let mut sums = Sums::default();
    let mut times = vec![0.0f64; coders.len()];
    let mut stats: Vec<f64> = (0..replicates)
        .filter_map(|_| {
            times.iter_mut().for_each(|t| *t = 0.0);
            for _ in 0..coders.len() {
                times[rng.random_range(0..coders.len())] += 1.0;
            }
            units.alpha(&times, &mut sums).0
        })
        .collect();
    // No replicates asked for (`--worth-replicates 0`), or too few gave an α.
    if stats.is_empty() || stats.len() < replicates / 2 {
        return (None, None);
    }
    let (low, high) = super::fk::percentile_95(&mut stats);
    (Some(low), Some(high))
}

/// Kendall's W and the Friedman test's p-value, over orders (best first) of one set of
/// items; none with fewer than two orders or two items, or orders of different sets.
pub fn kendall_w(orders: &[Vec<i64>]) -> Option<(f64, f64)> {
    let n = orders.first()?.len();
    let m = orders.len();
    if m < 2 || n < 2 {
        return None;
    }
    let mut items: Vec<i64> = orders[0].clone();
    items.sort_unstable();
    let index: HashMap<i64, usize> = items.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut sums = vec![0.0f64; n];
    for o in orders {
        let mut this: Vec<i64> = o.clone();
        this.sort_unstable();
        if this != items {
            return None;
        }
        for (rank, id) in o.iter().enumerate() {
            sums[index[id]] += (rank + 1) as f64;
        }
    }
    let (mf, nf) = (m as f64, n as f64);
    let mean = mf * (nf + 1.0) / 2.0;
    let s: f64 = sums.iter().map(|r| (r - mean).powi(2)).sum();
    let w = 12.0 * s / (mf * mf * (nf.powi(3) - nf));
    Some((w, chi2_sf(mf * (nf - 1.0) * w, nf - 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kendall_w_is_one_for_identical_orders_and_zero_for_cancelling_ones() {
        let (w, p) = kendall_w(&[vec![1, 2, 3], vec![1, 2, 3], vec![1, 2, 3]]).unwrap();
        assert!((w - 1.0).abs() < 1e-12 && p < 0.05, "{w} {p}");
        let (w, p) = kendall_w(&[vec![1, 2, 3], vec![3, 2, 1]]).unwrap();
        assert!(w.abs() < 1e-12 && (p - 1.0).abs() < 1e-12, "{w} {p}");
        assert_eq!(kendall_w(&[vec![1, 2, 3]]), None);
        assert_eq!(kendall_w(&[vec![1, 2, 3], vec![1, 2, 4]]), None);
    }

    #[test]
    fn alpha_is_one_when_all_agree_and_near_minus_one_for_two_opposed_halves() {
        let v = |lo: bool| vec![((1, 2), lo), ((1, 3), lo), ((2, 3), lo)];
        let same = [v(true), v(true), v(true)];
        assert_eq!(pairwise_alpha(&same), (Some(1.0), 3));
        // Two against two on every pair: each coder agrees with 1 of the 3 others.
        let split = [v(true), v(true), v(false), v(false)];
        let (a, _) = pairwise_alpha(&split);
        assert!(a.unwrap() < -0.2, "{a:?}");
        // Orientation does not matter: naming every pair the other way round gives the same α.
        let flipped: Vec<Vec<_>> =
            [v(true), v(false), v(true)].iter().map(|c| c.iter().map(|&(p, lo)| (p, !lo)).collect()).collect();
        assert_eq!(pairwise_alpha(&[v(true), v(false), v(true)]).0, pairwise_alpha(&flipped).0);
        // One coder per pair: nothing pairable.
        assert_eq!(pairwise_alpha(&[v(true)]), (None, 0));
        // A coder drawn twice is still one coder: their copies do not agree with each other.
        let mixed = [v(true), v(false), v(true)];
        let twice = alpha_of(mixed.iter().zip([2.0, 1.0, 1.0])).0.unwrap();
        let copies = pairwise_alpha(&[v(true), v(true), v(false), v(true)]).0.unwrap();
        assert!(twice < copies, "{twice} {copies}");
    }

    fn cand(id: i64, prompt: &str, text: &str) -> Candidate {
        Candidate {
            id,
            policy: "p".into(),
            prompt_id: prompt.into(),
            sample_index: id as u32,
            text: text.into(),
            cut: false,
        }
    }

    /// From answers to values: an order ranks every pair in it, a pick its text above the
    /// others shown, copies of one text are one response, and a participant's values are
    /// the majority of their answers.
    #[test]
    fn answers_become_pairwise_values_by_text_and_by_majority() {
        // Prompt q: texts x (ids 1 and 4, copies), y (2), z (3).
        let candidates = [cand(1, "q", "x"), cand(2, "q", "y"), cand(3, "q", "z"), cand(4, "q", "x")];
        let order = |p: &str, shown: Vec<i64>, ord: Vec<usize>| RankAnswer {
            participant: p.into(),
            prompt: "q".into(),
            choice: Some(ord[0]),
            shown,
            ordering: Some(ord),
        };
        let pick = |p: &str, shown: Vec<i64>, c: usize| RankAnswer {
            participant: p.into(),
            prompt: "q".into(),
            shown,
            choice: Some(c),
            ordering: None,
        };
        let answers = [
            // a: x > y > z.
            order("a", vec![3, 2, 4], vec![2, 1, 0]),
            // b: picks x (shown twice) over y: x > y only; then y over z twice and z over y once.
            pick("b", vec![4, 2, 1], 0),
            pick("b", vec![2, 3], 0),
            pick("b", vec![2, 3], 0),
            pick("b", vec![3, 2], 0),
            // c: z > y, once each way for x and y (no value).
            pick("c", vec![3, 2], 0),
            pick("c", vec![1, 2], 0),
            pick("c", vec![1, 2], 1),
        ];
        let nets = pairwise(&candidates, &answers, &[]);
        let q = &nets["q"];
        assert_eq!(q["a"], BTreeMap::from([((1, 2), 1), ((1, 3), 1), ((2, 3), 1)]));
        assert_eq!(q["b"], BTreeMap::from([((1, 2), 1), ((2, 3), 1)]));
        assert_eq!(q["c"], BTreeMap::from([((2, 3), -1), ((1, 2), 0)]));
        let rows = compute(&candidates, &answers, &[], &BTreeMap::new(), 50, 1);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        // Pairs (1,2): a, b agree; (2,3): a, b against c; (1,3): a alone, not pairable.
        assert_eq!((r.participants, r.pairs), (3, 2));
        let want = pairwise_alpha(&[
            vec![((1, 2), true), ((1, 3), true), ((2, 3), true)],
            vec![((1, 2), true), ((2, 3), true)],
            vec![((2, 3), false)],
        ]);
        assert_eq!(r.alpha, want.0);
        // Three participants: no interval; no whole orders: no W.
        assert_eq!((r.alpha_low, r.kendall_w, r.w_raters), (None, None, 0));
        // A best_of_k pick counts as a pick: d picks y over x and z.
        let bok = BestOfKAnswer {
            participant: "d".into(),
            prompt_id: "q".into(),
            policy_a: "p".into(),
            policy_b: "p".into(),
            k: 2,
            roles: Vec::new(),
            candidate_ids: vec![1, 2, 3],
            choice: Some(1),
            no_preference: false,
        };
        let nets = pairwise(&candidates, &[], &[bok]);
        assert_eq!(nets["q"]["d"], BTreeMap::from([((1, 2), -1), ((2, 3), 1)]));
    }
}

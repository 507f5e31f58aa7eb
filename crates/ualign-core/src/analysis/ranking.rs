//! Plackett–Luce rankings from choices. `mm_top1` is Hunter's MM algorithm for top-1 data
//! (a winner chosen from a shown set) with a Gamma(α+1, α)-style prior that keeps worths
//! finite for items never chosen; it follows choix's `mm_top1` step for step (parameters
//! are log-worths centred to mean 0, convergence on the L1 change), so fixtures computed
//! with choix check it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::store::RankAnswer;

/// One choice: the item picked and the items it was picked over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top1 {
    pub winner: usize,
    pub losers: Vec<usize>,
}

pub(super) fn exp_transform(params: &[f64]) -> Vec<f64> {
    let mean = params.iter().sum::<f64>() / params.len() as f64;
    let w: Vec<f64> = params.iter().map(|p| (p - mean).exp()).collect();
    let s: f64 = w.iter().sum();
    w.iter().map(|x| x * params.len() as f64 / s).collect()
}

/// Successive choices from one shown set: `ranked[0]` was chosen over everything after it,
/// then `ranked[1]` over the rest, and so on; `rest` were never chosen. A pick is one
/// ranked item; a full order of m items is m − 1 ranked items and the last as `rest`.
/// Kept together, the nested choice sets cost O(m) per MM step (suffix sums) instead of
/// O(m²) as separate top-1 choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choices {
    pub ranked: Vec<usize>,
    pub rest: Vec<usize>,
}

impl From<&Top1> for Choices {
    fn from(t: &Top1) -> Self {
        Choices { ranked: vec![t.winner], rest: t.losers.clone() }
    }
}

/// Log-worths (centred) of `n` items from top-1 choices. Errors if it does not converge
/// within `max_iter` steps (with α = 0 and an item that never wins, it cannot).
pub fn mm_top1(n: usize, data: &[Top1], alpha: f64, max_iter: usize, tol: f64) -> Result<Vec<f64>, String> {
    let data: Vec<Choices> = data.iter().map(Choices::from).collect();
    mm_from(vec![0.0; n], &data, alpha, max_iter, tol)
}

/// Hunter's MM over nested choices (the same fixed point as [`mm_top1`] on the choices
/// broken apart), started from the log-worths `params`: a nearby fit converges in few steps.
pub(crate) fn mm_from<D: std::borrow::Borrow<Choices>>(
    params: Vec<f64>,
    data: &[D],
    alpha: f64,
    max_iter: usize,
    tol: f64,
) -> Result<Vec<f64>, String> {
    let flat = FlatChoices::new(data.iter().map(|d| d.borrow()));
    mm_flat(params, &flat, &every(flat.len()), alpha, max_iter, tol)
}

/// Choices, each with the number of times it counts: a bootstrap sample draws some
/// participants several times and others not at all, and walking each drawn choice once
/// with its count costs ~63% of walking the draws.
pub(crate) type Selection = [(u32, f64)];

/// Every one of `n` choices, once.
pub(crate) fn every(n: usize) -> Vec<(u32, f64)> {
    (0..n as u32).map(|c| (c, 1.0)).collect()
}

/// A list of choice indexes with repeats, as counts (in index order).
#[cfg(test)]
fn counted(draws: &[u32]) -> Vec<(u32, f64)> {
    let mut sorted = draws.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u32, f64)> = Vec::new();
    for c in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == c => *n += 1.0,
            _ => out.push((c, 1.0)),
        }
    }
    out
}

/// Choices laid out contiguously for the MM loop: choice c covers
/// `items[start[c]..start[c + 1]]`, of which the first `ranked[c]` were chosen in turn.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlatChoices {
    items: Vec<u32>,
    start: Vec<u32>,
    ranked: Vec<u32>,
}

impl FlatChoices {
    pub(crate) fn new<'a>(data: impl IntoIterator<Item = &'a Choices>) -> Self {
        let mut f = FlatChoices { start: vec![0], ..Default::default() };
        for d in data {
            f.items.extend(d.ranked.iter().chain(&d.rest).map(|&i| i as u32));
            f.start.push(f.items.len() as u32);
            f.ranked.push(d.ranked.len() as u32);
        }
        f
    }

    pub(crate) fn len(&self) -> usize {
        self.ranked.len()
    }

    /// Choice c: the items chosen in turn, and the rest of its set.
    #[inline]
    pub(crate) fn get(&self, c: usize) -> (&[u32], &[u32]) {
        let (a, b) = (self.start[c] as usize, self.start[c + 1] as usize);
        self.items[a..b].split_at(self.ranked[c] as usize)
    }

    /// The choices `picks` (repeats allowed), in that order.
    pub(crate) fn select(&self, picks: impl IntoIterator<Item = usize>) -> Self {
        let mut f = FlatChoices { start: vec![0], ..Default::default() };
        for c in picks {
            let (a, b) = (self.start[c] as usize, self.start[c + 1] as usize);
            f.items.extend_from_slice(&self.items[a..b]);
            f.start.push(f.items.len() as u32);
            f.ranked.push(self.ranked[c]);
        }
        f
    }
}

/// Hunter's MM over the choices `select` (indexes into `data` with counts: a bootstrap
/// sample is a selection, not a copy).
pub(crate) fn mm_flat(
    mut params: Vec<f64>,
    data: &FlatChoices,
    select: &Selection,
    alpha: f64,
    max_iter: usize,
    tol: f64,
) -> Result<Vec<f64>, String> {
    let mut mm = MmStep::new(params.len(), data, select, alpha);
    let mut next = vec![0.0; params.len()];
    for _ in 0..max_iter {
        mm.step(&params, &mut next);
        let change: f64 = next.iter().zip(&params).map(|(a, b)| (a - b).abs()).sum();
        std::mem::swap(&mut params, &mut next);
        if !change.is_finite() {
            return Err("Plackett–Luce MM diverged (an item is never chosen and alpha is 0)".into());
        }
        if change <= tol {
            return Ok(params);
        }
    }
    Err(format!("Plackett–Luce MM did not converge in {max_iter} iterations"))
}

/// At most `steps` MM updates from `params` over the weighted choices `select` (weights
/// may be fractional: a latent class's share of each participant), stopping early once
/// the L1 change is at most `tol`; never an error (an EM's M-step need not converge).
/// Only the tests use it: the class-by-class M-step the fused one is checked against.
#[cfg(test)]
pub(crate) fn mm_improve(
    mut params: Vec<f64>,
    data: &FlatChoices,
    select: &Selection,
    alpha: f64,
    steps: usize,
    tol: f64,
) -> Vec<f64> {
    let mut mm = MmStep::new(params.len(), data, select, alpha);
    let mut next = vec![0.0; params.len()];
    for _ in 0..steps {
        mm.step(&params, &mut next);
        let change: f64 = next.iter().zip(&params).map(|(a, b)| (a - b).abs()).sum();
        if !change.is_finite() {
            break;
        }
        std::mem::swap(&mut params, &mut next);
        if change <= tol {
            break;
        }
    }
    params
}

/// The log-probability of successive choices under log-worths `theta`.
#[cfg(test)]
pub(crate) fn choices_loglik(theta: &[f64], c: &Choices) -> f64 {
    let mut set: f64 = c.rest.iter().map(|&i| theta[i].exp()).sum();
    let mut ll = 0.0;
    for &i in c.ranked.iter().rev() {
        set += theta[i].exp();
        ll += theta[i] - set.ln();
    }
    ll
}

/// One MM update θ ↦ F(θ) over a selection of choices, with its buffers.
struct MmStep<'a> {
    data: &'a FlatChoices,
    select: &'a Selection,
    alpha: f64,
    wins: Vec<f64>,
    denoms: Vec<f64>,
    suffix: Vec<f64>,
}

impl<'a> MmStep<'a> {
    fn new(n: usize, data: &'a FlatChoices, select: &'a Selection, alpha: f64) -> Self {
        let mut wins = vec![0.0; n];
        for &(c, times) in select {
            let (a, r) = (data.start[c as usize] as usize, data.ranked[c as usize] as usize);
            for &w in &data.items[a..a + r] {
                wins[w as usize] += times;
            }
        }
        Self { data, select, alpha, wins, denoms: vec![0.0; n], suffix: Vec::new() }
    }

    fn step(&mut self, params: &[f64], next: &mut [f64]) {
        let (data, denoms) = (self.data, &mut self.denoms);
        let weights = exp_transform(params);
        denoms.iter_mut().for_each(|d| *d = 0.0);
        for &(c, times) in self.select {
            let c = c as usize;
            let (a, b, r) = (data.start[c] as usize, data.start[c + 1] as usize, data.ranked[c] as usize);
            let (ranked, rest) = data.items[a..b].split_at(r);
            if self.suffix.len() < r {
                self.suffix.resize(r, 0.0);
            }
            let suffix = &mut self.suffix[..r];
            // suffix[j] = Σ weights of ranked[j..] and rest: the j-th choice set's total.
            let mut acc: f64 = rest.iter().map(|&l| weights[l as usize]).sum();
            for j in (0..r).rev() {
                acc += weights[ranked[j] as usize];
                suffix[j] = acc;
            }
            // Item ranked j is in choice sets 0..=j; the rest are in all of them.
            let mut cum = 0.0;
            for j in 0..r {
                cum += times / suffix[j];
                denoms[ranked[j] as usize] += cum;
            }
            for &l in rest {
                denoms[l as usize] += cum;
            }
        }
        for ((x, w), d) in next.iter_mut().zip(&self.wins).zip(denoms.iter()) {
            *x = ((w + self.alpha) / (d + self.alpha)).ln();
        }
        let mean = next.iter().sum::<f64>() / next.len() as f64;
        next.iter_mut().for_each(|x| *x -= mean);
    }
}

/// Bootstrap refits by a chord (fixed-Jacobian Newton) iteration on the MM fixed-point
/// equation θ = F_b(θ): θ ← θ + (I − J)⁻¹ (F_b(θ) − θ), J = ∂F/∂θ of the full data's MM
/// map at the full fit (central differences), which is close to every replicate's. It
/// stops by MM's own rule (‖F_b(θ) − θ‖₁ ≤ tol, returning F_b(θ)), so it finds the same
/// fixed point as plain MM, in 2–3 MM evaluations instead of ~9.
struct ChordRefit {
    fit: Vec<f64>,
    inv: Vec<Vec<f64>>,
}

impl ChordRefit {
    fn new(fit: &[f64], data: &FlatChoices, all: &Selection, alpha: f64) -> Option<Self> {
        let n = fit.len();
        let mut mm = MmStep::new(n, data, all, alpha);
        let h = 1e-5;
        let (mut up, mut down) = (vec![0.0; n], vec![0.0; n]);
        let mut a = vec![vec![0.0; n]; n];
        for j in 0..n {
            let mut t = fit.to_vec();
            t[j] += h;
            mm.step(&t, &mut up);
            t[j] -= 2.0 * h;
            mm.step(&t, &mut down);
            for (i, row) in a.iter_mut().enumerate() {
                row[j] = f64::from(u8::from(i == j)) - (up[i] - down[i]) / (2.0 * h);
            }
        }
        // (I − J)⁻¹ by columns, one solve per unit vector, then transposed into rows.
        let cols: Vec<Vec<f64>> = (0..n)
            .map(|j| super::equilibria::solve(a.clone(), (0..n).map(|i| f64::from(u8::from(i == j))).collect()))
            .collect::<Option<_>>()?;
        let inv = (0..n).map(|i| cols.iter().map(|c| c[i]).collect()).collect();
        Some(Self { fit: fit.to_vec(), inv })
    }

    /// The replicate's MM fixed point (to `tol`), or None if the chord steps do not settle
    /// (then plain MM is the fallback).
    fn refit(&self, data: &FlatChoices, sample: &Selection, alpha: f64, tol: f64) -> Option<Vec<f64>> {
        let n = self.fit.len();
        let mut mm = MmStep::new(n, data, sample, alpha);
        let mut theta = self.fit.clone();
        let mut f = vec![0.0; n];
        for _ in 0..30 {
            mm.step(&theta, &mut f);
            let g: Vec<f64> = f.iter().zip(&theta).map(|(a, b)| a - b).collect();
            let change: f64 = g.iter().map(|v| v.abs()).sum();
            if !change.is_finite() {
                return None;
            }
            if change <= tol {
                return Some(f);
            }
            for (t, row) in theta.iter_mut().zip(&self.inv) {
                *t += row.iter().zip(&g).map(|(r, g)| r * g).sum::<f64>();
            }
            let mean = theta.iter().sum::<f64>() / n as f64;
            theta.iter_mut().for_each(|v| *v -= mean);
        }
        None
    }
}

/// Items ordered by worth, best first (ties by index).
pub(crate) fn order_by_worth(params: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..params.len()).collect();
    idx.sort_by(|&a, &b| params[b].total_cmp(&params[a]).then(a.cmp(&b)));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_order_of_simulated_worths() {
        use rand::{Rng, SeedableRng};
        let worths = [4.0, 2.0, 1.0, 0.5];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut data = Vec::new();
        for _ in 0..4000 {
            // Choose among a random subset of 3 by Plackett–Luce probabilities.
            let mut set: Vec<usize> = (0..4).collect();
            set.remove(rng.random_range(0..4));
            let z: f64 = set.iter().map(|&i| worths[i]).sum();
            let mut u = rng.random::<f64>() * z;
            let mut winner = set[set.len() - 1];
            for &i in &set {
                if u < worths[i] {
                    winner = i;
                    break;
                }
                u -= worths[i];
            }
            data.push(Top1 { winner, losers: set.into_iter().filter(|&i| i != winner).collect() });
        }
        let p = mm_top1(4, &data, 0.01, 10_000, 1e-10).unwrap();
        assert_eq!(order_by_worth(&p), [0, 1, 2, 3]);
        // Ratios of worths within 10%.
        for (i, w) in worths.iter().enumerate() {
            let est = (p[i] - p[0]).exp() * worths[0];
            assert!((est / w - 1.0).abs() < 0.1, "item {i}: {est} vs {w}");
        }
    }

    #[test]
    fn copies_of_one_text_are_one_response_and_their_order_means_nothing() {
        // 6 is a copy of 5 and 8 of 7.
        let stand_for = |id: i64| match id {
            6 => 5,
            8 => 7,
            id => id,
        };
        let o = |shown: &[i64], pick: Option<i64>, ordering: Option<&[usize]>| RankObservation {
            shown: shown.to_vec(),
            pick,
            ordering: ordering.map(<[usize]>::to_vec),
        };
        let key = |p: &str| (p.to_string(), "x".to_string());
        let g = |swap: bool| -> BTreeMap<(String, String), Vec<RankObservation>> {
            let (a, b) = if swap { (6, 5) } else { (5, 6) };
            [
                (key("p1"), vec![o(&[a, 9, b, 7], None, Some(&[2, 3, 1, 0])), o(&[8, 9, 7], Some(8), None)]),
                (key("p2"), vec![o(&[7, a, b], Some(b), None), o(&[9, 8, a, 7], None, Some(&[0, 1, 2]))]),
                (key("p3"), vec![o(&[a, 9, 8], Some(9), None)]),
            ]
            .into_iter()
            .collect()
        };
        let texts = by_text(&g(false), stand_for);
        // Shown once where first shown; a text's place in an order is where it first comes.
        assert_eq!(texts[&key("p1")][0], o(&[5, 9, 7], None, Some(&[0, 2, 1])));
        assert_eq!(texts[&key("p1")][1], o(&[7, 9], Some(7), None));
        assert_eq!(texts[&key("p2")][1], o(&[9, 7, 5], None, Some(&[0, 1, 2])));
        // Which copy stood where, or was picked, changes no worth.
        let (w, swapped) = (population_worths(&texts, 20, 1), population_worths(&by_text(&g(true), stand_for), 20, 1));
        assert_eq!(w, swapped);
        assert_eq!(w.iter().map(|w| w.candidate).collect::<Vec<_>>(), [5, 7, 9]);
        assert_ne!(population_worths(&g(false), 20, 1), population_worths(&g(true), 20, 1), "copies as items do move");
    }

    #[test]
    fn nested_choices_give_the_same_fit_as_the_choices_broken_apart() {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut nested = Vec::new();
        let mut flat = Vec::new();
        for i in 0..60 {
            let mut o: Vec<usize> = (0..6).collect();
            o.shuffle(&mut rng);
            // Orders of 6, partial orders of 3 over 6 shown, and picks.
            let cut = [5, 3, 1][i % 3];
            let (ranked, rest) = o.split_at(cut);
            for j in 0..ranked.len() {
                flat.push(Top1 { winner: ranked[j], losers: ranked[j + 1..].iter().chain(rest).copied().collect() });
            }
            nested.push(Choices { ranked: ranked.to_vec(), rest: rest.to_vec() });
        }
        let a = mm_top1(6, &flat, 0.1, 100_000, 1e-12).unwrap();
        let b = mm_from(vec![0.0; 6], &nested, 0.1, 100_000, 1e-12).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn chord_refits_reach_the_same_fixed_points_as_plain_mm() {
        use rand::seq::SliceRandom;
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        let worths = [3.0, 2.0, 1.5, 1.0, 0.7, 0.5, 0.3, 0.2];
        let data: Vec<Choices> = (0..200)
            .map(|_| {
                // A noisy order: sort by worth times a random factor.
                let mut o: Vec<usize> = (0..8).collect();
                o.shuffle(&mut rng);
                let keys: Vec<f64> = (0..8).map(|i| worths[i] * rng.random::<f64>()).collect();
                o.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]));
                Choices { ranked: o[..7].to_vec(), rest: vec![o[7]] }
            })
            .collect();
        let flat = FlatChoices::new(&data);
        let all = every(data.len());
        let fit = mm_flat(vec![0.0; 8], &flat, &all, 0.1, 100_000, 1e-12).unwrap();
        let chord = ChordRefit::new(&fit, &flat, &all, 0.1).unwrap();
        for _ in 0..10 {
            let draws: Vec<u32> = (0..data.len()).map(|_| rng.random_range(0..data.len() as u32)).collect();
            let sample = counted(&draws);
            let a = chord.refit(&flat, &sample, 0.1, 1e-10).unwrap();
            let b = mm_flat(fit.clone(), &flat, &sample, 0.1, 100_000, 1e-10).unwrap();
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-8, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn counted_selection_fits_like_the_copies_it_stands_for() {
        let data: Vec<Choices> = vec![
            Choices { ranked: vec![0, 2], rest: vec![1, 3] },
            Choices { ranked: vec![1, 0, 3], rest: vec![2] },
            Choices { ranked: vec![3], rest: vec![0, 1, 2] },
            Choices { ranked: vec![2, 1], rest: vec![3, 0] },
        ];
        let draws = [2u32, 0, 2, 2, 3, 0];
        let copies: Vec<Choices> = draws.iter().map(|&c| data[c as usize].clone()).collect();
        let plain = mm_flat(vec![0.0; 4], &FlatChoices::new(&copies), &every(copies.len()), 0.1, 100_000, 1e-13);
        let sel = counted(&draws);
        assert_eq!(sel, vec![(0, 2.0), (2, 3.0), (3, 1.0)]);
        let weighted = mm_flat(vec![0.0; 4], &FlatChoices::new(&data), &sel, 0.1, 100_000, 1e-13);
        for (a, b) in plain.unwrap().iter().zip(&weighted.unwrap()) {
            assert!((a - b).abs() < 1e-11, "{a} vs {b}");
        }
    }

    #[test]
    fn a_never_chosen_item_needs_the_prior() {
        let data = vec![Top1 { winner: 0, losers: vec![1] }, Top1 { winner: 1, losers: vec![2] }];
        assert!(mm_top1(3, &data, 0.0, 2000, 1e-8).is_err());
        let p = mm_top1(3, &data, 0.1, 100_000, 1e-10).unwrap();
        assert_eq!(order_by_worth(&p), [0, 1, 2]);
    }
}

/// One participant's ranking of the candidates they ranked for one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranking {
    pub participant: String,
    pub prompt: String,
    /// Candidate ids, best first.
    pub order: Vec<i64>,
    /// `order`: one full order as given; `pl_order`: several orders combined by a
    /// Plackett–Luce fit (each order broken into successive choices); `pl_top1`: a
    /// Plackett–Luce fit of favourite picks (Hunter's MM, prior α = 0.1); `pl_mixture`: the
    /// participant's expected ranking of the whole pool under the latent-class model.
    pub method: &'static str,
    /// For `pl_mixture`: the posterior probability of the participant's likeliest class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certainty: Option<f64>,
}

/// What one answered rank trial showed (candidate ids in displayed order) and the answer:
/// an ordering of the displayed slots, or the slot picked.
#[derive(Debug, Clone, PartialEq)]
pub struct RankObservation {
    pub(crate) shown: Vec<i64>,
    pub(crate) pick: Option<i64>,
    pub(crate) ordering: Option<Vec<usize>>,
}

/// Answered rank trials per (participant, prompt), in trial order.
pub fn rank_observations(answers: &[RankAnswer]) -> BTreeMap<(String, String), Vec<RankObservation>> {
    let mut groups: BTreeMap<(String, String), Vec<RankObservation>> = BTreeMap::new();
    for a in answers {
        let pick = if a.ordering.is_some() { None } else { a.choice.and_then(|c| a.shown.get(c).copied()) };
        groups.entry((a.participant.clone(), a.prompt.clone())).or_default().push(RankObservation {
            shown: a.shown.clone(),
            pick,
            ordering: a.ordering.clone(),
        });
    }
    groups
}

/// The observations with each candidate replaced by the one that stands for its text
/// (`stand_for`; an id it does not name stands for itself), so that copies of one text are
/// one response: shown once (where first shown), picked as the text, ordered where the
/// text first comes.
pub(crate) fn by_text(
    groups: &BTreeMap<(String, String), Vec<RankObservation>>,
    stand_for: impl Fn(i64) -> i64,
) -> BTreeMap<(String, String), Vec<RankObservation>> {
    let one = |o: &RankObservation| {
        let texts: Vec<i64> = o.shown.iter().map(|&id| stand_for(id)).collect();
        let mut shown: Vec<i64> = Vec::with_capacity(texts.len());
        for &t in &texts {
            if !shown.contains(&t) {
                shown.push(t);
            }
        }
        let slot = |t: i64| shown.iter().position(|&x| x == t);
        let ordering = o.ordering.as_ref().map(|ord| {
            let mut slots: Vec<usize> = Vec::with_capacity(ord.len());
            for s in ord.iter().filter_map(|&s| texts.get(s).and_then(|&t| slot(t))) {
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
            slots
        });
        RankObservation { pick: o.pick.map(&stand_for), ordering, shown }
    };
    groups.iter().map(|(key, obs)| (key.clone(), obs.iter().map(one).collect())).collect()
}

/// The choices an observation makes (an order of m items: m − 1 nested choices; a pick:
/// one), as indexes given by `index`.
pub(crate) fn choices(o: &RankObservation, index: impl Fn(i64) -> usize) -> Option<Choices> {
    match &o.ordering {
        Some(ord) => {
            let mut ranked: Vec<usize> = ord.iter().filter_map(|&s| o.shown.get(s).map(|&id| index(id))).collect();
            let last = ranked.pop()?;
            (!ranked.is_empty()).then_some(Choices { ranked, rest: vec![last] })
        }
        None => {
            let w = index(o.pick?);
            Some(Choices { ranked: vec![w], rest: o.shown.iter().map(|&id| index(id)).filter(|&i| i != w).collect() })
        }
    }
}

/// How [`ranking_of`] ranks one participant's observations of a prompt.
pub(crate) fn method_of(obs: &[RankObservation]) -> &'static str {
    let all_orders = obs.iter().all(|o| o.ordering.is_some());
    match (all_orders, obs.len()) {
        (true, 1) => "order",
        (true, _) => "pl_order",
        (false, _) => "pl_top1",
    }
}

/// A participant's ranking of a prompt from their observations of it (None where the
/// Plackett–Luce fit fails).
pub(crate) fn ranking_of((participant, prompt): &(String, String), obs: &[RankObservation]) -> Option<Ranking> {
    let (participant, prompt) = (participant.clone(), prompt.clone());
    let method = method_of(obs);
    if method == "order" {
        let o = &obs[0];
        let order = o
            .ordering
            .as_ref()
            .map(|ord| ord.iter().filter_map(|&s| o.shown.get(s).copied()).collect())
            .unwrap_or_default();
        return Some(Ranking { participant, prompt, order, method, certainty: None });
    }
    let mut items: Vec<i64> = obs.iter().flat_map(|o| o.shown.iter().copied()).collect();
    items.sort_unstable();
    items.dedup();
    let index = |id: i64| items.binary_search(&id).unwrap_or(0);
    let data: Vec<Choices> = obs.iter().filter_map(|o| choices(o, index)).collect();
    let params = mm_from(vec![0.0; items.len()], &data, 0.1, 100_000, 1e-9).ok()?;
    let order = order_by_worth(&params).into_iter().map(|i| items[i]).collect();
    Some(Ranking { participant, prompt, order, method, certainty: None })
}

/// Per-participant rankings from grouped observations.
pub fn rankings_of(groups: &BTreeMap<(String, String), Vec<RankObservation>>) -> Vec<Ranking> {
    groups.iter().filter_map(|(key, obs)| ranking_of(key, obs)).collect()
}

/// A candidate's Plackett–Luce log-worth in the whole population's answers for its prompt
/// (centred to mean 0 over the candidates shown for that prompt; given observations
/// `by_text`, a response's, named by the smallest id of its text), with a 95% percentile
/// interval from a bootstrap over participants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Worth {
    pub prompt: String,
    pub(crate) candidate: i64,
    pub log_worth: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Participants with rank answers for this prompt.
    pub(crate) participants: usize,
}

/// Population Plackett–Luce worths per prompt (prior α = 0.1), `replicates` bootstrap refits.
pub(crate) fn population_worths(
    groups: &BTreeMap<(String, String), Vec<RankObservation>>,
    replicates: usize,
    seed: u64,
) -> Vec<Worth> {
    let mut by_prompt: BTreeMap<&str, Vec<&[RankObservation]>> = BTreeMap::new();
    for ((_, prompt), obs) in groups {
        by_prompt.entry(prompt.as_str()).or_default().push(obs);
    }
    // Prompts are independent: fitted in parallel, collected in prompt order.
    use rayon::prelude::*;
    let by_prompt: Vec<(&str, Vec<&[RankObservation]>)> = by_prompt.into_iter().collect();
    by_prompt
        .par_iter()
        .enumerate()
        .flat_map_iter(|(pi, (prompt, people))| prompt_worths(pi, prompt, people, replicates, seed))
        .collect()
}

fn prompt_worths(pi: usize, prompt: &str, people: &[&[RankObservation]], replicates: usize, seed: u64) -> Vec<Worth> {
    use rand::{Rng, SeedableRng};
    let mut out = Vec::new();
    let mut items: Vec<i64> = people.iter().flat_map(|obs| obs.iter().flat_map(|o| o.shown.iter().copied())).collect();
    items.sort_unstable();
    items.dedup();
    let index = |id: i64| items.binary_search(&id).unwrap_or(0);
    // Every participant's choices, contiguous; a participant is a range of choice indexes.
    let per_person: Vec<Vec<Choices>> =
        people.iter().map(|obs| obs.iter().filter_map(|o| choices(o, index)).collect()).collect();
    let flat = FlatChoices::new(per_person.iter().flatten());
    let mut ranges = Vec::with_capacity(per_person.len());
    let mut next = 0u32;
    for p in &per_person {
        ranges.push(next..next + p.len() as u32);
        next += p.len() as u32;
    }
    let all = every(next as usize);
    let Ok(fit) = mm_flat(vec![0.0; items.len()], &flat, &all, 0.1, 100_000, 1e-9) else { return out };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(crate::seed::worth_bootstrap(seed, pi));
    let mut draws: Vec<Vec<f64>> = vec![Vec::with_capacity(replicates); items.len()];
    let chord = ChordRefit::new(&fit, &flat, &all, 0.1);
    let mut sample: Vec<(u32, f64)> = Vec::new();
    let mut times = vec![0u32; ranges.len()];
    for _ in 0..replicates {
        times.iter_mut().for_each(|t| *t = 0);
        for _ in 0..ranges.len() {
            times[rng.random_range(0..ranges.len())] += 1;
        }
        sample.clear();
        for (range, &t) in ranges.iter().zip(&times) {
            sample.extend(range.clone().filter(|_| t > 0).map(|c| (c, f64::from(t))));
        }
        // Replicates only feed percentiles whose Monte Carlo error (~1e-2 at 200 replicates)
        // dwarfs a 1e-4 convergence tolerance; started from the full fit they need few steps.
        let refit = chord.as_ref().and_then(|c| c.refit(&flat, &sample, 0.1, 1e-4));
        if let Some(b) = refit.map_or_else(|| mm_flat(fit.clone(), &flat, &sample, 0.1, 100_000, 1e-4).ok(), Some) {
            for (d, v) in draws.iter_mut().zip(b) {
                d.push(v);
            }
        }
    }
    for (i, id) in items.iter().enumerate() {
        let (lo, hi) = percentile_interval(&mut draws[i]);
        out.push(Worth {
            prompt: prompt.to_string(),
            candidate: *id,
            log_worth: fit[i],
            ci_low: lo,
            ci_high: hi,
            participants: per_person.len(),
        });
    }
    out
}

/// The 2.5% and 97.5% percentiles; NaN when there are no draws.
fn percentile_interval(d: &mut [f64]) -> (f64, f64) {
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    d.sort_by(f64::total_cmp);
    let at = |q: f64| d[((q * (d.len() - 1) as f64).round() as usize).min(d.len() - 1)];
    (at(0.025), at(0.975))
}

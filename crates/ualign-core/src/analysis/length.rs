//! Length control and the no-preference rate of an f(k) row: one Davidson-type
//! conditional-logit model per (A, B, k) row, fitted to every answered trial.
//!
//! A trial shows distinct texts t (copies of one text are one option, as in the game:
//! participants choose texts, not slots). Text t has A's share s_t (1 in A's slots only, 0
//! in B's only, m/(m+1) in m of A's slots and B's: its slot-split score) and a relative
//! length x_t = ℓ_t / mean ℓ − 1 over the trial's distinct texts (characters as shown; 0
//! when all are equally long, Chatbot Arena's normalised length difference for two). The
//! participant picks t with probability ∝ exp(α·s_t + β·x_t), or answers "no preference"
//! with probability ∝ ν·exp(mean of the texts' α·s_t + β·x_t) — Davidson's (1970) tie
//! model, the geometric mean of the shown worths, for k + 1 options. α is A's advantage
//! beyond length, β the pull of a longer text, ν the tendency to declare no preference.
//!
//! The **length-controlled f(k)** is the model's rate with β set to 0, averaged over the
//! trials as they were shown (their copies and shares), under today's scoring (no
//! preference = 1/2): what f(k) would be if every candidate were as long as the others.
//! Beside it, the same model's rate at the lengths shown (`rate_fitted`) checks the fit.
//!
//! Intervals: a cluster-robust sandwich over participants (M-estimation with the rate's
//! own estimating equation stacked onto the model's scores, so the trials' composition is
//! resampled too), Wald on the rate and β, on log ν for ν. A weak normal prior (sd 10)
//! keeps the fit finite where A always wins or nobody ever prefers a longer text; it moves
//! nothing that the data determine.

use serde::Serialize;

use super::equilibria::solve;
use super::fk::MIN_CLUSTER_PARTICIPANTS;

/// What the length-control table is, under it.
pub const NOTE: &str = "(lengths equal: the model's f(k) had every candidate been as long as the others, no preference = 1/2; β: log-odds a text gains per unit of length relative to the trial's mean (characters); A/B: mean length of A's candidates over B's; ν/(2+ν) is how often two equally good, equally long candidates get \"no preference\"; 95% intervals: sandwich over participants and prompts)";

/// The fewest prompts for which the length control judges a row: length is a property of
/// a text, so its pull is told from texts that are simply liked only across many texts.
pub const MIN_PROMPTS: usize = 20;

/// Why a row with fewer than [`MIN_PROMPTS`] prompts gets no verdict.
pub const FEW_PROMPTS: &str = "fewer than 20 prompts: too few texts to tell a pull of length from texts that are liked and happen to be long, so no verdict is given and the intervals may be too narrow";

/// Why a row's length control has no intervals.
pub const TOO_FEW: &str = "fewer than 20 participants: too few to estimate between-participant spread, so the length control has no intervals";

/// One distinct text a trial showed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextOption {
    /// A's share of the text's slots: its slot-split score for A.
    pub(crate) a_share: f64,
    /// How many of A's slots showed it.
    pub(crate) a_slots: f64,
    /// Its length in characters.
    pub(crate) length: f64,
}

/// A trial as the model sees it: its distinct texts and what was chosen.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChoiceSet {
    pub(crate) options: Vec<TextOption>,
    /// The text chosen; none for "no preference".
    pub(crate) chosen: Option<usize>,
}

/// A trial to fit: (participant, prompt) and its choice set.
pub(crate) type Trial<'a> = ((&'a str, &'a str), &'a ChoiceSet);

/// The length-controlled rate and the tie model of one f(k) row. NaN is null in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthControl {
    /// f(k) had every shown candidate been as long as the others (no preference = 1/2).
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    /// The model's rate at the lengths shown: near the observed rate where it fits.
    pub rate_fitted: f64,
    /// β: the log-odds a text gains per unit of relative length (0.1 = 10% longer than
    /// the trial's mean gains 0.1·β). NaN where lengths never differ within a trial.
    pub length_coef: f64,
    pub length_coef_low: f64,
    pub length_coef_high: f64,
    /// Mean length of A's shown candidates over B's.
    pub length_ratio: f64,
    /// Trials answered "no preference", as a share.
    pub no_preference_share: f64,
    /// Davidson's ν; 0 where nobody answered "no preference" or it was not offered.
    pub nu: f64,
    pub nu_low: f64,
    pub nu_high: f64,
    /// ν/(2+ν): how often "no preference" is the answer to two equally good, equally long
    /// candidates.
    pub tie_at_equal: f64,
    /// What length does to the row's f(k), where its intervals say (`note` says how).
    pub effect: Option<LengthEffect>,
    /// Why an interval is missing, or what length does to the row.
    pub note: Option<String>,
}

/// What length does to an f(k) row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthEffect {
    /// f(k)'s interval excludes 1/2; with lengths equal, the interval does not.
    Explains,
    /// The interval with lengths equal excludes the rate as shown.
    Moves,
}

/// The prior's precision (1/sd², sd = 10) on α, β and log ν.
const PRIOR: f64 = 0.01;
const Z95: f64 = 1.959_963_984_540_054;

/// Parameters (α, β, log ν); `free` says which are fitted (the others stay 0, and log ν
/// is left out altogether where ties are not modelled).
struct Model {
    free: [bool; 3],
    ties: bool,
}

/// One trial's outcome features z (α, β, log ν), relative lengths and scores, computed once.
#[derive(Clone)]
struct Prepared {
    z: Vec<[f64; 3]>,
    /// Each outcome's score for A (the tie's is 1/2).
    score: Vec<f64>,
    /// The observed outcome.
    obs: usize,
}

fn prepare(set: &ChoiceSet, ties: bool) -> Option<Prepared> {
    let n = set.options.len();
    if n == 0 {
        return None;
    }
    let mean = set.options.iter().map(|o| o.length).sum::<f64>() / n as f64;
    let mut z: Vec<[f64; 3]> =
        set.options.iter().map(|o| [o.a_share, if mean > 0.0 { o.length / mean - 1.0 } else { 0.0 }, 0.0]).collect();
    let mut score: Vec<f64> = set.options.iter().map(|o| o.a_share).collect();
    if ties {
        // The tie's index is the texts' mean; the mean relative length is 0 by construction.
        let s_mean = score.iter().sum::<f64>() / n as f64;
        z.push([s_mean, 0.0, 1.0]);
        score.push(0.5);
    }
    let obs = match set.chosen {
        Some(c) if c < n => c,
        None if ties => n,
        _ => return None,
    };
    Some(Prepared { z, score, obs })
}

/// Outcome probabilities under θ, with β's contribution scaled by `beta_on` (0 or 1).
fn probs(p: &Prepared, theta: &[f64; 3], beta_on: f64) -> Vec<f64> {
    let u: Vec<f64> = p.z.iter().map(|z| theta[0] * z[0] + beta_on * theta[1] * z[1] + theta[2] * z[2]).collect();
    let top = u.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = u.iter().map(|v| (v - top).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

impl Model {
    fn dims(&self) -> Vec<usize> {
        (0..3).filter(|&i| self.free[i]).collect()
    }

    /// Penalised log-likelihood, its gradient and Hessian over the free dimensions.
    fn evaluate(&self, data: &[Prepared], theta: &[f64; 3]) -> (f64, Vec<f64>, Vec<Vec<f64>>) {
        let d = self.dims();
        let mut ll = -0.5 * PRIOR * d.iter().map(|&i| theta[i] * theta[i]).sum::<f64>();
        let mut g: Vec<f64> = d.iter().map(|&i| -PRIOR * theta[i]).collect();
        let mut h = vec![vec![0.0; d.len()]; d.len()];
        for (a, row) in h.iter_mut().enumerate() {
            row[a] = -PRIOR;
        }
        for p in data {
            let pr = probs(p, theta, 1.0);
            ll += pr[p.obs].max(1e-300).ln();
            let mean: Vec<f64> = d.iter().map(|&i| pr.iter().zip(&p.z).map(|(q, z)| q * z[i]).sum()).collect();
            for (a, &i) in d.iter().enumerate() {
                g[a] += p.z[p.obs][i] - mean[a];
                for (b, &j) in d.iter().enumerate() {
                    let second: f64 = pr.iter().zip(&p.z).map(|(q, z)| q * z[i] * z[j]).sum();
                    h[a][b] -= second - mean[a] * mean[b];
                }
            }
        }
        (ll, g, h)
    }

    /// The penalised maximum: Newton's method with step halving (the objective is
    /// strictly concave, so it converges from 0).
    fn fit(&self, data: &[Prepared]) -> [f64; 3] {
        let d = self.dims();
        let mut theta = [0.0; 3];
        let (mut ll, mut g, mut h) = self.evaluate(data, &theta);
        for _ in 0..100 {
            let neg: Vec<Vec<f64>> = h.iter().map(|r| r.iter().map(|v| -v).collect()).collect();
            let Some(step) = solve(neg, g.clone()) else { break };
            let mut scale = 1.0;
            let mut improved = false;
            for _ in 0..40 {
                let mut next = theta;
                for (a, &i) in d.iter().enumerate() {
                    next[i] = theta[i] + scale * step[a];
                }
                let (nll, ng, nh) = self.evaluate(data, &next);
                if nll >= ll - 1e-12 {
                    improved = nll > ll + 1e-13;
                    (theta, ll, g, h) = (next, nll, ng, nh);
                    break;
                }
                scale /= 2.0;
            }
            if !improved || g.iter().all(|v| v.abs() < 1e-10 * (1.0 + data.len() as f64)) {
                break;
            }
        }
        theta
    }
}

/// Inverts a small matrix column by column; none if singular.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let n = m.len();
    let mut cols = Vec::with_capacity(n);
    for j in 0..n {
        let e: Vec<f64> = (0..n).map(|i| if i == j { 1.0 } else { 0.0 }).collect();
        cols.push(solve(m.to_vec(), e)?);
    }
    Some((0..n).map(|i| (0..n).map(|j| cols[j][i]).collect()).collect())
}

/// Fits one row's model to its trials (`participant` clusters them) and reports it.
pub(crate) fn fit(trials: &[Trial], ties_offered: bool) -> Option<LengthControl> {
    let any_tie = ties_offered && trials.iter().any(|(_, s)| s.chosen.is_none());
    let (who, data): (Vec<(&str, &str)>, Vec<Prepared>) =
        trials.iter().filter_map(|(who, s)| Some((*who, prepare(s, any_tie)?))).unzip();
    if data.is_empty() {
        return None;
    }
    let varies = |i: usize| {
        data.iter().any(|p| {
            let texts = &p.z[..p.z.len() - usize::from(any_tie)];
            texts.iter().any(|z| (z[i] - texts[0][i]).abs() > 1e-12)
        })
    };
    let model = Model { free: [varies(0), varies(1), any_tie], ties: any_tie };
    let theta = model.fit(&data);
    let n = data.len() as f64;
    let rate_at = |beta_on: f64| {
        data.iter()
            .map(|p| probs(p, &theta, beta_on).iter().zip(&p.score).map(|(q, s)| q * s).sum::<f64>())
            .sum::<f64>()
            / n
    };
    let rate = rate_at(0.0);
    let participants = who.iter().map(|w| w.0).collect::<std::collections::BTreeSet<&str>>().len();
    let prompts = who.iter().map(|w| w.1).collect::<std::collections::BTreeSet<&str>>().len();
    let cov =
        (participants >= MIN_CLUSTER_PARTICIPANTS).then(|| sandwich(&model, (&who, &data), &theta, rate)).flatten();
    let (a_len, b_len) = side_lengths(trials);
    let ties = trials.iter().filter(|(_, s)| s.chosen.is_none()).count();
    // A variance that came out NaN stays NaN (max would make it 0, a zero-width interval).
    let se =
        |i: usize| cov.as_ref().map_or(f64::NAN, |c| if c[i].is_finite() { c[i].max(0.0).sqrt() } else { f64::NAN });
    let dims = model.dims();
    let at = |param: usize| dims.iter().position(|&i| i == param);
    let (se_rate, se_beta, se_gamma) = (se(dims.len()), at(1).map_or(f64::NAN, se), at(2).map_or(f64::NAN, se));
    let nan_unless = |ok: bool, v: f64| if ok { v } else { f64::NAN };
    let nu = if model.ties { theta[2].exp() } else { 0.0 };
    let note = if participants < MIN_CLUSTER_PARTICIPANTS {
        Some(TOO_FEW.to_string())
    } else if !model.free[1] {
        Some("lengths never differ within a trial: nothing to control".to_string())
    } else if prompts < MIN_PROMPTS {
        Some(FEW_PROMPTS.to_string())
    } else {
        None
    };
    Some(LengthControl {
        rate,
        // NaN (no interval) stays NaN: f64::max would turn it into the bound.
        low: if se_rate.is_finite() { (rate - Z95 * se_rate).max(0.0) } else { f64::NAN },
        high: if se_rate.is_finite() { (rate + Z95 * se_rate).min(1.0) } else { f64::NAN },
        rate_fitted: rate_at(1.0),
        length_coef: nan_unless(model.free[1], theta[1]),
        length_coef_low: theta[1] - Z95 * se_beta,
        length_coef_high: theta[1] + Z95 * se_beta,
        length_ratio: a_len / b_len,
        no_preference_share: ties as f64 / trials.len() as f64,
        nu,
        nu_low: (theta[2] - Z95 * se_gamma).exp(),
        nu_high: (theta[2] + Z95 * se_gamma).exp(),
        tie_at_equal: nu / (2.0 + nu),
        effect: None,
        note,
    })
}

/// What length does to a row with observed `rate` in [`low`, `high`], if anything: it
/// explains the row's departure from 1/2, or moves the rate beyond the controlled
/// interval. Only where β's interval excludes 0 (the pull of length is real).
pub(crate) fn verdict(lc: &LengthControl, rate: f64, (low, high): (f64, f64)) -> Option<(LengthEffect, String)> {
    let known = [lc.low, lc.high, lc.length_coef_low, lc.length_coef_high, low, high];
    if !known.iter().all(|v| v.is_finite()) || (lc.length_coef_low <= 0.0 && lc.length_coef_high >= 0.0) {
        return None;
    }
    let pull = format!(
        "A's candidates are {:.2}× as long as B's, and a text 10% longer than the trial's mean has {:.2}× the odds of being picked",
        lc.length_ratio,
        (0.1 * lc.length_coef).exp()
    );
    let with = format!("{:.3} [{:.3}, {:.3}]", lc.rate, lc.low, lc.high);
    if (low > 0.5 || high < 0.5) && lc.low <= 0.5 && lc.high >= 0.5 {
        Some((
            LengthEffect::Explains,
            format!(
                "length explains the effect: f(k) {rate:.3} [{low:.3}, {high:.3}] excludes 1/2, with lengths equal {with} does not ({pull})"
            ),
        ))
    } else if rate < lc.low || rate > lc.high {
        Some((
            LengthEffect::Moves,
            format!("length moves f(k): {rate:.3} as shown, {with} with lengths equal ({pull})"),
        ))
    } else {
        None
    }
}

/// Mean length of A's and of B's shown candidates (per slot: a text in three of A's slots
/// counts three times, as the participant saw it three times).
fn side_lengths(trials: &[Trial]) -> (f64, f64) {
    let (mut a, mut na, mut b, mut nb) = (0.0, 0.0, 0.0, 0.0);
    for (_, s) in trials {
        for o in &s.options {
            let (m, in_b) = (o.a_slots, if o.a_share < 1.0 { 1.0 } else { 0.0 });
            a += m * o.length;
            na += m;
            b += in_b * o.length;
            nb += in_b;
        }
    }
    (a / na, b / nb)
}

/// The cluster-robust covariance of (free θ…, rate), its diagonal: J⁻¹ M J⁻ᵀ with the
/// rate's estimating equation g_lc(trial; θ) − rate stacked onto the scores, and M
/// two-way (Cameron, Gelbach & Miller 2011): participants' sums plus prompts' sums less
/// the (participant, prompt) cells', each with its G/(G−1). Prompts are clusters because
/// their texts are shared: a text everyone happens to like and that happens to be long
/// moves every participant's answers alike, and participants alone would not see it.
/// Where the two-way diagonal falls below the participants' alone, the latter stands.
fn sandwich(
    model: &Model,
    (who, data): (&[(&str, &str)], &[Prepared]),
    theta: &[f64; 3],
    rate: f64,
) -> Option<Vec<f64>> {
    use std::collections::BTreeMap;
    let dims = model.dims();
    let d = dims.len();
    let mut jac = vec![vec![0.0; d + 1]; d + 1];
    let mut sums: [BTreeMap<(&str, &str), Vec<f64>>; 3] = Default::default();
    for (&(person, prompt), p) in who.iter().zip(data) {
        let pr = probs(p, theta, 1.0);
        let lc = probs(p, theta, 0.0);
        let mut psi = vec![0.0; d + 1];
        let mean: Vec<f64> = dims.iter().map(|&i| pr.iter().zip(&p.z).map(|(q, z)| q * z[i]).sum()).collect();
        let v_bar: f64 = lc.iter().zip(&p.score).map(|(q, s)| q * s).sum();
        for (a, &i) in dims.iter().enumerate() {
            psi[a] = p.z[p.obs][i] - mean[a];
            for (b, &j) in dims.iter().enumerate() {
                let second: f64 = pr.iter().zip(&p.z).map(|(q, z)| q * z[i] * z[j]).sum();
                jac[a][b] -= second - mean[a] * mean[b];
            }
            // ∂g_lc/∂θ_i: Σ p_j (v_j − v̄) z_ji, β not entering (its features count 0).
            if i != 1 {
                jac[d][a] += lc.iter().zip(&p.score).zip(&p.z).map(|((q, s), z)| q * (s - v_bar) * z[i]).sum::<f64>();
            }
        }
        psi[d] = v_bar - rate;
        jac[d][d] -= 1.0;
        for (map, key) in sums.iter_mut().zip([(person, ""), ("", prompt), (person, prompt)]) {
            let acc = map.entry(key).or_insert_with(|| vec![0.0; d + 1]);
            acc.iter_mut().zip(&psi).for_each(|(x, y)| *x += y);
        }
    }
    for (a, row) in jac.iter_mut().enumerate().take(d) {
        row[a] -= PRIOR;
    }
    let inv = invert(&jac)?;
    // The diagonal of inv · M · invᵀ for the clusters of `map`.
    let diag = |map: &BTreeMap<(&str, &str), Vec<f64>>| -> Vec<f64> {
        let g = map.len() as f64;
        let scale = if g > 1.0 { g / (g - 1.0) } else { 0.0 };
        (0..=d)
            .map(|a| map.values().map(|s| (0..=d).map(|i| inv[a][i] * s[i]).sum::<f64>().powi(2)).sum::<f64>() * scale)
            .collect()
    };
    let [by_person, by_prompt, by_cell] = sums.each_ref().map(diag);
    Some((0..=d).map(|a| (by_person[a] + by_prompt[a] - by_cell[a]).max(by_person[a])).collect())
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// `n` trials of k A-texts and one B-text with random lengths, answered by the model
    /// itself with (α, β, ν), `per` trials per participant.
    fn simulated(n: usize, k: usize, (alpha, beta, nu): (f64, f64, f64), seed: u64) -> Vec<(String, ChoiceSet)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let options: Vec<TextOption> = (0..=k)
                    .map(|j| TextOption {
                        a_share: if j < k { 1.0 } else { 0.0 },
                        a_slots: if j < k { 1.0 } else { 0.0 },
                        // A writes longer texts than B.
                        length: rng.random_range(20.0..200.0) * if j < k { 1.5 } else { 1.0 },
                    })
                    .collect();
                let mean = options.iter().map(|o| o.length).sum::<f64>() / options.len() as f64;
                let eta: Vec<f64> =
                    options.iter().map(|o| alpha * o.a_share + beta * (o.length / mean - 1.0)).collect();
                let mut w: Vec<f64> = eta.iter().map(|e| e.exp()).collect();
                w.push(nu * (eta.iter().sum::<f64>() / eta.len() as f64).exp());
                let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
                let pick = w
                    .iter()
                    .position(|x| {
                        u -= x;
                        u < 0.0
                    })
                    .unwrap_or(k);
                // The last outcome is "no preference".
                let chosen = (pick <= k).then_some(pick);
                (format!("p{}", i / 10), ChoiceSet { options, chosen })
            })
            .collect()
    }

    /// The trials with 25 prompts in turn.
    fn borrowed(v: &[(String, ChoiceSet)]) -> Vec<Trial<'_>> {
        const PROMPTS: [&str; 25] = [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u",
            "v", "w", "x", "y",
        ];
        v.iter().enumerate().map(|(i, (w, s))| ((w.as_str(), PROMPTS[i % 25]), s)).collect()
    }

    #[test]
    fn the_fit_recovers_the_models_parameters_and_the_rate_with_lengths_equal() {
        let (alpha, beta, nu) = (0.3, 1.2, 0.5);
        let k = 3;
        let data = simulated(20_000, k, (alpha, beta, nu), 7);
        let lc = fit(&borrowed(&data), true).unwrap();
        // With lengths equal every trial is k texts at α and one at 0, and ν's tie.
        let tie = nu * (alpha * k as f64 / (k as f64 + 1.0)).exp();
        let a = k as f64 * alpha.exp();
        let truth = (a + tie / 2.0) / (a + 1.0 + tie);
        assert!((lc.length_coef - beta).abs() < 0.08, "{lc:?}");
        assert!((lc.nu - nu).abs() < 0.05, "{lc:?}");
        assert!((lc.rate - truth).abs() < 0.01, "{lc:?} {truth}");
        assert!(lc.low < truth && truth < lc.high && lc.length_coef_low < beta && beta < lc.length_coef_high);
        assert!(lc.nu_low < nu && nu < lc.nu_high);
        // A's texts are 1.5× as long, and a strong pull of length lifts the shown rate.
        assert!((lc.length_ratio - 1.5).abs() < 0.05 && lc.rate_fitted > lc.rate + 0.02, "{lc:?}");
        assert!((lc.tie_at_equal - lc.nu / (2.0 + lc.nu)).abs() < 1e-12);
    }

    #[test]
    fn without_a_length_pull_the_controlled_rate_is_the_shown_one() {
        let data = simulated(8_000, 2, (0.4, 0.0, 0.3), 3);
        let lc = fit(&borrowed(&data), true).unwrap();
        assert!(lc.length_coef_low < 0.0 && 0.0 < lc.length_coef_high, "{lc:?}");
        assert!((lc.rate - lc.rate_fitted).abs() < 0.01, "{lc:?}");
        // β's interval holds 0: no verdict, whatever the rate.
        assert_eq!(verdict(&lc, lc.rate_fitted, (lc.rate_fitted - 0.01, lc.rate_fitted + 0.01)), None);
    }

    #[test]
    fn a_row_won_by_length_alone_is_flagged() {
        // A is no better than B (α = 0) but writes longer texts that people favour.
        let data = simulated(6_000, 1, (0.0, 2.0, 0.0), 5);
        let lc = fit(&borrowed(&data), true).unwrap();
        let shown = data.iter().filter(|(_, s)| s.chosen == Some(0)).count() as f64 / data.len() as f64;
        assert!(shown > 0.55, "{shown}");
        assert!((lc.rate - 0.5).abs() < 0.03, "{lc:?}");
        let (effect, v) = verdict(&lc, shown, (shown - 0.01, shown + 0.01)).unwrap();
        assert!(effect == LengthEffect::Explains && v.starts_with("length explains the effect"), "{v}");
        assert_eq!(lc.note, None);
        // The same answers on one prompt's texts: too few texts to tell length from taste.
        let one: Vec<Trial> = data.iter().map(|(w, s)| ((w.as_str(), "only"), s)).collect();
        assert_eq!(fit(&one, true).unwrap().note.as_deref(), Some(FEW_PROMPTS));
        // Nobody answered "no preference": ν is 0 and has no interval.
        assert_eq!(lc.nu, 0.0);
        assert!(lc.nu_low.is_nan() && lc.no_preference_share == 0.0);
    }

    #[test]
    fn equal_lengths_copies_and_too_few_participants_are_said_so() {
        // A's share m/(m+1) of a text B also shows is in m of A's slots; 1: in one.
        let opt = |a_share: f64, length| TextOption {
            a_share,
            a_slots: if a_share >= 1.0 { 1.0 } else { a_share / (1.0 - a_share) },
            length,
        };
        let set = |chosen| ChoiceSet { options: vec![opt(1.0, 10.0), opt(0.0, 10.0)], chosen };
        let trials: Vec<(String, ChoiceSet)> =
            (0..100).map(|i| (format!("p{}", i % 40), set(if i % 3 == 0 { Some(1) } else { Some(0) }))).collect();
        let lc = fit(&borrowed(&trials), false).unwrap();
        assert!(lc.length_coef.is_nan() && lc.note.as_deref().unwrap().contains("never differ"));
        // Without ties or length the model is the plain rate: 2/3 of picks were A's.
        assert!((lc.rate - 0.66).abs() < 0.01 && lc.low < lc.rate && lc.rate < lc.high, "{lc:?}");
        // One text in every slot (greedy against greedy): it only tells about ties.
        let copies = ChoiceSet { options: vec![opt(0.75, 30.0)], chosen: Some(0) };
        let tied = ChoiceSet { chosen: None, ..copies.clone() };
        let lc = fit(&[(("p", "x"), &copies), (("q", "x"), &tied)], true).unwrap();
        // Half the answers are "no preference": (3/4 + 1/2) / 2, and ν = 1 exactly.
        assert!(
            (lc.rate - 0.625).abs() < 1e-9 && (lc.nu - 1.0).abs() < 1e-9 && lc.note.as_deref() == Some(TOO_FEW),
            "{lc:?}"
        );
        assert!(lc.low.is_nan() && (lc.no_preference_share - 0.5).abs() < 1e-12);
        // "No preference" where it was not offered cannot be modelled: left out.
        assert!(fit(&[(("p", "x"), &tied)], false).is_none());
    }
}

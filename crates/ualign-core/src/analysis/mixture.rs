//! A latent-class Plackett–Luce model of the participants: C classes, each with its own
//! Plackett–Luce worths over every prompt's distinct responses, and a participant's class
//! shared across prompts (so every answer a person gives is evidence about the one class
//! they belong to, which is what lets a handful of picks per person say something).
//!
//! The evidence is every choice a participant made: `order` answers (the shown set's
//! distinct responses in order: successive choices), `pick` answers (top-1 of the shown
//! set), best_of_k answers (top-1 of the k+1 shown). Identical texts are one response (the
//! smallest candidate id of a prompt's identical texts stands for them, as everywhere in
//! ualign). Left out: "no preference", skips, attention checks (a trial with a gold or
//! broken slot), and a choice among fewer than two distinct responses.
//!
//! The fit is EM: the E-step gives each participant's posterior over classes; the M-step
//! updates the class weights and, class by class and prompt by prompt, the worths by
//! Hunter's MM on the choices weighted by the posterior (the same prior α as the
//! per-person fits, so a response never chosen keeps a finite worth), accelerated by
//! SQUAREM. Several seeded restarts, run short; the best is run on to convergence, and how
//! many restarts reached its log-likelihood is reported ([`fit`]).
//! C is chosen by BIC (−2 log L + parameters × ln participants), searched until it turns:
//! 1..=C_first are fitted at once, then one more class at a time while the largest so far
//! is the best, up to a limit; a choice at the limit is said to be one ([`ClassSearch`]).
//! ICL (BIC plus twice the posterior's entropy) is reported beside it.

use std::collections::{BTreeMap, HashMap};

use rand::Rng;
use serde::Serialize;

use super::ranking::Choices;
use crate::schedule::SlotRole;
use crate::store::{BestOfKAnswer, Candidate, RankAnswer};

mod layout;
mod steps;

pub(crate) use layout::ByPrompt;

pub use steps::MAX_CLASSES;
use steps::{e_step, m_step};

/// The prior of every class's MM update (as the per-person fits use).
pub const ALPHA: f64 = 0.1;

/// MM updates per M-step from random starts: a generalised EM (each step raises the
/// objective) converges to the same point, and a few cheap updates per E-step beat many.
const MM_STEPS: usize = 3;

/// A prompt's distinct responses: the candidate id that stands for each.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptItems {
    pub prompt: String,
    pub items: Vec<i64>,
    /// The text of each response.
    pub texts: Vec<String>,
}

/// Every participant's choices, by prompt.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub prompts: Vec<PromptItems>,
    /// Participant ids, sorted.
    pub people: Vec<String>,
    /// (participant index, prompt index, the choices), in participant order.
    pub choices: Vec<(usize, usize, Choices)>,
}

impl Evidence {
    /// The evidence of the stored answers.
    pub fn from_records(rank: &[RankAnswer], best_of_k: &[BestOfKAnswer], candidates: &[Candidate]) -> Self {
        let (stand_for, prompts) = responses(candidates);
        let prompt_index: BTreeMap<&str, usize> =
            prompts.iter().enumerate().map(|(i, p)| (p.prompt.as_str(), i)).collect();
        // Each answer as (participant, prompt, shown responses best first as far as known,
        // how many of them were chosen in turn).
        let mut raw: Vec<(String, usize, Vec<i64>, usize)> = Vec::new();
        let mut add = |who: &str, shown: &[i64], ranked_slots: &[usize]| {
            let Some((prompt, _)) = shown.first().and_then(|id| stand_for.get(id)) else { return };
            let reps: Vec<i64> = shown.iter().filter_map(|id| stand_for.get(id).map(|s| s.1)).collect();
            if reps.len() != shown.len() {
                return;
            }
            // Chosen in turn (the first copy of a response is where it was ranked), then the rest.
            let mut order: Vec<i64> = Vec::new();
            for &s in ranked_slots {
                if let Some(&r) = reps.get(s)
                    && !order.contains(&r)
                {
                    order.push(r);
                }
            }
            let ranked = order.len();
            for &r in &reps {
                if !order.contains(&r) {
                    order.push(r);
                }
            }
            raw.push((who.to_string(), prompt_index[prompt.as_str()], order, ranked));
        };
        for a in rank {
            match &a.ordering {
                Some(o) => add(&a.participant, &a.shown, o),
                None => {
                    if let Some(c) = a.choice {
                        add(&a.participant, &a.shown, &[c]);
                    }
                }
            }
        }
        for a in best_of_k {
            let attention = a.roles.iter().any(|r| matches!(r, SlotRole::Gold | SlotRole::Broken));
            if attention || a.no_preference || a.candidate_ids.len() != a.roles.len() {
                continue;
            }
            if let Some(c) = a.choice {
                add(&a.participant, &a.candidate_ids, &[c]);
            }
        }
        let mut people: Vec<String> = raw.iter().map(|r| r.0.clone()).collect();
        people.sort();
        people.dedup();
        let mut choices = Vec::new();
        for (who, pi, order, ranked) in raw {
            let items = &prompts[pi].items;
            let idx: Vec<usize> = order.iter().map(|r| items.binary_search(r).unwrap_or(0)).collect();
            // A full order's last response was chosen over nothing; fewer than two: no choice.
            let ranked = ranked.min(idx.len().saturating_sub(1));
            if ranked == 0 {
                continue;
            }
            let person = people.binary_search(&who).unwrap_or(0);
            choices.push((person, pi, Choices { ranked: idx[..ranked].to_vec(), rest: idx[ranked..].to_vec() }));
        }
        choices.sort_by_key(|c| (c.0, c.1));
        Self { prompts, people, choices }
    }

    /// Free parameters of a C-class model: C − 1 weights and, per class and prompt, one
    /// worth per response less one (worths are relative).
    pub(crate) fn parameters(&self, classes: usize) -> usize {
        let per_class: usize = self.prompts.iter().map(|p| p.items.len().saturating_sub(1)).sum();
        classes - 1 + classes * per_class
    }
}

/// Each candidate's prompt and the id that stands for its text (a prompt's identical
/// texts are one response: the smallest id stands for them), and every prompt's
/// responses in id order.
fn responses(candidates: &[Candidate]) -> (HashMap<i64, (String, i64)>, Vec<PromptItems>) {
    let mut stand_for: HashMap<i64, (String, i64)> = HashMap::new();
    let mut first: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| c.id);
    for c in &sorted {
        let rep = *first.entry((c.prompt_id.as_str(), c.text.as_str())).or_insert(c.id);
        stand_for.insert(c.id, (c.prompt_id.clone(), rep));
    }
    let mut prompts: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for ((prompt, text), rep) in &first {
        prompts.entry(prompt.to_string()).or_default().push((*rep, text.to_string()));
    }
    prompts.values_mut().for_each(|v| v.sort_unstable());
    let prompts = prompts
        .into_iter()
        .map(|(prompt, v)| {
            let (items, texts) = v.into_iter().unzip();
            PromptItems { prompt, items, texts }
        })
        .collect();
    (stand_for, prompts)
}

/// A fitted mixture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixtureFit {
    pub classes: usize,
    /// Class weights, largest first (classes are numbered by weight).
    pub(crate) weights: Vec<f64>,
    /// Log-worths (centred) of each class, prompt and response: `worths[c][prompt][item]`.
    #[serde(skip)]
    pub worths: Vec<Vec<Vec<f64>>>,
    /// Each participant's posterior over the classes (in `Evidence::people`'s order).
    #[serde(skip)]
    pub posterior: Vec<Vec<f64>>,
    pub(crate) log_likelihood: f64,
    pub bic: f64,
    pub(crate) icl: f64,
    pub(crate) restarts: usize,
    /// Restarts whose short run's log-likelihood came within 1e-6 (relative) of the best
    /// short run's.
    pub(crate) restarts_agreed: usize,
    pub(crate) em_iterations: usize,
}

/// Settings of the fit.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub restarts: usize,
    pub max_iter: usize,
    /// Stop when the log-likelihood improves by less than this (relative).
    pub tol: f64,
    pub seed: u64,
    /// MM updates per M-step (a refit from the full fit's worths needs fewer).
    pub mm_steps: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self { restarts: 8, max_iter: 1000, tol: 1e-9, seed: 0, mm_steps: MM_STEPS }
    }
}

/// One EM run from random responsibilities.
fn em_run(e: &Evidence, by: &ByPrompt, classes: usize, rng: &mut impl Rng, opts: &FitOptions) -> MixtureFit {
    let post: Vec<Vec<f64>> = (0..by.who.len())
        .map(|_| {
            let r: Vec<f64> = (0..classes).map(|_| rng.random::<f64>() + 0.05).collect();
            let s: f64 = r.iter().sum();
            r.into_iter().map(|v| v / s).collect()
        })
        .collect();
    let worths = vec![e.prompts.iter().map(|p| vec![0.0; p.items.len()]).collect(); classes];
    refit(by, post, worths, opts)
}

/// One plain EM run on `by` from the responsibilities `start` and the log-worths `worths`,
/// classes kept in their order: what [`refit`] accelerates (the tests hold the two to the
/// same fixed point).
#[cfg(test)]
pub(crate) fn fit_from(
    by: &ByPrompt,
    mut post: Vec<Vec<f64>>,
    mut worths: Vec<Vec<Vec<f64>>>,
    opts: &FitOptions,
) -> MixtureFit {
    let classes = post.first().map_or(1, Vec::len);
    let mut weights = vec![1.0 / classes as f64; classes];
    let mut last = f64::NEG_INFINITY;
    let mut ll = f64::NEG_INFINITY;
    let mut iterations = 0;
    for it in 0..opts.max_iter {
        iterations = it + 1;
        m_step(by, &post, &mut worths, &mut weights, opts.mm_steps);
        ll = e_step(by, &worths, &weights, &mut post);
        if (ll - last).abs() <= opts.tol * ll.abs().max(1.0) {
            break;
        }
        last = ll;
    }
    MixtureFit::run(Theta { worths, weights }, post, ll, iterations)
}

/// EM from the responsibilities `post` and the log-worths `worths`, `opts.mm_steps` MM
/// updates per E-step, accelerated by SQUAREM: every run of the fit (a restart from random
/// responsibilities, the best restart run on, and a bootstrap resample's refit from the full
/// fit's worths and its posterior of the people drawn, [`ByPrompt::who`], one MM update per
/// E-step). SQUAREM is Varadhan & Roland's (
/// 2008, scheme S3, with their step-length safeguards): from θ₀, two EM steps θ₁, θ₂ give
/// r = θ₁ − θ₀ and v = θ₂ − 2θ₁ + θ₀; the extrapolation θ₀ + 2αr + α²v with
/// α = ‖r‖ / ‖v‖ (at least 1, where α = 1 is θ₂ itself; at most a bound that grows
/// fourfold when reached and shrinks when refused) is taken if its log-likelihood is no
/// worse than θ₂'s, else θ₂; three E-steps a cycle. The class weights are extrapolated as
/// log-weights. Plain EM converges linearly here (about 0.75 a step): on the study,
/// with the same E-steps (~12), the refits land 10× closer to their fixed point
/// (intervals within 2e-5 of the converged ones, against 2e-4). Stops when a cycle raises
/// the log-likelihood by less than `opts.tol` (relative) or after `opts.max_iter` E-steps.
pub(crate) fn refit(by: &ByPrompt, post: Vec<Vec<f64>>, worths: Vec<Vec<Vec<f64>>>, opts: &FitOptions) -> MixtureFit {
    let classes = post.first().map_or(1, Vec::len);
    let mut weights = vec![1.0 / classes as f64; classes];
    let mut theta = Theta { worths, weights: Vec::new() };
    m_step(by, &post, &mut theta.worths, &mut weights, opts.mm_steps);
    theta.weights = weights;
    let mut post = post;
    let mut ll = e_step(by, &theta.worths, &theta.weights, &mut post);
    let mut e_steps = 1;
    let mut step_max = 1.0;
    while e_steps < opts.max_iter {
        let last = ll;
        let t1 = em_step(by, &theta, &post, opts.mm_steps);
        let mut p1 = post.clone();
        let ll1 = e_step(by, &t1.worths, &t1.weights, &mut p1);
        let t2 = em_step(by, &t1, &p1, opts.mm_steps);
        let mut p2 = p1;
        let ll2 = e_step(by, &t2.worths, &t2.weights, &mut p2);
        e_steps += 2;
        let alpha = theta.step_length(&t1, &t2).clamp(1.0, step_max);
        let mut next = (t2, p2, ll2);
        if alpha > 1.0 + 1e-2 && ll1.is_finite() {
            let far = theta.extrapolate(&next.0, &t1, alpha);
            let mut pf = next.1.clone();
            let llf = e_step(by, &far.worths, &far.weights, &mut pf);
            e_steps += 1;
            if llf.is_finite() && llf >= next.2 {
                if alpha >= step_max {
                    step_max *= 4.0;
                }
                next = (far, pf, llf);
            } else {
                step_max = (step_max / 4.0).max(1.0);
            }
        } else if alpha >= step_max {
            step_max *= 4.0;
        }
        (theta, post, ll) = next;
        if (ll - last).abs() <= opts.tol * ll.abs().max(1.0) {
            break;
        }
    }
    MixtureFit::run(theta, post, ll, e_steps)
}

impl MixtureFit {
    /// One EM run's result (BIC, ICL and the restarts are [`fit`]'s to fill in).
    fn run(theta: Theta, posterior: Vec<Vec<f64>>, log_likelihood: f64, em_iterations: usize) -> Self {
        Self {
            classes: theta.weights.len(),
            weights: theta.weights,
            worths: theta.worths,
            posterior,
            log_likelihood,
            bic: 0.0,
            icl: 0.0,
            restarts: 1,
            restarts_agreed: 1,
            em_iterations,
        }
    }
}

/// The mixture's parameters: each class's log-worths and the class weights.
struct Theta {
    worths: Vec<Vec<Vec<f64>>>,
    weights: Vec<f64>,
}

impl Theta {
    /// Every parameter in one order, the weights as logarithms (what SQUAREM extrapolates).
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let logs = self.weights.iter().map(|w| w.max(1e-300).ln());
        self.worths.iter().flatten().flatten().copied().chain(logs)
    }

    /// SQUAREM's α = ‖θ₁ − θ₀‖ / ‖θ₂ − 2θ₁ + θ₀‖ from self = θ₀.
    fn step_length(&self, t1: &Theta, t2: &Theta) -> f64 {
        let (mut r2, mut v2) = (0.0, 0.0);
        for ((a, b), c) in self.values().zip(t1.values()).zip(t2.values()) {
            r2 += (b - a) * (b - a);
            v2 += (c - 2.0 * b + a) * (c - 2.0 * b + a);
        }
        if v2 > 0.0 { (r2 / v2).sqrt() } else { 1.0 }
    }

    /// θ₀ + 2α(θ₁ − θ₀) + α²(θ₂ − 2θ₁ + θ₀) from self = θ₀; the weights renormalised.
    fn extrapolate(&self, t2: &Theta, t1: &Theta, alpha: f64) -> Theta {
        let at = |a: f64, b: f64, c: f64| a + 2.0 * alpha * (b - a) + alpha * alpha * (c - 2.0 * b + a);
        let worths = self
            .worths
            .iter()
            .zip(&t1.worths)
            .zip(&t2.worths)
            .map(|((c0, c1), c2)| {
                c0.iter()
                    .zip(c1)
                    .zip(c2)
                    .map(|((p0, p1), p2)| p0.iter().zip(p1).zip(p2).map(|((&a, &b), &c)| at(a, b, c)).collect())
                    .collect()
            })
            .collect();
        let ln = |w: f64| w.max(1e-300).ln();
        let logs: Vec<f64> =
            (0..self.weights.len()).map(|c| at(ln(self.weights[c]), ln(t1.weights[c]), ln(t2.weights[c]))).collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = logs.iter().map(|l| (l - top).exp()).sum();
        Theta { worths, weights: logs.iter().map(|l| (l - top).exp() / z).collect() }
    }
}

/// One EM step's M-step from θ with the E-step's posterior `post` at θ.
fn em_step(by: &ByPrompt, theta: &Theta, post: &[Vec<f64>], mm_steps: usize) -> Theta {
    let mut next = Theta { worths: theta.worths.clone(), weights: theta.weights.clone() };
    m_step(by, post, &mut next.worths, &mut next.weights, mm_steps);
    next
}

/// The best of `opts.restarts` EM runs with `classes` classes (1..=[`MAX_CLASSES`]), with
/// BIC and ICL.
pub fn fit(e: &Evidence, classes: usize, opts: &FitOptions) -> MixtureFit {
    fit_on(e, &ByPrompt::new(e), classes, opts)
}

/// Restarts stop once an EM cycle raises the log-likelihood by less than this (relative),
/// or `opts.tol` if that is looser; only the best is then run on to `opts.tol`.
const SHORT_TOL: f64 = 1e-6;

/// [`fit`] on the choices laid out already. The restarts are short runs, each from its
/// own random responsibilities to a relative tolerance of [`SHORT_TOL`], and only the best
/// of them is run on to convergence (`opts.tol`): the "emEM" strategy (Biernacki, Celeux &
/// Govaert 2003, "Choosing starting values for the EM algorithm"). A restart's job is to
/// find the best basin, which a short run shows; running every one of them to 1e-9 spent
/// most of `stats` on classes BIC then rejects (a superfluous class converges slowly: on
/// the 5,000-participant study its eight restarts took 1,700 E-steps, the three
/// classes BIC chose 75). Every run is accelerated by SQUAREM ([`refit`]).
fn fit_on(e: &Evidence, by: &ByPrompt, classes: usize, opts: &FitOptions) -> MixtureFit {
    use rayon::prelude::*;
    let short = FitOptions { tol: opts.tol.max(SHORT_TOL), ..*opts };
    // Restarts are independent (each seeded by its number), so they run in parallel and
    // the result is the same however many threads there are.
    let runs: Vec<MixtureFit> = (0..opts.restarts.max(1))
        .into_par_iter()
        .map(|r| {
            let mut rng = crate::seed::simulation(opts.seed, &["mixture", &classes.to_string(), &r.to_string()]);
            em_run(e, by, classes, &mut rng, &short)
        })
        .collect();
    let best_ll = runs.iter().map(|r| r.log_likelihood).fold(f64::NEG_INFINITY, f64::max);
    let agreed = runs.iter().filter(|r| (r.log_likelihood - best_ll).abs() <= 1e-6 * best_ll.abs().max(1.0)).count();
    let restarts = runs.len();
    let short_best = runs.into_iter().max_by(|a, b| a.log_likelihood.total_cmp(&b.log_likelihood)).expect("one run");
    let mut best = if short.tol > opts.tol {
        let mut on = refit(by, short_best.posterior, short_best.worths, opts);
        on.em_iterations += short_best.em_iterations;
        on
    } else {
        short_best
    };
    sort_classes(&mut best);
    let n = e.people.len().max(1) as f64;
    best.bic = -2.0 * best.log_likelihood + e.parameters(classes) as f64 * n.ln();
    let entropy: f64 = best.posterior.iter().flatten().filter(|&&t| t > 0.0).map(|&t| -t * t.ln()).sum();
    best.icl = best.bic + 2.0 * entropy;
    best.restarts = restarts;
    best.restarts_agreed = agreed;
    best
}

/// Numbers the classes by weight, largest first.
fn sort_classes(f: &mut MixtureFit) {
    let mut order: Vec<usize> = (0..f.classes).collect();
    order.sort_by(|&a, &b| f.weights[b].total_cmp(&f.weights[a]).then(a.cmp(&b)));
    f.weights = order.iter().map(|&c| f.weights[c]).collect();
    f.worths = order.iter().map(|&c| f.worths[c].clone()).collect();
    for p in &mut f.posterior {
        *p = order.iter().map(|&c| p[c]).collect();
    }
}

/// How the number of classes was searched, for the report: whether BIC turned (a larger
/// C was fitted and was worse) or the search stopped at its limit while BIC still fell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClassSearch {
    /// The most classes the search could fit: `--max-classes`, the participants, or
    /// [`MAX_CLASSES`], whichever is least.
    pub limit: usize,
    /// The most classes it fitted.
    pub fitted: usize,
    /// The chosen C is the largest fitted and no larger one was tried: BIC may go on
    /// falling beyond it.
    pub stopped_at_limit: bool,
}

/// Fits 1..=`first` classes (at once), then `first`+1, `first`+2, … one at a time while
/// the largest fitted is the one BIC prefers, never more than `limit` (nor participants,
/// nor [`MAX_CLASSES`]); returns every fit, the index of the one BIC prefers, and how the
/// search ended.
pub fn select_until_turn(
    e: &Evidence,
    first: usize,
    limit: usize,
    opts: &FitOptions,
) -> (Vec<MixtureFit>, usize, ClassSearch) {
    let limit = limit.min(e.people.len()).clamp(1, MAX_CLASSES);
    let by = ByPrompt::new(e);
    let (mut fits, mut best) = select_on(e, &by, first.min(limit), opts);
    while best + 1 == fits.len() && fits.len() < limit {
        let next = fit_on(e, &by, fits.len() + 1, opts);
        let better = next.bic < fits[best].bic;
        fits.push(next);
        if better {
            best = fits.len() - 1;
        }
    }
    let search = ClassSearch { limit, fitted: fits.len(), stopped_at_limit: best + 1 == fits.len() };
    (fits, best, search)
}

/// Fits 1..=`c_max` classes; returns every fit and the index of the one BIC prefers.
/// Never more classes than participants: BIC's penalty is parameters × ln N, nothing at
/// N = 1, so one participant would otherwise get C_max classes, all but one empty.
pub fn select(e: &Evidence, c_max: usize, opts: &FitOptions) -> (Vec<MixtureFit>, usize) {
    select_on(e, &ByPrompt::new(e), c_max, opts)
}

fn select_on(e: &Evidence, by: &ByPrompt, c_max: usize, opts: &FitOptions) -> (Vec<MixtureFit>, usize) {
    let c_max = c_max.min(e.people.len()).clamp(1, MAX_CLASSES);
    use rayon::prelude::*;
    let fits: Vec<MixtureFit> = (1..=c_max).into_par_iter().map(|c| fit_on(e, by, c, opts)).collect();
    let best = fits.iter().enumerate().min_by(|a, b| a.1.bic.total_cmp(&b.1.bic)).map_or(0, |(i, _)| i);
    (fits, best)
}

/// A participant's expected ranking of a prompt's whole pool under the fit: responses by
/// their expected position, 1 + Σ_c τ_c Σ_j w_cj / (w_ci + w_cj) (exact for a
/// Plackett–Luce mixture), best first, as candidate ids; with the posterior's certainty
/// (its largest class probability).
pub(crate) fn expected_ranking(e: &Evidence, f: &MixtureFit, person: usize, prompt: usize) -> (Vec<i64>, f64) {
    let items = &e.prompts[prompt].items;
    let tau = &f.posterior[person];
    let n = items.len();
    let mut position = vec![1.0; n];
    for (c, t) in tau.iter().enumerate() {
        let w: Vec<f64> = f.worths[c][prompt].iter().map(|v| v.exp()).collect();
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    position[i] += t * w[j] / (w[i] + w[j]);
                }
            }
        }
    }
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| position[a].total_cmp(&position[b]).then(a.cmp(&b)));
    (idx.into_iter().map(|i| items[i]).collect(), tau.iter().copied().fold(0.0, f64::max))
}

#[cfg(test)]
mod tests;

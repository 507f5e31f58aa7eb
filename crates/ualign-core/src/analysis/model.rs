//! The model-based counterfactual: where participants did not order whole pools (picks of
//! a few, best_of_k trials), the latent-class Plackett–Luce model ([`super::mixture`])
//! fitted to every choice they made stands for the population, and each prompt's
//! single-output policies are certified over the population it describes
//! ([`super::population`]): `base`, `greedy`, `nlhf` (the maximal lottery of the model's
//! pairwise majorities) and `ne` (the model's NE_k), with the certified win rates exact to
//! the quadrature's ~1e-10 *under the fitted model*. Rows carry `method: "pl_mixture"`
//! and a 95% interval for the rate of the row's policy on the population, from a cluster
//! bootstrap over participants of the whole analysis: the mixture is refitted to each
//! resample (from the full fit's posterior of the people drawn), NLHF and NE_k are
//! re-solved on the refit, and each replicate's error (the rate under the refit less the
//! refit's policy's rate under the full fit) is taken off the full fit's rate
//! (`counterfactual::HeldOut`). Per-participant rankings of every pool come
//! from the posterior.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use serde::Serialize;

use super::counterfactual::{self, EquilibriumRow, PoolCandidate, Responses};
use super::equilibria;
use super::mixture::{self, Evidence, FitOptions, MixtureFit};
use super::population::{COARSE, Jacobian, PlPopulation, Race};
use super::ranking::Ranking;

/// What the population model is, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PopulationModel {
    pub(crate) model: &'static str,
    pub classes: usize,
    pub weights: Vec<f64>,
    pub(crate) log_likelihood: f64,
    pub(crate) bic: f64,
    pub(crate) icl: f64,
    pub restarts: usize,
    pub restarts_agreed: usize,
    pub participants: usize,
    pub choices: usize,
    /// Every number of classes tried, with its fit's figures (C is the one of least BIC).
    pub(crate) compared: Vec<ClassCount>,
    /// How far the search for C went, and whether it stopped at its limit.
    pub class_search: mixture::ClassSearch,
    /// Each class's Plackett–Luce log-worths (per prompt and response), largest weight
    /// first, so that a fit can be audited.
    pub class_worths: Vec<ClassWorths>,
    pub bootstrap_replicates: usize,
    pub(crate) evidence: &'static str,
}

/// One class of the fit: its weight and its log-worths.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassWorths {
    pub weight: f64,
    pub prompts: Vec<PromptWorths>,
}

/// A class's log-worths on one prompt's distinct responses (each by the candidate id
/// that stands for its text), normalised to mean 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptWorths {
    pub prompt: String,
    pub candidates: Vec<i64>,
    pub log_worths: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClassCount {
    pub(crate) classes: usize,
    pub(crate) log_likelihood: f64,
    pub(crate) bic: f64,
    pub(crate) icl: f64,
}

/// What the evidence is, in words (the report says it).
pub(crate) const EVIDENCE: &str = "order answers (successive choices), pick answers and best_of_k answers (top-1 of the shown); identical texts are one response; no preference, skips and attention checks left out";

#[derive(Debug, Clone, Copy)]
pub struct ModelOptions {
    /// Classes fitted at once before the search goes on one at a time.
    pub c_first: usize,
    /// The most classes the search fits (see [`mixture::select_until_turn`]).
    pub c_max: usize,
    pub fit: FitOptions,
    pub replicates: usize,
    /// Rankings drawn from the model per prompt to start NE_k's solver.
    pub samples: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { c_first: 4, c_max: mixture::MAX_CLASSES, fit: FitOptions::default(), replicates: 100, samples: 20_000 }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ModelAnalysis {
    pub(crate) model: Option<PopulationModel>,
    pub(crate) rows: Vec<EquilibriumRow>,
    /// How many expected rankings there are (participants × prompts).
    pub(crate) rankings: usize,
}

/// A policy of a prompt: its name, its k and its distribution over the responses.
type Policy = (&'static str, u32, Vec<f64>);

/// How close a bootstrap refit's NE_k comes to its value 1/(k+1) of the largest payoff:
/// far below the spread of the replicates (~1e-2), at a fraction of the full fit's Newton
/// steps.
const REFIT_DONE: f64 = 1e-8;

/// One prompt's population and policies.
struct PromptModel<'a> {
    prompt: &'a str,
    responses: Responses,
    /// The evidence's index of the prompt and of each response (by text).
    prompt_index: usize,
    items: Vec<usize>,
    policies: Vec<Policy>,
    /// Each policy's certified rate under the full fit.
    rates: Vec<f64>,
}

fn population_of(fit: &MixtureFit, pm: &PromptModel) -> PlPopulation {
    PlPopulation {
        weights: fit.weights.clone(),
        log_worths: fit.worths.iter().map(|c| pm.items.iter().map(|&i| c[pm.prompt_index][i]).collect()).collect(),
    }
}

/// The model's analysis of every pool (`pools`, as the exact analysis has them).
pub(crate) fn analyse(
    pools: &BTreeMap<String, Vec<PoolCandidate>>,
    e: &Evidence,
    greedy_policies: &BTreeSet<String>,
    ks: &[u32],
    opts: &ModelOptions,
    per_person: super::report::PerPerson<'_>,
) -> ModelAnalysis {
    if e.people.is_empty() || e.choices.is_empty() {
        return ModelAnalysis::default();
    }
    let (fits, best, search) = mixture::select_until_turn(e, opts.c_first, opts.c_max, &opts.fit);
    let fit = &fits[best];
    use rayon::prelude::*;
    let listed: Vec<(usize, (&String, &Vec<PoolCandidate>))> = pools.iter().enumerate().collect();
    let prompts: Vec<PromptModel> = listed
        .into_par_iter()
        .filter_map(|(n, (prompt, pool))| prompt_model(prompt, pool, e, fit, greedy_policies, ks, opts, n as u64))
        .collect();
    let replicates = bootstrap(e, fit, &prompts, opts);
    let mut rows = Vec::new();
    for (pi, pm) in prompts.iter().enumerate() {
        for (j, (policy, k, x)) in pm.policies.iter().enumerate() {
            let rate = pm.rates[j];
            let errors: Vec<f64> = replicates.iter().map(|r| r[pi][j]).collect();
            let held_out = counterfactual::HeldOut::of(rate, errors);
            rows.push(EquilibriumRow {
                prompt: pm.prompt.to_string(),
                k: *k,
                policy,
                distribution: pm.responses.with(x),
                certified_win_rate: rate,
                gap: (1.0 - rate - 1.0 / (*k as f64 + 1.0)).max(0.0),
                bound: *k as f64 / (*k as f64 + 1.0),
                participants: e.people.len(),
                method: "pl_mixture",
                ci_low: held_out.low,
                ci_high: held_out.high,
                optimism: held_out.optimism,
            });
        }
    }
    if let Some(out) = per_person {
        rankings(e, fit, out);
    }
    let rankings = e.people.len() * e.prompts.len();
    let model = PopulationModel {
        model: "latent-class Plackett–Luce (a participant's class shared across prompts)",
        classes: fit.classes,
        weights: fit.weights.clone(),
        log_likelihood: fit.log_likelihood,
        bic: fit.bic,
        icl: fit.icl,
        restarts: fit.restarts,
        restarts_agreed: fit.restarts_agreed,
        participants: e.people.len(),
        choices: e.choices.len(),
        compared: fits
            .iter()
            .map(|f| ClassCount { classes: f.classes, log_likelihood: f.log_likelihood, bic: f.bic, icl: f.icl })
            .collect(),
        class_search: search,
        class_worths: class_worths(e, fit),
        bootstrap_replicates: replicates.len(),
        evidence: EVIDENCE,
    };
    ModelAnalysis { model: Some(model), rows, rankings }
}

/// Each class's weight and log-worths, centred per prompt (worths are defined up to a
/// constant factor per class and prompt).
fn class_worths(e: &Evidence, fit: &MixtureFit) -> Vec<ClassWorths> {
    (0..fit.classes)
        .map(|c| ClassWorths {
            weight: fit.weights[c],
            prompts: e
                .prompts
                .iter()
                .enumerate()
                .map(|(pi, p)| {
                    let w = &fit.worths[c][pi];
                    let mean = w.iter().sum::<f64>() / w.len().max(1) as f64;
                    PromptWorths {
                        prompt: p.prompt.clone(),
                        candidates: p.items.clone(),
                        log_worths: w.iter().map(|v| v - mean).collect(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The prompt's responses under the model and its policies at every k.
#[allow(clippy::too_many_arguments)]
fn prompt_model<'a>(
    prompt: &'a str,
    pool: &[PoolCandidate],
    e: &Evidence,
    fit: &MixtureFit,
    greedy_policies: &BTreeSet<String>,
    ks: &[u32],
    opts: &ModelOptions,
    salt: u64,
) -> Option<PromptModel<'a>> {
    let prompt_index = e.prompts.iter().position(|p| p.prompt == prompt)?;
    let responses = Responses::of(pool);
    let text_of: BTreeMap<i64, &str> = pool.iter().map(|c| (c.id, c.text.as_str())).collect();
    let items: Vec<usize> = responses
        .masses
        .iter()
        .map(|m| {
            let text = text_of[&m.candidate];
            e.prompts[prompt_index].texts.iter().position(|t| t == text)
        })
        .collect::<Option<_>>()?;
    let mut pm = PromptModel { prompt, responses, prompt_index, items, policies: Vec::new(), rates: Vec::new() };
    let population = population_of(fit, &pm);
    let total = pool.len() as f64;
    let base: Vec<f64> = pm.responses.masses.iter().map(|m| m.copies as f64 / total).collect();
    let greedy = pm.responses.greedy(pool, greedy_policies);
    let nlhf = equilibria::maximal_lottery_of(&population.margins()).ok()?;
    let race = population.race();
    // Rankings drawn from the model, for the sampled solver where Newton from the previous
    // k's equilibrium does not reach the value: drawn once, the first time one is needed.
    let samples = std::cell::OnceCell::new();
    let mut start = nlhf.clone();
    for &k in ks {
        pm.policies.push(("base", k, base.clone()));
        if let Some(g) = &greedy {
            pm.policies.push(("greedy", k, g.clone()));
        }
        pm.policies.push(("nlhf", k, nlhf.clone()));
        let ne = race.ne_k(k, start, |from| {
            let orders = samples.get_or_init(|| population.sample_orders(opts.samples, opts.fit.seed ^ salt));
            equilibria::ne_k_from(orders, from, k, 1e-7, 20_000).distribution
        });
        start = ne.clone();
        pm.policies.push(("ne", k, ne));
    }
    pm.rates = certify(&race, &pm.policies);
    Some(pm)
}

/// The certified win rate of each of the prompt's policies under `population`, at the
/// policy's own k.
fn certify(population: &Race, policies: &[Policy]) -> Vec<f64> {
    // A policy that is the same distribution at every k (base, greedy, NLHF) is certified
    // at all its k from one pass (the payoffs of every k come out of the same moments).
    let mut out = vec![0.0; policies.len()];
    let mut done = vec![false; policies.len()];
    for i in 0..policies.len() {
        if done[i] {
            continue;
        }
        let x = &policies[i].2;
        let same: Vec<usize> = (i..policies.len()).filter(|&j| !done[j] && &policies[j].2 == x).collect();
        let k_max = same.iter().map(|&j| policies[j].1).max().unwrap_or(1);
        let k_min = same.iter().map(|&j| policies[j].1).min().unwrap_or(1);
        let best = population.best_payoffs_between(x, k_min, k_max);
        for j in same {
            out[j] = 1.0 - best[policies[j].1 as usize - 1];
            done[j] = true;
        }
    }
    out
}

/// A prompt's policies as the full fit solved them, re-solved under `population` (a
/// bootstrap refit): NLHF as its maximal lottery (which is also NE_1), each NE_k by
/// Newton from the full fit's NE_k and, where that does not reach the value, from the
/// refit's NE_(k−1) as the full fit's solver goes; the fixed policies (base, greedy) as
/// they are. A policy the refit cannot solve (an LP failure, never seen) stays the full
/// fit's.
///
/// `jacobians[j]`: policy j's Jacobian under the full fit at its equilibrium, Newton's first
/// (a refit's population is near the full fit's, so it serves a step or more; see
/// [`Race::ne_k_near`]).
fn resolved(pm: &PromptModel, population: &PlPopulation, race: &Race, jacobians: &[Option<Jacobian>]) -> Vec<Policy> {
    let nlhf = equilibria::maximal_lottery_of(&population.margins()).ok();
    let mut previous = nlhf.clone();
    pm.policies
        .iter()
        .zip(jacobians)
        .map(|((policy, k, x), jacobian)| {
            let x = match *policy {
                "nlhf" => nlhf.clone().unwrap_or_else(|| x.clone()),
                "ne" => {
                    let share = 1.0 / (*k as f64 + 1.0);
                    let (first, worst) = race.ne_k_near(*k, x.clone(), REFIT_DONE, jacobian.as_ref());
                    let ne = match previous.take() {
                        Some(from) if worst - share > REFIT_DONE => {
                            let (other, other_worst) = race.ne_k_near(*k, from, REFIT_DONE, None);
                            if other_worst < worst { other } else { first }
                        }
                        _ => first,
                    };
                    previous = Some(ne.clone());
                    ne
                }
                _ => x.clone(),
            };
            (*policy, *k, x)
        })
        .collect()
}

/// Each replicate's error of every policy, `[replicate][prompt][policy]`: the whole
/// analysis repeated on a resample of participants (the model refitted, NLHF and NE_k
/// re-solved on the refit), and the certified rate it reports (under the refit) less the
/// rate its policy certifies under the full fit, which stands in the bootstrap's world for
/// the population. The full fit's rate less these errors is the rate of its own policy on
/// the population ([`counterfactual::HeldOut`]): a policy optimal for its own fit is
/// worse on the population than its fit says, and these errors measure by how much.
fn bootstrap(e: &Evidence, fit: &MixtureFit, prompts: &[PromptModel], opts: &ModelOptions) -> Vec<Vec<Vec<f64>>> {
    use rayon::prelude::*;
    let all = mixture::ByPrompt::new(e);
    let full: Vec<Race> = prompts.iter().map(|pm| Race::on(&population_of(fit, pm), COARSE)).collect();
    // Each NE_k's Jacobian under the full fit, taken once for every refit to start from.
    let jacobians: Vec<Vec<Option<Jacobian>>> = prompts
        .par_iter()
        .zip(&full)
        .map(|(pm, race)| {
            let jacobian = |&(policy, k, ref x): &Policy| (policy == "ne").then(|| race.jacobian_at(x, k)).flatten();
            pm.policies.iter().map(jacobian).collect()
        })
        .collect();
    (0..opts.replicates)
        .into_par_iter()
        .map(|b| {
            let mut rng = crate::seed::simulation(opts.fit.seed, &["mixture-bootstrap", &b.to_string()]);
            let n = e.people.len();
            // The people drawn (with repeats: a person drawn twice counts twice), starting
            // from the full fit's posterior of each.
            let drawn: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            let by = all.resample(&drawn);
            let start = by.who().iter().map(|&p| fit.posterior[p].clone()).collect();
            let refit = mixture::refit(
                &by,
                start,
                fit.worths.clone(),
                &FitOptions { max_iter: 200, tol: 1e-7, mm_steps: 1, ..opts.fit },
            );
            // Certified at the coarse step (~1e-7): far below the spread of the replicates.
            prompts
                .iter()
                .zip(full.iter().zip(&jacobians))
                .map(|(pm, (full, jacobians))| {
                    let population = population_of(&refit, pm);
                    let race = Race::on(&population, COARSE);
                    let policies = resolved(pm, &population, &race, jacobians);
                    let own = certify(&race, &policies);
                    let held_out = certify(full, &policies);
                    own.iter().zip(&held_out).map(|(a, b)| a - b).collect()
                })
                .collect()
        })
        .collect()
}

/// Every participant's expected ranking of every prompt's whole set of responses, handed
/// to `out` one at a time.
fn rankings(e: &Evidence, fit: &MixtureFit, out: &mut dyn FnMut(super::report::PersonLine<'_>)) {
    for (p, who) in e.people.iter().enumerate() {
        for (pi, prompt) in e.prompts.iter().enumerate() {
            let (order, certainty) = mixture::expected_ranking(e, fit, p, pi);
            let r = Ranking {
                participant: who.clone(),
                prompt: prompt.prompt.clone(),
                order,
                method: "pl_mixture",
                certainty: Some(certainty),
            };
            out(super::report::PersonLine::Ranking(&r));
        }
    }
}

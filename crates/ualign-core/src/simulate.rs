//! Synthetic participants that answer through the same scheduler and store as real ones:
//! for tests, power analysis and load. Each simulated participant holds, per prompt, a
//! preference over the distinct texts of the prompt's pools, drawn from a population:
//!
//! - `cyclic` — the pool's cyclic orders, equally many participants each;
//! - `condorcet:P` — a fraction P puts one fixed text first, the rest put it last, the
//!   other positions random;
//! - `pl:S` — one Plackett–Luce model whose log-worths are spread evenly over [0, S];
//!   every answer is a fresh draw from it;
//! - `mallows:PHI:C` — a mixture of C Mallows models with dispersion PHI around random
//!   centres (repeated insertion);
//! - `plmix:C:S` (or `plmix:C:S:W1,W2,…`) — C latent Plackett–Luce classes, each with
//!   log-worths spread evenly over [0, S] in its own random order per prompt; a
//!   participant belongs to one class for every prompt (equal shares, or the weights
//!   given); every answer is a fresh draw from the class's model.
//!
//! [`latent_orders`] writes down the truth behind the answers: per participant and prompt,
//! an order over the prompt's distinct responses (for a Plackett–Luce participant, one
//! draw from their model, on a random stream of its own).
//!
//! Simulated participants are attentive (they never pick a broken attention-check text).
//! By default they never answer "no preference" and do not care how long a text is;
//! [`Answering`] gives a Plackett–Luce population both, as the length control of
//! `stats` models them: a text's log-worth gains β·(ℓ/mean ℓ − 1) over the distinct texts
//! shown, and a pick trial is answered "no preference" with probability ∝ ν·exp(mean
//! log-worth shown) (Davidson's tie model).

pub mod power;

use std::collections::BTreeMap;
use std::str::FromStr;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::schedule::SlotRole;
use crate::session::{Next, PresentedTrial, Session, Submitted};
use crate::store::{Answer, Store, StoreError};
use crate::study::{RankMode, Study};

#[derive(Debug, Clone, PartialEq)]
pub enum Population {
    Cyclic,
    Condorcet(f64),
    PlackettLuce(f64),
    Mallows { phi: f64, centres: usize },
    PlMix { classes: usize, spread: f64, weights: Vec<f64> },
}

impl FromStr for Population {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize, what: &str| -> Result<f64, String> {
            parts.get(i).and_then(|p| p.parse::<f64>().ok()).ok_or_else(|| format!("`{s}`: {what} must be a number"))
        };
        match parts[0] {
            "cyclic" if parts.len() == 1 => Ok(Population::Cyclic),
            "condorcet" if parts.len() == 2 => {
                let p = num(1, "P")?;
                if (0.0..=1.0).contains(&p) {
                    Ok(Population::Condorcet(p))
                } else {
                    Err(format!("`{s}`: P must be in [0, 1]"))
                }
            }
            "pl" if parts.len() == 2 => Ok(Population::PlackettLuce(num(1, "S")?)),
            "mallows" if parts.len() == 3 => {
                let phi = num(1, "PHI")?;
                let c = num(2, "C")?;
                if !(0.0..=1.0).contains(&phi) || c < 1.0 || c.fract() != 0.0 {
                    return Err(format!("`{s}`: PHI must be in [0, 1] and C a positive integer"));
                }
                Ok(Population::Mallows { phi, centres: c as usize })
            }
            "plmix" if parts.len() == 3 || parts.len() == 4 => {
                let c = num(1, "C")?;
                if c < 1.0 || c.fract() != 0.0 || c > 100.0 {
                    return Err(format!("`{s}`: C must be an integer from 1 to 100"));
                }
                let classes = c as usize;
                let spread = num(2, "S")?;
                let weights = match parts.get(3) {
                    None => vec![1.0 / classes as f64; classes],
                    Some(w) => {
                        let w: Vec<f64> = w
                            .split(',')
                            .map(|x| x.trim().parse::<f64>())
                            .collect::<Result<_, _>>()
                            .map_err(|_| format!("`{s}`: the weights must be numbers separated by commas"))?;
                        if w.len() != classes || w.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                            return Err(format!("`{s}`: give {classes} positive weights"));
                        }
                        let z: f64 = w.iter().sum();
                        w.into_iter().map(|x| x / z).collect()
                    }
                };
                if !spread.is_finite() || spread < 0.0 {
                    return Err(format!("`{s}`: S must be a number ≥ 0"));
                }
                Ok(Population::PlMix { classes, spread, weights })
            }
            _ => Err(format!("unknown population `{s}`; use cyclic, condorcet:P, pl:S, mallows:PHI:C or plmix:C:S")),
        }
    }
}

use crate::seed::simulation as rng_for;

/// A participant's preference over n texts: an order (best first), or PL log-worths.
enum Preference {
    Order(Vec<usize>),
    Worths(Vec<f64>),
}

fn mallows(centre: &[usize], phi: f64, rng: &mut ChaCha8Rng) -> Vec<usize> {
    // Repeated insertion: the i-th item of the centre goes to position i - j with
    // probability ∝ phi^j.
    let mut out: Vec<usize> = Vec::with_capacity(centre.len());
    for (i, &item) in centre.iter().enumerate() {
        let weights: Vec<f64> = (0..=i).map(|j| phi.powi(j as i32)).collect();
        let z: f64 = weights.iter().sum();
        let mut u = rng.random::<f64>() * z;
        let mut j = 0;
        for (jj, w) in weights.iter().enumerate() {
            if u < *w {
                j = jj;
                break;
            }
            u -= w;
        }
        out.insert(i - j, item);
    }
    out
}

fn preference(
    pop: &Population,
    n: usize,
    index: usize,
    participants: usize,
    seed: u64,
    prompt: &str,
    who: &str,
) -> Preference {
    let mut shared = rng_for(seed, &["population", prompt]);
    let mut own = rng_for(seed, &["participant", prompt, who]);
    match pop {
        Population::Cyclic => {
            let mut base: Vec<usize> = (0..n).collect();
            base.shuffle(&mut shared);
            let shift = index % n.max(1);
            Preference::Order((0..n).map(|i| base[(i + shift) % n]).collect())
        }
        Population::Condorcet(p) => {
            let fixed = shared.random_range(0..n.max(1));
            let mut rest: Vec<usize> = (0..n).filter(|&i| i != fixed).collect();
            rest.shuffle(&mut own);
            let first = (index as f64) < p * participants as f64;
            Preference::Order(if first {
                std::iter::once(fixed).chain(rest).collect()
            } else {
                rest.into_iter().chain(std::iter::once(fixed)).collect()
            })
        }
        Population::PlackettLuce(spread) => Preference::Worths(spread_worths(n, *spread, &mut shared)),
        Population::PlMix { spread, weights, .. } => {
            let class = class_of(weights, index, participants);
            let mut c = rng_for(seed, &["plmix", prompt, &class.to_string()]);
            Preference::Worths(spread_worths(n, *spread, &mut c))
        }
        Population::Mallows { phi, centres } => {
            let centre_of = index % centres;
            let mut c = rng_for(seed, &["centre", prompt, &centre_of.to_string()]);
            let mut centre: Vec<usize> = (0..n).collect();
            centre.shuffle(&mut c);
            Preference::Order(mallows(&centre, *phi, &mut own))
        }
    }
}

/// Log-worths spread evenly over [0, `spread`], in a random order.
fn spread_worths(n: usize, spread: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    let mut w = vec![0.0; n];
    for (rank, &i) in idx.iter().enumerate() {
        w[i] = if n > 1 { spread * (1.0 - rank as f64 / (n - 1) as f64) } else { 0.0 };
    }
    w
}

/// The class of participant `index` of `participants` under class `weights`: the classes
/// take consecutive shares of the participants, so the shares are the weights as closely
/// as whole participants allow (equal weights: every C-th participant, in turn).
pub fn class_of(weights: &[f64], index: usize, participants: usize) -> usize {
    let c = weights.len();
    if weights.iter().all(|w| (w - weights[0]).abs() < 1e-12) {
        return index % c.max(1);
    }
    let at = (index as f64 + 0.5) / participants.max(1) as f64;
    let mut cum = 0.0;
    for (k, w) in weights.iter().enumerate() {
        cum += w;
        if at < cum {
            return k;
        }
    }
    c - 1
}

/// Orders `items` (text indices) best first under a preference, drawing PL answers from `rng`.
fn rank(pref: &Preference, items: &[usize], rng: &mut ChaCha8Rng) -> Vec<usize> {
    match pref {
        Preference::Order(o) => {
            let mut v = items.to_vec();
            v.sort_by_key(|i| o.iter().position(|x| x == i).unwrap_or(usize::MAX));
            v
        }
        Preference::Worths(w) => {
            let mut left = items.to_vec();
            let mut out = Vec::with_capacity(items.len());
            while !left.is_empty() {
                let z: f64 = left.iter().map(|&i| w[i].exp()).sum();
                let mut u = rng.random::<f64>() * z;
                let mut pick = left.len() - 1;
                for (j, &i) in left.iter().enumerate() {
                    if u < w[i].exp() {
                        pick = j;
                        break;
                    }
                    u -= w[i].exp();
                }
                out.push(left.remove(pick));
            }
            out
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "trial {trial} of {participant} needs candidates that are not stored (policies {}, prompt {prompt}); generate or import the pools first",
        .policies.join(", ")
    )]
    Missing { participant: String, trial: usize, policies: Vec<String>, prompt: String },
    #[error(
        "a length bias or a no-preference rate needs a Plackett–Luce population (pl:S or plmix:C:S), whose answers are drawn from worths; `{0}` gives orders"
    )]
    NeedsWorths(String),
    #[error(
        "the study does not offer \"no preference\" (allow_no_preference = false), so simulated participants cannot answer it; drop --no-preference"
    )]
    NoPreferenceNotOffered,
}

/// How simulated participants answer beyond their population's preference.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Answering {
    /// β: a text's log-worth gains β·(ℓ/mean ℓ − 1), ℓ its length in characters, the mean
    /// over the distinct texts shown.
    pub length_bias: f64,
    /// ν ≥ 0: Davidson's tendency to answer "no preference" on pick trials.
    pub no_preference: f64,
}

impl Answering {
    /// Whether participants of `pop` can answer `study` so.
    pub fn check(&self, study: &Study, pop: &Population) -> Result<(), SimulateError> {
        if *self != Answering::default() && !matches!(pop, Population::PlackettLuce(_) | Population::PlMix { .. }) {
            let name = match pop {
                Population::Cyclic => "cyclic",
                Population::Condorcet(_) => "condorcet",
                Population::Mallows { .. } => "mallows",
                Population::PlackettLuce(_) | Population::PlMix { .. } => "pl",
            };
            return Err(SimulateError::NeedsWorths(name.to_string()));
        }
        if self.no_preference > 0.0 && !study.options.allow_no_preference {
            return Err(SimulateError::NoPreferenceNotOffered);
        }
        Ok(())
    }
}

/// The distinct texts of a prompt's pools, sorted: what preferences are over.
fn pool_texts(study: &Study, store: &Store, prompt: &str) -> Result<Vec<String>, StoreError> {
    let mut all: Vec<String> = Vec::new();
    for p in &study.policies {
        for s in store.stored_samples(&p.name, prompt)? {
            if let Some(c) = store.candidate(&p.name, prompt, s)? {
                all.push(c.text);
            }
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// Simulates `n` participants (ids `sim-<seed>-<i>`); returns the number of answers stored.
pub fn simulate(
    study: &Study,
    store: &mut Store,
    n: usize,
    pop: &Population,
    seed: u64,
) -> Result<usize, SimulateError> {
    Ok(simulate_timed(study, store, n, pop, seed)?.answers)
}

/// What a simulation stored, and how long each answer's commit took (for load tests:
/// the wait for other processes' writes is in it).
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    pub answers: usize,
    pub commit_ms: Vec<f64>,
}

impl Simulated {
    /// The `q`-quantile of the commit times (nearest rank), if any answer was stored.
    pub fn commit_quantile(&self, q: f64) -> Option<f64> {
        let mut v = self.commit_ms.clone();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len().max(1)) - 1;
        v.get(i).copied()
    }
}

/// [`simulate`], timing every answer's commit.
pub fn simulate_timed(
    study: &Study,
    store: &mut Store,
    n: usize,
    pop: &Population,
    seed: u64,
) -> Result<Simulated, SimulateError> {
    simulate_answering(
        study,
        store,
        &Cohort { population: pop, participants: n, first: 0, answering: Answering::default() },
        seed,
    )
}

/// Who a simulation adds: `participants` of `population`, numbered from `first` (ids
/// `sim-<seed>-<first + i>`: a later cohort of the same seed is the same population's
/// fresh participants), answering as `answering` says.
#[derive(Debug, Clone)]
pub struct Cohort<'a> {
    pub population: &'a Population,
    pub participants: usize,
    pub first: usize,
    pub answering: Answering,
}

/// [`simulate_timed`] with participants who answer as `answering` says.
pub fn simulate_answering(
    study: &Study,
    store: &mut Store,
    cohort: &Cohort,
    seed: u64,
) -> Result<Simulated, SimulateError> {
    let (n, pop, answering) = (cohort.participants, cohort.population, cohort.answering);
    answering.check(study, pop)?;
    // Distinct texts of each prompt's pools, in a fixed order: what preferences are over.
    let mut texts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut answers = 0;
    let mut commit_ms = Vec::new();
    for i in 0..n {
        let who = format!("sim-{seed}-{}", cohort.first + i);
        if store.is_completed(&who)? {
            // Resuming a simulation that was stopped: this one is done.
            continue;
        }
        let mut session = Session::begin(store, study, &who, Some(&crate::store::now()), None)?;
        let mut answer_rng = rng_for(seed, &["answers", &who]);
        let mut prefs: BTreeMap<String, Preference> = BTreeMap::new();
        loop {
            let t = match session.next(store, study)? {
                Next::Trial(t) => t,
                Next::Done => break,
                Next::Missing { position, prompt_id, jobs, imported } => {
                    let policies: Vec<String> = jobs.into_iter().map(|j| j.policy).chain(imported).collect();
                    return Err(SimulateError::Missing {
                        participant: who,
                        trial: position,
                        policies,
                        prompt: prompt_id,
                    });
                }
            };
            let prompt = t.prompt_id.clone();
            if !texts.contains_key(&prompt) {
                texts.insert(prompt.clone(), pool_texts(study, store, &prompt)?);
            }
            let pool = &texts[&prompt];
            let pref =
                prefs.entry(prompt.clone()).or_insert_with(|| preference(pop, pool.len(), i, n, seed, &prompt, &who));
            let answer = answer_to(&t, pool, pref, answering, (&mut answer_rng, seed, &who));
            let started = std::time::Instant::now();
            // The same participant simulated by another process at once: its answer stands.
            if session.submit(store, t.trial_id, &answer, answer_rng.random_range(800..6000), None)? == Submitted::Saved
            {
                answers += 1;
                commit_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    Ok(Simulated { answers, commit_ms })
}

/// A simulated participant's answer to trial `t` under `pref` (over the prompt's `pool`):
/// the intact text of an attention check, "no preference" as Davidson's ν has it, else
/// the pick or the order their preference draws.
fn answer_to(
    t: &PresentedTrial,
    pool: &[String],
    pref: &Preference,
    answering: Answering,
    (rng, seed, who): (&mut ChaCha8Rng, u64, &str),
) -> Answer {
    if t.slots.iter().any(|s| s.role == SlotRole::Broken) {
        return Answer::Pick(t.slots.iter().position(|s| s.role == SlotRole::Gold).unwrap_or(0));
    }
    let slot_text: Vec<usize> = t.texts.iter().map(|x| pool.binary_search(x).unwrap_or(0)).collect();
    let mut distinct = slot_text.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let shown_pref = answering_worths(pref, pool, &distinct, answering);
    let pref = shown_pref.as_ref().unwrap_or(pref);
    if t.mode == RankMode::Pick && ties(pref, &distinct, answering.no_preference, rng) {
        return Answer::NoPreference;
    }
    let order = rank(pref, &distinct, rng);
    // Slots best first. Copies of one text cannot be told apart, so which of them is
    // chosen is left to chance (keeping the displayed order would put a bias towards the
    // first slot into the data that `stats` checks for), from a stream of its own: the
    // answers, by text, stay what they were.
    let mut slots: Vec<usize> = (0..slot_text.len()).collect();
    if distinct.len() < slots.len() {
        slots.shuffle(&mut rng_for(seed, &["copies", who, &t.trial_id.to_string()]));
    }
    slots.sort_by_key(|&s| order.iter().position(|&x| x == slot_text[s]).unwrap_or(usize::MAX));
    match t.mode {
        RankMode::Pick => Answer::Pick(slots[0]),
        RankMode::Order => Answer::Order(slots),
    }
}

/// The worths a participant answers a trial showing `distinct` (pool indices) by: their
/// own with the length bias added; none where nothing changes.
fn answering_worths(pref: &Preference, pool: &[String], distinct: &[usize], a: Answering) -> Option<Preference> {
    let Preference::Worths(w) = pref else { return None };
    if a.length_bias == 0.0 {
        return None;
    }
    let len = |i: usize| pool[i].chars().count() as f64;
    let mean = distinct.iter().map(|&i| len(i)).sum::<f64>() / distinct.len().max(1) as f64;
    let mut w = w.clone();
    for &i in distinct {
        if mean > 0.0 {
            w[i] += a.length_bias * (len(i) / mean - 1.0);
        }
    }
    Some(Preference::Worths(w))
}

/// Whether a pick trial showing `distinct` is answered "no preference": with probability
/// ν·exp(mean η) / (Σ exp η + ν·exp(mean η)), η the shown log-worths. Draws only if ν > 0.
fn ties(pref: &Preference, distinct: &[usize], nu: f64, rng: &mut ChaCha8Rng) -> bool {
    let Preference::Worths(w) = pref else { return false };
    if nu <= 0.0 || distinct.is_empty() {
        return false;
    }
    let eta: Vec<f64> = distinct.iter().map(|&i| w[i]).collect();
    let top = eta.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = eta.iter().sum::<f64>() / eta.len() as f64;
    let picks: f64 = eta.iter().map(|e| (e - top).exp()).sum();
    let tie = nu * (mean - top).exp();
    rng.random::<f64>() < tie / (picks + tie)
}

/// One synthetic participant's true order over a prompt's distinct responses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LatentOrder {
    pub(crate) participant: String,
    pub(crate) prompt: String,
    /// Candidate ids, best first: for identical texts, the smallest id (as `stats` uses).
    pub(crate) order: Vec<i64>,
}

/// The truth behind the answers of [`simulate`]'s participants `sim-<seed>-<i>`, i < `n`:
/// for every prompt with stored candidates, each participant's order over its distinct
/// responses (a Plackett–Luce participant's is one draw from their model).
pub fn latent_orders(
    study: &Study,
    store: &Store,
    n: usize,
    pop: &Population,
    seed: u64,
) -> Result<Vec<LatentOrder>, StoreError> {
    let mut out = Vec::new();
    for prompt in &study.prompts {
        let pool = pool_texts(study, store, &prompt.id)?;
        if pool.is_empty() {
            continue;
        }
        let ids = representatives(study, store, &prompt.id, &pool)?;
        for i in 0..n {
            let who = format!("sim-{seed}-{i}");
            let pref = preference(pop, pool.len(), i, n, seed, &prompt.id, &who);
            let mut rng = rng_for(seed, &["latent", &prompt.id, &who]);
            let all: Vec<usize> = (0..pool.len()).collect();
            let order = rank(&pref, &all, &mut rng).into_iter().map(|t| ids[t]).collect();
            out.push(LatentOrder { participant: who, prompt: prompt.id.clone(), order });
        }
    }
    Ok(out)
}

/// The smallest candidate id of each of `pool`'s texts.
fn representatives(study: &Study, store: &Store, prompt: &str, pool: &[String]) -> Result<Vec<i64>, StoreError> {
    let mut ids = vec![i64::MAX; pool.len()];
    for p in &study.policies {
        for s in store.stored_samples(&p.name, prompt)? {
            if let Some(c) = store.candidate(&p.name, prompt, s)?
                && let Ok(t) = pool.binary_search(&c.text)
            {
                ids[t] = ids[t].min(c.id);
            }
        }
    }
    Ok(ids)
}

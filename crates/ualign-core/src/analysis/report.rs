//! Everything `stats`, `plot` and `dashboard` show, computed once from a study and its
//! store: f(k), rankings, population worths, the counterfactual equilibria, diversity,
//! data quality and participant progress.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::agreement;
use super::counterfactual::{self, Counterfactual};
use super::diversity::{self, Diversity};
use super::fk::{self, FkRow};
use super::quality::{self, Quality};
use super::ranking::{self, Ranking, Worth};
use crate::store::{BestOfKAnswer, Candidate, QualityCounts, RankAnswer, Store, StoreError};
use crate::study::{Decoding, Design, Study};

#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap replicates for the f(k) intervals.
    pub replicates: usize,
    /// Bootstrap replicates for the population Plackett–Luce worths (each is a refit).
    pub worth_replicates: usize,
    /// Participant-bootstrap replicates of the exact (`orders`) equilibrium rows (each
    /// re-solves NLHF and every NE_k).
    pub orders_replicates: usize,
    pub too_fast_ms: u64,
    /// The equilibria are computed for k = 1..=k_max.
    pub k_max: u32,
    /// The latent-class Plackett–Luce model and its bootstrap.
    pub model: super::model::ModelOptions,
}

impl Options {
    /// Defaults for a study: k up to the largest k its best_of_k blocks use, at least 8.
    pub fn for_study(study: &Study) -> Self {
        let k_max = study
            .blocks
            .iter()
            .filter_map(|b| match &b.design {
                Design::BestOfK { k, .. } => k.iter().copied().max(),
                Design::Rank { .. } => None,
            })
            .max()
            .unwrap_or(0)
            .max(8);
        let model = super::model::ModelOptions {
            fit: super::mixture::FitOptions { seed: study.seed, ..Default::default() },
            ..Default::default()
        };
        Self { replicates: 2000, worth_replicates: 200, orders_replicates: 200, too_fast_ms: 1500, k_max, model }
    }
}

pub(crate) use crate::store::Progress;

/// Why a report could not be made: the store could not give what it reads.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub study: String,
    pub(crate) convention: &'static str,
    pub progress: Progress,
    pub fk: Vec<FkRow>,
    /// How many per-participant rankings there are, by method; the rankings themselves are
    /// per person and go to `stats --per-participant FILE.jsonl`, not into the report.
    pub rankings: RankingCounts,
    pub population: Vec<Worth>,
    pub equilibria: Vec<counterfactual::EquilibriumRow>,
    pub equilibria_skipped: Vec<counterfactual::Skipped>,
    /// The latent-class Plackett–Luce model behind the `pl_mixture` rows, if any choices.
    pub population_model: Option<super::model::PopulationModel>,
    pub diversity: Vec<Diversity>,
    /// Per prompt, how much participants agree.
    pub agreement: Vec<agreement::Agreement>,
    pub quality: Quality,
}

impl Report {
    /// Reads what the report needs from the store, in one snapshot, and computes it. The
    /// rank analyses (the bulk of the work, parallel over prompts) run on another thread
    /// while this one, which owns the database connection, reads the rest.
    pub fn compute(study: &Study, store: &Store, opts: &Options) -> Result<Self, AnalysisError> {
        Self::compute_with(study, store, opts, None)
    }

    /// As [`Report::compute`], and where `per_person` is given, every participant's lines
    /// (rankings, too-fast answers, attention checks) are handed to it one at a time, in a
    /// fixed order, so that a file of them can be streamed without holding them.
    pub fn compute_with(
        study: &Study,
        store: &Store,
        opts: &Options,
        per_person: PerPerson<'_>,
    ) -> Result<Self, AnalysisError> {
        let snapshot = store.snapshot()?;
        // Every candidate is read once and serves f(k), the pools and diversity.
        let candidates = store.all_candidates()?;
        let rank_answers = store.rank_answers()?;
        let groups = ranking::rank_observations(&rank_answers);
        std::thread::scope(|scope| {
            let rank_work = scope.spawn(|| RankParts::compute(study, &candidates, &groups, opts));
            let best_of_k = store.best_of_k_answers();
            let finished = store.finish_order();
            let progress = store.progress();
            let counts = store.quality_counts(opts.too_fast_ms);
            let rank = rank_work.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            drop(snapshot);
            Ok(Self::assemble(
                study,
                &candidates,
                (&best_of_k?, &rank_answers, &finished?),
                (progress?, &counts?),
                rank,
                opts,
                per_person,
            ))
        })
    }

    /// The report from records read already: pure, no database.
    pub fn from_records(study: &Study, records: &Records, opts: &Options) -> Self {
        Self::from_records_with(study, records, opts, None)
    }

    /// As [`Report::from_records`], handing every participant's lines to `per_person`.
    pub fn from_records_with(study: &Study, records: &Records, opts: &Options, per_person: PerPerson<'_>) -> Self {
        let groups = ranking::rank_observations(&records.rank_answers);
        let rank = RankParts::compute(study, &records.candidates, &groups, opts);
        Self::assemble(
            study,
            &records.candidates,
            (&records.best_of_k, &records.rank_answers, &records.finished),
            (records.progress.clone(), &records.quality),
            rank,
            opts,
            per_person,
        )
    }

    fn assemble(
        study: &Study,
        candidates: &[Candidate],
        // The answers, and who finished in which order.
        (best_of_k, rank_answers, finished): (&[BestOfKAnswer], &[RankAnswer], &[String]),
        // Progress, and the counts of the quality checks.
        (progress, quality): (Progress, &QualityCounts),
        rank: RankParts,
        opts: &Options,
        mut per_person: PerPerson<'_>,
    ) -> Self {
        let texts: HashMap<i64, &str> = candidates.iter().map(|c| (c.id, c.text.as_str())).collect();
        let fk = fk::compute(
            &fk::observations(best_of_k, &texts),
            finished,
            (opts.replicates, study.seed),
            study.options.allow_no_preference,
        );
        let RankParts { texts, population, counterfactual, diversity, whole_orders } = rank;
        let mut rankings = RankingCounts::default();
        for obs in texts.values() {
            *rankings.by_method.entry(ranking::method_of(obs)).or_default() += 1;
        }
        if let Some(out) = reborrow(&mut per_person) {
            given_rankings(&texts, out);
        }
        let model = model_analysis(study, candidates, best_of_k, rank_answers, opts, reborrow(&mut per_person));
        if model.rankings > 0 {
            rankings.by_method.insert("pl_mixture", model.rankings);
        }
        if let Some(out) = per_person {
            quality_lines(quality, out);
        }
        let mut equilibria = counterfactual.rows;
        equilibria.extend(model.rows);
        Self {
            study: study.name.clone(),
            convention: fk::CONVENTION,
            progress,
            fk,
            rankings,
            population,
            equilibria,
            equilibria_skipped: counterfactual.skipped,
            population_model: model.model,
            diversity,
            agreement: agreement::compute(
                candidates,
                rank_answers,
                best_of_k,
                &whole_orders,
                opts.worth_replicates,
                study.seed,
            ),
            quality: quality::compute(quality, opts.too_fast_ms),
        }
    }
}

/// Where a report hands every participant's lines, if anywhere (see [`Report::compute_with`]).
pub type PerPerson<'a> = Option<&'a mut dyn FnMut(PersonLine<'_>)>;

/// Every participant's own ranking of each prompt, to `out`.
fn given_rankings(
    texts: &BTreeMap<(String, String), Vec<ranking::RankObservation>>,
    out: &mut dyn FnMut(PersonLine<'_>),
) {
    for (key, obs) in texts {
        if let Some(r) = ranking::ranking_of(key, obs) {
            out(PersonLine::Ranking(&r));
        }
    }
}

/// Every participant's too-fast answers and attention checks, to `out`.
fn quality_lines(quality: &QualityCounts, out: &mut dyn FnMut(PersonLine<'_>)) {
    for (participant, too_fast, answers) in &quality.too_fast {
        out(PersonLine::TooFast { participant, too_fast: *too_fast, answers: *answers });
    }
    for (participant, failed, checks) in &quality.attention {
        out(PersonLine::Attention { participant, failed: *failed, checks: *checks });
    }
}

/// The sink again, for a callee, keeping it for later.
fn reborrow<'b>(p: &'b mut PerPerson<'_>) -> PerPerson<'b> {
    match p {
        Some(f) => Some(&mut **f),
        None => None,
    }
}

/// One line of `stats --per-participant FILE.jsonl`: what the report summarises per person.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PersonLine<'a> {
    /// A participant's ranking of a prompt's responses (see [`Ranking`]'s methods).
    Ranking(&'a Ranking),
    /// A participant with answers under the too-fast threshold.
    TooFast { participant: &'a str, too_fast: usize, answers: usize },
    /// A participant shown attention checks.
    Attention { participant: &'a str, failed: usize, checks: usize },
}

/// The per-participant rankings there are, by method, and where to find them.
#[derive(Debug, Clone, Serialize)]
pub struct RankingCounts {
    /// (participant, prompt) pairs ranked, per method (`order`, `pl_order`, `pl_top1`,
    /// `pl_mixture`; see [`Ranking`]).
    pub by_method: BTreeMap<&'static str, usize>,
    pub per_participant: &'static str,
}

impl Default for RankingCounts {
    fn default() -> Self {
        Self {
            by_method: BTreeMap::new(),
            per_participant: "each ranking, too-fast and attention line: stats --per-participant FILE.jsonl",
        }
    }
}

impl RankingCounts {
    /// Rankings of every method.
    pub fn total(&self) -> usize {
        self.by_method.values().sum()
    }
}

/// Everything a report is computed from, as the store gives it.
#[derive(Debug, Clone, Default)]
pub struct Records {
    pub candidates: Vec<Candidate>,
    pub best_of_k: Vec<BestOfKAnswer>,
    pub rank_answers: Vec<RankAnswer>,
    /// Finished participants in the order they finished (the confidence sequences' order).
    pub finished: Vec<String>,
    pub quality: QualityCounts,
    pub progress: Progress,
}

/// What a live view refreshes on every commit, from one snapshot: progress and the
/// empirical f(k) rows with their intervals and confidence sequences (no length control:
/// that, the model and the equilibria come from the full [`Report`], in the background).
#[derive(Debug, Clone)]
pub struct LiveView {
    pub progress: Progress,
    pub fk: Vec<FkRow>,
}

impl Report {
    /// A report of what a live view knows, before the first full report is ready: f(k)
    /// and progress, every other section empty.
    pub fn from_live(study: &str, live: LiveView) -> Self {
        Self {
            study: study.to_string(),
            convention: fk::CONVENTION,
            progress: live.progress,
            fk: live.fk,
            rankings: RankingCounts::default(),
            population: Vec::new(),
            equilibria: Vec::new(),
            equilibria_skipped: Vec::new(),
            population_model: None,
            diversity: Vec::new(),
            agreement: Vec::new(),
            quality: Quality::default(),
        }
    }

    /// The live view's f(k) and progress in this report (when the view is newer): each
    /// row keeps this report's length control, which only the full computation fits.
    pub fn refresh_from(&mut self, live: &LiveView) {
        let mut length: BTreeMap<(String, String, u32), Option<super::length::LengthControl>> =
            self.fk.drain(..).map(|r| ((r.policy_a, r.policy_b, r.k), r.length_control)).collect();
        self.fk = live
            .fk
            .iter()
            .cloned()
            .map(|mut r| {
                r.length_control = length.remove(&(r.policy_a.clone(), r.policy_b.clone(), r.k)).flatten();
                r
            })
            .collect();
        self.progress = live.progress.clone();
    }
}

impl LiveView {
    /// Reads and computes the live view (`replicates`: the f(k) bootstrap's, as the
    /// report's, so the rows' numbers are the report's own).
    pub fn compute(study: &Study, store: &Store, replicates: usize) -> Result<Self, AnalysisError> {
        let (fk, progress) = fk_from_store(study, store, replicates, false)?;
        Ok(Self { progress, fk })
    }
}

/// The f(k) rows and progress from one snapshot of the store; `length`: with the length
/// control and tie model of each row (the full fit), else without (the live view's).
fn fk_from_store(
    study: &Study,
    store: &Store,
    replicates: usize,
    length: bool,
) -> Result<(Vec<FkRow>, Progress), AnalysisError> {
    let _snapshot = store.snapshot()?;
    let candidates = store.all_candidates()?;
    let texts: HashMap<i64, &str> = candidates.iter().map(|c| (c.id, c.text.as_str())).collect();
    let (answers, finished) = (store.best_of_k_answers()?, store.finish_order()?);
    let resampling = (replicates, study.seed);
    let fk = if length {
        fk::compute(&fk::observations(&answers, &texts), &finished, resampling, study.options.allow_no_preference)
    } else {
        fk::compute_without_length(&fk::scores(&answers, &texts), &finished, resampling)
    };
    Ok((fk, store.progress()?))
}

/// f(k) alone, from the store: what `demo` shows after a participant.
pub fn fk_rows(study: &Study, store: &Store, replicates: usize) -> Result<Vec<FkRow>, AnalysisError> {
    Ok(fk_from_store(study, store, replicates, true)?.0)
}

/// The analyses of rank trials: per-participant rankings, population worths, the
/// counterfactual equilibria over each prompt's pool, and the pools' diversity.
struct RankParts {
    /// Observations per (participant, prompt), copies of a text as one response.
    texts: BTreeMap<(String, String), Vec<ranking::RankObservation>>,
    population: Vec<Worth>,
    counterfactual: Counterfactual,
    diversity: Vec<Diversity>,
    /// Per prompt, the stated orders of its whole pool (Kendall's W is over these).
    whole_orders: BTreeMap<String, Vec<Vec<i64>>>,
}

impl RankParts {
    fn compute(
        study: &Study,
        candidates: &[Candidate],
        groups: &BTreeMap<(String, String), Vec<ranking::RankObservation>>,
        opts: &Options,
    ) -> Self {
        let rank_policies: BTreeSet<String> = study
            .blocks
            .iter()
            .filter_map(|b| match &b.design {
                Design::Rank { policies, .. } => Some(policies.iter().cloned()),
                Design::BestOfK { .. } => None,
            })
            .flatten()
            .collect();
        let greedy = greedy_policies(study);
        let ks: Vec<u32> = (1..=opts.k_max).collect();
        let pools = counterfactual::pools(candidates, &rank_policies);
        // Rankings and worths are of responses: copies of one text are one, as in the
        // equilibria and the mixture (fitted as separate items, the order a participant
        // gave to copies, which means nothing, would move every worth of the prompt).
        let (stand_for, responses) = counterfactual::responses_of(&pools);
        let texts = ranking::by_text(groups, |id| stand_for.get(&id).copied().unwrap_or(id));
        let stated = counterfactual::stated_orders(&texts, &responses);
        let (population, counterfactual) = rayon::join(
            || ranking::population_worths(&texts, opts.worth_replicates, study.seed),
            || {
                if rank_policies.is_empty() {
                    Counterfactual::default()
                } else {
                    let resampling =
                        counterfactual::Resampling { replicates: opts.orders_replicates, seed: study.seed };
                    counterfactual::analyse(&pools, &stated, &greedy, &ks, resampling)
                }
            },
        );
        let mut whole_orders: BTreeMap<String, Vec<Vec<i64>>> = BTreeMap::new();
        for r in stated.into_iter().filter(|r| !r.order.is_empty()) {
            whole_orders.entry(r.prompt).or_default().push(r.order);
        }
        Self { texts, population, counterfactual, diversity: pool_diversity(study, candidates), whole_orders }
    }
}

/// The latent-class model over every choice, and its certified policies over each prompt's
/// pool: the rank blocks' policies' candidates, or where a study has no rank block, those
/// of its best_of_k blocks.
fn model_analysis(
    study: &Study,
    candidates: &[Candidate],
    best_of_k: &[BestOfKAnswer],
    rank_answers: &[RankAnswer],
    opts: &Options,
    per_person: PerPerson<'_>,
) -> super::model::ModelAnalysis {
    let (rank, bok): (BTreeSet<String>, BTreeSet<String>) =
        study.blocks.iter().fold((BTreeSet::new(), BTreeSet::new()), |(mut r, mut b), block| {
            match &block.design {
                Design::Rank { policies, .. } => r.extend(policies.iter().cloned()),
                Design::BestOfK { policy_a, policy_b, .. } => {
                    b.insert(policy_a.clone());
                    b.insert(policy_b.clone());
                }
            }
            (r, b)
        });
    let pool_policies = if rank.is_empty() { bok } else { rank };
    let evidence = super::mixture::Evidence::from_records(rank_answers, best_of_k, candidates);
    let pools = counterfactual::pools(candidates, &pool_policies);
    let ks: Vec<u32> = (1..=opts.k_max).collect();
    super::model::analyse(&pools, &evidence, &greedy_policies(study), &ks, &opts.model, per_person)
}

/// The policies decoded at temperature 0.
fn greedy_policies(study: &Study) -> BTreeSet<String> {
    study
        .policies
        .iter()
        .filter(|p| p.source.decoding().is_some_and(Decoding::is_greedy))
        .map(|p| p.name.clone())
        .collect()
}

/// Diversity of every (policy, prompt) pool, its texts in sample order.
pub(crate) fn pool_diversity(study: &Study, candidates: &[Candidate]) -> Vec<Diversity> {
    let mut pools: BTreeMap<(&str, &str), Vec<(u32, &str)>> = BTreeMap::new();
    for c in candidates {
        pools.entry((c.policy.as_str(), c.prompt_id.as_str())).or_default().push((c.sample_index, c.text.as_str()));
    }
    let mut out = Vec::new();
    // In the study's order of policies and prompts.
    for policy in &study.policies {
        for prompt in &study.prompts {
            if let Some(texts) = pools.get_mut(&(policy.name.as_str(), prompt.id.as_str())) {
                texts.sort_unstable_by_key(|t| t.0);
                let refs: Vec<&str> = texts.iter().map(|t| t.1).collect();
                out.push(diversity::diversity(&policy.name, &prompt.id, &refs));
            }
        }
    }
    out
}

/// What an f(k) chart of a report shows, computed once for `plot` and `dashboard`.
#[derive(Debug, Clone, PartialEq)]
pub struct FkChart {
    /// The x axis runs over k = 1..=k_max (at least 2).
    pub k_max: u32,
    /// The y axis runs from y_min (a tenth below every point, interval and curve) to 1.
    pub y_min: f64,
    /// The (A, B) pairs of the f(k) rows, in order of first appearance.
    pub pairs: Vec<(String, String)>,
    /// Mean certified f(k) over prompts per (policy, k).
    pub certified: BTreeMap<(&'static str, u32), (f64, usize)>,
    /// Mean 95% interval over prompts per (policy, k) of the rate on the population (rows
    /// with an interval only): where NE_k, k/(k+1) on the answers, stands on new people.
    pub population: BTreeMap<(&'static str, u32), (f64, f64)>,
    /// Whether some of the curves come from the population model (prompts no participant
    /// ordered whole): the chart says "model-based".
    pub model_based: bool,
}

impl FkChart {
    pub fn of(r: &Report) -> Self {
        let (shown, model_based) = counterfactual::shown_rows(&r.equilibria);
        let population = counterfactual::mean_intervals(&shown);
        let certified = counterfactual::mean_certified(shown);
        // The axis covers the k observed; without observations, the certified curves'.
        let observed = r.fk.iter().map(|x| x.k).max();
        let k_max = observed.or_else(|| certified.keys().map(|(_, k)| *k).max()).unwrap_or(8).max(2);
        let low =
            r.fk.iter()
                .map(|x| if x.ci_low.is_finite() { x.ci_low } else { x.rate })
                .chain(certified.iter().filter(|((_, k), _)| *k <= k_max).map(|(_, (v, _))| *v))
                .chain(population.iter().filter(|((p, k), _)| *p == "ne" && *k <= k_max).map(|(_, (lo, _))| *lo))
                .fold(0.5f64, f64::min);
        let mut pairs: Vec<(String, String)> = Vec::new();
        for x in &r.fk {
            let p = (x.policy_a.clone(), x.policy_b.clone());
            if !pairs.contains(&p) {
                pairs.push(p);
            }
        }
        Self { k_max, y_min: ((low - 0.05) * 10.0).floor().max(0.0) / 10.0, pairs, certified, population, model_based }
    }

    /// The mean population interval of one policy as (k, low, high), within the axis.
    pub fn band(&self, policy: &str) -> Vec<(f64, f64, f64)> {
        self.population
            .iter()
            .filter(|((p, k), _)| *p == policy && *k <= self.k_max)
            .map(|((_, k), (lo, hi))| (*k as f64, *lo, *hi))
            .collect()
    }

    /// The mean certified curve of one policy (`ne`, `nlhf`, `base`, `greedy`) as (k, rate),
    /// within the axis (k ≤ `k_max`).
    pub fn curve(&self, policy: &str) -> Vec<(f64, f64)> {
        self.certified
            .iter()
            .filter(|((p, k), _)| *p == policy && *k <= self.k_max)
            .map(|((_, k), (v, _))| (*k as f64, *v))
            .collect()
    }

    /// The f(k) rows of pair `i`.
    pub fn rows<'a>(&self, r: &'a Report, i: usize) -> Vec<&'a FkRow> {
        let (a, b) = &self.pairs[i];
        r.fk.iter().filter(|x| &x.policy_a == a && &x.policy_b == b).collect()
    }
}

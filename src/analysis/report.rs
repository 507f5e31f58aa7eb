//! Everything `stats`, `plot` and `dashboard` show, computed once from a study and its
//! store: f(k), rankings, population worths, the counterfactual equilibria, diversity,
//! data quality and participant progress.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::counterfactual::{self, Counterfactual};
use super::diversity::{self, Diversity};
use super::fk::{self, FkRow};
use super::quality::{self, Quality};
use super::ranking::{self, Ranking, Worth};
use crate::store::{Candidate, Store};
use crate::study::{Design, PolicySource, Study};

#[derive(Debug, Clone)]
pub struct Options {
    /// Bootstrap replicates for the f(k) intervals.
    pub replicates: usize,
    /// Bootstrap replicates for the population Plackett–Luce worths (each is a refit).
    pub worth_replicates: usize,
    pub too_fast_ms: u64,
    /// The equilibria are computed for k = 1..=k_max.
    pub k_max: u32,
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
        Self { replicates: 2000, worth_replicates: 200, too_fast_ms: 1500, k_max }
    }
}

/// Participants enrolled, finished, and answers given out of trials planned.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    pub participants: usize,
    pub completed: usize,
    pub answered: usize,
    pub trials: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub study: String,
    pub convention: &'static str,
    pub progress: Progress,
    pub fk: Vec<FkRow>,
    pub rankings: Vec<Ranking>,
    pub population: Vec<Worth>,
    pub equilibria: Vec<counterfactual::EquilibriumRow>,
    pub equilibria_skipped: Vec<counterfactual::Skipped>,
    pub diversity: Vec<Diversity>,
    pub quality: Quality,
}

impl Report {
    pub fn compute(study: &Study, store: &Store, opts: &Options) -> rusqlite::Result<Self> {
        // Everything is read from one snapshot, so the report describes one moment of a
        // study that other processes keep writing to (and holds none of them up).
        let _snapshot = store.snapshot()?;
        // Every candidate is read once and serves f(k), the pools and diversity.
        let candidates = all_candidates(store)?;
        let groups = ranking::rank_observations(store)?;
        let rank_policies: BTreeSet<String> = study
            .blocks
            .iter()
            .filter_map(|b| match &b.design {
                Design::Rank { policies, .. } => Some(policies.iter().cloned()),
                Design::BestOfK { .. } => None,
            })
            .flatten()
            .collect();
        let greedy: BTreeSet<String> = study
            .policies
            .iter()
            .filter(|p| matches!(&p.source, PolicySource::Model { decoding, .. } if decoding.is_greedy()))
            .map(|p| p.name.clone())
            .collect();
        let ks: Vec<u32> = (1..=opts.k_max).collect();
        // The rank analyses (the bulk of the work, parallel over prompts) run on another
        // thread while this one, which owns the database connection, reads the rest and
        // computes f(k) and the quality checks.
        std::thread::scope(|scope| {
            let rank_work = scope.spawn(|| {
                let rankings = ranking::rankings_of(&groups);
                let (population, counterfactual) = rayon::join(
                    || ranking::population_worths(&groups, opts.worth_replicates, study.seed),
                    || {
                        if rank_policies.is_empty() {
                            Counterfactual::default()
                        } else {
                            let pools = counterfactual::pools(&candidates, &rank_policies);
                            counterfactual::analyse(&pools, &rankings, &greedy, &ks)
                        }
                    },
                );
                (rankings, population, counterfactual, pool_diversity(study, &candidates))
            });
            let texts: std::collections::HashMap<i64, &str> =
                candidates.iter().map(|c| (c.id, c.text.as_str())).collect();
            let observations = fk::observations_with(store, &texts)?;
            let progress = progress(store)?;
            let quality = quality::quality(store, opts.too_fast_ms)?;
            let fk = fk::compute(&observations, opts.replicates, study.seed);
            let (rankings, population, Counterfactual { rows: equilibria, skipped: equilibria_skipped }, diversity) =
                rank_work.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok(Self {
                study: study.name.clone(),
                convention: fk::CONVENTION,
                progress,
                fk,
                rankings,
                population,
                equilibria,
                equilibria_skipped,
                diversity,
                quality,
            })
        })
    }
}

/// Every stored candidate, by id.
pub fn all_candidates(store: &Store) -> rusqlite::Result<Vec<Candidate>> {
    store
        .conn()
        .prepare("SELECT id, policy, prompt_id, sample_index, text FROM candidates ORDER BY id")?
        .query_map([], |r| {
            Ok(Candidate {
                id: r.get(0)?,
                policy: r.get(1)?,
                prompt_id: r.get(2)?,
                sample_index: r.get(3)?,
                text: r.get(4)?,
            })
        })?
        .collect()
}

/// Diversity of every (policy, prompt) pool, its texts in sample order.
pub fn pool_diversity(study: &Study, candidates: &[Candidate]) -> Vec<Diversity> {
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

pub fn progress(store: &Store) -> rusqlite::Result<Progress> {
    let c = store.conn();
    let (participants, completed): (i64, i64) =
        c.query_row("SELECT COUNT(*), COUNT(completed_at) FROM participants", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (trials, answered): (i64, i64) =
        c.query_row("SELECT COUNT(*), (SELECT COUNT(*) FROM answers) FROM trials", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(Progress {
        participants: participants as usize,
        completed: completed as usize,
        answered: answered as usize,
        trials: trials as usize,
    })
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
}

impl FkChart {
    pub fn of(r: &Report) -> Self {
        let certified = counterfactual::mean_certified(&r.equilibria);
        let k_max = r.fk.iter().map(|x| x.k).chain(certified.keys().map(|(_, k)| *k)).max().unwrap_or(8).max(2);
        let low =
            r.fk.iter()
                .map(|x| if x.ci_low.is_finite() { x.ci_low } else { x.rate })
                .chain(certified.values().map(|(v, _)| *v))
                .fold(0.5f64, f64::min);
        let mut pairs: Vec<(String, String)> = Vec::new();
        for x in &r.fk {
            let p = (x.policy_a.clone(), x.policy_b.clone());
            if !pairs.contains(&p) {
                pairs.push(p);
            }
        }
        Self { k_max, y_min: ((low - 0.05) * 10.0).floor().max(0.0) / 10.0, pairs, certified }
    }

    /// The mean certified curve of one policy (`ne`, `nlhf`, `base`, `greedy`) as (k, rate).
    pub fn curve(&self, policy: &str) -> Vec<(f64, f64)> {
        self.certified.iter().filter(|((p, _), _)| *p == policy).map(|((_, k), (v, _))| (*k as f64, *v)).collect()
    }

    /// The f(k) rows of pair `i`.
    pub fn rows<'a>(&self, r: &'a Report, i: usize) -> Vec<&'a FkRow> {
        let (a, b) = &self.pairs[i];
        r.fk.iter().filter(|x| &x.policy_a == a && &x.policy_b == b).collect()
    }
}

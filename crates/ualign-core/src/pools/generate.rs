//! Generating pools through the engine: the loaded models (one per folder, shared by the
//! policies that use it) and one pool job at a time, stored in one transaction.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::plan::{PoolJob, needed_pools};
use crate::store::{NewCandidate, Store, StoreError};
use crate::study::{Decoding, PolicySource, Study};
use ualign_engine::{EngineError, EpChoice, GenOptions, Generator, Precision, SampleSpec};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("policy `{policy}`: {source}")]
    Engine { policy: String, source: EngineError },
    #[error("policy `{policy}`: {source}")]
    Server { policy: String, source: Box<ualign_engine::server::ServerError> },
    #[error("policy `{0}` is not a model or server policy of the study: only `ualign import` fills its pools")]
    NotAModel(String),
    #[error("prompt `{0}` is not in the study")]
    NoPrompt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PoolError {
    pub(crate) fn server(policy: &str, source: ualign_engine::server::ServerError) -> Self {
        PoolError::Server { policy: policy.to_string(), source: Box::new(source) }
    }

    /// The policy the error is about, where it is about one.
    pub fn policy(&self) -> Option<&str> {
        match self {
            PoolError::Engine { policy, .. } | PoolError::Server { policy, .. } => Some(policy),
            PoolError::NotAModel(policy) => Some(policy),
            _ => None,
        }
    }

    /// Whether generation was cancelled (Ctrl-C, a worker stopped), not failed.
    pub fn is_cancelled(&self) -> bool {
        match self {
            PoolError::Engine { source, .. } => matches!(source, EngineError::Cancelled),
            PoolError::Server { source, .. } => source.is_cancelled(),
            _ => false,
        }
    }
}

/// Loaded models, one per (folder, provider), reused across policies that share a model,
/// and the clients of the server policies, one per policy.
pub struct Models {
    ep: EpChoice,
    threads: Option<usize>,
    loaded: BTreeMap<(PathBuf, Precision), (Generator, String)>,
    pub(super) servers: BTreeMap<String, ualign_engine::server::ServerClient>,
    /// Things the user should be told (e.g. `auto` fell back to CPU); the caller shows them
    /// where it can: a CLI on stderr, the TUI on its status line.
    pub(super) notices: Vec<String>,
}

/// How far a set of pool jobs has come: `generate`'s progress bar and the participant's
/// "preparing the answers" line both show it (the engine worker reports it after each
/// pool of a request, [`crate::pools::WorkerEvent::Progress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Pools filled (or found filled by someone else), of those asked for.
    pub pools_done: usize,
    pub pools: usize,
    /// Candidates stored, of those missing when the jobs were planned.
    pub candidates_done: u64,
    pub candidates: u64,
    /// New tokens generated so far.
    pub tokens: u64,
}

impl Progress {
    /// Nothing done yet of `jobs`.
    pub fn of(jobs: &[PoolJob]) -> Self {
        let candidates = jobs.iter().map(|j| j.missing.len() as u64).sum();
        Self { pools: jobs.len(), candidates, ..Self::default() }
    }

    /// One more pool done, with what it produced (nothing, when it was found filled).
    pub fn pool_done(&mut self, done: Option<&PoolDone>) {
        self.pools_done += 1;
        if let Some(d) = done {
            self.candidates_done += d.candidates as u64;
            self.tokens += d.new_tokens;
        }
    }
}

/// What one finished pool produced, for progress reports.
#[derive(Debug, Clone)]
pub struct PoolDone {
    pub candidates: usize,
    pub new_tokens: u64,
    pub provider: String,
}

impl Models {
    pub fn new(ep: EpChoice, threads: Option<usize>) -> Self {
        Self { ep, threads, loaded: BTreeMap::new(), servers: BTreeMap::new(), notices: Vec::new() }
    }

    /// The generator for a folder at a precision (loaded on first use) and its model hash.
    pub(crate) fn get(&mut self, dir: &Path, precision: Precision) -> Result<&mut (Generator, String), EngineError> {
        let key = (dir.to_path_buf(), precision);
        if !self.loaded.contains_key(&key) {
            let mut g = ualign_engine::load_at(dir, self.ep, self.threads, precision)?;
            self.notices.append(&mut g.notices);
            if let Some(why) = &g.provider.fallback {
                self.notices
                    .push(format!("CUDA is not available ({}); running on CPU", why.lines().next().unwrap_or(why)));
            }
            let hash = g.model_hash()?;
            self.loaded.insert(key.clone(), (g, hash));
        }
        Ok(self.loaded.get_mut(&key).expect("inserted above"))
    }

    /// Loads every model the study's blocks draw from and asks every server they draw
    /// from for its models, so that a broken model folder, a wrong URL or a refused key is
    /// found before anything is stored.
    pub fn preload(&mut self, study: &Study) -> Result<(), PoolError> {
        let needed = needed_pools(study);
        for policy in study.policies.iter().filter(|p| needed.contains_key(&p.name)) {
            match &policy.source {
                PolicySource::Model { dir, decoding } => {
                    self.get(dir, decoding.precision)
                        .map_err(|source| PoolError::Engine { policy: policy.name.clone(), source })?;
                }
                PolicySource::Server { .. } => {
                    self.server(policy)?;
                }
                PolicySource::Imported => {}
            }
        }
        Ok(())
    }

    /// Checks that every model folder the study needs opens (its files, its tokenizer, its
    /// provisioned weights) without building a session, and that every server it needs
    /// answers: the quick check before a database is made when the models load later, on
    /// the engine's own thread. Returns the servers' notices.
    pub fn check_folders(study: &Study) -> Result<Vec<String>, PoolError> {
        let needed = needed_pools(study);
        let mut servers = Models::new(EpChoice::Cpu, None);
        for policy in study.policies.iter().filter(|p| needed.contains_key(&p.name)) {
            match &policy.source {
                PolicySource::Model { dir, decoding } => {
                    ualign_engine::ModelFolder::open(dir)
                        .and_then(|f| f.takes(decoding.precision))
                        .map_err(|source| PoolError::Engine { policy: policy.name.clone(), source })?;
                }
                PolicySource::Server { .. } => {
                    servers.server(policy)?;
                }
                PolicySource::Imported => {}
            }
        }
        Ok(servers.take_notices())
    }

    /// Notices gathered since the last call.
    pub fn take_notices(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notices)
    }

    /// Generates and stores one pool job. Nothing is stored if it is cancelled or fails.
    pub fn run_job(
        &mut self,
        study: &Study,
        store: &mut Store,
        job: &PoolJob,
        cancel: Option<&AtomicBool>,
    ) -> Result<PoolDone, PoolError> {
        if matches!(study.policy(&job.policy).map(|p| &p.source), Some(PolicySource::Server { .. })) {
            let mut done = None;
            self.run_server_jobs(study, store, std::slice::from_ref(job), cancel, &mut |_, d| done = Some(d.clone()))?;
            return Ok(done.unwrap_or(PoolDone { candidates: 0, new_tokens: 0, provider: String::new() }));
        }
        let day = store.study_day()?;
        let made = self.sample(study, &job.policy, &job.prompt_id, &job.missing, day, cancel)?;
        let (samples, timing, hash, decoding) = (made.samples, made.timing, made.model_hash, made.decoding);
        let provider = made.provider;
        let settings = settings_json(&decoding);
        let rows: Vec<NewCandidate> = samples
            .into_iter()
            .map(|s| NewCandidate {
                policy: job.policy.clone(),
                prompt_id: job.prompt_id.clone(),
                sample_index: s.index,
                text: s.text,
                token_count: Some(s.token_ids.len() as u32),
                finish_reason: Some(s.finish_reason.as_str().into()),
                logprob: Some(s.logprob),
                seed: Some(s.seed),
                settings: Some(settings.clone()),
                model_hash: Some(hash.clone()),
                provider: Some(provider.clone()),
                prefill_ms: Some(timing.prefill_ms),
                decode_ms: Some(timing.decode_ms),
                meta: Some(serde_json::json!({ "prompt_tokens": timing.prompt_tokens }).to_string()),
            })
            .collect();
        store.insert_candidates(&rows)?;
        Ok(PoolDone { candidates: rows.len(), new_tokens: timing.new_tokens + rows.len() as u64, provider })
    }
}

/// Samples of one pool, as [`Models::sample`] makes them.
pub struct Made {
    pub samples: Vec<ualign_engine::Sample>,
    pub timing: ualign_engine::PoolTiming,
    pub model_hash: String,
    pub provider: String,
    pub decoding: Decoding,
}

impl Models {
    /// The samples `indices` of a policy's pool for a prompt: the policy's model and
    /// settings, each sample's seed from the study's seed, and the chat template dated
    /// `day` (the study's recorded day). What `generate` stores, and what `ualign sample
    /// --study` makes again to reproduce one stored candidate (rows decoded together
    /// equal each row decoded alone, so one sample needs no others).
    pub fn sample(
        &mut self,
        study: &Study,
        policy: &str,
        prompt_id: &str,
        indices: &[u32],
        day: chrono::NaiveDate,
        cancel: Option<&AtomicBool>,
    ) -> Result<Made, PoolError> {
        let policy = study.policy(policy).ok_or_else(|| PoolError::NotAModel(policy.to_string()))?;
        let PolicySource::Model { dir, decoding } = &policy.source else {
            return Err(PoolError::NotAModel(policy.name.clone()));
        };
        let prompt = study.prompt(prompt_id).ok_or_else(|| PoolError::NoPrompt(prompt_id.to_string()))?;
        let engine_err = |source| PoolError::Engine { policy: policy.name.clone(), source };
        let (g, hash) = self.get(dir, decoding.precision).map_err(engine_err)?;
        g.set_template_day(day);
        let ids = g.encode_prompt(&prompt.text, decoding.chat_template).map_err(engine_err)?;
        let specs: Vec<SampleSpec> = indices
            .iter()
            .map(|&index| SampleSpec {
                index,
                seed: crate::seed::sample_seed(study.seed, &prompt.id, &policy.name, index),
            })
            .collect();
        let (samples, timing) = g.generate(&ids, &specs, &GenOptions::from(decoding), cancel).map_err(engine_err)?;
        Ok(Made {
            samples,
            timing,
            model_hash: hash.clone(),
            provider: g.provider.to_string(),
            decoding: decoding.clone(),
        })
    }
}

fn settings_json(d: &Decoding) -> String {
    serde_json::to_string(d).unwrap_or_default()
}

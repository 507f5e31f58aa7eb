//! Filling candidate pools: for every model policy and every prompt a block draws it for,
//! generate the samples not yet stored and store each prompt's pool in one transaction.
//! Resumable (stored samples are skipped) and interruptible (a cancelled pool stores
//! nothing; finished pools stay). Used by `ualign generate`, `ualign demo` and the TUI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::engine::{self, EngineError, EpChoice, GenOptions, Generator, SampleSpec};
use crate::store::{NewCandidate, Store, StoreError};
use crate::study::{Decoding, Design, PolicySource, Study};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("policy `{policy}`: {source}")]
    Engine { policy: String, source: EngineError },
    #[error("policy `{0}` is not a model policy of the study: only `ualign import` fills its pools")]
    NotAModel(String),
    #[error("prompt `{0}` is not in the study")]
    NoPrompt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One unit of work: the missing samples of one policy's pool for one prompt.
#[derive(Debug, Clone)]
pub struct PoolJob {
    pub policy: String,
    pub prompt_id: String,
    pub missing: Vec<u32>,
}

/// (policy, prompt) pairs the study's blocks draw from, by policy.
pub fn needed_pools(study: &Study) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for b in &study.blocks {
        let policies: Vec<&String> = match &b.design {
            Design::BestOfK { policy_a, policy_b, .. } => vec![policy_a, policy_b],
            Design::Rank { policies, .. } => policies.iter().collect(),
        };
        for p in policies {
            out.entry(p.clone()).or_default().extend(b.prompts.iter().cloned());
        }
    }
    out
}

/// The model-policy pools that still miss samples, in study order.
pub fn pending_jobs(study: &Study, store: &Store) -> Result<Vec<PoolJob>, StoreError> {
    let needed = needed_pools(study);
    let mut jobs = Vec::new();
    for policy in &study.policies {
        if !matches!(policy.source, PolicySource::Model { .. }) {
            continue;
        }
        let Some(prompts) = needed.get(&policy.name) else {
            continue;
        };
        for prompt in study.prompts.iter().filter(|p| prompts.contains(&p.id)) {
            let have = store.stored_samples(&policy.name, &prompt.id)?;
            let missing: Vec<u32> = (0..policy.pool_size).filter(|i| !have.contains(i)).collect();
            if !missing.is_empty() {
                jobs.push(PoolJob { policy: policy.name.clone(), prompt_id: prompt.id.clone(), missing });
            }
        }
    }
    Ok(jobs)
}

/// What a trial still needs before it can be shown: jobs for the model policies' missing
/// samples (whole pools, so one request fills what later trials of the prompt need too),
/// and the imported policies whose candidates are missing (only `ualign import` can
/// fill those).
pub fn missing_for_trial(
    study: &Study,
    store: &Store,
    trial: &crate::store::StoredTrial,
) -> Result<(Vec<PoolJob>, Vec<String>), StoreError> {
    let prompt = &trial.plan.prompt_id;
    let mut jobs: Vec<PoolJob> = Vec::new();
    let mut imported: Vec<String> = Vec::new();
    for slot in &trial.plan.slots {
        if jobs.iter().any(|j| j.policy == slot.policy) || imported.contains(&slot.policy) {
            continue;
        }
        if store.candidate(&slot.policy, prompt, slot.sample)?.is_some() {
            continue;
        }
        match study.policy(&slot.policy) {
            Some(p) if matches!(p.source, PolicySource::Model { .. }) => {
                let have = store.stored_samples(&p.name, prompt)?;
                jobs.push(PoolJob {
                    policy: p.name.clone(),
                    prompt_id: prompt.clone(),
                    missing: (0..p.pool_size).filter(|i| !have.contains(i)).collect(),
                });
            }
            _ => imported.push(slot.policy.clone()),
        }
    }
    Ok((jobs, imported))
}

/// Loaded models, one per (folder, provider), reused across policies that share a model.
pub struct Models {
    ep: EpChoice,
    threads: Option<usize>,
    loaded: BTreeMap<PathBuf, (Generator, String)>,
    /// Things the user should be told (e.g. `auto` fell back to CPU); the caller shows them
    /// where it can: a CLI on stderr, the TUI on its status line.
    notices: Vec<String>,
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
        Self { ep, threads, loaded: BTreeMap::new(), notices: Vec::new() }
    }

    /// The generator for a folder (loaded on first use) and its model hash.
    pub fn get(&mut self, dir: &PathBuf) -> Result<&mut (Generator, String), EngineError> {
        if !self.loaded.contains_key(dir) {
            let mut g = engine::load(dir, self.ep, self.threads)?;
            self.notices.append(&mut g.notices);
            if let Some(why) = &g.provider.fallback {
                self.notices
                    .push(format!("CUDA is not available ({}); running on CPU", why.lines().next().unwrap_or(why)));
            }
            let hash = g.folder.hash()?;
            self.loaded.insert(dir.clone(), (g, hash));
        }
        Ok(self.loaded.get_mut(dir).expect("inserted above"))
    }

    /// Loads every model the study's blocks draw from, so that a broken model folder is
    /// found before anything is stored.
    pub fn preload(&mut self, study: &Study) -> Result<(), PoolError> {
        let needed = needed_pools(study);
        for policy in &study.policies {
            if let PolicySource::Model { dir, .. } = &policy.source
                && needed.contains_key(&policy.name)
            {
                self.get(dir).map_err(|source| PoolError::Engine { policy: policy.name.clone(), source })?;
            }
        }
        Ok(())
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
        let policy = study.policy(&job.policy).ok_or_else(|| PoolError::NotAModel(job.policy.clone()))?;
        let PolicySource::Model { dir, decoding } = &policy.source else {
            return Err(PoolError::NotAModel(job.policy.clone()));
        };
        let prompt = study.prompt(&job.prompt_id).ok_or_else(|| PoolError::NoPrompt(job.prompt_id.clone()))?;
        let engine_err = |source| PoolError::Engine { policy: job.policy.clone(), source };
        let day = store.study_day()?;
        let (g, hash) = self.get(dir).map_err(engine_err)?;
        g.template_day = day;
        let ids = g.encode_prompt(&prompt.text, decoding.chat_template).map_err(engine_err)?;
        let specs: Vec<SampleSpec> = job
            .missing
            .iter()
            .map(|&index| SampleSpec { index, seed: engine::sample_seed(study.seed, &prompt.id, &policy.name, index) })
            .collect();
        let (samples, timing) = g.generate(&ids, &specs, &GenOptions::from(decoding), cancel).map_err(engine_err)?;
        let provider = g.provider.to_string();
        let settings = settings_json(decoding);
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

fn settings_json(d: &Decoding) -> String {
    serde_json::to_string(d).unwrap_or_default()
}

/// Events from the pool worker, tagged with the request id they answer.
#[derive(Debug)]
pub enum WorkerEvent {
    Done {
        request: u64,
    },
    Notice(String),
    Failed {
        request: u64,
        error: String,
    },
    /// The worker is gone (it panicked, or could not start): nothing more will come.
    Stopped(String),
}

type Requests = std::sync::mpsc::Receiver<(u64, Vec<PoolJob>)>;
type Events = std::sync::mpsc::Sender<WorkerEvent>;

/// The engine on its own OS thread: it owns the ONNX Runtime sessions (their `run` needs
/// `&mut`) and its own connection to the study database, takes pool jobs over a channel
/// and answers with events, so the TUI never blocks on generation. A worker that dies
/// says so ([`WorkerEvent::Stopped`]), whether it panicked or its thread just ended.
pub struct PoolWorker {
    requests: std::sync::mpsc::Sender<(u64, Vec<PoolJob>)>,
    events: std::sync::mpsc::Receiver<WorkerEvent>,
    next_request: u64,
    /// Why the worker is gone, once it is known to be.
    gone: Option<String>,
    /// Whether [`PoolWorker::poll`] has reported it.
    reported: bool,
}

impl PoolWorker {
    pub fn spawn(study: Study, db: PathBuf, ep: EpChoice, threads: Option<usize>) -> Self {
        Self::spawn_with(move |requests, events| serve(study, db, ep, threads, requests, events))
    }

    /// A worker running `body` on its own thread with the request and event channels; a
    /// panic in `body` is reported as [`WorkerEvent::Stopped`].
    pub fn spawn_with(body: impl FnOnce(Requests, Events) + Send + 'static) -> Self {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<(u64, Vec<PoolJob>)>();
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("ualign-engine".into()).spawn(move || {
            let events = ev_tx.clone();
            if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(req_rx, ev_tx))) {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".into());
                let _ = events.send(WorkerEvent::Stopped(why));
            }
        });
        let gone = spawned.err().map(|e| format!("its thread could not start: {e}"));
        Self { requests: req_tx, events: ev_rx, next_request: 0, gone, reported: false }
    }

    /// Queues jobs; returns the request id that their event will carry.
    pub fn request(&mut self, jobs: Vec<PoolJob>) -> u64 {
        self.next_request += 1;
        if self.requests.send((self.next_request, jobs)).is_err() && self.gone.is_none() {
            self.gone = Some("its thread ended".into());
        }
        self.next_request
    }

    /// Events so far. A worker found gone is reported once, as [`WorkerEvent::Stopped`].
    pub fn poll(&mut self) -> Vec<WorkerEvent> {
        let mut out = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(WorkerEvent::Stopped(why)) => {
                    self.gone = Some(why);
                    break;
                }
                Ok(ev) => out.push(ev),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.gone.get_or_insert_with(|| "its thread ended".into());
                    break;
                }
            }
        }
        if let Some(why) = &self.gone
            && !self.reported
        {
            self.reported = true;
            out.push(WorkerEvent::Stopped(why.clone()));
        }
        out
    }

    /// Whether the worker may still answer requests.
    pub fn is_alive(&self) -> bool {
        self.gone.is_none()
    }
}

/// The worker's loop: fills the requested pools in order, answering each request.
fn serve(study: Study, db: PathBuf, ep: EpChoice, threads: Option<usize>, requests: Requests, events: Events) {
    let mut models = Models::new(ep, threads);
    let mut store = match Store::open_for_study(&db, &study) {
        Ok((s, _)) => s,
        Err(e) => {
            for (request, _) in requests {
                let _ = events.send(WorkerEvent::Failed { request, error: e.to_string() });
            }
            return;
        }
    };
    for (request, jobs) in requests {
        let mut result = Ok(());
        for job in jobs {
            // Another request (or another process) may have filled this pool meanwhile.
            let have = match store.stored_samples(&job.policy, &job.prompt_id) {
                Ok(h) => h,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
            let missing: Vec<u32> = job.missing.iter().copied().filter(|i| !have.contains(i)).collect();
            if missing.is_empty() {
                continue;
            }
            let job = PoolJob { missing, ..job };
            if let Err(e) = models.run_job(&study, &mut store, &job, None) {
                result = Err(e.to_string());
                break;
            }
        }
        for n in models.take_notices() {
            let _ = events.send(WorkerEvent::Notice(n));
        }
        let ev = match result {
            Ok(()) => WorkerEvent::Done { request },
            Err(error) => WorkerEvent::Failed { request, error },
        };
        if events.send(ev).is_err() {
            return;
        }
    }
}

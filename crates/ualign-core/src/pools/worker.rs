//! The engine on its own OS thread, for the participant screens: it owns the ONNX
//! Runtime sessions and its own connection to the study database, takes pool jobs over a
//! channel and answers with events tagged with the request they answer.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::generate::{Models, PoolDone, Progress};
use super::plan::PoolJob;
use crate::store::Store;
use crate::study::Study;
use ualign_engine::EpChoice;

/// Events from the pool worker, tagged with the request id they answer.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A pool of a request is done and more are to come.
    Progress {
        request: u64,
        progress: Progress,
    },
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

/// How soon a request is wanted: a participant waiting on the "preparing" screen goes
/// before the next trial's pools (read ahead while they answer), which go before
/// background work (pools that may be needed later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Waiting,
    Prefetch,
    Background,
}

/// A request: its id, its jobs, how soon it is wanted, and where its answer goes.
pub struct Request {
    id: u64,
    jobs: Vec<PoolJob>,
    priority: Priority,
    reply: Events,
}
pub(crate) type Requests = std::sync::mpsc::Receiver<Request>;
pub(crate) type Events = std::sync::mpsc::Sender<WorkerEvent>;

/// What every handle of one worker shares: the request channel, the request ids, and why
/// the worker is gone once it is.
struct Shared {
    requests: std::sync::Mutex<Option<std::sync::mpsc::Sender<Request>>>,
    next_request: std::sync::atomic::AtomicU64,
    gone: std::sync::Mutex<Option<String>>,
    /// Set to stop the worker: the job under way is dropped unfinished.
    stop: Arc<AtomicBool>,
}

/// A handle on the engine worker, an OS thread that owns the ONNX Runtime sessions (their
/// `run` needs `&mut`) and its own connection to the study database; it takes pool jobs
/// over a channel and answers with events, so no screen ever blocks on generation. One
/// worker serves any number of handles ([`PoolWorker::handle`]: each participant session
/// of `serve` has one), each receiving the answers to its own requests. A worker that dies
/// says so ([`WorkerEvent::Stopped`]) to every handle, whether it panicked or its thread
/// just ended. The handle that spawned it stops it when dropped (see its `Drop`).
pub struct PoolWorker {
    shared: std::sync::Arc<Shared>,
    reply: Events,
    events: std::sync::mpsc::Receiver<WorkerEvent>,
    /// Whether [`PoolWorker::poll`] has reported the worker gone.
    reported: bool,
    /// Whether this handle spawned the worker (and stops it when dropped).
    owner: bool,
}

/// How long a dropped worker is waited for (a model being loaded cannot be cancelled).
const STOP_WAIT: Duration = Duration::from_secs(10);

impl PoolWorker {
    pub fn spawn(study: Study, db: PathBuf, ep: EpChoice, threads: Option<usize>) -> Self {
        Self::spawn_with(move |requests, events, stop| serve(study, db, ep, threads, requests, events, &stop))
    }

    /// A worker running `body` on its own thread with the request channel, this handle's
    /// event channel (for events that answer no request) and the flag that says to stop;
    /// a panic in `body` is reported as [`WorkerEvent::Stopped`].
    pub fn spawn_with(body: impl FnOnce(Requests, Events, Arc<AtomicBool>) + Send + 'static) -> Self {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<Request>();
        let stop = Arc::new(AtomicBool::new(false));
        let shared = std::sync::Arc::new(Shared {
            requests: std::sync::Mutex::new(Some(req_tx)),
            next_request: std::sync::atomic::AtomicU64::new(0),
            gone: std::sync::Mutex::new(None),
            stop: stop.clone(),
        });
        let (ev_tx, ev_rx) = std::sync::mpsc::channel();
        let on_thread = shared.clone();
        let events = ev_tx.clone();
        let spawned = std::thread::Builder::new().name("ualign-engine".into()).spawn(move || {
            let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(req_rx, events, stop))) {
                Ok(()) => "its thread ended".to_string(),
                Err(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "it panicked".into()),
            };
            on_thread.set_gone(why);
        });
        if let Err(e) = spawned {
            shared.set_gone(format!("its thread could not start: {e}"));
        }
        Self { shared, reply: ev_tx, events: ev_rx, reported: false, owner: true }
    }

    /// Another handle on the same worker, with its own events.
    pub fn handle(&self) -> Self {
        let (reply, events) = std::sync::mpsc::channel();
        Self { shared: self.shared.clone(), reply, events, reported: false, owner: false }
    }

    /// Queues jobs a participant is waiting for; returns the request id that their event
    /// will carry.
    pub fn request(&mut self, jobs: Vec<PoolJob>) -> u64 {
        self.send(jobs, Priority::Waiting)
    }

    /// Queues the pools of a participant's next trial.
    pub fn request_prefetch(&mut self, jobs: Vec<PoolJob>) -> u64 {
        self.send(jobs, Priority::Prefetch)
    }

    /// Queues jobs to do when no other request waits (pools a participant will probably
    /// need, filled while they read the consent and instructions).
    pub fn request_background(&mut self, jobs: Vec<PoolJob>) -> u64 {
        self.send(jobs, Priority::Background)
    }

    fn send(&mut self, jobs: Vec<PoolJob>, priority: Priority) -> u64 {
        let id = self.shared.next_request.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let request = Request { id, jobs, priority, reply: self.reply.clone() };
        // A send fails only once the worker's body has returned or unwound (it dropped the
        // receiver); its thread then records why it ended, which `poll` reports: recording
        // a reason here could hide the real one (a panic's message).
        if let Some(tx) = &*self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(request);
        }
        id
    }

    /// Events so far. A worker found gone is reported once, as [`WorkerEvent::Stopped`].
    pub fn poll(&mut self) -> Vec<WorkerEvent> {
        let mut out: Vec<WorkerEvent> = std::iter::from_fn(|| self.events.try_recv().ok())
            .filter(|ev| !matches!(ev, WorkerEvent::Stopped(_)))
            .collect();
        if let Some(why) = self.shared.gone()
            && !self.reported
        {
            self.reported = true;
            out.push(WorkerEvent::Stopped(why));
        }
        out
    }

    /// Whether the worker may still answer requests.
    pub fn is_alive(&self) -> bool {
        self.shared.gone().is_none()
    }

    /// Why the worker is gone, once it is.
    pub fn stopped(&self) -> Option<String> {
        self.shared.gone()
    }
}

impl Shared {
    fn set_gone(&self, why: String) {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
        // No request can be taken any more.
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn gone(&self) -> Option<String> {
        self.gone.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The spawning handle's drop stops the worker for every handle: the pool under way is
/// dropped unfinished (nothing of it is stored: it is generated again when next needed),
/// no request is taken any more, and the drop waits, at most `STOP_WAIT`, for the
/// thread to end. A process that exited while ONNX Runtime ran on that thread would have
/// ONNX Runtime print errors from its half-destroyed state on the way out.
impl Drop for PoolWorker {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        // A worker waiting for a request sees the channel closed.
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).take();
        let end = Instant::now() + STOP_WAIT;
        while self.shared.gone().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A request taken and not yet answered: the jobs still to do, and how far it has come.
struct Queued {
    id: u64,
    jobs: std::collections::VecDeque<PoolJob>,
    priority: Priority,
    reply: Events,
    progress: Progress,
}

/// Requests received and not yet answered: the most urgent first, each in arrival order.
#[derive(Default)]
struct Queue {
    pending: std::collections::VecDeque<Queued>,
}

impl Queue {
    fn add(&mut self, r: Request) {
        let progress = Progress::of(&r.jobs);
        self.pending.push_back(Queued {
            id: r.id,
            jobs: r.jobs.into(),
            priority: r.priority,
            reply: r.reply,
            progress,
        });
    }

    /// The request whose job comes next: the first of the most urgent.
    fn current(&mut self) -> Option<&mut Queued> {
        let urgent = self.pending.iter().map(|r| r.priority).min()?;
        self.pending.iter_mut().find(|r| r.priority == urgent)
    }

    fn remove(&mut self, id: u64) {
        self.pending.retain(|r| r.id != id);
    }
}

/// The worker's loop: fills the requested pools, a job at a time, the most urgent
/// request first (one arriving while less urgent work runs goes first from the next job
/// on), answering each request when its last job is done.
fn serve(
    study: Study,
    db: PathBuf,
    ep: EpChoice,
    threads: Option<usize>,
    requests: Requests,
    events: Events,
    stop: &AtomicBool,
) {
    let mut models = Models::new(ep, threads);
    let mut store = match Store::open_for_study(&db, &study) {
        Ok((s, _)) => s,
        Err(e) => {
            for r in requests {
                let _ = r.reply.send(WorkerEvent::Failed { request: r.id, error: e.to_string() });
            }
            return;
        }
    };
    let mut queue = Queue::default();
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        // Wait for work when there is none; take whatever else has arrived.
        if queue.pending.is_empty() {
            match requests.recv() {
                Ok(r) => queue.add(r),
                Err(_) => return,
            }
        }
        while let Ok(r) = requests.try_recv() {
            queue.add(r);
        }
        let Some(current) = queue.current() else { continue };
        let (request, reply) = (current.id, current.reply.clone());
        let result = match current.jobs.pop_front() {
            None => Ok(true),
            Some(job) => fill(&study, &mut store, &mut models, job, stop).map(|done| {
                current.progress.pool_done(done.as_ref());
                current.jobs.is_empty()
            }),
        };
        // Notices (a CUDA fallback, a model folder's missing files) are the researcher's:
        // they go to the handle that started the worker.
        for n in models.take_notices() {
            let _ = events.send(WorkerEvent::Notice(n));
        }
        let ev = match result {
            Ok(false) => {
                let _ = reply.send(WorkerEvent::Progress { request, progress: current.progress.clone() });
                continue;
            }
            Ok(true) => WorkerEvent::Done { request },
            Err(error) => WorkerEvent::Failed { request, error },
        };
        queue.remove(request);
        // A handle that is gone (its participant left) needs no answer.
        let _ = reply.send(ev);
    }
}

/// One job: the pool's samples still missing (another request, or another process, may
/// have filled some meanwhile); what it produced, unless it found the pool filled.
fn fill(
    study: &Study,
    store: &mut Store,
    models: &mut Models,
    job: PoolJob,
    stop: &AtomicBool,
) -> Result<Option<PoolDone>, String> {
    let job = job.still_missing(store).map_err(|e| e.to_string())?;
    if job.missing.is_empty() {
        return Ok(None);
    }
    models.run_job(study, store, &job, Some(stop)).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(prompt: &str) -> PoolJob {
        PoolJob { policy: "p".into(), prompt_id: prompt.into(), missing: vec![0] }
    }

    #[test]
    fn waiting_participants_go_before_prefetch_and_background_work_already_queued() {
        let (tx, _rx) = std::sync::mpsc::channel();
        let req = |id, jobs, priority| Request { id, jobs, priority, reply: tx.clone() };
        let mut q = Queue::default();
        q.add(req(1, vec![job("a"), job("b"), job("c")], Priority::Background));
        assert_eq!(q.current().map(|r| r.id), Some(1));
        // The background request has started: its first job is taken.
        q.current().unwrap().jobs.pop_front();
        q.add(req(2, vec![job("x")], Priority::Prefetch));
        q.add(req(3, vec![job("y")], Priority::Waiting));
        q.add(req(4, vec![job("z")], Priority::Waiting));
        assert_eq!(q.current().map(|r| r.id), Some(3), "a waiting participant's request comes first");
        q.remove(3);
        assert_eq!(q.current().map(|r| r.id), Some(4));
        q.remove(4);
        assert_eq!(q.current().map(|r| r.id), Some(2), "then the prefetch");
        q.remove(2);
        let r = q.current().unwrap();
        assert_eq!((r.id, r.jobs.len()), (1, 2), "then the background request resumes where it was");
        assert_eq!((r.progress.pools, r.progress.candidates), (3, 3), "its progress counts every job it came with");
    }
}

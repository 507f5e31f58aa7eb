//! The engine on its own OS thread, for the participant screens: it owns the ONNX
//! Runtime sessions and its own connection to the study database, takes pool jobs over a
//! channel and answers with events tagged with the request they answer.

use std::path::PathBuf;

use super::generate::Models;
use super::plan::PoolJob;
use crate::engine::EpChoice;
use crate::store::Store;
use crate::study::Study;

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
            let job = match job.still_missing(&store) {
                Ok(j) if j.missing.is_empty() => continue,
                Ok(j) => j,
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            };
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

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

/// A request: its id, its jobs, and whether it is background work (any other request
/// goes first).
type Request = (u64, Vec<PoolJob>, bool);
type Requests = std::sync::mpsc::Receiver<Request>;
type Events = std::sync::mpsc::Sender<WorkerEvent>;

/// The engine on its own OS thread: it owns the ONNX Runtime sessions (their `run` needs
/// `&mut`) and its own connection to the study database, takes pool jobs over a channel
/// and answers with events, so the TUI never blocks on generation. A worker that dies
/// says so ([`WorkerEvent::Stopped`]), whether it panicked or its thread just ended.
pub struct PoolWorker {
    requests: std::sync::mpsc::Sender<Request>,
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
        let (req_tx, req_rx) = std::sync::mpsc::channel::<Request>();
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
        self.send(jobs, false)
    }

    /// Queues jobs to do when no other request waits (pools a participant will probably
    /// need, filled while they read the consent and instructions).
    pub fn request_background(&mut self, jobs: Vec<PoolJob>) -> u64 {
        self.send(jobs, true)
    }

    fn send(&mut self, jobs: Vec<PoolJob>, background: bool) -> u64 {
        self.next_request += 1;
        if self.requests.send((self.next_request, jobs, background)).is_err() && self.gone.is_none() {
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

/// Requests received and not yet answered: foreground ones first, each in arrival order.
#[derive(Default)]
struct Queue {
    pending: std::collections::VecDeque<(u64, std::collections::VecDeque<PoolJob>, bool)>,
}

impl Queue {
    fn add(&mut self, (id, jobs, background): Request) {
        self.pending.push_back((id, jobs.into(), background));
    }

    /// The request whose job comes next: the first foreground one, else the first.
    fn current(&mut self) -> Option<&mut (u64, std::collections::VecDeque<PoolJob>, bool)> {
        let at = self.pending.iter().position(|r| !r.2).unwrap_or(0);
        self.pending.get_mut(at)
    }

    fn remove(&mut self, id: u64) {
        self.pending.retain(|r| r.0 != id);
    }
}

/// The worker's loop: fills the requested pools, a job at a time, foreground requests
/// before background ones (a request arriving while a background one runs goes first
/// from the next job on), answering each request when its last job is done.
fn serve(study: Study, db: PathBuf, ep: EpChoice, threads: Option<usize>, requests: Requests, events: Events) {
    let mut models = Models::new(ep, threads);
    let mut store = match Store::open_for_study(&db, &study) {
        Ok((s, _)) => s,
        Err(e) => {
            for (request, _, _) in requests {
                let _ = events.send(WorkerEvent::Failed { request, error: e.to_string() });
            }
            return;
        }
    };
    let mut queue = Queue::default();
    loop {
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
        let Some((request, jobs, _)) = queue.current() else { continue };
        let request = *request;
        let result = match jobs.pop_front() {
            None => Ok(true),
            Some(job) => fill(&study, &mut store, &mut models, job).map(|()| jobs.is_empty()),
        };
        for n in models.take_notices() {
            let _ = events.send(WorkerEvent::Notice(n));
        }
        let ev = match result {
            Ok(false) => continue,
            Ok(true) => WorkerEvent::Done { request },
            Err(error) => WorkerEvent::Failed { request, error },
        };
        queue.remove(request);
        if events.send(ev).is_err() {
            return;
        }
    }
}

/// One job: the pool's samples still missing (another request, or another process, may
/// have filled some meanwhile).
fn fill(study: &Study, store: &mut Store, models: &mut Models, job: PoolJob) -> Result<(), String> {
    let job = job.still_missing(store).map_err(|e| e.to_string())?;
    if job.missing.is_empty() {
        return Ok(());
    }
    models.run_job(study, store, &job, None).map(|_| ()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(prompt: &str) -> PoolJob {
        PoolJob { policy: "p".into(), prompt_id: prompt.into(), missing: vec![0] }
    }

    #[test]
    fn a_foreground_request_goes_before_background_work_already_queued() {
        let mut q = Queue::default();
        q.add((1, vec![job("a"), job("b"), job("c")], true));
        assert_eq!(q.current().map(|r| r.0), Some(1));
        // The background request has started: its first job is taken.
        q.current().unwrap().1.pop_front();
        q.add((2, vec![job("x")], false));
        q.add((3, vec![job("y")], false));
        assert_eq!(q.current().map(|r| r.0), Some(2), "the first foreground request comes next");
        q.remove(2);
        assert_eq!(q.current().map(|r| r.0), Some(3));
        q.remove(3);
        let (id, rest, _) = q.current().unwrap();
        assert_eq!((*id, rest.len()), (1, 2), "then the background request resumes where it was");
    }
}

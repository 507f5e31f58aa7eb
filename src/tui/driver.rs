//! What carries the participant app's effects out: the study's database (through a
//! [`Session`]) and the engine worker's pools. [`Driver::handle`] gives the app an action
//! and carries out the effects it returns, in order, feeding each outcome back as an
//! action before the next effect, until none is left; an effect that fails to read or
//! write the database ends the chain, and the app moves to its failure screen. The local
//! terminal (`run`, `demo`) and every remote participant's screen (`serve`) run one
//! driver each, so the screens of both behave alike.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};

use ratatui::crossterm::event::{Event, KeyEvent};

use super::app::{Action, Admission, App, Effect, Failure, IdRefused, NoEngine, PoolNews};
use super::{Interactive, draw};
use ualign_core::pools::{PoolWorker, WorkerEvent};
use ualign_core::session::{EndReason, Next, Session};
use ualign_core::store::{Store, StoreError};
use ualign_core::study::Study;

/// One participant's app, with the store, session and engine worker its effects need.
pub struct Driver {
    app: App,
    store: Store,
    session: Option<Session>,
    worker: Option<PoolWorker>,
    /// The background request for the pools of the trials after the current one.
    prefetch: Option<u64>,
    /// How the session is recorded in the store (`ualign 0.1.0`, `ssh`, `browser …`); the
    /// window's size is added.
    pub(crate) client: String,
    /// What the engine told the researcher (a CUDA fallback, a model folder's missing
    /// files): kept off the participant's screen, printed when the session ends.
    pub(crate) researcher_notices: Vec<String>,
}

/// The driver reads as the app it drives: the screen, the trial, the failure.
impl Deref for Driver {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// What only a screen's owner sets on the app (how the participant resumes; a test's
/// screen or trial).
impl DerefMut for Driver {
    fn deref_mut(&mut self) -> &mut App {
        &mut self.app
    }
}

impl Driver {
    /// The participant app on its first screen. With `participant` (`--participant ID`) a
    /// returning participant goes straight to the welcome-back screen; the id must be one
    /// the study accepts or one already in the database.
    pub fn new(
        study: Study,
        mut store: Store,
        participant: Option<String>,
        worker: Option<PoolWorker>,
    ) -> anyhow::Result<Self> {
        let admitted = match participant {
            None => None,
            Some(typed) => match admit(&mut store, &study, &typed, false)? {
                Ok(a) => Some(a),
                Err(_) => anyhow::bail!(
                    "participant id `{typed}` is not one this study accepts: neither a ualign pseudonym (p- and 10 lowercase letters and digits, as the ID screen gives out, never 0, 1, i, l or o, which read alike){}, nor an invitation code of {}, nor the id of a participant already in it.\n  {}",
                    match &study.options.participant_id_pattern {
                        Some(p) => format!(", nor an id matching the study's participant_id_pattern `{}`", p.as_str()),
                        None => String::new(),
                    },
                    store.path().display(),
                    "Ids must never be names; set [options] participant_id_pattern in the study for the ids you hand out, or hand out `ualign invite` codes"
                ),
            },
        };
        Ok(Self {
            app: App::new(study, admitted),
            store,
            session: None,
            worker,
            prefetch: None,
            client: format!("ualign {}", env!("CARGO_PKG_VERSION")),
            researcher_notices: Vec::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Gives the app an action and carries out what it asks for. Each outcome goes back to
    /// the app before the next effect, and the effects it brings come first, as if the app
    /// had called the store itself; a failed read or write drops what was still to come.
    pub fn handle(&mut self, action: Action) {
        let mut todo: VecDeque<Effect> = self.app.update(action).into();
        while let Some(effect) = todo.pop_front() {
            let outcome = match self.carry_out(effect) {
                Ok(None) => continue,
                Ok(Some(outcome)) => outcome,
                Err(failure) => {
                    todo.clear();
                    Action::Failed(failure)
                }
            };
            for e in self.app.update(outcome).into_iter().rev() {
                todo.push_front(e);
            }
        }
    }

    /// Carries out one effect; its outcome, if the app is to hear of it.
    fn carry_out(&mut self, effect: Effect) -> Result<Option<Action>, Failure> {
        let read = |e: StoreError| failure(e, false);
        let outcome = match effect {
            Effect::Admit(typed) => {
                let codes = self.app.return_codes;
                Action::Admitted(admit(&mut self.store, &self.app.study, &typed, codes).map_err(read)?)
            }
            Effect::BeginSession { participant, consented_at, window, issue_code } => {
                if self.session.is_none() {
                    let code = if issue_code { Some(self.enroll_with_code(&participant)?) } else { None };
                    let client = format!("{} {}x{}", self.client, window.0, window.1);
                    let s = Session::begin(
                        &mut self.store,
                        &self.app.study,
                        &participant,
                        consented_at.as_deref(),
                        Some(&client),
                    )
                    .map_err(read)?;
                    self.session = Some(s);
                    if let Some(code) = code {
                        return Ok(Some(Action::ReturnCode(code)));
                    }
                }
                return Ok(None);
            }
            Effect::NextTrial => {
                let Some(session) = self.session.as_mut() else { return Ok(None) };
                let next = session.next(&mut self.store, &self.app.study).map_err(read)?;
                if matches!(next, Next::Done) {
                    // The session marked the participant completed and closed itself.
                    self.session = None;
                }
                Action::Next(next)
            }
            Effect::RequestPools(jobs) => Action::PoolsRequested(match self.worker.as_mut() {
                Some(w) => match w.stopped() {
                    None => Ok(w.request(jobs)),
                    Some(why) => Err(NoEngine::Stopped(why)),
                },
                None => Err(NoEngine::Absent),
            }),
            Effect::Prefetch => {
                if let (Some(session), Some(w)) = (&self.session, self.worker.as_mut()) {
                    let jobs = session.upcoming_jobs(&self.store, &self.app.study).map_err(read)?;
                    if !jobs.is_empty() {
                        self.prefetch = Some(w.request_prefetch(jobs));
                    }
                }
                return Ok(None);
            }
            Effect::Submit { trial_id, answer, response_ms, seen_in_full } => {
                let Some(session) = self.session.as_mut() else { return Ok(None) };
                let submitted = session
                    .submit(&mut self.store, trial_id, &answer, response_ms, Some(seen_in_full))
                    .map_err(|e| failure(e, true))?;
                Action::Submitted(submitted)
            }
            Effect::EndSession(reason) => {
                self.end(reason);
                return Ok(None);
            }
        };
        Ok(Some(outcome))
    }

    /// Enrols a new participant with a fresh return code, and gives the code. Refused
    /// when the id was taken meanwhile (two windows typed the same new id at once: the
    /// first one in keeps it).
    fn enroll_with_code(&mut self, participant: &str) -> Result<String, Failure> {
        let code = ualign_core::study::new_invitation_code();
        let hash = ualign_core::study::invitation_hash(&code);
        match self.store.enroll_with_return_code(participant, &hash) {
            Ok(true) => Ok(code),
            Ok(false) => Err(Failure {
                what: format!("the participant ID {participant} was taken on another connection a moment ago"),
                answer_lost: false,
                detail: format!(
                    "two connections began as the new participant {participant} at once; the later one was refused"
                ),
            }),
            Err(e) => Err(failure(e, false)),
        }
    }

    /// Ends the session in the store (quit, completion, signal, error). Best effort: when
    /// the database cannot be written the session simply stays open in it.
    pub(crate) fn end(&mut self, reason: EndReason) {
        if let Some(mut s) = self.session.take() {
            s.finish(&mut self.store, reason);
        }
    }

    /// Asks the engine worker to fill every missing pool in the background, prompt by
    /// prompt, while the consent and instructions are read; a trial's own request goes
    /// before it. (`demo` does this; `run` fills only what a participant's trials need.)
    pub(crate) fn warm_up(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.worker.as_mut() {
            let jobs = ualign_core::pools::pending_jobs_by_prompt(&self.app.study, &self.store)?;
            if !jobs.is_empty() {
                w.request_background(jobs);
            }
        }
        Ok(())
    }

    pub fn on_key(&mut self, key: KeyEvent) {
        self.handle(Action::Key(key));
    }

    pub fn on_resize(&mut self, w: u16, h: u16) {
        self.handle(Action::Resize(w, h));
    }

    /// A tick of the event loop: the clock moves on, the engine worker may have answered.
    pub(crate) fn on_tick(&mut self) {
        self.handle(Action::Tick);
        self.on_worker_events();
    }

    /// What the engine worker said since it was last asked, told to the app (a notice for
    /// the researcher is kept for the end of the session).
    pub fn on_worker_events(&mut self) {
        let events = self.worker.as_mut().map(PoolWorker::poll).unwrap_or_default();
        for ev in events {
            let news = match ev {
                WorkerEvent::Progress { request, progress } => PoolNews::Progress { request, progress },
                WorkerEvent::Done { request } => PoolNews::Ready(request),
                WorkerEvent::Notice(n) => {
                    if !self.researcher_notices.contains(&n) {
                        self.researcher_notices.push(n);
                    }
                    continue;
                }
                WorkerEvent::Failed { request, error } if self.prefetch == Some(request) => {
                    PoolNews::PrefetchFailed(error)
                }
                WorkerEvent::Failed { request, error } => PoolNews::Failed { request, error },
                WorkerEvent::Stopped(why) => PoolNews::Stopped(why),
            };
            self.handle(Action::Pools(news));
        }
    }

    /// Whether the engine worker (if any) may still answer requests.
    pub fn worker_alive(&self) -> Option<bool> {
        self.worker.as_ref().map(PoolWorker::is_alive)
    }
}

/// The participant a typed id admits: the pseudonym of an invitation or return code (its
/// first use is recorded), or the id itself when the study accepts it or it is already in
/// the database (a participant enrolled before the study's id rules changed can resume);
/// and whether they consented before. With `return_codes`, the id of a participant who
/// began before admits nobody: they come back with their code.
fn admit(
    store: &mut Store,
    study: &Study,
    typed: &str,
    return_codes: bool,
) -> Result<Result<Admission, IdRefused>, StoreError> {
    if let Some(code) = ualign_core::study::normal_invitation_code(typed)
        && let Some(participant) = store.redeem_invitation(&ualign_core::study::invitation_hash(&code))?
    {
        let returning = store.consent_at(&participant)?.is_some();
        let known = store.participant_exists(&participant)?;
        let finished = store.is_completed(&participant)?;
        return Ok(Ok(Admission { participant, returning, by_code: true, known, finished }));
    }
    let known = typed.len() <= ualign_core::study::MAX_ID_LEN && store.participant_exists(typed)?;
    if known && return_codes {
        return Ok(Err(IdRefused::NeedsCode));
    }
    if !(study.accepts_participant_id(typed) || known) {
        return Ok(Err(IdRefused::Unknown));
    }
    let returning = store.consent_at(typed)?.is_some();
    let finished = known && store.is_completed(typed)?;
    Ok(Ok(Admission { participant: typed.to_string(), returning, by_code: false, known, finished }))
}

/// What the participant is told of a store error, and the whole error for the researcher.
fn failure(e: StoreError, answer_lost: bool) -> Failure {
    let what = match &e {
        StoreError::Write(w) => w.cause.plain().to_string(),
        _ => "the study's database could not be read".to_string(),
    };
    Failure { what, answer_lost, detail: format!("{:#}", anyhow::Error::from(e)) }
}

impl Interactive for Driver {
    fn draw(&self, f: &mut ratatui::Frame, theme: draw::Theme) {
        draw::draw(f, &self.app, theme);
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Key(k) => self.handle(Action::Key(k)),
            Event::Mouse(m) => self.handle(Action::Mouse(m)),
            Event::Resize(w, h) => self.handle(Action::Resize(w, h)),
            _ => {}
        }
    }

    fn on_tick(&mut self) {
        Driver::on_tick(self);
    }

    fn started(&mut self) {
        self.handle(Action::Start);
    }

    fn finished(&self) -> bool {
        self.app.quit
    }

    fn interrupted(&mut self, why: EndReason) {
        self.end(why);
    }
}

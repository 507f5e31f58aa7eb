//! The participant app as a state machine: the keymap turns key events into actions,
//! [`App::update`] applies them, clicks and ticks and the engine worker's events update
//! the state too, and drawing reads it. The participant's pass through the study is a
//! [`Session`] (each answer is committed before the next screen); the app knows nothing of
//! the terminal, so tests drive it with synthetic keys against a real SQLite database. A write that cannot happen (disk
//! full, read-only or damaged file) is never shown raw: the app moves to the failure
//! screen, which says what was saved, what was not and how to resume, and the process
//! then exits non-zero.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::keymap::{self, Action, Context, Scroll};
use super::layout::{self, Panel};
use super::text;
use ualign_core::pools::{PoolWorker, WorkerEvent};
use ualign_core::session::{Next, PresentedTrial, Session, Submitted};
use ualign_core::store::{Answer, Store, StoreError};
use ualign_core::study::{RankMode, Study};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Welcome,
    Consent,
    Declined,
    EnterId,
    ShowNewId,
    Instructions,
    Resuming,
    Trial,
    Break,
    Done,
    /// Something could not be saved or read: the study cannot go on in this session.
    Failed,
}

/// Why the session cannot go on: what the participant is told, and the full error for
/// the researcher (printed once the terminal is restored).
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong, in plain words.
    pub(crate) what: String,
    /// Whether the participant's last answer was the write that failed.
    pub(crate) answer_lost: bool,
    /// The error as the store reported it.
    pub(crate) detail: String,
}

/// A trial ready to show: the session's presented trial.
pub(crate) type TrialView = PresentedTrial;

#[derive(Debug)]
pub struct TrialState {
    pub view: TrialView,
    pub(crate) focus: usize,
    pub(crate) picked: Option<usize>,
    /// Order mode: slots ranked so far, best first.
    pub(crate) order: Vec<usize>,
    pub scroll: Vec<u16>,
    pub(crate) shown_at: Instant,
}

impl TrialState {
    fn new(view: TrialView, shown_at: Instant) -> Self {
        let n = view.texts.len();
        Self { view, focus: 0, picked: None, order: Vec::new(), scroll: vec![0; n], shown_at }
    }
}

/// What the participant is waiting for on the trial screen.
#[derive(Debug)]
pub enum TrialSlot {
    Ready(Box<TrialState>),
    /// The worker is generating missing pools (request id).
    Preparing(u64),
    Failed(String),
}

pub struct App {
    pub(crate) study: Study,
    store: Store,
    worker: Option<PoolWorker>,
    pub screen: Screen,
    pub participant: Option<String>,
    pub(crate) id_input: String,
    pub id_error: bool,
    consented_at: Option<String>,
    session: Option<Session>,
    pub trial: Option<TrialSlot>,
    pub status: Option<(String, Instant)>,
    /// When the last event came: what timed things (the status line, the reading time)
    /// are measured against, so drawing reads no clock.
    pub(crate) now: Instant,
    /// Ticks of the event loop so far (the "preparing" spinner's frame).
    pub(crate) ticks: u64,
    pub(crate) help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
    pub(crate) answered_this_session: usize,
    pub(crate) size: (u16, u16),
    /// Prefetch request for the trial after the current one.
    prefetch: Option<u64>,
    /// Set when the session cannot go on (see [`Screen::Failed`]).
    pub failure: Option<Failure>,
    /// What the engine told the researcher (a CUDA fallback, a model folder's missing
    /// files): kept off the participant's screen, printed when the session ends.
    pub(crate) researcher_notices: Vec<String>,
    /// How the session is recorded in the store (`ualign 0.1.0`, `ssh`, `browser …`); the
    /// window's size is added.
    pub(crate) client: String,
    /// How the participant comes back (the failure screen says it).
    pub(crate) resume: text::Resume,
}

impl App {
    /// The app on its first screen. With `participant` (`--participant ID`) a returning
    /// participant goes straight to the welcome-back screen; the id must be one the study
    /// accepts or one already in the database. Nothing is written until [`App::start`]
    /// (or the participant's first key), so the session records the real window size.
    pub fn new(
        study: Study,
        store: Store,
        participant: Option<String>,
        worker: Option<PoolWorker>,
    ) -> anyhow::Result<Self> {
        let study_path = study.path.clone();
        let mut app = Self {
            study,
            store,
            worker,
            screen: Screen::Welcome,
            participant: None,
            id_input: String::new(),
            id_error: false,
            consented_at: None,
            session: None,
            trial: None,
            status: None,
            now: Instant::now(),
            ticks: 0,
            help: false,
            confirm_quit: false,
            quit: false,
            answered_this_session: 0,
            size: (80, 24),
            prefetch: None,
            failure: None,
            researcher_notices: Vec::new(),
            client: format!("ualign {}", env!("CARGO_PKG_VERSION")),
            resume: text::Resume::Command(study_path),
        };
        if let Some(typed) = participant {
            let Some(id) = app.admit(&typed)? else {
                anyhow::bail!(
                    "participant id `{typed}` is not one this study accepts: neither a ualign pseudonym (p- and 10 letters and digits, as the ID screen gives out){}, nor an invitation code of {}, nor the id of a participant already in it.\n  {}",
                    match &app.study.options.participant_id_pattern {
                        Some(p) => format!(", nor an id matching the study's participant_id_pattern `{}`", p.as_str()),
                        None => String::new(),
                    },
                    app.store.path().display(),
                    "Ids must never be names; set [options] participant_id_pattern in the study for the ids you hand out, or hand out `ualign invite` codes"
                );
            };
            if app.store.consent_at(&id)?.is_some() {
                app.screen = Screen::Resuming;
            }
            app.participant = Some(id);
        }
        Ok(app)
    }

    /// Starts the session of a participant named on the command line, once the window's
    /// size is known.
    pub(crate) fn start(&mut self) {
        if self.screen == Screen::Resuming {
            self.guard(|app| app.ensure_session());
        }
    }

    /// The participant a typed id admits: the pseudonym of an invitation code (its first
    /// use is recorded), or the id itself when the study accepts it or it is already in
    /// the database (a participant enrolled before the study's id rules changed can resume).
    fn admit(&mut self, typed: &str) -> anyhow::Result<Option<String>> {
        if let Some(code) = ualign_core::study::normal_invitation_code(typed)
            && let Some(p) = self.store.redeem_invitation(&ualign_core::study::invitation_hash(&code))?
        {
            return Ok(Some(p));
        }
        let known = typed.len() <= ualign_core::study::MAX_ID_LEN && self.store.participant_exists(typed)?;
        Ok((self.study.accepts_participant_id(typed) || known).then(|| typed.to_string()))
    }

    /// Runs a step that may touch the store; an error moves the app to the failure screen.
    fn guard(&mut self, step: impl FnOnce(&mut Self) -> anyhow::Result<()>) {
        if let Err(e) = step(self) {
            self.fail(e, false);
        }
    }

    /// The failure screen: the session cannot go on.
    fn fail(&mut self, e: anyhow::Error, answer_lost: bool) {
        let what = match e.downcast_ref::<StoreError>() {
            Some(StoreError::Write(w)) => w.cause.plain().to_string(),
            Some(_) => "the study's database could not be read".to_string(),
            None => "something unexpected went wrong".to_string(),
        };
        self.end("error");
        self.failure = Some(Failure { what, answer_lost, detail: format!("{e:#}") });
        self.screen = Screen::Failed;
        self.trial = None;
        self.help = false;
        self.confirm_quit = false;
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Enrols the participant (the stored list is kept if there is one) and starts a
    /// session, unless one is running.
    fn ensure_session(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.participant.clone() else { return Ok(()) };
        if self.session.is_some() {
            return Ok(());
        }
        let client = format!("{} {}x{}", self.client, self.size.0, self.size.1);
        let consented = self.consented_at.take();
        self.session = Some(Session::begin(&mut self.store, &self.study, &p, consented.as_deref(), Some(&client))?);
        Ok(())
    }

    /// Ends the session in the store (quit, completion, signal, error). Best effort: when
    /// the database cannot be written the session simply stays open in it.
    pub(crate) fn end(&mut self, reason: &str) {
        if let Some(mut s) = self.session.take() {
            s.finish(&mut self.store, reason);
        }
    }

    pub(crate) fn set_status(&mut self, s: impl Into<String>) {
        self.status = Some((s.into(), self.now));
    }

    /// The status line's message while it is fresh (four seconds).
    pub(crate) fn shown_status(&self) -> Option<String> {
        self.status
            .as_ref()
            .filter(|(_, at)| self.now.saturating_duration_since(*at).as_secs() < 4)
            .map(|(s, _)| s.clone())
    }

    pub fn on_resize(&mut self, w: u16, h: u16) {
        self.size = (w, h);
    }

    pub(crate) fn too_small(&self) -> bool {
        self.size.0 < text::MIN_WIDTH || self.size.1 < text::MIN_HEIGHT
    }

    /// The candidate panels of the trial on screen, laid out for the window's size.
    pub fn panels(&self) -> Vec<Panel> {
        match &self.trial {
            Some(TrialSlot::Ready(t)) => layout::trial(Rect::new(0, 0, self.size.0, self.size.1), &t.view).panels,
            _ => Vec::new(),
        }
    }

    /// A tick of the event loop: the clock moves on, the engine worker may have answered.
    pub(crate) fn on_tick(&mut self) {
        self.now = Instant::now();
        self.ticks += 1;
        self.guard(|app| app.on_worker_events());
    }

    /// What keys mean on the screen as it is now.
    fn context(&self) -> Context {
        if self.screen == Screen::Failed {
            Context::Failed
        } else if self.confirm_quit {
            Context::ConfirmQuit
        } else if self.help {
            Context::Help
        } else {
            match self.screen {
                Screen::EnterId => Context::Typing,
                Screen::Consent => Context::Consent,
                Screen::Trial => Context::Trial,
                _ => Context::Screen,
            }
        }
    }

    /// A key press. Errors of the store never come out of here: they move the app to the
    /// failure screen (the `Result` is kept for callers that still propagate errors).
    pub fn on_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        self.now = Instant::now();
        if key.kind != KeyEventKind::Press {
            return Ok(());
        }
        if let Some(action) = keymap::action(self.context(), &key) {
            self.guard(|app| app.update(action));
        }
        Ok(())
    }

    /// Applies what the participant asked for.
    pub(crate) fn update(&mut self, action: Action) -> anyhow::Result<()> {
        match self.context() {
            Context::Failed => self.quit = true,
            Context::ConfirmQuit => match action {
                Action::Yes => {
                    self.end("quit");
                    self.quit = true;
                }
                _ => self.confirm_quit = false,
            },
            Context::Help => self.help = false,
            _ => match action {
                Action::Quit if matches!(self.screen, Screen::Done | Screen::Declined) => {
                    self.end("completed");
                    self.quit = true;
                }
                Action::Quit | Action::Back => self.confirm_quit = true,
                Action::Help => self.help = true,
                // A window too small to read blocks everything but quitting and the help.
                _ if self.too_small() => {}
                _ => self.screen_action(action)?,
            },
        }
        Ok(())
    }

    fn screen_action(&mut self, action: Action) -> anyhow::Result<()> {
        match (self.screen, action) {
            (Screen::Welcome, Action::Confirm) => {
                self.screen =
                    if self.study.consent.trim().is_empty() { self.after_consent()? } else { Screen::Consent };
            }
            (Screen::Consent, Action::Yes) => {
                self.consented_at = Some(ualign_core::store::now());
                self.screen = self.after_consent()?;
            }
            (Screen::Consent, Action::No) => self.screen = Screen::Declined,
            (Screen::EnterId, _) => self.id_action(action)?,
            (Screen::ShowNewId, Action::Confirm) if !self.study.instructions.trim().is_empty() => {
                self.screen = Screen::Instructions;
            }
            (Screen::ShowNewId | Screen::Instructions | Screen::Resuming | Screen::Break, Action::Confirm) => {
                self.next_trial()?;
            }
            (Screen::Trial, _) => self.trial_action(action)?,
            _ => {}
        }
        Ok(())
    }

    /// The ID screen: typing, and Enter to take the typed id (or a new pseudonym).
    fn id_action(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::Confirm => {
                let typed = self.id_input.trim().to_string();
                if typed.is_empty() {
                    self.participant = Some(ualign_core::study::new_pseudonym());
                    self.ensure_session()?;
                    self.screen = Screen::ShowNewId;
                } else if let Some(id) = self.admit(&typed)? {
                    let returning = self.store.consent_at(&id)?.is_some();
                    self.participant = Some(id);
                    self.ensure_session()?;
                    self.screen = if returning { Screen::Resuming } else { Screen::Instructions };
                } else {
                    self.id_error = true;
                }
            }
            Action::Erase => {
                self.id_input.pop();
            }
            Action::Type(c) if self.id_input.len() < ualign_core::study::MAX_ID_LEN => {
                self.id_input.push(c);
                self.id_error = false;
            }
            _ => {}
        }
        Ok(())
    }

    fn after_consent(&mut self) -> anyhow::Result<Screen> {
        if self.participant.is_none() {
            return Ok(Screen::EnterId);
        }
        self.ensure_session()?;
        if self.study.instructions.trim().is_empty() {
            self.next_trial()?;
            Ok(self.screen)
        } else {
            Ok(Screen::Instructions)
        }
    }

    /// Asks the engine worker to fill every missing pool in the background, prompt by
    /// prompt, while the consent and instructions are read; a trial's own request goes
    /// before it. (`demo` does this; `run` fills only what a participant's trials need.)
    pub(crate) fn warm_up(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.worker.as_mut() {
            let jobs = ualign_core::pools::pending_jobs_by_prompt(&self.study, &self.store)?;
            if !jobs.is_empty() {
                w.request_background(jobs);
            }
        }
        Ok(())
    }

    /// Loads the first unanswered trial (or the completion screen), and asks the worker
    /// for the next trial's pools while this one is read.
    pub(crate) fn next_trial(&mut self) -> anyhow::Result<()> {
        self.ensure_session()?;
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        let next = session.next(&mut self.store, &self.study)?;
        self.trial = Some(match next {
            Next::Done => {
                self.session = None;
                self.screen = Screen::Done;
                self.trial = None;
                return Ok(());
            }
            Next::Trial(view) => TrialSlot::Ready(Box::new(TrialState::new(view, Instant::now()))),
            Next::Missing { prompt_id, imported, .. } if !imported.is_empty() => {
                TrialSlot::Failed(text::imported_missing(&imported, &prompt_id))
            }
            Next::Missing { jobs, .. } => match self.worker.as_mut() {
                Some(w) => match w.stopped() {
                    None => TrialSlot::Preparing(w.request(jobs)),
                    Some(why) => TrialSlot::Failed(format!("{} ({why})", text::ENGINE_STOPPED)),
                },
                None => TrialSlot::Failed(text::POOLS_MISSING.into()),
            },
        });
        self.screen = Screen::Trial;
        if matches!(self.trial, Some(TrialSlot::Ready(_)))
            && let (Some(session), Some(w)) = (&self.session, self.worker.as_mut())
        {
            let jobs = session.upcoming_jobs(&self.store, &self.study)?;
            if !jobs.is_empty() {
                self.prefetch = Some(w.request_prefetch(jobs));
            }
        }
        Ok(())
    }

    /// Worker events: a pool the current trial waits for may now be ready. A worker that
    /// died fails the trial waiting for it instead of leaving it "preparing" for ever.
    pub fn on_worker_events(&mut self) -> anyhow::Result<()> {
        let events = self.worker.as_mut().map(PoolWorker::poll).unwrap_or_default();
        let waiting = match self.trial {
            Some(TrialSlot::Preparing(r)) => Some(r),
            _ => None,
        };
        for ev in events {
            match ev {
                WorkerEvent::Done { request } if waiting == Some(request) => self.next_trial()?,
                WorkerEvent::Done { .. } => {}
                WorkerEvent::Notice(n) => {
                    if !self.researcher_notices.contains(&n) {
                        self.researcher_notices.push(n);
                    }
                }
                WorkerEvent::Failed { request, error } if waiting == Some(request) => {
                    self.trial = Some(TrialSlot::Failed(error));
                }
                WorkerEvent::Failed { request, error } if self.prefetch == Some(request) => {
                    self.set_status(text::prefetch_failed(&error));
                }
                WorkerEvent::Failed { .. } => {}
                WorkerEvent::Stopped(why) if waiting.is_some() => {
                    self.trial = Some(TrialSlot::Failed(format!("{} ({why})", text::ENGINE_STOPPED)));
                }
                WorkerEvent::Stopped(_) => {}
            }
        }
        Ok(())
    }

    /// Whether the engine worker (if any) may still answer requests.
    pub fn worker_alive(&self) -> Option<bool> {
        self.worker.as_ref().map(PoolWorker::is_alive)
    }

    pub fn is_preparing(&self) -> bool {
        matches!(self.trial, Some(TrialSlot::Preparing(_)))
    }

    /// Reading time still required before an answer is accepted.
    pub(crate) fn reading_left(&self) -> Duration {
        match &self.trial {
            Some(TrialSlot::Ready(t)) => Duration::from_millis(self.study.options.min_reading_ms)
                .saturating_sub(self.now.saturating_duration_since(t.shown_at)),
            _ => Duration::ZERO,
        }
    }

    /// The trial screen's actions: choosing, moving focus, scrolling, answering.
    fn trial_action(&mut self, action: Action) -> anyhow::Result<()> {
        let opts = self.study.options.clone();
        let panels = self.panels();
        let Some(TrialSlot::Ready(t)) = self.trial.as_mut() else { return Ok(()) };
        let n = t.view.texts.len();
        let answer = match action {
            Action::Pick(i) if i < n => {
                t.focus = i;
                select(t, i);
                None
            }
            Action::PickFocused => {
                let i = t.focus;
                select(t, i);
                None
            }
            Action::FocusNext => {
                t.focus = (t.focus + 1) % n;
                None
            }
            Action::FocusPrev => {
                t.focus = (t.focus + n - 1) % n;
                None
            }
            Action::Scroll(how) => {
                let panel = panels.get(t.focus).copied().unwrap_or_default();
                t.scroll[t.focus] = scrolled(t.scroll[t.focus], how, &panel);
                None
            }
            Action::Undo if t.view.mode == RankMode::Order => {
                t.order.pop();
                None
            }
            Action::NoPreference if opts.allow_no_preference => Some(Answer::NoPreference),
            Action::Skip if opts.allow_skip => Some(Answer::Skip),
            Action::Confirm => match confirmed(t) {
                Some(a) => Some(a),
                None => {
                    let mode = t.view.mode;
                    self.set_status(if mode == RankMode::Pick { text::PICK_FIRST } else { text::RANK_ALL_FIRST });
                    return Ok(());
                }
            },
            _ => None,
        };
        if let Some(a) = answer {
            let left = self.reading_left();
            if !left.is_zero() {
                self.set_status(text::reading_wait(left.as_secs() + 1));
                return Ok(());
            }
            self.submit(a)?;
        }
        Ok(())
    }

    /// Commits the answer; only then moves on. An answer given already in another window
    /// (the same participant twice) stands, and this window moves on too.
    fn submit(&mut self, answer: Answer) -> anyhow::Result<()> {
        let Some(TrialSlot::Ready(t)) = &self.trial else { return Ok(()) };
        // Measured now, not at the last event: the time the participant took.
        let ms = t.shown_at.elapsed().as_millis() as u64;
        let (id, position, total) = (t.view.trial_id, t.view.position, t.view.total);
        let Some(session) = self.session.as_mut() else { return Ok(()) };
        match session.submit(&mut self.store, id, &answer, ms) {
            Ok(Submitted::Saved) => {
                self.answered_this_session += 1;
                self.set_status(text::SAVED);
            }
            Ok(Submitted::AnsweredElsewhere) => self.set_status(text::ANSWERED_ELSEWHERE),
            Err(e) => {
                self.fail(e.into(), true);
                return Ok(());
            }
        }
        let answered = position + 1;
        if let Some(every) = self.study.options.break_every
            && answered % every as usize == 0
            && answered < total
        {
            self.trial = None;
            self.screen = Screen::Break;
            return Ok(());
        }
        self.next_trial()
    }

    /// A click focuses and picks the answer under it; the wheel scrolls it.
    pub(crate) fn on_mouse(&mut self, m: MouseEvent) -> anyhow::Result<()> {
        self.now = Instant::now();
        if self.screen != Screen::Trial || self.help || self.confirm_quit {
            return Ok(());
        }
        let panels = self.panels();
        let Some(TrialSlot::Ready(t)) = self.trial.as_mut() else { return Ok(()) };
        let Some(i) = panels.iter().position(|p| p.rect.contains(Position { x: m.column, y: m.row })) else {
            return Ok(());
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                t.focus = i;
                select(t, i);
            }
            MouseEventKind::ScrollDown => t.scroll[i] = scrolled(t.scroll[i], Scroll::LineDown, &panels[i]),
            MouseEventKind::ScrollUp => t.scroll[i] = scrolled(t.scroll[i], Scroll::LineUp, &panels[i]),
            _ => {}
        }
        Ok(())
    }
}

/// A panel's scroll offset after `how`, within what its text allows (a page keeps one
/// line of context).
fn scrolled(at: u16, how: Scroll, panel: &Panel) -> u16 {
    let at = at.min(panel.max_scroll);
    let page = panel.visible.saturating_sub(1).max(1);
    match how {
        Scroll::PageDown => at.saturating_add(page),
        Scroll::PageUp => at.saturating_sub(page),
        Scroll::LineDown => at.saturating_add(1),
        Scroll::LineUp => at.saturating_sub(1),
        Scroll::Top => 0,
        Scroll::End => panel.max_scroll,
    }
    .min(panel.max_scroll)
}

/// The answer Enter confirms, if the trial has one: the pick, or the order (the one answer
/// left unranked takes the last place).
fn confirmed(t: &TrialState) -> Option<Answer> {
    let n = t.view.texts.len();
    match t.view.mode {
        RankMode::Pick => t.picked.map(Answer::Pick),
        RankMode::Order if t.order.len() + 1 >= n => {
            let mut order = t.order.clone();
            order.extend((0..n).filter(|j| !t.order.contains(j)));
            Some(Answer::Order(order))
        }
        RankMode::Order => None,
    }
}

fn select(t: &mut TrialState, i: usize) {
    match t.view.mode {
        RankMode::Pick => t.picked = Some(i),
        RankMode::Order => {
            if !t.order.contains(&i) {
                t.order.push(i);
            }
        }
    }
}

#[cfg(test)]
#[path = "app_tests.rs"]
mod tests;

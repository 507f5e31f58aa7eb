//! The participant app as a state machine: events (keys, clicks, ticks, worker events)
//! update the state; drawing reads it. It talks to the store directly (each answer is
//! committed before the next screen) but knows nothing of the terminal, so tests drive it
//! with synthetic keys against a real SQLite database. A write that cannot happen (disk
//! full, read-only or damaged file) is never shown raw: the app moves to the failure
//! screen, which says what was saved, what was not and how to resume, and the process
//! then exits non-zero.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::text;
use crate::pools::{PoolWorker, WorkerEvent};
use crate::session::{Next, PresentedTrial, Session, Submitted};
use crate::store::{Answer, Store, StoreError};
use crate::study::{RankMode, Study};

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
    pub what: String,
    /// Whether the participant's last answer was the write that failed.
    pub answer_lost: bool,
    /// The error as the store reported it.
    pub detail: String,
}

/// A candidate panel as last drawn: where it is (for mouse hits) and how far its text
/// can scroll (for PgUp/PgDn, Home and End).
#[derive(Debug, Clone, Copy, Default)]
pub struct Panel {
    pub rect: Rect,
    /// Text lines the panel shows at once.
    pub visible: u16,
    /// The largest useful scroll offset: the text's lines less the visible ones.
    pub max_scroll: u16,
}

/// A trial ready to show: the session's presented trial.
pub type TrialView = PresentedTrial;

#[derive(Debug)]
pub struct TrialState {
    pub view: TrialView,
    pub focus: usize,
    pub picked: Option<usize>,
    /// Order mode: slots ranked so far, best first.
    pub order: Vec<usize>,
    pub scroll: Vec<u16>,
    pub shown_at: Instant,
}

impl TrialState {
    fn new(view: TrialView) -> Self {
        let n = view.texts.len();
        Self { view, focus: 0, picked: None, order: Vec::new(), scroll: vec![0; n], shown_at: Instant::now() }
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
    pub study: Study,
    store: Store,
    worker: Option<PoolWorker>,
    pub screen: Screen,
    pub participant: Option<String>,
    pub id_input: String,
    pub id_error: bool,
    consented_at: Option<String>,
    session: Option<Session>,
    pub trial: Option<TrialSlot>,
    pub status: Option<(String, Instant)>,
    pub help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
    pub answered_this_session: usize,
    pub size: (u16, u16),
    /// The candidate panels as last drawn, written by `draw` for mouse hits and scrolling.
    pub panels: RefCell<Vec<Panel>>,
    /// Prefetch request for the trial after the current one.
    prefetch: Option<u64>,
    /// Set when the session cannot go on (see [`Screen::Failed`]).
    pub failure: Option<Failure>,
    /// What the engine told the researcher (a CUDA fallback, a model folder's missing
    /// files): kept off the participant's screen, printed when the session ends.
    pub researcher_notices: Vec<String>,
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
            help: false,
            confirm_quit: false,
            quit: false,
            answered_this_session: 0,
            size: (80, 24),
            panels: RefCell::new(Vec::new()),
            prefetch: None,
            failure: None,
            researcher_notices: Vec::new(),
        };
        if let Some(id) = participant {
            anyhow::ensure!(
                app.accepts(&id)?,
                "participant id `{id}` is not one this study accepts: neither a ualign pseudonym (p- and 10 letters and digits, as the ID screen gives out){}, nor the id of a participant already in {}.\n  {}",
                match &app.study.options.participant_id_pattern {
                    Some(p) => format!(", nor an id matching the study's participant_id_pattern `{}`", p.as_str()),
                    None => String::new(),
                },
                app.store.path().display(),
                "Ids must never be names; set [options] participant_id_pattern in the study for the ids you hand out"
            );
            if app.store.consent_at(&id)?.is_some() {
                app.screen = Screen::Resuming;
            }
            app.participant = Some(id);
        }
        Ok(app)
    }

    /// Starts the session of a participant named on the command line, once the window's
    /// size is known.
    pub fn start(&mut self) {
        if self.screen == Screen::Resuming {
            self.guard(|app| app.ensure_session());
        }
    }

    /// Whether a typed id may be used: one the study accepts, or one already in the
    /// database (a participant enrolled before the study's id rules changed can resume).
    fn accepts(&self, id: &str) -> anyhow::Result<bool> {
        Ok(self.study.accepts_participant_id(id)
            || (id.len() <= crate::study::MAX_ID_LEN && self.store.participant_exists(id)?))
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
        let client = format!("ualign {} {}x{}", env!("CARGO_PKG_VERSION"), self.size.0, self.size.1);
        let consented = self.consented_at.take();
        self.session = Some(Session::begin(&mut self.store, &self.study, &p, consented.as_deref(), Some(&client))?);
        Ok(())
    }

    /// Ends the session in the store (quit, completion, signal, error). Best effort: when
    /// the database cannot be written the session simply stays open in it.
    pub fn end(&mut self, reason: &str) {
        if let Some(mut s) = self.session.take() {
            s.finish(&mut self.store, reason);
        }
    }

    pub fn set_status(&mut self, s: impl Into<String>) {
        self.status = Some((s.into(), Instant::now()));
    }

    pub fn on_resize(&mut self, w: u16, h: u16) {
        self.size = (w, h);
    }

    pub fn too_small(&self) -> bool {
        self.size.0 < text::MIN_WIDTH || self.size.1 < text::MIN_HEIGHT
    }

    /// A key press. Errors of the store never come out of here: they move the app to the
    /// failure screen (the `Result` is kept for callers that still propagate errors).
    pub fn on_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        if key.kind != ratatui::crossterm::event::KeyEventKind::Press {
            return Ok(());
        }
        self.guard(|app| app.handle_key(key));
        Ok(())
    }

    fn handle_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if self.screen == Screen::Failed {
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Enter | KeyCode::Esc) {
                self.quit = true;
            }
            return Ok(());
        }
        if self.confirm_quit {
            match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.end("quit");
                    self.quit = true;
                }
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => self.confirm_quit = false,
                _ if ctrl_c => {
                    self.end("quit");
                    self.quit = true;
                }
                _ => {}
            }
            return Ok(());
        }
        if self.help {
            if matches!(key.code, KeyCode::Char('?') | KeyCode::Esc | KeyCode::Enter) {
                self.help = false;
            }
            return Ok(());
        }
        let typing = self.screen == Screen::EnterId;
        if ctrl_c || (!typing && key.code == KeyCode::Char('q')) {
            if matches!(self.screen, Screen::Done | Screen::Declined) {
                self.end("completed");
                self.quit = true;
            } else {
                self.confirm_quit = true;
            }
            return Ok(());
        }
        if !typing && key.code == KeyCode::Char('?') {
            self.help = true;
            return Ok(());
        }
        if self.too_small() {
            return Ok(());
        }
        match self.screen {
            Screen::Welcome if key.code == KeyCode::Enter => {
                self.screen =
                    if self.study.consent.trim().is_empty() { self.after_consent()? } else { Screen::Consent };
            }
            Screen::Consent => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => {
                    self.consented_at = Some(crate::store::now());
                    self.screen = self.after_consent()?;
                }
                KeyCode::Char('n') | KeyCode::Char('N') => self.screen = Screen::Declined,
                _ => {}
            },
            Screen::EnterId => self.id_key(key)?,
            Screen::ShowNewId | Screen::Instructions | Screen::Resuming | Screen::Break
                if key.code == KeyCode::Enter =>
            {
                if self.screen == Screen::ShowNewId && !self.study.instructions.trim().is_empty() {
                    self.screen = Screen::Instructions;
                } else {
                    self.ensure_session()?;
                    self.next_trial()?;
                }
            }
            Screen::Trial => self.trial_key(key)?,
            _ => {}
        }
        Ok(())
    }

    /// The ID screen: typing, and Enter to take the typed id (or a new pseudonym).
    fn id_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        match key.code {
            KeyCode::Enter => {
                let typed = self.id_input.trim().to_string();
                if typed.is_empty() {
                    self.participant = Some(crate::study::new_pseudonym());
                    self.ensure_session()?;
                    self.screen = Screen::ShowNewId;
                } else if self.accepts(&typed)? {
                    let returning = self.store.consent_at(&typed)?.is_some();
                    self.participant = Some(typed);
                    self.ensure_session()?;
                    self.screen = if returning { Screen::Resuming } else { Screen::Instructions };
                } else {
                    self.id_error = true;
                }
            }
            KeyCode::Backspace => {
                self.id_input.pop();
            }
            KeyCode::Esc => self.confirm_quit = true,
            KeyCode::Char(c) if self.id_input.len() < crate::study::MAX_ID_LEN && !c.is_control() => {
                self.id_input.push(c);
                self.id_error = false;
            }
            _ => {}
        }
        Ok(())
    }

    fn after_consent(&mut self) -> anyhow::Result<Screen> {
        if self.participant.is_some() {
            self.ensure_session()?;
            Ok(if self.study.instructions.trim().is_empty() { self.next_trial_screen()? } else { Screen::Instructions })
        } else {
            Ok(Screen::EnterId)
        }
    }

    fn next_trial_screen(&mut self) -> anyhow::Result<Screen> {
        self.next_trial()?;
        Ok(self.screen)
    }

    /// Loads the first unanswered trial (or the completion screen), and asks the worker
    /// for the next trial's pools while this one is read.
    pub fn next_trial(&mut self) -> anyhow::Result<()> {
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
            Next::Trial(view) => TrialSlot::Ready(Box::new(TrialState::new(view))),
            Next::Missing { prompt_id, imported, .. } if !imported.is_empty() => TrialSlot::Failed(format!(
                "candidates of imported policy `{}` for prompt `{prompt_id}` are missing; the researcher must run `ualign import`",
                imported.join("`, `")
            )),
            Next::Missing { jobs, .. } => match self.worker.as_mut() {
                Some(w) if w.is_alive() => TrialSlot::Preparing(w.request(jobs)),
                Some(_) => TrialSlot::Failed(text::ENGINE_STOPPED.into()),
                None => TrialSlot::Failed("candidates are missing; run `ualign generate` first".into()),
            },
        });
        self.screen = Screen::Trial;
        if matches!(self.trial, Some(TrialSlot::Ready(_)))
            && let (Some(session), Some(w)) = (&self.session, self.worker.as_mut())
        {
            let jobs = session.upcoming_jobs(&self.store, &self.study)?;
            if !jobs.is_empty() {
                self.prefetch = Some(w.request(jobs));
            }
        }
        Ok(())
    }

    /// Worker events: a pool the current trial waits for may now be ready. A worker that
    /// died fails the trial waiting for it instead of leaving it "preparing" for ever.
    pub fn on_worker_events(&mut self) -> anyhow::Result<()> {
        let mut events = Vec::new();
        if let Some(w) = &mut self.worker {
            events = w.poll();
        }
        for ev in events {
            match ev {
                WorkerEvent::Done { request } => {
                    if matches!(self.trial, Some(TrialSlot::Preparing(r)) if r == request) {
                        self.guard(|app| app.next_trial());
                    }
                }
                WorkerEvent::Notice(n) => {
                    if !self.researcher_notices.contains(&n) {
                        self.researcher_notices.push(n);
                    }
                }
                WorkerEvent::Failed { request, error } => {
                    if matches!(self.trial, Some(TrialSlot::Preparing(r)) if r == request) {
                        self.trial = Some(TrialSlot::Failed(error));
                    } else if self.prefetch == Some(request) {
                        self.set_status(format!("could not prepare the next question: {error}"));
                    }
                }
                WorkerEvent::Stopped(why) => {
                    if matches!(self.trial, Some(TrialSlot::Preparing(_))) {
                        self.trial = Some(TrialSlot::Failed(format!("{} ({why})", text::ENGINE_STOPPED)));
                    }
                }
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

    /// Milliseconds of reading time still required before Enter is accepted.
    pub fn reading_left(&self) -> Duration {
        match &self.trial {
            Some(TrialSlot::Ready(t)) => {
                Duration::from_millis(self.study.options.min_reading_ms).saturating_sub(t.shown_at.elapsed())
            }
            _ => Duration::ZERO,
        }
    }

    fn trial_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        let opts = self.study.options.clone();
        let reading_left = self.reading_left();
        let Some(TrialSlot::Ready(t)) = self.trial.as_mut() else { return Ok(()) };
        let n = t.view.texts.len();
        let mut answer: Option<Answer> = None;
        match key.code {
            KeyCode::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                if i < n {
                    t.focus = i;
                    select(t, i);
                }
            }
            KeyCode::Char(' ') => {
                let i = t.focus;
                select(t, i);
            }
            KeyCode::Right | KeyCode::Down | KeyCode::Tab => t.focus = (t.focus + 1) % n,
            KeyCode::Left | KeyCode::Up | KeyCode::BackTab => t.focus = (t.focus + n - 1) % n,
            KeyCode::PageDown | KeyCode::PageUp | KeyCode::Home | KeyCode::End | KeyCode::Char('j' | 'k') => {
                let panel = self.panels.borrow().get(t.focus).copied().unwrap_or_default();
                let page = panel.visible.saturating_sub(1).max(1);
                let at = t.scroll[t.focus].min(panel.max_scroll);
                t.scroll[t.focus] = match key.code {
                    KeyCode::PageDown => at.saturating_add(page),
                    KeyCode::PageUp => at.saturating_sub(page),
                    KeyCode::Home => 0,
                    KeyCode::End => panel.max_scroll,
                    KeyCode::Char('j') => at.saturating_add(1),
                    _ => at.saturating_sub(1),
                }
                .min(panel.max_scroll);
            }
            KeyCode::Backspace | KeyCode::Char('u') if t.view.mode == RankMode::Order => {
                t.order.pop();
            }
            KeyCode::Char('=') if opts.allow_no_preference => answer = Some(Answer::NoPreference),
            KeyCode::Char('s') if opts.allow_skip => answer = Some(Answer::Skip),
            KeyCode::Enter => {
                answer = match t.view.mode {
                    RankMode::Pick => t.picked.map(Answer::Pick),
                    RankMode::Order if t.order.len() + 1 >= n => {
                        // The one answer left unranked takes the last place.
                        let mut order = t.order.clone();
                        order.extend((0..n).filter(|j| !t.order.contains(j)));
                        Some(Answer::Order(order))
                    }
                    RankMode::Order => None,
                };
                if answer.is_none() {
                    let msg = if t.view.mode == RankMode::Pick {
                        "Press the number of an answer first."
                    } else {
                        "Rank every answer first."
                    };
                    self.set_status(msg);
                    return Ok(());
                }
            }
            _ => {}
        }
        if let Some(a) = answer {
            if !reading_left.is_zero() {
                self.set_status(text::reading_wait(reading_left.as_secs() + 1));
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

    pub fn on_mouse(&mut self, m: MouseEvent) -> anyhow::Result<()> {
        if self.screen != Screen::Trial || self.help || self.confirm_quit {
            return Ok(());
        }
        let panels = self.panels.borrow().clone();
        let Some(TrialSlot::Ready(t)) = self.trial.as_mut() else { return Ok(()) };
        let hit = panels.iter().position(|p| p.rect.contains(ratatui::layout::Position { x: m.column, y: m.row }));
        match (m.kind, hit) {
            (MouseEventKind::Down(MouseButton::Left), Some(i)) if i < t.view.texts.len() => {
                t.focus = i;
                select(t, i);
            }
            (MouseEventKind::ScrollDown, Some(i)) if i < t.scroll.len() => {
                t.scroll[i] = t.scroll[i].saturating_add(1).min(panels[i].max_scroll)
            }
            (MouseEventKind::ScrollUp, Some(i)) if i < t.scroll.len() => t.scroll[i] = t.scroll[i].saturating_sub(1),
            _ => {}
        }
        Ok(())
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

//! The participant app as a state machine: [`App::update`] takes an [`Action`] (a key, a
//! click, a tick, or what the driver found when it carried out an earlier [`Effect`]) and
//! returns the effects it asks for: read or write the study's database, ask the engine
//! for pools, end the session. The app holds no store, no engine worker and no error type:
//! [`super::driver::Driver`] carries its effects out, for the local terminal and for each
//! remote participant alike, and drawing reads the app. A write that cannot happen (disk
//! full, read-only or damaged file) is never shown raw: the app moves to the failure
//! screen, which says what was saved, what was not and how to resume, and the process
//! then exits non-zero.

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyEvent, KeyEventKind, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::keymap::{self, Command, Context, Scroll};
use super::layout::{self, Panel};
use super::text;
use ualign_core::pools::{PoolJob, Progress};
use ualign_core::session::{EndReason, Next, PresentedTrial, Submitted};
use ualign_core::store::Answer;
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A choice other than an answer, held on screen until Enter confirms it, as a pick is:
/// one stray key never becomes a stored answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    NoPreference,
    Skip,
}

impl Held {
    fn answer(self) -> Answer {
        match self {
            Held::NoPreference => Answer::NoPreference,
            Held::Skip => Answer::Skip,
        }
    }
}

#[derive(Debug)]
pub struct TrialState {
    pub view: TrialView,
    pub(crate) focus: usize,
    pub(crate) picked: Option<usize>,
    /// "No preference" or "skip", waiting for Enter (a pick or a rank takes its place).
    pub(crate) held: Option<Held>,
    /// Per slot: whether its last line has been on screen (it fit whole, or was scrolled
    /// to its end), in any window size the trial was shown in.
    pub seen_end: Vec<bool>,
    /// Order mode: slots ranked so far, best first.
    pub(crate) order: Vec<usize>,
    pub scroll: Vec<u16>,
    pub(crate) shown_at: Instant,
}

impl TrialState {
    fn new(view: TrialView, shown_at: Instant) -> Self {
        let n = view.texts.len();
        Self {
            view,
            focus: 0,
            picked: None,
            held: None,
            seen_end: vec![false; n],
            order: Vec::new(),
            scroll: vec![0; n],
            shown_at,
        }
    }
}

/// The trial on the trial screen: ready to answer, waiting for its pools, or why it
/// cannot be shown.
#[derive(Debug)]
pub enum CurrentTrial {
    Ready(Box<TrialState>),
    /// The engine worker is generating missing pools: its request, and how far it has
    /// come once a pool is done.
    Preparing {
        request: u64,
        progress: Option<Progress>,
    },
    Unavailable(String),
}

/// Who a typed id (or `--participant`) admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub participant: String,
    /// They have consented before: they resume.
    pub returning: bool,
    /// They came with a code (an invitation or a return code): they proved who they are.
    pub by_code: bool,
    /// The id is in the study already (a participant who began before).
    pub known: bool,
    /// They finished the study before: they see its completion screen again, not a
    /// welcome back to trials that are not there.
    pub finished: bool,
}

/// Why a typed id admits nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRefused {
    /// Neither a code, nor an id the study accepts or knows.
    Unknown,
    /// The id of a participant who began before, where coming back takes their return
    /// code (a server with a shared password, or open): the id alone would let anyone
    /// who saw it answer as them.
    NeedsCode,
}

/// Why the engine worker could not take a request for pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoEngine {
    /// This session has no engine (`run` of a study whose pools are all filled).
    Absent,
    /// The worker has stopped, and why.
    Stopped(String),
}

/// What the engine worker said about pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolNews {
    /// A pool of a request is stored, and more are to come.
    Progress { request: u64, progress: Progress },
    /// The pools of a request are stored.
    Ready(u64),
    /// A request could not be filled.
    Failed { request: u64, error: String },
    /// The request for the next trial's pools could not be filled.
    PrefetchFailed(String),
    /// The worker stopped.
    Stopped(String),
}

/// What happened: the participant's input, the clock, or the outcome of an [`Effect`].
#[derive(Debug)]
pub enum Action {
    /// The window's size is known: the session of a participant named on the command
    /// line begins (it records the size).
    Start,
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    /// The event loop's tick: the clock moves on.
    Tick,
    /// The outcome of [`Effect::Admit`]: whom the typed id admits, or why nobody.
    Admitted(Result<Admission, IdRefused>),
    /// The outcome of [`Effect::BeginSession`] that enrolled a new participant with a
    /// return code: the code, shown once for them to keep.
    ReturnCode(String),
    /// The outcome of [`Effect::NextTrial`].
    Next(Next),
    /// The outcome of [`Effect::RequestPools`]: the request's id, or why there is none.
    PoolsRequested(Result<u64, NoEngine>),
    /// The outcome of [`Effect::Submit`].
    Submitted(Submitted),
    /// An effect could not read or write the study's database.
    Failed(Failure),
    /// What the engine worker said.
    Pools(PoolNews),
}

/// What the app asks its driver to do, in order.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Find whom a typed id admits (an invitation code's pseudonym, a known id, an id the
    /// study accepts); answered by [`Action::Admitted`].
    Admit(String),
    /// Enrol the participant and open their session, unless one is open; with the time
    /// they consented, if they just did, and the window's size for the session's record.
    /// With `issue_code`, the participant is new and is enrolled with a fresh return
    /// code (answered by [`Action::ReturnCode`]).
    BeginSession { participant: String, consented_at: Option<String>, window: (u16, u16), issue_code: bool },
    /// Present the first unanswered trial; answered by [`Action::Next`].
    NextTrial,
    /// Ask the engine for the current trial's pools; answered by [`Action::PoolsRequested`].
    RequestPools(Vec<PoolJob>),
    /// Ask the engine, in the background, for the pools of the trials after this one.
    Prefetch,
    /// Commit an answer, with whether every answer of the trial had been seen in full;
    /// answered by [`Action::Submitted`] (or [`Action::Failed`]).
    Submit { trial_id: i64, answer: Answer, response_ms: u64, seen_in_full: bool },
    /// Close the session in the store (best effort).
    EndSession(EndReason),
}

pub struct App {
    pub(crate) study: Study,
    pub screen: Screen,
    pub participant: Option<String>,
    pub(crate) id_input: String,
    pub id_error: Option<IdRefused>,
    /// A returning participant proves who they are with the return code they were given
    /// at their first sign-in, never with their id alone (`serve` with a shared password
    /// or open: others can reach the ID screen). Off for `run`, the researcher's terminal.
    pub(crate) return_codes: bool,
    /// The participant on screen is new and came without a code: with return codes on,
    /// their session begins by giving them one.
    unproven: bool,
    /// The return code given in this window, to show until it closes.
    pub(crate) return_code: Option<String>,
    consented_at: Option<String>,
    pub trial: Option<CurrentTrial>,
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
    /// Set when the session cannot go on (see [`Screen::Failed`]).
    pub failure: Option<Failure>,
    /// How the participant comes back (the failure screen says it).
    pub(crate) resume: text::Resume,
    /// The participant finished the study in an earlier session (the completion screen
    /// says so).
    pub(crate) finished_before: bool,
}

impl App {
    /// The app on its first screen; a participant admitted on the command line
    /// (`--participant ID`) who has consented before goes straight to the welcome-back
    /// screen. Nothing is written until [`Action::Start`] (or the participant's first
    /// key), so the session records the real window size.
    pub fn new(study: Study, admitted: Option<Admission>) -> Self {
        let resume = text::Resume::Command(study.path.clone());
        let mut app = Self {
            study,
            screen: Screen::Welcome,
            participant: None,
            id_input: String::new(),
            id_error: None,
            return_codes: false,
            unproven: false,
            return_code: None,
            consented_at: None,
            trial: None,
            status: None,
            now: Instant::now(),
            ticks: 0,
            help: false,
            confirm_quit: false,
            quit: false,
            answered_this_session: 0,
            size: (80, 24),
            failure: None,
            resume,
            finished_before: false,
        };
        if let Some(a) = admitted {
            if a.finished {
                app.finished_before = true;
                app.screen = Screen::Done;
            } else if a.returning {
                app.screen = Screen::Resuming;
            }
            app.unproven = !a.by_code && !a.known;
            app.participant = Some(a.participant);
        }
        app
    }

    /// Applies what happened; returns what the driver is to do about it, in order.
    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        let mut fx = Vec::new();
        // A tick moves the clock alone: nothing on screen that `note_seen` looks at.
        let ticked = matches!(action, Action::Tick);
        match action {
            Action::Start if self.screen == Screen::Resuming => self.begin_session(&mut fx),
            Action::Start => {}
            Action::Key(key) => {
                self.now = Instant::now();
                if key.kind == KeyEventKind::Press
                    && let Some(command) = keymap::command(self.context(), &key)
                {
                    self.command(command, &mut fx);
                }
            }
            Action::Mouse(m) => self.on_mouse(m),
            Action::Resize(w, h) => self.size = (w, h),
            Action::Tick => {
                self.now = Instant::now();
                self.ticks += 1;
            }
            Action::Admitted(admission) => self.admitted(admission, &mut fx),
            Action::ReturnCode(code) => {
                self.return_code = Some(code);
                self.unproven = false;
            }
            Action::Next(next) => self.show(next, &mut fx),
            Action::PoolsRequested(request) => {
                self.trial = Some(match request {
                    Ok(request) => CurrentTrial::Preparing { request, progress: None },
                    Err(NoEngine::Stopped(why)) => {
                        CurrentTrial::Unavailable(format!("{} ({why})", text::ENGINE_STOPPED))
                    }
                    Err(NoEngine::Absent) => CurrentTrial::Unavailable(text::POOLS_MISSING.into()),
                });
                self.screen = Screen::Trial;
            }
            Action::Submitted(outcome) => self.submitted(outcome, &mut fx),
            Action::Failed(failure) => self.fail(failure, &mut fx),
            Action::Pools(news) => self.pool_news(news, &mut fx),
        }
        if !ticked {
            self.note_seen();
        }
        fx
    }

    /// Marks the answers whose last line is on screen now (as the trial is laid out for
    /// the window): what `seen_in_full` records with the answer.
    fn note_seen(&mut self) {
        if self.too_small() {
            // Only "please enlarge" is on screen.
            return;
        }
        let panels = self.panels();
        if let Some(CurrentTrial::Ready(t)) = self.trial.as_mut() {
            for (i, p) in panels.iter().enumerate() {
                if p.visible > 0 && t.scroll[i] >= p.max_scroll {
                    t.seen_end[i] = true;
                }
            }
        }
    }

    /// The failure screen: the session cannot go on.
    fn fail(&mut self, failure: Failure, fx: &mut Vec<Effect>) {
        fx.push(Effect::EndSession(EndReason::Error));
        self.failure = Some(failure);
        self.screen = Screen::Failed;
        self.trial = None;
        self.help = false;
        self.confirm_quit = false;
    }

    /// Opens the participant's session (the driver keeps one that is open).
    fn begin_session(&mut self, fx: &mut Vec<Effect>) {
        if let Some(p) = &self.participant {
            fx.push(Effect::BeginSession {
                participant: p.clone(),
                consented_at: self.consented_at.take(),
                window: self.size,
                issue_code: self.owes_code(),
            });
        }
    }

    /// Whether the participant's session is to begin by giving them a return code.
    fn owes_code(&self) -> bool {
        self.return_codes && self.unproven
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

    /// Whether the window is too small to read: under the study's minimum, or, on a trial,
    /// too short for every answer to show a line of text.
    pub(crate) fn too_small(&self) -> bool {
        self.size.0 < text::MIN_WIDTH || self.size.1 < text::MIN_HEIGHT || self.too_short_for_the_trial()
    }

    /// On a trial whose answers cannot each show a line of text in the window.
    pub(crate) fn too_short_for_the_trial(&self) -> bool {
        self.panels().iter().any(|p| p.visible == 0)
    }

    /// The candidate panels of the trial on screen, laid out for the window's size.
    pub fn panels(&self) -> Vec<Panel> {
        match &self.trial {
            Some(CurrentTrial::Ready(t)) => {
                layout::trial(Rect::new(0, 0, self.size.0, self.size.1), &t.view.prompt, &t.view.texts).panels
            }
            _ => Vec::new(),
        }
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

    /// Applies what the participant asked for.
    fn command(&mut self, command: Command, fx: &mut Vec<Effect>) {
        match self.context() {
            Context::Failed => self.quit = true,
            Context::ConfirmQuit => match command {
                Command::Yes => {
                    fx.push(Effect::EndSession(EndReason::Quit));
                    self.quit = true;
                }
                _ => self.confirm_quit = false,
            },
            Context::Help => self.help = false,
            _ => match command {
                Command::Quit if matches!(self.screen, Screen::Done | Screen::Declined) => {
                    fx.push(Effect::EndSession(EndReason::Completed));
                    self.quit = true;
                }
                Command::Quit | Command::Back => self.confirm_quit = true,
                Command::Help => self.help = true,
                // A window too small to read blocks everything but quitting and the help.
                _ if self.too_small() => {}
                _ => self.screen_command(command, fx),
            },
        }
    }

    fn screen_command(&mut self, command: Command, fx: &mut Vec<Effect>) {
        match (self.screen, command) {
            (Screen::Welcome, Command::Confirm) => {
                if self.study.consent.trim().is_empty() {
                    self.after_consent(fx);
                } else {
                    self.screen = Screen::Consent;
                }
            }
            (Screen::Consent, Command::Yes) => {
                self.consented_at = Some(ualign_core::store::now());
                self.after_consent(fx);
            }
            (Screen::Consent, Command::No) => self.screen = Screen::Declined,
            (Screen::EnterId, _) => self.id_command(command, fx),
            (Screen::ShowNewId, Command::Confirm) if !self.study.instructions.trim().is_empty() => {
                self.screen = Screen::Instructions;
            }
            (Screen::ShowNewId | Screen::Instructions | Screen::Resuming | Screen::Break, Command::Confirm) => {
                self.next_trial(fx);
            }
            (Screen::Trial, _) => self.trial_command(command, fx),
            _ => {}
        }
    }

    /// The ID screen: typing, and Enter to take the typed id (or a new pseudonym).
    fn id_command(&mut self, command: Command, fx: &mut Vec<Effect>) {
        match command {
            Command::Confirm => {
                let typed = self.id_input.trim().to_string();
                if typed.is_empty() {
                    self.participant = Some(ualign_core::study::new_pseudonym());
                    self.unproven = true;
                    self.begin_session(fx);
                    self.screen = Screen::ShowNewId;
                } else {
                    fx.push(Effect::Admit(typed));
                }
            }
            Command::Erase => {
                self.id_input.pop();
            }
            Command::Type(c) if self.id_input.len() < ualign_core::study::MAX_ID_LEN => {
                self.id_input.push(c);
                self.id_error = None;
            }
            _ => {}
        }
    }

    /// The typed id's participant, if it admits one. A new participant given a return
    /// code reads it first (with their id) on the new-ID screen.
    fn admitted(&mut self, admission: Result<Admission, IdRefused>, fx: &mut Vec<Effect>) {
        match admission {
            Ok(a) => {
                self.unproven = !a.by_code && !a.known;
                self.participant = Some(a.participant);
                if a.finished {
                    self.finished_before = true;
                    self.screen = Screen::Done;
                    return;
                }
                let owes_code = self.owes_code();
                self.begin_session(fx);
                self.screen = if a.returning {
                    Screen::Resuming
                } else if owes_code {
                    Screen::ShowNewId
                } else {
                    Screen::Instructions
                };
            }
            Err(why) => self.id_error = Some(why),
        }
    }

    fn after_consent(&mut self, fx: &mut Vec<Effect>) {
        if self.participant.is_none() {
            self.screen = Screen::EnterId;
            return;
        }
        let owes_code = self.owes_code();
        self.begin_session(fx);
        if owes_code {
            self.screen = Screen::ShowNewId;
        } else if self.study.instructions.trim().is_empty() {
            self.next_trial(fx);
        } else {
            self.screen = Screen::Instructions;
        }
    }

    /// Asks for the first unanswered trial (or the completion screen).
    fn next_trial(&mut self, fx: &mut Vec<Effect>) {
        self.begin_session(fx);
        fx.push(Effect::NextTrial);
    }

    /// Shows what comes next; asks for the pools a trial still needs, and for the next
    /// trials' while this one is read.
    fn show(&mut self, next: Next, fx: &mut Vec<Effect>) {
        match next {
            Next::Done => {
                self.screen = Screen::Done;
                self.trial = None;
                return;
            }
            Next::Trial(view) => {
                self.trial = Some(CurrentTrial::Ready(Box::new(TrialState::new(view, Instant::now()))));
                fx.push(Effect::Prefetch);
            }
            Next::Missing { prompt_id, imported, .. } if !imported.is_empty() => {
                self.trial = Some(CurrentTrial::Unavailable(text::imported_missing(&imported, &prompt_id)));
            }
            Next::Missing { jobs, .. } => {
                self.trial = None;
                fx.push(Effect::RequestPools(jobs));
            }
        }
        self.screen = Screen::Trial;
    }

    /// The request the trial on screen waits for.
    fn waiting_for(&self) -> Option<u64> {
        match self.trial {
            Some(CurrentTrial::Preparing { request, .. }) => Some(request),
            _ => None,
        }
    }

    /// A pool the current trial waits for may now be ready. A worker that died fails the
    /// trial waiting for it instead of leaving it "preparing" for ever.
    fn pool_news(&mut self, news: PoolNews, fx: &mut Vec<Effect>) {
        let waiting = self.waiting_for();
        match news {
            PoolNews::Progress { request, progress } if waiting == Some(request) => {
                self.trial = Some(CurrentTrial::Preparing { request, progress: Some(progress) });
            }
            PoolNews::Ready(request) if waiting == Some(request) => self.next_trial(fx),
            PoolNews::Failed { request, error } if waiting == Some(request) => {
                self.trial = Some(CurrentTrial::Unavailable(error));
            }
            PoolNews::PrefetchFailed(error) => self.set_status(text::prefetch_failed(&error)),
            PoolNews::Stopped(why) if waiting.is_some() => {
                self.trial = Some(CurrentTrial::Unavailable(format!("{} ({why})", text::ENGINE_STOPPED)));
            }
            PoolNews::Progress { .. } | PoolNews::Ready(_) | PoolNews::Failed { .. } | PoolNews::Stopped(_) => {}
        }
    }

    pub fn is_preparing(&self) -> bool {
        self.waiting_for().is_some()
    }

    /// Reading time still required before an answer is accepted.
    pub(crate) fn reading_left(&self) -> Duration {
        match &self.trial {
            Some(CurrentTrial::Ready(t)) => Duration::from_millis(self.study.options.min_reading_ms)
                .saturating_sub(self.now.saturating_duration_since(t.shown_at)),
            _ => Duration::ZERO,
        }
    }

    /// The trial screen's commands: choosing, moving focus, scrolling, answering.
    fn trial_command(&mut self, command: Command, fx: &mut Vec<Effect>) {
        let opts = self.study.options.clone();
        let panels = self.panels();
        let reading_left = self.reading_left();
        let Some(CurrentTrial::Ready(t)) = self.trial.as_mut() else { return };
        let n = t.view.texts.len();
        let mut chose = false;
        let answer = match command {
            Command::Pick(i) if i < n => {
                t.focus = i;
                select(t, i);
                chose = true;
                None
            }
            Command::PickFocused => {
                let i = t.focus;
                select(t, i);
                chose = true;
                None
            }
            Command::FocusNext => {
                t.focus = (t.focus + 1) % n;
                None
            }
            Command::FocusPrev => {
                t.focus = (t.focus + n - 1) % n;
                None
            }
            Command::Scroll(how) => {
                let panel = panels.get(t.focus).copied().unwrap_or_default();
                t.scroll[t.focus] = scrolled(t.scroll[t.focus], how, &panel);
                None
            }
            Command::Undo if t.held.is_some() => {
                t.held = None;
                None
            }
            Command::Undo if t.view.mode == RankMode::Order => {
                t.order.pop();
                None
            }
            Command::NoPreference if opts.allow_no_preference => {
                hold(t, Held::NoPreference);
                chose = true;
                None
            }
            Command::Skip if opts.allow_skip => {
                hold(t, Held::Skip);
                chose = true;
                None
            }
            Command::Confirm => match t.held.map(Held::answer).or_else(|| confirmed(t)) {
                Some(a) => Some(a),
                None => {
                    let mode = t.view.mode;
                    self.set_status(if mode == RankMode::Pick { text::PICK_FIRST } else { text::RANK_ALL_FIRST });
                    return;
                }
            },
            _ => None,
        };
        if chose && is_nudge(&self.status) {
            // A choice is made: "pick an answer first" no longer applies.
            self.status = None;
        }
        let Some(answer) = answer else { return };
        if !reading_left.is_zero() {
            self.set_status(text::reading_wait(reading_left.as_secs() + 1));
            return;
        }
        // Measured now, not at the last event: the time the participant took.
        let response_ms = t.shown_at.elapsed().as_millis() as u64;
        let seen_in_full = t.seen_end.iter().all(|&s| s);
        fx.push(Effect::Submit { trial_id: t.view.trial_id, answer, response_ms, seen_in_full });
    }

    /// The answer is committed; only now the app moves on. An answer given already in
    /// another window (the same participant twice) stands, and this window moves on too.
    fn submitted(&mut self, outcome: Submitted, fx: &mut Vec<Effect>) {
        let Some(CurrentTrial::Ready(t)) = &self.trial else { return };
        let answered = t.view.position + 1;
        let total = t.view.total;
        match outcome {
            Submitted::Saved => {
                self.answered_this_session += 1;
                self.set_status(text::SAVED);
            }
            Submitted::AnsweredElsewhere => self.set_status(text::ANSWERED_ELSEWHERE),
        }
        if let Some(every) = self.study.options.break_every
            && answered % every as usize == 0
            && answered < total
        {
            self.trial = None;
            self.screen = Screen::Break;
            return;
        }
        self.next_trial(fx);
    }

    /// A click focuses and picks the answer under it; the wheel scrolls it.
    fn on_mouse(&mut self, m: MouseEvent) {
        self.now = Instant::now();
        if self.screen != Screen::Trial || self.help || self.confirm_quit {
            return;
        }
        let panels = self.panels();
        let Some(CurrentTrial::Ready(t)) = self.trial.as_mut() else { return };
        let Some(i) = panels.iter().position(|p| p.rect.contains(Position { x: m.column, y: m.row })) else {
            return;
        };
        match m.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                t.focus = i;
                select(t, i);
                if is_nudge(&self.status) {
                    self.status = None;
                }
            }
            MouseEventKind::ScrollDown => t.scroll[i] = scrolled(t.scroll[i], Scroll::LineDown, &panels[i]),
            MouseEventKind::ScrollUp => t.scroll[i] = scrolled(t.scroll[i], Scroll::LineUp, &panels[i]),
            _ => {}
        }
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

/// Whether the status line says to choose first (which a choice makes stale).
fn is_nudge(status: &Option<(String, Instant)>) -> bool {
    status.as_ref().is_some_and(|(s, _)| s == text::PICK_FIRST || s == text::RANK_ALL_FIRST)
}

/// Holds "no preference" or "skip" for Enter; in a pick it takes the pick's place (an
/// order given so far stays, should the participant rank on instead).
fn hold(t: &mut TrialState, held: Held) {
    t.held = Some(held);
    t.picked = None;
}

fn select(t: &mut TrialState, i: usize) {
    t.held = None;
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
mod tests {
    use std::path::Path;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    use super::*;
    use crate::tui::draw::{self, Theme};

    fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
        app.update(Action::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn example() -> Study {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/example.toml");
        let (mut s, _) = ualign_core::study::load(&path).unwrap();
        s.options.participant_id_pattern = Some(ualign_core::study::IdPattern::new("p[0-9]+").unwrap());
        s
    }

    #[test]
    fn the_app_asks_for_what_it_needs_and_holds_no_store() {
        let mut app = App::new(example(), None);
        assert!(app.update(Action::Resize(100, 30)).is_empty());
        assert!(app.update(Action::Start).is_empty(), "nobody to resume yet");
        assert!(key(&mut app, KeyCode::Enter).is_empty());
        assert_eq!(app.screen, Screen::Consent);
        assert!(key(&mut app, KeyCode::Char('y')).is_empty(), "the consent is kept until a session begins");
        assert_eq!(app.screen, Screen::EnterId);
        for c in "p11".chars() {
            key(&mut app, KeyCode::Char(c));
        }
        let fx = key(&mut app, KeyCode::Enter);
        assert!(matches!(&fx[..], [Effect::Admit(id)] if id == "p11"), "{fx:?}");
        let fx = app.update(Action::Admitted(Err(IdRefused::Unknown)));
        assert!(fx.is_empty() && app.id_error == Some(IdRefused::Unknown) && app.screen == Screen::EnterId);
        let admitted =
            Admission { participant: "p11".into(), returning: false, by_code: false, known: false, finished: false };
        let fx = app.update(Action::Admitted(Ok(admitted)));
        assert!(
            matches!(&fx[..], [Effect::BeginSession { participant, consented_at: Some(_), window: (100, 30), issue_code: false }] if participant == "p11"),
            "{fx:?}"
        );
        assert_eq!(app.screen, Screen::Instructions);
        let fx = key(&mut app, KeyCode::Enter);
        assert!(
            matches!(&fx[..], [Effect::BeginSession { consented_at: None, .. }, Effect::NextTrial]),
            "the consent goes with the first session only: {fx:?}"
        );
        assert!(app.update(Action::PoolsRequested(Ok(5))).is_empty());
        let progress = Progress { pools_done: 1, pools: 2, candidates_done: 4, candidates: 8, tokens: 120 };
        app.update(Action::Pools(PoolNews::Progress { request: 6, progress: progress.clone() }));
        assert!(matches!(app.trial, Some(CurrentTrial::Preparing { request: 5, progress: None })), "another's");
        app.update(Action::Pools(PoolNews::Progress { request: 5, progress }));
        let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
        term.draw(|f| draw::draw(f, &app, Theme { color: false })).unwrap();
        let shown = format!("{}", term.backend()).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(shown.contains("1 of 2 sets of answers ready · 120 tokens written"), "{shown}");
        let fx = app.update(Action::Pools(PoolNews::Ready(5)));
        assert!(matches!(&fx[..], [Effect::BeginSession { .. }, Effect::NextTrial]), "{fx:?}");
        let fx = app.update(Action::PoolsRequested(Err(NoEngine::Stopped("it crashed".into()))));
        assert!(fx.is_empty());
        let Some(CurrentTrial::Unavailable(why)) = &app.trial else { panic!("{:?}", app.trial) };
        assert!(why.contains("it crashed"), "{why}");
    }

    /// Where others can reach the ID screen, a new participant's session begins by giving
    /// them a return code, shown with their id before anything else; one who came with a
    /// code, or who began before, is given none.
    #[test]
    fn a_new_participant_is_given_a_return_code_where_ids_alone_do_not_resume() {
        let mut study = example();
        study.instructions = String::new();
        for (admitted, owed) in [
            (None, true),
            (
                Some(Admission {
                    participant: "p12".into(),
                    returning: false,
                    by_code: false,
                    known: false,
                    finished: false,
                }),
                true,
            ),
            (
                Some(Admission {
                    participant: "p12".into(),
                    returning: false,
                    by_code: true,
                    known: false,
                    finished: false,
                }),
                false,
            ),
            (
                Some(Admission {
                    participant: "p12".into(),
                    returning: false,
                    by_code: false,
                    known: true,
                    finished: false,
                }),
                false,
            ),
        ] {
            let mut app = App::new(study.clone(), admitted.clone());
            app.return_codes = true;
            app.update(Action::Resize(100, 30));
            key(&mut app, KeyCode::Enter);
            let mut fx = key(&mut app, KeyCode::Char('y'));
            if admitted.is_none() {
                assert_eq!(app.screen, Screen::EnterId);
                fx = key(&mut app, KeyCode::Enter);
            }
            assert!(
                matches!(fx.first(), Some(Effect::BeginSession { issue_code, .. }) if *issue_code == owed),
                "{admitted:?}: {fx:?}"
            );
            if !owed {
                assert!(matches!(fx.last(), Some(Effect::NextTrial)), "straight to the questions: {fx:?}");
                continue;
            }
            assert_eq!(app.screen, Screen::ShowNewId, "{admitted:?}");
            assert!(app.update(Action::ReturnCode("k7q2-m9xp-4hta".into())).is_empty());
            let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
            term.draw(|f| draw::draw(f, &app, Theme { color: false })).unwrap();
            let shown = format!("{}", term.backend());
            assert!(shown.contains("k7q2-m9xp-4hta") && shown.contains("return code"), "{shown}");
            let fx = key(&mut app, KeyCode::Enter);
            assert!(
                matches!(&fx[..], [Effect::BeginSession { issue_code: false, .. }, Effect::NextTrial]),
                "the code is given once: {fx:?}"
            );
        }
    }

    #[test]
    fn a_write_that_fails_shows_what_was_saved_and_how_to_resume() {
        let admitted =
            Admission { participant: "p11".into(), returning: true, by_code: false, known: true, finished: false };
        let mut app = App::new(example(), Some(admitted));
        assert_eq!(app.screen, Screen::Resuming);
        assert!(matches!(&app.update(Action::Start)[..], [Effect::BeginSession { .. }]));
        let failure = Failure {
            what: "the study's database cannot be written".into(),
            answer_lost: true,
            detail: "could not save the answer in db/e.sqlite: attempt to write a readonly database".into(),
        };
        let fx = app.update(Action::Failed(failure));
        assert!(matches!(&fx[..], [Effect::EndSession(EndReason::Error)]), "{fx:?}");
        assert_eq!(app.screen, Screen::Failed);
        let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
        term.draw(|f| draw::draw(f, &app, Theme { color: false })).unwrap();
        let shown = format!("{}", term.backend());
        for want in
            ["answer you confirmed before this one is saved", "NOT saved", "--participant p11", "Press q to close"]
        {
            assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
        }
        assert!(!shown.contains("readonly"), "nothing raw on screen:\n{shown}");
        // Only quitting is left.
        assert!(key(&mut app, KeyCode::Char('2')).is_empty());
        assert_eq!(app.screen, Screen::Failed);
        key(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }
}

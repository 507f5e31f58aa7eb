//! The participant app as a state machine: events (keys, clicks, ticks, worker events)
//! update the state; drawing reads it. It talks to the store directly (each answer is
//! committed before the next screen) but knows nothing of the terminal, so tests drive it
//! with synthetic keys against a real SQLite database.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::text;
use crate::pools::{PoolJob, PoolWorker, WorkerEvent};
use crate::schedule::{self, SlotRole};
use crate::store::{Answer, Store, StoredTrial};
use crate::study::{PolicySource, RankMode, Study};

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
}

/// A trial ready to show: its candidates in displayed order.
#[derive(Debug, Clone)]
pub struct TrialView {
    pub trial_id: i64,
    pub position: usize,
    pub total: usize,
    pub block: String,
    pub mode: RankMode,
    pub prompt: String,
    pub candidate_ids: Vec<i64>,
    pub texts: Vec<String>,
}

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

/// What the participant is waiting for on the trial screen.
#[derive(Debug)]
pub enum TrialSlot {
    Ready(TrialState),
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
    session: Option<i64>,
    pub trial: Option<TrialSlot>,
    pub status: Option<(String, Instant)>,
    pub help: bool,
    pub confirm_quit: bool,
    pub quit: bool,
    pub answered_this_session: usize,
    pub size: (u16, u16),
    /// Screen areas of the candidate panels, written by `draw` for mouse hits.
    pub panel_rects: RefCell<Vec<Rect>>,
    /// Prefetch request for the trial after the current one.
    prefetch: Option<u64>,
}

fn valid_typed_id(s: &str) -> bool {
    (3..=64).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.chars().any(|c| c.is_ascii_digit())
}

/// A fresh pseudonym: `p-` and 10 random lowercase letters and digits.
pub fn new_pseudonym() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let s: String = (0..10).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("p-{s}")
}

impl App {
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
            panel_rects: RefCell::new(Vec::new()),
            prefetch: None,
        };
        if let Some(id) = participant {
            anyhow::ensure!(valid_typed_id(&id) || id.starts_with("p-"), "participant id `{id}`: {}", text::ID_INVALID);
            if app.store.consent_at(&id)?.is_some() {
                app.participant = Some(id);
                app.begin_session()?;
                app.screen = Screen::Resuming;
            } else {
                app.participant = Some(id);
            }
        }
        Ok(app)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn begin_session(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.participant.clone() else { return Ok(()) };
        self.store.ensure_participant(&p)?;
        if let Some(at) = self.consented_at.take() {
            self.store.record_consent_at(&p, &at)?;
        }
        self.store.enrol(&p, &schedule::plan(&self.study, &p))?;
        let client = format!("ualign {} {}x{}", env!("CARGO_PKG_VERSION"), self.size.0, self.size.1);
        self.session = Some(self.store.start_session(&p, &client)?);
        Ok(())
    }

    /// Ends the session in the store (quit, completion, signal).
    pub fn end(&mut self, reason: &str) {
        if let Some(s) = self.session.take() {
            let _ = self.store.end_session(s, reason);
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

    pub fn on_key(&mut self, key: KeyEvent) -> anyhow::Result<()> {
        if key.kind != ratatui::crossterm::event::KeyEventKind::Press {
            return Ok(());
        }
        let ctrl_c = key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
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
            Screen::EnterId => match key.code {
                KeyCode::Enter => {
                    let typed = self.id_input.trim().to_string();
                    if typed.is_empty() {
                        let id = new_pseudonym();
                        self.participant = Some(id);
                        self.begin_session()?;
                        self.screen = Screen::ShowNewId;
                    } else if valid_typed_id(&typed) {
                        let returning = self.store.consent_at(&typed)?.is_some();
                        self.participant = Some(typed);
                        self.begin_session()?;
                        self.screen = if returning { Screen::Resuming } else { Screen::Instructions };
                    } else {
                        self.id_error = true;
                    }
                }
                KeyCode::Backspace => {
                    self.id_input.pop();
                }
                KeyCode::Esc => self.confirm_quit = true,
                KeyCode::Char(c) if self.id_input.len() < 64 && !c.is_control() => {
                    self.id_input.push(c);
                    self.id_error = false;
                }
                _ => {}
            },
            Screen::ShowNewId | Screen::Instructions | Screen::Resuming | Screen::Break
                if key.code == KeyCode::Enter =>
            {
                if self.screen == Screen::ShowNewId && !self.study.instructions.trim().is_empty() {
                    self.screen = Screen::Instructions;
                } else {
                    self.next_trial()?;
                }
            }
            Screen::Trial => self.trial_key(key)?,
            _ => {}
        }
        Ok(())
    }

    fn after_consent(&mut self) -> anyhow::Result<Screen> {
        if self.participant.is_some() {
            self.begin_session()?;
            Ok(if self.study.instructions.trim().is_empty() { self.next_trial_screen()? } else { Screen::Instructions })
        } else {
            Ok(Screen::EnterId)
        }
    }

    fn next_trial_screen(&mut self) -> anyhow::Result<Screen> {
        self.next_trial()?;
        Ok(self.screen)
    }

    /// Loads the first unanswered trial (or the completion screen).
    pub fn next_trial(&mut self) -> anyhow::Result<()> {
        let Some(p) = self.participant.clone() else { return Ok(()) };
        let trials = self.store.trials(&p)?;
        let total = trials.len();
        let Some(idx) = trials.iter().position(|t| !t.answered) else {
            self.store.mark_completed(&p)?;
            self.end("completed");
            self.screen = Screen::Done;
            self.trial = None;
            return Ok(());
        };
        self.screen = Screen::Trial;
        let next = trials.get(idx + 1).cloned();
        self.trial = Some(self.load(&trials[idx], total)?);
        // Prepare the next trial's candidates while this one is read.
        if let Some(next) = next {
            let jobs = self.missing_jobs(&next)?;
            if !jobs.is_empty()
                && let Some(w) = self.worker.as_mut()
            {
                self.prefetch = Some(w.request(jobs));
            }
        }
        Ok(())
    }

    fn missing_jobs(&self, t: &StoredTrial) -> anyhow::Result<Vec<PoolJob>> {
        let mut jobs: Vec<PoolJob> = Vec::new();
        for slot in &t.plan.slots {
            if self.store.candidate(&slot.policy, &t.plan.prompt_id, slot.sample)?.is_none()
                && !jobs.iter().any(|j| j.policy == slot.policy)
            {
                let pool = self.study.policy(&slot.policy).map_or(0, |p| p.pool_size);
                let have = self.store.stored_samples(&slot.policy, &t.plan.prompt_id)?;
                jobs.push(PoolJob {
                    policy: slot.policy.clone(),
                    prompt_id: t.plan.prompt_id.clone(),
                    missing: (0..pool).filter(|i| !have.contains(i)).collect(),
                });
            }
        }
        Ok(jobs)
    }

    fn load(&mut self, t: &StoredTrial, total: usize) -> anyhow::Result<TrialSlot> {
        let jobs = self.missing_jobs(t)?;
        if !jobs.is_empty() {
            let imported: Vec<&str> = jobs
                .iter()
                .filter(|j| self.study.policy(&j.policy).is_some_and(|p| matches!(p.source, PolicySource::Imported)))
                .map(|j| j.policy.as_str())
                .collect();
            if !imported.is_empty() {
                return Ok(TrialSlot::Failed(format!(
                    "candidates of imported policy `{}` for prompt `{}` are missing; the researcher must run `ualign import`",
                    imported.join(", "),
                    t.plan.prompt_id
                )));
            }
            return Ok(match self.worker.as_mut() {
                Some(w) => TrialSlot::Preparing(w.request(jobs)),
                None => TrialSlot::Failed("candidates are missing; run `ualign generate` first".into()),
            });
        }
        let prompt = self.study.prompt(&t.plan.prompt_id).map(|p| p.text.clone()).unwrap_or_default();
        let mut ids = Vec::new();
        let mut texts = Vec::new();
        for slot in &t.plan.slots {
            let c = self
                .store
                .candidate(&slot.policy, &t.plan.prompt_id, slot.sample)?
                .ok_or_else(|| anyhow::anyhow!("candidate vanished"))?;
            let text = if slot.role == SlotRole::Broken {
                let source = c.text.clone();
                self.store.attention_text(c.id, || schedule::broken_text(&source, c.id as u64))?
            } else {
                c.text
            };
            ids.push(c.id);
            texts.push(text);
        }
        self.store.mark_shown(t.id, &ids, self.session)?;
        let n = texts.len();
        Ok(TrialSlot::Ready(TrialState {
            view: TrialView {
                trial_id: t.id,
                position: t.position,
                total,
                block: t.plan.block.clone(),
                mode: t.plan.mode,
                prompt,
                candidate_ids: ids,
                texts,
            },
            focus: 0,
            picked: None,
            order: Vec::new(),
            scroll: vec![0; n],
            shown_at: Instant::now(),
        }))
    }

    /// Worker events: a pool the current trial waits for may now be ready.
    pub fn on_worker_events(&mut self) -> anyhow::Result<()> {
        let mut events = Vec::new();
        if let Some(w) = &self.worker {
            while let Ok(ev) = w.events.try_recv() {
                events.push(ev);
            }
        }
        for ev in events {
            match ev {
                WorkerEvent::Done { request } => {
                    if matches!(self.trial, Some(TrialSlot::Preparing(r)) if r == request) {
                        self.next_trial()?;
                    }
                }
                WorkerEvent::Notice(n) => self.set_status(n),
                WorkerEvent::Failed { request, error } => {
                    if matches!(self.trial, Some(TrialSlot::Preparing(r)) if r == request) {
                        self.trial = Some(TrialSlot::Failed(error));
                    } else if self.prefetch == Some(request) {
                        self.set_status(format!("could not prepare the next question: {error}"));
                    }
                }
            }
        }
        Ok(())
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
            KeyCode::PageDown | KeyCode::Char('j') => t.scroll[t.focus] = t.scroll[t.focus].saturating_add(3),
            KeyCode::PageUp | KeyCode::Char('k') => t.scroll[t.focus] = t.scroll[t.focus].saturating_sub(3),
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

    /// Commits the answer; only then moves on.
    fn submit(&mut self, answer: Answer) -> anyhow::Result<()> {
        let Some(TrialSlot::Ready(t)) = &self.trial else { return Ok(()) };
        let ms = t.shown_at.elapsed().as_millis() as u64;
        let (id, position, total) = (t.view.trial_id, t.view.position, t.view.total);
        self.store.record_answer(id, &answer, ms, self.session)?;
        self.answered_this_session += 1;
        self.set_status(text::SAVED);
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
        let rects = self.panel_rects.borrow().clone();
        let Some(TrialSlot::Ready(t)) = self.trial.as_mut() else { return Ok(()) };
        let hit = rects.iter().position(|r| r.contains(ratatui::layout::Position { x: m.column, y: m.row }));
        match (m.kind, hit) {
            (MouseEventKind::Down(MouseButton::Left), Some(i)) if i < t.view.texts.len() => {
                t.focus = i;
                select(t, i);
            }
            (MouseEventKind::ScrollDown, Some(i)) if i < t.scroll.len() => t.scroll[i] = t.scroll[i].saturating_add(1),
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

//! `ualign dashboard`: the researcher's live view of a study. A watcher thread polls the
//! database (SQLite's `data_version` changes whenever another process commits, e.g. a
//! participant's answer) and recomputes the report off the UI thread; the UI draws the
//! latest report: the f(k) chart with interval bars, k/(k+1) and the certified curves,
//! participant progress, the f(k) table and data-quality flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{Event, KeyCode, KeyEventKind, KeyModifiers};

mod draw;
mod text;

pub use draw::draw;

use super::draw::Theme;
use ualign_core::analysis::report::{Options, Report};
use ualign_core::store::Store;
use ualign_core::study::Study;

/// Smallest window the dashboard draws into.
pub(crate) const MIN_WIDTH: u16 = 60;
pub(crate) const MIN_HEIGHT: u16 = 18;

/// What the dashboard shows.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub study: String,
    pub db: String,
    pub report: Option<Report>,
    /// When the shown report was computed, and how long it took.
    pub updated: Option<(chrono::DateTime<chrono::Local>, Duration)>,
    pub computing: bool,
    pub error: Option<String>,
}

/// Messages from the watcher thread.
pub enum Update {
    Computing,
    Ready(Box<Report>, Duration),
    Failed(String),
}

/// Watches the database and sends a fresh report after every change (and at start).
/// `refresh` asks for a recomputation now.
pub fn spawn_watcher(
    study: Study,
    db: PathBuf,
    opts: Options,
    refresh: Arc<AtomicBool>,
    tx: mpsc::Sender<Update>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("ualign-dashboard".into()).spawn(move || {
        // SQLite's full integrity check, once: numbers from a damaged file are never shown.
        let store = match Store::open_existing(&db).and_then(|s| s.check_integrity().map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Update::Failed(e.to_string()));
                return;
            }
        };
        let mut seen: Option<i64> = None;
        loop {
            let version = store.data_version().ok();
            if version != seen || refresh.swap(false, Ordering::Relaxed) {
                seen = version;
                if tx.send(Update::Computing).is_err() {
                    return;
                }
                let start = Instant::now();
                let msg = match Report::compute(&study, &store, &opts) {
                    Ok(r) => Update::Ready(Box::new(r), start.elapsed()),
                    Err(e) => Update::Failed(format!("reading {}: {e}", db.display())),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })?;
    Ok(())
}

impl Dashboard {
    pub(crate) fn apply(&mut self, u: Update) {
        match u {
            Update::Computing => self.computing = true,
            Update::Ready(r, took) => {
                self.report = Some(*r);
                self.updated = Some((chrono::Local::now(), took));
                self.computing = false;
                self.error = None;
            }
            Update::Failed(e) => {
                self.computing = false;
                self.error = Some(e);
            }
        }
    }
}

/// The dashboard in the shared event loop: its state, the watcher's updates, and the
/// flag that asks the watcher to recompute.
struct Live {
    dash: Dashboard,
    updates: mpsc::Receiver<Update>,
    refresh: Arc<AtomicBool>,
    quit: bool,
}

impl super::Interactive for Live {
    fn draw(&self, f: &mut Frame, theme: Theme) {
        draw::draw(f, &self.dash, theme);
    }

    fn on_event(&mut self, ev: Event) {
        if let Event::Key(k) = ev
            && k.kind != KeyEventKind::Release
        {
            match k.code {
                KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
                KeyCode::Char('r') => self.refresh.store(true, Ordering::Relaxed),
                _ => {}
            }
        }
    }

    fn on_tick(&mut self) {
        while let Ok(u) = self.updates.try_recv() {
            self.dash.apply(u);
        }
    }

    fn finished(&self) -> bool {
        self.quit
    }
}

/// Runs the dashboard until q, Esc or Ctrl-C (or SIGTERM/SIGHUP).
pub(crate) fn run(study: Study, db: PathBuf, opts: Options) -> anyhow::Result<()> {
    let dash = Dashboard { study: study.name.clone(), db: db.display().to_string(), ..Default::default() };
    let refresh = Arc::new(AtomicBool::new(false));
    let (tx, updates) = mpsc::channel();
    spawn_watcher(study, db, opts, refresh.clone(), tx)?;
    let mut live = Live { dash, updates, refresh, quit: false };
    super::event_loop(&mut live, Duration::from_millis(200))
}

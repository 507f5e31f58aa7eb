//! `ualign dashboard`: the researcher's live view of a study. Two watcher threads poll the
//! database (SQLite's `data_version` changes whenever another process commits, e.g. a
//! participant's answer), off the UI thread: one refreshes progress and the empirical f(k)
//! rows (intervals and confidence sequences) on every commit, reading only the answers
//! committed since its last read ([`LiveReader`]; what still grows with the study is the
//! bootstrap of the rows that changed, over their participants), the other recomputes the
//! whole report (the model, the equilibria and their bootstrap refits, which take minutes
//! at thousands of participants) in the background, shown with its age. The UI draws the
//! latest of each: the f(k) chart with interval bars, k/(k+1) and the certified curves,
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
use ualign_core::analysis::live::LiveReader;
use ualign_core::analysis::report::{LiveView, Options, Report};
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
    /// When the shown f(k) and progress were read, where the live view is newer than the
    /// full report; and what the full report (model, equilibria, quality) was computed
    /// from: its participants and when.
    pub live: Option<chrono::DateTime<chrono::Local>>,
    pub model: Option<ModelAge>,
    pub reads: Reads,
}

/// Which of the two watchers' results is newer.
#[derive(Debug, Default)]
pub struct Reads {
    /// The latest live view, and when its snapshot was taken.
    latest: Option<(LiveView, Instant)>,
    /// When the shown full report's snapshot was taken.
    report: Option<Instant>,
    /// The error shown is the live view's (a later live view clears it).
    live_error: bool,
}

/// What the background part of the dashboard (the full report) was computed from.
#[derive(Debug, Clone, Copy)]
pub struct ModelAge {
    pub participants: usize,
    pub at: chrono::DateTime<chrono::Local>,
}

/// Messages from the watcher thread.
pub enum Update {
    Computing,
    /// The full report, how long it took, and when its snapshot was taken.
    Ready(Box<Report>, Duration, Instant),
    /// Progress and f(k), read when the `Instant` says.
    Live(Box<LiveView>, Instant),
    Failed(String),
    /// The live view could not read (the full report's state is left as it is).
    LiveFailed(String),
}

/// Sizes this process's parallel pool (where the full report's parallel work runs) to
/// one core less than the machine has, so that the live view keeps up with every commit
/// while the report takes its minutes. Call once, before any parallel work; a pool built
/// already is left as it is.
pub fn leave_a_core_for_the_live_view() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(cores.saturating_sub(1).max(1))
        .thread_name(|i| format!("ualign-report-{i}"))
        .build_global();
}

/// How often the live view looks for new answers.
const LIVE_POLL: Duration = Duration::from_millis(100);

/// Watches the database and sends a fresh live view after every commit and a fresh full
/// report whenever the last is done and answers have come since (and both at start).
/// `refresh` asks for a recomputation of the full report now.
pub fn spawn_watcher(
    study: Study,
    db: PathBuf,
    opts: Options,
    refresh: Arc<AtomicBool>,
    tx: mpsc::Sender<Update>,
) -> std::io::Result<()> {
    spawn_watching(Watching::NewAnswers, study, db, opts, refresh, tx)
}

/// What a dashboard's watchers compute on each commit: today's, and the dashboards before
/// it (the peers of `benches/dashboard_lag.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watching {
    /// A live view from the answers committed since its last read ([`LiveReader`]), the
    /// full report in the background.
    NewAnswers,
    /// A live view from every answer on every commit, the full report in the background.
    EveryAnswer,
    /// The whole report after every change, nothing in between.
    WholeReport,
}

/// [`spawn_watcher`], watching as `watching` says.
pub fn spawn_watching(
    watching: Watching,
    study: Study,
    db: PathBuf,
    opts: Options,
    refresh: Arc<AtomicBool>,
    tx: mpsc::Sender<Update>,
) -> std::io::Result<()> {
    spawn(study, db, opts, refresh, tx, watching)
}

fn spawn(
    study: Study,
    db: PathBuf,
    opts: Options,
    refresh: Arc<AtomicBool>,
    tx: mpsc::Sender<Update>,
    watching: Watching,
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
        if watching != Watching::WholeReport
            && let Err(e) = spawn_live(study.clone(), db.clone(), opts.replicates, watching, tx.clone())
        {
            let _ = tx.send(Update::Failed(format!("cannot start the live view: {e}")));
        }
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
                    Ok(r) => Update::Ready(Box::new(r), start.elapsed(), start),
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

/// The live view's thread: progress and f(k) after every commit, from its own connection
/// (the database was checked whole before it starts) and its own parallel pool (the full
/// report's work in the process-wide one must not hold it up). It stops when the
/// dashboard does.
fn spawn_live(
    study: Study,
    db: PathBuf,
    replicates: usize,
    watching: Watching,
    tx: mpsc::Sender<Update>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("ualign-dashboard-live".into()).spawn(move || {
        let store = match Store::open_existing(&db) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Update::LiveFailed(e.to_string()));
                return;
            }
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let pool = match rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("ualign-live-{i}"))
            .build()
        {
            Ok(p) => p,
            Err(e) => {
                let _ = tx.send(Update::LiveFailed(format!("cannot start the live view's threads: {e}")));
                return;
            }
        };
        let pool = Arc::new(pool);
        let mut reader = LiveReader::new(&study, replicates).in_pool(pool.clone());
        let mut seen: Option<i64> = None;
        loop {
            let version = store.data_version().ok();
            if version != seen {
                seen = version;
                let read = Instant::now();
                let view = match watching {
                    Watching::NewAnswers => reader.read(&study, &store),
                    _ => LiveView::compute(&study, &store, replicates),
                };
                let msg = match view {
                    Ok(v) => Update::Live(Box::new(v), read),
                    Err(e) => Update::LiveFailed(format!("reading {}: {e}", db.display())),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            std::thread::sleep(LIVE_POLL);
        }
    })?;
    Ok(())
}

impl Dashboard {
    pub(crate) fn apply(&mut self, u: Update) {
        match u {
            Update::Computing => self.computing = true,
            Update::Ready(mut r, took, read) => {
                let now = chrono::Local::now();
                self.model = Some(ModelAge {
                    participants: r.progress.participants,
                    at: now - chrono::Duration::from_std(took).unwrap_or_default(),
                });
                match &self.reads.latest {
                    Some((v, at)) if *at > read => r.refresh_from(v),
                    _ => self.live = None,
                }
                self.report = Some(*r);
                self.reads.report = Some(read);
                self.updated = Some((now, took));
                self.computing = false;
                self.error = None;
            }
            Update::Live(v, at) => {
                if self.reads.report.is_some_and(|read| read > at) {
                    return;
                }
                match &mut self.report {
                    Some(r) => r.refresh_from(&v),
                    None => self.report = Some(Report::from_live(&self.study, (*v).clone())),
                }
                self.live = Some(chrono::Local::now());
                self.reads.latest = Some((*v, at));
                if self.reads.live_error {
                    (self.error, self.reads.live_error) = (None, false);
                }
            }
            Update::LiveFailed(e) => {
                self.error = Some(e);
                self.reads.live_error = true;
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
    leave_a_core_for_the_live_view();
    spawn_watcher(study, db, opts, refresh.clone(), tx)?;
    let mut live = Live { dash, updates, refresh, quit: false };
    super::event_loop(&mut live, Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ualign_core::store::Progress;

    fn view(participants: usize) -> LiveView {
        LiveView { progress: Progress { participants, ..Default::default() }, fk: Vec::new() }
    }

    #[test]
    fn the_newer_of_the_live_view_and_the_full_report_is_shown() {
        let mut d = Dashboard { study: "s".into(), ..Default::default() };
        // Before any full report, the live view alone is drawn.
        d.apply(Update::Live(Box::new(view(3)), Instant::now()));
        assert_eq!(d.report.as_ref().map(|r| r.progress.participants), Some(3));
        assert!(d.live.is_some() && d.model.is_none());
        // A full report read 10 s ago, of 2 participants, arrives: its model and quality are
        // shown as of 2, f(k) and progress stay the live view's 3.
        let old = Report::from_live("s", view(2));
        let ten_ago = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        d.apply(Update::Ready(Box::new(old), Duration::from_secs(10), ten_ago));
        assert_eq!(d.report.as_ref().map(|r| r.progress.participants), Some(3));
        assert_eq!(d.model.map(|m| m.participants), Some(2));
        assert!(d.live.is_some());
        // A live view read before that report is stale: ignored.
        let long_ago = Instant::now().checked_sub(Duration::from_secs(60)).unwrap();
        d.apply(Update::Live(Box::new(view(1)), long_ago));
        assert_eq!(d.report.as_ref().map(|r| r.progress.participants), Some(3));
        // A full report newer than every live view is shown whole.
        d.apply(Update::Ready(Box::new(Report::from_live("s", view(4))), Duration::ZERO, Instant::now()));
        assert_eq!(d.report.as_ref().map(|r| r.progress.participants), Some(4));
        assert!(d.live.is_none(), "no live view is newer than the report");
    }
}

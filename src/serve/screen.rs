//! One remote participant's screens: the participant app of `ualign run`, on its own
//! thread (its store calls may wait on SQLite's lock without holding up anyone else),
//! drawn by ratatui onto a terminal whose output goes to a bounded queue that the
//! connection's transport drains. A client that cannot keep up (more than
//! [`MAX_QUEUED_BYTES`] waiting) is dropped, its confirmed answers already committed;
//! input beyond what the screen has read ([`MAX_QUEUED_EVENTS`]) is dropped, the
//! connection kept.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::Event;
use ratatui::layout::Rect;
use ratatui::{TerminalOptions, Viewport};

use super::Hub;
use super::limits::Place;
use crate::tui::app::Screen;
use crate::tui::{Driver, Interactive, draw, text};
use ualign_core::session::EndReason;
use ualign_core::store::Store;

/// Output waiting for a slow client, at most; beyond it the client is dropped.
pub(crate) const MAX_QUEUED_BYTES: usize = 1 << 20;
/// Input events waiting for the screen, at most; beyond it further input is dropped (a
/// paste larger than this loses its tail; the connection stays).
pub(crate) const MAX_QUEUED_EVENTS: usize = 512;
/// The largest window drawn; a client that claims more gets this much.
pub(crate) const MAX_COLUMNS: u16 = 320;
pub(crate) const MAX_ROWS: u16 = 120;
/// How often a screen wakes with nothing to do (the clock, the engine's answers).
const TICK: Duration = Duration::from_millis(250);

/// A window size as a client reports it, within what a screen draws.
pub(crate) fn clamp_size(columns: u32, rows: u32) -> (u16, u16) {
    let c = columns.clamp(1, u32::from(MAX_COLUMNS)) as u16;
    let r = rows.clamp(1, u32::from(MAX_ROWS)) as u16;
    (c, r)
}

/// What a screen sends its client.
#[derive(Debug)]
pub(crate) enum Out {
    /// Terminal output.
    Frame(Vec<u8>),
    /// The study's completion link: a browser goes there.
    Redirect(String),
}

/// How a screen starts.
pub(crate) struct Start {
    /// The id or invitation code the participant signed in with; `None` asks on the ID screen.
    pub(crate) who: Option<String>,
    /// How the session is recorded (`ssh`, `browser`, with Prolific's ids).
    pub(crate) client: String,
    pub(crate) size: (u16, u16),
    /// The connection's number in the log.
    pub(crate) connection: u64,
    pub(crate) place: Place,
    /// The id is vouched for by the link it came in (a Prolific link: Prolific gives each
    /// participant their own), so they come back the same way and need no return code.
    pub(crate) vouched: bool,
}

/// The transport's side of the input: terminal events for the screen.
pub(crate) struct ScreenInput {
    events: std::sync::mpsc::SyncSender<Event>,
    last_input: Arc<AtomicU64>,
    hub: Arc<Hub>,
}

impl ScreenInput {
    /// Passes an event on; `false` once the screen is gone (the transport then closes the
    /// connection). Input beyond [`MAX_QUEUED_EVENTS`] waiting events is dropped: a client
    /// typing or pasting faster than its screen reads loses keys, never the connection,
    /// and never costs the server more than the bound.
    pub(crate) fn send(&self, ev: Event) -> bool {
        self.last_input.store(self.hub.clock_ms(), Ordering::Relaxed);
        !matches!(self.events.try_send(ev), Err(std::sync::mpsc::TrySendError::Disconnected(_)))
    }
}

/// The transport's side of the output.
pub(crate) struct ScreenOutput {
    pub(crate) rx: tokio::sync::mpsc::UnboundedReceiver<Out>,
    queued: Arc<AtomicUsize>,
}

impl ScreenOutput {
    /// Tells the screen that `out` has been written to the client.
    pub(crate) fn written(&self, out: &Out) {
        if let Out::Frame(b) = out {
            let n = b.len();
            let _ = self.queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(n)));
        }
    }
}

/// The terminal's writer: bytes gathered between flushes, queued as one frame per flush
/// (a frame is never queued while more than [`MAX_QUEUED_BYTES`] wait).
struct QueueWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::UnboundedSender<Out>,
    queued: Arc<AtomicUsize>,
    overflowed: Arc<AtomicBool>,
    cursor_hidden: bool,
}

const HIDE_CURSOR: &[u8] = b"\x1b[?25l";

impl QueueWriter {
    fn send(&mut self, out: Out) {
        if let Out::Frame(b) = &out {
            if self.queued.load(Ordering::Relaxed) + b.len() > MAX_QUEUED_BYTES {
                self.overflowed.store(true, Ordering::Relaxed);
                return;
            }
            self.queued.fetch_add(b.len(), Ordering::Relaxed);
        }
        if self.tx.send(out).is_err() {
            // The connection is gone.
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}

impl Write for QueueWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // ratatui hides the cursor after every frame: once is enough.
        if self.buf == HIDE_CURSOR && self.cursor_hidden {
            self.buf.clear();
        }
        if !self.buf.is_empty() {
            self.cursor_hidden |= self.buf.ends_with(HIDE_CURSOR);
            let frame = std::mem::take(&mut self.buf);
            self.send(Out::Frame(frame));
        }
        Ok(())
    }
}

/// Starts a participant's screens on their own thread.
pub(crate) fn spawn(hub: Arc<Hub>, start: Start) -> std::io::Result<(ScreenInput, ScreenOutput)> {
    let (events_tx, events_rx) = std::sync::mpsc::sync_channel(MAX_QUEUED_EVENTS);
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let last_input = Arc::new(AtomicU64::new(hub.clock_ms()));
    let writer = QueueWriter {
        buf: Vec::new(),
        tx: out_tx,
        queued: queued.clone(),
        overflowed: Arc::new(AtomicBool::new(false)),
        cursor_hidden: false,
    };
    let (thread_hub, thread_input) = (hub.clone(), last_input.clone());
    std::thread::Builder::new()
        .name(format!("ualign-screen-{}", start.connection))
        .spawn(move || run(&thread_hub, start, writer, &events_rx, &thread_input))?;
    Ok((ScreenInput { events: events_tx, last_input, hub }, ScreenOutput { rx: out_rx, queued }))
}

/// The participant's app with what a remote screen adds: the completion link sent once
/// the completion screen shows, and the study's completion logged.
struct Remote {
    app: Driver,
    connection: u64,
    completed: bool,
    links: tokio::sync::mpsc::UnboundedSender<Out>,
    /// The participant whose window this is, once known (at sign-in, or when the ID
    /// screen admits them).
    claimed: Option<String>,
    /// Set when the participant signs in in a newer window: this one then closes.
    superseded: Arc<AtomicBool>,
}

impl Remote {
    fn after_event(&mut self, hub: &Hub) {
        if self.claimed.is_none()
            && let Some(p) = self.app.participant.clone()
        {
            if let Some(old) = hub.claim_window(&p, self.connection, self.superseded.clone()) {
                hub.log(&format!("#{} {p} went on in a new window; #{old} is closed", self.connection));
            }
            self.claimed = Some(p);
        }
        if self.app.screen == Screen::Done && !self.completed {
            self.completed = true;
            hub.log(&format!("#{} {} completed the study", self.connection, self.who()));
            if let Some(url) = &self.app.study.completion_url {
                let _ = self.links.send(Out::Redirect(url.clone()));
            }
        }
    }

    fn who(&self) -> &str {
        self.app.participant.as_deref().unwrap_or("(no id yet)")
    }
}

struct WithHub<'a> {
    remote: Remote,
    hub: &'a Hub,
}

impl Interactive for WithHub<'_> {
    fn draw(&self, f: &mut ratatui::Frame, theme: draw::Theme) {
        self.remote.app.draw(f, theme);
    }
    fn on_event(&mut self, ev: Event) {
        Interactive::on_event(&mut self.remote.app, ev);
        self.remote.after_event(self.hub);
    }
    fn on_tick(&mut self) {
        Interactive::on_tick(&mut self.remote.app);
        self.remote.after_event(self.hub);
    }
    fn started(&mut self) {
        self.remote.app.started();
    }
    fn finished(&self) -> bool {
        self.remote.app.finished()
    }
    fn interrupted(&mut self, why: EndReason) {
        self.remote.app.interrupted(why);
    }
}

/// Terminal modes a screen sets on the client: the alternate screen, SGR mouse reports.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?1000h\x1b[?1006h\x1b[H\x1b[2J";
const LEAVE: &[u8] = b"\x1b[?1000l\x1b[?1006l\x1b[0m\x1b[?1049l\x1b[?25h";

fn run(
    hub: &Hub,
    start: Start,
    mut writer: QueueWriter,
    events: &std::sync::mpsc::Receiver<Event>,
    last_input: &AtomicU64,
) {
    let Start { who, client, size, connection, place, vouched } = start;
    let overflowed = writer.overflowed.clone();
    let links = writer.tx.clone();
    let app = Store::open_for_study(&hub.db, &hub.study)
        .map_err(anyhow::Error::from)
        .and_then(|(store, _)| Driver::new(hub.study.clone(), store, who, hub.worker_handle()));
    let mut app = match app {
        Ok(app) => app,
        Err(e) => {
            hub.log(&format!("#{connection} could not start a screen: {e:#}"));
            say(&mut writer, text::SERVE_CANNOT_START);
            return;
        }
    };
    app.client = client;
    app.return_codes = hub.return_codes() && !vouched;
    app.resume = text::Resume::Reconnect(hub.reconnect_hint(app.participant.as_deref(), None));
    hub.log(&format!("#{connection} {} began ({})", app.participant.as_deref().unwrap_or("(no id yet)"), app.client));
    writer.buf.extend_from_slice(ENTER);
    let mut terminal = match Terminal::with_options(
        CrosstermBackend::new(writer),
        TerminalOptions { viewport: Viewport::Fixed(Rect::new(0, 0, size.0, size.1)) },
    ) {
        Ok(t) => t,
        Err(_) => return,
    };
    Interactive::on_event(&mut app, Event::Resize(size.0, size.1));
    let superseded = Arc::new(AtomicBool::new(false));
    let remote = Remote { app, connection, completed: false, links, claimed: None, superseded: superseded.clone() };
    let mut ui = WithHub { remote, hub };
    // The participant of a code known at sign-in holds this window from the start.
    ui.remote.after_event(hub);
    let idle_ms = hub.limits.idle_timeout.as_millis() as u64;
    let stop = || {
        if hub.stopping() {
            Some(EndReason::ServerStopping)
        } else if superseded.load(Ordering::Relaxed) {
            Some(EndReason::AnotherWindow)
        } else if overflowed.load(Ordering::Relaxed) {
            Some(EndReason::ClientTooSlow)
        } else if hub.clock_ms().saturating_sub(last_input.load(Ordering::Relaxed)) > idle_ms {
            Some(EndReason::Idle)
        } else {
            None
        }
    };
    let result = crate::tui::drive(&mut ui, &mut terminal, draw::Theme { color: true }, events, TICK, &stop);
    let why = if ui.remote.app.failure.is_some() {
        // The session ended for it (the participant then closed the failure screen).
        EndReason::Error.as_str()
    } else if ui.remote.app.quit {
        "quit"
    } else {
        stop().map_or("disconnected", EndReason::as_str)
    };
    drop(terminal);
    close(hub, &ui.remote, why, result.err(), place);
}

/// After the screens: the farewell as the last frame, the window given back, the place
/// given back, and the log's lines (a failure with its whole error; the end, counted
/// without this session).
fn close(hub: &Hub, remote: &Remote, why: &str, error: Option<anyhow::Error>, place: Place) {
    let (app, connection) = (&remote.app, remote.connection);
    let mut bye = LEAVE.to_vec();
    if let Some(f) = farewell(hub, why, app) {
        bye.extend_from_slice(f.replace('\n', "\r\n").as_bytes());
        bye.extend_from_slice(b"\r\n");
    }
    // The last frame, past the bound: it is small, and the connection closes after it.
    let _ = remote.links.send(Out::Frame(bye));
    let who = app.participant.as_deref().unwrap_or("(no id yet)");
    if let Some(f) = &app.failure {
        // What the participant was told in plain words, and the whole error: the
        // researcher must see that answers could not be saved.
        hub.log(&format!("#{connection} {who} could not go on: {} ({})", f.what, f.detail));
    }
    if let Some(p) = &remote.claimed {
        hub.release_window(p, connection);
    }
    // The session's place is given back first, so that the line's count is without it.
    drop(place);
    let error = error.map(|e| format!(" ({e:#})")).unwrap_or_default();
    let answered = app.answered_this_session;
    hub.log(&format!("#{connection} {who} ended: {why}, {answered} answer(s) saved in this session{error}"));
}

/// What a closing window tells its participant, after the screens have gone: why it
/// closed, and that (and how) they can come back.
fn farewell(hub: &Hub, why: &str, app: &Driver) -> Option<String> {
    let who = app.participant.as_deref();
    let hint = || hub.reconnect_hint(who, app.return_code.as_deref());
    match why {
        "server stopping" => Some(text::serve_stopping(&hint())),
        "idle" => Some(text::serve_idle(hub.limits.idle_timeout, &hint())),
        "another window" => Some(text::SERVE_OTHER_WINDOW.to_string()),
        _ if who.is_some() && app.screen != Screen::Done && app.screen != Screen::Declined => {
            Some(text::serve_saved(app.answered_this_session, &hint()))
        }
        _ => None,
    }
}

/// A message on a screen that cannot start, in the client's own terminal mode.
fn say(writer: &mut QueueWriter, message: &str) {
    let text = format!("{}\r\n", message.replace('\n', "\r\n"));
    writer.send(Out::Frame(text.into_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_window_sizes_are_clamped() {
        assert_eq!(clamp_size(0, 0), (1, 1));
        assert_eq!(clamp_size(u32::MAX, 70_000), (MAX_COLUMNS, MAX_ROWS));
        assert_eq!(clamp_size(120, 40), (120, 40));
    }

    #[test]
    fn a_client_that_does_not_read_is_cut_off_at_the_bound() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut w = QueueWriter {
            buf: Vec::new(),
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            overflowed: Arc::new(AtomicBool::new(false)),
            cursor_hidden: false,
        };
        for _ in 0..100 {
            w.write_all(&[b'x'; 64 * 1024]).unwrap();
            w.flush().unwrap();
        }
        assert!(w.overflowed.load(Ordering::Relaxed));
        assert!(w.queued.load(Ordering::Relaxed) <= MAX_QUEUED_BYTES);
    }
}

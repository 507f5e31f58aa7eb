//! The terminal screens: the participant's (`ualign run`, the interactive part of `ualign
//! demo`) and the researcher's dashboard, both driven by one event loop. Event → action →
//! [`App::update`] → effects, which the [`Driver`] carries out → draw; a guard restores the
//! terminal on every exit path (normal return, error, panic, SIGTERM/SIGHUP).

pub mod app;
pub mod dashboard;
pub mod draw;
pub mod driver;
pub(crate) mod input;
pub(crate) mod keymap;
pub(crate) mod layout;
pub(crate) mod text;

use std::io::Stdout;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};

pub use app::App;
pub use driver::Driver;
use ualign_core::session::EndReason;

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), DisableMouseCapture, LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
}

/// Puts the terminal in raw, alternate-screen mode and restores it when dropped. A panic
/// hook restores it too, then chains the previous hook so the message stays readable.
pub(crate) struct TerminalGuard {
    pub(crate) terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        enable_raw_mode()?;
        execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        Ok(Self { terminal })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// What the shared event loop drives: the participant app and the researcher's dashboard.
pub(crate) trait Interactive {
    fn draw(&self, f: &mut ratatui::Frame, theme: draw::Theme);
    /// A key, a click or a resize.
    fn on_event(&mut self, ev: Event);
    /// Called between events (at least every tick): the clock, a worker's answers.
    fn on_tick(&mut self);
    /// Called once the window's size is known, before the first frame.
    fn started(&mut self) {}
    fn finished(&self) -> bool;
    /// The loop ends without the UI asking: a signal, the terminal gone, an error, or
    /// what the caller's `stop` said.
    fn interrupted(&mut self, _why: EndReason) {}
}

/// Runs `ui` in the terminal until it is finished, a SIGTERM or SIGHUP comes, or the
/// terminal goes away; the terminal is restored on every way out.
pub(crate) fn event_loop(ui: &mut impl Interactive, tick: Duration) -> anyhow::Result<()> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, signalled.clone())?;
    }
    let theme = draw::Theme::from_env();
    let mut guard = TerminalGuard::new()?;
    let size = guard.terminal.size()?;
    ui.on_event(Event::Resize(size.width, size.height));
    // Terminal input is read on its own thread: when the terminal goes away, crossterm's
    // reader can loop on end-of-file without returning, and the SIGHUP that comes with it
    // must still end the program.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name("ualign-input".into()).spawn(move || {
        while let Ok(ev) = event::read() {
            if tx.send(ev).is_err() {
                break;
            }
        }
    })?;
    let stop = || signalled.load(Ordering::Relaxed).then_some(EndReason::Signal);
    let result = drive(ui, &mut guard.terminal, theme, &rx, tick, &stop);
    drop(guard);
    result
}

/// The loop itself, on any terminal: draws, then waits for the next event (or a tick),
/// until `ui` is finished, `stop` gives a reason (the loop ends with
/// [`Interactive::interrupted`]), or the events end (the terminal closed). `ui` has been
/// told the window's size already. The participant screens of `serve` run here too, on a
/// terminal that writes to the network.
pub(crate) fn drive<B: ratatui::backend::Backend>(
    ui: &mut impl Interactive,
    terminal: &mut Terminal<B>,
    theme: draw::Theme,
    events: &std::sync::mpsc::Receiver<Event>,
    tick: Duration,
    stop: &dyn Fn() -> Option<EndReason>,
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    ui.started();
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| ui.draw(f, theme))?;
            if ui.finished() {
                return Ok(());
            }
            if let Some(why) = stop() {
                ui.interrupted(why);
                return Ok(());
            }
            ui.on_tick();
            match events.recv_timeout(tick) {
                Ok(ev) => {
                    if let Event::Resize(w, h) = ev {
                        terminal.resize(ratatui::layout::Rect::new(0, 0, w, h))?;
                    }
                    ui.on_event(ev);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    ui.interrupted(EndReason::TerminalClosed);
                    return Ok(());
                }
            }
        }
    })();
    if result.is_err() {
        ui.interrupted(EndReason::Error);
    }
    result
}

/// Runs the participant flow until the participant quits or finishes.
pub(crate) fn run(participant: &mut Driver) -> anyhow::Result<()> {
    event_loop(participant, Duration::from_millis(100))?;
    match &participant.failure {
        // The participant has read the plain account; the researcher gets the whole error.
        Some(f) => Err(anyhow::anyhow!("{}", f.detail)),
        None => Ok(()),
    }
}

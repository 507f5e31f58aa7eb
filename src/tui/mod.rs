//! The participant TUI: `ualign run` and the interactive part of `ualign demo`.
//! Event → update → draw; a guard restores the terminal on every exit path (normal
//! return, error, panic, SIGTERM/SIGHUP).

pub mod app;
pub mod dashboard;
pub mod draw;
pub mod text;

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

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), DisableMouseCapture, LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
}

/// Puts the terminal in raw, alternate-screen mode and restores it when dropped. A panic
/// hook restores it too, then chains the previous hook so the message stays readable.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    pub fn new() -> anyhow::Result<Self> {
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

/// Runs the participant flow until the participant quits or finishes.
pub fn run(app: &mut App) -> anyhow::Result<()> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, signalled.clone())?;
    }
    let theme = draw::Theme::from_env();
    let mut guard = TerminalGuard::new()?;
    let size = guard.terminal.size()?;
    app.on_resize(size.width, size.height);
    app.start();
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
    let result = (|| -> anyhow::Result<()> {
        loop {
            guard.terminal.draw(|f| draw::draw(f, app, theme))?;
            if app.quit {
                return Ok(());
            }
            if signalled.load(Ordering::Relaxed) {
                app.end("signal");
                return Ok(());
            }
            app.on_worker_events()?;
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Key(k)) => app.on_key(k)?,
                Ok(Event::Mouse(m)) => app.on_mouse(m)?,
                Ok(Event::Resize(w, h)) => app.on_resize(w, h),
                Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    app.end("terminal closed");
                    return Ok(());
                }
            }
        }
    })();
    if result.is_err() {
        app.end("error");
    }
    drop(guard);
    result?;
    match &app.failure {
        // The participant has read the plain account; the researcher gets the whole error.
        Some(f) => Err(anyhow::anyhow!("{}", f.detail)),
        None => Ok(()),
    }
}

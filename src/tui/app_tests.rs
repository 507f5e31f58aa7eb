//! The app against a store whose connection refuses writes: what only the crate can do
//! (the connection is private to the store).

use std::path::Path;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::*;
use crate::tui::draw::{self, Theme};
use ualign_core::pools::import::import_candidates;

fn key(app: &mut App, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE)).unwrap();
}

fn answers(app: &App) -> i64 {
    app.store.counts().unwrap().2
}

#[test]
fn a_write_that_fails_shows_what_was_saved_and_how_to_resume() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = ualign_core::study::load(&repo.join("studies/example.toml")).unwrap();
    let (mut store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    for policy in ["sampled", "greedy"] {
        let file = repo.join(format!("studies/example/{policy}.jsonl"));
        import_candidates(&mut store, &s, policy, &file, false).unwrap();
    }
    s.options.min_reading_ms = 0;
    s.options.participant_id_pattern = Some(ualign_core::study::IdPattern::new("p[0-9]+").unwrap());
    let mut app = App::new(s, store, None, None).unwrap();
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('y'));
    for c in "p11".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Trial);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(answers(&app), 1);
    // From now on SQLite refuses every write on this connection, as on a read-only file.
    app.store.refuse_writes(true);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Failed);
    let failure = app.failure.clone().unwrap();
    assert!(failure.answer_lost);
    assert!(failure.what.contains("cannot be written"), "{failure:?}");
    assert!(failure.detail.contains("could not save the answer") && failure.detail.contains("e.sqlite"), "{failure:?}");
    let mut term = Terminal::new(TestBackend::new(100, 30)).unwrap();
    term.draw(|f| draw::draw(f, &app, Theme { color: false })).unwrap();
    let shown = format!("{}", term.backend());
    for want in ["answer you confirmed before this one is saved", "NOT saved", "--participant p11", "Press q to close"]
    {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    assert!(!shown.contains("SQLite") && !shown.contains("Error code"), "nothing raw on screen:\n{shown}");
    // Only quitting is left; nothing was half-written.
    key(&mut app, KeyCode::Char('2'));
    assert_eq!(app.screen, Screen::Failed);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
    app.store.refuse_writes(false);
    assert_eq!(answers(&app), 1);
}

//! The participant app and its driver without a terminal: key events against a real SQLite
//! store, and snapshots of every screen through ratatui's TestBackend at 80×24 and 140×40.

use crate::common;

use std::path::Path;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ualign::tui::Driver;
use ualign::tui::app::{App, CurrentTrial, Screen};
use ualign::tui::draw::{self, Theme};
use ualign_core::pools::import::import_candidates;
use ualign_core::store::Store;
use ualign_core::study::{self, RankMode, Study};

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The example study with no minimum reading time, its candidates imported into a temp db.
fn setup(dir: &Path) -> (Study, Store) {
    let (mut s, _) = study::load(&repo("studies/example.toml")).unwrap();
    let (mut store, _) = Store::open_for_study(&dir.join("e.sqlite"), &s).unwrap();
    import_candidates(&mut store, &s, "sampled", &repo("studies/example/sampled.jsonl"), false).unwrap();
    import_candidates(&mut store, &s, "greedy", &repo("studies/example/greedy.jsonl"), false).unwrap();
    s.options.min_reading_ms = 0;
    // The ids these tests type, as a researcher's pattern would admit them.
    s.options.participant_id_pattern = Some(study::IdPattern::new("p[0-9]+|snap1").unwrap());
    (s, store)
}

fn key(app: &mut Driver, code: KeyCode) {
    app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
}

fn typed(app: &mut Driver, s: &str) {
    for c in s.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn to_first_trial(app: &mut Driver, id: &str) {
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Consent);
    key(app, KeyCode::Char('y'));
    assert_eq!(app.screen, Screen::EnterId);
    typed(app, id);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Instructions);
    key(app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Trial);
}

fn answers(store: &Store) -> Vec<(i64, Option<i64>, Option<String>, bool)> {
    let c = common::sql(store.path());
    let mut st = c
        .prepare("SELECT t.position, a.choice, a.ordering, a.no_preference FROM answers a JOIN trials t ON t.id = a.trial_id ORDER BY t.position")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
}

fn mode(app: &App) -> RankMode {
    match &app.trial {
        Some(CurrentTrial::Ready(t)) => t.view.mode,
        other => panic!("no trial ready: {other:?}"),
    }
}

#[test]
fn a_participant_goes_from_consent_to_completion() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    // A name is refused as a participant id.
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('y'));
    typed(&mut app, "AliceSmith1990");
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::EnterId);
    assert!(app.id_error.is_some());
    for _ in 0.."AliceSmith1990".len() {
        key(&mut app, KeyCode::Backspace);
    }
    typed(&mut app, "p42");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Trial);
    assert!(app.store().consent_at("p42").unwrap().is_some(), "consent time recorded");
    let mut given = 0;
    while app.screen != Screen::Done {
        match app.screen {
            Screen::Break => key(&mut app, KeyCode::Enter),
            Screen::Trial => {
                // Enter with nothing chosen records nothing.
                key(&mut app, KeyCode::Enter);
                assert_eq!(answers(app.store()).len(), given);
                match mode(&app) {
                    RankMode::Pick => key(&mut app, KeyCode::Char('2')),
                    RankMode::Order => {
                        key(&mut app, KeyCode::Char('3'));
                        key(&mut app, KeyCode::Char('1'));
                        key(&mut app, KeyCode::Backspace); // undo the 1
                        key(&mut app, KeyCode::Char('2')); // 3, 2 and then 1 by itself
                    }
                }
                key(&mut app, KeyCode::Enter);
                given += 1;
                assert_eq!(answers(app.store()).len(), given, "committed before the next screen");
            }
            other => panic!("unexpected screen {other:?}"),
        }
    }
    let a = answers(app.store());
    assert_eq!(a.len(), 11);
    for (pos, choice, ordering, _) in &a {
        match ordering {
            Some(o) => assert_eq!(o, "[2,1,0]", "trial {pos}"),
            None => assert_eq!(*choice, Some(1), "trial {pos}"),
        }
    }
    let done: Option<String> = common::sql(app.store().path())
        .query_row("SELECT completed_at FROM participants WHERE id = 'p42'", [], |r| r.get(0))
        .unwrap();
    assert!(done.is_some());
}

#[test]
fn no_preference_quit_confirmation_and_reading_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, store) = setup(dir.path());
    s.options.min_reading_ms = 60_000;
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p07");
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert!(answers(app.store()).is_empty(), "Enter is held during the reading time");
    assert!(app.status.as_ref().unwrap().0.contains("you can confirm in"));
    key(&mut app, KeyCode::Char('='));
    key(&mut app, KeyCode::Enter);
    assert!(answers(app.store()).is_empty(), "no preference waits for the reading time too");
    // q asks first; n keeps going; y quits and ends the session.
    key(&mut app, KeyCode::Char('q'));
    assert!(app.confirm_quit);
    key(&mut app, KeyCode::Char('n'));
    assert!(!app.confirm_quit && !app.quit);
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.confirm_quit);
    key(&mut app, KeyCode::Char('y'));
    assert!(app.quit);
    let ended: Option<String> =
        common::sql(app.store().path()).query_row("SELECT end_reason FROM sessions", [], |r| r.get(0)).unwrap();
    assert_eq!(ended.as_deref(), Some("quit"));
}

#[test]
fn no_preference_is_recorded_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p08");
    key(&mut app, KeyCode::Char('='));
    assert!(answers(app.store()).is_empty(), "= alone stores nothing: Enter confirms it, as it confirms a pick");
    key(&mut app, KeyCode::Enter);
    assert_eq!(answers(app.store()), vec![(0, None, None, true)]);
    // Skipping is not allowed in the example study: `s` does nothing, Enter included.
    key(&mut app, KeyCode::Char('s'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(answers(app.store()).len(), 1);
}

#[test]
fn no_preference_and_skip_are_held_until_enter_and_can_be_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, store) = setup(dir.path());
    s.options.allow_skip = true;
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p18");
    app.on_resize(110, 34);
    let n = match &app.trial {
        Some(CurrentTrial::Ready(t)) => t.view.texts.len(),
        other => panic!("{other:?}"),
    };
    let shown = snapshot(&app, 110, 34);
    assert!(shown.contains(&format!("1–{n} pick · Enter confirm")) && !shown.contains("1–9"), "{shown}");
    // Enter with nothing chosen says so; the nudge goes once something is chosen.
    key(&mut app, KeyCode::Enter);
    assert!(app.status.as_ref().is_some_and(|(s, _)| s.contains("number of an answer first")));
    key(&mut app, KeyCode::Char('='));
    assert!(app.status.is_none(), "the nudge went with the choice");
    assert!(snapshot(&app, 110, 34).contains("No preference: press Enter to confirm it"));
    // Backspace takes it back; a pick replaces it; `s` replaces the pick.
    key(&mut app, KeyCode::Backspace);
    assert!(!snapshot(&app, 110, 34).contains("No preference:"));
    key(&mut app, KeyCode::Char('='));
    key(&mut app, KeyCode::Char('2'));
    assert!(!snapshot(&app, 110, 34).contains("No preference:"), "the pick took its place");
    key(&mut app, KeyCode::Char('s'));
    assert!(snapshot(&app, 110, 34).contains("Skip this question: press Enter"));
    assert!(answers(app.store()).is_empty(), "nothing is stored before Enter");
    key(&mut app, KeyCode::Enter);
    let skipped: bool =
        common::sql(app.store().path()).query_row("SELECT skipped FROM answers", [], |r| r.get(0)).unwrap();
    assert!(skipped, "Enter stored the skip, not the pick it replaced");
}

#[test]
fn a_returning_participant_resumes_and_a_tiny_window_blocks_input() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s.clone(), store, None, None).unwrap();
    to_first_trial(&mut app, "p09");
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    drop(app);
    let (store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    let mut app = Driver::new(s, store, Some("p09".into()), None).unwrap();
    assert_eq!(app.screen, Screen::Resuming);
    key(&mut app, KeyCode::Enter);
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!() };
    assert_eq!(t.view.position, 1, "continues at the second trial");
    app.on_resize(50, 15);
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(answers(app.store()).len(), 1, "keys do nothing while the window is too small");
}

fn snapshot(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw::draw(f, app, Theme { color: false })).unwrap();
    format!("{}", term.backend())
}

#[test]
fn screens_render() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    for (w, h) in [(80u16, 24u16), (140, 40)] {
        app.on_resize(w, h);
        let tag = format!("{w}x{h}");
        app.screen = Screen::Welcome;
        insta::assert_snapshot!(format!("welcome_{tag}"), snapshot(&app, w, h));
        app.screen = Screen::Consent;
        insta::assert_snapshot!(format!("consent_{tag}"), snapshot(&app, w, h));
        app.screen = Screen::EnterId;
        insta::assert_snapshot!(format!("enter_id_{tag}"), snapshot(&app, w, h));
        app.screen = Screen::Instructions;
        insta::assert_snapshot!(format!("instructions_{tag}"), snapshot(&app, w, h));
        app.screen = Screen::Break;
        insta::assert_snapshot!(format!("break_{tag}"), snapshot(&app, w, h));
        app.screen = Screen::Done;
        insta::assert_snapshot!(format!("done_{tag}"), snapshot(&app, w, h));
    }
    app.on_resize(59, 19);
    insta::assert_snapshot!("too_small", snapshot(&app, 59, 19));
}

#[test]
fn trial_screens_render() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "snap1");
    for (w, h) in [(80u16, 24u16), (140, 40)] {
        app.on_resize(w, h);
        insta::assert_snapshot!(format!("trial_pick_{w}x{h}"), snapshot(&app, w, h));
    }
    key(&mut app, KeyCode::Right);
    key(&mut app, KeyCode::Char(' '));
    app.on_resize(140, 40);
    insta::assert_snapshot!("trial_pick_chosen_140x40", snapshot(&app, 140, 40));
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("help_140x40", snapshot(&app, 140, 40));
    key(&mut app, KeyCode::Char('?'));
    key(&mut app, KeyCode::Char('q'));
    insta::assert_snapshot!("confirm_quit_80x24", snapshot(&app, 80, 24));
    key(&mut app, KeyCode::Char('n'));
    // Answer until the ordering block.
    while mode(&app) != RankMode::Order {
        if app.screen == Screen::Break {
            key(&mut app, KeyCode::Enter);
            continue;
        }
        key(&mut app, KeyCode::Char('1'));
        key(&mut app, KeyCode::Enter);
        if app.screen == Screen::Break {
            key(&mut app, KeyCode::Enter);
        }
    }
    key(&mut app, KeyCode::Char('2'));
    app.status = None; // "Saved." fades after a few seconds; keep the snapshot independent of timing
    for (w, h) in [(80u16, 24u16), (140, 40)] {
        app.on_resize(w, h);
        let shown = snapshot(&app, w, h);
        // The question's number stands whole before the bar, never under it.
        let header = shown.lines().next().unwrap().trim_start_matches('"');
        assert!(header.starts_with("Question 9 of 11 █"), "{header}");
        insta::assert_snapshot!(format!("trial_order_{w}x{h}"), shown);
    }
}

/// The worker's owner gone (the participant quit, the server stopped): the pool under way
/// is dropped unfinished and the drop waits for the engine's thread, so that the process
/// never exits while ONNX Runtime is running (it printed errors under the participant's
/// last screen then).
#[test]
fn dropping_the_worker_stops_the_engine_before_it_returns_and_leaves_only_whole_pools() {
    use std::time::Duration;
    use ualign_core::pools::PoolWorker;
    use ualign_engine::EpChoice;
    let dir = tempfile::tempdir().unwrap();
    // The default model: a pool takes it long enough to be stopped in the middle.
    let (s, _) = study::load(&repo("studies/demo.toml")).unwrap();
    let db = dir.path().join("demo.sqlite");
    let (store, _) = Store::open_for_study(&db, &s).unwrap();
    let jobs = ualign_core::pools::pending_jobs(&s, &store).unwrap();
    let samples: usize = jobs.iter().map(|j| j.missing.len()).sum();
    let mut worker = PoolWorker::spawn(s.clone(), db.clone(), EpChoice::Cpu, Some(1));
    let watcher = worker.handle();
    worker.request_background(jobs);
    let stored = || common::count(&db, "SELECT COUNT(*) FROM candidates");
    common::wait_within("a first pool", Duration::from_secs(300), || stored() > 0);
    drop(worker);
    assert!(watcher.stopped().is_some(), "the engine's thread was still running when the drop returned");
    let at_stop = stored();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stored(), at_stop, "nothing is stored after the stop");
    assert!((at_stop as usize) < samples, "stopped part-way: {at_stop} of {samples}");
    common::assert_pools_whole(&db, &s);
}

#[test]
fn the_engine_worker_reports_how_far_a_request_has_come_after_each_pool() {
    use ualign_core::pools::{PoolWorker, Progress, WorkerEvent, pending_jobs};
    use ualign_engine::EpChoice;
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = study::load(&repo("tests/fixtures/studies/fortune-demo.toml")).unwrap();
    let db = dir.path().join("demo.sqlite");
    let (store, _) = Store::open_for_study(&db, &s).unwrap();
    let jobs: Vec<_> = pending_jobs(&s, &store).unwrap().into_iter().take(2).collect();
    let candidates: u64 = jobs.iter().map(|j| j.missing.len() as u64).sum();
    let mut worker = PoolWorker::spawn(s.clone(), db.clone(), EpChoice::Cpu, Some(1));
    let request = worker.request(jobs);
    let mut seen = Vec::new();
    common::wait("the request to be filled", || {
        seen.extend(worker.poll());
        seen.iter().any(|e| matches!(e, WorkerEvent::Done { .. } | WorkerEvent::Failed { .. }))
    });
    let progress: Vec<&Progress> = seen
        .iter()
        .filter_map(|e| match e {
            WorkerEvent::Progress { request: r, progress } if *r == request => Some(progress),
            _ => None,
        })
        .collect();
    assert_eq!(progress.len(), 1, "one report between the two pools: {seen:?}");
    let p = progress[0];
    assert_eq!((p.pools_done, p.pools, p.candidates), (1, 2, candidates), "{p:?}");
    assert!(p.candidates_done > 0 && p.candidates_done < candidates && p.tokens > 0, "{p:?}");
    assert!(matches!(seen.last(), Some(WorkerEvent::Done { request: r }) if *r == request), "{seen:?}");
}

#[test]
fn missing_pools_are_generated_live_on_the_engine_thread() {
    use std::time::{Duration, Instant};
    use ualign_core::pools::PoolWorker;
    use ualign_engine::EpChoice;
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = study::load(&repo("tests/fixtures/studies/fortune-demo.toml")).unwrap();
    s.options.min_reading_ms = 0;
    s.options.participant_id_pattern = Some(study::IdPattern::new("live1").unwrap());
    let db = dir.path().join("demo.sqlite");
    let (store, _) = Store::open_for_study(&db, &s).unwrap();
    let worker = PoolWorker::spawn(s.clone(), db.clone(), EpChoice::Cpu, Some(1));
    let mut app = Driver::new(s, store, None, Some(worker)).unwrap();
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('y'));
    typed(&mut app, "live1");
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert!(app.is_preparing(), "nothing is generated yet: the first trial waits for the engine");
    let start = Instant::now();
    while app.is_preparing() {
        assert!(start.elapsed() < Duration::from_secs(120), "the engine thread never answered");
        std::thread::sleep(Duration::from_millis(20));
        app.on_worker_events();
    }
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!("{:?}", app.trial) };
    assert!(t.view.texts.iter().all(|x| !x.is_empty()));
    let first = t.view.position;
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(answers(app.store()).len(), 1);
    // The next trial was prefetched while the first was read (or is being prepared now).
    let start = Instant::now();
    while app.is_preparing() {
        assert!(start.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(20));
        app.on_worker_events();
    }
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!("{:?}", app.trial) };
    assert_eq!(t.view.position, first + 1);
    let stored: i64 = common::sql(app.store().path())
        .query_row("SELECT COUNT(*) FROM candidates WHERE provider = 'cpu:cpu'", [], |r| r.get(0))
        .unwrap();
    assert!(stored > 0, "the engine thread stored its pools with their provider");
}

#[test]
fn an_answer_given_in_another_window_stands_and_this_one_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s.clone(), store, None, None).unwrap();
    to_first_trial(&mut app, "p12");
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!() };
    let trial = t.view.trial_id;
    // The same participant answers the same question in a second window first.
    let (mut other, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    other.record_answer(trial, &ualign_core::store::Answer::Pick(0), 1000, None, None).unwrap();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.screen, Screen::Trial, "{:?}", app.failure);
    assert!(app.status.as_ref().unwrap().0.contains("already answered in another window"));
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!() };
    assert_eq!(t.view.position, 1);
    assert_eq!(answers(app.store()), vec![(0, Some(0), None, false)], "the first answer stands");
}

#[test]
fn ids_that_are_not_the_studys_are_refused_on_the_command_line_too() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let err = Driver::new(s.clone(), store, Some("AliceSmith1990".into()), None).err().unwrap().to_string();
    assert!(err.contains("not one this study accepts") && err.contains("participant_id_pattern"), "{err}");
    let (store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    assert!(Driver::new(s.clone(), store, Some(study::new_pseudonym()), None).is_ok());
    // Without a pattern only pseudonyms pass, and an id already stored may resume.
    let mut strict = s.clone();
    strict.options.participant_id_pattern = None;
    let (mut store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    store.ensure_participant("e2e77").unwrap();
    assert!(Driver::new(strict.clone(), store, Some("e2e77".into()), None).is_ok());
    let (store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    assert!(Driver::new(strict.clone(), store, Some("p42".into()), None).is_err());
    // A pseudonym-like id with letters the alphabet leaves out is told which.
    let (store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    let err = Driver::new(strict, store, Some("p-bars000001".into()), None).err().unwrap().to_string();
    assert!(err.contains("never 0, 1, i, l or o"), "{err}");
}

/// Puts `texts` in the trial on screen, as if the pools held them (and as if nothing of
/// the trial had been seen yet).
fn with_texts(app: &mut Driver, texts: &[String]) {
    let Some(CurrentTrial::Ready(t)) = &mut app.trial else { panic!("{:?}", app.trial) };
    for (slot, text) in t.view.texts.iter_mut().zip(texts) {
        *slot = text.clone();
    }
    t.seen_end.fill(false);
}

fn numbered(lines: usize, word: &str) -> String {
    (1..=lines).map(|i| format!("{word} {i}")).collect::<Vec<_>>().join("\n")
}

#[test]
fn answers_are_shown_whole_when_they_fit_and_share_the_room_when_they_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p15");
    // Answers of one and two lines, stacked: all whole, none cut (at 110×34, the screen
    // that cut a two-line answer while ten rows stood empty).
    let n = app.panels().len();
    let mixed: Vec<String> = (0..n).map(|i| numbered(1 + i % 2, &format!("answer{}", i + 1))).collect();
    with_texts(&mut app, &mixed);
    for (w, h) in [(110u16, 34u16), (80, 24)] {
        app.on_resize(w, h);
        let shown = snapshot(&app, w, h);
        for p in app.panels() {
            assert_eq!(p.max_scroll, 0, "{w}x{h}: an answer was cut while they all fit:\n{shown}");
        }
        insta::assert_snapshot!(format!("trial_whole_{w}x{h}"), shown);
    }
    // One answer far too long for the window: the others stay whole, it takes the rest.
    let mut long = mixed.clone();
    long[0] = numbered(60, "long");
    with_texts(&mut app, &long);
    for (w, h) in [(110u16, 34u16), (80, 24)] {
        app.on_resize(w, h);
        let panels = app.panels();
        assert!(panels[0].max_scroll > 0);
        assert!(panels[1..].iter().all(|p| p.max_scroll == 0 && p.visible == p.lines), "{w}x{h}: {panels:?}");
        insta::assert_snapshot!(format!("trial_one_long_{w}x{h}"), snapshot(&app, w, h));
    }
    // Too short for five answers to show a line each: "please enlarge", and keys wait.
    app.on_resize(60, 20);
    let shown = snapshot(&app, 60, 20);
    assert!(shown.contains("more answers than the window has rows for"), "{shown}");
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    assert!(answers(app.store()).is_empty(), "nothing is answered unseen");
}

#[test]
fn an_answer_confirmed_before_every_answer_was_read_to_its_end_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p16");
    app.on_resize(80, 24);
    let long = numbered(60, "line");
    // Confirmed with the long answer unread to its end.
    with_texts(&mut app, std::slice::from_ref(&long));
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    // Every answer fits: seen.
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    // The long one scrolled to its end first (focus is on it): seen.
    if app.screen == Screen::Break {
        key(&mut app, KeyCode::Enter);
    }
    with_texts(&mut app, std::slice::from_ref(&long));
    key(&mut app, KeyCode::End);
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    let seen: Vec<Option<bool>> = {
        let c = common::sql(app.store().path());
        let mut st = c
            .prepare("SELECT a.seen_in_full FROM answers a JOIN trials t ON t.id = a.trial_id ORDER BY t.position")
            .unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    assert_eq!(seen, vec![Some(false), Some(true), Some(true)]);
    let q = ualign_core::analysis::quality::compute(&app.store().quality_counts(300).unwrap(), 300);
    assert_eq!(q.confirmed_unseen, Some((1, 3)), "stats' data quality counts it");
}

#[test]
fn long_answers_scroll_by_page_and_jump_to_their_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = setup(dir.path());
    let mut app = Driver::new(s, store, None, None).unwrap();
    to_first_trial(&mut app, "p13");
    let long = (1..=60).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
    if let Some(CurrentTrial::Ready(t)) = &mut app.trial {
        t.view.texts[0] = long;
    }
    app.on_resize(80, 24);
    snapshot(&app, 80, 24); // lays the panels out
    let panel = app.panels()[0];
    assert!(panel.max_scroll > 2 * panel.visible, "{panel:?}");
    let scroll = |app: &App| match &app.trial {
        Some(CurrentTrial::Ready(t)) => t.scroll[0],
        _ => panic!(),
    };
    key(&mut app, KeyCode::PageDown);
    assert_eq!(scroll(&app), panel.visible - 1, "a page, keeping one line of context");
    key(&mut app, KeyCode::Char('j'));
    assert_eq!(scroll(&app), panel.visible);
    key(&mut app, KeyCode::End);
    assert_eq!(scroll(&app), panel.max_scroll);
    key(&mut app, KeyCode::PageDown);
    assert_eq!(scroll(&app), panel.max_scroll, "never past the end");
    key(&mut app, KeyCode::PageUp);
    assert_eq!(scroll(&app), panel.max_scroll - (panel.visible - 1));
    key(&mut app, KeyCode::Home);
    assert_eq!(scroll(&app), 0);
    key(&mut app, KeyCode::Char('k'));
    assert_eq!(scroll(&app), 0);
    let shown = snapshot(&app, 80, 24);
    assert!(shown.contains("of 60 lines"), "{shown}");
}

/// The demo study (model policies, nothing generated) at its first trial, whose pools an
/// engine worker running `body` must fill; with `dead_first`, the worker is gone before
/// the participant gets there.
fn preparing_with(body: impl FnOnce() + Send + 'static, dead_first: bool) -> Driver {
    use ualign_core::pools::PoolWorker;
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = study::load(&repo("tests/fixtures/studies/fortune-demo.toml")).unwrap();
    s.options.min_reading_ms = 0;
    let (store, _) = Store::open_for_study(&dir.keep().join("demo.sqlite"), &s).unwrap();
    let worker = PoolWorker::spawn_with(move |_requests, _events, _stop| body());
    if dead_first {
        common::wait("the worker to end", || !worker.is_alive());
    }
    let mut app = Driver::new(s, store, None, Some(worker)).unwrap();
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('y'));
    key(&mut app, KeyCode::Enter); // a new pseudonym
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    app
}

fn wait_until_not_preparing(app: &mut Driver) {
    let start = std::time::Instant::now();
    while app.is_preparing() {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "still preparing");
        std::thread::sleep(std::time::Duration::from_millis(10));
        app.on_worker_events();
    }
}

#[test]
fn a_dead_engine_worker_is_a_failure_not_preparing_for_ever() {
    // Whether the worker dies while the participant waits or before they get there, the
    // screen says so, with the reason.
    for dead_first in [false, true] {
        let mut app = preparing_with(|| panic!("the engine crashed"), dead_first);
        wait_until_not_preparing(&mut app);
        let Some(CurrentTrial::Unavailable(why)) = &app.trial else { panic!("{:?}", app.trial) };
        assert!(why.contains("stopped unexpectedly") && why.contains("the engine crashed"), "{why}");
        // A worker whose thread just ends is noticed too.
        let mut app = preparing_with(|| {}, dead_first);
        wait_until_not_preparing(&mut app);
        let Some(CurrentTrial::Unavailable(why)) = &app.trial else { panic!("{:?}", app.trial) };
        assert!(why.contains("stopped unexpectedly") && why.contains("its thread ended"), "{why}");
    }
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, start to end
fn a_study_mixing_model_and_imported_policies_prefetches_without_killing_the_engine() {
    use ualign_core::pools::{Models, PoolJob, PoolWorker, missing_for_trial};
    use ualign_engine::EpChoice;
    let dir = tempfile::tempdir().unwrap();
    let model = repo("assets/models/fortune-llama");
    let toml = format!(
        r#"name = "mixed"
seed = 3
[options]
participant_id_pattern = "m[0-9]+"
[[prompts]]
id = "a"
text = "love"
[[prompts]]
id = "b"
text = "food"
[[policies]]
name = "model"
source = "model"
model = "{}"
pool_size = 2
[policies.decoding]
max_new_tokens = 4
[[policies]]
name = "imp"
source = "imported"
pool_size = 1
[[blocks]]
name = "s"
design = "best_of_k"
policy_a = "model"
policy_b = "imp"
k = [1]
trials = 2
"#,
        model.display()
    );
    std::fs::write(dir.path().join("mixed.toml"), toml).unwrap();
    std::fs::write(dir.path().join("imp.jsonl"), "{\"prompt_id\": \"a\", \"text\": \"Imported answer.\"}\n").unwrap();
    let (s, _) = study::load(&dir.path().join("mixed.toml")).unwrap();
    let db = dir.path().join("mixed.sqlite");
    let (mut store, _) = Store::open_for_study(&db, &s).unwrap();
    import_candidates(&mut store, &s, "imp", &dir.path().join("imp.jsonl"), false).unwrap();
    // A participant whose first trial is on prompt a (imported candidate present) and whose
    // second, prefetched while the first is read, is on b (imported candidate missing).
    let id = (0..200)
        .map(|i| format!("m{i}"))
        .find(|id| {
            let plan = ualign_core::schedule::plan(&s, id);
            plan[0].prompt_id == "a" && plan[1].prompt_id == "b"
        })
        .unwrap();
    // What the second trial misses: the model's pool for b (a job) and imp's candidate (not one).
    store.enrol(&id, &ualign_core::schedule::plan(&s, &id)).unwrap();
    let second = &store.trials(&id).unwrap()[1];
    let (jobs, imported) = missing_for_trial(&s, &store, second).unwrap();
    assert_eq!(jobs.iter().map(|j| j.policy.as_str()).collect::<Vec<_>>(), ["model"]);
    assert_eq!(imported, ["imp"]);
    // The engine refuses an imported policy's job with an error, not a panic.
    let job = PoolJob { policy: "imp".into(), prompt_id: "b".into(), missing: vec![0] };
    let err = Models::new(EpChoice::Cpu, Some(1)).run_job(&s, &mut store, &job, None).unwrap_err();
    assert!(err.to_string().contains("only `ualign import` fills"), "{err}");

    let worker = PoolWorker::spawn(s.clone(), db.clone(), EpChoice::Cpu, Some(1));
    let mut app = Driver::new(s, store, None, Some(worker)).unwrap();
    key(&mut app, KeyCode::Enter); // welcome (no consent text)
    typed(&mut app, &id);
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter); // instructions
    wait_until_not_preparing(&mut app);
    let Some(CurrentTrial::Ready(t)) = &app.trial else { panic!("{:?}", app.trial) };
    assert!(t.view.texts.contains(&"Imported answer.".to_string()));
    // Let the prefetch of the second trial's model pool finish.
    let count = |app: &Driver| -> i64 {
        common::sql(app.store().path())
            .query_row("SELECT COUNT(*) FROM candidates WHERE policy = 'model' AND prompt_id = 'b'", [], |r| r.get(0))
            .unwrap()
    };
    let start = std::time::Instant::now();
    while count(&app) < 2 {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the prefetch never finished");
        std::thread::sleep(std::time::Duration::from_millis(20));
        app.on_worker_events();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    app.on_worker_events();
    assert_eq!(app.worker_alive(), Some(true), "the engine worker survived the prefetch");
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    let Some(CurrentTrial::Unavailable(why)) = &app.trial else { panic!("{:?}", app.trial) };
    assert!(why.contains("imported policy `imp`") && why.contains("ualign import"), "{why}");
}

#[test]
fn an_invitation_code_admits_its_pseudonym_typed_or_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = setup(dir.path());
    let (code, pseudonym) = (study::new_invitation_code(), study::new_pseudonym());
    store.add_invitations(&[(study::invitation_hash(&code), pseudonym.clone())]).unwrap();
    // Typed on the ID screen, in capitals and without its dashes: the same code.
    let mut app = Driver::new(s.clone(), store, None, None).unwrap();
    to_first_trial(&mut app, &code.replace('-', "").to_uppercase());
    assert_eq!(app.participant.as_deref(), Some(pseudonym.as_str()), "the code's pseudonym, never the code");
    key(&mut app, KeyCode::Char('1'));
    key(&mut app, KeyCode::Enter);
    let db = app.store().path().to_path_buf();
    assert_eq!(app.store().invitation_counts().unwrap(), (1, 1));
    drop(app);
    let ids: Vec<String> = common::sql(&db)
        .prepare("SELECT DISTINCT participant_id FROM trials")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, vec![pseudonym.clone()]);
    // On the command line the code resumes the same participant.
    let (store, _) = Store::open_for_study(&db, &s).unwrap();
    let app = Driver::new(s.clone(), store, Some(code.clone()), None).unwrap();
    assert_eq!(app.participant.as_deref(), Some(pseudonym.as_str()));
    assert_eq!(app.screen, Screen::Resuming);
    // A code of the right shape that was never made is refused like any other id.
    let (store, _) = Store::open_for_study(&db, &s).unwrap();
    let err = Driver::new(s, store, Some(study::new_invitation_code()), None).err().unwrap().to_string();
    assert!(err.contains("not one this study accepts") && err.contains("ualign invite"), "{err}");
}

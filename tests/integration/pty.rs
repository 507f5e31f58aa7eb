//! End to end in a pseudo-terminal: the real binary, real keys. Accept consent, answer
//! three trials, kill the process, start it again, finish; then the database must hold
//! exactly the answers given, in order, with their displayed orders, none shown twice.

use crate::common;

use common::{Tui, count, example_for_participants, wait};
use rusqlite::Connection;

#[test]
fn answer_three_kill_resume_and_finish() {
    let (dir, db) = example_for_participants();

    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml"]);
    tui.begin("e2e01");
    wait("the participant", || count(&db, "SELECT COUNT(*) FROM participants WHERE consent_at IS NOT NULL") == 1);
    for i in 0..3 {
        tui.answer(&db, "e2e01", i, 11);
    }
    // The fourth trial is on screen when the process dies.
    wait("trial 4 on screen", || {
        count(&db, "SELECT COUNT(*) FROM trials WHERE position = 3 AND shown_at IS NOT NULL") == 1
    });
    tui.child.kill().unwrap();
    tui.child.wait().unwrap();
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), 3);
    // Time away before resuming: in answered_at − shown_at, not in response_ms (README).
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml", "--participant", "e2e01"]);
    tui.wait_for_text("Welcome back");
    tui.keys("\r");
    let total = count(&db, "SELECT COUNT(*) FROM trials");
    assert_eq!(total, 11);
    for i in 3..total {
        tui.answer(&db, "e2e01", i, total);
    }
    tui.wait_for_text("EXAMPLE-7Q2K");
    tui.keys("q");
    let status = tui.child.wait().unwrap();
    assert!(status.success());
    tui.wait_for_text("participant e2e01 has completed the study");
    assert!(!tui.shown().contains("to resume"), "nothing to resume:\n{}", tui.shown());

    // Coming back after the end: the completion screen again, not a welcome back to
    // trials that are not there, and no new session.
    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml", "--participant", "e2e01"]);
    tui.wait_for_text("already finished this study");
    tui.wait_for_text("EXAMPLE-7Q2K");
    assert!(!tui.shown().contains("Welcome back"), "{}", tui.shown());
    tui.keys("q");
    assert!(tui.child.wait().unwrap().success());
    tui.wait_for_text("has completed the study");

    let c = Connection::open(&db).unwrap();
    let mut st = c
        .prepare(
            "SELECT t.position, t.mode, t.slots, t.candidate_ids, a.choice, a.ordering
             FROM trials t JOIN answers a ON a.trial_id = t.id ORDER BY a.answered_at, t.position",
        )
        .unwrap();
    type Row = (i64, String, String, Option<String>, Option<i64>, Option<String>);
    let rows: Vec<Row> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 11, "exactly the answers given");
    for (i, (pos, mode, slots, cids, choice, ordering)) in rows.iter().enumerate() {
        assert_eq!(*pos, i as i64, "answered in order, none twice, none skipped");
        let n_slots = serde_json::from_str::<Vec<serde_json::Value>>(slots).unwrap().len();
        let ids: Vec<i64> = serde_json::from_str(cids.as_ref().unwrap()).unwrap();
        assert_eq!(ids.len(), n_slots, "displayed order stored");
        if mode == "order" {
            let o: Vec<usize> = serde_json::from_str(ordering.as_ref().unwrap()).unwrap();
            assert_eq!(o[..2], [0, 1]);
        } else {
            assert_eq!(*choice, Some(1));
        }
    }
    let (response, elapsed): (i64, f64) = c
        .query_row(
            "SELECT a.response_ms, (julianday(a.answered_at) - julianday(t.shown_at)) * 86400000.0
             FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.position = 3",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(elapsed >= 1500.0 && (response as f64) < elapsed - 1000.0, "response {response} ms, elapsed {elapsed} ms");
    let sessions = count(&db, "SELECT COUNT(*) FROM sessions WHERE participant_id = 'e2e01'");
    assert_eq!(sessions, 2);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sessions WHERE end_reason = 'completed'"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"), 1);
}

#[test]
fn the_session_records_the_real_window_size() {
    let (dir, db) = example_for_participants();
    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml"]);
    tui.begin("e2e03");
    tui.answer(&db, "e2e03", 0, 11);
    let c = Connection::open(&db).unwrap();
    let client: String = c.query_row("SELECT client FROM sessions", [], |r| r.get(0)).unwrap();
    assert!(client.ends_with(" 100x30"), "{client}");
    // A returning participant named on the command line: the same.
    tui.child.kill().unwrap();
    tui.child.wait().unwrap();
    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml", "--participant", "e2e03"]);
    tui.wait_for_text("Welcome back");
    tui.keys("\r");
    tui.answer(&db, "e2e03", 1, 11);
    let sizes: Vec<String> = c
        .prepare("SELECT client FROM sessions ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(sizes.len() == 2 && sizes.iter().all(|s| s.ends_with(" 100x30")), "{sizes:?}");
}

#[test]
fn a_disk_that_fills_up_mid_study_is_told_in_plain_words_and_nothing_is_lost() {
    let (dir, db) = example_for_participants();
    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml"]);
    tui.begin("e2e02");
    for i in 0..2 {
        tui.answer(&db, "e2e02", i, 11);
    }
    wait("trial 3 on screen", || {
        count(&db, "SELECT COUNT(*) FROM trials WHERE position = 2 AND shown_at IS NOT NULL") == 1
    });
    common::limit_file_size(tui.child.process_id().unwrap(), 1);
    tui.keys("1");
    tui.keys("\r");
    tui.wait_for_text("the study cannot go on");
    let shown = tui.shown();
    for want in ["could not write to its disk", "before this one is saved", "NOT saved", "--participant e2e02"] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    assert!(!shown.contains("SQLite") && !shown.contains("Error code"), "nothing raw on screen:\n{shown}");
    tui.keys("q");
    let status = tui.child.wait().unwrap();
    assert!(!status.success(), "the process exits non-zero");
    // The terminal was restored: the researcher's message is on the normal screen.
    tui.wait_for_text("2 answer(s) saved for participant e2e02");
    tui.wait_for_text("the last answer was not saved");
    tui.wait_for_text("could not save the answer");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), 2);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM answers WHERE trial_id IN (SELECT id FROM trials WHERE position = 2)"),
        0
    );
    let c = Connection::open(&db).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    // Once there is room again the participant resumes at the question whose answer was lost.
    let mut tui = Tui::start(dir.path(), &["run", "studies/example.toml", "--participant", "e2e02"]);
    tui.wait_for_text("Welcome back");
    tui.keys("\r");
    tui.answer(&db, "e2e02", 2, 11);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), 3);
}

/// `ualign demo` in a real terminal on the default model: the pools are being filled in
/// the background while the participant is still reading the instructions, and the first
/// question shows SmolLM2's answers.
/// `ualign demo` in `dir` (its study pointing at the shipped model), taken by a new
/// participant to the instructions, with the first candidates stored in the background:
/// the terminal and the database.
fn demo_at_the_instructions(dir: &std::path::Path) -> (Tui, std::path::PathBuf) {
    std::fs::create_dir_all(dir.join("studies")).unwrap();
    let model = common::repo("assets/models/smollm2-135m-instruct");
    let study = std::fs::read_to_string(common::repo("studies/demo.toml"))
        .unwrap()
        .replace("../assets/models/smollm2-135m-instruct", model.to_str().unwrap());
    std::fs::write(dir.join("studies/demo.toml"), study).unwrap();
    let db = dir.join("db/demo-smollm2.sqlite");
    let mut tui = Tui::start(dir, &["demo", "--study", "studies/demo.toml", "--threads", "2"]);
    tui.wait_for_text("Press Enter to begin");
    tui.keys("\r");
    tui.wait_for_text("SmolLM2-135M-Instruct, a small");
    tui.keys("y");
    tui.wait_for_text("Participant ID");
    tui.keys("\r"); // a new pseudonym
    tui.wait_for_text("Write it down");
    tui.keys("\r");
    tui.wait_for_text("Instructions");
    // Nobody has asked for a trial yet, and candidates are being stored.
    // The real model on a machine the other tests load too: generation gets minutes.
    common::wait_within("candidates generated in the background", SLOW, || {
        count(&db, "SELECT COUNT(*) FROM candidates") >= 1
    });
    (tui, db)
}

/// How long the real model may take on a machine the other tests load too.
const SLOW: std::time::Duration = std::time::Duration::from_secs(300);

#[test]
fn the_demo_fills_pools_while_the_instructions_are_read_and_shows_the_default_models_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tui, db) = demo_at_the_instructions(dir.path());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM trials WHERE shown_at IS NOT NULL"), 0);
    assert!(tui.shown().contains("Instructions"));
    tui.keys("\r");
    tui.wait_for_text_within("Question 1 of 10", SLOW);
    tui.wait_for_text_within("Answer 2", SLOW);
    let shown: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT c.text FROM trials t JOIN candidates c ON c.id = json_extract(t.candidate_ids, '$[0]')
             WHERE t.position = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // The answer's own line breaks are the screen's too, so the words are looked for within
    // its first line, and only as far as its first 24 characters: they fit on the box's first
    // row, so wrapping cannot split them (a sampled answer may open with one word longer than
    // the box, which the screen breaks mid-word).
    let first_line = shown.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut words = String::new();
    for word in first_line.split_whitespace() {
        let joined = if words.is_empty() { word.to_string() } else { format!("{words} {word}") };
        if joined.chars().count() > 24 {
            if words.is_empty() {
                words = word.chars().take(24).collect();
            }
            break;
        }
        words = joined;
    }
    assert!(shown.chars().any(char::is_alphabetic), "an answer in words: {shown:?}");
    let screen = tui.shown().split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(screen.contains(&words), "the first answer is on screen: {words:?}\n{}", tui.shown());
}

/// Quitting while the engine generates in the background: the engine is stopped before
/// the process ends (ONNX Runtime running on its thread while the process exited printed
/// its errors under the participant's last screen), and no pool is left half-stored.
#[test]
fn quitting_the_demo_while_pools_are_generated_stops_the_engine_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tui, db) = demo_at_the_instructions(dir.path());
    tui.keys("q");
    tui.wait_for_text("Quit now?");
    tui.keys("y");
    tui.wait_for_text("answer(s) saved for participant");
    common::wait("the demo to end", || tui.exited());
    // What it wrote on its way out, read from the terminal too.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let shown = tui.shown();
    assert!(!shown.contains("onnxruntime") && !shown.contains("[E:"), "{shown}");
    let (study, _) = ualign_core::study::load(&dir.path().join("studies/demo.toml")).unwrap();
    common::assert_pools_whole(&db, &study);
}

//! The SQLite store, import and export, and resuming a participant's trial list.

use crate::common;

use std::path::{Path, PathBuf};

use ualign_core::export::{self, Format};
use ualign_core::pools::import::{ImportError, import_candidates};
use ualign_core::schedule::{self, SlotRole, TrialKind};
use ualign_core::store::{Answer, Opened, Store, StoreError};
use ualign_core::study::{self, Study};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn example() -> Study {
    study::load(&repo("studies/example.toml")).unwrap().0
}

/// The example study with its candidates imported, in a fresh database.
fn example_store(dir: &Path) -> (Study, Store) {
    let s = example();
    std::fs::create_dir_all(dir.join("db")).unwrap();
    let (mut store, opened) = Store::open_for_study(&dir.join("db/example.sqlite"), &s).unwrap();
    assert_eq!(opened, Opened::Created);
    import_candidates(&mut store, &s, "sampled", &repo("studies/example/sampled.jsonl"), false).unwrap();
    import_candidates(&mut store, &s, "greedy", &repo("studies/example/greedy.jsonl"), false).unwrap();
    (s, store)
}

#[test]
fn migrations_from_an_empty_file_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sqlite");
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        5,
        "0001_init, 0002_invitations, 0003_seen_in_full, 0004_server_policies and 0005_answer_order"
    );
    let mode: String = common::sql(store.path()).pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = common::sql(store.path()).pragma_query_value(None, "foreign_keys", |r| r.get(0)).unwrap();
    assert_eq!(fk, 1);
    drop(store);
    // An empty (zero-byte) file is a valid empty database too.
    let empty = dir.path().join("empty.sqlite");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(Store::open(&empty).unwrap().schema_version().unwrap(), 5);
    // Reopening applies nothing twice.
    let s = example();
    let (_, first) = Store::open_for_study(&path, &s).unwrap();
    assert_eq!(first, Opened::Created);
    let (store, second) = Store::open_for_study(&path, &s).unwrap();
    assert_eq!(second, Opened::Existing);
    assert_eq!(store.schema_version().unwrap(), 5);
    let prompts: i64 = common::sql(store.path()).query_row("SELECT COUNT(*) FROM prompts", [], |r| r.get(0)).unwrap();
    assert_eq!(prompts, 6);
}

#[test]
fn answers_are_numbered_in_the_order_they_were_committed_and_older_files_by_when() {
    use ualign_core::simulate::{Population, simulate};
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    simulate(&s, &mut store, 3, &Population::Cyclic, 1).unwrap();
    let db = store.path().to_path_buf();
    let c = common::sql(&db);
    let count = |c: &rusqlite::Connection, sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    let answers = count(&c, "SELECT COUNT(*) FROM answers");
    assert!(answers > 20);
    // Numbers 1..n, each once, rising with the commits (simulated participants answer one
    // after another, so the trial ids of their answers rise with them).
    assert_eq!(
        count(&c, "SELECT COUNT(DISTINCT seq) FROM answers WHERE seq BETWEEN 1 AND (SELECT COUNT(*) FROM answers)"),
        answers
    );
    assert_eq!(store.last_answer_seq().unwrap(), Some(answers));
    let by_trial: Vec<i64> = c
        .prepare("SELECT seq FROM answers ORDER BY answered_at, trial_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(by_trial.windows(2).all(|w| w[0] < w[1]), "{by_trial:?}");
    // Only what came after a number is read after it.
    let all = store.best_of_k_answers().unwrap();
    let upto = store.last_answer_seq().unwrap().unwrap();
    let half = c
        .query_row("SELECT seq FROM answers ORDER BY seq LIMIT 1 OFFSET ?1", [answers / 2], |r| r.get::<_, i64>(0))
        .unwrap();
    let (first, second) =
        (store.best_of_k_answers_after(0, half).unwrap(), store.best_of_k_answers_after(half, upto).unwrap());
    assert!(!first.is_empty() && !second.is_empty());
    assert_eq!([first, second].concat(), all);
    drop(store);
    // A file of schema 4 (no numbers), some answers given out of trial order: the migration
    // numbers them by when they were answered.
    c.execute_batch(
        "DROP INDEX answers_seq; ALTER TABLE answers DROP COLUMN seq; PRAGMA user_version = 4;
         UPDATE answers SET answered_at = '2000-01-01T00:00:00.000Z' WHERE trial_id = (SELECT MAX(trial_id) FROM answers);",
    )
    .unwrap();
    let store = Store::open(&db).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    assert_eq!(count(&c, "SELECT seq FROM answers WHERE trial_id = (SELECT MAX(trial_id) FROM answers)"), 1);
    assert_eq!(
        count(&c, "SELECT COUNT(DISTINCT seq) FROM answers WHERE seq BETWEEN 1 AND (SELECT COUNT(*) FROM answers)"),
        answers
    );
    // The next answer's number follows the last.
    let mut store = store;
    simulate(&s, &mut store, 1, &Population::Cyclic, 2).unwrap();
    assert_eq!(
        count(
            &c,
            "SELECT MIN(seq) FROM answers a JOIN trials t ON t.id = a.trial_id WHERE t.participant_id = (SELECT id FROM participants ORDER BY created_at DESC, rowid DESC LIMIT 1)"
        ),
        answers + 1
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sqlite");
    let store = Store::open(&path).unwrap();
    common::sql(store.path()).pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.sqlite");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("is damaged or is not a database"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192], "the file is left as it was");
}

#[test]
fn a_changed_study_file_is_refused_with_an_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let s = example();
    let db = dir.path().join("e.sqlite");
    Store::open_for_study(&db, &s).unwrap();
    // A comment is not a change of study: it opens, and the stored text stays as it was.
    let mut commented = s.clone();
    commented.source.push_str("\n# edited\n");
    commented.hash = "f".repeat(64);
    let (store, opened) = Store::open_for_study(&db, &commented).unwrap();
    assert_eq!(opened, Opened::Existing);
    assert!(store.study_text_differs(&commented).unwrap() && !store.study_text_differs(&s).unwrap());
    drop(store);
    let mut changed = commented.clone();
    changed.source = changed.source.replacen("seed = ", "seed = 1", 1);
    assert_ne!(changed.source, commented.source, "the example sets a seed");
    let err = Store::open_for_study(&db, &changed).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::StudyChanged { .. }));
    assert!(msg.contains("has changed in meaning since database"), "{msg}");
    assert!(msg.contains("\n  seed: "), "the change is named: {msg}");
    assert!(msg.contains("never be mixed") && msg.contains("ualign restore"), "{msg}");
    // A prompt changed under an unchanged text (a prompts file) is a change too.
    let mut reprompted = s.clone();
    reprompted.prompts[0].text.push('!');
    reprompted.hash = "e".repeat(64);
    let err = Store::open_for_study(&db, &reprompted).err().unwrap();
    assert!(err.to_string().contains("text changed"), "{err}");
    let mut other = s.clone();
    other.name = "another".into();
    let err = Store::open_for_study(&db, &other).err().unwrap();
    assert!(matches!(err, StoreError::OtherStudy { .. }), "{err}");
    // The stored study is untouched.
    let stored = Store::open_existing(&db).unwrap().stored_study().unwrap().unwrap();
    assert_eq!(stored.hash, s.hash);
}

#[test]
fn import_is_atomic_and_reports_every_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = example();
    let (mut store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    let file = dir.path().join("c.jsonl");
    std::fs::write(
        &file,
        [
            r#"{"prompt_id": "goldfish", "text": "Bubbles"}"#,
            r#"{"prompt_id": "goldfish", "text": "Finn", "model": "x"}"#,
            r#"{"prompt_id": "nope", "text": "?"}"#,
            r#"{"prompt_id": "cafe", "text": ""}"#,
            r#"{"prompt_id": "cafe" "text": "missing comma"}"#,
            r#"{"prompt_id": "cafe", "text": "Bay Brew", "sample_index": 0}"#,
            r#"{"prompt_id": "cafe", "text": "Again", "sample_index": 0}"#,
            r#"["not", "an", "object"]"#,
            r#"{"prompt_id": "cafe", "text": "Too far", "sample_index": 4}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let err = import_candidates(&mut store, &s, "sampled", &file, false).unwrap_err();
    let ImportError::BadLines { problems, .. } = &err else { panic!("{err}") };
    let lines: Vec<&str> = problems.iter().map(|p| p.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["3", "4", "5", "7", "8", "9"], "{problems:#?}");
    assert!(problems[0].contains("`nope` is not a prompt"));
    assert!(problems[3].contains("sample_index 0 of prompt `cafe` is already taken (by line 6)"), "{}", problems[3]);
    assert!(
        problems[5].contains("sample_index 4 is outside the pool of policy `sampled` (pool_size 4"),
        "{}",
        problems[5]
    );
    assert!(err.to_string().contains("nothing was imported"));
    let n: i64 = common::sql(store.path()).query_row("SELECT COUNT(*) FROM candidates", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0, "nothing half-imported");

    // A good file lands whole, behind a byte-order mark; extra fields become metadata.
    std::fs::write(
        &file,
        "\u{feff}{\"prompt_id\": \"goldfish\", \"text\": \"Bubbles\", \"model\": \"x\"}\n{\"prompt_id\": \"goldfish\", \"text\": \"Finn\"}\n",
    )
    .unwrap();
    let r = import_candidates(&mut store, &s, "sampled", &file, false).unwrap();
    assert_eq!((r.imported, r.replaced), (2, 0));
    assert_eq!(store.stored_samples("sampled", "goldfish").unwrap(), [0, 1]);
    assert!(r.short_pools.iter().any(|(p, have, want)| p == "goldfish" && *have == 2 && *want == 4));
    let meta: String =
        common::sql(store.path()).query_row("SELECT meta FROM candidates LIMIT 1", [], |r| r.get(0)).unwrap();
    assert_eq!(meta, r#"{"model":"x"}"#);

    // A second import into the same policy is refused unless it replaces the first.
    let err = import_candidates(&mut store, &s, "sampled", &file, false).unwrap_err();
    assert!(matches!(err, ImportError::HasCandidates { count: 2, .. }), "{err}");
    assert!(err.to_string().contains("--replace"), "{err}");
    let full = repo("studies/example/sampled.jsonl");
    let r = import_candidates(&mut store, &s, "sampled", &full, true).unwrap();
    assert_eq!((r.imported, r.replaced), (24, 2));
    assert_eq!(store.pool_count("sampled", "goldfish").unwrap(), 4);

    // Once a trial has shown the policy's candidates they can no longer be replaced.
    import_candidates(&mut store, &s, "greedy", &repo("studies/example/greedy.jsonl"), false).unwrap();
    store.enrol("p", &schedule::plan(&s, "p")).unwrap();
    answer(&mut store, "p", 1);
    let err = import_candidates(&mut store, &s, "sampled", &full, true).unwrap_err();
    assert!(matches!(err, ImportError::Shown { trials: 1, participants: 1, .. }), "{err}");
    assert_eq!(store.pool_count("sampled", "goldfish").unwrap(), 4, "nothing replaced");

    // An empty file is an error, and so is one that is not UTF-8 (with its line).
    std::fs::write(&file, "\n  \n").unwrap();
    let err = import_candidates(&mut store, &s, "sampled", &file, true).unwrap_err();
    assert!(matches!(err, ImportError::Empty { .. }), "{err}");
    std::fs::write(&file, b"{\"prompt_id\": \"cafe\", \"text\": \"ok\"}\n{\"text\": \"caf\xe9\"}\n").unwrap();
    let err = import_candidates(&mut store, &s, "sampled", &file, true).unwrap_err();
    assert!(matches!(err, ImportError::NotUtf8 { line: 2, .. }), "{err}");
}

#[test]
fn import_refuses_model_policies_and_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let s = example();
    let (mut store, _) = Store::open_for_study(&dir.path().join("e.sqlite"), &s).unwrap();
    let err = import_candidates(&mut store, &s, "nobody", &repo("studies/example/greedy.jsonl"), false).unwrap_err();
    assert!(err.to_string().contains("policies: sampled, greedy"), "{err}");
}

/// Answers trials in order, answering `n` then reopening the store, as a crash would.
fn answer(store: &mut Store, participant: &str, n: usize) -> Vec<(usize, Answer)> {
    let mut given = Vec::new();
    for _ in 0..n {
        let Some(t) = store.next_trial(participant).unwrap() else {
            break;
        };
        let ids: Vec<i64> = t
            .plan
            .slots
            .iter()
            .map(|sl| store.candidate(&sl.policy, &t.plan.prompt_id, sl.sample).unwrap().unwrap().id)
            .collect();
        store.mark_shown(t.id, &ids, None).unwrap();
        let a = match t.plan.mode {
            ualign_core::study::RankMode::Pick => Answer::Pick(t.position % t.plan.slots.len()),
            ualign_core::study::RankMode::Order => Answer::Order((0..t.plan.slots.len()).rev().collect()),
        };
        store.record_answer(t.id, &a, 1000 + t.position as u64, None, None).unwrap();
        given.push((t.position, a));
    }
    given
}

#[test]
fn resume_after_an_interruption_at_every_trial_position() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = example_store(dir.path());
    let db = store.path().to_path_buf();
    drop(store);
    let total = s.trials_per_participant() as usize;
    for stop_at in 0..=total {
        let participant = format!("resume-{stop_at}");
        let plan = schedule::plan(&s, &participant);
        {
            let (mut store, _) = Store::open_for_study(&db, &s).unwrap();
            assert!(store.enrol(&participant, &plan).unwrap());
            answer(&mut store, &participant, stop_at);
        } // the process "dies" here
        let (mut store, _) = Store::open_for_study(&db, &s).unwrap();
        assert!(!store.enrol(&participant, &schedule::plan(&s, &participant)).unwrap(), "the stored list is kept");
        let next = store.next_trial(&participant).unwrap();
        if stop_at == total {
            assert!(next.is_none());
            continue;
        }
        let next = next.unwrap();
        assert_eq!(next.position, stop_at, "resumes at the first unanswered trial");
        assert_eq!(next.plan, plan[stop_at]);
        answer(&mut store, &participant, total);
        let trials = store.trials(&participant).unwrap();
        assert!(trials.iter().all(|t| t.answered));
        let positions: Vec<usize> = trials.iter().map(|t| t.position).collect();
        assert_eq!(positions, (0..total).collect::<Vec<_>>(), "nothing repeated or skipped");
    }
}

#[test]
fn an_answer_is_recorded_once_and_must_fit_the_trial() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    store.enrol("p", &schedule::plan(&s, "p")).unwrap();
    let t = store.next_trial("p").unwrap().unwrap();
    let n = t.plan.slots.len();
    assert!(store.record_answer(t.id, &Answer::Pick(n), 5, None, None).is_err(), "slot out of range");
    assert!(store.record_answer(t.id, &Answer::Order(vec![0; n]), 5, None, None).is_err(), "not a permutation");
    store.record_answer(t.id, &Answer::Pick(0), 5, None, None).unwrap();
    let again = store.record_answer(t.id, &Answer::Pick(1), 5, None, None).unwrap_err();
    assert!(again.to_string().contains("already answered"));
    let choice: i64 = common::sql(store.path())
        .query_row("SELECT choice FROM answers WHERE trial_id = ?1", [t.id], |r| r.get(0))
        .unwrap();
    assert_eq!(choice, 0, "the first answer stands");
}

/// The columns README documents for each exported table.
const CANDIDATE_COLUMNS: &[&str] = &[
    "candidate_id",
    "policy",
    "prompt_id",
    "sample_index",
    "text",
    "token_count",
    "finish_reason",
    "logprob",
    "seed",
    "model_hash",
    "provider",
    "prefill_ms",
    "decode_ms",
    "settings",
    "meta",
    "created_at",
];
const TRIAL_COLUMNS: &[&str] = &[
    "trial_id",
    "participant_id",
    "position",
    "block",
    "kind",
    "mode",
    "prompt_id",
    "k",
    "policy_a",
    "policy_b",
    "n_slots",
    "slot_policies",
    "slot_samples",
    "slot_roles",
    "candidate_ids",
    "repeat_of_trial_id",
    "session_id",
    "shown_at",
    "answered_at",
    "response_ms",
    "choice_slot",
    "choice_candidate_id",
    "choice_policy",
    "choice_role",
    "ordering_slots",
    "ordering_candidate_ids",
    "no_preference",
    "skipped",
    "seen_in_full",
];
const PARTICIPANT_COLUMNS: &[&str] =
    &["participant_id", "created_at", "consent_at", "completed_at", "trials", "answered", "sessions"];

#[test]
fn the_export_columns_are_the_documented_ones() {
    let [(c, cand), (t, trials), (p, parts)] = export::columns();
    assert_eq!((c, t, p), ("candidates", "trials", "participants"));
    assert_eq!(cand, CANDIDATE_COLUMNS);
    assert_eq!(trials, TRIAL_COLUMNS);
    assert_eq!(parts, PARTICIPANT_COLUMNS);
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    for col in CANDIDATE_COLUMNS.iter().chain(TRIAL_COLUMNS).chain(PARTICIPANT_COLUMNS) {
        assert!(readme.contains(&format!("`{col}`")), "README does not document column `{col}`");
    }
}

fn header(path: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.headers().unwrap().iter().map(String::from).collect()
}

#[test]
fn export_writes_the_documented_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    store.enrol("p1", &schedule::plan(&s, "p1")).unwrap();
    store.record_consent("p1").unwrap();
    let given = answer(&mut store, "p1", 4);
    let out = dir.path().join("out");
    export::export(&store, Format::Csv, &out).unwrap();
    assert_eq!(header(&out.join("candidates.csv")), CANDIDATE_COLUMNS);
    assert_eq!(header(&out.join("trials.csv")), TRIAL_COLUMNS);
    assert_eq!(header(&out.join("participants.csv")), PARTICIPANT_COLUMNS);
    assert_eq!(std::fs::read_to_string(out.join("study.toml")).unwrap(), s.source);

    export::export(&store, Format::Jsonl, &out).unwrap();
    let trials: Vec<serde_json::Value> = std::fs::read_to_string(out.join("trials.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(trials.len(), s.trials_per_participant() as usize);
    for row in &trials {
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys, TRIAL_COLUMNS);
    }
    for (pos, a) in &given {
        let row = &trials[*pos];
        let ids = row["candidate_ids"].as_array().unwrap();
        match a {
            Answer::Pick(c) => {
                assert_eq!(row["choice_slot"], *c);
                assert_eq!(row["choice_candidate_id"], ids[*c]);
                assert_eq!(row["choice_policy"], row["slot_policies"][*c]);
            }
            Answer::Order(o) => assert_eq!(row["ordering_slots"], serde_json::json!(o)),
            _ => unreachable!(),
        }
    }
    // Every best_of_k row names its roles; exactly one slot is B's.
    for row in trials.iter().filter(|r| r["kind"] == TrialKind::BestOfK.as_str()) {
        let roles = row["slot_roles"].as_array().unwrap();
        assert_eq!(roles.iter().filter(|r| **r == serde_json::to_value(SlotRole::B).unwrap()).count(), 1);
        assert_eq!(row["n_slots"], row["k"].as_u64().unwrap() + 1);
    }
    let participants = std::fs::read_to_string(out.join("participants.jsonl")).unwrap();
    let p: serde_json::Value = serde_json::from_str(participants.lines().next().unwrap()).unwrap();
    assert_eq!(p["participant_id"], "p1");
    assert_eq!(p["answered"], 4);
    assert!(p["consent_at"].is_string());
    // No partial files are left behind.
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial")));
}

#[test]
fn a_database_in_a_folder_that_does_not_exist_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    for path in [file.join("db.sqlite"), dir.path().join("missing/db.sqlite")] {
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::NoFolder { .. }), "{err}");
        assert!(err.to_string().contains("does not exist") && err.to_string().contains("mkdir -p"), "{err}");
    }
    assert!(!dir.path().join("missing").exists(), "nothing is created");
}

//! Many processes on one study database, as a lab runs a study: simulated participants
//! and real participant screens in pseudo-terminals writing at once while the researcher
//! runs `stats` and `export`; and `simulate` killed with SIGKILL at random moments and
//! resumed. Every process must exit 0 (no error reaches anyone), every answer must be
//! stored once, and the file must stay intact.

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Tui, count, example_for_participants};
use rand::{Rng, SeedableRng};
use rusqlite::Connection;

const TRIALS: i64 = 11;

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ualign"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child, what: &str) {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What must hold of the database at any moment, even right after a kill: the file is
/// intact, each participant's trial list is whole (positions 0..n, none twice), answers
/// belong to shown trials, and each participant's answers are a prefix of their list.
fn invariants(db: &Path) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let fk: i64 = c.query_row("SELECT COUNT(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).unwrap();
    assert_eq!(fk, 0, "dangling references");
    let mut st = c
        .prepare(
            "SELECT participant_id, COUNT(*), MIN(position), MAX(position), COUNT(DISTINCT position),
                    SUM(a.trial_id IS NOT NULL), MAX(CASE WHEN a.trial_id IS NOT NULL THEN position END),
                    SUM(a.trial_id IS NOT NULL AND t.candidate_ids IS NULL)
             FROM trials t LEFT JOIN answers a ON a.trial_id = t.id GROUP BY participant_id",
        )
        .unwrap();
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                [r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?],
                r.get::<_, Option<i64>>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .unwrap();
    for row in rows {
        let (who, [n, min, max, distinct, answered], last, unshown) = row.unwrap();
        assert_eq!((n, min, max, distinct), (TRIALS, 0, TRIALS - 1, TRIALS), "{who}'s trial list is whole");
        assert_eq!(last.map_or(0, |l| l + 1), answered, "{who}'s answers are a prefix of their list");
        assert_eq!(unshown, 0, "{who} answered a trial that was never shown");
    }
}

#[test]
fn eight_writers_and_two_readers_at_once_lose_nothing_and_see_no_error() {
    let (dir, db) = example_for_participants();
    let d = dir.path();
    let stop = Arc::new(AtomicBool::new(false));
    // Readers: stats and export over and over while the writers write.
    let readers: Vec<_> = [
        vec![
            "stats",
            "studies/example.toml",
            "--json",
            "--replicates",
            "20",
            "--worth-replicates",
            "2",
            "--model-replicates",
            "2",
            "--max-classes",
            "2",
        ],
        vec!["export", "studies/example.toml", "--format", "jsonl", "--out", "out"],
    ]
    .into_iter()
    .map(|args| {
        let (stop, dir) = (stop.clone(), d.to_path_buf());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) || runs == 0 {
                finished(spawn(&dir, &args), &args.join(" "));
                runs += 1;
            }
            runs
        })
    })
    .collect();
    // Writers: five simulations and three participants at their screens.
    let sims: Vec<Child> = (1..=5)
        .map(|seed| {
            let seed = seed.to_string();
            spawn(
                d,
                &["simulate", "studies/example.toml", "--participants", "4", "--population", "pl:2", "--seed", &seed],
            )
        })
        .collect();
    let screens: Vec<_> = (1..=3)
        .map(|i| {
            let (dir, db) = (d.to_path_buf(), db.clone());
            std::thread::spawn(move || {
                let id = format!("e2e{i:02}");
                let mut tui = Tui::start(&dir, &["run", "studies/example.toml"]);
                tui.begin(&id);
                for position in 0..TRIALS {
                    tui.answer(&db, &id, position, TRIALS);
                }
                tui.wait_for_text("EXAMPLE-7Q2K");
                tui.keys("q");
                let status = tui.child.wait().unwrap();
                assert!(status.success(), "{id}'s screen exited with {status:?}:\n{}", tui.shown());
            })
        })
        .collect();
    for (i, sim) in sims.into_iter().enumerate() {
        finished(sim, &format!("simulate --seed {}", i + 1));
    }
    for s in screens {
        s.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() >= 1);
    }
    let participants = 5 * 4 + 3;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants"), participants);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), participants * TRIALS, "every answer stored once");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"), participants);
    invariants(&db);
    let exported = std::fs::read_to_string(d.join("out/trials.jsonl")).unwrap();
    assert!(exported.lines().count() as i64 <= participants * TRIALS);
}

#[test]
fn simulate_killed_at_random_moments_resumes_with_nothing_lost_or_doubled() {
    let (dir, db) = example_for_participants();
    // About 3 s of work in a debug build, so the ten kills land in the middle of it.
    let participants = 500;
    let n = participants.to_string();
    let args =
        ["simulate", "studies/example.toml", "--participants", &n, "--population", "mallows:0.5:2", "--seed", "9"];
    let total = participants * TRIALS;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
    let mut answers_seen = vec![0];
    for _ in 0..10 {
        let before = *answers_seen.last().unwrap();
        let mut child = spawn(dir.path(), &args);
        // Each kill comes a random moment after this run has stored its first answer, so
        // it always lands mid-write, whatever the machine's speed.
        common::wait("the run to answer", || count(&db, "SELECT COUNT(*) FROM answers") > before);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..80)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        invariants(&db);
        answers_seen.push(count(&db, "SELECT COUNT(*) FROM answers"));
    }
    assert!(answers_seen.windows(2).all(|w| w[0] < w[1]), "each run added answers, none lost: {answers_seen:?}");
    assert!(*answers_seen.last().unwrap() < total, "the kills came before the end: {answers_seen:?}");
    finished(spawn(dir.path(), &args), "the resumed simulation");
    invariants(&db);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM answers"), total);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"), participants);
}

#[test]
fn two_generate_runs_on_a_new_database_both_succeed_and_store_each_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo("assets/models/fortune-llama");
    let study = format!(
        r#"name = "race"
seed = 1
[[prompts]]
id = "a"
text = "love"
[[prompts]]
id = "b"
text = "food"
[[policies]]
name = "m"
source = "model"
model = "{}"
pool_size = 4
[policies.decoding]
max_new_tokens = 8
[[blocks]]
name = "r"
design = "rank"
m = 2
trials = 2
"#,
        model.display()
    );
    std::fs::write(dir.path().join("race.toml"), study).unwrap();
    let runs: Vec<Child> = (0..3).map(|_| spawn(dir.path(), &["generate", "race.toml", "--threads", "1"])).collect();
    for r in runs {
        finished(r, "generate");
    }
    let db = dir.path().join("db/race.sqlite");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM candidates"), 8, "each sample stored once");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM study"), 1);
}

#[test]
fn ctrl_c_during_generate_keeps_whole_pools_and_names_the_database_to_go_on_with() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo("assets/models/fortune-llama");
    // Enough pools that the interrupt comes long before the end.
    let prompts: String =
        (0..300).map(|i| format!("[[prompts]]\nid = \"p{i}\"\ntext = \"tell me about {i}\"\n")).collect();
    let study = format!(
        "name = \"cut\"\nseed = 1\n{prompts}[[policies]]\nname = \"m\"\nsource = \"model\"\nmodel = \"{}\"\npool_size = 4\n\
         [policies.decoding]\nmax_new_tokens = 48\n[[blocks]]\nname = \"r\"\ndesign = \"rank\"\nm = 2\ntrials = 2\n",
        model.display()
    );
    std::fs::write(dir.path().join("my study.toml"), study).unwrap();
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    let (ok, _, err) = common::ualign(dir.path(), &["init", "my study.toml", "--db", "elsewhere/cut 2.sqlite"]);
    assert!(ok, "{err}");
    let db = dir.path().join("elsewhere/cut 2.sqlite");
    let child = spawn(dir.path(), &["generate", "my study.toml", "--db", "elsewhere/cut 2.sqlite", "--threads", "1"]);
    common::wait("a first pool", || count(&db, "SELECT COUNT(*) FROM candidates") >= 4);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an interrupted generate fails: {err}");
    assert!(err.contains("interrupted:") && err.contains("the unfinished pools were discarded"), "{err}");
    assert!(
        err.contains("run `ualign generate 'my study.toml' --db 'elsewhere/cut 2.sqlite'` to continue"),
        "the command to go on names the database it filled, quoted for the shell: {err}"
    );
    let stored = count(&db, "SELECT COUNT(*) FROM candidates");
    assert!(stored % 4 == 0 && stored < 1200, "whole pools only, not all of them: {stored}");
    assert!(!dir.path().join("db").exists(), "no database at the default path");
}

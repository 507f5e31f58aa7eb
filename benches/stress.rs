//! Many writers on one study database for a fixed time, as a busy lab would run a study:
//! `--simulators` processes of `ualign simulate` (each round 10 participants) and
//! `--screens` participant screens in pseudo-terminals (each answering its trials as
//! fast as the screen allows, then starting again as a new participant), with `stats`
//! and `export` running over and over beside them. Reports answers per second, commit
//! latency (simulate: the answer's write with its wait for the lock; screens: keystroke
//! to the next question drawn), errors (must be 0) and lost or duplicated answers (must
//! be 0). Not a test: run it with `benches/stress.sh`, which also runs the SQLite peer.
//!
//!   cargo bench --bench stress -- --secs 60 --simulators 16 --screens 16

#[path = "../tests/integration/common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Tui, example_copy_with, ualign};

const TRIALS: usize = 11;

struct Args {
    secs: u64,
    simulators: usize,
    screens: usize,
    json: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args { secs: 30, simulators: 16, screens: 16, json: None };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--secs" => a.secs = value().parse().expect("--secs N"),
            "--simulators" => a.simulators = value().parse().expect("--simulators N"),
            "--screens" => a.screens = value().parse().expect("--screens N"),
            "--json" => a.json = Some(PathBuf::from(value())),
            _ => {
                i += 1;
                continue; // cargo bench passes --bench
            }
        }
        i += 2;
    }
    a
}

/// What every writer and reader saw.
#[derive(Default)]
struct Tally {
    answers: AtomicUsize,
    errors: Mutex<Vec<String>>,
    commit_ms: Mutex<Vec<f64>>,
    screen_ms: Mutex<Vec<f64>>,
    reads: AtomicUsize,
}

impl Tally {
    fn error(&self, e: String) {
        eprintln!("ERROR: {e}");
        self.errors.lock().unwrap().push(e);
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

/// One simulate process: its answers and each answer's commit time.
fn simulate_round(dir: &Path, seed: usize, tally: &Tally) {
    let seed = seed.to_string();
    let times = dir.join(format!("commit-times-{seed}.txt"));
    let out = Command::new(env!("CARGO_BIN_EXE_ualign"))
        .current_dir(dir)
        .args(["simulate", "studies/example.toml", "--participants", "10", "--population", "pl:2", "--seed", &seed])
        .arg("--commit-times")
        .arg(&times)
        .stderr(Stdio::piped())
        .output()
        .expect("simulate runs");
    if !out.status.success() {
        tally.error(format!("simulate --seed {seed}: {}", String::from_utf8_lossy(&out.stderr)));
        return;
    }
    let ms: Vec<f64> =
        std::fs::read_to_string(&times).unwrap_or_default().lines().filter_map(|l| l.parse().ok()).collect();
    let _ = std::fs::remove_file(&times);
    tally.answers.fetch_add(ms.len(), Ordering::Relaxed);
    tally.commit_ms.lock().unwrap().extend(ms);
}

/// One participant at a screen: consent, id, every trial answered as fast as the screen
/// allows (the keystroke-to-next-question time recorded), then quit.
fn screen_round(dir: &Path, id: &str, tally: &Tally) {
    let mut tui = Tui::start(dir, &["run", "studies/example.toml"]);
    tui.begin(id);
    for pos in 0..TRIALS {
        let here = format!("Question {} of {TRIALS}", pos + 1);
        let next = if pos + 1 < TRIALS { format!("Question {} of {TRIALS}", pos + 2) } else { "EXAMPLE-7Q2K".into() };
        if !wait_for(&tui, &here, Duration::from_secs(60)) {
            tally.error(format!("{id}: question {} never appeared:\n{}", pos + 1, tui.shown()));
            return;
        }
        let start = Instant::now();
        tui.send("12\r");
        if !wait_for(&tui, &next, Duration::from_secs(60)) {
            tally.error(format!("{id}: no next screen after answering question {}:\n{}", pos + 1, tui.shown()));
            return;
        }
        tally.screen_ms.lock().unwrap().push(start.elapsed().as_secs_f64() * 1000.0);
        tally.answers.fetch_add(1, Ordering::Relaxed);
    }
    tui.send("q");
    match tui.child.wait() {
        Ok(s) if s.success() => {}
        other => tally.error(format!("{id}'s screen exited with {other:?}:\n{}", tui.shown())),
    }
}

fn wait_for(tui: &Tui, text: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while !tui.shown().contains(text) {
        if tui.shown().contains("cannot go on") || start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// The example study for this run: no reading time, no breaks, ids `s` and five digits,
/// its pools imported.
fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = example_copy_with(|s| {
        s.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0\nparticipant_id_pattern = \"s[0-9]{5}\"")
            .replace("break_every = 10\n", "")
    });
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, _, err) =
            ualign(dir.path(), &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    let db = dir.path().join("db/example.sqlite");
    (dir, db)
}

/// Starts every writer and reader; each runs until `stop` is set.
fn spawn_all(a: &Args, d: &Path, tally: &Arc<Tally>, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    for w in 0..a.simulators {
        let (d, tally, stop) = (d.to_path_buf(), tally.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) {
                simulate_round(&d, 1000 * w + round, &tally);
                round += 1;
            }
        }));
    }
    let next_id = Arc::new(AtomicUsize::new(0));
    for _ in 0..a.screens {
        let (d, tally, stop, next_id) = (d.to_path_buf(), tally.clone(), stop.clone(), next_id.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let id = format!("s{:05}", next_id.fetch_add(1, Ordering::Relaxed));
                screen_round(&d, &id, &tally);
            }
        }));
    }
    for args in [
        vec!["stats", "studies/example.toml", "--json", "--replicates", "20", "--worth-replicates", "2"],
        vec!["export", "studies/example.toml", "--format", "csv", "--out", "out"],
    ] {
        let (d, tally, stop) = (d.to_path_buf(), tally.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (ok, _, err) = ualign(&d, &args);
                if !ok {
                    tally.error(format!("{}: {err}", args[0]));
                }
                tally.reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    threads
}

fn main() {
    let a = args();
    let (dir, db) = setup();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads = spawn_all(&a, dir.path(), &tally, &stop);
    std::thread::sleep(Duration::from_secs(a.secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    report(&a, &db, &tally, secs);
}

/// Checks the database against what the writers saw, prints the figures, and fails the
/// run if anything was lost, doubled or reported as an error.
fn report(a: &Args, db: &Path, tally: &Tally, secs: f64) {
    // What the database holds against what the writers saw committed.
    let c = rusqlite::Connection::open(db).expect("db");
    let one = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let stored = one("SELECT COUNT(*) FROM answers") as usize;
    let integrity: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("check");
    let doubled =
        one("SELECT COUNT(*) FROM (SELECT participant_id, position FROM trials t JOIN answers a ON a.trial_id = t.id
         GROUP BY participant_id, position HAVING COUNT(*) > 1)");
    let seen = tally.answers.load(Ordering::Relaxed);
    let errors = tally.errors.lock().unwrap().len();
    let mut commit = tally.commit_ms.lock().unwrap().clone();
    let mut screen = tally.screen_ms.lock().unwrap().clone();
    let report = serde_json::json!({
        "seconds": secs,
        "simulators": a.simulators,
        "screens": a.screens,
        "answers": stored,
        "answers_per_s": stored as f64 / secs,
        "screen_answers": screen.len(),
        "simulate_commit_ms": {
            "p50": quantile(&mut commit, 0.5), "p99": quantile(&mut commit, 0.99), "max": quantile(&mut commit, 1.0)
        },
        "screen_keystroke_to_next_question_ms": {
            "p50": quantile(&mut screen, 0.5), "p99": quantile(&mut screen, 0.99), "max": quantile(&mut screen, 1.0)
        },
        "reader_runs": tally.reads.load(Ordering::Relaxed),
        "errors": errors,
        "lost": seen.saturating_sub(stored),
        "unaccounted": stored.saturating_sub(seen),
        "duplicated": doubled,
        "integrity": integrity,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    if let Some(path) = &a.json {
        std::fs::write(path, report.to_string()).expect("write the report");
    }
    assert!(errors == 0 && seen == stored && doubled == 0 && integrity == "ok", "the stress run found problems");
}

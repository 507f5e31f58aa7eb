//! Commit → screen lag of `ualign dashboard` under a steady stream of participants: how
//! long after a simulated participant's last answer is committed the dashboard has an
//! update that shows it (f(k) and progress), for today's dashboard (`new`: a live view of
//! f(k) from the answers committed since its last read, the full report in the
//! background) against the one before it (`whole`: the live view reading every answer on
//! every commit) and the one before that (`report`: the whole report recomputed after
//! every change, nothing in between), in the same run on the same database. What it times
//! is the watcher's update reaching the UI thread; a redraw (benches/dashboard.rs) adds
//! ~1 ms.
//!
//! ```sh
//! python3 benches/peers/stats_data.py /tmp/sd2000 --picks --prompts 50 --participants 2000
//! UALIGN_BENCH_STUDY=/tmp/sd2000/bench.toml UALIGN_BENCH_DB=/tmp/sd2000/bench.sqlite \
//!     UALIGN_LAG_SECONDS=120 cargo bench --bench dashboard_lag
//! ```
//! The database is copied first (the stream's participants are added to the copy). Once
//! the dashboard shows its first numbers (the time that takes is printed), one
//! participant joins every `UALIGN_LAG_EVERY_MS` (default 2000) for `UALIGN_LAG_SECONDS`
//! (default 90) per dashboard; `new` and `whole` run by default, `UALIGN_LAG_ONLY=new|whole|report`
//! runs one of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ualign::tui::dashboard::{Update, Watching, spawn_watching};
use ualign_core::analysis::report::Options;
use ualign_core::simulate::{Answering, Cohort, Population, simulate_answering};
use ualign_core::store::Store;
use ualign_core::study;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Lags (s) of every participant of the stream that an update showed before the end.
fn run(name: &str, study_path: &Path, db: &Path) -> (Vec<f64>, usize) {
    // Kept to the end of the process: the watchers read it to the last.
    let dir = Box::leak(Box::new(tempfile::tempdir().expect("temp dir")));
    let copy = dir.path().join("lag.sqlite");
    std::fs::copy(db, &copy).expect("copy the database");
    let (s, _) = study::load(study_path).expect("study loads");
    let mut store = Store::open_existing(&copy).expect("database opens");
    let opts = Options::for_study(&s);
    let (tx, rx) = mpsc::channel();
    let refresh = Arc::new(AtomicBool::new(false));
    let watching = match name {
        "new" => Watching::NewAnswers,
        "whole" => Watching::EveryAnswer,
        _ => Watching::WholeReport,
    };
    if name != "report" {
        ualign::tui::dashboard::leave_a_core_for_the_live_view();
    }
    let opened = Instant::now();
    spawn_watching(watching, s.clone(), copy.clone(), opts, refresh, tx).expect("watcher");
    // What the UI thread would see: (when, answers shown).
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        while let Ok(u) = rx.recv() {
            match u {
                Update::Live(v, _) => log.lock().expect("updates").push((Instant::now(), v.progress.answered)),
                Update::Ready(r, _, _) => log.lock().expect("updates").push((Instant::now(), r.progress.answered)),
                Update::Computing => {}
                Update::Failed(e) | Update::LiveFailed(e) => panic!("{e}"),
            }
        }
    });
    // The stream starts once the dashboard shows its first numbers (how long that takes,
    // reading every answer once, is its own figure): the lag is a running dashboard's.
    while seen.lock().expect("updates").is_empty() {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("{name:>6}: first update {:.2} s after opening", opened.elapsed().as_secs_f64());
    let every = Duration::from_millis(env_or("UALIGN_LAG_EVERY_MS", 2000));
    let end = Instant::now() + Duration::from_secs(env_or("UALIGN_LAG_SECONDS", 90));
    let population: Population =
        std::env::var("UALIGN_LAG_POPULATION").unwrap_or_else(|_| "plmix:3:2".into()).parse().expect("population");
    let mut committed = Vec::new();
    let mut next = Instant::now() + Duration::from_secs(2);
    for i in 0.. {
        if next > end {
            break;
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let cohort =
            Cohort { population: &population, participants: 1, first: 1_000_000 + i, answering: Answering::default() };
        simulate_answering(&s, &mut store, &cohort, 77).expect("simulate");
        committed.push((Instant::now(), store.counts().expect("counts").2 as usize));
        next += every;
    }
    // Let the last participant be seen; the updates so far are what counts (the process
    // ends with its watchers, which are mid-computation: hence one process per dashboard).
    std::thread::sleep(Duration::from_secs(env_or("UALIGN_LAG_GRACE", 5)));
    let seen = std::mem::take(&mut *seen.lock().expect("updates"));
    let lags: Vec<f64> = committed
        .iter()
        .filter_map(|(at, answered)| {
            seen.iter().find(|(t, a)| t >= at && a >= answered).map(|(t, _)| (*t - *at).as_secs_f64())
        })
        .collect();
    (lags, committed.len())
}

/// `UALIGN_LAG_ONLY=cost`: on an idle machine, on a copy of the database, 3 times: the
/// live view reading every answer, and the live reader's read after one more participant.
fn cost(study_path: &Path, db: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("cost.sqlite");
    std::fs::copy(db, &copy).expect("copy the database");
    let (s, _) = study::load(study_path).expect("study loads");
    let mut store = Store::open_existing(&copy).expect("database opens");
    let replicates = Options::for_study(&s).replicates;
    let population: Population = "plmix:3:2".parse().expect("population");
    let t = Instant::now();
    let mut reader = ualign_core::analysis::live::LiveReader::new(&s, replicates);
    reader.read(&s, &store).expect("first read");
    println!("live reader's first read (every answer): {:.3} s", t.elapsed().as_secs_f64());
    for i in 0..3 {
        let t = Instant::now();
        let v = ualign_core::analysis::report::LiveView::compute(&s, &store, replicates).expect("live view");
        let whole = t.elapsed().as_secs_f64();
        let cohort =
            Cohort { population: &population, participants: 1, first: 2_000_000 + i, answering: Answering::default() };
        simulate_answering(&s, &mut store, &cohort, 78).expect("simulate");
        let t = Instant::now();
        let n = reader.read(&s, &store).expect("read").progress.participants;
        println!(
            "{} participants: every answer {whole:.3} s; after one more ({n}), the new answers {:.3} s",
            v.progress.participants,
            t.elapsed().as_secs_f64()
        );
    }
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn main() {
    let (Some(study_path), Some(db)) = (std::env::var_os("UALIGN_BENCH_STUDY"), std::env::var_os("UALIGN_BENCH_DB"))
    else {
        eprintln!("dashboard_lag: set UALIGN_BENCH_STUDY and UALIGN_BENCH_DB (see the file's header); skipped");
        return;
    };
    let (study_path, db) = (PathBuf::from(study_path), PathBuf::from(db));
    if std::env::var("UALIGN_LAG_ONLY").as_deref() == Ok("cost") {
        return cost(&study_path, &db);
    }
    let Ok(only) = std::env::var("UALIGN_LAG_ONLY") else {
        // Each dashboard in a process of its own, one after the other.
        for name in ["new", "whole"] {
            let status = std::process::Command::new(std::env::current_exe().expect("this bench"))
                .env("UALIGN_LAG_ONLY", name)
                .status()
                .expect("runs");
            assert!(status.success(), "{name}: {status}");
        }
        return;
    };
    for name in ["new", "whole", "report"] {
        if only != name {
            continue;
        }
        let (mut lags, joined) = run(name, &study_path, &db);
        if lags.is_empty() {
            println!("{name:>6}: none of {joined} participants shown before the end");
            continue;
        }
        let (p50, p99, max) = (quantile(&mut lags, 0.5), quantile(&mut lags, 0.99), quantile(&mut lags, 1.0));
        println!(
            "{name:>6}: {} of {joined} participants shown; commit → update p50 {p50:.2} s, p99 {p99:.2} s, max {max:.2} s",
            lags.len()
        );
    }
}

//! The full report (stats, plot, dashboard) on simulated participants who rank whole pools.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ualign_core::analysis::equilibria::{self, Order};
use ualign_core::analysis::ranking::Ranking;
use ualign_core::analysis::report::{Options, PersonLine, Report};
use ualign_core::pools::import::import_candidates;
use ualign_core::simulate::{Population, simulate};
use ualign_core::store::Store;
use ualign_core::study;

/// The example study with its rank block ordering all 8 candidates of a prompt's pool, so
/// every participant's ranking covers the pool.
fn full_pool_study(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    std::fs::create_dir_all(dir.join("example")).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), dir.join("example").join(f)).unwrap();
    }
    let text = std::fs::read_to_string(src.join("example.toml")).unwrap();
    assert!(text.contains("\nm = 3\n"));
    let path = dir.join("full.toml");
    std::fs::write(&path, text.replace("\nm = 3\n", "\nm = 8\n")).unwrap();
    path
}

fn simulated(dir: &Path, participants: usize, population: &Population) -> (study::Study, Store) {
    simulated_with(dir, participants, population, 21, |text| text)
}

/// As [`simulated`], the full-pool study's text edited by `edit`, simulated from `seed`.
fn simulated_with(
    dir: &Path,
    participants: usize,
    population: &Population,
    seed: u64,
    edit: impl FnOnce(String) -> String,
) -> (study::Study, Store) {
    let path = full_pool_study(dir);
    std::fs::write(&path, edit(std::fs::read_to_string(&path).unwrap())).unwrap();
    let (s, _) = study::load(&path).unwrap();
    let (mut store, _) = Store::open_for_study(&dir.join("full.sqlite"), &s).unwrap();
    import_candidates(&mut store, &s, "sampled", &dir.join("example/sampled.jsonl"), false).unwrap();
    import_candidates(&mut store, &s, "greedy", &dir.join("example/greedy.jsonl"), false).unwrap();
    simulate(&s, &mut store, participants, population, seed).unwrap();
    (s, store)
}

/// The report and every participant's ranking, as `--per-participant` writes them.
fn with_rankings(s: &study::Study, store: &Store, opts: &Options) -> (Report, Vec<Ranking>) {
    let mut rankings = Vec::new();
    let mut keep = |line: PersonLine<'_>| {
        if let PersonLine::Ranking(r) = line {
            rankings.push(r.clone());
        }
    };
    let report = Report::compute_with(s, store, opts, Some(&mut keep)).unwrap();
    (report, rankings)
}

fn options(s: &study::Study) -> Options {
    let d = Options::for_study(s);
    // A small model bootstrap: debug builds are slow, and these tests are about the rest.
    let model = ualign_core::analysis::model::ModelOptions { replicates: 3, c_max: 2, samples: 4000, ..d.model };
    Options { replicates: 200, worth_replicates: 50, model, ..d }
}

#[test]
fn equilibria_certify_what_they_should_on_simulated_rankings() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = simulated(dir.path(), 80, &Population::Mallows { phi: 0.5, centres: 3 });
    let r = Report::compute(&s, &store, &options(&s)).unwrap();
    assert!(r.equilibria_skipped.is_empty(), "{:?}", r.equilibria_skipped);
    let prompts: std::collections::BTreeSet<&str> = r.equilibria.iter().map(|e| e.prompt.as_str()).collect();
    assert_eq!(prompts.len(), s.prompts.len());
    let ks = Options::for_study(&s).k_max;
    let exact = r.equilibria.iter().filter(|e| e.method == "orders").count();
    assert_eq!(exact, prompts.len() * ks as usize * 3, "base, nlhf and ne per prompt and k");
    assert_eq!(r.equilibria.len(), 2 * exact, "and as many from the population model");
    for e in &r.equilibria {
        let total: f64 = e.distribution.iter().map(|m| m.p).sum();
        assert!((total - 1.0).abs() < 1e-9 && e.distribution.iter().all(|m| m.p >= 0.0), "{e:?}");
        assert!((e.certified_win_rate - (e.bound - e.gap)).abs() < 1e-9, "certified = bound − gap: {e:?}");
        if e.policy == "ne" {
            // Exact rankings: solved to 1e-6; the model's: polished on exact payoffs.
            assert!(e.gap < if e.method == "orders" { 1e-6 } else { 1e-4 }, "{e:?}");
            // NE_k minimises the worst-case payoff: no policy over the pool certifies more.
            for other in r.equilibria.iter().filter(|o| o.prompt == e.prompt && o.k == e.k && o.method == e.method) {
                assert!(e.certified_win_rate >= other.certified_win_rate - 1e-6, "{e:?} vs {other:?}");
            }
        }
    }
    // The base distribution counts copies: the greedy policy's 4 identical texts weigh 4/8.
    let base = r.equilibria.iter().find(|e| e.policy == "base").unwrap();
    assert_eq!(base.distribution.iter().map(|m| m.copies).sum::<usize>(), 8);
}

#[test]
fn certified_rates_are_recomputed_exactly_from_the_rankings() {
    // Recompute one row from the stored rankings with the library's own payoff formula on
    // independently built orders: the report must agree to rounding.
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = simulated(dir.path(), 40, &Population::PlackettLuce(1.5));
    let (r, rankings) = with_rankings(&s, &store, &options(&s));
    let row = r.equilibria.iter().find(|e| e.policy == "nlhf" && e.k == 4 && e.method == "orders").unwrap();
    let texts: std::collections::HashMap<i64, String> = common::sql(store.path())
        .prepare("SELECT id, text FROM candidates WHERE prompt_id = ?1")
        .unwrap()
        .query_map([&row.prompt], |q| Ok((q.get(0)?, q.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let reps: Vec<&str> = row.distribution.iter().map(|m| texts[&m.candidate].as_str()).collect();
    let orders: Vec<Order> = rankings
        .iter()
        .filter(|k| k.prompt == row.prompt && k.method != "pl_mixture")
        .map(|k| {
            let mut o: Vec<usize> = Vec::new();
            for id in &k.order {
                let i = reps.iter().position(|t| *t == texts[id]).unwrap();
                if !o.contains(&i) {
                    o.push(i);
                }
            }
            o
        })
        .collect();
    assert_eq!(orders.len(), row.participants);
    let x: Vec<f64> = row.distribution.iter().map(|m| m.p).collect();
    let c = equilibria::certified_win_rate(&orders, &x, 4);
    assert!((c - row.certified_win_rate).abs() < 1e-12, "{c} vs {}", row.certified_win_rate);
}

#[test]
fn population_worths_have_intervals_around_them() {
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = simulated(dir.path(), 60, &Population::PlackettLuce(2.0));
    let r = Report::compute(&s, &store, &options(&s)).unwrap();
    assert!(!r.population.is_empty());
    for w in &r.population {
        assert!(w.ci_low <= w.log_worth + 1e-9 && w.log_worth <= w.ci_high + 1e-9, "{w:?}");
    }
    // Log-worths are centred per prompt.
    let mut sums: std::collections::BTreeMap<&str, f64> = Default::default();
    for w in &r.population {
        *sums.entry(w.prompt.as_str()).or_default() += w.log_worth;
    }
    assert!(sums.values().all(|s| s.abs() < 1e-9), "{sums:?}");
}

fn ualign(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ualign")).current_dir(dir).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// Runs each command in `dir` with `extra` appended; each must succeed.
fn ualign_all(dir: &Path, commands: &[&[&str]], extra: &[&str]) {
    for args in commands {
        let (ok, out, err) = ualign(dir, &[args, extra].concat());
        assert!(ok, "{args:?}: {out}{err}");
    }
}

#[test]
fn stats_json_schema_and_plots_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    full_pool_study(d);
    for args in [
        &["init", "full.toml"][..],
        &["import", "full.toml", "--policy", "sampled", "--candidates", "example/sampled.jsonl"],
        &["import", "full.toml", "--policy", "greedy", "--candidates", "example/greedy.jsonl"],
        &["simulate", "full.toml", "--participants", "30", "--population", "cyclic"],
    ] {
        let (ok, out, err) = ualign(d, args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let quick = ["--model-replicates", "3", "--max-classes", "2"];
    let (ok, out, err) =
        ualign(d, &[&["stats", "full.toml", "--json", "--replicates", "100", "--k-max", "4"][..], &quick].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in [
        "study",
        "convention",
        "progress",
        "fk",
        "rankings",
        "population",
        "equilibria",
        "equilibria_skipped",
        "population_model",
        "diversity",
        "quality",
    ] {
        assert!(v.get(key).is_some(), "stats --json lacks {key}");
    }
    let fk = &v["fk"][0];
    for key in ["policy_a", "policy_b", "k", "n", "wins", "ties", "rate", "ci_low", "ci_high", "bound"] {
        assert!(fk.get(key).is_some(), "fk rows lack {key}");
    }
    // Per-person detail is counted in the report and written, line by line, only on request.
    let rk = &v["rankings"]["by_method"];
    assert!(rk["order"].as_u64().unwrap() > 0 && rk["pl_mixture"].as_u64().unwrap() > 0, "{rk}");
    per_participant_file_holds_what_the_report_counts(d, &quick, rk);
    let eq = v["equilibria"].as_array().unwrap();
    assert_eq!(eq.iter().map(|e| e["k"].as_u64().unwrap()).max(), Some(4));
    for key in ["prompt", "k", "policy", "distribution", "certified_win_rate", "gap"] {
        assert!(eq[0].get(key).is_some(), "equilibria rows lack {key}");
    }
    let policies: std::collections::BTreeSet<&str> = eq.iter().map(|e| e["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["base", "ne", "nlhf"].into());
    assert_eq!(v["progress"]["participants"], 30);

    let (ok, out, err) =
        ualign(d, &[&["stats", "full.toml", "--replicates", "100", "--k-max", "4"][..], &quick].concat());
    assert!(ok, "{err}");
    assert!(out.contains("certified f(k)") && out.contains("NE_k equal-share gap"), "{out}");

    let (ok, _, err) = ualign(
        d,
        &[&["plot", "full.toml", "--out", "fk.svg", "--replicates", "100", "--k-max", "4"][..], &quick].concat(),
    );
    assert!(ok, "{err}");
    let svg = std::fs::read_to_string(d.join("fk.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("k/(k+1)") && svg.contains("NE\u{2096} certified"));
    figure_with_the_default_k_max(d, &quick);
    let (ok, _, err) = ualign(
        d,
        &[
            &["plot", "full.toml", "--out", "fk.png", "--size", "640x420", "--replicates", "100", "--k-max", "4"][..],
            &quick,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let png = std::fs::read(d.join("fk.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(!d.join(".fk.png.partial.png").exists());

    let (ok, _, err) = ualign(d, &["plot", "full.toml", "--out", "fk.pdf"]);
    assert!(!ok && err.contains(".svg or .png"), "{err}");
    let (ok, _, err) = ualign(d, &["plot", "full.toml", "--out", "nowhere/fk.svg"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
}

/// With the default --k-max (8, beyond the observed k = 1, 2, 4): the axis stops at the
/// observed k, the study's title heads it, each point says its n, and the labels use the
/// font's sub- and superscripts.
/// `--per-participant`: one line per ranking the report counts, renamed into place whole.
fn per_participant_file_holds_what_the_report_counts(d: &Path, quick: &[&str], rk: &serde_json::Value) {
    let (ok, _, err) = ualign(
        d,
        &[
            &["stats", "full.toml", "--replicates", "100", "--k-max", "4", "--per-participant", "people.jsonl"][..],
            quick,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    let lines = std::fs::read_to_string(d.join("people.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rankings: Vec<_> = lines.iter().filter(|l| l["kind"] == "ranking").collect();
    let counted: u64 = rk.as_object().unwrap().values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(rankings.len() as u64, counted, "the file holds every ranking the report counts");
    for key in ["participant", "prompt", "order", "method"] {
        assert!(rankings.iter().all(|r| r.get(key).is_some()), "ranking lines lack {key}");
    }
    assert!(!d.join("people.jsonl.partial").exists(), "the partial file is renamed into place");
    let (ok, _, err) =
        ualign(d, &[&["stats", "full.toml", "--per-participant", "no/such/dir/people.jsonl"][..], quick].concat());
    assert!(!ok && err.contains("--per-participant") && err.contains("no/such/dir"), "{err}");
    // The study's database given by mistake is refused, and left as it was.
    let db = std::fs::read_dir(d.join("db"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "sqlite"))
        .expect("the study's database");
    let before = std::fs::read(&db).unwrap();
    let (ok, _, err) =
        ualign(d, &[&["stats", "full.toml", "--per-participant", db.to_str().unwrap()][..], quick].concat());
    assert!(!ok && err.contains("SQLite database"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(!db.with_extension("sqlite.partial").exists());
}

fn figure_with_the_default_k_max(d: &Path, quick: &[&str]) {
    let (ok, _, err) =
        ualign(d, &[&["plot", "full.toml", "--out", "fk8.svg", "--replicates", "100"][..], quick].concat());
    assert!(ok, "{err}");
    let svg = std::fs::read_to_string(d.join("fk8.svg")).unwrap();
    let texts: Vec<String> = svg
        .split("</text>")
        .filter_map(|t| t.rsplit_once('>').map(|(_, x)| x.trim().to_string()))
        .filter(|t| !t.is_empty())
        .collect();
    let has = |t: &str| texts.iter().any(|x| x == t);
    assert!(has("Which answer do you prefer?") && !texts.iter().any(|t| t.contains("example")), "{texts:?}");
    assert!(has("4") && !has("5") && !has("8"), "the x axis ends at the largest observed k: {texts:?}");
    assert_eq!(texts.iter().filter(|t| *t == "n=60").count(), 3, "{texts:?}");
    for label in ["NE\u{2096} certified (mean over prompts)", "NLHF\u{1d4f} certified", "base pool\u{1d4f} certified"] {
        assert!(has(label), "{label:?} not in {texts:?}");
    }
    // The bound is a wide grey band drawn first, so NEₖ (on it by construction) shows on it.
    let bound = svg.find(r##"stroke="#BEBEBE" stroke-width="7""##).expect("the bound's band");
    let ne = svg.find(r##"stroke="#CC79A7""##).expect("the NE curve");
    assert!(bound < ne, "the NE curve is drawn over the bound, not under it");
}

fn screen(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let b = t.backend().buffer();
    let mut s = String::new();
    for y in 0..b.area.height {
        for x in 0..b.area.width {
            s.push_str(b[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

#[test]
fn dashboard_draws_the_report_and_says_when_the_window_is_too_small() {
    use ualign::tui::dashboard::{self, Dashboard};
    use ualign::tui::draw::Theme;
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = simulated(dir.path(), 30, &Population::Cyclic);
    let report = Report::compute(&s, &store, &options(&s)).unwrap();
    let d = Dashboard { study: s.name.clone(), db: "full.sqlite".into(), report: Some(report), ..Default::default() };
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(140, 40)).unwrap();
    t.draw(|f| dashboard::draw(f, &d, Theme { color: false })).unwrap();
    let text = screen(&t);
    for want in [
        "ualign dashboard",
        "30 enrolled, 30 finished",
        "sampled vs greedy",
        "k=4  n=60   0.80 [0.68,0.88]",
        "NE_k",
        "k/(k+1)",
        "Data quality",
        "q quit",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    insta::assert_snapshot!("dashboard_140x40", text);
    // In the windows participants' researchers have, the side panel is whole: it was cut
    // at 110 columns ("0 participan").
    for (w, h) in [(110, 34), (80, 24)] {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
        t.draw(|f| dashboard::draw(f, &d, Theme { color: false })).unwrap();
        let text = screen(&t);
        let side: String = text
            .lines()
            .filter_map(|l| l.rfind('│').and_then(|end| l[..end].rfind('│').map(|start| l[start + 3..end].trim_end())))
            .collect::<Vec<_>>()
            .join(" ");
        let side = side.split_whitespace().collect::<Vec<_>>().join(" ");
        for want in [
            "30 enrolled, 30 finished",
            "too fast (<1500 ms): 25 participants",
            // Where the rows with both intervals do not fit, the side panel keeps the
            // anytime interval and the chart's bars keep the fixed-N one.
            if w >= 110 { "k=4 n=60 0.80 [0.68,0.88]" } else { "k=4 n=60 0.80 any[" },
            "failed attention: 0 of 30",
            "repeats agree: 30 of 30",
        ] {
            assert!(side.contains(want), "{w}×{h}: {want:?} missing from the side panel {side:?}\n{text}");
        }
        insta::assert_snapshot!(format!("dashboard_{w}x{h}"), text);
    }
    let mut small = ratatui::Terminal::new(ratatui::backend::TestBackend::new(50, 12)).unwrap();
    small.draw(|f| dashboard::draw(f, &d, Theme { color: false })).unwrap();
    assert!(screen(&small).contains("at least 60×18"), "{}", screen(&small));
}

#[test]
fn dashboard_watcher_recomputes_when_another_connection_writes() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    use ualign::tui::dashboard::{Update, spawn_watcher};
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = simulated(dir.path(), 5, &Population::Cyclic);
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_watcher(s.clone(), store.path().to_path_buf(), options(&s), Arc::new(AtomicBool::new(false)), tx).unwrap();
    let mut lives = Vec::new();
    let mut next_ready = || loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("the watcher sends a report") {
            Update::Ready(r, _, _) => return r,
            Update::Live(v, _) => lives.push(v),
            Update::Computing => {}
            Update::Failed(e) | Update::LiveFailed(e) => panic!("{e}"),
        }
    };
    assert_eq!(next_ready().progress.participants, 5);
    // Answers arriving through another connection (as from a participant's process).
    simulate(&s, &mut store, 3, &Population::Cyclic, 99).unwrap();
    let full = next_ready();
    assert_eq!(full.progress.participants, 8);
    // The live view saw them too, and its f(k) rows are the full report's, to the bit,
    // less the length control that only the full computation fits.
    let live = lives.iter().rev().find(|v| v.progress.participants == 8).expect("a live view of the 8");
    assert_eq!(live.progress, full.progress);
    let strip = |rows: &[ualign_core::analysis::fk::FkRow]| -> Vec<String> {
        rows.iter()
            .map(|r| format!("{:?}", ualign_core::analysis::fk::FkRow { length_control: None, ..r.clone() }))
            .collect()
    };
    assert!(!live.fk.is_empty());
    assert_eq!(strip(&live.fk), strip(&full.fk));
    assert!(live.fk.iter().all(|r| r.length_control.is_none()));
}

#[test]
fn the_live_reader_adds_new_answers_to_the_numbers_a_whole_read_gives() {
    use ualign_core::analysis::live::LiveReader;
    use ualign_core::analysis::report::LiveView;
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = simulated(dir.path(), 12, &Population::Cyclic);
    let replicates = 200;
    // Rows compared as text: NaN (no interval yet) equals NaN there.
    let whole = |store: &Store| format!("{:?}", LiveView::compute(&s, store, replicates).unwrap().fk);
    let mut reader = LiveReader::new(&s, replicates);
    let read = |reader: &mut LiveReader, store: &Store| {
        let v = reader.read(&s, store).unwrap();
        assert_eq!(v.progress, LiveView::compute(&s, store, replicates).unwrap().progress);
        format!("{:?}", v.fk)
    };
    assert_eq!(read(&mut reader, &store), whole(&store));
    // Nothing new: the same rows.
    assert_eq!(read(&mut reader, &store), whole(&store));
    // New participants, a few at a time: past 20 (the cluster interval appears) and on.
    let backup = dir.path().join("backup.sqlite");
    for (i, n) in [3, 1, 9, 2].into_iter().enumerate() {
        simulate(&s, &mut store, n, &Population::Cyclic, 100 + i as u64).unwrap();
        assert_eq!(read(&mut reader, &store), whole(&store), "after {n} more");
        if i == 1 {
            common::sql(store.path()).execute_batch(&format!("VACUUM INTO '{}'", backup.display())).unwrap();
        }
    }
    let db = common::sql(store.path());
    // Participants not finished yet are in the rates but not in the sequences; finishing
    // later (last), they join the sequences at the end.
    db.execute_batch(
        "UPDATE participants SET completed_at = NULL WHERE id IN (SELECT id FROM participants ORDER BY completed_at DESC LIMIT 3)",
    )
    .unwrap();
    simulate(&s, &mut store, 2, &Population::Cyclic, 200).unwrap();
    let restarts = reader.restarts();
    assert_eq!(read(&mut reader, &store), whole(&store));
    // (Three left the finish order, which is not the last one extended: the sequences restart.)
    assert_eq!(reader.restarts(), restarts + 1);
    db.execute_batch("UPDATE participants SET completed_at = '2999-01-01T00:00:00.000Z' WHERE completed_at IS NULL")
        .unwrap();
    assert_eq!(read(&mut reader, &store), whole(&store));
    assert_eq!(reader.restarts(), restarts + 1, "finishing last extends the order: nothing restarts");
    // A finish order that changes (an earlier finisher now finished last) restarts the
    // sequences and gives the whole read's numbers again.
    db.execute_batch(
        "UPDATE participants SET completed_at = '3000-01-01T00:00:00.000Z' WHERE id = (SELECT id FROM participants ORDER BY completed_at LIMIT 1)",
    )
    .unwrap();
    assert_eq!(read(&mut reader, &store), whole(&store));
    assert_eq!(reader.restarts(), restarts + 2);
    // A database put back from an earlier backup (fewer answers than were read): the reader
    // starts again from every answer.
    let earlier = Store::open_existing(&backup).unwrap();
    assert_eq!(read(&mut reader, &earlier), whole(&earlier));
    assert_eq!(reader.restarts(), restarts + 3);
}

#[test]
fn zero_bootstrap_replicates_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    full_pool_study(dir.path());
    let (ok, _, err) = ualign(dir.path(), &["stats", "full.toml", "--replicates", "0"]);
    assert!(!ok && err.contains("--replicates") && err.contains("0"), "{err}");
}

#[test]
fn stats_on_a_damaged_database_reports_the_damage_and_no_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = simulated(dir.path(), 20, &Population::Cyclic);
    common::sql(store.path()).execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(store);
    // Scribble over the middle of the last page (an index or table page with answers).
    let path = dir.path().join("full.sqlite");
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.len();
    bytes[end - 3000..end - 2000].iter_mut().for_each(|b| *b = 0xAB);
    std::fs::write(&path, &bytes).unwrap();
    let (ok, out, err) =
        ualign(dir.path(), &["stats", "full.toml", "--db", "full.sqlite", "--replicates", "50", "--k-max", "2"]);
    assert!(!ok, "stats succeeded on a damaged file:\n{out}");
    assert!(err.contains("is damaged") && err.contains("full.sqlite"), "{err}");
    assert!(out.trim().is_empty(), "numbers from a damaged file were shown:\n{out}");
}

/// The example study with only pick-of-3 rank trials: no participant orders a whole pool.
fn pick_study(dir: &Path) -> PathBuf {
    let path = full_pool_study(dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let picks = text.replace("m = 8\nmode = \"order\"\ntrials = 3", "m = 3\nmode = \"pick\"\ntrials = 24");
    assert_ne!(picks, text);
    let path = dir.join("picks.toml");
    std::fs::write(&path, picks).unwrap();
    path
}

/// The study's pools imported and `participants` of a `plmix:2:4` population answering
/// it, their latent orders in truth.jsonl.
fn plmix_answers(d: &Path, study: &str, participants: &str, seed: &str) {
    for args in [
        &["init", study][..],
        &["import", study, "--policy", "sampled", "--candidates", "example/sampled.jsonl"],
        &["import", study, "--policy", "greedy", "--candidates", "example/greedy.jsonl"],
        &[
            "simulate",
            study,
            "--participants",
            participants,
            "--population",
            "plmix:2:4",
            "--seed",
            seed,
            "--latent-out",
            "truth.jsonl",
        ],
    ] {
        let (ok, out, err) = ualign(d, args);
        assert!(ok, "{args:?}: {out}{err}");
    }
}

#[test]
fn a_pick_only_study_gets_model_based_certified_curves_that_hold_on_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pick_study(d);
    plmix_answers(d, "picks.toml", "120", "3");
    let args = [
        "stats",
        "picks.toml",
        "--json",
        "--replicates",
        "50",
        "--k-max",
        "4",
        "--model-replicates",
        "8",
        "--max-classes",
        "3",
    ];
    let (ok, out, err) = ualign(d, &args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let model = &v["population_model"];
    assert_eq!(model["classes"], 2, "{model}");
    for key in ["weights", "log_likelihood", "bic", "icl", "restarts", "restarts_agreed", "compared"] {
        assert!(model.get(key).is_some(), "population_model lacks {key}");
    }
    let rows: Vec<&serde_json::Value> =
        v["equilibria"].as_array().unwrap().iter().filter(|e| e["method"] == "pl_mixture").collect();
    assert!(!rows.is_empty());
    ne_holds_on_the_truth(&rows, &d.join("truth.jsonl"), 0.06);
    let (ok, out, err) = ualign(d, &args[..args.len()].iter().copied().filter(|a| *a != "--json").collect::<Vec<_>>());
    assert!(ok, "{err}");
    assert!(out.contains("model-based, from every choice") && out.contains("C = 2 by BIC"), "{out}");
}

/// Most classes' orders of each prompt's responses (by their fitted worths) are within two
/// swaps (0.8 of the pairs in order) of a true order.
fn orders_within_two_swaps_of_the_truth(classes: &[serde_json::Value], truth_file: &Path) {
    // Each prompt's true orders (one per class) against the orders of the fitted worths.
    let mut truth: std::collections::BTreeMap<String, std::collections::BTreeSet<Vec<i64>>> = Default::default();
    for line in std::fs::read_to_string(truth_file).unwrap().lines() {
        let t: serde_json::Value = serde_json::from_str(line).unwrap();
        let order = t["order"].as_array().unwrap().iter().map(|c| c.as_i64().unwrap()).collect();
        truth.entry(t["prompt"].as_str().unwrap().to_string()).or_default().insert(order);
    }
    let (mut recovered, mut all) = (0, 0);
    for class in classes {
        for p in class["prompts"].as_array().unwrap() {
            let ids: Vec<i64> = p["candidates"].as_array().unwrap().iter().map(|c| c.as_i64().unwrap()).collect();
            let w: Vec<f64> = p["log_worths"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert!(w.iter().sum::<f64>().abs() < 1e-9, "centred: {w:?}");
            let mut order: Vec<usize> = (0..ids.len()).collect();
            order.sort_by(|&a, &b| w[b].total_cmp(&w[a]));
            let order: Vec<i64> = order.into_iter().map(|i| ids[i]).collect();
            // The share of pairs this class orders as the nearest true order does.
            let rank = |o: &Vec<i64>, id: i64| o.iter().position(|&c| c == id).unwrap();
            let agreement = truth[p["prompt"].as_str().unwrap()]
                .iter()
                .map(|t| {
                    let (mut same, mut pairs) = (0, 0);
                    for a in 0..order.len() {
                        for b in a + 1..order.len() {
                            pairs += 1;
                            same += usize::from(rank(t, order[a]) < rank(t, order[b]));
                        }
                    }
                    same as f64 / pairs as f64
                })
                .fold(0.0, f64::max);
            all += 1;
            recovered += usize::from(agreement >= 0.8);
        }
    }
    // Five responses ordered from 80 picks of three per class and prompt: most orders
    // come out whole or within two swaps of a true one (0.8 of the pairs in order).
    assert!(recovered * 10 >= all * 9, "{recovered} of {all} class orders are within two swaps of true ones");
}

/// A cyclic population (five classes, each a rotation of one order) in a pick-only study:
/// the search for C goes past its first four fits until BIC turns and finds the five, each
/// class's worths (in the JSON, for audit) order the responses as one of the true orders;
/// a search held to fewer classes says, in text and JSON, that it stopped at its limit.
#[test]
fn the_class_search_goes_on_until_bic_turns_and_says_when_it_stopped_at_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pick_study(d);
    for args in [
        &["init", "picks.toml"][..],
        &["import", "picks.toml", "--policy", "sampled", "--candidates", "example/sampled.jsonl"],
        &["import", "picks.toml", "--policy", "greedy", "--candidates", "example/greedy.jsonl"],
        &[
            "simulate",
            "picks.toml",
            "--participants",
            "100",
            "--population",
            "cyclic",
            "--seed",
            "1",
            "--latent-out",
            "truth.jsonl",
        ],
    ] {
        let (ok, out, err) = ualign(d, args);
        assert!(ok, "{args:?}: {out}{err}");
    }
    let args = ["stats", "picks.toml", "--replicates", "20", "--k-max", "2", "--model-replicates", "2"];
    let (ok, json, err) = ualign(d, &[&args[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let model = &v["population_model"];
    assert_eq!(model["classes"], 5, "{model}");
    assert_eq!(model["class_search"], serde_json::json!({"limit": 16, "fitted": 6, "stopped_at_limit": false}));
    let classes = model["class_worths"].as_array().unwrap();
    assert_eq!(classes.len(), 5);
    let weights: f64 = classes.iter().map(|c| c["weight"].as_f64().unwrap()).sum();
    assert!((weights - 1.0).abs() < 1e-9, "{weights}");
    orders_within_two_swaps_of_the_truth(classes, &d.join("truth.jsonl"));
    let (ok, text, err) = ualign(d, &args);
    assert!(ok, "{err}");
    assert!(text.contains("C = 5 by BIC") && !text.contains("WARNING"), "{text}");
    // Held to three classes, it says so.
    let held = [&args[..], &["--max-classes", "3"]].concat();
    let (ok, json, err) = ualign(d, &[&held[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["population_model"]["class_search"],
        serde_json::json!({"limit": 3, "fitted": 3, "stopped_at_limit": true})
    );
    let (ok, text, err) = ualign(d, &held);
    assert!(ok, "{err}");
    assert!(
        text.contains("WARNING: BIC was still falling at C = 3") && text.contains("larger --max-classes"),
        "{text}"
    );
}

/// One participant (the demo's case): one class, model-based rows with intervals, and the
/// text says why those intervals have no width.
#[test]
fn one_participant_gets_model_based_rows_and_is_told_what_their_intervals_mean() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pick_study(d);
    plmix_answers(d, "picks.toml", "1", "4");
    let args = ["stats", "picks.toml", "--replicates", "20", "--k-max", "3", "--model-replicates", "5"];
    let (ok, out, err) = ualign(d, &args);
    assert!(ok, "{err}");
    assert!(out.contains("(1 participants,") && out.contains("C = 1 by BIC"), "{out}");
    assert!(out.contains("one participant: every bootstrap resample is that same person"), "{out}");
    let (ok, json, err) = ualign(d, &[&args[..], &["--json"]].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows: Vec<&serde_json::Value> =
        v["equilibria"].as_array().unwrap().iter().filter(|e| e["method"] == "pl_mixture").collect();
    assert!(rows.iter().any(|r| r["policy"] == "ne") && rows.iter().any(|r| r["policy"] == "nlhf"), "{json}");
    for r in rows {
        assert_eq!(r["ci_low"], r["ci_high"], "{r}");
    }
}

/// Where every participant ordered whole pools, the model's equilibria are the exact
/// analysis's within the model's fit: base and NLHF certify nearly the same under the
/// fitted population as under the stated orders, and the model's NE_k holds on the true
/// orders within the issue's 0.03 of k/(k+1).
#[test]
fn full_orders_give_the_model_the_equilibria_of_the_exact_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    full_pool_study(d);
    plmix_answers(d, "full.toml", "200", "5");
    let (ok, out, err) = ualign(
        d,
        &[
            "stats",
            "full.toml",
            "--json",
            "--replicates",
            "20",
            "--k-max",
            "4",
            "--model-replicates",
            "2",
            "--max-classes",
            "3",
            "--orders-replicates",
            "40",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["equilibria"].as_array().unwrap();
    // Both analyses' intervals are for the population: with NE_k re-solved on every
    // resample and judged on the full sample (or fit), whose NE_k it is not, NE_k's interval
    // lies at or below k/(k+1); for the exact rows from k = 2 it reaches below (the
    // equilibrium of one sample of orders is seldom quite that of another, though a few
    // resamples may keep the full sample's support, so the upper end may touch the bound).
    let mut mixed_rows = 0;
    for e in rows.iter().filter(|e| e["policy"] == "ne") {
        let (k, lo, hi, optimism) = (
            e["k"].as_f64().unwrap(),
            e["ci_low"].as_f64().unwrap(),
            e["ci_high"].as_f64().unwrap(),
            e["optimism"].as_f64().unwrap(),
        );
        let bound = k / (k + 1.0);
        assert!(hi <= bound + 1e-6 && optimism >= -1e-6, "{e}");
        // A response everyone ranks first is every resample's equilibrium too: such a pure
        // NE_k is certain, and only a mixed one carries sampling error.
        let mixed =
            e["distribution"].as_array().unwrap().iter().filter(|c| c["p"].as_f64().unwrap() > 1e-9).count() > 1;
        if e["method"] == "orders" && k >= 2.0 && mixed {
            assert!(lo < bound - 1e-3 && optimism > 1e-4, "{e}");
            mixed_rows += 1;
        }
    }
    assert!(mixed_rows >= 2, "{mixed_rows} exact rows with a mixed NE_k");
    let of = |method: &str| -> std::collections::BTreeMap<(String, u64, String), f64> {
        rows.iter()
            .filter(|e| e["method"] == method)
            .map(|e| {
                let key = (
                    e["prompt"].as_str().unwrap().to_string(),
                    e["k"].as_u64().unwrap(),
                    e["policy"].as_str().unwrap().to_string(),
                );
                (key, e["certified_win_rate"].as_f64().unwrap())
            })
            .collect()
    };
    let (exact, model) = (of("orders"), of("pl_mixture"));
    assert!(!exact.is_empty() && exact.len() == model.len(), "{} exact rows, {} model rows", exact.len(), model.len());
    for (key, e) in &exact {
        let m = model[key];
        assert!((e - m).abs() < 0.05, "{key:?}: {e} from the orders, {m} from the model");
    }
    let model_rows: Vec<&serde_json::Value> = rows.iter().filter(|e| e["method"] == "pl_mixture").collect();
    ne_holds_on_the_truth(&model_rows, &d.join("truth.jsonl"), 0.03);
}

/// The model's NE_k of each row, evaluated exactly on the population's true latent orders,
/// certifies within `tol` of k/(k+1); every interval is ordered.
fn ne_holds_on_the_truth(rows: &[&serde_json::Value], truth: &Path, tol: f64) {
    let truth: Vec<serde_json::Value> =
        std::fs::read_to_string(truth).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in rows {
        let (lo, hi) = (e["ci_low"].as_f64().unwrap(), e["ci_high"].as_f64().unwrap());
        assert!(lo <= hi, "{e}");
        if e["policy"] != "ne" {
            continue;
        }
        // The model's NE_k, evaluated exactly on the true latent orders of the population.
        let prompt = e["prompt"].as_str().unwrap();
        let k = e["k"].as_u64().unwrap() as u32;
        let ids: Vec<i64> =
            e["distribution"].as_array().unwrap().iter().map(|m| m["candidate"].as_i64().unwrap()).collect();
        let x: Vec<f64> = e["distribution"].as_array().unwrap().iter().map(|m| m["p"].as_f64().unwrap()).collect();
        let orders: Vec<Order> = truth
            .iter()
            .filter(|t| t["prompt"] == prompt)
            .map(|t| {
                t["order"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|c| ids.iter().position(|i| *i == c.as_i64().unwrap()))
                    .collect()
            })
            .collect();
        assert!(orders.iter().all(|o| o.len() == ids.len()), "the truth covers the pool");
        let on_truth = equilibria::certified_win_rate(&orders, &x, k);
        let bound = k as f64 / (k as f64 + 1.0);
        assert!(on_truth > bound - tol, "{prompt} k {k}: {on_truth} on the truth, bound {bound}");
    }
}

#[test]
fn which_copy_of_a_text_stood_in_a_slot_changes_nothing_in_the_report() {
    // Copies of one text are one response everywhere: moving copies between the slots
    // they filled (as if the participant had seen, and chosen, the other copy) must leave
    // every number of the report as it was. The example's greedy pools are four copies.
    let dir = tempfile::tempdir().unwrap();
    let (s, store) = simulated(dir.path(), 40, &"plmix:2:3".parse().unwrap());
    let before = serde_json::to_value(Report::compute(&s, &store, &options(&s)).unwrap()).unwrap();
    let db = store.path().to_path_buf();
    drop(store);
    let c = rusqlite::Connection::open(&db).unwrap();
    let of: std::collections::HashMap<i64, (String, String)> = c
        .prepare("SELECT id, policy, text FROM candidates")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let trials: Vec<(i64, String)> = c
        .prepare("SELECT id, candidate_ids FROM trials WHERE candidate_ids IS NOT NULL")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut moved = 0;
    for (id, shown) in trials {
        let mut ids: Vec<i64> = serde_json::from_str(&shown).unwrap();
        // The slots of each policy's copies of one text: their ids rotated by one.
        let mut copies: std::collections::BTreeMap<&(String, String), Vec<usize>> = Default::default();
        for (slot, cid) in ids.iter().enumerate() {
            copies.entry(&of[cid]).or_default().push(slot);
        }
        let rotations: Vec<Vec<usize>> = copies.into_values().filter(|slots| slots.len() > 1).collect();
        for slots in &rotations {
            let first = ids[slots[0]];
            for w in slots.windows(2) {
                ids[w[0]] = ids[w[1]];
            }
            ids[*slots.last().unwrap()] = first;
        }
        if !rotations.is_empty() {
            moved += 1;
            c.execute("UPDATE trials SET candidate_ids = ?1 WHERE id = ?2", (serde_json::to_string(&ids).unwrap(), id))
                .unwrap();
        }
    }
    drop(c);
    assert!(moved > 40, "copies were moved in {moved} trials");
    let store = Store::open_existing(&db).unwrap();
    let after = serde_json::to_value(Report::compute(&s, &store, &options(&s)).unwrap()).unwrap();
    assert!(before == after, "the report changed when copies changed places");
}

#[test]
fn picks_and_orders_of_parts_of_a_pool_are_no_whole_pool_rankings() {
    // 24 picks of 3, or orders of 3, per participant name every response of a prompt's
    // pool between them; a ranking estimated from them is still nobody's ranking of the
    // pool, so the exact analysis has none and says so, and the model stands in.
    for mode in ["pick", "order"] {
        let dir = tempfile::tempdir().unwrap();
        let (s, store) = simulated_with(dir.path(), 30, &"plmix:2:3".parse().unwrap(), 5, |text| {
            let parts = format!("\nm = 3\nmode = \"{mode}\"\ntrials = 24\n");
            let text = text.replace("\nm = 8\nmode = \"order\"\ntrials = 3\n", &parts);
            assert!(text.contains("trials = 24"));
            text
        });
        let (r, rankings) = with_rankings(&s, &store, &options(&s));
        assert!(r.equilibria.iter().all(|e| e.method == "pl_mixture"), "{mode}: exact rows from estimated rankings");
        assert_eq!(r.equilibria_skipped.len(), s.prompts.len(), "{mode}");
        for skipped in &r.equilibria_skipped {
            assert_eq!(skipped.participants_covering, 0, "{mode}: {skipped:?}");
            assert!(skipped.participants_partial > 0, "{mode}: {skipped:?}");
        }
        // Between them, the answers did name every response of the pools.
        let named = rankings.iter().filter(|k| k.method != "pl_mixture" && k.order.len() >= 5).count();
        assert!(named > 0, "{mode}: no estimated ranking named the pool's responses");
    }
}

/// A best_of_k study of 24 prompts whose policy A ("long") writes 12–30 words and B
/// ("short") 3–8, pools of 6.
fn length_study(d: &Path) {
    let words = ["river", "stone", "paper", "window", "garden", "candle", "harbor", "maple"];
    let (mut prompts, mut long, mut short) = (String::new(), String::new(), String::new());
    for p in 0..24 {
        prompts += &format!("{{\"id\": \"p{p}\", \"text\": \"Prompt {p}.\"}}\n");
        for i in 0..6 {
            let text = |n: usize| (0..n).map(|j| words[(p * 7 + i * 3 + j) % 8]).collect::<Vec<_>>().join(" ");
            let line = |t: String| format!("{{\"prompt_id\": \"p{p}\", \"text\": \"{t}\", \"sample_index\": {i}}}\n");
            long += &line(format!("long {i}: {}", text(12 + (p + 3 * i) % 19)));
            short += &line(format!("short {i}: {}", text(3 + (p + i) % 6)));
        }
    }
    for (name, text) in [("prompts.jsonl", prompts), ("long.jsonl", long), ("short.jsonl", short)] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let study = r#"name = "length"
title = "Length"
seed = 3
consent = "Synthetic participants."
instructions = "Synthetic participants."
completion_code = "LEN"
prompts_file = "prompts.jsonl"

[[policies]]
name = "long"
source = "imported"
pool_size = 6

[[policies]]
name = "short"
source = "imported"
pool_size = 6

[[blocks]]
name = "scaling"
design = "best_of_k"
policy_a = "long"
policy_b = "short"
k = [1, 2]
trials = 24
attention_checks = 0
repeat_fraction = 0.0
"#;
    std::fs::write(d.join("length.toml"), study).unwrap();
}

/// Participants who care for length alone (pl:0: no text better than another otherwise):
/// f(1) is well above 1/2, and the length control says length is why.
#[test]
fn a_row_won_by_length_alone_is_flagged_in_stats_and_the_dashboard() {
    use ualign::tui::dashboard::{self, Dashboard};
    use ualign::tui::draw::Theme;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    length_study(d);
    ualign_all(
        d,
        &[
            &["init", "length.toml"],
            &["import", "length.toml", "--policy", "long", "--candidates", "long.jsonl"],
            &["import", "length.toml", "--policy", "short", "--candidates", "short.jsonl"],
            &["simulate", "length.toml", "--participants", "80", "--population", "pl:0", "--length-bias", "2"],
            &[
                "simulate",
                "length.toml",
                "--participants",
                "10",
                "--population",
                "pl:0",
                "--no-preference",
                "2",
                "--seed",
                "1",
            ],
        ],
        &["--db", "l.sqlite"],
    );
    // No bootstrap of the worths or the agreement at all: their intervals are null (this
    // panicked on an empty set of replicates once).
    let quick = ["--db", "l.sqlite", "--replicates", "200", "--model-replicates", "0", "--worth-replicates", "0"];
    let (ok, json, err) = ualign(d, &[&["stats", "length.toml", "--json"][..], &quick].concat());
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let k1 = v["fk"].as_array().unwrap().iter().find(|r| r["k"] == 1).unwrap();
    let lc = &k1["length_control"];
    assert!(k1["ci_low"].as_f64().unwrap() > 0.5, "{k1}");
    assert!(lc["low"].as_f64().unwrap() < 0.5 && 0.5 < lc["high"].as_f64().unwrap(), "{lc}");
    assert!(lc["length_coef_low"].as_f64().unwrap() > 0.5 && lc["length_ratio"].as_f64().unwrap() > 2.0, "{lc}");
    assert_eq!(lc["effect"], "explains", "{lc}");
    assert!(lc["note"].as_str().unwrap().starts_with("length explains the effect"), "{lc}");
    // Ten participants answered "no preference" at times: ν is fitted in every row.
    for r in v["fk"].as_array().unwrap() {
        let lc = &r["length_control"];
        assert!(lc["nu"].as_f64().unwrap() > 0.0 && lc["no_preference_share"].as_f64().unwrap() > 0.0, "{r}");
    }
    let (ok, text, err) = ualign(d, &[&["stats", "length.toml"][..], &quick].concat());
    assert!(ok, "{err}");
    assert!(
        text.contains("length control and \"no preference\"") && text.contains("at k = 1: length explains"),
        "{text}"
    );
    // The dashboard flags it among the data-quality lines.
    let (s, _) = study::load(&d.join("length.toml")).unwrap();
    let (store, _) = Store::open_for_study(&d.join("l.sqlite"), &s).unwrap();
    let report = Report::compute(&s, &store, &options(&s)).unwrap();
    let dash = Dashboard { study: s.name.clone(), db: "l.sqlite".into(), report: Some(report), ..Default::default() };
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(140, 40)).unwrap();
    t.draw(|f| dashboard::draw(f, &dash, Theme { color: false })).unwrap();
    assert!(screen(&t).contains("length explains f(k) at k=1"), "{}", screen(&t));
}

#[test]
fn simulated_length_bias_and_ties_need_worths_and_sane_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    full_pool_study(d);
    ualign_all(
        d,
        &[
            &["init", "full.toml"],
            &["import", "full.toml", "--policy", "sampled", "--candidates", "example/sampled.jsonl"],
            &["import", "full.toml", "--policy", "greedy", "--candidates", "example/greedy.jsonl"],
        ],
        &["--db", "full.sqlite"],
    );
    for (args, want) in [
        (&["--population", "cyclic", "--length-bias", "1"][..], "needs a Plackett–Luce population"),
        (&["--population", "pl:1", "--no-preference", "-1"], "below 0"),
        (&["--population", "pl:1", "--length-bias", "inf"], "not a finite number"),
    ] {
        let (ok, out, err) =
            ualign(d, &[&["simulate", "full.toml", "--db", "full.sqlite", "--participants", "2"][..], args].concat());
        assert!(!ok && err.contains(want), "{args:?}: {out}{err}");
    }
    // A study that does not offer "no preference" cannot have it simulated.
    let text = std::fs::read_to_string(d.join("full.toml"))
        .unwrap()
        .replace("allow_no_preference = true", "allow_no_preference = false");
    std::fs::write(d.join("nopref.toml"), text).unwrap();
    let (ok, out, err) = ualign(
        d,
        &[
            "simulate",
            "nopref.toml",
            "--db",
            "n.sqlite",
            "--participants",
            "2",
            "--population",
            "pl:1",
            "--no-preference",
            "1",
        ],
    );
    assert!(!ok && err.contains("does not offer"), "{out}{err}");
}

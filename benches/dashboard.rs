//! Dashboard redraw (target: under 16 ms, one frame at 60 Hz) at 160×48 on a report of the
//! analysis benchmark's size when benches/peers/stats_data.py has built it (UALIGN_BENCH_DB and
//! UALIGN_BENCH_STUDY), else of the example study with 200 simulated participants ranking
//! whole pools. The peer in the same run is a full-screen Paragraph of the same size: the
//! floor of any ratatui frame.

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::widgets::{Block, Paragraph};
use ualign::tui::dashboard::{self, Dashboard};
use ualign::tui::draw::Theme;
use ualign_core::analysis::report::{Options, Report};
use ualign_core::store::Store;
use ualign_core::study;

fn example_report() -> Report {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    std::fs::create_dir_all(d.join("example")).expect("folder");
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), d.join("example").join(f)).expect("copy");
    }
    let text = std::fs::read_to_string(src.join("example.toml")).expect("example study");
    std::fs::write(d.join("full.toml"), text.replace("\nm = 3\n", "\nm = 8\n")).expect("write");
    let (s, _) = study::load(&d.join("full.toml")).expect("study loads");
    let (mut store, _) = Store::open_for_study(&d.join("full.sqlite"), &s).expect("store");
    for p in ["sampled", "greedy"] {
        ualign_core::pools::import::import_candidates(&mut store, &s, p, &d.join(format!("example/{p}.jsonl")), false)
            .expect("import");
    }
    ualign_core::simulate::simulate(&s, &mut store, 200, &ualign_core::simulate::Population::Cyclic, 1)
        .expect("simulate");
    Report::compute(&s, &store, &Options::for_study(&s)).expect("report")
}

fn report() -> Report {
    match (std::env::var_os("UALIGN_BENCH_STUDY"), std::env::var_os("UALIGN_BENCH_DB")) {
        (Some(study_path), Some(db)) => {
            let (s, _) = study::load(&PathBuf::from(study_path)).expect("study loads");
            let store = Store::open_existing(&PathBuf::from(db)).expect("database opens");
            let opts = Options { worth_replicates: 0, k_max: 16, ..Options::for_study(&s) };
            Report::compute(&s, &store, &opts).expect("report")
        }
        _ => example_report(),
    }
}

fn redraw(c: &mut Criterion) {
    let d =
        Dashboard { study: "bench".into(), db: "bench.sqlite".into(), report: Some(report()), ..Default::default() };
    let theme = Theme { color: true };
    let mut t = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
    let lines: Vec<String> = (0..46).map(|i| format!("{i:>3} {}", "x".repeat(150))).collect();
    let mut g = c.benchmark_group("dashboard_160x48");
    g.bench_function("dashboard", |b| {
        b.iter(|| {
            t.draw(|f| dashboard::draw(f, &d, theme)).expect("draws");
        })
    });
    g.bench_function("paragraph_peer", |b| {
        b.iter(|| {
            t.draw(|f| f.render_widget(Paragraph::new(lines.join("\n")).block(Block::bordered()), f.area()))
                .expect("draws");
        })
    });
    g.finish();
}

criterion_group!(benches, redraw);
criterion_main!(benches);

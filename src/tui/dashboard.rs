//! `ualign dashboard`: the researcher's live view of a study. A watcher thread polls the
//! database (SQLite's `data_version` changes whenever another process commits, e.g. a
//! participant's answer) and recomputes the report off the UI thread; the UI draws the
//! latest report: the f(k) chart with interval bars, k/(k+1) and the certified curves,
//! participant progress, the f(k) table and data-quality flags.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph, Wrap};

use super::draw::Theme;
use crate::analysis::report::{FkChart, Options, Report};
use crate::store::Store;
use crate::study::Study;

/// Smallest window the dashboard draws into.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 18;

/// What the dashboard shows.
#[derive(Debug, Default)]
pub struct Dashboard {
    pub study: String,
    pub db: String,
    pub report: Option<Report>,
    /// When the shown report was computed, and how long it took.
    pub updated: Option<(chrono::DateTime<chrono::Local>, Duration)>,
    pub computing: bool,
    pub error: Option<String>,
}

/// Messages from the watcher thread.
pub enum Update {
    Computing,
    Ready(Box<Report>, Duration),
    Failed(String),
}

/// Watches the database and sends a fresh report after every change (and at start).
/// `refresh` asks for a recomputation now.
pub fn spawn_watcher(
    study: Study,
    db: PathBuf,
    opts: Options,
    refresh: Arc<AtomicBool>,
    tx: mpsc::Sender<Update>,
) -> std::io::Result<()> {
    std::thread::Builder::new().name("ualign-dashboard".into()).spawn(move || {
        // SQLite's full integrity check, once: numbers from a damaged file are never shown.
        let store = match Store::open_existing(&db).and_then(|s| s.check_integrity().map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Update::Failed(e.to_string()));
                return;
            }
        };
        let mut seen: Option<i64> = None;
        loop {
            let version = store.data_version().ok();
            if version != seen || refresh.swap(false, Ordering::Relaxed) {
                seen = version;
                if tx.send(Update::Computing).is_err() {
                    return;
                }
                let start = Instant::now();
                let msg = match Report::compute(&study, &store, &opts) {
                    Ok(r) => Update::Ready(Box::new(r), start.elapsed()),
                    Err(e) => Update::Failed(format!("reading {}: {e}", db.display())),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })?;
    Ok(())
}

impl Dashboard {
    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Computing => self.computing = true,
            Update::Ready(r, took) => {
                self.report = Some(*r);
                self.updated = Some((chrono::Local::now(), took));
                self.computing = false;
                self.error = None;
            }
            Update::Failed(e) => {
                self.computing = false;
                self.error = Some(e);
            }
        }
    }
}

/// Runs the dashboard until q, Esc or Ctrl-C (or SIGTERM/SIGHUP).
pub fn run(study: Study, db: PathBuf, opts: Options) -> anyhow::Result<()> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, signalled.clone())?;
    }
    let mut dash = Dashboard { study: study.name.clone(), db: db.display().to_string(), ..Default::default() };
    let refresh = Arc::new(AtomicBool::new(false));
    let (tx, updates) = mpsc::channel();
    spawn_watcher(study, db, opts, refresh.clone(), tx)?;
    let theme = Theme::from_env();
    let mut guard = super::TerminalGuard::new()?;
    let (etx, events) = mpsc::channel();
    std::thread::Builder::new().name("ualign-input".into()).spawn(move || {
        while let Ok(ev) = event::read() {
            if etx.send(ev).is_err() {
                break;
            }
        }
    })?;
    loop {
        while let Ok(u) = updates.try_recv() {
            dash.apply(u);
        }
        guard.terminal.draw(|f| draw(f, &dash, theme))?;
        if signalled.load(Ordering::Relaxed) {
            return Ok(());
        }
        match events.recv_timeout(Duration::from_millis(200)) {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
                KeyCode::Char('r') => refresh.store(true, Ordering::Relaxed),
                _ => {}
            },
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Colours for the pairs of policies (empirical series) and the certified curves.
const PAIR_COLOURS: [Color; 3] = [Color::Cyan, Color::Yellow, Color::Green];

/// A labelled series of chart points.
type Series<L> = (L, Color, Vec<(f64, f64)>);

pub fn draw(f: &mut Frame, d: &Dashboard, theme: Theme) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "The dashboard needs a window of at least {MIN_WIDTH}×{MIN_HEIGHT}; this one is {}×{}.\nEnlarge it, or press q to quit.",
            area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [top, body, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    let status = if let Some(e) = &d.error {
        Span::styled(format!("error: {e}"), theme.style(Color::Red).add_modifier(Modifier::BOLD))
    } else if d.computing && d.report.is_none() {
        Span::raw("computing…")
    } else {
        match &d.updated {
            Some((at, took)) => Span::raw(format!(
                "updated {} ({} ms){}",
                at.format("%H:%M:%S"),
                took.as_millis(),
                if d.computing { ", recomputing…" } else { "" }
            )),
            None => Span::raw("waiting for data"),
        }
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!(" ualign dashboard · {} ", d.study), Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!("· {} · ", d.db)),
            status,
        ])),
        top,
    );
    f.render_widget(
        Paragraph::new(" q quit · r recompute now · refreshes by itself when answers arrive")
            .style(Style::default().add_modifier(Modifier::DIM)),
        keys,
    );
    let Some(r) = &d.report else {
        return;
    };
    let side = (body.width / 3).clamp(34, 56);
    let [chart_area, side_area] = Layout::horizontal([Constraint::Min(0), Constraint::Length(side)]).areas(body);
    let chart = FkChart::of(r);
    draw_chart(f, chart_area, r, &chart, theme);
    draw_side(f, side_area, r, &chart, theme);
}

fn draw_chart(f: &mut Frame, area: Rect, r: &Report, chart: &FkChart, theme: Theme) {
    let (k_max, y_min) = (chart.k_max, chart.y_min);
    // The datasets borrow their points: build every series first.
    let bound: Vec<(f64, f64)> = (0..=4 * k_max)
        .map(|i| 1.0 + (k_max - 1) as f64 * i as f64 / (4 * k_max) as f64)
        .map(|k| (k, k / (k + 1.0)))
        .collect();
    let curves: Vec<Series<&str>> = [("NE_k", Color::Magenta), ("NLHF^k", Color::Red), ("base^k", Color::Blue)]
        .into_iter()
        .zip(["ne", "nlhf", "base"])
        .map(|((label, c), p)| (label, c, chart.curve(p)))
        .filter(|(_, _, pts): &Series<&str>| !pts.is_empty())
        .collect();
    let pairs = &chart.pairs;
    let mut points: Vec<Series<String>> = Vec::new();
    let mut bars: Vec<(Color, [(f64, f64); 2])> = Vec::new();
    for (i, (a, b)) in pairs.iter().enumerate() {
        let c = PAIR_COLOURS[i % PAIR_COLOURS.len()];
        let dx = (i as f64 - (pairs.len() as f64 - 1.0) / 2.0) * 0.12;
        let rows = chart.rows(r, i);
        for x in &rows {
            if x.ci_low.is_finite() {
                bars.push((c, [(x.k as f64 + dx, x.ci_low), (x.k as f64 + dx, x.ci_high)]));
            }
        }
        points.push((format!("{a} vs {b}"), c, rows.iter().map(|x| (x.k as f64 + dx, x.rate)).collect()));
    }
    // Without colour (NO_COLOR) the series differ by marker, named in the legend.
    let mono = !theme.color;
    let named = |label: &str, symbol: &str| if mono { format!("{label} {symbol}") } else { label.to_string() };
    let curve_marker = |label: &str| match (mono, label) {
        (false, _) => Marker::Braille,
        (true, "NE_k") => Marker::Dot,
        (true, "NLHF^k") => Marker::Bar,
        (true, _) => Marker::Quadrant,
    };
    let curve_symbol = |label: &str| match label {
        "NE_k" => "•",
        "NLHF^k" => "▄",
        _ => "▚",
    };
    let mut datasets = vec![
        Dataset::default()
            .name(named("k/(k+1)", "⠒"))
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.style(Color::White))
            .data(&bound),
    ];
    for (label, c, pts) in &curves {
        datasets.push(
            Dataset::default()
                .name(named(label, curve_symbol(label)))
                .marker(curve_marker(label))
                .graph_type(GraphType::Line)
                .style(theme.style(*c))
                .data(pts),
        );
    }
    for (c, seg) in &bars {
        datasets.push(
            Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(theme.style(*c)).data(seg),
        );
    }
    for (label, c, pts) in &points {
        datasets.push(
            Dataset::default()
                .name(named(label, "█"))
                .marker(if mono { Marker::Block } else { Marker::Dot })
                .graph_type(GraphType::Scatter)
                .style(theme.style(*c).add_modifier(Modifier::BOLD))
                .data(pts),
        );
    }
    let x_labels: Vec<Span> = [1, k_max.div_ceil(2), k_max].into_iter().map(|k| Span::raw(k.to_string())).collect();
    let y_labels: Vec<Span> =
        [y_min, (y_min + 1.0) / 2.0, 1.0].into_iter().map(|y| Span::raw(format!("{y:.2}"))).collect();
    let widget = Chart::new(datasets)
        .block(Block::bordered().title(" f(k): observed (dots, 95% CI bars) · k/(k+1) · certified over the pools "))
        .x_axis(Axis::default().title("k").bounds([0.5, k_max as f64 + 0.5]).labels(x_labels))
        .y_axis(Axis::default().title("win rate").bounds([y_min, 1.0]).labels(y_labels))
        .legend_position(Some(LegendPosition::BottomRight))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)));
    f.render_widget(widget, area);
}

fn draw_side(f: &mut Frame, area: Rect, r: &Report, chart: &FkChart, theme: Theme) {
    let p = &r.progress;
    let pct = if p.trials > 0 { 100.0 * p.answered as f64 / p.trials as f64 } else { 0.0 };
    let mut lines = vec![
        Line::from(Span::styled("Participants", Style::default().add_modifier(Modifier::BOLD))),
        Line::from(format!(" {} enrolled, {} finished", p.participants, p.completed)),
        Line::from(format!(" {} of {} trials answered ({pct:.0}%)", p.answered, p.trials)),
        Line::from(bar(pct / 100.0, area.width.saturating_sub(4) as usize)),
        Line::from(""),
        Line::from(Span::styled("f(k) observed", Style::default().add_modifier(Modifier::BOLD))),
    ];
    if r.fk.is_empty() {
        lines.push(Line::from(" no answered best_of_k trials yet"));
    }
    for x in &r.fk {
        let ci = if x.ci_low.is_finite() { format!("[{:.2},{:.2}]", x.ci_low, x.ci_high) } else { "[  -  ]".into() };
        let below = x.ci_high.is_finite() && x.ci_high < x.bound;
        lines.push(Line::from(vec![
            Span::raw(format!(
                " {}/{} k={:<2} n={:<4} {:.2} {ci}",
                short(&x.policy_a),
                short(&x.policy_b),
                x.k,
                x.n,
                x.rate
            )),
            Span::styled(if below { " <bound" } else { "" }, theme.style(Color::Yellow)),
        ]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Certified (pool, mean)", Style::default().add_modifier(Modifier::BOLD))));
    let mean = &chart.certified;
    if mean.is_empty() {
        lines.push(Line::from(" needs rankings of whole pools"));
    } else {
        let kmax = mean.keys().map(|(_, k)| *k).max().unwrap_or(1);
        for k in [1, kmax] {
            let v = |p: &str| mean.get(&(p, k)).map(|(v, _)| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            lines.push(Line::from(format!(" k={k:<2} NE {} NLHF {} base {}", v("ne"), v("nlhf"), v("base"))));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Data quality", Style::default().add_modifier(Modifier::BOLD))));
    let q = &r.quality;
    for b in &q.position_bias {
        let flag = b.p_value < 0.05;
        lines.push(Line::from(vec![
            Span::raw(format!(" slot bias ({} slots): p={:.3}", b.slots, b.p_value)),
            Span::styled(if flag { " !" } else { "" }, theme.style(Color::Yellow)),
        ]));
    }
    let fast = q.too_fast.len();
    let failed = q.attention.iter().filter(|(_, f, _)| *f > 0).count();
    lines.push(flagged(format!(" too fast (<{} ms): {fast} participants", q.too_fast_ms), fast > 0, theme));
    lines.push(flagged(format!(" failed attention: {failed} of {}", q.attention.len()), failed > 0, theme));
    let (same, n) = q.repeat_agreement;
    if n > 0 {
        lines.push(Line::from(format!(" repeats agree: {same} of {n}")));
    }
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Study ")), area);
}

fn flagged(text: String, flag: bool, theme: Theme) -> Line<'static> {
    Line::from(vec![Span::raw(text), Span::styled(if flag { " !" } else { "" }, theme.style(Color::Yellow))])
}

fn short(s: &str) -> String {
    if s.chars().count() <= 8 { s.to_string() } else { s.chars().take(7).chain(['…']).collect() }
}

fn bar(frac: f64, width: usize) -> String {
    let filled = ((frac.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!(" {}{}", "█".repeat(filled), "░".repeat(width - filled))
}

//! Drawing the dashboard: the f(k) chart with interval bars, k/(k+1) and the certified
//! curves, and the side panel with progress, the f(k) table and data-quality flags.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, LegendPosition, Paragraph, Wrap};

use super::text;
use super::{Dashboard, MIN_HEIGHT, MIN_WIDTH};
use crate::tui::draw::Theme;
use ualign_core::analysis::length::LengthEffect;
use ualign_core::analysis::report::{FkChart, Report};

/// Colours for the pairs of policies (empirical series) and the certified curves.
const PAIR_COLOURS: [Color; 3] = [Color::Cyan, Color::Yellow, Color::Green];

/// A labelled series of chart points.
type Series<L> = (L, Color, Vec<(f64, f64)>);

pub fn draw(f: &mut Frame, d: &Dashboard, theme: Theme) {
    let area = f.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = text::too_small(MIN_WIDTH, MIN_HEIGHT, area.width, area.height);
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [top, body, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    let status = if let Some(e) = &d.error {
        Span::styled(text::error(e), theme.style(Color::Red).add_modifier(Modifier::BOLD))
    } else if d.computing && d.report.is_none() {
        Span::raw(text::COMPUTING)
    } else if let Some(at) = &d.live {
        let model = d.model.map(|m| (m.participants, (chrono::Local::now() - m.at).num_seconds()));
        Span::raw(text::live(&at.format("%H:%M:%S").to_string(), model, d.computing))
    } else {
        match &d.updated {
            Some((at, took)) => {
                Span::raw(text::updated(&at.format("%H:%M:%S").to_string(), took.as_millis(), d.computing))
            }
            None => Span::raw(text::WAITING),
        }
    };
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(text::title(&d.study), Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(text::database(&d.db)),
            status,
        ])),
        top,
    );
    f.render_widget(Paragraph::new(text::KEYS).style(Style::default().add_modifier(Modifier::DIM)), keys);
    let Some(r) = &d.report else {
        return;
    };
    let chart = FkChart::of(r);
    // The side panel is as wide as its widest line (borders included), so nothing in it
    // is cut, but never more than half the window; a line longer than that wraps.
    // Where the f(k) rows with both intervals do not fit, they keep the anytime-valid
    // sequence (the one to watch live) and leave the fixed-N interval to the chart's bars.
    let widest = |compact| side_lines(r, &chart, theme, 0, compact).iter().map(Line::width).max().unwrap_or(0);
    let most = (body.width / 2).max(34);
    let compact = widest(false) as u16 + 2 > most;
    let side = (widest(compact) as u16 + 2).clamp(34, most);
    let [chart_area, side_area] = Layout::horizontal([Constraint::Min(0), Constraint::Length(side)]).areas(body);
    draw_chart(f, chart_area, r, &chart, theme);
    let mut lines = side_lines(r, &chart, theme, side_area.width.saturating_sub(4) as usize, compact);
    if lines.len() > side_area.height.saturating_sub(2) as usize {
        // A short window: the sections go without the blank lines between them, and the
        // f(k) rows without the legend of their sequences (README and `stats` explain it).
        lines.retain(|l| l.width() > 0 && l.to_string() != text::SEQUENCE_LEGEND);
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(text::SIDE_TITLE)),
        side_area,
    );
}

/// The chart's series: k/(k+1), the certified curves, the observed points per pair of
/// policies and their interval bars.
struct ChartSeries {
    bound: Vec<(f64, f64)>,
    curves: Vec<Series<&'static str>>,
    points: Vec<Series<String>>,
    bars: Vec<(Color, [(f64, f64); 2])>,
}

impl ChartSeries {
    fn of(r: &Report, chart: &FkChart) -> Self {
        let k_max = chart.k_max;
        let bound: Vec<(f64, f64)> = (0..=4 * k_max)
            .map(|i| 1.0 + (k_max - 1) as f64 * i as f64 / (4 * k_max) as f64)
            .map(|k| (k, k / (k + 1.0)))
            .collect();
        let curves: Vec<Series<&str>> = text::CURVES
            .into_iter()
            .zip([Color::Magenta, Color::Red, Color::Blue])
            .map(|((label, p), c)| (label, c, chart.curve(p)))
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
            points.push((text::pair(a, b), c, rows.iter().map(|x| (x.k as f64 + dx, x.rate)).collect()));
        }
        Self { bound, curves, points, bars }
    }
}

/// Without colour (NO_COLOR) the series differ by marker, named in the legend.
fn curve_marker(mono: bool, label: &str) -> Marker {
    match (mono, label) {
        (false, _) => Marker::Braille,
        (true, "NE_k") => Marker::Dot,
        (true, "NLHF^k") => Marker::Bar,
        (true, _) => Marker::Quadrant,
    }
}

fn curve_symbol(label: &str) -> &'static str {
    match label {
        "NE_k" => "•",
        "NLHF^k" => "▄",
        _ => "▚",
    }
}

fn draw_chart(f: &mut Frame, area: Rect, r: &Report, chart: &FkChart, theme: Theme) {
    let (k_max, y_min) = (chart.k_max, chart.y_min);
    // The datasets borrow their points: build every series first.
    let s = ChartSeries::of(r, chart);
    let mono = !theme.color;
    let named = |label: &str, symbol: &str| if mono { format!("{label} {symbol}") } else { label.to_string() };
    let mut datasets = vec![
        Dataset::default()
            .name(named(text::BOUND, "⠒"))
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(theme.style(Color::White))
            .data(&s.bound),
    ];
    for (label, c, pts) in &s.curves {
        datasets.push(
            Dataset::default()
                .name(named(label, curve_symbol(label)))
                .marker(curve_marker(mono, label))
                .graph_type(GraphType::Line)
                .style(theme.style(*c))
                .data(pts),
        );
    }
    for (c, seg) in &s.bars {
        datasets.push(
            Dataset::default().marker(Marker::Braille).graph_type(GraphType::Line).style(theme.style(*c)).data(seg),
        );
    }
    for (label, c, pts) in &s.points {
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
        .block(Block::bordered().title(
            // The whole title, or (in a narrow window) its first words rather than a cut one.
            if area.width as usize >= text::CHART_TITLE.chars().count() + 2 {
                text::CHART_TITLE
            } else {
                text::CHART_TITLE_SHORT
            },
        ))
        .x_axis(Axis::default().title(text::X_AXIS).bounds([0.5, k_max as f64 + 0.5]).labels(x_labels))
        .y_axis(Axis::default().title(text::Y_AXIS).bounds([y_min, 1.0]).labels(y_labels))
        .legend_position(Some(LegendPosition::BottomRight))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)));
    f.render_widget(widget, area);
}

/// The side panel's lines: progress (its bar `bar_width` wide), the f(k) table, the
/// certified values and the data-quality flags.
fn side_lines(r: &Report, chart: &FkChart, theme: Theme, bar_width: usize, compact: bool) -> Vec<Line<'static>> {
    let p = &r.progress;
    let pct = if p.trials > 0 { 100.0 * p.answered as f64 / p.trials as f64 } else { 0.0 };
    let mut lines = vec![
        Line::from(Span::styled(text::PARTICIPANTS, Style::default().add_modifier(Modifier::BOLD))),
        Line::from(text::enrolled(p.participants, p.completed)),
        Line::from(text::answered(p.answered, p.trials, pct)),
        Line::from(bar(pct / 100.0, bar_width)),
        Line::from(""),
        Line::from(Span::styled(text::FK_OBSERVED, Style::default().add_modifier(Modifier::BOLD))),
    ];
    if r.fk.is_empty() {
        lines.push(Line::from(text::NO_FK));
    }
    // Rows grouped under their pair of policies, so a row fits a narrow panel.
    let mut pair: Option<(&str, &str)> = None;
    for x in &r.fk {
        if pair != Some((&x.policy_a, &x.policy_b)) {
            pair = Some((&x.policy_a, &x.policy_b));
            lines.push(Line::from(format!(" {}", text::pair(&x.policy_a, &x.policy_b))));
        }
        let ci =
            if x.ci_low.is_finite() { format!("[{:.2},{:.2}]", x.ci_low, x.ci_high) } else { text::NO_INTERVAL.into() };
        let below = x.ci_high.is_finite() && x.ci_high < x.bound;
        let cs = if x.cs_low.is_finite() { text::sequence(x.cs_low, x.cs_high) } else { text::NO_SEQUENCE.into() };
        // The sequence may be stopped on: say when it shows A beating one answer of B.
        let above_half = x.cs_low.is_finite() && x.cs_low > 0.5;
        lines.push(Line::from(vec![
            Span::raw(if compact {
                // One space in, so that a row with its ">1/2" still fits 80 columns.
                format!(" k={:<2} n={:<4} {:.2} {cs}", x.k, x.n, x.rate)
            } else {
                format!("   k={:<2} n={:<4} {:.2} {ci} {cs}", x.k, x.n, x.rate)
            }),
            Span::styled(if below { text::BELOW_BOUND } else { "" }, theme.style(Color::Yellow)),
            Span::styled(if above_half { text::ABOVE_HALF } else { "" }, theme.style(Color::Green)),
        ]));
    }
    if r.fk.iter().any(|x| x.ci_note.is_some()) {
        lines.push(Line::from(text::no_interval_until(ualign_core::analysis::fk::MIN_CLUSTER_PARTICIPANTS)));
    }
    if !r.fk.is_empty() {
        lines.push(Line::from(text::SEQUENCE_LEGEND));
    }
    lines.push(Line::from(""));
    let title = if chart.model_based { text::CERTIFIED_MODEL } else { text::CERTIFIED };
    lines.push(Line::from(Span::styled(title, Style::default().add_modifier(Modifier::BOLD))));
    let mean = &chart.certified;
    if mean.is_empty() {
        lines.push(Line::from(text::NO_CERTIFIED));
    } else {
        let kmax = mean.keys().map(|(_, k)| *k).max().unwrap_or(1);
        for k in [1, kmax] {
            let v = |p: &str| mean.get(&(p, k)).map(|(v, _)| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            lines.push(Line::from(text::certified(k, &v("ne"), &v("nlhf"), &v("base"))));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(text::QUALITY, Style::default().add_modifier(Modifier::BOLD))));
    lines.extend(quality_lines(r, theme));
    lines.extend(length_lines(r, theme));
    lines
}

/// The data-quality checks' lines, flagged where they find something.
fn quality_lines(r: &Report, theme: Theme) -> Vec<Line<'static>> {
    let q = &r.quality;
    if q.median_response_ms.is_none() {
        // No answers, or only the live view so far: nothing checked yet, nothing to clear.
        return vec![Line::from(text::QUALITY_PENDING)];
    }
    let mut lines = Vec::new();
    for b in &q.position_bias {
        let flag = b.p_value < 0.05;
        lines.push(Line::from(vec![
            Span::raw(text::slot_bias(b.slots, b.p_value)),
            Span::styled(if flag { text::FLAG } else { "" }, theme.style(Color::Yellow)),
        ]));
    }
    let fast = q.too_fast.flagged;
    let failed = q.attention.flagged;
    lines.push(flagged(text::too_fast(q.too_fast_ms, fast), fast > 0, theme));
    lines.push(flagged(text::failed_attention(failed, q.attention.participants), failed > 0, theme));
    let (same, n) = q.repeat_agreement;
    if n > 0 {
        lines.push(Line::from(text::repeats(same, n)));
    }
    lines
}

/// The rows whose f(k) length explains or moves (the length control's verdict), flagged.
fn length_lines(r: &Report, theme: Theme) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for effect in [LengthEffect::Explains, LengthEffect::Moves] {
        let mut ks: Vec<u32> =
            r.fk.iter()
                .filter(|x| x.length_control.as_ref().and_then(|l| l.effect) == Some(effect))
                .map(|x| x.k)
                .collect();
        ks.sort_unstable();
        ks.dedup();
        if !ks.is_empty() {
            lines.push(flagged(text::length(effect == LengthEffect::Explains, &ks), true, theme));
        }
    }
    lines
}

fn flagged(line: String, flag: bool, theme: Theme) -> Line<'static> {
    Line::from(vec![Span::raw(line), Span::styled(if flag { text::FLAG } else { "" }, theme.style(Color::Yellow))])
}

fn bar(frac: f64, width: usize) -> String {
    let filled = ((frac.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!(" {}{}", "█".repeat(filled), "░".repeat(width - filled))
}

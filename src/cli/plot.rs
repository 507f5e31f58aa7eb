//! `ualign plot`: the f(k) figure for a paper: empirical win rates with 95% intervals per
//! (A, B) pair, the bound k/(k+1), and the certified curves of the pool's single-output
//! policies (NLHF^k, NE_k, base) averaged over prompts.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use ualign_core::analysis::report::{FkChart, Report};

/// Draw the f(k) figure as SVG or PNG
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    report: super::stats::ReportArgs,
    /// Output file; its extension (.svg or .png) picks the format
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Size in pixels, WIDTHxHEIGHT
    #[arg(long, default_value = "960x640", allow_hyphen_values = true, value_parser = parse_size)]
    size: (u32, u32),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT in pixels (e.g. 960x640), got {s:?}");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if !(200..=10_000).contains(&w) || !(150..=10_000).contains(&h) {
        return Err(format!("{s}: width must be 200-10000 and height 150-10000 pixels"));
    }
    Ok((w, h))
}

#[derive(Clone, Copy)]
enum Format {
    Svg,
    Png,
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let format = match self.out.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => Format::Svg,
            Some("png") => Format::Png,
            _ => bail!("--out {}: the file name must end in .svg or .png", self.out.display()),
        };
        // A bad --out is told before the analysis, which can take a while.
        out_folder(&self.out)?;
        let (study, report) = self.report.compute_with_study()?;
        let title = if study.title.trim().is_empty() { study.name.clone() } else { study.title.clone() };
        write(&report, &title, &self.out, format, self.size)?;
        println!("wrote {}", self.out.display());
        Ok(())
    }
}

/// Writes next to `out` and renames, so a failure never leaves a half-written figure.
fn write(report: &Report, title: &str, out: &Path, format: Format, size: (u32, u32)) -> anyhow::Result<()> {
    let dir = out_folder(out)?;
    let name = out.file_name().and_then(|n| n.to_str()).unwrap_or("figure");
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("svg");
    let tmp = dir.join(format!(".{name}.partial.{ext}"));
    register_font()?;
    let drawn = match format {
        Format::Svg => draw(SVGBackend::new(&tmp, size).into_drawing_area(), report, title),
        Format::Png => draw(BitMapBackend::new(&tmp, size).into_drawing_area(), report, title),
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!("drawing {}", out.display())));
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))
}

/// The folder `out` goes in, which must exist.
fn out_folder(out: &Path) -> anyhow::Result<&Path> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!("--out {}: folder {} does not exist", out.display(), dir.display());
    }
    Ok(dir)
}

/// Text is measured (and for PNG rasterised) with DejaVu Sans, shipped in assets/, so no
/// system fonts are needed.
fn register_font() -> anyhow::Result<()> {
    static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the embedded font assets/fonts/DejaVuSans.ttf could not be read"))
}

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// The bound k/(k+1): a wide grey band under everything, so the certified NEₖ curve (on
/// it by construction for whole pools) is seen on it rather than hidden.
const BOUND: RGBColor = RGBColor(190, 190, 190);

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, report: &Report, title: &str) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    root.fill(&WHITE).map_err(err)?;
    let fk_chart = FkChart::of(report);
    let (k_max, y_min) = (fk_chart.k_max, fk_chart.y_min);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(64)
        .build_cartesian_2d(0.5f64..k_max as f64 + 0.5, y_min..1.0f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("k (candidates offered)")
        .y_desc("win rate against a single response")
        .x_labels(k_max.min(16) as usize)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.1}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    let bound: Vec<(f64, f64)> =
        (0..=200).map(|i| 1.0 + (k_max as f64 - 1.0) * i as f64 / 200.0).map(|k| (k, k / (k + 1.0))).collect();
    chart
        .draw_series(LineSeries::new(bound, BOUND.stroke_width(7)))
        .map_err(err)?
        .label("k/(k+1), the best guarantee")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BOUND.stroke_width(7)));
    draw_certified(&mut chart, &fk_chart).map_err(err)?;
    // Empirical points with 95% cluster-bootstrap intervals, one colour and offset per pair.
    let pairs = &fk_chart.pairs;
    for (i, (a, b)) in pairs.iter().enumerate() {
        let c = COLOURS[i % 3];
        let dx = (i as f64 - (pairs.len() as f64 - 1.0) / 2.0) * 0.08;
        let rows = fk_chart.rows(report, i);
        chart
            .draw_series(
                rows.iter().filter(|r| r.ci_low.is_finite()).map(|r| {
                    ErrorBar::new_vertical(r.k as f64 + dx, r.ci_low, r.rate, r.ci_high, c.stroke_width(2), 8)
                }),
            )
            .map_err(err)?;
        chart
            .draw_series(rows.iter().map(|r| Circle::new((r.k as f64 + dx, r.rate), 5, c.filled())))
            .map_err(err)?
            .label(format!("{a} (best of k) vs {b}: observed, 95% CI, n trials"))
            .legend(move |(x, y)| Circle::new((x + 12, y), 5, c.filled()));
        // How many trials each point rests on, beside it.
        chart
            .draw_series(rows.iter().map(|r| {
                Text::new(
                    format!("n={}", r.n),
                    (r.k as f64 + dx + 0.06, r.rate),
                    ("sans-serif", 13).into_font().color(&c),
                )
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// The certified curves of the pool's policies, dashed, mean over prompts (labelled
/// model-based when the population model made some of them).
fn draw_certified<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    fk_chart: &FkChart,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (i, (policy, label)) in [
        ("ne", "NE\u{2096} certified (mean over prompts)"),
        ("nlhf", "NLHF\u{1d4f} certified"),
        ("base", "base pool\u{1d4f} certified"),
    ]
    .into_iter()
    .enumerate()
    {
        let pts = fk_chart.curve(policy);
        if pts.is_empty() {
            continue;
        }
        let c = COLOURS[3 + i];
        // NE_k certifies k/(k+1) on the answers it was solved on by construction; the band
        // is where it stands on the population (its mean 95% interval over prompts).
        let band = fk_chart.band(policy);
        if policy == "ne" && !band.is_empty() {
            let outline: Vec<(f64, f64)> =
                band.iter().map(|&(k, lo, _)| (k, lo)).chain(band.iter().rev().map(|&(k, _, hi)| (k, hi))).collect();
            chart
                .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.25).filled())))?
                .label("NE\u{2096} on the population, 95% (solved per resample)")
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 24, y + 5)], c.mix(0.25).filled()));
        }
        let style = c.stroke_width(2);
        // Curves from the population model (prompts no one ordered whole) say so.
        let label = if fk_chart.model_based { format!("{label} (model-based)") } else { label.to_string() };
        chart
            .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart.draw_series(pts.into_iter().map(move |p| Cross::new(p, 4, style)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_and_bad_ones_say_why() {
        assert_eq!(parse_size("800x600"), Ok((800, 600)));
        assert!(parse_size("800").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("10x10").unwrap_err().contains("200-10000"));
    }
}

//! `ualign stats`: the report of a study's answers as text or JSON; also the report
//! settings that `plot` and `dashboard` share.

use ualign_core::analysis::agreement::Agreement;
use ualign_core::analysis::counterfactual;
use ualign_core::analysis::diversity::Diversity;
use ualign_core::analysis::fk::{self, FkRow};
use ualign_core::analysis::length::{self, LengthControl};
use ualign_core::analysis::quality::Quality;
use ualign_core::analysis::report::{Options, PerPerson, PersonLine, Report};

/// Report what the answers so far say: empirical f(k) against k/(k+1), rankings, the
/// equilibrium policies over each prompt's pool, diversity and data quality.
#[derive(clap::Args)]
pub(crate) struct Cmd {
    #[command(flatten)]
    report: ReportArgs,
    /// Machine-readable output (schema in README.md)
    #[arg(long)]
    json: bool,
    /// Also write every participant's rankings, too-fast answers and attention checks to
    /// FILE, one JSON object per line (the report itself only summarises them)
    #[arg(long, value_name = "FILE.jsonl")]
    per_participant: Option<std::path::PathBuf>,
}

/// A study's database and the analysis settings: what stats, plot and dashboard read.
#[derive(clap::Args)]
pub(crate) struct ReportArgs {
    #[command(flatten)]
    pub(crate) target: super::StudyArgs,
    #[command(flatten)]
    pub(crate) analysis: AnalysisArgs,
}

impl ReportArgs {
    /// Opens the study's existing database and computes the report once.
    pub(crate) fn compute(&self) -> anyhow::Result<Report> {
        Ok(self.compute_with_study()?.1)
    }

    /// The report, and the study it is of (its title heads a figure).
    pub(crate) fn compute_with_study(&self) -> anyhow::Result<(ualign_core::study::Study, Report)> {
        self.compute_streaming(None)
    }

    /// The report, every participant's lines handed to `per_person` as they are made.
    fn compute_streaming(&self, per_person: PerPerson<'_>) -> anyhow::Result<(ualign_core::study::Study, Report)> {
        let (study, store, integrity) = self.target.open_for_reading()?;
        let report = Report::compute_with(&study, &store, &self.analysis.options(&study), per_person);
        // A damaged file is reported instead of whatever was computed from it.
        integrity.finish()?;
        Ok((study, report?))
    }
}

/// Settings of the analysis, shared by stats, plot and dashboard.
#[derive(clap::Args, Clone)]
pub(crate) struct AnalysisArgs {
    /// Bootstrap replicates for the f(k) intervals
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true, value_parser = super::values::whole::<u32, 1, 1_000_000>)]
    replicates: u32,
    /// Bootstrap replicates for the population Plackett–Luce worths
    #[arg(long, default_value_t = 200, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 0, 100_000>)]
    worth_replicates: usize,
    /// Participant-bootstrap replicates of the exact equilibrium rows (from whole-pool orders)
    #[arg(long, default_value_t = 200, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 0, 100_000>)]
    orders_replicates: usize,
    /// Answers faster than this (ms) are flagged
    #[arg(long, default_value_t = 1500, allow_negative_numbers = true, value_parser = super::values::whole::<u64, 0, 3_600_000>)]
    too_fast_ms: u64,
    /// Equilibria for k = 1..=K [default: the study's largest k, at least 8]
    #[arg(long, value_name = "K", allow_negative_numbers = true, value_parser = super::values::whole::<u32, 1, 64>)]
    k_max: Option<u32>,
    /// Cluster-bootstrap refits of the latent-class model behind the model-based certified rates
    #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = super::values::whole::<usize, 0, 100_000>)]
    model_replicates: usize,
    /// The most latent classes tried [default: as many as it takes for BIC to turn, up to 16]
    #[arg(long, value_name = "C", allow_negative_numbers = true, value_parser = super::values::whole::<usize, 1, { ualign_core::analysis::mixture::MAX_CLASSES as u64 }>)]
    max_classes: Option<usize>,
}

impl AnalysisArgs {
    pub(crate) fn options(&self, study: &ualign_core::study::Study) -> Options {
        let d = Options::for_study(study);
        Options {
            replicates: self.replicates as usize,
            worth_replicates: self.worth_replicates,
            orders_replicates: self.orders_replicates,
            too_fast_ms: self.too_fast_ms,
            k_max: self.k_max.unwrap_or(d.k_max),
            model: ualign_core::analysis::model::ModelOptions {
                replicates: self.model_replicates,
                c_first: self.max_classes.map_or(d.model.c_first, |c| c.min(d.model.c_first)),
                c_max: self.max_classes.unwrap_or(d.model.c_max),
                ..d.model
            },
        }
    }
}

impl Cmd {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let report = match &self.per_participant {
            None => self.report.compute()?,
            Some(path) => {
                let mut file = PersonFile::create(path)?;
                let mut write = |line: PersonLine<'_>| file.write(&line);
                match self.report.compute_streaming(Some(&mut write)) {
                    Ok((_, report)) => {
                        file.finish()?;
                        report
                    }
                    Err(e) => {
                        file.abandon();
                        return Err(e);
                    }
                }
            }
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report));
        }
        Ok(())
    }
}

/// `--per-participant FILE.jsonl`: written beside its final name and renamed into place
/// when whole, so a failed run leaves no half-written file (nor a half-replaced one).
struct PersonFile {
    path: std::path::PathBuf,
    partial: std::path::PathBuf,
    /// None once finished (then the partial file is the final one).
    out: Option<std::io::BufWriter<std::fs::File>>,
    error: Option<std::io::Error>,
}

impl PersonFile {
    fn create(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        refuse_to_overwrite(path)?;
        let mut name = path.file_name().context("--per-participant needs a file name, e.g. people.jsonl")?.to_owned();
        name.push(".partial");
        let partial = path.with_file_name(name);
        let file = std::fs::File::create(&partial).with_context(|| {
            format!("cannot create {} (--per-participant): is its folder there and writable?", partial.display())
        })?;
        Ok(Self { path: path.to_owned(), partial, out: Some(std::io::BufWriter::new(file)), error: None })
    }

    /// One line; the first write error is kept and the rest skipped.
    fn write(&mut self, line: &PersonLine<'_>) {
        use std::io::Write;
        if let (None, Some(out)) = (&self.error, &mut self.out) {
            let written = serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from);
            if let Err(e) = written.and_then(|()| out.write_all(b"\n")) {
                self.error = Some(e);
            }
        }
    }

    /// The report failed: no file, not even the partial one (see `Drop`).
    fn abandon(self) {}

    fn finish(mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        let out = self.out.take().expect("finished once");
        let done = match self.error.take() {
            Some(e) => Err(e),
            None => out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()),
        };
        done.with_context(|| format!("writing {} (--per-participant) failed; nothing was kept", self.path.display()))?;
        std::fs::rename(&self.partial, &self.path)
            .with_context(|| format!("cannot move {} to {}", self.partial.display(), self.path.display()))
    }
}

impl Drop for PersonFile {
    /// Whatever did not finish (an error, a panic) leaves no partial file behind.
    fn drop(&mut self) {
        drop(self.out.take());
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// `--per-participant` never replaces a folder, a SQLite database or its journal (the
/// study's own, given by mistake, would be lost).
fn refuse_to_overwrite(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Read;
    if path.is_dir() {
        anyhow::bail!(
            "--per-participant {} is a folder; give a file name, e.g. {}/people.jsonl",
            path.display(),
            path.display()
        );
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    let database = read >= 16 && &head == b"SQLite format 3\0";
    let journal = read >= 4 && matches!(head[..4], [0x37, 0x7f, 0x06, 0x82 | 0x83]);
    if database || journal || name.ends_with("-wal") || name.ends_with("-shm") {
        anyhow::bail!(
            "--per-participant {} is a SQLite database or its journal, not a report file: give another name, e.g. people.jsonl",
            path.display()
        );
    }
    Ok(())
}

/// The readable report.
pub(crate) fn render(r: &Report) -> String {
    let p = &r.progress;
    let mut s = format!(
        "study {}: {} participants ({} finished), {} of {} trials answered\n\n",
        r.study, p.participants, p.completed, p.answered, p.trials
    );
    s += &render_fk(&r.fk);
    s += &render_length(&r.fk);
    let model = r.rankings.by_method.get("pl_mixture").copied().unwrap_or(0);
    s += &format!(
        "\nper-participant rankings: {} (participant, prompt) pairs; population worths for {} responses; \
         each ranking: --per-participant FILE.jsonl\n",
        r.rankings.total() - model,
        r.population.len()
    );
    if model > 0 {
        s += &format!("  and {model} expected rankings of whole pools from the population model (pl_mixture)\n");
    }
    s += &render_equilibria(r);
    s += &render_diversity(&r.diversity);
    s += &render_agreement(&r.agreement);
    s += &render_quality(&r.quality);
    s
}

/// Prompts shown one by one; beyond, the least agreed on and a summary.
const AGREEMENT_ROWS: usize = 12;

fn render_agreement(rows: &[Agreement]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nagreement between participants, per prompt (α: Krippendorff's over pairwise preferences; W: Kendall's over orders of the whole pool)\n{:<16} {:>12} {:>6} {:>7} {:<17} {:>6} {:>7} {:>9}\n",
        "prompt", "participants", "pairs", "alpha", "95% interval", "W", "orders", "W p-value"
    );
    let num = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let mut shown: Vec<&Agreement> = rows.iter().collect();
    if rows.len() > AGREEMENT_ROWS {
        shown.sort_by(|a, b| a.alpha.unwrap_or(f64::INFINITY).total_cmp(&b.alpha.unwrap_or(f64::INFINITY)));
        shown.truncate(AGREEMENT_ROWS / 2);
    }
    for r in &shown {
        let interval = match (r.alpha_low, r.alpha_high) {
            (Some(lo), Some(hi)) => format!("[{lo:.3}, {hi:.3}]"),
            _ if r.alpha.is_some() => "- (too few)".to_string(),
            _ => "-".to_string(),
        };
        s.push_str(&format!(
            "{:<16} {:>12} {:>6} {:>7} {:<17} {:>6} {:>7} {:>9}\n",
            r.prompt,
            r.participants,
            r.pairs,
            num(r.alpha, 3),
            interval,
            num(r.kendall_w, 3),
            r.w_raters,
            num(r.w_p_value, 4)
        ));
    }
    if rows.len() > AGREEMENT_ROWS {
        let mut alphas: Vec<f64> = rows.iter().filter_map(|r| r.alpha).collect();
        alphas.sort_by(f64::total_cmp);
        let median = if alphas.is_empty() { "-".to_string() } else { format!("{:.3}", alphas[alphas.len() / 2]) };
        s.push_str(&format!(
            "  (the {} least agreed on of {} prompts; median α {median}; every prompt in --json)\n",
            shown.len(),
            rows.len()
        ));
    }
    s.push_str(
        "  (α = 1: any two participants who ranked a pair agree; 0: as often as chance; below 0: opposed, as groups with opposite tastes are. Where participants disagree, one answer cannot please them all: that is where k > 1 candidates matter. Interval: 95% bootstrap over participants, from 20.)\n",
    );
    s
}

fn render_equilibria(r: &Report) -> String {
    let exact: Vec<&counterfactual::EquilibriumRow> = r.equilibria.iter().filter(|e| e.method == "orders").collect();
    let model: Vec<&counterfactual::EquilibriumRow> = r.equilibria.iter().filter(|e| e.method != "orders").collect();
    let mut s =
        String::from("\ncertified f(k) of single-output policies over each prompt's pool (mean over prompts)\n");
    if exact.is_empty() {
        s += "  from whole-pool rankings: none yet (this needs participants who ranked a prompt's whole pool)\n";
    } else {
        s += "  from the participants' own rankings of whole pools (exact over them):\n";
        let intervals = exact.iter().any(|e| e.ci_low.is_some());
        s += &certified_table(&exact, intervals);
        let worst_gap = exact.iter().filter(|e| e.policy == "ne").map(|e| e.gap).fold(0.0, f64::max);
        s += &format!("  NE_k equal-share gap reached: at most {worst_gap:.1e}\n");
        if intervals {
            s += &population_note(&exact, "participant bootstrap");
        }
    }
    if let Some(m) = &r.population_model {
        s += &format!(
            "  model-based, from every choice ({} participants, {} choices): latent-class Plackett–Luce, C = {} by BIC (weights {}), {}/{} restarts agreed; 95% intervals from {} bootstrap refits\n",
            m.participants,
            m.choices,
            m.classes,
            m.weights.iter().map(|w| format!("{w:.2}")).collect::<Vec<_>>().join(", "),
            m.restarts_agreed,
            m.restarts,
            m.bootstrap_replicates
        );
        let cs = &m.class_search;
        if cs.stopped_at_limit && cs.limit > 1 {
            s += &format!(
                "  WARNING: BIC was still falling at C = {}, the most classes this search could fit ({}): the population may have more classes than the model has, and its rates and intervals can be wrong; {}\n",
                m.classes,
                if cs.limit == m.participants { "one per participant" } else { "--max-classes" },
                if cs.limit == m.participants {
                    "more participants are needed"
                } else {
                    "rerun with a larger --max-classes (up to 16)"
                }
            );
        }
        if m.participants == 1 && m.bootstrap_replicates > 0 {
            s += "  (one participant: every bootstrap resample is that same person, so the intervals have no width; they say nothing yet about how sure these rates are)\n";
        }
        if !model.is_empty() {
            s += &certified_table(&model, true);
            s += &population_note(&model, "cluster bootstrap of the model's fit");
        }
    }
    if !r.equilibria_skipped.is_empty() {
        s += &format!(
            "  {} prompts left out of the exact analysis, e.g. {}: {}\n",
            r.equilibria_skipped.len(),
            r.equilibria_skipped[0].prompt,
            r.equilibria_skipped[0].reason
        );
    }
    s
}

/// What the intervals of an equilibrium table are, and how much an equilibrium solved on
/// the answers overstates its rate on the population (NE_k at the largest k).
fn population_note(rows: &[&counterfactual::EquilibriumRow], how: &str) -> String {
    let k = rows.iter().filter(|e| e.policy == "ne").map(|e| e.k).max().unwrap_or(0);
    let optimism: Vec<f64> = rows.iter().filter(|e| e.policy == "ne" && e.k == k).filter_map(|e| e.optimism).collect();
    let mut s = format!(
        "  [intervals]: 95% for the rate on the population the participants stand for ({how}, NLHF and NE_k re-solved on every resample); a policy solved on these answers certifies less on the population than on them, so an interval need not contain its point estimate and NE_k's lies below k/(k+1)"
    );
    if !optimism.is_empty() {
        let mean = optimism.iter().sum::<f64>() / optimism.len() as f64;
        s += &format!(" (NE_{k}: {mean:.3} less, on average over the bootstrap; `optimism` in --json)");
    }
    s + "\n"
}

/// Mean certified f(k) per policy and k (with the mean interval where rows have one).
fn certified_table(rows: &[&counterfactual::EquilibriumRow], intervals: bool) -> String {
    let mean = counterfactual::mean_certified(rows.iter().copied());
    let population = counterfactual::mean_intervals(rows);
    let policies: Vec<&str> =
        ["base", "greedy", "nlhf", "ne"].into_iter().filter(|p| mean.keys().any(|(q, _)| q == p)).collect();
    let prompts: std::collections::BTreeSet<&str> = rows.iter().map(|e| e.prompt.as_str()).collect();
    let mut s = format!("  {} prompts; worst-case win rate of k samples against any single response\n", prompts.len());
    let width = if intervals { 21 } else { 7 };
    s += &format!("  {:>3} {:>7}", "k", "k/(k+1)");
    for p in &policies {
        s += &format!(" {p:>width$}");
    }
    s += "\n";
    let ks: std::collections::BTreeSet<u32> = mean.keys().map(|(_, k)| *k).collect();
    for k in ks {
        s += &format!("  {k:>3} {:>7.3}", k as f64 / (k as f64 + 1.0));
        for p in &policies {
            let cell = match mean.get(&(*p, k)) {
                Some((v, _)) if intervals => match population.get(&(*p, k)) {
                    Some((lo, hi)) => format!("{v:.3} [{lo:.3}, {hi:.3}]"),
                    None => format!("{v:.3}"),
                },
                Some((v, _)) => format!("{v:.3}"),
                None => "-".into(),
            };
            s += &format!(" {cell:>width$}");
        }
        s += "\n";
    }
    s
}

/// The f(k) table as text.
pub(crate) fn render_fk(rows: &[FkRow]) -> String {
    if rows.is_empty() {
        return "no answered best_of_k trials yet\n".into();
    }
    let mut s = format!(
        "empirical f(k): how often the favourite among k candidates of A and one of B was A's\n{:<12} {:<12} {:>3} {:>5} {:>5} {:>7}  {:<17} {:<17} {:>7}  {:<23} {}\n",
        "policy A",
        "policy B",
        "k",
        "n",
        "part.",
        "rate",
        "95% CI (cluster)",
        "95% CI (Wilson)",
        "k/(k+1)",
        "anytime 95% (finished)",
        "excludes"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<12} {:<12} {:>3} {:>5} {:>5} {:>7.3}  {:<17} [{:.3}, {:.3}]    {:>7.3}  {:<23} {}\n",
            r.policy_a,
            r.policy_b,
            r.k,
            r.n,
            r.participants,
            r.rate,
            // Too few participants to resample: no cluster interval (the note says why).
            if r.ci_low.is_finite() { format!("[{:.3}, {:.3}]", r.ci_low, r.ci_high) } else { "- (too few)".into() },
            r.wilson_low,
            r.wilson_high,
            r.bound,
            if r.cs_low.is_finite() {
                format!("[{:.3}, {:.3}] {}", r.cs_low, r.cs_high, r.cs_participants)
            } else {
                "- (none finished)".into()
            },
            sequence_excludes(r),
        ));
    }
    if let Some(note) = rows.iter().find_map(|r| r.ci_note) {
        s.push_str(&format!("(no cluster interval: {note})\n"));
    }
    s.push_str(&format!("({})\n", fk::CONVENTION));
    s.push_str(fk::SEQUENCE_NOTE);
    s.push('\n');
    s
}

/// The length control and the no-preference model of the f(k) rows.
pub(crate) fn render_length(rows: &[FkRow]) -> String {
    let fitted: Vec<(&FkRow, &LengthControl)> =
        rows.iter().filter_map(|r| Some((r, r.length_control.as_ref()?))).collect();
    if fitted.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\nlength control and \"no preference\" (a conditional logit per row: A's advantage, the pull of length, Davidson's ν)\n{:<12} {:<12} {:>3} {:>7}  {:<24} {:<22} {:>5} {:>8}  {:<19}\n",
        "policy A", "policy B", "k", "rate", "lengths equal (95%)", "length β (95%)", "A/B", "no pref.", "ν (95%)"
    );
    let interval = |v: f64, lo: f64, hi: f64| {
        if !v.is_finite() {
            "-".to_string()
        } else if lo.is_finite() {
            format!("{v:.3} [{lo:.3}, {hi:.3}]")
        } else {
            format!("{v:.3} (no interval)")
        }
    };
    for (r, lc) in &fitted {
        s.push_str(&format!(
            "{:<12} {:<12} {:>3} {:>7.3}  {:<24} {:<22} {:>5.2} {:>8.3}  {:<19}\n",
            r.policy_a,
            r.policy_b,
            r.k,
            r.rate,
            interval(lc.rate, lc.low, lc.high),
            interval(lc.length_coef, lc.length_coef_low, lc.length_coef_high),
            lc.length_ratio,
            lc.no_preference_share,
            if lc.no_preference_share > 0.0 {
                interval(lc.nu, lc.nu_low, lc.nu_high)
            } else {
                "0 (never answered)".into()
            },
        ));
    }
    let mut notes: Vec<&str> = Vec::new();
    for (r, lc) in &fitted {
        if let Some(note) = &lc.note {
            if lc.effect.is_some() {
                s.push_str(&format!("  {} vs {} at k = {}: {note}\n", r.policy_a, r.policy_b, r.k));
            } else if !notes.contains(&note.as_str()) {
                notes.push(note);
            }
        }
    }
    for note in notes {
        s.push_str(&format!("  ({note})\n"));
    }
    s.push_str(length::NOTE);
    s.push('\n');
    s
}

/// What a row's confidence sequence rules out: 1/2 and k/(k+1), from above or below.
fn sequence_excludes(r: &FkRow) -> String {
    if !r.cs_low.is_finite() {
        return String::new();
    }
    let mut out = Vec::new();
    for (value, name) in [(0.5, "1/2".to_string()), (r.bound, format!("{}/{}", r.k, r.k + 1))] {
        if r.cs_low > value {
            out.push(format!(">{name}"));
        } else if r.cs_high < value {
            out.push(format!("<{name}"));
        }
    }
    out.dedup();
    out.join(" ")
}

fn render_diversity(rows: &[Diversity]) -> String {
    let mut by_policy: std::collections::BTreeMap<&str, Vec<&Diversity>> = Default::default();
    for r in rows {
        by_policy.entry(r.policy.as_str()).or_default().push(r);
    }
    let mut s = format!(
        "\ndiversity of the pools (mean over prompts)\n{:<12} {:>7} {:>8} {:>10} {:>10} {:>10}\n",
        "policy", "prompts", "unique", "distinct-1", "distinct-2", "edit dist."
    );
    for (p, rs) in by_policy {
        let m = |f: fn(&Diversity) -> f64| rs.iter().map(|r| f(r)).sum::<f64>() / rs.len() as f64;
        s.push_str(&format!(
            "{:<12} {:>7} {:>8.3} {:>10.3} {:>10.3} {:>10.3}\n",
            p,
            rs.len(),
            m(|r| r.unique_text_ratio),
            m(|r| r.distinct_1),
            m(|r| r.distinct_2),
            m(|r| r.mean_pairwise_edit_distance)
        ));
    }
    s
}

fn render_quality(q: &Quality) -> String {
    let mut s = String::from("\ndata quality\n");
    for b in &q.position_bias {
        s.push_str(&format!(
            "  choices by displayed slot ({} slots, {} trials): {:?}; chi-square {:.2}, p = {:.3}\n",
            b.slots, b.trials, b.counts, b.chi_square, b.p_value
        ));
    }
    if let Some(m) = q.median_response_ms {
        s.push_str(&format!("  median response time: {m} ms\n"));
    }
    s.push_str(&format!("  participants with answers under {} ms: {}\n", q.too_fast_ms, q.too_fast.flagged));
    s.push_str(&format!(
        "  participants failing an attention check: {} of {}\n",
        q.attention.flagged, q.attention.participants
    ));
    let (same, n) = q.repeat_agreement;
    if n > 0 {
        s.push_str(&format!(
            "  repeated trials answered the same: {same} of {n} ({:.0}%)\n",
            100.0 * same as f64 / n as f64
        ));
    }
    if let Some((unseen, n)) = q.confirmed_unseen {
        s.push_str(&format!(
            "  answers confirmed before every answer was seen in full: {unseen} of {n} ({:.0}%){}\n",
            100.0 * unseen as f64 / n.max(1) as f64,
            if unseen > 0 { " (see seen_in_full in the export)" } else { "" }
        ));
    }
    s
}

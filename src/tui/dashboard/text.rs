//! Every word the dashboard shows, in one place.

pub(crate) fn too_small(min_w: u16, min_h: u16, w: u16, h: u16) -> String {
    format!(
        "The dashboard needs a window of at least {min_w}×{min_h}; this one is {w}×{h}.\nEnlarge it, or press q to quit."
    )
}

pub(crate) fn error(e: &str) -> String {
    format!("error: {e}")
}

pub(crate) const COMPUTING: &str = "computing…";
pub(crate) const WAITING: &str = "waiting for data";
pub(crate) const QUALITY_PENDING: &str = " not yet checked (no answers, or the report is computing)";

pub(crate) fn updated(at: &str, took_ms: u128, recomputing: bool) -> String {
    format!("updated {at} ({took_ms} ms){}", if recomputing { ", recomputing…" } else { "" })
}

/// The status where the live f(k) is newer than the full report: when it was read, and
/// what the model, equilibria and quality flags are as of (participants, seconds ago).
pub(crate) fn live(at: &str, model: Option<(usize, i64)>, recomputing: bool) -> String {
    let model = match model {
        Some((n, secs)) => format!(
            "model as of {n} participant{}, {} ago{}",
            if n == 1 { "" } else { "s" },
            age(secs),
            if recomputing { ", recomputing…" } else { "" }
        ),
        None => "model: computing…".to_string(),
    };
    format!("f(k) live {at} · {model}")
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

pub(crate) fn title(study: &str) -> String {
    format!(" ualign dashboard · {study} ")
}

pub(crate) fn database(db: &str) -> String {
    format!("· {db} · ")
}

pub(crate) const KEYS: &str = " q quit · r recompute now · refreshes by itself when answers arrive";
pub(crate) const CHART_TITLE: &str = " f(k): observed (95% CI) · k/(k+1) · certified ";
pub(crate) const CHART_TITLE_SHORT: &str = " f(k) ";
pub(crate) const X_AXIS: &str = "k";
pub(crate) const Y_AXIS: &str = "win rate";
pub(crate) const BOUND: &str = "k/(k+1)";
/// The certified curves: (legend, the policy's name in the report).
pub(crate) const CURVES: [(&str, &str); 3] = [("NE_k", "ne"), ("NLHF^k", "nlhf"), ("base^k", "base")];

pub(crate) fn pair(a: &str, b: &str) -> String {
    format!("{a} vs {b}")
}

pub(crate) const SIDE_TITLE: &str = " Study ";
pub(crate) const PARTICIPANTS: &str = "Participants";

pub(crate) fn enrolled(participants: usize, completed: usize) -> String {
    format!(" {participants} enrolled, {completed} finished")
}

pub(crate) fn answered(answered: usize, trials: usize, pct: f64) -> String {
    format!(" {answered} of {trials} trials answered ({pct:.0}%)")
}

pub(crate) const FK_OBSERVED: &str = "f(k) observed";
pub(crate) const NO_FK: &str = " no answered best_of_k trials yet";
pub(crate) const BELOW_BOUND: &str = " <bound";
pub(crate) const NO_INTERVAL: &str = "[  -  ]";
/// A row's anytime-valid confidence sequence.
pub(crate) fn sequence(low: f64, high: f64) -> String {
    format!("any[{low:.2},{high:.2}]")
}
pub(crate) const NO_SEQUENCE: &str = "any[  -  ]";
pub(crate) const ABOVE_HALF: &str = " >1/2";
pub(crate) const SEQUENCE_LEGEND: &str = " any[ ]: anytime 95%, may stop on it";
/// Under the f(k) rows when some have no interval yet (too few participants).
pub(crate) fn no_interval_until(participants: usize) -> String {
    format!(" {NO_INTERVAL}: interval from {participants} participants")
}
pub(crate) const CERTIFIED: &str = "Certified (pool, mean)";
/// Some of the certified curves come from the population model.
pub(crate) const CERTIFIED_MODEL: &str = "Certified (pool, mean; model-based)";
pub(crate) const NO_CERTIFIED: &str = " needs rankings of whole pools";

pub(crate) fn certified(k: u32, ne: &str, nlhf: &str, base: &str) -> String {
    format!(" k={k:<2} NE {ne} NLHF {nlhf} base {base}")
}

pub(crate) const QUALITY: &str = "Data quality";

/// Rows at `ks` whose f(k) is explained (or moved) by length; `stats` says how.
pub(crate) fn length(explains: bool, ks: &[u32]) -> String {
    let ks: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
    format!(" length {} f(k) at k={} (stats)", if explains { "explains" } else { "moves" }, ks.join(","))
}

pub(crate) fn slot_bias(slots: usize, p: f64) -> String {
    format!(" slot bias ({slots} slots): p={p:.3}")
}

pub(crate) fn too_fast(ms: u64, participants: usize) -> String {
    format!(" too fast (<{ms} ms): {participants} participants")
}

pub(crate) fn failed_attention(failed: usize, checked: usize) -> String {
    format!(" failed attention: {failed} of {checked}")
}

pub(crate) fn repeats(same: usize, n: usize) -> String {
    format!(" repeats agree: {same} of {n}")
}

/// The mark beside a flagged line.
pub(crate) const FLAG: &str = " !";

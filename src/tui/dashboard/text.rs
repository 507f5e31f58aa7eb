//! Every word the dashboard shows, in one place.

pub fn too_small(min_w: u16, min_h: u16, w: u16, h: u16) -> String {
    format!(
        "The dashboard needs a window of at least {min_w}×{min_h}; this one is {w}×{h}.\nEnlarge it, or press q to quit."
    )
}

pub fn error(e: &str) -> String {
    format!("error: {e}")
}

pub const COMPUTING: &str = "computing…";
pub const WAITING: &str = "waiting for data";

pub fn updated(at: &str, took_ms: u128, recomputing: bool) -> String {
    format!("updated {at} ({took_ms} ms){}", if recomputing { ", recomputing…" } else { "" })
}

pub fn title(study: &str) -> String {
    format!(" ualign dashboard · {study} ")
}

pub fn database(db: &str) -> String {
    format!("· {db} · ")
}

pub const KEYS: &str = " q quit · r recompute now · refreshes by itself when answers arrive";
pub const CHART_TITLE: &str = " f(k): observed (dots, 95% CI bars) · k/(k+1) · certified over the pools ";
pub const X_AXIS: &str = "k";
pub const Y_AXIS: &str = "win rate";
pub const BOUND: &str = "k/(k+1)";
/// The certified curves: (legend, the policy's name in the report).
pub const CURVES: [(&str, &str); 3] = [("NE_k", "ne"), ("NLHF^k", "nlhf"), ("base^k", "base")];

pub fn pair(a: &str, b: &str) -> String {
    format!("{a} vs {b}")
}

pub const SIDE_TITLE: &str = " Study ";
pub const PARTICIPANTS: &str = "Participants";

pub fn enrolled(participants: usize, completed: usize) -> String {
    format!(" {participants} enrolled, {completed} finished")
}

pub fn answered(answered: usize, trials: usize, pct: f64) -> String {
    format!(" {answered} of {trials} trials answered ({pct:.0}%)")
}

pub const FK_OBSERVED: &str = "f(k) observed";
pub const NO_FK: &str = " no answered best_of_k trials yet";
pub const BELOW_BOUND: &str = " <bound";
pub const NO_INTERVAL: &str = "[  -  ]";
pub const CERTIFIED: &str = "Certified (pool, mean)";
/// Some of the certified curves come from the population model.
pub const CERTIFIED_MODEL: &str = "Certified (pool, mean; model-based)";
pub const NO_CERTIFIED: &str = " needs rankings of whole pools";

pub fn certified(k: u32, ne: &str, nlhf: &str, base: &str) -> String {
    format!(" k={k:<2} NE {ne} NLHF {nlhf} base {base}")
}

pub const QUALITY: &str = "Data quality";

pub fn slot_bias(slots: usize, p: f64) -> String {
    format!(" slot bias ({slots} slots): p={p:.3}")
}

pub fn too_fast(ms: u64, participants: usize) -> String {
    format!(" too fast (<{ms} ms): {participants} participants")
}

pub fn failed_attention(failed: usize, checked: usize) -> String {
    format!(" failed attention: {failed} of {checked}")
}

pub fn repeats(same: usize, n: usize) -> String {
    format!(" repeats agree: {same} of {n}")
}

/// The mark beside a flagged line.
pub const FLAG: &str = " !";

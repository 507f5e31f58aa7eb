//! Data quality: does the displayed position drive choices (chi-square test of choice
//! frequency by slot against uniform), who answers too fast, who fails attention checks,
//! how often a repeated trial gets the same answer, and how many answers were confirmed
//! before every answer on screen had been read to its end.

use serde::Serialize;

use crate::store::QualityCounts;

/// Regularised upper incomplete gamma Q(a, x) (series for x < a + 1, else continued fraction).
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let gln = ln_gamma(a);
    if x < a + 1.0 {
        let (mut sum, mut del, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            del *= x / ap;
            sum += del;
            if del.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        1.0 - sum * (-x + a * x.ln() - gln).exp()
    } else {
        // Lentz's continued fraction.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (-x + a * x.ln() - gln).exp() * h
    }
}

/// ln Γ(x), Lanczos approximation (g = 7, n = 9).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

/// P(χ²_df ≥ x).
pub(crate) fn chi2_sf(x: f64, df: f64) -> f64 {
    gamma_q(df / 2.0, x / 2.0)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionBias {
    /// Number of displayed slots of the trials counted.
    pub slots: usize,
    pub trials: usize,
    pub counts: Vec<usize>,
    pub chi_square: f64,
    pub p_value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Quality {
    /// Pick choices by displayed slot, per slot count, best_of_k and rank trials.
    pub position_bias: Vec<PositionBias>,
    pub median_response_ms: Option<u64>,
    /// Answers faster than `too_fast_ms`: how many participants gave any, and the worst.
    pub too_fast_ms: u64,
    pub too_fast: Flagged,
    /// Attention checks: participants with any, how many failed one, and the worst.
    pub attention: Flagged,
    /// Repeated trials answered with the same text, and repeats answered.
    pub repeat_agreement: (usize, usize),
    /// Answers confirmed before every answer of the trial had been seen in full (a long
    /// answer not scrolled to its end), of the answers for which the screens recorded it;
    /// absent when none did (simulated participants, answers stored before schema 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmed_unseen: Option<(usize, usize)>,
}

/// Participants flagged by one check, summarised: the report's size does not grow with the
/// study (every participant's line is in `stats --per-participant FILE.jsonl`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Flagged {
    /// Participants the check counted (for attention: those shown a check; for speed:
    /// those with any answer under the threshold).
    pub participants: usize,
    /// Of them, those the check flags (any too-fast answer; any failed check).
    pub flagged: usize,
    /// The most flagged: (participant, flagged answers, answers), at most `WORST`, most first.
    pub worst: Vec<(String, usize, usize)>,
}

/// How many of the most flagged participants a report names.
pub const WORST: usize = 10;

impl Flagged {
    /// From per-participant (participant, flagged, answers), most flagged first.
    fn of(rows: &[(String, usize, usize)]) -> Self {
        let flagged = rows.iter().filter(|(_, f, _)| *f > 0).count();
        let worst = rows.iter().filter(|(_, f, _)| *f > 0).take(WORST).cloned().collect();
        Self { participants: rows.len(), flagged, worst }
    }
}

/// Chi-square statistic of counts against a uniform expectation.
pub(crate) fn position_bias(slots: usize, counts: Vec<usize>) -> PositionBias {
    let trials: usize = counts.iter().sum();
    let e = trials as f64 / slots as f64;
    let chi: f64 = if trials == 0 { 0.0 } else { counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum() };
    PositionBias { slots, trials, counts, chi_square: chi, p_value: chi2_sf(chi, (slots - 1) as f64) }
}

/// The data-quality checks from the stored counts (`too_fast_ms`: the threshold they were
/// counted with).
pub fn compute(counts: &QualityCounts, too_fast_ms: u64) -> Quality {
    let mut by_n: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for &(n, choice, count) in &counts.picks_by_slot {
        let v = by_n.entry(n).or_insert_with(|| vec![0; n]);
        if choice < n {
            v[choice] += count;
        }
    }
    let times = &counts.response_ms;
    let pairs = &counts.repeat_picks;
    Quality {
        position_bias: by_n.into_iter().filter(|(n, _)| *n >= 2).map(|(n, v)| position_bias(n, v)).collect(),
        median_response_ms: times.get(times.len() / 2).copied(),
        too_fast_ms,
        too_fast: Flagged::of(&counts.too_fast),
        attention: Flagged::of(&counts.attention),
        repeat_agreement: (pairs.iter().filter(|(a, b)| a.is_some() && a == b).count(), pairs.len()),
        confirmed_unseen: (counts.seen_in_full.1 > 0).then_some(counts.seen_in_full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_survival_equals_scipy() {
        // scipy.stats.chi2.sf(x, df), scipy 1.17.1.
        for (x, df, want) in [
            (3.2, 2.0, 0.2018965179946554),
            (10.5, 4.0, 0.03279698999488366),
            (0.5, 1.0, 0.47950012218695337),
            (25.0, 7.0, 0.0007588002556582502),
        ] {
            let got = chi2_sf(x, df);
            assert!((got - want).abs() < 1e-10, "chi2.sf({x}, {df}) = {got}, scipy {want}");
        }
    }

    #[test]
    fn uniform_counts_show_no_bias_and_skewed_ones_do() {
        let u = position_bias(4, vec![25, 25, 25, 25]);
        assert_eq!(u.chi_square, 0.0);
        assert!((u.p_value - 1.0).abs() < 1e-12);
        let s = position_bias(2, vec![70, 30]);
        assert!((s.chi_square - 16.0).abs() < 1e-12);
        assert!(s.p_value < 1e-3);
    }
}

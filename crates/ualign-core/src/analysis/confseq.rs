//! Anytime-valid confidence sequences for a mean of observations in [0, 1].
//!
//! The hedged betting confidence sequence of Waudby-Smith & Ramdas (2023, "Estimating
//! means of bounded random variables by betting", JRSS-B; Theorem 3 with the predictable
//! plug-in bets of their eq. (26)): for each candidate mean m, two gamblers bet that the
//! next observation lies above m and below it, each with wealth
//! K⁺ₜ(m) = Πᵢ (1 + λ⁺ᵢ (xᵢ − m)), K⁻ₜ(m) = Πᵢ (1 − λ⁻ᵢ (xᵢ − m)). Under mean m
//! max(½K⁺, ½K⁻) is bounded by a non-negative martingale of expectation 1, so by Ville's
//! inequality it passes 1/α at *any* time with probability at most α: the set of m it has
//! not yet passed is a 1 − α confidence sequence, valid however often it is looked at and
//! whenever one stops. A researcher watching a study live may stop as soon as it excludes
//! 1/2 or k/(k+1) without inflating the error.
//!
//! The bets: λₜ = √(2 ln(2/α) / (σ̂²ₜ₋₁ t ln(1 + t))) from the regularised running mean
//! and variance (one fake observation of mean 1/2, variance 1/4), truncated at 1/(2m) for
//! K⁺ and 1/(2(1 − m)) for K⁻. m runs over a grid of [0, 1] in steps of 1/[`BREAKS`]; each
//! bound moves one step outward (so the grid never makes the set narrower than it is), and
//! the sequence is the running intersection over time. This is, step for step, what the
//! authors' `confseq` package computes by default (`betting_cs(x, alpha,
//! running_intersection=True)`), which the tests hold it to.

/// Grid steps on [0, 1].
pub const BREAKS: usize = 1000;

/// The running-intersection confidence sequence of the mean of `xs` (each in [0, 1], in
/// the order observed) at level 1 − `alpha`, after each observation: `(low, high)` per
/// time. Empty input, empty output.
pub fn betting_cs_path(xs: &[f64], alpha: f64) -> Vec<(f64, f64)> {
    let mut cs = Running::new(alpha);
    xs.iter().map(|&x| cs.push(x)).collect()
}

/// The sequence's bounds after the last observation; `(0, 1)` before any.
pub fn betting_cs(xs: &[f64], alpha: f64) -> (f64, f64) {
    let mut cs = Running::new(alpha);
    for &x in xs {
        cs.push(x);
    }
    cs.bounds()
}

/// The sequence observation by observation: what a live view keeps, so that a new
/// observation costs one pass over the grid instead of a pass over every observation
/// (the numbers are [`betting_cs_path`]'s, bit for bit: it is made of this).
#[derive(Debug, Clone)]
pub struct Running {
    /// The gamblers' wealth at each grid point.
    pos: Vec<f64>,
    neg: Vec<f64>,
    low: f64,
    high: f64,
    /// Observations so far, and the plug-in bets' running sums (see [`Running::push`]).
    t: usize,
    sum: f64,
    sq: f64,
    var_before: f64,
    /// The bets' level (half the sequence's: two gamblers) and the wealth that rejects.
    bet_alpha: f64,
    threshold: f64,
}

impl Running {
    /// Before any observation, at level 1 − `alpha`.
    pub fn new(alpha: f64) -> Self {
        Self {
            pos: vec![1.0; BREAKS + 1],
            neg: vec![1.0; BREAKS + 1],
            low: 0.0,
            high: 1.0,
            t: 0,
            sum: 0.0,
            sq: 0.0,
            var_before: PRIOR_VAR,
            bet_alpha: alpha / 2.0,
            threshold: 1.0 / alpha,
        }
    }

    /// Observations taken.
    pub fn len(&self) -> usize {
        self.t
    }

    pub fn is_empty(&self) -> bool {
        self.t == 0
    }

    /// The bounds now; `(0, 1)` before any observation.
    pub fn bounds(&self) -> (f64, f64) {
        (self.low, self.high)
    }

    /// Takes observation `x` in [0, 1] and gives the bounds after it.
    pub fn push(&mut self, x: f64) -> (f64, f64) {
        let lambda = self.bet();
        self.learn(x);
        let step = 1.0 / BREAKS as f64;
        let (mut first, mut last) = (None, None);
        for (j, g) in grid().iter().enumerate() {
            let lp = lambda.min(g.pos_cap);
            let ln = lambda.min(g.neg_cap);
            self.pos[j] *= 1.0 + lp * (x - g.m);
            self.neg[j] *= 1.0 - ln * (x - g.m);
            if (0.5 * self.pos[j]).max(0.5 * self.neg[j]) <= self.threshold {
                first.get_or_insert(j);
                last = Some(j);
            }
        }
        // A time at which no m survives says nothing new (the package's convention).
        let (l, h) = match (first, last) {
            (Some(f), Some(h)) => ((f as f64 * step - step).max(0.0), (h as f64 * step + step).min(1.0)),
            _ => (0.0, 1.0),
        };
        self.low = self.low.max(l);
        self.high = self.high.min(h);
        (self.low, self.high)
    }

    /// The predictable plug-in bet λₜ for the next observation, from those before it.
    fn bet(&self) -> f64 {
        let t = (self.t + 1) as f64;
        let lambda = (2.0 * (1.0 / self.bet_alpha).ln() / (t * (1.0 + t).ln() * self.var_before)).sqrt();
        if lambda.is_nan() { 0.0 } else { lambda }
    }

    /// The regularised running mean and variance after `x` (one fake observation of mean
    /// 1/2, variance 1/4).
    fn learn(&mut self, x: f64) {
        self.t += 1;
        let t = self.t as f64;
        self.sum += x;
        let mean = ((PRIOR_MEAN + self.sum) / (t + 1.0)).min(1.0);
        self.sq += (x - mean).powi(2);
        self.var_before = (PRIOR_VAR + self.sq) / (t + 1.0);
    }
}

/// A point m of the grid and the bets' caps there, 1/(2m) and 1/(2(1 − m)): divided once,
/// not at every observation.
struct Point {
    m: f64,
    pos_cap: f64,
    neg_cap: f64,
}

fn grid() -> &'static [Point] {
    static GRID: std::sync::OnceLock<Vec<Point>> = std::sync::OnceLock::new();
    GRID.get_or_init(|| {
        (0..=BREAKS)
            .map(|j| {
                // As numpy's `arange(0, 1 + 1/B, 1/B)`: j × (1/B), bit for bit.
                let m = j as f64 * (1.0 / BREAKS as f64);
                Point { m, pos_cap: 0.5 / m, neg_cap: 0.5 / (1.0 - m) }
            })
            .collect()
    })
}

/// The plug-in bets' fake first observation.
const PRIOR_MEAN: f64 = 0.5;
const PRIOR_VAR: f64 = 0.25;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn it_narrows_around_the_mean_and_only_ever_narrows() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let xs: Vec<f64> = (0..2000).map(|_| if rng.random_bool(0.7) { 1.0 } else { 0.0 }).collect();
        let path = betting_cs_path(&xs, 0.05);
        for w in path.windows(2) {
            assert!(w[1].0 >= w[0].0 && w[1].1 <= w[0].1, "{w:?}");
        }
        let (lo, hi) = path[path.len() - 1];
        assert!(lo < 0.7 && 0.7 < hi && hi - lo < 0.1, "{lo} {hi}");
        assert_eq!(betting_cs(&[], 0.05), (0.0, 1.0));
    }

    /// Continuous monitoring: 200 simulated studies, each looked at after every one of its
    /// 300 participants; participants differ (each has a win probability of their own,
    /// answers 6 trials, some "no preference" at 1/2), so the observation is a
    /// participant's mean score. The truth must stay inside the sequence at every look in
    /// at least 95% of studies (the running intersection only narrows, so inside at the
    /// end is inside throughout).
    #[test]
    fn under_continuous_monitoring_the_truth_stays_inside_in_95_percent_of_studies() {
        let mut rng = ChaCha8Rng::seed_from_u64(2023);
        for &(a, b) in &[(2.0, 2.0), (6.0, 2.0), (1.0, 5.0)] {
            let truth_p = a / (a + b);
            // Per trial: no preference with probability 0.1 (score 1/2), else a win w.p. p.
            let truth = 0.1 * 0.5 + 0.9 * truth_p;
            let (mut stayed, mut peeked_stayed) = (0, 0);
            for _ in 0..200 {
                let xs: Vec<f64> = (0..300)
                    .map(|_| {
                        let p = beta(&mut rng, a, b);
                        let s: f64 = (0..6)
                            .map(|_| {
                                if rng.random_bool(0.1) {
                                    0.5
                                } else if rng.random_bool(p) {
                                    1.0
                                } else {
                                    0.0
                                }
                            })
                            .sum();
                        s / 6.0
                    })
                    .collect();
                let (lo, hi) = betting_cs(&xs, 0.05);
                stayed += usize::from(lo <= truth && truth <= hi);
                peeked_stayed += usize::from(normal_interval_always_covers(&xs, truth));
            }
            eprintln!("Beta({a}, {b}): sequence {stayed}/200, fixed-N interval peeked from 20 on {peeked_stayed}/200");
            assert!(stayed >= 190, "Beta({a}, {b}): the truth stayed inside in {stayed} of 200 studies");
            // What the sequence is for: a fixed-N 95% interval looked at after every
            // participant from the 20th on leaves the truth at some look far more often.
            assert!(peeked_stayed < 180, "Beta({a}, {b}): the peeked fixed-N interval held in {peeked_stayed} of 200");
        }
    }

    /// Whether the normal 95% interval of the mean, looked at after each participant from
    /// the 20th on, contains `truth` at every look.
    fn normal_interval_always_covers(xs: &[f64], truth: f64) -> bool {
        let (mut sum, mut sq) = (0.0, 0.0);
        xs.iter().enumerate().all(|(i, &x)| {
            sum += x;
            sq += x * x;
            let n = (i + 1) as f64;
            let mean = sum / n;
            let half = 1.96 * ((sq / n - mean * mean).max(0.0) / (n - 1.0).max(1.0)).sqrt();
            i + 1 < 20 || (mean - half <= truth && truth <= mean + half)
        })
    }

    /// A Beta(a, b) draw from two gamma draws (Marsaglia–Tsang), for the test only.
    fn beta(rng: &mut ChaCha8Rng, a: f64, b: f64) -> f64 {
        let x = gamma(rng, a);
        x / (x + gamma(rng, b))
    }

    fn gamma(rng: &mut ChaCha8Rng, a: f64) -> f64 {
        let d = a - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            let n = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let v = (1.0 + c * n).powi(3);
            if v > 0.0 && rng.random::<f64>().max(1e-300).ln() < 0.5 * n * n + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
}

//! The (k+1)-player game of [`super::equilibria`] over a population that a latent-class
//! Plackett–Luce model describes, instead of one made of observed orders.
//!
//! A Plackett–Luce ranking is a Gumbel race: each response i gets utility log wᵢ + Gᵢ
//! (independent standard Gumbel noise) and the order is by utility. Given y's utility,
//! every other response falls below it independently, with probability exp(−wᵢ t) where
//! t = exp(−U_y) is exponential with rate w_y; with s = w_y t (a unit exponential), that is
//! qᵢ(s) = exp(−s wᵢ / w_y). So the payoff of y against k samples of x,
//! u(y; x) = E[Σⱼ C(k,j) x_y^j W^{k−j} / (j+1)] with W = Σ_{i≠y} xᵢ Bᵢ, Bᵢ ~ Bernoulli(qᵢ),
//! is a one-dimensional integral over s of a polynomial in independent Bernoulli masses:
//! the moments E[W^m | s] come from a product over the responses (m ≤ k), and the
//! integral is Gauss–Legendre quadrature in ln s over [−37, 3.7] (outside it the
//! exponential's mass is below 1e-16), panels narrow where the qᵢ change. A class's
//! payoffs are averaged with the class weights. Accuracy is checked against exact
//! enumeration (every E[W^m] is a sum of Gumbel-race probabilities w_y / (w_y + Σ_S wᵢ))
//! and Monte Carlo over sampled rankings.

use super::equilibria::{self, Order};

/// A population over one prompt's n responses: class weights and each class's log-worths.
#[derive(Debug, Clone, PartialEq)]
pub struct PlPopulation {
    pub weights: Vec<f64>,
    pub log_worths: Vec<Vec<f64>>,
}

/// Gauss–Legendre nodes and weights on [a, b], from the unit interval's.
fn panel(a: f64, b: f64, unit: &(Vec<f64>, Vec<f64>)) -> impl Iterator<Item = (f64, f64)> + '_ {
    unit.0.iter().zip(&unit.1).map(move |(t, w)| (a + (b - a) * t, (b - a) * w))
}

/// The quadrature of ∫ f(s) e^{−s} ds over s > 0, as nodes (s, weight · e^{−s} · s) in
/// σ = ln s: wide panels where the exponential's mass is tiny, narrow ones where the
/// qᵢ(s) of responses within e^{±12} of each other change.
fn nodes() -> Vec<(f64, f64)> {
    let unit12 = equilibria::gauss_legendre(12);
    let unit8 = equilibria::gauss_legendre(8);
    let mut out = Vec::new();
    let mut add = |a: f64, b: f64, unit: &(Vec<f64>, Vec<f64>)| {
        for (sigma, w) in panel(a, b, unit) {
            let s = sigma.exp();
            out.push((s, w * s * (-s).exp()));
        }
    };
    for i in 0..5 {
        let a = -37.0 + 5.0 * i as f64;
        add(a, a + 5.0, &unit12);
    }
    let mut a = -12.0;
    while a < 3.75 {
        add(a, (a + 0.5).min(3.75), &unit8);
        a += 0.5;
    }
    out
}

impl PlPopulation {
    pub fn responses(&self) -> usize {
        self.log_worths.first().map_or(0, Vec::len)
    }

    /// u(y; x) for every response y and every k in 1..=`k_max` (entry k − 1), exact to the
    /// quadrature's ~1e-12.
    pub fn payoffs_up_to(&self, x: &[f64], k_max: u32) -> Vec<Vec<f64>> {
        let kk = k_max as usize;
        let n = x.len();
        let quadrature = nodes();
        // Moments are kept divided by m! (μ_m = E[W^m] / m!), which takes the binomial
        // coefficients out of the inner loop: adding xᵢBᵢ to W is then a plain convolution
        // with xᵢ^j / j!.
        let factorial: Vec<f64> = (0..=kk)
            .scan(1.0, |f, j| {
                if j > 0 {
                    *f *= j as f64;
                }
                Some(*f)
            })
            .collect();
        let scaled: Vec<Vec<f64>> =
            x.iter().map(|&v| (0..=kk).map(|j| v.powi(j as i32) / factorial[j]).collect()).collect();
        let support: Vec<usize> = (0..n).filter(|&i| x[i] > 0.0).collect();
        let mut u = vec![vec![0.0; n]; kk];
        let mut moments = vec![0.0; kk + 1];
        for (class, log_w) in self.log_worths.iter().enumerate() {
            let cw = self.weights[class];
            for y in 0..n {
                let others: Vec<(usize, f64)> =
                    support.iter().filter(|&&i| i != y).map(|&i| (i, (log_w[i] - log_w[y]).exp())).collect();
                let mut acc = vec![0.0; kk];
                for &(s, weight) in &quadrature {
                    moments.iter_mut().for_each(|m| *m = 0.0);
                    moments[0] = 1.0;
                    for &(i, ratio) in &others {
                        let q = (-s * ratio).exp();
                        if q == 0.0 {
                            continue;
                        }
                        // μ'_m = μ_m + q Σ_{l<m} μ_l xᵢ^{m−l} / (m−l)!
                        let p = &scaled[i];
                        for m in (1..=kk).rev() {
                            let add: f64 = moments[..m].iter().zip(p[1..=m].iter().rev()).map(|(a, b)| a * b).sum();
                            moments[m] += q * add;
                        }
                    }
                    // Σ_j C(k,j) x_y^j E[W^{k−j}] / (j+1) = k! Σ_j (x_y^j / j!) μ_{k−j} / (j+1)
                    for k in 1..=kk {
                        let mut share = 0.0;
                        for j in 0..=k {
                            share += scaled[y][j] / (j as f64 + 1.0) * moments[k - j];
                        }
                        acc[k - 1] += weight * factorial[k] * share;
                    }
                }
                for k in 0..kk {
                    u[k][y] += cw * acc[k];
                }
            }
        }
        u
    }

    /// u(y; x) at one k.
    pub fn payoffs(&self, x: &[f64], k: u32) -> Vec<f64> {
        self.payoffs_up_to(x, k).pop().unwrap_or_default()
    }

    /// 1 − max_y u(y; x): the win rate k samples of x certify against any single response.
    pub fn certified_win_rate(&self, x: &[f64], k: u32) -> f64 {
        1.0 - self.payoffs(x, k).into_iter().fold(0.0, f64::max)
    }

    /// Majority margins P(a ≻ b) − P(b ≻ a) (exact: P(a ≻ b) = w_a / (w_a + w_b) in a class).
    pub fn margins(&self) -> Vec<Vec<f64>> {
        let n = self.responses();
        let mut m = vec![vec![0.0; n]; n];
        for (cw, lw) in self.weights.iter().zip(&self.log_worths) {
            for a in 0..n {
                for b in 0..n {
                    if a != b {
                        let p = 1.0 / (1.0 + (lw[b] - lw[a]).exp());
                        m[a][b] += cw * (2.0 * p - 1.0);
                    }
                }
            }
        }
        m
    }

    /// `count` rankings drawn from the population (Gumbel race), classes in proportion to
    /// their weights (stratified: the counts are the weights rounded).
    pub fn sample_orders(&self, count: usize, seed: u64) -> Vec<Order> {
        use rand::Rng;
        let mut rng = crate::seed::simulation(seed, &["population-orders"]);
        let mut out = Vec::with_capacity(count);
        let mut cum = 0.0;
        let mut made = 0;
        for (c, (cw, lw)) in self.weights.iter().zip(&self.log_worths).enumerate() {
            cum += cw;
            let until = if c + 1 == self.weights.len() { count } else { (cum * count as f64).round() as usize };
            while made < until {
                let mut keyed: Vec<(f64, usize)> = lw
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
                        (l - (-u.ln()).ln(), i)
                    })
                    .collect();
                keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
                out.push(keyed.into_iter().map(|(_, i)| i).collect());
                made += 1;
            }
        }
        out
    }

    /// A symmetric equilibrium of the (k+1)-player game under the population: solved on
    /// `samples` rankings drawn from it (the existing solver), then polished by Newton's
    /// method on its support with the exact payoffs (kept only if it lowers the exact
    /// largest payoff). The certified rate of what is returned is exact either way.
    pub fn ne_k(&self, k: u32, start: Vec<f64>, samples: &[Order]) -> Vec<f64> {
        let sampled = equilibria::ne_k_from(samples, start, k, 1e-7, 20_000).distribution;
        let worst_of = |u: &[f64]| u.iter().copied().fold(0.0, f64::max);
        let share = 1.0 / (k as f64 + 1.0);
        let mut u = self.payoffs(&sampled, k);
        let mut best_worst = worst_of(&u);
        let mut best = sampled;
        // Active set: Newton on the support; a response outside it that pays more than the
        // support joins it (with a little mass); one whose mass Newton drives to 0 leaves.
        // `u` is always the payoffs at `x`, computed once.
        let mut x = best.clone();
        for _ in 0..24 {
            // 1e-10 above the value: far inside the 1e-6 the certified rates are given to.
            if best_worst - share < 1e-10 {
                break;
            }
            let next = self.newton_step(&x, &u, k).map(|n| {
                let un = self.payoffs(&n, k);
                (n, un)
            });
            match next.filter(|(_, un)| worst_of(un) + 1e-15 < best_worst) {
                Some((n, un)) => {
                    best_worst = worst_of(&un);
                    best = n.clone();
                    x = n;
                    u = un;
                }
                None => {
                    // Stuck on this support: bring in the best-paid response outside it.
                    let Some(y) = (0..x.len()).filter(|&i| x[i] <= 1e-12).max_by(|&a, &b| u[a].total_cmp(&u[b])) else {
                        break;
                    };
                    if u[y] <= share + 1e-12 {
                        break;
                    }
                    let mut widened: Vec<f64> = x.iter().map(|v| v * 0.99).collect();
                    widened[y] += 0.01;
                    u = self.payoffs(&widened, k);
                    x = widened;
                }
            }
        }
        best
    }

    /// One Newton step on the equal-payoff equations of `x`'s support (u(y) = v for y in
    /// the support, Σ x = 1), from the payoffs `u` at `x`, the Jacobian by forward
    /// differences of the exact payoffs (one evaluation per response of the support; the
    /// step is only kept if it lowers the exact largest payoff).
    fn newton_step(&self, x: &[f64], u: &[f64], k: u32) -> Option<Vec<f64>> {
        let support: Vec<usize> = (0..x.len()).filter(|&i| x[i] > 1e-12).collect();
        let s = support.len();
        if s < 2 {
            return None;
        }
        let v = support.iter().map(|&i| x[i] * u[i]).sum::<f64>() / support.iter().map(|&i| x[i]).sum::<f64>();
        // Unknowns: x on the support, then v. Equations: u_y(x) − v = 0, Σ x − 1 = 0.
        let mut a = vec![vec![0.0; s + 1]; s + 1];
        let mut b = vec![0.0; s + 1];
        for (col, &i) in support.iter().enumerate() {
            let h = 1e-7 * x[i].max(1e-3);
            let mut up = x.to_vec();
            up[i] += h;
            let uu = self.payoffs(&up, k);
            for (row, &y) in support.iter().enumerate() {
                a[row][col] = (uu[y] - u[y]) / h;
            }
        }
        for (row, &y) in support.iter().enumerate() {
            a[row][s] = -1.0;
            b[row] = -(u[y] - v);
        }
        a[s][..s].iter_mut().for_each(|v| *v = 1.0);
        b[s] = -(support.iter().map(|&i| x[i]).sum::<f64>() - 1.0);
        let step = equilibria::solve(a, b)?;
        let mut next = x.to_vec();
        for (col, &i) in support.iter().enumerate() {
            next[i] = (x[i] + step[col]).max(0.0);
        }
        let z: f64 = next.iter().sum();
        (z > 0.0).then(|| next.iter().map(|v| v / z).collect())
    }
}

#[cfg(test)]
#[path = "population_tests.rs"]
mod tests;

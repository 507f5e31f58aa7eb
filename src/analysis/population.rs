//! The (k+1)-player game of [`super::equilibria`] over a population that a latent-class
//! Plackett–Luce model describes, instead of one made of observed orders.
//!
//! A Plackett–Luce ranking is a Gumbel race: each response i gets utility log wᵢ + Gᵢ
//! (independent standard Gumbel noise) and the order is by utility. With t = e^{−U} for a
//! utility level U, response i falls below it with probability qᵢ(t) = exp(−wᵢ t),
//! independently of the others, and y's own t_y = e^{−U_y} is exponential with rate w_y.
//! So the payoff of y against k samples of x,
//! u(y; x) = E[Σⱼ C(k,j) x_y^j W^{k−j} / (j+1)] with W = Σ_{i≠y} xᵢ Bᵢ, Bᵢ ~ Bernoulli(qᵢ),
//! is a one-dimensional integral over t of a polynomial in independent Bernoulli masses:
//! the moments E[W^m | t] (m ≤ k) are coefficients of the generating function
//! Πᵢ (1 + qᵢ(e^{xᵢz} − 1)). Every response shares the same qᵢ(t) at a node, so one pass of
//! prefix and suffix products over x's support gives the moments without y for every y
//! (O(n·k²) per node for all of them). The integral is the trapezoidal rule in σ = ln t,
//! which converges geometrically for this analytic integrand; a class's payoffs are
//! averaged with the class weights. Accuracy is checked against exact enumeration (every
//! E[W^m] is a sum of Gumbel-race probabilities w_y / (w_y + Σ_S wᵢ)) and Monte Carlo over
//! sampled rankings.

use super::equilibria::{self, Order};

/// A population over one prompt's n responses: class weights and each class's log-worths.
#[derive(Debug, Clone, PartialEq)]
pub struct PlPopulation {
    pub weights: Vec<f64>,
    pub log_worths: Vec<Vec<f64>>,
}

impl PlPopulation {
    pub fn responses(&self) -> usize {
        self.log_worths.first().map_or(0, Vec::len)
    }

    /// The population's quadrature tables on the certified rates' grid, shared by every
    /// payoff evaluation under it (build them once per population, not per evaluation).
    pub fn race(&self) -> Race {
        Race::new(self)
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
}

/// Newton's polish stops this close above the value 1/(k+1): far inside the 1e-6 the
/// certified rates are given to.
const DONE: f64 = 1e-10;

/// Where and how finely the integral over σ = ln t is sampled (w ≤ 1 after each class's
/// shift to its best response).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Trapezoid step in σ. The integrand is analytic in σ within a strip of half-width
    /// nearly π/2 (each factor is exp(−w e^σ)), so the trapezoidal rule's error falls like
    /// about exp(−8.8/h) (measured against enumeration).
    pub step: f64,
    /// The lowest node. Below it every qᵢ is within t·wᵢ of 1, so the share there equals
    /// the lowest node's to O(t² Σ wᵢ) and the lowest node takes the weight of every node
    /// below it (the trapezoid continued to −∞): an error of ~n·e^{2·low}.
    pub low: f64,
    /// The highest node is where the least worthy response's density e^{−w t} is e^{−top}.
    pub top: f64,
}

/// The certified rates' grid: ~1e-11 (h = 0.36, n·e^{−30} < 1e-11, e^{−38}).
pub const FINE: Grid = Grid { step: 0.36, low: -15.0, top: 38.0 };
/// The bootstrap's re-certifications: ~1e-7 (h = 0.55, n·e^{−20} < 1e-7, e^{−20}); an
/// interval's percentiles move by far more than that from one resample to the next.
pub const COARSE: Grid = Grid { step: 0.55, low: -10.0, top: 20.0 };

/// Responses more than this far below a class's best (in log-worth) are given the grid up
/// to here only (a worth of 0 would need an endless grid).
const DEPTH: f64 = 80.0;

/// Nodes are processed `LANES` at a time, each lane an independent node: the recursions
/// are the same for all of them, so the arithmetic runs as vector operations with
/// independent dependency chains.
const LANES: usize = 8;
type Lanes = [f64; LANES];

/// A population's quadrature, ready for any policy: for each class, every node's
/// probabilities qᵢ(t) = exp(−wᵢ t) that response i falls below utility −ln t, and each
/// response's weight ω_y = c w_y t e^{−w_y t} · step (the class's weight c times the
/// density of t for y, in σ), in
/// blocks of `LANES` nodes (the last block padded with weight 0). These depend on the
/// population only, so every payoff evaluation under it shares them.
#[derive(Debug, Clone)]
pub struct Race {
    n: usize,
    classes: Vec<ClassRace>,
}

#[derive(Debug, Clone)]
struct ClassRace {
    /// `blocks × n`, row-major: `q[b * n + i]` is response i's qᵢ at block b's nodes.
    q: Vec<Lanes>,
    omega: Vec<Lanes>,
}

impl Race {
    pub fn new(p: &PlPopulation) -> Self {
        Self::on(p, FINE)
    }

    /// The tables on `grid` (see [`FINE`], [`COARSE`]).
    pub fn on(p: &PlPopulation, grid: Grid) -> Self {
        let step = grid.step;
        let n = p.responses();
        let classes = p
            .weights
            .iter()
            .zip(&p.log_worths)
            .filter(|(cw, _)| **cw > 0.0)
            .map(|(&weight, lw)| {
                let top = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = lw.iter().map(|l| (l - top).max(-DEPTH).exp()).collect();
                let w_min = w.iter().copied().fold(1.0, f64::min);
                let sigma_high = grid.top.ln() - w_min.ln();
                let nodes = ((sigma_high - grid.low) / step).ceil() as usize + 1;
                let blocks = nodes.div_ceil(LANES);
                let mut q = vec![[1.0; LANES]; blocks * n];
                let mut omega = vec![[0.0; LANES]; blocks * n];
                let density = |wi: f64, sigma: f64| {
                    let t = sigma.exp();
                    weight * wi * t * (-wi * t).exp() * step
                };
                for node in 0..nodes {
                    let t = (grid.low + step * node as f64).exp();
                    let (b, lane) = (node / LANES, node % LANES);
                    for (i, &wi) in w.iter().enumerate() {
                        let qi = (-wi * t).exp();
                        q[b * n + i][lane] = qi;
                        omega[b * n + i][lane] = weight * wi * t * qi * step;
                    }
                }
                // The lowest node takes the weight of the nodes below it, down to where
                // they weigh nothing.
                for (i, &wi) in w.iter().enumerate() {
                    omega[i][0] += (1..)
                        .map(|j| density(wi, grid.low - step * j as f64))
                        .take_while(|&d| d > 1e-20 * weight)
                        .sum::<f64>();
                }
                ClassRace { q, omega }
            })
            .collect();
        Self { n, classes }
    }

    /// u(y; x) for every response y and every k in 1..=`k_max` (entry k − 1), to ~1e-11.
    pub fn payoffs_up_to(&self, x: &[f64], k_max: u32) -> Vec<Vec<f64>> {
        self.dispatch(x, k_max, 1)
    }

    /// The rows of k in `k_min..=k_max` of [`Race::payoffs_up_to`], those below left 0
    /// (the moments are the same work; the shares are only formed where wanted).
    pub fn payoffs_between(&self, x: &[f64], k_min: u32, k_max: u32) -> Vec<Vec<f64>> {
        self.dispatch(x, k_max, k_min as usize)
    }

    /// The rows of k in `from..=k_max` (those below are left 0).
    fn dispatch(&self, x: &[f64], k_max: u32, from: usize) -> Vec<Vec<f64>> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has just been seen to support AVX-512F.
            return unsafe { self.payoffs_avx512(x, k_max, from) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been seen to support AVX2.
            return unsafe { self.payoffs_avx2(x, k_max, from) };
        }
        self.payoffs_portable(x, k_max, from)
    }

    /// The same arithmetic compiled for AVX-512 (a block's 8 lanes in one vector instead
    /// of SSE2's four) or AVX2 (two); no fused multiply-adds, so the results are bit for
    /// bit the portable path's.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn payoffs_avx512(&self, x: &[f64], k_max: u32, from: usize) -> Vec<Vec<f64>> {
        self.payoffs_portable(x, k_max, from)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn payoffs_avx2(&self, x: &[f64], k_max: u32, from: usize) -> Vec<Vec<f64>> {
        self.payoffs_portable(x, k_max, from)
    }

    #[inline(always)]
    fn payoffs_portable(&self, x: &[f64], k_max: u32, from: usize) -> Vec<Vec<f64>> {
        let kk = k_max as usize;
        let n = self.n;
        let tables = Tables::new(x, kk, from);
        let mut work = Work::new(tables.support.len(), kk + 1);
        let mut acc = vec![[0.0; LANES]; kk * n];
        for class in &self.classes {
            for (q, omega) in class.q.chunks_exact(n).zip(class.omega.chunks_exact(n)) {
                work.block(&tables, q, omega, n, &mut acc);
            }
        }
        (1..=kk)
            .map(|k| acc[(k - 1) * n..k * n].iter().map(|v| v.iter().sum::<f64>() * tables.factorial[k]).collect())
            .collect()
    }

    /// u(y; x) at one k (the moments are the same work; the shares only at k).
    pub fn payoffs(&self, x: &[f64], k: u32) -> Vec<f64> {
        self.dispatch(x, k, k as usize).pop().unwrap_or_default()
    }

    /// 1 − max_y u(y; x): the win rate k samples of x certify against any single response.
    pub fn certified_win_rate(&self, x: &[f64], k: u32) -> f64 {
        1.0 - self.payoffs(x, k).into_iter().fold(0.0, f64::max)
    }

    /// A symmetric equilibrium of the (k+1)-player game under the population: Newton's
    /// method on the exact payoffs from `start` (the previous k's equilibrium, or the
    /// maximal lottery at k = 1, which is NE₁); where that does not reach the value
    /// 1/(k+1) to 1e-10, `fallback` (a solver on rankings sampled from the population)
    /// gives another start, and the better of the two is returned. The certified rate of
    /// what is returned is exact either way.
    pub fn ne_k(&self, k: u32, start: Vec<f64>, fallback: impl FnOnce(Vec<f64>) -> Vec<f64>) -> Vec<f64> {
        let share = 1.0 / (k as f64 + 1.0);
        let (x, worst) = self.polish(start.clone(), k);
        if worst - share < DONE {
            return x;
        }
        let (y, other) = self.polish(fallback(start), k);
        if other < worst { y } else { x }
    }

    /// Newton's method with an active set from `x`: the best point seen and its largest
    /// payoff. The Jacobian is taken by forward differences once per support and then kept
    /// up to date by Broyden's rank-one updates (one payoff evaluation a step instead of
    /// one per response); a step that does not lower the largest payoff gets a fresh
    /// Jacobian before the support is widened.
    fn polish(&self, mut x: Vec<f64>, k: u32) -> (Vec<f64>, f64) {
        let worst_of = |u: &[f64]| u.iter().copied().fold(0.0, f64::max);
        let share = 1.0 / (k as f64 + 1.0);
        let mut u = self.payoffs(&x, k);
        let mut best_worst = worst_of(&u);
        let mut best = x.clone();
        let mut jac: Option<Jacobian> = None;
        // Active set: Newton on the support; a response outside it that pays more than the
        // support joins it (with a little mass); one whose mass Newton drives to 0 leaves.
        // `u` is always the payoffs at `x`, computed once.
        for _ in 0..48 {
            if best_worst - share < DONE {
                break;
            }
            let support: Vec<usize> = (0..x.len()).filter(|&i| x[i] > 1e-12).collect();
            if jac.as_ref().is_none_or(|j| j.support != support) {
                jac = self.jacobian(&x, &u, k, support);
            }
            let next = jac.as_ref().and_then(|j| j.step(&x, &u)).map(|n| {
                let un = self.payoffs(&n, k);
                (n, un)
            });
            match next.filter(|(_, un)| worst_of(un) + 1e-15 < best_worst) {
                Some((n, un)) => {
                    if let Some(j) = &mut jac {
                        j.update(&x, &u, &n, &un);
                    }
                    best_worst = worst_of(&un);
                    best = n.clone();
                    x = n;
                    u = un;
                }
                None if jac.as_ref().is_some_and(|j| !j.fresh) => jac = None,
                None => {
                    // Stuck on this support: bring in the best-paid response outside it.
                    jac = None;
                    let Some(y) = (0..x.len()).filter(|&i| x[i] <= 1e-12).max_by(|&a, &b| u[a].total_cmp(&u[b])) else {
                        break;
                    };
                    if u[y] <= share + 1e-12 {
                        break;
                    }
                    let mut widened: Vec<f64> = x.iter().map(|v| v * 0.999).collect();
                    widened[y] += 0.001;
                    u = self.payoffs(&widened, k);
                    x = widened;
                }
            }
        }
        (best, best_worst)
    }

    /// The Jacobian of the equal-payoff equations on `support` at `x` (payoffs `u`), by
    /// forward differences of the exact payoffs (one evaluation per response of the
    /// support). None for a support of fewer than two.
    fn jacobian(&self, x: &[f64], u: &[f64], k: u32, support: Vec<usize>) -> Option<Jacobian> {
        let s = support.len();
        if s < 2 {
            return None;
        }
        // Unknowns: x on the support, then v. Equations: u_y(x) − v = 0, Σ x − 1 = 0.
        let mut a = vec![vec![0.0; s + 1]; s + 1];
        for (col, &i) in support.iter().enumerate() {
            let h = 1e-7 * x[i].max(1e-3);
            let mut up = x.to_vec();
            up[i] += h;
            let uu = self.payoffs(&up, k);
            for (row, &y) in support.iter().enumerate() {
                a[row][col] = (uu[y] - u[y]) / h;
            }
        }
        for row in a.iter_mut().take(s) {
            row[s] = -1.0;
        }
        a[s][..s].iter_mut().for_each(|v| *v = 1.0);
        Some(Jacobian { support, a, fresh: true })
    }
}

/// The Jacobian of the equal-payoff equations F(x, v) = (u_y(x) − v for y in the support,
/// Σ x − 1) on one support.
struct Jacobian {
    support: Vec<usize>,
    a: Vec<Vec<f64>>,
    /// Taken by differences at the current point (not yet updated).
    fresh: bool,
}

impl Jacobian {
    /// The unknowns (x on the support, v: the x-weighted mean payoff) and F at a point.
    fn at(&self, x: &[f64], u: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let mass: f64 = self.support.iter().map(|&i| x[i]).sum();
        let v = self.support.iter().map(|&i| x[i] * u[i]).sum::<f64>() / mass;
        let mut z: Vec<f64> = self.support.iter().map(|&i| x[i]).collect();
        z.push(v);
        let mut f: Vec<f64> = self.support.iter().map(|&y| u[y] - v).collect();
        f.push(mass - 1.0);
        (z, f)
    }

    /// The Newton step from `x`, as a distribution (masses clipped at 0, renormalised).
    fn step(&self, x: &[f64], u: &[f64]) -> Option<Vec<f64>> {
        let (_, f) = self.at(x, u);
        let step = equilibria::solve(self.a.clone(), f.iter().map(|v| -v).collect())?;
        let mut next = x.to_vec();
        for (col, &i) in self.support.iter().enumerate() {
            next[i] = (x[i] + step[col]).max(0.0);
        }
        let z: f64 = next.iter().sum();
        (z > 0.0).then(|| next.iter().map(|v| v / z).collect())
    }

    /// Broyden's update after a step from `x` to `next`: A += (ΔF − AΔz) Δzᵀ / ‖Δz‖².
    fn update(&mut self, x: &[f64], u: &[f64], next: &[f64], u_next: &[f64]) {
        let ((z0, f0), (z1, f1)) = (self.at(x, u), self.at(next, u_next));
        let dz: Vec<f64> = z1.iter().zip(&z0).map(|(a, b)| a - b).collect();
        let norm: f64 = dz.iter().map(|v| v * v).sum();
        if !(norm > 0.0 && norm.is_finite()) {
            return;
        }
        for (row, (a1, a0)) in self.a.iter_mut().zip(f1.iter().zip(&f0)) {
            let predicted: f64 = row.iter().zip(&dz).map(|(r, d)| r * d).sum();
            let miss = (a1 - a0) - predicted;
            for (r, d) in row.iter_mut().zip(&dz) {
                *r += miss * d / norm;
            }
        }
        self.fresh = false;
    }
}

/// What a policy x contributes to every node: its support and each response's x^j / j!.
struct Tables {
    factorial: Vec<f64>,
    /// xᵢ^j / j!: response i's factor of the generating function E[e^{zW}],
    /// 1 + qᵢ(e^{xᵢz} − 1), has coefficients 1 and qᵢ xᵢ^j / j! (moments are kept divided by
    /// m!, μ_m = E[W^m] / m!, which takes the binomial coefficients out of the products).
    scaled: Vec<Vec<f64>>,
    /// y's own copies: Σ_j x_y^j / (j! (j + 1)) z^j, the tie split among j copies of y.
    ties: Vec<Vec<f64>>,
    support: Vec<usize>,
    outside: Vec<usize>,
    /// The smallest k whose shares are wanted.
    from: usize,
}

impl Tables {
    fn new(x: &[f64], kk: usize, from: usize) -> Self {
        let w = kk + 1;
        let mut factorial = vec![1.0; w];
        for j in 1..w {
            factorial[j] = factorial[j - 1] * j as f64;
        }
        let scaled: Vec<Vec<f64>> =
            x.iter().map(|&v| (0..w).map(|j| v.powi(j as i32) / factorial[j]).collect()).collect();
        let ties = scaled.iter().map(|p| p.iter().enumerate().map(|(j, c)| c / (j as f64 + 1.0)).collect()).collect();
        let support = (0..x.len()).filter(|&i| x[i] > 0.0).collect();
        let outside = (0..x.len()).filter(|&i| x[i] <= 0.0).collect();
        Self { factorial, scaled, ties, support, outside, from: from.max(1) }
    }
}

/// Scratch polynomials (coefficients 0..w, lane-wise): prefix and suffix products of the
/// support's factors, and the product without one response.
struct Work {
    w: usize,
    pre: Vec<Lanes>,
    suf: Vec<Lanes>,
    rest: Vec<Lanes>,
}

impl Work {
    fn new(s: usize, w: usize) -> Self {
        Self {
            w,
            pre: vec![[0.0; LANES]; (s + 1) * w],
            suf: vec![[0.0; LANES]; (s + 1) * w],
            rest: vec![[0.0; LANES]; w],
        }
    }

    /// Adds one block of nodes' ω-weighted shares to `acc` (`[k − 1][y]`, lane-wise; the
    /// factor k! is applied at the end).
    #[inline(always)]
    fn block(&mut self, t: &Tables, q: &[Lanes], omega: &[Lanes], n: usize, acc: &mut [Lanes]) {
        let (w, s) = (self.w, t.support.len());
        let live = |y: usize| omega[y].iter().any(|&v| v > 0.0);
        if !(0..n).any(live) {
            return;
        }
        self.pre[..w].fill([0.0; LANES]);
        self.pre[0] = [1.0; LANES];
        for (j, &i) in t.support.iter().enumerate() {
            let (done, next) = self.pre.split_at_mut((j + 1) * w);
            multiply_factor(&done[j * w..], &mut next[..w], &q[i], &t.scaled[i]);
        }
        self.suf[s * w..].fill([0.0; LANES]);
        self.suf[s * w] = [1.0; LANES];
        for (j, &i) in t.support.iter().enumerate().rev() {
            let (head, done) = self.suf.split_at_mut((j + 1) * w);
            multiply_factor(&done[..w], &mut head[j * w..], &q[i], &t.scaled[i]);
        }
        // A response outside the support: x has no copies of it, so its share is P(all k
        // samples below it), the k-th moment of the whole product.
        let all = &self.pre[s * w..];
        for &y in t.outside.iter().filter(|&&y| live(y)) {
            for k in t.from..w {
                lanes_add_product(&mut acc[(k - 1) * n + y], &omega[y], &all[k]);
            }
        }
        for (j, &y) in t.support.iter().enumerate().filter(|&(_, &y)| live(y)) {
            // The moments of W without y: the prefix before y times the suffix after it.
            let (a, b) = (&self.pre[j * w..(j + 1) * w], &self.suf[(j + 1) * w..(j + 2) * w]);
            for m in 0..w {
                self.rest[m] = convolve_at(a, b, m);
            }
            let ties = &t.ties[y];
            for k in t.from..w {
                let mut share = [0.0; LANES];
                for (l, &tie) in ties[..=k].iter().enumerate() {
                    lanes_add_scaled(&mut share, &self.rest[k - l], tie);
                }
                lanes_add_product(&mut acc[(k - 1) * n + y], &omega[y], &share);
            }
        }
    }
}

/// Coefficient m of the product of `a` and `b`, lane-wise.
#[inline(always)]
fn convolve_at(a: &[Lanes], b: &[Lanes], m: usize) -> Lanes {
    let mut out = [0.0; LANES];
    for l in 0..=m {
        for lane in 0..LANES {
            out[lane] += a[l][lane] * b[m - l][lane];
        }
    }
    out
}

#[inline(always)]
fn lanes_add_product(acc: &mut Lanes, a: &Lanes, b: &Lanes) {
    for lane in 0..LANES {
        acc[lane] += a[lane] * b[lane];
    }
}

#[inline(always)]
fn lanes_add_scaled(acc: &mut Lanes, a: &Lanes, c: f64) {
    for lane in 0..LANES {
        acc[lane] += a[lane] * c;
    }
}

/// `next` = `prev` times response i's factor 1 + q(e^{xz} − 1) (`scaled`: x^j / j!),
/// lane-wise, truncated to `next`'s length.
#[inline(always)]
fn multiply_factor(prev: &[Lanes], next: &mut [Lanes], q: &Lanes, scaled: &[f64]) {
    let w = next.len();
    if q.iter().all(|&v| v == 0.0) {
        next.copy_from_slice(&prev[..w]);
        return;
    }
    for m in 0..w {
        let mut add = [0.0; LANES];
        for l in 0..m {
            lanes_add_scaled(&mut add, &prev[l], scaled[m - l]);
        }
        for lane in 0..LANES {
            next[m][lane] = prev[m][lane] + q[lane] * add[lane];
        }
    }
}

#[cfg(test)]
#[path = "population_tests.rs"]
mod tests;

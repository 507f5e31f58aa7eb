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
    pub(crate) fn responses(&self) -> usize {
        self.log_worths.first().map_or(0, Vec::len)
    }

    /// The population's quadrature tables on the certified rates' grid, shared by every
    /// payoff evaluation under it (build them once per population, not per evaluation).
    pub fn race(&self) -> Race {
        Race::new(self)
    }

    /// Majority margins P(a ≻ b) − P(b ≻ a) (exact: P(a ≻ b) = w_a / (w_a + w_b) in a class).
    pub(crate) fn margins(&self) -> Vec<Vec<f64>> {
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
    pub(crate) step: f64,
    /// The lowest node, as σ + ln Σwᵢ (the share varies on the scale t ~ 1/Σwᵢ as t → 0).
    /// Below it the share is taken linear in t between its closed form at t = 0 and its
    /// value at the lowest node (the trapezoid continued to −∞ on that line): an error of
    /// ~e^{3·low}.
    pub(crate) low: f64,
    /// The highest node is where the least worthy response's density e^{−w t} is e^{−top}.
    pub(crate) top: f64,
}

/// The certified rates' grid: ~1e-11 (h = 0.36; the tail below the lowest node, measured,
/// ~2e-12; e^{−38}).
pub(crate) const FINE: Grid = Grid { step: 0.36, low: -7.5, top: 38.0 };
/// The bootstrap's re-certifications: ~2e-7 (h = 0.55; the tail, measured, ~1e-8;
/// e^{−20}); an interval's percentiles move by far more than that from one resample to the
/// next.
pub const COARSE: Grid = Grid { step: 0.55, low: -4.5, top: 20.0 };

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
    /// Each response's weight below the lowest nodes (all classes) that goes to its share
    /// at t = 0.
    tail: Vec<f64>,
}

#[derive(Debug, Clone)]
struct ClassRace {
    /// `blocks × n`, row-major: `q[b * n + i]` is response i's qᵢ at block b's nodes.
    q: Vec<Lanes>,
    omega: Vec<Lanes>,
}

impl Race {
    pub(crate) fn new(p: &PlPopulation) -> Self {
        Self::on(p, FINE)
    }

    /// The tables on `grid` (see `FINE`, [`COARSE`]).
    pub fn on(p: &PlPopulation, grid: Grid) -> Self {
        let step = grid.step;
        let n = p.responses();
        let mut tail = vec![0.0; n];
        let classes = p
            .weights
            .iter()
            .zip(&p.log_worths)
            .filter(|(cw, _)| **cw > 0.0)
            .map(|(&weight, lw)| {
                let top = lw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = lw.iter().map(|l| (l - top).max(-DEPTH).exp()).collect();
                let w_min = w.iter().copied().fold(1.0, f64::min);
                // The share varies on the scale t ~ 1 / Σw at the low end (t → 0).
                let low = grid.low - w.iter().sum::<f64>().ln();
                let sigma_high = grid.top.ln() - w_min.ln();
                let nodes = ((sigma_high - low) / step).ceil() as usize + 1;
                let blocks = nodes.div_ceil(LANES);
                let mut q = vec![[1.0; LANES]; blocks * n];
                let mut omega = vec![[0.0; LANES]; blocks * n];
                for node in 0..nodes {
                    let t = (low + step * node as f64).exp();
                    let (b, lane) = (node / LANES, node % LANES);
                    for (i, &wi) in w.iter().enumerate() {
                        // Below 1e-20 a factor is 1 and a weight 0 to far below rounding,
                        // and exact zeros let a block skip them.
                        let qi = Some((-wi * t).exp()).filter(|&v| v >= 1e-20).unwrap_or(0.0);
                        q[b * n + i][lane] = qi;
                        omega[b * n + i][lane] = weight * wi * t * qi * step;
                    }
                }
                // The nodes below the lowest, down to where they weigh nothing: y's share
                // there is taken linear in t between its value at t = 0 (known in closed
                // form) and its value at the lowest node, so node j below (t_j = t₀e^{−jh})
                // gives the lowest node the part t_j/t₀ of its weight and the share at
                // t = 0 the rest.
                // Once w t < 1e-9, e^{−w t} is 1 to that and the rest are geometric series.
                let shrink = (-step).exp();
                for (i, &wi) in w.iter().enumerate() {
                    let (mut t, mut near) = (low.exp() * shrink, shrink);
                    let (mut at_low, mut at_top) = (0.0, 0.0);
                    while wi * t > 1e-9 {
                        let d = weight * wi * t * (-wi * t).exp() * step;
                        at_low += d * near;
                        at_top += d * (1.0 - near);
                        t *= shrink;
                        near *= shrink;
                    }
                    let d = weight * wi * t * step;
                    let (all, low_part) = (d / (1.0 - shrink), d * near / (1.0 - shrink * shrink));
                    omega[i][0] += at_low + low_part;
                    tail[i] += at_top + all - low_part;
                }
                ClassRace { q, omega }
            })
            .collect();
        Self { n, classes, tail }
    }

    /// u(y; x) for every response y and every k in 1..=`k_max` (entry k − 1), to ~1e-11.
    pub fn payoffs_up_to(&self, x: &[f64], k_max: u32) -> Vec<Vec<f64>> {
        self.payoffs_between(x, 1, k_max)
    }

    /// The rows of k in `k_min..=k_max` of [`Race::payoffs_up_to`], those below left 0
    /// (the moments are the same work; the shares are only formed where wanted).
    pub(crate) fn payoffs_between(&self, x: &[f64], k_min: u32, k_max: u32) -> Vec<Vec<f64>> {
        self.evaluate(x, k_max, k_min as usize, |s| (1..=k_max as usize).map(|k| self.row(s, x, k).collect()).collect())
    }

    /// max_y u(y; x) at each k in `k_min..=k_max` (entry k − 1; those below left 0): what
    /// a certified rate needs, without the table of every payoff.
    pub(crate) fn best_payoffs_between(&self, x: &[f64], k_min: u32, k_max: u32) -> Vec<f64> {
        self.evaluate(x, k_max, k_min as usize, |s| {
            (1..=k_max as usize).map(|k| self.row(s, x, k).fold(0.0, f64::max)).collect()
        })
    }

    /// The kernel's moments of the rows `from..=k_max` into this thread's buffers (kept
    /// from call to call: the bootstrap evaluates ~10⁵ policies), then `read` of them.
    fn evaluate<R>(&self, x: &[f64], k_max: u32, from: usize, read: impl FnOnce(&Scratch) -> R) -> R {
        SCRATCH.with_borrow_mut(|s| {
            s.tables.fill(x, k_max as usize, from);
            self.dispatch(s);
            read(s)
        })
    }

    /// u(y; x) at k for every y from the moments in `s`: the nodes' lanes summed, times k!,
    /// and where the row is wanted the tail's share at t = 0 (rows below `from` are 0).
    fn row<'a>(&'a self, s: &'a Scratch, x: &'a [f64], k: usize) -> impl Iterator<Item = f64> + 'a {
        (0..self.n).map(move |y| {
            let v = s.acc[(k - 1) * self.n + y].iter().sum::<f64>() * s.tables.factorial[k];
            v + if k >= s.tables.from { self.tail[y] * share_at_the_top(x[y], k) } else { 0.0 }
        })
    }

    fn dispatch(&self, s: &mut Scratch) {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has just been seen to support AVX-512F and FMA.
            return unsafe { self.moments_avx512(s) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has just been seen to support AVX2 and FMA.
            return unsafe { self.moments_avx2(s) };
        }
        self.moments_portable(s)
    }

    /// The same arithmetic compiled for AVX-512 (a block's 8 lanes in one vector instead
    /// of SSE2's four) or AVX2 (two), with FMA. Every multiply-add is fused on every path
    /// (`mul_add`, exactly rounded: a library call where the CPU has no FMA), so the
    /// results are bit for bit the portable path's.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn moments_avx512(&self, s: &mut Scratch) {
        self.moments_portable(s)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn moments_avx2(&self, s: &mut Scratch) {
        self.moments_portable(s)
    }

    /// Every class's blocks of nodes into `s.acc` (`[k − 1][y]`, lane-wise).
    #[inline(always)]
    fn moments_portable(&self, s: &mut Scratch) {
        let n = self.n;
        let Scratch { tables, work, acc } = s;
        work.reset(tables.support.len(), tables.kk + 1);
        acc.clear();
        acc.resize(tables.kk * n, [0.0; LANES]);
        for class in &self.classes {
            for (q, omega) in class.q.chunks_exact(n).zip(class.omega.chunks_exact(n)) {
                work.block(tables, q, omega, n, acc);
            }
        }
    }

    /// u(y; x) at one k (the moments are the same work; the shares only at k).
    pub fn payoffs(&self, x: &[f64], k: u32) -> Vec<f64> {
        self.evaluate(x, k, k as usize, |s| self.row(s, x, k as usize).collect())
    }

    /// 1 − max_y u(y; x): the win rate k samples of x certify against any single response.
    pub fn certified_win_rate(&self, x: &[f64], k: u32) -> f64 {
        1.0 - self.best_payoffs_between(x, k, k)[k as usize - 1]
    }

    /// A symmetric equilibrium of the (k+1)-player game under the population: Newton's
    /// method on the exact payoffs from `start` (the previous k's equilibrium, or the
    /// maximal lottery at k = 1, which is NE₁); where that does not reach the value
    /// 1/(k+1) to 1e-10, `fallback` (a solver on rankings sampled from the population)
    /// gives another start, and the better of the two is returned. The certified rate of
    /// what is returned is exact either way.
    pub(crate) fn ne_k(&self, k: u32, start: Vec<f64>, fallback: impl FnOnce(Vec<f64>) -> Vec<f64>) -> Vec<f64> {
        let share = 1.0 / (k as f64 + 1.0);
        let (x, worst) = self.polish(start.clone(), k, DONE);
        if worst - share < DONE {
            return x;
        }
        let (y, other) = self.polish(fallback(start), k, DONE);
        if other < worst { y } else { x }
    }

    /// NE_k near `start` (a bootstrap refit's, from the full fit's equilibrium): Newton
    /// until the largest payoff is within `done` of 1/(k+1), or the best point it reached;
    /// with that point's largest payoff.
    ///
    /// `jacobian`, where given, is a Jacobian taken at `start` under a nearby population
    /// (the full fit's, at its own equilibrium): Newton starts with it instead of taking one
    /// by differences (one payoff evaluation per response of the support), and takes a
    /// fresh one where a step with it does not lower the largest payoff.
    pub(crate) fn ne_k_near(&self, k: u32, start: Vec<f64>, done: f64, jacobian: Option<&Jacobian>) -> (Vec<f64>, f64) {
        self.polish_from(start, k, done, jacobian.map(|j| Jacobian { fresh: false, ..j.clone() }))
    }

    /// The Jacobian of the equal-payoff equations at `x`, on its support, for
    /// [`Race::ne_k_near`] under populations near this one.
    pub(crate) fn jacobian_at(&self, x: &[f64], k: u32) -> Option<Jacobian> {
        let support: Vec<usize> = (0..x.len()).filter(|&i| x[i] > 1e-12).collect();
        self.jacobian(x, &self.payoffs(x, k), k, support)
    }

    /// Newton's method with an active set from `x`: the best point seen and its largest
    /// payoff. The Jacobian is taken by forward differences once per support and then kept
    /// up to date by Broyden's rank-one updates (one payoff evaluation a step instead of
    /// one per response); a step that does not lower the largest payoff gets a fresh
    /// Jacobian before the support is widened.
    fn polish(&self, x: Vec<f64>, k: u32, done: f64) -> (Vec<f64>, f64) {
        self.polish_from(x, k, done, None)
    }

    /// [`Race::polish`] starting with the Jacobian `jac`, where given.
    fn polish_from(&self, mut x: Vec<f64>, k: u32, done: f64, mut jac: Option<Jacobian>) -> (Vec<f64>, f64) {
        let worst_of = |u: &[f64]| u.iter().copied().fold(0.0, f64::max);
        let share = 1.0 / (k as f64 + 1.0);
        let mut u = self.payoffs(&x, k);
        let mut best_worst = worst_of(&u);
        let mut best = x.clone();
        // Active set: Newton on the support; a response outside it that pays more than the
        // support joins it (with a little mass); one whose mass Newton drives to 0 leaves.
        // `u` is always the payoffs at `x`, computed once.
        for _ in 0..48 {
            if best_worst - share < done {
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
#[derive(Debug, Clone)]
pub(crate) struct Jacobian {
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

/// y's share where its utility is above every other response's (t = 0): E[1/(J + 1)] for
/// J ~ Binomial(k, x_y) copies of y among the k samples, (1 − (1 − x_y)^{k+1}) / ((k+1) x_y).
fn share_at_the_top(x: f64, k: usize) -> f64 {
    let m = (k + 1) as f64;
    if x <= 0.0 {
        return 1.0;
    }
    -(m * (-x).ln_1p()).exp_m1() / (m * x)
}

/// A payoff evaluation's buffers, one set per thread, reused from call to call.
#[derive(Default)]
struct Scratch {
    tables: Tables,
    work: Work,
    acc: Vec<Lanes>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// What a policy x contributes to every node: its support and each response's x^j / j!.
#[derive(Default)]
struct Tables {
    /// The highest k; the polynomials keep its kk + 1 coefficients.
    kk: usize,
    factorial: Vec<f64>,
    /// xᵢ^j / j! (`[i * (kk + 1) + j]`): response i's factor of the generating function
    /// E[e^{zW}], 1 + qᵢ(e^{xᵢz} − 1), has coefficients 1 and qᵢ xᵢ^j / j! (moments are
    /// kept divided by m!, μ_m = E[W^m] / m!, which takes the binomial coefficients out of
    /// the products).
    scaled: Vec<f64>,
    /// y's own copies: Σ_j x_y^j / (j! (j + 1)) z^j, the tie split among j copies of y.
    ties: Vec<f64>,
    support: Vec<usize>,
    outside: Vec<usize>,
    /// The smallest k whose shares are wanted.
    from: usize,
}

impl Tables {
    fn fill(&mut self, x: &[f64], kk: usize, from: usize) {
        let w = kk + 1;
        self.kk = kk;
        self.factorial.clear();
        self.factorial.push(1.0);
        for j in 1..w {
            self.factorial.push(self.factorial[j - 1] * j as f64);
        }
        let factorial = &self.factorial;
        self.scaled.clear();
        self.scaled.extend(x.iter().flat_map(|&v| (0..w).map(move |j| v.powi(j as i32) / factorial[j])));
        self.ties.clear();
        self.ties
            .extend(self.scaled.chunks_exact(w).flat_map(|p| p.iter().enumerate().map(|(j, c)| c / (j as f64 + 1.0))));
        self.support.clear();
        self.support.extend((0..x.len()).filter(|&i| x[i] > 0.0));
        self.outside.clear();
        self.outside.extend((0..x.len()).filter(|&i| x[i] <= 0.0));
        self.from = from.max(1);
    }

    fn scaled(&self, i: usize) -> &[f64] {
        &self.scaled[i * (self.kk + 1)..(i + 1) * (self.kk + 1)]
    }

    fn ties(&self, i: usize) -> &[f64] {
        &self.ties[i * (self.kk + 1)..(i + 1) * (self.kk + 1)]
    }
}

/// Scratch polynomials (coefficients 0..w, lane-wise): prefix and suffix products of the
/// support's factors, and the product without one response.
#[derive(Default)]
struct Work {
    w: usize,
    pre: Vec<Lanes>,
    suf: Vec<Lanes>,
    rest: Vec<Lanes>,
}

impl Work {
    /// Room for `s` factors of `w` coefficients (every entry is written before it is read).
    fn reset(&mut self, s: usize, w: usize) {
        self.w = w;
        self.pre.resize((s + 1) * w, [0.0; LANES]);
        self.suf.resize((s + 1) * w, [0.0; LANES]);
        self.rest.resize(w, [0.0; LANES]);
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
            multiply_factor(&done[j * w..], &mut next[..w], &q[i], t.scaled(i));
        }
        self.suf[s * w..].fill([0.0; LANES]);
        self.suf[s * w] = [1.0; LANES];
        for (j, &i) in t.support.iter().enumerate().rev() {
            let (head, done) = self.suf.split_at_mut((j + 1) * w);
            multiply_factor(&done[..w], &mut head[j * w..], &q[i], t.scaled(i));
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
            convolve(a, b, &mut self.rest);
            // Share k: Σ_l rest[l] ties[k − l] (the same sum whichever k are wanted).
            for k in t.from..w {
                let share = dot_scaled(&self.rest, t.ties(y), k, k + 1);
                lanes_add_product(&mut acc[(k - 1) * n + y], &omega[y], &share);
            }
        }
    }
}

// The convolutions here are latency-bound if each coefficient's sum is formed alone
// (every fused multiply-add waits on the one before), so four coefficients are summed at a
// time as independent chains, the lane loop innermost (one vector operation each). Every
// sum still adds its terms in increasing l.

/// `out[m]` = Σ_{l ≤ m} a[l] b[m − l], lane-wise, for m < out.len().
#[inline(always)]
fn convolve(a: &[Lanes], b: &[Lanes], out: &mut [Lanes]) {
    let len = out.len();
    let mut m = 0;
    while m + 4 <= len {
        let [mut o0, mut o1, mut o2, mut o3] = [[0.0; LANES]; 4];
        for l in 0..=m {
            let x = &a[l];
            o0 = fma(x, &b[m - l], o0);
            o1 = fma(x, &b[m + 1 - l], o1);
            o2 = fma(x, &b[m + 2 - l], o2);
            o3 = fma(x, &b[m + 3 - l], o3);
        }
        // The ragged end: term l = m + r belongs to coefficients m + r and above.
        o1 = fma(&a[m + 1], &b[0], o1);
        o2 = fma(&a[m + 1], &b[1], o2);
        o3 = fma(&a[m + 1], &b[2], o3);
        o2 = fma(&a[m + 2], &b[0], o2);
        o3 = fma(&a[m + 2], &b[1], o3);
        o3 = fma(&a[m + 3], &b[0], o3);
        out[m..m + 4].copy_from_slice(&[o0, o1, o2, o3]);
        m += 4;
    }
    for (m, o) in out.iter_mut().enumerate().skip(m) {
        *o = dot(a, b, m, m + 1);
    }
}

/// Σ_{l < len} a[l] b[m − l], lane-wise, for a coefficient alone: four partial sums (over
/// l mod 4, so that the additions do not wait on each other), added pairwise.
#[inline(always)]
fn dot(a: &[Lanes], b: &[Lanes], m: usize, len: usize) -> Lanes {
    let [mut p0, mut p1, mut p2, mut p3] = [[0.0; LANES]; 4];
    let mut l = 0;
    while l + 4 <= len {
        p0 = fma(&a[l], &b[m - l], p0);
        p1 = fma(&a[l + 1], &b[m - l - 1], p1);
        p2 = fma(&a[l + 2], &b[m - l - 2], p2);
        p3 = fma(&a[l + 3], &b[m - l - 3], p3);
        l += 4;
    }
    for l in l..len {
        p0 = fma(&a[l], &b[m - l], p0);
    }
    sum4(p0, p1, p2, p3)
}

/// Σ_{l < len} v[l] c[m − l], lane-wise, as [`dot`].
#[inline(always)]
fn dot_scaled(v: &[Lanes], c: &[f64], m: usize, len: usize) -> Lanes {
    let [mut p0, mut p1, mut p2, mut p3] = [[0.0; LANES]; 4];
    let mut l = 0;
    while l + 4 <= len {
        p0 = fma_scaled(&v[l], c[m - l], p0);
        p1 = fma_scaled(&v[l + 1], c[m - l - 1], p1);
        p2 = fma_scaled(&v[l + 2], c[m - l - 2], p2);
        p3 = fma_scaled(&v[l + 3], c[m - l - 3], p3);
        l += 4;
    }
    for l in l..len {
        p0 = fma_scaled(&v[l], c[m - l], p0);
    }
    sum4(p0, p1, p2, p3)
}

#[inline(always)]
fn sum4(p0: Lanes, p1: Lanes, p2: Lanes, p3: Lanes) -> Lanes {
    std::array::from_fn(|lane| (p0[lane] + p1[lane]) + (p2[lane] + p3[lane]))
}

/// a b + acc, lane-wise, fused (one rounding: the same bits on every path).
#[inline(always)]
fn fma(a: &Lanes, b: &Lanes, acc: Lanes) -> Lanes {
    std::array::from_fn(|lane| a[lane].mul_add(b[lane], acc[lane]))
}

#[inline(always)]
fn fma_scaled(a: &Lanes, c: f64, acc: Lanes) -> Lanes {
    std::array::from_fn(|lane| a[lane].mul_add(c, acc[lane]))
}

#[inline(always)]
fn lanes_add_product(acc: &mut Lanes, a: &Lanes, b: &Lanes) {
    *acc = fma(a, b, *acc);
}

/// `next` = `prev` times response i's factor 1 + q(e^{xz} − 1) (`scaled`: x^j / j!),
/// lane-wise, truncated to `next`'s length: next[m] = prev[m] + q Σ_{l<m} prev[l] scaled[m − l].
#[inline(always)]
fn multiply_factor(prev: &[Lanes], next: &mut [Lanes], q: &Lanes, scaled: &[f64]) {
    let w = next.len();
    if q.iter().all(|&v| v == 0.0) {
        next.copy_from_slice(&prev[..w]);
        return;
    }
    let mut m = 0;
    while m + 4 <= w {
        let [mut o0, mut o1, mut o2, mut o3] = [[0.0; LANES]; 4];
        for l in 0..m {
            let x = &prev[l];
            o0 = fma_scaled(x, scaled[m - l], o0);
            o1 = fma_scaled(x, scaled[m + 1 - l], o1);
            o2 = fma_scaled(x, scaled[m + 2 - l], o2);
            o3 = fma_scaled(x, scaled[m + 3 - l], o3);
        }
        // The ragged end: term l = m + r belongs to coefficients m + r + 1 and above.
        let (r0, r1, r2) = (&prev[m], &prev[m + 1], &prev[m + 2]);
        o1 = fma_scaled(r0, scaled[1], o1);
        o2 = fma_scaled(r0, scaled[2], o2);
        o3 = fma_scaled(r0, scaled[3], o3);
        o2 = fma_scaled(r1, scaled[1], o2);
        o3 = fma_scaled(r1, scaled[2], o3);
        o3 = fma_scaled(r2, scaled[1], o3);
        next[m] = fma(q, &o0, prev[m]);
        next[m + 1] = fma(q, &o1, prev[m + 1]);
        next[m + 2] = fma(q, &o2, prev[m + 2]);
        next[m + 3] = fma(q, &o3, prev[m + 3]);
        m += 4;
    }
    for m in m..w {
        next[m] = fma(q, &dot_scaled(prev, scaled, m, m), prev[m]);
    }
}

#[cfg(test)]
mod tests;

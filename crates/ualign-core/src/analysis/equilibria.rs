//! The (k+1)-player game over a prompt's pool and the single-output policies it certifies.
//!
//! Each participant holds a strict order over the pool's n distinct responses. k samples
//! are drawn from a policy x; one more response y is offered; the participant's favourite
//! among the k+1 wins, identical copies splitting the win. With W the mass x puts strictly
//! below y in a participant's order, y's payoff is
//!     u(y; x) = ((W + x_y)^{k+1} − W^{k+1}) / ((k+1) x_y) = Σ_j C(k,j) W^{k−j} x_y^j / (j+1),
//! averaged over participants (the sum form is exact at x_y = 0 and free of cancellation).
//! The k samples win against y with probability 1 − u(y; x); the certified f(k) of x is
//! 1 − max_y u(y; x). Under x itself the payoffs average to exactly 1/(k+1), and the max
//! payoff is convex in x, so a symmetric equilibrium NE_k minimises it and certifies
//! at least k/(k+1).

/// A participant's strict order over responses 0..n, best first.
pub type Order = Vec<usize>;

fn binomials(k: u32) -> Vec<f64> {
    let mut c = vec![1.0; k as usize + 1];
    for j in 1..=k as usize {
        c[j] = c[j - 1] * (k as usize - j + 1) as f64 / j as f64;
    }
    c
}

/// The series coefficients of s(W, a) = Σ_j C(k,j) W^{k−j} a^j / (j+1) and of its two
/// partial derivatives, computed once per k so that a term costs multiplications only.
struct Shares {
    k: u32,
    /// C(k,j) / (j+1)
    s: Vec<f64>,
    /// C(k,j) (k−j) / (j+1): ∂/∂W
    d_w: Vec<f64>,
    /// C(k,j+1) (j+1) / (j+2), zero at j = k: ∂/∂a
    d_a: Vec<f64>,
}

impl Shares {
    fn new(k: u32) -> Self {
        let binom = binomials(k);
        let ku = k as usize;
        let s = binom.iter().enumerate().map(|(j, c)| c / (j as f64 + 1.0)).collect();
        let d_w = binom.iter().enumerate().map(|(j, c)| c * (ku - j) as f64 / (j as f64 + 1.0)).collect();
        let d_a =
            (0..=ku).map(|j| if j < ku { binom[j + 1] * (j as f64 + 1.0) / (j as f64 + 2.0) } else { 0.0 }).collect();
        Self { k, s, d_w, d_a }
    }

    /// s(W, a), by the closed form ((W+a)^{k+1} − W^{k+1})/((k+1)a) when a > W (no
    /// cancellation to speak of: relative error ~2ε), else by the series in a/W
    /// (positive terms, no cancellation).
    fn share(&self, w: f64, a: f64) -> f64 {
        let e = self.k as i32 + 1;
        if a > w {
            return ((w + a).powi(e) - w.powi(e)) / (e as f64 * a);
        }
        if self.k == 0 {
            return 1.0;
        }
        let wk = w.powi(self.k as i32);
        if a == 0.0 || w == 0.0 {
            return wk;
        }
        let r = a / w;
        let (mut s, mut rj) = (0.0, 1.0);
        for c in &self.s {
            s += c * rj;
            rj *= r;
            if rj < 1e-18 {
                break;
            }
        }
        s * wk
    }

    /// s(W, a) with ∂s/∂W and ∂s/∂a: in closed form when a > W (∂/∂W = ((W+a)^k − W^k)/a,
    /// ∂/∂a = ((W+a)^k − s)/a), else as series in r = a/W ≤ 1 (positive terms; they fall
    /// as r^j, so a small a needs few).
    fn share_and_slopes(&self, w: f64, a: f64) -> (f64, f64, f64) {
        let k = self.k as i32;
        if a > w {
            let (t, top, low) = (w + a, (w + a).powi(k), w.powi(k));
            let s = (top * t - low * w) / ((k as f64 + 1.0) * a);
            return (s, (top - low) / a, (top - s) / a);
        }
        let ku = self.k as usize;
        if ku == 0 {
            return (1.0, 0.0, 0.0);
        }
        let wk1 = w.powi(k - 1);
        if a == 0.0 || w == 0.0 {
            // Only j = 0 (and j = 1 for ∂/∂a) survive at a = 0; w = 0 with a > 0 is never small.
            return (wk1 * w, ku as f64 * wk1, ku as f64 * wk1 / 2.0);
        }
        let r = a / w;
        let (mut s, mut d_w, mut d_a) = (0.0, 0.0, 0.0);
        let mut rj = 1.0; // r^j
        for ((cs, cw), ca) in self.s.iter().zip(&self.d_w).zip(&self.d_a) {
            s += cs * rj;
            d_w += cw * rj;
            d_a += ca * rj;
            rj *= r;
            if rj < 1e-18 {
                break;
            }
        }
        (s * wk1 * w, d_w * wk1, d_a * wk1)
    }
}

/// u(y; x) for every response y, averaged over participants.
pub(crate) fn payoffs(orders: &[Order], x: &[f64], k: u32) -> Vec<f64> {
    let n = x.len();
    let shares = Shares::new(k);
    let mut u = vec![0.0; n];
    for order in orders {
        let mut below = 0.0;
        for j in (0..order.len()).rev() {
            let (y, a) = (order[j], x[order[j]]);
            u[y] += shares.share(below, a);
            below += a;
        }
    }
    let m = orders.len().max(1) as f64;
    u.iter_mut().for_each(|v| *v /= m);
    u
}

/// `payoffs` for every k in 1..=`k_max` at once (entry k − 1), for a policy that does not
/// change with k. s_k(W, a) = ∫₀¹ (W + a t)^k dt is a polynomial of degree k in t, so
/// Gauss–Legendre quadrature with ⌈(k_max+1)/2⌉ nodes is exact for every k ≤ k_max, and
/// its terms are all positive (no cancellation, relative error ~k ε): one pass over the
/// orders updates the powers (W + a tᵢ)^k node by node as k grows.
pub fn payoffs_up_to(orders: &[Order], x: &[f64], k_max: u32) -> Vec<Vec<f64>> {
    let n = x.len();
    let kk = k_max as usize;
    let (nodes, weights) = gauss_legendre(kk / 2 + 1);
    // acc[y * kk + (k − 1)] = Σ over participants of s_k(W, x_y)
    let mut acc = vec![0.0; n * kk];
    let mut base = vec![0.0; nodes.len()];
    let mut power = vec![0.0; nodes.len()];
    for order in orders {
        let mut below = 0.0;
        for j in (0..order.len()).rev() {
            let (y, a) = (order[j], x[order[j]]);
            for ((b, p), t) in base.iter_mut().zip(power.iter_mut()).zip(&nodes) {
                *b = below + a * t;
                *p = *b;
            }
            for slot in &mut acc[y * kk..(y + 1) * kk] {
                *slot += power.iter().zip(&weights).map(|(p, w)| p * w).sum::<f64>();
                power.iter_mut().zip(&base).for_each(|(p, b)| *p *= b);
            }
            below += a;
        }
    }
    let m = orders.len().max(1) as f64;
    (0..kk).map(|k| (0..n).map(|y| acc[y * kk + k] / m).collect()).collect()
}

/// Gauss–Legendre nodes and weights on [0, 1] (m nodes: exact for polynomials of degree
/// ≤ 2m − 1), by Newton's method on the Legendre polynomial from the usual cosine guesses.
pub(crate) fn gauss_legendre(m: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut nodes, mut weights) = (vec![0.0; m], vec![0.0; m]);
    for i in 0..m {
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // P_m(z) by the three-term recurrence, and its derivative.
            let (mut p0, mut p1) = (1.0, z);
            for l in 2..=m {
                let p2 = ((2 * l - 1) as f64 * z * p1 - (l - 1) as f64 * p0) / l as f64;
                (p0, p1) = (p1, p2);
            }
            // p1 = P_m(z), p0 = P_{m−1}(z)
            dp = m as f64 * (z * p1 - p0) / (z * z - 1.0);
            let dz = p1 / dp;
            z -= dz;
            if dz.abs() < 1e-16 {
                break;
            }
        }
        // On [−1, 1] the weight is 2 / ((1 − z²) P'(z)²); mapped to [0, 1], half of it.
        nodes[i] = (1.0 - z) / 2.0;
        weights[i] = 1.0 / ((1.0 - z * z) * dp * dp);
    }
    (nodes, weights)
}

/// The worst case over single responses: 1 − max_y u(y; x).
pub fn certified_win_rate(orders: &[Order], x: &[f64], k: u32) -> f64 {
    1.0 - payoffs(orders, x, k).into_iter().fold(0.0, f64::max)
}

/// A symmetric equilibrium of the (k+1)-player game, with the equal-share gap reached.
#[derive(Debug, Clone)]
pub(crate) struct Equilibrium {
    pub(crate) distribution: Vec<f64>,
    /// max_y u(y; x) − 1/(k+1): zero at an equilibrium.
    pub(crate) gap: f64,
    /// Hedge steps taken (the tests report it when a gap is too large).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) iterations: usize,
}

/// NE_k by optimistic Hedge self-play, x ← x · exp(η (2 u_t − u_{t−1})) normalised, which
/// finds the support, then Newton's method on the support's equal-payoff equations, which
/// reaches machine precision where Hedge would crawl; until the equal-share gap is below
/// `tol` or `max_iter` Hedge steps. The iterate with the smallest gap is returned (the gap
/// is reported, never assumed).
#[cfg(test)]
pub(crate) fn ne_k(orders: &[Order], n: usize, k: u32, tol: f64, max_iter: usize) -> Equilibrium {
    ne_k_from(orders, vec![1.0 / n as f64; n], k, tol, max_iter)
}

/// [`ne_k`] started from `start` (e.g. the equilibrium for k − 1, which is close), mixed
/// with 1% of the uniform distribution so that no response starts at zero mass.
pub(crate) fn ne_k_from(orders: &[Order], start: Vec<f64>, k: u32, tol: f64, max_iter: usize) -> Equilibrium {
    let n = start.len();
    let target = 1.0 / (k as f64 + 1.0);
    // A good start (the previous k's equilibrium) often has the right support already.
    let mut best = Equilibrium { distribution: start.clone(), gap: f64::INFINITY, iterations: 0 };
    if let Some((px, pgap)) = polish(orders, &start, k) {
        best = Equilibrium { distribution: px, gap: pgap, iterations: 0 };
        if pgap < tol {
            return best;
        }
    }
    let mut x: Vec<f64> = start.iter().map(|v| 0.99 * v + 0.01 / n as f64).collect();
    let mut prev = payoffs(orders, &x, k);
    // A fixed step; larger ones (e.g. 2(k+1)) oscillate for k >= 3 on random populations.
    let eta = 0.5;
    for it in 0..max_iter {
        let u = payoffs(orders, &x, k);
        let gap = u.iter().copied().fold(0.0, f64::max) - target;
        if gap < best.gap {
            best = Equilibrium { distribution: x.clone(), gap, iterations: it };
        }
        if gap < tol {
            break;
        }
        if polish_at(it)
            && let Some((px, pgap)) = polish(orders, &x, k)
            && pgap < best.gap
        {
            best = Equilibrium { distribution: px, gap: pgap, iterations: it };
            if pgap < tol {
                break;
            }
        }
        let mut logits: Vec<f64> = x
            .iter()
            .zip(u.iter().zip(&prev))
            .map(|(&xi, (&a, &b))| xi.max(1e-300).ln() + eta * (2.0 * a - b))
            .collect();
        let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        logits.iter_mut().for_each(|l| *l = (*l - mx).exp());
        let z: f64 = logits.iter().sum();
        x = logits.into_iter().map(|v| v / z).collect();
        prev = u;
    }
    best.gap = best.gap.max(0.0);
    best
}

/// When to try finishing by Newton's method: after 10, 40 and 160 Hedge steps (a warm
/// start has the support right early), then every 320.
fn polish_at(it: usize) -> bool {
    matches!(it + 1, 10 | 40 | 160) || (it + 1).is_multiple_of(320)
}

/// u(y; x) and its Jacobian J[y][z] = ∂u(y; x)/∂x_z, averaged over participants.
#[cfg(test)]
fn payoffs_and_jacobian(orders: &[Order], x: &[f64], k: u32) -> (Vec<f64>, Vec<Vec<f64>>) {
    let all: Vec<usize> = (0..x.len()).collect();
    payoffs_and_jacobian_on(orders, x, k, &all)
}

/// [`payoffs_and_jacobian`] restricted to a support S outside which x is zero: u(y) for
/// y in S and J[y][z] for y, z in S, indexed by position in `support`. A response with
/// no mass adds nothing to any W, so the orders can be walked over S alone: O(|S|²) per
/// participant instead of O(n²), which is what makes Newton on a small support cheap.
#[cfg(test)]
fn payoffs_and_jacobian_on(orders: &[Order], x: &[f64], k: u32, support: &[usize]) -> (Vec<f64>, Vec<Vec<f64>>) {
    payoffs_and_jacobian_projected(&Projected::new(orders, x.len(), support), x, k, support)
}

/// Every participant's order over a support alone, bottom first, as positions in the
/// support: built once per support, walked by every Newton step on it.
struct Projected {
    len: usize,
    participants: usize,
    /// participants × len positions, each row bottom first
    slots: Vec<u32>,
}

impl Projected {
    fn new(orders: &[Order], n: usize, support: &[usize]) -> Self {
        let mut slot = vec![u32::MAX; n];
        support.iter().enumerate().for_each(|(i, &y)| slot[y] = i as u32);
        let mut slots = Vec::with_capacity(orders.len() * support.len());
        for order in orders {
            slots.extend(order.iter().rev().map(|&y| slot[y]).filter(|&i| i != u32::MAX));
        }
        debug_assert_eq!(slots.len(), orders.len() * support.len(), "every order covers the support");
        Self { len: support.len(), participants: orders.len(), slots }
    }
}

fn payoffs_and_jacobian_projected(p: &Projected, x: &[f64], k: u32, support: &[usize]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let s = p.len;
    let shares = Shares::new(k);
    let mass: Vec<f64> = support.iter().map(|&y| x[y]).collect();
    debug_assert!((0..x.len()).all(|y| support.contains(&y) || x[y] == 0.0));
    let mut u = vec![0.0; s];
    // Row-major s × s.
    let mut jac = vec![0.0; s * s];
    if s > 0 {
        for row in p.slots.chunks_exact(s) {
            let mut below = 0.0;
            for (j, &i) in row.iter().enumerate() {
                let i = i as usize;
                let a = mass[i];
                let (share, d_w, d_a) = shares.share_and_slopes(below, a);
                u[i] += share;
                let jrow = &mut jac[i * s..(i + 1) * s];
                jrow[i] += d_a;
                // The responses below this one in the order: row[..j].
                for &z in &row[..j] {
                    jrow[z as usize] += d_w;
                }
                below += a;
            }
        }
    }
    let m = p.participants.max(1) as f64;
    u.iter_mut().for_each(|v| *v /= m);
    let jac = (0..s).map(|i| jac[i * s..(i + 1) * s].iter().map(|v| v / m).collect()).collect();
    (u, jac)
}

/// Newton's method (Gauss–Newton on the square-plus-one system) for x on a support S with
/// u(y; x) = 1/(k+1) for y in S and Σ x = 1, started from a Hedge iterate. Responses
/// whose mass goes negative leave S; responses off S that pay more than 1/(k+1) join it.
/// Returns the point and its gap when it is a distribution.
fn polish(orders: &[Order], start: &[f64], k: u32) -> Option<(Vec<f64>, f64)> {
    let n = start.len();
    let target = 1.0 / (k as f64 + 1.0);
    let top = start.iter().copied().fold(0.0, f64::max);
    let mut support: Vec<usize> = (0..n).filter(|&i| start[i] > 1e-3 * top).collect();
    for _ in 0..n {
        let projected = Projected::new(orders, n, &support);
        let mut x = vec![0.0; n];
        let z: f64 = support.iter().map(|&i| start[i]).sum();
        support.iter().for_each(|&i| x[i] = start[i] / z);
        let (mut last_norm, mut stalled) = (f64::INFINITY, 0);
        for _ in 0..30 {
            let (u, jac) = payoffs_and_jacobian_projected(&projected, &x, k, &support);
            let s = support.len();
            // Rows: the support's payoff equations, then Σ x = 1.
            let mut a = jac;
            a.push(vec![1.0; s]);
            let mut r: Vec<f64> = u.iter().map(|v| v - target).collect();
            r.push(support.iter().map(|&i| x[i]).sum::<f64>() - 1.0);
            let norm: f64 = r.iter().map(|v| v * v).sum::<f64>().sqrt();
            // Converged, or at the rounding floor, or stalled (the support is wrong: the
            // equations have no solution on it, and a mass will go negative).
            stalled = if norm > 0.5 * last_norm { stalled + 1 } else { 0 };
            if norm < 1e-15 || (norm < 1e-11 && stalled > 0) || stalled >= 3 {
                break;
            }
            last_norm = norm;
            // Normal equations (AᵀA) δ = −Aᵀ r.
            let mut ata = vec![vec![0.0; s]; s];
            let mut atr = vec![0.0; s];
            for i in 0..s {
                for j in 0..s {
                    ata[i][j] = (0..=s).map(|row| a[row][i] * a[row][j]).sum();
                }
                atr[i] = -(0..=s).map(|row| a[row][i] * r[row]).sum::<f64>();
            }
            let Some(delta) = solve(ata, atr) else {
                // Singular on this support: drop its smallest mass and try again.
                let smallest = *support.iter().min_by(|a, b| x[**a].total_cmp(&x[**b]))?;
                x[smallest] = -1.0;
                break;
            };
            for (d, &i) in delta.iter().zip(&support) {
                x[i] += d;
            }
        }
        if let Some((pos, _)) =
            support.iter().enumerate().filter(|(_, i)| x[**i] < -1e-12).min_by(|a, b| x[*a.1].total_cmp(&x[*b.1]))
        {
            support.remove(pos);
            continue;
        }
        x.iter_mut().for_each(|v| *v = v.max(0.0));
        let z: f64 = x.iter().sum();
        x.iter_mut().for_each(|v| *v /= z);
        let u = payoffs(orders, &x, k);
        let (worst, &max_u) = u.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
        let gap = (max_u - target).max(0.0);
        if support.contains(&worst) || gap < 1e-12 {
            return Some((x, gap));
        }
        support.push(worst);
        support.sort_unstable();
    }
    None
}

/// Solves a small dense system by Gaussian elimination with partial pivoting.
pub(crate) fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            if f != 0.0 {
                let (upper, lower) = a.split_at_mut(row);
                for (dst, src) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                    *dst -= f * src;
                }
                b[row] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (b[i] - (i + 1..n).map(|j| a[i][j] * x[j]).sum::<f64>()) / a[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Majority margins M[a][b] = P(a ≻ b) − P(b ≻ a) over participants.
pub(crate) fn margins(orders: &[Order], n: usize) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; n]; n];
    for order in orders {
        let mut rank = vec![usize::MAX; n];
        for (r, &y) in order.iter().enumerate() {
            rank[y] = r;
        }
        for a in 0..n {
            for b in 0..n {
                if rank[a] < rank[b] {
                    m[a][b] += 1.0;
                    m[b][a] -= 1.0;
                }
            }
        }
    }
    let c = orders.len().max(1) as f64;
    m.iter_mut().flatten().for_each(|v| *v /= c);
    m
}

/// The maximal lottery (NLHF's policy): p with pᵀM ≥ 0, by linear programming. Among the
/// optimal lotteries the LP returns a vertex; ties in the margins can make it non-unique.
pub fn maximal_lottery(orders: &[Order], n: usize) -> Result<Vec<f64>, String> {
    maximal_lottery_of(&margins(orders, n))
}

/// The maximal lottery of the majority margins `m` (any population's, such as a model's).
pub(crate) fn maximal_lottery_of(m: &[Vec<f64>]) -> Result<Vec<f64>, String> {
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    let n = m.len();
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let p: Vec<_> = (0..n).map(|_| lp.add_var(0.0, (0.0, 1.0))).collect();
    let v = lp.add_var(1.0, (-1.0, 1.0));
    for b in 0..n {
        // Σ_a p_a M[a][b] − v ≥ 0
        let mut expr: Vec<(microlp::Variable, f64)> = p.iter().zip(m).map(|(&pa, row)| (pa, row[b])).collect();
        expr.push((v, -1.0));
        lp.add_constraint(expr, ComparisonOp::Ge, 0.0);
    }
    lp.add_constraint(p.iter().map(|&pa| (pa, 1.0)).collect::<Vec<_>>(), ComparisonOp::Eq, 1.0);
    let sol = match lp.solve().map_err(|e| format!("maximal lottery LP: {e}"))? {
        microlp::SolveOutcome::Solution(s) => s,
        microlp::SolveOutcome::Interrupted(_) => return Err("maximal lottery LP was interrupted".into()),
    };
    let mut out: Vec<f64> = p.iter().map(|&pa| sol[pa].max(0.0)).collect();
    let z: f64 = out.iter().sum();
    out.iter_mut().for_each(|x| *x /= z);
    Ok(out)
}

#[cfg(test)]
mod tests;

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

/// Σ_j C(k,j) W^{k−j} a^j / (j+1), by the closed form ((W+a)^{k+1} − W^{k+1})/((k+1)a)
/// when a > W (no cancellation to speak of: relative error ~2ε), else by the series in
/// a/W (positive terms, no cancellation).
fn share(w: f64, a: f64, k: u32, binom: &[f64]) -> f64 {
    let e = k as i32 + 1;
    if a > w {
        return ((w + a).powi(e) - w.powi(e)) / (e as f64 * a);
    }
    share_series(w, a, k, binom).0
}

/// s(W, a) = Σ_j C(k,j) W^{k−j} a^j / (j+1) with ∂s/∂W and ∂s/∂a, for a ≤ W: as series
/// in r = a/W ≤ 1 (positive terms; they fall as r^j, so a small a needs few).
fn share_series(w: f64, a: f64, k: u32, binom: &[f64]) -> (f64, f64, f64) {
    let ku = k as usize;
    if ku == 0 {
        return (1.0, 0.0, 0.0);
    }
    let wk1 = w.powi(k as i32 - 1);
    if a == 0.0 || w == 0.0 {
        // Only j = 0 (and j = 1 for ∂/∂a) survive at a = 0; w = 0 with a > 0 is never small.
        return (wk1 * w, ku as f64 * wk1, ku as f64 * wk1 / 2.0);
    }
    let r = a / w;
    let (mut s, mut d_w, mut d_a) = (0.0, 0.0, 0.0);
    let mut rj = 1.0; // r^j
    for (j, c) in binom.iter().enumerate() {
        let jf = j as f64;
        s += c * rj / (jf + 1.0);
        d_w += c * (ku - j) as f64 * rj / (jf + 1.0);
        if j < ku {
            // the j+1 term of ∂/∂a: C(k,j+1) (j+1) r^j / (j+2)
            d_a += binom[j + 1] * (jf + 1.0) * rj / (jf + 2.0);
        }
        rj *= r;
        if rj < 1e-18 {
            break;
        }
    }
    (s * wk1 * w, d_w * wk1, d_a * wk1)
}

/// u(y; x) for every response y, averaged over participants.
pub fn payoffs(orders: &[Order], x: &[f64], k: u32) -> Vec<f64> {
    let n = x.len();
    let binom = binomials(k);
    let mut u = vec![0.0; n];
    for order in orders {
        let mut below = 0.0;
        for &y in order.iter().rev() {
            u[y] += share(below, x[y], k, &binom);
            below += x[y];
        }
    }
    let m = orders.len().max(1) as f64;
    u.iter_mut().for_each(|v| *v /= m);
    u
}

/// Probability that the favourite of k samples from x beats response y.
pub fn win_rate_against(orders: &[Order], x: &[f64], k: u32, y: usize) -> f64 {
    1.0 - payoffs(orders, x, k)[y]
}

/// The worst case over single responses: 1 − max_y u(y; x).
pub fn certified_win_rate(orders: &[Order], x: &[f64], k: u32) -> f64 {
    1.0 - payoffs(orders, x, k).into_iter().fold(0.0, f64::max)
}

/// A symmetric equilibrium of the (k+1)-player game, with the equal-share gap reached.
#[derive(Debug, Clone)]
pub struct Equilibrium {
    pub distribution: Vec<f64>,
    /// max_y u(y; x) − 1/(k+1): zero at an equilibrium.
    pub gap: f64,
    pub iterations: usize,
}

/// NE_k by optimistic Hedge self-play, x ← x · exp(η (2 u_t − u_{t−1})) normalised, which
/// finds the support, then Newton's method on the support's equal-payoff equations, which
/// reaches machine precision where Hedge would crawl; until the equal-share gap is below
/// `tol` or `max_iter` Hedge steps. The iterate with the smallest gap is returned (the gap
/// is reported, never assumed).
pub fn ne_k(orders: &[Order], n: usize, k: u32, tol: f64, max_iter: usize) -> Equilibrium {
    ne_k_from(orders, vec![1.0 / n as f64; n], k, tol, max_iter)
}

/// [`ne_k`] started from `start` (e.g. the equilibrium for k − 1, which is close), mixed
/// with 1% of the uniform distribution so that no response starts at zero mass.
pub fn ne_k_from(orders: &[Order], start: Vec<f64>, k: u32, tol: f64, max_iter: usize) -> Equilibrium {
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
pub fn payoffs_and_jacobian(orders: &[Order], x: &[f64], k: u32) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = x.len();
    let binom = binomials(k);
    let mut u = vec![0.0; n];
    let mut jac = vec![vec![0.0; n]; n];
    for order in orders {
        let mut below = 0.0;
        for (pos, &y) in order.iter().enumerate().rev() {
            let a = x[y];
            // ∂/∂W and ∂/∂a of s = Σ_j C(k,j) W^{k−j} a^j / (j+1): in closed form,
            // ((W+a)^k − W^k)/a and ((W+a)^k − s)/a, when a > W; else as series.
            let (d_w, d_a);
            if a > below {
                let (t, top, low) = (below + a, (below + a).powi(k as i32), below.powi(k as i32));
                let s = (top * t - low * below) / ((k as f64 + 1.0) * a);
                u[y] += s;
                d_w = (top - low) / a;
                d_a = (top - s) / a;
            } else {
                let (s, dw, da) = share_series(below, a, k, &binom);
                u[y] += s;
                (d_w, d_a) = (dw, da);
            }
            jac[y][y] += d_a;
            for &z in &order[pos + 1..] {
                jac[y][z] += d_w;
            }
            below += a;
        }
    }
    let m = orders.len().max(1) as f64;
    u.iter_mut().for_each(|v| *v /= m);
    jac.iter_mut().flatten().for_each(|v| *v /= m);
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
        let mut x = vec![0.0; n];
        let z: f64 = support.iter().map(|&i| start[i]).sum();
        support.iter().for_each(|&i| x[i] = start[i] / z);
        let (mut last_norm, mut stalled) = (f64::INFINITY, 0);
        for _ in 0..30 {
            let (u, jac) = payoffs_and_jacobian(orders, &x, k);
            let s = support.len();
            // Rows: the support's payoff equations, then Σ x = 1.
            let mut a = vec![vec![0.0; s]; s + 1];
            let mut r = vec![0.0; s + 1];
            for (row, &y) in support.iter().enumerate() {
                for (col, &zc) in support.iter().enumerate() {
                    a[row][col] = jac[y][zc];
                }
                r[row] = u[y] - target;
            }
            a[s].iter_mut().for_each(|v| *v = 1.0);
            r[s] = support.iter().map(|&i| x[i]).sum::<f64>() - 1.0;
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
pub fn margins(orders: &[Order], n: usize) -> Vec<Vec<f64>> {
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
    use microlp::{ComparisonOp, OptimizationDirection, Problem};
    let m = margins(orders, n);
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let p: Vec<_> = (0..n).map(|_| lp.add_var(0.0, (0.0, 1.0))).collect();
    let v = lp.add_var(1.0, (-1.0, 1.0));
    for b in 0..n {
        // Σ_a p_a M[a][b] − v ≥ 0
        let mut expr: Vec<(microlp::Variable, f64)> = p.iter().zip(&m).map(|(&pa, row)| (pa, row[b])).collect();
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

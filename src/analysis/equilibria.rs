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

/// Σ_j C(k,j) W^{k−j} a^j / (j+1).
fn share(w: f64, a: f64, k: u32, binom: &[f64]) -> f64 {
    binom
        .iter()
        .enumerate()
        .map(|(j, c)| c * w.powi((k as usize - j) as i32) * a.powi(j as i32) / (j as f64 + 1.0))
        .sum()
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

/// NE_k by optimistic Hedge self-play: x ← x · exp(η (2 u_t − u_{t−1})), normalised, until the
/// equal-share gap is below `tol` or `max_iter` steps. The iterate with the smallest gap
/// is returned (the gap is reported, never assumed).
pub fn ne_k(orders: &[Order], n: usize, k: u32, tol: f64, max_iter: usize) -> Equilibrium {
    let target = 1.0 / (k as f64 + 1.0);
    let mut x = vec![1.0 / n as f64; n];
    let mut prev = payoffs(orders, &x, k);
    let mut best = Equilibrium { distribution: x.clone(), gap: f64::INFINITY, iterations: 0 };
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

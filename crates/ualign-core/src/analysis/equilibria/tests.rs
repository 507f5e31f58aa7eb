use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn cyclic(n: usize) -> Vec<Order> {
    (0..n).map(|s| (0..n).map(|i| (s + i) % n).collect()).collect()
}

fn random_orders(n: usize, m: usize, seed: u64) -> Vec<Order> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..m)
        .map(|_| {
            let mut o: Order = (0..n).collect();
            o.shuffle(&mut rng);
            o
        })
        .collect()
}

/// Monte Carlo of the game: k samples from x, one response y, ties split among copies.
fn monte_carlo(orders: &[Order], x: &[f64], k: u32, y: usize, draws: usize, seed: u64) -> f64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = x.len();
    let mut total = 0.0;
    for _ in 0..draws {
        let order = &orders[rng.random_range(0..orders.len())];
        let mut rank = vec![0; n];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        let samples: Vec<usize> = (0..k)
            .map(|_| {
                let mut u: f64 = rng.random();
                let mut pick = n - 1;
                for (i, &p) in x.iter().enumerate() {
                    if u < p {
                        pick = i;
                        break;
                    }
                    u -= p;
                }
                pick
            })
            .collect();
        let best = samples.iter().map(|&s| rank[s]).min().unwrap();
        if rank[y] < best {
            total += 1.0;
        } else if rank[y] == best {
            let copies = samples.iter().filter(|&&s| s == y).count();
            total += 1.0 / (copies as f64 + 1.0);
        }
    }
    total / draws as f64
}

#[test]
fn payoff_formula_matches_monte_carlo() {
    let orders = random_orders(5, 7, 1);
    let x = [0.4, 0.1, 0.3, 0.0, 0.2];
    for k in [1u32, 2, 4] {
        let u = payoffs(&orders, &x, k);
        for (y, &exact) in u.iter().enumerate() {
            let mc = monte_carlo(&orders, &x, k, y, 200_000, 10 + y as u64);
            assert!((exact - mc).abs() < 0.006, "k = {k}, y = {y}: exact {exact} vs Monte Carlo {mc}");
        }
    }
}

#[test]
fn payoff_matches_the_closed_form_and_averages_to_one_over_k_plus_one() {
    let orders = random_orders(6, 9, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for k in 1..=8u32 {
        let mut x: Vec<f64> = (0..6).map(|_| rng.random::<f64>()).collect();
        let z: f64 = x.iter().sum();
        x.iter_mut().for_each(|v| *v /= z);
        let u = payoffs(&orders, &x, k);
        let avg: f64 = u.iter().zip(&x).map(|(a, b)| a * b).sum();
        assert!((avg - 1.0 / (k as f64 + 1.0)).abs() < 1e-12, "k = {k}: {avg}");
        // Closed form for one participant and one response.
        let order = &orders[0];
        let y = order[2];
        let w: f64 = order[3..].iter().map(|&i| x[i]).sum();
        let closed = ((w + x[y]).powi(k as i32 + 1) - w.powi(k as i32 + 1)) / ((k as f64 + 1.0) * x[y]);
        let one = payoffs(&orders[..1], &x, k)[y];
        assert!((one - closed).abs() < 1e-12);
    }
}

#[test]
fn cyclic_profile_gives_exactly_k_over_k_plus_one() {
    for k in 1..=6u32 {
        let n = k as usize + 1;
        let orders = cyclic(n);
        let eq = ne_k(&orders, n, k, 1e-9, 20_000);
        assert!(eq.gap < 1e-9, "k = {k}: gap {}", eq.gap);
        for p in &eq.distribution {
            assert!((p - 1.0 / n as f64).abs() < 1e-6);
        }
        let c = certified_win_rate(&orders, &eq.distribution, k);
        assert!((c - k as f64 / (k as f64 + 1.0)).abs() < 1e-8, "k = {k}: {c}");
    }
}

#[test]
fn ne_k_certifies_the_bound_on_random_populations() {
    for seed in 0..8u64 {
        let n = 4 + (seed as usize % 4);
        let orders = random_orders(n, 5 + seed as usize, 100 + seed);
        for k in [1u32, 2, 3, 5, 8] {
            let eq = ne_k(&orders, n, k, 1e-6, 200_000);
            assert!(eq.gap < 1e-6, "seed {seed}, k {k}: gap {} after {}", eq.gap, eq.iterations);
            let c = certified_win_rate(&orders, &eq.distribution, k);
            assert!(c >= k as f64 / (k as f64 + 1.0) - 1e-6, "seed {seed}, k {k}: {c}");
        }
    }
}

/// A fraction `p` of participants put response 0 first, the rest put it last; the other
/// positions are random.
fn condorcet(n: usize, m: usize, p: f64, seed: u64) -> Vec<Order> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..m)
        .map(|i| {
            let mut rest: Order = (1..n).collect();
            rest.shuffle(&mut rng);
            if (i as f64) < p * m as f64 {
                std::iter::once(0).chain(rest).collect()
            } else {
                rest.into_iter().chain(std::iter::once(0)).collect()
            }
        })
        .collect()
}

#[test]
fn condorcet_winner_maximal_lottery_stays_while_ne_k_reaches_the_bound() {
    let n = 5;
    let orders = condorcet(n, 20, 0.6, 9);
    let ml = maximal_lottery(&orders, n).unwrap();
    assert!((ml[0] - 1.0).abs() < 1e-9, "{ml:?}");
    let mut previous = None;
    for k in [2u32, 3, 4, 8, 16] {
        // k copies of the Condorcet winner beat any other response exactly when a
        // participant prefers the winner: 0.6 for every k ≥ 2 (against itself: k/(k+1)).
        let c = certified_win_rate(&orders, &ml, k);
        assert!((c - 0.6).abs() < 1e-12, "k = {k}: {c}");
        if let Some(p) = previous {
            assert_eq!(c, p, "the maximal lottery's certified rate does not grow with k");
        }
        previous = Some(c);
        let eq = ne_k(&orders, n, k, 1e-6, 200_000);
        let ne = certified_win_rate(&orders, &eq.distribution, k);
        assert!(ne >= k as f64 / (k as f64 + 1.0) - 1e-6, "k = {k}: NE_k certifies {ne}");
    }
    // At k = 1 the maximal lottery is the game's equilibrium: certified 1/2.
    assert!((certified_win_rate(&orders, &ml, 1) - 0.5).abs() < 1e-12);
}

#[test]
fn maximal_lottery_of_a_three_cycle_matches_the_exact_solution() {
    // Margins a≻b by α, b≻c by β, c≻a by γ: the maximal lottery is (β, γ, α)/(α+β+γ).
    // Built from 5 participants: 2 × (a b c), 2 × (b c a), 1 × (c a b).
    let orders: Vec<Order> = vec![vec![0, 1, 2], vec![0, 1, 2], vec![1, 2, 0], vec![1, 2, 0], vec![2, 0, 1]];
    let m = margins(&orders, 3);
    let (alpha, beta, gamma) = (m[0][1], m[1][2], m[2][0]);
    assert!(alpha > 0.0 && beta > 0.0 && gamma > 0.0);
    let ml = maximal_lottery(&orders, 3).unwrap();
    let s = alpha + beta + gamma;
    for (got, want) in ml.iter().zip([beta / s, gamma / s, alpha / s]) {
        assert!((got - want).abs() < 1e-9, "{ml:?}");
    }
    // No lottery beats it: pᵀM ≥ 0.
    for b in 0..3 {
        assert!(ml.iter().zip(&m).map(|(p, row)| p * row[b]).sum::<f64>() > -1e-9);
    }
}

#[test]
fn jacobian_matches_finite_differences() {
    let orders = random_orders(5, 9, 77);
    let x = [0.1, 0.3, 0.05, 0.35, 0.2];
    for k in [1u32, 3, 6] {
        let (u, jac) = payoffs_and_jacobian(&orders, &x, k);
        for (a, b) in u.iter().zip(payoffs(&orders, &x, k)) {
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
        for z in 0..5 {
            let h = 1e-6;
            let mut xp = x;
            xp[z] += h;
            let mut xm = x;
            xm[z] -= h;
            let (up, um) = (payoffs(&orders, &xp, k), payoffs(&orders, &xm, k));
            for y in 0..5 {
                let fd = (up[y] - um[y]) / (2.0 * h);
                assert!((fd - jac[y][z]).abs() < 1e-7, "k {k}, d u({y})/d x({z}): {fd} vs {}", jac[y][z]);
            }
        }
    }
}

#[test]
fn ne_k_reaches_machine_precision_quickly_on_larger_pools() {
    // 16 responses, 300 participants: the size of a real study's pool.
    let orders = random_orders(16, 300, 4242);
    for k in [1u32, 4, 16] {
        let eq = ne_k(&orders, 16, k, 1e-10, 5_000);
        assert!(eq.gap < 1e-10, "k {k}: gap {} after {} steps", eq.gap, eq.iterations);
        let s: f64 = eq.distribution.iter().sum();
        assert!((s - 1.0).abs() < 1e-12 && eq.distribution.iter().all(|&p| p >= 0.0));
    }
}

#[test]
fn tiny_and_zero_masses_use_the_series_and_agree_with_the_sum() {
    // Masses far below 1e-4 of W take the series path; compare with the plain sum.
    let k = 7u32;
    let binom = binomials(k);
    for &(w, a) in &[(0.6, 0.0), (0.6, 1e-9), (0.3, 2e-5), (1.0, 5e-4), (0.0, 0.0)] {
        let direct: f64 = (0..=k as usize)
            .map(|j| binom[j] * f64::powi(w, (k as usize - j) as i32) * f64::powi(a, j as i32) / (j as f64 + 1.0))
            .sum();
        let got = Shares::new(k).share(w, a);
        assert!((got - direct).abs() <= 1e-15 * direct.max(1e-300), "w {w} a {a}: {got} vs {direct}");
    }
}

#[test]
fn jacobian_on_a_support_is_the_full_jacobians_block() {
    let orders = random_orders(7, 40, 91);
    let support = [1usize, 3, 4, 6];
    let mut x = [0.0; 7];
    for (&i, v) in support.iter().zip([0.2, 0.35, 0.05, 0.4]) {
        x[i] = v;
    }
    for k in [1u32, 2, 5, 16] {
        let (u, jac) = payoffs_and_jacobian(&orders, &x, k);
        let (us, js) = payoffs_and_jacobian_on(&orders, &x, k, &support);
        for (a, &y) in support.iter().enumerate() {
            assert!((us[a] - u[y]).abs() < 1e-15, "k {k}: u({y})");
            for (b, &z) in support.iter().enumerate() {
                assert!((js[a][b] - jac[y][z]).abs() < 1e-13, "k {k}: J({y}, {z}) {} vs {}", js[a][b], jac[y][z]);
            }
        }
    }
}

#[test]
fn slopes_match_finite_differences_on_both_paths() {
    // a > W takes the closed form, a ≤ W the series: both must give the same derivatives.
    for k in [1u32, 4, 9, 16] {
        let shares = Shares::new(k);
        for &(w, a) in &[(0.2, 0.5), (0.5, 0.2), (0.3, 0.3), (0.9, 0.01), (0.01, 0.9), (0.45, 0.4501)] {
            let (s, dw, da) = shares.share_and_slopes(w, a);
            assert!((s - shares.share(w, a)).abs() <= 1e-15 * s.max(1e-300), "k {k} w {w} a {a}");
            let h = 1e-7;
            let fdw = (shares.share(w + h, a) - shares.share(w - h, a)) / (2.0 * h);
            let fda = (shares.share(w, a + h) - shares.share(w, a - h)) / (2.0 * h);
            assert!((dw - fdw).abs() < 1e-6 * dw.abs().max(1.0), "k {k} w {w} a {a}: dW {dw} vs {fdw}");
            assert!((da - fda).abs() < 1e-6 * da.abs().max(1.0), "k {k} w {w} a {a}: da {da} vs {fda}");
        }
    }
}

#[test]
fn gauss_legendre_is_exact_to_degree_2m_minus_1() {
    for m in 1..=12usize {
        let (t, w) = gauss_legendre(m);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-14, "m {m}");
        assert!(t.iter().all(|&t| t > 0.0 && t < 1.0) && w.iter().all(|&w| w > 0.0));
        for d in 0..2 * m {
            let q: f64 = t.iter().zip(&w).map(|(t, w)| w * t.powi(d as i32)).sum();
            assert!((q - 1.0 / (d as f64 + 1.0)).abs() < 1e-14, "m {m}, degree {d}: {q}");
        }
    }
}

#[test]
fn payoffs_for_all_k_at_once_equal_one_k_at_a_time() {
    let orders = random_orders(9, 60, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut x: Vec<f64> = (0..9).map(|_| rng.random::<f64>()).collect();
    x[2] = 0.0; // a response with no mass
    x[5] = 1e-7; // and one with almost none
    let z: f64 = x.iter().sum();
    x.iter_mut().for_each(|v| *v /= z);
    for k_max in [1u32, 2, 7, 16, 24] {
        let all = payoffs_up_to(&orders, &x, k_max);
        assert_eq!(all.len(), k_max as usize);
        for k in 1..=k_max {
            let one = payoffs(&orders, &x, k);
            for (a, b) in all[k as usize - 1].iter().zip(&one) {
                assert!((a - b).abs() <= 1e-13 * b.max(1e-300) + 1e-300, "k {k} of {k_max}: {a} vs {b}");
            }
        }
    }
}

use super::*;
use rand::Rng;

fn mixture(n: usize, classes: usize, spread: f64, seed: u64) -> PlPopulation {
    let mut rng = crate::seed::simulation(seed, &["population-test"]);
    let mut weights: Vec<f64> = (0..classes).map(|_| rng.random::<f64>() + 0.2).collect();
    let z: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= z);
    let log_worths = (0..classes).map(|_| (0..n).map(|_| spread * (rng.random::<f64>() - 0.5)).collect()).collect();
    PlPopulation { weights, log_worths }
}

fn policy(n: usize, seed: u64, zeros: usize) -> Vec<f64> {
    let mut rng = crate::seed::simulation(seed, &["policy-test"]);
    let mut x: Vec<f64> = (0..n).map(|i| if i < zeros { 0.0 } else { rng.random::<f64>() }).collect();
    let z: f64 = x.iter().sum();
    x.iter_mut().for_each(|v| *v /= z);
    x
}

fn binomial_table(k: usize) -> Vec<Vec<f64>> {
    let mut c = vec![vec![0.0; k + 1]; k + 1];
    for n in 0..=k {
        c[n][0] = 1.0;
        for j in 1..=n {
            c[n][j] = c[n - 1][j - 1] + if j < n { c[n - 1][j] } else { 0.0 };
        }
    }
    c
}

/// u(y; x) by enumeration: E[W^m] = Σ over m-tuples of responses ≠ y of their masses'
/// product times P(all of them below y) = w_y / (w_y + Σ of their distinct worths).
fn enumerated(p: &PlPopulation, x: &[f64], k: u32) -> Vec<f64> {
    let n = x.len();
    let binom = binomial_table(k as usize);
    let mut u = vec![0.0; n];
    for (cw, lw) in p.weights.iter().zip(&p.log_worths) {
        let w: Vec<f64> = lw.iter().map(|v| v.exp()).collect();
        for y in 0..n {
            let others: Vec<usize> = (0..n).filter(|&i| i != y).collect();
            let mut moment = vec![0.0; k as usize + 1];
            for (m, slot) in moment.iter_mut().enumerate() {
                // Every m-tuple of others.
                let mut idx = vec![0usize; m];
                loop {
                    let mass: f64 = idx.iter().map(|&j| x[others[j]]).product();
                    let mut distinct: Vec<usize> = idx.iter().map(|&j| others[j]).collect();
                    distinct.sort_unstable();
                    distinct.dedup();
                    let below = w[y] / (w[y] + distinct.iter().map(|&i| w[i]).sum::<f64>());
                    *slot += mass * below;
                    // Next tuple.
                    let mut pos = 0;
                    while pos < m {
                        idx[pos] += 1;
                        if idx[pos] < others.len() {
                            break;
                        }
                        idx[pos] = 0;
                        pos += 1;
                    }
                    if pos == m {
                        break;
                    }
                }
            }
            let share: f64 = (0..=k as usize)
                .map(|j| binom[k as usize][j] * x[y].powi(j as i32) / (j as f64 + 1.0) * moment[k as usize - j])
                .sum();
            u[y] += cw * share;
        }
    }
    u
}

#[test]
fn payoffs_equal_exact_enumeration() {
    for seed in 0..4 {
        let p = mixture(4, 2, 4.0, seed);
        let x = policy(4, seed, usize::from(seed % 2 == 0));
        let all = p.race().payoffs_up_to(&x, 4);
        for k in 1..=4u32 {
            let exact = enumerated(&p, &x, k);
            for (a, b) in all[k as usize - 1].iter().zip(&exact) {
                assert!((a - b).abs() < 1e-10, "seed {seed} k {k}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn payoffs_match_monte_carlo_over_sampled_rankings_and_sum_to_one_over_k_plus_one() {
    let p = mixture(7, 3, 3.0, 7);
    let x = policy(7, 3, 0);
    let orders = p.sample_orders(200_000, 5);
    for k in [1u32, 3, 6] {
        let exact = p.race().payoffs(&x, k);
        let sampled = equilibria::payoffs(&orders, &x, k);
        for (a, b) in exact.iter().zip(&sampled) {
            assert!((a - b).abs() < 4e-3, "k {k}: {a} vs {b}");
        }
        // Under x itself the payoffs average to exactly 1/(k+1).
        let mean: f64 = exact.iter().zip(&x).map(|(u, w)| u * w).sum();
        assert!((mean - 1.0 / (k as f64 + 1.0)).abs() < 1e-10, "{mean}");
    }
}

#[test]
fn extreme_worths_and_point_masses_stay_exact() {
    let p = PlPopulation { weights: vec![1.0], log_worths: vec![vec![12.0, -12.0, 0.0, 8.0]] };
    for x in [vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 0.0, 1.0, 0.0], vec![0.25; 4]] {
        for k in 1..=4 {
            let a = p.race().payoffs(&x, k);
            let b = enumerated(&p, &x, k);
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() < 1e-9, "{x:?} k {k}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn margins_are_the_mixtures_pairwise_majorities() {
    let p = mixture(5, 2, 3.0, 2);
    let orders = p.sample_orders(100_000, 1);
    let exact = p.margins();
    let sampled = equilibria::margins(&orders, 5);
    for (ra, rb) in exact.iter().zip(&sampled) {
        for (a, b) in ra.iter().zip(rb) {
            assert!((a - b).abs() < 0.01, "{a} vs {b}");
        }
    }
}

#[test]
fn the_models_equilibrium_certifies_the_bound() {
    let p = mixture(6, 3, 4.0, 9);
    let samples = p.sample_orders(20_000, 3);
    let start = equilibria::maximal_lottery_of(&p.margins()).unwrap();
    for k in [1u32, 2, 4] {
        let ne =
            p.race().ne_k(k, start.clone(), |from| equilibria::ne_k_from(&samples, from, k, 1e-7, 20_000).distribution);
        let certified = p.race().certified_win_rate(&ne, k);
        let bound = k as f64 / (k as f64 + 1.0);
        assert!(certified > bound - 1e-6, "k {k}: {certified} < {bound}");
    }
}

#[test]
fn payoffs_equal_enumeration_over_wide_spreads_at_both_steps() {
    // Log-worth spreads from 2 to 31 (the grid grows with the spread), some policies with
    // responses outside the support, every k up to 5.
    let (mut fine, mut coarse) = (0.0f64, 0.0f64);
    for seed in 0..30 {
        let p = mixture(6, 3, 2.0 + seed as f64, seed);
        let x = policy(6, seed, (seed % 3) as usize);
        let (a, b) = (p.race().payoffs_up_to(&x, 5), Race::on(&p, COARSE).payoffs_up_to(&x, 5));
        for k in 1..=5u32 {
            let exact = enumerated(&p, &x, k);
            for y in 0..6 {
                fine = fine.max((a[k as usize - 1][y] - exact[y]).abs());
                coarse = coarse.max((b[k as usize - 1][y] - exact[y]).abs());
            }
            // One k alone is the same arithmetic as that row of all of them.
            assert_eq!(p.race().payoffs(&x, k), a[k as usize - 1], "seed {seed} k {k}");
        }
    }
    assert!(fine < 1e-10, "{fine:e}");
    assert!(coarse < 1e-6, "{coarse:e}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn the_vector_paths_are_bit_for_bit_the_portable_one() {
    let p = mixture(16, 3, 4.0, 11);
    let race = p.race();
    for zeros in [0, 7] {
        let x = policy(16, 5, zeros);
        let moments = |path: &dyn Fn(&mut Scratch)| {
            let mut s = Scratch::default();
            s.tables.fill(&x, 16, 1);
            path(&mut s);
            s.acc
        };
        let portable = moments(&|s| race.moments_portable(s));
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: detected just above.
            assert_eq!(moments(&|s| unsafe { race.moments_avx2(s) }), portable);
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma") {
            // SAFETY: detected just above.
            assert_eq!(moments(&|s| unsafe { race.moments_avx512(s) }), portable);
        }
        assert_eq!(moments(&|s| race.dispatch(s)), portable);
        // The buffers of one evaluation do not leak into the next, and the best payoff of
        // each k is the largest of its row.
        let all = race.payoffs_up_to(&x, 16);
        assert_eq!(race.payoffs_up_to(&policy(16, 6, 3), 4).len(), 4);
        assert_eq!(race.payoffs_up_to(&x, 16), all);
        let best = race.best_payoffs_between(&x, 1, 16);
        for (row, b) in all.iter().zip(&best) {
            assert_eq!(row.iter().copied().fold(0.0, f64::max), *b);
        }
    }
}

#[test]
fn newton_from_the_previous_k_reaches_the_value_on_pools_of_sixteen() {
    // As `stats` runs it: NE₁ is the maximal lottery, each NE_k starts from NE_{k−1}; the
    // sampled solver is only the fallback, so it must rarely be needed.
    for seed in 0..3 {
        let p = mixture(16, 3, 4.0, 20 + seed);
        let race = p.race();
        let mut start = equilibria::maximal_lottery_of(&p.margins()).unwrap();
        let mut fallbacks = 0;
        for k in 1..=16u32 {
            let ne = race.ne_k(k, start, |from| {
                fallbacks += 1;
                from
            });
            let gap = k as f64 / (k as f64 + 1.0) - race.certified_win_rate(&ne, k);
            assert!(gap < 1e-9, "seed {seed} k {k}: gap {gap:e}");
            start = ne;
        }
        assert!(fallbacks <= 1, "seed {seed}: {fallbacks} fallbacks");
    }
}

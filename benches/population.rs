//! The population model's certified payoffs (issue: partial rankings): u(y; x) for every
//! response and every k ≤ 16 under a 3-class Plackett–Luce population over a pool of 16,
//! the quadrature tables built once per population as `stats` does, for a full-support
//! policy (base) and a policy on 9 responses (a typical NE_k), at the full step and at the
//! bootstrap's coarse step. The peer in the same run: the same payoffs from 20,000
//! rankings sampled from the population (the Monte Carlo way, ~1e-2 accurate), with the
//! exact analysis's `equilibria::payoffs_up_to`.

use criterion::{Criterion, criterion_group, criterion_main};
use rand::Rng;
use ualign_core::analysis::equilibria;
use ualign_core::analysis::population::{COARSE, PlPopulation, Race};

fn population() -> PlPopulation {
    let mut rng = ualign_core::seed::simulation(1, &["bench-population"]);
    let log_worths = (0..3).map(|_| (0..16).map(|_| 3.0 * (rng.random::<f64>() - 0.5)).collect()).collect();
    PlPopulation { weights: vec![0.5, 0.3, 0.2], log_worths }
}

fn policy(support: usize) -> Vec<f64> {
    let mut x: Vec<f64> = (0..16).map(|i| if i < support { 1.0 + i as f64 } else { 0.0 }).collect();
    let z: f64 = x.iter().sum();
    x.iter_mut().for_each(|v| *v /= z);
    x
}

fn bench(c: &mut Criterion) {
    let p = population();
    let race = p.race();
    let coarse = Race::on(&p, COARSE);
    let orders = p.sample_orders(20_000, 2);
    let (base, ne) = (policy(16), policy(9));
    let mut g = c.benchmark_group("payoffs k<=16, n=16, C=3");
    g.bench_function("race tables (once per population)", |b| b.iter(|| p.race()));
    g.bench_function("exact, base (16 responses)", |b| b.iter(|| race.payoffs_up_to(&base, 16)));
    g.bench_function("exact, 9 responses", |b| b.iter(|| race.payoffs_up_to(&ne, 16)));
    g.bench_function("exact at the coarse step, 9 responses", |b| b.iter(|| coarse.payoffs_up_to(&ne, 16)));
    g.bench_function("coarse step, k = 16 alone, 9 responses", |b| b.iter(|| coarse.payoffs(&ne, 16)));
    g.bench_function("coarse step, k = 8 alone, 9 responses", |b| b.iter(|| coarse.payoffs(&ne, 8)));
    g.bench_function("peer: 20k sampled rankings, 9 responses", |b| {
        b.iter(|| equilibria::payoffs_up_to(&orders, &ne, 16))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

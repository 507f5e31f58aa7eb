use super::*;
use crate::analysis::ranking::{FlatChoices, mm_improve};
use rand::seq::SliceRandom;

/// A synthetic population: `classes` Plackett–Luce classes (equal weights; a class is
/// `person % classes`), log-worths spread evenly over [0, spread] in a random order per
/// class and prompt; each person makes `picks` top-1 choices of 3 random items per prompt.
fn population(
    people: usize,
    classes: usize,
    prompts: usize,
    items: usize,
    picks: usize,
    spread: f64,
    seed: u64,
) -> (Evidence, Vec<usize>) {
    let mut rng = crate::seed::simulation(seed, &["test-population"]);
    let worths: Vec<Vec<Vec<f64>>> = (0..classes)
        .map(|_| {
            (0..prompts)
                .map(|_| {
                    let mut order: Vec<usize> = (0..items).collect();
                    order.shuffle(&mut rng);
                    let mut w = vec![0.0; items];
                    for (rank, &i) in order.iter().enumerate() {
                        w[i] = spread * (1.0 - rank as f64 / (items - 1) as f64);
                    }
                    w
                })
                .collect()
        })
        .collect();
    let mut choices = Vec::new();
    for p in 0..people {
        let class = p % classes;
        for (pi, class_worths) in worths[class].iter().enumerate() {
            for _ in 0..picks {
                let mut shown: Vec<usize> = (0..items).collect();
                shown.shuffle(&mut rng);
                shown.truncate(3);
                let w: Vec<f64> = shown.iter().map(|&i| class_worths[i].exp()).collect();
                let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
                let mut pick = 2;
                for (j, x) in w.iter().enumerate() {
                    if u < *x {
                        pick = j;
                        break;
                    }
                    u -= x;
                }
                let winner = shown.remove(pick);
                choices.push((p, pi, Choices { ranked: vec![winner], rest: shown }));
            }
        }
    }
    let e = Evidence {
        prompts: (0..prompts)
            .map(|pi| PromptItems {
                prompt: format!("q{pi}"),
                items: (0..items as i64).collect(),
                texts: (0..items).map(|i| format!("t{i}")).collect(),
            })
            .collect(),
        people: (0..people).map(|p| format!("p{p:04}")).collect(),
        choices,
    };
    (e, (0..people).map(|p| p % classes).collect())
}

fn quick() -> FitOptions {
    FitOptions { restarts: 3, max_iter: 300, tol: 1e-8, seed: 1, ..FitOptions::default() }
}

#[test]
fn one_class_is_todays_plackett_luce_fit_of_all_choices() {
    let (e, _) = population(60, 2, 2, 6, 5, 2.0, 3);
    let f = fit(&e, 1, &FitOptions { tol: 1e-14, max_iter: 20_000, ..quick() });
    for pi in 0..2 {
        let pooled: Vec<Choices> = e.choices.iter().filter(|c| c.1 == pi).map(|c| c.2.clone()).collect();
        let reference = crate::analysis::ranking::mm_from(vec![0.0; 6], &pooled, ALPHA, 100_000, 1e-12).unwrap();
        for (a, b) in f.worths[0][pi].iter().zip(&reference) {
            assert!((a - b).abs() < 1e-6, "{:?} vs {reference:?}", f.worths[0][pi]);
        }
    }
    assert_eq!(f.weights, [1.0]);
    assert!(f.posterior.iter().all(|p| p == &[1.0]));
}

#[test]
fn bic_finds_two_well_separated_classes_and_the_posterior_sorts_people_into_them() {
    for seed in 0..3 {
        let (e, truth) = population(200, 2, 3, 6, 6, 3.0, seed);
        let (fits, best) = select(&e, 3, &quick());
        assert_eq!(fits[best].classes, 2, "seed {seed}: BIC {:?}", fits.iter().map(|f| f.bic).collect::<Vec<_>>());
        let f = &fits[best];
        // Classes are unlabelled: count agreement under the better of the two labellings.
        let assigned: Vec<usize> = f.posterior.iter().map(|p| if p[0] >= p[1] { 0 } else { 1 }).collect();
        let same = assigned.iter().zip(&truth).filter(|(a, t)| a == t).count();
        let agree = same.max(truth.len() - same) as f64 / truth.len() as f64;
        assert!(agree > 0.9, "seed {seed}: {agree}");
        assert!((f.weights[0] - 0.5).abs() < 0.1, "{:?}", f.weights);
        assert!(f.icl >= f.bic);
        assert!(f.restarts_agreed >= 1 && f.restarts_agreed <= f.restarts);
    }
}

#[test]
fn the_search_goes_past_its_first_classes_until_bic_turns_and_says_when_it_stopped_at_its_limit() {
    // Six well-separated classes: fitting 1..=4 at once, BIC would stop at 4 (the old
    // --max-classes default), still falling.
    let (e, _) = population(480, 6, 3, 6, 6, 4.0, 5);
    let (fits, best, search) = select_until_turn(&e, 4, MAX_CLASSES, &quick());
    let bic: Vec<f64> = fits.iter().map(|f| f.bic).collect();
    assert_eq!(fits[best].classes, 6, "BIC {bic:?}");
    assert_eq!(search, ClassSearch { limit: MAX_CLASSES, fitted: 7, stopped_at_limit: false }, "BIC {bic:?}");
    assert!(bic[6] >= bic[5], "it stopped because BIC turned: {bic:?}");
    // Held to 4 classes, it says it stopped there.
    let (fits, best, search) = select_until_turn(&e, 4, 4, &quick());
    assert_eq!((fits[best].classes, search), (4, ClassSearch { limit: 4, fitted: 4, stopped_at_limit: true }));
    // One class found at once: nothing more is fitted than one beyond it.
    let (one, _) = population(200, 1, 3, 6, 6, 3.0, 11);
    let (fits, best, search) = select_until_turn(&one, 1, MAX_CLASSES, &quick());
    assert_eq!((fits[best].classes, search.fitted, search.stopped_at_limit), (1, 2, false));
}

#[test]
fn one_population_is_not_split() {
    let (e, _) = population(200, 1, 3, 6, 6, 3.0, 11);
    let (fits, best) = select(&e, 3, &quick());
    assert_eq!(fits[best].classes, 1, "BIC {:?}", fits.iter().map(|f| f.bic).collect::<Vec<_>>());
}

#[test]
fn em_never_lowers_the_likelihood() {
    let (e, _) = population(80, 2, 2, 5, 4, 2.0, 5);
    let by = ByPrompt::new(&e);
    let mut rng = crate::seed::simulation(9, &["em"]);
    let mut post: Vec<Vec<f64>> = (0..e.people.len())
        .map(|_| {
            let a = rng.random::<f64>();
            vec![a, 1.0 - a]
        })
        .collect();
    let mut worths = vec![e.prompts.iter().map(|p| vec![0.0; p.items.len()]).collect::<Vec<_>>(); 2];
    let mut weights = vec![0.5, 0.5];
    let mut last = f64::NEG_INFINITY;
    for _ in 0..30 {
        m_step(&by, &post, &mut worths, &mut weights, MM_STEPS);
        let ll = e_step(&by, &worths, &weights, &mut post);
        // The prior makes the objective a posterior, not the likelihood: allow its slack.
        assert!(ll >= last - 1e-3, "{ll} < {last}");
        last = ll;
    }
}

#[test]
fn an_expected_ranking_of_one_class_is_its_order_of_worth() {
    let (e, _) = population(40, 1, 1, 5, 8, 3.0, 2);
    let f = fit(&e, 1, &quick());
    let (ranking, certainty) = expected_ranking(&e, &f, 0, 0);
    let by_worth: Vec<i64> =
        crate::analysis::ranking::order_by_worth(&f.worths[0][0]).into_iter().map(|i| i as i64).collect();
    assert_eq!(ranking, by_worth);
    assert_eq!(certainty, 1.0);
}

#[test]
fn one_participant_is_one_class_and_two_at_most_two() {
    for people in [1, 2] {
        let (e, _) = population(people, 2, 3, 5, 6, 3.0, 4);
        let (fits, best) = select(&e, 4, &quick());
        assert_eq!(fits.len(), people, "C is tried up to the number of participants");
        assert!(fits[best].classes <= people);
    }
}

#[test]
fn the_e_step_equals_the_sum_of_every_choices_log_probability() {
    // Participants with many choices (the running product of set totals must be flushed
    // before it under- or overflows), full orders as well as picks, worths up to ±30.
    let (mut e, _) = population(12, 3, 4, 6, 40, 4.0, 21);
    for (_, _, c) in e.choices.iter_mut().step_by(3) {
        let mut all = c.ranked.clone();
        all.append(&mut c.rest);
        c.ranked = all[..all.len() - 1].to_vec();
        c.rest = all[all.len() - 1..].to_vec();
    }
    let mut rng = crate::seed::simulation(4, &["e-step"]);
    let worths: Vec<Vec<Vec<f64>>> = (0..3)
        .map(|_| {
            e.prompts.iter().map(|p| p.items.iter().map(|_| 60.0 * (rng.random::<f64>() - 0.5)).collect()).collect()
        })
        .collect();
    let weights = vec![0.5, 0.3, 0.2];
    let mut post = vec![vec![0.0; 3]; e.people.len()];
    let ll = e_step(&ByPrompt::new(&e), &worths, &weights, &mut post);
    let mut logp: Vec<Vec<f64>> = vec![weights.iter().map(|w: &f64| w.ln()).collect(); e.people.len()];
    for (p, pi, c) in &e.choices {
        for k in 0..3 {
            logp[*p][k] += super::super::ranking::choices_loglik(&worths[k][*pi], c);
        }
    }
    let mut direct = 0.0;
    for (p, lp) in logp.iter().enumerate() {
        let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = lp.iter().map(|v| (v - max).exp()).sum();
        direct += max + z.ln();
        for k in 0..3 {
            assert!((post[p][k] - (lp[k] - max).exp() / z).abs() < 1e-9, "person {p} class {k}");
        }
    }
    assert!((ll - direct).abs() < 1e-9 * direct.abs(), "{ll} vs {direct}");
}

/// The largest difference between two fits' log-worths.
fn worths_gap(a: &MixtureFit, b: &MixtureFit) -> f64 {
    let pairs = a.worths.iter().flatten().flatten().zip(b.worths.iter().flatten().flatten());
    pairs.map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn squarem_refits_reach_plain_ems_fixed_point_in_fewer_e_steps() {
    // A bootstrap resample refitted from the full fit, both ways, to a tight tolerance.
    let (e, _) = population(200, 2, 3, 6, 6, 3.0, 4);
    let full = fit(&e, 2, &quick());
    let all = ByPrompt::new(&e);
    let mut rng = crate::seed::simulation(3, &["refit"]);
    let drawn: Vec<usize> = (0..e.people.len()).map(|_| rng.random_range(0..e.people.len())).collect();
    let by = all.resample(&drawn);
    let start: Vec<Vec<f64>> = by.who().iter().map(|&p| full.posterior[p].clone()).collect();
    let opts = FitOptions { max_iter: 5000, tol: 1e-13, mm_steps: 1, ..quick() };
    let plain = fit_from(&by, start.clone(), full.worths.clone(), &opts);
    let fast = refit(&by, start, full.worths.clone(), &opts);
    let rel = (plain.log_likelihood - fast.log_likelihood).abs() / plain.log_likelihood.abs();
    assert!(rel < 1e-11, "{} vs {}", plain.log_likelihood, fast.log_likelihood);
    let gap = worths_gap(&plain, &fast);
    assert!(gap < 1e-5, "worths differ by {gap:e}");
    assert!((plain.weights[0] - fast.weights[0]).abs() < 1e-6);
    assert!(fast.em_iterations < plain.em_iterations, "{} vs {}", fast.em_iterations, plain.em_iterations);
}

/// Every choice on its own, prompt by prompt, and who made it: the layout of the steps
/// before picks were read by their choice set.
struct EveryChoice {
    flat: Vec<FlatChoices>,
    owner: Vec<Vec<usize>>,
}

impl EveryChoice {
    fn new(e: &Evidence) -> Self {
        let n = e.prompts.len();
        let mut lists: Vec<Vec<&Choices>> = vec![Vec::new(); n];
        let mut owner = vec![Vec::new(); n];
        for (p, pi, c) in &e.choices {
            lists[*pi].push(c);
            owner[*pi].push(*p);
        }
        Self { flat: lists.into_iter().map(FlatChoices::new).collect(), owner }
    }
}

// The steps as they were before the classes were fused into one pass (one class, then the
// next) and before picks were read by their sets: the steps must give the same numbers, to
// rounding (sums in another order).
fn class_by_class_m_step(
    by: &EveryChoice,
    post: &[Vec<f64>],
    worths: &mut [Vec<Vec<f64>>],
    weights: &mut [f64],
    steps: usize,
) {
    let people = post.len().max(1) as f64;
    for (c, w) in weights.iter_mut().enumerate() {
        *w = post.iter().map(|p| p[c]).sum::<f64>() / people;
    }
    for (c, class) in worths.iter_mut().enumerate() {
        for (pi, theta) in class.iter_mut().enumerate() {
            if by.owner[pi].is_empty() {
                continue;
            }
            // A choice whose maker is almost surely in another class (posterior < 1e-13)
            // moves this class's worths by less than rounding: left out, which in a
            // well-separated mixture is most of every class's choices.
            let select: Vec<(u32, f64)> = by.owner[pi]
                .iter()
                .enumerate()
                .map(|(i, &p)| (i as u32, post[p][c]))
                .filter(|&(_, t)| t >= 1e-13)
                .collect();
            let start = std::mem::take(theta);
            *theta = mm_improve(start, &by.flat[pi], &select, ALPHA, steps.max(1), 1e-10);
        }
    }
}

fn class_by_class_e_step(by: &EveryChoice, worths: &[Vec<Vec<f64>>], weights: &[f64], post: &mut [Vec<f64>]) -> f64 {
    let classes = weights.len();
    let mut logp: Vec<Vec<f64>> = vec![weights.iter().map(|w| w.max(1e-300).ln()).collect(); post.len()];
    // log P = Σ θ_chosen − Σ ln(set total): each participant's and class's set totals are
    // multiplied together and the logarithm taken once the product leaves [1e-150, 1e150]
    // (each total is within e^{±40} of 1, the worths being centred and finite) and at the
    // end, so a logarithm is taken a few times per participant instead of once per choice.
    let mut product = vec![vec![1.0; classes]; post.len()];
    for (pi, (flat, owner)) in by.flat.iter().zip(&by.owner).enumerate() {
        let exp: Vec<Vec<f64>> = worths.iter().map(|class| class[pi].iter().map(|v| v.exp()).collect()).collect();
        for (c, &p) in owner.iter().enumerate() {
            let (ranked, rest) = flat.get(c);
            for (k, (l, pr)) in logp[p].iter_mut().zip(product[p].iter_mut()).enumerate() {
                let (theta, w) = (&worths[k][pi], &exp[k]);
                let mut set: f64 = rest.iter().map(|&i| w[i as usize]).sum();
                for &i in ranked.iter().rev() {
                    set += w[i as usize];
                    *l += theta[i as usize];
                    *pr *= set;
                }
                if !(1e-150..=1e150).contains(pr) {
                    *l -= pr.ln();
                    *pr = 1.0;
                }
            }
        }
    }
    for (lp, pr) in logp.iter_mut().zip(&product) {
        for (l, v) in lp.iter_mut().zip(pr) {
            *l -= v.ln();
        }
    }
    let mut ll = 0.0;
    for (row, lp) in post.iter_mut().zip(&logp) {
        let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = lp.iter().map(|v| (v - max).exp()).sum();
        ll += max + z.ln();
        for k in 0..classes {
            row[k] = (lp[k] - max).exp() / z;
        }
    }
    ll
}

#[test]
fn the_fused_steps_by_set_give_the_class_by_class_steps_numbers() {
    for classes in [1, 2, 3, 5, 8] {
        let (mut e, _) = population(30, classes, 3, 6, 5, 3.0, 40 + classes as u64);
        // Full orders as well as picks, and some choices almost surely another class's.
        for (_, _, c) in e.choices.iter_mut().step_by(4) {
            let mut all = c.ranked.clone();
            all.append(&mut c.rest);
            c.ranked = all[..all.len() - 1].to_vec();
            c.rest = all[all.len() - 1..].to_vec();
        }
        let by = ByPrompt::new(&e);
        let every = EveryChoice::new(&e);
        let mut rng = crate::seed::simulation(7, &["fused", &classes.to_string()]);
        let start: Vec<Vec<f64>> = (0..e.people.len())
            .map(|p| {
                let r: Vec<f64> =
                    (0..classes).map(|k| if (p + k) % 3 == 0 { 1e-15 } else { rng.random::<f64>() }).collect();
                let s: f64 = r.iter().sum();
                r.into_iter().map(|v| v / s).collect()
            })
            .collect();
        let zero = vec![e.prompts.iter().map(|p| vec![0.0; p.items.len()]).collect::<Vec<_>>(); classes];
        let (mut post, mut worths, mut weights) = (start.clone(), zero.clone(), vec![0.0; classes]);
        let (mut post_ref, mut worths_ref, mut weights_ref) = (start, zero, vec![0.0; classes]);
        for it in 0..6 {
            let steps = if it % 2 == 0 { MM_STEPS } else { 1 };
            m_step(&by, &post, &mut worths, &mut weights, steps);
            class_by_class_m_step(&every, &post_ref, &mut worths_ref, &mut weights_ref, steps);
            let gap = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            let flat = |w: &[Vec<Vec<f64>>]| w.iter().flatten().flatten().copied().collect::<Vec<_>>();
            let g = gap(&flat(&worths), &flat(&worths_ref));
            assert!(g < 1e-12, "C = {classes}, iteration {it}: worths differ by {g:e}");
            let g = gap(&weights, &weights_ref);
            assert!(g < 1e-14, "C = {classes}, iteration {it}: weights differ by {g:e}");
            let ll = e_step(&by, &worths, &weights, &mut post);
            let ll_ref = class_by_class_e_step(&every, &worths_ref, &weights_ref, &mut post_ref);
            assert!(
                (ll - ll_ref).abs() <= 1e-13 * ll_ref.abs(),
                "C = {classes}, iteration {it}: log L {ll} vs {ll_ref}"
            );
            let g = gap(&post.concat(), &post_ref.concat());
            assert!(g < 1e-12, "C = {classes}, iteration {it}: posterior differs by {g:e}");
        }
    }
}

#[test]
fn a_person_drawn_twice_counts_as_two_copies() {
    // A resample fitted with counts against the same resample as copies, each copy a
    // participant of its own (the evidence rebuilt with the people repeated).
    let (e, _) = population(60, 2, 3, 5, 4, 3.0, 8);
    let full = fit(&e, 2, &quick());
    let mut rng = crate::seed::simulation(5, &["copies"]);
    let drawn: Vec<usize> = (0..e.people.len()).map(|_| rng.random_range(0..e.people.len())).collect();
    let counted = ByPrompt::new(&e).resample(&drawn);
    assert!(counted.who().len() < drawn.len(), "some are drawn more than once");
    let mut copies = Evidence { people: Vec::new(), choices: Vec::new(), prompts: e.prompts.clone() };
    for (copy, &p) in drawn.iter().enumerate() {
        copies.people.push(format!("copy{copy}"));
        copies.choices.extend(e.choices.iter().filter(|c| c.0 == p).map(|(_, pi, c)| (copy, *pi, c.clone())));
    }
    let opts = FitOptions { max_iter: 40, tol: 0.0, mm_steps: 1, ..quick() };
    let a = fit_from(
        &counted,
        counted.who().iter().map(|&p| full.posterior[p].clone()).collect(),
        full.worths.clone(),
        &opts,
    );
    let b = fit_from(
        &ByPrompt::new(&copies),
        drawn.iter().map(|&p| full.posterior[p].clone()).collect(),
        full.worths.clone(),
        &opts,
    );
    assert!(
        (a.log_likelihood - b.log_likelihood).abs() < 1e-9 * b.log_likelihood.abs(),
        "{} vs {}",
        a.log_likelihood,
        b.log_likelihood
    );
    for (x, y) in a.weights.iter().zip(&b.weights) {
        assert!((x - y).abs() < 1e-12, "weights {x} vs {y}");
    }
    let gap = worths_gap(&a, &b);
    assert!(gap < 1e-10, "worths differ by {gap:e}");
    for (here, &p) in counted.who().iter().enumerate() {
        let copy = drawn.iter().position(|&d| d == p).unwrap();
        assert!((a.posterior[here][0] - b.posterior[copy][0]).abs() < 1e-10);
    }
}

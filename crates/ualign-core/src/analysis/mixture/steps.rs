//! The EM's two steps with every class in one pass over the choices: a prompt's worths
//! are laid out response by response with the C classes side by side, so each choice's
//! items are read once for all classes and the classes' sums run as one short vector
//! (C is a compile-time constant: the steps are compiled for every C up to
//! [`MAX_CLASSES`]). Picks are read by their choice set ([`super::layout`]): a set's
//! total and its share of the MM denominators are computed once, however many made a
//! choice from it. Tested against class-by-class steps that read every choice on its own.

use super::super::ranking::exp_transform;
use super::ByPrompt;
use super::layout::Part;

/// The most latent classes a fit can have (the steps are compiled for each C up to it).
pub const MAX_CLASSES: usize = 16;

/// A choice whose maker is almost surely in another class (posterior below this) moves
/// that class's worths by less than rounding: the M-step leaves it out of that class
/// (in a well-separated mixture, most of every class's choices).
const NEGLIGIBLE: f64 = 1e-13;

/// `f::<C>(args)` for the number of classes `c`, 1..=[`MAX_CLASSES`].
macro_rules! for_classes {
    ($c:expr, $f:ident($($arg:expr),*)) => {
        match $c {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            6 => $f::<6>($($arg),*),
            7 => $f::<7>($($arg),*),
            8 => $f::<8>($($arg),*),
            9 => $f::<9>($($arg),*),
            10 => $f::<10>($($arg),*),
            11 => $f::<11>($($arg),*),
            12 => $f::<12>($($arg),*),
            13 => $f::<13>($($arg),*),
            14 => $f::<14>($($arg),*),
            15 => $f::<15>($($arg),*),
            16 => $f::<16>($($arg),*),
            c => panic!("a latent-class fit has 1 to {MAX_CLASSES} classes, not {c}"),
        }
    };
}

/// The posterior of every participant (`post[person][class]`) under the worths and class
/// weights; returns the log-likelihood (each participant's part times the times they
/// count).
pub(super) fn e_step(by: &ByPrompt, worths: &[Vec<Vec<f64>>], weights: &[f64], post: &mut [Vec<f64>]) -> f64 {
    for_classes!(weights.len(), e_step_c(by, worths, weights, post))
}

/// The M-step from the posterior `post` (each participant's choices weighted by the times
/// they count): the class weights, and `steps` MM updates of
/// every class's worths at every prompt (a class stops early once its L1 change is at
/// most 1e-10, or keeps its worths if an update is not finite).
pub(super) fn m_step(
    by: &ByPrompt,
    post: &[Vec<f64>],
    worths: &mut [Vec<Vec<f64>>],
    weights: &mut [f64],
    steps: usize,
) {
    for_classes!(weights.len(), m_step_c(by, post, worths, weights, steps))
}

/// Response i's values of the C classes at prompt `pi`, side by side.
fn side_by_side<const C: usize>(worths: &[Vec<Vec<f64>>], pi: usize, out: &mut Vec<[f64; C]>) {
    out.clear();
    out.extend((0..worths[0][pi].len()).map(|i| std::array::from_fn(|k| worths[k][pi][i])));
}

#[inline(always)]
fn add<const C: usize>(acc: &mut [f64; C], v: &[f64; C]) {
    for k in 0..C {
        acc[k] += v[k];
    }
}

fn e_step_c<const C: usize>(by: &ByPrompt, worths: &[Vec<Vec<f64>>], weights: &[f64], post: &mut [Vec<f64>]) -> f64 {
    let prior: [f64; C] = std::array::from_fn(|k| weights[k].max(1e-300).ln());
    let mut logp = vec![prior; post.len()];
    // log P = Σ θ_chosen − Σ ln(set total): each participant's and class's set totals are
    // multiplied together and the logarithm taken once the product leaves [1e-150, 1e150]
    // (each total is within e^{±40} of 1, the worths being centred and finite) and at the
    // end, so a logarithm is taken a few times per participant instead of once per choice.
    let mut product = vec![[1.0; C]; post.len()];
    let (mut theta, mut exp, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    for (pi, part) in by.parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        side_by_side(worths, pi, &mut theta);
        exp.clear();
        exp.extend(theta.iter().map(|t: &[f64; C]| t.map(f64::exp)));
        // Picks: each set's total once, then each pick's chosen worth and its set's total.
        totals.clear();
        totals.extend((0..part.sets.len()).map(|s| {
            let mut total = [0.0; C];
            for &i in part.sets.get(s) {
                add(&mut total, &exp[i as usize]);
            }
            total
        }));
        for ((&p, &set), &chosen) in part.pick_owner.iter().zip(&part.pick_set).zip(&part.pick_chosen) {
            let (l, pr) = (&mut logp[p as usize], &mut product[p as usize]);
            let (t, total) = (&theta[chosen as usize], &totals[set as usize]);
            for k in 0..C {
                l[k] += t[k];
                pr[k] *= total[k];
                if !(1e-150..=1e150).contains(&pr[k]) {
                    l[k] -= pr[k].ln();
                    pr[k] = 1.0;
                }
            }
        }
        // Orders: choice by choice, the nested sets' totals as suffix sums.
        for (c, &p) in part.order_owner.iter().enumerate() {
            let (ranked, rest) = part.orders.get(c);
            let mut set = [0.0; C];
            for &i in rest {
                add(&mut set, &exp[i as usize]);
            }
            let (l, pr) = (&mut logp[p as usize], &mut product[p as usize]);
            for &i in ranked.iter().rev() {
                let (w, t) = (&exp[i as usize], &theta[i as usize]);
                for k in 0..C {
                    set[k] += w[k];
                    l[k] += t[k];
                    pr[k] *= set[k];
                }
            }
            for k in 0..C {
                if !(1e-150..=1e150).contains(&pr[k]) {
                    l[k] -= pr[k].ln();
                    pr[k] = 1.0;
                }
            }
        }
    }
    let mut ll = 0.0;
    for (((row, lp), pr), times) in post.iter_mut().zip(&mut logp).zip(&product).zip(&by.count) {
        for k in 0..C {
            lp[k] -= pr[k].ln();
        }
        let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = lp.iter().map(|v| (v - max).exp()).sum();
        ll += times * (max + z.ln());
        for k in 0..C {
            row[k] = (lp[k] - max).exp() / z;
        }
    }
    ll
}

/// One prompt's buffers for the M-step, kept from prompt to prompt.
#[derive(Default)]
struct Scratch<const C: usize> {
    /// Each order's posterior weight per class (0 where negligible).
    taus: Vec<[f64; C]>,
    /// Each pick set's summed posterior weight per class (the picks from it).
    set_taus: Vec<[f64; C]>,
    wins: Vec<[f64; C]>,
    denoms: Vec<[f64; C]>,
    weights: Vec<[f64; C]>,
    suffix: Vec<[f64; C]>,
    next: Vec<f64>,
}

fn m_step_c<const C: usize>(
    by: &ByPrompt,
    post: &[Vec<f64>],
    worths: &mut [Vec<Vec<f64>>],
    weights: &mut [f64],
    steps: usize,
) {
    let people = by.count.iter().sum::<f64>().max(1.0);
    for (c, w) in weights.iter_mut().enumerate() {
        *w = post.iter().zip(&by.count).map(|(p, times)| p[c] * times).sum::<f64>() / people;
    }
    let mut s = Scratch::<C>::default();
    // A choice's weight in class k: its maker's posterior times the times they count, or 0
    // where the posterior is negligible.
    let tau = |p: u32| -> [f64; C] {
        let p = p as usize;
        std::array::from_fn(|k| Some(post[p][k]).filter(|&t| t >= NEGLIGIBLE).map_or(0.0, |t| t * by.count[p]))
    };
    for (pi, part) in by.parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        let n = worths[0][pi].len();
        s.wins.clear();
        s.wins.resize(n, [0.0; C]);
        s.set_taus.clear();
        s.set_taus.resize(part.sets.len(), [0.0; C]);
        for ((&p, &set), &chosen) in part.pick_owner.iter().zip(&part.pick_set).zip(&part.pick_chosen) {
            let t = tau(p);
            add(&mut s.wins[chosen as usize], &t);
            add(&mut s.set_taus[set as usize], &t);
        }
        s.taus.clear();
        s.taus.extend(part.order_owner.iter().map(|&p| tau(p)));
        for (c, t) in s.taus.iter().enumerate() {
            for &w in part.orders.get(c).0 {
                add(&mut s.wins[w as usize], t);
            }
        }
        let mut active = [true; C];
        for _ in 0..steps.max(1) {
            if !active.contains(&true) {
                break;
            }
            mm_denominators(part, worths, pi, &mut s);
            for k in 0..C {
                if !active[k] {
                    continue;
                }
                let theta = &mut worths[k][pi];
                s.next.clear();
                s.next.extend((0..n).map(|i| ((s.wins[i][k] + super::ALPHA) / (s.denoms[i][k] + super::ALPHA)).ln()));
                let mean = s.next.iter().sum::<f64>() / n as f64;
                s.next.iter_mut().for_each(|x| *x -= mean);
                let change: f64 = s.next.iter().zip(theta.iter()).map(|(a, b)| (a - b).abs()).sum();
                if !change.is_finite() {
                    active[k] = false;
                    continue;
                }
                theta.copy_from_slice(&s.next);
                active[k] = change > 1e-10;
            }
        }
    }
}

/// Hunter's MM denominators of every class at prompt `pi`: for each response, Σ over the
/// choice sets that hold it of τ / (the set's total worth).
fn mm_denominators<const C: usize>(part: &Part, worths: &[Vec<Vec<f64>>], pi: usize, s: &mut Scratch<C>) {
    s.weights.clear();
    let per_class: Vec<Vec<f64>> = (0..C).map(|k| exp_transform(&worths[k][pi])).collect();
    s.weights.extend((0..per_class[0].len()).map(|i| std::array::from_fn(|k| per_class[k][i])));
    s.denoms.clear();
    s.denoms.resize(s.weights.len(), [0.0; C]);
    // Picks: each set once, its summed weight over its total to every response in it.
    for (set, t) in s.set_taus.iter().enumerate() {
        if t.iter().all(|&v| v == 0.0) {
            continue;
        }
        let items = part.sets.get(set);
        let mut total = [0.0; C];
        for &i in items {
            add(&mut total, &s.weights[i as usize]);
        }
        let share: [f64; C] = std::array::from_fn(|k| t[k] / total[k]);
        for &i in items {
            add(&mut s.denoms[i as usize], &share);
        }
    }
    for (c, t) in s.taus.iter().enumerate() {
        let (ranked, rest) = part.orders.get(c);
        let r = ranked.len();
        if s.suffix.len() < r {
            s.suffix.resize(r, [0.0; C]);
        }
        // suffix[j] = the total of ranked[j..] and rest: the j-th choice set's total.
        let mut acc = [0.0; C];
        for &l in rest {
            add(&mut acc, &s.weights[l as usize]);
        }
        for (&i, total) in ranked.iter().zip(&mut s.suffix[..r]).rev() {
            add(&mut acc, &s.weights[i as usize]);
            *total = acc;
        }
        // Item ranked j is in choice sets 0..=j; the rest are in all of them.
        let mut cum = [0.0; C];
        for (&i, total) in ranked.iter().zip(&s.suffix[..r]) {
            for k in 0..C {
                cum[k] += t[k] / total[k];
            }
            add(&mut s.denoms[i as usize], &cum);
        }
        for &l in rest {
            add(&mut s.denoms[l as usize], &cum);
        }
    }
}

//! Token selection with the order and semantics of Hugging Face transformers' logits
//! processors: repetition penalty → temperature → top-k → top-p → min-p → sample
//! (temperature 0: greedy argmax after the repetition penalty). No full sorts: top-k by
//! partial selection (`select_nth_unstable`), top-p by binning the weights and sorting only
//! the bin where the set ends. Each row has its own seeded RNG, so a sample never depends
//! on which other rows share its batch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use crate::decoding::SamplingParams;

/// HF `RepetitionPenaltyLogitsProcessor`: every token already in the sequence (prompt
/// included) has its logit divided by the penalty when positive, multiplied when negative.
pub(crate) fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    for &t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l < 0.0 { *l * penalty } else { *l / penalty };
        }
    }
}

/// Index of the largest value; the first one on ties (as `torch.argmax`).
pub(crate) fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// Log-softmax of one entry, computed stably.
pub(crate) fn log_softmax_at(logits: &[f32], i: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    logits[i] as f64 - max - sum.ln()
}

/// The processed distribution over surviving tokens: (token, probability), for the tests.
/// `logits` are already repetition-penalised.
#[cfg(test)]
fn warp(logits: &[f32], p: &SamplingParams) -> Vec<(u32, f64)> {
    warp_norm(logits, p).0
}

/// (max, Σ exp(s − max)) of a softmax.
type Normaliser = (f64, f64);

/// [`warp`], also returning (max, Σ exp(s − max)) of the scaled logits over every finite
/// token when no top-k filter removed any: then the softmax before top-p/min-p is the
/// full one, and at temperature 1 it gives the raw log-probability for free.
fn warp_norm(logits: &[f32], p: &SamplingParams) -> (Vec<(u32, f64)>, Option<Normaliser>) {
    // Scores in f32, as transformers' processors compute them on float32 logits; a token
    // with a non-finite logit is out (score −∞).
    let inv_t = 1.0 / p.temperature;
    let scores: Vec<f32> = logits.iter().map(|&l| if l.is_finite() { l * inv_t } else { f32::NEG_INFINITY }).collect();
    let finite = scores.iter().filter(|s| s.is_finite()).count();
    if finite == 0 {
        return (vec![(argmax(logits) as u32, 1.0)], None);
    }
    // top-k: keep every token whose score is >= the k-th largest (ties at the boundary kept).
    let (mut floor, mut filtered) = (f32::NEG_INFINITY, false);
    if p.top_k > 0 && (p.top_k as usize) < finite {
        let mut sorted = scores.clone();
        let (_, kth, _) = sorted.select_nth_unstable_by(p.top_k as usize - 1, |a, b| b.total_cmp(a));
        floor = *kth;
        filtered = scores.iter().any(|&s| s.is_finite() && s < floor);
    }
    // Softmax weights over survivors (vectorised f32 exps within 2 ulp, e^−∞ = 0; sums in
    // f64). A token that is out, or whose weight underflows f32, has weight 0 and is left
    // out of the distribution (it could never be drawn).
    let max = max_f32(&scores);
    let mut weights: Vec<f32> = scores.iter().map(|&s| exp_nonpositive(s - max)).collect();
    if filtered {
        weights.iter_mut().zip(&scores).for_each(|(w, &s)| *w = if s >= floor { *w } else { 0.0 });
    }
    let z: f64 = sum_f64(&weights);
    let norm = (!filtered).then_some((f64::from(max), z));
    // top-p (HF): sorted ascending, drop tokens whose cumulative mass is <= 1 - top_p, keep
    // at least one. Equivalently, in descending order keep a token while the mass strictly
    // above it is < top_p.
    let mut probs = if p.top_p < 1.0 {
        top_p_head(&weights, p.top_p as f64 * z)
    } else {
        weights.iter().enumerate().filter(|(_, w)| **w > 0.0).map(|(t, &w)| (t as u32, f64::from(w))).collect()
    };
    let kept: f64 = probs.iter().map(|c| c.1).sum();
    probs.iter_mut().for_each(|c| c.1 /= kept);
    // min-p: drop tokens with probability < min_p * (top probability); keep at least one.
    if p.min_p > 0.0 {
        let top = probs.iter().map(|c| c.1).fold(0.0, f64::max);
        // Capped at the top probability: the top token always stays.
        let threshold = (p.min_p as f64).min(1.0) * top;
        probs.retain(|c| c.1 >= threshold);
        let z: f64 = probs.iter().map(|c| c.1).sum();
        probs.iter_mut().for_each(|c| c.1 /= z);
    }
    (probs, norm)
}

/// e^x for x ≤ 0 (a softmax's shifted logits), within 2 ulp of `f32::exp`, written so
/// that the compiler vectorises a loop of it on baseline x86-64 (no libm call, no branch):
/// x = n ln 2 + r with n rounded by the 1.5·2^23 trick, e^r by Cephes' degree-5
/// polynomial, 2^n put in the exponent bits. Below −87.3 the result is 0 (as e^x
/// underflows there anyway).
#[inline]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23
    let xc = x.max(-87.3);
    // t holds n = round(x log2 e) in its low mantissa bits: n as a float, and as an
    // integer by subtracting the bits (no float-to-int cast, which would not vectorise).
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    let y = er * scale;
    if x < -87.3 { 0.0 } else { y }
}

/// Tokens per block of the plain sampler's cumulative walk.
const BLOCK: usize = 64;

/// The largest value, in eight lanes so that it vectorises (NaNs are skipped, as by
/// `f32::max`); −∞ for no values.
fn max_f32(xs: &[f32]) -> f32 {
    let pick = |m: f32, x: f32| if x > m { x } else { m };
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = pick(*m, x);
        }
    }
    rest.iter().copied().fold(lanes.into_iter().fold(f32::NEG_INFINITY, pick), pick)
}

/// Σ xs in f64, in four lanes (vectorises; the order of the additions is fixed).
fn sum_f64(xs: &[f32]) -> f64 {
    let mut lanes = [0.0f64; 4];
    let chunks = xs.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for (s, &x) in lanes.iter_mut().zip(c) {
            *s += f64::from(x);
        }
    }
    rest.iter().fold(lanes.iter().sum::<f64>(), |s, &x| s + f64::from(x))
}

/// The token where the cumulative weight passes `u` (0 ≤ u < Σ weights): over whole blocks
/// first (`blocks[b]` = Σ of block b), then within the block. Rounding can leave u just
/// past the end of a block or of the list: then the last token with weight is taken.
fn walk(weights: &[f32], blocks: &[f64], mut u: f64) -> usize {
    let last_with_weight = |ws: &[f32], offset: usize| ws.iter().rposition(|&w| w > 0.0).map(|i| offset + i);
    for (b, &mass) in blocks.iter().enumerate() {
        if u < mass {
            let block = &weights[b * BLOCK..((b + 1) * BLOCK).min(weights.len())];
            for (i, &w) in block.iter().enumerate() {
                if u < f64::from(w) {
                    return b * BLOCK + i;
                }
                u -= f64::from(w);
            }
            if let Some(i) = last_with_weight(block, b * BLOCK) {
                return i;
            }
        }
        u -= mass;
    }
    last_with_weight(weights, 0).unwrap_or(0)
}

/// Descending by probability, ties by token id (a deterministic order).
fn desc(a: &(u32, f64), b: &(u32, f64)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The smallest set of most probable tokens whose weight reaches `target` (top_p × the
/// total: HF keeps a token while the mass strictly above it is < top_p; at least one), as
/// (token, weight), in O(n) without a sort. Tokens are binned by their weight's leading
/// bits (exponent and two mantissa bits: four bins an octave, in the order of the
/// weights); bins are taken whole from the top while the weight above them stays below
/// the target, and only the bin where the set ends is sorted. Kept tokens come in token
/// order within the whole bins, then the last bin's in descending order: deterministic
/// for given logits. Tokens of weight 0 are out.
fn top_p_head(weights: &[f32], target: f64) -> Vec<(u32, f64)> {
    // 64 octaves below the top weight; anything smaller shares the last bin.
    const BINS: usize = 256;
    let key = |w: f32| (w.to_bits() >> 21) as i32;
    let top = key(max_f32(weights).max(0.0));
    let bins: Vec<u8> = weights.iter().map(|&w| (top - key(w)).clamp(0, BINS as i32 - 1) as u8).collect();
    // Four interleaved histograms, so that neighbouring tokens in one bin do not wait on
    // each other's additions.
    let mut mass = [[0.0f64; BINS]; 4];
    for (ws, bs) in weights.chunks(4).zip(bins.chunks(4)) {
        for (lane, (&w, &b)) in ws.iter().zip(bs).enumerate() {
            mass[lane][b as usize] += f64::from(w);
        }
    }
    // The bin where the set ends, and the weight of the bins above it.
    let (mut acc, mut last) = (0.0, BINS - 1);
    let [m0, m1, m2, m3] = &mass;
    for (b, (((a, b1), c), d)) in m0.iter().zip(m1).zip(m2).zip(m3).enumerate() {
        let m = a + b1 + c + d;
        if acc + m >= target {
            last = b;
            break;
        }
        acc += m;
    }
    // Branch-free compaction into one buffer: whole-bin tokens fill it from the front,
    // boundary-bin tokens from the back; every token is written to both ends, and only
    // the matching count moves (the two ends meet only after the last token).
    let n = weights.len();
    let mut buf = vec![(0u32, 0.0f64); n];
    let (mut nk, mut ne) = (0, 0);
    for (t, (&w, &b)) in weights.iter().zip(&bins).enumerate() {
        let c = (t as u32, f64::from(w));
        buf[nk] = c;
        buf[n - 1 - ne] = c;
        let b = b as usize;
        nk += usize::from(b < last && w > 0.0);
        ne += usize::from(b == last && w > 0.0);
    }
    let mut edge = buf.split_off(n - ne);
    let mut kept = buf;
    kept.truncate(nk);
    edge.sort_unstable_by(desc);
    for c in edge {
        if !kept.is_empty() && acc >= target {
            break;
        }
        acc += c.1;
        kept.push(c);
    }
    kept
}

/// One row's sampler: its RNG and the tokens its sequence holds (for the repetition penalty).
pub(crate) struct RowSampler {
    rng: ChaCha8Rng,
    seen: Vec<u32>,
    scratch: Vec<f32>,
    /// Block sums of `scratch`.
    blocks: Vec<f64>,
}

impl RowSampler {
    pub(crate) fn new(seed: u64, prompt: &[u32]) -> Self {
        let mut seen = prompt.to_vec();
        seen.sort_unstable();
        seen.dedup();
        // A sample's tokens come from ChaCha8 seeded with the sample's seed alone, so a
        // stored sample comes out again whatever else was generated beside it.
        Self { rng: ChaCha8Rng::seed_from_u64(seed), seen, scratch: Vec::new(), blocks: Vec::new() }
    }

    /// Picks the next token; returns it with its log-probability under the raw model.
    pub(crate) fn next(&mut self, raw_logits: &[f32], p: &SamplingParams) -> (u32, f64) {
        let penalised: std::borrow::Cow<[f32]> = if p.repetition_penalty == 1.0 {
            std::borrow::Cow::Borrowed(raw_logits)
        } else {
            let mut l = raw_logits.to_vec();
            apply_repetition_penalty(&mut l, &self.seen, p.repetition_penalty);
            std::borrow::Cow::Owned(l)
        };
        let logits: &[f32] = &penalised;
        let mut raw_logprob = None;
        let token = if p.temperature == 0.0 {
            argmax(logits) as u32
        } else if p.top_k == 0 && p.top_p >= 1.0 {
            // Plain sampling (and min-p alone): no candidate list; one exp per logit (f32,
            // vectorised), kept in a reused buffer, with the sum of every block of it, so that
            // the walk along the cumulative distribution steps over whole blocks before it
            // looks at tokens.
            let inv_t = 1.0 / p.temperature;
            let max = max_f32(logits);
            self.scratch.clear();
            self.scratch.extend(logits.iter().map(|&l| exp_nonpositive((l - max) * inv_t)));
            self.blocks.clear();
            self.blocks.extend(self.scratch.chunks(BLOCK).map(sum_f64));
            let z: f64 = self.blocks.iter().sum();
            let drawn_from = if p.min_p > 0.0 {
                // min-p keeps a token when its probability is at least min_p × the top one's;
                // the top token's weight is e^0 = 1, so that is weight ≥ min_p (capped at 1:
                // HF's MinPLogitsWarper keeps the top token in any case).
                let floor = p.min_p.min(1.0);
                self.scratch.iter_mut().for_each(|w| *w = if *w >= floor { *w } else { 0.0 });
                self.blocks.clear();
                self.blocks.extend(self.scratch.chunks(BLOCK).map(sum_f64));
                self.blocks.iter().sum()
            } else {
                z
            };
            let chosen = walk(&self.scratch, &self.blocks, self.rng.random::<f64>() * drawn_from);
            if inv_t == 1.0 && p.repetition_penalty == 1.0 {
                // The normaliser over every token serves the raw log-probability.
                raw_logprob = Some((logits[chosen] - max) as f64 - z.ln());
            }
            chosen as u32
        } else {
            let (dist, norm) = warp_norm(logits, p);
            let u: f64 = self.rng.random();
            let mut acc = 0.0;
            let mut chosen = dist.last().map_or(0, |c| c.0);
            for &(t, prob) in &dist {
                acc += prob;
                if u < acc {
                    chosen = t;
                    break;
                }
            }
            if let Some((max, z)) = norm
                && p.temperature == 1.0
                && p.repetition_penalty == 1.0
            {
                // The softmax before top-p/min-p was the raw model's: reuse its normaliser.
                raw_logprob = Some(logits[chosen as usize] as f64 - max - z.ln());
            }
            chosen
        };
        if let Err(pos) = self.seen.binary_search(&token) {
            self.seen.insert(pos, token);
        }
        (token, raw_logprob.unwrap_or_else(|| log_softmax_at(raw_logits, token as usize)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(logits: &[f32], p: SamplingParams) -> Vec<(u32, f64)> {
        let mut d = warp(logits, &p);
        d.sort_by_key(|c| c.0);
        d
    }

    fn softmax(xs: &[f64]) -> Vec<f64> {
        let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|x| x / z).collect()
    }

    fn close(a: &[(u32, f64)], b: &[(u32, f64)]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.0, y.0, "{a:?} vs {b:?}");
            assert!((x.1 - y.1).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn temperature_scales_logits() {
        let l = [1.0f32, 2.0, 3.0];
        let d = dist(&l, SamplingParams { temperature: 0.5, ..Default::default() });
        let want = softmax(&[2.0, 4.0, 6.0]);
        close(&d, &[(0, want[0]), (1, want[1]), (2, want[2])]);
    }

    #[test]
    fn top_k_keeps_ties_at_the_boundary() {
        // k = 2: the 2nd largest is 2.0, and both tokens scoring 2.0 stay (as in HF).
        let l = [3.0f32, 2.0, 2.0, 1.0];
        let d = dist(&l, SamplingParams { top_k: 2, ..Default::default() });
        let w = softmax(&[3.0, 2.0, 2.0]);
        close(&d, &[(0, w[0]), (1, w[1]), (2, w[2])]);
    }

    #[test]
    fn top_p_boundary() {
        // probs 0.5, 0.3, 0.2. top_p = 0.79: ascending cumsum 0.2, 0.5, 1.0; remove those
        // <= 0.21 → keep {0.5, 0.3}: the token that crosses top_p stays, the next goes.
        let l: Vec<f32> = [0.5f64, 0.3, 0.2].iter().map(|p| p.ln() as f32).collect();
        let d = dist(&l, SamplingParams { top_p: 0.79, ..Default::default() });
        close(&d, &[(0, 0.625), (1, 0.375)]);
        // top_p = 0.81: 0.2 <= 0.19 is false → all three kept.
        let d = dist(&l, SamplingParams { top_p: 0.81, ..Default::default() });
        assert_eq!(d.len(), 3);
        // top_p = 0.5: the first token alone reaches 0.5 → keep one.
        let d = dist(&l, SamplingParams { top_p: 0.5, ..Default::default() });
        close(&d, &[(0, 1.0)]);
        // A tiny top_p still keeps the best token.
        let d = dist(&l, SamplingParams { top_p: 1e-6, ..Default::default() });
        close(&d, &[(0, 1.0)]);
    }

    #[test]
    fn top_p_beyond_the_first_head_of_64() {
        // 1000 equal tokens, top_p 0.5: keep 500 (mass above the 500th is 499/1000 < 0.5).
        let l = vec![0.0f32; 1000];
        let d = dist(&l, SamplingParams { top_p: 0.5, ..Default::default() });
        assert_eq!(d.len(), 500);
        assert!((d.iter().map(|c| c.1).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn min_p_relative_to_the_top_token() {
        // probs 0.6, 0.3, 0.1; min_p 0.2 → threshold 0.12 → drop 0.1.
        let l: Vec<f32> = [0.6f64, 0.3, 0.1].iter().map(|p| p.ln() as f32).collect();
        let d = dist(&l, SamplingParams { min_p: 0.2, ..Default::default() });
        close(&d, &[(0, 2.0 / 3.0), (1, 1.0 / 3.0)]);
    }

    #[test]
    fn order_top_k_then_top_p_then_min_p() {
        // logits for probs (unnormalised) 0.4, 0.3, 0.2, 0.1. top_k 3 → renormalised
        // 4/9, 3/9, 2/9; top_p 0.7 → ascending cumsum 2/9=0.222 <= 0.3 → drop it → 4/7, 3/7;
        // min_p 0.8 → threshold 0.457 → drop 3/7=0.4286 → only token 0.
        let l: Vec<f32> = [0.4f64, 0.3, 0.2, 0.1].iter().map(|p| p.ln() as f32).collect();
        let p = SamplingParams { top_k: 3, top_p: 0.7, ..Default::default() };
        close(&dist(&l, p), &[(0, 4.0 / 7.0), (1, 3.0 / 7.0)]);
        let p = SamplingParams { top_k: 3, top_p: 0.7, min_p: 0.8, ..Default::default() };
        close(&dist(&l, p), &[(0, 1.0)]);
    }

    #[test]
    fn repetition_penalty_on_positive_and_negative_logits() {
        let mut l = [2.0f32, -2.0, 1.0, -1.0];
        apply_repetition_penalty(&mut l, &[0, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0, -1.0]);
        // Greedy after the penalty: token 0 (2.0 → 1.0) ties with token 2; argmax takes the first.
        let mut s = RowSampler::new(0, &[0, 1]);
        let p = SamplingParams { temperature: 0.0, repetition_penalty: 2.0, ..Default::default() };
        assert_eq!(s.next(&[2.0, -2.0, 1.5, -1.0], &p).0, 2);
    }

    #[test]
    fn sampling_frequencies_match_the_distribution() {
        let l: Vec<f32> = [0.5f64, 0.3, 0.2].iter().map(|p| p.ln() as f32).collect();
        let mut counts = [0usize; 3];
        let mut s = RowSampler::new(42, &[]);
        let n = 60_000;
        for _ in 0..n {
            counts[s.next(&l, &SamplingParams::default()).0 as usize] += 1;
        }
        for (c, want) in counts.iter().zip([0.5, 0.3, 0.2]) {
            let got = *c as f64 / n as f64;
            // 5 standard errors.
            assert!((got - want).abs() < 5.0 * (want * (1.0 - want) / n as f64).sqrt(), "{counts:?}");
        }
    }

    #[test]
    fn logprob_is_under_the_raw_model() {
        let l = [1.0f32, 2.0, 3.0];
        let mut s = RowSampler::new(1, &[]);
        let (t, lp) = s.next(&l, &SamplingParams { temperature: 0.0, ..Default::default() });
        assert_eq!(t, 2);
        let want = softmax(&[1.0, 2.0, 3.0])[2].ln();
        assert!((lp - want).abs() < 1e-6);
    }

    #[test]
    fn top_p_selection_equals_a_full_sort_on_random_distributions() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for trial in 0..20 {
            // Spread varies from flat to peaked; a few exact ties.
            let spread = 0.5 + trial as f32 * 0.4;
            let mut l: Vec<f32> = (0..2048).map(|_| (rng.random::<f32>() - 0.5) * spread * 8.0).collect();
            l[7] = l[8];
            for top_p in [0.05f32, 0.5, 0.9, 0.95, 0.999] {
                let got: std::collections::BTreeSet<u32> =
                    dist(&l, SamplingParams { top_p, ..Default::default() }).iter().map(|c| c.0).collect();
                // Reference: HF's rule on a full descending sort.
                let mut probs: Vec<(u32, f64)> = warp(&l, &SamplingParams::default());
                probs.sort_by(desc);
                let (mut above, mut want) = (0.0, std::collections::BTreeSet::new());
                for c in &probs {
                    if !want.is_empty() && above >= top_p as f64 {
                        break;
                    }
                    above += c.1;
                    want.insert(c.0);
                }
                assert_eq!(got, want, "trial {trial}, top_p {top_p}");
            }
        }
    }

    #[test]
    fn reused_normaliser_gives_the_raw_log_probability() {
        let l: Vec<f32> = (0..300).map(|i| ((i * 37 % 101) as f32) / 17.0).collect();
        let mut s = RowSampler::new(9, &[]);
        for _ in 0..20 {
            let (t, lp) = s.next(&l, &SamplingParams { top_p: 0.9, ..Default::default() });
            // f32 exps: within ~1e-7 of the f64 log-softmax.
            assert!((lp - log_softmax_at(&l, t as usize)).abs() < 1e-6, "{lp}");
        }
    }

    #[test]
    fn fast_exp_is_within_two_ulp_of_exp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let (a, b) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
            x += 0.000_37;
        }
        // 2 ulp of f32 is about 2.4e-7 relative.
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn same_seed_same_tokens() {
        let l: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |seed| {
            let mut s = RowSampler::new(seed, &[]);
            (0..20).map(|_| s.next(&l, &SamplingParams::default()).0).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn block_walk_finds_the_same_token_as_a_token_by_token_walk() {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for len in [1usize, 5, 63, 64, 65, 200, 2048] {
            let w: Vec<f32> =
                (0..len).map(|i| if i % 7 == 3 { 0.0 } else { exp_nonpositive(-rng.random::<f32>() * 12.0) }).collect();
            let blocks: Vec<f64> = w.chunks(BLOCK).map(sum_f64).collect();
            let z: f64 = blocks.iter().sum();
            for _ in 0..500 {
                let u = rng.random::<f64>() * z;
                // Token by token, with the same block sums deciding the block.
                let mut v = u;
                let want = (0..len)
                    .find(|&i| {
                        let hit = v < f64::from(w[i]);
                        v -= f64::from(w[i]);
                        hit
                    })
                    .unwrap_or_else(|| w.iter().rposition(|&x| x > 0.0).unwrap_or(0));
                let got = walk(&w, &blocks, u);
                // Rounding may move a draw within 1e-12 of a boundary to the neighbour.
                if got != want {
                    let before: f64 = w[..got.min(want) + 1].iter().map(|&x| f64::from(x)).sum();
                    assert!((before - u).abs() < 1e-9 * z, "len {len}: {got} vs {want}");
                }
                assert!(w[got] > 0.0, "a token with no weight is never drawn");
            }
        }
        assert_eq!(walk(&[0.0, 0.5, 0.0], &[0.5], 0.7), 1, "past the end: the last token with weight");
    }

    #[test]
    fn lane_max_and_sum_agree_with_plain_folds() {
        let xs: Vec<f32> = (0..1001).map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 3.0).collect();
        assert_eq!(max_f32(&xs), xs.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let mut with_odd = xs.clone();
        with_odd[17] = f32::NAN;
        with_odd[900] = f32::NEG_INFINITY;
        assert_eq!(max_f32(&with_odd), with_odd.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        assert_eq!(max_f32(&[]), f32::NEG_INFINITY);
        let plain: f64 = xs.iter().map(|&x| f64::from(x)).sum();
        assert!((sum_f64(&xs) - plain).abs() < 1e-9);
    }

    #[test]
    fn min_p_alone_draws_what_the_full_warp_draws() {
        // The fast path (weights below min_p zeroed, block walk) against the general one
        // (HF order: softmax, min-p relative to the top probability, renormalise): same
        // tokens for the same random numbers, and raw log-probabilities.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for round in 0..50 {
            let n = 500 + round * 37;
            let l: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 12.0 - 6.0).collect();
            // (min-p 1.5, beyond the flag's sense: only the top token, as in HF.)
            for (temperature, min_p) in [(1.0, 0.1), (0.7, 0.05), (1.3, 0.3), (1.0, 1.5)] {
                let p = SamplingParams { temperature, min_p, ..Default::default() };
                let dist = warp(&l, &p);
                let mut fast = RowSampler::new(round as u64, &[]);
                let mut draws = ChaCha8Rng::seed_from_u64(round as u64);
                for _ in 0..20 {
                    let (t, lp) = fast.next(&l, &p);
                    let u: f64 = draws.random();
                    let (mut acc, mut want) = (0.0, dist.last().unwrap().0);
                    for &(tok, q) in &dist {
                        acc += q;
                        if u < acc {
                            want = tok;
                            break;
                        }
                    }
                    assert_eq!(t, want, "round {round}, T {temperature}, min_p {min_p}");
                    assert!((lp - log_softmax_at(&l, t as usize)).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn plain_sampling_draws_from_the_softmax() {
        let l: Vec<f32> = (0..150).map(|i| ((i * 37 % 101) as f32) / 25.0).collect();
        let p = SamplingParams { temperature: 0.7, ..Default::default() };
        let scaled: Vec<f64> = l.iter().map(|&x| f64::from(x) / 0.7).collect();
        let want = softmax(&scaled);
        let mut s = RowSampler::new(11, &[]);
        let draws = 200_000;
        let mut counts = vec![0usize; l.len()];
        for _ in 0..draws {
            counts[s.next(&l, &p).0 as usize] += 1;
        }
        for (i, (&c, &q)) in counts.iter().zip(&want).enumerate() {
            let freq = c as f64 / draws as f64;
            // 5 standard errors of a binomial proportion.
            let se = (q * (1.0 - q) / draws as f64).sqrt();
            assert!((freq - q).abs() < 5.0 * se + 1e-4, "token {i}: {freq} vs {q}");
        }
    }
}

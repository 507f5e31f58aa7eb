//! Empirical f(k): the rate at which the favourite among k candidates of policy A and one
//! of policy B is one of A's, per (A, B, k), against the bound k/(k+1).
//!
//! Identical texts follow the slot-split convention of the paper's game: if the chosen
//! text appears in m of A's slots and in B's slot, A scores m/(m+1) (a text in A's slots
//! only scores 1, in B's only 0). "No preference" scores 1/2. Skipped trials, attention
//! checks and repeats are left out.
//!
//! Intervals: a 95% cluster bootstrap over participants (each participant's answers
//! resampled together, so within-participant correlation widens the interval as it
//! should), and Wilson's score interval on the trial count as a secondary figure. Below
//! [`MIN_CLUSTER_PARTICIPANTS`] participants the cluster interval is left out, with the
//! reason in [`FkRow::ci_note`]: a percentile bootstrap over a handful of people is often
//! far too narrow (at 5 participants it covered the truth in 60% of rows, and a row where
//! all of them scored alike got a zero-width interval).
//!
//! For a study watched while it runs, each row also has an anytime-valid confidence
//! sequence ([`confseq`]) of the participant-mean score: the fixed-N intervals above are
//! valid only when the number of participants was fixed in advance, and looking after
//! every participant and stopping at the first interval that excludes 1/2 inflates their
//! error; the sequence's is not. Its unit is a finished participant's mean score in the
//! row (equal to the rate when every participant answers the row's trials alike).

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::confseq;
use super::length::{self, ChoiceSet, LengthControl, TextOption};
use crate::schedule::{Slot, SlotRole};
use crate::store::BestOfKAnswer;

/// The fewest participants for which the cluster bootstrap's interval is given: its
/// coverage was measured near 95% from 20 participants up, 60% at 5.
pub const MIN_CLUSTER_PARTICIPANTS: usize = 20;

/// Why a row has no cluster interval (in the JSON as `ci_note`, in the text as a note).
pub const TOO_FEW_FOR_CLUSTER: &str = "fewer than 20 participants: a percentile bootstrap over so few people is often far too narrow (at 5 it covered the truth in 60% of rows), so no cluster interval is given; the Wilson interval treats trials as independent, which is too narrow when participants differ";

pub const CONVENTION: &str = "identical texts split the win: a chosen text in m of A's slots and in B's slot scores m/(m+1) for A; no preference scores 1/2";

/// One answered best_of_k trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    pub(crate) participant: &'a str,
    pub(crate) prompt: &'a str,
    pub(crate) policy_a: &'a str,
    pub(crate) policy_b: &'a str,
    pub(crate) k: u32,
    /// A's score in [0, 1].
    pub(crate) score: f64,
    pub(crate) no_preference: bool,
    /// The trial's distinct texts and what was chosen, for length control (none where its
    /// candidates are not all known).
    pub(crate) set: Option<ChoiceSet>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FkRow {
    pub policy_a: String,
    pub policy_b: String,
    pub k: u32,
    /// Answered trials.
    pub n: usize,
    pub participants: usize,
    /// Trials A won outright (score 1).
    pub wins: usize,
    /// Trials with a split score (no preference, or a chosen text shared by A and B).
    pub ties: usize,
    pub losses: usize,
    pub rate: f64,
    /// Cluster-bootstrap interval; NaN (null in JSON) with fewer than
    /// [`MIN_CLUSTER_PARTICIPANTS`] participants, and then `ci_note` says why.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Why there is no cluster interval (null where there is one).
    pub ci_note: Option<&'static str>,
    pub wilson_low: f64,
    pub wilson_high: f64,
    /// The anytime-valid 95% confidence sequence of the participant-mean score (each
    /// finished participant's mean score in this row, in the order they finished): valid
    /// at every look, so a study watched live may stop once it excludes 1/2 or k/(k+1).
    /// NaN (null in JSON) before any participant in the row has finished.
    pub cs_low: f64,
    pub cs_high: f64,
    /// Finished participants in the sequence.
    pub cs_participants: usize,
    pub bound: f64,
    /// f(k) with lengths equal, and the no-preference (Davidson) rate: [`length`].
    pub length_control: Option<LengthControl>,
}

/// What has a slot's role: a [`Slot`], or the role itself.
pub(crate) trait Role {
    fn role(&self) -> SlotRole;
}

impl Role for Slot {
    fn role(&self) -> SlotRole {
        self.role
    }
}

impl Role for SlotRole {
    fn role(&self) -> SlotRole {
        *self
    }
}

/// A's score for a pick among `slots` with `texts` (displayed order).
pub(crate) fn slot_split_score<S: Role, T: PartialEq>(slots: &[S], texts: &[T], choice: usize) -> f64 {
    let chosen = &texts[choice];
    let m = slots.iter().zip(texts).filter(|(s, t)| s.role() == SlotRole::A && *t == chosen).count();
    let in_b = slots.iter().zip(texts).any(|(s, t)| s.role() == SlotRole::B && t == chosen);
    match (m, in_b) {
        (0, _) => 0.0,
        (m, false) if m > 0 => 1.0,
        (m, _) => m as f64 / (m as f64 + 1.0),
    }
}

/// Wilson score interval for `x` successes (may be fractional) out of `n`, at z = 1.96.
pub(crate) fn wilson(x: f64, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let z = 1.959_963_984_540_054_f64;
    let p = x / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Percentile interval of the rate under resampling participants with replacement.
///
/// Participants with the same (score sum, trials) are alike to the resampling, and in a
/// large study most are alike to another (a few trials per row, a few score values): then
/// a resample is drawn as how many of each kind it takes, one multinomial draw over the
/// kinds (by conditional binomials), which is the same resampling distribution at a cost
/// that grows with the kinds instead of the participants. With more kinds than
/// [`KINDS_FOR_COUNTS`] allows, each participant is drawn in turn.
pub(crate) fn cluster_bootstrap(per_participant: &[(f64, usize)], replicates: usize, seed: u64) -> (f64, f64) {
    let n_p = per_participant.len();
    if n_p == 0 {
        return (0.0, 1.0);
    }
    if replicates == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds = kinds_of(per_participant);
    let mut rates: Vec<f64> = if kinds.len() * KINDS_FOR_COUNTS <= n_p {
        (0..replicates).map(|_| resample_by_kind(&kinds, n_p, &mut rng)).collect()
    } else {
        (0..replicates)
            .map(|_| {
                let (mut s, mut n) = (0.0, 0usize);
                for _ in 0..n_p {
                    let (ps, pn) = per_participant[rng.random_range(0..n_p)];
                    s += ps;
                    n += pn;
                }
                if n == 0 { 0.0 } else { s / n as f64 }
            })
            .collect()
    };
    percentile_95(&mut rates)
}

/// Resamples are drawn kind by kind where each kind stands for at least this many
/// participants on average (a binomial draw costs about as much as this many single draws).
pub(crate) const KINDS_FOR_COUNTS: usize = 16;

/// Distinct (score sum, trials) with how many participants have each, most common first
/// (ties by value: a fixed order for a given set of participants).
fn kinds_of(per_participant: &[(f64, usize)]) -> Vec<((f64, usize), u64)> {
    let mut counts: HashMap<(u64, usize), u64> = HashMap::new();
    for &(s, n) in per_participant {
        *counts.entry((s.to_bits(), n)).or_default() += 1;
    }
    let mut kinds: Vec<((f64, usize), u64)> =
        counts.into_iter().map(|((s, n), c)| ((f64::from_bits(s), n), c)).collect();
    kinds.sort_by(|((sa, na), ca), ((sb, nb), cb)| cb.cmp(ca).then(sa.total_cmp(sb)).then(na.cmp(nb)));
    kinds
}

/// One resample's rate: how many of each kind it takes, Multinomial(n_p, count/n_p), drawn
/// as each kind's Binomial(left, its share of the kinds not drawn yet).
fn resample_by_kind(kinds: &[((f64, usize), u64)], n_p: usize, rng: &mut ChaCha8Rng) -> f64 {
    let (mut s, mut n) = (0.0, 0u64);
    draw_kinds(kinds, n_p, rng, |&((ps, pn), _), take| {
        s += ps * take as f64;
        n += pn as u64 * take;
    });
    if n == 0 { 0.0 } else { s / n as f64 }
}

/// Draws how many of each kind a resample of `n_p` takes, handing each kind that gets any
/// and its number to `take`.
fn draw_kinds<K>(kinds: &[(K, u64)], n_p: usize, rng: &mut ChaCha8Rng, mut take: impl FnMut(&(K, u64), u64)) {
    use rand_distr::{Binomial, Distribution};
    let mut left = n_p as u64;
    let mut rest: u64 = kinds.iter().map(|(_, c)| c).sum();
    for kind in kinds {
        if left == 0 {
            break;
        }
        let c = kind.1;
        let got = if c == rest {
            left
        } else {
            // c < rest, so the share is in (0, 1).
            Binomial::new(left, c as f64 / rest as f64).map_or(0, |b| b.sample(rng))
        };
        if got > 0 {
            take(kind, got);
        }
        left -= got;
        rest -= c;
    }
}

/// The 2.5% and 97.5% points of bootstrap statistics (sorted here); NaN for none.
pub(crate) fn percentile_95(stats: &mut [f64]) -> (f64, f64) {
    if stats.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    stats.sort_by(f64::total_cmp);
    let last = stats.len() - 1;
    let q = |p: f64| stats[((p * last as f64).round() as usize).min(last)];
    (q(0.025), q(0.975))
}

/// What the "anytime" column is, under the text table.
pub const SEQUENCE_NOTE: &str = "(anytime 95%: a betting confidence sequence (Waudby-Smith & Ramdas 2023) of the mean score of finished participants, in the order they finished; valid however often it is looked at, so a study may stop once it excludes 1/2 or k/(k+1); the fixed-N intervals are valid only at a number of participants fixed in advance)";

/// The confidence sequences' level: 95%.
pub const CS_ALPHA: f64 = 0.05;

/// f(k) rows, sorted by (A, B, k). `finished`: finished participants' ids in the order
/// they finished, for the confidence sequences (participants still answering, and those
/// who left, are in the rate and the intervals but not in the sequence). `ties_offered`:
/// the study let participants answer "no preference" (the tie model is fitted).
pub fn compute(
    obs: &[Observation<'_>],
    finished: &[String],
    (replicates, seed): (usize, u64),
    ties_offered: bool,
) -> Vec<FkRow> {
    rows(obs, finished, (replicates, seed), Some(ties_offered))
}

/// As [`compute`], without the length control and tie model (`length_control` None): the
/// rows a live view refreshes on every answer, numbers identical to [`compute`]'s.
pub fn compute_without_length(obs: &[Observation<'_>], finished: &[String], resampling: (usize, u64)) -> Vec<FkRow> {
    rows(obs, finished, resampling, None)
}

/// The rows; `length`: None for no length control, else whether ties were offered.
fn rows(
    obs: &[Observation<'_>],
    finished: &[String],
    (replicates, seed): (usize, u64),
    length: Option<bool>,
) -> Vec<FkRow> {
    let mut groups: BTreeMap<(&str, &str, u32), Vec<&Observation<'_>>> = BTreeMap::new();
    for o in obs {
        groups.entry((o.policy_a, o.policy_b, o.k)).or_default().push(o);
    }
    // Rows are independent (each bootstrap seeded by its k): in parallel, in the same order.
    use rayon::prelude::*;
    groups
        .into_par_iter()
        .map(|((a, b, k), os)| {
            let mut sums = RowSums::default();
            for o in &os {
                sums.add(o.participant, o.score);
            }
            // Finished participants' mean scores, in the order they finished.
            let mut cs = confseq::Running::new(CS_ALPHA);
            for p in finished {
                if let Some(mean) = sums.mean_of(p) {
                    cs.push(mean);
                }
            }
            let mut row = sums.row((a, b, k), &cs, (replicates, seed));
            row.length_control = length.and_then(|ties_offered| {
                let sets: Vec<length::Trial> =
                    os.iter().filter_map(|o| Some(((o.participant, o.prompt), o.set.as_ref()?))).collect();
                let mut lc = length::fit(&sets, ties_offered)?;
                // The observed rate's interval: the cluster one, else Wilson's.
                let observed =
                    if row.ci_low.is_finite() { (row.ci_low, row.ci_high) } else { (row.wilson_low, row.wilson_high) };
                if lc.note.is_none()
                    && let Some((effect, note)) = length::verdict(&lc, row.rate, observed)
                {
                    (lc.effect, lc.note) = (Some(effect), Some(note));
                }
                Some(lc)
            });
            row
        })
        .collect()
}

/// What a row's numbers are made of, summed answer by answer (in the order answers were
/// committed, so that a live view adding new answers to them gets the numbers a reading of
/// every answer gets, bit for bit).
#[derive(Debug, Clone, Default)]
pub(crate) struct RowSums {
    n: usize,
    total: f64,
    wins: usize,
    ties: usize,
    losses: usize,
    /// Per participant: the sum of their scores and their trials.
    by_participant: BTreeMap<String, (f64, usize)>,
}

impl RowSums {
    /// One trial of `participant` scoring `score`.
    pub(crate) fn add(&mut self, participant: &str, score: f64) {
        self.n += 1;
        self.total += score;
        if score == 1.0 {
            self.wins += 1;
        } else if score == 0.0 {
            self.losses += 1;
        } else {
            self.ties += 1;
        }
        match self.by_participant.get_mut(participant) {
            Some(e) => {
                e.0 += score;
                e.1 += 1;
            }
            None => {
                self.by_participant.insert(participant.to_string(), (score, 1));
            }
        }
    }

    /// `participant`'s mean score in the row, if they have a trial in it.
    pub(crate) fn mean_of(&self, participant: &str) -> Option<f64> {
        self.by_participant.get(participant).map(|&(s, n)| s / n as f64)
    }

    /// The row (without length control): its counts, rate, intervals, and the confidence
    /// sequence `cs` of its finished participants' means.
    pub(crate) fn row(
        &self,
        (a, b, k): (&str, &str, u32),
        cs: &confseq::Running,
        (replicates, seed): (usize, u64),
    ) -> FkRow {
        let per: Vec<(f64, usize)> = self.by_participant.values().copied().collect();
        // Too few participants give too little between-participant spread to resample.
        let ci_note = (per.len() < MIN_CLUSTER_PARTICIPANTS).then_some(TOO_FEW_FOR_CLUSTER);
        let (ci_low, ci_high) = if ci_note.is_some() {
            (f64::NAN, f64::NAN)
        } else {
            cluster_bootstrap(&per, replicates, crate::seed::fk_bootstrap(seed, k))
        };
        let (wilson_low, wilson_high) = wilson(self.total, self.n);
        let (cs_low, cs_high) = if cs.is_empty() { (f64::NAN, f64::NAN) } else { cs.bounds() };
        FkRow {
            policy_a: a.to_string(),
            policy_b: b.to_string(),
            k,
            n: self.n,
            participants: per.len(),
            wins: self.wins,
            ties: self.ties,
            losses: self.losses,
            rate: if self.n == 0 { 0.0 } else { self.total / self.n as f64 },
            ci_low,
            ci_high,
            ci_note,
            wilson_low,
            wilson_high,
            cs_low,
            cs_high,
            cs_participants: cs.len(),
            bound: f64::from(k) / f64::from(k + 1),
            length_control: None,
        }
    }
}

/// The f(k) observations of answered best_of_k trials: each one's score for A under the
/// slot-split convention, from the texts of the candidates it showed (`texts_by_id`). A
/// trial whose shown candidates do not match its slots, or that has neither a pick nor
/// "no preference", is left out.
pub(crate) fn observations<'a>(answers: &'a [BestOfKAnswer], texts_by_id: &HashMap<i64, &str>) -> Vec<Observation<'a>> {
    observations_with(answers, texts_by_id, true)
}

/// As [`observations`], without the shown sets the length control needs (`set` None):
/// what the rate, its intervals and sequences are made of.
pub(crate) fn scores<'a>(answers: &'a [BestOfKAnswer], texts_by_id: &HashMap<i64, &str>) -> Vec<Observation<'a>> {
    observations_with(answers, texts_by_id, false)
}

fn observations_with<'a>(
    answers: &'a [BestOfKAnswer],
    texts_by_id: &HashMap<i64, &str>,
    sets: bool,
) -> Vec<Observation<'a>> {
    let mut out = Vec::new();
    for a in answers {
        let texts: Option<Vec<&str>> = a.candidate_ids.iter().map(|id| texts_by_id.get(id).copied()).collect();
        let texts = texts.filter(|t| t.len() == a.roles.len() && !t.is_empty());
        let score = if a.no_preference {
            0.5
        } else {
            let Some(choice) = a.choice else { continue };
            // A text not known (never, for a sound database) reads as empty, the others as
            // they are.
            let shown: Vec<&str> =
                a.candidate_ids.iter().map(|id| texts_by_id.get(id).copied().unwrap_or("")).collect();
            if shown.len() != a.roles.len() || choice >= shown.len() {
                continue;
            }
            slot_split_score(&a.roles, &shown, choice)
        };
        let set =
            texts.filter(|_| sets).map(|t| choice_set(&a.roles, &t, if a.no_preference { None } else { a.choice }));
        out.push(Observation {
            participant: &a.participant,
            prompt: &a.prompt_id,
            policy_a: &a.policy_a,
            policy_b: &a.policy_b,
            k: a.k,
            score,
            no_preference: a.no_preference,
            set,
        });
    }
    out
}

/// A trial's distinct texts (first shown first) with A's share of each, and the text chosen.
fn choice_set<S: Role>(slots: &[S], texts: &[&str], choice: Option<usize>) -> ChoiceSet {
    let mut distinct: Vec<&str> = Vec::new();
    for t in texts {
        if !distinct.contains(t) {
            distinct.push(t);
        }
    }
    let options = distinct
        .iter()
        .map(|d| {
            let first = texts.iter().position(|t| t == d).unwrap_or(0);
            TextOption {
                a_share: slot_split_score(slots, texts, first),
                a_slots: slots.iter().zip(texts).filter(|(s, t)| s.role() == SlotRole::A && *t == d).count() as f64,
                length: d.chars().count() as f64,
            }
        })
        .collect();
    let chosen = choice.and_then(|c| texts.get(c)).and_then(|t| distinct.iter().position(|d| d == t));
    ChoiceSet { options, chosen }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(role: SlotRole) -> Slot {
        Slot { policy: "x".into(), sample: 0, role }
    }

    #[test]
    fn slot_split_follows_the_games_convention() {
        let slots = [slot(SlotRole::A), slot(SlotRole::A), slot(SlotRole::A), slot(SlotRole::B)];
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Distinct texts: A's pick wins, B's loses.
        assert_eq!(slot_split_score(&slots, &t(&["a", "b", "c", "d"]), 0), 1.0);
        assert_eq!(slot_split_score(&slots, &t(&["a", "b", "c", "d"]), 3), 0.0);
        // Chosen text in 2 of A's slots and in B's: 2/3 for A, wherever it was clicked.
        let same = t(&["x", "x", "c", "x"]);
        for c in [0, 1, 3] {
            assert!((slot_split_score(&slots, &same, c) - 2.0 / 3.0).abs() < 1e-12);
        }
        // Greedy against greedy: every slot identical, k = 3 → 3/4, the bound itself.
        assert!((slot_split_score(&slots, &t(&["g", "g", "g", "g"]), 2) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_trials_choice_set_has_its_distinct_texts_with_as_share_and_length() {
        let slots = [slot(SlotRole::A), slot(SlotRole::B), slot(SlotRole::A), slot(SlotRole::A)];
        // Two of A's slots and B's show one text; A's third slot another.
        let set = choice_set(&slots, &["same", "same", "longer one", "same"], Some(1));
        let shares: Vec<f64> = set.options.iter().map(|o| o.a_share).collect();
        let lengths: Vec<f64> = set.options.iter().map(|o| o.length).collect();
        assert_eq!((shares, lengths, set.chosen), (vec![2.0 / 3.0, 1.0], vec![4.0, 10.0], Some(0)));
        assert_eq!(set.options.iter().map(|o| o.a_slots).collect::<Vec<_>>(), vec![2.0, 1.0]);
        // Characters, not bytes; "no preference" chooses nothing.
        let set = choice_set(&slots[..2], &["éé", "b"], None);
        assert_eq!((set.options[0].length, set.chosen), (2.0, None));
    }

    #[test]
    fn wilson_matches_the_closed_form() {
        // 8 of 10 at z = 1.96: (0.4902, 0.9433) (standard tables).
        let (lo, hi) = wilson(8.0, 10);
        assert!((lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4, "{lo} {hi}");
    }

    #[test]
    fn bootstrap_interval_contains_the_rate_and_narrows_with_more_participants() {
        let mk =
            |n_p: usize| -> Vec<(f64, usize)> { (0..n_p).map(|i| (if i % 4 == 0 { 1.0 } else { 4.0 }, 5)).collect() };
        let (lo, hi) = cluster_bootstrap(&mk(40), 2000, 1);
        let rate = (10.0 * 1.0 + 30.0 * 4.0) / 200.0;
        assert!(lo < rate && rate < hi, "{lo} {rate} {hi}");
        let (lo2, hi2) = cluster_bootstrap(&mk(400), 2000, 1);
        assert!(hi2 - lo2 < hi - lo);
    }

    #[test]
    fn drawing_resamples_by_kind_is_drawing_participants() {
        // 3,000 participants of 6 kinds, one kind rare: the interval from counts per kind
        // and the one from drawing each participant (the definition), both from 20,000
        // resamples, agree to Monte Carlo error; so do the resampled rates' spread.
        let kinds =
            [((3.0, 4), 900), ((1.5, 4), 800), ((4.0, 4), 700), ((0.0, 4), 400), ((2.0, 2), 190), ((1.0, 1), 10)];
        let per: Vec<(f64, usize)> = kinds.iter().flat_map(|&(v, c)| std::iter::repeat_n(v, c)).collect();
        assert!(kinds_of(&per).len() * KINDS_FOR_COUNTS <= per.len());
        let direct = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut rates: Vec<f64> = (0..20_000)
                .map(|_| {
                    let (mut s, mut n) = (0.0, 0);
                    for _ in 0..per.len() {
                        let (ps, pn) = per[rng.random_range(0..per.len())];
                        s += ps;
                        n += pn;
                    }
                    s / n as f64
                })
                .collect();
            percentile_95(&mut rates)
        };
        let (lo, hi) = cluster_bootstrap(&per, 20_000, 7);
        let (dlo, dhi) = direct(8);
        let rate = per.iter().map(|p| p.0).sum::<f64>() / per.iter().map(|p| p.1 as f64).sum::<f64>();
        assert!(lo < rate && rate < hi);
        // The half-width is ~0.012 here; each percentile's Monte Carlo error at 20,000
        // resamples ~1.2e-4, so two independent draws differ by ~1.7e-4: 1e-3 is 6 of those.
        assert!((lo - dlo).abs() < 1e-3 && (hi - dhi).abs() < 1e-3, "by kind ({lo}, {hi}), direct ({dlo}, {dhi})");
        // Each resample takes n_p participants in all, and each kind as often as a
        // multinomial draw would: mean n_p·p, variance n_p·p·(1 − p).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let k = kinds_of(&per);
        let draws = 4000;
        let mut sums = vec![(0.0f64, 0.0f64); k.len()];
        for _ in 0..draws {
            let mut got = vec![0u64; k.len()];
            draw_kinds(&k, per.len(), &mut rng, |kind, n| {
                got[k.iter().position(|x| x.0 == kind.0).unwrap()] = n;
            });
            assert_eq!(got.iter().sum::<u64>(), per.len() as u64);
            for (s, &g) in sums.iter_mut().zip(&got) {
                s.0 += g as f64;
                s.1 += (g as f64).powi(2);
            }
        }
        for ((_, c), (s, sq)) in k.iter().zip(sums) {
            let p = *c as f64 / per.len() as f64;
            let (mean, var) = (s / draws as f64, sq / draws as f64 - (s / draws as f64).powi(2));
            let (want_mean, want_var) = (per.len() as f64 * p, per.len() as f64 * p * (1.0 - p));
            // Standard errors: √(var/draws) for the mean, var·√(2/draws) for the variance.
            assert!((mean - want_mean).abs() < 5.0 * (want_var / draws as f64).sqrt(), "{c}: mean {mean}, {want_mean}");
            assert!(
                (var - want_var).abs() < 5.0 * want_var * (2.0 / draws as f64).sqrt(),
                "{c}: var {var}, {want_var}"
            );
        }
        // Many kinds (every participant alike to none): each participant is drawn.
        let spread: Vec<(f64, usize)> = (0..400).map(|i| (f64::from(i % 97) / 100.0, 1)).collect();
        assert!(kinds_of(&spread).len() * KINDS_FOR_COUNTS > spread.len());
        let (lo, hi) = cluster_bootstrap(&spread, 2000, 3);
        assert!(lo < hi);
    }

    /// An observation of `participant` in row (a, b, k) scoring `score`.
    fn obs(participant: &str, k: u32, score: f64) -> Observation<'_> {
        Observation {
            participant,
            prompt: "q",
            policy_a: "a",
            policy_b: "b",
            k,
            score,
            no_preference: false,
            set: None,
        }
    }

    #[test]
    fn compute_groups_and_counts() {
        let o = obs;
        let rows = compute(&[o("p1", 1, 1.0), o("p1", 1, 0.0), o("p2", 1, 0.5), o("p2", 2, 1.0)], &[], (500, 3), true);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].n, rows[0].wins, rows[0].ties, rows[0].losses, rows[0].participants), (3, 1, 1, 1, 2));
        assert!((rows[0].rate - 0.5).abs() < 1e-12);
        assert_eq!(rows[0].bound, 0.5);
        assert!((rows[1].bound - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn too_few_participants_get_no_cluster_interval_and_a_reason() {
        let names: Vec<String> = (0..MIN_CLUSTER_PARTICIPANTS).map(|p| format!("p{p}")).collect();
        let o = |p: usize, score| obs(&names[p], 1, score);
        // 5 participants who all lost: a percentile bootstrap would say [0, 0].
        let few: Vec<_> = (0..5).flat_map(|p| [o(p, 0.0), o(p, 0.0)]).collect();
        let r = &compute(&few, &[], (500, 1), true)[0];
        assert!(r.ci_low.is_nan() && r.ci_high.is_nan());
        assert_eq!(r.ci_note, Some(TOO_FEW_FOR_CLUSTER));
        // The Wilson interval is still given, and is not zero-width.
        assert!(r.wilson_high > 0.1, "{}", r.wilson_high);
        // From MIN_CLUSTER_PARTICIPANTS on, the interval is back and the note is gone.
        let enough: Vec<_> = (0..MIN_CLUSTER_PARTICIPANTS).flat_map(|p| [o(p, (p % 2) as f64), o(p, 1.0)]).collect();
        let r = &compute(&enough, &[], (500, 1), true)[0];
        assert!(r.ci_low.is_finite() && r.ci_low < r.rate && r.rate < r.ci_high);
        assert_eq!(r.ci_note, None);
    }

    #[test]
    fn the_sequence_takes_finished_participants_in_the_order_they_finished() {
        let names: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
        let obs: Vec<_> =
            (0..60).flat_map(|i| [obs(&names[i], 2, 1.0), obs(&names[i], 2, (i % 3) as f64 / 2.0)]).collect();
        let order = |ids: &mut dyn Iterator<Item = usize>| ids.map(|i| format!("p{i}")).collect::<Vec<_>>();
        let all = compute(&obs, &order(&mut (0..60)), (100, 1), true);
        let means: Vec<f64> = (0..60).map(|i| (1.0 + (i % 3) as f64 / 2.0) / 2.0).collect();
        let want = confseq::betting_cs(&means, CS_ALPHA);
        assert_eq!((all[0].cs_low, all[0].cs_high, all[0].cs_participants), (want.0, want.1, 60));
        assert!(all[0].cs_low < all[0].rate && all[0].rate < all[0].cs_high);
        // Who has not finished is not in the sequence (but is in the rate).
        let some = compute(&obs, &order(&mut (0..30)), (100, 1), true);
        assert_eq!((some[0].cs_participants, some[0].participants), (30, 60));
        assert_eq!((some[0].cs_low, some[0].cs_high), confseq::betting_cs(&means[..30], CS_ALPHA));
        // Nobody finished: no sequence.
        let none = compute(&obs, &[], (100, 1), true);
        assert!(none[0].cs_low.is_nan() && none[0].cs_participants == 0);
        // An id that finished but never answered this row adds nothing.
        let extra = compute(&obs, &[order(&mut (0..30)), vec!["nobody".into()]].concat(), (100, 1), true);
        assert_eq!(extra[0].cs_participants, 30);
    }
}

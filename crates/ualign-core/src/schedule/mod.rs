//! The trial scheduler: a pure function of the study and a participant id. It fixes the
//! block order, which prompt each trial shows, which pool samples fill which slots and in
//! what displayed order. It is seeded by (study seed, participant id), so the same
//! participant always gets the same list, and balanced: within a participant each k value,
//! each position of the single-output candidate and each prompt recur in rotation, with
//! rotation offsets drawn per participant, so counts are even across participants too.
//! The list is stored at enrolment; resuming reads the next unanswered trial from the store.
//!
//! Within a block, a participant meets the same candidate again only when the study asks
//! (`repeat_fraction`) or its pools leave no other: a prompt shown twice (more trials than
//! prompts) is shown with samples the participant has not yet seen for it first, in
//! another round of the block's prompts, never in the trial right after.

use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use std::collections::HashMap;

use crate::study::{Block, Design, RankMode, Study};

/// The samples of each (prompt, policy) already in a participant's list.
type Seen = HashMap<(String, String), Vec<u32>>;

/// What a displayed slot shows: sample `sample` of `policy`'s pool for the trial's prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub policy: String,
    pub sample: u32,
    pub role: SlotRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotRole {
    /// One of the k candidates of policy A in a best_of_k trial.
    A,
    /// The single candidate of policy B in a best_of_k trial.
    B,
    /// A candidate of a rank trial.
    Pool,
    /// The intact candidate of an attention check.
    Gold,
    /// The deliberately broken candidate of an attention check (its words shuffled).
    Broken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialKind {
    BestOfK,
    Rank,
    Attention,
    Repeat,
}

impl TrialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialKind::BestOfK => "best_of_k",
            TrialKind::Rank => "rank",
            TrialKind::Attention => "attention",
            TrialKind::Repeat => "repeat",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "best_of_k" => TrialKind::BestOfK,
            "rank" => TrialKind::Rank,
            "attention" => TrialKind::Attention,
            "repeat" => TrialKind::Repeat,
            _ => return None,
        })
    }
}

/// One trial of a participant's list, before it is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTrial {
    pub(crate) block: String,
    pub(crate) kind: TrialKind,
    pub mode: RankMode,
    pub prompt_id: String,
    pub(crate) k: Option<u32>,
    pub(crate) policy_a: Option<String>,
    pub(crate) policy_b: Option<String>,
    /// Slots in displayed order.
    pub slots: Vec<Slot>,
    /// For a repeat: the position (in the whole list) of the trial it repeats.
    pub(crate) repeat_of: Option<usize>,
}

/// The participant's full trial list, in presentation order.
pub fn plan(study: &Study, participant: &str) -> Vec<PlannedTrial> {
    let mut blocks: Vec<&Block> = study.blocks.iter().collect();
    if study.options.shuffle_blocks {
        blocks.shuffle(&mut crate::seed::block_order(study.seed, participant));
    }
    let mut out = Vec::new();
    for block in blocks {
        // Within a block, where a prompt recurs; each block is its own task, drawing from
        // its pools as if the others were not there.
        let mut seen = Seen::new();
        let mut rng = crate::seed::trial_list(study.seed, participant, &block.name);
        let start = out.len();
        let trials = plan_block(study, block, &mut seen, &mut rng);
        out.extend(trials.into_iter().map(|mut t| {
            t.repeat_of = t.repeat_of.map(|p| p + start);
            t
        }));
    }
    out
}

/// `n` items drawn from `items` in rotation: each appears n/len or n/len+1 times, starting at
/// a random offset so that the remainder falls evenly across participants.
fn rotation<T: Clone>(items: &[T], n: usize, rng: &mut ChaCha8Rng) -> Vec<T> {
    if items.is_empty() {
        return Vec::new();
    }
    let off = rng.random_range(0..items.len());
    (0..n).map(|i| items[(i + off) % items.len()].clone()).collect()
}

/// `n` distinct samples of a pool of `pool`, none of `exclude` where the pool allows
/// (else they are allowed again), those not in `seen` first; the chosen are added to `seen`.
fn distinct_samples(pool: u32, n: u32, exclude: &[u32], seen: &mut Vec<u32>, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut all: Vec<u32> = (0..pool).filter(|s| !exclude.contains(s)).collect();
    if (all.len() as u32) < n {
        // Not enough samples beside the excluded ones: allow them again.
        all = (0..pool).collect();
    }
    all.shuffle(rng);
    // Unseen first, each part in random order.
    all.sort_by_key(|s| seen.contains(s));
    all.truncate(n as usize);
    seen.extend(all.iter().copied().filter(|s| !seen.contains(s)).collect::<Vec<_>>());
    all
}

/// Shuffles a block's trials within rounds of `round` (the number of its prompts: trial i
/// shows prompt i mod round, so a round shows each prompt once), keeping rounds in order
/// and the two trials where rounds meet on different prompts: a prompt that recurs comes
/// back a round later, not in the next trial.
fn shuffle_in_rounds(trials: &mut [PlannedTrial], round: usize, rng: &mut ChaCha8Rng) {
    let round = round.max(1);
    let mut prev: Option<String> = None;
    for chunk in trials.chunks_mut(round) {
        chunk.shuffle(rng);
        if chunk.len() > 1 && prev.as_ref() == Some(&chunk[0].prompt_id) {
            let other = rng.random_range(1..chunk.len());
            chunk.swap(0, other);
        }
        prev = chunk.last().map(|t| t.prompt_id.clone());
    }
}

/// One block's trials: its design's trials in random order, attention checks among them,
/// repeats after their originals. The draws come in this order from `rng` (a stored
/// study's lists depend on it).
fn plan_block(study: &Study, block: &Block, seen: &mut Seen, rng: &mut ChaCha8Rng) -> Vec<PlannedTrial> {
    let n = block.trials as usize;
    let mut prompts = block.prompts.clone();
    prompts.shuffle(rng);
    let prompt_seq = rotation(&prompts, n, rng);
    let mut main: Vec<PlannedTrial> = match &block.design {
        Design::BestOfK { policy_a, policy_b, k } => {
            best_of_k_trials(study, block, (policy_a, policy_b), k, &prompt_seq, seen, rng)
        }
        Design::Rank { policies, m, mode } => rank_trials(study, block, policies, (*m, *mode), &prompt_seq, seen, rng),
    };
    shuffle_in_rounds(&mut main, prompts.len(), rng);
    add_attention_checks(study, block, &prompts, &mut main, rng);
    with_repeats(block, main, rng)
}

fn pool_of(study: &Study, name: &str) -> u32 {
    study.policy(name).map_or(1, |p| p.pool_size)
}

/// k candidates of A and one of B per trial; k values and B's slot rotate.
fn best_of_k_trials(
    study: &Study,
    block: &Block,
    (policy_a, policy_b): (&str, &str),
    k: &[u32],
    prompt_seq: &[String],
    seen: &mut Seen,
    rng: &mut ChaCha8Rng,
) -> Vec<PlannedTrial> {
    let ks = rotation(k, prompt_seq.len(), rng);
    // Position of B's slot: for each k, rotate through 0..=k from a random offset.
    let mut next_pos: Vec<(u32, u32)> = k.iter().map(|&k| (k, rng.random_range(0..=k))).collect();
    ks.iter()
        .zip(prompt_seq)
        .map(|(&k, prompt)| {
            let entry = next_pos.iter_mut().find(|(kk, _)| *kk == k).expect("k drawn from the block's list");
            let b_pos = (entry.1 % (k + 1)) as usize;
            entry.1 += 1;
            let seen_a = seen.entry((prompt.clone(), policy_a.to_string())).or_default();
            let a_samples = distinct_samples(pool_of(study, policy_a), k, &[], seen_a, rng);
            let exclude = if policy_a == policy_b { a_samples.clone() } else { Vec::new() };
            let seen_b = seen.entry((prompt.clone(), policy_b.to_string())).or_default();
            let b_sample = distinct_samples(pool_of(study, policy_b), 1, &exclude, seen_b, rng)[0];
            let mut slots: Vec<Slot> = a_samples
                .into_iter()
                .map(|s| Slot { policy: policy_a.to_string(), sample: s, role: SlotRole::A })
                .collect();
            slots.insert(b_pos, Slot { policy: policy_b.to_string(), sample: b_sample, role: SlotRole::B });
            PlannedTrial {
                block: block.name.clone(),
                kind: TrialKind::BestOfK,
                mode: RankMode::Pick,
                prompt_id: prompt.clone(),
                k: Some(k),
                policy_a: Some(policy_a.to_string()),
                policy_b: Some(policy_b.to_string()),
                slots,
                repeat_of: None,
            }
        })
        .collect()
}

/// m candidates drawn from the policies' pools per trial, in random slots.
fn rank_trials(
    study: &Study,
    block: &Block,
    policies: &[String],
    (m, mode): (u32, RankMode),
    prompt_seq: &[String],
    seen: &mut Seen,
    rng: &mut ChaCha8Rng,
) -> Vec<PlannedTrial> {
    let pool: Vec<(String, u32)> =
        policies.iter().flat_map(|p| (0..pool_of(study, p)).map(move |s| (p.clone(), s))).collect();
    prompt_seq
        .iter()
        .map(|prompt| {
            let was_seen = |(p, s): &(String, u32), seen: &Seen| {
                seen.get(&(prompt.clone(), p.clone())).is_some_and(|v| v.contains(s))
            };
            // Unseen candidates first, each part in random order.
            let mut order: Vec<(String, u32)> = pool.clone();
            order.shuffle(rng);
            order.sort_by_key(|c| was_seen(c, seen));
            order.truncate(m as usize);
            let mut chosen = order;
            for (p, s) in &chosen {
                let v = seen.entry((prompt.clone(), p.clone())).or_default();
                if !v.contains(s) {
                    v.push(*s);
                }
            }
            chosen.shuffle(rng);
            PlannedTrial {
                block: block.name.clone(),
                kind: TrialKind::Rank,
                mode,
                prompt_id: prompt.clone(),
                k: None,
                policy_a: None,
                policy_b: None,
                slots: chosen
                    .into_iter()
                    .map(|(policy, sample)| Slot { policy, sample, role: SlotRole::Pool })
                    .collect(),
                repeat_of: None,
            }
        })
        .collect()
}

/// Attention checks: an intact candidate beside a word-shuffled one, at random places
/// (never first, so the participant has seen a real trial before).
fn add_attention_checks(
    study: &Study,
    block: &Block,
    prompts: &[String],
    main: &mut Vec<PlannedTrial>,
    rng: &mut ChaCha8Rng,
) {
    let gold_policy = match &block.design {
        Design::BestOfK { policy_a, .. } => policy_a.clone(),
        Design::Rank { policies, .. } => policies[0].clone(),
    };
    for _ in 0..block.attention_checks {
        let prompt = prompts[rng.random_range(0..prompts.len())].clone();
        let samples = distinct_samples(pool_of(study, &gold_policy), 2, &[], &mut Vec::new(), rng);
        let broken_sample = *samples.last().unwrap_or(&0);
        let mut slots = vec![
            Slot { policy: gold_policy.clone(), sample: samples[0], role: SlotRole::Gold },
            Slot { policy: gold_policy.clone(), sample: broken_sample, role: SlotRole::Broken },
        ];
        slots.shuffle(rng);
        let at = rng.random_range(1..=main.len().max(1));
        main.insert(
            at.min(main.len()),
            PlannedTrial {
                block: block.name.clone(),
                kind: TrialKind::Attention,
                mode: RankMode::Pick,
                prompt_id: prompt,
                k: None,
                policy_a: None,
                policy_b: None,
                slots,
                repeat_of: None,
            },
        );
    }
}

/// Repeats: a random subset of the block's trials shown again at least two trials later,
/// slots reshuffled; `repeat_of` is the original's position in the returned list.
fn with_repeats(block: &Block, main: Vec<PlannedTrial>, rng: &mut ChaCha8Rng) -> Vec<PlannedTrial> {
    let originals: Vec<usize> =
        (0..main.len().saturating_sub(2)).filter(|&i| main[i].kind != TrialKind::Attention).collect();
    let mut chosen: Vec<usize> = originals.choose_multiple(rng, block.repeat_count() as usize).copied().collect();
    chosen.sort_unstable();
    let mut repeats: Vec<(usize, PlannedTrial)> = Vec::new();
    for orig in chosen {
        let mut t = main[orig].clone();
        t.kind = TrialKind::Repeat;
        t.slots.shuffle(rng);
        t.repeat_of = Some(orig);
        repeats.push((orig, t));
    }
    // Place each repeat at least two trials after its original, keeping originals' indices
    // valid: build the final list and remap `repeat_of` to final positions.
    let mut order: Vec<(Option<usize>, PlannedTrial)> =
        main.into_iter().enumerate().map(|(i, t)| (Some(i), t)).collect();
    for (orig, t) in repeats {
        let orig_pos = order.iter().position(|(i, _)| *i == Some(orig)).unwrap_or(0);
        let earliest = orig_pos + 3; // originals are never among the last two
        let at = rng.random_range(earliest..=order.len());
        order.insert(at, (None, t));
    }
    let final_pos =
        |orig: usize, order: &[(Option<usize>, PlannedTrial)]| order.iter().position(|(i, _)| *i == Some(orig));
    order
        .iter()
        .map(|(_, t)| {
            let mut t = t.clone();
            t.repeat_of = t.repeat_of.and_then(|o| final_pos(o, &order));
            t
        })
        .collect()
}

/// The deliberately broken text of an attention check: the candidate's words in a
/// shuffled order (deterministic for the candidate id), never equal to the original when
/// it has two or more distinct words.
pub(crate) fn broken_text(text: &str, seed: u64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut rng = crate::seed::attention_text(seed);
    let mut shuffled = words.clone();
    for _ in 0..8 {
        shuffled.shuffle(&mut rng);
        if shuffled != words {
            break;
        }
    }
    if shuffled == words {
        // One word, or all the same: reverse the characters instead.
        return text.chars().rev().collect();
    }
    shuffled.join(" ")
}

#[cfg(test)]
mod tests;

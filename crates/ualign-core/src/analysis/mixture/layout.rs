//! The choices as the EM's steps read them, prompt by prompt, in two forms:
//!
//! - **Picks** (one response chosen from a shown set: pick answers, best_of_k answers) by
//!   their choice *set*: a prompt's distinct sets are stored once, and each pick is who made
//!   it, from which set, and what was chosen. A set's total worth (the E-step) and its share
//!   of the MM denominators (the M-step) are then computed once per set, however many
//!   participants saw it: the sufficient statistics of a Plackett–Luce choice are the
//!   chosen response and the set's summed posterior weight. With many participants the
//!   sets repeat (a pick of 4 from 16 has 1,820 possible sets; best_of_k at k = 16 one), so
//!   the work per EM step grows with the distinct sets, not with the answers.
//! - **Orders** (two or more responses chosen in turn) as they are, choice by choice: their
//!   nested sets cost O(m) with suffix sums, and whole orders rarely repeat.

use std::collections::HashMap;

use super::super::ranking::{Choices, FlatChoices};
use super::Evidence;

/// A prompt's distinct choice sets: set s is `items[start[s]..start[s + 1]]`, sorted.
#[derive(Debug, Clone, Default)]
pub(super) struct Sets {
    items: Vec<u32>,
    start: Vec<u32>,
}

impl Sets {
    pub(super) fn len(&self) -> usize {
        self.start.len().saturating_sub(1)
    }

    #[inline]
    pub(super) fn get(&self, s: usize) -> &[u32] {
        &self.items[self.start[s] as usize..self.start[s + 1] as usize]
    }
}

/// One prompt's choices.
#[derive(Debug, Clone, Default)]
pub(super) struct Part {
    pub(super) sets: Sets,
    /// Each pick: who made it (an index into [`ByPrompt::who`]), its set, the response
    /// chosen; in participant order.
    pub(super) pick_owner: Vec<u32>,
    pub(super) pick_set: Vec<u32>,
    pub(super) pick_chosen: Vec<u32>,
    /// Each choice of two or more responses in turn, and who made it.
    pub(super) orders: FlatChoices,
    pub(super) order_owner: Vec<u32>,
}

impl Part {
    pub(super) fn is_empty(&self) -> bool {
        self.pick_owner.is_empty() && self.order_owner.is_empty()
    }
}

/// The choices grouped by prompt, for the M-step and the E-step.
pub(crate) struct ByPrompt {
    pub(super) parts: Vec<Part>,
    /// How many times each participant counts: 1, or in a bootstrap resample the times the
    /// person was drawn.
    pub(super) count: Vec<f64>,
    /// Each participant's index in the evidence.
    pub(super) who: Vec<usize>,
    /// `members[prompt][person]`: that person's picks and orders in `parts[prompt]`, as
    /// ranges (a person's choices at a prompt are consecutive).
    members: Vec<Vec<[(u32, u32); 2]>>,
}

impl ByPrompt {
    pub(crate) fn new(e: &Evidence) -> Self {
        let n = e.prompts.len();
        let mut parts = vec![Part::default(); n];
        let mut orders: Vec<Vec<&Choices>> = vec![Vec::new(); n];
        let mut numbered: Vec<HashMap<Vec<u32>, u32>> = vec![HashMap::new(); n];
        let mut members = vec![vec![[(0, 0); 2]; e.people.len()]; n];
        for (p, pi, c) in &e.choices {
            let part = &mut parts[*pi];
            let m = &mut members[*pi][*p];
            if m[0] == (0, 0) && m[1] == (0, 0) {
                *m = [(part.pick_owner.len() as u32, 0), (part.order_owner.len() as u32, 0)];
            }
            if c.ranked.len() == 1 {
                let mut set: Vec<u32> = c.ranked.iter().chain(&c.rest).map(|&i| i as u32).collect();
                set.sort_unstable();
                let next = numbered[*pi].len() as u32;
                let s = *numbered[*pi].entry(set).or_insert_with_key(|set| {
                    if part.sets.start.is_empty() {
                        part.sets.start.push(0);
                    }
                    part.sets.items.extend_from_slice(set);
                    part.sets.start.push(part.sets.items.len() as u32);
                    next
                });
                part.pick_owner.push(*p as u32);
                part.pick_set.push(s);
                part.pick_chosen.push(c.ranked[0] as u32);
            } else {
                orders[*pi].push(c);
                part.order_owner.push(*p as u32);
            }
            m[0].1 = part.pick_owner.len() as u32;
            m[1].1 = part.order_owner.len() as u32;
        }
        for (part, list) in parts.iter_mut().zip(orders) {
            part.orders = FlatChoices::new(list);
        }
        Self { parts, count: vec![1.0; e.people.len()], who: (0..e.people.len()).collect(), members }
    }

    /// The participants here, as indexes in the evidence.
    pub(crate) fn who(&self) -> &[usize] {
        &self.who
    }

    /// A bootstrap resample of the people `drawn` (repeats allowed). A person drawn m times
    /// is here once, counted m times: each copy would have the same choices, hence the
    /// same posterior at every step, so the copies are fitted as one with weight m (the
    /// same fit as m separate copies, to rounding, for about 63% of the work). The sets are
    /// the full data's (a set no one drawn saw weighs nothing); people in increasing order
    /// ([`ByPrompt::who`]); a resample keeps no `members` (it is refitted, never resampled
    /// again).
    pub(crate) fn resample(&self, drawn: &[usize]) -> Self {
        let mut times = vec![0usize; self.count.len()];
        for &p in drawn {
            times[p] += 1;
        }
        let who: Vec<usize> = (0..times.len()).filter(|&p| times[p] > 0).collect();
        let parts = self
            .parts
            .iter()
            .zip(&self.members)
            .map(|(full, of)| {
                let mut part = Part { sets: full.sets.clone(), ..Part::default() };
                let mut picks = Vec::new();
                for (here, &p) in who.iter().enumerate() {
                    let [(a, b), (c, d)] = of[p];
                    for i in a as usize..b as usize {
                        part.pick_owner.push(here as u32);
                        part.pick_set.push(full.pick_set[i]);
                        part.pick_chosen.push(full.pick_chosen[i]);
                    }
                    picks.extend(c as usize..d as usize);
                    part.order_owner.extend(std::iter::repeat_n(here as u32, (d - c) as usize));
                }
                part.orders = full.orders.select(picks);
                part
            })
            .collect();
        let count = who.iter().map(|&p| times[p] as f64).collect();
        Self { parts, count, who, members: Vec::new() }
    }
}

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::*;
use crate::study::parse_study;

fn study(text: &str) -> Study {
    let (s, d) = parse_study(Path::new("/nonexistent/studies/t.toml"), text);
    assert!(!d.has_errors(), "{:#?}", d.items);
    s.unwrap()
}

fn balanced_study() -> Study {
    let mut text = String::from("name = \"t\"\nseed = 99\n");
    for i in 0..10 {
        text.push_str(&format!("[[prompts]]\nid = \"p{i}\"\ntext = \"prompt {i}\"\n"));
    }
    text.push_str(
        r#"
[[policies]]
name = "a"
source = "imported"
pool_size = 8
[[policies]]
name = "b"
source = "imported"
pool_size = 3
[[blocks]]
name = "scaling"
design = "best_of_k"
policy_a = "a"
policy_b = "b"
k = [1, 2, 4, 8]
trials = 6
attention_checks = 1
repeat_fraction = 0.34
[[blocks]]
name = "ranking"
design = "rank"
policies = ["a", "b"]
m = 4
mode = "order"
trials = 3
"#,
    );
    study(&text)
}

#[test]
fn same_participant_same_list_and_others_differ() {
    let s = balanced_study();
    assert_eq!(plan(&s, "alice"), plan(&s, "alice"));
    assert_ne!(plan(&s, "alice"), plan(&s, "bob"));
    let mut other_seed = s.clone();
    other_seed.seed += 1;
    assert_ne!(plan(&s, "alice"), plan(&other_seed, "alice"));
}

#[test]
fn trials_are_well_formed() {
    let s = balanced_study();
    for pid in 0..200 {
        let list = plan(&s, &format!("p{pid}"));
        assert_eq!(list.len() as u32, s.trials_per_participant());
        for (pos, t) in list.iter().enumerate() {
            match t.kind {
                TrialKind::BestOfK => {
                    let k = t.k.unwrap() as usize;
                    assert_eq!(t.slots.len(), k + 1);
                    assert_eq!(t.slots.iter().filter(|s| s.role == SlotRole::B).count(), 1);
                    let a: HashSet<u32> = t.slots.iter().filter(|s| s.role == SlotRole::A).map(|s| s.sample).collect();
                    assert_eq!(a.len(), k, "A's samples are distinct");
                    assert!(t.slots.iter().all(|s| s.sample < if s.role == SlotRole::A { 8 } else { 3 }));
                }
                TrialKind::Rank => {
                    assert_eq!(t.slots.len(), 4);
                    let distinct: HashSet<(String, u32)> =
                        t.slots.iter().map(|s| (s.policy.clone(), s.sample)).collect();
                    assert_eq!(distinct.len(), 4);
                    assert_eq!(t.mode, RankMode::Order);
                }
                TrialKind::Attention => {
                    let roles: Vec<SlotRole> = t.slots.iter().map(|s| s.role).collect();
                    assert!(roles.contains(&SlotRole::Gold) && roles.contains(&SlotRole::Broken));
                    assert!(pos > 0, "an attention check never comes first");
                }
                TrialKind::Repeat => {
                    let orig = &list[t.repeat_of.unwrap()];
                    assert!(t.repeat_of.unwrap() + 3 <= pos, "a repeat comes at least two trials after its original");
                    assert_eq!(orig.prompt_id, t.prompt_id);
                    let mut a = orig.slots.clone();
                    let mut b = t.slots.clone();
                    a.sort_by_key(|s| (s.policy.clone(), s.sample));
                    b.sort_by_key(|s| (s.policy.clone(), s.sample));
                    assert_eq!(a, b, "a repeat shows the same candidates");
                }
            }
        }
        assert!(list[..list.len() - 3].iter().all(|t| t.block == "scaling"), "blocks as listed");
    }
}

#[test]
fn balanced_across_1000_participants() {
    let s = balanced_study();
    let mut by_k: BTreeMap<u32, usize> = BTreeMap::new();
    let mut b_pos: BTreeMap<(u32, usize), usize> = BTreeMap::new();
    let mut prompts: BTreeMap<String, usize> = BTreeMap::new();
    let mut rank_pos: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for pid in 0..1000 {
        for t in plan(&s, &format!("participant-{pid}")) {
            match t.kind {
                TrialKind::BestOfK => {
                    let k = t.k.unwrap();
                    *by_k.entry(k).or_default() += 1;
                    let pos = t.slots.iter().position(|s| s.role == SlotRole::B).unwrap();
                    *b_pos.entry((k, pos)).or_default() += 1;
                    *prompts.entry(t.prompt_id.clone()).or_default() += 1;
                }
                TrialKind::Rank => {
                    for (i, sl) in t.slots.iter().enumerate() {
                        *rank_pos.entry((i, sl.policy.clone())).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }
    // 6000 best_of_k trials: 1500 per k expected.
    for (&k, &n) in &by_k {
        assert!((1400..=1600).contains(&n), "k = {k}: {n} trials");
        // B's slot position is uniform over 0..=k.
        let expect = n as f64 / (k + 1) as f64;
        for pos in 0..=k as usize {
            let got = b_pos.get(&(k, pos)).copied().unwrap_or(0) as f64;
            assert!((got - expect).abs() <= 0.1 * expect + 5.0, "k = {k}, pos {pos}: {got} vs {expect}");
        }
    }
    for (p, &n) in &prompts {
        assert!((540..=660).contains(&n), "prompt {p}: {n} (600 expected)");
    }
    // In rank trials, policy a fills 8/11 of slots at every position.
    for pos in 0..4 {
        let a = rank_pos[&(pos, "a".to_string())] as f64;
        let b = rank_pos[&(pos, "b".to_string())] as f64;
        assert!((a / (a + b) - 8.0 / 11.0).abs() < 0.03, "position {pos}: a share {}", a / (a + b));
    }
}

#[test]
fn within_a_participant_k_values_rotate() {
    let s = balanced_study();
    for pid in 0..50 {
        let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
        for t in plan(&s, &format!("x{pid}")).iter().filter(|t| t.kind == TrialKind::BestOfK) {
            *counts.entry(t.k.unwrap()).or_default() += 1;
        }
        let (lo, hi) = (counts.values().min().unwrap(), counts.values().max().unwrap());
        assert!(hi - lo <= 1, "{counts:?}");
    }
}

#[test]
fn shuffled_blocks_change_order_between_participants() {
    let mut s = balanced_study();
    s.options.shuffle_blocks = true;
    let firsts: HashSet<String> = (0..40).map(|i| plan(&s, &format!("q{i}"))[0].block.clone()).collect();
    assert_eq!(firsts.len(), 2);
}

#[test]
fn broken_text_differs_and_keeps_words() {
    let t = "the quick brown fox jumps";
    let b = broken_text(t, 3);
    assert_ne!(b, t);
    let mut x: Vec<&str> = b.split(' ').collect();
    let mut y: Vec<&str> = t.split(' ').collect();
    x.sort_unstable();
    y.sort_unstable();
    assert_eq!(x, y);
    assert_eq!(broken_text(t, 3), b, "deterministic");
    assert_eq!(broken_text("word", 1), "drow");
}

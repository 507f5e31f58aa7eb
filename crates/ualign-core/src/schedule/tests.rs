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

/// The researcher-journey study: 4 prompts, 6 best_of_k trials (k = 1, 2, 4 from a pool
/// of 4 against a one-answer policy), a rank block of 6 trials of 3 from 4 + 1.
fn more_trials_than_prompts() -> Study {
    let mut text = String::from("name = \"t\"\nseed = 5\n");
    for i in 0..4 {
        text.push_str(&format!("[[prompts]]\nid = \"p{i}\"\ntext = \"prompt {i}\"\n"));
    }
    text.push_str(
        r#"
[[policies]]
name = "sampled"
source = "imported"
pool_size = 4
[[policies]]
name = "one"
source = "imported"
pool_size = 1
[[blocks]]
name = "scaling"
design = "best_of_k"
policy_a = "sampled"
policy_b = "one"
k = [1, 2, 4]
trials = 6
[[blocks]]
name = "ranking"
design = "rank"
policies = ["sampled", "one"]
m = 2
trials = 8
"#,
    );
    study(&text)
}

#[test]
fn a_prompt_shown_again_comes_with_other_candidates_where_the_pool_has_them() {
    let s = more_trials_than_prompts();
    for pid in 0..300 {
        let list = plan(&s, &format!("r{pid}"));
        for block in ["scaling", "ranking"] {
            let main: Vec<&PlannedTrial> = list
                .iter()
                .filter(|t| t.block == block && matches!(t.kind, TrialKind::BestOfK | TrialKind::Rank))
                .collect();
            // Never the same prompt twice in a row.
            for w in main.windows(2) {
                assert_ne!(w[0].prompt_id, w[1].prompt_id, "{pid} {block}: back to back");
            }
            // Each candidate of a prompt is met again only when the pool has no unseen one.
            let mut by_prompt: BTreeMap<&str, Vec<&PlannedTrial>> = BTreeMap::new();
            for t in &main {
                by_prompt.entry(t.prompt_id.as_str()).or_default().push(t);
            }
            for (prompt, trials) in by_prompt {
                let mut seen: HashSet<(String, u32)> = HashSet::new();
                for t in trials {
                    let pool: Vec<(String, u32)> = t.slots.iter().map(|sl| (sl.policy.clone(), sl.sample)).collect();
                    // The policy with several samples: its slots, and its samples not yet seen.
                    let sampled = |c: &&(String, u32)| c.0 == "sampled" || block == "ranking";
                    let shown: Vec<&(String, u32)> = pool.iter().filter(sampled).collect();
                    let again = shown.iter().filter(|c| seen.contains(**c)).count();
                    let total = if block == "scaling" { 4 } else { 5 };
                    let unseen = total - seen.iter().filter(sampled).count();
                    assert_eq!(
                        again,
                        shown.len().saturating_sub(unseen),
                        "{pid} {block} {prompt}: {pool:?} after {seen:?}"
                    );
                    seen.extend(pool);
                }
            }
        }
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

mod properties {
    //! Any valid study, seed and participant id give a trial list that is well formed,
    //! balanced within the participant, the same every time, and the same once stored.
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::*;
    use crate::store::Store;
    use crate::study::parse_study;

    #[derive(Debug, Clone)]
    struct Design {
        prompts: usize,
        pool_a: u32,
        pool_b: u32,
        ks: Vec<u32>,
        trials: u32,
        attention: u32,
        repeat_fraction: f64,
        rank_trials: u32,
        m: u32,
        order: bool,
        shuffle: bool,
        seed: u64,
    }

    fn design() -> impl Strategy<Value = Design> {
        (1usize..6, 1u32..9, 1u32..4, 1u32..20, 0.0f64..=1.0, 1u32..6, any::<bool>(), any::<bool>(), any::<u64>())
            .prop_flat_map(|(prompts, pool_a, pool_b, trials, repeat_fraction, rank_trials, order, shuffle, seed)| {
                (
                    proptest::sample::subsequence((1..=pool_a).collect::<Vec<_>>(), 1..=pool_a as usize),
                    0..=trials.min(3),
                    2..=(pool_a + pool_b).clamp(2, 16),
                )
                    .prop_map(move |(ks, attention, m)| Design {
                        prompts,
                        pool_a,
                        pool_b,
                        ks,
                        trials,
                        attention,
                        repeat_fraction,
                        rank_trials,
                        m,
                        order,
                        shuffle,
                        seed,
                    })
            })
    }

    fn study_text(d: &Design) -> String {
        let mut t = format!("name = \"prop\"\nseed = {}\n[options]\nshuffle_blocks = {}\n", d.seed >> 1, d.shuffle);
        for i in 0..d.prompts {
            t.push_str(&format!("[[prompts]]\nid = \"q{i}\"\ntext = \"prompt {i}\"\n"));
        }
        t.push_str(&format!(
            "[[policies]]\nname = \"a\"\nsource = \"imported\"\npool_size = {}\n[[policies]]\nname = \"b\"\nsource = \"imported\"\npool_size = {}\n",
            d.pool_a, d.pool_b
        ));
        t.push_str(&format!(
            "[[blocks]]\nname = \"scaling\"\ndesign = \"best_of_k\"\npolicy_a = \"a\"\npolicy_b = \"b\"\nk = {:?}\ntrials = {}\nattention_checks = {}\nrepeat_fraction = {}\n",
            d.ks, d.trials, d.attention, d.repeat_fraction
        ));
        t.push_str(&format!(
            "[[blocks]]\nname = \"ranking\"\ndesign = \"rank\"\nm = {}\nmode = \"{}\"\ntrials = {}\n",
            d.m,
            if d.order { "order" } else { "pick" },
            d.rank_trials
        ));
        t
    }

    fn spread<K: Ord>(counts: &BTreeMap<K, usize>) -> usize {
        counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn any_seed_and_participant_give_a_balanced_resumable_list(d in design(), who in "[a-zA-Z0-9_-]{1,40}") {
            let text = study_text(&d);
            let (s, diags) = parse_study(std::path::Path::new("/nonexistent/studies/prop.toml"), &text);
            prop_assert!(!diags.has_errors(), "{text}\n{:#?}", diags.items);
            let s = s.unwrap();
            let list = plan(&s, &who);
            prop_assert_eq!(&list, &plan(&s, &who), "the same participant gets the same list");
            prop_assert_eq!(list.len() as u32, s.trials_per_participant());
            // Counts start at zero for every k, prompt and slot position, so that one never
            // drawn counts against the balance.
            let mut by_k: BTreeMap<u32, usize> = d.ks.iter().map(|&k| (k, 0)).collect();
            let mut prompts: BTreeMap<String, usize> = (0..d.prompts).map(|i| (format!("q{i}"), 0)).collect();
            let mut b_pos: BTreeMap<u32, BTreeMap<usize, usize>> =
                d.ks.iter().map(|&k| (k, (0..=k as usize).map(|p| (p, 0)).collect())).collect();
            for (pos, t) in list.iter().enumerate() {
                let pool = |p: &str| if p == "a" { d.pool_a } else { d.pool_b };
                prop_assert!(t.slots.iter().all(|sl| sl.sample < pool(&sl.policy)), "samples inside their pools");
                match t.kind {
                    TrialKind::BestOfK => {
                        let k = t.k.unwrap();
                        *by_k.entry(k).or_insert(0) += 1;
                        *prompts.entry(t.prompt_id.clone()).or_insert(0) += 1;
                        let b = t.slots.iter().position(|sl| sl.role == SlotRole::B).unwrap();
                        *b_pos.entry(k).or_default().entry(b).or_insert(0) += 1;
                        let a: std::collections::HashSet<u32> =
                            t.slots.iter().filter(|sl| sl.role == SlotRole::A).map(|sl| sl.sample).collect();
                        prop_assert_eq!(a.len(), k as usize, "A's samples are distinct");
                    }
                    TrialKind::Repeat => prop_assert!(t.repeat_of.unwrap() + 3 <= pos),
                    TrialKind::Attention => prop_assert!(pos > 0 || list.len() == 1),
                    TrialKind::Rank => prop_assert_eq!(t.slots.len() as u32, d.m),
                }
            }
            // Each k, each prompt and (per k) each position of B's slot recur in rotation.
            prop_assert!(spread(&by_k) <= 1, "k values: {:?}", by_k);
            prop_assert!(spread(&prompts) <= 1, "prompts: {:?}", prompts);
            for (k, counts) in &b_pos {
                prop_assert!(spread(counts) <= 1, "B's slot for k = {}: {:?}", k, counts);
            }
            // Stored at enrolment and read back for resuming, the list is the same.
            let mut store = Store::open_in_memory().unwrap();
            store.record_study(&s).unwrap();
            store.enrol(&who, &list).unwrap();
            let stored: Vec<PlannedTrial> = store.trials(&who).unwrap().into_iter().map(|t| t.plan).collect();
            prop_assert_eq!(stored, list);
        }
    }
}

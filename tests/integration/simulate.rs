//! Simulated participants through the real scheduler, store and analysis.

use crate::common;

use std::path::Path;

use ualign_core::pools::import::import_candidates;
use ualign_core::simulate::{Population, simulate};
use ualign_core::store::Store;
use ualign_core::study;

fn example_store(dir: &Path) -> (ualign_core::study::Study, Store) {
    store_with_examples_pools(dir, &Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/example.toml"))
}

/// The study at `path` (the example's policies) in a database in `dir`, with the
/// example's pools imported.
fn store_with_examples_pools(dir: &Path, path: &Path) -> (ualign_core::study::Study, Store) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (s, _) = study::load(path).unwrap();
    let (mut store, _) = Store::open_for_study(&dir.join("e.sqlite"), &s).unwrap();
    import_candidates(&mut store, &s, "sampled", &repo.join("studies/example/sampled.jsonl"), false).unwrap();
    import_candidates(&mut store, &s, "greedy", &repo.join("studies/example/greedy.jsonl"), false).unwrap();
    (s, store)
}

#[test]
fn indifferent_participants_give_k_over_k_plus_one() {
    // With equal Plackett–Luce worths the favourite among k + 1 distinct texts is uniform,
    // so A's k candidates win with probability exactly k/(k+1).
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    let n = simulate(&s, &mut store, 600, &Population::PlackettLuce(0.0), 11).unwrap();
    assert_eq!(n, 600 * s.trials_per_participant() as usize);
    let rows = ualign_core::analysis::report::fk_rows(&s, &store, 500).unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let se = (r.bound * (1.0 - r.bound) / r.n as f64).sqrt();
        assert!((r.rate - r.bound).abs() < 4.0 * se, "k = {}: {} vs {}", r.k, r.rate, r.bound);
        assert_eq!(r.participants, 600);
    }
}

#[test]
fn identical_deterministic_participants_answer_repeats_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    simulate(&s, &mut store, 20, &Population::Mallows { phi: 0.0, centres: 1 }, 3).unwrap();
    // Every repeat shows the same candidates as its original: the same text must be chosen.
    let c = common::sql(store.path());
    let mut st = c
        .prepare(
            "SELECT o.candidate_ids, oa.choice, r.candidate_ids, ra.choice FROM trials r
             JOIN trials o ON o.id = r.repeat_of JOIN answers oa ON oa.trial_id = o.id JOIN answers ra ON ra.trial_id = r.id",
        )
        .unwrap();
    let rows: Vec<(String, i64, String, i64)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert!(!rows.is_empty());
    for (o_ids, o_choice, r_ids, r_choice) in rows {
        let o: Vec<i64> = serde_json::from_str(&o_ids).unwrap();
        let r: Vec<i64> = serde_json::from_str(&r_ids).unwrap();
        let text = |id: i64| store.candidate_by_id(id).unwrap().unwrap().text;
        assert_eq!(text(o[o_choice as usize]), text(r[r_choice as usize]));
    }
    // Attention checks are always passed by simulated participants.
    let failed: i64 = common::sql(store.path())
        .query_row(
            "SELECT COUNT(*) FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.kind = 'attention'
             AND json_extract(t.slots, '$[' || a.choice || '].role') != 'gold'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(failed, 0);
}

#[test]
fn population_specs_parse_or_say_what_is_wrong() {
    assert_eq!("cyclic".parse::<Population>().unwrap(), Population::Cyclic);
    assert_eq!("condorcet:0.7".parse::<Population>().unwrap(), Population::Condorcet(0.7));
    assert_eq!("pl:2".parse::<Population>().unwrap(), Population::PlackettLuce(2.0));
    assert_eq!("mallows:0.3:4".parse::<Population>().unwrap(), Population::Mallows { phi: 0.3, centres: 4 });
    for bad in ["condorcet:2", "mallows:0.5", "mallows:0.5:0", "pl:x", "zipf"] {
        assert!(bad.parse::<Population>().is_err(), "{bad}");
    }
}

#[test]
fn rankings_follow_the_stored_orders() {
    let dir = tempfile::tempdir().unwrap();
    let (s, mut store) = example_store(dir.path());
    simulate(&s, &mut store, 30, &Population::Mallows { phi: 0.3, centres: 2 }, 5).unwrap();
    use ualign_core::analysis::ranking::{rank_observations, rankings_of};
    let rankings = rankings_of(&rank_observations(&store.rank_answers().unwrap()));
    assert!(!rankings.is_empty());
    for r in &rankings {
        let (ids, ordering): (String, String) = common::sql(store.path())
            .query_row(
                "SELECT t.candidate_ids, a.ordering FROM trials t JOIN answers a ON a.trial_id = t.id
                 WHERE t.kind = 'rank' AND t.participant_id = ?1 AND t.prompt_id = ?2 ORDER BY t.position LIMIT 1",
                [&r.participant, &r.prompt],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        let ids: Vec<i64> = serde_json::from_str(&ids).unwrap();
        let ordering: Vec<usize> = serde_json::from_str(&ordering).unwrap();
        let stored: Vec<i64> = ordering.iter().map(|&s| ids[s]).collect();
        match r.method {
            "order" => assert_eq!(r.order, stored),
            // Several orders combined: every candidate ranked in any of them is in the ranking.
            "pl_order" => assert!(stored.iter().all(|id| r.order.contains(id)), "{r:?}"),
            other => panic!("order blocks give no {other} rankings"),
        }
    }
}

#[test]
fn copies_of_one_text_are_chosen_by_chance_so_simulated_data_shows_no_slot_bias() {
    // The example's greedy pools are four copies of one text, shown side by side in its
    // best_of_k and pick trials: a simulated participant who always took the first copy
    // would fill the data with the first slot's bias that `stats` looks for.
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Its ranking block as picks of 3 (an order's first slot is drawn from the same rule,
    // but picks show it in three times as many answers).
    let text = std::fs::read_to_string(repo.join("studies/example.toml")).unwrap();
    let text = text.replace("mode = \"order\"", "mode = \"pick\"").replace("example/prompts", "prompts");
    std::fs::write(dir.path().join("picks.toml"), text).unwrap();
    std::fs::copy(repo.join("studies/example/prompts.jsonl"), dir.path().join("prompts.jsonl")).unwrap();
    let (s, mut store) = store_with_examples_pools(dir.path(), &dir.path().join("picks.toml"));
    let pop: Population = "plmix:2:2".parse().unwrap();
    simulate(&s, &mut store, 300, &pop, 3).unwrap();
    let quality = ualign_core::analysis::quality::compute(&store.quality_counts(1500).unwrap(), 1500);
    assert_eq!(quality.position_bias.len(), 3, "{:?}", quality.position_bias);
    for b in &quality.position_bias {
        assert!(b.p_value > 0.001, "{} slots: {:?}, p = {}", b.slots, b.counts, b.p_value);
    }
}

/// The example study's files in `dir`, its database `e.sqlite` made, the pools imported
/// where `pools` says.
fn example_files(dir: &Path, pools: bool) {
    let repo = common::repo("studies");
    std::fs::create_dir_all(dir.join("example")).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(repo.join("example").join(f), dir.join("example").join(f)).unwrap();
    }
    std::fs::copy(repo.join("example.toml"), dir.join("example.toml")).unwrap();
    let (ok, _, err) = common::ualign(dir, &["init", "example.toml", "--db", "e.sqlite"]);
    assert!(ok, "{err}");
    if pools {
        for p in ["sampled", "greedy"] {
            let file = format!("example/{p}.jsonl");
            let (ok, _, err) = common::ualign(
                dir,
                &["import", "example.toml", "--db", "e.sqlite", "--policy", p, "--candidates", &file],
            );
            assert!(ok, "{err}");
        }
    }
}

#[test]
fn power_gives_participants_per_row_from_a_population_or_a_pilot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_files(d, true);
    let power = |extra: &[&str]| {
        let (ok, out, err) =
            common::ualign(d, &[&["power", "example.toml", "--db", "e.sqlite", "--json"][..], extra].concat());
        assert!(ok, "{extra:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    // Indifferent participants: f(k) = k/(k+1) in the bank; ±0.05 needs N ≈ V (1.96/0.05)².
    let v = power(&["--population", "pl:0", "--half-width", "0.05", "--bank", "2000"]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    for r in rows {
        let k = r["k"].as_f64().unwrap();
        assert!((r["rate"].as_f64().unwrap() - k / (k + 1.0)).abs() < 0.03, "{r}");
        let (n, approx) = (r["participants"].as_u64().unwrap(), r["approximate"].as_u64().unwrap());
        assert!(n >= 20 && n as f64 >= 0.9 * approx as f64 && r["achieved"].as_f64().unwrap() >= 0.8, "{r}");
    }
    // Every row at once needs at least the largest row's N, and reaches the target jointly.
    let largest = rows.iter().map(|r| r["participants"].as_u64().unwrap()).max().unwrap();
    assert!(v["participants"].as_u64().unwrap() >= largest && v["achieved"].as_f64().unwrap() >= 0.8, "{v}");
    // A narrower interval needs more participants.
    let narrow = power(&["--population", "pl:0", "--half-width", "0.025", "--bank", "2000"]);
    assert!(narrow["participants"].as_u64().unwrap() > 3 * v["participants"].as_u64().unwrap(), "{narrow}");
    // f(1) = 1/2 cannot be shown above 1/2: no N, and the row says why.
    let half = power(&["--population", "pl:0", "--exceed-half", "--bank", "500", "--max-participants", "2000"]);
    let k1 = &half["rows"][0];
    assert!(k1["participants"].is_null() && half["participants"].is_null(), "{half}");
    // A pilot: its fitted model is the population.
    let (ok, _, err) = common::ualign(
        d,
        &["simulate", "example.toml", "--db", "e.sqlite", "--participants", "40", "--population", "plmix:2:3"],
    );
    assert!(ok, "{err}");
    let (ok, out, err) =
        common::ualign(d, &["power", "example.toml", "--pilot", "e.sqlite", "--half-width", "0.05", "--bank", "1000"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("from pilot e.sqlite (40 participants") && out.contains("reach the target at every k"),
        "{out}"
    );
}

#[test]
fn power_refuses_what_it_cannot_plan_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    example_files(d, false);
    let fails = |args: &[&str], want: &str| {
        let (ok, out, err) = common::ualign(d, &[&["power", "example.toml", "--db", "e.sqlite"][..], args].concat());
        assert!(!ok && err.contains(want), "{args:?}: {out}{err}");
    };
    // No pools yet.
    fails(&["--population", "pl:1", "--exceed-half"], "generate or import the study's pools first");
    // A pilot without answers.
    fails(&["--pilot", "e.sqlite", "--exceed-half"], "no answers to fit a population to");
    // Neither or both sources, neither or both targets, values out of range.
    fails(&["--exceed-half"], "--population");
    fails(&["--population", "pl:1", "--pilot", "e.sqlite", "--exceed-half"], "cannot be used with");
    fails(&["--population", "pl:1"], "--half-width");
    fails(&["--population", "pl:1", "--half-width", "0.7"], "below 0.5");
    fails(&["--population", "pl:1", "--exceed-half", "--power", "1"], "below 1");
    fails(&["--population", "cyclic", "--exceed-half", "--length-bias", "1"], "needs a Plackett–Luce population");
}

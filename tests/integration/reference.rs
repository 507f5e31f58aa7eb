//! Reference outputs recorded before the restructure along the data flow: a stored study
//! must keep its trial lists, its samples' seeds and its analysis byte for byte. The
//! fixtures in `tests/fixtures/reference/` were written by this file with
//! `UALIGN_WRITE_REFERENCE=1 cargo test --test reference` at the commit before the
//! restructure; regenerate them only for a change that means to alter these outputs, and
//! say so in its commit.

use crate::common;

use std::path::Path;

use common::{repo, ualign};
use ualign_core::study;

fn fixture(name: &str) -> std::path::PathBuf {
    repo("tests/fixtures/reference").join(name)
}

/// Compares `got` with the fixture, or writes it when asked to.
fn same_as_recorded(name: &str, got: &str) {
    let path = fixture(name);
    if std::env::var_os("UALIGN_WRITE_REFERENCE").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    if got != want {
        let line = got.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from the recorded one at line {}:\n  recorded: {}\n  now:      {}",
            line + 1,
            want.lines().nth(line).unwrap_or(""),
            got.lines().nth(line).unwrap_or("")
        );
    }
}

/// As [`same_as_recorded`], comparing the parsed JSON (both sides parsed alike, so a
/// number printed the same way is the same number).
fn same_json_as_recorded(name: &str, now: serde_json::Value) {
    if std::env::var_os("UALIGN_WRITE_REFERENCE").is_some() {
        return same_as_recorded(name, &(serde_json::to_string_pretty(&now).unwrap() + "\n"));
    }
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap();
    if want != now {
        let (w, n) = (serde_json::to_string_pretty(&want).unwrap(), serde_json::to_string_pretty(&now).unwrap());
        let line = n.lines().zip(w.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{name} differs from the recorded one at line {}:\n  recorded: {}\n  now:      {}",
            line + 1,
            w.lines().nth(line).unwrap_or(""),
            n.lines().nth(line).unwrap_or("")
        );
    }
}

/// `stats --json` without what the latent-class model added: its section, its rows and
/// rankings, and the `method` every equilibrium row now carries.
fn without_the_model(json: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
    let o = v.as_object_mut().unwrap();
    o.shift_remove("population_model");
    if let Some(rows) = o.get_mut("equilibria").and_then(|e| e.as_array_mut()) {
        rows.retain(|r| r["method"] == "orders");
        rows.iter_mut().for_each(|r| {
            r.as_object_mut().unwrap().shift_remove("method");
        });
    }
    v
}

/// The report in the shape it was recorded in, before per-person detail moved out of it to
/// `--per-participant`: the rankings and the quality checks' per-participant lists are
/// put back from that file, so the recording holds every one of them to what it was.
fn as_recorded(mut v: serde_json::Value, per_participant: &str) -> serde_json::Value {
    let (mut rankings, mut too_fast, mut attention) = (Vec::new(), Vec::new(), Vec::new());
    for line in per_participant.lines() {
        let mut l: serde_json::Value = serde_json::from_str(line).unwrap();
        match l["kind"].as_str().unwrap() {
            "ranking" if l["method"] != "pl_mixture" => {
                l.as_object_mut().unwrap().shift_remove("kind");
                rankings.push(l);
            }
            "ranking" => {}
            "too_fast" => too_fast.push(serde_json::json!([l["participant"], l["too_fast"], l["answers"]])),
            "attention" => attention.push(serde_json::json!([l["participant"], l["failed"], l["checks"]])),
            other => panic!("unknown line kind {other}"),
        }
    }
    let given: u64 = v["rankings"]["by_method"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(m, _)| *m != "pl_mixture")
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(given as usize, rankings.len(), "the report's count of rankings is the file's");
    assert_eq!(v["quality"]["too_fast"]["participants"].as_u64().unwrap() as usize, too_fast.len());
    assert_eq!(v["quality"]["attention"]["participants"].as_u64().unwrap() as usize, attention.len());
    let o = v.as_object_mut().unwrap();
    o["rankings"] = rankings.into();
    o["quality"]["too_fast"] = too_fast.into();
    o["quality"]["attention"] = attention.into();
    v
}

/// The example study with ordering trials over the whole pool (so the equilibria are
/// certified), 60 simulated participants from two populations.
fn reference_study(dir: &Path) {
    let text = std::fs::read_to_string(repo("studies/example.toml"))
        .unwrap()
        .replace("\nm = 3\n", "\nm = 8\n")
        .replace("name = \"example\"", "name = \"full\"");
    std::fs::create_dir_all(dir.join("example")).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(repo("studies/example").join(f), dir.join("example").join(f)).unwrap();
    }
    std::fs::write(dir.join("full.toml"), text).unwrap();
    let (ok, _, err) = ualign(dir, &["init", "full.toml", "--db", "full.sqlite"]);
    assert!(ok, "{err}");
    for policy in ["sampled", "greedy"] {
        let file = format!("example/{policy}.jsonl");
        let (ok, _, err) =
            ualign(dir, &["import", "full.toml", "--db", "full.sqlite", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    for (n, population, seed) in [("40", "mallows:0.4:2", "5"), ("20", "condorcet:0.6", "6")] {
        let args = [
            "simulate",
            "full.toml",
            "--db",
            "full.sqlite",
            "--participants",
            n,
            "--population",
            population,
            "--seed",
            seed,
        ];
        let (ok, _, err) = ualign(dir, &args);
        assert!(ok, "{err}");
    }
}

#[test]
fn stats_on_the_reference_study_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    reference_study(dir.path());
    // The population model came later: its parts are left out of the recorded JSON, so
    // everything that was there is held to what it was; the text is recorded with them.
    let model = ["--model-replicates", "2", "--max-classes", "2"];
    let people = ["--per-participant", "people.jsonl"];
    let (ok, json, err) =
        ualign(dir.path(), &[&["stats", "full.toml", "--db", "full.sqlite", "--json"][..], &model, &people].concat());
    assert!(ok, "{err}");
    let lines = std::fs::read_to_string(dir.path().join("people.jsonl")).unwrap();
    same_json_as_recorded("stats.json", as_recorded(without_the_model(&json), &lines));
    let (ok, text, err) = ualign(dir.path(), &[&["stats", "full.toml", "--db", "full.sqlite"][..], &model].concat());
    assert!(ok, "{err}");
    same_as_recorded("stats.txt", &text);
}

#[test]
fn trial_lists_and_sample_seeds_are_unchanged() {
    let mut out = serde_json::Map::new();
    for file in ["studies/example.toml", "tests/fixtures/studies/fortune-demo.toml"] {
        let (s, _) = study::load(&repo(file)).unwrap();
        for who in ["p-abcdefghjk", "sim-5-3", "e2e01", "5f3e2a1b0c9d8e7f6a5b4c3d"] {
            let plan = ualign_core::schedule::plan(&s, who);
            out.insert(format!("{} {who}", s.name), serde_json::to_value(plan).unwrap());
        }
        let mut seeds = Vec::new();
        for prompt in s.prompts.iter().take(3) {
            for policy in &s.policies {
                for index in [0, 1, 7] {
                    seeds.push(ualign_core::seed::sample_seed(s.seed, &prompt.id, &policy.name, index).to_string());
                }
            }
        }
        out.insert(format!("{} sample seeds", s.name), serde_json::json!(seeds));
    }
    same_as_recorded("trial_lists.json", &serde_json::to_string_pretty(&out).unwrap());
}

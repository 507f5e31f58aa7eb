//! The latent-class Plackett–Luce model on answers stored by the real scheduler and
//! store: `simulate`'s `plmix` population (whose truth `--latent-out` writes down) is
//! recovered from pick-of-3 and best_of_k answers.

use ualign_core::analysis::mixture::{self, Evidence, FitOptions};
use ualign_core::simulate::{Population, class_of};
use ualign_core::store::Store;

use crate::common::{example_copy_with, ualign};

/// The example study with many pick-of-3 trials per participant (every prompt several
/// times), answering as fast as one likes, pools imported.
fn pick_study() -> tempfile::TempDir {
    let dir = example_copy_with(|s| {
        s.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0")
            .replace("m = 3\nmode = \"order\"\ntrials = 3", "m = 3\nmode = \"pick\"\ntrials = 24")
    });
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, _, err) =
            ualign(dir.path(), &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    dir
}

/// `simulate` of 12 `plmix:3:2` participants (seed 4), the truth to `latent`; its output.
fn twelve_plmix_participants(dir: &std::path::Path, latent: &std::path::Path) -> String {
    let args = ["simulate", "studies/example.toml", "--participants", "12", "--population", "plmix:3:2", "--seed", "4"];
    let (ok, out, err) = ualign(dir, &[&args[..], &["--latent-out", latent.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    out
}

#[test]
fn simulate_writes_the_latent_truth_of_a_plmix_population() {
    let dir = pick_study();
    let latent = dir.path().join("latent.jsonl");
    let out = twelve_plmix_participants(dir.path(), &latent);
    assert!(out.contains("latent orders written"), "{out}");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&latent).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 12 * 6, "a line per participant and prompt");
    let db = dir.path().join("db/example.sqlite");
    let store = Store::open_existing(&db).unwrap();
    let candidates = store.candidate_records().unwrap();
    for l in &lines {
        let prompt = l["prompt"].as_str().unwrap();
        let mut order: Vec<i64> = l["order"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        // The prompt's distinct texts, each by its smallest id.
        let mut reps: Vec<i64> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut of_prompt: Vec<_> = candidates.iter().filter(|c| c.prompt_id == prompt).collect();
        of_prompt.sort_by_key(|c| c.id);
        for c in of_prompt {
            if !seen.contains(&c.text.as_str()) {
                seen.push(&c.text);
                reps.push(c.id);
            }
        }
        order.sort_unstable();
        assert_eq!(order, reps, "{l}");
    }
    // The same population again: the same truth (it is a function of the seed).
    let again = dir.path().join("again.jsonl");
    twelve_plmix_participants(dir.path(), &again);
    assert_eq!(std::fs::read_to_string(&latent).unwrap(), std::fs::read_to_string(&again).unwrap());
}

#[test]
fn the_mixture_recovers_a_two_class_population_from_stored_picks() {
    let dir = pick_study();
    let (ok, _, err) = ualign(
        dir.path(),
        &["simulate", "studies/example.toml", "--participants", "120", "--population", "plmix:2:4", "--seed", "1"],
    );
    assert!(ok, "{err}");
    let store = Store::open_existing(&dir.path().join("db/example.sqlite")).unwrap();
    let e = Evidence::from_records(
        &store.rank_answers().unwrap(),
        &store.best_of_k_answers().unwrap(),
        &store.all_candidates().unwrap(),
    );
    assert_eq!(e.people.len(), 120);
    assert_eq!(e.prompts.len(), 6);
    let opts = FitOptions { restarts: 4, max_iter: 500, tol: 1e-8, seed: 2, ..Default::default() };
    let (fits, best) = mixture::select(&e, 3, &opts);
    assert_eq!(fits[best].classes, 2, "BIC {:?}", fits.iter().map(|f| f.bic).collect::<Vec<_>>());
    let pop: Population = "plmix:2:4".parse().unwrap();
    let Population::PlMix { weights, .. } = pop else { unreachable!() };
    let truth: Vec<usize> =
        e.people.iter().map(|id| class_of(&weights, id.rsplit('-').next().unwrap().parse().unwrap(), 120)).collect();
    let f = &fits[best];
    let assigned: Vec<usize> = f.posterior.iter().map(|p| usize::from(p[1] > p[0])).collect();
    let same = assigned.iter().zip(&truth).filter(|(a, t)| a == t).count();
    let agree = same.max(truth.len() - same) as f64 / truth.len() as f64;
    assert!(agree > 0.9, "{agree}");
}

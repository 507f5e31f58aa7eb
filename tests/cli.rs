//! The real binary on the example study: validate, init, import, export.

use std::path::Path;
use std::process::Command;

fn ualign(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ualign")).current_dir(dir).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A copy of the example study in a temp dir, so its db/ is private.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies");
    std::fs::create_dir_all(dir.path().join("studies/example")).unwrap();
    std::fs::copy(src.join("example.toml"), dir.path().join("studies/example.toml")).unwrap();
    for f in ["prompts.jsonl", "sampled.jsonl", "greedy.jsonl"] {
        std::fs::copy(src.join("example").join(f), dir.path().join("studies/example").join(f)).unwrap();
    }
    dir
}

#[test]
fn validate_init_import_export_on_the_example_study() {
    let dir = example_copy();
    let d = dir.path();
    let (ok, out, err) = ualign(d, &["validate", "studies/example.toml"]);
    assert!(ok, "{err}");
    assert!(out.contains("valid study `example`") && out.contains("trials per participant: 11"), "{out}");

    let (ok, out, err) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok, "{err}");
    assert!(out.contains("created db/example.sqlite"), "{out}");
    let (ok, out, _) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok && out.contains("opened db/example.sqlite"), "{out}");

    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, out, err) = ualign(d, &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
        assert!(out.contains("imported 24 candidates for 6 prompts"), "{out}");
    }
    let (ok, out, err) = ualign(d, &["export", "studies/example.toml", "--format", "jsonl", "--out", "out"]);
    assert!(ok, "{err}");
    assert!(out.contains("candidates.jsonl (48 rows)"), "{out}");
    assert_eq!(std::fs::read_to_string(d.join("out/candidates.jsonl")).unwrap().lines().count(), 48);
}

#[test]
fn a_bad_study_exits_non_zero_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "name = \"Bad\"\nseed = -1\nsurprise = 1\n").unwrap();
    let (ok, _, err) = ualign(dir.path(), &["validate", "bad.toml"]);
    assert!(!ok);
    for want in
        ["bad.toml:1:8: name:", "bad.toml:2:8: seed:", "bad.toml:3:1: surprise: unknown key", "policies:", "blocks:"]
    {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    let (ok, _, err) = ualign(dir.path(), &["init", "bad.toml"]);
    assert!(!ok && err.contains("problems found"), "{err}");
    assert!(!dir.path().join("db").exists(), "no database is made for an invalid study");
}

#[test]
fn export_of_a_missing_database_says_to_init() {
    let dir = example_copy();
    let (ok, _, err) = ualign(dir.path(), &["export", "studies/example.toml", "--out", "o"]);
    assert!(!ok);
    assert!(err.contains("run `ualign init STUDY` first"), "{err}");
}

/// The settings line of `sample --json` on a model folder.
fn sample_settings(model: &Path, extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let mut args =
        vec!["sample", model.to_str().unwrap(), "--prompt", "love", "-k", "2", "--max-new-tokens", "4", "--json"];
    args.extend_from_slice(extra);
    let (ok, out, err) = ualign(dir.path(), &args);
    assert!(ok, "{err}");
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    last["timing"]["settings"].clone()
}

#[test]
fn sample_takes_its_defaults_as_transformers_reads_generation_config() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    // The default model's own file: temperature 1, min-p 0.1, top-k off.
    let s = sample_settings(&shipped, &[]);
    assert_eq!((s["temperature"].as_f64(), s["top_k"].as_u64(), s["top_p"].as_f64()), (Some(1.0), Some(0), Some(1.0)));
    assert!((s["min_p"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{s}");
    // A copy whose generation_config.json leaves top_k and min_p out: transformers' top-k 50,
    // no min-p; flags still win over the file.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.onnx"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("generation_config.json"), r#"{"do_sample": true, "top_p": 0.9}"#).unwrap();
    let s = sample_settings(dir.path(), &[]);
    assert_eq!((s["top_k"].as_u64(), s["min_p"].as_f64()), (Some(50), Some(0.0)), "{s}");
    assert!((s["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6, "{s}");
    let s = sample_settings(dir.path(), &["--top-k", "0", "--min-p", "0.05"]);
    assert_eq!(s["top_k"].as_u64(), Some(0), "{s}");
    assert!((s["min_p"].as_f64().unwrap() - 0.05).abs() < 1e-6, "{s}");
}

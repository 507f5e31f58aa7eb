//! The real binary on the example study: validate, init, import, export.

use crate::common;

use std::path::Path;

use common::{example_copy, ualign};

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
    assert!(err.contains("holds no study (there is no such file)") && err.contains("`ualign init STUDY"), "{err}");
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
fn sample_takes_a_studys_defaults_or_as_transformers_reads_generation_config() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    // Left out, a setting is what a study's policy gets when it leaves it out, whatever
    // the folder's file says (min-p 0.1 there): what is tried is what a study samples.
    let d = ualign_core::study::Decoding::default();
    let s = sample_settings(&shipped, &[]);
    assert_eq!(
        (s["temperature"].as_f64(), s["top_k"].as_u64(), s["top_p"].as_f64(), s["min_p"].as_f64()),
        (Some(f64::from(d.sampling.temperature)), Some(0), Some(1.0), Some(0.0)),
        "{s}"
    );
    assert_eq!(d.sampling.top_k, 0);
    // With --generation-config, the model's own file: temperature 1, min-p 0.1, top-k off.
    let s = sample_settings(&shipped, &["--generation-config"]);
    assert_eq!((s["temperature"].as_f64(), s["top_k"].as_u64(), s["top_p"].as_f64()), (Some(1.0), Some(0), Some(1.0)));
    assert!((s["min_p"].as_f64().unwrap() - 0.1).abs() < 1e-6, "{s}");
    // A copy whose generation_config.json leaves top_k and min_p out: transformers' top-k 50,
    // no min-p; flags still win over the file.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.onnx"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("generation_config.json"), r#"{"do_sample": true, "top_p": 0.9}"#).unwrap();
    let s = sample_settings(dir.path(), &["--generation-config"]);
    assert_eq!((s["top_k"].as_u64(), s["min_p"].as_f64()), (Some(50), Some(0.0)), "{s}");
    assert!((s["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6, "{s}");
    let s = sample_settings(dir.path(), &["--generation-config", "--top-k", "0", "--min-p", "0.05"]);
    assert_eq!(s["top_k"].as_u64(), Some(0), "{s}");
    assert!((s["min_p"].as_f64().unwrap() - 0.05).abs() < 1e-6, "{s}");
    let s = sample_settings(dir.path(), &[]);
    assert_eq!((s["top_k"].as_u64(), s["top_p"].as_f64()), (Some(0), Some(1.0)), "{s}");
}

#[test]
fn sample_makes_a_stored_candidate_again_and_says_whether_it_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::repo("assets/models/fortune-llama");
    let study = format!(
        "name = \"again\"\nseed = 11\n[[prompts]]\nid = \"love\"\ntext = \"love\"\n[[prompts]]\nid = \"work\"\ntext = \"work\"\n[[policies]]\nname = \"hot\"\nsource = \"model\"\nmodel = \"{}\"\npool_size = 3\n[policies.decoding]\ntemperature = 1.2\ntop_p = 0.95\nmax_new_tokens = 12\n[[blocks]]\nname = \"r\"\ndesign = \"rank\"\nm = 3\ntrials = 2\n",
        model.display()
    );
    std::fs::write(d.join("again.toml"), study).unwrap();
    let again = |index: &str| {
        ualign(
            d,
            &["sample", "--study", "again.toml", "--policy", "hot", "--prompt", "work", "--index", index, "--json"],
        )
    };
    // Before generate: what it will be.
    let (ok, out, err) = again("2");
    assert!(ok && err.contains("not stored yet"), "{err}");
    let before: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let (ok, _, err) = ualign(d, &["generate", "again.toml", "--threads", "1"]);
    assert!(ok, "{err}");
    let conn = rusqlite::Connection::open(d.join("db/again.sqlite")).unwrap();
    let stored = |i: u32| -> (i64, String) {
        conn.query_row(
            "SELECT id, text FROM candidates WHERE policy = 'hot' AND prompt_id = 'work' AND sample_index = ?1",
            [i],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let texts: Vec<String> = (0..3).map(|i| stored(i).1).collect();
    assert!(texts[0] != texts[1] || texts[1] != texts[2], "sampled at 1.2: {texts:?}");
    for i in 0..3u32 {
        let (ok, out, err) = again(&i.to_string());
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["text"].as_str(), Some(texts[i as usize].as_str()), "sample {i}");
        assert_eq!((v["same_as_stored"].as_bool(), v["stored_candidate"].as_i64()), (Some(true), Some(stored(i).0)));
        assert!(err.contains("the same text as stored candidate"), "{err}");
    }
    assert_eq!(before["text"].as_str(), Some(texts[2].as_str()), "the text made before generate is the one stored");
    // A stored text that is not what the model makes is called out, with a failing exit.
    conn.execute(
        "UPDATE candidates SET text = 'edited' WHERE policy = 'hot' AND prompt_id = 'work' AND sample_index = 1",
        [],
    )
    .unwrap();
    let (ok, _, err) = again("1");
    assert!(!ok && err.contains("DIFFERS from stored candidate") && err.contains("the model is the same"), "{err}");
    // Mistakes are named.
    refused(
        d,
        &["sample", "--study", "again.toml", "--policy", "hott", "--prompt", "work", "--index", "0"],
        &["did you mean `hot`?"],
    );
    refused(
        d,
        &["sample", "--study", "again.toml", "--policy", "hot", "--prompt", "wrk", "--index", "0"],
        &["did you mean `work`?"],
    );
    refused(
        d,
        &["sample", "--study", "again.toml", "--policy", "hot", "--prompt", "work", "--index", "3"],
        &["samples 0 to 2"],
    );
    refused(
        d,
        &["sample", "--study", "again.toml", "--policy", "hot", "--prompt", "work", "--index", "0", "--top-k", "5"],
        &["cannot be used with"],
    );
}

/// Asserts a failed command whose message holds every one of `want`, once.
fn refused(dir: &Path, args: &[&str], want: &[&str]) -> String {
    let (ok, out, err) = ualign(dir, args);
    assert!(!ok, "`ualign {}` succeeded:\n{out}", args.join(" "));
    for w in want {
        assert!(err.contains(w), "`ualign {}`: missing {w:?} in:\n{err}", args.join(" "));
    }
    assert_eq!(err.matches("error:").count(), 1, "one message:\n{err}");
    err
}

#[test]
fn bad_flags_say_what_is_wrong_with_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo("assets/models/fortune-llama");
    let m = model.to_str().unwrap();
    let sample = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["sample".to_string(), m.to_string(), "--prompt".into(), "love".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    for (extra, want) in [
        (vec!["-k", "-1"], "-1 is negative; use a whole number from 1 to 10000"),
        (vec!["-k", "100000000"], "100000000 is too large"),
        (vec!["--threads", "100000"], "100000 is too large; use a whole number from 1 to 256"),
        (vec!["--temperature", "-1"], "-1 is out of range"),
        (vec!["--temperature", "inf"], "inf is out of range"),
        (vec!["--top-p", "1.5"], "top_p must be in (0, 1]"),
        (vec!["--min-p", "-0.1"], "min_p must be in [0, 1]"),
        (vec!["--repetition-penalty", "0"], "repetition_penalty must be positive"),
        (vec!["--max-new-tokens", "0"], "0 is too small; use a whole number from 1 to 8192"),
        (vec!["--seed", "-3"], "-3 is negative"),
    ] {
        let args = sample(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = refused(dir.path(), &args, &[want]);
        assert!(!err.contains("-- -"), "no `-- -1` tip: {err}");
    }
    let copy = example_copy();
    refused(
        copy.path(),
        &["simulate", "studies/example.toml", "--participants", "-3", "--population", "cyclic"],
        &["-3 is negative"],
    );
    refused(copy.path(), &["stats", "studies/example.toml", "--k-max", "99999999999999999999999"], &["too large"]);
    assert!(!copy.path().join("db").exists(), "nothing was created");
}

#[test]
fn a_model_folders_bad_generation_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = common::repo("assets/models/fortune-llama");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.onnx"] {
        std::fs::copy(shipped.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("generation_config.json"), r#"{"do_sample": true, "temperature": -2}"#).unwrap();
    let m = dir.path().to_str().unwrap();
    let err = refused(
        dir.path(),
        &["sample", m, "--prompt", "x", "--generation-config"],
        &["generation_config.json", "temperature = -2", "--temperature"],
    );
    assert!(err.contains("out of range"), "{err}");
}

#[test]
fn a_database_in_a_missing_folder_or_a_broken_model_leaves_nothing_behind() {
    let dir = example_copy();
    let d = dir.path();
    refused(
        d,
        &["init", "studies/example.toml", "--db", "nowhere/x.sqlite"],
        &["nowhere", "does not exist", "mkdir -p"],
    );
    assert!(!d.join("nowhere").exists());
    // A study whose model folder is missing: generate says so and makes no database.
    std::fs::write(
        d.join("studies/m.toml"),
        "name = \"m\"\n[[prompts]]\nid = \"p\"\ntext = \"t\"\n[[policies]]\nname = \"a\"\nsource = \"model\"\nmodel = \"../no-model\"\n[[blocks]]\nname = \"b\"\ndesign = \"rank\"\nm = 2\ntrials = 1\n",
    )
    .unwrap();
    refused(d, &["generate", "studies/m.toml"], &["policy `a`", "no-model: no such folder"]);
    refused(d, &["simulate", "studies/m.toml", "--participants", "1", "--population", "cyclic"], &["no such folder"]);
    refused(d, &["run", "studies/m.toml"], &["interactive terminal"]);
    // An import file with a bad line, into a new database: nothing is made either.
    std::fs::write(d.join("bad.jsonl"), "{\"prompt_id\": \"goldfish\", \"text\": \"x\", \"sample_index\": 9}\n")
        .unwrap();
    refused(
        d,
        &["import", "studies/example.toml", "--policy", "sampled", "--candidates", "bad.jsonl"],
        &["bad.jsonl:1: sample_index 9 is outside the pool of policy `sampled` (pool_size 4"],
    );
    std::fs::write(d.join("empty.jsonl"), "\n\n").unwrap();
    refused(
        d,
        &["import", "studies/example.toml", "--policy", "sampled", "--candidates", "empty.jsonl"],
        &["empty.jsonl holds no candidates"],
    );
    assert!(!d.join("db").exists(), "no empty database was left: {:?}", std::fs::read_dir(d.join("db")).ok());
}

/// A mistyped `--db`: every command but `init` refuses a file that is missing or holds no
/// study, names the one it was probably meant to be, and makes (or changes) nothing.
#[test]
fn a_mistyped_db_is_refused_by_every_command_but_init_and_nothing_is_made() {
    let dir = example_copy();
    let d = dir.path();
    std::fs::create_dir(d.join("db")).unwrap();
    let (ok, _, err) = ualign(d, &["init", "studies/example.toml", "--db", "db/weekend.sqlite"]);
    assert!(ok, "{err}");
    let mistyped = [
        vec!["invite", "studies/example.toml", "--count", "1"],
        vec!["generate", "studies/example.toml"],
        vec!["import", "studies/example.toml", "--policy", "sampled", "--candidates", "studies/example/sampled.jsonl"],
        vec!["simulate", "studies/example.toml", "--participants", "1", "--population", "cyclic"],
        vec!["serve", "studies/example.toml", "--ssh", "127.0.0.1:0"],
        vec!["stats", "studies/example.toml"],
        vec!["export", "studies/example.toml", "--format", "csv", "--out", "out"],
        vec!["check", "studies/example.toml"],
        vec!["dashboard", "studies/example.toml"],
    ];
    for args in &mistyped {
        let mut with_db = args.clone();
        with_db.extend(["--db", "db/weeknd.sqlite"]);
        let err = refused(d, &with_db, &["db/weeknd.sqlite"]);
        assert!(err.contains("holds no study"), "{}: {err}", args[0]);
        if !["stats", "export", "check", "dashboard"].contains(&args[0]) {
            assert!(err.contains("did you mean db/weekend.sqlite?"), "{}: {err}", args[0]);
        }
        assert!(!d.join("db/weeknd.sqlite").exists(), "{} made a database", args[0]);
    }
    // A file that holds no study (empty, or another program's SQLite database) is left
    // as it was.
    std::fs::write(d.join("db/empty.sqlite"), "").unwrap();
    let other = d.join("db/other.sqlite");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE notes (x TEXT);").unwrap();
    let before = std::fs::read(&other).unwrap();
    for db in ["db/empty.sqlite", "db/other.sqlite"] {
        refused(d, &["generate", "studies/example.toml", "--db", db], &["holds no study"]);
        refused(d, &["stats", "studies/example.toml", "--db", db], &["holds no study"]);
    }
    assert_eq!(std::fs::read(d.join("db/empty.sqlite")).unwrap().len(), 0);
    assert_eq!(std::fs::read(&other).unwrap(), before, "another program's database is not given ualign's tables");
    assert!(!d.join("out").exists());
}

#[test]
fn an_edited_study_file_is_told_apart_checked_and_restored() {
    let dir = example_copy();
    let d = dir.path();
    let file = d.join("studies/example.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let (ok, _, err) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok, "{err}");
    let (ok, out, _) = ualign(d, &["validate", "studies/example.toml"]);
    assert!(ok && out.contains("database:  db/example.sqlite holds this study\n"), "{out}");

    // A comment and a blank line: the same study, said so, and every command works.
    std::fs::write(&file, format!("# my pilot, run 2\n\n{original}")).unwrap();
    let (ok, out, _) = ualign(d, &["validate", "studies/example.toml"]);
    assert!(ok && out.contains("holds this study (the file differs from the stored text only in comments"), "{out}");
    let (ok, _, err) = ualign(
        d,
        &["import", "studies/example.toml", "--policy", "sampled", "--candidates", "studies/example/sampled.jsonl"],
    );
    assert!(ok && err.contains("only in comments or layout"), "{err}");

    // A change of meaning: validate fails naming it, work is refused, check and export
    // still run on what is stored, and restore puts the stored text back, keeping the edit.
    let edited = original.replace("seed = 7", "seed = 8");
    std::fs::write(&file, &edited).unwrap();
    let (ok, _, err) = ualign(d, &["validate", "studies/example.toml"]);
    assert!(!ok && err.contains("has changed in meaning") && err.contains("seed: 7 → 8"), "{err}");
    let err = refused(d, &["stats", "studies/example.toml"], &["seed: 7 → 8", "ualign restore studies/example.toml"]);
    assert!(!err.contains("ualign export"), "the advice is one that can be followed: {err}");
    let (ok, out, err) = ualign(d, &["check", "studies/example.toml"]);
    assert!(ok && out.contains("sound") && err.contains("seed: 7 → 8"), "{out}{err}");
    let (ok, _, err) = ualign(d, &["export", "studies/example.toml", "--out", "out"]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(d.join("out/study.toml")).unwrap(), original, "export writes the stored text");
    let (ok, out, err) = ualign(d, &["restore", "studies/example.toml"]);
    assert!(ok && out.contains("kept as studies/example.toml.edited"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert_eq!(std::fs::read_to_string(d.join("studies/example.toml.edited")).unwrap(), edited);
    let (ok, out, _) = ualign(d, &["restore", "studies/example.toml"]);
    assert!(ok && out.contains("nothing written"), "{out}");

    // A file broken past reading still finds its database by its name, or by --db; a
    // second restore keeps the first edit.
    std::fs::write(&file, "name = \"example\"\n[[blocks]\n").unwrap();
    let (ok, _, err) = ualign(d, &["check", "studies/example.toml", "--db", "db/example.sqlite"]);
    assert!(ok && err.contains("does not load"), "{err}");
    let (ok, out, err) = ualign(d, &["restore", "studies/example.toml"]);
    assert!(ok && out.contains("kept as studies/example.toml.edited.2"), "{out}{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    assert_eq!(std::fs::read_to_string(d.join("studies/example.toml.edited")).unwrap(), edited);
    let (ok, _, _) = ualign(d, &["stats", "studies/example.toml"]);
    assert!(ok);
}

#[test]
fn importing_twice_needs_replace_and_a_bom_is_fine() {
    let dir = example_copy();
    let d = dir.path();
    let bom = format!("\u{feff}{}", std::fs::read_to_string(d.join("studies/example/sampled.jsonl")).unwrap());
    std::fs::write(d.join("bom.jsonl"), bom).unwrap();
    let import = |file: &str, replace: bool| {
        let mut a = vec!["import", "studies/example.toml", "--policy", "sampled", "--candidates", file];
        if replace {
            a.push("--replace");
        }
        ualign(d, &a)
    };
    let (ok, out, err) = import("bom.jsonl", false);
    assert!(ok && out.contains("imported 24 candidates"), "{err}");
    let err = refused(
        d,
        &["import", "studies/example.toml", "--policy", "sampled", "--candidates", "bom.jsonl"],
        &["already has 24 candidates", "--replace"],
    );
    assert!(err.contains("nothing was imported"), "{err}");
    let (ok, out, err) = import("bom.jsonl", true);
    assert!(ok && out.contains("replacing its 24 earlier candidates"), "{out}{err}");
}

/// Runs the binary as the unprivileged user `nobody` when the tests run as root (root may
/// write any file, so a read-only file is only read-only to someone else).
fn as_unprivileged(dir: &Path, args: &[&str]) -> Option<(bool, String, String)> {
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(env!("CARGO_BIN_EXE_ualign"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_ualign"))
    };
    let out = match cmd.current_dir(dir).args(args).output() {
        Ok(o) => o,
        Err(e) if root => {
            eprintln!("skipped: setpriv is not available to drop root ({e})");
            return None;
        }
        Err(e) => panic!("{e}"),
    };
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    ))
}

#[test]
fn a_read_only_database_or_folder_is_refused_before_anything_happens() {
    use std::os::unix::fs::PermissionsExt;
    let dir = example_copy();
    let d = dir.path();
    let (ok, _, err) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok, "{err}");
    let db = d.join("db/example.sqlite");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    // Everyone may read the study; the database file is read-only.
    for p in [d.to_path_buf(), d.join("studies"), d.join("studies/example"), d.join("db")] {
        mode(&p, 0o755);
    }
    for f in ["studies/example.toml", "studies/example/prompts.jsonl", "studies/example/sampled.jsonl"] {
        mode(&d.join(f), 0o644);
    }
    mode(&db, 0o444);
    let args = ["simulate", "studies/example.toml", "--participants", "1", "--population", "cyclic"];
    let Some((ok, _, err)) = as_unprivileged(d, &args) else { return };
    assert!(!ok, "{err}");
    assert!(
        err.contains("db/example.sqlite cannot be written: the file is read-only") && err.contains("chmod u+w"),
        "{err}"
    );
    // A writable file in a folder where SQLite cannot make its -wal and -shm files.
    mode(&db, 0o666);
    mode(&d.join("db"), 0o555);
    let (ok, _, err) = as_unprivileged(d, &args).unwrap();
    assert!(!ok, "{err}");
    assert!(err.contains("its folder db is read-only") && err.contains("write-ahead log"), "{err}");
    mode(&d.join("db"), 0o755);
    assert_eq!(common::count(&db, "SELECT COUNT(*) FROM participants"), 0, "nothing was written");
}

#[test]
fn a_database_on_a_read_only_mount_is_said_to_be_on_one() {
    let dir = example_copy();
    let d = dir.path();
    let (ok, _, err) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok, "{err}");
    std::fs::create_dir(d.join("ro")).unwrap();
    // In a user and mount namespace of its own (util-linux's unshare), `ro` becomes a file
    // system mounted read-only that holds a copy of the database.
    let script = format!(
        "mount -t tmpfs tmpfs ro && cp db/example.sqlite ro/ && mount -o remount,ro ro && exec {} invite studies/example.toml --count 1 --db ro/example.sqlite",
        env!("CARGO_BIN_EXE_ualign")
    );
    let out = std::process::Command::new("unshare").args(["-rm", "sh", "-c", &script]).current_dir(d).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ro/example.sqlite is on a file system mounted read-only"), "{err}");
    assert!(err.contains("mount it read-write") && !err.contains("chmod"), "no permission to give: {err}");
}

#[test]
fn a_database_in_a_read_only_folder_is_read_as_an_archive_or_refused_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = example_copy();
    let d = dir.path();
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        assert!(ualign(d, &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]).0);
    }
    assert!(ualign(d, &["simulate", "studies/example.toml", "--participants", "6", "--population", "cyclic"]).0);
    let db = d.join("db/example.sqlite");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    for p in [d.to_path_buf(), d.join("studies"), d.join("studies/example")] {
        mode(&p, 0o755);
    }
    for f in ["studies/example.toml", "studies/example/prompts.jsonl", "studies/example/sampled.jsonl"] {
        mode(&d.join(f), 0o644);
    }
    // A live database (its owner may write it) in a folder this user cannot write: SQLite
    // cannot keep its index beside it, and is not told to read it as unchanging.
    mode(&db, 0o644);
    mode(&d.join("db"), 0o555);
    let args = ["stats", "studies/example.toml", "--model-replicates", "0"];
    let Some((ok, _, err)) = as_unprivileged(d, &args) else {
        mode(&d.join("db"), 0o755);
        return;
    };
    assert!(!ok, "{err}");
    assert!(err.contains("cannot read database") && err.contains("its folder db is read-only"), "{err}");
    assert!(err.contains("chmod u+w db") && err.contains("chmod a-w db/example.sqlite"), "{err}");
    // No one may write it: an archive, read where it is, integrity check and all.
    mode(&db, 0o444);
    let (ok, out, err) = as_unprivileged(d, &args).unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("6 participants (6 finished)"), "{out}");
    let (ok, _, err) =
        as_unprivileged(d, &["export", "studies/example.toml", "--out", "/tmp/ualign-archive-export-test"]).unwrap();
    let _ = std::fs::remove_dir_all("/tmp/ualign-archive-export-test");
    assert!(ok, "{err}");
    mode(&d.join("db"), 0o755);
    mode(&db, 0o644);
}

#[test]
fn check_says_a_database_is_sound_or_what_is_wrong() {
    let dir = example_copy();
    let d = dir.path();
    let (ok, _, err) =
        ualign(d, &["simulate", "studies/example.toml", "--participants", "0", "--population", "cyclic"]);
    assert!(!ok && err.contains("too small"), "{err}");
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        assert!(ualign(d, &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]).0);
    }
    assert!(ualign(d, &["simulate", "studies/example.toml", "--participants", "30", "--population", "cyclic"]).0);
    let (ok, out, err) = ualign(d, &["check", "studies/example.toml"]);
    assert!(ok, "{err}");
    assert!(out.contains("sound") && out.contains("30 participants, 330 trials, 330 answers"), "{out}");
    // Scribble over a page in the middle of the file.
    let db = d.join("db/example.sqlite");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(c);
    let mut bytes = std::fs::read(&db).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 1500].iter_mut().for_each(|b| *b = 0x5A);
    std::fs::write(&db, &bytes).unwrap();
    refused(d, &["check", "studies/example.toml"], &["db/example.sqlite is damaged", "backup"]);
    refused(d, &["export", "studies/example.toml", "--out", "out"], &["is damaged"]);
    assert!(!d.join("out/trials.csv").exists(), "nothing exported from a damaged file");
}

#[test]
fn invite_writes_the_codes_once_owner_only_and_stores_only_their_hashes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::example_copy_with(|s| s);
    let (ok, _, err) =
        common::ualign(dir.path(), &["invite", "studies/example.toml", "--count", "5", "--out", "inv.csv"]);
    assert!(ok, "{err}");
    assert!(err.contains("5 invitation codes") && err.contains("only their hashes"), "{err}");
    let csv = std::fs::read_to_string(dir.path().join("inv.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "code,participant");
    assert_eq!(rows.len(), 6);
    let mode = std::fs::metadata(dir.path().join("inv.csv")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "readable by its owner only");
    let db = dir.path().join("db/example.sqlite");
    let bytes = std::fs::read(&db).unwrap();
    for row in &rows[1..] {
        let (code, participant) = row.split_once(',').unwrap();
        assert!(
            ualign_core::study::normal_invitation_code(code).as_deref() == Some(code)
                && ualign_core::study::is_pseudonym(participant)
        );
        let hash = ualign_core::study::invitation_hash(code);
        let stored: i64 = common::sql(&db)
            .query_row(
                "SELECT COUNT(*) FROM invitations WHERE code_hash = ?1 AND participant_id = ?2",
                [&hash, participant],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(stored, 1);
        assert!(!bytes.windows(code.len()).any(|w| w == code.as_bytes()), "the code itself is never stored");
    }
    // The file is never overwritten, and a refused run stores nothing.
    let (ok, _, err) =
        common::ualign(dir.path(), &["invite", "studies/example.toml", "--count", "3", "--out", "inv.csv"]);
    assert!(!ok && err.contains("must not exist yet"), "{err}");
    let n: i64 = common::sql(&db).query_row("SELECT COUNT(*) FROM invitations", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 5);
    let (ok, _, err) = common::ualign(dir.path(), &["invite", "studies/example.toml", "--count", "0"]);
    assert!(!ok && err.contains("1 to 100000") || err.contains("at least 1"), "{err}");
}

/// A database of schema 1 (before invitations, `seen_in_full` and answer numbers): as the
/// version before made it.
fn schema_one(db: &Path) {
    let c = common::sql(db);
    c.execute_batch(
        "DROP TABLE invitations; ALTER TABLE answers DROP COLUMN seen_in_full;
         DROP INDEX answers_seq; ALTER TABLE answers DROP COLUMN seq; PRAGMA user_version = 1;",
    )
    .unwrap();
}

#[test]
fn an_older_database_is_brought_up_to_date_or_read_as_it_is_when_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = example_copy();
    let d = dir.path();
    let (ok, _, err) = ualign(d, &["init", "studies/example.toml"]);
    assert!(ok, "{err}");
    for policy in ["sampled", "greedy"] {
        let file = format!("studies/example/{policy}.jsonl");
        let (ok, _, err) = ualign(d, &["import", "studies/example.toml", "--policy", policy, "--candidates", &file]);
        assert!(ok, "{err}");
    }
    let db = d.join("db/example.sqlite");
    schema_one(&db);
    // Read-only (to someone else than root): stats reads it as it is.
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    for p in [d.to_path_buf(), d.join("studies"), d.join("studies/example"), d.join("db")] {
        mode(&p, 0o755);
    }
    for f in ["studies/example.toml", "studies/example/prompts.jsonl", "studies/example/sampled.jsonl"] {
        mode(&d.join(f), 0o644);
    }
    mode(&db, 0o444);
    // (The folder stays writable: SQLite needs it for the write-ahead log's files.)
    mode(&d.join("db"), 0o777);
    if let Some((ok, out, err)) = as_unprivileged(d, &["stats", "studies/example.toml", "--model-replicates", "2"]) {
        assert!(ok, "{out}{err}");
        let version: i64 = common::sql(&db).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 1, "a read-only file is not changed");
    }
    // Writable: the next command migrates it.
    mode(&db, 0o644);
    let (ok, _, err) = ualign(d, &["invite", "studies/example.toml", "--count", "1"]);
    assert!(ok, "{err}");
    let c = common::sql(&db);
    let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 5);
    // Schema 4 rebuilt the policies table (a CHECK constraint cannot be altered): every
    // policy and candidate is still there, every candidate still finds its policy, and
    // the table now takes server policies.
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM policies"), 2);
    assert_eq!(count("SELECT COUNT(*) FROM candidates"), 48);
    assert_eq!(count("SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM candidates c JOIN policies p ON p.name = c.policy"), 48);
    let schema: String =
        c.query_row("SELECT sql FROM sqlite_schema WHERE name = 'policies'", [], |r| r.get(0)).unwrap();
    assert!(
        schema.contains("'server'") && schema.contains("CREATE TABLE \"policies\"")
            || schema.contains("CREATE TABLE policies"),
        "{schema}"
    );
}

/// A pool whose answers reach `max_new_tokens`: `generate` says how many were cut and what
/// participants see, and the study's `on_length` decides it (the stored text stays as the
/// model wrote it).
#[test]
fn generate_reports_answers_cut_at_their_limit_and_on_length_decides_what_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::repo("assets/models/fortune-llama");
    let policy = |name: &str, on_length: &str| {
        format!(
            "[[policies]]\nname = \"{name}\"\nsource = \"model\"\nmodel = \"{}\"\npool_size = 2\n{on_length}\n[policies.decoding]\ntemperature = 0.8\nmax_new_tokens = 6\n",
            model.display()
        )
    };
    let study = format!(
        "name = \"cut\"\nseed = 7\n[[prompts]]\nid = \"a\"\ntext = \"love\"\n[[prompts]]\nid = \"b\"\ntext = \"work\"\n{}{}{}[[blocks]]\nname = \"r\"\ndesign = \"rank\"\nm = 6\ntrials = 2\n",
        policy("kept", ""),
        policy("marked", "on_length = \"mark\""),
        policy("trimmed", "on_length = \"trim\"")
    );
    std::fs::write(dir.path().join("cut.toml"), study).unwrap();
    let (ok, out, err) = ualign(dir.path(), &["generate", "cut.toml", "--threads", "1"]);
    assert!(ok, "{err}");
    let db = dir.path().join("db/cut.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let cut = |p: &str| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM candidates WHERE policy = ?1 AND finish_reason = 'length'", [p], |r| {
            r.get(0)
        })
        .unwrap()
    };
    assert!(cut("kept") > 0 && cut("marked") > 0, "6 tokens cut fortunes short");
    assert!(
        out.contains(&format!(
            "policy `kept`: {} of 4 candidates stopped at max_new_tokens = 6; participants see them cut mid-sentence",
            cut("kept")
        )),
        "{out}"
    );
    assert!(out.contains("policy `marked`") && out.contains("with a line saying it was cut off"), "{out}");
    // What a participant is shown.
    let (study, _) = ualign_core::study::load(&dir.path().join("cut.toml")).unwrap();
    let (mut store, _) = ualign_core::store::Store::open_for_study(&db, &study).unwrap();
    let mut session = ualign_core::session::Session::begin(&mut store, &study, "p-abcdefghjk", None, None).unwrap();
    let ualign_core::session::Next::Trial(view) = session.next(&mut store, &study).unwrap() else { panic!() };
    assert_eq!(view.texts.len(), 6);
    for (id, shown) in view.candidate_ids.iter().zip(&view.texts) {
        let (policy, text, reason): (String, String, Option<String>) = conn
            .query_row("SELECT policy, text, finish_reason FROM candidates WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        let cut = reason.as_deref() == Some("length");
        let want = match (policy.as_str(), cut) {
            (_, false) | ("kept", true) => text.clone(),
            ("marked", true) => format!("{}\n{}", text.trim_end(), ualign_core::study::CUT_MARK),
            _ => ualign_core::study::shown_text(&text, true, ualign_core::study::OnLength::Trim),
        };
        assert_eq!(shown, &want, "{policy} ({reason:?})");
        if policy == "trimmed" && cut {
            assert!(shown.len() < text.len() || shown.ends_with(ualign_core::study::CUT_MARK), "{shown:?} of {text:?}");
        }
    }
}

//! Study file parsing and validation: every field, and bad files reported with locations.

use std::path::{Path, PathBuf};

use ualign_core::study::{self, Decoding, Design, PolicySource, RankMode, SamplingParams, Severity, Study};

/// Writes `text` as `studies/s.toml` (plus any extra files) in a temp dir and parses it.
fn parse_in(dir: &Path, text: &str) -> (Option<Study>, Vec<String>) {
    let path = dir.join("studies").join("s.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    let (study, diags) = study::parse_study(&path, text);
    let shown = diags
        .items
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string().replace(&format!("{}", path.display()), "s.toml"))
        .collect();
    (study, shown)
}

fn errors(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    parse_in(dir.path(), text).1
}

const MINIMAL_TAIL: &str = r#"
[[prompts]]
id = "p1"
text = "hello"

[[policies]]
name = "a"
source = "imported"
pool_size = 4

[[blocks]]
name = "b"
design = "best_of_k"
policy_a = "a"
policy_b = "a"
k = [1, 2]
trials = 1
"#;

#[test]
#[allow(clippy::too_many_lines)] // one scenario, start to end
fn every_field_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("studies/m")).unwrap();
    std::fs::write(
        dir.path().join("studies/prompts.jsonl"),
        "{\"id\": \"f1\", \"text\": \"from file\", \"tags\": [\"t2\"], \"meta\": {\"x\": 1}}\n\n{\"id\": \"f2\", \"text\": \"second\"}\n",
    )
    .unwrap();
    let text = r#"
name = "full-study"
title = "A title"
description = "A description"
consent = "I agree"
instructions = "Do this"
completion_message = "Thanks"
completion_code = "CODE-1"
seed = 12345
prompts_file = "prompts.jsonl"

[options]
allow_no_preference = false
allow_skip = true
min_reading_seconds = 1.5
break_every = 7
shuffle_blocks = true

[[prompts]]
id = "p1"
text = "inline prompt"
tags = ["t1", "t2"]

[[policies]]
name = "model-a"
source = "model"
model = "m"
pool_size = 6
[policies.decoding]
temperature = 0.7
top_k = 50
top_p = 0.9
min_p = 0.05
repetition_penalty = 1.2
max_new_tokens = 32
stop = ["\n\n", "END"]
chat_template = false

[[policies]]
name = "imp"
source = "imported"
pool_size = 3

[[blocks]]
name = "bok"
design = "best_of_k"
policy_a = "model-a"
policy_b = "imp"
k = [1, 2, 4]
trials = 9
prompts = ["p1", "f1"]
attention_checks = 2
repeat_fraction = 0.25

[[blocks]]
name = "rk"
design = "rank"
policies = ["model-a", "imp"]
m = 5
mode = "order"
trials = 3
tags = ["t2"]
"#;
    let (s, errs) = parse_in(dir.path(), text);
    assert!(errs.is_empty(), "{errs:#?}");
    let s = s.unwrap();
    assert_eq!(s.name, "full-study");
    assert_eq!(s.title, "A title");
    assert_eq!(s.description, "A description");
    assert_eq!(s.consent, "I agree");
    assert_eq!(s.instructions, "Do this");
    assert_eq!(s.completion_message, "Thanks");
    assert_eq!(s.completion_code, "CODE-1");
    assert_eq!(s.seed, 12345);
    assert!(!s.options.allow_no_preference);
    assert!(s.options.allow_skip);
    assert_eq!(s.options.min_reading_ms, 1500);
    assert_eq!(s.options.break_every, Some(7));
    assert!(s.options.shuffle_blocks);
    let ids: Vec<&str> = s.prompts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["p1", "f1", "f2"]);
    assert_eq!(s.prompts[0].tags, ["t1", "t2"]);
    assert_eq!(s.prompts[1].text, "from file");
    let PolicySource::Model { dir: mdir, decoding } = &s.policies[0].source else { panic!("model policy") };
    assert_eq!(mdir, &dir.path().join("studies").join("m"));
    assert_eq!(
        decoding,
        &Decoding {
            sampling: SamplingParams { temperature: 0.7, top_k: 50, top_p: 0.9, min_p: 0.05, repetition_penalty: 1.2 },
            max_new_tokens: 32,
            stop: vec!["\n\n".into(), "END".into()],
            chat_template: false,
            precision: ualign_engine::Precision::Exact,
        }
    );
    assert_eq!(s.policies[0].pool_size, 6);
    assert_eq!(s.policies[1].source, PolicySource::Imported);
    assert_eq!(
        s.blocks[0].design,
        Design::BestOfK { policy_a: "model-a".into(), policy_b: "imp".into(), k: vec![1, 2, 4] }
    );
    assert_eq!(s.blocks[0].prompts, ["p1", "f1"]);
    assert_eq!(s.blocks[0].attention_checks, 2);
    assert_eq!(s.blocks[0].repeat_fraction, 0.25);
    assert_eq!(s.blocks[0].repeat_count(), 2);
    assert_eq!(
        s.blocks[1].design,
        Design::Rank { policies: vec!["model-a".into(), "imp".into()], m: 5, mode: RankMode::Order }
    );
    assert_eq!(s.blocks[1].prompts, ["p1", "f1"], "tag t2 selects p1 and f1");
    assert_eq!(s.trials_per_participant(), 9 + 2 + 2 + 3);
    assert_eq!(s.default_db_path(), dir.path().join("db").join("full-study.sqlite"));
    assert_eq!(s.hash.len(), 64);
}

#[test]
fn defaults_apply_when_keys_are_left_out() {
    let (s, errs) = parse_in(tempfile::tempdir().unwrap().path(), &format!("name = \"x\"\n{MINIMAL_TAIL}"));
    assert!(errs.is_empty(), "{errs:#?}");
    let s = s.unwrap();
    assert_eq!(s.title, "x");
    assert!(s.options.allow_no_preference);
    assert!(!s.options.allow_skip);
    assert_eq!(s.options.break_every, None);
    assert_eq!(s.blocks[0].prompts, ["p1"]);
}

#[test]
fn hash_covers_the_prompt_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("name = \"x\"\nprompts_file = \"p.txt\"\n{MINIMAL_TAIL}");
    std::fs::create_dir_all(dir.path().join("studies")).unwrap();
    std::fs::write(dir.path().join("studies/p.txt"), "one\ntwo\n").unwrap();
    let (a, _) = parse_in(dir.path(), &text);
    std::fs::write(dir.path().join("studies/p.txt"), "one\nthree\n").unwrap();
    let (b, _) = parse_in(dir.path(), &text);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.hash, b.hash);
    assert_eq!(b.prompts.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1", "L1", "L2"]);
}

/// (study text, expected error lines: "line:col: path: message fragment").
fn check(text: &str, expected: &[&str]) {
    let errs = errors(text);
    assert_eq!(errs.len(), expected.len(), "got {errs:#?}, expected {expected:#?}");
    for (e, want) in errs.iter().zip(expected) {
        assert!(e.starts_with("s.toml:"), "{e}");
        assert!(e["s.toml:".len()..].starts_with(want.split(" ~ ").next().unwrap()), "got `{e}`, want `{want}`");
        if let Some(frag) = want.split(" ~ ").nth(1) {
            assert!(e.contains(frag), "got `{e}`, want it to contain `{frag}`");
        }
    }
}

#[test]
fn bad_01_syntax_error() {
    check("name = \"x\"\nseed = = 3\n", &["2:8: ~ TOML syntax error"]);
}

#[test]
fn bad_02_unknown_top_level_key_with_suggestion() {
    check(&format!("name = \"x\"\nsed = 3\n{MINIMAL_TAIL}"), &["2:1: sed: unknown key `sed`; did you mean `seed`?"]);
}

#[test]
fn bad_03_unknown_key_in_decoding() {
    let text = r#"name = "x"
[[prompts]]
id = "p1"
text = "t"
[[policies]]
name = "a"
source = "model"
model = "."
[policies.decoding]
temprature = 0.5
[[blocks]]
name = "b"
design = "rank"
m = 2
trials = 1
"#;
    check(text, &["10:1: policies[0].decoding.temprature: unknown key `temprature`; did you mean `temperature`?"]);
}

#[test]
fn precision_is_exact_unless_the_study_says_fast() {
    let policy = |precision: &str| {
        format!(
            "name = \"x\"\n[[prompts]]\nid = \"p1\"\ntext = \"t\"\n[[policies]]\nname = \"a\"\nsource = \"model\"\nmodel = \".\"\n[policies.decoding]\n{precision}\n[[blocks]]\nname = \"b\"\ndesign = \"rank\"\nm = 2\ntrials = 1\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let decoding = |text: &str| {
        let (s, errs) = parse_in(dir.path(), text);
        assert!(errs.is_empty(), "{errs:?}");
        let PolicySource::Model { decoding, .. } = &s.unwrap().policies[0].source else { panic!("model policy") };
        decoding.precision
    };
    assert_eq!(decoding(&policy("")), ualign_engine::Precision::Exact);
    assert_eq!(decoding(&policy("precision = \"exact\"")), ualign_engine::Precision::Exact);
    assert_eq!(decoding(&policy("precision = \"fast\"")), ualign_engine::Precision::Fast);
    // Fast candidates are another model's: a database of the exact study refuses the edit.
    assert_eq!(
        study::meaning_changes(&policy(""), &policy("precision = \"fast\"")),
        ["policies[0].decoding.precision: (absent) → \"fast\""]
    );
    check(
        &policy("precision = \"int8\""),
        &["10:13: policies[0].decoding.precision: unknown precision `int8`; use \"exact\""],
    );
}

#[test]
fn bad_04_missing_name() {
    check(&format!("title = \"x\"\n{MINIMAL_TAIL}"), &["1:1: name: missing: add a string `name = ...` to the file"]);
}

#[test]
fn bad_05_name_not_a_slug() {
    check(&format!("name = \"My Study\"\n{MINIMAL_TAIL}"), &["1:8: name: `My Study` is not a slug"]);
}

#[test]
fn bad_06_wrong_type() {
    check(&format!("name = \"x\"\ntitle = 5\n{MINIMAL_TAIL}"), &["2:9: title: expected a string, found an integer"]);
}

#[test]
fn bad_07_negative_seed() {
    check(&format!("name = \"x\"\nseed = -1\n{MINIMAL_TAIL}"), &["2:8: seed: -1 is negative"]);
}

#[test]
fn bad_08_k_not_positive() {
    let text = MINIMAL_TAIL.replace("k = [1, 2]", "k = [0, 2]");
    // Line 1 is `name`; MINIMAL_TAIL follows on line 2.
    check(&format!("name = \"x\"{text}"), &["16:6: blocks[0].k[0]: 0 is not a positive integer"]);
}

#[test]
fn bad_09_k_larger_than_pool() {
    let text = MINIMAL_TAIL.replace("k = [1, 2]", "k = [1, 8]");
    check(
        &format!("name = \"x\"{text}"),
        &["16:9: blocks[0].k[1]: k = 8 needs 8 distinct candidates but policy_a's pool_size is 4"],
    );
}

#[test]
fn bad_10_unknown_policy_in_block() {
    let text = MINIMAL_TAIL.replace("policy_b = \"a\"", "policy_b = \"zz\"");
    check(&format!("name = \"x\"{text}"), &["15:12: blocks[0].policy_b: no policy is named `zz` (policies: a)"]);
    // A typo of a policy's name is named.
    let renamed = MINIMAL_TAIL.replace("name = \"a\"", "name = \"sampled\"").replace("\"a\"", "\"sampled\"");
    let text = renamed.replacen("policy_b = \"sampled\"", "policy_b = \"sampeld\"", 1);
    check(
        &format!("name = \"x\"{text}"),
        &["15:12: blocks[0].policy_b: no policy is named `sampeld` ~ did you mean `sampled`?"],
    );
}

#[test]
fn bad_11_duplicate_prompt_ids() {
    let text = format!("name = \"x\"\n[[prompts]]\nid = \"p1\"\ntext = \"again\"\n{MINIMAL_TAIL}");
    check(&text, &["6:1: prompts[1].id: duplicate prompt id `p1`"]);
}

#[test]
fn bad_12_unknown_design() {
    let text = MINIMAL_TAIL.replace("design = \"best_of_k\"", "design = \"tournament\"");
    check(&format!("name = \"x\"{text}"), &["13:10: blocks[0].design: unknown design `tournament`"]);
}

#[test]
fn bad_13_top_p_out_of_range_and_bad_temperature_reported_together() {
    let text = r#"name = "x"
[[prompts]]
id = "p1"
text = "t"
[[policies]]
name = "a"
source = "model"
model = "."
decoding = { temperature = -1, top_p = 1.5, min_p = 1.5, max_new_tokens = 0 }
[[blocks]]
name = "b"
design = "rank"
m = 2
trials = 1
"#;
    check(
        text,
        &[
            "9:28: policies[0].decoding.temperature: -1 is out of range",
            "9:40: policies[0].decoding.top_p: 1.5 is out of range",
            "9:53: policies[0].decoding.min_p: 1.5 is out of range",
            "9:75: policies[0].decoding.max_new_tokens: 0 is out of range: max_new_tokens must be from 1 to 8192",
        ],
    );
}

#[test]
fn bad_14_rank_m_too_large() {
    let text = r#"name = "x"
[[prompts]]
id = "p1"
text = "t"
[[policies]]
name = "a"
source = "imported"
pool_size = 3
[[blocks]]
name = "b"
design = "rank"
m = 5
trials = 1
"#;
    check(text, &["12:5: blocks[0].m: m = 5 but the chosen pools hold only 3 candidates per prompt"]);
}

#[test]
fn bad_15_unknown_prompt_and_tag_in_block() {
    let text = MINIMAL_TAIL.replace("trials = 1", "trials = 1\nprompts = [\"p1\", \"nope\"]\ntags = [\"missing\"]");
    check(
        &format!("name = \"x\"{text}"),
        &[
            "18:18: blocks[0].prompts[1]: no prompt has id `nope`",
            "19:9: blocks[0].tags[0]: no prompt has tag `missing`",
        ],
    );
}

#[test]
fn bad_16_missing_prompts_file() {
    check(
        &format!("name = \"x\"\nprompts_file = \"nowhere.jsonl\"\n{MINIMAL_TAIL}"),
        &["2:16: prompts_file: cannot read"],
    );
}

#[test]
fn bad_17_broken_prompt_jsonl_line_points_into_that_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("studies")).unwrap();
    std::fs::write(
        dir.path().join("studies/p.jsonl"),
        "{\"id\": \"a\", \"text\": \"ok\"}\n{\"id\": \"b\", \"txt\": \"typo\"}\n",
    )
    .unwrap();
    let (_, diags) = study::parse_study(
        &dir.path().join("studies/s.toml"),
        &format!("name = \"x\"\nprompts_file = \"p.jsonl\"\n{MINIMAL_TAIL}"),
    );
    let e: Vec<String> = diags.errors().map(|d| d.to_string()).collect();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].contains("p.jsonl:2:"), "{}", e[0]);
    assert!(e[0].contains("unknown field `txt`"), "{}", e[0]);
}

#[test]
fn bad_18_unknown_source_and_missing_model() {
    let text = r#"name = "x"
[[prompts]]
id = "p1"
text = "t"
[[policies]]
name = "a"
source = "api"
[[policies]]
name = "b"
source = "model"
[[blocks]]
name = "bl"
design = "rank"
m = 2
trials = 1
"#;
    check(
        text,
        &[
            "7:10: policies[0].source: unknown source `api`; use \"model\", \"server\" or \"imported\"",
            "8:1: policies[1].model: missing",
        ],
    );
}

#[test]
fn bad_18b_a_policy_without_model_is_one_error_not_two() {
    // The block names the policy: its only error is the missing model, said with what to write.
    let text = MINIMAL_TAIL.replace("source = \"imported\"", "source = \"model\"");
    check(&format!("name = \"x\"{text}"), &["6:1: policies[0].model: missing ~ `model = \"default\"`"]);
}

#[test]
fn the_embedded_default_model_has_a_name() {
    for name in ["default", "smollm2-135m-instruct"] {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL_TAIL.replace("source = \"imported\"", &format!("source = \"model\"\nmodel = \"{name}\""));
        let path = dir.path().join("studies/s.toml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let (s, diags) = study::parse_study(&path, &format!("name = \"x\"{text}"));
        assert!(diags.items.is_empty(), "{name}: {:?}", diags.items);
        let PolicySource::Model { dir: m, .. } = &s.unwrap().policies[0].source else { panic!("a model policy") };
        assert_eq!(m, &ualign_engine::default_model_dir(), "{name}");
        assert!(m.join("weights.json").is_file() && m.join("tokenizer.json").is_file(), "{}", m.display());
    }
}

#[test]
fn bad_19_no_blocks_and_no_policies() {
    check(
        "name = \"x\"\n[[prompts]]\nid = \"p\"\ntext = \"t\"\n",
        &["1:1: policies: the study has no policies", "1:1: blocks: the study has no blocks"],
    );
}

#[test]
fn bad_20_options_out_of_range_and_unknown() {
    let text = format!(
        "name = \"x\"\n[options]\nbreak_every = 0\nmin_reading_seconds = -2\nallow_skipping = true\n{MINIMAL_TAIL}"
    );
    check(
        &text,
        &[
            "4:23: options.min_reading_seconds: -2 is outside 0..=600 seconds",
            "3:15: options.break_every: 0 is not a positive integer",
            "5:1: options.allow_skipping: unknown key `allow_skipping`; did you mean `allow_skip`?",
        ],
    );
}

#[test]
fn bad_21_repeat_fraction_and_trials() {
    let text = MINIMAL_TAIL.replace("trials = 1", "trials = 0\nrepeat_fraction = 1.5");
    check(
        &format!("name = \"x\"{text}"),
        &[
            "17:10: blocks[0].trials: 0 is not a positive integer",
            "18:19: blocks[0].repeat_fraction: 1.5 is not a fraction",
        ],
    );
}

#[test]
fn bad_22_key_of_the_other_design_is_unknown() {
    let text = MINIMAL_TAIL.replace("trials = 1", "trials = 1\nmode = \"order\"");
    check(&format!("name = \"x\"{text}"), &["18:1: blocks[0].mode: unknown key `mode`"]);
}

#[test]
fn bad_23_wrong_element_type_in_array() {
    let text = MINIMAL_TAIL.replace("k = [1, 2]", "k = [1, \"two\"]");
    check(&format!("name = \"x\"{text}"), &["16:9: blocks[0].k[1]: expected an integer, found a string"]);
}

#[test]
fn missing_model_folder_is_a_warning_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = MINIMAL_TAIL.replace("source = \"imported\"", "source = \"model\"\nmodel = \"no-such-model\"");
    let (s, errs) = parse_in(dir.path(), &format!("name = \"x\"{text}"));
    assert!(errs.is_empty());
    assert!(s.is_some());
    let (_, diags) = study::parse_study(&dir.path().join("studies/s.toml"), &format!("name = \"x\"{text}"));
    let w: Vec<String> = diags.warnings().map(|d| d.to_string()).collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("model folder") && w[0].contains("does not exist"), "{}", w[0]);
    assert!(w[0].contains("`model = \"default\"`"), "the embedded model's name is offered: {}", w[0]);
}

/// The warnings of `text`, read as `studies/s.toml`.
fn warnings(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (_, diags) = study::parse_study(&dir.path().join("studies/s.toml"), text);
    diags.warnings().map(|d| d.to_string()).collect()
}

#[test]
fn validate_says_when_a_block_must_show_prompts_again() {
    // The issue's study: 4 prompts, 6 trials, a pool of 4 against a one-answer import.
    let four = (1..=4).map(|i| format!("[[prompts]]\nid = \"p{i}\"\ntext = \"t{i}\"\n")).collect::<String>();
    let study = |trials: u32, pool_a: u32, pool_b: u32| {
        format!(
            "name = \"x\"\n{four}[[policies]]\nname = \"a\"\nsource = \"imported\"\npool_size = {pool_a}\n\
             [[policies]]\nname = \"b\"\nsource = \"imported\"\npool_size = {pool_b}\n\
             [[blocks]]\nname = \"bk\"\ndesign = \"best_of_k\"\npolicy_a = \"a\"\npolicy_b = \"b\"\nk = [1, 2]\ntrials = {trials}\n"
        )
    };
    assert!(warnings(&study(4, 4, 1)).is_empty(), "one showing per prompt: {:?}", warnings(&study(4, 4, 1)));
    let w = warnings(&study(6, 4, 1));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("blocks[0].trials") && w[0].contains("6 trials over 4 prompts"), "{}", w[0]);
    assert!(w[0].contains("2 of each participant's trials show a prompt already seen"), "{}", w[0]);
    assert!(w[0].contains("`b`'s pool of 1 (up to 2 needed)") && !w[0].contains("`a`'s"), "{}", w[0]);
    assert!(w[0].contains("set trials = 4"), "{}", w[0]);
    // Pools large enough: the prompt comes back with other candidates.
    let w = warnings(&study(6, 4, 2));
    assert!(w[0].contains("candidates not yet shown") && !w[0].contains("same candidates"), "{}", w[0]);
    // A rank block over pools too small for three showings of m = 3.
    let rank = study(12, 2, 2).replace(
        "design = \"best_of_k\"\npolicy_a = \"a\"\npolicy_b = \"b\"\nk = [1, 2]",
        "design = \"rank\"\npolicies = [\"a\", \"b\"]\nm = 3",
    );
    let w = warnings(&rank);
    assert!(w[0].contains("the pools' 4 candidates (up to 9 needed)"), "{}", w[0]);
}

#[test]
fn load_reports_all_problems_in_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"Bad Name\"\nseed = -3\n").unwrap();
    let err = study::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.toml:1:8: name:"), "{err}");
    assert!(err.contains("bad.toml:2:8: seed:"), "{err}");
    assert!(err.contains("problems found"), "{err}");
    let missing = study::load(&dir.path().join("none.toml")).unwrap_err().to_string();
    assert!(missing.contains("cannot read study file"), "{missing}");
}

#[test]
fn shipped_studies_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/studies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let r = study::load(&path);
            assert!(r.is_ok(), "{}: {}", path.display(), r.unwrap_err());
        }
    }
}

mod never_panics {
    //! The parser reads whatever a researcher's editor saves: any text gives a study or
    //! diagnostics, never a panic, and a study it accepts can be planned.
    use proptest::prelude::*;

    use super::*;

    fn example() -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("studies/example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    /// Parses; when the study is accepted, plans a participant's trials too.
    fn parse_and_plan(path: &Path, text: &str) {
        let (s, diags) = study::parse_study(path, text);
        for d in &diags.items {
            assert!(d.line >= 1 && d.col >= 1, "{d}");
        }
        if let Some(s) = s.filter(|_| !diags.has_errors()) {
            ualign_core::schedule::plan(&s, "p-abcdefghjk");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text(text in "\\PC{0,400}") {
            parse_and_plan(Path::new("/nonexistent/studies/x.toml"), &text);
        }

        #[test]
        fn toml_shaped_text(lines in proptest::collection::vec(
            "(\\[\\[?[a-z_.]{1,12}\\]\\]?|[a-z_]{1,16} = (-?[0-9]{1,22}|\"[^\"\\n]{0,12}\"|\\[[0-9, ]{0,12}\\]|true|1e999|-0\\.5))",
            0..40,
        )) {
            parse_and_plan(Path::new("/nonexistent/studies/x.toml"), &lines.join("\n"));
        }

        #[test]
        fn the_example_study_with_random_edits(edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<char>(), 0u8..3), 1..6)) {
            let (path, text) = example();
            let mut chars: Vec<char> = text.chars().collect();
            for (at, c, op) in edits {
                let i = at.index(chars.len().max(1)).min(chars.len());
                match op {
                    0 => chars.insert(i, c),
                    1 if i < chars.len() => { chars.remove(i); }
                    _ if i < chars.len() => chars[i] = c,
                    _ => {}
                }
            }
            parse_and_plan(&path, &chars.iter().collect::<String>());
        }

        #[test]
        fn the_example_study_with_numbers_anywhere(value in prop_oneof![
            Just("-1".to_string()), Just("0".to_string()), Just("99999999999999999999".to_string()),
            Just("1e400".to_string()), Just("nan".to_string()), Just("-inf".to_string()),
            Just("\"x\"".to_string()), Just("[]".to_string()), (0u32..100000).prop_map(|n| n.to_string()),
        ], key in proptest::sample::select(vec![
            "pool_size", "trials", "attention_checks", "repeat_fraction", "k", "m", "seed",
            "min_reading_seconds", "break_every",
        ])) {
            let (path, text) = example();
            let edited: String = text
                .lines()
                .map(|l| if l.starts_with(&format!("{key} = ")) { format!("{key} = {value}") } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n");
            parse_and_plan(&path, &edited);
        }
    }
}

//! The embedded models through ualign's engine equal PyTorch token for token on their
//! golden prompts (golden.json, written by each model's recipe): fortune-llama (an ONNX
//! folder) and the default model, SmolLM2-135M-Instruct (a GGUF whose graph the engine
//! builds), whose chat template must also render the prompts transformers renders.

use std::path::Path;

use serde_json::Value;
use ualign_engine::{EpChoice, GenOptions, SampleSpec, SamplingParams};

/// The default model's folder.
pub(crate) fn smollm2() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/smollm2-135m-instruct")
}

/// Every case of `dir`'s golden.json: the prompt (under `prompt_key`) renders through the
/// chat template to the recipe's ids, and greedy decoding gives the recipe's tokens
/// (under `greedy_key`). Returns the loaded model's notices.
fn check_golden(dir: &Path, prompt_key: &str, greedy_key: &str, threads: usize) -> Vec<String> {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
    let mut g = ualign_engine::load(dir, EpChoice::Cpu, Some(threads)).unwrap();
    let opts = GenOptions {
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_new_tokens: golden["n_new_tokens"].as_u64().unwrap() as u32,
        stop: Vec::new(),
        ignore_eos: true,
    };
    for case in golden["cases"].as_array().unwrap() {
        let prompt = case[prompt_key].as_str().unwrap();
        let ids = g.encode_prompt(prompt, true).unwrap();
        let want_ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        assert_eq!(ids, want_ids, "{prompt}: the chat template renders and encodes as the recipe's does");
        let (s, _) = g.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &opts, None).unwrap();
        let want: Vec<u32> = serde_json::from_value(case[greedy_key].clone()).unwrap();
        assert_eq!(s[0].token_ids, want, "{prompt}: greedy continuation");
    }
    g.notices
}

#[test]
fn greedy_tokens_and_top_logits_match_golden_json() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    check_golden(&dir, "topic", "greedy_torch", 1);
}

#[test]
fn the_default_model_equals_transformers_on_the_golden_prompts() {
    let notices = check_golden(&smollm2(), "prompt", "greedy", 2);
    assert!(notices.is_empty(), "{notices:?}");
}

#[test]
fn the_default_model_folder_is_small_and_names_its_weights() {
    let m = smollm2();
    for f in [
        "weights.json",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "golden.json",
        "MODEL_CARD.md",
    ] {
        assert!(m.join(f).is_file(), "{f} is missing");
    }
    // The recipe behind those files lives outside what ships, beside the other model's.
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/models/smollm2-135m-instruct");
    for f in ["derive.py", "golden.py", "check.py"] {
        assert!(recipe.join(f).is_file(), "the recipe's {f} is missing");
    }
    assert!(!m.join("recipe").exists(), "the recipe belongs in tools/models/, not in the model folder");
    let has_gguf = std::fs::read_dir(&m).unwrap().flatten().any(|e| e.path().extension().is_some_and(|x| x == "gguf"));
    assert!(!has_gguf, "the weights are provisioned, never tracked");
}

#[test]
fn the_model_folder_is_small_and_complete() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
    let mut total = 0u64;
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                total += e.metadata().unwrap().len();
            }
        }
    }
    assert!(total < 25 * 1024 * 1024, "assets/ holds {total} bytes");
    let m = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    for f in [
        "model.onnx",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "golden.json",
        "MODEL_CARD.md",
    ] {
        assert!(m.join(f).is_file(), "{f} is missing");
    }
}

/// log-softmax of `logits`, in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let lse = logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&x| x as f64 - lse).collect()
}

/// KL(p ‖ q) of two log-distributions.
fn kl(lp: &[f64], lq: &[f64]) -> f64 {
    lp.iter().zip(lq).map(|(&a, &b)| a.exp() * (a - b)).sum::<f64>().max(0.0)
}

/// `precision = "fast"` (int8 activations) against the exact graph on the golden prompts:
/// how many keep the first 32 greedy tokens, and the next-token distributions along the
/// exact greedy path (KL and the largest logit difference). The figures MODEL_CARD.md
/// gives (`cargo test --test integration fast_precision -- --nocapture` prints them).
#[test]
fn fast_precision_stays_close_to_the_exact_graph_and_is_a_model_of_its_own() {
    use ualign_engine::Precision;
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(smollm2().join("golden.json")).unwrap()).unwrap();
    let mut exact = ualign_engine::load_at(&smollm2(), EpChoice::Cpu, Some(2), Precision::Exact).unwrap();
    let mut fast = ualign_engine::load_at(&smollm2(), EpChoice::Cpu, Some(2), Precision::Fast).unwrap();
    assert_eq!(exact.model_hash().unwrap(), exact.folder.hash().unwrap(), "exact keeps the hash candidates have");
    assert_ne!(fast.model_hash().unwrap(), exact.model_hash().unwrap(), "fast candidates are another model's");
    assert_eq!(fast.precision(), Precision::Fast);
    let opts = GenOptions {
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_new_tokens: 32,
        stop: Vec::new(),
        ignore_eos: true,
    };
    let (mut agree, mut kls, mut max_diff, mut top1) = (0, Vec::new(), 0f32, 0usize);
    let cases = golden["cases"].as_array().unwrap();
    for case in cases {
        let prompt: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        let greedy: Vec<u32> = serde_json::from_value(case["greedy"].clone()).unwrap();
        let spec = [SampleSpec { index: 0, seed: 0 }];
        let f = fast.generate(&prompt, &spec, &opts, None).unwrap().0.remove(0).token_ids;
        let same = f.iter().zip(&greedy).take_while(|(a, b)| a == b).count();
        agree += usize::from(same >= 32);
        let le = exact.forced_logits(&prompt, &greedy).unwrap();
        let lf = fast.forced_logits(&prompt, &greedy).unwrap();
        let mut case_kl = Vec::new();
        for (e, f) in le.iter().zip(&lf) {
            max_diff = e.iter().zip(f).fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
            let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            top1 += usize::from(argmax(e) == argmax(f));
            case_kl.push(kl(&log_softmax(e), &log_softmax(f)));
        }
        let mean = case_kl.iter().sum::<f64>() / case_kl.len() as f64;
        // Where they part, how close the exact graph's two best tokens were.
        let gap = le.get(same).filter(|_| same < 32).map(|e| {
            let mut v = e.clone();
            v.sort_by(|a, b| b.total_cmp(a));
            format!("; they part where exact's top two logits are {:.3} apart", v[0] - v[1])
        });
        println!(
            "{:<40} same first {same:>2} greedy tokens; mean KL {mean:.5}{}",
            case["prompt"].as_str().unwrap(),
            gap.unwrap_or_default()
        );
        kls.extend(case_kl);
    }
    let mean_kl = kls.iter().sum::<f64>() / kls.len() as f64;
    let max_kl = kls.iter().cloned().fold(0.0, f64::max);
    println!(
        "fast vs exact: {agree}/{} golden prompts keep 32 greedy tokens; along the exact greedy paths ({} positions): mean KL {mean_kl:.5} nats, max {max_kl:.4}, same top token at {top1}, largest logit difference {max_diff:.3}",
        cases.len(),
        kls.len()
    );
    // Close, not equal: the distributions barely move, and fast is still the model.
    assert!(mean_kl < 0.02, "mean KL {mean_kl}");
    assert!(top1 * 100 >= kls.len() * 95, "same top token at {top1} of {}", kls.len());
    assert!(max_diff > 0.0, "fast is not exact: some logit differs");
}

#[test]
fn fast_precision_is_refused_for_an_onnx_folder_saying_why() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    let err = ualign_engine::load_at(&dir, EpChoice::Cpu, Some(1), ualign_engine::Precision::Fast).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("model.onnx") && msg.contains("applies to GGUF models"), "{msg}");
}

/// A study with an exact and a fast policy on the default model: each candidate records its
/// precision (in its settings and its model hash), and `sample --study` makes a fast one
/// again, as it does an exact one.
#[test]
fn a_fast_policy_records_its_precision_and_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("studies")).unwrap();
    let policy = |name: &str, pool: u32, extra: &str| {
        format!(
            "[[policies]]\nname = \"{name}\"\nsource = \"model\"\nmodel = \"default\"\npool_size = {pool}\n[policies.decoding]\nmax_new_tokens = 6\n{extra}\n"
        )
    };
    let text = format!(
        "name = \"prec\"\nseed = 5\n[[prompts]]\nid = \"p1\"\ntext = \"Name a fruit.\"\n{}{}[[blocks]]\nname = \"b\"\ndesign = \"best_of_k\"\npolicy_a = \"fast\"\npolicy_b = \"exact\"\nk = [1, 2]\ntrials = 1\n",
        policy("fast", 2, "precision = \"fast\""),
        policy("exact", 2, "temperature = 1.0"),
    );
    std::fs::write(dir.path().join("studies/s.toml"), text).unwrap();
    let (ok, out, err) = crate::common::ualign(dir.path(), &["generate", "studies/s.toml"]);
    assert!(ok, "{out}{err}");
    let c = crate::common::sql(&dir.path().join("db/prec.sqlite"));
    let rows: Vec<(String, String, String)> = c
        .prepare("SELECT policy, model_hash, settings FROM candidates ORDER BY policy, sample_index")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 4);
    let (exact, fast) = (&rows[0], &rows[2]);
    assert_eq!((exact.0.as_str(), fast.0.as_str()), ("exact", "fast"));
    assert_ne!(exact.1, fast.1, "the model hash says which precision made a candidate");
    assert_eq!(rows[1].1, exact.1);
    assert!(fast.2.contains(r#""precision":"fast""#), "{}", fast.2);
    assert!(!exact.2.contains("precision"), "exact, the default, is stored as before: {}", exact.2);
    let (ok, out, err) = crate::common::ualign(
        dir.path(),
        &["sample", "--study", "studies/s.toml", "--policy", "fast", "--prompt", "p1", "--index", "1"],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = crate::common::ualign(
        dir.path(),
        &["sample", "default", "--prompt", "Hi", "-k", "1", "--max-new-tokens", "2", "--precision", "fast", "--json"],
    );
    assert!(ok && out.contains(r#""precision":"fast""#), "{out}{err}");
    let (ok, _, err) =
        crate::common::ualign(dir.path(), &["sample", "default", "--prompt", "Hi", "--precision", "half"]);
    assert!(!ok && err.contains("unknown precision `half`"), "{err}");
}

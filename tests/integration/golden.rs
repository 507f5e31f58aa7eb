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

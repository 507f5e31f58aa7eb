//! The generation engine through the real ONNX Runtime: parity with transformers on tiny
//! random-weight models of six families, seeded determinism, KV-cache correctness, errors.

use std::path::{Path, PathBuf};

use serde_json::Value;
use ualign_engine::{EpChoice, FinishReason, GenOptions, SampleSpec, SamplingParams};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(rel)
}

fn greedy(max_new_tokens: u32) -> GenOptions {
    GenOptions {
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_new_tokens,
        stop: Vec::new(),
        ignore_eos: false,
    }
}

#[test]
fn greedy_tokens_equal_transformers_generate_for_every_family() {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let families = expected.as_object().unwrap();
    // Six families, and Llama once more as a merged decoder (use_cache_branch).
    assert_eq!(families.len(), 7);
    let merged = fixture("llama-merged");
    assert!(merged.join("decoder_model_merged.onnx").exists() && !merged.join("model.onnx").exists());
    for (family, cases) in families {
        let mut g = ualign_engine::load(&fixture(family), EpChoice::Cpu, Some(1)).unwrap();
        for case in cases.as_array().unwrap() {
            let prompt = case["prompt"].as_str().unwrap();
            let ids = g.encode_prompt(prompt, case["chat_template"].as_bool().unwrap()).unwrap();
            let want_ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
            assert_eq!(ids, want_ids, "{family}: prompt encoding of {prompt:?}");
            let (samples, _) = g.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &greedy(12), None).unwrap();
            let want: Vec<u32> = serde_json::from_value(case["greedy"].clone()).unwrap();
            assert_eq!(samples[0].token_ids, want, "{family}: greedy continuation of {prompt:?}");
            let reason = if want.last() == Some(&0) { FinishReason::Eos } else { FinishReason::Length };
            assert_eq!(samples[0].finish_reason, reason, "{family}");
        }
    }
}

#[test]
fn k_rows_decoded_together_equal_each_row_alone() {
    let mut g = ualign_engine::load(&fixture("llama"), EpChoice::Cpu, Some(1)).unwrap();
    let ids = g.encode_prompt("the quick brown fox", false).unwrap();
    let opts =
        GenOptions { params: SamplingParams { temperature: 1.3, top_k: 50, ..Default::default() }, ..greedy(16) };
    let specs: Vec<SampleSpec> =
        (0..8).map(|i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(7, "p", "pol", i) }).collect();
    let (batch, _) = g.generate(&ids, &specs, &opts, None).unwrap();
    // Different rows finish at different steps (eos = 0 is likely at high temperature), so the
    // batch is compacted along the way; each row must still equal its solo run.
    for spec in &specs {
        let (solo, _) = g.generate(&ids, std::slice::from_ref(spec), &opts, None).unwrap();
        assert_eq!(solo[0].token_ids, batch[spec.index as usize].token_ids, "sample {}", spec.index);
        assert!((solo[0].logprob - batch[spec.index as usize].logprob).abs() < 1e-3);
    }
    let distinct: std::collections::HashSet<&Vec<u32>> = batch.iter().map(|s| &s.token_ids).collect();
    assert!(distinct.len() > 1, "samples differ");
}

#[test]
fn samples_do_not_depend_on_thread_count_or_pool_size() {
    let ids = {
        let g = ualign_engine::load(&fixture("qwen3"), EpChoice::Cpu, Some(1)).unwrap();
        g.encode_prompt("a model answers", false).unwrap()
    };
    let opts =
        GenOptions { params: SamplingParams { temperature: 1.0, top_p: 0.9, ..Default::default() }, ..greedy(10) };
    let spec = |i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(1, "x", "y", i) };
    let mut one = ualign_engine::load(&fixture("qwen3"), EpChoice::Cpu, Some(1)).unwrap();
    let mut two = ualign_engine::load(&fixture("qwen3"), EpChoice::Cpu, Some(2)).unwrap();
    let (a, _) = one.generate(&ids, &[spec(3)], &opts, None).unwrap();
    let (b, _) = two.generate(&ids, &(0..6).map(spec).collect::<Vec<_>>(), &opts, None).unwrap();
    assert_eq!(a[0].token_ids, b[3].token_ids);
}

#[test]
fn ignore_eos_decodes_exactly_max_new_tokens_and_timing_is_reported() {
    let mut g = ualign_engine::load(&fixture("gpt2"), EpChoice::Cpu, Some(1)).unwrap();
    let ids = g.encode_prompt("k", false).unwrap();
    let opts = GenOptions { ignore_eos: true, ..greedy(20) };
    let specs: Vec<SampleSpec> = (0..4).map(|i| SampleSpec { index: i, seed: i as u64 }).collect();
    let (s, t) = g.generate(&ids, &specs, &opts, None).unwrap();
    assert!(s.iter().all(|s| s.token_ids.len() == 20 && s.finish_reason == FinishReason::Length));
    assert_eq!(t.decode_steps, 19);
    assert_eq!(t.new_tokens, 4 * 19);
    assert!(t.decode_run_ms <= t.decode_ms);
}

#[test]
fn stop_strings_end_a_sample_and_are_cut_from_its_text() {
    let mut g = ualign_engine::load(&fixture("llama"), EpChoice::Cpu, Some(1)).unwrap();
    let ids = g.encode_prompt("the quick brown fox", false).unwrap();
    let (free, _) = g
        .generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &GenOptions { ignore_eos: true, ..greedy(12) }, None)
        .unwrap();
    let text = free[0].text.clone();
    // Stop at a piece of the free-running text (its middle character onwards).
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() >= 4, "{text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let opts = GenOptions { stop: vec![stop.clone()], ignore_eos: true, ..greedy(12) };
    let (s, _) = g.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &opts, None).unwrap();
    assert_eq!(s[0].finish_reason, FinishReason::Stop);
    assert!(!s[0].text.contains(&stop), "{:?} still holds {stop:?}", s[0].text);
    assert!(text.starts_with(&s[0].text));
}

#[test]
fn a_wrong_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = ualign_engine::load(&dir.path().join("nope"), EpChoice::Cpu, None).err().unwrap().to_string();
    assert!(e.contains("no such folder"), "{e}");
    let e = ualign_engine::load(dir.path(), EpChoice::Cpu, None).err().unwrap().to_string();
    assert!(e.contains("model.onnx") && e.contains("missing"), "{e}");
    // Copy a model but leave out the tokenizer.
    for f in ["model.onnx", "config.json"] {
        std::fs::copy(fixture("llama").join(f), dir.path().join(f)).unwrap();
    }
    let e = ualign_engine::load(dir.path(), EpChoice::Cpu, None).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json: missing"), "{e}");
    // A tokenizer from a model with a bigger vocabulary.
    let big = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":VOCAB,"unk_token":"t0"}}"#;
    let vocab: serde_json::Map<String, Value> = (0..1000).map(|i| (format!("t{i}"), Value::from(i))).collect();
    std::fs::write(dir.path().join("tokenizer.json"), big.replace("VOCAB", &Value::Object(vocab).to_string())).unwrap();
    let e = ualign_engine::load(dir.path(), EpChoice::Cpu, None).err().unwrap().to_string();
    assert!(e.contains("do not belong together"), "{e}");
    // A graph without a KV cache.
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    let e = ualign_engine::load(dir.path(), EpChoice::Cpu, None).err().unwrap().to_string();
    assert!(e.contains("config.json: not valid JSON"), "{e}");
}

#[test]
fn cuda_is_never_a_silent_fallback() {
    if ualign_engine::cuda_available() {
        return; // a machine with the CUDA provider: nothing to check here
    }
    let e = ualign_engine::load(&fixture("llama"), EpChoice::Cuda, None).err().unwrap().to_string();
    assert!(e.contains("--ep cuda never falls back to CPU"), "{e}");
    let g = ualign_engine::load(&fixture("llama"), EpChoice::Auto, None).unwrap();
    assert_eq!(g.provider.name, "cpu");
    assert!(g.provider.fallback.is_some(), "auto says why it fell back");
}

#[test]
fn kv_cache_decoding_equals_full_recomputation() {
    // Each greedy token from the KV-cache loop must equal the token a fresh prefill of the
    // whole sequence so far predicts (no cache at all).
    let mut g = ualign_engine::load(&fixture("llama"), EpChoice::Cpu, Some(1)).unwrap();
    let ids = g.encode_prompt("a model answers with", false).unwrap();
    let opts = GenOptions { ignore_eos: true, ..greedy(10) };
    let (s, _) = g.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &opts, None).unwrap();
    let one = GenOptions { ignore_eos: true, ..greedy(1) };
    let mut seq = ids.clone();
    for (step, &t) in s[0].token_ids.iter().enumerate() {
        let (fresh, _) = g.generate(&seq, &[SampleSpec { index: 0, seed: 0 }], &one, None).unwrap();
        assert_eq!(fresh[0].token_ids, [t], "step {step}");
        seq.push(t);
    }
}

#[test]
fn the_io_binding_path_gives_the_same_samples_as_plain_runs() {
    // CUDA sessions run through an I/O binding (KV cache bound to device memory); on the
    // CPU the same path binds host memory, so its logic is checked here without a GPU.
    for family in ["llama", "llama-merged", "gpt2"] {
        let mut plain = ualign_engine::load(&fixture(family), EpChoice::Cpu, Some(1)).unwrap();
        let mut bound = ualign_engine::load(&fixture(family), EpChoice::Cpu, Some(1)).unwrap();
        assert!(!plain.kv_bound());
        bound.keep_kv_on(ort::memory::AllocationDevice::CPU).unwrap();
        assert!(bound.kv_bound());
        let ids = plain.encode_prompt("the quick brown fox", false).unwrap();
        let opts =
            GenOptions { params: SamplingParams { temperature: 1.3, top_k: 50, ..Default::default() }, ..greedy(16) };
        let specs: Vec<SampleSpec> =
            (0..8).map(|i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(7, "p", "pol", i) }).collect();
        // Rows finish at different steps, so the bound cache is compacted along the way.
        let (a, _) = plain.generate(&ids, &specs, &opts, None).unwrap();
        let (b, _) = bound.generate(&ids, &specs, &opts, None).unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.token_ids, y.token_ids, "{family}: sample {}", x.index);
            assert!((x.logprob - y.logprob).abs() < 1e-9, "{family}");
        }
        if family != "gpt2" {
            // (The GPT-2 fixture rarely samples its eos: there every row runs to the end.)
            let lengths: std::collections::HashSet<usize> = a.iter().map(|s| s.token_ids.len()).collect();
            assert!(lengths.len() > 1, "{family}: rows should finish at different steps");
        }
        let (g, _) = bound.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &greedy(12), None).unwrap();
        let (h, _) = plain.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &greedy(12), None).unwrap();
        assert_eq!(g[0].token_ids, h[0].token_ids, "{family}: greedy");
    }
}

/// A copy of the llama fixture whose tokenizer lacks its last `cut` tokens (and the merges
/// that make them), as with a model whose vocabulary is padded beyond its tokenizer.
fn padded_vocabulary_folder(cut: usize) -> (tempfile::TempDir, usize) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "generation_config.json", "tokenizer_config.json", "model.onnx"] {
        std::fs::copy(fixture("llama").join(f), dir.path().join(f)).unwrap();
    }
    let mut tok: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama/tokenizer.json")).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap().clone();
    let keep = vocab.len() - cut;
    let kept: serde_json::Map<String, Value> =
        vocab.into_iter().filter(|(_, id)| (id.as_u64().unwrap() as usize) < keep).collect();
    let merges: Vec<Value> = tok["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let joined = format!("{}{}", m[0].as_str().unwrap(), m[1].as_str().unwrap());
            kept.contains_key(&joined)
        })
        .cloned()
        .collect();
    tok["model"]["vocab"] = Value::Object(kept);
    tok["model"]["merges"] = Value::Array(merges);
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    (dir, keep)
}

#[test]
fn ids_the_tokenizer_cannot_decode_are_never_sampled() {
    let (dir, decodable) = padded_vocabulary_folder(16);
    let mut g = ualign_engine::load(dir.path(), EpChoice::Cpu, Some(1)).unwrap();
    assert_eq!(g.signature.vocab, Some(decodable + 16));
    let warning = g.notices.join("\n");
    assert!(warning.contains("decodes 304 token ids") && warning.contains("cover 320"), "{warning}");
    let ids = g.encode_prompt("the quick brown fox", false).unwrap();
    // Hot sampling of random weights: with 16 of 320 ids undecodable, about one token in
    // twenty would be one of them if they could be drawn.
    let opts = GenOptions {
        params: SamplingParams { temperature: 2.0, ..Default::default() },
        ignore_eos: true,
        ..greedy(48)
    };
    let specs: Vec<SampleSpec> = (0..16).map(|i| SampleSpec { index: i, seed: u64::from(i) }).collect();
    let (samples, _) = g.generate(&ids, &specs, &opts, None).unwrap();
    let drawn: Vec<u32> = samples.iter().flat_map(|s| s.token_ids.iter().copied()).collect();
    assert_eq!(drawn.len(), 16 * 48);
    assert!(drawn.iter().all(|&t| (t as usize) < decodable), "an undecodable id was sampled");
    // Greedy decoding keeps to them too, and the full tokenizer gives no notice.
    let (greedy_samples, _) = g.generate(&ids, &specs[..1], &greedy(24), None).unwrap();
    assert!(greedy_samples[0].token_ids.iter().all(|&t| (t as usize) < decodable));
    assert!(ualign_engine::load(&fixture("llama"), EpChoice::Cpu, Some(1)).unwrap().notices.is_empty());
}

#[test]
fn a_folder_without_its_optional_files_says_which_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "model.onnx"] {
        std::fs::copy(fixture("llama").join(f), dir.path().join(f)).unwrap();
    }
    let g = ualign_engine::load(dir.path(), EpChoice::Cpu, Some(1)).unwrap();
    assert_eq!(g.notices.len(), 2, "{:?}", g.notices);
    assert!(g.notices[0].contains("no generation_config.json") && g.notices[0].contains("top-k 50"));
    assert!(g.notices[1].contains("no tokenizer_config.json") && g.notices[1].contains("raw text"));
}

#[test]
fn a_pool_larger_than_a_batch_decodes_in_batches_with_the_same_samples() {
    let mut g = ualign_engine::load(&fixture("llama"), EpChoice::Cpu, Some(1)).unwrap();
    let ids = g.encode_prompt("the quick brown fox", false).unwrap();
    let opts = GenOptions { params: SamplingParams { temperature: 1.0, ..Default::default() }, ..greedy(6) };
    let n = ualign_engine::MAX_BATCH as u32 + 3;
    let specs: Vec<SampleSpec> =
        (0..n).map(|i| SampleSpec { index: i, seed: ualign_core::seed::sample_seed(1, "p", "q", i) }).collect();
    let (all, timing) = g.generate(&ids, &specs, &opts, None).unwrap();
    assert_eq!(all.len(), n as usize);
    assert_eq!(all.iter().map(|s| s.index).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
    for spec in [specs[0], specs[ualign_engine::MAX_BATCH - 1], specs[ualign_engine::MAX_BATCH], specs[n as usize - 1]]
    {
        let (solo, _) = g.generate(&ids, &[spec], &opts, None).unwrap();
        assert_eq!(solo[0].token_ids, all[spec.index as usize].token_ids, "sample {}", spec.index);
    }
    let tokens: u64 = all.iter().map(|s| s.token_ids.len() as u64).sum();
    assert_eq!(timing.new_tokens, tokens - u64::from(n), "the first token of each row is the prefill's");
}

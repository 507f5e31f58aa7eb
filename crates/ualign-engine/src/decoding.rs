//! Decoding settings, in one place: what a study file's `[policies.decoding]` says, what
//! the engine samples with, and their limits. A study file, `ualign sample`'s flags and a
//! model's generation_config.json are held to the same rules, with the meaning of Hugging
//! Face transformers' logits processors. A leaf module: `study` and `engine` both use it
//! and neither imports the other.

/// The settings that act on the logits, step by step.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy decoding.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0 }
    }
}

/// A policy's decoding settings. Stored as JSON with the study and every candidate (the
/// sampling fields first, flattened, as before they had a type of their own).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decoding {
    #[serde(flatten)]
    pub sampling: SamplingParams,
    pub max_new_tokens: u32,
    pub stop: Vec<String>,
    /// Render the prompt through the tokenizer's chat template.
    pub chat_template: bool,
    /// How a GGUF model's weight matrices are multiplied. Absent from the stored JSON when
    /// exact, so what was stored before it existed reads and hashes as it did.
    #[serde(default, skip_serializing_if = "Precision::is_exact")]
    pub precision: Precision,
}

/// How the engine multiplies a GGUF model's quantized weight matrices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 activations: greedy decoding equals transformers token for token on the
    /// default model's golden prompts.
    #[default]
    Exact,
    /// int8 activations (ONNX Runtime's `MatMulNBits` at `accuracy_level = 4`): 1.5–2.8×
    /// faster decoding on a CPU, with logits that differ slightly from the exact ones (see
    /// the default model's MODEL_CARD.md for how much).
    Fast,
}

impl Precision {
    pub fn is_exact(&self) -> bool {
        *self == Precision::Exact
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Exact => "exact",
            Precision::Fast => "fast",
        }
    }

    /// Reads a study file's or a flag's value; the error says what is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "exact" => Ok(Precision::Exact),
            "fast" => Ok(Precision::Fast),
            other => Err(format!(
                "unknown precision `{other}`; use \"exact\" (fp32, the default: greedy decoding equals transformers') or \"fast\" (int8 activations: faster on a CPU, logits slightly off)"
            )),
        }
    }
}

impl Default for Decoding {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_new_tokens: 64,
            stop: Vec::new(),
            chat_template: true,
            precision: Precision::Exact,
        }
    }
}

impl Decoding {
    pub fn is_greedy(&self) -> bool {
        self.sampling.temperature == 0.0
    }
}

pub mod limits {
    //! The ranges of the decoding settings.

    use std::ops::RangeInclusive;

    /// `max_new_tokens` per sample.
    pub const MAX_NEW_TOKENS: RangeInclusive<u64> = 1..=8192;

    /// The highest temperature accepted: beyond it sampling is uniform noise.
    pub(crate) const MAX_TEMPERATURE: f64 = 100.0;

    /// Checks one decoding setting; the error says the rule.
    pub fn check(key: &str, v: f64) -> Result<(), String> {
        let ok = match key {
            "temperature" => v.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&v),
            "top_p" => v.is_finite() && v > 0.0 && v <= 1.0,
            "min_p" => v.is_finite() && (0.0..=1.0).contains(&v),
            "repetition_penalty" => v.is_finite() && v > 0.0,
            _ => true,
        };
        if ok {
            return Ok(());
        }
        Err(match key {
            "temperature" => {
                format!("{v} is out of range: use 0 (greedy) or a positive temperature up to {MAX_TEMPERATURE}")
            }
            "top_p" => format!("{v} is out of range: top_p must be in (0, 1] (1 = off)"),
            "min_p" => format!("{v} is out of range: min_p must be in [0, 1] (0 = off)"),
            _ => format!("{v} is out of range: repetition_penalty must be positive (1.0 = off)"),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::check;

        #[test]
        fn decoding_rules() {
            for (key, good, bad) in [
                ("temperature", [0.0, 1.0, 100.0], [-0.1, f64::NAN, f64::INFINITY]),
                ("top_p", [0.01, 0.5, 1.0], [0.0, 1.01, f64::NAN]),
                ("min_p", [0.0, 0.1, 1.0], [-0.1, 1.01, f64::NAN]),
                ("repetition_penalty", [0.5, 1.0, 2.0], [0.0, -1.0, f64::INFINITY]),
            ] {
                for v in good {
                    assert!(check(key, v).is_ok(), "{key} {v}");
                }
                for v in bad {
                    assert!(check(key, v).unwrap_err().contains("out of range"), "{key} {v}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_json_is_as_before_the_sampling_fields_had_a_type() {
        // What studies and candidates recorded before: the fields flat, in this order.
        let before = r#"{"temperature":0.5,"top_k":3,"top_p":0.9,"min_p":0.0,"repetition_penalty":1.0,"max_new_tokens":16,"stop":["\n"],"chat_template":false}"#;
        let d = Decoding {
            sampling: SamplingParams { temperature: 0.5, top_k: 3, top_p: 0.9, ..Default::default() },
            max_new_tokens: 16,
            stop: vec!["\n".into()],
            chat_template: false,
            precision: Precision::Exact,
        };
        assert_eq!(serde_json::to_string(&d).unwrap(), before);
        assert_eq!(serde_json::from_str::<Decoding>(before).unwrap(), d);
        // Fast is recorded; exact, the default, is not (so old hashes stand).
        let fast = Decoding { precision: Precision::Fast, ..d };
        let json = serde_json::to_string(&fast).unwrap();
        assert!(json.ends_with(r#""chat_template":false,"precision":"fast"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Decoding>(&json).unwrap(), fast);
        assert!(Precision::parse("exact").unwrap().is_exact());
        assert!(Precision::parse("fp8").unwrap_err().contains("use \"exact\""));
    }
}

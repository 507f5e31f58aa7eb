//! The limits of decoding settings, in one place: a study file's `[policies.decoding]`
//! and `ualign sample`'s flags (and a model's generation_config.json) are held to the
//! same rules, with the meaning of Hugging Face transformers' logits processors.

use std::ops::RangeInclusive;

/// `max_new_tokens` per sample.
pub const MAX_NEW_TOKENS: RangeInclusive<u64> = 1..=8192;

/// The highest temperature accepted: beyond it sampling is uniform noise.
pub const MAX_TEMPERATURE: f64 = 100.0;

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

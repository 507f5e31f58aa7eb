//! Parsers for numeric flags, so that every command says what is wrong with a value the
//! same way: a negative number gets a message about the value (not clap's `-- -1` tip,
//! the flags take negative numbers as values to refuse them), a number beyond the type
//! says it is too large, and each flag's range is stated. Decoding flags follow the same
//! rules as a study file's decoding settings (`decoding::limits`).

use ualign_engine::decoding::limits;

/// A whole number from `LO` to `HI`, as any integer type it fits.
pub(crate) fn whole<T: TryFrom<u64>, const LO: u64, const HI: u64>(s: &str) -> Result<T, String> {
    let t = s.trim();
    let range = format!("from {LO} to {HI}");
    let v: i128 = match t.parse() {
        Ok(v) => v,
        Err(_) if !t.is_empty() && t.trim_start_matches(['-', '+']).bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("{t} is too large: use a whole number {range}"));
        }
        Err(_) => return Err(format!("`{t}` is not a whole number; use one {range}")),
    };
    if v < 0 {
        return Err(format!("{v} is negative; use a whole number {range}"));
    }
    if v < i128::from(LO) {
        return Err(format!("{v} is too small; use a whole number {range}"));
    }
    if v > i128::from(HI) {
        return Err(format!("{v} is too large; use a whole number {range}"));
    }
    T::try_from(v as u64).map_err(|_| format!("{v} is too large; use a whole number {range}"))
}

/// A number for decoding setting `key`, held to the study file's rule for it.
fn decoding(key: &str, s: &str) -> Result<f32, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number"))?;
    limits::check(key, v)?;
    Ok(v as f32)
}

pub(crate) fn temperature(s: &str) -> Result<f32, String> {
    decoding("temperature", s)
}

pub(crate) fn top_p(s: &str) -> Result<f32, String> {
    decoding("top_p", s)
}

pub(crate) fn min_p(s: &str) -> Result<f32, String> {
    decoding("min_p", s)
}

pub(crate) fn repetition_penalty(s: &str) -> Result<f32, String> {
    decoding("repetition_penalty", s)
}

/// Intra-op threads: ONNX Runtime starts that many threads, so an absurd count hangs the
/// machine instead of failing.
pub(crate) const MAX_THREADS: u64 = 256;

/// Candidates one `ualign sample` call may ask for.
pub(crate) const MAX_K: u64 = 10_000;

/// Minutes, possibly fractional, from 0.05 (3 s) to a day.
pub(crate) fn minutes(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of minutes"))?;
    if !(0.05..=1440.0).contains(&v) {
        return Err(format!("{v} minutes is outside 0.05 (3 s) to 1440 (a day)"));
    }
    Ok(v)
}

/// Any finite number.
pub(crate) fn finite(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a finite number")),
    }
}

/// A finite number ≥ 0.
pub(crate) fn non_negative(s: &str) -> Result<f64, String> {
    match finite(s)? {
        v if v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is below 0; give a number ≥ 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_say_what_is_wrong() {
        assert_eq!(whole::<u32, 1, 10>("7"), Ok(7));
        assert!(whole::<u32, 1, 10>("-1").unwrap_err().contains("-1 is negative"));
        assert!(whole::<u32, 1, 10>("0").unwrap_err().contains("too small"));
        assert!(whole::<u32, 1, 10>("11").unwrap_err().contains("11 is too large"));
        assert!(whole::<u32, 1, 10>("99999999999999999999999999999999999999999").unwrap_err().contains("too large"));
        assert!(whole::<u64, 0, { u64::MAX }>("18446744073709551616").unwrap_err().contains("too large"));
        assert!(whole::<u32, 1, 10>("2.5").unwrap_err().contains("not a whole number"));
        assert!(whole::<u32, 1, 10>("x").unwrap_err().contains("not a whole number"));
    }

    #[test]
    fn decoding_flags_follow_the_study_rules() {
        assert_eq!(temperature("0"), Ok(0.0));
        assert!(temperature("-1").unwrap_err().contains("out of range"));
        assert!(temperature("nan").unwrap_err().contains("out of range"));
        assert!(temperature("inf").unwrap_err().contains("out of range"));
        assert!(top_p("0").is_err() && top_p("1").is_ok());
        assert!(min_p("1").is_ok() && min_p("1.5").is_err());
        assert!(repetition_penalty("0").is_err());
    }
}

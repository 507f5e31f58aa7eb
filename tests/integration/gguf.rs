//! The GGUF reader against gguf-py's reference (fixtures by
//! tests/fixtures/gguf/make_fixtures.py): metadata of every value type, and the values of
//! a tensor of every tensor type ualign reads; damaged files are clear errors.

use std::path::{Path, PathBuf};

use serde_json::Value;
use ualign::engine::gguf::{Gguf, GgufError, Meta, TensorType};

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
    let e = ualign::engine::gguf::quant::dequantize(odd.ty, g.data(t)).unwrap_err();
    assert!(e.contains("Q3_K (GGML type 11) is not supported"), "{e}");
}

/// The reference's values of fixture tensor `name`.
fn reference_values(name: &str) -> Vec<f32> {
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("types.json")).unwrap()).unwrap();
    expected[name]["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
}

#[test]
fn matrices_repacked_for_matmulnbits_hold_the_reference_values() {
    use ualign::engine::gguf::linear::Linear;
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
    // Fused matrices (Q/K/V, gate/up) are their parts one after another, zero points and all.
    let parts: Vec<&Linear> =
        nbits.iter().filter(|(l, _)| matches!(l, Linear::NBits { bits: 4, .. })).map(|(l, _)| l).collect();
    assert_eq!(parts.len(), 3);
    let fused = Linear::concat(&parts).unwrap();
    assert_eq!((fused.n(), fused.k()), (6, 256));
    let want: Vec<f32> =
        nbits.iter().filter(|(l, _)| matches!(l, Linear::NBits { bits: 4, .. })).flat_map(|(_, w)| w.clone()).collect();
    for (a, b) in fused.dequantized().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
    }
    let eight = nbits.iter().find(|(l, _)| matches!(l, Linear::NBits { bits: 8, .. })).unwrap();
    assert!(Linear::concat(&[parts[0], &eight.0]).is_none(), "4- and 8-bit matrices do not fuse");
}

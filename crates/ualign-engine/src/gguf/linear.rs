//! A GGUF weight matrix as ONNX Runtime's operators take it. Q4_0, Q4_1, Q4_K and Q8_0
//! map onto 4-bit `MatMulNBits` without re-quantising: the same integers, repacked (a GGML
//! 4-bit block keeps its first 16 values in the low nibbles and the next 16 in the high
//! ones; MatMulNBits packs neighbours into one byte), each 32-value block with its scale
//! and MatMulNBits' default zero point, 8.
//!
//! Two things keep ONNX Runtime on its fast 4-bit kernel (measured here: float zero points,
//! or 8 bits, make it dequantise the whole matrix on every call, 27× slower):
//! - a block's offset (Q4_1, Q4_K: w = d·q + m) is kept apart as `mins`: with
//!   w = d·(q − 8) + (m + 8d), x·wᵀ = MatMulNBits(x) + (x's block sums)·minsᵀ, the second
//!   a matmul 32 times smaller;
//! - a Q8_0 block (w = d·q, q a signed byte) is two 4-bit planes: q + 128 = 16·hi + lo, so
//!   w = 16d·(hi − 8) + d·(lo − 8) + 8d — two MatMulNBits and a min.
//!
//! Every other type is dequantised to f32 for a plain `MatMul`.

use half::f16;

use super::TensorInfo;
use super::quant::{self, TensorType, scale_min_k4};

/// One 4-bit plane of a matrix: `b` [n, k/32, 16] as MatMulNBits packs it, `scales` [n, k/32].
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    pub(crate) b: Vec<u8>,
    pub(crate) scales: Vec<f32>,
}

/// One weight matrix of `n` outputs over `k` inputs (GGML stores it as `n` rows of `k`).
#[derive(Debug, Clone, PartialEq)]
pub enum Linear {
    /// The sum of 4-bit `MatMulNBits` planes (zero point 8); `mins` [n, k/32], when there,
    /// is added to every value of its block.
    NBits { n: usize, k: usize, planes: Vec<Plane>, mins: Option<Vec<f32>> },
    /// Dequantised, as `n` rows of `k`.
    Dense { n: usize, k: usize, w: Vec<f32> },
}

/// A Q8_0 matrix as 8-bit `MatMulNBits` takes it (zero point 128): `b` [n, k/32, 32], the
/// signed bytes plus 128, and `scales` [n, k/32]; w = d·(b − 128) = d·q, the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bytes {
    pub(crate) b: Vec<u8>,
    pub(crate) scales: Vec<f32>,
}

impl Bytes {
    /// Tensor `t` of `n` rows of `k` in this form, when it is Q8_0 of that size.
    pub fn q8_0(t: &TensorInfo, data: &[u8], n: usize, k: usize) -> Option<Bytes> {
        if t.ty != TensorType::Q8_0
            || t.dims[..] != [k as u64, n as u64]
            || !k.is_multiple_of(32)
            || data.len() != n * k / 32 * 34
        {
            return None;
        }
        let mut out = Bytes { b: Vec::with_capacity(n * k), scales: Vec::with_capacity(n * k / 32) };
        for blk in data.chunks_exact(34) {
            out.scales.push(f16_at(blk, 0));
            out.b.extend(blk[2..34].iter().map(|&q| (q as i8 as i16 + 128) as u8));
        }
        Some(out)
    }

    /// The values as [n, k] f32, for checks.
    pub fn dequantized(&self) -> Vec<f32> {
        self.b.iter().enumerate().map(|(i, &u)| (u as f32 - 128.0) * self.scales[i / 32]).collect()
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Packs 32 four-bit values (0..16) as MatMulNBits does: value 2t in byte t's low nibble.
fn pack4(values: impl Fn(usize) -> u8, out: &mut Vec<u8>) {
    for t in 0..16 {
        out.push(values(2 * t) | (values(2 * t + 1) << 4));
    }
}

/// A GGML 4-bit block's value `j` (0..32) from its 16 bytes.
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 }
}

impl Linear {
    pub fn n(&self) -> usize {
        match self {
            Linear::NBits { n, .. } | Linear::Dense { n, .. } => *n,
        }
    }

    pub fn k(&self) -> usize {
        match self {
            Linear::NBits { k, .. } | Linear::Dense { k, .. } => *k,
        }
    }

    /// The matrix of tensor `t` (its `data`); `Err` says why it had to be dequantised
    /// (a notice for the researcher), with the dense matrix in the error's place.
    pub fn of(t: &TensorInfo, data: &[u8]) -> Result<Linear, (Linear, String)> {
        let (k, n) = match t.dims[..] {
            [k, n] => (k as usize, n as usize),
            [k] => (k as usize, 1),
            _ => return Err((Self::dense(t, data, 0, 0)?, format!("tensor `{}` is not a matrix", t.name))),
        };
        let packed = match t.ty {
            TensorType::Q4_0 => Some(Self::q4(data, n, k, 18, 2)),
            TensorType::Q4_1 => Some(Self::q4_1(data, n, k)),
            TensorType::Q8_0 => Some(Self::q8_0(data, n, k)),
            TensorType::Q4K => Some(Self::q4_k(data, n, k)),
            _ => None,
        };
        match packed {
            Some(l) => Ok(l),
            None if matches!(t.ty, TensorType::F32 | TensorType::F16 | TensorType::BF16) => Self::dense(t, data, n, k),
            None => Err((
                Self::dense(t, data, n, k)?,
                format!("tensor `{}` ({}) is dequantised to f32 (no exact MatMulNBits form)", t.name, t.ty),
            )),
        }
    }

    /// The matrix dequantised; a type ualign cannot read is an error naming the tensor.
    fn dense(t: &TensorInfo, data: &[u8], n: usize, k: usize) -> Result<Linear, (Linear, String)> {
        match quant::dequantize(t.ty, data) {
            Ok(w) => Ok(Linear::Dense { n, k, w }),
            Err(e) => Err((Linear::Dense { n: 0, k: 0, w: Vec::new() }, format!("tensor `{}`: {e}", t.name))),
        }
    }

    /// Q4_0 (and the nibbles of Q4_1): `size`-byte blocks with the scale at 0 and the 16
    /// bytes of values at `qs`; Q4_0's implicit zero point is MatMulNBits' default, 8.
    fn q4(data: &[u8], n: usize, k: usize, size: usize, qs: usize) -> Linear {
        let blocks = n * k / 32;
        let mut b = Vec::with_capacity(blocks * 16);
        let mut scales = Vec::with_capacity(blocks);
        for blk in data.chunks_exact(size) {
            let q = &blk[qs..qs + 16];
            pack4(|j| nibble(q, j), &mut b);
            scales.push(f16_at(blk, 0));
        }
        Linear::NBits { n, k, planes: vec![Plane { b, scales }], mins: None }
    }

    /// Q4_1: w = d·q + m = d·(q − 8) + (m + 8d).
    fn q4_1(data: &[u8], n: usize, k: usize) -> Linear {
        let Linear::NBits { planes, .. } = Self::q4(data, n, k, 20, 4) else { unreachable!() };
        let mins = data.chunks_exact(20).zip(&planes[0].scales).map(|(blk, d)| f16_at(blk, 2) + 8.0 * d).collect();
        Linear::NBits { n, k, planes, mins: Some(mins) }
    }

    /// Q8_0: w = d·q with q a signed byte; q + 128 = 16·hi + lo, so
    /// w = 16d·(hi − 8) + d·(lo − 8) + 8d.
    fn q8_0(data: &[u8], n: usize, k: usize) -> Linear {
        let blocks = n * k / 32;
        let (mut hi, mut lo) = (
            Plane { b: Vec::with_capacity(blocks * 16), scales: Vec::with_capacity(blocks) },
            Plane { b: Vec::with_capacity(blocks * 16), scales: Vec::with_capacity(blocks) },
        );
        let mut mins = Vec::with_capacity(blocks);
        for blk in data.chunks_exact(34) {
            let u = |j: usize| (blk[2 + j] as i8 as i16 + 128) as u8;
            pack4(|j| u(j) >> 4, &mut hi.b);
            pack4(|j| u(j) & 0xF, &mut lo.b);
            let d = f16_at(blk, 0);
            hi.scales.push(16.0 * d);
            lo.scales.push(d);
            mins.push(8.0 * d);
        }
        Linear::NBits { n, k, planes: vec![hi, lo], mins: Some(mins) }
    }

    /// Q4_K: 256-value blocks of eight 32-value sub-blocks, each w = d·sc·q − dmin·m, that
    /// is scale d·sc and min 8·d·sc − dmin·m.
    fn q4_k(data: &[u8], n: usize, k: usize) -> Linear {
        let sub = n * k / 32;
        let mut plane = Plane { b: Vec::with_capacity(sub * 16), scales: Vec::with_capacity(sub) };
        let mut mins = Vec::with_capacity(sub);
        for blk in data.chunks_exact(144) {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let (sc, qs) = (&blk[4..16], &blk[16..144]);
            for s in 0..8 {
                let (scale_q, min_q) = scale_min_k4(s, sc);
                let (scale, min) = (d * scale_q as f32, dmin * min_q as f32);
                let q = &qs[32 * (s / 2)..32 * (s / 2) + 32];
                pack4(|j| (q[j] >> (4 * (s % 2))) & 0xF, &mut plane.b);
                plane.scales.push(scale);
                mins.push(8.0 * scale - min);
            }
        }
        Linear::NBits { n, k, planes: vec![plane], mins: Some(mins) }
    }

    /// The matrices one after another along the outputs (fused Q/K/V, gate and up), when
    /// they share a form; `None` when they do not.
    pub fn concat(parts: &[&Linear]) -> Option<Linear> {
        let k = parts.first()?.k();
        if parts.iter().any(|p| p.k() != k) {
            return None;
        }
        match parts[0] {
            Linear::Dense { .. } => {
                let mut w = Vec::new();
                for p in parts {
                    let Linear::Dense { w: pw, .. } = p else { return None };
                    w.extend_from_slice(pw);
                }
                Some(Linear::Dense { n: parts.iter().map(|p| p.n()).sum(), k, w })
            }
            Linear::NBits { planes: first, .. } => {
                let mut planes: Vec<Plane> = vec![Plane { b: Vec::new(), scales: Vec::new() }; first.len()];
                let mut mins = Vec::new();
                let any_mins = parts.iter().any(|p| matches!(p, Linear::NBits { mins: Some(_), .. }));
                for p in parts {
                    let Linear::NBits { planes: pp, mins: pm, n, k, .. } = p else { return None };
                    if pp.len() != planes.len() {
                        return None;
                    }
                    for (to, from) in planes.iter_mut().zip(pp) {
                        to.b.extend_from_slice(&from.b);
                        to.scales.extend_from_slice(&from.scales);
                    }
                    // A part without mins adds nothing, written out when another has them.
                    mins.extend(pm.clone().unwrap_or_else(|| vec![0.0; n * k / 32]));
                }
                let n = parts.iter().map(|p| p.n()).sum();
                Some(Linear::NBits { n, k, planes, mins: any_mins.then_some(mins) })
            }
        }
    }

    /// The values as [n, k] f32, for checks.
    pub fn dequantized(&self) -> Vec<f32> {
        match self {
            Linear::Dense { w, .. } => w.clone(),
            Linear::NBits { n, k, planes, mins } => {
                let mut out = vec![0f32; n * k];
                for (i, block) in out.chunks_exact_mut(32).enumerate() {
                    let min = mins.as_ref().map_or(0.0, |m| m[i]);
                    for (j, w) in block.iter_mut().enumerate() {
                        *w = min;
                        for p in planes {
                            let q = (p.b[i * 16 + j / 2] >> (4 * (j % 2))) & 0xF;
                            *w += (q as f32 - 8.0) * p.scales[i];
                        }
                    }
                }
                out
            }
        }
    }
}

//! A GGUF weight matrix as ONNX Runtime's operators take it. Q4_0, Q4_1, Q4_K and Q8_0
//! map onto `MatMulNBits` without re-quantising: the same integers, repacked (a GGML
//! 4-bit block keeps its first 16 values in the low nibbles and the next 16 in the high
//! ones; MatMulNBits packs neighbours into one byte), with each 32-value block's scale and
//! zero point (a Q4_1 or Q4_K block's min becomes a float zero point, `-min / scale`).
//! Every other type is dequantised to f32 for a plain `MatMul`.

use half::f16;

use super::TensorInfo;
use super::quant::{self, TensorType, scale_min_k4};

/// One weight matrix of `n` outputs over `k` inputs (GGML stores it as `n` rows of `k`).
#[derive(Debug, Clone, PartialEq)]
pub enum Linear {
    /// `MatMulNBits`: `b` is [n, k/32, 32·bits/8], `scales` and `zero_points` [n, k/32];
    /// no zero points means the operator's default (8 for 4 bits, 128 for 8).
    NBits { bits: u32, n: usize, k: usize, b: Vec<u8>, scales: Vec<f32>, zero_points: Option<Vec<f32>> },
    /// Dequantised, as `n` rows of `k`.
    Dense { n: usize, k: usize, w: Vec<f32> },
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

/// The zero point of 4-bit block `i`, whose values are w = scale·q − offset: offset / scale.
/// A block of scale 0 is the constant −offset, which becomes scale −offset, every q 1 and
/// zero point 0, so that it too is exact.
fn block_zero_point(b: &mut [u8], scales: &mut [f32], i: usize, offset: f32) -> f32 {
    if scales[i] != 0.0 {
        return offset / scales[i];
    }
    b[16 * i..16 * (i + 1)].fill(0x11);
    scales[i] = -offset;
    0.0
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
        Linear::NBits { bits: 4, n, k, b, scales, zero_points: None }
    }

    /// Q4_1: w = d·q + m = d·(q − (−m/d)).
    fn q4_1(data: &[u8], n: usize, k: usize) -> Linear {
        let Linear::NBits { mut b, mut scales, .. } = Self::q4(data, n, k, 20, 4) else { unreachable!() };
        let mut zero_points = Vec::with_capacity(scales.len());
        for (i, blk) in data.chunks_exact(20).enumerate() {
            zero_points.push(block_zero_point(&mut b, &mut scales, i, -f16_at(blk, 2)));
        }
        Linear::NBits { bits: 4, n, k, b, scales, zero_points: Some(zero_points) }
    }

    /// Q8_0: w = d·q with q a signed byte; stored as q + 128 with MatMulNBits' default zero point 128.
    fn q8_0(data: &[u8], n: usize, k: usize) -> Linear {
        let blocks = n * k / 32;
        let mut b = Vec::with_capacity(blocks * 32);
        let mut scales = Vec::with_capacity(blocks);
        for blk in data.chunks_exact(34) {
            b.extend(blk[2..34].iter().map(|&q| (q as i8 as i16 + 128) as u8));
            scales.push(f16_at(blk, 0));
        }
        Linear::NBits { bits: 8, n, k, b, scales, zero_points: None }
    }

    /// Q4_K: 256-value blocks of eight 32-value sub-blocks, each w = d·sc·q − dmin·m, that
    /// is scale d·sc and zero point dmin·m / (d·sc).
    fn q4_k(data: &[u8], n: usize, k: usize) -> Linear {
        let sub = n * k / 32;
        let (mut b, mut scales, mut zero_points) =
            (Vec::with_capacity(sub * 16), Vec::with_capacity(sub), Vec::with_capacity(sub));
        for blk in data.chunks_exact(144) {
            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
            let (sc, qs) = (&blk[4..16], &blk[16..144]);
            for s in 0..8 {
                let (scale_q, min_q) = scale_min_k4(s, sc);
                let (scale, min) = (d * scale_q as f32, dmin * min_q as f32);
                let q = &qs[32 * (s / 2)..32 * (s / 2) + 32];
                pack4(|j| (q[j] >> (4 * (s % 2))) & 0xF, &mut b);
                scales.push(scale);
                let i = scales.len() - 1;
                zero_points.push(block_zero_point(&mut b, &mut scales, i, min));
            }
        }
        Linear::NBits { bits: 4, n, k, b, scales, zero_points: Some(zero_points) }
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
            Linear::NBits { bits, .. } => {
                let (mut b, mut scales, mut zps) = (Vec::new(), Vec::new(), Vec::new());
                let any_zp = parts.iter().any(|p| matches!(p, Linear::NBits { zero_points: Some(_), .. }));
                for p in parts {
                    let Linear::NBits { bits: pb, b: bb, scales: ps, zero_points: pz, .. } = p else { return None };
                    if pb != bits {
                        return None;
                    }
                    b.extend_from_slice(bb);
                    scales.extend_from_slice(ps);
                    // A part without zero points uses the default, written out when another has them.
                    let default = if *bits == 4 { 8.0 } else { 128.0 };
                    zps.extend(pz.clone().unwrap_or_else(|| vec![default; ps.len()]));
                }
                let n = parts.iter().map(|p| p.n()).sum();
                Some(Linear::NBits { bits: *bits, n, k, b, scales, zero_points: any_zp.then_some(zps) })
            }
        }
    }

    /// The values as [n, k] f32, for checks.
    pub fn dequantized(&self) -> Vec<f32> {
        match self {
            Linear::Dense { w, .. } => w.clone(),
            Linear::NBits { bits, n, k, b, scales, zero_points } => {
                let blob = 32 * *bits as usize / 8;
                let mut out = Vec::with_capacity(n * k);
                for (i, &s) in scales.iter().enumerate() {
                    let zp = zero_points.as_ref().map_or(if *bits == 4 { 8.0 } else { 128.0 }, |z| z[i]);
                    let block = &b[i * blob..(i + 1) * blob];
                    for j in 0..32 {
                        let q = if *bits == 8 { block[j] } else { (block[j / 2] >> (4 * (j % 2))) & 0xF };
                        out.push((q as f32 - zp) * s);
                    }
                }
                out
            }
        }
    }
}

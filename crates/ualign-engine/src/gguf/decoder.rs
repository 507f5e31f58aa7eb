//! A GGUF decoder-only transformer (architectures `llama` — Llama 2/3, Mistral, TinyLlama,
//! SmolLM — and `qwen2`) as an ONNX graph of ONNX Runtime's fused operators, built in
//! memory: `SimplifiedLayerNormalization` / `SkipSimplifiedLayerNormalization` for the
//! RMS norms and residual adds, `MatMulNBits` for every weight matrix it can take exactly
//! (see [`super::linear`]), `GroupQueryAttention` with its own rotary embedding for
//! attention and the KV cache.
//!
//! The graph has onnxruntime-genai's layout: inputs `input_ids`, `attention_mask` and
//! `past_key_values.{i}.key|value` ([batch, kv_heads, past, head_dim]); outputs `logits`
//! (the last position's only, [batch, 1, vocab]) and `present.{i}.key|value`. Positions
//! come from the attention mask, so there is no `position_ids`.
//!
//! llama.cpp's converter permutes the rows of a `llama` model's Q and K so that its rotary
//! embedding rotates neighbouring pairs: that is `rotary_interleaved = 1`, so the weights
//! are used as stored. `qwen2` files are not permuted (rotary halves, `rotary_interleaved = 0`).
//! Tied embeddings are one initializer, read by the embedding lookup and the output matmul.

use serde_json::{Value, json};

use super::linear::Linear;
use super::{Gguf, GgufError, TensorInfo};
use crate::decoding::Precision;
use crate::onnx::{Attr, Dim, Graph, proto::dtype};

const MS: &str = "com.microsoft";

/// Positions the rotary caches cover at most (a model's longer context is cut to this).
pub(crate) const MAX_POSITIONS: usize = 32768;

/// The graph builder's version, part of every GGUF model's hash: a change to the graph
/// that could change a sample changes it.
pub(crate) const GRAPH_VERSION: &str = "ualign-gguf-graph-1";

/// The version of what fast precision changes in the graph (int8 activations, the 8-bit
/// output matrix), part of a fast model's hash: a change to the fast path changes it
/// without changing every exact model's hash.
pub(crate) const FAST_GRAPH_VERSION: &str = "fast-2";

/// The architectures the builder handles.
pub(crate) const ARCHITECTURES: &[&str] = &["llama", "qwen2"];

/// A model's shape, from the GGUF's `{arch}.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    pub(crate) name: String,
    pub(crate) layers: usize,
    pub(crate) hidden: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) ffn: usize,
    pub(crate) eps: f32,
    pub(crate) rope_theta: f64,
    /// Linear RoPE scaling: positions are divided by this (1 when none).
    pub(crate) rope_scale: f64,
    pub(crate) interleaved: bool,
    /// Positions the graph takes: the model's context, at most [`MAX_POSITIONS`].
    pub(crate) positions: usize,
    pub(crate) context: usize,
    pub(crate) vocab: usize,
}

fn unsupported(g: &Gguf, what: String) -> GgufError {
    GgufError::Unsupported { path: g.path.clone(), what }
}

fn invalid(g: &Gguf, what: String) -> GgufError {
    GgufError::Invalid { path: g.path.clone(), what }
}

impl Arch {
    pub fn read(g: &Gguf) -> Result<Self, GgufError> {
        let name = g
            .meta("general.architecture")
            .and_then(|m| m.as_str())
            .ok_or_else(|| invalid(g, "no `general.architecture` in its metadata".into()))?
            .to_string();
        if !ARCHITECTURES.contains(&name.as_str()) {
            return Err(unsupported(
                g,
                format!("architecture `{name}` is not supported (ualign builds {})", ARCHITECTURES.join(" and ")),
            ));
        }
        let key = |k: &str| format!("{name}.{k}");
        let opt = |k: &str| -> Result<Option<u64>, GgufError> {
            match g.meta(&key(k)) {
                None => Ok(None),
                Some(m) => m.as_u64().filter(|&v| v > 0).map(Some).ok_or_else(|| {
                    unsupported(g, format!("metadata `{}` is {m:?}; ualign needs one positive whole number", key(k)))
                }),
            }
        };
        let need = |k: &str| opt(k)?.ok_or_else(|| invalid(g, format!("no `{}` in its metadata", key(k))));
        let float = |k: &str| g.meta(&key(k)).and_then(|m| m.as_f64());
        let (layers, hidden, heads) = (need("block_count")?, need("embedding_length")?, need("attention.head_count")?);
        let kv_heads = opt("attention.head_count_kv")?.unwrap_or(heads);
        let head_dim = opt("attention.key_length")?.unwrap_or(hidden / heads);
        if heads % kv_heads != 0 {
            return Err(invalid(g, format!("{heads} attention heads do not divide into {kv_heads} key-value heads")));
        }
        if let Some(rot) = opt("rope.dimension_count")?
            && rot != head_dim
        {
            return Err(unsupported(g, format!("rotary embedding over {rot} of {head_dim} head dimensions")));
        }
        let rope_scale = match g.meta(&key("rope.scaling.type")).and_then(|m| m.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => float("rope.scaling.factor").unwrap_or(1.0),
            Some(other) => return Err(unsupported(g, format!("RoPE scaling `{other}` (none and linear are)"))),
        };
        let eps = float("attention.layer_norm_rms_epsilon")
            .ok_or_else(|| invalid(g, format!("no `{}` in its metadata", key("attention.layer_norm_rms_epsilon"))))?;
        let embd = g.tensor("token_embd.weight").ok_or_else(|| GgufError::MissingTensor {
            path: g.path.clone(),
            name: "token_embd.weight".into(),
            arch: name.clone(),
        })?;
        let vocab = embd.dims.get(1).copied().unwrap_or(0);
        let context = need("context_length")? as usize;
        let ffn = need("feed_forward_length")? as usize;
        let rope_theta = float("rope.freq_base").unwrap_or(10000.0);
        Ok(Self {
            interleaved: name == "llama",
            name: name.clone(),
            layers: layers as usize,
            hidden: hidden as usize,
            heads: heads as usize,
            kv_heads: kv_heads as usize,
            head_dim: head_dim as usize,
            ffn,
            eps: eps as f32,
            rope_theta,
            rope_scale,
            positions: context.min(MAX_POSITIONS),
            context,
            vocab: vocab as usize,
        })
    }

    /// The model as a Hugging Face `config.json` says it (what the engine reads from one).
    pub(crate) fn config(&self, g: &Gguf, tied: bool) -> Value {
        let id = |k: &str| g.meta(&format!("tokenizer.ggml.{k}")).and_then(|m| m.as_u64());
        let model_type = self.name.as_str();
        json!({
            "architectures": [if model_type == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
            "model_type": model_type,
            "num_hidden_layers": self.layers,
            "hidden_size": self.hidden,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.ffn,
            "max_position_embeddings": self.positions,
            "rms_norm_eps": self.eps,
            "rope_theta": self.rope_theta,
            "vocab_size": self.vocab,
            "tie_word_embeddings": tied,
            "bos_token_id": id("bos_token_id"),
            "eos_token_id": id("eos_token_id"),
            "torch_dtype": "float32",
            "ualign_graph": GRAPH_VERSION,
        })
    }
}

/// A built model: its graph, its weights (the graph's external data), its config, and
/// what the researcher should be told (matrices that had to be dequantised).
pub(crate) struct Built {
    pub(crate) arch: Arch,
    pub(crate) graph: Vec<u8>,
    pub(crate) weights: Vec<u8>,
    pub(crate) config: Value,
    pub(crate) notices: Vec<String>,
}

/// A weight matrix's initializers in the graph.
#[derive(Clone)]
enum Placed {
    /// `mins` as [k/32, n] for the block sums' matmul, and as [n, k/32] for gathering rows.
    /// Per plane: its values and scales.
    NBits { n: usize, k: usize, planes: Vec<(String, String)>, mins: Option<(String, String)> },
    /// [k, n] for `MatMul`, or [n, k] (`rows`) for `Gather` and `Gemm`'s transB.
    Dense { k: usize, w: String, rows: bool },
}

struct Builder<'a> {
    g: &'a Gguf,
    a: &'a Arch,
    graph: Graph,
    /// The embedding table, when the output matmul shares it.
    tied: Option<Placed>,
    /// Dequantised matrices, by type: how many, and the first one's name.
    dequantised: Vec<(String, usize, String)>,
    /// The 32-value block sums of a matmul's input, by input, once each.
    block_sums: std::collections::HashMap<String, String>,
    /// Fast: every `MatMulNBits` at `accuracy_level = 4` (int8 activations).
    precision: Precision,
}

/// Builds the graph of the model in `g`, its `MatMulNBits` nodes at `precision`.
pub(crate) fn build(g: &Gguf, precision: Precision) -> Result<Built, GgufError> {
    let a = Arch::read(g)?;
    let mut b = Builder {
        g,
        a: &a,
        graph: Graph::default(),
        tied: None,
        dequantised: Vec::new(),
        block_sums: Default::default(),
        precision,
    };
    b.io();
    let (x, tied) = b.embed()?;
    let (seqlens, total) = b.positions();
    let (cos, sin) = b.rotary()?;
    let mut residual = x;
    let mut delta: Option<String> = None;
    for i in 0..a.layers {
        let p = format!("blk.{i}");
        let (h, r) = b.norm(&residual, delta.as_deref(), &format!("{p}.attn_norm.weight"))?;
        let att = b.attention(i, &h, [&seqlens, &total, &cos, &sin])?;
        let (h2, r2) = b.norm(&r, Some(&att), &format!("{p}.ffn_norm.weight"))?;
        delta = Some(b.mlp(&p, &h2)?);
        residual = r2;
    }
    let (out, _) = b.norm(&residual, delta.as_deref(), "output_norm.weight")?;
    b.logits(&out)?;
    let notices = b
        .dequantised
        .iter()
        .map(|(ty, n, first)| {
            format!(
                "{}: {n} weight matrices of type {ty} (`{first}`, …) have no exact MatMulNBits form and run dequantised to fp32 (exact, but slower and larger)",
                g.path.display()
            )
        })
        .collect();
    let config = a.config(g, tied);
    let name = g.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut metadata = vec![
        ("source".to_string(), g.path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
        ("ualign_graph".to_string(), GRAPH_VERSION.to_string()),
    ];
    // Exact graphs stay byte for byte what they were (a converted folder's hash with them).
    if !precision.is_exact() {
        metadata.push(("ualign_precision".to_string(), format!("{} {FAST_GRAPH_VERSION}", precision.as_str())));
    }
    let (graph, weights) = b.graph.finish(&name, metadata);
    Ok(Built { arch: a, graph, weights, config, notices })
}

/// `x` times an 8-bit matrix, int8 activations: the fast output matmul.
fn bytes_matmul(g: &mut Graph, x: &str, m: super::linear::Bytes, n: usize, k: usize) -> String {
    let b = g.u8s("lm_head.q8", &[n as i64, (k / 32) as i64, 32], &m.b);
    let scales = g.f32s("lm_head.scales8", &[n as i64, (k / 32) as i64], &m.scales);
    let attrs = vec![
        ("K", Attr::Int(k as i64)),
        ("N", Attr::Int(n as i64)),
        ("bits", Attr::Int(8)),
        ("block_size", Attr::Int(32)),
        ("accuracy_level", Attr::Int(4)),
    ];
    g.op_in(MS, "MatMulNBits", &[x, &b, &scales], attrs, "lm_head")
}

/// `m` ([rows, cols]) transposed.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// MatMulNBits' 4-bit values of every byte: its low nibble, and its high one.
fn nibble_tables() -> (Vec<f32>, Vec<f32>) {
    ((0..256).map(|b| (b & 0xF) as f32).collect(), (0..256).map(|b| (b >> 4) as f32).collect())
}

impl Builder<'_> {
    fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.g.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            path: self.g.path.clone(),
            name: name.to_string(),
            arch: self.a.name.clone(),
        })
    }

    /// Tensor `name` as a matrix of `n` outputs over `k` inputs.
    fn matrix(&mut self, name: &str, n: usize, k: usize) -> Result<Linear, GgufError> {
        let t = self.tensor(name)?;
        if t.dims != [k as u64, n as u64] {
            return Err(invalid(
                self.g,
                format!(
                    "tensor `{name}` has dimensions {:?}; a {} model of this size needs [{k}, {n}]",
                    t.dims, self.a.name
                ),
            ));
        }
        match Linear::of(t, self.g.data(t)) {
            Ok(l) => Ok(l),
            Err((l @ Linear::Dense { n: 1.., .. }, _)) => {
                let ty = t.ty.to_string();
                match self.dequantised.iter_mut().find(|(x, ..)| *x == ty) {
                    Some(entry) => entry.1 += 1,
                    None => self.dequantised.push((ty, 1, name.to_string())),
                }
                Ok(l)
            }
            Err((_, why)) => Err(unsupported(self.g, why)),
        }
    }

    /// Tensor `name` as `len` f32 values (norm weights, biases).
    fn values(&self, name: &str, len: usize) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor(name)?;
        if t.elements() != len as u64 {
            return Err(invalid(self.g, format!("tensor `{name}` has {} values; expected {len}", t.elements())));
        }
        self.g.dequantize(t)
    }

    /// `name` as an initializer of `len` f32 values.
    fn vector(&mut self, name: &str, len: usize) -> Result<String, GgufError> {
        let v = self.values(name, len)?;
        Ok(self.graph.f32s(name, &[len as i64], &v))
    }

    /// The matrix's initializers.
    fn place(&mut self, l: &Linear, name: &str, rows: bool) -> Placed {
        match l {
            Linear::NBits { n, k, planes, mins } => {
                let blocks = k / 32;
                let planes = planes
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        (
                            self.graph.u8s(&format!("{name}.q{i}"), &[*n as i64, blocks as i64, 16], &p.b),
                            self.graph.f32s(&format!("{name}.scales{i}"), &[*n as i64, blocks as i64], &p.scales),
                        )
                    })
                    .collect();
                let mins = mins.as_ref().map(|m| {
                    let t = transpose(m, *n, blocks);
                    (
                        self.graph.f32s(&format!("{name}.mins_t"), &[blocks as i64, *n as i64], &t),
                        // Rows are gathered only from the embedding table.
                        if rows {
                            self.graph.f32s(&format!("{name}.mins"), &[*n as i64, blocks as i64], m)
                        } else {
                            String::new()
                        },
                    )
                });
                Placed::NBits { n: *n, k: *k, planes, mins }
            }
            Linear::Dense { n, k, w } if rows => {
                Placed::Dense { k: *k, w: self.graph.f32s(name, &[*n as i64, *k as i64], w), rows }
            }
            Linear::Dense { n, k, w } => {
                Placed::Dense { k: *k, w: self.graph.f32s(name, &[*k as i64, *n as i64], &transpose(w, *n, *k)), rows }
            }
        }
    }

    /// The sums of `x`'s 32-value blocks along its last axis, [.., k/32].
    fn block_sums(&mut self, x: &str, k: usize) -> String {
        if let Some(s) = self.block_sums.get(x) {
            return s.clone();
        }
        let shape = self.graph.i64s(&format!("{x}.blocks"), &[4], &[0, 0, (k / 32) as i64, 32]);
        let blocks = self.graph.op("Reshape", &[x, &shape], vec![], "blocks");
        let last = self.graph.i64s(&format!("{x}.last_axis"), &[1], &[-1]);
        let sums = self.graph.op("ReduceSum", &[&blocks, &last], vec![("keepdims", Attr::Int(0))], "block_sums");
        self.block_sums.insert(x.to_string(), sums.clone());
        sums
    }

    /// x·Wᵀ for x of [batch, sequence, k] (for a `rows` matrix, [batch, 1, k]).
    fn matmul(&mut self, x: &str, p: &Placed, hint: &str) -> String {
        match p {
            Placed::NBits { n, k, planes, mins } => {
                let mut y: Option<String> = None;
                for (b, scales) in planes {
                    let mut attrs = vec![
                        ("K", Attr::Int(*k as i64)),
                        ("N", Attr::Int(*n as i64)),
                        ("bits", Attr::Int(4)),
                        ("block_size", Attr::Int(32)),
                    ];
                    if self.precision == Precision::Fast {
                        // int8 activations: ONNX Runtime's fast CPU kernels (its CUDA
                        // kernels ignore the attribute).
                        attrs.push(("accuracy_level", Attr::Int(4)));
                    }
                    let term = self.graph.op_in(MS, "MatMulNBits", &[x, b, scales], attrs, hint);
                    y = Some(match y {
                        None => term,
                        Some(sum) => self.graph.op("Add", &[&sum, &term], vec![], hint),
                    });
                }
                let y = y.expect("a matrix has a plane");
                match mins {
                    None => y,
                    Some((mins_t, _)) => {
                        let sums = self.block_sums(x, *k);
                        let offset = self.graph.op("MatMul", &[&sums, mins_t], vec![], hint);
                        self.graph.op("Add", &[&y, &offset], vec![], hint)
                    }
                }
            }
            Placed::Dense { w, rows: false, .. } => self.graph.op("MatMul", &[x, w], vec![], hint),
            Placed::Dense { k, w, rows: true, .. } => {
                let shape = self.graph.i64s(&format!("{hint}.shape"), &[2], &[-1, *k as i64]);
                let flat = self.graph.op("Reshape", &[x, &shape], vec![], hint);
                let y = self.graph.op("Gemm", &[&flat, w], vec![("transB", Attr::Int(1))], hint);
                let axes = self.graph.i64s(&format!("{hint}.axes"), &[1], &[1]);
                self.graph.op("Unsqueeze", &[&y, &axes], vec![], hint)
            }
        }
    }

    fn io(&mut self) {
        let a = self.a;
        let g = &mut self.graph;
        g.input("input_ids", dtype::INT64, &[Dim::Named("batch"), Dim::Named("sequence")]);
        g.input("attention_mask", dtype::INT64, &[Dim::Named("batch"), Dim::Named("total_sequence")]);
        g.output("logits", dtype::FLOAT, &[Dim::Named("batch"), Dim::Fixed(1), Dim::Fixed(a.vocab as i64)]);
        let kv =
            |len| [Dim::Named("batch"), Dim::Fixed(a.kv_heads as i64), Dim::Named(len), Dim::Fixed(a.head_dim as i64)];
        for i in 0..a.layers {
            for w in ["key", "value"] {
                g.input(&format!("past_key_values.{i}.{w}"), dtype::FLOAT, &kv("past_sequence"));
                g.output(&format!("present.{i}.{w}"), dtype::FLOAT, &kv("total_sequence"));
            }
        }
    }

    /// The token embeddings of `input_ids`, [batch, sequence, hidden], and whether the
    /// output matmul shares the table (the file has no `output.weight`).
    fn embed(&mut self) -> Result<(String, bool), GgufError> {
        let (v, h) = (self.a.vocab, self.a.hidden);
        let tied = self.g.tensor("output.weight").is_none();
        let table = self.matrix("token_embd.weight", v, h)?;
        let placed = self.place(&table, "token_embd.weight", true);
        drop(table);
        let x = match &placed {
            Placed::Dense { w, .. } => {
                self.graph.op("Gather", &[w, "input_ids"], vec![("axis", Attr::Int(0))], "embed")
            }
            Placed::NBits { .. } => self.gather_nbits(&placed),
        };
        if tied {
            self.tied = Some(placed);
        }
        Ok((x, tied))
    }

    /// The rows of `input_ids` of a MatMulNBits matrix, dequantised in the graph: only the
    /// rows asked for are ever expanded, so a tied table is stored once, quantised (at
    /// fast precision a Q8_0 output matmul keeps an 8-bit copy of its own beside it).
    fn gather_nbits(&mut self, p: &Placed) -> String {
        let Placed::NBits { k, planes, mins, .. } = p else { unreachable!() };
        let g = &mut self.graph;
        let axis0 = || vec![("axis", Attr::Int(0))];
        let last = g.i64s("embed.last_axis", &[1], &[-1]);
        let (lo, hi) = nibble_tables();
        let (lo, hi) = (g.f32s("embed.low_nibble", &[256], &lo), g.f32s("embed.high_nibble", &[256], &hi));
        let shape = g.i64s("embed.block_shape", &[4], &[0, 0, 0, 32]);
        let mut sum: Option<String> = None;
        for (b, scales) in planes {
            let rows = g.op("Gather", &[b, "input_ids"], axis0(), "embed_q");
            let idx = g.op("Cast", &[&rows], vec![("to", Attr::Int(dtype::INT64 as i64))], "embed_idx");
            let lo = g.op("Gather", &[&lo, &idx], axis0(), "embed_lo");
            let hi = g.op("Gather", &[&hi, &idx], axis0(), "embed_hi");
            let lo = g.op("Unsqueeze", &[&lo, &last], vec![], "embed_lo");
            let hi = g.op("Unsqueeze", &[&hi, &last], vec![], "embed_hi");
            let pairs = g.op("Concat", &[&lo, &hi], vec![("axis", Attr::Int(-1))], "embed_pairs");
            let values = g.op("Reshape", &[&pairs, &shape], vec![], "embed_values");
            let zero = g.f32s(&format!("{b}.zero_point"), &[], &[8.0]);
            let s = g.op("Gather", &[scales, "input_ids"], axis0(), "embed_scale");
            let s = g.op("Unsqueeze", &[&s, &last], vec![], "embed_scale");
            let centred = g.op("Sub", &[&values, &zero], vec![], "embed_centred");
            let term = g.op("Mul", &[&centred, &s], vec![], "embed_blocks");
            sum = Some(match sum {
                None => term,
                Some(acc) => g.op("Add", &[&acc, &term], vec![], "embed_blocks"),
            });
        }
        let mut w = sum.expect("a matrix has a plane");
        if let Some((_, mins)) = mins {
            let m = g.op("Gather", &[mins, "input_ids"], axis0(), "embed_min");
            let m = g.op("Unsqueeze", &[&m, &last], vec![], "embed_min");
            w = g.op("Add", &[&w, &m], vec![], "embed_blocks");
        }
        let shape = g.i64s("embed.shape", &[3], &[0, 0, *k as i64]);
        g.op("Reshape", &[&w, &shape], vec![], "embed")
    }

    /// `seqlens_k` (each row's total length − 1, int32) and `total_sequence_length` (an
    /// int32 scalar) for GroupQueryAttention, from the attention mask.
    fn positions(&mut self) -> (String, String) {
        let g = &mut self.graph;
        let one = g.i64s("one", &[1], &[1]);
        let sum = g.op("ReduceSum", &["attention_mask", &one], vec![("keepdims", Attr::Int(0))], "mask_sum");
        let before = g.op("Sub", &[&sum, &one], vec![], "seqlens_k");
        let seqlens = g.op("Cast", &[&before], vec![("to", Attr::Int(dtype::INT32 as i64))], "seqlens_k");
        let shape = g.op("Shape", &["attention_mask"], vec![], "mask_shape");
        let idx = g.i64s("index_1", &[], &[1]);
        let total = g.op("Gather", &[&shape, &idx], vec![("axis", Attr::Int(0))], "total");
        let total = g.op("Cast", &[&total], vec![("to", Attr::Int(dtype::INT32 as i64))], "total_sequence_length");
        (seqlens, total)
    }

    /// The rotary caches, [positions, head_dim / 2], computed in f32 as transformers does;
    /// Llama 3's per-frequency factors (`rope_freqs.weight`) divide the frequencies.
    fn rotary(&mut self) -> Result<(String, String), GgufError> {
        let (a, half) = (self.a, self.a.head_dim / 2);
        let factors = match self.g.tensor("rope_freqs.weight") {
            Some(_) => self.values("rope_freqs.weight", half)?,
            None => vec![1.0; half],
        };
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / (a.rope_theta as f32).powf((2 * i) as f32 / a.head_dim as f32) / factors[i])
            .collect();
        let (mut cos, mut sin) = (Vec::with_capacity(a.positions * half), Vec::with_capacity(a.positions * half));
        for pos in 0..a.positions {
            let p = (pos as f64 / a.rope_scale) as f32;
            for f in &inv {
                cos.push((p * f).cos());
                sin.push((p * f).sin());
            }
        }
        let dims = [a.positions as i64, half as i64];
        Ok((self.graph.f32s("rotary.cos", &dims, &cos), self.graph.f32s("rotary.sin", &dims, &sin)))
    }

    /// RMS norm of `x` (+ `delta`, when given, fused with the residual add): the normed
    /// values and the residual stream.
    fn norm(&mut self, x: &str, delta: Option<&str>, weight: &str) -> Result<(String, String), GgufError> {
        let w = self.vector(weight, self.a.hidden)?;
        let eps = ("epsilon", Attr::Float(self.a.eps));
        let g = &mut self.graph;
        Ok(match delta {
            None => {
                let attrs = vec![("axis", Attr::Int(-1)), eps, ("stash_type", Attr::Int(1))];
                (g.op("SimplifiedLayerNormalization", &[x, &w], attrs, "norm"), x.to_string())
            }
            Some(d) => {
                let (out, sum) = (g.name("norm"), g.name("residual"));
                g.node("SkipSimplifiedLayerNormalization", MS, &[x, d, &w], &[&out, "", "", &sum], vec![eps]);
                (out, sum)
            }
        })
    }

    /// The matrices `names` (each of `n` outputs over `k` inputs) applied to `x`, fused
    /// into one matmul when their forms allow (their outputs concatenated), with biases.
    fn project(&mut self, x: &str, names: &[(&str, usize)], k: usize, fused: &str) -> Result<Vec<String>, GgufError> {
        let mut mats = Vec::with_capacity(names.len());
        let mut biases = Vec::with_capacity(names.len());
        for (name, n) in names {
            mats.push(self.matrix(&format!("{name}.weight"), *n, k)?);
            biases.push(self.bias(&format!("{name}.bias"), *n)?);
        }
        let any_bias = biases.iter().any(Option::is_some);
        let joined = Linear::concat(&mats.iter().collect::<Vec<_>>());
        let mut outs = Vec::new();
        let groups: Vec<(Linear, Vec<f32>, String)> = match joined {
            Some(l) => {
                drop(mats);
                let bias =
                    biases.iter().zip(names).flat_map(|(b, (_, n))| b.clone().unwrap_or(vec![0.0; *n])).collect();
                vec![(l, bias, fused.to_string())]
            }
            None => mats
                .into_iter()
                .zip(biases.iter().zip(names))
                .map(|(l, (b, (name, n)))| (l, b.clone().unwrap_or(vec![0.0; *n]), name.to_string()))
                .collect(),
        };
        for (l, bias, name) in groups {
            let placed = self.place(&l, &name, false);
            drop(l);
            let mut y = self.matmul(x, &placed, &name);
            if any_bias {
                let b = self.graph.f32s(&format!("{name}.bias"), &[bias.len() as i64], &bias);
                y = self.graph.op("Add", &[&y, &b], vec![], &name);
            }
            outs.push(y);
        }
        Ok(outs)
    }

    /// A bias when the file has one (`qwen2`'s Q, K and V).
    fn bias(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, GgufError> {
        match self.g.tensor(name) {
            None => Ok(None),
            Some(_) => self.values(name, len).map(Some),
        }
    }

    /// Layer `i`'s attention over the normed `h`: its output projection's result.
    fn attention(&mut self, i: usize, h: &str, [seqlens, total, cos, sin]: [&str; 4]) -> Result<String, GgufError> {
        let a = self.a;
        let (q, kv) = (a.heads * a.head_dim, a.kv_heads * a.head_dim);
        let p = format!("blk.{i}");
        let names = [(format!("{p}.attn_q"), q), (format!("{p}.attn_k"), kv), (format!("{p}.attn_v"), kv)];
        let names: Vec<(&str, usize)> = names.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let qkv = self.project(h, &names, a.hidden, &format!("{p}.attn_qkv"))?;
        let (q_in, k_in, v_in) = match &qkv[..] {
            [packed] => (packed.as_str(), "", ""),
            [q, k, v] => (q.as_str(), k.as_str(), v.as_str()),
            _ => unreachable!("one fused or three projections"),
        };
        let (past_k, past_v) = (format!("past_key_values.{i}.key"), format!("past_key_values.{i}.value"));
        let (present_k, present_v) = (format!("present.{i}.key"), format!("present.{i}.value"));
        let out = self.graph.name("attention");
        let attrs = vec![
            ("num_heads", Attr::Int(a.heads as i64)),
            ("kv_num_heads", Attr::Int(a.kv_heads as i64)),
            ("do_rotary", Attr::Int(1)),
            ("rotary_interleaved", Attr::Int(a.interleaved as i64)),
            ("scale", Attr::Float(1.0 / (a.head_dim as f32).sqrt())),
        ];
        let inputs = [q_in, k_in, v_in, &past_k, &past_v, seqlens, total, cos, sin];
        self.graph.node("GroupQueryAttention", MS, &inputs, &[&out, &present_k, &present_v], attrs);
        let o = self.matrix(&format!("{p}.attn_output.weight"), a.hidden, q)?;
        let placed = self.place(&o, &format!("{p}.attn_output.weight"), false);
        Ok(self.matmul(&out, &placed, &format!("{p}.attn_output")))
    }

    /// Layer `p`'s gated MLP (SwiGLU) over the normed `h`.
    fn mlp(&mut self, p: &str, h: &str) -> Result<String, GgufError> {
        let (hidden, ffn) = (self.a.hidden, self.a.ffn);
        let (gate, up) = (format!("{p}.ffn_gate"), format!("{p}.ffn_up"));
        let gu = self.project(h, &[(&gate, ffn), (&up, ffn)], hidden, &format!("{p}.ffn_gate_up"))?;
        let (g_out, u_out) = match &gu[..] {
            [fused] => {
                let split = self.graph.i64s(&format!("{p}.ffn_split"), &[2], &[ffn as i64, ffn as i64]);
                let (g_out, u_out) = (self.graph.name("gate"), self.graph.name("up"));
                self.graph.node("Split", "", &[fused, &split], &[&g_out, &u_out], vec![("axis", Attr::Int(-1))]);
                (g_out, u_out)
            }
            [g_out, u_out] => (g_out.clone(), u_out.clone()),
            _ => unreachable!("one fused or two projections"),
        };
        let sig = self.graph.op("Sigmoid", &[&g_out], vec![], "sigmoid");
        let silu = self.graph.op("Mul", &[&g_out, &sig], vec![], "silu");
        let m = self.graph.op("Mul", &[&silu, &u_out], vec![], "gated");
        let down = self.matrix(&format!("{p}.ffn_down.weight"), hidden, ffn)?;
        let placed = self.place(&down, &format!("{p}.ffn_down.weight"), false);
        Ok(self.matmul(&m, &placed, &format!("{p}.ffn_down")))
    }

    /// At fast precision, a Q8_0 output matrix (or the tied embedding) as one 8-bit
    /// `MatMulNBits` instead of two 4-bit planes: the same values (exact in both forms),
    /// one matmul instead of two. At exact precision ONNX Runtime dequantises an 8-bit
    /// matrix on every call (measured 27× slower), so the planes stay.
    fn output_bytes(&self) -> Result<Option<super::linear::Bytes>, GgufError> {
        if self.precision.is_exact() {
            return Ok(None);
        }
        let name = if self.g.tensor("output.weight").is_some() { "output.weight" } else { "token_embd.weight" };
        let t = self.tensor(name)?;
        Ok(super::linear::Bytes::q8_0(t, self.g.data(t), self.a.vocab, self.a.hidden))
    }

    /// The last position's logits, from the final normed states.
    fn logits(&mut self, out: &str) -> Result<(), GgufError> {
        let g = &mut self.graph;
        let starts = g.i64s("last.starts", &[1], &[-1]);
        let ends = g.i64s("last.ends", &[1], &[i64::MAX]);
        let axes = g.i64s("last.axes", &[1], &[1]);
        let last = g.op("Slice", &[out, &starts, &ends, &axes], vec![], "last");
        let y = match (self.output_bytes()?, self.tied.take()) {
            (Some(bytes), _) => bytes_matmul(&mut self.graph, &last, bytes, self.a.vocab, self.a.hidden),
            (None, Some(tied)) => self.matmul(&last, &tied, "lm_head"),
            (None, None) => {
                let m = self.matrix("output.weight", self.a.vocab, self.a.hidden)?;
                let placed = self.place(&m, "output.weight", true);
                self.matmul(&last, &placed, "lm_head")
            }
        };
        self.graph.node("Identity", "", &[&y], &["logits"], vec![]);
        Ok(())
    }
}

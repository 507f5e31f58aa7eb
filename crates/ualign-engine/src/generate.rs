//! The k-sample loop. The prompt is prefilled once at batch 1; its KV cache is copied into
//! k rows; all rows decode together, one batched `Session::run` per step; a finished row
//! leaves the batch (its KV rows are dropped) so it stops costing work; each step's
//! `present.*` outputs are moved, not copied, into the next step's `past_key_values.*`.
//! On CUDA the session runs through an I/O binding: `present.*` are bound to device
//! memory, so the KV cache stays on the GPU from step to step, and only the logits are
//! bound to host memory (a row leaving the batch brings the cache to the host once, to drop
//! its rows). Every row samples with its own RNG seeded from (study seed, prompt, policy, sample
//! index), so a sample does not depend on k or on which rows share its batch.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use half::f16;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue};
use ort::value::{DynTensorValueType, DynValue, Tensor};

use crate::decoding::Decoding;
use crate::error::EngineError;
use crate::model::{KvType, ModelFolder, Signature};
use crate::runtime::ProviderUsed;
use crate::sampler::{RowSampler, SamplingParams};
use crate::template;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Eos,
    Length,
    Stop,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Length => "length",
            FinishReason::Stop => "stop",
        }
    }
}

/// Which sample of the pool a row produces, and its seed.
#[derive(Debug, Clone, Copy)]
pub struct SampleSpec {
    pub index: u32,
    pub seed: u64,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub params: SamplingParams,
    pub max_new_tokens: u32,
    pub stop: Vec<String>,
    /// Decode exactly max_new_tokens (benchmarks, golden checks).
    pub ignore_eos: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Sample {
    pub index: u32,
    pub seed: u64,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Sum of the raw model's log-probabilities of the generated tokens (over the ids the
    /// tokenizer can decode: the extra ids of a padded vocabulary are no text at all).
    pub logprob: f64,
}

/// Timings of one pool.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PoolTiming {
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Time spent inside `Session::run` during decoding.
    pub decode_run_ms: f64,
    pub decode_steps: u32,
    pub new_tokens: u64,
}

impl PoolTiming {
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_ms > 0.0 { self.new_tokens as f64 / (self.decode_ms / 1000.0) } else { 0.0 }
    }
}

/// A loaded model, ready to sample.
pub struct Generator {
    pub(crate) session: Session,
    pub signature: Signature,
    pub folder: ModelFolder,
    pub provider: ProviderUsed,
    max_positions: Option<usize>,
    /// Set when runs go through an I/O binding: where `present.*` live between steps, and
    /// host memory for the logits.
    bound: Option<Bound>,
    /// The token ids that may be sampled.
    decodable: Decodable,
    /// What the user should be told about the folder (missing files, a short tokenizer).
    pub notices: Vec<String>,
    /// The day a chat template's `strftime_now` sees: today when loaded; a study's pools
    /// use the day the study was recorded, so its samples never depend on the clock.
    template_day: chrono::NaiveDate,
    /// How the GGUF graph's matrices were built ([`crate::load_at`]): the graph's own, so
    /// never set apart from it (the model hash is derived from it).
    pub(crate) precision: crate::Precision,
}

/// The ids a sample may contain: those the tokenizer can decode, and the end-of-sequence
/// ids. Models often pad their vocabulary (to a multiple of 64, say) beyond the tokenizer;
/// an id the tokenizer cannot decode would silently vanish from the text.
#[derive(Debug, Clone)]
struct Decodable {
    /// Ids from `len` up are never sampled.
    len: usize,
    /// Ids below `len` that are never sampled either.
    holes: Vec<usize>,
}

impl Decodable {
    fn of(tokenizer: &tokenizers::Tokenizer, eos: &[u32]) -> Self {
        let ids: Vec<usize> =
            tokenizer.get_vocab(true).into_values().chain(eos.iter().copied()).map(|i| i as usize).collect();
        let len = ids.iter().max().map_or(0, |m| m + 1);
        let mut present = vec![false; len];
        for &i in &ids {
            present[i] = true;
        }
        Self { len, holes: (0..len).filter(|&i| !present[i]).collect() }
    }

    /// Ids that can be decoded, of the `n` the logits cover.
    fn count(&self, n: usize) -> usize {
        self.len.min(n) - self.holes.iter().filter(|&&h| h < n).count()
    }

    /// The logits restricted to decodable ids: a shorter slice, with holes at -inf (in
    /// `buf`) if there are any.
    fn apply<'a>(&self, logits: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        let kept = &logits[..self.len.min(logits.len())];
        if self.holes.is_empty() {
            return kept;
        }
        buf.clear();
        buf.extend_from_slice(kept);
        for &h in &self.holes {
            if let Some(x) = buf.get_mut(h) {
                *x = f32::NEG_INFINITY;
            }
        }
        buf
    }
}

/// The memory an I/O-bound run puts its outputs in.
struct Bound {
    kv: MemoryInfo<'static>,
    host: MemoryInfo<'static>,
}

/// One forward pass's result: the last position's logits per row, the new KV cache, and
/// the time spent inside `Session::run`.
struct Step {
    logits: Logits,
    present: Vec<DynValue>,
    run_ms: f64,
}

/// The last position's logits of every row: read in place from the output tensor when it
/// is fp32 (no copy per step), converted once when it is fp16. The tensor is [batch, n,
/// vocab] with n the positions fed, or 1 where the graph computes the last one only.
enum Logits {
    InPlace(DynValue),
    Converted(Vec<Vec<f32>>),
}

impl Logits {
    fn rows(&self) -> Result<Vec<&[f32]>, EngineError> {
        match self {
            Logits::InPlace(value) => {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(|e| EngineError::Run(e.to_string()))?;
                let (batch, n, v) = (shape[0] as usize, shape[1] as usize, shape[2] as usize);
                Ok((0..batch).map(|b| &data[(b * n + n - 1) * v..(b * n + n) * v]).collect())
            }
            Logits::Converted(rows) => Ok(rows.iter().map(Vec::as_slice).collect()),
        }
    }
}

/// Rows decoded together at most: a pool of any size decodes in batches of this many, so
/// the KV cache's memory stays bounded (64 rows of SmolLM2-135M's cache at 128 positions
/// are about 380 MB).
pub const MAX_BATCH: usize = 64;

struct Row {
    spec: SampleSpec,
    sampler: RowSampler,
    tokens: Vec<u32>,
    logprob: f64,
    finish: Option<FinishReason>,
    stop_at: Option<usize>,
    /// The row's logits with undecodable ids masked, when the tokenizer has holes.
    masked: Vec<f32>,
}

fn gather<T: ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    v: &DynValue,
    rows: &[usize],
) -> ort::Result<DynValue> {
    // A cache kept on a device comes to the host once, to drop the finished rows.
    let tensor = v.view().downcast::<DynTensorValueType>()?;
    let host;
    let v = if tensor.memory_info().is_cpu_accessible() {
        v
    } else {
        host = tensor.to(AllocationDevice::CPU, 0)?.into_dyn();
        &host
    };
    let (shape, data) = v.try_extract_tensor::<T>()?;
    let row_len: usize = shape[1..].iter().map(|&d| d as usize).product();
    let mut out = Vec::with_capacity(rows.len() * row_len);
    for &r in rows {
        out.extend_from_slice(&data[r * row_len..(r + 1) * row_len]);
    }
    let mut new_shape: Vec<i64> = shape.iter().copied().collect();
    new_shape[0] = rows.len() as i64;
    Ok(Tensor::from_array((new_shape, out))?.into_dyn())
}

impl Generator {
    pub(crate) fn new(folder: ModelFolder, session: Session, provider: ProviderUsed) -> Result<Self, EngineError> {
        let signature = Signature::read(&session, folder.model.path(), &folder.config)?;
        let tok_vocab = folder.tokenizer.get_vocab_size(true);
        if let Some(v) = signature.vocab
            && tok_vocab > v
        {
            return Err(EngineError::Folder {
                file: folder.tokenizer_file.clone(),
                problem: format!(
                    "the tokenizer has {tok_vocab} tokens but the model's logits cover {v}: tokenizer and model do not belong together"
                ),
            });
        }
        let max_positions = folder
            .config
            .get("max_position_embeddings")
            .or_else(|| folder.config.get("n_positions"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        let decodable = Decodable::of(&folder.tokenizer, &folder.eos_ids);
        let mut notices = folder.notices.clone();
        if let Some(v) = signature.vocab {
            let covered = decodable.count(v);
            // More than 1% of the logits are ids the tokenizer cannot decode.
            if covered * 100 < v * 99 {
                notices.push(format!(
                    "{}: the tokenizer decodes {covered} token ids but the model's logits cover {v}; the other {} are never sampled. Check that tokenizer.json belongs to this model",
                    folder.tokenizer_file.display(),
                    v - covered
                ));
            }
        }
        let mut generator = Self {
            session,
            signature,
            folder,
            provider,
            max_positions,
            bound: None,
            decodable,
            notices,
            template_day: chrono::Utc::now().date_naive(),
            precision: crate::Precision::Exact,
        };
        if generator.provider.name == "cuda" {
            generator.keep_kv_on(AllocationDevice::CUDA).map_err(|e| EngineError::Run(e.to_string()))?;
        }
        Ok(generator)
    }

    /// Runs every forward pass through an I/O binding with `present.*` bound to `device`
    /// memory (device 0 of it) and the logits to host memory. Set for CUDA sessions; on the
    /// CPU it binds host memory, which gives the same tokens (tested) and lets the path be
    /// checked without a GPU.
    pub fn keep_kv_on(&mut self, device: AllocationDevice<'static>) -> ort::Result<()> {
        self.bound = Some(Bound {
            kv: MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default)?,
            host: MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)?,
        });
        Ok(())
    }

    /// Whether forward passes run through an I/O binding (see [`Generator::keep_kv_on`]).
    pub fn kv_bound(&self) -> bool {
        self.bound.is_some()
    }

    fn empty_past(&self, batch: usize) -> ort::Result<DynValue> {
        let shape = vec![batch as i64, self.signature.kv_heads as i64, 0, self.signature.head_dim as i64];
        Ok(match self.signature.kv_type {
            KvType::F32 => Tensor::from_array((shape, Vec::<f32>::new()))?.into_dyn(),
            KvType::F16 => Tensor::from_array((shape, Vec::<f16>::new()))?.into_dyn(),
        })
    }

    fn gather_kv(&self, past: &[DynValue], rows: &[usize]) -> ort::Result<Vec<DynValue>> {
        past.iter()
            .map(|v| match self.signature.kv_type {
                KvType::F32 => gather::<f32>(v, rows),
                KvType::F16 => gather::<f16>(v, rows),
            })
            .collect()
    }

    /// The inputs of one forward pass, by name: ids, attention mask, positions and the
    /// cache branch where the graph has them, then each layer's past key and value.
    fn inputs(
        &self,
        ids: Vec<i64>,
        batch: usize,
        past_len: usize,
        past: Vec<DynValue>,
        first: bool,
    ) -> Result<Vec<(Cow<'static, str>, DynValue)>, EngineError> {
        let n = ids.len() / batch;
        let err = |e: ort::Error| EngineError::Run(e.to_string());
        let mut inputs: Vec<(Cow<'static, str>, DynValue)> = Vec::with_capacity(4 + past.len());
        inputs.push((
            "input_ids".into(),
            Tensor::from_array((vec![batch as i64, n as i64], ids)).map_err(err)?.into_dyn(),
        ));
        let total = past_len + n;
        inputs.push((
            "attention_mask".into(),
            Tensor::from_array((vec![batch as i64, total as i64], vec![1i64; batch * total])).map_err(err)?.into_dyn(),
        ));
        if self.signature.has_position_ids {
            let pos: Vec<i64> = (0..batch).flat_map(|_| (past_len..total).map(|p| p as i64)).collect();
            inputs.push((
                "position_ids".into(),
                Tensor::from_array((vec![batch as i64, n as i64], pos)).map_err(err)?.into_dyn(),
            ));
        }
        if self.signature.has_use_cache_branch {
            inputs.push((
                "use_cache_branch".into(),
                Tensor::from_array((vec![1i64], vec![!first])).map_err(err)?.into_dyn(),
            ));
        }
        let mut past = past.into_iter();
        for names in &self.signature.layers {
            let (Some(k), Some(v)) = (past.next(), past.next()) else {
                return Err(EngineError::Run("KV cache has fewer tensors than the graph has layers".into()));
            };
            inputs.push((names[0].clone().into(), k));
            inputs.push((names[1].clone().into(), v));
        }
        Ok(inputs)
    }

    /// One forward pass: `ids` is [batch, n] with the same n for every row; returns the
    /// last position's logits for each row and the new KV cache.
    fn forward(
        &mut self,
        ids: Vec<i64>,
        batch: usize,
        past_len: usize,
        past: Vec<DynValue>,
        first: bool,
    ) -> Result<Step, EngineError> {
        let err = |e: ort::Error| EngineError::Run(e.to_string());
        let inputs = self.inputs(ids, batch, past_len, past, first)?;
        let t_run = Instant::now();
        let binding;
        let mut outputs = if let Some(bound) = &self.bound {
            let mut b = self.session.create_binding().map_err(err)?;
            for (name, value) in &inputs {
                b.bind_input(name.as_ref(), value).map_err(err)?;
            }
            b.bind_output_to_device("logits", &bound.host).map_err(err)?;
            for names in &self.signature.layers {
                for name in &names[2..4] {
                    b.bind_output_to_device(name.as_str(), &bound.kv).map_err(err)?;
                }
            }
            binding = b;
            self.session.run_binding(&binding).map_err(err)?
        } else {
            let inputs: Vec<(Cow<'static, str>, SessionInputValue<'static>)> =
                inputs.into_iter().map(|(name, value)| (name, value.into())).collect();
            self.session.run(inputs).map_err(err)?
        };
        let run_ms = t_run.elapsed().as_secs_f64() * 1000.0;
        let logits = outputs.remove("logits").ok_or_else(|| EngineError::Run("no logits output".into()))?;
        let mut present = Vec::with_capacity(self.signature.layers.len() * 2);
        for names in &self.signature.layers {
            for name in &names[2..4] {
                present.push(outputs.remove(name).ok_or_else(|| EngineError::Run(format!("no {name} output")))?);
            }
        }
        drop(outputs);
        Ok(Step { logits: self.last_logits(logits, batch)?, present, run_ms })
    }

    /// The last position's logits of each row: the output as it is (fp32), or converted
    /// from fp16.
    fn last_logits(&self, logits: DynValue, batch: usize) -> Result<Logits, EngineError> {
        Ok(match self.signature.logits_type {
            KvType::F32 => Logits::InPlace(logits),
            KvType::F16 => {
                let (shape, data) = logits.try_extract_tensor::<f16>().map_err(|e| EngineError::Run(e.to_string()))?;
                let (n, v) = (shape[1] as usize, shape[2] as usize);
                Logits::Converted(
                    (0..batch)
                        .map(|b| data[(b * n + n - 1) * v..(b * n + n) * v].iter().map(|x| x.to_f32()).collect())
                        .collect(),
                )
            }
        })
    }

    /// Generates one pool: a sample per spec, for one prompt. The prompt is prefilled
    /// once; the rows decode in batches of at most [`MAX_BATCH`], so memory stays bounded
    /// however many samples are asked for (a sample does not depend on its batch).
    pub fn generate(
        &mut self,
        prompt_ids: &[u32],
        specs: &[SampleSpec],
        opts: &GenOptions,
        cancel: Option<&AtomicBool>,
    ) -> Result<(Vec<Sample>, PoolTiming), EngineError> {
        if prompt_ids.is_empty() {
            return Err(EngineError::Prompt("the prompt encodes to no tokens".into()));
        }
        let mut max_new = opts.max_new_tokens as usize;
        if let Some(maxp) = self.max_positions {
            if prompt_ids.len() >= maxp {
                return Err(EngineError::Prompt(format!(
                    "the prompt has {} tokens; the model takes at most {maxp} positions",
                    prompt_ids.len()
                )));
            }
            max_new = max_new.min(maxp - prompt_ids.len());
        }
        let mut timing = PoolTiming { prompt_tokens: prompt_ids.len(), ..Default::default() };
        let t0 = Instant::now();
        let (first_logits, kv1) = self.prefill(prompt_ids)?;
        timing.prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;

        let t1 = Instant::now();
        let mut out = Vec::with_capacity(specs.len());
        for batch in specs.chunks(MAX_BATCH) {
            let rows = self.decode(prompt_ids, batch, &first_logits, &kv1, opts, max_new, cancel, &mut timing)?;
            for row in rows {
                out.push(self.finish(row, &mut timing)?);
            }
        }
        timing.decode_ms = t1.elapsed().as_secs_f64() * 1000.0;
        // The first sampled token of every row came from the prefill; count it there.
        timing.new_tokens = timing.new_tokens.saturating_sub(specs.len() as u64);
        Ok((out, timing))
    }

    /// The precision the graph was built at.
    pub fn precision(&self) -> crate::Precision {
        self.precision
    }

    /// The model's hash as loaded: its folder's, and the precision it runs at.
    pub fn model_hash(&self) -> Result<String, EngineError> {
        self.folder.hash_at(self.precision)
    }

    /// The logits the model gives after `prompt_ids` and after each prefix of
    /// `continuation` (teacher forcing, one decode step per token at batch 1, as sampling
    /// runs): `continuation.len() + 1` rows, undecodable ids left as the model gives them.
    /// For comparing two graphs' distributions along the same text.
    pub fn forced_logits(&mut self, prompt_ids: &[u32], continuation: &[u32]) -> Result<Vec<Vec<f32>>, EngineError> {
        if prompt_ids.is_empty() {
            return Err(EngineError::Prompt("the prompt encodes to no tokens".into()));
        }
        let (first, mut past) = self.prefill(prompt_ids)?;
        let mut out = vec![first];
        for (i, &t) in continuation.iter().enumerate() {
            let Step { logits, present, .. } = self.forward(vec![t as i64], 1, prompt_ids.len() + i, past, false)?;
            out.push(logits.rows()?[0].to_vec());
            past = present;
        }
        Ok(out)
    }

    /// The prompt's forward pass at batch 1: its last position's logits and KV cache.
    fn prefill(&mut self, prompt_ids: &[u32]) -> Result<(Vec<f32>, Vec<DynValue>), EngineError> {
        let n_layers = self.signature.layers.len();
        let past: Vec<DynValue> = (0..2 * n_layers)
            .map(|_| self.empty_past(1))
            .collect::<ort::Result<_>>()
            .map_err(|e| EngineError::Run(e.to_string()))?;
        let ids: Vec<i64> = prompt_ids.iter().map(|&t| t as i64).collect();
        let Step { logits, present, .. } = self.forward(ids, 1, 0, past, true)?;
        let first = logits.rows()?[0].to_vec();
        Ok((first, present))
    }

    /// Decodes one batch of rows from the prefilled prompt until each has finished.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &mut self,
        prompt_ids: &[u32],
        specs: &[SampleSpec],
        first_logits: &[f32],
        kv1: &[DynValue],
        opts: &GenOptions,
        max_new: usize,
        cancel: Option<&AtomicBool>,
        timing: &mut PoolTiming,
    ) -> Result<Vec<Row>, EngineError> {
        let mut rows: Vec<Row> = specs
            .iter()
            .map(|&spec| Row {
                spec,
                sampler: RowSampler::new(spec.seed, prompt_ids),
                tokens: Vec::new(),
                logprob: 0.0,
                finish: None,
                stop_at: None,
                masked: Vec::new(),
            })
            .collect();
        for row in &mut rows {
            self.push_token(row, first_logits, opts, max_new);
        }
        // Rows still decoding, as indices into `rows`; the batch holds exactly these.
        let mut active: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].finish.is_none()).collect();
        let mut past = if active.is_empty() {
            Vec::new()
        } else {
            self.gather_kv(kv1, &vec![0; active.len()]).map_err(|e| EngineError::Run(e.to_string()))?
        };
        let mut past_len = prompt_ids.len();
        while !active.is_empty() {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(EngineError::Cancelled);
            }
            let ids: Vec<i64> = active.iter().map(|&i| *rows[i].tokens.last().unwrap_or(&0) as i64).collect();
            let Step { logits, present, run_ms } =
                self.forward(ids, active.len(), past_len, std::mem::take(&mut past), false)?;
            timing.decode_run_ms += run_ms;
            timing.decode_steps += 1;
            past_len += 1;
            let mut keep = Vec::with_capacity(active.len());
            for (slot, (&i, row_logits)) in active.iter().zip(logits.rows()?).enumerate() {
                self.push_token(&mut rows[i], row_logits, opts, max_new);
                if rows[i].finish.is_none() {
                    keep.push(slot);
                }
            }
            past = if keep.len() == active.len() {
                present
            } else if keep.is_empty() {
                Vec::new()
            } else {
                self.gather_kv(&present, &keep).map_err(|e| EngineError::Run(e.to_string()))?
            };
            active = keep.iter().map(|&s| active[s]).collect();
        }
        Ok(rows)
    }

    /// A finished row as a sample: its text without the end-of-sequence token, cut at a
    /// stop string.
    fn finish(&self, row: Row, timing: &mut PoolTiming) -> Result<Sample, EngineError> {
        let finish = row.finish.unwrap_or(FinishReason::Length);
        let text_ids: &[u32] = match finish {
            FinishReason::Eos => &row.tokens[..row.tokens.len() - 1],
            _ => &row.tokens,
        };
        timing.new_tokens += row.tokens.len() as u64;
        let mut text = self.decode_text(text_ids)?;
        if let Some(at) = row.stop_at {
            text.truncate(at);
        }
        Ok(Sample {
            index: row.spec.index,
            seed: row.spec.seed,
            token_ids: row.tokens,
            text,
            finish_reason: finish,
            logprob: row.logprob,
        })
    }

    fn push_token(&self, row: &mut Row, logits: &[f32], opts: &GenOptions, max_new: usize) {
        let logits = self.decodable.apply(logits, &mut row.masked);
        let (token, lp) = row.sampler.next(logits, &opts.params);
        row.tokens.push(token);
        row.logprob += lp;
        if !opts.ignore_eos && self.folder.eos_ids.contains(&token) {
            row.finish = Some(FinishReason::Eos);
        } else if !opts.stop.is_empty()
            && let Ok(text) = self.decode_text(&row.tokens)
            && let Some(at) = opts.stop.iter().filter_map(|s| text.find(s.as_str())).min()
        {
            row.stop_at = Some(at);
            row.finish = Some(FinishReason::Stop);
        } else if row.tokens.len() >= max_new {
            row.finish = Some(FinishReason::Length);
        }
    }

    pub(crate) fn decode_text(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.folder.tokenizer.decode(ids, true).map_err(|e| EngineError::Tokenizer(e.to_string()))
    }
}

impl Generator {
    /// Sets the day a chat template's `strftime_now` sees (see the field's comment).
    pub fn set_template_day(&mut self, day: chrono::NaiveDate) {
        self.template_day = day;
    }

    /// Token ids of a prompt: through the chat template when asked and the folder has one
    /// (the template writes its own special tokens), else the raw text with the
    /// tokenizer's own special tokens.
    pub fn encode_prompt(&self, text: &str, use_template: bool) -> Result<Vec<u32>, EngineError> {
        let tok = &self.folder.tokenizer;
        let (input, special) = match (&self.folder.chat_template, use_template) {
            (Some(t), true) => (
                template::render(
                    t,
                    text,
                    self.folder.bos_token.as_deref(),
                    self.folder.eos_token.as_deref(),
                    self.template_day,
                )?,
                false,
            ),
            _ => (text.to_string(), true),
        };
        let enc = tok.encode(input.as_str(), special).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }
}

impl From<&Decoding> for GenOptions {
    fn from(d: &Decoding) -> Self {
        GenOptions { params: d.sampling, max_new_tokens: d.max_new_tokens, stop: d.stop.clone(), ignore_eos: false }
    }
}

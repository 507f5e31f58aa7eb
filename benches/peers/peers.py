#!/usr/bin/env python3
"""Pool-generation benchmark: ualign against its peers, in one run on one machine.

    python3 benches/peers/peers.py [--runs 10] [--threads 2]

Measures one pool of k candidates x 64 new tokens (eos ignored), k in {1, 8}, sampling at
temperature 1, on the embedded default model, for:
  ualign      target/release/ualign sample --json (its own prefill + decode timing)
  ort-python  a straightforward Python onnxruntime KV-cache loop on the same model.onnx:
              the prompt batched k times, prefilled, then all rows decoded together
  ort-genai   onnxruntime-genai on the same weights, built by its model builder from the
              PyTorch checkpoint (a batch of k identical prompts; it prefills every row)
Prints a Markdown table of medians and writes benches/peers/results.json.

onnxruntime-genai's builder needs a newer transformers than the recipe pins: give it its
own virtual environment with --genai-python (see docs/PERFORMANCE.md).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets/models/fortune-llama"
sys.path.insert(0, str(ROOT / "tools/models/fortune-llama"))  # the recipe's ortloop.py
from ortloop import OrtDecoder  # noqa: E402

N_NEW = 64


def prompt_ids():
    from tokenizers import Tokenizer
    cfg = json.loads((MODEL / "tokenizer_config.json").read_text())
    assert "<|topic|>" in cfg["chat_template"]
    tok = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    return tok.encode("<|bos|><|topic|>love<|fortune|>", add_special_tokens=False).ids


def sample_rows(logits, rng):
    l = logits.astype(np.float64)
    p = np.exp(l - l.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)


def ort_python(k, threads, rng):
    dec = OrtDecoder(MODEL / "model.onnx", threads=threads)
    ids = prompt_ids()

    def run():
        t0 = time.perf_counter()
        batch = np.array([ids] * k, dtype=np.int64)
        logits, past = dec.step(batch, dec.empty_past(k), 0)
        pos = len(ids)
        tok = sample_rows(logits[:, -1], rng)
        for _ in range(N_NEW - 1):
            logits, past = dec.step(tok[:, None], past, pos)
            pos += 1
            tok = sample_rows(logits[:, -1], rng)
        return (time.perf_counter() - t0) * 1000
    return run


def ualign(k, threads, _rng):
    exe = ROOT / "target/release/ualign"

    def run():
        out = subprocess.run([str(exe), "sample", str(MODEL), "--prompt", "love", "-k", str(k), "--max-new-tokens",
                              str(N_NEW), "--ignore-eos", "--temperature", "1", "--top-k", "0", "--top-p", "1",
                              "--threads", str(threads), "--json"], check=True, capture_output=True, text=True)
        t = json.loads(out.stdout.strip().splitlines()[-1])["timing"]
        run.outside.append((t["decode_ms"] - t["decode_run_ms"]) / max(t["decode_steps"], 1))
        run.step.append(t["decode_ms"] / max(t["decode_steps"], 1))
        return t["prefill_ms"] + t["decode_ms"]
    run.outside, run.step = [], []
    return run


def ort_genai(k, threads, _rng, genai_dir):
    import onnxruntime_genai as og
    config = og.Config(str(genai_dir))
    config.clear_providers()
    model = og.Model(config)
    ids = prompt_ids()

    def run():
        t0 = time.perf_counter()
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, batch_size=k,
                                  min_length=len(ids) + N_NEW, max_length=len(ids) + N_NEW)
        gen = og.Generator(model, params)
        gen.append_tokens(np.array([ids] * k, dtype=np.int32))
        while not gen.is_done():
            gen.generate_next_token()
        return (time.perf_counter() - t0) * 1000
    return run


def build_genai(hf_dir, out_dir, genai_python):
    if (out_dir / "genai_config.json").exists():
        return None
    cmd = [genai_python, "-m", "onnxruntime_genai.models.builder", "-i", str(hf_dir), "-o", str(out_dir), "-p", "fp32",
           "-e", "cpu", "-c", str(out_dir / "cache")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return (r.stderr or r.stdout).strip().splitlines()[-1]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hf", type=Path, default=Path("/tmp/fortune-llama-work/hf"), help="PyTorch checkpoint (recipe)")
    ap.add_argument("--genai-dir", type=Path, default=Path("/tmp/fortune-llama-genai"))
    ap.add_argument("--genai-python", default=sys.executable)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    genai_error = build_genai(args.hf, args.genai_dir, args.genai_python)
    results = {"machine": os.uname().machine, "cpus": os.cpu_count(), "threads": args.threads, "runs": args.runs,
               "new_tokens": N_NEW, "genai_error": genai_error, "rows": []}
    for k in [1, 8]:
        peers = {"ualign": ualign(k, args.threads, rng), "ort-python": ort_python(k, args.threads, rng)}
        if genai_error is None:
            try:
                peers["ort-genai"] = ort_genai(k, args.threads, rng, args.genai_dir)
            except Exception as e:  # noqa: BLE001 - recorded, not hidden
                results["genai_error"] = f"{type(e).__name__}: {e}"
        times = {name: [] for name in peers}
        for name, run in peers.items():
            run()  # warm-up
        for _ in range(args.runs):  # interleaved, so drift hits every peer alike
            for name, run in peers.items():
                times[name].append(run())
        row = {"k": k, **{name: statistics.median(v) for name, v in times.items()}}
        u = peers["ualign"]
        row["ualign_outside_run_ms_per_step"] = statistics.median(u.outside)
        row["ualign_decode_step_ms"] = statistics.median(u.step)
        results["rows"].append(row)
    (ROOT / "benches/peers/results.json").write_text(json.dumps(results, indent=2) + "\n")
    names = [n for n in ["ualign", "ort-python", "ort-genai"] if n in results["rows"][0]]
    print("| k | " + " | ".join(f"{n} (ms)" for n in names) + " | ort-genai / ualign | ort-python / ualign | outside run / step |")
    print("|---|" + "---|" * (len(names) + 3))
    for r in results["rows"]:
        ratio_g = f"{r['ort-genai'] / r['ualign']:.2f}" if "ort-genai" in r else "n/a"
        frac = r["ualign_outside_run_ms_per_step"] / r["ualign_decode_step_ms"]
        print(f"| {r['k']} | " + " | ".join(f"{r[n]:.1f}" for n in names) +
              f" | {ratio_g} | {r['ort-python'] / r['ualign']:.2f} | {100 * frac:.1f}% |")
    if results["genai_error"]:
        print("onnxruntime-genai:", results["genai_error"])


if __name__ == "__main__":
    main()

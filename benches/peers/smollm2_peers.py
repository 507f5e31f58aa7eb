#!/usr/bin/env python3
"""Pool generation on the default model (SmolLM2-135M-Instruct): ualign against its
peers, in one run on one machine, interleaved.

    python3 benches/peers/smollm2_peers.py --genai-python VENV/bin/python [--runs 5] [--threads 2]

One pool of k candidates x 64 new tokens (eos ignored, so every peer does the same work),
sampling at temperature 1 with no other filter, prompt = golden.json's first (a chat-
template prompt of 36 tokens), k in {1, 8, 16}, CPU, 2 intra-op threads:
  ualign      target/release/ualign sample --json on the model folder: the graph built
              from the GGUF in memory (its own prefill + decode timing)
  ort-python  a plain Python onnxruntime loop on `ualign convert`'s graph of the same GGUF:
              the prompt batched k times, prefilled, all rows decoded together, numpy sampling
  ort-genai   onnxruntime-genai 0.18 on its model builder's int4 export of the same model
              (from the GGUF dequantised to a Hugging Face folder; batch of k identical prompts)
Also: ualign's load time (GGUF to a ready session, `load_ms`) and process start to the
first token (wall time of `sample -k 1 --max-new-tokens 1`).

The genai peer needs onnxruntime-genai and (for its builder) transformers >= 5: a virtual
environment made with --system-site-packages, see docs/PERFORMANCE.md. The script runs
itself under that interpreter for the genai timings.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "assets/models/smollm2-135m-instruct"
EXE = ROOT / "target/release/ualign"
N_NEW = 64
GOLDEN = json.loads((MODEL / "golden.json").read_text())["cases"][0]


def sample_rows(logits, rng):
    l = logits.astype(np.float64)
    p = np.exp(l - l.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return np.array([rng.choice(p.shape[-1], p=row) for row in p], dtype=np.int64)


def ort_python(k, threads, rng, onnx_dir):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(str(onnx_dir / "model.onnx"), so, providers=["CPUExecutionProvider"])
    kv = {i.name: i.shape for i in s.get_inputs() if i.name.startswith("past_key_values.")}
    names = [o.name for o in s.get_outputs()]
    ids = GOLDEN["prompt_ids"]

    def run():
        t0 = time.perf_counter()
        past = {n: np.zeros((k, sh[1], 0, sh[3]), np.float32) for n, sh in kv.items()}
        cur, total = np.array([ids] * k, np.int64), len(ids)
        for _ in range(N_NEW):
            out = dict(zip(names, s.run(None, {"input_ids": cur, "attention_mask": np.ones((k, total), np.int64), **past})))
            cur = sample_rows(out["logits"][:, -1], rng)[:, None]
            total += 1
            past = {n.replace("present.", "past_key_values."): v for n, v in out.items() if n.startswith("present.")}
        return (time.perf_counter() - t0) * 1000
    return run


def ualign(k, threads, _rng, _dir):
    def run():
        out = subprocess.run([str(EXE), "sample", str(MODEL), "--prompt", GOLDEN["prompt"], "-k", str(k),
                              "--max-new-tokens", str(N_NEW), "--ignore-eos", "--temperature", "1", "--top-k", "0",
                              "--top-p", "1", "--threads", str(threads), "--json"], check=True, capture_output=True, text=True)
        t = json.loads(out.stdout.strip().splitlines()[-1])["timing"]
        assert t["prompt_tokens"] == len(GOLDEN["prompt_ids"])
        run.outside.append((t["decode_ms"] - t["decode_run_ms"]) / max(t["decode_steps"], 1))
        run.step.append(t["decode_ms"] / max(t["decode_steps"], 1))
        run.load.append(t["load_ms"])
        return t["prefill_ms"] + t["decode_ms"]
    run.outside, run.step, run.load = [], [], []
    return run


def genai_worker(args):
    """Runs in the genai interpreter: prints one JSON line of times per k."""
    import onnxruntime_genai as og
    config = og.Config(str(args.genai_dir))
    config.clear_providers()
    model = og.Model(config)
    ids = GOLDEN["prompt_ids"]
    k = args.k

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
    run()
    print(json.dumps([run() for _ in range(args.runs_each)]))


def ort_genai(k, threads, _rng, genai_dir, genai_python):
    def run():
        out = subprocess.run([genai_python, __file__, "--genai-worker", "--k", str(k), "--genai-dir", str(genai_dir),
                              "--runs-each", "1"], check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])[0]
    return run


def build_genai(genai_dir, genai_python, gguf):
    if (genai_dir / "genai_config.json").exists():
        return
    hf = Path(tempfile.mkdtemp())
    script = ("import sys, torch, transformers, os\n"
              "d = os.path.dirname(sys.argv[1]); f = os.path.basename(sys.argv[1])\n"
              "m = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)\n"
              "m.save_pretrained(sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", script, str(gguf), str(hf)], check=True, capture_output=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]:
        shutil.copy(MODEL / f, hf / f)
    subprocess.run([genai_python, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(genai_dir),
                    "-p", "int4", "-e", "cpu"], check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--genai-python")
    ap.add_argument("--genai-dir", type=Path, default=Path("/tmp/smollm2-genai"))
    ap.add_argument("--onnx-dir", type=Path, default=Path("/tmp/smollm2-onnx"))
    ap.add_argument("--genai-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--runs-each", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.genai_worker:
        return genai_worker(args)
    folder = subprocess.run([str(EXE), "sample", str(MODEL), "--prompt", "x", "-k", "1", "--max-new-tokens", "1",
                             "--json"], check=True, capture_output=True, text=True)
    assert folder.returncode == 0
    if not (args.onnx_dir / "model.onnx").exists():
        subprocess.run([str(EXE), "convert", str(MODEL), "--out", str(args.onnx_dir)], check=True, capture_output=True)
    gguf = next(p for p in (ROOT / "target/weights").rglob("*.gguf"))
    if args.genai_python:
        build_genai(args.genai_dir, args.genai_python, gguf)
        # The same number of intra-op threads as the other peers.
        cfg_path = args.genai_dir / "genai_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = args.threads
        cfg_path.write_text(json.dumps(cfg, indent=2))
    rng = np.random.default_rng(0)
    results = {"machine": os.uname().machine, "cpus": os.cpu_count(), "threads": args.threads, "runs": args.runs,
               "new_tokens": N_NEW, "prompt_tokens": len(GOLDEN["prompt_ids"]), "rows": []}
    for k in [1, 8, 16]:
        peers = {"ualign": ualign(k, args.threads, rng, None), "ort-python": ort_python(k, args.threads, rng, args.onnx_dir)}
        if args.genai_python:
            peers["ort-genai"] = ort_genai(k, args.threads, rng, args.genai_dir, args.genai_python)
        times = {name: [] for name in peers}
        for run in peers.values():
            run()  # warm-up
        for _ in range(args.runs):  # interleaved, so drift hits every peer alike
            for name, run in peers.items():
                times[name].append(run())
        u = peers["ualign"]
        row = {"k": k, **{name: statistics.median(v) for name, v in times.items()},
               "ualign_outside_run_ms_per_step": statistics.median(u.outside),
               "ualign_decode_step_ms": statistics.median(u.step), "ualign_load_ms": statistics.median(u.load)}
        results["rows"].append(row)
        print(json.dumps(row), flush=True)
    first = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([str(EXE), "sample", str(MODEL), "--prompt", GOLDEN["prompt"], "-k", "1", "--max-new-tokens", "1",
                        "--threads", str(args.threads)], check=True, capture_output=True)
        first.append((time.perf_counter() - t0) * 1000)
    results["process_start_to_first_token_ms"] = statistics.median(first)
    (ROOT / "benches/peers/results-smollm2.json").write_text(json.dumps(results, indent=2) + "\n")
    names = [n for n in ["ualign", "ort-python", "ort-genai"] if n in results["rows"][0]]
    print("| k | " + " | ".join(f"{n} (ms)" for n in names) + " | ort-genai / ualign | ort-python / ualign | outside run / step |")
    print("|---|" + "---|" * (len(names) + 3))
    for r in results["rows"]:
        ratio_g = f"{r['ort-genai'] / r['ualign']:.2f}" if "ort-genai" in r else "n/a"
        frac = r["ualign_outside_run_ms_per_step"] / r["ualign_decode_step_ms"]
        print(f"| {r['k']} | " + " | ".join(f"{r[n]:.1f}" for n in names) +
              f" | {ratio_g} | {r['ort-python'] / r['ualign']:.2f} | {100 * frac:.1f}% |")
    print("load (GGUF to ready session) median %.0f ms; process start to first token %.0f ms" %
          (statistics.median(r["ualign_load_ms"] for r in results["rows"]), results["process_start_to_first_token_ms"]))


if __name__ == "__main__":
    main()

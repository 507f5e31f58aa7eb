#!/usr/bin/env python3
"""Builds the analysis benchmark's study: 50 prompts, a 16-candidate pool per prompt
(policy `diverse`) and one greedy candidate (policy `greedy`), best_of_k trials with
k in {1, 2, 4, 8, 16} and a full-pool order trial for every prompt, then answers it with
500 simulated participants through ualign itself. With --picks, a pick-of-4 trial per
prompt replaces the order trial and the population is a 3-class Plackett-Luce mixture
(the population-model benchmark, benches/peers/mixture_peer.py).

    python3 benches/peers/stats_data.py DIR [--participants 500] [--prompts 50] [--picks]
"""
import argparse
import json
import random
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("quiet bright river stone paper window garden silver morning candle harbor maple "
         "thunder velvet lantern meadow copper whisper orchard compass ember willow").split()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--participants", type=int, default=500)
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--ualign", type=Path, default=ROOT / "target/release/ualign")
    ap.add_argument("--picks", action="store_true",
                    help="a pick-of-4 trial per prompt instead of the full-pool order (the mixture benchmark)")
    ap.add_argument("--population", default=None,
                    help="simulate's population (default mallows:0.6:3; plmix:3:3 with --picks)")
    a = ap.parse_args()
    d = a.dir
    d.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    prompts = [{"id": f"p{i:02d}", "text": f"Prompt number {i}."} for i in range(a.prompts)]
    (d / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    with open(d / "diverse.jsonl", "w") as f:
        for p in prompts:
            texts = set()
            while len(texts) < 16:
                texts.add(" ".join(rng.sample(WORDS, 6)))
            for i, t in enumerate(sorted(texts)):
                f.write(json.dumps({"prompt_id": p["id"], "text": t, "sample_index": i}) + "\n")
    with open(d / "greedy.jsonl", "w") as f:
        for p in prompts:
            f.write(json.dumps({"prompt_id": p["id"], "text": "the greedy answer " + p["id"], "sample_index": 0}) + "\n")
    n = a.prompts
    (d / "bench.toml").write_text(f'''name = "bench"
title = "Analysis benchmark"
seed = 5
consent = "Synthetic participants."
instructions = "Synthetic participants."
completion_code = "BENCH"
prompts_file = "prompts.jsonl"

[[policies]]
name = "diverse"
source = "imported"
pool_size = 16

[[policies]]
name = "greedy"
source = "imported"
pool_size = 1

[[blocks]]
name = "scaling"
design = "best_of_k"
policy_a = "diverse"
policy_b = "greedy"
k = [1, 2, 4, 8, 16]
trials = {n}

[[blocks]]
name = "ranking"
design = "rank"
policies = ["diverse"]
m = {4 if a.picks else 16}
mode = "{'pick' if a.picks else 'order'}"
trials = {n}
''')
    db = d / "bench.sqlite"
    if db.exists():
        db.unlink()
    run = lambda *args: subprocess.run([str(a.ualign), *args, "--db", str(db)], check=True, cwd=d)  # noqa: E731
    run("init", "bench.toml")
    run("import", "bench.toml", "--policy", "diverse", "--candidates", "diverse.jsonl")
    run("import", "bench.toml", "--policy", "greedy", "--candidates", "greedy.jsonl")
    run("simulate", "bench.toml", "--participants", str(a.participants), "--population",
        a.population or ("plmix:3:3" if a.picks else "mallows:0.6:3"), "--seed", "3")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Recovery study of the latent-class Plackett–Luce analysis (docs/VALIDITY.md).

For each population, simulated participants answer a pick-of-3 study (the example study
with its rank block as 24 pick-of-3 trials, plus its best_of_k trials) through the real
scheduler and store; `simulate --latent-out` writes the truth behind their answers. The
model's policies (`stats --json`, method pl_mixture) are then evaluated exactly on the
true latent orders with the (k+1)-player game's payoff formula (implemented here
independently of the Rust code): what the model says a policy certifies, against what it
certifies on the truth. Then BIC's choice of C over seeds for well-separated classes, and
for a cyclic population of five classes (where a search that stops at four misleads).

    cargo build --release && python3 benches/peers/validity.py            # 300 participants, 10 seeds
    python3 benches/peers/validity.py --participants 150 --seeds 3        # quicker
    UALIGN_BIN=target/debug/ualign python3 benches/peers/validity.py     # another build
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("UALIGN_BIN", os.path.join(ROOT, "target", "release", "ualign")))


def study(dir):
    os.makedirs(os.path.join(dir, "studies"), exist_ok=True)
    shutil.copytree(os.path.join(ROOT, "studies", "example"), os.path.join(dir, "studies", "example"))
    text = open(os.path.join(ROOT, "studies", "example.toml")).read()
    text = text.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0")
    text = text.replace('m = 3\nmode = "order"\ntrials = 3', 'm = 3\nmode = "pick"\ntrials = 24')
    open(os.path.join(dir, "studies", "example.toml"), "w").write(text)
    run(dir, "init", "studies/example.toml")
    for p in ["sampled", "greedy"]:
        run(dir, "import", "studies/example.toml", "--policy", p, "--candidates", f"studies/example/{p}.jsonl")


def run(dir, *args):
    out = subprocess.run([BIN, *args], cwd=dir, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ualign {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def certified(orders, x, k):
    """1 − max_y u(y; x), u(y; x) = mean over orders of Σ_j C(k,j) x_y^j W^{k−j}/(j+1)."""
    from math import comb

    n = len(x)
    u = np.zeros(n)
    for order in orders:
        below = 0.0
        for y in reversed(order):
            a = x[y]
            u[y] += sum(comb(k, j) * a**j * below ** (k - j) / (j + 1) for j in range(k + 1))
            below += a
    return 1.0 - (u / len(orders)).max()


def one(population, participants, seed, k_max, replicates):
    with tempfile.TemporaryDirectory() as dir:
        study(dir)
        run(dir, "simulate", "studies/example.toml", "--participants", str(participants), "--population", population,
            "--seed", str(seed), "--latent-out", "truth.jsonl")
        report = json.loads(run(dir, "stats", "studies/example.toml", "--json", "--replicates", "100", "--k-max",
                                str(k_max), "--model-replicates", str(replicates)))
        truth = [json.loads(l) for l in open(os.path.join(dir, "truth.jsonl"))]
    model = report["population_model"]
    rows = [e for e in report["equilibria"] if e["method"] == "pl_mixture"]
    out = {}
    for e in rows:
        ids = [m["candidate"] for m in e["distribution"]]
        x = np.array([m["p"] for m in e["distribution"]])
        orders = [[ids.index(c) for c in t["order"] if c in ids] for t in truth if t["prompt"] == e["prompt"]]
        on_truth = certified(orders, x, e["k"])
        key = (e["policy"], e["k"])
        claimed, real, covered = out.get(key, (0.0, 0.0, 0))
        inside = int("ci_low" in e and e["ci_low"] - 1e-9 <= on_truth <= e["ci_high"] + 1e-9)
        out[key] = (claimed + e["certified_win_rate"], real + on_truth, covered + inside)
    prompts = len({e["prompt"] for e in rows})
    return model, {k: (c / prompts, r / prompts, cov / prompts) for k, (c, r, cov) in out.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--k-max", type=int, default=8)
    ap.add_argument("--replicates", type=int, default=50)
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release")
    print(f"{args.participants} simulated participants, pick-of-3 and best_of_k answers, 6 prompts of 5–8 responses")
    for population in ["plmix:2:4", "plmix:3:3", "mallows:0.6:3", "condorcet:0.7", "cyclic"]:
        model, rows = one(population, args.participants, 1, args.k_max, args.replicates)
        search = model["class_search"]
        print(f"\n{population}: C = {model['classes']} (weights {', '.join(f'{w:.2f}' for w in model['weights'])}); "
              f"{search['fitted']} fitted, limit {search['limit']}, stopped at the limit: {search['stopped_at_limit']}")
        print("  k  k/(k+1) | policy: certified by the model → on the true orders (CI covers the truth, share of prompts)")
        for k in range(1, args.k_max + 1):
            cells = []
            for p in ["base", "nlhf", "ne"]:
                if (p, k) in rows:
                    c, r, cov = rows[(p, k)]
                    cells.append(f"{p} {c:.3f} → {r:.3f} ({cov:.0%})")
            print(f"  {k}  {k / (k + 1):.3f}   | " + " · ".join(cells))
    picked = [one("plmix:2:4", args.participants, s, 2, 0)[0]["classes"] for s in range(args.seeds)]
    print(f"\nplmix:2:4, BIC's C over {args.seeds} seeds: {picked} ({picked.count(2)} of {args.seeds} are 2)")
    # The case: 100 participants of a cyclic population (five rotations of one order).
    cyclic = [one("cyclic", 100, s, 2, 0)[0] for s in range(args.seeds)]
    chosen = [m["classes"] for m in cyclic]
    at_limit = sum(m["class_search"]["stopped_at_limit"] for m in cyclic)
    print(f"cyclic, 100 participants, BIC's C over {args.seeds} seeds: {chosen} ({chosen.count(5)} of {args.seeds} are 5; "
          f"{at_limit} stopped at the search's limit)")


if __name__ == "__main__":
    main()

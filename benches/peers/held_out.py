#!/usr/bin/env python3
"""Coverage of the equilibrium rows' intervals on the population (docs/VALIDITY.md).

A policy solved on the participants' answers (NLHF, NE_k) is judged by what it certifies
on the population they were drawn from, not on their own answers (where NE_k certifies
k/(k+1) by construction). For each population and seed: N simulated participants answer
the example study (`picks`: pick-of-3 and best_of_k trials, so the rows are the
latent-class model's; `orders`: each prompt's whole pool put in order once, so the rows
are exact); `stats --json` gives every row's policy and interval. The population is M
further draws of the same simulated population (`simulate --latent-out` with M
participants and the same seed: the same classes, centres and worths), and each row's
policy is certified on those M orders with the (k+1)-player game's payoff, implemented
here independently of the Rust code (in closed form; validity.certified term by term). A row is covered when its
interval holds that rate. M = 8000 leaves a Monte Carlo error of ~0.005 in the truth.

    cargo build --release && python3 benches/peers/held_out.py
    python3 benches/peers/held_out.py --seeds 3 --participants 100 --populations plmix:2:4
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import validity  # noqa: E402  (the study set-up, the CLI runner and the payoff)


def orders_study(dir):
    """The example study with its rank block as one order of each prompt's whole pool."""
    os.makedirs(os.path.join(dir, "studies"), exist_ok=True)
    shutil.copytree(os.path.join(validity.ROOT, "studies", "example"), os.path.join(dir, "studies", "example"))
    text = open(os.path.join(validity.ROOT, "studies", "example.toml")).read()
    text = text.replace("min_reading_seconds = 2.0", "min_reading_seconds = 0")
    text = text.replace('m = 3\nmode = "order"\ntrials = 3', 'm = 8\nmode = "order"\ntrials = 6')
    open(os.path.join(dir, "studies", "example.toml"), "w").write(text)
    validity.run(dir, "init", "studies/example.toml")
    for p in ["sampled", "greedy"]:
        validity.run(dir, "import", "studies/example.toml", "--policy", p, "--candidates", f"studies/example/{p}.jsonl")


def population_orders(population, seed, m):
    # Latent orders depend on the pools, the population and the seed, not on the design:
    # drawn through the orders design, whose participants answer fewer trials.
    with tempfile.TemporaryDirectory() as dir:
        orders_study(dir)
        validity.run(dir, "simulate", "studies/example.toml", "--participants", str(m), "--population", population,
                     "--seed", str(seed), "--latent-out", "truth.jsonl")
        by_prompt = {}
        for line in open(os.path.join(dir, "truth.jsonl")):
            t = json.loads(line)
            by_prompt.setdefault(t["prompt"], []).append(t["order"])
        return by_prompt


def certified(orders, x, k):
    """validity.certified, vectorised over the orders: u(y; x) = E[((a + b)^(k+1) − b^(k+1)) / ((k+1) a)]
    with a = x_y and b the mass below y in the order (b^k where a = 0), the closed form of
    Σ_j C(k,j) a^j b^(k−j) / (j+1)."""
    o = np.asarray(orders)
    xo = x[o]
    below = np.cumsum(xo[:, ::-1], axis=1)[:, ::-1] - xo
    a, b = xo, below
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(a > 1e-12, ((a + b) ** (k + 1) - b ** (k + 1)) / ((k + 1) * np.maximum(a, 1e-300)), b**k)
    u = np.zeros(len(x))
    np.add.at(u, o.ravel(), g.ravel())
    return 1.0 - (u / len(o)).max()


def one(design, population, participants, seed, m, k_max, replicates):
    with tempfile.TemporaryDirectory() as dir:
        (orders_study if design == "orders" else validity.study)(dir)
        validity.run(dir, "simulate", "studies/example.toml", "--participants", str(participants), "--population",
                     population, "--seed", str(seed))
        report = json.loads(validity.run(dir, "stats", "studies/example.toml", "--json", "--replicates", "100",
                                         "--k-max", str(k_max), "--model-replicates", str(replicates),
                                         "--orders-replicates", str(2 * replicates)))
    truth = population_orders(population, seed, m)
    method = "orders" if design == "orders" else "pl_mixture"
    cells = {}
    for e in report["equilibria"]:
        if e["method"] != method or e["policy"] == "greedy":
            continue
        ids = [d["candidate"] for d in e["distribution"]]
        x = np.array([d["p"] for d in e["distribution"]])
        orders = [[ids.index(c) for c in o if c in ids] for o in truth[e["prompt"]]]
        on_population = certified(orders, x, e["k"])
        inside = "ci_low" in e and e["ci_low"] - 1e-9 <= on_population <= e["ci_high"] + 1e-9
        corrected = e["certified_win_rate"] - e.get("optimism", 0.0)
        cell = cells.setdefault((e["policy"], e["k"]), [])
        cell.append((e["certified_win_rate"], corrected, on_population, inside, e.get("ci_high", 0) - e.get("ci_low", 0)))
    return cells


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=150)
    ap.add_argument("--population-size", type=int, default=8000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--replicates", type=int, default=100)
    ap.add_argument("--ks", default="1,2,4,8")
    ap.add_argument("--runs", default="picks:plmix:2:4,picks:mallows:0.6:3,picks:cyclic,orders:plmix:2:2,orders:mallows:0.6:3")
    args = ap.parse_args()
    if not os.path.exists(validity.BIN):
        sys.exit("build first: cargo build --release")
    ks = [int(k) for k in args.ks.split(",")]
    print(f"{args.participants} participants, {args.seeds} seeds, population of {args.population_size} draws, "
          f"{args.replicates} model refits / {2 * args.replicates} order resamples")
    print("design population policy k | reported → bias-corrected → on the population (mean over prompts and seeds) "
          "| interval covers the population's rate | mean width")
    for run in args.runs.split(","):
        design, population = run.split(":", 1)
        cells = {}
        for seed in range(args.seeds):
            for key, rows in one(design, population, args.participants, seed + 1, args.population_size, max(ks),
                                 args.replicates).items():
                cells.setdefault(key, []).extend(rows)
        for policy in ["base", "nlhf", "ne"]:
            for k in ks:
                rows = cells.get((policy, k), [])
                if not rows:
                    continue
                a = np.array([r[:3] for r in rows])
                cover = np.mean([r[3] for r in rows])
                width = np.mean([r[4] for r in rows])
                print(f"{design:6} {population:14} {policy:4} {k} | {a[:, 0].mean():.3f} → {a[:, 1].mean():.3f} → "
                      f"{a[:, 2].mean():.3f} | {cover:.2f} of {len(rows)} | {width:.3f}", flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Coverage of the agreement intervals (docs/VALIDITY.md, "Agreement").

Simulated participants answer the example study (its rank block as 24 pick-of-3 trials,
plus its best_of_k trials) through the real scheduler and store. Krippendorff's α of
pairwise preferences is a property of the population *and the design*, so its truth per
prompt is taken from a very large simulated study (--truth-participants) of the same
population (`simulate --seed` draws the population: its classes' worths, its centres);
then over --seeds populations, how often the 95% bootstrap interval of a study of
--participants holds it. The small study's participants are the large one's first (the
simulator names participants by seed and number), so the truth is not quite independent
of the sample: at 100 of 4000 the overlap is 2.5%.

    cargo build --release && python3 benches/peers/agreement.py
    UALIGN_BIN=target/debug/ualign python3 benches/peers/agreement.py --seeds 10
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from validity import run, study  # noqa: E402


def alphas(population, participants, seed):
    with tempfile.TemporaryDirectory() as dir:
        study(dir)
        run(dir, "simulate", "studies/example.toml", "--participants", str(participants), "--population", population,
            "--seed", str(seed))
        report = json.loads(run(dir, "stats", "studies/example.toml", "--json", "--replicates", "50", "--max-classes",
                                "1", "--model-replicates", "0"))
    return {a["prompt"]: a for a in report["agreement"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, default=100)
    ap.add_argument("--truth-participants", type=int, default=4000)
    ap.add_argument("--seeds", type=int, default=30)
    args = ap.parse_args()
    print(f"| population | truth α, prompts × populations (N = {args.truth_participants}) | rows | covered | mean width |")
    print("|---|---|---|---|---|")
    for population in ["pl:1", "plmix:2:4", "mallows:0.6:3", "cyclic"]:
        rows = covered = 0
        width = 0.0
        truths = []
        for seed in range(args.seeds):
            truth = {p: a["alpha"] for p, a in alphas(population, args.truth_participants, seed).items()}
            truths += [v for v in truth.values() if v is not None]
            for p, a in alphas(population, args.participants, seed).items():
                if a["alpha_low"] is None or truth.get(p) is None:
                    continue
                rows += 1
                covered += a["alpha_low"] <= truth[p] <= a["alpha_high"]
                width += a["alpha_high"] - a["alpha_low"]
        t = f"{min(truths):.2f} to {max(truths):.2f}"
        print(f"| {population} | {t} | {rows} | {covered / rows:.3f} | {width / rows:.3f} |", flush=True)


if __name__ == "__main__":
    main()

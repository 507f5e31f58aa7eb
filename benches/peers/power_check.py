#!/usr/bin/env python3
"""Checks `ualign power` against studies that `simulate` and `stats` themselves make.

On the study of benches/peers/length_check.py (A writes longer texts than B, best_of_k
at k = 1, 2, 4), for each target `power` predicts N per f(k) row; then STUDIES studies of
that N are simulated from the same population (the same seed, fresh participants:
`simulate --first`) and analysed by `stats --json` (its cluster percentile bootstrap, not
power's normal approximation), and the share that reached the target is counted. It
should be about the power asked for (0.8), within the binomial error of STUDIES studies.

    python3 benches/peers/power_check.py [--studies 60]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from length_check import build  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=60)
    ap.add_argument("--ualign", type=Path, default=ROOT / "target/release/ualign")
    a = ap.parse_args()
    u = str(a.ualign)
    cases = [
        ("pl:1", ["--length-bias", "0.25"], ["--exceed-half"], "exceed"),
        ("plmix:2:2", [], ["--half-width", "0.04"], "width"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        build(d, 30)
        db = d / "pools.sqlite"
        run = lambda *args: subprocess.run([u, *args], check=True, cwd=d, capture_output=True, text=True).stdout  # noqa: E731
        run("init", "length.toml", "--db", str(db))
        run("import", "length.toml", "--db", str(db), "--policy", "long", "--candidates", "long.jsonl")
        run("import", "length.toml", "--db", str(db), "--policy", "short", "--candidates", "short.jsonl")
        for pop, bias, target, kind in cases:
            seed = "4"
            pred = json.loads(run("power", "length.toml", "--db", str(db), "--population", pop, *bias, *target,
                                  "--seed", seed, "--json"))
            for row in pred["rows"]:
                n = row["participants"]
                if n is None or n <= 20:
                    print(f"{pop} {target[0]} k={row['k']}: f(k) {row['rate']:.3f}, N {n} (floor or none: not checked)")
                    continue
                hits = 0
                for j in range(a.studies):
                    s = d / "s.sqlite"
                    s.unlink(missing_ok=True)
                    run("init", "length.toml", "--db", str(s))
                    run("import", "length.toml", "--db", str(s), "--policy", "long", "--candidates", "long.jsonl")
                    run("import", "length.toml", "--db", str(s), "--policy", "short", "--candidates", "short.jsonl")
                    run("simulate", "length.toml", "--db", str(s), "--population", pop, *bias, "--seed", seed,
                        "--participants", str(n), "--first", str(1_000_000 + j * n))
                    rows = json.loads(run("stats", "length.toml", "--db", str(s), "--json", "--replicates", "1000",
                                          "--model-replicates", "0", "--worth-replicates", "0"))["fk"]
                    r = next(x for x in rows if x["k"] == row["k"])
                    hits += (r["ci_low"] > 0.5) if kind == "exceed" else ((r["ci_high"] - r["ci_low"]) / 2 <= float(target[1]))
                sd = (0.8 * 0.2 / a.studies) ** 0.5
                print(f"{pop} {' '.join(bias)} {' '.join(target)} k={row['k']}: f(k) {row['rate']:.3f}, deff "
                      f"{row['design_effect']:.2f}, power predicts N = {n} (normal approx. {row['approximate']}); "
                      f"stats reached it in {hits}/{a.studies} = {hits / a.studies:.2f} (0.80 ± {2 * sd:.2f})")


if __name__ == "__main__":
    main()

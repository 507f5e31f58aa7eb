#!/usr/bin/env python3
"""Checks the length control and tie model of `stats` (f(k) rows' `length_control`).

Builds a study whose policy A ("long") writes texts of 4-40 words and policy B ("short")
3-12 words, best_of_k at k = 1, 2, 4, and answers it with simulated participants who
favour longer texts (--length-bias B) and sometimes answer "no preference" (Davidson's
nu, --no-preference). Three checks:

1. Independent fit (seed 0): the same model fitted here with SciPy (BFGS on the
   penalised log-likelihood, two-way clustered sandwich from numerical derivatives) from the exported
   trials; every number must agree with `stats --json` to 1e-4.
2. Coverage, correctly specified (pl:0: no text is better than another but by length,
   so alpha = 0): over SEEDS studies, how often the 95% intervals hold the truth:
   beta = B, nu = NU, and f(k) with lengths equal = (k + nu/2) / (k + 1 + nu).
3. Misspecified (pl:S, worths differ per text): truth for the length-controlled f(k)
   is the observed f(k) of a large simulation of the same population with B = 0; the
   mean estimate's distance from it, and coverage, are reported.

    python3 benches/peers/length_check.py [--seeds 100] [--participants 150]
"""
import argparse
import json
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parents[2]
WORDS = ("quiet bright river stone paper window garden silver morning candle harbor maple "
         "thunder velvet lantern meadow copper whisper orchard compass ember willow").split()
PRIOR = 0.01
Z = 1.959963984540054


def build(d: Path, prompts: int) -> None:
    rng = random.Random(1)
    ps = [{"id": f"p{i:02d}", "text": f"Prompt number {i}."} for i in range(prompts)]
    (d / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in ps))
    for name, lo, hi in (("long", 4, 40), ("short", 3, 12)):
        with open(d / f"{name}.jsonl", "w") as f:
            for p in ps:
                for i in range(8):
                    words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
                    text = f"{name} {p['id']} {i}: " + " ".join(words)
                    f.write(json.dumps({"prompt_id": p["id"], "text": text, "sample_index": i}) + "\n")
    (d / "length.toml").write_text(f'''name = "length"
title = "Length check"
seed = 11
consent = "Synthetic participants."
instructions = "Synthetic participants."
completion_code = "LEN"
prompts_file = "prompts.jsonl"

[options]
allow_no_preference = true

[[policies]]
name = "long"
source = "imported"
pool_size = 8

[[policies]]
name = "short"
source = "imported"
pool_size = 8

[[blocks]]
name = "scaling"
design = "best_of_k"
policy_a = "long"
policy_b = "short"
k = [1, 2, 4]
trials = {prompts}
attention_checks = 0
repeat_fraction = 0.0
''')


def study(ualign: Path, d: Path, tag: str, participants: int, pop: str, bias: float, nu: float, seed: int):
    db = d / f"{tag}.sqlite"
    run = lambda *a: subprocess.run([str(ualign), *a, "--db", str(db)], check=True, cwd=d,  # noqa: E731
                                    stdout=subprocess.DEVNULL)
    run("init", "length.toml")
    run("import", "length.toml", "--policy", "long", "--candidates", "long.jsonl")
    run("import", "length.toml", "--policy", "short", "--candidates", "short.jsonl")
    run("simulate", "length.toml", "--participants", str(participants), "--population", pop,
        "--length-bias", str(bias), "--no-preference", str(nu), "--seed", str(seed))
    out = subprocess.run([str(ualign), "stats", "length.toml", "--db", str(db), "--json",
                          "--model-replicates", "0", "--replicates", "200"],
                         check=True, cwd=d, capture_output=True, text=True).stdout
    return db, {r["k"]: r for r in json.loads(out)["fk"]}


# ---- the independent fit -------------------------------------------------------------

def trials_of(ualign: Path, d: Path, db: Path):
    """Per k, the ((participant, prompt), options [(share, length)], chosen or None) of each trial."""
    out = d / f"{db.stem}-export"
    subprocess.run([str(ualign), "export", "length.toml", "--db", str(db), "--format", "jsonl", "--out", str(out)],
                   check=True, cwd=d, stdout=subprocess.DEVNULL)
    text = {c["candidate_id"]: c["text"] for c in map(json.loads, open(out / "candidates.jsonl"))}
    by_k = {}
    for t in map(json.loads, open(out / "trials.jsonl")):
        if t["kind"] != "best_of_k" or not t.get("answered_at") or t.get("skipped"):
            continue
        shown = [text[i] for i in t["candidate_ids"]]
        roles = t["slot_roles"]
        distinct = list(dict.fromkeys(shown))
        opts = []
        for x in distinct:
            m = sum(1 for s, r in zip(shown, roles) if s == x and r == "a")
            b = any(s == x and r == "b" for s, r in zip(shown, roles))
            share = 0.0 if m == 0 else (1.0 if not b else m / (m + 1))
            opts.append((share, len(x)))
        chosen = None if t["no_preference"] else distinct.index(shown[t["choice_slot"]])
        by_k.setdefault(t["k"], []).append(((t["participant_id"], t["prompt_id"]), opts, chosen))
    return by_k


def features(opts, chosen):
    s = np.array([o[0] for o in opts])
    ln = np.array([o[1] for o in opts], float)
    x = ln / ln.mean() - 1.0
    z = np.column_stack([np.append(s, s.mean()), np.append(x, 0.0), np.append(np.zeros(len(s)), 1.0)])
    v = np.append(s, 0.5)
    return z, v, len(s) if chosen is None else chosen


def reference(trials):
    """Independent: BFGS on the penalised likelihood; sandwich by finite differences,
    two-way clustered (participants + prompts - cells, at least the participants')."""
    data = [features(o, c) for _, o, c in trials]
    who = [w for w, _, _ in trials]

    def p_of(th, z, beta_on=1.0):
        u = z @ np.array([th[0], beta_on * th[1], th[2]])
        e = np.exp(u - u.max())
        return e / e.sum()

    def nll(th):
        return -sum(np.log(p_of(th, z)[o]) for z, _, o in data) + 0.5 * PRIOR * th @ th

    th = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    rate = np.mean([p_of(th, z, 0.0) @ v for z, v, _ in data])

    def psi(full, z, v, o):
        t, r = full[:3], full[3]
        eps = 1e-6
        ll = lambda q: np.log(p_of(q, z)[o])  # noqa: E731
        score = np.array([(ll(t + eps * e) - ll(t - eps * e)) / (2 * eps) for e in np.eye(3)])
        return np.append(score, p_of(t, z, 0.0) @ v - r)

    full = np.append(th, rate)
    eps = 1e-5
    total = lambda q: sum(psi(q, *d) for d in data) - np.append(PRIOR * q[:3], 0.0)  # noqa: E731
    jac = np.column_stack([(total(full + eps * e) - total(full - eps * e)) / (2 * eps) for e in np.eye(4)])
    def variance(key):
        clusters = {}
        for w, d in zip(who, data):
            clusters[key(w)] = clusters.get(key(w), 0) + psi(full, *d)
        g = len(clusters)
        meat = sum(np.outer(s, s) for s in clusters.values()) * (g / (g - 1) if g > 1 else 0.0)
        inv = np.linalg.inv(jac)
        return np.diag(inv @ meat @ inv.T)

    person, prompt, cell = variance(lambda w: w[0]), variance(lambda w: w[1]), variance(lambda w: w)
    se = np.sqrt(np.maximum(person + prompt - cell, person))
    return {"rate": rate, "low": max(rate - Z * se[3], 0.0), "high": min(rate + Z * se[3], 1.0),
            "length_coef": th[1], "length_coef_low": th[1] - Z * se[1], "length_coef_high": th[1] + Z * se[1],
            "nu": np.exp(th[2]), "nu_low": np.exp(th[2] - Z * se[2]), "nu_high": np.exp(th[2] + Z * se[2])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--participants", type=int, default=150)
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--bias", type=float, default=1.5)
    ap.add_argument("--nu", type=float, default=0.4)
    ap.add_argument("--spread", type=float, default=2.0, help="S of the misspecified pl:S population")
    ap.add_argument("--misspecified", type=int, default=10, help="studies of the misspecified check")
    ap.add_argument("--truth-participants", type=int, default=2000)
    ap.add_argument("--ualign", type=Path, default=ROOT / "target/release/ualign")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        build(d, a.prompts)
        # 1. The independent fit.
        db, rows = study(a.ualign, d, "ref", a.participants, "pl:0", a.bias, a.nu, 0)
        worst = 0.0
        for k, trials in sorted(trials_of(a.ualign, d, db).items()):
            ref, got = reference(trials), rows[k]["length_control"]
            for key, want in ref.items():
                worst = max(worst, abs(got[key] - want))
            print(f"k={k}: ualign rate {got['rate']:.6f} beta {got['length_coef']:.6f} nu {got['nu']:.6f}; "
                  f"scipy {ref['rate']:.6f} {ref['length_coef']:.6f} {ref['nu']:.6f}")
        print(f"independent fit: largest difference {worst:.2e} (must be < 1e-4)")
        assert worst < 1e-4
        # 2. Coverage where the model is right.
        hits = {"beta": [], "nu": [], "rate": []}
        raw = []
        for s in range(a.seeds):
            _, rows = study(a.ualign, d, f"c{s}", a.participants, "pl:0", a.bias, a.nu, 1000 + s)
            for k, r in rows.items():
                lc = r["length_control"]
                truth = (k + a.nu / 2) / (k + 1 + a.nu)
                hits["beta"].append(lc["length_coef_low"] <= a.bias <= lc["length_coef_high"])
                hits["nu"].append(lc["nu_low"] <= a.nu <= lc["nu_high"])
                hits["rate"].append(lc["low"] <= truth <= lc["high"])
                raw.append(r["ci_low"] <= truth <= r["ci_high"])
            (d / f"c{s}.sqlite").unlink()
        for key, v in hits.items():
            print(f"pl:0, beta {a.bias}, nu {a.nu}: {key} coverage {np.mean(v):.3f} over {len(v)} rows")
        print(f"  (the f(k) interval, uncontrolled, holds the length-free truth in {np.mean(raw):.3f})")
        # 3. Misspecified: worths differ per text.
        pop = f"pl:{a.spread}"
        # The population's worths follow the seed: each study's truth is a large
        # simulation of its own population without the length bias.
        est, cover, truth = {}, {}, {}
        for s in range(a.misspecified):
            seed = 2000 + s
            _, rows = study(a.ualign, d, f"m{s}", a.participants, pop, a.bias, a.nu, seed)
            _, truth_rows = study(a.ualign, d, f"t{s}", a.truth_participants, pop, 0.0, a.nu, seed)
            for k, r in rows.items():
                lc, t = r["length_control"], truth_rows[k]["rate"]
                est.setdefault(k, []).append(lc["rate"] - t)
                truth.setdefault(k, []).append(t)
                cover.setdefault(k, []).append(lc["low"] <= t <= lc["high"])
            (d / f"m{s}.sqlite").unlink()
            (d / f"t{s}.sqlite").unlink()
        for k in sorted(est):
            print(f"{pop}, k={k}: truth {np.mean(truth[k]):.3f} on average, estimate - truth "
                  f"{np.mean(est[k]):+.3f} (sd {np.std(est[k]):.3f}), coverage {np.mean(cover[k]):.3f} over {len(cover[k])}")


if __name__ == "__main__":
    main()

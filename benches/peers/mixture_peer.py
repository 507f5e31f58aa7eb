#!/usr/bin/env python3
"""Population-model benchmark: `ualign stats` against a NumPy implementation of the same
latent-class Plackett-Luce EM, in one run on one machine, on the pick-only study built by

    python3 benches/peers/stats_data.py /tmp/mbench --picks      # once: 500 x 50, pools of 16
    python3 benches/peers/mixture_peer.py /tmp/mbench [--runs 3] [--peer-runs 1] [--refits 200]

The peer reads the same SQLite file and builds the same evidence (identical texts one
response, the smallest candidate id standing for them; every pick of a rank trial and the
choice of every best_of_k trial as top-1 of what was shown; no preference, skips and
attention checks left out), then fits like ualign (src/analysis/mixture.rs): for C = 1..4,
8 restarts of EM from random responsibilities, each M-step 3 of Hunter's MM updates per
class and prompt with prior 0.1, stop when the log-likelihood's relative change is below
1e-9 (at most 1000 iterations); C by BIC; then the cluster bootstrap over participants
that ualign runs: each of `--refits` resamples refitted from the full fit's posterior of
the people drawn and its worths, one MM update per E-step (at most 200 iterations,
tolerance 1e-7). The peer's refits are plain EM on the copies drawn; ualign's (since
session 9) are the same EM accelerated by SQUAREM, which reaches the same fixed point, and
(since session 10) fit a person drawn m times once with weight m, the same fit as m
copies (the refits are timed, not compared: the numbers are compared on the full fit). Vectorised over every prompt and class at once (one padded array of all
choices), which is the fastest way NumPy has.

ualign's side is the whole `stats` command (f(k) with its bootstrap, the population
worths, the mixture, its 200 refits and every refit's certified rates of base, greedy,
NLHF and NE_k, k = 1..16, at each of the 50 prompts); the peer's is the EM and its refits
alone (`--peer-refits` fewer, as the NumPy refits take minutes at this size). The two must agree: the same evidence, the same C, and the chosen C's best
log-likelihood within 1e-6 (relative): the same optimum from different random starts (the
other C are printed: with many classes EM has local optima, and 8 restarts on each side
need not find the same one).
"""
import argparse
import json
import math
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
ALPHA = 0.1
MM_STEPS = 3


def evidence(db):
    """(people, per-prompt item counts, choices as (person, global items best-first, ranked))."""
    c = sqlite3.connect(db)
    rows = c.execute("SELECT id, prompt_id, text FROM candidates ORDER BY id").fetchall()
    first, stand = {}, {}
    for i, p, t in rows:
        stand[i] = (p, first.setdefault((p, t), i))
    prompts = sorted({p for _, p, _ in rows})
    items = {p: sorted({r for (q, _), r in first.items() if q == p}) for p in prompts}
    offset, o = {}, 0
    for p in prompts:
        offset[p] = o
        o += len(items[p])
    index = {r: offset[p] + items[p].index(r) for p in prompts for r in items[p]}
    raw = []

    def add(who, shown, ranked_slots):
        if any(i not in stand for i in shown) or not shown:
            return
        reps = [stand[i][1] for i in shown]
        order = []
        for s in ranked_slots:
            if s < len(reps) and reps[s] not in order:
                order.append(reps[s])
        ranked = len(order)
        order += [r for r in dict.fromkeys(reps) if r not in order]
        ranked = min(ranked, len(order) - 1)
        if ranked > 0:
            raw.append((who, [index[r] for r in order], ranked))

    for who, cids, choice, ordering in c.execute(
            """SELECT t.participant_id, t.candidate_ids, a.choice, a.ordering FROM trials t
               JOIN answers a ON a.trial_id = t.id WHERE t.kind = 'rank' AND a.skipped = 0
               AND a.no_preference = 0 AND t.candidate_ids IS NOT NULL"""):
        shown = json.loads(cids)
        if ordering is not None:
            add(who, shown, json.loads(ordering))
        elif choice is not None:
            add(who, shown, [choice])
    for who, slots, cids, choice, nopref in c.execute(
            """SELECT t.participant_id, t.slots, t.candidate_ids, a.choice, a.no_preference FROM trials t
               JOIN answers a ON a.trial_id = t.id WHERE t.kind = 'best_of_k' AND a.skipped = 0"""):
        slots, shown = json.loads(slots), json.loads(cids or "[]")
        if nopref or choice is None or len(shown) != len(slots) or any(s["role"] in ("gold", "broken") for s in slots):
            continue
        add(who, shown, [choice])
    people = sorted({r[0] for r in raw})
    pix = {p: i for i, p in enumerate(people)}
    sizes = [len(items[p]) for p in prompts]
    return len(people), sizes, [(pix[w], o, r) for w, o, r in raw]


class Data:
    """All choices as one padded array: items (N x L, global item ids, -1 padding), the
    number ranked, the owner, and each item's prompt."""

    def __init__(self, n_people, sizes, choices):
        self.n_people, self.sizes = n_people, sizes
        self.n = sum(sizes)
        self.prompt_of = np.repeat(np.arange(len(sizes)), sizes)
        L = max(len(o) for _, o, _ in choices)
        N = len(choices)
        self.items = np.full((N, L), -1, dtype=np.int64)
        for i, (_, o, _) in enumerate(choices):
            self.items[i, : len(o)] = o
        self.ranked = np.array([r for _, _, r in choices])
        self.owner = np.array([p for p, _, _ in choices])
        self.valid = self.items >= 0
        self.safe = np.where(self.valid, self.items, 0)
        pos = np.arange(L)[None, :]
        self.is_ranked = pos < self.ranked[:, None]
        # Position whose cumulative sum an item's denominator takes: its own if ranked,
        # else the last ranked one.
        self.cum_at = np.broadcast_to(np.minimum(pos, self.ranked[:, None] - 1), (N, L))

    def subset(self, drawn, by_person):
        idx = np.concatenate([by_person[p] for p in drawn])
        copy = np.concatenate([np.full(len(by_person[p]), j) for j, p in enumerate(drawn)])
        d = object.__new__(Data)
        d.n_people, d.sizes, d.n, d.prompt_of = len(drawn), self.sizes, self.n, self.prompt_of
        for name in ("items", "ranked", "valid", "safe", "is_ranked", "cum_at"):
            setattr(d, name, getattr(self, name)[idx])
        d.owner = copy
        return d


def centre(theta, d):
    mean = np.stack([np.bincount(d.prompt_of, weights=t, minlength=len(d.sizes)) for t in theta]) / np.array(d.sizes)
    return theta - mean[:, d.prompt_of]


def exp_transform(theta, d):
    w = np.exp(centre(theta, d))
    s = np.stack([np.bincount(d.prompt_of, weights=x, minlength=len(d.sizes)) for x in w])
    return w * np.array(d.sizes)[d.prompt_of][None, :] / s[:, d.prompt_of]


def suffix_sums(w, d):
    """Per class, choice and position: the total weight of that position's choice set."""
    ws = np.where(d.valid[None], w[:, d.safe], 0.0)
    return np.cumsum(ws[:, :, ::-1], axis=2)[:, :, ::-1]


def mm_step(theta, d, t):
    """One MM update of every class's worths; t: (C, N) each choice's weight."""
    suffix = suffix_sums(exp_transform(theta, d), d)
    inv = np.where(d.is_ranked[None], t[:, :, None] / np.where(d.is_ranked[None], suffix, 1.0), 0.0)
    cum = np.cumsum(inv, axis=2)
    val = np.take_along_axis(cum, np.broadcast_to(d.cum_at[None], cum.shape), axis=2)
    val = np.where(d.valid[None], val, 0.0)
    flat = d.safe.ravel()
    nxt = np.empty_like(theta)
    for c in range(theta.shape[0]):
        wins = np.bincount(flat, weights=np.where(d.is_ranked, t[c][:, None], 0.0).ravel(), minlength=d.n)
        den = np.bincount(flat, weights=val[c].ravel(), minlength=d.n)
        nxt[c] = np.log((wins + ALPHA) / (den + ALPHA))
    return centre(nxt, d)


def e_step(theta, weights, d):
    w = np.exp(theta)
    suffix = suffix_sums(w, d)
    th = theta[:, d.safe]
    per_choice = np.where(d.is_ranked[None], th - np.log(np.where(d.is_ranked[None], suffix, 1.0)), 0.0).sum(2)
    logp = np.stack([np.bincount(d.owner, weights=pc, minlength=d.n_people) for pc in per_choice], 1)
    logp += np.log(np.maximum(weights, 1e-300))[None, :]
    m = logp.max(1, keepdims=True)
    z = np.exp(logp - m).sum(1, keepdims=True)
    return np.exp(logp - m) / z, float((m + np.log(z)).sum())


def em_from(d, post, max_iter=1000, tol=1e-9, theta=None, mm_steps=MM_STEPS):
    C = post.shape[1]
    theta = np.zeros((C, d.n)) if theta is None else theta.copy()
    last, ll, it = -math.inf, -math.inf, 0
    for it in range(1, max_iter + 1):
        weights = post.mean(0)
        t = post[d.owner].T
        for _ in range(mm_steps):
            nxt = mm_step(theta, d, t)
            change = np.abs(nxt - theta).sum(1)
            theta = nxt
            if (change <= 1e-10).all():
                break
        post, ll = e_step(theta, weights, d)
        if abs(ll - last) <= tol * max(abs(ll), 1.0):
            break
        last = ll
    return theta, weights, post, ll, it


def fit(d, C, restarts, rng):
    best = None
    for _ in range(restarts):
        r = rng.random((d.n_people, C)) + 0.05
        out = em_from(d, r / r.sum(1, keepdims=True))
        if best is None or out[3] > best[3]:
            best = out
    params = C - 1 + C * sum(s - 1 for s in d.sizes)
    bic = -2 * best[3] + params * math.log(d.n_people)
    return best, bic


def peer(db, refits, c_max=4, restarts=8):
    n_people, sizes, choices = evidence(db)
    d = Data(n_people, sizes, choices)
    rng = np.random.default_rng(0)
    fits = [fit(d, C, restarts, rng) for C in range(1, c_max + 1)]
    chosen = min(range(len(fits)), key=lambda i: fits[i][1])
    theta, weights, post, ll, _ = fits[chosen][0]
    by_person = [np.flatnonzero(d.owner == p) for p in range(n_people)]
    for _ in range(refits):
        drawn = rng.integers(0, n_people, n_people)
        em_from(d.subset(drawn, by_person), post[drawn], max_iter=200, tol=1e-7, theta=theta, mm_steps=1)
    return {"classes": chosen + 1, "weights": sorted(weights, reverse=True),
            "compared": [{"classes": i + 1, "log_likelihood": f[0][3], "bic": f[1]} for i, f in enumerate(fits)],
            "participants": n_people, "choices": len(choices)}


def ualign_stats(d, refits):
    out = subprocess.run([str(ROOT / "target/release/ualign"), "stats", "bench.toml", "--db", "bench.sqlite", "--json",
                          "--model-replicates", str(refits)], cwd=d, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["population_model"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--refits", type=int, default=200)
    ap.add_argument("--peer-runs", type=int, default=1)
    ap.add_argument("--peer-refits", type=int, help="the peer's refits, if fewer (it takes minutes)")
    a = ap.parse_args()
    times = {"ualign stats (everything)": [], "ualign stats, no refits": [], "numpy EM + refits": []}
    # ualign `--runs` times, interleaved with the peer's first run; the peer (minutes) once
    # unless asked for more.
    for r in range(a.runs):
        t = time.perf_counter()
        ours = ualign_stats(a.dir, a.refits)
        times["ualign stats (everything)"].append(time.perf_counter() - t)
        t = time.perf_counter()
        ualign_stats(a.dir, 0)
        times["ualign stats, no refits"].append(time.perf_counter() - t)
        if r < a.peer_runs:
            t = time.perf_counter()
            mine = peer(a.dir / "bench.sqlite", a.peer_refits if a.peer_refits is not None else a.refits)
            times["numpy EM + refits"].append(time.perf_counter() - t)
    print(f"{mine['participants']} participants, {mine['choices']} choices; ualign {ours['participants']}, "
          f"{ours['choices']}; C = {ours['classes']} (ualign), {mine['classes']} (numpy)")
    assert (ours["participants"], ours["choices"]) == (mine["participants"], mine["choices"]), "the same evidence"
    for o, m in zip(ours["compared"], mine["compared"]):
        rel = abs(o["log_likelihood"] - m["log_likelihood"]) / abs(m["log_likelihood"])
        print(f"C = {o['classes']}: log L {o['log_likelihood']:.4f} (ualign) {m['log_likelihood']:.4f} (numpy), "
              f"relative difference {rel:.1e}; BIC {o['bic']:.2f} / {m['bic']:.2f}")
        if o["classes"] == ours["classes"]:
            assert rel < 1e-6, "the chosen C: the same optimum"
    assert ours["classes"] == mine["classes"]
    w = max(abs(x - y) for x, y in zip(ours["weights"], mine["weights"]))
    print(f"class weights: |diff| {w:.1e}")
    print("| implementation | median s | runs (s) |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")
    ratio = statistics.median(times["numpy EM + refits"]) / statistics.median(times["ualign stats (everything)"])
    print(f"ratio numpy / ualign: {ratio:.1f}x")


if __name__ == "__main__":
    main()

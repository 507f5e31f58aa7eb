#!/usr/bin/env python3
"""Analysis benchmark: `ualign stats` against a NumPy/SciPy implementation of the same
computation, in one run on one machine, on the study built by benches/peers/stats_data.py
(500 participants x 50 prompts, pools of 16, k = 1..16, 1,000 f(k) bootstrap replicates,
200 population-worth bootstrap replicates).

    python3 benches/peers/stats_data.py /tmp/sbench          # once: builds the study and its answers
    python3 benches/peers/stats_peer.py /tmp/sbench [--runs 3]

The peer reads the same SQLite file and computes, like ualign: f(k) per (A, B, k) with the
slot-split convention and a 1,000-replicate cluster bootstrap over participants; each
participant's order per prompt; population Plackett-Luce worths (Hunter's MM, prior 0.1)
with a bootstrap over participants; per prompt the maximal lottery (scipy linprog, HiGHS)
and, for k = 1..16, the certified win rates of base, NLHF and NE_k (NE_k by Newton's
method on the support's equal-payoff equations, started from NE_{k-1}, k = 1 from the
maximal lottery; Hedge steps when Newton's support guess fails). Diversity and data
quality (cheap in both) are ualign-only.

It also checks that the two agree: f(k) rates exactly, bootstrap intervals within 0.01
(different random streams), certified rates of base/NE_k within 1e-6, NLHF within 1e-6
when the maximal lottery is unique, population log-worths within 1e-5.
"""
import argparse
import json
import math
import statistics
import subprocess
import sqlite3
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

ROOT = Path(__file__).resolve().parents[2]
K_MAX = 16


def load(db):
    c = sqlite3.connect(db)
    texts = dict(c.execute("SELECT id, text FROM candidates"))
    cand_prompt = {i: (p, pol) for i, p, pol in c.execute("SELECT id, prompt_id, policy FROM candidates")}
    bok = c.execute(
        """SELECT t.participant_id, t.policy_a, t.policy_b, t.k, t.slots, t.candidate_ids, a.choice, a.no_preference
           FROM trials t JOIN answers a ON a.trial_id = t.id WHERE t.kind = 'best_of_k' AND a.skipped = 0""").fetchall()
    rank = c.execute(
        """SELECT t.participant_id, t.prompt_id, t.candidate_ids, a.ordering
           FROM trials t JOIN answers a ON a.trial_id = t.id
           WHERE t.kind = 'rank' AND a.skipped = 0 AND a.no_preference = 0 AND t.candidate_ids IS NOT NULL
           ORDER BY t.participant_id, t.prompt_id, t.position""").fetchall()
    return texts, cand_prompt, bok, rank


def fk(texts, bok, replicates, rng):
    groups = {}
    for who, a, b, k, slots, cids, choice, nopref in bok:
        if nopref:
            score = 0.5
        else:
            slots = json.loads(slots)
            ids = json.loads(cids)
            t = [texts[i] for i in ids]
            chosen = t[choice]
            m = sum(1 for s, x in zip(slots, t) if s["role"] == "a" and x == chosen)
            in_b = any(s["role"] == "b" and x == chosen for s, x in zip(slots, t))
            score = m / (m + 1) if (m and in_b) else (1.0 if m else 0.0)
        groups.setdefault((a, b, k), {}).setdefault(who, []).append(score)
    rows = []
    for (a, b, k), per in sorted(groups.items()):
        s = np.array([sum(v) for v in per.values()])
        n = np.array([len(v) for v in per.values()])
        idx = rng.integers(0, len(s), size=(replicates, len(s)))
        rates = np.sort(s[idx].sum(1) / n[idx].sum(1))
        q = lambda p: rates[min(int(round(p * (replicates - 1))), replicates - 1)]  # noqa: E731
        rows.append({"policy_a": a, "policy_b": b, "k": k, "n": int(n.sum()), "rate": s.sum() / n.sum(),
                     "ci_low": q(0.025), "ci_high": q(0.975)})
    return rows


def transforms(params):
    w = np.exp(params - params.mean())
    return w * len(w) / w.sum()


def mm_orders(orders, n, alpha, tol, start=None, max_iter=100_000):
    """Hunter's MM for full orders (P x L index array), as ualign's mm_from."""
    params = np.zeros(n) if start is None else start.copy()
    L = orders.shape[1]
    wins = np.bincount(orders[:, : L - 1].ravel(), minlength=n).astype(float)
    for _ in range(max_iter):
        w = transforms(params)
        ws = w[orders]
        suffix = np.cumsum(ws[:, ::-1], axis=1)[:, ::-1]
        cum = np.cumsum(1.0 / suffix[:, : L - 1], axis=1)
        den = np.bincount(orders[:, : L - 1].ravel(), weights=cum.ravel(), minlength=n)
        den += np.bincount(orders[:, L - 1], weights=cum[:, -1], minlength=n)
        nxt = np.log((wins + alpha) / (den + alpha))
        nxt -= nxt.mean()
        change = np.abs(nxt - params).sum()
        params = nxt
        if change <= tol:
            return params
    raise RuntimeError("MM did not converge")


def share_parts(W, a, k):
    """s, ds/dW, ds/da of sum_j C(k,j) W^(k-j) a^j/(j+1), elementwise, as in ualign."""
    big = a > W
    s = np.zeros_like(W)
    dw = np.zeros_like(W)
    da = np.zeros_like(W)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = W + a
        top, low = t ** k, W ** k
        s_c = (top * t - low * W) / ((k + 1) * a)
        dw_c = (top - low) / a
        da_c = (top - s_c) / a
    for j in range(k + 1):
        c = math.comb(k, j)
        s += c * W ** (k - j) * a ** j / (j + 1)
        if j < k:
            dw += c * (k - j) * W ** (k - j - 1) * a ** j / (j + 1)
        if j > 0:
            da += c * j * W ** (k - j) * a ** (j - 1) / (j + 1)
    return np.where(big, s_c, s), np.where(big, dw_c, dw), np.where(big, da_c, da)


def payoffs(O, x, k, jac=False):
    P, n = O.shape
    xs = x[O]
    W = np.cumsum(xs[:, ::-1], axis=1)[:, ::-1] - xs
    s, dw, da = share_parts(W, xs, k)
    u = np.bincount(O.ravel(), weights=s.ravel(), minlength=n) / P
    if not jac:
        return u
    J = np.zeros((n, n))
    np.add.at(J, (O.ravel(), O.ravel()), da.ravel())
    for i in range(n - 1):
        rows = np.repeat(O[:, i], n - i - 1)
        np.add.at(J, (rows, O[:, i + 1:].ravel()), np.repeat(dw[:, i], n - i - 1))
    return u, J / P


def polish(O, start, k):
    n = len(start)
    target = 1 / (k + 1)
    support = [i for i in range(n) if start[i] > 1e-3 * start.max()]
    for _ in range(n):
        x = np.zeros(n)
        x[support] = start[support] / start[support].sum()
        last, stalled = np.inf, 0
        for _ in range(30):
            u, J = payoffs(O, x, k, jac=True)
            A = np.vstack([J[np.ix_(support, support)], np.ones(len(support))])
            r = np.append(u[support] - target, x[support].sum() - 1)
            norm = np.linalg.norm(r)
            stalled = stalled + 1 if norm > 0.5 * last else 0
            if norm < 1e-15 or (norm < 1e-11 and stalled) or stalled >= 3:
                break
            last = norm
            delta = np.linalg.lstsq(A, -r, rcond=None)[0]
            x[support] += delta
        neg = [i for i in support if x[i] < -1e-12]
        if neg:
            support.remove(min(neg, key=lambda i: x[i]))
            continue
        x = np.maximum(x, 0)
        x /= x.sum()
        u = payoffs(O, x, k)
        worst = int(np.argmax(u))
        gap = max(u[worst] - target, 0.0)
        if worst in support or gap < 1e-12:
            return x, gap
        support = sorted(support + [worst])
    return None


def ne_k(O, start, k, tol=1e-6, max_iter=20_000):
    target = 1 / (k + 1)
    best = (start, np.inf)
    p = polish(O, start, k)
    if p is not None:
        best = p
        if p[1] < tol:
            return p
    n = len(start)
    x = 0.99 * start + 0.01 / n
    prev = payoffs(O, x, k)
    for it in range(max_iter):
        u = payoffs(O, x, k)
        gap = u.max() - target
        if gap < best[1]:
            best = (x.copy(), gap)
        if gap < tol:
            break
        if it + 1 in (10, 40, 160) or (it + 1) % 320 == 0:
            p = polish(O, x, k)
            if p is not None and p[1] < best[1]:
                best = p
                if p[1] < tol:
                    break
        logits = np.log(np.maximum(x, 1e-300)) + 0.5 * (2 * u - prev)
        x = np.exp(logits - logits.max())
        x /= x.sum()
        prev = u
    return best


def maximal_lottery(O, n):
    M = np.zeros((n, n))
    P = len(O)
    rank = np.empty_like(O)
    rank[np.arange(P)[:, None], O] = np.arange(n)
    for a in range(n):
        M[a] = ((rank[:, [a]] < rank).sum(0) - (rank[:, [a]] > rank).sum(0)) / P
    # maximise v: sum_a p_a M[a][b] >= v for all b; sum p = 1; p >= 0.
    c = np.zeros(n + 1)
    c[-1] = -1
    A_ub = np.hstack([-M.T, np.ones((n, 1))])
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=[[1] * n + [0]], b_eq=[1],
                  bounds=[(0, 1)] * n + [(-1, 1)], method="highs")
    p = np.maximum(res.x[:n], 0)
    return p / p.sum()


def peer(db, replicates, worth_replicates):
    rng = np.random.default_rng(5)
    texts, cand_prompt, bok, rank = load(db)
    fk_rows = fk(texts, bok, replicates, rng)
    # Per-participant orders per prompt (one full order each in this study).
    by_prompt = {}
    for who, prompt, cids, ordering in rank:
        ids = json.loads(cids)
        order = [ids[s] for s in json.loads(ordering)]
        by_prompt.setdefault(prompt, []).append(order)
    worths, equilibria = {}, []
    for prompt, orders in sorted(by_prompt.items()):
        items = sorted({i for o in orders for i in o})
        index = {c: i for i, c in enumerate(items)}
        O = np.array([[index[c] for c in o] for o in orders])
        fit = mm_orders(O, len(items), 0.1, 1e-9)
        draws = np.empty((worth_replicates, len(items)))
        for r in range(worth_replicates):
            sample = O[rng.integers(0, len(O), len(O))]
            draws[r] = mm_orders(sample, len(items), 0.1, 1e-6, start=fit)
        draws.sort(axis=0)
        q = lambda p: draws[min(int(round(p * (worth_replicates - 1))), worth_replicates - 1)]  # noqa: E731
        for i, cid in enumerate(items):
            worths[cid] = (fit[i], q(0.025)[i], q(0.975)[i])
        # Responses: distinct texts of the pool, in order of their smallest id (all distinct here).
        pool = sorted(i for i, (p, pol) in cand_prompt.items() if p == prompt and pol == "diverse")
        resp = {}
        for cid in pool:
            resp.setdefault(texts[cid], len(resp))
        R = np.array([[resp[texts[c]] for c in o] for o in orders])
        n = len(resp)
        base = np.bincount([resp[texts[c]] for c in pool], minlength=n) / len(pool)
        ml = maximal_lottery(R, n)
        start = ml
        for k in range(1, K_MAX + 1):
            for name, x in (("base", base), ("nlhf", ml)):
                equilibria.append((prompt, k, name, 1 - payoffs(R, x, k).max()))
            x, gap = ne_k(R, start, k)
            start = x
            equilibria.append((prompt, k, "ne", 1 - payoffs(R, x, k).max()))
    return fk_rows, worths, equilibria


def ualign_stats(d, replicates, worth_replicates):
    """Runs `ualign stats --json`; returns (seconds the process took, its report). The JSON
    is parsed after the clock stops: Python's parse of 12 MB is not ualign's time."""
    t = time.perf_counter()
    out = subprocess.run([str(ROOT / "target/release/ualign"), "stats", "bench.toml", "--db", "bench.sqlite", "--json",
                          "--replicates", str(replicates), "--worth-replicates", str(worth_replicates),
                          "--k-max", str(K_MAX)], cwd=d, capture_output=True, check=True).stdout
    took = time.perf_counter() - t
    return took, json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--worth-replicates", type=int, default=200)
    a = ap.parse_args()
    times = {"ualign": [], "numpy-scipy": []}
    for _ in range(a.runs):
        took, ours = ualign_stats(a.dir, a.replicates, a.worth_replicates)
        times["ualign"].append(took)
        t = time.perf_counter()
        fk_rows, worths, eq = peer(a.dir / "bench.sqlite", a.replicates, a.worth_replicates)
        times["numpy-scipy"].append(time.perf_counter() - t)
    # Agreement.
    for mine, theirs in zip(ours["fk"], fk_rows):
        assert mine["k"] == theirs["k"] and abs(mine["rate"] - theirs["rate"]) < 1e-12, (mine, theirs)
        assert abs(mine["ci_low"] - theirs["ci_low"]) < 0.01 and abs(mine["ci_high"] - theirs["ci_high"]) < 0.01
    worst = {"base": 0.0, "nlhf": 0.0, "ne": 0.0}
    mine_eq = {(e["prompt"], e["k"], e["policy"]): e["certified_win_rate"] for e in ours["equilibria"]}
    for prompt, k, name, v in eq:
        worst[name] = max(worst[name], abs(mine_eq[(prompt, k, name)] - v))
    w_diff = max(abs(w["log_worth"] - worths[w["candidate"]][0]) for w in ours["population"])
    ci_diff = max(max(abs(w["ci_low"] - worths[w["candidate"]][1]), abs(w["ci_high"] - worths[w["candidate"]][2]))
                  for w in ours["population"])
    print(f"agreement: f(k) rates exact; certified |diff| base {worst['base']:.1e}, nlhf {worst['nlhf']:.1e}, "
          f"ne {worst['ne']:.1e}; log-worths {w_diff:.1e}; worth intervals {ci_diff:.3f} (different random streams)")
    assert worst["base"] < 1e-9 and worst["ne"] < 1e-6 and w_diff < 1e-5
    print("| implementation | median s | runs (s) |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {', '.join(f'{t:.2f}' for t in ts)} |")
    print(f"ratio numpy-scipy / ualign: {statistics.median(times['numpy-scipy']) / statistics.median(times['ualign']):.1f}x")


if __name__ == "__main__":
    main()

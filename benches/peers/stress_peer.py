#!/usr/bin/env python3
"""The peer of benches/stress.rs: N processes writing one SQLite file with the same
transaction as ualign's answer commit (read the trial's slots, insert the answer), in WAL
mode with synchronous=NORMAL, through Python's sqlite3 and SQLite's own busy handler
(sqlite3_busy_timeout, which sleeps up to 100 ms between tries).

  --mode immediate   BEGIN IMMEDIATE, as ualign does now
  --mode deferred    BEGIN (DEFERRED), as ualign did before: a read that must upgrade
                     to a write fails at once with "database is locked"

Prints one JSON object: commits/s, commit latency p50/p99 (ms) and errors.
"""
import argparse
import json
import multiprocessing as mp
import os
import sqlite3
import tempfile
import time

TRIALS_PER_WRITER = 2_000_000


def setup(path, writers):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, slots TEXT NOT NULL)")
    c.execute(
        "CREATE TABLE answers (trial_id INTEGER PRIMARY KEY REFERENCES trials(id), choice INTEGER,"
        " ordering TEXT, no_preference INTEGER NOT NULL DEFAULT 0, skipped INTEGER NOT NULL DEFAULT 0,"
        " response_ms INTEGER NOT NULL, answered_at TEXT NOT NULL, session_id INTEGER)"
    )
    c.close()


def writer(path, index, secs, mode, out):
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    c.execute("PRAGMA synchronous=NORMAL")
    lat, errors, n = [], 0, 0
    begin = "BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN"
    base = index * TRIALS_PER_WRITER
    end = time.monotonic() + secs
    while time.monotonic() < end:
        tid = base + n
        # The trial row exists before its answer, as in ualign (enrolment writes it).
        c.execute("INSERT INTO trials (id, slots) VALUES (?, ?)", (tid, '[{"policy":"a","sample":0,"role":"a"}]'))
        t0 = time.perf_counter()
        try:
            c.execute(begin)
            c.execute("SELECT slots FROM trials WHERE id = ?", (tid,)).fetchone()
            c.execute(
                "INSERT OR IGNORE INTO answers (trial_id, choice, response_ms, answered_at) VALUES (?, 1, 1000, ?)",
                (tid, "2026-12-01T00:00:00.000Z"),
            )
            c.execute("COMMIT")
            lat.append((time.perf_counter() - t0) * 1000)
        except sqlite3.OperationalError:
            errors += 1
            c.execute("ROLLBACK") if c.in_transaction else None
        n += 1
    out.put((lat, errors))


def quantile(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[max(1, min(len(v), int(-(-len(v) * q // 1)))) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, default=32)
    ap.add_argument("--secs", type=float, default=30)
    ap.add_argument("--mode", choices=["immediate", "deferred"], default="immediate")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "peer.sqlite")
        setup(path, a.writers)
        out = mp.Queue()
        procs = [mp.Process(target=writer, args=(path, i, a.secs, a.mode, out)) for i in range(a.writers)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        secs = time.monotonic() - t0
    lat = [x for r in results for x in r[0]]
    print(json.dumps({
        "peer": f"python sqlite3 {sqlite3.sqlite_version}, BEGIN {a.mode.upper()}, SQLite's default busy handler",
        "writers": a.writers, "seconds": secs, "commits": len(lat), "commits_per_s": len(lat) / secs,
        "commit_ms": {"p50": quantile(lat, 0.5), "p99": quantile(lat, 0.99), "max": quantile(lat, 1.0)},
        "errors": sum(r[1] for r in results),
    }, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A small blind reading of samples, to choose the demo's `diverse` settings: how often a
sample is grammatical and on topic, against how different the samples are.

    # 1. draw samples of several settings through ualign's own engine, shuffled together,
    #    with the key kept apart
    python3 tools/models/smollm2-135m-instruct/blind.py draw --out SHEET_DIR --per-prompt 2 \\
        a=temperature=0.7,top_p=0.9  b=temperature=1.0,top_p=0.95  c=temperature=1.0,min_p=0.1
    # 2. the reader fills the two empty columns of SHEET_DIR/sheet.tsv (y or n) without
    #    opening key.json
    # 3. unblind and count
    python3 tools/models/smollm2-135m-instruct/blind.py score SHEET_DIR

What the reader marks, per sample:
  grammatical  y if every sentence is English a native reader would accept (odd or wrong
               content allowed; a sample cut off by the token limit is judged on what is there)
  on_topic     y if it does what the instruction asks (a name for a name, one line for a
               one-line poem, and so on)
Diversity is counted, not read: distinct-2 (unique word bigrams over all word bigrams
among one prompt's samples of a setting, mean over prompts), from a separate draw of
--diversity-k samples per prompt.
"""
import argparse
import csv
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
MODEL = ROOT / "assets/models/smollm2-135m-instruct"
PROMPTS = [
    "Suggest a name for a cosy neighbourhood café.",
    "Write a one-line poem about autumn rain.",
    "Give me a slogan for a bicycle repair shop.",
    "Suggest a title for a mystery novel set in a lighthouse.",
    "Give me one piece of advice for my first day at a new job.",
    "Suggest a name for a friendly grey cat.",
    "Write a one-line birthday wish for my grandmother.",
    "Suggest a name for a board game about space travel.",
    "Give me a short motto for a school garden club.",
    "Suggest a fun team name for a weekly pub quiz.",
]


def sample(settings, prompt, k, seed):
    cmd = [str(ROOT / "target/release/ualign"), "sample", str(MODEL), "--prompt", prompt, "-k", str(k),
           "--seed", str(seed), "--max-new-tokens", "60", "--threads", "2", "--json"]
    for key, value in settings.items():
        cmd += ["--" + key.replace("_", "-"), value]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line)["text"] for line in out.splitlines() if '"text"' in line]


def parse(spec):
    name, _, rest = spec.partition("=")
    settings = dict(kv.split("=", 1) for kv in rest.split(",") if kv)
    return name, settings


def distinct2(texts):
    grams = [tuple(w[i:i + 2]) for w in (re.findall(r"\w+", t.lower()) for t in texts) for i in range(len(w) - 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def draw(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, key, diversity = [], {}, {}
    for ci, spec in enumerate(args.conditions):
        name, settings = parse(spec)
        d = []
        for pi, prompt in enumerate(PROMPTS):
            for t in sample(settings, prompt, args.per_prompt, 1000 * ci + pi):
                rows.append((name, prompt, t))
            d.append(distinct2(sample(settings, prompt, args.diversity_k, 500000 + 1000 * ci + pi)))
        diversity[name] = {"settings": settings, "distinct2": sum(d) / len(d)}
    random.Random(args.seed).shuffle(rows)
    with open(out / "sheet.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "prompt", "text", "grammatical", "on_topic"])
        for i, (name, prompt, text) in enumerate(rows):
            w.writerow([i, prompt, text.replace("\n", " / "), "", ""])
            key[i] = name
    (out / "key.json").write_text(json.dumps({"conditions": key, "diversity": diversity}, indent=1))
    print(f"{len(rows)} samples in {out / 'sheet.tsv'}; the key is in key.json (do not open it before marking)")


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, c - h), min(1.0, c + h))


def score(args):
    d = Path(args.dir)
    key = json.loads((d / "key.json").read_text())
    counts = {}
    with open(d / "sheet.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            g, o = row["grammatical"].strip().lower(), row["on_topic"].strip().lower()
            if g not in ("y", "n") or o not in ("y", "n"):
                sys.exit(f"sample {row['id']} is not marked y/n in both columns")
            c = counts.setdefault(key["conditions"][row["id"]], [0, 0, 0, 0])
            c[0] += 1
            c[1] += g == "y"
            c[2] += o == "y"
            c[3] += g == "y" and o == "y"
    print("| setting | samples | grammatical | on topic | both (95% Wilson interval) | distinct-2 |")
    print("|---|---|---|---|---|---|")
    for name, (n, g, o, b) in sorted(counts.items()):
        lo, hi = wilson(b, n)
        s = ", ".join(f"{k} {v}" for k, v in key["diversity"][name]["settings"].items())
        print(f"| {name}: {s} | {n} | {g} ({100*g/n:.0f}%) | {o} ({100*o/n:.0f}%) | {b} ({100*lo:.0f}–{100*hi:.0f}%) | {key['diversity'][name]['distinct2']:.2f} |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("draw")
    a.add_argument("--out", required=True)
    a.add_argument("--per-prompt", type=int, default=2)
    a.add_argument("--diversity-k", type=int, default=8)
    a.add_argument("--seed", type=int, default=2026)
    a.add_argument("conditions", nargs="+")
    s = sub.add_parser("score")
    s.add_argument("dir")
    args = ap.parse_args()
    draw(args) if args.cmd == "draw" else score(args)


if __name__ == "__main__":
    main()

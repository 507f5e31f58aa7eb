#!/usr/bin/env python3
"""A blind reading of samples: the quality bar ("most samples at temperature 1.0 are
grammatical English fortunes on the topic") judged by a reader, not by a word list.

    # 1. draw samples from several conditions, shuffled together, with the key kept apart
    python3 tools/models/fortune-llama/blind.py draw --fortunes DIR --out SHEET_DIR --per-topic 4 \\
        shipped=assets/models/fortune-llama  truncated=assets/models/fortune-llama:min_p=0.1
    # 2. the reader fills the two empty columns of SHEET_DIR/sheet.tsv (y or n) without
    #    opening key.json
    # 3. unblind and count
    python3 tools/models/fortune-llama/blind.py score SHEET_DIR

A condition is NAME=MODEL_DIR[:temperature=X][:top_p=X][:min_p=X]; samples are drawn
through ualign's own engine (target/release/ualign sample) at temperature 1.0 and with the
model's own generation_config.json settings unless a condition overrides them.

What the reader marks, per sample:
  grammatical  y if every sentence is English a native reader would accept: real words,
               spelled right, and a syntax that parses. Fortunes may be odd or absurd;
               meaning is not judged. A sample cut off by the token limit is judged on what
               is there.
  on_topic     y if the sample is about the topic or in the style of that fortune
               category (the topic is shown beside each sample).
"""
import argparse
import csv
import json
import math
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
from wordcheck import TOPICS, corpus, draw as draw_samples  # noqa: E402


def parse_condition(spec):
    name, _, rest = spec.partition("=")
    model, *opts = rest.split(":")
    extra, temperature = [], "1.0"
    for o in opts:
        key, _, value = o.partition("=")
        if key not in ("temperature", "top_p", "min_p"):
            sys.exit(f"condition {spec!r}: unknown setting {key!r} (temperature, top_p or min_p)")
        if key == "temperature":
            temperature = value
        else:
            extra += [f"--{key.replace('_', '-')}", value]
    if not name or not model:
        sys.exit(f"condition {spec!r}: expected NAME=MODEL_DIR[:temperature=X][:top_p=X][:min_p=X]")
    if not Path(model).is_dir():
        sys.exit(f"condition {spec!r}: {model} is not a model folder")
    return name, Path(model), ["--temperature", temperature, *extra]


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def draw(a):
    _, fortunes = corpus(a.fortunes)
    rows = []
    for c, spec in enumerate(a.conditions):
        name, model, extra = parse_condition(spec)
        for i, topic in enumerate(TOPICS):
            for text in draw_samples(a.ualign, model, topic, a.per_topic, a.seed + 1000 * c + i, extra):
                rows.append({"condition": name, "topic": topic, "text": text, "copy": text in fortunes})
    random.Random(a.seed).shuffle(rows)
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "sheet.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "topic", "text", "grammatical", "on_topic"])
        for i, r in enumerate(rows):
            w.writerow([i, r["topic"], r["text"].replace("\t", " "), "", ""])
    (a.out / "key.json").write_text(json.dumps(
        {"conditions": a.conditions, "samples": [{"id": i, **r} for i, r in enumerate(rows)]}, indent=1))
    print(f"{len(rows)} samples in {a.out / 'sheet.tsv'}; key in {a.out / 'key.json'} (do not open it before rating)")


def score(a):
    for f in ("sheet.tsv", "key.json"):
        if not (a.sheet_dir / f).is_file():
            sys.exit(f"{a.sheet_dir / f}: missing (a folder written by `blind.py draw`)")
    key = {s["id"]: s for s in json.loads((a.sheet_dir / "key.json").read_text())["samples"]}
    tally = {}
    with open(a.sheet_dir / "sheet.tsv", newline="") as f:
        for n, r in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
            marks = [r["grammatical"].strip().lower(), r["on_topic"].strip().lower()]
            if any(m not in ("y", "n") for m in marks):
                sys.exit(f"sheet.tsv line {n}: grammatical and on_topic must each be y or n, found {marks}")
            s = key.get(int(r["id"]))
            if s is None:
                sys.exit(f"sheet.tsv line {n}: id {r['id']} is not in key.json (a sheet from another draw?)")
            t = tally.setdefault(s["condition"], {"n": 0, "g": 0, "t": 0, "both": 0, "copy": 0, "texts": set()})
            g, o = marks[0] == "y", marks[1] == "y"
            t["n"] += 1
            t["g"] += g
            t["t"] += o
            t["both"] += g and o
            t["copy"] += s["copy"]
            t["texts"].add(s["text"])
    print("| condition | samples | grammatical | on topic | both (95% CI) | corpus copies | distinct |")
    print("|---|---|---|---|---|---|---|")
    for name, t in tally.items():
        lo, hi = wilson(t["both"], t["n"])
        print(f"| {name} | {t['n']} | {t['g']} | {t['t']} | {t['both']} ({lo:.0%}–{hi:.0%}) | {t['copy']} | "
              f"{len(t['texts'])} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("draw")
    d.add_argument("--fortunes", required=True, type=Path)
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--per-topic", type=int, default=4)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--ualign", type=Path, default=ROOT / "target/release/ualign")
    d.add_argument("conditions", nargs="+")
    s = sub.add_parser("score")
    s.add_argument("sheet_dir", type=Path)
    a = ap.parse_args()
    draw(a) if a.cmd == "draw" else score(a)


if __name__ == "__main__":
    main()

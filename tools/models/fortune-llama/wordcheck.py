#!/usr/bin/env python3
"""A measurable stand-in for "grammatical": how many temperature-1.0 samples use only
words that occur somewhere in the training corpus (a model that garbles words invents
new ones). Samples come from ualign's own engine.

    python3 tools/models/fortune-llama/wordcheck.py --fortunes DIR MODEL_DIR [MODEL_DIR ...]

DIR as for build.py. Prints, per model folder, the samples with no invented word, the
share of invented words, how many samples repeat a corpus fortune word for word and how
many are distinct (within their topic) with the topic's distinct-2 (unique word bigrams
over all of them), over
20 samples for each of 10 topics (seeds 100..109).
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE))
import build  # noqa: E402

TOPICS = ["love", "food", "computers", "wisdom", "science", "work", "pets", "sports", "education", "art"]


def corpus(fortune_dir: Path):
    """(every word of the curated fortunes, lower-cased; every fortune, whitespace folded)."""
    if not fortune_dir.is_dir():
        sys.exit(f"--fortunes {fortune_dir}: no such folder (the unpacked package's usr/share/games/fortunes)")
    words, fortunes = set(), set()
    for cat in build.TOPICS.values():
        for text in build.read_fortunes(fortune_dir / cat):
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", text))
            fortunes.add(" ".join(text.split()))
    return words, fortunes


def draw(ualign: Path, model: Path, topic: str, k: int, seed: int, extra):
    """k samples for one topic through `ualign sample` (temperature 1.0 unless `extra` sets
    it), whitespace folded; a failing run stops with ualign's own message."""
    if not ualign.is_file():
        sys.exit(f"{ualign}: no ualign binary; build it with `cargo build --release` or pass --ualign")
    if "--temperature" not in extra:
        extra = ["--temperature", "1.0", *extra]
    run = subprocess.run(
        [str(ualign), "sample", str(model), "--prompt", topic, "-k", str(k), "--max-new-tokens", "64",
         "--seed", str(seed), "--json", *extra],
        capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"ualign sample {model} (topic {topic}) failed:\n{run.stderr.strip()}")
    return [" ".join(o["text"].split()) for o in map(json.loads, run.stdout.splitlines()) if "text" in o]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fortunes", required=True, type=Path)
    ap.add_argument("--ualign", type=Path, default=ROOT / "target/release/ualign")
    ap.add_argument("--top-p", type=float, help="override the model's own top-p (generation_config.json)")
    ap.add_argument("--min-p", type=float, help="also truncate below this share of the top token's probability")
    ap.add_argument("models", nargs="+", type=Path)
    a = ap.parse_args()
    words, fortunes = corpus(a.fortunes)
    extra = []
    if a.top_p is not None:
        extra += ["--top-p", str(a.top_p)]
    if a.min_p is not None:
        extra += ["--min-p", str(a.min_p)]
    for model in a.models:
        clean = n = invented = total = copies = 0
        texts = set()
        bigrams = {}
        for i, topic in enumerate(TOPICS):
            for text in draw(a.ualign, model, topic, 20, 100 + i, extra):
                ws = [w.lower() for w in re.findall(r"[A-Za-z]+", text)]
                bad = [w for w in ws if w not in words]
                n += 1
                clean += not bad
                copies += text in fortunes
                texts.add((topic, text))
                invented += len(bad)
                total += len(ws)
                bigrams.setdefault(topic, []).extend(zip(ws, ws[1:]))
        # distinct-2: unique word bigrams over all bigrams among a topic's samples (mean over topics).
        d2 = sum(len(set(b)) / max(len(b), 1) for b in bigrams.values()) / max(len(bigrams), 1)
        print(f"{model}: {clean}/{n} samples with no invented word; {invented / max(total, 1):.3f} of words invented; "
              f"{copies}/{n} are a corpus fortune word for word; {len(texts)}/{n} distinct; distinct-2 {d2:.2f}")


if __name__ == "__main__":
    main()

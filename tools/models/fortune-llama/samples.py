#!/usr/bin/env python3
"""Write samples.md: 20 samples at temperature 1.0 across topics (for the model card)."""
import argparse
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from ortloop import OrtDecoder

TOPICS = ["love", "computers", "food", "wisdom", "science", "work", "pets", "sports", "education", "art"]


def sample(dec, ids, eos, rng, n_new=64):
    past = dec.empty_past(1)
    logits, past = dec.step(np.array([ids], dtype=np.int64), past, 0)
    out, pos = [], len(ids)
    for _ in range(n_new):
        l = logits[0, -1].astype(np.float64)
        p = np.exp(l - l.max())
        p /= p.sum()
        t = int(rng.choice(len(p), p=p))
        if t == eos:
            break
        out.append(t)
        logits, past = dec.step(np.array([[t]], dtype=np.int64), past, pos)
        pos += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    dec = OrtDecoder(args.model / "model.onnx")
    rng = np.random.default_rng(2026)
    lines = ["| topic | sample (temperature 1.0, no other filtering) |", "|---|---|"]
    for i in range(20):
        topic = TOPICS[i % len(TOPICS)]
        text = tok.apply_chat_template([{"role": "user", "content": topic}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        out = tok.decode(sample(dec, ids, tok.eos_token_id, rng), skip_special_tokens=True)
        lines.append(f"| {topic} | {out.strip().replace('|', '/')} |")
    # The shipped model's samples live beside the recipe; an experiment's in its own folder.
    here = Path(__file__).resolve().parent
    shipped = here.parents[2] / "assets/models/fortune-llama"
    dest = here if Path(args.model).resolve() == shipped else Path(args.model)
    (dest / "samples.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write golden.json: prompt ids, 40-token greedy continuations from PyTorch and from
onnxruntime (decoded without stopping at eos, so every step of the KV cache is compared),
and the top-10 logits after each prompt. ualign's Rust engine is checked against it."""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from ortloop import OrtDecoder

TOPICS = ["love", "computers", "food", "wisdom", "science"]
N_NEW = 40


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="exported model folder")
    ap.add_argument("--hf", type=Path, required=True, help="PyTorch checkpoint folder")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = LlamaForCausalLM.from_pretrained(args.hf).eval()
    dec = OrtDecoder(args.model / "model.onnx")
    cases = []
    for topic in TOPICS:
        text = tok.apply_chat_template([{"role": "user", "content": topic}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            seq = list(ids)
            first_logits = None
            for _ in range(N_NEW):
                logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
                if first_logits is None:
                    first_logits = logits.numpy()
                seq.append(int(torch.argmax(logits)))
        torch_out = seq[len(ids):]
        ort_out = dec.greedy(ids, N_NEW)
        top = np.argsort(-first_logits, kind="stable")[:10]
        cases.append({
            "topic": topic,
            "prompt_text": text,
            "prompt_ids": ids,
            "greedy_torch": torch_out,
            "greedy_onnxruntime": ort_out,
            "agree": torch_out == ort_out,
            "greedy_text": tok.decode(torch_out, skip_special_tokens=False),
            "top10_ids": [int(i) for i in top],
            "top10_logits": [float(first_logits[i]) for i in top],
        })
        print(topic, "agree" if torch_out == ort_out else "DISAGREE", repr(cases[-1]["greedy_text"][:80]))
    out = {"n_new_tokens": N_NEW, "stops_at_eos": False, "eos_token_id": tok.eos_token_id, "cases": cases}
    (args.model / "golden.json").write_text(json.dumps(out, indent=1) + "\n")
    if not all(c["agree"] for c in cases):
        raise SystemExit("PyTorch and onnxruntime greedy continuations disagree")


if __name__ == "__main__":
    main()

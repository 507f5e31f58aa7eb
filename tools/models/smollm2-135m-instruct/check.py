#!/usr/bin/env python3
"""Check `ualign convert`'s graph in Python onnxruntime against golden.json: greedy tokens
equal transformers' for every prompt (48 steps each), and the top-10 logits after the
prompt within 1e-3. It also counts how often MatMulNBits' faster int8 mode
(accuracy_level 4, not ualign's default) would change a greedy token.

  cargo run --release -- convert assets/models/smollm2-135m-instruct --out /tmp/smollm2-onnx
  python3 tools/models/smollm2-135m-instruct/check.py --model /tmp/smollm2-onnx
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MODEL = Path(__file__).resolve().parents[3] / "assets/models/smollm2-135m-instruct"  # the model folder


def session(path, threads=2, accuracy_level=None):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    if accuracy_level is None:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    m = onnx.load(str(path))
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            n.attribute.append(onnx.helper.make_attribute("accuracy_level", accuracy_level))
    tmp = Path(path).with_name("model.acc%d.onnx" % accuracy_level)
    onnx.save_model(m, str(tmp))
    return ort.InferenceSession(str(tmp), so, providers=["CPUExecutionProvider"])


def greedy(s, ids, n):
    inputs = {i.name: i for i in s.get_inputs()}
    past = {name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32) for name, i in inputs.items() if name.startswith("past_key_values.")}
    out_names = [o.name for o in s.get_outputs()]
    seq, cur, first = list(ids), np.array([ids], np.int64), None
    for _ in range(n):
        res = dict(zip(out_names, s.run(None, {"input_ids": cur, "attention_mask": np.ones((1, len(seq)), np.int64), **past})))
        logits = res["logits"][0, -1]
        if first is None:
            first = logits
        t = int(np.argmax(logits))
        seq.append(t)
        cur = np.array([[t]], np.int64)
        past = {k.replace("present.", "past_key_values."): v for k, v in res.items() if k.startswith("present.")}
    return seq[len(ids):], first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True, help="the folder `ualign convert` wrote")
    args = ap.parse_args()
    golden = json.loads((MODEL / "golden.json").read_text())
    s = session(args.model / "model.onnx")
    ok = True
    for c in golden["cases"]:
        toks, first = greedy(s, c["prompt_ids"], golden["n_new_tokens"])
        diff = float(np.max(np.abs(first[c["top10_ids"]] - np.array(c["top10_logits"]))))
        same = toks == c["greedy"]
        ok &= same and diff < 1e-3
        print("%-40s greedy %s, top-10 logits within %.2e" % (c["prompt"], "equal" if same else "DIFFERENT", diff))
    print("accuracy_level 0 (ualign's default):", "all equal" if ok else "MISMATCH")
    fast = session(args.model / "model.onnx", accuracy_level=4)
    differ = 0
    for c in golden["cases"]:
        toks, _ = greedy(fast, c["prompt_ids"], golden["n_new_tokens"])
        first_diff = next((i for i, (a, b) in enumerate(zip(toks, c["greedy"])) if a != b), None)
        differ += first_diff is not None
        print("accuracy_level 4: %-40s %s" % (c["prompt"], "equal" if first_diff is None else "differs from token %d" % first_diff))
    print("accuracy_level 4: %d of %d greedy continuations differ" % (differ, len(golden["cases"])))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()

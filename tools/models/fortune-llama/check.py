#!/usr/bin/env python3
"""Check an exported model folder: input/output names of Optimum's text-generation-with-past
layout, and that a two-step KV-cache decode equals recomputing the whole sequence."""
import argparse
import json
from pathlib import Path

import numpy as np

from ortloop import OrtDecoder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    args = ap.parse_args()
    cfg = json.loads((args.model / "config.json").read_text())
    n_layers = cfg["num_hidden_layers"]
    dec = OrtDecoder(args.model / "model.onnx")
    want_in = {"input_ids", "attention_mask", "position_ids"} | {
        f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")}
    want_out = {"logits"} | {f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")}
    assert set(dec.inputs) == want_in, sorted(set(dec.inputs) ^ want_in)
    assert set(dec.out_names) == want_out, sorted(set(dec.out_names) ^ want_out)
    assert dec.kv_heads == cfg["num_key_value_heads"] < cfg["num_attention_heads"]

    ids = [1, 3, 200, 300, 4]
    full, _ = dec.step(np.array([ids + [17, 42]], dtype=np.int64), dec.empty_past(1), 0)
    logits, past = dec.step(np.array([ids], dtype=np.int64), dec.empty_past(1), 0)
    l1, past = dec.step(np.array([[17]], dtype=np.int64), past, len(ids))
    l2, past = dec.step(np.array([[42]], dtype=np.int64), past, len(ids) + 1)
    np.testing.assert_allclose(l1[0, -1], full[0, -2], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(l2[0, -1], full[0, -1], rtol=1e-4, atol=1e-4)
    # Batch of 2 rows sharing a copied prefix decodes like two separate rows.
    pb = {k: np.repeat(v, 2, axis=0) for k, v in dec.step(np.array([ids], dtype=np.int64), dec.empty_past(1), 0)[1].items()}
    lb, _ = dec.step(np.array([[17], [99]], dtype=np.int64), pb, len(ids))
    np.testing.assert_allclose(lb[0, -1], l1[0, -1], rtol=1e-4, atol=1e-4)
    print("check.py: names, grouped-query KV shapes, two-step KV decode and batched rows: OK")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Export the trained checkpoint to ONNX in Optimum's text-generation-with-past layout, put
the model folder together (one-file fp32 graph, tokenizer files with the chat template in
tokenizer_config.json), then write golden.json and run check.py. Called by build.py; can be
rerun alone:

    python3 tools/models/fortune-llama/export.py --hf /tmp/fortune-llama-work/hf
"""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE.parents[2] / "assets/models/fortune-llama"  # the shipped model folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", type=Path, required=True, help="trained PyTorch checkpoint folder")
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--work", type=Path, default=Path("/tmp/fortune-llama-work"))
    args = ap.parse_args()
    onnx_dir = args.work / "onnx"
    shutil.rmtree(onnx_dir, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "optimum.exporters.onnx", "--model", str(args.hf),
         "--task", "text-generation-with-past", "--opset", "17", str(onnx_dir)],
        check=True,
    )
    import onnx
    m = onnx.load(str(onnx_dir / "model.onnx"), load_external_data=True)
    onnx.save(m, str(args.out / "model.onnx"), save_as_external_data=False)  # one self-contained file
    for name in ["config.json", "generation_config.json", "tokenizer.json", "special_tokens_map.json"]:
        shutil.copy(onnx_dir / name, args.out / name)
    # transformers writes the chat template to chat_template.jinja; ship it inside
    # tokenizer_config.json, where every Hugging Face loader (and ualign) looks first.
    tc = json.loads((onnx_dir / "tokenizer_config.json").read_text())
    jinja = onnx_dir / "chat_template.jinja"
    if jinja.exists():
        tc["chat_template"] = jinja.read_text()
    assert tc.get("chat_template"), "the chat template is missing"
    (args.out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2, ensure_ascii=False) + "\n")
    subprocess.run([sys.executable, str(HERE / "golden.py"), "--model", str(args.out), "--hf", str(args.hf)], check=True)
    subprocess.run([sys.executable, str(HERE / "check.py"), "--model", str(args.out)], check=True)
    subprocess.run([sys.executable, str(HERE / "samples.py"), "--model", str(args.out)], check=True)


if __name__ == "__main__":
    main()

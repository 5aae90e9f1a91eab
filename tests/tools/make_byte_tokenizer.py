#!/usr/bin/env python3
"""Writes a byte-level BPE tokenizer.json with exactly 256 tokens (one per byte, GPT-2 byte-to-unicode
mapping, no merges) into every tiny golden model folder (tests/fixtures/models/*/). The tiny models
have a 256-token vocabulary and are driven by token ids; ModelFiles still requires every model to
carry a tokenizer, and this one is the simplest real one (checked below with HF `tokenizers`).

    python3 tests/tools/make_byte_tokenizer.py
"""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "models"


def byte_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenizer_json():
    table = byte_to_unicode()
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
            "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": {table[b]: b for b in range(256)}, "merges": []}}


def main():
    text = json.dumps(tokenizer_json(), ensure_ascii=False, indent=1) + "\n"
    for folder in sorted(p for p in ROOT.iterdir() if (p / "config.json").exists()):
        (folder / "tokenizer.json").write_text(text, encoding="utf-8")
        print("wrote", folder / "tokenizer.json")
    try:
        import tokenizers
        t = tokenizers.Tokenizer.from_str(text)
        ids = t.encode("héllo wörld").ids
        assert ids == list("héllo wörld".encode()), ids
        assert t.decode(ids) == "héllo wörld"
        print("checked with tokenizers", tokenizers.__version__)
    except ImportError:
        print("tokenizers not installed: not cross-checked")


if __name__ == "__main__":
    main()

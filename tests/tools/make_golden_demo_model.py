#!/usr/bin/env python3
"""Dumps golden outputs of the demo model (SmolLM2-135M-Instruct, Q4_1 GGUF) as transformers sees it.

transformers dequantizes every Q4_1 tensor to float32 at load (gguf-py: w = d*q + m with the f16
block scale d and minimum m widened to float32) and then computes in float32. The engine computes
on the quantized weights directly, so its logits differ by the error of its own kernels (for
example int8-quantized activations); README.md in tests/fixtures/models/ says which tolerance to
use. The GGUF is not copied: it is read from the path given on the command line.

Usage:
  python3 tests/tools/make_golden_demo_model.py --gguf PATH/SmolLM2-135M-Instruct.Q4_1.gguf [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden_common as gc  # noqa: E402
import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()

N_GREEDY = 32
TOP_K = 10

PLAIN_PROMPT = "Photosynthesis is the process by which plants"
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
# Latin accents, CJK, Cyrillic and an emoji (4-byte UTF-8); the continuation contains accents too.
# Both prompts were picked (among a few tried) for a greedy run without near-ties (min gap >= 0.05).
NON_ASCII_PROMPT = ("Café, crème brûlée, naïve, Zürich, São Paulo: 東京 and Москва 🙂 are words with non-ASCII "
                    "letters. In English, café means")


def load(gguf: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers wants a folder and a file name inside it; a symlink avoids copying 98 MB.
    tmp = tempfile.mkdtemp(prefix="golden-demo-")
    link = Path(tmp) / gguf.name
    link.symlink_to(gguf.resolve())
    tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=gguf.name, dtype=dtype,
                                                 attn_implementation="eager")
    model.eval()
    return tok, model


def encode_prompts(tok) -> list[dict]:
    chat_text = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    out = []
    for name, text, kind in (("plain", PLAIN_PROMPT, "text"),
                             ("chat", chat_text, "chatml"),
                             ("non_ascii", NON_ASCII_PROMPT, "text")):
        # add_special_tokens=False: the text is tokenized as is (the GGUF's tokenizer adds no BOS for
        # SmolLM2 either way; the chat template spells its own special tokens out as text).
        ids = tok(text, add_special_tokens=False).input_ids
        entry = {"name": name, "kind": kind, "text": text, "token_ids": [int(i) for i in ids]}
        if kind == "chatml":
            entry["messages"] = CHAT_MESSAGES
            entry["add_generation_prompt"] = True
            templ_ids = tok.apply_chat_template(CHAT_MESSAGES, tokenize=True, add_generation_prompt=True)
            if hasattr(templ_ids, "input_ids") or isinstance(templ_ids, dict):
                templ_ids = templ_ids["input_ids"]
            if [int(i) for i in templ_ids] != entry["token_ids"]:
                gc.fail("apply_chat_template(tokenize=True) disagrees with tokenizing its text")
        if tok.decode(ids) != text:
            gc.fail(f"{name}: decode(encode(text)) != text")
        out.append(entry)
    return out


@torch.no_grad()
def greedy(model, prompt: list[int], eos: int) -> dict:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(do_sample=False, max_new_tokens=N_GREEDY,
                                               eos_token_id=None, bos_token_id=None, pad_token_id=eos)
    ids = torch.tensor([prompt])
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                         output_logits=True, return_dict_in_generate=True)
    new = [int(x) for x in out.sequences[0, len(prompt):]]
    gaps = [gc.top2_gap(row[0]) for row in out.logits]
    # Cross-check against cache-free greedy steps (catches a KV-cache difference inside transformers).
    ref_ids, _ = gc.greedy_by_full_forward(model, prompt, N_GREEDY)
    if ref_ids != new:
        gc.fail(f"generate() {new} and cache-free greedy {ref_ids} disagree")
    first_eos = next((i for i, t in enumerate(new) if t == eos), None)
    return {"n_new": N_GREEDY, "token_ids": new, "top2_gap": gaps, "min_top2_gap": min(gaps),
            "first_eos_step": first_eos}


def quantize_q8_0(x: torch.Tensor) -> torch.Tensor:
    """Rounds x like a q8_0 activation block: per 32 values along the last axis, scale = absmax/127,
    round to nearest, clamp to [-127, 127]. Returns the dequantized values."""
    k = x.shape[-1]
    assert k % 32 == 0
    blocks = x.reshape(*x.shape[:-1], k // 32, 32)
    scale = blocks.abs().amax(dim=-1, keepdim=True) / 127.0
    q = torch.where(scale > 0, torch.round(blocks / torch.where(scale > 0, scale, 1.0)), 0.0).clamp(-127, 127)
    return (q * scale).reshape(x.shape)


@torch.no_grad()
def q8_activation_study(model, prompts: list[dict], rows: list[np.ndarray], eos: int) -> dict:
    """Measures what an engine that multiplies the (exactly dequantized) Q4_1 weights with q8_0-rounded
    activations, as llama.cpp-style integer dot products do, should expect: row-scaled error of the
    last-position logits and how far its greedy run follows the stored one. Informational only; the
    C++ tolerance for the demo model is derived from these numbers (README.md)."""
    hooks = [m.register_forward_pre_hook(lambda _m, args: (quantize_q8_0(args[0]),) + tuple(args[1:]))
             for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        out = {}
        for p, row in zip(prompts, rows):
            ids = p["token_ids"]
            last = gc.forward_logits(model, ids, list(range(len(ids))))[-1].numpy()
            g = greedy_no_check(model, ids, eos)
            ref = p["greedy"]["token_ids"]
            agree = next((i for i, (a, b) in enumerate(zip(g, ref)) if a != b), len(ref))
            out[p["name"]] = {
                "rel_err_last_logits": gc.rel_err(last[None, :], row[None, :]),
                "argmax_same": int(np.argmax(last)) == int(np.argmax(row)),
                "top10_overlap": len(set(np.argsort(-last)[:10].tolist()) & set(p["top10_ids"])),
                "greedy_agreeing_prefix": agree,
                "stored_gap_at_divergence": p["greedy"]["top2_gap"][agree] if agree < len(ref) else None,
            }
        return out
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def greedy_no_check(model, prompt: list[int], eos: int) -> list[int]:
    ids, _ = gc.greedy_by_full_forward(model, prompt, N_GREEDY)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=gc.DEMO_DIR)
    args = ap.parse_args()
    gc.deterministic_torch()
    versions = gc.package_versions()

    tok, model = load(args.gguf, torch.float32)
    eos = int(model.config.eos_token_id)
    prompts = encode_prompts(tok)
    rows = []
    for p in prompts:
        ids = p["token_ids"]
        last = gc.forward_logits(model, ids, list(range(len(ids))))[-1]
        top = torch.topk(last, TOP_K)
        p["top10_ids"] = [int(i) for i in top.indices]
        p["top10_logits"] = [float(v) for v in top.values]
        p["greedy"] = greedy(model, ids, eos)
        p["greedy"]["text"] = tok.decode(p["greedy"]["token_ids"])
        rows.append(last.numpy().astype(np.float32))
        print(p["name"], len(ids), "tokens; greedy:", repr(p["greedy"]["text"]), flush=True)
    study = q8_activation_study(model, prompts, rows, eos)
    print("q8_0 activation study:", study, flush=True)
    del model

    # Float64 on the same dequantized weights: how much of the float32 result is rounding noise.
    _, model64 = load(args.gguf, torch.float64)
    for p, row in zip(prompts, rows):
        ids = p["token_ids"]
        last64 = gc.forward_logits(model64, ids, list(range(len(ids))))[-1].numpy()
        p["float32_vs_float64_rel_err"] = gc.rel_err(row[None, :], last64[None, :])
        p["float64_argmax"] = int(np.argmax(last64))
    del model64

    args.out.mkdir(parents=True, exist_ok=True)
    offsets = gc.write_f32_bin(args.out / "golden_logits.bin", [r[None, :] for r in rows])
    vocab = rows[0].shape[0]
    for p, o in zip(prompts, offsets):
        p["logits_offset_floats"] = o
        p["logits_shape"] = [1, vocab]
    cfg = model_config_summary(args.gguf)
    gc.dump_json(args.out / "golden.json", {
        "format_version": gc.FORMAT_VERSION,
        "generator": "tests/tools/make_golden_demo_model.py",
        "gguf_file": args.gguf.name,
        "gguf_sha256": gc.sha256_file(args.gguf),
        "gguf_bytes": args.gguf.stat().st_size,
        "model": cfg,
        "reference_compute": ("transformers: GGUF Q4_1 tensors dequantized to float32 at load "
                              "(w = float32(d) * q + float32(m) per 32-element block), eager attention, "
                              "float32 compute"),
        "tokenization": "tokenizer loaded by transformers from the GGUF metadata; add_special_tokens=False",
        "chat_template": tok.chat_template,
        "logits_file": "golden_logits.bin",
        "logits_encoding": ("IEEE-754 float32 little-endian; per prompt one row [1, vocab_size] of the "
                            "last prompt position, starting at float index logits_offset_floats"),
        "vocab_size": vocab,
        "greedy_rule": ("argmax, lowest index wins ties, positions 0..n-1, EOS ignored: exactly n_new tokens "
                        "(first_eos_step tells where an engine that stops at EOS would stop)"),
        "prompts": prompts,
        "q8_0_activation_study": {
            "what": ("the same float32 model with every nn.Linear input rounded to q8_0 blocks (32 values, "
                     "scale absmax/127), compared with the stored reference; an estimate of what a correct "
                     "engine with int8 activation dot products deviates by"),
            "per_prompt": study,
        },
        "versions": versions,
    })


def model_config_summary(gguf: Path) -> dict:
    from gguf import GGUFReader

    r = GGUFReader(str(gguf))
    out = {}
    for key in ("general.architecture", "llama.block_count", "llama.embedding_length", "llama.context_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id"):
        f = r.fields.get(key)
        if f is None:
            continue
        v = f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()
        out[key] = v
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    out["tensor_types"] = types
    return out


if __name__ == "__main__":
    main()

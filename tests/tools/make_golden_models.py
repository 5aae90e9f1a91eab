#!/usr/bin/env python3
"""Builds the tiny random checkpoints under tests/fixtures/models/ and dumps their golden logits.

Why: the C++ CPU forward (core/model, core/engine) is tested against Hugging Face transformers
without needing PyTorch in CI. Each model folder is a real Hugging Face checkpoint layout
(config.json + model.safetensors with HF tensor names) plus golden.json and golden_logits.bin.
See tests/fixtures/models/README.md for the byte formats and the tolerances.

Usage:  python3 tests/tools/make_golden_models.py [--out DIR]
Determinism: every random number comes from torch.Generator / numpy Generator objects seeded
from the constants below; re-running with the same package versions rewrites identical files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden_common as gc  # noqa: E402
import transformers  # noqa: E402

transformers.utils.logging.disable_progress_bar()

PROMPT_LENGTHS = (1, 7, 33, 64)
N_GREEDY = 24
MIN_DISTINCT_GREEDY = 4
# The 33-token prompt is also run with given, non-default positions.
POSITION_PROMPT_LEN = 33
OFFSET_START = 100
# MSA-like layout: a 3-token template head at 0..2, then the query from 3 + doc_top_k (=19).
GAP_HEAD, GAP_QUERY_START = 3, 19
INCREMENTAL_PREFILL = 20  # prefill prompt[:20] of the 64-token prompt, then decode one by one

MSA_CONFIG = {
    # Field set and values as scripts/resave_model.sh writes them (msa-spec.md §1.3), except
    # router_layer_idx, which names the upper half of this model's 4 layers.
    "router_layer_idx": "2,3",
    "top_k_docs": 16,
    "pooling_kernel_size": 64,
    "decouple_router": True,
    "aux_loss_method": "INFONCE_DECOUPLE",
    "head_reduce_method": "mean",
    "query_reduce_method": "max",
    "chunk_reduce_method": "max",
    "decouple_pooling_mode": "mean",
    "rewrite_position": True,
    "aux_loss": False,
    "lmloss_weigth": 1.0,
    "auxloss_weight": 0.1,
    "recloss_weight": 0.0,
    "ansloss_weight": 1.0,
    "infonce_loss_temp": 0.1,
}


def llama_config(version: str) -> dict:
    # Shaped like SmolLM2-135M-Instruct's config.json (no head_dim: derived as hidden/heads).
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 8192,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pad_token_id": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 100000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": version,
        "use_cache": True,
        "vocab_size": 256,
    }


def qwen2_config_via_transformers() -> dict:
    # Written by transformers' own save_pretrained (v5 style: "rope_parameters", "dtype",
    # "layer_types" instead of a top-level rope_theta), so the loader meets both styles.
    from transformers import Qwen2Config

    cfg = Qwen2Config(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
        bos_token_id=3, eos_token_id=4, use_sliding_window=False,
        architectures=["Qwen2ForCausalLM"],
    )
    with tempfile.TemporaryDirectory() as d:
        cfg.save_pretrained(d)
        return json.loads((Path(d) / "config.json").read_text())


def qwen3_config(version: str) -> dict:
    # Shaped like Qwen3-4B-Instruct-2507's config.json; head_dim (16) != hidden/heads (12).
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 3,
        "eos_token_id": 4,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 48,
        "initializer_range": 0.02,
        "intermediate_size": 96,
        "max_position_embeddings": 262144,
        "max_window_layers": 4,
        "model_type": "qwen3",
        "num_attention_heads": 4,
        "num_hidden_layers": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 5000000.0,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": version,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 256,
    }


def msa_config(version: str) -> dict:
    cfg = qwen3_config(version)
    cfg["architectures"] = ["MSAForCausalLM"]
    cfg["model_type"] = "msa"
    cfg["torch_dtype"] = "bfloat16"
    cfg["msa_config"] = dict(MSA_CONFIG)
    return cfg


def init_weights(model, seed: int) -> dict[str, torch.Tensor]:
    """Own init instead of transformers' (std 0.02 gives near-uniform logits full of near-ties,
    and zero biases / unit norm weights would let an engine that skips them pass). Weights get
    std 1/sqrt(fan_in); an untied lm_head std 0.5 (logit spread of a few units);
    every norm weight 1 + 0.1 N(0,1); biases 0.5 N(0,1). The residual-writing projections (o_proj,
    down_proj) get 3x that std and the embeddings std 0.25: with tied embeddings a dominant token
    embedding makes greedy decoding repeat the last token forever, a degenerate test."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, p in sorted(model.state_dict().items()):
        shape = tuple(p.shape)
        if name.endswith("embed_tokens.weight"):
            t = 0.25 * torch.randn(shape, generator=g)
        elif name == "lm_head.weight":
            t = 0.5 * torch.randn(shape, generator=g)
        elif "norm" in name:
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = 0.5 * torch.randn(shape, generator=g)
        elif name.endswith(".weight") and len(shape) == 2:
            gain = 3.0 if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
            t = gain * torch.randn(shape, generator=g) / (shape[1] ** 0.5)
        else:
            raise ValueError(f"unexpected parameter {name} {shape}")
        sd[name] = t.to(torch.float32)
    return sd


def build_base(kind: str, seed: int, version: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Returns (config.json dict, float32 state dict in HF names, lm_head left out when tied)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_json = {"llama": llama_config, "qwen3": qwen3_config, "msa": msa_config}.get(kind)
    cfg_json = cfg_json(version) if cfg_json else qwen2_config_via_transformers()
    plain = {k: v for k, v in cfg_json.items() if k != "msa_config"}
    if kind == "msa":
        plain["model_type"] = "qwen3"
        plain["architectures"] = ["Qwen3ForCausalLM"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "config.json").write_text(json.dumps(plain))
        config = AutoConfig.from_pretrained(d)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sd = init_weights(model, seed)
    if cfg_json.get("tie_word_embeddings"):
        sd.pop("lm_head.weight", None)
    if kind == "msa":
        g = torch.Generator().manual_seed(seed + 1)
        hidden = cfg_json["hidden_size"]
        hd = cfg_json["head_dim"]
        for layer in (int(x) for x in MSA_CONFIG["router_layer_idx"].split(",")):
            pre = f"model.layers.{layer}.self_attn."
            sd[pre + "router_q_proj.0.weight"] = torch.randn(
                (cfg_json["num_attention_heads"] * hd, hidden), generator=g) / hidden ** 0.5
            sd[pre + "router_k_proj.0.weight"] = torch.randn(
                (cfg_json["num_key_value_heads"] * hd, hidden), generator=g) / hidden ** 0.5
        # 0-dim scalar, as in the real checkpoint (InfoNCE temperature, unused at inference).
        sd["temperature"] = torch.tensor(MSA_CONFIG["infonce_loss_temp"], dtype=torch.float32)
    return cfg_json, sd


def save_checkpoint(folder: Path, cfg_json: dict, sd: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(cfg_json)
    # transformers >= 5 writes "dtype", earlier versions "torch_dtype"; each file keeps its style.
    key = "dtype" if "rope_parameters" in cfg else "torch_dtype"
    cfg.pop("dtype", None)
    cfg.pop("torch_dtype", None)
    cfg[key] = str(dtype).replace("torch.", "")
    gc.dump_json(folder / "config.json", cfg)
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
           "transformers_version": gc.package_versions()["transformers"]}
    gc.dump_json(folder / "generation_config.json", gen)
    out = {k: v.to(dtype).contiguous() for k, v in sd.items()}
    save_file(out, str(folder / "model.safetensors"), metadata={"format": "pt"})


def draw_prompts(model64, vocab: int, seed: int) -> tuple[list[dict], int]:
    """Draws one random prompt per length; a prompt is redrawn while its greedy continuation has a
    step whose top-2 gap is below NEAR_TIE_GAP, so greedy ids are a fair exact-match test, or while
    the continuation has fewer than MIN_DISTINCT_GREEDY distinct tokens (an engine that just repeats
    a token must not pass)."""
    rng = np.random.default_rng(seed)
    prompts, redraws = [], 0
    for n in PROMPT_LENGTHS:
        for _attempt in range(100):
            ids = [int(x) for x in rng.integers(0, vocab, size=n)]
            new_ids, gaps = gc.greedy_by_full_forward(model64, ids, N_GREEDY)
            if min(gaps) >= gc.NEAR_TIE_GAP and len(set(new_ids)) >= MIN_DISTINCT_GREEDY:
                break
            redraws += 1
        else:
            gc.fail(f"no prompt of length {n} without a near-tie in 100 draws")
        prompts.append({"name": f"p{n}", "token_ids": ids, "greedy": new_ids, "gaps": gaps})
    return prompts, redraws


@torch.no_grad()
def generate_f32(model32, prompt: list[int], n_new: int) -> tuple[list[int], list[float]]:
    """model.generate(do_sample=False) with the KV cache, in float32, EOS stopping disabled."""
    from transformers import GenerationConfig

    model32.generation_config = GenerationConfig(
        do_sample=False, max_new_tokens=n_new, eos_token_id=None, bos_token_id=None, pad_token_id=0)
    ids = torch.tensor([prompt], dtype=torch.long)
    out = model32.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                           output_logits=True, return_dict_in_generate=True)
    new = [int(x) for x in out.sequences[0, len(prompt):]]
    if len(new) != n_new:
        gc.fail(f"generate returned {len(new)} tokens, wanted {n_new}")
    return new, [gc.top2_gap(row[0]) for row in out.logits]


@torch.no_grad()
def incremental_logits(model, token_ids: list[int], position_ids: list[int], k: int) -> torch.Tensor:
    """Prefill token_ids[:k], then feed the rest one token at a time through the KV cache."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    rows = []
    ids = torch.tensor([token_ids[:k]])
    out = model(input_ids=ids, position_ids=torch.tensor([position_ids[:k]]),
                attention_mask=torch.ones(1, k, dtype=torch.long), past_key_values=cache, use_cache=True)
    rows.append(out.logits[0])
    for i in range(k, len(token_ids)):
        out = model(input_ids=torch.tensor([[token_ids[i]]]), position_ids=torch.tensor([[position_ids[i]]]),
                    attention_mask=torch.ones(1, i + 1, dtype=torch.long), past_key_values=out.past_key_values,
                    use_cache=True)
        rows.append(out.logits[0])
    return torch.cat(rows, dim=0)


def make_model(out_dir: Path, name: str, kind: str, dtype: torch.dtype, seed: int, versions: dict,
               base_cache: dict) -> dict:
    folder = out_dir / name
    if folder.exists():
        shutil.rmtree(folder)
    if kind not in base_cache:
        base_cache[kind] = build_base(kind, seed, versions["transformers"])
    cfg_json, sd = base_cache[kind]
    save_checkpoint(folder, cfg_json, sd, dtype)

    # The reference is computed from the saved files: weights upcast exactly to float64.
    model64, _ = gc.load_reference_model(folder, torch.float64)
    model32, _ = gc.load_reference_model(folder, torch.float32)
    rope_theta = model64.config.rope_parameters["rope_theta"]
    want_theta = cfg_json.get("rope_theta", cfg_json.get("rope_parameters", {}).get("rope_theta"))
    if rope_theta != want_theta:
        gc.fail(f"{name}: transformers read rope_theta {rope_theta}, config says {want_theta}")
    vocab = cfg_json["vocab_size"]

    prompts, redraws = draw_prompts(model64, vocab, seed + 1000)
    arrays, cases, greedy = [], [], []
    checks = {}
    worst_f32 = 0.0

    def add_case(case_name, prompt_name, ids, pos, note):
        nonlocal worst_f32
        ref = gc.forward_logits(model64, ids, pos)
        f32 = gc.forward_logits(model32, ids, pos)
        err = gc.rel_err(f32.numpy(), ref.numpy())
        worst_f32 = max(worst_f32, err)
        arr = ref.to(torch.float32).numpy()
        arrays.append(arr)
        cases.append({"name": case_name, "prompt": prompt_name, "token_ids": ids, "position_ids": pos,
                      "shape": list(arr.shape), "first_stored_position_index": 0,
                      "hf_float32_rel_err": err,
                      "row_max_abs": [float(x) for x in np.abs(arr).max(axis=1)], "note": note})
        return ref

    plain = {}
    for p in prompts:
        ids = p["token_ids"]
        plain[p["name"]] = add_case(p["name"], p["name"], ids, list(range(len(ids))),
                                    "positions 0..n-1")
        g32, g32_gaps = generate_f32(model32, ids, N_GREEDY)
        if g32 != p["greedy"]:
            gc.fail(f"{name}/{p['name']}: float32 generate() {g32} != float64 greedy {p['greedy']}")
        greedy.append({"prompt": p["name"], "prompt_ids": ids, "n_new": N_GREEDY, "token_ids": p["greedy"],
                       "top2_gap": p["gaps"], "min_top2_gap": min(p["gaps"]),
                       "min_top2_gap_float32_generate": min(g32_gaps)})

    pp = next(p for p in prompts if len(p["token_ids"]) == POSITION_PROMPT_LEN)
    ids = pp["token_ids"]
    n = len(ids)
    off_pos = list(range(OFFSET_START, OFFSET_START + n))
    off = add_case(f"{pp['name']}_pos{OFFSET_START}", pp["name"], ids, off_pos,
                   "positions start at 100; RoPE is relative, so this equals the positions-0 case up to rounding")
    gap_pos = list(range(GAP_HEAD)) + list(range(GAP_QUERY_START, GAP_QUERY_START + n - GAP_HEAD))
    gapped = add_case(f"{pp['name']}_gap", pp["name"], ids, gap_pos,
                      "positions 0,1,2 then 19..: a position jump inside one causal sequence (MSA query layout)")
    checks["offset_vs_plain_rel_err"] = gc.rel_err(off.numpy(), plain[pp["name"]].numpy())
    checks["gap_vs_plain_rel_err"] = gc.rel_err(gapped.numpy(), plain[pp["name"]].numpy())
    if checks["gap_vs_plain_rel_err"] < 1e-3:
        gc.fail(f"{name}: the position jump does not change the logits; the case would test nothing")
    inc_gap = incremental_logits(model64, ids, gap_pos, GAP_HEAD)
    checks["gap_incremental_vs_full_rel_err"] = gc.rel_err(inc_gap.numpy(), gapped.numpy())

    p64 = next(p for p in prompts if len(p["token_ids"]) == 64)
    inc = incremental_logits(model64, p64["token_ids"], list(range(64)), INCREMENTAL_PREFILL)
    checks["incremental_decode_vs_full_rel_err"] = gc.rel_err(inc.numpy(), plain[p64["name"]].numpy())
    checks["incremental_decode"] = f"prefill {p64['name']}[:{INCREMENTAL_PREFILL}], then one token per step"
    for key in ("gap_incremental_vs_full_rel_err", "incremental_decode_vs_full_rel_err"):
        if checks[key] > 1e-6:
            gc.fail(f"{name}: {key} = {checks[key]}")
    checks["hf_float32_worst_rel_err"] = worst_f32
    checks["prompt_redraws_for_near_ties"] = redraws

    offsets = gc.write_f32_bin(folder / "golden_logits.bin", arrays)
    for c, o in zip(cases, offsets):
        c["offset_floats"] = o

    tensors = {k: {"dtype": str(dtype).replace("torch.", ""), "shape": list(v.shape)}
               for k, v in sorted(sd.items())}
    golden = {
        "format_version": gc.FORMAT_VERSION,
        "model": name,
        "architecture": cfg_json["architectures"][0],
        "model_type": cfg_json["model_type"],
        "weights_dtype": str(dtype).replace("torch.", ""),
        "seed": seed,
        "vocab_size": vocab,
        "reference_compute": ("transformers eager attention on the saved weights upcast exactly to float64; "
                              "transformers itself keeps RMSNorm statistics and RoPE angles in float32; "
                              "results rounded to float32 for storage"),
        "logits_file": "golden_logits.bin",
        "logits_encoding": "IEEE-754 float32 little-endian, row-major [n_positions, vocab_size], "
                           "case i starts at float index offset_floats (byte offset 4*offset_floats)",
        "forward_cases": cases,
        "greedy": greedy,
        "greedy_rule": "argmax of float64 reference logits, lowest index wins ties, positions 0..n-1, "
                       "EOS ignored (exactly n_new tokens); identical to float32 model.generate(do_sample=False)",
        "near_tie_gap": gc.NEAR_TIE_GAP,
        "checks": checks,
        "tensors": tensors,
        "versions": versions,
    }
    if kind == "msa":
        golden["msa_note"] = ("No memory is attached, so this is a plain Qwen3 forward: the router projectors "
                              "only produce routing queries/keys scored against a memory bank (msa-spec.md §2.1-2.4) "
                              "and never enter the attention output; the 3-token template head only exists with "
                              "memory (§2.8). The logits are the Qwen3 logits of the same (bf16) weights.")
    gc.dump_json(folder / "golden.json", golden)
    return {"name": name, "kind": kind, "weights_dtype": golden["weights_dtype"], "seed": seed,
            "files": {f.name: {"bytes": f.stat().st_size, "sha256": gc.sha256_file(f)}
                      for f in sorted(folder.iterdir())},
            "checks": checks}


MODELS = [
    # name, kind, weights dtype, seed. Half-precision variants reuse the f32 model's weights, rounded.
    ("llama-f32", "llama", torch.float32, 1101),
    ("llama-bf16", "llama", torch.bfloat16, 1101),
    ("qwen2-f32", "qwen2", torch.float32, 2202),
    ("qwen2-f16", "qwen2", torch.float16, 2202),
    ("qwen3-f32", "qwen3", torch.float32, 3303),
    ("msa-qwen3-bf16", "msa", torch.bfloat16, 3303),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=gc.MODELS_DIR)
    ap.add_argument("--only", nargs="*", help="model names to rebuild (default: all)")
    args = ap.parse_args()
    gc.deterministic_torch()
    versions = gc.package_versions()
    args.out.mkdir(parents=True, exist_ok=True)
    base_cache: dict = {}
    entries = []
    for name, kind, dtype, seed in MODELS:
        if args.only and name not in args.only:
            continue
        print(f"building {name} ...", flush=True)
        entries.append(make_model(args.out, name, kind, dtype, seed, versions, base_cache))
        print(json.dumps(entries[-1]["checks"], indent=None), flush=True)
    if args.only:
        print("manifest.json not rewritten (--only given)")
        return
    gc.dump_json(args.out / "manifest.json", {
        "format_version": gc.FORMAT_VERSION,
        "generator": "tests/tools/make_golden_models.py",
        "versions": versions,
        "models": entries,
    })


if __name__ == "__main__":
    main()

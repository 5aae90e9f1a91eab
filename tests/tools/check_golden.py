#!/usr/bin/env python3
"""Re-verifies the committed golden fixtures against transformers and the safetensors package.

For every model folder under tests/fixtures/models/ it checks: file hashes against manifest.json;
that `safetensors` opens model.safetensors and that names, dtypes and shapes match golden.json
(and, for MSA, msa-spec.md §1.5); that transformers loads the folder; that every stored logit row
is reproduced (float64 reference, rounded to float32); that greedy ids are reproduced both
cache-free and by float32 model.generate(); that half-precision and MSA variants hold exactly the
rounded weights of their float32 sibling. With --gguf it also re-checks the demo-model fixture.

Usage:  python3 tests/tools/check_golden.py [--gguf PATH/SmolLM2-135M-Instruct.Q4_1.gguf]
Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden_common as gc  # noqa: E402
import make_golden_models as mgm  # noqa: E402

# A rerun on another CPU may sum in another order; the stored values are float32-rounded float64.
REPRO_REL_TOL = 1e-6


class Checker:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, fn) -> None:
        try:
            fn()
        except Exception as e:  # a failed check must not hide the others
            self.failed += 1
            print(f"FAIL {name}: {e}")
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"PASS {name}")


def check_safetensors(folder: Path, golden: dict) -> None:
    from safetensors import safe_open

    path = folder / "model.safetensors"
    want = golden["tensors"]
    with safe_open(str(path), framework="pt") as f:
        keys = sorted(f.keys())
        assert keys == sorted(want), f"tensor names differ: {set(keys) ^ set(want)}"
        for k in keys:
            t = f.get_tensor(k)
            assert list(t.shape) == want[k]["shape"], f"{k}: shape {list(t.shape)} != {want[k]['shape']}"
            assert str(t.dtype).replace("torch.", "") == want[k]["dtype"], f"{k}: dtype {t.dtype}"
            assert torch.isfinite(t.float()).all(), f"{k}: non-finite values"
    if golden["weights_dtype"] in ("float32", "float16"):
        with safe_open(str(path), framework="np") as f:  # numpy has no bfloat16
            for k in f.keys():
                assert list(f.get_tensor(k).shape) == want[k]["shape"]
    cfg = json.loads((folder / "config.json").read_text())
    tied = cfg.get("tie_word_embeddings", False)
    assert ("lm_head.weight" in want) != tied, "lm_head.weight must be present exactly when untied"


def check_msa_layout(folder: Path, golden: dict) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "msa" and cfg["architectures"] == ["MSAForCausalLM"]
    msa = cfg["msa_config"]
    for key in ("router_layer_idx", "top_k_docs", "pooling_kernel_size", "decouple_router", "aux_loss_method",
                "head_reduce_method", "query_reduce_method", "chunk_reduce_method", "decouple_pooling_mode",
                "rewrite_position", "infonce_loss_temp"):
        assert key in msa, f"msa_config lacks {key}"
    layers = [int(x) for x in msa["router_layer_idx"].split(",")]
    h, g, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    want = golden["tensors"]
    routers = {k for k in want if "router_" in k}
    expect = set()
    for layer in layers:
        q = f"model.layers.{layer}.self_attn.router_q_proj.0.weight"
        k = f"model.layers.{layer}.self_attn.router_k_proj.0.weight"
        assert want[q]["shape"] == [h * d, cfg["hidden_size"]], q
        assert want[k]["shape"] == [g * d, cfg["hidden_size"]], k
        expect |= {q, k}
    assert routers == expect, f"router tensors {routers ^ expect} outside router_layer_idx"
    assert want["temperature"]["shape"] == [], "temperature must be a 0-dim scalar"


def check_rounded_sibling(folder: Path, sibling: Path) -> None:
    """The tensors of a bf16/f16/MSA fixture are exactly the float32 sibling's, rounded."""
    from safetensors.torch import load_file

    mine = load_file(str(folder / "model.safetensors"))
    ref = load_file(str(sibling / "model.safetensors"))
    shared = [k for k in mine if not gc.is_msa_extra_tensor(k)]
    assert sorted(shared) == sorted(ref), "stock tensor sets differ"
    for k in shared:
        assert torch.equal(mine[k], ref[k].to(mine[k].dtype)), f"{k} is not the rounded float32 tensor"


def check_forward(folder: Path, golden: dict) -> None:
    model64, cfg = gc.load_reference_model(folder, torch.float64)
    if cfg.get("tie_word_embeddings"):
        assert torch.equal(model64.lm_head.weight, model64.model.embed_tokens.weight), "lm_head not tied"
    for c in golden["forward_cases"]:
        stored = gc.read_f32_bin(folder / golden["logits_file"], c["offset_floats"], c["shape"])
        now = gc.forward_logits(model64, c["token_ids"], c["position_ids"]).numpy()
        err = gc.rel_err(now, stored)
        assert err <= REPRO_REL_TOL, f"{c['name']}: stored logits reproduced only to {err:.3g}"
        assert c["shape"] == [len(c["token_ids"]), golden["vocab_size"]]
    for g in golden["greedy"]:
        ids, gaps = gc.greedy_by_full_forward(model64, g["prompt_ids"], g["n_new"])
        assert ids == g["token_ids"], f"{g['prompt']}: greedy {ids} != stored {g['token_ids']}"
        assert min(gaps) >= golden["near_tie_gap"], f"{g['prompt']}: near-tie {min(gaps)}"
    model32, _ = gc.load_reference_model(folder, torch.float32)
    for g in golden["greedy"]:
        ids, _ = mgm.generate_f32(model32, g["prompt_ids"], g["n_new"])
        assert ids == g["token_ids"], f"{g['prompt']}: float32 generate {ids} != stored {g['token_ids']}"


def check_bin_size(folder: Path, golden: dict) -> None:
    n = sum(int(np.prod(c["shape"])) for c in golden["forward_cases"])
    size = (folder / golden["logits_file"]).stat().st_size
    assert size == 4 * n, f"golden_logits.bin is {size} bytes, cases describe {4 * n}"
    ends = sorted((c["offset_floats"], c["offset_floats"] + int(np.prod(c["shape"])))
                  for c in golden["forward_cases"])
    assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:])), "cases overlap or leave holes"


def check_demo(ck: Checker, gguf: Path) -> None:
    import make_golden_demo_model as dm

    folder = gc.DEMO_DIR
    golden = json.loads((folder / "golden.json").read_text())
    ck.check("demo: gguf sha256 matches", lambda: _assert(gc.sha256_file(gguf) == golden["gguf_sha256"],
                                                          "the GGUF is not the one the fixture was made from"))
    tok, model = dm.load(gguf, torch.float32)
    prompts = {p["name"]: p for p in dm.encode_prompts(tok)}
    eos = int(model.config.eos_token_id)
    for p in golden["prompts"]:
        def one(p=p):
            assert prompts[p["name"]]["token_ids"] == p["token_ids"], "token ids differ"
            stored = gc.read_f32_bin(folder / golden["logits_file"], p["logits_offset_floats"], p["logits_shape"])
            now = gc.forward_logits(model, p["token_ids"], list(range(len(p["token_ids"]))))[-1].numpy()
            err = gc.rel_err(now[None, :], stored)
            assert err <= 1e-5, f"last-position logits reproduced only to {err:.3g}"
            assert [int(i) for i in np.argsort(-stored[0], kind="stable")[:10]] == p["top10_ids"], "top-10 ids"
            g = dm.greedy(model, p["token_ids"], eos)
            assert g["token_ids"] == p["greedy"]["token_ids"], f"greedy {g['token_ids']}"
        ck.check(f"demo: {p['name']} tokens, logits, greedy", one)


def _assert(cond: bool, msg: str) -> None:
    assert cond, msg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, help="demo model GGUF; without it the demo fixture is not re-checked")
    args = ap.parse_args()
    gc.deterministic_torch()
    ck = Checker()
    manifest = json.loads((gc.MODELS_DIR / "manifest.json").read_text())
    print("fixtures made with", manifest["versions"])
    print("checking with    ", gc.package_versions())
    siblings = {"llama-bf16": "llama-f32", "qwen2-f16": "qwen2-f32", "msa-qwen3-bf16": "qwen3-f32"}
    for entry in manifest["models"]:
        name = entry["name"]
        folder = gc.MODELS_DIR / name
        golden = json.loads((folder / "golden.json").read_text())

        def hashes(entry=entry, folder=folder):
            for fname, info in entry["files"].items():
                assert gc.sha256_file(folder / fname) == info["sha256"], f"{fname} changed since manifest.json"
        ck.check(f"{name}: manifest hashes", hashes)
        ck.check(f"{name}: safetensors readable, names/dtypes/shapes", lambda f=folder, g=golden: check_safetensors(f, g))
        ck.check(f"{name}: logits file layout", lambda f=folder, g=golden: check_bin_size(f, g))
        if golden["model_type"] == "msa":
            ck.check(f"{name}: MSA config and router tensors (msa-spec §1.3, §1.5)",
                     lambda f=folder, g=golden: check_msa_layout(f, g))
        if name in siblings:
            ck.check(f"{name}: weights are {siblings[name]} rounded",
                     lambda f=folder, s=gc.MODELS_DIR / siblings[name]: check_rounded_sibling(f, s))
        ck.check(f"{name}: transformers reproduces logits and greedy ids",
                 lambda f=folder, g=golden: check_forward(f, g))
    du = sum(p.stat().st_size for d in (gc.MODELS_DIR, gc.DEMO_DIR) if d.exists() for p in d.rglob("*") if p.is_file())
    ck.check(f"all fixtures together {du / 1e6:.2f} MB <= 4.2 MB", lambda: _assert(du <= 4.2e6, "fixtures too large"))
    if args.gguf:
        check_demo(ck, args.gguf)
    else:
        print("SKIP demo-model fixture: pass --gguf PATH to re-check it")
    print(f"{ck.passed} passed, {ck.failed} failed")
    sys.exit(1 if ck.failed else 0)


if __name__ == "__main__":
    main()

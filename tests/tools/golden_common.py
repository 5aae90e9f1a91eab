"""Shared helpers for the golden-fixture tools (make_golden_models.py, make_golden_demo_model.py,
check_golden.py).

The fixtures are consumed by C++ tests that must not need numpy, so logits are written as raw
little-endian float32 and every shape/offset is described in golden.json. This module owns that
format, the model specifications and the reference forward, so the maker and the checker cannot
drift apart.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import struct
import sys
from pathlib import Path

import numpy as np
import torch

FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "tests" / "fixtures" / "models"
DEMO_DIR = REPO_ROOT / "tests" / "fixtures" / "demo-model"

# Greedy steps whose top-2 logit gap is below this are "near-ties": a correct f32 engine may pick
# either token there. The maker redraws prompts until no greedy step of the tiny models is a
# near-tie, so their greedy tokens must match exactly.
NEAR_TIE_GAP = 0.02


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "safetensors", "gguf", "numpy", "tokenizers", "accelerate"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_f32_bin(path: Path, arrays: list[np.ndarray]) -> list[int]:
    """Concatenates arrays as little-endian float32 (C order) and returns each one's offset in
    floats (not bytes) from the start of the file."""
    offsets = []
    pos = 0
    with open(path, "wb") as f:
        for a in arrays:
            a = np.ascontiguousarray(a, dtype="<f4")
            offsets.append(pos)
            f.write(a.tobytes(order="C"))
            pos += a.size
    return offsets


def read_f32_bin(path: Path, offset_floats: int, shape: list[int]) -> np.ndarray:
    n = int(np.prod(shape))
    data = np.fromfile(path, dtype="<f4", count=n, offset=offset_floats * 4)
    if data.size != n:
        raise ValueError(f"{path}: short read at float offset {offset_floats}, wanted {n}")
    return data.reshape(shape)


def dump_json(path: Path, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def top2_gap(row: torch.Tensor) -> float:
    v = torch.topk(row.double(), 2).values
    return float(v[0] - v[1])


def deterministic_torch() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """Max abs difference divided by the max |ref| of the same row, maximised over rows: the
    "row-scaled relative error" the C++ tests use (element-wise relative error is meaningless for
    logits near zero)."""
    a = a.reshape(-1, a.shape[-1]).astype(np.float64)
    ref = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    scale = np.maximum(np.abs(ref).max(axis=1), 1e-30)
    return float((np.abs(a - ref).max(axis=1) / scale).max())


def fail(msg: str) -> None:
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------
# Loading a fixture folder back into a transformers model (used by the maker, after saving, and by
# the checker: the golden numbers always come from the files as committed, never from the
# in-memory model that wrote them).

MSA_EXTRA_TENSOR_SUFFIXES = ("self_attn.router_q_proj.0.weight", "self_attn.router_k_proj.0.weight")


def is_msa_extra_tensor(name: str) -> bool:
    return name == "temperature" or name.endswith(MSA_EXTRA_TENSOR_SUFFIXES)


def load_reference_model(folder: Path, dtype: torch.dtype):
    """Returns (model, config_json). Stock architectures go through AutoModelForCausalLM.from_pretrained,
    so the files are proven loadable by transformers itself. model_type "msa" is not known to
    transformers: it is built as Qwen3ForCausalLM from the same config (msa_config dropped) and
    the stock tensors; the router tensors and the temperature scalar are checked and left out,
    because a forward without memory never reads them (msa-spec.md §2.1, §2.8)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    cfg_json = json.loads((folder / "config.json").read_text())
    if cfg_json["model_type"] != "msa":
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
        model.eval()
        return model, cfg_json

    plain = {k: v for k, v in cfg_json.items() if k not in ("msa_config", "architectures", "model_type")}
    config = Qwen3Config(**plain)
    config._attn_implementation = "eager"
    model = Qwen3ForCausalLM(config)
    sd = load_file(str(folder / "model.safetensors"))
    stock = {k: v.to(dtype) for k, v in sd.items() if not is_msa_extra_tensor(k)}
    missing, unexpected = model.load_state_dict(stock, strict=False)
    # lm_head is tied and therefore absent from the file, exactly as in the real checkpoint.
    if unexpected or any(m != "lm_head.weight" for m in missing):
        raise ValueError(f"{folder}: MSA tensors do not match Qwen3: missing={missing} unexpected={unexpected}")
    if cfg_json.get("tie_word_embeddings"):
        model.tie_weights()
    model.to(dtype)
    model.eval()
    return model, cfg_json


@torch.no_grad()
def forward_logits(model, token_ids: list[int], position_ids: list[int]) -> torch.Tensor:
    """Single full-sequence forward, batch 1. An explicit all-ones attention mask is passed on
    purpose: without it transformers treats any position jump as the start of a new packed
    sequence and switches to a block-diagonal mask, which is not what the engine computes."""
    ids = torch.tensor([token_ids], dtype=torch.long)
    pos = torch.tensor([position_ids], dtype=torch.long)
    mask = torch.ones_like(ids)
    out = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False)
    return out.logits[0]


@torch.no_grad()
def greedy_by_full_forward(model, prompt: list[int], n_new: int) -> tuple[list[int], list[float]]:
    """Greedy decode without a KV cache: each step re-runs the whole sequence at positions 0..n-1.
    argmax returns the lowest index among equal maxima, the tie rule the engine uses too."""
    seq = list(prompt)
    new_ids, gaps = [], []
    for _ in range(n_new):
        row = forward_logits(model, seq, list(range(len(seq))))[-1]
        nxt = int(torch.argmax(row))
        new_ids.append(nxt)
        gaps.append(top2_gap(row))
        seq.append(nxt)
    return new_ids, gaps

#!/usr/bin/env python3
"""bf16_emulation.py: how far the CUDA backend's numerics may drift from the f32 CPU backend,
estimated without a GPU, to calibrate the tolerances of tests/gpu/tst_gpu_backend.cpp.

The CUDA backend keeps weights in bf16 and rounds the input of every linear layer (normed hidden
state, attention output, SwiGLU output) to bf16, with f32 accumulation, f32 residual stream, f32
Q/K/V and attention. This script applies exactly those roundings to a Hugging Face `transformers`
model on the CPU (weights rounded to bf16, a pre-hook on every nn.Linear rounding its input) and
compares with the same model in f32: max |logit diff| / max |logit| for a prompt, and for greedy
decoding the smallest top-2 margin along the f32 transcript and whether the transcripts agree.

Usage (pip: torch, transformers, safetensors, gguf):
    python3 tests/gpu/bf16_emulation.py                       # the tiny fixtures
    python3 tests/gpu/bf16_emulation.py --demo .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

Measured (2026-11, transformers on CPU): relative max diff 0.6-1.3% on the tiny fixtures, 1.5% on the
demo model (greedy margin 1.9 on the counting prompt); the 7-token prompt has top-2 margins >= 0.11 (msa-qwen3-bf16) and 0.25 (qwen2-f32),
while the 11- and 15-token prompts have near-ties (0.002) that flip under bf16.
"""
import argparse
import json
import os
import shutil
import tempfile
import warnings

import torch
from transformers import AutoModelForCausalLM, logging

warnings.filterwarnings("ignore")
logging.set_verbosity_error()
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")


def load_pair(path, gguf=None):
    kw = {"gguf_file": gguf} if gguf else {}
    f32 = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kw).eval()
    emu = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, **kw).eval()
    with torch.no_grad():
        for _, p in emu.named_parameters():
            if p.dim() == 2:
                p.copy_(p.to(torch.bfloat16).float())
    for mod in emu.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_pre_hook(lambda _m, inp: (inp[0].to(torch.bfloat16).float(),))
    return f32, emu


def measure(name, f32, emu, prompt, steps=16):
    with torch.no_grad():
        ids = torch.tensor([prompt])
        a, b = f32(ids).logits[0], emu(ids).logits[0]
        rel = ((a - b).abs().max() / a.abs().max()).item()
        x, margin, agree = ids.clone(), float("inf"), True
        for _ in range(steps):
            la, lb = f32(x).logits[0, -1], emu(x).logits[0, -1]
            top = la.topk(2).values
            margin = min(margin, (top[0] - top[1]).item())
            agree = agree and la.argmax().item() == lb.argmax().item()
            x = torch.cat([x, la.argmax().view(1, 1)], 1)
    print(f"{name:<16} prompt {len(prompt):>2}: rel max diff {rel:.4f}  min top-2 margin {margin:.4f}  greedy agrees {agree}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", help="path of the demo GGUF model")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ["msa-qwen3-bf16", "qwen3-f32", "qwen2-f32", "qwen2-f16", "llama-f32", "llama-bf16"]:
            path = os.path.join(FIXTURES, name)
            config = json.load(open(os.path.join(path, "config.json")))
            if config.get("model_type") == "msa":   # a plain forward of an MSA checkpoint is Qwen3's
                path = shutil.copytree(path, os.path.join(tmp, name))
                config.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"])
                json.dump(config, open(os.path.join(path, "config.json"), "w"))
            f32, emu = load_pair(path)
            for n in (7, 11, 21):
                measure(name, f32, emu, [(i * 37 + 11) % 256 for i in range(n)])
    if args.demo:
        f32, emu = load_pair(os.path.dirname(os.path.abspath(args.demo)), os.path.basename(args.demo))
        # "1, 2, 3, 4, 5, 6,": the prompt of tst_gpu_backend's demo test (margin 1.9; chat prompts: ~0.08).
        measure("demo", f32, emu, [33, 28, 216, 34, 28, 216, 35, 28, 216, 36, 28, 216, 37, 28, 216, 38, 28])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The PyTorch peer of `msa bench gpu` (issue 6, Performance): the same random checkpoint that the
harness wrote, run by Hugging Face transformers' Qwen3 with SDPA attention, and the reference's
document routing written in PyTorch (bf16 matmul, head mean, query-token max, chunk -> document max
by scatter_reduce, torch.topk). `msa bench gpu` runs it as a subprocess in the same run, on the same
device, and reads the JSON it prints on stdout.

    bench_peer_torch.py bench  --checkpoint DIR --device cuda:0 --dtype bfloat16 --doc-tokens 4096 \
        --docs-per-forward 4 --memory-rows 1024 --question-tokens 256 --decode-tokens 32 --chunk 64 \
        --top-k 16 --routing-layers 18 --repeats 3 --bank-tokens 1000000 10000000 100000000
    bench_peer_torch.py parity --checkpoint DIR --input parity.json      (CPU, float32)

`bench` prints {"encoding_tokens_per_s", "scan_ms": [...per bank], "ttft_ms": [...], "decode_ms_per_token",
"versions", "device_name"}. The peer's routing keys for timing are torch.randn (timing does not depend on
values). `parity` reads token ids, raw routing queries and the synthetic-key recipe (the same splitmix64
hash as core/jobs/bench_gpu.cpp fillSyntheticKeys) and prints the model's logits for every token and the
routing top-k, so tests/core/jobs/tst_bench_peer.cpp can prove the peer computes what our engine computes.

Ours is the engine; this is only the yardstick: written from the reference's description (msa-spec §2),
not copied from any project.
"""
import argparse
import copy
import json
import math
import sys
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM


def load_model(path, device, dtype):
    kwargs = {"attn_implementation": "sdpa"}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except TypeError:   # transformers < 4.56 spells it torch_dtype
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kwargs)
    return model.to(device).eval()


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def median(v):
    v = sorted(v)
    return v[len(v) // 2] if v else 0.0


def route(q, keys, chunk_doc, n_docs, k, tile=32768):
    """Reference routing: q [T, H, D] (already scaled), keys [C, G, D]; head h uses key group h // (H/G).
    score(doc) = max over its chunks of max over tokens of mean over heads of q·k. Returns (ids, scores)."""
    T, H, D = q.shape
    C, G, _ = keys.shape
    rep = H // G
    # [G, rep*T, D]: the query heads of one key group side by side, so one batched matmul per group
    # reads each key once (no repeat_interleave copy of the keys).
    qg = q.view(T, G, rep, D).permute(1, 2, 0, 3).reshape(G, rep * T, D)
    chunk_scores = torch.empty(C, dtype=torch.float32, device=q.device)
    for c0 in range(0, C, tile):
        kt = keys[c0:c0 + tile]                          # [c, G, D]
        s = torch.matmul(qg, kt.permute(1, 2, 0))        # [G, rep*T, c] in the keys' dtype
        s = s.view(G, rep, T, -1).float().mean(dim=(0, 1))   # head mean -> [T, c]
        chunk_scores[c0:c0 + tile] = s.amax(dim=0)       # query-token max
    doc = torch.full((n_docs,), -math.inf, dtype=torch.float32, device=q.device)
    doc = doc.scatter_reduce(0, chunk_doc, chunk_scores, reduce="amax", include_self=True)   # chunk -> document max
    top = torch.topk(doc, min(k, n_docs))
    return top.indices, top.values


def splitmix64(x):
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def synthetic_keys(n_chunks, n_heads, head_dim, seed):
    """core/jobs/bench_gpu.cpp fillSyntheticKeys: (top byte of splitmix64(seed<<32 + index) - 128) / 64."""
    n = n_chunks * n_heads * head_dim
    with np.errstate(over="ignore"):
        idx = (np.uint64(seed) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    h = splitmix64(idx)
    v = ((h >> np.uint64(56)).astype(np.int64) - 128).astype(np.float32) / 64.0
    return torch.from_numpy(v.reshape(n_chunks, n_heads, head_dim))


def run_parity(a):
    spec = json.load(open(a.input))
    model = load_model(a.checkpoint, "cpu", torch.float32)
    ids = torch.tensor([spec["tokens"]], dtype=torch.long)
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits[0].float()
    T, H, D = spec["query_tokens"], spec["query_heads"], spec["head_dim"]
    q = torch.tensor(spec["queries"], dtype=torch.float32).view(T, H, D) * (1.0 / math.sqrt(D))
    keys = synthetic_keys(spec["n_chunks"], spec["key_heads"], D, spec["keys_seed"])
    chunk_doc = torch.arange(spec["n_chunks"]) // spec["chunks_per_doc"]
    n_docs = int(chunk_doc[-1]) + 1
    top, scores = route(q, keys, chunk_doc, n_docs, spec["top_k"], tile=spec.get("tile", 7))
    json.dump({"logits": logits.flatten().tolist(), "vocab": logits.shape[-1], "topk": top.tolist(),
               "scores": scores.tolist(), "versions": versions()}, sys.stdout)
    print()


def versions():
    return f"torch {torch.__version__}, transformers {transformers.__version__}"


def run_bench(a):
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)
    model = load_model(a.checkpoint, device, dtype)
    cfg = model.config
    vocab, H, G, D = cfg.vocab_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    gen = torch.Generator(device=device).manual_seed(1234)
    out = {"versions": versions(), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}

    def tokens(*shape):
        return torch.randint(3, vocab, shape, device=device, generator=gen)

    with torch.no_grad():
        # Encoding: documents side by side in the batch (each causal within itself), hidden states only.
        ids = tokens(a.docs_per_forward, a.doc_tokens)
        runs = []
        for rep in range(a.repeats + 1):
            sync(device)
            t0 = time.perf_counter()
            model.model(input_ids=ids, use_cache=False)
            sync(device)
            if rep:
                runs.append(ids.numel() / (time.perf_counter() - t0))
        out["encoding_tokens_per_s"] = median(runs)
        del ids

        # The memory context: a cache holding memory_rows tokens (the selected documents' chunk rows).
        def memory_cache():
            r = model(input_ids=tokens(1, a.memory_rows), use_cache=True)
            return r.past_key_values

        base_cache = memory_cache()
        question = tokens(1, a.question_tokens)

        # Routing scan (all routing layers) and time to first token per bank.
        out["scan_ms"], out["ttft_ms"] = [], []
        for bank in a.bank_tokens:
            n_chunks = (bank + a.chunk - 1) // a.chunk
            keys = torch.randn((n_chunks, G, D), generator=gen, device=device, dtype=dtype)
            chunk_doc = torch.arange(n_chunks, device=device) // max(1, a.doc_tokens // a.chunk)
            n_docs = int(chunk_doc[-1].item()) + 1
            q = (torch.randn((a.question_tokens, H, D), generator=gen, device=device) / math.sqrt(D)).to(dtype)
            runs = []
            for rep in range(a.repeats + 1):
                sync(device)
                t0 = time.perf_counter()
                for _ in range(a.routing_layers):
                    top, _ = route(q, keys, chunk_doc, n_docs, a.top_k)
                sync(device)
                if rep:
                    runs.append((time.perf_counter() - t0) * 1e3)
            out["scan_ms"].append(median(runs))
            runs = []
            for rep in range(a.repeats + 1):
                cache = copy.deepcopy(base_cache)
                sync(device)
                t0 = time.perf_counter()
                for _ in range(a.routing_layers):
                    top, _ = route(q, keys, chunk_doc, n_docs, a.top_k)
                logits = model(input_ids=question, past_key_values=cache, use_cache=True).logits
                nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
                model(input_ids=nxt, past_key_values=cache, use_cache=True)
                sync(device)
                if rep:
                    runs.append((time.perf_counter() - t0) * 1e3)
            out["ttft_ms"].append(median(runs))
            del keys, chunk_doc, q, cache
            if device.type == "cuda":
                torch.cuda.empty_cache()

        # Decode at batch 1 over [memory rows; question; generated].
        cache = copy.deepcopy(base_cache)
        logits = model(input_ids=question, past_key_values=cache, use_cache=True).logits
        nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
        steps = []
        for i in range(a.decode_tokens + 1):
            sync(device)
            t0 = time.perf_counter()
            logits = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits
            nxt = logits[:, -1].argmax(dim=-1, keepdim=True)
            sync(device)
            if i:
                steps.append((time.perf_counter() - t0) * 1e3)
        out["decode_ms_per_token"] = median(steps)
    json.dump(out, sys.stdout)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--checkpoint", required=True)
    b.add_argument("--device", default="cuda")
    b.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
    b.add_argument("--doc-tokens", type=int, default=4096)
    b.add_argument("--docs-per-forward", type=int, default=4)
    b.add_argument("--memory-rows", type=int, default=1024)
    b.add_argument("--question-tokens", type=int, default=256)
    b.add_argument("--decode-tokens", type=int, default=32)
    b.add_argument("--chunk", type=int, default=64)
    b.add_argument("--top-k", type=int, default=16)
    b.add_argument("--routing-layers", type=int, default=18)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--bank-tokens", type=int, nargs="+", default=[1000000, 10000000, 100000000])
    r = sub.add_parser("parity")
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--input", required=True)
    a = p.parse_args()
    torch.manual_seed(0)
    if a.mode == "bench":
        run_bench(a)
    else:
        run_parity(a)


if __name__ == "__main__":
    main()

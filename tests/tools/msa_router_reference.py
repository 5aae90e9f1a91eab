#!/usr/bin/env python3
"""Reference routing for tests/core/memory/tst_router.cpp (msa-spec §2, §3).

Re-implements, with numpy in float64, the operations of the official MSA code (EverMind-AI/MSA at
30405b2) that turn token-level routing keys and routing queries into per-layer top-k documents:

  pooling   src/msa/memory_sparse_attention.py:181-188   fp32 chunk sums / real chunk length
  key norm  src/msa/memory_sparse_attention.py:192-194   F.normalize iff aux_loss_method == "INFONCE"
  query     src/msa/memory_sparse_attention.py:264-267   F.normalize iff "INFONCE"; mask doc_id == 0
  scale     src/msa_service.py:318-321, 1095-1096        q *= D**-0.5 unless INFONCE and decoupled
  GQA       src/msa_service.py:1100, 730                 q viewed [G, H/G]; key head g serves heads g*H/G..
  reduce    src/msa_service.py:733-780                   masked -> min; head mean|max; token max|mean|last
  chunks    src/msa_service.py:782-810                   per-document amax | mean over chunks
  top-k     src/msa_service.py:826, 1165-1191            topk; ties: score desc, then document id asc
                                                         (our documented rule; torch leaves it open)

It is a self-made reference written from the code, not the code itself (the official code needs
flash_attn/CUDA, msa-spec §10). Differences the C++ must reproduce are mirrored here, e.g. the
"last" query reduce takes the token at sequence index (number of mask tokens - 1)
(msa_service.py:766-778), which equals the last mask token only when the mask is a prefix.

Run: python3 tests/tools/msa_router_reference.py [--out tests/fixtures/msa-router/router_reference.json]
Inputs are random with a fixed seed; the output is deterministic.
"""
import argparse
import json
import math
import os

import numpy as np

SEED = 20260416
N_LAYERS = 2          # routing layers in the fixture (independent data per layer)
H, G, D = 4, 2, 16    # query heads, routing-key heads, head dim
P = 4                 # pooling_kernel_size (small so that documents have several chunks)
N_DOCS = 16
TOP_K = 5
N_QUERY_TOKENS = 7


def pool(rows):
    """rows: [n, G, D] float32 -> [ceil(n/P), G, D]: fp32 sums over each chunk / its real length."""
    n = rows.shape[0]
    out = []
    for c in range(0, n, P):
        chunk = rows[c:c + P].astype(np.float64)
        out.append(chunk.sum(axis=0) / chunk.shape[0])
    return np.stack(out)


def normalize(x):
    norm = np.sqrt((x * x).sum(axis=-1, keepdims=True))
    return x / np.maximum(norm, 1e-12)


def route(case, docs, queries, mask, ids):
    method, decoupled = case["aux_loss_method"], case["decouple_router"]
    infonce = method == "INFONCE"                       # exact equality, not a substring
    keys = [pool(d) for d in docs]
    if infonce:
        keys = [normalize(k) for k in keys]
    q = queries.astype(np.float64)
    if infonce:
        q = normalize(q)
    if not (infonce and decoupled):
        q = q * (D ** -0.5)
    group = H // G
    valid = np.nonzero(mask)[0]
    scores = []
    for i, k in enumerate(keys):
        if case.get("allowed") is not None and not case["allowed"][i]:
            scores.append(None)
            continue
        per_chunk = []
        for c in range(k.shape[0]):
            # s[t, h] = q[t, h] . K[c, h // group]
            kk = k[c][np.arange(H) // group]                        # [H, D]
            s = np.einsum("thd,hd->th", q, kk)                      # [T, H]
            a = s.mean(axis=1) if case["head_reduce_method"] == "mean" else s.max(axis=1)
            qr = case["query_reduce_method"]
            if qr == "max":
                v = a[valid].max()
            elif qr == "mean":
                v = a[valid].sum() / max(len(valid), 1)
            else:                                                   # "last": index q_lens - 1
                v = a[len(valid) - 1]
            per_chunk.append(v)
        scores.append(max(per_chunk) if case["chunk_reduce_method"] == "max" else sum(per_chunk) / len(per_chunk))
    cand = [(s, ids[i], i) for i, s in enumerate(scores) if s is not None]
    cand.sort(key=lambda x: (-x[0], x[1]))
    top = cand[:TOP_K]
    # The fixture must not hinge on float rounding: no near-tie between different documents at the
    # k/k+1 boundary (exact ties of identical documents are intended and resolved by id).
    if len(cand) > TOP_K:
        a, b = cand[TOP_K - 1][0], cand[TOP_K][0]
        assert a == b or abs(a - b) > 1e-4 * max(abs(a), 1e-3), (case["name"], a, b)
    return scores, top


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "msa-router", "router_reference.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    lengths = [1, 3, 4, 5, 9, 12, 2, 7, 8, 6, 11, 4, 10, 13, 3, 5]
    assert len(lengths) == N_DOCS
    ids = [1000 - 10 * i for i in range(N_DOCS)]          # descending ids: ties must follow ids, not indices
    layers = []
    for _ in range(N_LAYERS):
        docs = [rng.standard_normal((n, G, D)).astype(np.float32) for n in lengths]
        queries = rng.standard_normal((N_QUERY_TOKENS, H, D)).astype(np.float32)
        # Document 3 is built from the query rows (a clear winner); document 15 is an exact copy of it,
        # so the two tie at the top and the tie is resolved by id (850 before 970), not by index.
        docs[3] = (queries[:lengths[3], ::2, :] * 1.5).astype(np.float32)
        docs[15] = docs[3].copy()
        docs[14] = docs[1].copy()          # another exact tie, lower in the ranking
        layers.append((docs, queries))
    mask = [1, 1, 1, 1, 1, 0, 0]           # round-1 layout: question block, then tail/response head
    mask_gap = [0, 1, 1, 0, 1, 1, 0]       # a non-prefix mask (later rounds)
    allowed = [1 if i % 3 != 0 else 0 for i in range(N_DOCS)]
    base = dict(decouple_router=True, aux_loss_method="INFONCE_DECOUPLE", head_reduce_method="mean",
                query_reduce_method="max", chunk_reduce_method="max", mask=mask, allowed=None)
    cases = [
        dict(base, name="scaled_dot"),
        dict(base, name="scaled_dot_gap_mask", mask=mask_gap),
        dict(base, name="cosine_decoupled", aux_loss_method="INFONCE"),
        dict(base, name="cosine_scaled_not_decoupled", aux_loss_method="INFONCE", decouple_router=False),
        dict(base, name="head_max_token_mean_chunk_mean", head_reduce_method="max", query_reduce_method="mean",
             chunk_reduce_method="mean"),
        dict(base, name="token_last", query_reduce_method="last"),
        dict(base, name="filtered", allowed=allowed),
    ]
    out = {
        "generator": "tests/tools/msa_router_reference.py",
        "seed": SEED, "heads": H, "route_heads": G, "head_dim": D, "chunk_size": P, "top_k": TOP_K,
        "doc_ids": ids, "doc_lengths": lengths,
        "layers": [], "cases": [],
    }
    for docs, queries in layers:
        out["layers"].append({
            "doc_key_rows": [[float(x) for x in d.reshape(-1)] for d in docs],
            "query_rows": [float(x) for x in queries.reshape(-1)],
        })
    for case in cases:
        entry = {k: v for k, v in case.items()}
        entry["per_layer"] = []
        for docs, queries in layers:
            scores, top = route(case, docs, queries, np.array(case["mask"]), ids)
            entry["per_layer"].append({
                "scores": [None if s is None else float(s) for s in scores],
                "top_ids": [t[1] for t in top],
                "top_scores": [float(t[0]) for t in top],
            })
        out["cases"].append(entry)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    for c in out["cases"]:
        print(c["name"], [l["top_ids"] for l in c["per_layer"]])
    print("wrote", args.out, os.path.getsize(args.out), "bytes")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Dump the `gguf` package's reading of a GGUF model as JSON, for tst_demo_model.

    python3 tests/tools/dump_gguf_reference.py .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/core/model/fixtures/smollm2-135m-instruct-q4_1.reference.json

What it records (all from gguf.GGUFReader and gguf.quants.dequantize, never from our C++ code):
file size, version, counts, data offset; every metadata key with its type chain and value (long
arrays: length plus the first and last 8 items); the tensor directory (name, GGML shape, type,
absolute offset, bytes); and the dequantized values of a few rows of a few tensors, which the test
compares bit-exactly.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import quants

ROWS = [("token_embd.weight", [0, 1, 1234, -1]), ("blk.0.attn_q.weight", [0, 575]),
        ("blk.0.attn_k.weight", [7]), ("blk.15.ffn_down.weight", [100]), ("blk.29.ffn_gate.weight", [1535]),
        ("output_norm.weight", [0])]


def plain(v):
    if isinstance(v, (list, tuple)):
        return [plain(i) for i in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def main(model, out):
    r = gguf.GGUFReader(model)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        v = plain(f.contents())
        entry = {"type": [int(t) for t in f.types]}
        if isinstance(v, list) and len(v) > 16:
            entry["length"] = len(v)
            entry["head"] = v[:8]
            entry["tail"] = v[-8:]
        else:
            entry["value"] = v
        meta[k] = entry
    tensors = [{"name": t.name, "ggml_shape": [int(d) for d in t.shape], "type": int(t.tensor_type),
                "offset": int(t.data_offset), "n_bytes": int(t.n_bytes)} for t in r.tensors]
    by_name = {t.name: t for t in r.tensors}
    rows = []
    for name, idx in ROWS:
        t = by_name[name]
        data = np.asarray(t.data)
        n_rows = data.shape[0] if data.ndim > 1 else 1
        for i in idx:
            i = i % n_rows
            row = data[i] if data.ndim > 1 else data
            vals = quants.dequantize(np.ascontiguousarray(row).reshape(1, -1) if t.tensor_type not in (0, 1) else row,
                                     t.tensor_type).astype(np.float32).reshape(-1)
            rows.append({"tensor": name, "row": int(i), "values": [float(x) for x in vals]})
    ref = {"file": os.path.basename(model), "file_size": os.path.getsize(model), "gguf_version": gguf.__version__
           if hasattr(gguf, "__version__") else "", "version": int(r.fields["GGUF.version"].contents()),
           "tensor_count": len(r.tensors), "kv_count": len(meta), "data_offset": int(r.data_offset),
           "alignment": int(r.alignment), "metadata": meta, "tensors": tensors, "rows": rows}
    with open(out, "w") as fh:
        json.dump(ref, fh, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {out}: {len(tensors)} tensors, {len(meta)} keys, {len(rows)} rows", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

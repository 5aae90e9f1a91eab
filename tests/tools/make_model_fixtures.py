#!/usr/bin/env python3
"""Reference fixtures for tests/core/model (tst_dtype, tst_gguf, tst_safetensors).

Everything is produced by the real peers, never by our own C++ code:
  * dequantization by the `gguf` package (gguf.quants.dequantize), the Python half of llama.cpp;
  * the tiny GGUF file by gguf.GGUFWriter and its expected reading by gguf.GGUFReader;
  * the tiny safetensors file by the `safetensors` package (safetensors.numpy.save_file).

Run from the repository root (pip install gguf numpy safetensors):
    python3 tests/tools/make_model_fixtures.py
It rewrites tests/core/model/fixtures/ deterministically (fixed seed; only the order of the keys in
tiny.safetensors' __metadata__ may change between runs, as the package keeps them in a hash map). Files:
  quant_<type>.bin   raw GGML blocks (random: real quantizations of random data where the gguf package
                     can quantize, plus random bit patterns with finite scales)
  quant_<type>.f32   their dequantization (little-endian float32), compared bit-exactly
  f16_all.bin/.f32   all 65536 half-precision bit patterns and their f32 values (NaN payloads too)
  tiny.gguf          every metadata value type (incl. nested arrays of strings), alignment 64,
                     one tensor of each supported type
  tiny.gguf.json     GGUFReader's view of it (metadata, tensor names, GGML shapes, types, offsets)
  tiny.gguf.f32      the dequantized tensors, concatenated in directory order
  tiny.safetensors   F32 / F16 tensors with metadata, and tiny.safetensors.json (names, shapes, dtypes)
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core", "model", "fixtures")
rng = np.random.default_rng(20260423)


def finite_f16(n, scale):
    return (rng.standard_normal(n) * scale).astype(np.float16)


def random_blocks(qt, n_blocks):
    """Random bytes, with the f16 scale fields replaced by finite values (NaN scales would make the
    dot-product half of the test meaningless, the integer fields take every bit pattern)."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    b = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qt in (QT.Q8_0, QT.Q4_0):
        b[:, 0:2] = finite_f16(n_blocks, 0.05).view(np.uint8).reshape(n_blocks, 2)
    elif qt == QT.Q4_1:
        b[:, 0:2] = finite_f16(n_blocks, 0.05).view(np.uint8).reshape(n_blocks, 2)
        b[:, 2:4] = finite_f16(n_blocks, 0.5).view(np.uint8).reshape(n_blocks, 2)
    elif qt == QT.Q4_K:
        b[:, 0:2] = finite_f16(n_blocks, 0.01).view(np.uint8).reshape(n_blocks, 2)
        b[:, 2:4] = finite_f16(n_blocks, 0.01).view(np.uint8).reshape(n_blocks, 2)
    elif qt == QT.Q6_K:
        b[:, 208:210] = finite_f16(n_blocks, 0.002).view(np.uint8).reshape(n_blocks, 2)
    return b


def write_quant(name, qt, n_quantized_rows, row_len, n_random_blocks):
    parts = []
    if n_quantized_rows:
        x = (rng.standard_normal((n_quantized_rows, row_len)) * rng.uniform(0.01, 3.0, (n_quantized_rows, 1))).astype(np.float32)
        q = quants.quantize(x, qt)
        parts.append(np.ascontiguousarray(q).view(np.uint8).reshape(-1))
    if n_random_blocks:
        parts.append(random_blocks(qt, n_random_blocks).reshape(-1))
    raw = np.concatenate(parts)
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    n_blocks = raw.size // block_bytes
    deq = quants.dequantize(raw.reshape(n_blocks, block_bytes), qt).astype(np.float32).reshape(-1)
    assert deq.size == n_blocks * block_elems
    raw.tofile(os.path.join(OUT, f"quant_{name}.bin"))
    deq.astype("<f4").tofile(os.path.join(OUT, f"quant_{name}.f32"))
    return n_blocks


def write_plain():
    # f16: every bit pattern, so the converter is checked for zeros, subnormals, inf and NaN payloads.
    allh = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    allh.astype("<u2").tofile(os.path.join(OUT, "f16_all.bin"))
    quants.dequantize(allh.view(np.uint8).reshape(-1, 2), QT.F16).astype("<f4").tofile(os.path.join(OUT, "f16_all.f32"))
    # f16 / bf16 / f32 rows of finite values for the dot-product checks.
    x = (rng.standard_normal(4096) * 2).astype(np.float32)
    f16 = x.astype(np.float16)
    f16.view(np.uint8).tofile(os.path.join(OUT, "quant_f16.bin"))
    quants.dequantize(f16.view(np.uint8).reshape(-1, 2), QT.F16).astype("<f4").tofile(os.path.join(OUT, "quant_f16.f32"))
    bf = quants.quantize(x.reshape(1, -1), QT.BF16).reshape(-1)
    # Add random bf16 bit patterns with finite exponents (bf16 is the upper half of an f32).
    rb = rng.integers(0, 65536, size=1024, dtype=np.uint32).astype(np.uint16)
    rb = rb[(rb & 0x7F80) != 0x7F80]
    rb = rb[: 512]
    bf_all = np.concatenate([bf, rb.view(np.uint8)])
    bf_all.tofile(os.path.join(OUT, "quant_bf16.bin"))
    quants.dequantize(bf_all.reshape(-1, 2), QT.BF16).astype("<f4").tofile(os.path.join(OUT, "quant_bf16.f32"))
    x.astype("<f4").tofile(os.path.join(OUT, "quant_f32.bin"))
    x.astype("<f4").tofile(os.path.join(OUT, "quant_f32.f32"))


def to_jsonable(v):
    if isinstance(v, (list, tuple)):
        return [to_jsonable(i) for i in v]
    if isinstance(v, (np.floating, float)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def write_gguf():
    path = os.path.join(OUT, "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    VT = gguf.GGUFValueType
    w.add_key_value("test.u8", 200, VT.UINT8)
    w.add_key_value("test.i8", -100, VT.INT8)
    w.add_key_value("test.u16", 65000, VT.UINT16)
    w.add_key_value("test.i16", -32000, VT.INT16)
    w.add_key_value("test.u32", 4000000000, VT.UINT32)
    w.add_key_value("test.i32", -2000000000, VT.INT32)
    w.add_key_value("test.u64", 2**63 + 5, VT.UINT64)
    w.add_key_value("test.i64", -(2**62), VT.INT64)
    w.add_key_value("test.f32", 0.1, VT.FLOAT32)
    w.add_key_value("test.f64", 0.1, VT.FLOAT64)
    w.add_key_value("test.bool", True, VT.BOOL)
    w.add_key_value("test.string", "héllo wörld ✓", VT.STRING)
    w.add_key_value("test.empty_string", "", VT.STRING)
    w.add_key_value("test.array_i32", [1, -2, 3], VT.ARRAY, sub_type=VT.INT32)
    w.add_key_value("test.array_f32", [0.5, -1.25], VT.ARRAY, sub_type=VT.FLOAT32)
    w.add_key_value("test.array_str", ["a", "", "ccc"], VT.ARRAY)
    w.add_key_value("test.nested_str", [["x", "yy"], ["zzz"]], VT.ARRAY)
    w.add_key_value("test.array_bool", [True, False, True], VT.ARRAY, sub_type=VT.BOOL)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])

    specs = [("t_f32", QT.F32, (3, 8)), ("t_f16", QT.F16, (2, 16)), ("t_bf16", QT.BF16, (2, 16)),
             ("t_q8_0", QT.Q8_0, (2, 64)), ("t_q4_0", QT.Q4_0, (3, 32)), ("t_q4_1", QT.Q4_1, (1, 64)),
             ("t_q4_K", QT.Q4_K, (2, 256)), ("t_q6_K", QT.Q6_K, (2, 256)), ("t_3d_f32", QT.F32, (2, 3, 4))]
    for name, qt, shape in specs:
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
        n_rows = int(np.prod(shape[:-1]))
        if qt == QT.F32:
            data = rng.standard_normal(shape).astype(np.float32)
            w.add_tensor(name, data)
        elif qt == QT.F16:
            w.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
        else:
            if qt in (QT.Q4_K, QT.Q6_K):
                raw = random_blocks(qt, n_rows * shape[-1] // block_elems).reshape(n_rows, -1)
            else:
                raw = quants.quantize(rng.standard_normal((n_rows, shape[-1])).astype(np.float32), qt)
            # The writer takes quantized data as bytes shaped [..., bytes per row] and derives the shape.
            raw = np.ascontiguousarray(raw).view(np.uint8).reshape(tuple(shape[:-1]) + (-1,))
            w.add_tensor(name, raw, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        meta[k] = {"type": [int(t) for t in f.types], "value": to_jsonable(f.contents())}
    tensors = []
    deq = []
    for t in r.tensors:
        tensors.append({"name": t.name, "ggml_shape": [int(d) for d in t.shape], "type": int(t.tensor_type),
                        "offset": int(t.data_offset), "n_bytes": int(t.n_bytes)})
        d = quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(-1)
        deq.append(d)
    np.concatenate(deq).astype("<f4").tofile(os.path.join(OUT, "tiny.gguf.f32"))
    info = {"version": 3, "alignment": 64, "data_offset": int(r.data_offset), "metadata": meta, "tensors": tensors}
    with open(os.path.join(OUT, "tiny.gguf.json"), "w") as fh:
        json.dump(info, fh, indent=1, ensure_ascii=False)


def write_safetensors():
    from safetensors.numpy import save_file
    tensors = {
        "model.embed_tokens.weight": rng.standard_normal((10, 8)).astype(np.float32),
        "model.norm.weight": rng.standard_normal((8,)).astype(np.float16),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "lm_head.weight": rng.standard_normal((10, 8)).astype(np.float16),
    }
    path = os.path.join(OUT, "tiny.safetensors")
    save_file(tensors, path, metadata={"format": "pt", "note": "fixture"})
    desc = {name: {"dtype": {"float32": "F32", "float16": "F16"}[str(a.dtype)], "shape": list(a.shape),
                   "values": [float(v) for v in a.astype(np.float32).reshape(-1)]} for name, a in tensors.items()}
    with open(os.path.join(OUT, "tiny.safetensors.json"), "w") as fh:
        json.dump({"metadata": {"format": "pt", "note": "fixture"}, "tensors": desc}, fh, indent=1)


def main():
    os.makedirs(OUT, exist_ok=True)
    counts = {
        "q8_0": write_quant("q8_0", QT.Q8_0, 4, 256, 32),
        "q4_0": write_quant("q4_0", QT.Q4_0, 4, 256, 32),
        "q4_1": write_quant("q4_1", QT.Q4_1, 4, 256, 32),
        "q4_K": write_quant("q4_K", QT.Q4_K, 0, 256, 16),
        "q6_K": write_quant("q6_K", QT.Q6_K, 0, 256, 16),
    }
    write_plain()
    write_gguf()
    write_safetensors()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("blocks:", counts, "fixture bytes:", total, "gguf", gguf.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()

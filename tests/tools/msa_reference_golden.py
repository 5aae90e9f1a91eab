#!/usr/bin/env python3
"""Golden parity fixtures produced by the OFFICIAL MSA reference code (EverMind-AI/MSA), run on the CPU.

Unlike tests/tools/msa_router_reference.py (a numpy re-implementation), this script imports and runs the
reference's own modules from a checkout given by path: MSAForCausalLM / MemorySparseAttention
(src/msa/), the encoding worker (src/prefill.py PrefillStage1Worker.inference), the memory service
(src/msa_service.py Memory.generate_blocks, MSAService.doc_query/prefill_stage2/generate), the prompt
builders (MSAEngine._prepare_template/_apply_template/_apply_template_regenerate), the custom decoding
loop (src/msa/generate.py) and the outer Memory-Interleave rule (src/app/benchmark.py should_regenerate).
Only the shims of msa-spec §10 are added, nothing of the algorithm is re-implemented:

  flash_attn         stub package: flash_attn_varlen_func = per-segment causal attention aligned
                     bottom-right (key j visible to query i iff j <= i + Lk - Lq), GQA by repeating KV
                     heads, softmax scale 1/sqrt(D), fp32 math, output cast back to the input dtype
  liger_kernel       stub LigerForCausalLMLoss (training only; raises if called)
  PIL, torchvision   empty stub modules (src/utils/__init__.py imports them for an image helper)
  torch.distributed  init_process_group no-op, all_gather / all_to_all_single = identity (world 1)
  torch.cuda         set_device, empty_cache, current_stream().synchronize no-ops; GpuWorker's device "cpu";
                     torch.empty(pin_memory=True) drops pin_memory (no CUDA to pin for)
  worker process     Memory._start_worker/_stop_worker replaced: the encoding worker's own
                     inference() runs in-process on the same model (the reference spawns it on the GPU)
  model loading      MSAService.load_model() equivalent with attn_implementation="eager" (flash_attention_2
                     cannot be requested on a CPU; the MSA attention class calls flash_attn_varlen_func
                     directly, so nothing changes)

Forcing (Memory-Interleave golden run): random weights never write document ids, so a logits processor
passed to model.generate (the reference calls logits_processor(last_inputs, fp32 logits) at every step,
src/msa/generate.py:181) records the model's REAL logits and then, while its script has entries, replaces
them by a one-hot row that makes argmax pick the scripted token; `None` in a script means "do not force"
(used for the extra forward that ends a round, whose token the reference discards). The README next to
the fixtures documents the replay contract for the C++ engine.

Usage:
    python3 -m venv --system-site-packages /tmp/refvenv && /tmp/refvenv/bin/pip install transformers==4.51.3
    git --git-dir=/work/.mirror/EverMind-AI+MSA/repo archive HEAD | tar -x -C /tmp/msa-ref
    /tmp/refvenv/bin/python tests/tools/msa_reference_golden.py --msa-repo /tmp/msa-ref \
        --msa-commit 30405b2a134c98b73fac3e51f60ce8e6036fc95b

Writes tests/fixtures/msa-reference/{model/, dot/, cosine/} (README there). Deterministic: fixed seed
(MSA_GOLDEN_SEED, default 3), one thread, deterministic algorithms; two runs give identical bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "msa-reference"

SEED = int(os.environ.get("MSA_GOLDEN_SEED", "3"))
N_DOCS = 20
POOL = 8            # pooling_kernel_size P: documents span several chunks
DOC_TOP_K = 4       # doc_top_k (< N_DOCS so selection is not trivial); queries start at 3 + 4
GREEDY_CAP = 16     # max_generate_tokens of the plain greedy run (the reference counts loop iterations)
FORCED_IDS = "[3][7]<|object_ref_end|>"
FORCED_ANSWER = "The answer to the question is: Lisbon<|im_end|>"
QUESTION = "Where was the author of the book about river boats born?"

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_end|>"]
MERGES = [("u", "s"), ("us", "e"), ("use", "r")]   # makes "user" one token: the template head is 3 tokens

MSA_CONFIG = {
    "router_layer_idx": "2,3",
    "top_k_docs": DOC_TOP_K,
    "doc_top_k": DOC_TOP_K,
    "pooling_kernel_size": POOL,
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


# ----------------------------------------------------------------------------------------------- shims
def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None,
                           dropout_p=0.0, softmax_scale=None, causal=False, **_):
    """q [Tq,H,D], k/v [Tk,Hk,D], packed segments; fp32 math; causal aligned bottom-right."""
    out = torch.empty(q.shape, dtype=torch.float32)
    h, d = q.shape[1], q.shape[2]
    scale = softmax_scale if softmax_scale is not None else d ** -0.5
    cq, ck = cu_seqlens_q.tolist(), cu_seqlens_k.tolist()
    for s in range(len(cq) - 1):
        qs = q[cq[s]:cq[s + 1]].float().transpose(0, 1)            # [H,Lq,D]
        ks = k[ck[s]:ck[s + 1]].float().transpose(0, 1)            # [Hk,Lk,D]
        vs = v[ck[s]:ck[s + 1]].float().transpose(0, 1)
        rep = h // ks.shape[0]
        ks, vs = ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0)
        lq, lk = qs.shape[1], ks.shape[1]
        if lq == 0:
            continue
        att = torch.matmul(qs, ks.transpose(1, 2)) * scale          # [H,Lq,Lk]
        if causal:
            i = torch.arange(lq).unsqueeze(1)
            j = torch.arange(lk).unsqueeze(0)
            att = att.masked_fill(j > i + (lk - lq), float("-inf"))
        p = torch.softmax(att, dim=-1)
        out[cq[s]:cq[s + 1]] = torch.matmul(p, vs).transpose(0, 1)
    return out.to(q.dtype)


def stub_module(name):
    import importlib.machinery
    m = types.ModuleType(name)
    m.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return m


def install_shims():
    fa = stub_module("flash_attn")
    fa.flash_attn_varlen_func = flash_attn_varlen_func
    sys.modules["flash_attn"] = fa
    for name in ["liger_kernel", "liger_kernel.transformers", "liger_kernel.transformers.model",
                 "liger_kernel.transformers.model.loss_utils"]:
        sys.modules[name] = stub_module(name)

    def liger_loss(*a, **k):
        raise RuntimeError("LigerForCausalLMLoss is training-only and stubbed out")
    sys.modules["liger_kernel.transformers.model.loss_utils"].LigerForCausalLMLoss = liger_loss
    for name in ["PIL", "PIL.Image", "torchvision", "torchvision.transforms", "torchvision.transforms.functional"]:
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                sys.modules[name] = stub_module(name)
    sys.modules["PIL"].Image = sys.modules["PIL.Image"]
    if not hasattr(sys.modules["PIL.Image"], "Image"):
        sys.modules["PIL.Image"].Image = type("Image", (), {})   # only a type annotation in src/utils/common.py
    sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"]
    sys.modules["torchvision.transforms"].functional = sys.modules["torchvision.transforms.functional"]

    import torch.distributed as dist
    dist.init_process_group = lambda *a, **k: None

    def all_gather(out_list, t, *a, **k):
        out_list[0].copy_(t)
    dist.all_gather = all_gather

    def all_to_all_single(out, inp, out_splits=None, in_splits=None, *a, **k):
        out.copy_(inp)
    dist.all_to_all_single = all_to_all_single

    class _Stream:
        def synchronize(self):
            pass
    torch.cuda.current_stream = lambda *a, **k: _Stream()
    torch.cuda.set_device = lambda *a, **k: None
    torch.cuda.empty_cache = lambda: None
    real_empty = torch.empty

    def empty(*a, **k):
        k.pop("pin_memory", None)
        return real_empty(*a, **k)
    torch.empty = empty


# ------------------------------------------------------------------------------------ fixture model
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


def tokenizer_files():
    table = byte_to_unicode()
    vocab = {table[b]: b for b in range(256)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    added = []
    for s in SPECIAL:
        added.append({"id": len(vocab) + len(added), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
           "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                     "vocab": vocab, "merges": [f"{a} {b}" for a, b in MERGES]}}
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 32768, "clean_up_tokenization_spaces": False,
           "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "bos_token": None, "unk_token": None,
           "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|object_ref_end|>"],
           "added_tokens_decoder": {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                     "single_word", "special")} for a in added}}
    return tok, cfg, len(vocab) + len(added)


def init_weights(model, seed):
    """std 1/sqrt(fan_in) (residual writers x3), embeddings 0.25, norms 1 + 0.1 N(0,1): HF's 0.02
    default gives near-uniform logits whose argmax is a coin toss between implementations."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape = tuple(p.shape)
            if name.endswith("embed_tokens.weight"):
                t = 0.25 * torch.randn(shape, generator=g)
            elif "norm" in name:
                t = 1.0 + 0.1 * torch.randn(shape, generator=g)
            elif name == "temperature":
                continue
            elif len(shape) == 2:
                gain = 3.0 if name.endswith(("o_proj.weight", "down_proj.weight")) else 1.0
                t = gain * torch.randn(shape, generator=g) / math.sqrt(shape[1])
            else:
                raise ValueError(f"unexpected parameter {name} {shape}")
            p.copy_(t.to(p.dtype))


def build_model(model_dir: Path, vocab_size: int):
    from src.msa.model import MSAForCausalLM, MSAConfig
    from transformers import PreTrainedTokenizerFast
    cfg = MSAConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=32768,
        rms_norm_eps=1e-6, rope_theta=5000000.0, tie_word_embeddings=True, attention_bias=False,
        use_sliding_window=False, sliding_window=None, max_window_layers=4,
        bos_token_id=None, eos_token_id=SPECIAL_IDS["<|im_end|>"], pad_token_id=SPECIAL_IDS["<|endoftext|>"],
        torch_dtype="bfloat16", msa_config=dict(MSA_CONFIG), architectures=["MSAForCausalLM"])
    torch.manual_seed(SEED)
    model = MSAForCausalLM(cfg)
    init_weights(model, SEED)
    model.tie_weights()
    model = model.to(torch.bfloat16)
    model.generation_config.eos_token_id = [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"]]
    model.generation_config.pad_token_id = SPECIAL_IDS["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    model.save_pretrained(model_dir, safe_serialization=True)
    tok, tok_cfg, _ = tokenizer_files()
    (model_dir / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=1) + "\n")
    t = PreTrainedTokenizerFast.from_pretrained(model_dir)
    assert t.pad_token_id == SPECIAL_IDS["<|endoftext|>"], t.pad_token_id
    assert t("<|im_start|>user\n", add_special_tokens=False)["input_ids"] == [SPECIAL_IDS["<|im_start|>"], 258, 10]


# ------------------------------------------------------------------------------------------- data
def make_documents():
    rng = np.random.default_rng(SEED)
    first = ["Ada", "Bruno", "Carla", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luis"]
    last = ["Brook", "Costa", "Duval", "Eriksen", "Ferro", "Gallo", "Holm", "Ivanov", "Jansen", "Klein"]
    cities = ["Lisbon", "Porto", "Oslo", "Lyon", "Turin", "Ghent", "Bergen", "Graz", "Cork", "Split"]
    topics = ["river boats", "glass bridges", "old maps", "desert birds", "night trains", "paper kites",
              "salt mines", "clock towers", "wool dyes", "lighthouses"]
    docs = []
    for i in range(N_DOCS):
        a = f"{first[rng.integers(len(first))]} {last[rng.integers(len(last))]}"
        c, t, y = cities[rng.integers(len(cities))], topics[rng.integers(len(topics))], 1850 + int(rng.integers(150))
        kind = i % 4
        if kind == 0:
            s = f"{a} was born in {c} in {y} and later wrote a book about {t}."
        elif kind == 1:
            s = f"The book about {t} was written by {a}, who taught in {c} for {int(rng.integers(3, 40))} years."
        elif kind == 2:
            s = f"In {y}, {a} moved to {c}. Friends said the user manual for {t} was their best work."
        else:
            s = f"{a} never visited {c}."
        docs.append(s)
    return docs


# --------------------------------------------------------------------------------------- dumping
class Blob:
    """One little-endian binary per branch plus an index (name -> offset, dtype, shape)."""

    def __init__(self):
        self.parts, self.index, self.size = [], {}, 0

    def add(self, name, t, dtype):
        assert name not in self.index, name
        t = t.detach().cpu().contiguous()
        if dtype == "bf16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
        elif dtype == "f32":
            raw = t.to(torch.float32).numpy().astype("<f4").tobytes()
        else:
            raise ValueError(dtype)
        self.index[name] = {"offset": self.size, "dtype": dtype, "shape": list(t.shape)}
        self.parts.append(raw)
        self.size += len(raw)

    def write(self, path):
        path.write_bytes(b"".join(self.parts))


class Recorder:
    """logits processor: records the real fp32 logits of every step, then forces scripted tokens."""

    def __init__(self, script=None, banned=()):
        self.script = list(script or [])
        self.banned = list(banned)
        self.calls = []
        self.logits = []

    def __call__(self, input_ids, scores):
        real = scores.clone()
        i = len(self.calls)
        forced = self.script[i] if i < len(self.script) else None
        top = torch.topk(real[0], 5)
        self.calls.append({"argmax": int(torch.argmax(real[0])), "forced": forced,
                           "top5_ids": top.indices.tolist(), "top5_values": [float(x) for x in top.values]})
        self.logits.append(real[0])
        if forced is None and self.banned:
            # Greedy among the tokens that are not banned (the real argmax is still recorded).
            out = scores.clone()
            out[:, self.banned] = float("-inf")
            self.calls[-1]["selected"] = int(torch.argmax(out[0]))
            return out
        if forced is None:
            return scores
        out = torch.full_like(scores, float("-inf"))
        out[:, forced] = 0.0
        return out


def bf16_list(t):
    return [float(x) for x in t.to(torch.float32).tolist()]


# ---------------------------------------------------------------------------------------- runner
def run_branch(branch, method, model_src: Path, docs, blob, shadow=False):
    """Runs one scoring branch. shadow=True: the same code with the model loaded in float32 (every
    activation fp32), storing only the pooled memory, template head, routing queries and scores under
    "f32/...": it separates the reference's bf16 activation rounding from real differences."""
    from transformers import AutoTokenizer, LogitsProcessorList
    from src.msa.model import MSAForCausalLM
    from src.msa_service import MSAService, MSAEngine, GenerateRequest
    from src.prefill import PrefillStage1Worker
    from src.config.memory_config import GenerateConfig, ModelConfig, MemoryConfig
    from src.utils.template import QWEN3_INSTRUCT_TEMPLATE
    from src.utils.tools import compose_input
    import src.utils.gpu_worker as gpu_worker
    from src.app.benchmark import should_regenerate

    gpu_worker.GpuWorker._setup_device = lambda self: "cpu"

    tmp = Path(tempfile.mkdtemp(prefix=f"msa-ref-{branch}-"))
    model_dir = tmp / "model"
    shutil.copytree(model_src, model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    cfg["msa_config"]["aux_loss_method"] = method
    (model_dir / "config.json").write_text(json.dumps(cfg, indent=2))

    model_config = ModelConfig(model_path=str(model_dir), doc_top_k=DOC_TOP_K, pooling_kernel_size=POOL,
                               router_layer_idx=MSA_CONFIG["router_layer_idx"])
    memory_config = MemoryConfig(block_size=16000, slice_chunk_size=16384, pooling_kernel_size=POOL,
                                 memory_file_path="")

    def make_service(max_tokens):
        gen = GenerateConfig(devices=[0], template="QWEN3_INSTRUCT_TEMPLATE", max_generate_tokens=max_tokens,
                             temperature=0.0, top_p=0.9, qa_mode=True)
        svc = MSAService(0, gen, model_config, memory_config)
        # MSAService.load_model() with attn_implementation "eager" instead of "flash_attention_2".
        svc.tokenizer = AutoTokenizer.from_pretrained(model_config.model_path)
        svc.model = MSAForCausalLM.from_pretrained(model_config.model_path, use_cache=True, attn_implementation="eager",
                                                   torch_dtype=torch.float32 if shadow else "auto",
                                                   device_map="cpu")
        svc.model.eval()
        svc.setup_memory_client(svc.model)
        return svc

    svc = make_service(2048)
    tok = svc.tokenizer
    assert svc.model.dtype == (torch.float32 if shadow else torch.bfloat16)
    tag = "f32/" if shadow else ""
    store = "f32" if shadow else "bf16"
    assert svc.scaling == (-1.0 if method == "INFONCE" else 16 ** -0.5), svc.scaling

    # The engine-side helpers (tokenizer, template, documents) on a bare MSAEngine.
    eng = object.__new__(MSAEngine)
    eng.tokenizer = tok
    eng.model_config = model_config
    eng.generate_config = svc.generate_config
    buckets = eng._sort_reference(list(docs))
    assert len(buckets) == 1
    documents = buckets[0]
    eng._prepare_template()

    # Encoding: the reference's worker, in-process (generate_blocks drives it unchanged).
    worker = object.__new__(PrefillStage1Worker)
    worker.gpu_id, worker.device = 0, "cpu"
    worker.tokenizer, worker.model = tok, svc.model
    worker.model_config = svc.model.config
    worker.pooling_kernel_size = POOL
    worker.template_id = -2
    worker._prepare_template(QWEN3_INSTRUCT_TEMPLATE)
    pending = []
    svc._start_worker = lambda: None
    svc._worker_req_q = svc._worker_rsp_q = None
    svc._stop_worker = lambda: None
    PrefillStage1Worker.send_documents = staticmethod(
        lambda q, d: pending.extend(PrefillStage1Worker.split_docs(d, memory_config.block_size)))
    PrefillStage1Worker.recv_meta = staticmethod(lambda q: worker.inference(pending.pop(0)))
    svc.save_idx_to_doc({d.doc_id: d.doc for d in documents})
    svc.generate_blocks(documents)
    n_blocks = 1

    golden = {"branch": branch, "aux_loss_method": method, "scaling": svc.scaling,
              "doc_top_k": DOC_TOP_K, "pooling_kernel_size": POOL, "router_layers": svc.router_layer_ids,
              "template_head_ids": worker.template_head_input_ids, "query_position_start": 3 + DOC_TOP_K,
              "n_encoding_blocks": n_blocks}
    n_layers = svc.model.config.num_hidden_layers
    for l in range(n_layers):
        k, v = svc.template_prefix_kvcache[l]
        blob.add(f"{tag}template/k/{l}", k[0].transpose(0, 1), store)     # [T, G, D]
        blob.add(f"{tag}template/v/{l}", v[0].transpose(0, 1), store)
    offs, lens = svc.block_desc.doc_offsets_cpu.tolist(), svc.block_desc.doc_lens_cpu.tolist()
    doc_json = []
    for j, d in enumerate(documents):
        wrapped, enc = compose_input(d.doc, d.doc_id, tok)
        o, n = offs[j + 1], lens[j + 1]
        assert n == d.num_chunks
        for l in svc.router_layer_ids:
            b = svc.blocks[l]
            blob.add(f"{tag}doc/{d.doc_id}/k/{l}", b.k[0, :, o:o + n].transpose(0, 1), store)    # [C, G, D]
            blob.add(f"{tag}doc/{d.doc_id}/v/{l}", b.v[0, :, o:o + n].transpose(0, 1), store)
            blob.add(f"{tag}doc/{d.doc_id}/rk/{l}", b.rk[0, :, o:o + n].transpose(0, 1), store)
        doc_json.append({"id": d.doc_id, "text": d.doc, "wrapped": wrapped, "ids": enc["input_ids"],
                         "n_chunks": d.num_chunks, "first_chunk": o})
    golden["documents"] = doc_json

    # ---- per-call capture: routing (queries, all scores), forwards, prefill logits of all positions
    margins = {}

    def instrument(s, prefix_ref):
        orig_stage2 = s.prefill_stage2
        real_topk = torch.topk

        def prefill_stage2(layer_idx, query_states, query_mask):
            captured = {}

            def topk(x, *a, **k):
                if "scores" not in captured:
                    captured["scores"] = x.clone()
                return real_topk(x, *a, **k)
            torch.topk = topk
            try:
                res = orig_stage2(layer_idx, query_states, query_mask)
            finally:
                torch.topk = real_topk
            p = prefix_ref[0]
            m = query_mask.view(-1).bool()
            q = query_states[0].reshape(-1, query_states.shape[3], query_states.shape[4])   # [H, L, D]
            blob.add(f"{tag}{p}/query/{layer_idx}", q[:, m].transpose(0, 1), store)          # [Tm, H, D]
            sc = captured["scores"][0, 1:].float()
            blob.add(f"{tag}{p}/scores/{layer_idx}", sc, "f32")     # [N] (slot 0 = dummy)
            top = torch.sort(sc, descending=True).values
            # Gap between the k-th and (k+1)-th score in bf16 ulps at that magnitude: a golden top-k
            # set is only meaningful for an fp32 implementation when the boundary is not a near-tie.
            ulp = 2.0 ** (math.floor(math.log2(abs(float(top[DOC_TOP_K - 1])))) - 7)
            margins[f"{p}/{layer_idx}"] = float(top[DOC_TOP_K - 1] - top[DOC_TOP_K]) / ulp
            return res
        s.prefill_stage2 = prefill_stage2

        forwards = []

        def pre_hook(mod, a, kw):
            stage = kw["past_key_values"].cache_kwargs[0]["stage"]
            forwards.append({"stage": stage, "input_ids": kw["input_ids"][0].tolist(),
                             "positions": kw["position_ids"][0].tolist(),
                             "attention_mask": kw["attention_mask"][0].tolist()[-kw["input_ids"].shape[1]:]})
        captured_hidden = []

        def model_hook(mod, a, kw, out):
            if kw["past_key_values"].cache_kwargs[0]["stage"] == "prefill_stage2":
                captured_hidden.append(out.last_hidden_state.clone())
        h1 = s.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
        h2 = s.model.model.register_forward_hook(model_hook, with_kwargs=True)
        return forwards, captured_hidden, (h1, h2)

    prefill_logits = {}

    def run_call(s, prompt, prefix, script, banned=()):
        prefix_ref = [prefix]
        forwards, hidden, hooks = instrument(s, prefix_ref)
        if "<regenerate>" in prompt:
            input_ids, attention_mask, doc_ids = eng._apply_template_regenerate(prompt)
        else:
            input_ids, attention_mask, doc_ids = eng._apply_template(prompt)
        positions = [3 + DOC_TOP_K + i for i in range(len(input_ids))]   # msa_service.py:1823-1835
        rec = Recorder(script, banned)
        s.generate_kwarg["logits_processor"] = LogitsProcessorList([rec])
        req = GenerateRequest(msg_id=1, seq_id=0, prompts=[prompt], input_ids=[input_ids], attention_mask=[attention_mask],
                              doc_ids=[doc_ids], positions=[positions], require_recall_topk=True)
        returned = []
        real_generate = s.model.generate

        def generate(*a, **k):
            returned.append(real_generate(*a, **k))
            return returned[-1]
        s.model.generate = generate
        rsp = s.generate(req)
        del s.model.generate
        for h in hooks:
            h.remove()
        s.prefill_stage2 = type(s).prefill_stage2.__get__(s)
        # Prefill logits of every prompt position: the final hidden states of the prefill forward
        # through lm_head (the reference itself only keeps the last position, logits_to_keep=1).
        assert len(hidden) == 1
        with torch.no_grad():
            all_logits = s.model.lm_head(hidden[0])[0].float()
        # Both are bf16 values (bf16 lm_head; the processor sees an fp32 copy): stored exactly as bf16.
        prefill_logits[prefix] = all_logits
        if prefix == "interleave/round0":   # same prompt as the greedy run: same prefill
            assert torch.equal(all_logits, prefill_logits["greedy"])
        if not shadow and prefix != "greedy":   # greedy's equals interleave/round0's (not stored twice)
            blob.add(f"{prefix}/prefill_logits", all_logits, "bf16")
            blob.add(f"{prefix}/step_logits", torch.stack(rec.logits), "bf16")
        assert torch.equal(all_logits[-1], rec.logits[0]), "prefill last-position logits mismatch"
        text = rsp.generated_texts[0]
        recall = {str(l): {"ids": v[0]["topk_doc_ids"], "scores": v[0]["score"]} for l, v in rsp.recall_topk.items()}
        emitted = [c["forced"] if c["forced"] is not None else c.get("selected", c["argmax"]) for c in rec.calls]
        return {"prompt": prompt, "input_ids": input_ids, "doc_ids": doc_ids,
                "routing_mask": [1 if d == 0 else 0 for d in doc_ids], "positions": positions,
                "recall_topk": recall, "forwards": forwards, "processor_calls": rec.calls,
                "selected_tokens": emitted, "output_text": text,
                "output_ids": returned[0][0].tolist()}

    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]

    # ---- run 1: plain greedy continuation (round 1 prompt, no forcing, cap GREEDY_CAP iterations)
    svc.generate_config.max_generate_tokens = GREEDY_CAP
    svc.generate_kwarg = svc._create_generate_args()
    # The ends of a round (EOS, <|object_ref_end|>) are banned so that the random model continues for
    # the whole cap instead of stopping at once; every other pick is the model's own argmax.
    banned = [SPECIAL_IDS["<|im_end|>"], SPECIAL_IDS["<|endoftext|>"], SPECIAL_IDS["<|object_ref_end|>"]]
    greedy = run_call(svc, QUESTION, "greedy", [], banned)
    golden["greedy"] = {"max_generate_tokens": GREEDY_CAP, "banned_tokens": banned, **greedy}

    # ---- run 2: Memory Interleave with a forced script
    svc.generate_config.max_generate_tokens = 2048
    svc.generate_kwarg = svc._create_generate_args()
    rounds, prompt = [], QUESTION
    scripts = [ids(FORCED_IDS) + [None], ids("<End-of-Retrieve>") + [None] + ids(FORCED_ANSWER)]
    response = None
    for r, script in enumerate(scripts):
        res = run_call(svc, prompt, f"interleave/round{r}", script)
        text = res["output_text"]
        response = "\nPlease answer the question based" + text.split("\nPlease answer the question based")[1]
        response = response.replace("<|endoftext|>", "")
        res["response"] = response
        res["script"] = script
        rounds.append(res)
        new_prompt = should_regenerate({}, response)
        res["next_prompt"] = new_prompt
        if new_prompt is None:
            break
        prompt = new_prompt
    assert len(rounds) == 2 and rounds[-1]["next_prompt"] is None, [r["next_prompt"] for r in rounds]
    answer = response.rsplit("The answer to the question is:")[-1].split("<|im_end|>")[0].strip()
    golden["interleave"] = {"question": QUESTION, "forced_ids": FORCED_IDS, "forced_answer": FORCED_ANSWER,
                            "rounds": rounds, "final_response": response, "answer": answer}

    golden["topk_boundary_margin_bf16_ulps"] = margins
    shutil.rmtree(tmp)
    print("margins (bf16 ulps):", margins, "min layer", svc.router_layer_ids[0],
          min(v for k, v in margins.items() if k.endswith(f"/{svc.router_layer_ids[0]}")), "min all", min(margins.values()))
    print(f"{branch}{' (f32 shadow)' if shadow else ''}: greedy {greedy['selected_tokens']}; "
          f"round1 top-k {rounds[0]['recall_topk']}; answer {answer!r}")
    return golden


SPECIAL_IDS = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msa-repo", required=True, help="checkout of EverMind-AI/MSA (the folder holding src/)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--msa-commit", default=None,
                    help="commit of the checkout, recorded in golden.json (default: git rev-parse HEAD in --msa-repo)")
    args = ap.parse_args()
    repo = Path(args.msa_repo).resolve()
    if not (repo / "src" / "msa" / "memory_sparse_attention.py").exists():
        sys.exit(f"{repo} is not an EverMind-AI/MSA checkout (no src/msa/memory_sparse_attention.py)")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers   # before the stubs: it probes optional packages at import
    install_shims()
    sys.path.insert(0, str(repo))
    os.chdir(repo)   # src/msa/model.py appends os.getcwd() to sys.path
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    tok, _, vocab_size = tokenizer_files()
    for a in tok["added_tokens"]:
        SPECIAL_IDS[a["content"]] = a["id"]
    out = Path(args.out)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    build_model(model_dir, vocab_size)
    docs = make_documents()
    commit = args.msa_commit or "unknown"
    if not args.msa_commit:
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    import tokenizers
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__, "numpy": np.__version__, "msa_repo_commit": commit}
    for branch, method in [("dot", "INFONCE_DECOUPLE"), ("cosine", "INFONCE")]:
        blob = Blob()
        g = run_branch(branch, method, model_dir, docs, blob)
        shadow = run_branch(branch, method, model_dir, docs, blob, shadow=True)
        calls = {"greedy": shadow["greedy"]}
        calls.update({f"interleave/round{i}": r for i, r in enumerate(shadow["interleave"]["rounds"])})
        g["f32_shadow"] = {"recall_topk": {c: r["recall_topk"] for c, r in calls.items()},
                           "topk_boundary_margin_bf16_ulps": shadow["topk_boundary_margin_bf16_ulps"]}
        g["versions"] = versions
        g["seed"] = SEED
        g["arrays"] = blob.index
        d = out / branch
        d.mkdir(parents=True, exist_ok=True)
        blob.write(d / "data.bin")
        g["data_sha256"] = hashlib.sha256((d / "data.bin").read_bytes()).hexdigest()
        (d / "golden.json").write_text(json.dumps(g, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{branch}: {len(blob.index)} arrays, {blob.size} bytes")


if __name__ == "__main__":
    main()

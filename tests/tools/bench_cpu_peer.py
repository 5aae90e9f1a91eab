#!/usr/bin/env python3
"""CPU throughput of msa beside a peer, in one script: Hugging Face transformers (PyTorch) running
the same GGUF model (transformers dequantizes it to float32 at load) with the same number of threads.

    python3 tests/tools/bench_cpu_peer.py --msa build/app/msa --model .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

Both sides: prefill of --prompt-tokens random ids (fresh cache), then --decode-tokens greedy steps with
a KV cache, each repeated --repeats times after one warm-up; medians are compared. Needs
`pip install torch transformers gguf`. Prints a table, or JSON with --json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def run_msa(args):
    cmd = [args.msa, "bench", "cpu", "--model", args.model, "--threads", str(args.threads),
           "--prompt-tokens", str(args.prompt_tokens), "--decode-tokens", str(args.decode_tokens),
           "--repeats", str(args.repeats), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run_transformers(args):
    import torch
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.abspath(args.model))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(100, model.config.vocab_size, (1, args.prompt_tokens), generator=g)
    prefill, decode = [], []
    with torch.inference_mode():
        for rep in range(args.repeats + 1):
            t0 = time.perf_counter()
            out = model(ids, use_cache=True)
            t1 = time.perf_counter()
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            t2 = time.perf_counter()
            for _ in range(args.decode_tokens):
                out = model(tok, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = out.logits[:, -1:].argmax(-1)
            t3 = time.perf_counter()
            if rep == 0:
                continue   # warm-up
            prefill.append(args.prompt_tokens / (t1 - t0))
            decode.append(args.decode_tokens / (t3 - t2))
    import transformers
    return {"peer": f"transformers {transformers.__version__} / torch {torch.__version__} (float32)",
            "prefill_tokens_per_s": statistics.median(prefill), "decode_tokens_per_s": statistics.median(decode),
            "prefill_runs": prefill, "decode_runs": decode}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--msa", default="build/app/msa")
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    ours = run_msa(args)
    try:
        peer = run_transformers(args)
    except ImportError as e:
        print(f"peer unavailable ({e}); pip install torch transformers gguf", file=sys.stderr)
        peer = None
    result = {"msa": ours, "peer": peer}
    if peer:
        result["prefill_ratio"] = ours["prefill_tokens_per_s"] / peer["prefill_tokens_per_s"]
        result["decode_ratio"] = ours["decode_tokens_per_s"] / peer["decode_tokens_per_s"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {args.model}, {args.threads} threads, prompt {args.prompt_tokens}, decode {args.decode_tokens}, "
          f"median of {args.repeats}")
    print(f"{'':18}{'msa':>12}{'peer':>12}{'ratio':>8}{'limit':>12}")
    for key, limit in (("prefill", "prefill_limit_tokens_per_s"), ("decode", "decode_limit_tokens_per_s")):
        o = ours[f"{key}_tokens_per_s"]
        q = peer[f"{key}_tokens_per_s"] if peer else float("nan")
        print(f"{key + ' tok/s':18}{o:12.1f}{q:12.1f}{o / q if peer else float('nan'):8.2f}{ours[limit]:12.1f}")
    if peer:
        print(f"peer: {peer['peer']}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference outputs for the tokenizer tests, produced by the real peers.

Subcommands (each writes one JSON file):

  property  --tokenizer tokenizer.json --count N --seed S --out F
      N seeded random/adversarial strings (mixed scripts, CJK, Arabic, emoji with ZWJ and skin tones,
      combining marks, whitespace runs, digit runs, contractions, embedded special tokens, very long
      words) plus strings with invalid UTF-8, and the ids Hugging Face `tokenizers` gives for each.
      Invalid byte strings are defined as bytes.decode("utf-8", errors="replace") (see tokenizer.h).
      Inputs and decoded texts are hex-encoded because JSON strings cannot carry arbitrary bytes.
      The same seed gives the same first cases whatever N is, so a small committed fixture is a
      prefix of a larger run made at test time.

  variant   --tokenizer qwen3/tokenizer.json --kind llama3|flags --count N --seed S --out F
      The Qwen3 vocabulary through a Llama-3 style pipeline (Llama-3 split regex, no normalizer,
      ignore_merges=true), to check the "llama-bpe" GGUF path and ignore_merges against HF; or with
      lstrip/rstrip/single_word/normalized set on some added tokens (kind "flags").

  novel     --tokenizer tokenizer.json --text FILE --out F
      The ids of a whole text file (the Pride and Prejudice parity run).

  gguf      --model F.gguf --count N --seed S --out F
      The tokenizer arrays of a GGUF file (read with the `gguf` package), i.e. what a GGUF reader
      hands to msa::model::TokenizerSpec, plus reference ids for the property strings. The reference
      is HF `tokenizers` built from those arrays with the pre-tokenizer that the model's tokenizer.json
      uses (for tokenizer.ggml.pre == "smollm": Digits(individual_digits) then ByteLevel(use_regex)).

  chat      --qwen3-config tokenizer_config.json [--gguf F.gguf] --out F
      Chat prompts rendered with jinja2 exactly as transformers' apply_chat_template does
      (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols) for fixed conversations.

Needs: tokenizers (property, novel, gguf), gguf (gguf), jinja2 (chat).
"""
import argparse
import json
import random
import sys
import unicodedata


# ---- random strings ---------------------------------------------------------------------------

WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u2000", "\u2003", "\u2009", "\u200a",
              "\u3000", "\u0085", "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\x0b", "\x0c", " \n ",
              "\t\t", "   ", "\n \n", "\u180e", "\u200b"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D", "’s", "n't"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "—", "–", "«", "»", "“", "”", "„", "¿", "¡",
                                                    "©", "®", "°", "±", "×", "÷", "€", "£", "¥", "§", "¶", "•"]
WORDS = ["hello", "world", "The", "tokenizer", "don", "can", "I", "they", "Führer", "naïve", "café", "Ölçü",
         "straße", "ĲSSEL", "ﬁle", "Mr", "Darcy", "Elizabeth", "pride", "prejudice", "über", "COVID", "iPhone",
         "GPU", "x86_64", "snake_case", "CamelCase", "http", "www", "example", "com", "json", "llama", "cpp"]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
            "<|fim_prefix|>", "<|vision_pad|>", "<|im_start|", "<|im_", "<think", "im_end|>", "<<|im_end|>>",
            "<|im_start|><|im_end|>", "<|endoftext|>user"]
EMOJI_ZWJ = ["\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "\U0001F3F3\uFE0F\u200D\U0001F308",
             "\U0001F469\U0001F3FD\u200D\U0001F4BB", "\U0001F44D\U0001F3FB", "\U0001F44B\U0001F3FF",
             "\u2764\uFE0F", "\U0001F1EF\U0001F1F5", "\U0001F1E9\U0001F1EA", "\U0001F9D1\u200D\U0001F91D\u200D\U0001F9D1",
             "\U0001F636\u200D\U0001F32B\uFE0F", "1\uFE0F\u20E3", "\u263A\uFE0E", "\U0001F999"]
RANGES = {
    "latin": [(0x41, 0x5A), (0x61, 0x7A)],
    "latin1": [(0xC0, 0xFF)],
    "latinext": [(0x100, 0x17F), (0x1E00, 0x1EFF)],
    "greek": [(0x391, 0x3A9), (0x3B1, 0x3C9)],
    "cyrillic": [(0x410, 0x44F)],
    "arabic": [(0x621, 0x64A), (0x660, 0x669), (0x64B, 0x652)],
    "hebrew": [(0x5D0, 0x5EA)],
    "devanagari": [(0x905, 0x939), (0x93E, 0x94D), (0x966, 0x96F)],
    "thai": [(0xE01, 0xE30), (0xE31, 0xE3A), (0xE50, 0xE59)],
    "cjk": [(0x4E00, 0x9FA5)],
    "kana": [(0x3041, 0x3096), (0x30A1, 0x30FA)],
    "hangul": [(0xAC00, 0xD7A3)],
    "jamo": [(0x1100, 0x1112), (0x1161, 0x1175), (0x11A8, 0x11C2)],
    "emoji": [(0x1F600, 0x1F64F), (0x1F300, 0x1F5FF), (0x1F900, 0x1F9FF)],
    "combining": [(0x300, 0x36F)],
    "fullwidth": [(0xFF01, 0xFF5E)],
    "math": [(0x2200, 0x22FF), (0x1D400, 0x1D4FF)],
    "digitsx": [(0x660, 0x669), (0x6F0, 0x6F9), (0x966, 0x96F), (0xFF10, 0xFF19), (0x2160, 0x2188), (0xB2, 0xB3),
                (0xBC, 0xBE), (0x2460, 0x2473)],
    "control": [(0x0, 0x8), (0xE, 0x1F), (0x7F, 0x9F)],
    "zerowidth": [(0x200B, 0x200F), (0xFEFF, 0xFEFF), (0x2060, 0x2064)],
}


def rand_range(rng, name, n):
    out = []
    for _ in range(n):
        lo, hi = rng.choice(RANGES[name])
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def fragment(rng):
    k = rng.randrange(22)
    if k == 0:
        return rng.choice(WHITESPACE) * rng.randint(1, 6)
    if k == 1:
        return rng.choice(CONTRACTIONS)
    if k == 2:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4)))
    if k == 3:
        return rng.choice(WORDS)
    if k == 4:
        return rng.choice(SPECIALS)
    if k == 5:
        return "".join(rng.choice(EMOJI_ZWJ) for _ in range(rng.randint(1, 3)))
    if k == 6:
        return "".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 14)))
    if k == 7:   # letters followed by combining marks (NFC composes some of them)
        return "".join(rng.choice("aeiouAEOncsyz") + rand_range(rng, "combining", rng.randint(1, 2))
                       for _ in range(rng.randint(1, 4)))
    if k == 8:   # very long word
        return rng.choice(["a", "ab", "x", "é", "日", "z9"]) * rng.randint(30, 200) if rng.random() < 0.5 else \
            rand_range(rng, "latin", rng.randint(40, 300))
    if k == 9:
        return " " * rng.randint(1, 40)
    names = ["latin", "latin1", "latinext", "greek", "cyrillic", "arabic", "hebrew", "devanagari", "thai", "cjk",
             "kana", "hangul", "jamo", "emoji", "fullwidth", "math", "digitsx", "control", "zerowidth", "latin",
             "cjk", "latin"]
    return rand_range(rng, names[k - 10 + (rng.randrange(10) if k == 21 else 0)], rng.randint(1, 9))


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 10)):
        parts.append(fragment(rng))
        r = rng.random()
        if r < 0.45:
            parts.append(" ")
        elif r < 0.5:
            parts.append(rng.choice(WHITESPACE))
    return "".join(parts)


INVALID = [b"\x80", b"\xbf", b"\xc0", b"\xc1\xbf", b"\xff", b"\xfe", b"\xe2\x82", b"\xf0\x9f\x98", b"\xf0\x9f",
           b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
           b"\xc3", b"\xe6\x97", b"\x80\x80\x80", b"\xc3\x28", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc"]


def invalid_bytes(rng):
    data = bytearray(random_text(rng).encode("utf-8"))
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(data))
        data[pos:pos] = rng.choice(INVALID) if rng.random() < 0.8 else bytes([rng.randint(0x80, 0xFF)])
    if rng.random() < 0.3:   # cut inside a character
        data = data[: rng.randint(0, len(data))]
    return bytes(data)


FIXED = [
    "", " ", "Hello world", "<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure they'll say it's fine, isn't it? We've DONE it; YOU'LL see.", "e\u0301 vs \u00e9", "\u1100\u1161\u11a8",
    "\u00a0\u00a0x", "a\u0085b\u0085\u0085 c", "   \n\n\t  trailing   ", "3.14159265358979 and 1,000,000",
    "\U0001F468\u200D\U0001F469\u200D\U0001F467 family", "<think>\nreasoning\n</think>\n\nanswer", "\r\n\r\n\r\nx",
    "ſ's long s", "x\u180e\u180ey \u180e\u180e z\u180e", "İstanbul ǅ ǈ", "x" * 5000, "🦙" * 300, " " * 1000 + "end",
    # added-token flags (used by the "flags" variant): single_word neighbours, lstrip/rstrip spaces
    "a<tool_call>b", "x <tool_call> y", "é<tool_call>", "_<tool_call>", "e\u0301<tool_call>", "\u24b6<tool_call>",
    "<tool_call><tool_call>", "<tool_call>\u200d", "-<tool_call>.", "\u3000<tool_call>\t", "1<tool_call>",
    "  <think>  x", "\u3000</think>\u2003x", "</tool_call>   </tool_call>", " \n<|im_end|>\n\n ok",
    "e\u0301<|fim_prefix|>x", " <|fim_prefix|> <think></think> ",
]


def cases(seed, count):
    rng = random.Random(seed)
    out = []
    for s in FIXED:
        out.append(s.encode("utf-8"))
    while len(out) < count:
        if rng.random() < 0.12:
            out.append(invalid_bytes(rng))
        else:
            out.append(random_text(rng).encode("utf-8"))
    return out[:count]


def cmd_property(args):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    raw = cases(args.seed, args.count)
    texts = [b.decode("utf-8", errors="replace") for b in raw]
    enc = tok.encode_batch(texts, add_special_tokens=False)
    # The same strings with special tokens treated as text (HF's split_special_tokens).
    tok.encode_special_tokens = True
    enc_plain = tok.encode_batch(texts, add_special_tokens=False)
    tok.encode_special_tokens = False
    out = []
    for b, t, e, p in zip(raw, texts, enc, enc_plain):
        c = {"in": b.hex(), "ids": e.ids}
        valid = t.encode("utf-8") == b
        if not valid:
            c["replaced"] = t.encode("utf-8").hex()
        if p.ids != e.ids:
            c["ids_plain"] = p.ids
        decoded = tok.decode(e.ids, skip_special_tokens=False).encode("utf-8")
        if decoded != b:   # only stored when it differs from the input (NFC, U+FFFD), to keep fixtures small
            c["decoded"] = decoded.hex()
        c["nfc"] = valid and unicodedata.is_normalized("NFC", t)
        out.append(c)
    json.dump({"generator": "tests/tools/tokenizer_reference.py property", "seed": args.seed,
               "tokenizers_version": __import__("tokenizers").__version__, "cases": out},
              open(args.out, "w", encoding="utf-8"), separators=(",", ":"))


# Llama-3's tokenizer.json Split pattern (Meta-Llama-3-8B); with no normalizer and ignore_merges=true.
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")


# Added-token flags that Qwen3/SmolLM2 do not use, set on some Qwen3 added tokens for the "flags" variant.
ADDED_FLAGS = {"<think>": {"lstrip": True}, "</think>": {"rstrip": True}, "<tool_call>": {"single_word": True},
               "</tool_call>": {"lstrip": True, "rstrip": True}, "<|fim_prefix|>": {"normalized": True},
               "<|im_end|>": {"rstrip": True}}


def cmd_variant(args):
    """The Qwen3 vocabulary with a changed pipeline, checked against HF:
    llama3: Llama-3 style pipeline (Llama-3 regex, no normalizer, ignore_merges): exercises the
            llama-bpe pre-tokenizer and ignore_merges without needing Meta's gated tokenizer file.
    flags:  added tokens with lstrip / rstrip / single_word / normalized set (ADDED_FLAGS)."""
    from tokenizers import Tokenizer
    j = json.load(open(args.tokenizer, encoding="utf-8"))
    if args.kind == "llama3":
        j["normalizer"] = None
        j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = LLAMA3_PATTERN
        j["model"]["ignore_merges"] = True
    else:
        for a in j["added_tokens"]:
            a.update(ADDED_FLAGS.get(a["content"], {}))
    tok = Tokenizer.from_str(json.dumps(j))
    raw = cases(args.seed, args.count)
    texts = [b.decode("utf-8", errors="replace") for b in raw]
    enc = tok.encode_batch(texts, add_special_tokens=False)
    json.dump({"generator": "tests/tools/tokenizer_reference.py variant", "kind": args.kind, "seed": args.seed,
               "pattern": LLAMA3_PATTERN, "added_tokens": j["added_tokens"],
               "cases": [{"in": b.hex(), "ids": e.ids} for b, e in zip(raw, enc)]},
              open(args.out, "w", encoding="utf-8"), separators=(",", ":"))


def cmd_novel(args):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    text = open(args.text, "rb").read().decode("utf-8", errors="replace")
    ids = tok.encode(text, add_special_tokens=False).ids
    json.dump({"ids": ids}, open(args.out, "w"), separators=(",", ":"))


def gguf_field(reader, key):
    import gguf
    f = reader.fields.get(key)
    if f is None:
        return None
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    v = f.parts[f.data[0]]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(v).decode("utf-8")
    return v.tolist()[0]


def cmd_gguf(args):
    import gguf
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers
    r = gguf.GGUFReader(args.model)
    spec = {
        "model": gguf_field(r, "tokenizer.ggml.model"),
        "pre": gguf_field(r, "tokenizer.ggml.pre"),
        "tokens": gguf_field(r, "tokenizer.ggml.tokens"),
        "merges": gguf_field(r, "tokenizer.ggml.merges"),
        "token_type": gguf_field(r, "tokenizer.ggml.token_type"),
        "bos_token_id": gguf_field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": gguf_field(r, "tokenizer.ggml.eos_token_id"),
        "unknown_token_id": gguf_field(r, "tokenizer.ggml.unknown_token_id"),
        "padding_token_id": gguf_field(r, "tokenizer.ggml.padding_token_id"),
        "add_bos_token": gguf_field(r, "tokenizer.ggml.add_bos_token"),
        "chat_template": gguf_field(r, "tokenizer.chat_template"),
    }
    if spec["pre"] != "smollm":
        sys.exit("reference pre-tokenizer for '%s' is not described here" % spec["pre"])
    vocab = {t: i for i, t in reversed(list(enumerate(spec["tokens"])))}
    merges = [tuple(m.split(" ")) for m in spec["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(spec["tokens"], spec["token_type"]) if ty == 3])
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(spec["tokens"], spec["token_type"]) if ty == 4]
    if user:
        tok.add_tokens(user)
    raw = cases(args.seed, args.count)
    texts = [b.decode("utf-8", errors="replace") for b in raw]
    texts += ["<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\n12345 apples<|im_end|>\n",
              "<repo_name>x<filename>y<file_sep>", "3333 33 3.5e10"]
    enc = tok.encode_batch(texts, add_special_tokens=False)
    spec["cases"] = [{"in": t.encode("utf-8").hex(), "ids": e.ids} for t, e in zip(texts, enc)]
    json.dump(spec, open(args.out, "w", encoding="utf-8"), separators=(",", ":"))


# Meta's Llama-3-Instruct chat_template (tokenizer_config.json of Meta-Llama-3-8B-Instruct), kept here as
# the reference for the Llama-3 family; the other templates come from the real model files.
LLAMA3_TEMPLATE = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                   "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                   "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                   "{{ content }}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "What is 2+2?"},
     {"role": "assistant", "content": "4"}, {"role": "user", "content": "  And 3+3?\n"}],
    [{"role": "user", "content": "Think first."},
     {"role": "assistant", "content": "<think>\nLet me see.\n</think>\n\nThe answer is 42."},
     {"role": "user", "content": "Again, with feeling."},
     {"role": "assistant", "content": "<think>\nStill 42.\n\n</think>\n\n\nIt is 42!"}],
    [{"role": "user", "content": "Look up the weather."},
     {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "{\"sky\": \"clear\"}"},
     {"role": "assistant", "content": "It is 21 degrees and clear."}],
    [{"role": "system", "content": "Système: répondez en français. 日本語も可。"},
     {"role": "user", "content": "Ça va? 🦙\n\nmulti-line\ttext"}],
]


def cmd_chat(args):
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env.globals["raise_exception"] = raise_exception

    templates = {"qwen3": json.load(open(args.qwen3_config, encoding="utf-8"))["chat_template"],
                 "llama3": LLAMA3_TEMPLATE}
    if args.gguf:
        import gguf
        templates["smollm2"] = gguf_field(gguf.GGUFReader(args.gguf), "tokenizer.chat_template")
    out = {"generator": "tests/tools/tokenizer_reference.py chat", "jinja2_version": jinja2.__version__,
           "templates": {}, "cases": []}
    for name, src in templates.items():
        out["templates"][name] = src
        t = env.from_string(src)
        for ci, conv in enumerate(CONVERSATIONS):
            for gen in (True, False):
                for thinking in ([None, False, True] if name == "qwen3" else [None]):
                    kw = {"messages": conv, "add_generation_prompt": gen, "bos_token": "<|begin_of_text|>",
                          "eos_token": "<|im_end|>"}
                    if thinking is not None:
                        kw["enable_thinking"] = thinking
                    out["cases"].append({"template": name, "conversation": ci, "add_generation_prompt": gen,
                                         "enable_thinking": thinking, "expected": t.render(**kw)})
    out["conversations"] = CONVERSATIONS
    json.dump(out, open(args.out, "w", encoding="utf-8"), ensure_ascii=False, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("property")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--seed", type=int, default=20261123)
    p.add_argument("--out", required=True)
    v = sub.add_parser("variant")
    v.add_argument("--tokenizer", required=True)
    v.add_argument("--kind", choices=["llama3", "flags"], default="llama3")
    v.add_argument("--count", type=int, default=3000)
    v.add_argument("--seed", type=int, default=77)
    v.add_argument("--out", required=True)
    n = sub.add_parser("novel")
    n.add_argument("--tokenizer", required=True)
    n.add_argument("--text", required=True)
    n.add_argument("--out", required=True)
    g = sub.add_parser("gguf")
    g.add_argument("--model", required=True)
    g.add_argument("--count", type=int, default=3000)
    g.add_argument("--seed", type=int, default=20261123)
    g.add_argument("--out", required=True)
    c = sub.add_parser("chat")
    c.add_argument("--qwen3-config", required=True)
    c.add_argument("--gguf")
    c.add_argument("--out", required=True)
    args = ap.parse_args()
    {"property": cmd_property, "variant": cmd_variant, "novel": cmd_novel, "gguf": cmd_gguf, "chat": cmd_chat}[args.cmd](args)


if __name__ == "__main__":
    main()

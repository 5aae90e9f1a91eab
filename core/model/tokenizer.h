// tokenizer.h: exact byte-level BPE tokenization (GPT-2 family: Qwen2/Qwen3, SmolLM2, Llama-3).
//
// Purpose: turn text into the token ids a model was trained on, and ids back into text, agreeing
// exactly with the Hugging Face `tokenizers` library for the tokenizer.json files we support. The
// pipeline is HF's: added/special tokens are matched inside the raw text first (leftmost, longest
// match wins), the remaining segments are normalised (NFC via utf8proc when the file asks for it),
// split by the model's own pre-tokenizer regex (PCRE2, UTF + UCP so \p{L}, \p{N}, \s are Unicode
// classes), mapped byte -> printable character (GPT-2 table) and merged by merge rank. See
// core/model/TOKENIZER.md for the decisions and what is (not) supported.
//
// Invalid UTF-8 input: HF's Python API only accepts valid `str`. We define encode() on arbitrary
// bytes as encode(bytes.decode("utf-8", errors="replace")): every maximal ill-formed subsequence
// becomes one U+FFFD, exactly like CPython's decoder. It never crashes and never drops bytes silently.
//
// Ownership / threads: a Tokenizer is immutable after construction (the per-word merge cache is
// internally synchronised), so one instance may be shared by any number of threads (it belongs to the
// immutable Model, CONVENTIONS.md #5). StreamingDecoder is a small mutable value used by one thread.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(msa::model::Tokenizer tok, msa::model::Tokenizer::fromJsonFile(path));
//     std::vector<msa::model::TokenId> ids = tok.encode("Hello <|im_end|>");
//     std::string text = tok.decode(ids);
//     msa::model::StreamingDecoder stream(tok);
//     for (TokenId id : generated) std::cout << stream.push(id);   // never splits a UTF-8 character
//     std::cout << stream.finish();
//
// Failure codes (the factories): NotFound (no such file), IoError (unreadable), Corrupt (not JSON,
// missing vocab/merges, a merge naming an unknown token, duplicate or out-of-range ids, a regex that
// does not compile), Unsupported (a model type, normalizer, pre-tokenizer or decoder we do not
// implement, or an unknown GGUF pre-tokenizer name). encode()/decode() cannot fail.
#pragma once

#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace msa::model {

using TokenId = int32_t;

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's enumeration, stored in model files).
enum class GgufTokenType : int32_t {
    Undefined = 0,
    Normal = 1,
    Unknown = 2,
    Control = 3,       // special token: matched in text, skipped by decode(skipSpecial)
    UserDefined = 4,   // added non-special token (e.g. Qwen's <think>): matched in text
    Unused = 5,
    Byte = 6,
};

// What a GGUF reader fills from the `tokenizer.*` metadata (the reader lives elsewhere; this struct
// keeps the tokenizer independent of the file format). Arrays are indexed by token id.
struct TokenizerSpec {
    std::string model = "gpt2";            // tokenizer.ggml.model; only "gpt2" (byte-level BPE) is supported
    std::string preTokenizer;              // tokenizer.ggml.pre: "qwen2", "smollm", "llama-bpe", "gpt-2", "default"...
    std::vector<std::string> tokens;       // tokenizer.ggml.tokens (byte-level strings, e.g. "Ġthe")
    std::vector<std::string> merges;       // tokenizer.ggml.merges, "left right", highest priority first
    std::vector<int32_t> tokenTypes;       // tokenizer.ggml.token_type (may be empty: all Normal)
    std::optional<TokenId> bosId, eosId, eotId, unknownId, paddingId;
    bool addBos = false;                   // tokenizer.ggml.add_bos_token
    std::string chatTemplate;              // tokenizer.chat_template (may be empty)
};

// Ids of the tokens a runtime needs by role (absent when the model has none).
struct SpecialTokenIds {
    std::optional<TokenId> bos, eos, eot, unknown, padding;
};

struct EncodeOptions {
    // Match special added tokens (<|im_start|> ...) inside the text. false = HF's split_special_tokens:
    // special tokens are then tokenized as plain text; non-special added tokens (<think>) still match.
    bool matchSpecial = true;
    bool addBos = false;   // prepend the BOS id when the model has one
};

class Tokenizer {
public:
    // A Hugging Face tokenizer.json. When a tokenizer_config.json lies beside it, its bos/eos/pad
    // tokens, add_bos_token and chat_template are read too.
    static Result<Tokenizer> fromJsonFile(const std::filesystem::path& path);
    // The same from memory; `sourceName` only appears in error messages.
    static Result<Tokenizer> fromJsonText(std::string_view tokenizerJson, std::string_view sourceName,
                                          std::string_view tokenizerConfigJson = {});
    // From GGUF metadata (see TokenizerSpec). The pre-tokenizer name selects the split regex that the
    // corresponding tokenizer.json carries (table in tokenizer.cpp, documented in TOKENIZER.md).
    static Result<Tokenizer> fromSpec(const TokenizerSpec& spec, std::string_view sourceName);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;

    // Concatenated bytes of the tokens (may end inside a UTF-8 character). Ids out of range are skipped.
    std::string decodeBytes(std::span<const TokenId> ids, bool skipSpecial = false) const;
    // decodeBytes() made valid UTF-8 (ill-formed parts -> U+FFFD, as HF's decode does).
    std::string decode(std::span<const TokenId> ids, bool skipSpecial = false) const;
    // The raw bytes one token stands for (empty for an unknown id).
    std::string tokenBytes(TokenId id) const;

    // The vocabulary string of a token (byte-level form, e.g. "Ġthe"); empty for an unknown id.
    const std::string& tokenText(TokenId id) const;
    std::optional<TokenId> findToken(std::string_view vocabText) const;
    bool isSpecial(TokenId id) const;
    size_t vocabSize() const;   // largest id + 1
    const SpecialTokenIds& specialIds() const;
    bool addBosByDefault() const;
    const std::string& chatTemplateSource() const;   // from tokenizer_config.json / GGUF; may be empty
    // A 64-bit digest of everything that affects token ids (vocab, merges, added tokens, pipeline), for
    // the model fingerprint.
    uint64_t contentHash() const;
    // Short description of the pipeline ("NFC | Split(regex, Isolated) | ByteLevel | BPE 151387 merges").
    std::string describe() const;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

// Decodes a token stream incrementally for display: bytes that end inside a UTF-8 character are held
// back until the character completes, so the concatenation of everything push() and finish() return
// equals tokenizer.decode(all ids). Ill-formed bytes come out as U+FFFD as soon as they are known bad.
// Holds a reference to the tokenizer, which must outlive it. One thread.
class StreamingDecoder {
public:
    explicit StreamingDecoder(const Tokenizer& tokenizer, bool skipSpecial = false);
    // Text that became complete with this token (possibly empty).
    std::string push(TokenId id);
    // Whatever is still held back (an incomplete sequence becomes U+FFFD); resets the decoder.
    std::string finish();
    size_t pendingBytes() const { return m_pending.size(); }

private:
    const Tokenizer* m_tokenizer;
    bool m_skipSpecial;
    std::string m_pending;
};

// Replaces every maximal ill-formed UTF-8 subsequence with U+FFFD (CPython's errors="replace",
// Unicode's "maximal subpart" practice). Valid input is returned unchanged.
std::string sanitizeUtf8(std::string_view bytes);
// Length of the longest prefix of `bytes` that ends on a character boundary, given that the tail may
// still be completed by more bytes (used by StreamingDecoder); ill-formed bytes count as complete.
size_t completeUtf8Prefix(std::string_view bytes);

}  // namespace msa::model

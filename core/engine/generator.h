// generator.h: streaming text generation on a Session: prefill the prompt (in chunks, cancellable),
// then decode token by token with a Sampler until EOS, a stop string, the token budget, the caller's
// callback or the cancel token says stop. Text is streamed as complete UTF-8 only (a partial
// character is held back), and text that may be the start of a stop string is held back until it is
// known not to be one, so stop strings never reach the user.
//
// Positions continue from the session's cache: the prompt's first token is at position nPast().
//
// Ownership/threads: runs on the session's thread; the callback is called on that thread.
// Failure codes: those of Session::forward (InvalidArgument, OutOfMemory, Cancelled is NOT a failure:
// a cancelled generation returns what was produced with stopReason "cancelled").
//
// Usage:
//     GenerateOptions o; o.maxTokens = 128; o.stopStrings = {"<|im_end|>"};
//     auto r = generate(*session, tokenizer, promptIds, o, [](std::string_view piece, int32_t) {
//         std::fwrite(piece.data(), 1, piece.size(), stdout); return true; });
#pragma once

#include "core/engine/backend.h"
#include "core/engine/sampler.h"
#include "core/model/tokenizer.h"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace msa::engine {

struct GenerateOptions {
    size_t maxTokens = 256;
    SamplerParams sampler;                 // temperature 0 = greedy
    std::vector<std::string> stopStrings;
    bool stopAtEos = true;                 // the tokenizer's EOS / EOT ids end generation
    size_t prefillChunk = 256;             // prompt tokens per forward call
    const CancelToken* cancel = nullptr;
    // Position of the session's first cached token: positions are positionOffset + index. Sparse
    // generation starts its local tokens after the memory slots (template length + k, msa-spec §4).
    int32_t positionOffset = 0;
};

struct GenerateResult {
    std::string text;                      // everything streamed (without the stop string)
    std::vector<int32_t> tokens;           // generated ids (including a final EOS id if one was sampled)
    size_t nPromptTokens = 0;
    double prefillSeconds = 0;
    double decodeSeconds = 0;
    std::string stopReason;                // "eos", "stop-string", "max-tokens", "callback", "cancelled"
};

// Returns false to stop generation after this piece.
using TokenCallback = std::function<bool(std::string_view piece, int32_t token)>;

Result<GenerateResult> generate(Session& session, const model::Tokenizer& tokenizer, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& onPiece = {});

}  // namespace msa::engine

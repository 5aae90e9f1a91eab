// interleave.h: Memory Interleave for MSA-trained models (msa-spec §5.4-5.6; issue 5 item 5): the
// generative-retrieval protocol in which the model, after routing, writes the ids of the documents it
// needs ("[4]<|object_ref_end|>"), their original text is injected, and the next round routes again
// with that text as part of the query, until the model writes <End-of-Retrieve>, is handed the
// question again, and answers ("The answer to the question is: ...").
//
// One call of runInterleaveCall() is one reference `generate()` call (msa/generate.py), batch 1,
// emulated iteration by iteration: the loop cap counts every iteration (prefill, decode steps,
// injection), stage 2 ends the call without running the injected text, stage 3 feeds the question
// restatement and decodes the answer in stage 4. memoryInterleave() is the outer loop of
// app/benchmark.py:274-304 with msa_service.py's regenerate template.
//
// Reference quirks (msa-spec §9). Default = fixed; `reference = true` reproduces them for parity:
//   B3  the stage-3 injection is fed non-causally (every injected token sees all of them);
//       default: causal.
//   B10 regenerate rounds mark the routing regions by tokenizing the region and its prefix
//       separately and adding lengths; default: the tokens whose bytes overlap the region.
//   B4  needs a batch > 1 (frozen samples keep appending text); we always run batch 1, where the
//       reference behaves the same, so there is nothing to switch.
//   The reference has no round cap; we stop after maxRounds (default 8) and say so.
//   An empty stage-3 injection (retrieval ended by the 1000-character rule without
//   <End-of-Retrieve>) is undefined in the reference (a zero-length forward); we end the call.
//
// Ownership/threads: borrows the session, index and tokenizer for the call; runs on the caller's
// (engine) thread; callbacks run on it too.
//
// Failure codes: InvalidArgument (empty question), Cancelled (the token or a callback returning
// false), and those of sparsePrefill()/Session::forward.
#pragma once

#include "core/memory/sparse.h"
#include "core/memory/wrap.h"
#include "core/model/tokenizer.h"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace msa::memory {

inline constexpr std::string_view kObjectRefEnd = "<|object_ref_end|>";
inline constexpr std::string_view kEndOfRetrieve = "<End-of-Retrieve>";
inline constexpr std::string_view kAnswerMarker = "The answer to the question is:";
inline constexpr std::string_view kRegenerateMarker = "<regenerate>";

// The raw text of memory document [id] (injected as "[id]. text\n"); nullopt: unknown id, dropped.
using DocumentLookup = std::function<std::optional<std::string>(int64_t id)>;

// One selection step, for parity tests and inspection.
struct InterleaveStep {
    size_t round = 0, iteration = 0;
    std::span<const float> logits;   // the fp32 logits the pick was made from
    int32_t token = -1;              // the pick (argmax, lowest id on ties, or the forced token)
    bool kept = true;                // false: the pick after a finished round, which the reference discards
};

struct InterleaveOptions {
    bool reference = false;              // reproduce B3 and B10 (see above)
    size_t maxGenerateTokens = 2048;     // per-call iteration cap (msa/generate.py:317-319)
    size_t maxRounds = 8;                // ours; the reference loops until the model stops
    size_t retrieveCharLimit = 1000;     // characters of round text before retrieval is forced to end
    size_t topN = 10;                    // documents per layer kept for the trace
    std::vector<int32_t> eosIds;         // generation_config eos_token_id(s)
    // Replay: kept picks are taken from here, in order over all rounds, while it lasts (tests run
    // the reference with the same script, forcing tokens the random tiny model would not write).
    std::vector<int32_t> forcedTokens;
    const CancelToken* cancel = nullptr;
    // Every piece of text appended to the transcript, as it comes: generated (true) or injected.
    // Returning false cancels.
    std::function<bool(std::string_view piece, bool generated)> onText;
    std::function<void(const InterleaveStep&)> onStep;
};

struct InterleaveRound {
    std::vector<int32_t> prompt;          // the call's input ids (round 1: question block, tail, response head)
    std::vector<uint8_t> routeMask;       // doc_id == 0 tokens
    int32_t firstPosition = 0;            // template length + k
    std::vector<LayerRouting> routing;    // per routing layer
    std::vector<int32_t> generated;       // kept picks of this call (stage 1 and stage 4)
    std::vector<int64_t> injectedIds;     // stage 2: sorted, de-duplicated, known ids whose text was injected
    bool restated = false;                // stage 3: the question restatement was fed
    std::string text;                     // the call's returned text (inputs + injections, special tokens kept)
    std::string generatedText;            // the decoded kept picks
    std::string stopReason;               // "ids", "answer", "eos", "cap", "retrieval-limit"
    size_t iterations = 0;
    double prefillSeconds = 0, decodeSeconds = 0;
};

struct InterleaveResult {
    std::vector<InterleaveRound> rounds;
    std::string response;                 // the final response as app/benchmark.py builds it
    std::string answer;                   // after the last "The answer to the question is:", to <|im_end|>, stripped
    std::vector<int64_t> predictedIds;    // every [n] of the response, sorted, unique (B12: bodies included)
    std::string stopReason;               // "answer", "eos", "cap", "round-cap", "retrieval-limit"
    double seconds = 0, firstTokenSeconds = 0;
};

// The whole protocol for one question.
Result<InterleaveResult> memoryInterleave(engine::Session& session, MemoryIndex& index, const model::Tokenizer& tokenizer,
                                          const DocumentWrapping& wrapping, std::string_view question,
                                          const DocumentLookup& documents, const InterleaveOptions& options);

// The regenerate prompt's routing mask (msa_service.py:1734-1770): region 2 = the tokens up to and
// including "Please return all documents related to the question"; region 1 = the latest injected
// block, from the '[' after the last "]<|object_ref_end|>[" to the next "<|object_ref_end|>".
std::vector<uint8_t> regenerateRouteMask(const model::Tokenizer& tokenizer, std::string_view prompt,
                                         std::span<const int32_t> ids, bool reference);

// The text between the first and the second "\nPlease answer the question based" with that prefix
// put back and "<|endoftext|>" removed (app/benchmark.py:290-291).
std::string responseOf(std::string_view callText);
// app/benchmark.py:152.
std::string extractAnswer(std::string_view response);
// Every \[(\d+)\] in `text` (msa_service.py:1330), as numbers; duplicates kept, text order.
std::vector<int64_t> parseIds(std::string_view text);

}  // namespace msa::memory

// bench_quant.h: `msa bench quant` — what 8-bit storage (memory/key_quant.h: FP8 E4M3 and int8, one f32
// scale per (chunk, head) row) of a bank's rows does to routing and to generation, measured against the
// bank's own storage (issue 6 item 4): bf16 by default; on an f32 bank (`msa build --storage f32`)
// bf16 rounding is measured as a third format, which gives the scale of what bf16 itself changes. Never asserted by the bench itself (DESIGN.md §7); the
// unit test tst_key_quant asserts agreement bounds chosen from these measurements.
//
// For every question (the demo's questions.json by default) one baseline compressed-memory sparse
// prefill runs (round-1 query, routing inside the forward, as memory::sparsePrefill; the bench checks
// that its baseline logits equal sparsePrefill's bit for bit). In each routing layer the layer's own
// routing queries also score the quantized copies of the routing keys K̄ᴿ, and the quantized ranking
// is compared with the bf16 one (the bf16 selection is what the prefill continues with, so every
// layer compares the same queries):
//   overlap |A∩B|/k, exact-set and exact-order rates, Kendall τ-a of all candidates' scores, the
//   worst rank (in the quantized ranking) of a bf16-selected document (k when the set is kept), the
//   largest |Δscore| and the smallest bf16 gap between the k-th and (k+1)-th document.
// Content: the same prefill with the gathered K̄/V̄ rows dequantized from a format (scope "content":
// bf16 routing keys, so the same documents; scope "keys+content": quantized keys too), then greedy
// decoding teacher-forced on the bf16 run's transcript: per step max|Δlogit|/rms(bf16 logits) and
// cosine, the greedy next-token agreement per step, the first token, and whether the free-running
// greedy transcript of greedyTokens tokens would be identical (it is iff every teacher-forced step
// agrees up to the first disagreement, which gives the common prefix length).
// Bytes per memory token of each format: msa-spec §6.6 arithmetic with the format's row size.
//
// Thread affinity: the calling thread (the engine thread). runQuantBench creates its catalog and bank
// in workDir (a temporary folder when empty; removed unless keepWorkDir) unless `bank` is given.
// Failure codes: NotFound (no model, archive or questions), those of the catalog import, buildMemory,
// openRouting (Mismatch when the bank was built with another model), the engine, quantizeRows
// (InvalidArgument on a non-finite stored value); Internal when the baseline scoring disagrees with
// MemoryIndex::route.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(QuantBenchResult r, runQuantBench({}));   // demo model, archive, questions
//     std::cout << toText(r);
#pragma once

#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

struct QuantMeasureOptions {
    size_t nThreads = 0;
    size_t greedyTokens = 16;
    bool content = true;   // false: routing agreement only (no teacher-forced decoding)
};

struct QuantBenchOptions {
    std::filesystem::path model;       // empty: findDemoModel()
    std::filesystem::path archive;     // empty: findDemoArchive()
    std::filesystem::path questions;   // empty: questions.json beside the archive
    std::filesystem::path bank;        // a bank built with this model: no import, no build
    std::filesystem::path workDir;     // empty: a temporary folder
    bool keepWorkDir = false;
    size_t batchTokens = 512;
    size_t maxQuestions = 0;           // 0: all
    QuantMeasureOptions measure;
};

struct LayerAgreement {
    int layer = -1;
    size_t nQuestions = 0;
    double meanOverlap = 0, minOverlap = 1;     // |A∩B| / |A|
    double exactSetRate = 0, exactOrderRate = 0;
    double meanKendall = 0, minKendall = 1;     // τ-a over the candidates' scores
    size_t worstBoundaryRank = 0;               // max over questions; == k when every set is kept
    double maxScoreDelta = 0;                   // max |score_q − score_bf16| over candidates and questions
    double minBoundaryGap = 0;                  // min over questions of the baseline score[k−1] − score[k]
};

struct RoutingAgreement {
    std::string format;
    std::vector<LayerAgreement> layers;
    LayerAgreement all;                         // over every (question, layer); layer = −1
};

struct LogitEffect {
    std::string format, scope;                  // scope: "content" | "keys+content"
    size_t nQuestions = 0, nSteps = 0;
    double maxDeltaOverRms = 0, meanDeltaOverRms = 0;   // per step max|Δ| / rms(bf16); max / mean over steps
    double minCosine = 1, meanCosine = 0;
    double nextTokenAgreement = 0;              // teacher-forced steps whose argmax equals bf16's
    double firstTokenAgreement = 0;             // questions
    double transcriptAgreement = 0;             // questions whose greedy transcript is identical
    double meanCommonPrefix = 0;                // tokens
    size_t questionsRoutedDifferently = 0;      // some layer selected another set (keys+content)
    std::vector<size_t> commonPrefix;           // per question
};

struct FormatBytes {
    std::string format;
    double routingKeysPerToken = 0, keysPerToken = 0, valuesPerToken = 0, totalPerToken = 0;   // §6.6 arithmetic
    double totalForBankChunks = 0;              // the same rows for the bank's actual chunks, per memory token
};

struct RoundTripError {
    std::string format, tensor;                 // tensor: "routing keys" | "K" | "V"
    double relRmsError = 0;                     // ‖x − x̂‖ / ‖x‖ over the bank
    double maxAbsError = 0;
};

struct QuantBenchResult {
    std::string model, archive, bank, routing;
    size_t nQuestions = 0, nDocuments = 0, topK = 0, chunkSize = 0, nRoutingLayers = 0;
    size_t nRouteHeads = 0, nKvHeads = 0, headDim = 0;
    uint64_t nChunks = 0, nTokens = 0;
    bool keysShared = false;
    bool baselineMatchesSparsePrefill = false;
    size_t greedyTokens = 0;
    std::vector<FormatBytes> bytes;             // the bank's storage (bf16 or f32), fp8-e4m3, int8
    std::vector<RoundTripError> roundTrip;
    std::vector<RoutingAgreement> routingAgreement;   // [bf16 (f32 banks)], fp8-e4m3, int8
    std::vector<LogitEffect> logits;            // per format × scope
    double seconds = 0;
};

// The measurement on an existing bank (built with `model`).
Result<QuantBenchResult> measureQuantization(const std::filesystem::path& bank, const std::filesystem::path& model,
                                             const std::vector<std::string>& questions, const QuantMeasureOptions& options);
// Builds the demo bank (unless options.bank) and measures with the demo questions.
Result<QuantBenchResult> runQuantBench(const QuantBenchOptions& options);

nlohmann::json toJson(const QuantBenchResult& r);
std::string toText(const QuantBenchResult& r);

}  // namespace msa::jobs

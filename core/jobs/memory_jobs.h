// memory_jobs.h: the user-level memory operations shared by `msa build` / `msa route` and the GUI:
//
//   buildMemory   — encode every memory document of a catalog collection with a model into a bank
//                   (msa-spec §3, §7): each document alone at positions 0..n-1 (document-wise RoPE;
//                   many documents share one forward as independent segments, up to batchTokens),
//                   pooled per 64-token chunk in every routing layer, work after the last routing
//                   layer skipped. Incremental (a document whose text hash is unchanged is skipped;
//                   a changed one is replaced; one no longer in the collection is tombstoned) and
//                   resumable: commits every `commitEvery` documents, so after a kill -9 or a cancel the
//                   next run continues from the last commit (the bank format discards torn appends).
//   routeQuestion — the round-1 routing of a question over a bank: per routing layer the top-k
//                   documents (score descending, id ascending on ties) and the top-N for inspection,
//                   plus an overall ranking (layers that selected the document, then best score).
//
// Thread affinity: run on one (engine) thread; progress is reported on it. Failure codes: those of
// the catalog, the model runtime, the bank (Mismatch when the bank was built with another model) and
// the encoder; Cancelled is reported in the result, not as a failure.
#pragma once

#include "core/engine/device_select.h"
#include "core/memory/route_scanner.h"
#include "core/memory/router.h"
#include "core/memory/trace.h"
#include "core/model/dtype.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace msa::jobs {

struct BuildOptions {
    std::filesystem::path catalog;
    std::string collection;
    std::filesystem::path model;
    std::filesystem::path bank;
    size_t nThreads = 0;
    size_t commitEvery = 16;                      // documents per durable commit
    size_t maxDocumentTokens = 8192;              // longer wrapped documents are skipped with a reason
    size_t batchTokens = 512;                     // documents packed per encoder forward (0: one per forward; 512 measured best)
    model::DType storage = model::DType::BF16;
    engine::BackendChoice device;                 // default: the CPU backend (core/engine/device_select.h)
    const CancelToken* cancel = nullptr;
    ProgressFn progress;                          // units: documents; bytes: tokens
};

struct BuildReport {
    std::string bank;
    std::string routing;                          // RoutingConfig::describe()
    uint64_t nDocuments = 0;                      // memory documents in the collection
    uint64_t nEncoded = 0, nUnchanged = 0, nRemoved = 0, nSkipped = 0;
    uint64_t nTokens = 0;                         // tokens encoded in this run
    double seconds = 0;
    double tokensPerSecond = 0;
    double encodeSeconds = 0;                     // of `seconds`, inside the encoder's forwards
    bool cancelled = false;
    std::vector<std::pair<int64_t, std::string>> skipped;   // memory document id, reason
    uint64_t bankDocuments = 0, bankChunks = 0, bankTokens = 0, bankBytes = 0;
};

Result<BuildReport> buildMemory(const BuildOptions& options);

// Candidate filter (issue 5 item 3): restricts routing to the memory documents of catalog documents
// that match every given field. Needs the catalog. Documents without a date fail a date range.
struct CandidateFilter {
    std::optional<std::string> collection;   // collection name
    std::optional<std::string> kind;         // document kind ('email', 'chat', ...)
    std::optional<int64_t> fromUnix;         // inclusive
    std::optional<int64_t> toUnix;           // exclusive
    std::optional<std::string> participant;  // substring of the author or a participant, case-insensitive
    bool empty() const { return !collection && !kind && !fromUnix && !toUnix && !participant; }
};
using MemoryFilter = CandidateFilter;
// The ids of the memory documents that pass `filter`, ascending (one SQL query in the catalog).
// NotFound for an unknown collection.
Result<std::vector<int64_t>> filterMemoryDocuments(const std::filesystem::path& catalog, const CandidateFilter& filter);

struct RouteRequest {
    std::filesystem::path bank;
    std::filesystem::path model;
    std::optional<std::filesystem::path> catalog;   // for titles (and required by a filter)
    std::string question;
    size_t topN = 10;
    size_t nThreads = 0;
    CandidateFilter filter;                            // empty: every live document is a candidate
    // default: the CPU (ask and eval use their route's). With a CUDA engine backend the routing scan
    // runs on the choice's first device through the "cuda" RouteScanner (gpu/route_scan.h); when that
    // cannot be created the CPU scan is used (logged).
    engine::BackendChoice device;
    // How the scanner holds the routing keys (ROUTING.md "Quantized storage"): Native scans the bank's
    // keys; Fp8E4M3 / Int8 scan an 8-bit copy made when the route opens, on the CPU (the reference,
    // over the dequantized keys) or on the GPU (codes + scales resident) alike.
    memory::KeyStorage keyStorage = memory::KeyStorage::Native;
};

struct RoutedDocument {
    int64_t id = 0;
    float score = 0;
    std::string title;
};
struct LayerRoute {
    int layer = 0;
    std::vector<RoutedDocument> selected;
    std::vector<RoutedDocument> top;
};
struct OverallDocument {
    int64_t id = 0;
    size_t votes = 0;            // routing layers that selected it
    float bestScore = 0;
    std::string title;
};
struct RouteReport {
    std::string question;
    std::string routing;
    size_t topK = 0;
    std::vector<LayerRoute> layers;
    std::vector<OverallDocument> overall;
    size_t nCandidates = 0;
    double seconds = 0;
};

Result<RouteReport> routeQuestion(const RouteRequest& request);

// Answering from memory (issue 5 items 4-6):
//  - Memory Interleave (MSA-trained models, msa-spec §5): sparse generation with the selected
//    documents' K̄/V̄ in the routing layers' context; the model writes document ids, their original
//    text is injected, the next round routes again, until it answers. core/memory/interleave.h.
//  - Training-free (ordinary models, DESIGN.md §3.4): route with the model's own Q/K in the upper
//    half of its layers, then either inject the selected documents' original text into a chat
//    prompt (Injection::Original; with hops > 1 each further hop routes again with the question plus
//    the text injected by the previous hop), or answer with sparse generation over their K̄/V̄
//    chunks (Injection::Compressed), so the two can be compared.
// Every answer carries a RoutingTrace (core/memory/trace.h).
enum class AnswerMethod { Auto, Interleave, TrainingFree };   // Auto: Interleave iff the model has router tensors
enum class Injection { Original, Compressed };
std::string_view answerMethodName(AnswerMethod m);
std::string_view injectionName(Injection i);

struct AskRequest {
    RouteRequest route;                 // bank, model, question, filter (catalog is required here)
    AnswerMethod method = AnswerMethod::Auto;
    Injection injection = Injection::Original;   // training-free only
    size_t hops = 1;                    // training-free, original text: routing hops
    size_t nDocuments = 4;              // documents whose text is given to the model (hop 1; later hops add half as many)
    size_t maxTokens = 256;
    size_t maxDocumentBytes = 4000;     // each document's text is cut to this many bytes
    float repetitionPenalty = 1.2f;     // greedy small models loop without it (HF rule, sampler.h)
    float temperature = 0.0f;           // training-free answers: 0 = greedy; Memory Interleave is always greedy (msa-spec §5.7)
    uint64_t seed = 0;                  // sampling seed when temperature > 0
    bool reference = false;             // Memory Interleave: reproduce the reference's B3/B10 behaviour
    size_t maxRounds = 8;               // Memory Interleave round cap (the reference has none)
    size_t maxGenerateTokens = 2048;    // Memory Interleave per-call iteration cap
    const CancelToken* cancel = nullptr;
};
struct AskReport {
    std::string answer;
    std::string method;                 // "msa-interleave", "training-free (original text)", ...
    std::vector<OverallDocument> used;  // documents whose text reached the model / cited, in order
    RouteReport routing;                // the first hop's routing
    memory::RoutingTrace trace;
    std::string transcript;             // Memory Interleave: the final response with ids and injections
    size_t promptTokens = 0;
    size_t answerTokens = 0;
    double seconds = 0;
    double firstTokenSeconds = 0;
    std::string stopReason;
};
using AnswerStream = std::function<bool(std::string_view piece)>;
Result<AskReport> askQuestion(const AskRequest& request, const AnswerStream& onPiece = {});

// Routing recall on a question set with known supporting files (resources/demo/questions.json
// format: question, supporting_files relative to the archive folder): for each question, the share of
// its supporting files among the top-k documents of the overall routing ranking, beside the same
// share for BM25 full-text search over the same catalog collection (the baseline, DESIGN.md §3).
struct EvalRequest {
    RouteRequest route;                      // bank, model, catalog (required)
    std::filesystem::path questions;         // questions.json
    std::filesystem::path archiveRoot;       // supporting_files are relative to this folder
    size_t k = 5;
};
struct EvalQuestion {
    std::string id, question;
    size_t hops = 0, nSupporting = 0, routedHits = 0, bm25Hits = 0;
};
struct EvalReport {
    size_t k = 0;
    std::vector<EvalQuestion> questions;
    double routedRecall = 0, bm25Recall = 0;   // mean over questions
    double seconds = 0;
};
Result<EvalReport> evaluateRouting(const EvalRequest& request);
nlohmann::json toJson(const EvalReport& r);

nlohmann::json toJson(const AskReport& r);
nlohmann::json toJson(const BuildReport& r);
nlohmann::json toJson(const RouteReport& r);

}  // namespace msa::jobs

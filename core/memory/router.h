// router.h: MSA document routing on the CPU (msa-spec §2): routing queries from the question tokens,
// the two scoring branches, the reductions head → query token → chunk → document, and deterministic
// per-layer top-k over contiguous routing keys. Decisions and citations: core/memory/ROUTING.md.
//
//   RoutingConfig   — which layers route and how they score, resolved from a model (msa_config for
//                     MSA checkpoints, the training-free defaults of msa-spec §2.9 otherwise).
//   RoutingQueries  — one layer's routing queries for the routing-mask tokens, already scaled
//                     (scaled-dot branch) or L2-normalised (cosine branch).
//   RouteKeys       — a view of one layer's pooled routing keys [nChunks][nRouteHeads][headDim]
//                     (f32 or bf16, e.g. a mapped bank section) plus its document table.
//   Router          — the tiled multithreaded scan; owns its worker threads.
//
// Score of document i (msa-spec §2.4-2.5, with the expected config):
//     σ_i = max_{c ∈ doc i} max_{t ∈ mask} mean_h ( q_t[h] · K̄ᴿ_c[h / (H/G)] )
// where q_t is pre-multiplied by 1/sqrt(D) in branch A, or both sides are unit vectors in branch B.
// Ties at equal score are broken by ascending document id (the reference leaves them to torch.topk).
//
// Memory: the scan never holds a score matrix; per thread it keeps one row of nQueryTokens floats,
// plus one float per document for the document scores. Tiles are ranges of whole documents
// (≥ tileChunks chunks), so each document is reduced by one thread in chunk order: the result is
// bit-identical for every tile size and thread count.
//
// Ownership/threads: RoutingConfig/RoutingQueries/RouteResult are values. RouteKeys borrows memory
// the caller keeps alive during route(). A Router is used by one thread at a time (its team is not
// reentrant); route() is const on everything else and may read the same keys as other routers.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(RoutingConfig cfg, routingConfigFor(files));
//     MSA_ASSIGN_OR_RETURN(RoutingQueries q, routingQueriesFromLayer(cfg, files, layerTensors, mask));
//     Router router(0);
//     MSA_ASSIGN_OR_RETURN(RouteResult r, router.route(cfg, q, keys, {.topK = cfg.topK}));
//
// Failure codes: routingConfigFor(): Unsupported (a reduce method or layer spec the reference would
// reject), Mismatch (router tensors missing for a routing layer). routingQueriesFromLayer():
// InvalidArgument (mask size, no routing token, layer not a routing layer), NotFound (router_q tensor).
// Router::route(): InvalidArgument (shapes, dtype, document table, filter size, no query token),
// Cancelled.
#pragma once

#include "core/engine/backend.h"
#include "core/engine/compute_threads.h"
#include "core/model/dtype.h"
#include "core/model/model_files.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace msa::memory {

enum class HeadReduce { Mean, Max };
enum class QueryReduce { Max, Mean, Last };
enum class ChunkReduce { Max, Mean };

struct RoutingConfig {
    std::vector<int> layers;            // routing layers, ascending
    size_t chunkSize = 64;              // P
    size_t topK = 16;                   // doc_top_k (also the query position offset, msa-spec §4)
    bool decoupled = false;             // router_{q,k} projections (MSA-trained) vs attention Q/K
    std::string auxLossMethod;          // as written in msa_config ("" for stock models)
    // Branch choice exactly as the reference (msa-spec §2.4; msa_service.py:318-321,
    // msa/memory_sparse_attention.py:192,264): normalise iff aux_loss_method == "INFONCE" exactly;
    // scale the query by 1/sqrt(D) unless (INFONCE and decoupled).
    bool normalize = false;
    float queryScale = 1.0f;
    HeadReduce headReduce = HeadReduce::Mean;
    QueryReduce queryReduce = QueryReduce::Max;
    ChunkReduce chunkReduce = ChunkReduce::Max;
    size_t nQueryHeads = 0, nRouteHeads = 0, headDim = 0;

    bool isRoutingLayer(int layer) const;
    bool cosine() const { return normalize; }
    std::string describe() const;   // "scaled-dot (1/sqrt(128)), head mean, token max, chunk max, layers 18-35"
};

// From the model: MSA-trained (router tensors present) → decoupled, settings from msa_config;
// otherwise training-free (msa-spec §2.9): attention Q/K, upper half of the layers, scaled dot,
// mean/max/max, k 16, P 64 (or the msa_config values for an MSA config without router tensors).
Result<RoutingConfig> routingConfigFor(const model::ModelFiles& files);
// The same from explicit parts (tests, tools).
Result<RoutingConfig> routingConfigFromSettings(const model::ModelConfig& config, bool decoupled,
                                                std::vector<int> layers);

// One layer's routing queries: nTokens × nHeads × headDim f32, in prompt order of the mask tokens.
struct RoutingQueries {
    int layer = -1;
    size_t nTokens = 0, nHeads = 0, headDim = 0;
    std::vector<float> q;   // prepared: multiplied by queryScale, or L2-normalised per head
};

// Applies the branch's preparation to raw query rows (nTokens × nHeads × headDim).
void prepareQueries(const RoutingConfig& cfg, std::span<float> rows, size_t headDim);

// From a forward's layer hook: router_q_proj(x̃) (decoupled) or the attention Q after QK-norm and
// RoPE (training-free), for the tokens whose routeMask entry is non-zero (doc_id == 0, msa-spec §2.3).
Result<RoutingQueries> routingQueriesFromLayer(const RoutingConfig& cfg, const model::ModelFiles& files,
                                               const engine::LayerTensors& layer, std::span<const uint8_t> routeMask);

// Raw routing-key rows for every token of a layer (before pooling): router_k_proj(x̃) (decoupled,
// no norm, no RoPE) or the attention K after k_norm and RoPE (training-free). nTokens × nKv × D.
// The router_k_proj matrix of a routing layer ([nRouteHeads·headDim × hidden], no bias), for engines
// that pool on their own (engine::PoolingOptions::routeKeyProj). Failure: NotFound, Mismatch.
Result<const model::TensorView*> routerKeyWeight(const RoutingConfig& cfg, const model::ModelFiles& files, int layer);
Result<std::vector<float>> routingKeyRows(const RoutingConfig& cfg, const model::ModelFiles& files,
                                          const engine::LayerTensors& layer);

struct RouteKeys {
    std::span<const std::byte> data;        // nChunks × nHeads × headDim elements of dtype
    model::DType dtype = model::DType::F32; // F32 or BF16
    size_t nChunks = 0, nHeads = 0, headDim = 0;
    std::span<const uint64_t> chunkOffsets; // nDocs + 1 ascending; document i owns [off[i], off[i+1])
    std::span<const uint64_t> docIds;       // nDocs ids for results and ties; empty: the index
    size_t nDocs() const { return chunkOffsets.empty() ? 0 : chunkOffsets.size() - 1; }
};

struct RouteOptions {
    size_t topK = 16;
    size_t topN = 0;                        // documents kept for inspection (≥ topK; 0: topK)
    std::span<const uint8_t> allowed = {};  // candidate filter by document index (non-zero = allowed); empty: all
    size_t tileChunks = 4096;               // tile size (free, msa-spec §2.7); results do not depend on it
    const CancelToken* cancel = nullptr;
};

struct ScoredDocument {
    uint64_t id = 0;       // docIds[index], or index
    uint32_t index = 0;    // position in the document table
    float score = 0;
    bool operator==(const ScoredDocument&) const = default;
};

struct RouteResult {
    int layer = -1;
    std::vector<ScoredDocument> selected;   // min(topK, nCandidates), score descending, id ascending on ties
    std::vector<ScoredDocument> top;        // min(topN, nCandidates), same order (selected is its prefix)
    size_t nCandidates = 0;                 // documents scored (allowed and non-empty)
    size_t nChunksScanned = 0;
};

class Router {
public:
    explicit Router(size_t nThreads = 0);   // 0: hardware_concurrency
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    Result<RouteResult> route(const RoutingConfig& cfg, const RoutingQueries& queries, const RouteKeys& keys,
                              const RouteOptions& options);

    // Every document's score (−inf for filtered/empty documents): the array top-k selects from.
    Result<std::vector<float>> scoreDocuments(const RoutingConfig& cfg, const RoutingQueries& queries,
                                              const RouteKeys& keys, const RouteOptions& options);

private:
    std::unique_ptr<engine::ComputeThreads> m_team;
};

// Top-k of a score array with the documented order (score descending, then id ascending); −inf and
// NaN scores are not candidates. ids: empty → the index.
std::vector<ScoredDocument> selectTop(std::span<const float> scores, std::span<const uint64_t> ids, size_t k);

}  // namespace msa::memory

// sparse.h: sparse generation over a memory bank on any engine Session (msa-spec §2.8, §4; issue 5
// item 4). A round's prefill runs the prompt after the template head; in every routing layer the
// routing-mask tokens' queries (router_q_proj(x̃), or the attention Q in training-free mode) score
// every document of the bank, the top-k documents are selected (score descending, id ascending on
// ties), and their pooled K̄/V̄ chunks are placed in that layer's context between the template head
// and the local tokens. Layers outside the routing set see [template head; local tokens]. Later
// decode calls on the same session reuse the assembled context (no re-routing).
//
// Because routing happens inside the forward, a later routing layer's queries see the memory that
// earlier routing layers selected, exactly as in the reference (ROUTING.md "query side").
//
// Ownership: MemoryIndex borrows the Bank and the ModelFiles (both must outlive it) and owns the
// per-shard document tables, the template head as f32 and a Router with its threads. One thread at a
// time (the engine thread). sparsePrefill() borrows the session and the index for the call.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(MemoryIndex index, MemoryIndex::create(bank, files, cfg, nThreads));
//     MSA_ASSIGN_OR_RETURN(SparsePrefill p, sparsePrefill(*session, index, q.tokens, positions, q.routeMask, {}));
//     int next = argmax(p.logits); ... session->forward({next}, {pos}, {});   // decode: same memory
//
// Failure codes: MemoryIndex::create(): Mismatch (bank built with other routing layers, head count
// or head dim than the model's configuration), Corrupt (a document table that does not tile its
// shard). sparsePrefill(): InvalidArgument (sizes, no routing token), Cancelled, OutOfMemory, and
// those of Session::forward.
#pragma once

#include "core/engine/backend.h"
#include "core/memory/bank.h"
#include "core/memory/route_scanner.h"
#include "core/memory/router.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

namespace msa::memory {

// One routing layer's decision in a prefill. ScoredDocument::id is the memory document id and
// ::index the document's row in the bank's document table.
struct LayerRouting {
    int layer = -1;
    std::vector<ScoredDocument> selected;   // min(k, candidates)
    std::vector<ScoredDocument> top;        // min(topN, candidates); selected is its prefix
    size_t nCandidates = 0;
    size_t nChunks = 0;                     // memory rows placed in the layer's context
};

class MemoryIndex {
public:
    static Result<MemoryIndex> create(const Bank& bank, const model::ModelFiles& files, RoutingConfig cfg, size_t nThreads = 0);
    MemoryIndex(MemoryIndex&&) noexcept;
    MemoryIndex& operator=(MemoryIndex&&) noexcept;
    ~MemoryIndex();

    const RoutingConfig& config() const;
    // Replaces the scanner route() uses (default: CpuRouteScanner with the threads given to create();
    // "cuda" from createRouteScanner() when the engine runs on a GPU). nullptr keeps the current one.
    void setScanner(std::unique_ptr<RouteScanner> scanner);
    const RouteScanner& scanner() const;
    const Bank& bank() const;
    const model::ModelFiles& files() const;
    size_t templateLength() const;

    // Candidate filter (issue 5 item 3): only these memory document ids may be selected; nullopt:
    // every live document. Tombstoned documents are never candidates.
    void setFilter(std::optional<std::unordered_set<int64_t>> ids);

    // Scores every candidate of routing-layer position `li` for prepared queries and selects top-k.
    Result<LayerRouting> route(size_t li, const RoutingQueries& queries, size_t topN, const CancelToken* cancel = nullptr);
    // The pooled K̄/V̄ rows (f32, [chunks][nKv][D]) of the selected documents in layer position `li`,
    // in selection order.
    Result<engine::LayerPrefix> gather(size_t li, std::span<const ScoredDocument> selected) const;
    // The template head as one prefix per model layer (what every round starts from).
    std::vector<engine::LayerPrefix> templatePrefixes() const;

private:
    struct Impl;
    explicit MemoryIndex(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m;
};

struct SparsePrefillOptions {
    size_t topN = 10;                    // documents kept per layer for the routing trace
    bool allLogits = false;
    const CancelToken* cancel = nullptr;
    // Optional replacement of the routing decision of routing-layer position `li` for its prepared
    // queries (a measurement scoring other keys, say). Empty: index.route(li, queries, topN, cancel).
    std::function<Result<LayerRouting>(size_t li, const RoutingQueries& queries)> route = nullptr;
    // Optional transform of the gathered K̄/V̄ rows of routing-layer position `li` before they enter the
    // layer's context (a storage-format round trip, say). Empty: the rows as gathered.
    std::function<Status(size_t li, engine::LayerPrefix& rows)> transformRows = nullptr;
};

struct SparsePrefill {
    std::span<const float> logits;       // last token (or all, allLogits); valid until the session's next call
    std::vector<LayerRouting> layers;    // one per routing layer, in layer order
};

// Resets the session to the template head, then runs `tokens` at `positions` with memory assembly
// in the routing layers. routeMask marks the routing-query tokens (doc_id == 0, msa-spec §5.1).
Result<SparsePrefill> sparsePrefill(engine::Session& session, MemoryIndex& index, std::span<const int32_t> tokens,
                                    std::span<const int32_t> positions, std::span<const uint8_t> routeMask,
                                    const SparsePrefillOptions& options = {});

}  // namespace msa::memory

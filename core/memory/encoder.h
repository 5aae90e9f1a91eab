// encoder.h: the model-running side of routing on the CPU backend: encoding memory documents into
// their pooled per-routing-layer K̄, V̄ and routing keys K̄ᴿ (msa-spec §3, §7) — one per forward
// (encodeDocument) or many packed into one forward (encodeDocuments) — and collecting the routing
// queries of a prompt (msa-spec §2.3, §4). Both run a Session forward with a LayerHook (or, for
// encoding on a session that supportsPooling(), a PooledHook: see EncodePath) and
// stop after the last routing layer (ForwardOptions.stopAfterLayer, computeLogits = false): nothing
// after that layer's K/V projections is computed (the final norm and lm_head neither).
//
// Document-wise RoPE: encodeDocument() clears the session's cache and runs the wrapped document
// alone at positions 0..n-1, so it attends only to itself (msa-spec §4, §7); it clears it again after.
//
// collectRoutingQueries() is memory-free: it runs the template head at 0..h-1 then the prompt at
// positions from queryStart with no memory chunks in any layer's context. The first routing layer's
// queries are then exactly the reference's (its input x̃ only depends on the non-routing layers,
// whose context is [template head; local tokens], msa-spec §2.8); later routing layers' queries
// depend on the memory the earlier routing layers attended to, which sparse generation provides by
// calling routingQueriesFromLayer() from its own hook. ROUTING.md §"query side" explains it.
//
// Ownership/threads: borrows the session and model files for the call; runs on the caller's thread
// (the session's engine thread).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(EncodedDocument doc, encodeDocument(*session, files, cfg, wrappedIds));
//     for (const PooledLayer& p : doc.layers) bank.append(p.layer, p.k, p.v, p.routeKey);
//
// Failure codes: InvalidArgument (empty document, token outside the vocabulary, document longer than
// the session capacity, mask size, EncodePath::Pooled on a session without pooling), NotFound/Mismatch
// (router tensors), Cancelled, OutOfMemory.
#pragma once

#include "core/engine/backend.h"
#include "core/memory/router.h"

#include <vector>

namespace msa::memory {

// Which engine interface the encoder pools through. Auto: the session's pooled hook when it
// supportsPooling() (the engine pools where its tensors live and hands over only chunk rows), the
// layer hook otherwise. Both give bit-identical results on the CPU backend (tst_pooled_hook).
enum class EncodePath { Auto, LayerHook, Pooled };

// One routing layer of one document: each array is nChunks × nKvHeads × headDim f32 (the bank casts
// to its storage dtype). routeKey is L2-normalised per head iff cfg.normalize (msa-spec §2.2).
struct PooledLayer {
    int layer = -1;
    size_t nChunks = 0;
    std::vector<float> k, v, routeKey;
};

struct EncodedDocument {
    size_t nTokens = 0;
    std::vector<PooledLayer> layers;   // one per cfg.layers entry, same order
};

Result<EncodedDocument> encodeDocument(engine::Session& session, const model::ModelFiles& files, const RoutingConfig& cfg,
                                       std::span<const int32_t> tokens, const CancelToken* cancel = nullptr,
                                       EncodePath path = EncodePath::Auto);

// Many documents packed into as few forwards as possible: consecutive documents share a forward
// while their total stays within tokenBudget (a longer document runs alone). The forward gets one
// segment per document (ForwardOptions::segments: block-diagonal causal attention) and positions
// restarting at 0 per document, so each document sees only itself exactly as in encodeDocument();
// the pooled outputs equal one-at-a-time encoding up to f32 summation order in the projections.
// Returns one EncodedDocument per input, in order. tokenBudget 0: one document per forward.
inline constexpr size_t kDefaultEncodeTokenBudget = 512;   // measured: ROUTING.md "Batching"
Result<std::vector<EncodedDocument>> encodeDocuments(engine::Session& session, const model::ModelFiles& files,
                                                     const RoutingConfig& cfg,
                                                     std::span<const std::span<const int32_t>> documents,
                                                     size_t tokenBudget = kDefaultEncodeTokenBudget,
                                                     const CancelToken* cancel = nullptr, EncodePath path = EncodePath::Auto);

// The template head (positions 0..head.size()-1) then the prompt at queryStart.. (msa-spec §4:
// 3 + k for MSA), memory-free (see above). Returns one RoutingQueries per routing layer.
Result<std::vector<RoutingQueries>> collectRoutingQueries(engine::Session& session, const model::ModelFiles& files,
                                                          const RoutingConfig& cfg, std::span<const int32_t> head,
                                                          std::span<const int32_t> prompt, std::span<const uint8_t> routeMask,
                                                          int32_t queryStart, const CancelToken* cancel = nullptr);

}  // namespace msa::memory

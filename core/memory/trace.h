// trace.h: the routing trace of one answer (issue 5 item 6): which documents the sparse attention
// routed to, per hop and per routing layer, and what the model did with them. Produced by the
// answering jobs (core/jobs), stored with the chat turn in the catalog (as the JSON of toJson()),
// printed by `msa ask --trace`, and drawn by the workbench's Routing inspector.
//
// A "hop" is one routing → generation round: one Memory Interleave round for MSA models (msa-spec
// §5.5), one route-and-inject step for the training-free method. Document ids are memory document
// ids (catalog `memory_documents.id`, the ids in the bank's document table).
//
// Plain values; no thread affinity. Failure codes: traceFromJson(): Corrupt (a stored trace that is
// not the shape toJson() writes, naming the missing or mistyped field).
//
// Usage:
//     RoutingTrace t; t.question = q; t.hops.push_back(hop); t.aggregate();
//     catalog.addChatTurn({..., .traceJson = toJson(t).dump()});
#pragma once

#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace msa::memory {

struct TraceDocument {
    int64_t id = 0;
    float score = 0;          // the document's routing score in this layer (msa-spec §2.5)
    bool selected = false;    // among this layer's top-k (its K̄/V̄ entered the layer's context)
    std::string title;        // for display; may be empty
};

struct TraceLayer {
    int layer = 0;                           // model layer index (a routing layer)
    std::vector<TraceDocument> top;          // the top-N by score, descending (ties: id ascending)
};

struct TraceHop {
    int hop = 0;                             // 0-based
    std::vector<TraceLayer> layers;          // one per routing layer, in layer order
    std::vector<int64_t> generatedIds;       // MSA: the [i] ids the model wrote (sorted, de-duplicated)
    std::vector<int64_t> injected;           // documents whose original text entered the next prompt
    size_t promptTokens = 0;                 // tokens run in this hop's prefill
    size_t generatedTokens = 0;
    double routeSeconds = 0;                 // prefill incl. routing
    double generateSeconds = 0;
    std::string text;                        // what the model generated in this hop (special tokens kept)
};

// Per document over all hops and layers.
struct TraceAggregate {
    int64_t id = 0;
    size_t layerVotes = 0;                   // (hop, layer) pairs that selected it
    size_t hops = 0;                         // hops in which at least one layer selected it
    float bestScore = 0;
    float meanScore = 0;                     // over the (hop, layer) pairs where it was in the top-N
    bool cited = false;                      // among the answer's citations
    std::string title;
};

struct RoutingTrace {
    std::string question;
    std::string method;                      // "msa-interleave", "training-free"
    std::string routing;                     // RoutingConfig::describe()
    std::string model;                       // model fingerprint
    std::string bank;                        // bank path
    size_t topK = 0;
    std::vector<TraceHop> hops;
    std::vector<TraceAggregate> documents;   // filled by aggregate(): votes desc, best score desc, id asc
    std::vector<int64_t> citations;          // documents the answer cites, in citation order
    std::string answer;
    double seconds = 0;                      // whole answer
    double firstTokenSeconds = 0;            // time to the first answer token

    // Recomputes `documents` from `hops` and `citations` (titles are taken from the hops).
    void aggregate();
};

nlohmann::json toJson(const RoutingTrace& t);
Result<RoutingTrace> traceFromJson(const nlohmann::json& j);

}  // namespace msa::memory

// routing_context.h (internal to core/jobs): what round-1 routing needs, opened once and reused for
// every question — the model runtime, the bank, the routing configuration and the per-shard document
// tables — so that eval/ask loops do not reopen the model and rebuild the tables per question.
//
// Ownership: a RoutingContext owns its model runtime, bank mapping and (optional) catalog; routeWith
// borrows it. Thread affinity: one thread at a time (the engine thread).
//
// Usage:
//     auto backend = engine::createCpuBackend();
//     MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(request, *backend));
//     MSA_ASSIGN_OR_RETURN(RouteReport r, routeWith(*ctx, request));
//
// Failure codes: openRouting — those of openModelRuntime and Bank::open (Mismatch when the bank was
// built with another model or other routing layers); a catalog that cannot be opened is not a failure
// (catalog stays empty, titles are left out). routeWith — Internal on an inconsistent bank, and the
// engine's failures.
#pragma once

#include "core/catalog/catalog.h"
#include "core/engine/backend.h"
#include "core/jobs/memory_jobs.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/bank.h"
#include "core/memory/router.h"
#include "core/memory/sparse.h"
#include "core/memory/wrap.h"

#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <optional>
#include <vector>

namespace msa::jobs {

// What routing needs, opened once and reused for every question (eval, ask).
struct RoutingContext {
    ModelRuntime rt;
    memory::Bank bank;
    memory::RoutingConfig cfg;
    memory::DocumentWrapping wrap;
    // The bank's document tables and router (borrows `bank` and `rt.files`; the filter is applied).
    std::optional<memory::MemoryIndex> index;
    std::optional<catalog::Catalog> catalog;
    std::optional<std::unordered_set<int64_t>> candidates;   // the request's filter, as memory document ids
    std::map<int64_t, std::string> titles;

    // "title — label" of a memory document from the catalog (cached); empty without a catalog.
    std::string titleOf(int64_t memoryId) {
        if (!catalog) return {};
        auto it = titles.find(memoryId);
        if (it != titles.end()) return it->second;
        auto m = catalog->memoryDocument(memoryId);
        std::string t = m ? (m->label.empty() || m->label == m->title ? m->title : m->title + " — " + m->label) : "";
        return titles[memoryId] = t;
    }
};
Result<std::unique_ptr<RoutingContext>> openRouting(const RouteRequest& r, engine::Backend& backend);
Result<RouteReport> routeWith(RoutingContext& c, const RouteRequest& r);

}  // namespace msa::jobs

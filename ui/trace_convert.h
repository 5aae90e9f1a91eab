// trace_convert.h: RoutingTrace values for the Routing inspector from what the jobs return today.
//
// traceFromRoute: a `msa route`-style RouteReport (round-1 routing, no generation) becomes a trace with
// one hop (hop 0): per routing layer the top-N with the top-k flagged as selected; no citations.
// traceFromAsk: an answer's AskReport becomes hop 0 from its routing, with the documents whose text was
// given to the model (AskReport::used) as `injected` and the `[id]` citations the answer actually wrote
// (restricted to those injected documents) as `citations` — used only when the AskReport carries no
// trace of its own (AskReport::trace, filled per hop by the engine, is taken as it is).
// citedIds: the distinct `[n]` / `[n, m]` numbers in a text, in order of first appearance.
//
// Plain functions on values; no thread affinity; cannot fail.
//
// Usage:
//     routingView->showTrace(traceFromRoute(report));
#pragma once

#include "core/jobs/memory_jobs.h"
#include "core/memory/trace.h"

#include <cstdint>
#include <string_view>
#include <vector>

namespace msa::ui {

memory::RoutingTrace traceFromRoute(const jobs::RouteReport& report);
memory::RoutingTrace traceFromAsk(const jobs::AskReport& report);
std::vector<int64_t> citedIds(std::string_view text);

}  // namespace msa::ui

#include "ui/trace_convert.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace msa::ui {

memory::RoutingTrace traceFromRoute(const jobs::RouteReport& r) {
    memory::RoutingTrace t;
    t.question = r.question;
    t.method = "route only (round-1 routing, no answer)";
    t.routing = r.routing;
    t.topK = r.topK;
    t.seconds = r.seconds;
    memory::TraceHop hop;
    hop.hop = 0;
    hop.routeSeconds = r.seconds;
    for (const jobs::LayerRoute& l : r.layers) {
        memory::TraceLayer layer;
        layer.layer = l.layer;
        std::set<int64_t> selected;
        for (const auto& d : l.selected) selected.insert(d.id);
        std::set<int64_t> listed;
        for (const auto& d : l.top) {
            layer.top.push_back({d.id, d.score, selected.count(d.id) != 0, d.title});
            listed.insert(d.id);
        }
        // A top-k larger than the inspection top-N: the selected documents still belong in the layer.
        for (const auto& d : l.selected)
            if (!listed.count(d.id)) layer.top.push_back({d.id, d.score, true, d.title});
        std::stable_sort(layer.top.begin(), layer.top.end(), [](const memory::TraceDocument& a, const memory::TraceDocument& b) {
            if (a.score != b.score) return a.score > b.score;
            return a.id < b.id;
        });
        hop.layers.push_back(std::move(layer));
    }
    t.hops.push_back(std::move(hop));
    t.aggregate();
    // Titles of documents only the overall ranking names.
    for (auto& d : t.documents)
        if (d.title.empty())
            for (const auto& o : r.overall)
                if (o.id == d.id) d.title = o.title;
    return t;
}

std::vector<int64_t> citedIds(std::string_view text) {
    std::vector<int64_t> out;
    std::set<int64_t> seen;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '[') continue;
        size_t j = i + 1;
        std::vector<int64_t> ids;
        bool ok = false;
        while (j < text.size()) {
            while (j < text.size() && text[j] == ' ') ++j;
            size_t k = j;
            int64_t v = 0;
            while (k < text.size() && std::isdigit(static_cast<unsigned char>(text[k])) && k - j < 15)
                v = v * 10 + (text[k++] - '0');
            if (k == j) break;
            ids.push_back(v);
            j = k;
            while (j < text.size() && text[j] == ' ') ++j;
            if (j < text.size() && text[j] == ']') {
                ok = true;
                break;
            }
            if (j < text.size() && text[j] == ',') {
                ++j;
                continue;
            }
            break;
        }
        if (!ok) continue;
        for (int64_t v : ids)
            if (seen.insert(v).second) out.push_back(v);
        i = j;
    }
    return out;
}

memory::RoutingTrace traceFromAsk(const jobs::AskReport& r) {
    // The engine's own trace (every hop) when it filled one.
    if (!r.trace.hops.empty()) {
        memory::RoutingTrace t = r.trace;
        if (t.answer.empty()) t.answer = r.answer;
        if (t.documents.empty()) t.aggregate();
        return t;
    }
    if (r.routing.layers.empty()) {   // stopped before routing: no trace at all
        memory::RoutingTrace t;
        t.answer = r.answer;
        t.seconds = r.seconds;
        return t;
    }
    memory::RoutingTrace t = traceFromRoute(r.routing);
    t.method = "training-free";
    t.answer = r.answer;
    t.seconds = r.seconds;
    memory::TraceHop& hop = t.hops.front();
    for (const auto& u : r.used) hop.injected.push_back(u.id);
    hop.promptTokens = r.promptTokens;
    hop.generatedTokens = r.answerTokens;
    hop.text = r.answer;
    std::set<int64_t> injected(hop.injected.begin(), hop.injected.end());
    for (int64_t id : citedIds(r.answer))
        if (injected.count(id)) t.citations.push_back(id);
    t.aggregate();
    for (auto& d : t.documents)
        if (d.title.empty()) {
            for (const auto& u : r.used)
                if (u.id == d.id) d.title = u.title;
            for (const auto& o : r.routing.overall)
                if (o.id == d.id && d.title.empty()) d.title = o.title;
        }
    return t;
}

}  // namespace msa::ui

#include "core/memory/trace.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <set>

namespace msa::memory {

void RoutingTrace::aggregate() {
    struct Acc {
        size_t votes = 0, seen = 0;
        std::set<int> hopSet;
        float best = -std::numeric_limits<float>::infinity();
        double sum = 0;
        std::string title;
    };
    std::map<int64_t, Acc> acc;
    for (const TraceHop& h : hops)
        for (const TraceLayer& l : h.layers)
            for (const TraceDocument& d : l.top) {
                Acc& a = acc[d.id];
                a.best = std::max(a.best, d.score);
                a.sum += d.score;
                ++a.seen;
                if (a.title.empty()) a.title = d.title;
                if (d.selected) {
                    ++a.votes;
                    a.hopSet.insert(h.hop);
                }
            }
    const std::set<int64_t> cited(citations.begin(), citations.end());
    for (int64_t id : citations) acc.try_emplace(id);
    documents.clear();
    for (const auto& [id, a] : acc) {
        TraceAggregate d;
        d.id = id;
        d.layerVotes = a.votes;
        d.hops = a.hopSet.size();
        d.bestScore = a.seen ? a.best : 0.0f;
        d.meanScore = a.seen ? static_cast<float>(a.sum / static_cast<double>(a.seen)) : 0.0f;
        d.cited = cited.count(id) != 0;
        d.title = a.title;
        documents.push_back(std::move(d));
    }
    std::sort(documents.begin(), documents.end(), [](const TraceAggregate& a, const TraceAggregate& b) {
        if (a.layerVotes != b.layerVotes) return a.layerVotes > b.layerVotes;
        if (a.bestScore != b.bestScore) return a.bestScore > b.bestScore;
        return a.id < b.id;
    });
}

nlohmann::json toJson(const RoutingTrace& t) {
    nlohmann::json hops = nlohmann::json::array();
    for (const TraceHop& h : t.hops) {
        nlohmann::json layers = nlohmann::json::array();
        for (const TraceLayer& l : h.layers) {
            nlohmann::json top = nlohmann::json::array();
            for (const TraceDocument& d : l.top)
                top.push_back({{"id", d.id}, {"score", d.score}, {"selected", d.selected}, {"title", d.title}});
            layers.push_back({{"layer", l.layer}, {"top", std::move(top)}});
        }
        hops.push_back({{"hop", h.hop},
                        {"layers", std::move(layers)},
                        {"generated_ids", h.generatedIds},
                        {"injected", h.injected},
                        {"prompt_tokens", h.promptTokens},
                        {"generated_tokens", h.generatedTokens},
                        {"route_seconds", h.routeSeconds},
                        {"generate_seconds", h.generateSeconds},
                        {"text", h.text}});
    }
    nlohmann::json docs = nlohmann::json::array();
    for (const TraceAggregate& d : t.documents)
        docs.push_back({{"id", d.id},
                        {"layer_votes", d.layerVotes},
                        {"hops", d.hops},
                        {"best_score", d.bestScore},
                        {"mean_score", d.meanScore},
                        {"cited", d.cited},
                        {"title", d.title}});
    return {{"format", "msa-routing-trace/1"},
            {"question", t.question},
            {"method", t.method},
            {"routing", t.routing},
            {"model", t.model},
            {"bank", t.bank},
            {"top_k", t.topK},
            {"hops", std::move(hops)},
            {"documents", std::move(docs)},
            {"citations", t.citations},
            {"answer", t.answer},
            {"seconds", t.seconds},
            {"first_token_seconds", t.firstTokenSeconds}};
}

Result<RoutingTrace> traceFromJson(const nlohmann::json& j) {
    try {
        if (!j.is_object() || j.value("format", std::string()) != "msa-routing-trace/1")
            return Status(ErrorCode::Corrupt, "not a routing trace (format 'msa-routing-trace/1' expected)");
        RoutingTrace t;
        t.question = j.at("question").get<std::string>();
        t.method = j.at("method").get<std::string>();
        t.routing = j.at("routing").get<std::string>();
        t.model = j.at("model").get<std::string>();
        t.bank = j.at("bank").get<std::string>();
        t.topK = j.at("top_k").get<size_t>();
        for (const auto& h : j.at("hops")) {
            TraceHop hop;
            hop.hop = h.at("hop").get<int>();
            for (const auto& l : h.at("layers")) {
                TraceLayer layer;
                layer.layer = l.at("layer").get<int>();
                for (const auto& d : l.at("top"))
                    layer.top.push_back({d.at("id").get<int64_t>(), d.at("score").get<float>(), d.at("selected").get<bool>(),
                                         d.value("title", std::string())});
                hop.layers.push_back(std::move(layer));
            }
            hop.generatedIds = h.at("generated_ids").get<std::vector<int64_t>>();
            hop.injected = h.at("injected").get<std::vector<int64_t>>();
            hop.promptTokens = h.at("prompt_tokens").get<size_t>();
            hop.generatedTokens = h.at("generated_tokens").get<size_t>();
            hop.routeSeconds = h.at("route_seconds").get<double>();
            hop.generateSeconds = h.at("generate_seconds").get<double>();
            hop.text = h.at("text").get<std::string>();
            t.hops.push_back(std::move(hop));
        }
        for (const auto& d : j.at("documents")) {
            TraceAggregate a;
            a.id = d.at("id").get<int64_t>();
            a.layerVotes = d.at("layer_votes").get<size_t>();
            a.hops = d.at("hops").get<size_t>();
            a.bestScore = d.at("best_score").get<float>();
            a.meanScore = d.at("mean_score").get<float>();
            a.cited = d.at("cited").get<bool>();
            a.title = d.value("title", std::string());
            t.documents.push_back(std::move(a));
        }
        t.citations = j.at("citations").get<std::vector<int64_t>>();
        t.answer = j.at("answer").get<std::string>();
        t.seconds = j.at("seconds").get<double>();
        t.firstTokenSeconds = j.at("first_token_seconds").get<double>();
        return t;
    } catch (const nlohmann::json::exception& e) {
        return Status(ErrorCode::Corrupt, std::string("routing trace: ") + e.what());
    }
}

}  // namespace msa::memory

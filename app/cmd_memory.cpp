// cmd_memory.cpp: `msa build` (encode a catalog collection into a memory bank) and `msa route` (which
// documents each routing layer selects for a question). SIGINT during a build cancels after the
// current document; everything committed stays, and the next run resumes.
#include "app/commands.h"
#include "app/signal_cancel.h"

#include "core/catalog/importer.h"
#include "core/jobs/memory_jobs.h"
#include "core/util/format.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <optional>
#include <cstdio>
#include <iostream>
#include <tuple>

namespace msa::app {
int runBuild(const BuildArgs& a) {
    jobs::BuildOptions o;
    o.catalog = a.catalog;
    o.collection = a.collection;
    o.model = a.modelPath;
    o.bank = a.bank;
    o.nThreads = static_cast<size_t>(std::max(0, a.threads));
    o.batchTokens = static_cast<size_t>(std::max(0, a.batchTokens));
    if (a.storage == "f32") o.storage = model::DType::F32;
    else if (a.storage != "bf16") return reportFailure("build", invalidArgument("--storage must be bf16 or f32"), a.json);
    CancelToken cancel;
    o.cancel = &cancel;
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    if (!a.quiet)
        o.progress = [tty](const Progress& p) {
            std::fprintf(stderr, "%sbuild: %llu/%llu documents, %llu tokens, %.0f tokens/s, ETA %s%s", tty ? "\r" : "",
                         static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
                         static_cast<unsigned long long>(p.bytesDone), p.bytesPerSecond, formatDuration(p.etaSeconds).c_str(),
                         tty ? "   " : "\n");
        };
    std::optional<CancelOnSignal> signals(std::in_place, cancel);
    auto r = jobs::buildMemory(o);
    signals.reset();
    if (!a.quiet && tty) std::fprintf(stderr, "\n");
    if (!r) return reportFailure("build", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
    } else {
        std::printf("Memory bank %s (%s)\n", r->bank.c_str(), r->routing.c_str());
        std::printf("  documents: %llu in the collection; %llu encoded, %llu unchanged, %llu removed, %llu skipped\n",
                    static_cast<unsigned long long>(r->nDocuments), static_cast<unsigned long long>(r->nEncoded),
                    static_cast<unsigned long long>(r->nUnchanged), static_cast<unsigned long long>(r->nRemoved),
                    static_cast<unsigned long long>(r->nSkipped));
        std::printf("  encoded %llu tokens in %.1f s (%.0f tokens/s; encoder forwards %.1f s, %.0f tokens/s)%s\n",
                    static_cast<unsigned long long>(r->nTokens), r->seconds, r->tokensPerSecond, r->encodeSeconds,
                    r->encodeSeconds > 0 ? static_cast<double>(r->nTokens) / r->encodeSeconds : 0.0, r->cancelled ? "; CANCELLED (run again to resume)" : "");
        std::printf("  bank: %llu documents, %llu chunks, %llu tokens, %s on disk\n",
                    static_cast<unsigned long long>(r->bankDocuments), static_cast<unsigned long long>(r->bankChunks),
                    static_cast<unsigned long long>(r->bankTokens), formatBytes(static_cast<double>(r->bankBytes)).c_str());
        for (const auto& [id, why] : r->skipped) std::printf("  skipped memory document %lld: %s\n", static_cast<long long>(id), why.c_str());
    }
    return r->cancelled ? exitCodeFor(ErrorCode::Cancelled) : 0;
}

namespace {
Result<jobs::MemoryFilter> memoryFilter(const MemoryFilterArgs& a) {
    jobs::MemoryFilter f;
    if (!a.collection.empty()) f.collection = a.collection;
    if (!a.kind.empty()) f.kind = a.kind;
    if (!a.participant.empty()) f.participant = a.participant;
    for (const auto& [text, option, endOfDay] : {std::tuple{a.from, "--from", false}, std::tuple{a.to, "--to", true}}) {
        if (text.empty()) continue;
        std::optional<int64_t> t = catalog::parseDate(text);
        if (!t) return invalidArgument(std::string(option) + " '" + text + "' is not a date (YYYY-MM-DD)");
        if (endOfDay && text.size() == 10) *t += 86400;   // a bare --to date includes that day
        (endOfDay ? f.toUnix : f.fromUnix) = *t;
    }
    return f;
}
}  // namespace

int runRoute(const RouteArgs& a) {
    jobs::RouteRequest req;
    req.bank = a.bank;
    req.model = a.modelPath;
    if (!a.catalog.empty()) req.catalog = a.catalog;
    req.question = a.question;
    req.topN = static_cast<size_t>(std::max(1, a.topN));
    req.nThreads = static_cast<size_t>(std::max(0, a.threads));
    auto filter = memoryFilter(a.filter);
    if (!filter) return reportFailure("route", filter.status(), a.json);
    req.filter = *filter;
    auto r = jobs::routeQuestion(req);
    if (!r) return reportFailure("route", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("Question: %s\nRouting: %s, top-%zu of %zu documents, %.2f s\n\n", r->question.c_str(), r->routing.c_str(),
                r->topK, r->nCandidates, r->seconds);
    for (const auto& l : r->layers) {
        std::printf("layer %2d:", l.layer);
        for (const auto& d : l.selected) std::printf(" [%lld] %.3f", static_cast<long long>(d.id), static_cast<double>(d.score));
        std::printf("\n");
    }
    std::printf("\nOverall (layers that selected it, best score):\n");
    size_t shown = 0;
    for (const auto& o : r->overall) {
        if (shown++ >= req.topN) break;
        std::printf("  [%lld] %2zu layers  %.3f  %s\n", static_cast<long long>(o.id), o.votes, static_cast<double>(o.bestScore),
                    o.title.c_str());
    }
    return 0;
}

}  // namespace msa::app

namespace msa::app {

int runAsk(const AskArgs& a) {
    jobs::AskRequest req;
    req.route.bank = a.bank;
    req.route.model = a.modelPath;
    if (!a.catalog.empty()) req.route.catalog = a.catalog;
    req.route.question = a.question;
    req.route.nThreads = static_cast<size_t>(std::max(0, a.threads));
    auto filter = memoryFilter(a.filter);
    if (!filter) return reportFailure("ask", filter.status(), a.json);
    req.route.filter = *filter;
    req.nDocuments = static_cast<size_t>(std::max(1, a.nDocuments));
    req.maxTokens = static_cast<size_t>(std::max(1, a.maxTokens));
    CancelToken cancel;
    req.cancel = &cancel;
    std::optional<CancelOnSignal> signals(std::in_place, cancel);   // Ctrl-C: stop generating, keep what was said
    auto r = jobs::askQuestion(req, [&](std::string_view piece) {
        if (!a.json) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        }
        return true;
    });
    signals.reset();
    if (!r) return reportFailure("ask", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("\n\nMemory used (%s): 1 hop, %zu documents, %.1f s\n", r->method.c_str(), r->used.size(), r->seconds);
    for (const auto& d : r->used)
        std::printf("  [%lld] %s (selected in %zu of %zu routing layers)\n", static_cast<long long>(d.id), d.title.c_str(),
                    d.votes, r->routing.layers.size());
    return 0;
}

}  // namespace msa::app

#include "core/util/paths.h"

namespace msa::app {

int runEval(const EvalArgs& a) {
    jobs::EvalRequest req;
    req.route.bank = a.bank;
    req.route.model = a.modelPath;
    req.route.catalog = a.catalog;
    req.route.nThreads = static_cast<size_t>(std::max(0, a.threads));
    req.k = static_cast<size_t>(std::max(1, a.k));
    if (a.questions.empty()) {
        req.archiveRoot = findDemoArchive();
        req.questions = demoQuestionsFile(req.archiveRoot);
        if (req.archiveRoot.empty())
            return reportFailure("eval", notFound("no --questions given and the demo archive was not found"), a.json);
    } else {
        req.questions = a.questions;
        req.archiveRoot = a.archiveRoot.empty() ? std::filesystem::path(a.questions).parent_path() : std::filesystem::path(a.archiveRoot);
    }
    auto r = jobs::evaluateRouting(req);
    if (!r) return reportFailure("eval", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("%-6s %5s %11s %14s %12s\n", "id", "hops", "supporting", "routed@k hits", "BM25@k hits");
    for (const auto& q : r->questions)
        std::printf("%-6s %5zu %11zu %14zu %12zu\n", q.id.c_str(), q.hops, q.nSupporting, q.routedHits, q.bm25Hits);
    std::printf("\nrecall of supporting files in the top %zu (mean over %zu questions): routing %.3f, BM25 %.3f (%.1f s)\n",
                r->k, r->questions.size(), r->routedRecall, r->bm25Recall, r->seconds);
    return 0;
}

}  // namespace msa::app

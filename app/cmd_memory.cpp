// cmd_memory.cpp: `msa build` (encode a catalog collection into a memory bank) and `msa route` (which
// documents each routing layer selects for a question). SIGINT during a build cancels after the
// current document; everything committed stays, and the next run resumes.
#include "app/backend_setup.h"
#include "app/commands.h"
#include "app/signal_cancel.h"

#include "core/jobs/dataset_eval.h"
#include "core/jobs/history.h"
#include "core/jobs/memory_jobs.h"
#include "core/util/format.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <ctime>
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
    auto device = selectDevice(a.device, "build");
    if (!device) return reportFailure("build", device.status(), a.json);
    o.device = *device;
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
        j["device"] = deviceJson(o.device);
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
// YYYY-MM-DD (UTC midnight) as Unix seconds.
Result<int64_t> parseDay(const std::string& what, const std::string& text) {
    int y = 0, m = 0, d = 0;
    char tail = 0;
    if (std::sscanf(text.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
        return invalidArgument(what + " must be a date like 2024-05-31, not " + quotedName(text));
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    return static_cast<int64_t>(timegm(&tm));
}

Result<jobs::CandidateFilter> filterOf(const FilterArgs& f) {
    jobs::CandidateFilter out;
    if (!f.collection.empty()) out.collection = f.collection;
    if (!f.kind.empty()) out.kind = f.kind;
    if (!f.participant.empty()) out.participant = f.participant;
    if (!f.since.empty()) {
        MSA_ASSIGN_OR_RETURN(int64_t t, parseDay("--since", f.since));
        out.fromUnix = t;
    }
    if (!f.until.empty()) {
        MSA_ASSIGN_OR_RETURN(int64_t t, parseDay("--until", f.until));
        out.toUnix = t + 86400;   // the whole day
    }
    return out;
}

void printTrace(const memory::RoutingTrace& t) {
    std::printf("\nRouting trace (%s; %s):\n", t.method.c_str(), t.routing.c_str());
    for (const auto& h : t.hops) {
        std::printf("hop %d: %zu prompt tokens, %zu generated, route %.2f s, generate %.2f s\n", h.hop, h.promptTokens,
                    h.generatedTokens, h.routeSeconds, h.generateSeconds);
        for (const auto& l : h.layers) {
            std::printf("  layer %2d:", l.layer);
            for (const auto& d : l.top)
                std::printf(" %s[%lld] %.3f", d.selected ? "*" : "", static_cast<long long>(d.id), static_cast<double>(d.score));
            std::printf("\n");
        }
        if (!h.generatedIds.empty()) {
            std::printf("  ids written by the model:");
            for (int64_t id : h.generatedIds) std::printf(" [%lld]", static_cast<long long>(id));
            std::printf("\n");
        }
        if (!h.injected.empty()) {
            std::printf("  original text injected:");
            for (int64_t id : h.injected) std::printf(" [%lld]", static_cast<long long>(id));
            std::printf("\n");
        }
    }
    std::printf("Per document (layer votes, hops, best / mean score, cited):\n");
    for (const auto& d : t.documents)
        std::printf("  [%lld] %3zu %2zu %.3f / %.3f %s %s\n", static_cast<long long>(d.id), d.layerVotes, d.hops,
                    static_cast<double>(d.bestScore), static_cast<double>(d.meanScore), d.cited ? "cited" : "     ", d.title.c_str());
}
}  // namespace

namespace {
Result<memory::KeyStorage> keyStorageOf(const std::string& name) {
    if (std::optional<memory::KeyStorage> s = memory::parseKeyStorage(name)) return *s;
    return invalidArgument("--key-storage " + name + ": expected native, fp8 or int8");
}
}  // namespace

int runRoute(const RouteArgs& a) {
    jobs::RouteRequest req;
    {
        auto f = filterOf(a.filter);
        if (!f) return reportFailure("route", f.status(), a.json);
        req.filter = *f;
    }
    req.bank = a.bank;
    req.model = a.modelPath;
    if (!a.catalog.empty()) req.catalog = a.catalog;
    req.question = a.question;
    req.topN = static_cast<size_t>(std::max(1, a.topN));
    req.nThreads = static_cast<size_t>(std::max(0, a.threads));
    auto device = selectDevice(a.device, "route");
    if (!device) return reportFailure("route", device.status(), a.json);
    req.device = *device;
    {
        auto storage = keyStorageOf(a.keyStorage);
        if (!storage) return reportFailure("route", storage.status(), a.json);
        req.keyStorage = *storage;
    }
    auto r = jobs::routeQuestion(req);
    if (!r) return reportFailure("route", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        j["device"] = deviceJson(req.device);
        j["key_storage"] = std::string(memory::keyStorageName(req.keyStorage));
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("Question: %s\nRouting: %s, top-%zu of %zu documents, %.2f s%s\n\n", r->question.c_str(), r->routing.c_str(),
                r->topK, r->nCandidates, r->seconds,
                req.keyStorage == memory::KeyStorage::Native ? ""
                                                            : (", " + std::string(memory::keyStorageName(req.keyStorage)) + " routing keys").c_str());
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
    auto device = selectDevice(a.device, "ask");
    if (!device) return reportFailure("ask", device.status(), a.json);
    req.route.device = *device;
    {
        auto storage = keyStorageOf(a.keyStorage);
        if (!storage) return reportFailure("ask", storage.status(), a.json);
        req.route.keyStorage = *storage;
    }
    req.nDocuments = static_cast<size_t>(std::max(1, a.nDocuments));
    req.maxTokens = static_cast<size_t>(std::max(1, a.maxTokens));
    req.hops = static_cast<size_t>(std::max(1, a.hops));
    req.maxRounds = static_cast<size_t>(std::max(1, a.maxRounds));
    req.reference = a.reference;
    req.temperature = a.temperature;
    req.method = a.method == "interleave" ? jobs::AnswerMethod::Interleave
               : a.method == "training-free" ? jobs::AnswerMethod::TrainingFree : jobs::AnswerMethod::Auto;
    req.injection = a.injection == "compressed" ? jobs::Injection::Compressed : jobs::Injection::Original;
    {
        auto f = filterOf(a.filter);
        if (!f) return reportFailure("ask", f.status(), a.json);
        req.route.filter = *f;
    }
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
    // The turn and its routing trace go into the catalog's history (msa history; the Routing tab).
    std::optional<int64_t> turnId;
    if (!a.noHistory) {
        auto saved = jobs::recordTurn(a.catalog, r->trace);
        if (saved) turnId = saved->turnId;
        else std::fprintf(stderr, "msa ask: the answer was not saved to the history: %s\n", saved.status().toString().c_str());
    }
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        j["device"] = deviceJson(req.route.device);
        j["key_storage"] = std::string(memory::keyStorageName(req.route.keyStorage));
        if (turnId) j["turn_id"] = *turnId;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    if (!r->transcript.empty()) std::printf("\n\nAnswer: %s", r->answer.c_str());
    std::printf("\n\nMemory used (%s): %zu hop%s, %zu documents, first token %.2f s, %.1f s\n", r->method.c_str(),
                r->trace.hops.size(), r->trace.hops.size() == 1 ? "" : "s", r->used.size(), r->firstTokenSeconds, r->seconds);
    for (const auto& d : r->used)
        std::printf("  [%lld] %s (selected in %zu routing layer%s)%s\n", static_cast<long long>(d.id), d.title.c_str(), d.votes,
                    d.votes == 1 ? "" : "s",
                    std::find(r->trace.citations.begin(), r->trace.citations.end(), d.id) != r->trace.citations.end() ? ", cited" : "");
    if (a.trace) printTrace(r->trace);
    if (turnId) std::printf("Saved as turn %lld (msa history show %lld --catalog ...)\n", static_cast<long long>(*turnId),
                            static_cast<long long>(*turnId));
    return 0;
}

}  // namespace msa::app

#include "core/util/paths.h"

namespace msa::app {

int runDatasetEval(const EvalArgs& a);

int runEval(const EvalArgs& a) {
    if (!a.file.empty()) {
        auto format = jobs::detectDatasetFile(a.file);
        if (!format) return reportFailure("eval", format.status(), a.json);
        if (*format != jobs::DatasetFormat::DemoQuestions) return runDatasetEval(a);
    }
    if (a.bank.empty() || a.catalog.empty())
        return reportFailure("eval", invalidArgument("demo questions are evaluated over an existing memory: give --bank and --catalog"),
                             a.json);
    jobs::EvalRequest req;
    req.route.bank = a.bank;
    req.route.model = a.modelPath;
    req.route.catalog = a.catalog;
    req.route.nThreads = static_cast<size_t>(std::max(0, a.threads));
    auto device = selectDevice(a.device, "eval");
    if (!device) return reportFailure("eval", device.status(), a.json);
    req.route.device = *device;
    req.k = static_cast<size_t>(a.k > 0 ? a.k : 5);
    const std::string questions = a.file.empty() ? a.questions : a.file;
    if (questions.empty()) {
        req.archiveRoot = findDemoArchive();
        req.questions = demoQuestionsFile(req.archiveRoot);
        if (req.archiveRoot.empty())
            return reportFailure("eval", notFound("no --questions given and the demo archive was not found"), a.json);
    } else {
        req.questions = questions;
        req.archiveRoot = a.archiveRoot.empty() ? std::filesystem::path(questions).parent_path() : std::filesystem::path(a.archiveRoot);
    }
    auto r = jobs::evaluateRouting(req);
    if (!r) return reportFailure("eval", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        j["device"] = deviceJson(req.route.device);
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

#include "core/jobs/bank_files.h"
#include "core/jobs/history.h"

namespace msa::app {
namespace {

ProgressFn bankProgress(const char* verb, bool quiet) {
    if (quiet) return {};
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    return [tty, verb](const Progress& p) {
        if (!tty && !p.finished) return;   // a log gets the final line only
        std::fprintf(stderr, "%s%s: %s of %s (%.0f%%), %s/s, ETA %s%s", tty ? "\r" : "", verb,
                     formatBytes(static_cast<double>(p.bytesDone)).c_str(), formatBytes(static_cast<double>(p.bytesTotal)).c_str(),
                     p.bytesTotal ? 100.0 * static_cast<double>(p.bytesDone) / static_cast<double>(p.bytesTotal) : 0.0,
                     formatBytes(p.bytesPerSecond).c_str(), formatDuration(p.etaSeconds).c_str(), tty ? "   " : "\n");
    };
}

}  // namespace

int runBankExport(const BankFileArgs& a) {
    jobs::BankExportRequest r;
    r.bank = a.bank;
    r.file = a.file;
    if (!a.catalog.empty()) r.catalog = a.catalog;
    r.zstd = a.zstd;
    CancelToken cancel;
    r.cancel = &cancel;
    r.progress = bankProgress("export", a.quiet || a.json);
    std::optional<CancelOnSignal> signals(std::in_place, cancel);   // Ctrl-C: stop, remove the partial file
    auto res = jobs::exportBank(r);
    signals.reset();
    if (!a.quiet && !a.json && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
    if (!res) return reportFailure("bank export", res.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*res);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    const auto& x = res->archive;
    std::printf("exported %s -> %s: %llu files, %llu documents, %s raw, %s on disk (%s), %.2f s\n", a.bank.c_str(),
                a.file.c_str(), static_cast<unsigned long long>(x.nFiles), static_cast<unsigned long long>(x.nDocuments),
                formatBytes(static_cast<double>(x.rawBytes)).c_str(), formatBytes(static_cast<double>(x.fileBytes)).c_str(),
                x.compressed ? "zstd" : "uncompressed", x.seconds);
    if (r.catalog)
        std::printf("  memory documents' text and metadata: %llu catalog documents%s\n",
                    static_cast<unsigned long long>(x.nDocumentRecords),
                    res->nMissingDocuments ? (", " + std::to_string(res->nMissingDocuments) + " bank documents not in the catalog").c_str() : "");
    else
        std::printf("  without the documents' text (give --catalog to include it)\n");
    return 0;
}

int runBankImport(const BankFileArgs& a) {
    jobs::BankImportRequest r;
    r.file = a.file;
    if (!a.bank.empty()) r.bank = a.bank;
    if (!a.catalog.empty()) r.catalog = a.catalog;
    if (!a.model.empty()) r.model = a.model;
    r.force = a.force;
    CancelToken cancel;
    r.cancel = &cancel;
    r.progress = bankProgress("import", a.quiet || a.json);
    std::optional<CancelOnSignal> signals(std::in_place, cancel);
    auto res = jobs::importBank(r);
    signals.reset();
    if (!a.quiet && !a.json && ::isatty(STDERR_FILENO)) std::fprintf(stderr, "\n");
    if (!res) return reportFailure("bank import", res.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*res);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    const auto& x = res->archive;
    std::printf("imported %s -> %s%s: %llu files, %llu documents, %s, every checksum verified (model %s), %.2f s\n",
                a.file.c_str(), x.bank.c_str(), x.replaced ? " (replaced the previous bank)" : "",
                static_cast<unsigned long long>(x.nFiles), static_cast<unsigned long long>(x.nDocuments),
                formatBytes(static_cast<double>(x.rawBytes)).c_str(), x.modelFingerprint.c_str(), x.seconds);
    if (r.catalog)
        std::printf("  catalog %s: %lld documents added, %lld memory documents added, %lld already present\n",
                    a.catalog.c_str(), static_cast<long long>(res->documents.nDocumentsAdded),
                    static_cast<long long>(res->documents.nMemoryDocumentsAdded),
                    static_cast<long long>(res->documents.nMemoryDocumentsPresent));
    else if (res->documentsInArchive)
        std::printf("  the archive also holds the memory documents' text: give --catalog DB to restore it\n");
    return 0;
}

int runHistory(const HistoryArgs& a) {
    if (a.action == "show") {
        if (a.turnId <= 0) return reportFailure("history show", invalidArgument("give the turn id: msa history show TURN_ID"), a.json);
        auto t = jobs::loadTurn(a.catalog, a.turnId);
        if (!t) return reportFailure("history show", t.status(), a.json);
        if (a.json) {
            nlohmann::json j = jobs::toJson(*t);
            j["ok"] = true;
            std::cout << j.dump(2) << std::endl;
            return 0;
        }
        std::printf("turn %lld (conversation %lld \"%s\", #%lld, %s, %.1f s)\n", static_cast<long long>(t->turn.id),
                    static_cast<long long>(t->conversation.id), t->conversation.title.c_str(),
                    static_cast<long long>(t->turn.ordinal + 1), t->turn.method.c_str(), t->turn.seconds);
        std::printf("\nQ: %s\nA: %s\n", t->turn.question.c_str(), t->turn.answer.c_str());
        std::printf("\nCitations:");
        for (int64_t id : t->turn.citations) std::printf(" [%lld]", static_cast<long long>(id));
        std::printf("%s\n", t->turn.citations.empty() ? " none" : "");
        if (!t->trace) {
            std::printf("(no routing trace stored)\n");
            return 0;
        }
        const memory::RoutingTrace& tr = *t->trace;
        std::printf("\nRouting trace: %s, top-%zu, model %s, bank %s\n", tr.routing.c_str(), tr.topK, tr.model.c_str(),
                    tr.bank.c_str());
        for (const memory::TraceHop& h : tr.hops) {
            std::printf("hop %d: %zu prompt tokens, %zu generated, route %.2f s, generate %.2f s\n", h.hop, h.promptTokens,
                        h.generatedTokens, h.routeSeconds, h.generateSeconds);
            for (const memory::TraceLayer& l : h.layers) {
                std::printf("  layer %2d:", l.layer);
                for (const memory::TraceDocument& d : l.top)
                    std::printf(" %s[%lld] %.3f", d.selected ? "*" : "", static_cast<long long>(d.id), static_cast<double>(d.score));
                std::printf("\n");
            }
        }
        std::printf("Documents (layer votes, best, mean score):\n");
        for (const memory::TraceAggregate& d : tr.documents)
            std::printf("  [%lld] %3zu  %.3f  %.3f%s  %s\n", static_cast<long long>(d.id), d.layerVotes,
                        static_cast<double>(d.bestScore), static_cast<double>(d.meanScore), d.cited ? "  cited" : "",
                        d.title.c_str());
        return 0;
    }
    auto cat = catalog::Catalog::open(a.catalog, {.readOnly = false, .create = false});
    if (!cat) return reportFailure("history", cat.status(), a.json);
    auto convs = cat->conversations();
    if (!convs) return reportFailure("history", convs.status(), a.json);
    nlohmann::json list = nlohmann::json::array();
    for (const catalog::ConversationInfo& c : *convs) {
        auto turns = cat->turns(c.id);
        if (!turns) return reportFailure("history", turns.status(), a.json);
        if (a.json) {
            nlohmann::json cj = jobs::toJson(c);
            nlohmann::json tj = nlohmann::json::array();
            for (const catalog::ChatTurn& t : *turns) tj.push_back(jobs::toJson(t, false));
            cj["turn_list"] = std::move(tj);
            list.push_back(std::move(cj));
            continue;
        }
        std::printf("conversation %lld: %s (%lld turns; bank %s)\n", static_cast<long long>(c.id), c.title.c_str(),
                    static_cast<long long>(c.nTurns), c.bankPath.empty() ? "-" : c.bankPath.c_str());
        for (const catalog::ChatTurn& t : *turns) {
            std::string answer = t.answer.substr(0, t.answer.find('\n'));
            if (answer.size() > 100) answer = jobs::conversationTitle(answer);
            std::printf("  turn %lld: %s\n      -> %s  [%zu citations, %.1f s]\n", static_cast<long long>(t.id),
                        t.question.c_str(), answer.c_str(), t.citations.size(), t.seconds);
        }
    }
    if (a.json) {
        std::cout << nlohmann::json{{"ok", true}, {"conversations", std::move(list)}}.dump(2) << std::endl;
    } else if (convs->empty()) {
        std::printf("no conversations in %s yet (msa ask stores each answer)\n", a.catalog.c_str());
    }
    return 0;
}

}  // namespace msa::app

namespace msa::app {

// `msa eval FILE` on a MuSiQue/LoCoMo file: one memory from all its documents, then per question the
// routing/BM25 recall (and with --answers the answer's EM/F1), as a table or JSON.
int runDatasetEval(const EvalArgs& a) {
    jobs::DatasetEvalRequest req;
    req.dataset = a.file;
    req.model = a.modelPath;
    req.workdir = a.workdir;
    req.limit = static_cast<size_t>(std::max(0, a.limit));
    req.memoryOfLimit = a.memoryOfLimit;
    req.k = static_cast<size_t>(a.k > 0 ? a.k : 10);
    req.answers = a.answers;
    req.maxAnswerTokens = static_cast<size_t>(std::max(1, a.answerTokens));
    req.nAnswerDocuments = static_cast<size_t>(std::max(1, a.answerDocuments));
    req.nThreads = static_cast<size_t>(std::max(0, a.threads));
    auto device = selectDevice(a.device, "eval");
    if (!device) return reportFailure("eval", device.status(), a.json);
    req.device = *device;
    CancelToken cancel;
    req.cancel = &cancel;
    const bool tty = ::isatty(STDERR_FILENO) != 0;
    req.buildProgress = [tty](const Progress& p) {
        std::fprintf(stderr, "%seval: memory %llu/%llu documents, %llu tokens, %.0f tokens/s, ETA %s%s", tty ? "\r" : "",
                     static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(p.total),
                     static_cast<unsigned long long>(p.bytesDone), p.bytesPerSecond, formatDuration(p.etaSeconds).c_str(),
                     tty ? "   " : "\n");
    };
    req.questionProgress = [tty](size_t done, size_t total) {
        if (tty) std::fprintf(stderr, "\reval: question %zu/%zu        ", done + 1, total);
    };
    std::optional<CancelOnSignal> signals(std::in_place, cancel);
    auto r = jobs::evaluateDataset(req);
    signals.reset();
    if (tty) std::fprintf(stderr, "\n");
    if (!r) return reportFailure("eval", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        j["device"] = deviceJson(req.device);
        std::cout << j.dump(2) << std::endl;
        return r->cancelled ? exitCodeFor(ErrorCode::Cancelled) : 0;
    }
    const size_t k = r->k;
    std::printf("Evaluation of %s (%s): %zu of %zu questions over one memory of %zu documents\n", r->dataset.c_str(),
                r->format.c_str(), r->questions.size(), r->nQuestionsInFile, r->nMemoryDocuments);
    std::printf("  work folder %s\n  bank: %llu encoded now, %llu unchanged, %llu tokens, %.1f s; routing %s, top-%zu\n\n",
                r->workdir.c_str(), static_cast<unsigned long long>(r->build.nEncoded),
                static_cast<unsigned long long>(r->build.nUnchanged), static_cast<unsigned long long>(r->build.bankTokens),
                r->build.seconds, r->routing.c_str(), r->topK);
    std::printf("%-24s %4s  %5s %5s %5s  %5s %5s %5s", "question", "gold", "R@1", "R@5", ("R@" + std::to_string(k)).c_str(),
                "B@1", "B@5", ("B@" + std::to_string(k)).c_str());
    if (a.answers) std::printf("  %4s %5s  %s", "EM", "F1", "answer");
    std::printf("\n");
    for (const auto& q : r->questions) {
        std::string id = q.id.size() > 24 ? q.id.substr(0, 21) + "..." : q.id;
        if (q.gold.empty()) std::printf("%-24s %4s  %5s %5s %5s  %5s %5s %5s", id.c_str(), "0", "-", "-", "-", "-", "-", "-");
        else
            std::printf("%-24s %4zu  %5.2f %5.2f %5.2f  %5.2f %5.2f %5.2f", id.c_str(), q.gold.size(), q.routed.at1, q.routed.at5,
                        q.routed.atK, q.bm25.at1, q.bm25.at5, q.bm25.atK);
        if (q.answered) {
            std::string ans = q.answer;
            for (char& c : ans)
                if (c == '\n' || c == '\r' || c == '\t') c = ' ';
            if (ans.size() > 60) ans = ans.substr(0, 57) + "...";
            if (q.hasGoldAnswer) std::printf("  %4.0f %5.2f  %s", q.exactMatch, q.f1, ans.c_str());
            else std::printf("  %4s %5s  %s", "-", "-", ans.c_str());
        }
        std::printf("\n");
    }
    std::printf("\nMean over %zu questions with gold documents (R = routing, all layers; B = BM25):\n", r->nScored);
    std::printf("  routing  recall@1 %.3f  recall@5 %.3f  recall@%zu %.3f\n", r->routed.at1, r->routed.at5, k, r->routed.atK);
    std::printf("  routing, mean of the layers' recalls:  %.3f / %.3f / %.3f\n", r->layerMean.at1, r->layerMean.at5, r->layerMean.atK);
    std::printf("  BM25     recall@1 %.3f  recall@5 %.3f  recall@%zu %.3f\n", r->bm25.at1, r->bm25.at5, k, r->bm25.atK);
    std::printf("  per routing layer (recall@1 / @5 / @%zu):\n", k);
    for (size_t i = 0; i < r->layerMeans.size() && i < r->layers.size(); ++i)
        std::printf("    layer %2d  %.3f  %.3f  %.3f\n", r->layers[i], r->layerMeans[i].at1, r->layerMeans[i].at5, r->layerMeans[i].atK);
    if (a.answers)
        std::printf("  answers: exact match %.3f, F1 %.3f over %zu questions with a gold answer\n", r->exactMatch, r->f1,
                    r->nAnswerScored);
    std::printf("  time: %.1f s in all (import %.1f s, build %.1f s, routing %.1f s, answering %.1f s)%s\n", r->seconds,
                r->importSeconds, r->build.seconds, r->routeSeconds, r->answerSeconds, r->cancelled ? "; CANCELLED" : "");
    return r->cancelled ? exitCodeFor(ErrorCode::Cancelled) : 0;
}

}  // namespace msa::app

// msa_main.cpp: the `msa` command line, a composition root (CONVENTIONS.md #1). It parses options
// with CLI11, calls the library (core/jobs), and prints either text or --json. Every capability it
// exposes lives in a library so the GUI and the tests reach the same code.
//
// Exit codes: 0 success; 2 usage errors (CLI11 parse errors, bad option values); otherwise
// msa::exitCodeFor(status.code()) — see README.md "Exit codes". Errors print one line on stderr,
// "msa <command>: <code>: <message>", and with --json also an {"ok": false, "error": {...}} object on
// stdout so that scripts never parse text.
#include "app/backend_setup.h"
#include "app/commands.h"
#include "app/signal_cancel.h"
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/doctor.h"
#include "core/jobs/bank_files.h"
#include "core/memory/bank.h"
#include "core/model/model_files.h"
#include "core/model/model_tokenizer.h"
#include "core/model/tokenizer.h"
#include "core/util/build_info.h"
#include "core/util/format.h"
#include "core/util/log.h"
#include "core/util/status.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct CommonFlags {
    bool json = false;
};

// Prints a failure the way every subcommand does and returns the exit code.
using msa::app::reportFailure;

int runDoctor(bool json, bool requireModel, bool requireGpu) {
    const msa::engine::BackendRegistry registry = msa::app::makeBackendRegistry();
    const msa::jobs::DoctorReport report = msa::jobs::runDoctor(registry);
    if (json) {
        nlohmann::json j = msa::jobs::toJson(report);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
    } else {
        std::cout << msa::jobs::toText(report);
    }
    if (requireModel && !(report.demoModel.present && report.demoModel.looksValid)) {
        const msa::ErrorCode code = report.demoModel.present ? msa::ErrorCode::Corrupt : msa::ErrorCode::NotFound;
        std::fprintf(stderr, "msa doctor: %s: demo model %s\n", std::string(msa::errorCodeName(code)).c_str(),
                     report.demoModel.problem.c_str());
        return msa::exitCodeFor(code);
    }
    if (requireGpu) {
        const msa::engine::BackendInfo* cuda = registry.find("cuda");
        if (!cuda || !cuda->usable) {
            std::fprintf(stderr, "msa doctor: device_error: no usable GPU: %s\n",
                         cuda ? cuda->reason.c_str() : "no CUDA backend registered");
            return msa::exitCodeFor(msa::ErrorCode::DeviceError);
        }
    }
    return 0;
}

// `msa info --model PATH`: what a model is, from its files alone (no weights are read beyond the
// headers, so it is instant even for large models).
int runInfo(const std::string& modelPath, bool json) {
    using namespace msa::model;
    if (modelPath.empty()) return reportFailure("info", msa::invalidArgument("--model PATH is required"), json);
    msa::Result<std::unique_ptr<ModelFiles>> opened = ModelFiles::open(modelPath);
    if (!opened) return reportFailure("info", opened.status(), json);
    const ModelFiles& m = **opened;
    const ModelConfig& c = m.config();
    const auto totals = m.totalsByDtype();
    if (json) {
        nlohmann::json j = {{"ok", true},
                            {"path", m.path().string()},
                            {"format", m.format() == ModelFormat::Gguf ? "gguf" : "huggingface"},
                            {"config", c.toJson()},
                            {"tensor_count", m.tensors().all().size()},
                            {"tensor_bytes", m.totalBytes()},
                            {"fingerprint", m.fingerprint().hex()},
                            {"routing_mode", std::string(routingModeName(m.routingMode()))},
                            {"router_layers", m.routerLayers()},
                            {"simd_kernels", simdKernelsActive() ? "avx2" : "scalar"}};
        nlohmann::json d = nlohmann::json::object();
        for (const auto& [name, t] : totals)
            d[name] = {{"tensors", t.nTensors}, {"bytes", t.nBytes}, {"elements", t.nElements}};
        j["dtypes"] = std::move(d);
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("model            %s (%s)\n", m.path().string().c_str(),
                m.format() == ModelFormat::Gguf ? "GGUF" : "Hugging Face safetensors");
    std::printf("architecture     %s (model_type %s)\n", std::string(architectureName(c.arch)).c_str(),
                c.modelType.c_str());
    std::printf("layers           %d\n", c.nLayers);
    std::printf("heads            %d query, %d key/value, head dim %d\n", c.nHeads, c.nKvHeads, c.headDim);
    std::printf("hidden size      %d\n", c.hiddenSize);
    std::printf("FFN size         %d\n", c.ffnSize);
    std::printf("vocabulary       %d\n", c.vocabSize);
    std::printf("context length   %" PRId64 "\n", c.contextLength);
    std::printf("rope theta       %g (%s)\n", c.ropeTheta, std::string(ropeStyleName(c.ropeStyle)).c_str());
    std::printf("rms norm eps     %g\n", static_cast<double>(c.rmsNormEps));
    std::printf("embeddings       %s\n", c.tieWordEmbeddings ? "tied (output = token_embd)" : "separate output");
    std::printf("tensors          %zu, %.1f MiB\n", m.tensors().all().size(),
                static_cast<double>(m.totalBytes()) / (1024.0 * 1024.0));
    for (const auto& [name, t] : totals)
        std::printf("  %-6s         %" PRIu64 " tensors, %.1f MiB\n", name.c_str(), t.nTensors,
                    static_cast<double>(t.nBytes) / (1024.0 * 1024.0));
    std::printf("routing          %s", std::string(routingModeName(m.routingMode())).c_str());
    if (!m.routerLayers().empty())
        std::printf(" (router tensors in %zu layers, %d..%d)", m.routerLayers().size(), m.routerLayers().front(),
                    m.routerLayers().back());
    std::printf("\n");
    if (c.msa)
        std::printf("msa_config       router layers '%s', doc_top_k %d, aux_loss_method %s\n",
                    c.msa->routerLayerSpec.c_str(), c.msa->docTopK, c.msa->auxLossMethod.c_str());
    std::printf("fingerprint      %s\n", m.fingerprint().hex().c_str());
    return 0;
}

struct TokenizeArgs {
    std::string tokenizerPath;
    std::string modelPath;
    std::string text;
    bool noSpecial = false;
    bool addBos = false;
    bool json = false;
};

// `msa tokenize`: ids of TEXT under a tokenizer.json (directly, or <folder>/tokenizer.json of a
// Hugging Face model folder). GGUF models need the GGUF reader, which arrives with the model runtime.
int runTokenize(const TokenizeArgs& a) {
    std::string path = a.tokenizerPath;
    msa::Result<msa::model::Tokenizer> tok = msa::unimplemented("no tokenizer");
    if (path.empty()) {
        if (a.modelPath.empty())
            return reportFailure("tokenize", msa::invalidArgument("give --tokenizer FILE or --model PATH"), a.json);
        // A model (GGUF file or Hugging Face folder): its own tokenizer, however it is stored.
        auto files = msa::model::ModelFiles::open(a.modelPath);
        if (!files) return reportFailure("tokenize", files.status(), a.json);
        tok = msa::model::loadTokenizer(**files);
        path = a.modelPath;
    } else {
        tok = msa::model::Tokenizer::fromJsonFile(path);
    }
    if (!tok) return reportFailure("tokenize", tok.status().withContext("loading tokenizer"), a.json);
    msa::model::EncodeOptions opts;
    opts.matchSpecial = !a.noSpecial;
    opts.addBos = a.addBos;
    const std::vector<msa::model::TokenId> ids = tok->encode(a.text, opts);
    if (a.json) {
        nlohmann::json tokens = nlohmann::json::array();
        nlohmann::json pieces = nlohmann::json::array();
        for (msa::model::TokenId id : ids) {
            tokens.push_back(tok->tokenText(id));
            // Raw bytes may be a partial UTF-8 character: shown with U+FFFD, as HF's decode would.
            pieces.push_back(msa::model::sanitizeUtf8(tok->tokenBytes(id)));
        }
        nlohmann::json j = {{"ok", true}, {"tokenizer", path}, {"n_tokens", ids.size()},
                            {"ids", ids}, {"tokens", tokens}, {"pieces", pieces}};
        std::cout << j.dump(2) << std::endl;
    } else {
        std::string line;
        for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
        std::cout << line << std::endl;
    }
    return 0;
}

// A subcommand whose implementation arrives with a later issue: it is listed so that `msa --help`
// shows the whole surface, accepts its documented options, and fails with a specific code.
struct PlannedCommand {
    const char* name;
    const char* description;
    const char* arrivesWith;
    std::vector<std::pair<const char*, const char*>> options;   // "--name,-n" + description
    const char* positional;                                      // nullptr when none
};

// ---- catalog: import / search / catalog ---------------------------------------------------------

std::string jsonText(const nlohmann::json& j) {
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);   // paths may not be UTF-8
}

std::string humanBytes(double b) { return msa::formatBytes(b); }
std::string humanDuration(double s) { return msa::formatDuration(s); }

std::string dayOf(std::optional<int64_t> t) {
    if (!t) return "";
    return msa::catalog::formatDay(*t);
}

struct ImportOptions {
    std::string catalog;
    std::string collection = "default";
    std::vector<std::string> paths;
    std::string reportFile;
    int threads = 2;
    double maxFileMb = 256;
    int tokenBudget = 2048;
    bool json = false;
    bool quiet = false;
};

int runImport(const ImportOptions& o) {
    msa::Result<msa::catalog::Catalog> cat = msa::catalog::Catalog::open(o.catalog);
    if (!cat) return reportFailure("import", cat.status(), o.json);
    msa::catalog::ImportRequest req;
    req.collection = o.collection;
    for (const std::string& p : o.paths) req.paths.emplace_back(p);
    req.nThreads = o.threads;
    req.limits.maxFileBytes = static_cast<uint64_t>(o.maxFileMb * 1024 * 1024);
    req.limits.tokenBudget = o.tokenBudget;

    msa::CancelToken cancel;
    std::optional<msa::app::CancelOnSignal> signals(std::in_place, cancel);
    const bool tty = isatty(STDERR_FILENO) != 0;
    auto lastLine = std::chrono::steady_clock::now() - std::chrono::hours(1);
    auto onProgress = [&](const msa::Progress& p, uint64_t nDocs) {
        if (o.quiet) return;
        const auto now = std::chrono::steady_clock::now();
        // On a terminal: one line rewritten in place; in a log: a line every 2 s and at the end.
        if (!tty && !p.finished && now - lastLine < std::chrono::seconds(2)) return;
        lastLine = now;
        std::fprintf(stderr, "%simport: %llu/%llu files, %s/%s, %llu docs, %.0f files/s, %s/s, ETA %s%s",
                     tty ? "\r\x1b[2K" : "", static_cast<unsigned long long>(p.done),
                     static_cast<unsigned long long>(p.total), humanBytes(static_cast<double>(p.bytesDone)).c_str(),
                     humanBytes(static_cast<double>(p.bytesTotal)).c_str(), static_cast<unsigned long long>(nDocs),
                     p.unitsPerSecond, humanBytes(p.bytesPerSecond).c_str(), humanDuration(p.etaSeconds).c_str(),
                     tty && !p.finished ? "" : "\n");
        std::fflush(stderr);
    };
    msa::Result<msa::catalog::ImportReport> rep = msa::catalog::importPaths(*cat, req, onProgress, &cancel);
    signals.reset();
    if (!rep) return reportFailure("import", rep.status(), o.json);
    const msa::catalog::ImportReport& r = *rep;
    nlohmann::json j = msa::catalog::toJson(r);
    j["ok"] = !r.cancelled;
    j["catalog"] = o.catalog;
    if (!o.reportFile.empty()) {
        std::ofstream f(o.reportFile);
        f << jsonText(j) << "\n";
        if (!f) std::fprintf(stderr, "msa import: io_error: cannot write report '%s'\n", o.reportFile.c_str());
    }
    if (o.json) {
        std::cout << jsonText(j) << std::endl;
    } else {
        std::printf("%s collection '%s' of %s in %.1f s (run %lld)\n", r.cancelled ? "Cancelled import into" : "Imported into",
                    r.collection.c_str(), o.catalog.c_str(), r.seconds, static_cast<long long>(r.runId));
        std::printf("  files: %llu seen, %llu new, %llu updated, %llu unchanged, %llu skipped, %llu failed, %llu deleted\n",
                    static_cast<unsigned long long>(r.nSeen), static_cast<unsigned long long>(r.nImported),
                    static_cast<unsigned long long>(r.nUpdated),
                    static_cast<unsigned long long>(r.nUnchanged + r.nTouched),
                    static_cast<unsigned long long>(r.nSkipped), static_cast<unsigned long long>(r.nFailed),
                    static_cast<unsigned long long>(r.nDeleted));
        std::printf("  documents: %llu (%llu new content), memory documents: %llu; %s read; %.0f files/s, %s/s\n",
                    static_cast<unsigned long long>(r.nDocuments), static_cast<unsigned long long>(r.nNewDocuments),
                    static_cast<unsigned long long>(r.nMemoryDocuments), humanBytes(static_cast<double>(r.nBytes)).c_str(),
                    r.seconds > 0 ? static_cast<double>(r.nSeen) / r.seconds : 0.0,
                    humanBytes(r.seconds > 0 ? static_cast<double>(r.nBytesSeen) / r.seconds : 0.0).c_str());
        for (const msa::catalog::FileReport& f : r.files) {
            std::printf("  %-8s %s%s%s%s\n", f.outcome.c_str(), f.path.c_str(), f.reason.empty() ? "" : ": ",
                        f.errorCode.empty() ? "" : (f.errorCode + ": ").c_str(), f.reason.c_str());
        }
        if (r.cancelled) std::printf("  cancelled: run the same command again to resume\n");
    }
    if (r.cancelled) return msa::exitCodeFor(msa::ErrorCode::Cancelled);
    const uint64_t nGood = r.nImported + r.nUpdated + r.nUnchanged + r.nTouched;
    if (nGood == 0 && (r.nFailed + r.nSkipped) > 0) {
        std::fprintf(stderr, "msa import: nothing could be imported (%llu failed, %llu skipped)\n",
                     static_cast<unsigned long long>(r.nFailed), static_cast<unsigned long long>(r.nSkipped));
        msa::ErrorCode code = msa::ErrorCode::Unsupported;
        for (const auto& f : r.files)
            if (f.outcome == "failed" && f.errorCode == "not_found") code = msa::ErrorCode::NotFound;
        return msa::exitCodeFor(code);
    }
    return 0;
}

struct SearchOptions {
    std::string catalog, query, collection, type, from, to, participant;
    int limit = 20;
    bool json = false;
};

msa::Result<int64_t> parseDayOption(const std::string& text, const char* option, bool endOfDay) {
    std::optional<int64_t> t = msa::catalog::parseDate(text);
    if (!t) return msa::invalidArgument(std::string(option) + " '" + text + "' is not a date (YYYY-MM-DD)");
    // A bare date in --to includes that whole day.
    if (endOfDay && text.size() == 10) *t += 86400;
    return *t;
}

int runSearch(const SearchOptions& o) {
    msa::catalog::SearchQuery q;
    q.match = o.query;
    q.limit = o.limit;
    if (!o.collection.empty()) q.collection = o.collection;
    if (!o.type.empty()) q.kind = o.type;
    if (!o.participant.empty()) q.participant = o.participant;
    if (!o.from.empty()) {
        auto t = parseDayOption(o.from, "--from", false);
        if (!t) return reportFailure("search", t.status(), o.json);
        q.fromUnix = *t;
    }
    if (!o.to.empty()) {
        auto t = parseDayOption(o.to, "--to", true);
        if (!t) return reportFailure("search", t.status(), o.json);
        q.toUnix = *t;
    }
    const bool color = !o.json && isatty(STDOUT_FILENO) != 0;
    if (color) {
        q.highlightOpen = "\x1b[1;33m";
        q.highlightClose = "\x1b[0m";
    }
    msa::Result<msa::catalog::Catalog> cat = msa::catalog::Catalog::open(o.catalog, {.readOnly = true, .create = false});
    if (!cat) return reportFailure("search", cat.status(), o.json);
    auto hits = cat->search(q);
    if (!hits) return reportFailure("search", hits.status(), o.json);
    if (o.json) {
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& h : *hits) {
            nlohmann::json j = {{"document_id", h.documentId}, {"kind", h.kind}, {"title", h.title},
                                {"author", h.author}, {"participants", h.participants}, {"snippet", h.snippet},
                                {"score", h.score}, {"path", h.path}, {"locator", h.locator},
                                {"memory_document_ids", h.memoryDocumentIds}};
            j["date"] = h.dateUnix ? nlohmann::json(dayOf(h.dateUnix)) : nlohmann::json();
            arr.push_back(std::move(j));
        }
        std::cout << jsonText({{"ok", true}, {"query", o.query}, {"hits", arr}}) << std::endl;
        return 0;
    }
    int i = 0;
    for (const auto& h : *hits) {
        std::string snippet = h.snippet;
        for (char& c : snippet)
            if (c == '\n') c = ' ';
        std::printf("%d. [%s] %s%s%s  (score %.2f, document %lld)\n   %s%s%s\n   %s\n", ++i, h.kind.c_str(),
                    h.title.c_str(), h.dateUnix ? "  " : "", dayOf(h.dateUnix).c_str(), h.score,
                    static_cast<long long>(h.documentId), h.path.c_str(), h.locator.empty() ? "" : " : ",
                    h.locator.c_str(), snippet.c_str());
    }
    if (hits->empty()) std::printf("no matches\n");
    return 0;
}

struct CatalogOptions {
    std::string catalog, collection, action;
    int64_t documentId = 0;
    int limit = 50;
    bool json = false;
};

int runCatalog(const CatalogOptions& o) {
    msa::Result<msa::catalog::Catalog> cat = msa::catalog::Catalog::open(o.catalog, {.readOnly = true, .create = false});
    if (!cat) return reportFailure("catalog", cat.status(), o.json);
    const std::optional<std::string> coll = o.collection.empty() ? std::nullopt : std::optional<std::string>(o.collection);
    if (o.action == "stats") {
        auto st = cat->stats();
        if (!st) return reportFailure("catalog", st.status(), o.json);
        nlohmann::json kinds = nlohmann::json::object();
        for (const auto& [k, n] : st->documentsByKind) kinds[k] = n;
        nlohmann::json j = {{"ok", true}, {"schema_version", st->schemaVersion}, {"collections", st->nCollections},
                            {"source_files", st->nSourceFiles}, {"imported", st->nImported},
                            {"skipped", st->nSkipped}, {"failed", st->nFailed}, {"deleted", st->nDeleted},
                            {"documents", st->nDocuments}, {"memory_documents", st->nMemoryDocuments},
                            {"text_bytes", st->nTextBytes}, {"token_estimate", st->nTokenEstimate},
                            {"import_runs", st->nImportRuns}, {"documents_by_kind", kinds},
                            {"file_bytes", st->fileBytes}};
        if (o.json) {
            std::cout << jsonText(j) << std::endl;
        } else {
            std::printf("catalog %s (schema %d, %s on disk)\n", o.catalog.c_str(), st->schemaVersion,
                        humanBytes(static_cast<double>(st->fileBytes)).c_str());
            std::printf("  collections %lld, import runs %lld\n", static_cast<long long>(st->nCollections),
                        static_cast<long long>(st->nImportRuns));
            std::printf("  files %lld: imported %lld, skipped %lld, failed %lld, deleted %lld\n",
                        static_cast<long long>(st->nSourceFiles), static_cast<long long>(st->nImported),
                        static_cast<long long>(st->nSkipped), static_cast<long long>(st->nFailed),
                        static_cast<long long>(st->nDeleted));
            std::printf("  documents %lld (%s of text), memory documents %lld (~%lld tokens)\n",
                        static_cast<long long>(st->nDocuments), humanBytes(static_cast<double>(st->nTextBytes)).c_str(),
                        static_cast<long long>(st->nMemoryDocuments), static_cast<long long>(st->nTokenEstimate));
            for (const auto& [k, n] : st->documentsByKind) std::printf("    %-10s %lld\n", k.c_str(), static_cast<long long>(n));
        }
        return 0;
    }
    if (o.action == "collections") {
        auto cs = cat->collections();
        if (!cs) return reportFailure("catalog", cs.status(), o.json);
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& c : *cs) {
            arr.push_back({{"id", c.id}, {"name", c.name}, {"roots", c.roots}, {"files", c.nFiles},
                           {"documents", c.nDocuments}});
            if (!o.json)
                std::printf("%-20s %6lld files %7lld documents  %s\n", c.name.c_str(), static_cast<long long>(c.nFiles),
                            static_cast<long long>(c.nDocuments), nlohmann::json(c.roots).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
        if (o.json) std::cout << jsonText({{"ok", true}, {"collections", arr}}) << std::endl;
        return 0;
    }
    if (o.action == "docs") {
        auto ds = cat->listDocuments(coll, o.limit, 0);
        if (!ds) return reportFailure("catalog", ds.status(), o.json);
        nlohmann::json arr = nlohmann::json::array();
        for (const auto& d : *ds) {
            arr.push_back({{"id", d.id}, {"kind", d.kind}, {"title", d.title}, {"date", dayOf(d.dateUnix)},
                           {"memory_documents", d.segments.size()}});
            if (!o.json)
                std::printf("%6lld  %-9s %-10s %3zu seg  %s\n", static_cast<long long>(d.id), d.kind.c_str(),
                            dayOf(d.dateUnix).c_str(), d.segments.size(), d.title.c_str());
        }
        if (o.json) std::cout << jsonText({{"ok", true}, {"documents", arr}}) << std::endl;
        return 0;
    }
    if (o.action == "show") {
        auto d = cat->document(o.documentId);
        if (!d) return reportFailure("catalog", d.status(), o.json);
        nlohmann::json segs = nlohmann::json::array();
        for (const auto& s : d->segments)
            segs.push_back({{"id", s.id}, {"index", s.segmentIndex}, {"kind", s.segmentKind},
                            {"span", {s.spanStart, s.spanEnd}}, {"label", s.label},
                            {"token_estimate", s.tokenEstimate}});
        nlohmann::json sources = nlohmann::json::array();
        for (const auto& [p, l] : d->sources) sources.push_back({{"path", p}, {"locator", l}});
        if (o.json) {
            std::cout << jsonText({{"ok", true}, {"id", d->id}, {"kind", d->kind}, {"title", d->title},
                                   {"author", d->author}, {"participants", d->participants},
                                   {"date", dayOf(d->dateUnix)}, {"content_hash", d->contentHash},
                                   {"metadata", nlohmann::json::parse(d->metadataJson, nullptr, false)},
                                   {"sources", sources}, {"memory_documents", segs}, {"text", d->text}})
                      << std::endl;
        } else {
            std::printf("document %lld [%s] %s\n", static_cast<long long>(d->id), d->kind.c_str(), d->title.c_str());
            if (!d->author.empty()) std::printf("  author: %s\n", d->author.c_str());
            if (d->dateUnix) std::printf("  date: %s\n", dayOf(d->dateUnix).c_str());
            for (const auto& [p, l] : d->sources) std::printf("  source: %s%s%s\n", p.c_str(), l.empty() ? "" : " : ", l.c_str());
            for (const auto& s : d->segments)
                std::printf("  memory document %lld: #%d %s bytes [%lld, %lld) ~%lld tokens %s\n",
                            static_cast<long long>(s.id), s.segmentIndex, s.segmentKind.c_str(),
                            static_cast<long long>(s.spanStart), static_cast<long long>(s.spanEnd),
                            static_cast<long long>(s.tokenEstimate), s.label.c_str());
            std::printf("\n%s\n", d->text.c_str());
        }
        return 0;
    }
    return reportFailure("catalog", msa::invalidArgument("unknown action '" + o.action +
                                                         "' (stats, collections, docs, show)"), o.json);
}

struct BankOptions {
    std::string action, bank;
    std::vector<std::string> args;   // export: BANK FILE; import: FILE; info/verify/compact: [BANK]
    msa::app::BankFileArgs file;     // export/import options
    std::string model;               // verify --model: also check the fingerprint
    bool json = false;
};

nlohmann::json bankSummaryJson(const msa::memory::Bank& b) {
    const msa::memory::BankParams& p = b.params();
    const double perToken = b.nTokens() ? static_cast<double>(b.diskBytes()) / static_cast<double>(b.nTokens()) : 0.0;
    return {{"path", b.path().string()}, {"format_version", msa::memory::kBankFormatVersion},
            {"generation", b.generation()}, {"model_fingerprint", p.modelFingerprint},
            {"tokenizer_hash", p.tokenizerHash}, {"chunk_size", p.chunkSize}, {"top_k", p.topK},
            {"routing_layers", p.routingLayers}, {"layers", p.nLayers}, {"kv_heads", p.nKvHeads},
            {"routing_heads", p.nRouteHeads}, {"head_dim", p.headDim},
            {"storage_dtype", std::string(msa::model::dtypeName(p.storage))},
            {"scoring", std::string(msa::memory::scoringBranchName(p.scoring))}, {"keys_shared", p.keysShared},
            {"template_tokens", p.nTemplateTokens}, {"documents", b.nDocuments()}, {"chunks", b.nChunks()},
            {"tokens", b.nTokens()}, {"tombstones", b.nTombstones()}, {"chunks_total", b.nChunksTotal()},
            {"shards", b.nShards()}, {"disk_bytes", b.diskBytes()}, {"bytes_per_token", perToken}};
}

// msa bank info|verify|compact --bank PATH: inspect, check every checksum, rewrite without tombstones.
int runBank(BankOptions o) {
    const std::string cmd = "bank " + o.action;
    if (o.action == "export" || o.action == "import") {
        msa::app::BankFileArgs f = o.file;
        f.json = o.json;
        f.model = o.model;
        if (o.action == "export") {
            if (o.args.size() == 1 && !o.bank.empty()) o.args.insert(o.args.begin(), o.bank);
            if (o.args.size() != 2) return reportFailure(cmd, msa::invalidArgument("usage: msa bank export BANK FILE [--zstd] [--catalog DB]"), o.json);
            f.bank = o.args[0];
            f.file = o.args[1];
            return msa::app::runBankExport(f);
        }
        if (o.args.size() != 1) return reportFailure(cmd, msa::invalidArgument("usage: msa bank import FILE [--bank DIR] [--catalog DB] [--model M] [--force]"), o.json);
        f.file = o.args[0];
        f.bank = o.bank;
        return msa::app::runBankImport(f);
    }
    if (o.bank.empty() && o.args.size() == 1) o.bank = o.args[0];
    if (o.bank.empty() || o.args.size() > 1)
        return reportFailure(cmd, msa::invalidArgument("give the bank folder: msa bank " + o.action + " --bank PATH"), o.json);
    if (o.action == "compact") {
        auto w = msa::memory::BankWriter::open(o.bank);
        if (!w) return reportFailure(cmd, w.status(), o.json);
        auto rep = w->compact();
        if (!rep) return reportFailure(cmd, rep.status(), o.json);
        if (o.json) {
            std::cout << jsonText({{"ok", true}, {"documents", rep->nDocuments}, {"removed", rep->nRemoved},
                                   {"bytes_before", rep->bytesBefore}, {"bytes_after", rep->bytesAfter}})
                      << std::endl;
        } else {
            std::printf("compacted %s: %llu documents kept, %llu tombstones removed, %s -> %s\n", o.bank.c_str(),
                        static_cast<unsigned long long>(rep->nDocuments), static_cast<unsigned long long>(rep->nRemoved),
                        humanBytes(static_cast<double>(rep->bytesBefore)).c_str(),
                        humanBytes(static_cast<double>(rep->bytesAfter)).c_str());
        }
        return 0;
    }
    msa::memory::OpenOptions openOptions;
    if (!o.model.empty()) {
        auto fp = msa::jobs::modelFingerprintOf(o.model);
        if (!fp) return reportFailure(cmd, fp.status().withContext("reading the model given with --model"), o.json);
        openOptions.expectFingerprint = *fp;
    }
    auto b = msa::memory::Bank::open(o.bank, openOptions);
    if (!b) return reportFailure(cmd, b.status(), o.json);
    if (o.action == "verify") {
        const auto t0 = std::chrono::steady_clock::now();
        auto rep = b->verify();
        if (!rep) return reportFailure(cmd, rep.status(), o.json);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (o.json) {
            std::cout << jsonText({{"ok", true}, {"shards", rep->nShards}, {"sections", rep->nSections},
                                   {"bytes", rep->nBytes}, {"orphan_files", rep->nOrphanFiles}, {"seconds", secs}})
                      << std::endl;
        } else {
            std::printf("bank %s: OK, %llu sections in %llu shards + template, %s checked in %.2f s", o.bank.c_str(),
                        static_cast<unsigned long long>(rep->nSections), static_cast<unsigned long long>(rep->nShards),
                        humanBytes(static_cast<double>(rep->nBytes)).c_str(), secs);
            if (rep->nOrphanFiles)
                std::printf(" (%llu uncommitted file(s) from an interrupted write are ignored)",
                            static_cast<unsigned long long>(rep->nOrphanFiles));
            std::printf("\n");
        }
        return 0;
    }
    nlohmann::json j = bankSummaryJson(*b);
    if (o.json) {
        j["ok"] = true;
        std::cout << jsonText(j) << std::endl;
        return 0;
    }
    const msa::memory::BankParams& p = b->params();
    std::printf("memory bank %s (format %u, generation %llu)\n", o.bank.c_str(), msa::memory::kBankFormatVersion,
                static_cast<unsigned long long>(b->generation()));
    std::printf("  model %s, tokenizer %s\n", p.modelFingerprint.c_str(), p.tokenizerHash.c_str());
    std::printf("  P=%u, top-k=%u, %zu routing layers of %u, %u KV heads, %u routing heads, head dim %u, %s, scoring %s%s\n",
                p.chunkSize, p.topK, p.routingLayers.size(), p.nLayers, p.nKvHeads, p.nRouteHeads, p.headDim,
                std::string(msa::model::dtypeName(p.storage)).c_str(),
                std::string(msa::memory::scoringBranchName(p.scoring)).c_str(),
                p.keysShared ? ", routing keys = attention keys (training-free)" : "");
    std::printf("  %llu documents, %llu chunks, %llu tokens; %llu tombstones\n",
                static_cast<unsigned long long>(b->nDocuments()), static_cast<unsigned long long>(b->nChunks()),
                static_cast<unsigned long long>(b->nTokens()), static_cast<unsigned long long>(b->nTombstones()));
    std::printf("  %s on disk in %zu shard(s), %.1f bytes per memory token\n",
                humanBytes(static_cast<double>(b->diskBytes())).c_str(), b->nShards(), j["bytes_per_token"].get<double>());
    return 0;
}

}  // namespace


int main(int argc, char** argv) {
    CLI::App app{"MSA Workbench command line: import personal archives, build Memory Sparse Attention "
                 "memory banks with a local model, ask and inspect routing.",
                 "msa"};
    app.set_version_flag("--version", "msa " + std::string(msa::versionString()));
    app.require_subcommand(1);
    app.fallthrough(false);
    bool verbose = false;
    app.add_flag("-v,--verbose", verbose, "Log debug messages to stderr");

    // ---- doctor --------------------------------------------------------------------------------
    CommonFlags doctorFlags;
    bool requireModel = false;
    bool requireGpu = false;
    CLI::App* doctor = app.add_subcommand(
        "doctor", "Report version, backends and devices (and why a GPU is not usable), the demo model and archive");
    doctor->add_flag("--json", doctorFlags.json, "Print the report as one JSON object");
    doctor->add_flag("--require-model", requireModel, "Fail (exit 3/5) when the demo model is absent or invalid");
    doctor->add_flag("--require-gpu", requireGpu, "Fail (exit 9) when no CUDA device is usable");

    // ---- import / search / catalog -------------------------------------------------------------
    ImportOptions importOpts;
    CLI::App* importCmd = app.add_subcommand(
        "import", "Import files and folders into a catalog collection (incremental; Ctrl-C cancels, rerun resumes)");
    importCmd->add_option("--catalog", importOpts.catalog, "Catalog database file (created when missing)")->required();
    importCmd->add_option("--collection", importOpts.collection, "Collection name")->capture_default_str();
    importCmd->add_option("--report", importOpts.reportFile, "Also write the JSON report to FILE");
    importCmd->add_option("--threads", importOpts.threads, "Extraction threads")->capture_default_str()->check(CLI::Range(1, 64));
    importCmd->add_option("--max-file-mb", importOpts.maxFileMb, "Skip files larger than this (MiB)")->capture_default_str()->check(CLI::PositiveNumber);
    importCmd->add_option("--token-budget", importOpts.tokenBudget, "Memory document size bound (tokens)")->capture_default_str()->check(CLI::Range(64, 1 << 20));
    importCmd->add_flag("--json", importOpts.json, "Print the report as JSON");
    importCmd->add_flag("--quiet,-q", importOpts.quiet, "No progress line");
    importCmd->add_option("PATH", importOpts.paths, "Files or folders")->required();

    SearchOptions searchOpts;
    CLI::App* searchCmd = app.add_subcommand("search", "Full-text search (FTS5 query syntax, BM25 ranking) in a catalog");
    searchCmd->add_option("--catalog", searchOpts.catalog, "Catalog database file")->required();
    searchCmd->add_option("--collection", searchOpts.collection, "Restrict to a collection");
    searchCmd->add_option("--type", searchOpts.type, "Document kind: text, markdown, html, pdf, docx, email, chat, code");
    searchCmd->add_option("--from", searchOpts.from, "Documents dated on or after DATE (YYYY-MM-DD)");
    searchCmd->add_option("--to", searchOpts.to, "Documents dated on or before DATE (YYYY-MM-DD)");
    searchCmd->add_option("--participant", searchOpts.participant, "Author or participant containing TEXT");
    searchCmd->add_option("--limit", searchOpts.limit, "Maximum hits")->capture_default_str()->check(CLI::Range(1, 10000));
    searchCmd->add_flag("--json", searchOpts.json, "Print hits as JSON");
    searchCmd->add_option("QUERY", searchOpts.query, "FTS5 query, e.g. 'darcy AND pemberley', '\"exact phrase\"', 'pref*'")->required();

    CatalogOptions catalogOpts;
    CLI::App* catalogCmd = app.add_subcommand("catalog", "Inspect a catalog: stats, collections, docs, show ID");
    catalogCmd->add_option("--catalog", catalogOpts.catalog, "Catalog database file")->required();
    catalogCmd->add_option("--collection", catalogOpts.collection, "Restrict 'docs' to a collection");
    catalogCmd->add_option("--limit", catalogOpts.limit, "Documents listed by 'docs'")->capture_default_str();
    catalogCmd->add_flag("--json", catalogOpts.json, "Print JSON");
    catalogCmd->add_option("ACTION", catalogOpts.action, "stats | collections | docs | show")->required()
        ->check(CLI::IsMember({"stats", "collections", "docs", "show"}));
    catalogCmd->add_option("ID", catalogOpts.documentId, "Document id for 'show'");

    // `msa collections` and `msa docs [ID]`: the short forms of `msa catalog collections|docs|show`.
    CatalogOptions collectionsOpts;
    collectionsOpts.action = "collections";
    CLI::App* collectionsCmd = app.add_subcommand("collections", "List the collections of a catalog");
    collectionsCmd->add_option("--catalog", collectionsOpts.catalog, "Catalog database file")->required();
    collectionsCmd->add_flag("--json", collectionsOpts.json, "Print JSON");
    CatalogOptions docsOpts;
    CLI::App* docsCmd = app.add_subcommand("docs", "List documents, or show document ID with its memory segments");
    docsCmd->add_option("--catalog", docsOpts.catalog, "Catalog database file")->required();
    docsCmd->add_option("--collection", docsOpts.collection, "Restrict the list to a collection");
    docsCmd->add_option("--limit", docsOpts.limit, "Documents listed")->capture_default_str();
    docsCmd->add_flag("--json", docsOpts.json, "Print JSON");
    docsCmd->add_option("ID", docsOpts.documentId, "Show this document (text, metadata, memory segments)");

    // ---- info ----------------------------------------------------------------------------------
    CommonFlags infoFlags;
    std::string infoModel;
    CLI::App* info = app.add_subcommand("info", "Print a model's architecture, sizes, dtypes, fingerprint and routing mode");
    info->add_flag("--json", infoFlags.json, "Print the description as one JSON object");
    info->add_option("--model", infoModel, "Model file (GGUF) or Hugging Face folder")->required();

    // ---- tokenize ------------------------------------------------------------------------------
    TokenizeArgs tokArgs;
    CLI::App* tokenize = app.add_subcommand("tokenize", "Print the token ids of TEXT under a model's tokenizer");
    tokenize->add_option("--tokenizer", tokArgs.tokenizerPath, "A Hugging Face tokenizer.json");
    tokenize->add_option("--model", tokArgs.modelPath,
                         "Model file (GGUF) or Hugging Face folder: uses the model's own tokenizer");
    tokenize->add_flag("--no-special", tokArgs.noSpecial, "Treat special tokens in TEXT as plain text");
    tokenize->add_flag("--bos", tokArgs.addBos, "Prepend the BOS token when the model has one");
    tokenize->add_flag("--json", tokArgs.json, "Print ids, vocabulary strings and decoded pieces as JSON");
    tokenize->add_option("TEXT", tokArgs.text, "Text to tokenize")->required();

    // ---- generate ------------------------------------------------------------------------------
    msa::app::GenerateArgs gen;
    CLI::App* generate = app.add_subcommand("generate", "Stream a model's continuation of PROMPT (or its chat answer with --chat)");
    generate->add_option("--model", gen.modelPath, "Model file (GGUF) or Hugging Face folder")->required();
    generate->add_flag("--chat", gen.chat, "Wrap PROMPT as a user turn in the model's chat template");
    generate->add_option("--max-tokens,-n", gen.maxTokens, "Tokens to generate")->capture_default_str();
    generate->add_option("--temperature,-t", gen.temperature, "0 = greedy (deterministic)")->capture_default_str();
    generate->add_option("--top-k", gen.topK, "Sample among the k most likely tokens (0 = all)")->capture_default_str();
    generate->add_option("--top-p", gen.topP, "Nucleus sampling mass")->capture_default_str();
    generate->add_option("--repeat-penalty", gen.repeatPenalty, "Repetition penalty (1 = off)")->capture_default_str();
    generate->add_option("--seed", gen.seed, "Random seed for sampling")->capture_default_str();
    generate->add_option("--threads", gen.threads, "CPU threads (0 = all cores)")->capture_default_str();
    generate->add_option("--device", gen.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all (Memory Parallel); see msa doctor")->capture_default_str();
    generate->add_flag("--json", gen.json, "Print the result and timings as one JSON object");
    generate->add_option("PROMPT", gen.prompt, "Prompt text")->required();

    // ---- bench ---------------------------------------------------------------------------------
    msa::app::BenchArgs bench;
    CLI::App* benchCmd = app.add_subcommand("bench", "Measure throughput beside the physical limit of this machine");
    benchCmd->add_option("WHAT", bench.what, "What to measure: cpu (model throughput) | import (catalog import) | memory (build, bank, routing scan, RSS, first token) | quant (fp8/int8 bank rows: top-k agreement, logits) | gpu (MSA-4B shape beside the bf16/HBM limits and a PyTorch peer)")->required();
    benchCmd->add_option("--model", bench.modelPath, "Model file (GGUF) or Hugging Face folder (cpu)");
    benchCmd->add_option("--files", bench.sizes, "import: files per generated archive, e.g. --files 2000 10000");
    benchCmd->add_option("--threads", bench.threads, "CPU threads (0 = all cores)")->capture_default_str();
    benchCmd->add_option("--prompt-tokens", bench.promptTokens, "Prefill length")->capture_default_str();
    benchCmd->add_option("--decode-tokens", bench.decodeTokens, "Decoded tokens per run")->capture_default_str();
    benchCmd->add_option("--repeats", bench.repeats, "Runs (the median is reported)")->capture_default_str();
    benchCmd->add_option("--archive", bench.archive, "memory: archive folder to build from (default: the demo archive)");
    benchCmd->add_option("--scan-mtokens", bench.scanMillions, "memory: synthetic routing-scan sizes in millions of memory tokens")->capture_default_str();
    benchCmd->add_option("--batch-tokens", bench.batchTokens, "memory: documents packed per encoder forward, in tokens")->capture_default_str();
    benchCmd->add_flag("--scan-only", bench.scanOnly, "memory: only the routing scan");
    benchCmd->add_option("--device", bench.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all "
                                                   "(Memory Parallel); default: cpu for bench cpu/memory, auto for bench gpu");
    benchCmd->add_option("--shape", bench.shape, "gpu: msa-4b (the real MSA-4B shape, random weights) or tiny (harness checks on the CPU)")
        ->check(CLI::IsMember({"msa-4b", "tiny"}))->capture_default_str();
    benchCmd->add_option("--peer", bench.peer, "gpu: the PyTorch peer: auto (python3 when torch and transformers import), "
                                               "none, or a Python interpreter")->capture_default_str();
    benchCmd->add_option("--work-dir", bench.workDir, "gpu: write (and keep) the random checkpoint in this folder");
    benchCmd->add_option("--peer-script", bench.peerScript, "gpu: the peer script (default: tests/tools/bench_peer_torch.py)");
    benchCmd->add_option("--bank-mtokens", bench.bankMillions, "gpu: routing-scan bank sizes in millions of memory tokens (default 1 10 100)");
    benchCmd->add_flag("--json", bench.json, "Print the figures as one JSON object");
    benchCmd->add_option("--bank", bench.bank, "quant: an existing bank built with --model (skips the import and build)");
    benchCmd->add_option("--questions", bench.questions, "quant: questions.json (default: the demo questions)");
    benchCmd->add_option("--greedy-tokens", bench.greedyTokens, "quant: greedy tokens compared per question")->capture_default_str();
    benchCmd->add_option("--max-questions", bench.maxQuestions, "quant: at most this many questions (0 = all)")->capture_default_str();

    // ---- bank ----------------------------------------------------------------------------------
    BankOptions bankOpts;
    CLI::App* bankCmd = app.add_subcommand("bank", "Inspect, verify, compact, export or import a memory bank: "
                                                   "info | verify | compact | export BANK FILE | import FILE");
    bankCmd->add_option("ACTION", bankOpts.action, "info | verify | compact | export | import")->required()
        ->check(CLI::IsMember({"info", "verify", "compact", "export", "import"}));
    bankCmd->add_option("ARGS", bankOpts.args, "export: BANK FILE; import: FILE; others: the bank folder (or --bank)");
    bankCmd->add_option("--bank", bankOpts.bank, "Memory bank folder (import: where to restore it; default ./<its name>)");
    bankCmd->add_option("--model", bankOpts.model, "verify/import: the model (path, or its 32-hex fingerprint) the bank "
                                                   "must have been built with (exit 7 when not)");
    bankCmd->add_option("--catalog", bankOpts.file.catalog, "export: include the memory documents' text and metadata "
                                                            "from this catalog; import: restore them into it");
    bankCmd->add_flag("--zstd", bankOpts.file.zstd, "export: compress the archive with zstd");
    bankCmd->add_flag("--force", bankOpts.file.force, "import: replace an existing bank at the target");
    bankCmd->add_flag("--quiet,-q", bankOpts.file.quiet, "export/import: no progress line");
    bankCmd->add_flag("--json", bankOpts.json, "Print JSON");

    // ---- history -------------------------------------------------------------------------------
    msa::app::HistoryArgs historyArgs;
    CLI::App* historyCmd = app.add_subcommand("history", "Stored questions and answers: list conversations, or "
                                                         "'show TURN_ID' with its routing trace");
    historyCmd->add_option("ACTION", historyArgs.action, "show")->check(CLI::IsMember({"show"}));
    historyCmd->add_option("TURN_ID", historyArgs.turnId, "The turn to show");
    historyCmd->add_option("--catalog", historyArgs.catalog, "Catalog database file")->required();
    historyCmd->add_flag("--json", historyArgs.json, "Print JSON");

    // ---- build / route -------------------------------------------------------------------------
    msa::app::BuildArgs buildArgs;
    CLI::App* buildCmd = app.add_subcommand("build", "Build or update a memory bank from a catalog collection with a model "
                                                     "(incremental; Ctrl-C cancels, rerun resumes)");
    buildCmd->add_option("--catalog", buildArgs.catalog, "Catalog database file")->required();
    buildCmd->add_option("--collection", buildArgs.collection, "Collection name")->required();
    buildCmd->add_option("--model", buildArgs.modelPath, "Model file (GGUF) or Hugging Face folder")->required();
    buildCmd->add_option("--bank", buildArgs.bank, "Memory bank folder (created when missing)")->required();
    buildCmd->add_option("--storage", buildArgs.storage, "bf16 or f32")->capture_default_str();
    buildCmd->add_option("--threads", buildArgs.threads, "CPU threads (0 = all cores)")->capture_default_str();
    buildCmd->add_option("--batch-tokens", buildArgs.batchTokens, "Documents packed per encoder forward, in tokens (0 = one document per forward)")->capture_default_str();
    buildCmd->add_option("--device", buildArgs.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all (Memory Parallel); see msa doctor")->capture_default_str();
    buildCmd->add_flag("--quiet,-q", buildArgs.quiet, "No progress line");
    buildCmd->add_flag("--json", buildArgs.json, "Print the build report as JSON");

    msa::app::RouteArgs routeArgs;
    CLI::App* routeCmd = app.add_subcommand("route", "Print the documents each routing layer selects for QUESTION");
    routeCmd->add_option("--bank", routeArgs.bank, "Memory bank folder")->required();
    routeCmd->add_option("--model", routeArgs.modelPath, "The model the bank was built with")->required();
    routeCmd->add_option("--catalog", routeArgs.catalog, "Catalog, for document titles");
    routeCmd->add_option("--top-n", routeArgs.topN, "Documents listed overall and kept per layer for inspection")->capture_default_str();
    routeCmd->add_option("--threads", routeArgs.threads, "CPU threads (0 = all cores)")->capture_default_str();
    routeCmd->add_option("--device", routeArgs.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all (Memory Parallel); see msa doctor")->capture_default_str();
    routeCmd->add_option("--key-storage", routeArgs.keyStorage, "Routing keys as scanned: native (the bank's), fp8 or int8 "
                                                                "(an 8-bit copy, ROUTING.md \"Quantized storage\")")
        ->check(CLI::IsMember({"native", "fp8", "fp8-e4m3", "int8"}))->capture_default_str();
    routeCmd->add_flag("--json", routeArgs.json, "Print the routing as JSON");
    routeCmd->add_option("QUESTION", routeArgs.question, "The question")->required();
    // Candidate filter: restrict the documents routing may select (needs --catalog).
    auto addFilter = [](CLI::App* cmd, msa::app::FilterArgs& f) {
        cmd->add_option("--collection", f.collection, "Only documents of this collection");
        cmd->add_option("--kind,--type", f.kind, "Only documents of this kind (email, chat, pdf, note, ...)");
        cmd->add_option("--since,--from", f.since, "Only documents dated on or after this day (YYYY-MM-DD)");
        cmd->add_option("--until,--to", f.until, "Only documents dated on or before this day (YYYY-MM-DD)");
        cmd->add_option("--participant", f.participant, "Only documents whose author or a participant contains this");
    };
    addFilter(routeCmd, routeArgs.filter);

    msa::app::AskArgs askArgs;
    CLI::App* askCmd = app.add_subcommand("ask", "Answer QUESTION from memory: Memory Interleave for MSA-trained models, "
                                                 "training-free routing + injection for others; prints citations and, "
                                                 "with --trace, where the sparse attention went");
    askCmd->add_option("--bank", askArgs.bank, "Memory bank folder")->required();
    askCmd->add_option("--model", askArgs.modelPath, "The model the bank was built with")->required();
    askCmd->add_option("--catalog", askArgs.catalog, "Catalog holding the documents' text")->required();
    askCmd->add_option("--docs", askArgs.nDocuments, "Documents given to the model")->capture_default_str();
    askCmd->add_option("--max-tokens,-n", askArgs.maxTokens, "Answer length limit")->capture_default_str();
    askCmd->add_option("--threads", askArgs.threads, "CPU threads (0 = all cores)")->capture_default_str();
    askCmd->add_option("--device", askArgs.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all (Memory Parallel); see msa doctor")->capture_default_str();
    askCmd->add_option("--key-storage", askArgs.keyStorage, "Routing keys as scanned: native (the bank's), fp8 or int8 "
                                                            "(an 8-bit copy, ROUTING.md \"Quantized storage\")")
        ->check(CLI::IsMember({"native", "fp8", "fp8-e4m3", "int8"}))->capture_default_str();
    askCmd->add_flag("--json", askArgs.json, "Print the answer, citations, routing and trace as JSON");
    askCmd->add_flag("--trace", askArgs.trace, "Print the routing trace: per hop and routing layer the top documents");
    askCmd->add_option("--method", askArgs.method, "auto, interleave (MSA models) or training-free")
        ->check(CLI::IsMember({"auto", "interleave", "training-free"}))->capture_default_str();
    askCmd->add_option("--injection", askArgs.injection, "Training-free: original (document text in the prompt) or "
                                                         "compressed (chunk K/V in the attention)")
        ->check(CLI::IsMember({"original", "compressed"}))->capture_default_str();
    askCmd->add_option("--hops", askArgs.hops, "Training-free, original text: routing hops (later hops route with the "
                                               "injected text)")->capture_default_str();
    askCmd->add_option("--max-rounds", askArgs.maxRounds, "Memory Interleave round cap")->capture_default_str();
    askCmd->add_flag("--reference", askArgs.reference, "Memory Interleave: reproduce the reference code's quirks "
                                                       "(non-causal injection B3, region tokenization B10)");
    askCmd->add_option("--temperature,-t", askArgs.temperature, "Training-free answers: 0 = greedy (Memory Interleave is "
                                                                "always greedy, as the reference)")->capture_default_str();
    askCmd->add_flag("--no-history", askArgs.noHistory, "Do not save the question, answer and trace in the catalog");
    addFilter(askCmd, askArgs.filter);
    askCmd->add_option("QUESTION", askArgs.question, "The question")->required();

    msa::app::EvalArgs evalArgs;
    CLI::App* evalCmd = app.add_subcommand("eval", "Routing recall beside a BM25 baseline: on FILE (MuSiQue or LoCoMo JSON: "
                                                   "one memory built from all its documents in a work folder) or on demo "
                                                   "questions over --bank/--catalog (default: the demo archive's)");
    evalCmd->add_option("--bank", evalArgs.bank, "Memory bank folder (demo questions)");
    evalCmd->add_option("--model", evalArgs.modelPath, "The model (the bank's, for demo questions)")->required();
    evalCmd->add_option("--catalog", evalArgs.catalog, "Catalog the bank was built from (demo questions)");
    evalCmd->add_option("FILE", evalArgs.file, "Evaluation file: MuSiQue, LoCoMo or demo questions JSON (detected from the content)");
    evalCmd->add_option("--limit", evalArgs.limit, "Questions evaluated (0 = all)")->capture_default_str();
    evalCmd->add_flag("--memory-of-limit", evalArgs.memoryOfLimit,
                      "Memory of only the limited questions' own documents (default: all the file's documents)");
    evalCmd->add_flag("--answers", evalArgs.answers, "Also answer each question and score exact match / F1");
    evalCmd->add_option("--answer-tokens", evalArgs.answerTokens, "Answer length limit")->capture_default_str();
    evalCmd->add_option("--docs", evalArgs.answerDocuments, "Documents given to the model per answer")->capture_default_str();
    evalCmd->add_option("--workdir", evalArgs.workdir, "Work folder for the evaluation catalog and bank "
                                                       "(default: under the user cache folder, per file)");
    evalCmd->add_option("--questions", evalArgs.questions, "questions.json (question, supporting_files)");
    evalCmd->add_option("--archive", evalArgs.archiveRoot, "Folder the supporting_files are relative to");
    evalCmd->add_option("--k", evalArgs.k, "Documents considered per question (0: 5 for demo questions, 10 for data sets)")
        ->capture_default_str();
    evalCmd->add_option("--threads", evalArgs.threads, "CPU threads (0 = all cores)")->capture_default_str();
    evalCmd->add_option("--device", evalArgs.device, "Device: auto (a usable GPU, else the CPU), cpu, cuda, cuda:N or cuda:all (Memory Parallel); see msa doctor")->capture_default_str();
    evalCmd->add_flag("--json", evalArgs.json, "Print the evaluation as JSON");

    // ---- subcommands that later issues fill ---------------------------------------------------
    const std::vector<PlannedCommand> planned = {
    };
    std::vector<CommonFlags> plannedFlags(planned.size());
    std::vector<std::vector<std::string>> plannedValues(planned.size());
    std::vector<std::vector<std::string>> plannedPositionals(planned.size());
    std::vector<CLI::App*> plannedApps;
    for (size_t i = 0; i < planned.size(); ++i) {
        const PlannedCommand& p = planned[i];
        CLI::App* sc = app.add_subcommand(p.name, p.description);
        sc->add_flag("--json", plannedFlags[i].json, "Print results as JSON");
        plannedValues[i].resize(p.options.size());
        for (size_t o = 0; o < p.options.size(); ++o)
            sc->add_option(p.options[o].first, plannedValues[i][o], p.options[o].second);
        if (p.positional) sc->add_option(p.positional, plannedPositionals[i], "")->required();
        plannedApps.push_back(sc);
    }

    // Name an unknown command instead of CLI11's generic "A subcommand is required".
    if (argc > 1 && argv[1][0] != '-') {
        bool known = false;
        for (const CLI::App* sc : app.get_subcommands([](CLI::App*) { return true; }))
            known = known || sc->get_name() == argv[1];
        if (!known) {
            std::fprintf(stderr, "msa: usage error: unknown command '%s' (run 'msa --help')\n", argv[1]);
            return 2;
        }
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // One line, with where to look; CLI11's own message names the option or subcommand.
        std::fprintf(stderr, "msa: usage error: %s (run 'msa --help')\n", e.what());
        return 2;
    }

    msa::setLogLevel(verbose ? msa::LogLevel::Debug : msa::LogLevel::Info);

    try {
        if (doctor->parsed()) return runDoctor(doctorFlags.json, requireModel, requireGpu);
        if (importCmd->parsed()) return runImport(importOpts);
        if (searchCmd->parsed()) return runSearch(searchOpts);
        if (catalogCmd->parsed()) return runCatalog(catalogOpts);
        if (collectionsCmd->parsed()) return runCatalog(collectionsOpts);
        if (docsCmd->parsed()) {
            docsOpts.action = docsOpts.documentId > 0 ? "show" : "docs";
            return runCatalog(docsOpts);
        }
        if (info->parsed()) return runInfo(infoModel, infoFlags.json);
        if (tokenize->parsed()) return runTokenize(tokArgs);
        if (generate->parsed()) return msa::app::runGenerate(gen);
        if (benchCmd->parsed()) return bench.what == "quant" ? msa::app::runBenchQuant(bench) : msa::app::runBench(bench);
        if (buildCmd->parsed()) return msa::app::runBuild(buildArgs);
        if (routeCmd->parsed()) return msa::app::runRoute(routeArgs);
        if (askCmd->parsed()) return msa::app::runAsk(askArgs);
        if (evalCmd->parsed()) return msa::app::runEval(evalArgs);
        if (bankCmd->parsed()) return runBank(bankOpts);
        if (historyCmd->parsed()) return msa::app::runHistory(historyArgs);
        for (size_t i = 0; i < planned.size(); ++i) {
            if (!plannedApps[i]->parsed()) continue;
            return reportFailure(planned[i].name,
                                 msa::unimplemented(std::string("not available in msa ") +
                                                    std::string(msa::versionString()) + " yet; it arrives with " +
                                                    planned[i].arrivesWith),
                                 plannedFlags[i].json);
        }
    } catch (const std::exception& e) {
        // Library code returns Status values; this only catches a bug or a third-party throw.
        return reportFailure("", msa::Status::fromException(e, "unexpected error"), false);
    }
    return 0;
}

#include "core/jobs/dataset_eval.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/routing_context.h"
#include "core/util/checksum.h"
#include "core/util/log.h"
#include "core/util/paths.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kCollection = "eval";

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

Result<std::string> readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) return ioError("cannot read " + quotedName(p.string()));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string fileNameFor(size_t index, const std::string& key) {
    char prefix[32];
    std::snprintf(prefix, sizeof prefix, "%05zu_", index);
    std::string name = prefix;
    for (char c : key) name += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
    return name + ".txt";
}

// Writes the documents as text files (only those whose content changed, so the import sees the
// others as unchanged) and removes files of documents no longer in the memory.
Status writeDocuments(const fs::path& dir, const EvalDataset& ds, std::map<std::string, size_t>& byFile) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return ioError("cannot create " + quotedName(dir.string()) + ": " + ec.message());
    for (size_t i = 0; i < ds.documents.size(); ++i) {
        const std::string name = fileNameFor(i, ds.documents[i].key);
        byFile[name] = i;
        const fs::path p = dir / name;
        const std::string content = ds.documents[i].content() + "\n";
        if (fs::exists(p, ec)) {
            auto old = readAll(p);
            if (old && *old == content) continue;
        }
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out << content;
        out.close();
        if (!out) return ioError("cannot write " + quotedName(p.string()));
    }
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && !byFile.count(e.path().filename().string())) fs::remove(e.path(), ec);
    return {};
}

std::vector<size_t> toDocuments(const std::vector<int64_t>& memoryIds, const std::map<int64_t, size_t>& docOf) {
    std::vector<size_t> out;
    for (int64_t id : memoryIds)
        if (auto it = docOf.find(id); it != docOf.end() && std::find(out.begin(), out.end(), it->second) == out.end())
            out.push_back(it->second);
    return out;
}

RecallSet recallSet(const std::vector<size_t>& ranking, const std::vector<size_t>& gold, size_t k) {
    return {recallAt(ranking, gold, 1), recallAt(ranking, gold, 5), recallAt(ranking, gold, k)};
}

void addTo(RecallSet& sum, const RecallSet& r) {
    sum.at1 += r.at1;
    sum.at5 += r.at5;
    sum.atK += r.atK;
}
RecallSet divided(RecallSet s, size_t n) {
    if (!n) return {};
    const double d = static_cast<double>(n);
    return {s.at1 / d, s.at5 / d, s.atK / d};
}

std::vector<std::string> keysOf(const std::vector<size_t>& docs, const EvalDataset& ds, size_t k) {
    std::vector<std::string> out;
    for (size_t d : docs) {
        if (out.size() >= k) break;
        out.push_back(ds.documents[d].key);
    }
    return out;
}

// A work folder copied or moved elsewhere still has a catalog whose collection root is the old docs
// folder: its documents would stay in the collection beside the re-imported ones (the import infers
// deletions only under the roots it walks). Such a catalog and its banks are discarded.
Status discardForeignCatalog(const fs::path& work, const fs::path& catalogPath, const fs::path& docsDir) {
    std::error_code ec;
    if (!fs::exists(catalogPath, ec)) return {};
    const std::string want = fs::absolute(docsDir, ec).lexically_normal().string();
    bool foreign = false;
    {
        auto cat = catalog::Catalog::open(catalogPath, {.readOnly = true, .create = false});
        if (!cat) {
            foreign = true;
        } else if (auto cols = cat->collections()) {
            for (const auto& c : *cols)
                for (const auto& root : c.roots)
                    if (fs::path(root).lexically_normal().string() != want) foreign = true;
        }
    }
    if (!foreign) return {};
    MSA_LOG(Warning) << "the evaluation catalog " << catalogPath.string() << " was made for another folder; starting it over";
    for (const char* suffix : {"", "-wal", "-shm", ".import-lock"}) fs::remove(catalogPath.string() + suffix, ec);
    for (const auto& e : fs::directory_iterator(work, ec))
        if (e.is_directory() && e.path().filename().string().rfind("bank-", 0) == 0) {
            fs::remove_all(e.path(), ec);
            if (ec) return ioError("cannot remove " + quotedName(e.path().string()) + ": " + ec.message());
        }
    return {};
}

}  // namespace

fs::path defaultEvalWorkdir(const fs::path& dataset, const EvalDataset* restricted) {
    std::string seed;
    if (auto bytes = readAll(dataset)) seed = xxh3_128(*bytes).hex();
    else seed = fs::absolute(dataset).lexically_normal().string();
    if (restricted) {   // named by the documents it holds: limits that keep the same memory share it
        std::string keys;
        for (const auto& d : restricted->documents) keys.append(d.key).push_back('\n');
        seed += "|docs=" + xxh3_128(keys).hex();
    } else {
        seed += "|all";
    }
    return userCacheDir() / "eval" / (dataset.stem().string() + "-" + xxh3_128(seed).hex().substr(0, 16));
}

Result<DatasetEvalReport> evaluateDataset(const DatasetEvalRequest& r) {
    const auto t0 = Clock::now();
    DatasetEvalReport out;
    out.dataset = r.dataset.string();
    out.k = std::max<size_t>(r.k, 1);
    MSA_ASSIGN_OR_RETURN(EvalDataset full, loadEvalDataset(r.dataset));
    out.nQuestionsInFile = full.questions.size();
    const EvalDataset ds = limitDataset(std::move(full), r.limit, r.memoryOfLimit);
    out.format = datasetFormatName(ds.format);
    out.nMemoryDocuments = ds.documents.size();

    const fs::path work = r.workdir.empty() ? defaultEvalWorkdir(r.dataset, r.memoryOfLimit ? &ds : nullptr) : r.workdir;
    out.workdir = work.string();
    const fs::path docsDir = work / "docs";
    const fs::path catalogPath = work / "catalog.msacat";
    const fs::path bankPath = work / ("bank-" + r.model.stem().string());
    out.catalog = catalogPath.string();
    out.bank = bankPath.string();

    // 1. The memory as files, imported into a real catalog.
    const auto tImport = Clock::now();
    std::map<std::string, size_t> byFile;
    MSA_RETURN_IF_ERROR(discardForeignCatalog(work, catalogPath, docsDir));
    MSA_RETURN_IF_ERROR(writeDocuments(docsDir, ds, byFile));
    {
        MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath));
        catalog::ImportRequest ir;
        ir.collection = kCollection;
        ir.paths = {docsDir};
        MSA_ASSIGN_OR_RETURN(catalog::ImportReport rep, catalog::importPaths(cat, ir, {}, r.cancel));
        if (rep.cancelled) return cancelled();
        if (rep.nFailed || rep.nSkipped) {
            std::string why;
            for (const auto& f : rep.files)
                if (f.outcome == "failed" || f.outcome == "skipped") {
                    why = f.path + ": " + f.reason;
                    break;
                }
            return Status(ErrorCode::Internal, std::to_string(rep.nFailed + rep.nSkipped) +
                                                   " evaluation documents were not imported (first: " + why + ")");
        }
    }
    out.importSeconds = since(tImport);

    // memory document id → evaluation document, through the source file name.
    std::map<int64_t, size_t> docOf;
    {
        MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath, {.readOnly = true, .create = false}));
        MSA_ASSIGN_OR_RETURN(std::vector<catalog::MemoryDocumentText> mds, cat.memoryDocuments(kCollection));
        std::map<int64_t, std::optional<size_t>> byCatalogDoc;
        for (const auto& m : mds) {
            auto it = byCatalogDoc.find(m.documentId);
            if (it == byCatalogDoc.end()) {
                std::optional<size_t> idx;
                MSA_ASSIGN_OR_RETURN(catalog::DocumentInfo d, cat.document(m.documentId));
                for (const auto& [path, locator] : d.sources)
                    if (auto f = byFile.find(fs::path(path).filename().string()); f != byFile.end() && fs::exists(path)) idx = f->second;
                it = byCatalogDoc.emplace(m.documentId, idx).first;
            }
            if (it->second) docOf[m.id] = *it->second;
        }
        std::set<size_t> covered;
        for (const auto& [id, d] : docOf) covered.insert(d);
        if (covered.size() != ds.documents.size())
            return Status(ErrorCode::Internal, "the catalog holds " + std::to_string(covered.size()) + " of the " +
                                                   std::to_string(ds.documents.size()) + " evaluation documents");
    }

    // 2. The bank (incremental).
    BuildOptions bo;
    bo.catalog = catalogPath;
    bo.collection = kCollection;
    bo.model = r.model;
    bo.bank = bankPath;
    bo.nThreads = r.nThreads;
    bo.device = r.device;
    bo.cancel = r.cancel;
    bo.progress = r.buildProgress;
    MSA_ASSIGN_OR_RETURN(out.build, buildMemory(bo));
    if (out.build.cancelled) return cancelled("cancelled while building the evaluation memory");
    out.routing = out.build.routing;
    if (out.build.nSkipped) {
        MSA_LOG(Warning) << out.build.nSkipped << " evaluation documents were too long to encode and are not in the bank";
    }

    // 3. Per question: routing, BM25 and (optionally) the answer.
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, r.device.create());
    RouteRequest rr;
    rr.bank = bankPath;
    rr.model = r.model;
    rr.topN = std::max<size_t>(out.k, 5);
    rr.nThreads = r.nThreads;
    rr.device = r.device;
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(rr, *backend));
    for (int l : ctx->cfg.layers) out.layers.push_back(l);
    out.topK = ctx->cfg.topK;
    MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath, {.readOnly = true, .create = false}));

    RecallSet routedSum, bm25Sum, layerMeanSum;
    std::vector<RecallSet> layerSums(out.layers.size());
    double emSum = 0, f1Sum = 0;
    for (size_t qi = 0; qi < ds.questions.size(); ++qi) {
        if (r.cancel && r.cancel->isCancelled()) {
            out.cancelled = true;
            break;
        }
        if (r.questionProgress) r.questionProgress(qi, ds.questions.size());
        const EvalItem& item = ds.questions[qi];
        DatasetEvalQuestion q;
        q.id = item.id;
        q.question = item.question;
        q.category = item.category;
        q.goldTurns = item.goldTurns;
        q.goldAnswers = item.answers;
        q.hasGoldAnswer = !item.answers.empty();
        for (size_t g : item.gold) q.gold.push_back(ds.documents[g].key);

        const auto tRoute = Clock::now();
        rr.question = item.question;
        MSA_ASSIGN_OR_RETURN(RouteReport routed, routeWith(*ctx, rr));
        std::vector<int64_t> overallIds;
        for (const auto& o : routed.overall) overallIds.push_back(o.id);
        const std::vector<size_t> overall = toDocuments(overallIds, docOf);
        q.routed = recallSet(overall, item.gold, out.k);
        q.routedTop = keysOf(overall, ds, out.k);
        for (const auto& l : routed.layers) {
            std::vector<int64_t> ids;
            for (const auto& d : l.top) ids.push_back(d.id);
            q.layers.push_back(recallSet(toDocuments(ids, docOf), item.gold, out.k));
            addTo(q.layerMean, q.layers.back());
        }
        q.layerMean = divided(q.layerMean, q.layers.size());
        q.routeSeconds = since(tRoute);

        catalog::SearchQuery sq;
        sq.match = ftsQueryFor(item.question);
        sq.collection = kCollection;
        sq.limit = static_cast<int>(std::max<size_t>(out.k, 5));
        std::vector<int64_t> bm25Ids;
        if (!sq.match.empty()) {
            MSA_ASSIGN_OR_RETURN(std::vector<catalog::SearchHit> hits, cat.search(sq));
            for (const auto& h : hits) bm25Ids.insert(bm25Ids.end(), h.memoryDocumentIds.begin(), h.memoryDocumentIds.end());
        }
        const std::vector<size_t> bm25 = toDocuments(bm25Ids, docOf);
        q.bm25 = recallSet(bm25, item.gold, out.k);
        q.bm25Top = keysOf(bm25, ds, out.k);

        if (r.answers) {
            const auto tAnswer = Clock::now();
            AskRequest a;
            a.route = rr;
            a.route.catalog = catalogPath;
            a.nDocuments = r.nAnswerDocuments;
            a.maxTokens = r.maxAnswerTokens;
            a.cancel = r.cancel;
            MSA_ASSIGN_OR_RETURN(AskReport ans, askQuestion(a));
            q.answered = true;
            q.answer = ans.answer;
            const std::string scored = stripCitations(ans.answer);
            q.exactMatch = bestExactMatch(scored, item.answers);
            q.f1 = bestF1(scored, item.answers);
            std::vector<int64_t> citedIds;
            for (long long n : citedNumbers(ans.answer)) citedIds.push_back(static_cast<int64_t>(n));
            const std::vector<size_t> cited = toDocuments(citedIds, docOf);
            for (size_t d : cited) {
                q.cited.push_back(ds.documents[d].key);
                q.nCitedGold += std::count(item.gold.begin(), item.gold.end(), d) ? 1 : 0;
            }
            q.answerSeconds = since(tAnswer);
            out.answerSeconds += q.answerSeconds;
            if (q.hasGoldAnswer) {
                emSum += q.exactMatch;
                f1Sum += q.f1;
                ++out.nAnswerScored;
            }
        }
        out.routeSeconds += q.routeSeconds;
        if (!item.gold.empty()) {
            addTo(routedSum, q.routed);
            addTo(bm25Sum, q.bm25);
            addTo(layerMeanSum, q.layerMean);
            for (size_t li = 0; li < q.layers.size() && li < layerSums.size(); ++li) addTo(layerSums[li], q.layers[li]);
            ++out.nScored;
        }
        out.questions.push_back(std::move(q));
    }
    out.routed = divided(routedSum, out.nScored);
    out.bm25 = divided(bm25Sum, out.nScored);
    out.layerMean = divided(layerMeanSum, out.nScored);
    for (const auto& s : layerSums) out.layerMeans.push_back(divided(s, out.nScored));
    if (out.nAnswerScored) {
        out.exactMatch = emSum / static_cast<double>(out.nAnswerScored);
        out.f1 = f1Sum / static_cast<double>(out.nAnswerScored);
    }
    out.seconds = since(t0);
    return out;
}

nlohmann::json toJson(const DatasetEvalReport& r) {
    using nlohmann::json;
    auto recallJson = [](const RecallSet& s, const char* prefix) {
        json j;
        j[std::string(prefix) + "recall_at_1"] = s.at1;
        j[std::string(prefix) + "recall_at_5"] = s.at5;
        j[std::string(prefix) + "recall_at_k"] = s.atK;
        return j;
    };
    auto layersJson = [&](const std::vector<RecallSet>& v) {
        json a = json::array();
        for (size_t i = 0; i < v.size() && i < r.layers.size(); ++i) {
            json j = recallJson(v[i], "");
            j["layer"] = r.layers[i];
            a.push_back(std::move(j));
        }
        return a;
    };
    json qs = json::array();
    for (const auto& q : r.questions) {
        json j = {{"id", q.id}, {"question", q.question}, {"category", q.category}, {"gold_documents", q.gold},
                  {"routed_top", q.routedTop}, {"bm25_top", q.bm25Top}, {"layers", layersJson(q.layers)},
                  {"route_seconds", q.routeSeconds}};
        if (!q.goldTurns.empty()) j["gold_turns"] = q.goldTurns;
        if (q.gold.empty()) {
            for (const char* f : {"recall_at_1", "recall_at_5", "recall_at_k", "bm25_recall_at_1", "bm25_recall_at_5", "bm25_recall_at_k"})
                j[f] = nullptr;   // no gold document: not scored
        } else {
            j.update(recallJson(q.routed, ""));
            j.update(recallJson(q.bm25, "bm25_"));
            j.update(recallJson(q.layerMean, "layer_mean_"));
        }
        j["gold_answers"] = q.goldAnswers;
        if (q.answered) {
            j["answer"] = q.answer;
            j["cited_documents"] = q.cited;
            j["cited_gold"] = q.nCitedGold;
            j["answer_seconds"] = q.answerSeconds;
            if (q.hasGoldAnswer) {
                j["exact_match"] = q.exactMatch;
                j["f1"] = q.f1;
            } else {
                j["exact_match"] = nullptr;
                j["f1"] = nullptr;
            }
        }
        qs.push_back(std::move(j));
    }
    json j = {{"dataset", r.dataset}, {"format", r.format}, {"workdir", r.workdir}, {"catalog", r.catalog}, {"bank", r.bank},
              {"routing", r.routing}, {"k", r.k}, {"top_k", r.topK}, {"memory_documents", r.nMemoryDocuments},
              {"questions_in_file", r.nQuestionsInFile}, {"questions_scored", r.nScored}, {"build", toJson(r.build)},
              {"import_seconds", r.importSeconds}, {"layers", layersJson(r.layerMeans)}, {"questions", qs},
              {"route_seconds", r.routeSeconds}, {"answer_seconds", r.answerSeconds}, {"seconds", r.seconds},
              {"cancelled", r.cancelled}};
    j.update(recallJson(r.routed, ""));
    j.update(recallJson(r.bm25, "bm25_"));
    j.update(recallJson(r.layerMean, "layer_mean_"));
    if (r.nAnswerScored) {
        j["exact_match"] = r.exactMatch;
        j["f1"] = r.f1;
        j["answers_scored"] = r.nAnswerScored;
    } else {
        j["exact_match"] = nullptr;
        j["f1"] = nullptr;
        j["answers_scored"] = 0;
    }
    return j;
}

}  // namespace msa::jobs

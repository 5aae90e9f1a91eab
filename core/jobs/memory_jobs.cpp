#include "core/jobs/memory_jobs.h"
#include "core/jobs/routing_context.h"

#include "core/catalog/catalog.h"
#include "core/engine/generator.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/bank.h"
#include "core/memory/encoder.h"
#include "core/memory/wrap.h"
#include "core/util/checksum.h"
#include "core/util/log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <chrono>
#include <map>
#include <numeric>
#include <set>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

using Clock = std::chrono::steady_clock;

bool isMsaModel(const model::ModelFiles& files) { return files.config().msa.has_value(); }

memory::DocumentWrapping wrappingFor(const ModelRuntime& rt) {
    std::string bos;
    if (rt.chatTemplate.kind() == model::ChatTemplateKind::Llama3 && rt.tokenizer->specialIds().bos)
        bos = rt.tokenizer->tokenBytes(*rt.tokenizer->specialIds().bos);
    return memory::documentWrapping(isMsaModel(*rt.files), rt.chatTemplate.kind(), bos);
}

// A memory document as the build sees it: its id, its text (the segment's byte span of the catalog
// document) and the hash the bank records to skip it next time.
struct MemoryText {
    int64_t id = 0;
    std::string text;
    std::string hash;
};

Result<std::vector<MemoryText>> memoryTexts(const catalog::Catalog& cat, const std::string& collection) {
    MSA_ASSIGN_OR_RETURN(std::vector<catalog::MemoryDocumentText> docs, cat.memoryDocuments(collection));
    std::vector<MemoryText> out;
    out.reserve(docs.size());
    for (auto& d : docs) {
        MemoryText m;
        m.id = d.id;
        m.hash = xxh3_128(d.text).hex();
        m.text = std::move(d.text);
        out.push_back(std::move(m));
    }
    return out;
}

Result<memory::TemplateHead> computeTemplateHead(engine::Session& session, std::span<const int32_t> head, size_t nLayers) {
    session.truncate(0);
    std::vector<int32_t> pos(head.size());
    std::iota(pos.begin(), pos.end(), 0);
    MSA_RETURN_IF_ERROR(session.forward(head, pos, {.computeLogits = false}).status());
    memory::TemplateHead t;
    for (size_t l = 0; l < nLayers; ++l) {
        MSA_ASSIGN_OR_RETURN(engine::LayerPrefix rows, session.exportRows(l, 0, head.size()));
        t.keys.push_back(std::move(rows.k));
        t.values.push_back(std::move(rows.v));
    }
    session.truncate(0);
    return t;
}

}  // namespace

Result<BuildReport> buildMemory(const BuildOptions& o) {
    const auto t0 = Clock::now();
    BuildReport report;
    report.bank = o.bank.string();
    MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(o.catalog, {.readOnly = true, .create = false}));
    MSA_ASSIGN_OR_RETURN(std::optional<int64_t> coll, cat.findCollection(o.collection));
    if (!coll) return notFound("no collection " + quotedName(o.collection) + " in " + quotedName(o.catalog.string()));
    MSA_ASSIGN_OR_RETURN(std::vector<MemoryText> texts, memoryTexts(cat, o.collection));
    report.nDocuments = texts.size();

    auto backend = engine::createCpuBackend();
    MSA_ASSIGN_OR_RETURN(ModelRuntime rt, openModelRuntime(o.model, *backend));
    MSA_ASSIGN_OR_RETURN(memory::RoutingConfig cfg, memory::routingConfigFor(*rt.files));
    report.routing = cfg.describe();
    const auto& mc = rt.files->config();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         rt.model->createSession({.maxTokens = o.maxDocumentTokens, .nThreads = o.nThreads}));
    const memory::DocumentWrapping wrap = wrappingFor(rt);
    const std::vector<int32_t> head = memory::templateHeadTokens(*rt.tokenizer, wrap);

    memory::BankWriter writer;
    std::error_code ec;
    if (fs::exists(o.bank / "manifest.json", ec)) {
        MSA_ASSIGN_OR_RETURN(writer, memory::BankWriter::open(o.bank));
        if (writer.params().modelFingerprint != rt.files->fingerprint().hex())
            return Status(ErrorCode::Mismatch, quotedName(o.bank.string()) + " was built with model fingerprint " +
                                                   writer.params().modelFingerprint + ", not " + rt.files->fingerprint().hex() +
                                                   "; choose another --bank or the same model");
    } else {
        memory::BankParams p;
        p.modelFingerprint = rt.files->fingerprint().hex();
        p.tokenizerHash = hex64(rt.tokenizer->contentHash());
        p.chunkSize = static_cast<uint32_t>(cfg.chunkSize);
        p.topK = static_cast<uint32_t>(cfg.topK);
        for (int l : cfg.layers) p.routingLayers.push_back(static_cast<uint32_t>(l));
        p.nLayers = static_cast<uint32_t>(mc.nLayers);
        p.nKvHeads = static_cast<uint32_t>(mc.nKvHeads);
        p.nRouteHeads = static_cast<uint32_t>(cfg.nRouteHeads);
        p.headDim = static_cast<uint32_t>(mc.headDim);
        p.storage = o.storage;
        p.scoring = cfg.cosine() ? memory::ScoringBranch::Cosine : memory::ScoringBranch::Dot;
        p.keysShared = !cfg.decoupled && !cfg.normalize;   // training-free: K̄ᴿ is K̄, stored once
        p.nTemplateTokens = static_cast<uint32_t>(head.size());
        MSA_ASSIGN_OR_RETURN(memory::TemplateHead th, computeTemplateHead(*session, head, static_cast<size_t>(mc.nLayers)));
        MSA_ASSIGN_OR_RETURN(writer, memory::BankWriter::create(o.bank, p, th));
    }
    const bool shared = writer.params().keysShared;

    // Documents gone from the collection are tombstoned.
    {
        std::set<int64_t> wanted;
        for (const auto& t : texts) wanted.insert(t.id);
        auto bank = memory::Bank::open(o.bank);
        if (bank)
            for (const auto& d : bank->documents())
                if (d.live() && !wanted.count(d.id)) {
                    MSA_RETURN_IF_ERROR(writer.remove(d.id));
                    ++report.nRemoved;
                }
    }

    ProgressMeter meter("build", texts.size(), o.progress);
    size_t sinceCommit = 0;
    for (const auto& t : texts) {
        if (o.cancel && o.cancel->isCancelled()) {
            report.cancelled = true;
            break;
        }
        if (writer.contentHash(t.id) == t.hash) {
            ++report.nUnchanged;
            meter.advance(1, 0, "document " + std::to_string(t.id));
            continue;
        }
        const std::vector<int32_t> ids = memory::wrapDocumentTokens(*rt.tokenizer, wrap, static_cast<size_t>(t.id), t.text);
        if (ids.size() > o.maxDocumentTokens) {
            report.skipped.emplace_back(t.id, std::to_string(ids.size()) + " tokens exceed the limit of " +
                                                  std::to_string(o.maxDocumentTokens));
            ++report.nSkipped;
            meter.advance(1, 0);
            continue;
        }
        auto enc = memory::encodeDocument(*session, *rt.files, cfg, ids, o.cancel);
        if (!enc) {
            if (enc.status().code() == ErrorCode::Cancelled) {
                report.cancelled = true;
                break;
            }
            return enc.status().withContext("encoding memory document " + std::to_string(t.id));
        }
        memory::DocumentInput in;
        in.id = t.id;
        in.contentHash = t.hash;
        in.nTokens = enc->nTokens;
        in.nChunks = enc->layers.empty() ? 0 : static_cast<uint32_t>(enc->layers.front().nChunks);
        for (const auto& layer : enc->layers) {
            if (!shared) in.keys.emplace_back(layer.k);
            in.values.emplace_back(layer.v);
            in.routingKeys.emplace_back(shared ? std::span<const float>(layer.k) : std::span<const float>(layer.routeKey));
        }
        MSA_RETURN_IF_ERROR(writer.replace(in).withContext("memory document " + std::to_string(t.id)));
        ++report.nEncoded;
        report.nTokens += enc->nTokens;
        meter.advance(1, enc->nTokens, "document " + std::to_string(t.id));
        if (++sinceCommit >= o.commitEvery) {
            MSA_RETURN_IF_ERROR(writer.commit());
            sinceCommit = 0;
        }
    }
    MSA_RETURN_IF_ERROR(writer.commit());
    meter.finish();
    report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report.tokensPerSecond = report.seconds > 0 ? static_cast<double>(report.nTokens) / report.seconds : 0;
    MSA_ASSIGN_OR_RETURN(memory::Bank bank, memory::Bank::open(o.bank));
    report.bankDocuments = bank.nDocuments();
    report.bankChunks = bank.nChunks();
    report.bankTokens = bank.nTokens();
    report.bankBytes = bank.diskBytes();
    return report;
}

Result<std::unique_ptr<RoutingContext>> openRouting(const RouteRequest& r, engine::Backend& backend) {
    auto ctx = std::make_unique<RoutingContext>();
    MSA_ASSIGN_OR_RETURN(ctx->rt, openModelRuntime(r.model, backend));
    MSA_ASSIGN_OR_RETURN(ctx->bank, memory::Bank::open(r.bank, {.expectFingerprint = ctx->rt.files->fingerprint().hex()}));
    MSA_ASSIGN_OR_RETURN(ctx->cfg, memory::routingConfigFor(*ctx->rt.files));
    const auto& bp = ctx->bank.params();
    ctx->cfg.topK = bp.topK;
    std::vector<int> bankLayers(bp.routingLayers.begin(), bp.routingLayers.end());
    if (bankLayers != ctx->cfg.layers)
        return Status(ErrorCode::Mismatch, "the bank's routing layers differ from the model's routing configuration");
    ctx->wrap = wrappingFor(ctx->rt);
    if (!ctx->cfg.layers.empty()) {
        for (const memory::ShardSpan& span : ctx->bank.routingKeys(0)) {
            RoutingContext::ShardTable t;
            for (const auto& d : ctx->bank.documents()) {
                if (d.firstChunk < span.firstChunk || d.firstChunk >= span.firstChunk + span.nChunks) continue;
                t.offsets.push_back(d.firstChunk - span.firstChunk + d.nChunks);
                t.ids.push_back(static_cast<uint64_t>(d.id));
                t.allowed.push_back(d.live() ? 1 : 0);
            }
            ctx->shards.push_back(std::move(t));
        }
    }
    if (r.catalog) {
        auto cat = catalog::Catalog::open(*r.catalog, {.readOnly = true, .create = false});
        if (cat) ctx->catalog = std::move(cat).value();
        else MSA_LOG(Warning) << "titles unavailable: " << cat.status().toString();
    }
    return ctx;
}

Result<RouteReport> routeWith(RoutingContext& c, memory::Router& router, const RouteRequest& r) {
    const auto t0 = Clock::now();
    const auto& bp = c.bank.params();
    RouteReport out;
    out.question = r.question;
    out.routing = c.cfg.describe();
    out.topK = c.cfg.topK;
    const memory::QueryPrompt q = memory::round1Query(*c.rt.tokenizer, c.wrap, r.question, c.cfg.topK);
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         c.rt.model->createSession({.maxTokens = q.head.size() + q.tokens.size() + 8, .nThreads = r.nThreads}));
    MSA_ASSIGN_OR_RETURN(std::vector<memory::RoutingQueries> queries,
                         memory::collectRoutingQueries(*session, *c.rt.files, c.cfg, q.head, q.tokens, q.routeMask, q.firstPosition));

    std::map<int64_t, OverallDocument> overall;
    for (size_t li = 0; li < c.cfg.layers.size(); ++li) {
        std::vector<float> scores;
        std::vector<uint64_t> ids;
        const std::vector<memory::ShardSpan> spans = c.bank.routingKeys(li);
        if (spans.size() != c.shards.size())   // every shard holds every routing layer
            return Status(ErrorCode::Internal, "routing layer " + std::to_string(li) + " has " + std::to_string(spans.size()) +
                                                   " shard spans, the document table " + std::to_string(c.shards.size()));
        for (size_t si = 0; si < spans.size(); ++si) {
            const RoutingContext::ShardTable& t = c.shards[si];
            if (t.ids.empty()) continue;
            memory::RouteKeys keys;
            keys.data = spans[si].bytes;
            keys.dtype = bp.storage;
            keys.nChunks = spans[si].nChunks;
            keys.nHeads = bp.nRouteHeads;
            keys.headDim = bp.headDim;
            keys.chunkOffsets = t.offsets;
            keys.docIds = t.ids;
            MSA_ASSIGN_OR_RETURN(std::vector<float> s, router.scoreDocuments(c.cfg, queries[li], keys, {.topK = c.cfg.topK, .allowed = t.allowed}));
            scores.insert(scores.end(), s.begin(), s.end());
            ids.insert(ids.end(), t.ids.begin(), t.ids.end());
        }
        LayerRoute lr;
        lr.layer = c.cfg.layers[li];
        const auto top = memory::selectTop(scores, ids, std::max(r.topN, c.cfg.topK));
        for (size_t i = 0; i < top.size(); ++i) {
            RoutedDocument d{static_cast<int64_t>(top[i].id), top[i].score, {}};
            lr.top.push_back(d);
            if (i < c.cfg.topK) {
                lr.selected.push_back(d);
                auto& o = overall[d.id];
                o.id = d.id;
                o.bestScore = o.votes ? std::max(o.bestScore, d.score) : d.score;
                ++o.votes;
            }
        }
        out.nCandidates = 0;
        for (float s : scores) out.nCandidates += std::isfinite(s) ? 1 : 0;
        out.layers.push_back(std::move(lr));
    }
    for (auto& [id, o] : overall) out.overall.push_back(o);
    std::sort(out.overall.begin(), out.overall.end(), [](const OverallDocument& a, const OverallDocument& b) {
        if (a.votes != b.votes) return a.votes > b.votes;
        if (a.bestScore != b.bestScore) return a.bestScore > b.bestScore;
        return a.id < b.id;
    });

    if (c.catalog) {
        std::map<int64_t, std::string> titles;
        auto titleOf = [&](int64_t memoryId) -> std::string {
            auto it = titles.find(memoryId);
            if (it != titles.end()) return it->second;
            auto m = c.catalog->memoryDocument(memoryId);
            std::string t = m ? (m->label.empty() || m->label == m->title ? m->title : m->title + " — " + m->label) : "";
            return titles[memoryId] = t;
        };
        for (auto& l : out.layers) {
            for (auto& d : l.selected) d.title = titleOf(d.id);
            for (auto& d : l.top) d.title = titleOf(d.id);
        }
        for (auto& o : out.overall) o.title = titleOf(o.id);
    }
    out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

Result<RouteReport> routeQuestion(const RouteRequest& r) {
    auto backend = engine::createCpuBackend();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(r, *backend));
    memory::Router router(r.nThreads);
    return routeWith(*ctx, router, r);
}

Result<AskReport> askQuestion(const AskRequest& a, const AnswerStream& onPiece) {
    const auto t0 = Clock::now();
    if (!a.route.catalog) return invalidArgument("answering needs the catalog that holds the documents' text (--catalog)");
    AskReport out;
    auto backend = engine::createCpuBackend();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(a.route, *backend));
    if (!ctx->catalog) return notFound("cannot open the catalog " + quotedName(a.route.catalog->string()));
    memory::Router router(a.route.nThreads);
    MSA_ASSIGN_OR_RETURN(out.routing, routeWith(*ctx, router, a.route));
    const catalog::Catalog& cat = *ctx->catalog;

    std::string documents;
    for (const auto& o : out.routing.overall) {
        if (out.used.size() >= a.nDocuments) break;
        auto m = cat.memoryDocument(o.id);
        if (!m) {
            MSA_LOG(Warning) << "memory document " << o.id << " is in the bank but not in the catalog: " << m.status().message();
            continue;
        }
        std::string text = m->text.substr(0, a.maxDocumentBytes);
        if (m->text.size() > a.maxDocumentBytes) text += " …";
        // Appended piece by piece: GCC 12 raises a false -Wrestrict on "literal" + std::string.
        documents += '[';
        documents += std::to_string(o.id);
        documents += "] ";
        documents += m->title;
        documents += '\n';
        documents += text;
        documents += "\n\n";
        out.used.push_back(o);
    }

    const ModelRuntime& rt = ctx->rt;
    const std::vector<model::ChatMessage> messages = {
        {"system", "You answer questions about the user's personal archive. Use only the numbered documents below and "
                   "cite the numbers of the documents you used, like [12]. If they do not contain the answer, say so."},
        {"user", std::string("Documents:\n\n").append(documents).append("Question: ").append(a.route.question)}};
    const std::vector<int32_t> prompt = rt.tokenizer->encode(rt.chatTemplate.apply(messages));
    out.promptTokens = prompt.size();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         rt.model->createSession({.maxTokens = prompt.size() + a.maxTokens + 8, .nThreads = a.route.nThreads}));
    engine::GenerateOptions go;
    go.maxTokens = a.maxTokens;
    go.sampler.repetitionPenalty = a.repetitionPenalty;
    go.stopStrings = chatStopStrings(rt);
    go.cancel = a.cancel;
    MSA_ASSIGN_OR_RETURN(engine::GenerateResult g,
                         engine::generate(*session, *rt.tokenizer, prompt, go, [&](std::string_view piece, int32_t) {
                             return onPiece ? onPiece(piece) : true;
                         }));
    out.answer = g.text;
    out.answerTokens = g.tokens.size();
    out.stopReason = g.stopReason;
    out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

namespace {
// Source paths of the catalog document behind a memory document.
std::vector<std::string> sourcesOf(const catalog::Catalog& cat, int64_t memoryId) {
    std::vector<std::string> out;
    auto m = cat.memoryDocument(memoryId);
    if (!m) return out;
    auto d = cat.document(m->documentId);
    if (!d) return out;
    for (const auto& [path, locator] : d->sources) out.push_back(path);
    return out;
}

// Words of a question as an FTS5 OR-query ("word" OR "word" ...), each quoted so no word is syntax.
std::string bm25Query(const std::string& question) {
    static const std::set<std::string> stop = {"the", "and", "was", "what", "which", "who", "when", "where", "did", "does",
                                               "for", "from", "that", "this", "with", "her", "his", "how", "are", "were",
                                               "she", "they", "their", "has", "have", "had", "been", "its", "into", "out"};
    std::string q, word;
    auto flush = [&] {
        if (word.size() >= 3 && !stop.count(word)) {
            if (!q.empty()) q += " OR ";
            q += '"';
            q += word;
            q += '"';
        }
        word.clear();
    };
    for (unsigned char c : question) {
        if (std::isalnum(c) || c >= 0x80) word += static_cast<char>(c >= 0x80 ? c : std::tolower(c));
        else flush();
    }
    flush();
    return q;
}
}  // namespace

Result<EvalReport> evaluateRouting(const EvalRequest& e) {
    const auto t0 = Clock::now();
    if (!e.route.catalog) return invalidArgument("evaluation needs the catalog (--catalog)");
    std::ifstream in(e.questions);
    if (!in) return notFound("cannot read " + quotedName(e.questions.string()));
    nlohmann::json qs;
    try {
        qs = nlohmann::json::parse(in);
    } catch (const std::exception& ex) {
        return corrupt(quotedName(e.questions.string()) + ": " + ex.what());
    }
    auto backend = engine::createCpuBackend();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(e.route, *backend));
    if (!ctx->catalog) return notFound("cannot open the catalog " + quotedName(e.route.catalog->string()));
    const catalog::Catalog& cat = *ctx->catalog;
    memory::Router router(e.route.nThreads);
    EvalReport out;
    out.k = e.k;
    double routedSum = 0, bm25Sum = 0;
    for (const auto& q : qs) {
        if (!q.contains("question") || !q.contains("supporting_files")) continue;
        EvalQuestion r;
        r.id = q.value("id", "");
        r.question = q["question"].get<std::string>();
        r.hops = q.value("hops", 0);
        std::set<std::string> wanted;
        for (const auto& f : q["supporting_files"]) wanted.insert((e.archiveRoot / f.get<std::string>()).lexically_normal().string());
        r.nSupporting = wanted.size();
        auto hits = [&](const std::vector<int64_t>& memoryIds) {
            std::set<std::string> found;
            for (int64_t id : memoryIds)
                for (const auto& p : sourcesOf(cat, id))
                    if (wanted.count(fs::path(p).lexically_normal().string())) found.insert(p);
            return found.size();
        };
        RouteRequest rr = e.route;
        rr.question = r.question;
        MSA_ASSIGN_OR_RETURN(RouteReport routed, routeWith(*ctx, router, rr));
        std::vector<int64_t> top;
        for (const auto& o : routed.overall)
            if (top.size() < e.k) top.push_back(o.id);
        r.routedHits = hits(top);
        catalog::SearchQuery sq;
        sq.match = bm25Query(r.question);
        sq.limit = static_cast<int>(e.k);
        std::vector<int64_t> bm25;
        if (!sq.match.empty()) {
            MSA_ASSIGN_OR_RETURN(std::vector<catalog::SearchHit> found, cat.search(sq));
            for (const auto& h : found)
                for (int64_t id : h.memoryDocumentIds)
                    if (bm25.size() < e.k) bm25.push_back(id);
        }
        r.bm25Hits = hits(bm25);
        if (r.nSupporting) {
            routedSum += static_cast<double>(r.routedHits) / static_cast<double>(r.nSupporting);
            bm25Sum += static_cast<double>(r.bm25Hits) / static_cast<double>(r.nSupporting);
        }
        out.questions.push_back(std::move(r));
    }
    if (!out.questions.empty()) {
        out.routedRecall = routedSum / static_cast<double>(out.questions.size());
        out.bm25Recall = bm25Sum / static_cast<double>(out.questions.size());
    }
    out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

nlohmann::json toJson(const EvalReport& r) {
    nlohmann::json qs = nlohmann::json::array();
    for (const auto& q : r.questions)
        qs.push_back({{"id", q.id}, {"hops", q.hops}, {"supporting", q.nSupporting}, {"routed_hits", q.routedHits},
                      {"bm25_hits", q.bm25Hits}});
    return {{"k", r.k}, {"routed_recall", r.routedRecall}, {"bm25_recall", r.bm25Recall}, {"questions", qs},
            {"seconds", r.seconds}};
}

nlohmann::json toJson(const AskReport& r) {
    nlohmann::json used = nlohmann::json::array();
    for (const auto& o : r.used) used.push_back({{"id", o.id}, {"votes", o.votes}, {"best_score", o.bestScore}, {"title", o.title}});
    return {{"answer", r.answer}, {"method", r.method}, {"documents", used}, {"routing", toJson(r.routing)},
            {"prompt_tokens", r.promptTokens}, {"answer_tokens", r.answerTokens}, {"stop_reason", r.stopReason},
            {"seconds", r.seconds}};
}

nlohmann::json toJson(const BuildReport& r) {
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& [id, why] : r.skipped) skipped.push_back({{"memory_document", id}, {"reason", why}});
    return {{"bank", r.bank}, {"routing", r.routing}, {"documents", r.nDocuments}, {"encoded", r.nEncoded},
            {"unchanged", r.nUnchanged}, {"removed", r.nRemoved}, {"skipped", r.nSkipped}, {"skipped_documents", skipped},
            {"tokens", r.nTokens}, {"seconds", r.seconds}, {"tokens_per_s", r.tokensPerSecond}, {"cancelled", r.cancelled},
            {"bank_documents", r.bankDocuments}, {"bank_chunks", r.bankChunks}, {"bank_tokens", r.bankTokens},
            {"bank_bytes", r.bankBytes}};
}

nlohmann::json toJson(const RouteReport& r) {
    auto docsJson = [](const std::vector<RoutedDocument>& v) {
        nlohmann::json a = nlohmann::json::array();
        for (const auto& d : v) a.push_back({{"id", d.id}, {"score", d.score}, {"title", d.title}});
        return a;
    };
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& l : r.layers) layers.push_back({{"layer", l.layer}, {"selected", docsJson(l.selected)}, {"top", docsJson(l.top)}});
    nlohmann::json overall = nlohmann::json::array();
    for (const auto& o : r.overall)
        overall.push_back({{"id", o.id}, {"votes", o.votes}, {"best_score", o.bestScore}, {"title", o.title}});
    return {{"question", r.question}, {"routing", r.routing}, {"top_k", r.topK}, {"candidates", r.nCandidates},
            {"layers", layers}, {"overall", overall}, {"seconds", r.seconds}};
}

}  // namespace msa::jobs

#include "core/jobs/memory_jobs.h"
#include "core/jobs/routing_context.h"

#include "core/catalog/catalog.h"
#include "core/engine/generator.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/bank.h"
#include "core/memory/encoder.h"
#include "core/memory/interleave.h"
#include "core/memory/sparse.h"
#include "core/memory/wrap.h"
#include "core/util/checksum.h"
#include "core/util/log.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <chrono>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <unordered_set>

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

    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, o.device.create());
    MSA_ASSIGN_OR_RETURN(ModelRuntime rt, openModelRuntime(o.model, *backend));
    MSA_ASSIGN_OR_RETURN(memory::RoutingConfig cfg, memory::routingConfigFor(*rt.files));
    report.routing = cfg.describe();
    const auto& mc = rt.files->config();
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         rt.model->createSession({.maxTokens = std::max(o.maxDocumentTokens, o.batchTokens), .nThreads = o.nThreads}));
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
    // Documents waiting for the next packed forward (encodeDocuments: up to batchTokens tokens).
    struct Pending {
        const MemoryText* text;
        std::vector<int32_t> ids;
    };
    std::vector<Pending> pending;
    size_t pendingTokens = 0;
    auto flush = [&]() -> Status {
        if (pending.empty()) return Status::ok();
        std::vector<std::span<const int32_t>> docs;
        for (const auto& p : pending) docs.emplace_back(p.ids);
        const auto te = Clock::now();
        auto enc = memory::encodeDocuments(*session, *rt.files, cfg, docs, o.batchTokens, o.cancel);
        report.encodeSeconds += std::chrono::duration<double>(Clock::now() - te).count();
        if (!enc) {
            if (enc.status().code() == ErrorCode::Cancelled) {
                report.cancelled = true;
                pending.clear();
                return Status::ok();
            }
            std::string which;
            for (const auto& p : pending) which += (which.empty() ? "" : ", ") + std::to_string(p.text->id);
            return enc.status().withContext("encoding memory documents " + which);
        }
        for (size_t i = 0; i < pending.size(); ++i) {
            const memory::EncodedDocument& e = (*enc)[i];
            const MemoryText& t = *pending[i].text;
            memory::DocumentInput in;
            in.id = t.id;
            in.contentHash = t.hash;
            in.nTokens = e.nTokens;
            in.nChunks = e.layers.empty() ? 0 : static_cast<uint32_t>(e.layers.front().nChunks);
            for (const auto& layer : e.layers) {
                if (!shared) in.keys.emplace_back(layer.k);
                in.values.emplace_back(layer.v);
                in.routingKeys.emplace_back(shared ? std::span<const float>(layer.k) : std::span<const float>(layer.routeKey));
            }
            MSA_RETURN_IF_ERROR(writer.replace(in).withContext("memory document " + std::to_string(t.id)));
            ++report.nEncoded;
            report.nTokens += e.nTokens;
            meter.advance(1, e.nTokens, "document " + std::to_string(t.id));
            if (++sinceCommit >= o.commitEvery) {
                MSA_RETURN_IF_ERROR(writer.commit());
                sinceCommit = 0;
            }
        }
        pending.clear();
        pendingTokens = 0;
        return Status::ok();
    };
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
        std::vector<int32_t> ids = memory::wrapDocumentTokens(*rt.tokenizer, wrap, static_cast<size_t>(t.id), t.text);
        if (ids.size() > o.maxDocumentTokens) {
            report.skipped.emplace_back(t.id, std::to_string(ids.size()) + " tokens exceed the limit of " +
                                                  std::to_string(o.maxDocumentTokens));
            ++report.nSkipped;
            meter.advance(1, 0);
            continue;
        }
        if (!pending.empty() && pendingTokens + ids.size() > o.batchTokens) {
            MSA_RETURN_IF_ERROR(flush());
            if (report.cancelled) break;
        }
        pendingTokens += ids.size();
        pending.push_back({&t, std::move(ids)});
    }
    if (!report.cancelled) MSA_RETURN_IF_ERROR(flush());
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

Result<std::vector<int64_t>> filterMemoryDocuments(const fs::path& catalogPath, const CandidateFilter& f) {
    MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath, {.readOnly = true, .create = false}));
    if (f.collection) {
        MSA_ASSIGN_OR_RETURN(std::optional<int64_t> id, cat.findCollection(*f.collection));
        if (!id) return notFound("no collection " + quotedName(*f.collection) + " in " + quotedName(catalogPath.string()));
    }
    catalog::SearchQuery q;
    q.collection = f.collection;
    q.kind = f.kind;
    q.fromUnix = f.fromUnix;
    q.toUnix = f.toUnix;
    q.participant = f.participant;
    return cat.memoryDocumentIds(q);
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
    MSA_ASSIGN_OR_RETURN(memory::MemoryIndex index, memory::MemoryIndex::create(ctx->bank, *ctx->rt.files, ctx->cfg, r.nThreads));
    ctx->index.emplace(std::move(index));
    bool scannerSet = false;
    if (backend.name() == "cuda") {
        auto scanner = memory::createRouteScanner("cuda", {.device = r.device.devices.empty() ? 0 : r.device.devices.front(),
                                                           .nThreads = r.nThreads, .keyStorage = r.keyStorage});
        if (scanner) {
            ctx->index->setScanner(std::move(scanner).value());
            scannerSet = true;
        } else {
            MSA_LOG(Warning) << "routing scan on the CPU: " << scanner.status().toString();
        }
    }
    // The index's own scanner holds native keys; 8-bit storage on the CPU needs a scanner that keeps the copy.
    if (!scannerSet && r.keyStorage != memory::KeyStorage::Native) {
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<memory::RouteScanner> scanner,
                             memory::createRouteScanner("cpu", {.nThreads = r.nThreads, .keyStorage = r.keyStorage}));
        ctx->index->setScanner(std::move(scanner));
    }
    if (r.catalog) {
        auto cat = catalog::Catalog::open(*r.catalog, {.readOnly = true, .create = false});
        if (cat) ctx->catalog = std::move(cat).value();
        else if (!r.filter.empty()) return cat.status().withContext("the candidate filter needs the catalog");
        else MSA_LOG(Warning) << "titles unavailable: " << cat.status().toString();
    }
    if (!r.filter.empty()) {
        if (!r.catalog) return invalidArgument("a candidate filter (collection, kind, dates, participant) needs --catalog");
        MSA_ASSIGN_OR_RETURN(std::vector<int64_t> ids, filterMemoryDocuments(*r.catalog, r.filter));
        ctx->candidates.emplace(ids.begin(), ids.end());
        ctx->index->setFilter(*ctx->candidates);
    }
    return ctx;
}

namespace {
RouteReport routeReportOf(RoutingContext& c, const std::vector<memory::LayerRouting>& layers, const std::string& question);
}  // namespace

// Round-1 routing without memory in the context (msa-spec §2.3): exact queries for the first routing
// layer, approximate for later ones (ROUTING.md "query side"); sparse generation routes exactly.
Result<RouteReport> routeWith(RoutingContext& c, const RouteRequest& r) {
    const auto t0 = Clock::now();
    const memory::QueryPrompt q = memory::round1Query(*c.rt.tokenizer, c.wrap, r.question, c.cfg.topK);
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         c.rt.model->createSession({.maxTokens = q.head.size() + q.tokens.size() + 8, .nThreads = r.nThreads}));
    MSA_ASSIGN_OR_RETURN(std::vector<memory::RoutingQueries> queries,
                         memory::collectRoutingQueries(*session, *c.rt.files, c.cfg, q.head, q.tokens, q.routeMask, q.firstPosition));
    std::vector<memory::LayerRouting> layers;
    for (size_t li = 0; li < queries.size(); ++li) {
        MSA_ASSIGN_OR_RETURN(memory::LayerRouting l, c.index->route(li, queries[li], std::max(r.topN, c.cfg.topK)));
        layers.push_back(std::move(l));
    }
    RouteReport out = routeReportOf(c, layers, r.question);
    out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return out;
}

Result<RouteReport> routeQuestion(const RouteRequest& r) {
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, r.device.create());
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(r, *backend));
    return routeWith(*ctx, r);
}

std::string_view answerMethodName(AnswerMethod m) {
    switch (m) {
    case AnswerMethod::Auto: return "auto";
    case AnswerMethod::Interleave: return "interleave";
    case AnswerMethod::TrainingFree: return "training-free";
    }
    return "?";
}
std::string_view injectionName(Injection i) { return i == Injection::Original ? "original" : "compressed"; }

namespace {

double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// generation_config's eos_token_id and the tokenizer's end tokens: Qwen lists <|im_end|> and
// <|endoftext|> (msa-spec §5.4 item 2).
std::vector<int32_t> eosIdsOf(const ModelRuntime& rt) {
    std::set<int32_t> ids;
    if (auto e = rt.files->config().eosTokenId) ids.insert(*e);
    const auto& sp = rt.tokenizer->specialIds();
    if (sp.eos) ids.insert(*sp.eos);
    if (sp.eot) ids.insert(*sp.eot);
    for (const char* name : {"<|im_end|>", "<|endoftext|>"})
        if (auto t = rt.tokenizer->findToken(name)) ids.insert(*t);
    return {ids.begin(), ids.end()};
}

void sortOverall(std::vector<OverallDocument>& v) {
    std::sort(v.begin(), v.end(), [](const OverallDocument& a, const OverallDocument& b) {
        if (a.votes != b.votes) return a.votes > b.votes;
        if (a.bestScore != b.bestScore) return a.bestScore > b.bestScore;
        return a.id < b.id;
    });
}

// The sparse prefill's per-layer decisions as a RouteReport (what `msa route` prints).
RouteReport routeReportOf(RoutingContext& c, const std::vector<memory::LayerRouting>& layers, const std::string& question) {
    RouteReport r;
    r.question = question;
    r.routing = c.cfg.describe();
    r.topK = c.cfg.topK;
    std::map<int64_t, OverallDocument> overall;
    for (const memory::LayerRouting& l : layers) {
        LayerRoute lr;
        lr.layer = l.layer;
        for (size_t i = 0; i < l.top.size(); ++i) {
            const int64_t id = static_cast<int64_t>(l.top[i].id);
            RoutedDocument d{id, l.top[i].score, c.titleOf(id)};
            lr.top.push_back(d);
            if (i < l.selected.size()) {
                lr.selected.push_back(d);
                OverallDocument& o = overall[id];
                o.bestScore = o.votes ? std::max(o.bestScore, d.score) : d.score;
                o.id = id;
                o.title = d.title;
                ++o.votes;
            }
        }
        r.nCandidates = l.nCandidates;
        r.layers.push_back(std::move(lr));
    }
    for (auto& [id, o] : overall) r.overall.push_back(o);
    sortOverall(r.overall);
    return r;
}

std::vector<memory::TraceLayer> traceLayersOf(const RouteReport& r) {
    std::vector<memory::TraceLayer> out;
    for (const LayerRoute& l : r.layers) {
        memory::TraceLayer t;
        t.layer = l.layer;
        for (size_t i = 0; i < l.top.size(); ++i)
            t.top.push_back({l.top[i].id, l.top[i].score, i < l.selected.size(), l.top[i].title});
        out.push_back(std::move(t));
    }
    return out;
}

// [n] citations of `text` that are among `allowed`, in order of first appearance.
std::vector<int64_t> citationsIn(std::string_view text, const std::set<int64_t>& allowed) {
    std::vector<int64_t> out;
    for (int64_t id : memory::parseIds(text))
        if (allowed.count(id) && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    return out;
}

Status askInterleave(RoutingContext& c, const AskRequest& a, const AnswerStream& onPiece, AskReport& out) {
    memory::MemoryIndex& index = *c.index;
    // Regenerate rounds re-encode the whole transcript, injected documents included.
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         c.rt.model->createSession({.maxTokens = 65536, .nThreads = a.route.nThreads}));
    memory::InterleaveOptions o;
    o.reference = a.reference;
    o.maxGenerateTokens = a.maxGenerateTokens;
    o.maxRounds = a.maxRounds;
    o.topN = std::max(a.route.topN, c.cfg.topK);
    o.eosIds = eosIdsOf(c.rt);
    o.cancel = a.cancel;
    if (onPiece) o.onText = [&](std::string_view piece, bool) { return onPiece(piece); };
    const catalog::Catalog& cat = *c.catalog;
    auto lookup = [&](int64_t id) -> std::optional<std::string> {
        if (!index.bank().findDocument(id)) return std::nullopt;   // idx_to_doc: documents in memory only
        auto m = cat.memoryDocument(id);
        if (!m) return std::nullopt;
        return std::move(m->text);
    };
    MSA_ASSIGN_OR_RETURN(memory::InterleaveResult r,
                         memory::memoryInterleave(*session, index, *c.rt.tokenizer, c.wrap, a.route.question, lookup, o));
    out.method = a.reference ? "msa-interleave (reference quirks)" : "msa-interleave";
    out.answer = r.answer;
    out.transcript = r.response;
    out.stopReason = r.stopReason;
    out.firstTokenSeconds = r.firstTokenSeconds;
    std::map<int64_t, OverallDocument> votes;
    for (size_t i = 0; i < r.rounds.size(); ++i) {
        const memory::InterleaveRound& round = r.rounds[i];
        const RouteReport rep = routeReportOf(c, round.routing, a.route.question);
        if (i == 0) out.routing = rep;
        for (const OverallDocument& d : rep.overall) {
            OverallDocument& v = votes[d.id];
            v.bestScore = v.votes ? std::max(v.bestScore, d.bestScore) : d.bestScore;
            v.votes += d.votes;
            v.id = d.id;
            v.title = d.title;
        }
        memory::TraceHop h;
        h.hop = static_cast<int>(i);
        h.layers = traceLayersOf(rep);
        std::set<int64_t> generated;
        for (int64_t id : memory::parseIds(round.generatedText)) generated.insert(id);
        h.generatedIds.assign(generated.begin(), generated.end());
        h.injected = round.injectedIds;
        h.promptTokens = round.prompt.size();
        h.generatedTokens = round.generated.size();
        h.routeSeconds = round.prefillSeconds;
        h.generateSeconds = round.decodeSeconds;
        h.text = round.generatedText;
        out.promptTokens += round.prompt.size();
        out.answerTokens += round.generated.size();
        out.trace.hops.push_back(std::move(h));
        for (int64_t id : round.injectedIds)
            if (std::find(out.trace.citations.begin(), out.trace.citations.end(), id) == out.trace.citations.end())
                out.trace.citations.push_back(id);
    }
    for (int64_t id : out.trace.citations) {
        OverallDocument d = votes.count(id) ? votes[id] : OverallDocument{id, 0, 0.0f, c.titleOf(id)};
        out.used.push_back(d);
    }
    return Status::ok();
}

Status askCompressed(RoutingContext& c, const AskRequest& a, const AnswerStream& onPiece, AskReport& out) {
    memory::MemoryIndex& index = *c.index;
    const memory::QueryPrompt q = memory::round1Query(*c.rt.tokenizer, c.wrap, a.route.question, c.cfg.topK);
    if (q.tokens.size() < 2) return invalidArgument("the question is empty");
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         c.rt.model->createSession({.maxTokens = q.tokens.size() + a.maxTokens + 16, .nThreads = a.route.nThreads}));
    // All but the last prompt token with routing; generate() feeds the last one and decodes, all
    // against the same assembled memory.
    const size_t n = q.tokens.size() - 1;
    std::vector<int32_t> pos(n);
    std::iota(pos.begin(), pos.end(), q.firstPosition);
    const auto t0 = Clock::now();
    MSA_ASSIGN_OR_RETURN(memory::SparsePrefill p,
                         memory::sparsePrefill(*session, index, std::span<const int32_t>(q.tokens).first(n), pos,
                                               std::span<const uint8_t>(q.routeMask).first(n),
                                               {.topN = std::max(a.route.topN, c.cfg.topK), .cancel = a.cancel}));
    const double routeSeconds = secondsSince(t0);
    out.routing = routeReportOf(c, p.layers, a.route.question);
    engine::GenerateOptions go;
    go.maxTokens = a.maxTokens;
    go.sampler.repetitionPenalty = a.repetitionPenalty;
    go.sampler.temperature = a.temperature;
    go.sampler.seed = a.seed;
    go.stopStrings = chatStopStrings(c.rt);
    go.cancel = a.cancel;
    go.positionOffset = q.firstPosition;
    const auto tg = Clock::now();
    std::optional<double> first;
    MSA_ASSIGN_OR_RETURN(engine::GenerateResult g,
                         engine::generate(*session, *c.rt.tokenizer, std::span<const int32_t>(q.tokens).last(1), go,
                                          [&](std::string_view piece, int32_t) {
                                              if (!first) first = secondsSince(tg) + routeSeconds;
                                              return onPiece ? onPiece(piece) : true;
                                          }));
    out.method = "training-free (compressed memory)";
    out.answer = g.text;
    out.answerTokens = g.tokens.size();
    out.promptTokens = q.tokens.size();
    out.stopReason = g.stopReason;
    out.firstTokenSeconds = first.value_or(secondsSince(t0));
    memory::TraceHop h;
    h.layers = traceLayersOf(out.routing);
    h.promptTokens = q.tokens.size();
    h.generatedTokens = g.tokens.size();
    h.routeSeconds = routeSeconds;
    h.generateSeconds = secondsSince(tg);
    h.text = g.text;
    out.trace.hops.push_back(std::move(h));
    std::set<int64_t> inContext;
    for (const auto& l : out.routing.layers)
        for (const auto& d : l.selected) inContext.insert(d.id);
    out.trace.citations = citationsIn(g.text, inContext);
    for (const OverallDocument& o : out.routing.overall) {
        if (out.used.size() >= a.nDocuments) break;
        out.used.push_back(o);
    }
    return Status::ok();
}

Status askOriginal(RoutingContext& c, const AskRequest& a, const AnswerStream& onPiece, AskReport& out) {
    const catalog::Catalog& cat = *c.catalog;
    std::set<int64_t> given;
    std::string documents, lastHopText;
    const auto t0 = Clock::now();
    for (size_t hop = 0; hop < std::max<size_t>(1, a.hops); ++hop) {
        RouteRequest rr = a.route;
        if (hop > 0) {
            if (lastHopText.empty()) break;
            // The injected text joins the routing query of the next hop (issue 5 item 5).
            rr.question = a.route.question + "\n" + lastHopText;
        }
        const auto th = Clock::now();
        MSA_ASSIGN_OR_RETURN(RouteReport rep, routeWith(c, rr));
        memory::TraceHop h;
        h.hop = static_cast<int>(hop);
        h.layers = traceLayersOf(rep);
        h.routeSeconds = secondsSince(th);
        const size_t budget = hop == 0 ? a.nDocuments : std::max<size_t>(1, a.nDocuments / 2);
        lastHopText.clear();
        for (const auto& o : rep.overall) {
            if (h.injected.size() >= budget) break;
            if (given.count(o.id)) continue;
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
            lastHopText += m->text.substr(0, a.maxDocumentBytes / 2);
            lastHopText += '\n';
            given.insert(o.id);
            h.injected.push_back(o.id);
            out.used.push_back(o);
        }
        if (hop == 0) out.routing = std::move(rep);
        out.trace.hops.push_back(std::move(h));
    }
    const double routeSeconds = secondsSince(t0);

    const ModelRuntime& rt = c.rt;
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
    go.sampler.temperature = a.temperature;
    go.sampler.seed = a.seed;
    go.stopStrings = chatStopStrings(rt);
    go.cancel = a.cancel;
    const auto tg = Clock::now();
    std::optional<double> first;
    MSA_ASSIGN_OR_RETURN(engine::GenerateResult g,
                         engine::generate(*session, *rt.tokenizer, prompt, go, [&](std::string_view piece, int32_t) {
                             if (!first) first = secondsSince(tg) + routeSeconds;
                             return onPiece ? onPiece(piece) : true;
                         }));
    out.method = a.hops > 1 ? "training-free (original text, " + std::to_string(out.trace.hops.size()) + " hops)"
                            : "training-free (original text)";
    out.answer = g.text;
    out.answerTokens = g.tokens.size();
    out.stopReason = g.stopReason;
    out.firstTokenSeconds = first.value_or(secondsSince(t0));
    memory::TraceHop& last = out.trace.hops.back();
    last.promptTokens = prompt.size();
    last.generatedTokens = g.tokens.size();
    last.generateSeconds = secondsSince(tg);
    last.text = g.text;
    out.trace.citations = citationsIn(g.text, given);
    return Status::ok();
}

}  // namespace

Result<AskReport> askQuestion(const AskRequest& a, const AnswerStream& onPiece) {
    const auto t0 = Clock::now();
    if (!a.route.catalog) return invalidArgument("answering needs the catalog that holds the documents' text (--catalog)");
    if (a.route.question.empty()) return invalidArgument("empty question");
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, a.route.device.create());
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(a.route, *backend));
    if (!ctx->catalog) return notFound("cannot open the catalog " + quotedName(a.route.catalog->string()));
    const bool trained = isMsaModel(*ctx->rt.files) && ctx->cfg.decoupled;
    const AnswerMethod method = a.method == AnswerMethod::Auto ? (trained ? AnswerMethod::Interleave : AnswerMethod::TrainingFree)
                                                               : a.method;
    if (method == AnswerMethod::Interleave && !trained)
        return Status(ErrorCode::Unsupported, "Memory Interleave needs an MSA-trained model (router projections and the [i] "
                                              "id protocol); answer with the training-free method instead");
    AskReport out;
    memory::RoutingTrace& t = out.trace;
    t.question = a.route.question;
    t.routing = ctx->cfg.describe();
    t.model = ctx->rt.files->fingerprint().hex();
    t.bank = a.route.bank.string();
    t.topK = ctx->cfg.topK;
    if (method == AnswerMethod::Interleave) MSA_RETURN_IF_ERROR(askInterleave(*ctx, a, onPiece, out));
    else if (a.injection == Injection::Compressed) MSA_RETURN_IF_ERROR(askCompressed(*ctx, a, onPiece, out));
    else MSA_RETURN_IF_ERROR(askOriginal(*ctx, a, onPiece, out));
    t.method = out.method;
    t.answer = out.answer;
    for (memory::TraceHop& h : t.hops)
        for (memory::TraceLayer& l : h.layers)
            for (memory::TraceDocument& d : l.top)
                if (d.title.empty()) d.title = ctx->titleOf(d.id);
    t.aggregate();
    for (memory::TraceAggregate& d : t.documents)
        if (d.title.empty()) d.title = ctx->titleOf(d.id);
    out.seconds = secondsSince(t0);
    t.seconds = out.seconds;
    t.firstTokenSeconds = out.firstTokenSeconds;
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
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, e.route.device.create());
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(e.route, *backend));
    if (!ctx->catalog) return notFound("cannot open the catalog " + quotedName(e.route.catalog->string()));
    const catalog::Catalog& cat = *ctx->catalog;
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
        MSA_ASSIGN_OR_RETURN(RouteReport routed, routeWith(*ctx, rr));
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
    return {{"answer", r.answer}, {"method", r.method}, {"documents", used}, {"citations", r.trace.citations},
            {"routing", toJson(r.routing)}, {"trace", memory::toJson(r.trace)}, {"transcript", r.transcript},
            {"prompt_tokens", r.promptTokens}, {"answer_tokens", r.answerTokens}, {"stop_reason", r.stopReason},
            {"seconds", r.seconds}, {"first_token_seconds", r.firstTokenSeconds}};
}

nlohmann::json toJson(const BuildReport& r) {
    nlohmann::json skipped = nlohmann::json::array();
    for (const auto& [id, why] : r.skipped) skipped.push_back({{"memory_document", id}, {"reason", why}});
    return {{"bank", r.bank}, {"routing", r.routing}, {"documents", r.nDocuments}, {"encoded", r.nEncoded},
            {"unchanged", r.nUnchanged}, {"removed", r.nRemoved}, {"skipped", r.nSkipped}, {"skipped_documents", skipped},
            {"tokens", r.nTokens}, {"seconds", r.seconds}, {"tokens_per_s", r.tokensPerSecond}, {"encode_seconds", r.encodeSeconds},
            {"cancelled", r.cancelled},
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

#include "core/jobs/bench_quant.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/engine/backend_registry.h"
#include "core/jobs/memory_jobs.h"
#include "core/jobs/routing_context.h"
#include "core/memory/bank.h"
#include "core/memory/key_quant.h"
#include "core/memory/router.h"
#include "core/memory/sparse.h"
#include "core/memory/wrap.h"
#include "core/model/dtype.h"
#include "core/util/paths.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iomanip>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

using memory::QuantFormat;
using Clock = std::chrono::steady_clock;

// A storage format measured against the bank's own: an 8-bit format, or (format empty) bf16 rounding
// (nearest, ties to even) when the bank stores f32 — the scale of what bf16 storage itself changes.
struct Variant {
    std::string name;
    std::optional<QuantFormat> format;
};

Status roundTrip(const Variant& v, std::span<float> x, size_t rowLength) {
    if (v.format) return memory::roundTripRows(*v.format, x, rowLength);
    for (float& f : x) f = model::bf16ToF32(model::f32ToBf16(f));
    return Status::ok();
}

// The router's per-shard document table (the same as MemoryIndex builds for itself, which it keeps
// private): chunk offsets relative to the shard's first chunk, ids, bank rows, live mask.
struct ShardTable {
    std::vector<uint64_t> offsets{0};
    std::vector<uint64_t> ids;
    std::vector<uint32_t> rows;
    std::vector<uint8_t> allowed;
};

Result<std::vector<ShardTable>> shardTables(const memory::Bank& bank) {
    std::vector<ShardTable> out;
    if (bank.params().routingLayers.empty()) return out;
    const auto& docs = bank.documents();
    for (const memory::ShardSpan& span : bank.routingKeys(0)) {
        ShardTable s;
        for (size_t row = 0; row < docs.size(); ++row) {
            const memory::DocumentEntry& d = docs[row];
            if (d.firstChunk < span.firstChunk || d.firstChunk >= span.firstChunk + span.nChunks) continue;
            if (d.firstChunk - span.firstChunk != s.offsets.back())
                return Status(ErrorCode::Corrupt, "memory document " + std::to_string(d.id) + " does not start where the previous one ends");
            s.offsets.push_back(d.firstChunk - span.firstChunk + d.nChunks);
            s.ids.push_back(static_cast<uint64_t>(d.id));
            s.rows.push_back(static_cast<uint32_t>(row));
            s.allowed.push_back(d.live() ? 1 : 0);
        }
        out.push_back(std::move(s));
    }
    return out;
}

// Routing keys of one format: [routing layer][shard] f32 rows dequantized from the format (what a
// reader of the quantized copy scores with). Empty for bf16 (the bank's spans are used directly).
using KeyCopy = std::vector<std::vector<std::vector<float>>>;

struct Scores {
    std::vector<float> scores;
    std::vector<uint64_t> ids;
    std::vector<uint32_t> rows;
};

Result<Scores> scoreLayer(memory::Router& router, const memory::RoutingConfig& cfg, const memory::Bank& bank,
                          const std::vector<ShardTable>& tables, const memory::RoutingQueries& q, size_t li, const KeyCopy* copy) {
    const memory::BankParams& bp = bank.params();
    const std::vector<memory::ShardSpan> spans = bank.routingKeys(li);
    Scores out;
    for (size_t si = 0; si < spans.size() && si < tables.size(); ++si) {
        const ShardTable& t = tables[si];
        if (t.ids.empty()) continue;
        memory::RouteKeys keys;
        if (copy) {
            keys.data = std::as_bytes(std::span<const float>((*copy)[li][si]));
            keys.dtype = model::DType::F32;
        } else {
            keys.data = spans[si].bytes;
            keys.dtype = bp.storage;
        }
        keys.nChunks = spans[si].nChunks;
        keys.nHeads = bp.nRouteHeads;
        keys.headDim = bp.headDim;
        keys.chunkOffsets = t.offsets;
        keys.docIds = t.ids;
        MSA_ASSIGN_OR_RETURN(std::vector<float> sc, router.scoreDocuments(cfg, q, keys, {.topK = cfg.topK, .allowed = t.allowed}));
        out.scores.insert(out.scores.end(), sc.begin(), sc.end());
        out.ids.insert(out.ids.end(), t.ids.begin(), t.ids.end());
        out.rows.insert(out.rows.end(), t.rows.begin(), t.rows.end());
    }
    return out;
}

// The full ranking (score descending, id ascending), with ScoredDocument::index = bank row.
std::vector<memory::ScoredDocument> ranking(const Scores& s) {
    std::vector<memory::ScoredDocument> r = memory::selectTop(s.scores, s.ids, s.scores.size());
    for (auto& d : r) d.index = s.rows[d.index];
    return r;
}

// Per (question, layer) comparison of a quantized ranking with the bf16 one.
struct Comparison {
    double overlap = 0, kendall = 0, maxDelta = 0, gap = 0;
    bool exactSet = false, exactOrder = false;
    size_t worstRank = 0;
};

Comparison compare(const Scores& base, const Scores& quant, size_t k) {
    Comparison c;
    const auto rb = ranking(base), rq = ranking(quant);
    const size_t kk = std::min(k, rb.size());
    std::set<uint64_t> a, b;
    for (size_t i = 0; i < kk; ++i) a.insert(rb[i].id);
    for (size_t i = 0; i < std::min(k, rq.size()); ++i) b.insert(rq[i].id);
    size_t common = 0;
    for (uint64_t id : a) common += b.count(id);
    c.overlap = kk ? static_cast<double>(common) / static_cast<double>(kk) : 1.0;
    c.exactSet = a == b;
    c.exactOrder = c.exactSet;
    for (size_t i = 0; i < kk && c.exactOrder; ++i) c.exactOrder = rq[i].id == rb[i].id;
    for (size_t i = 0; i < rq.size(); ++i)
        if (a.count(rq[i].id)) c.worstRank = std::max(c.worstRank, i + 1);
    c.gap = kk < rb.size() ? static_cast<double>(rb[kk - 1].score) - static_cast<double>(rb[kk].score) : 0.0;
    // τ-a over the candidates (finite bf16 scores); ties count as neither concordant nor discordant.
    std::vector<size_t> idx;
    for (size_t i = 0; i < base.scores.size(); ++i)
        if (std::isfinite(base.scores[i])) idx.push_back(i);
    long long conc = 0, disc = 0;
    for (size_t x = 0; x < idx.size(); ++x) {
        const size_t i = idx[x];
        c.maxDelta = std::max(c.maxDelta, std::fabs(static_cast<double>(quant.scores[i]) - static_cast<double>(base.scores[i])));
        for (size_t y = x + 1; y < idx.size(); ++y) {
            const size_t j = idx[y];
            const double db = static_cast<double>(base.scores[i]) - base.scores[j];
            const double dq = static_cast<double>(quant.scores[i]) - quant.scores[j];
            if (db * dq > 0) ++conc;
            else if (db * dq < 0) ++disc;
        }
    }
    const double pairs = 0.5 * static_cast<double>(idx.size()) * static_cast<double>(idx.size() > 0 ? idx.size() - 1 : 0);
    c.kendall = pairs > 0 ? static_cast<double>(conc - disc) / pairs : 1.0;
    return c;
}

void accumulate(LayerAgreement& a, const Comparison& c) {
    const double n = static_cast<double>(a.nQuestions);
    a.meanOverlap = (a.meanOverlap * n + c.overlap) / (n + 1);
    a.exactSetRate = (a.exactSetRate * n + (c.exactSet ? 1 : 0)) / (n + 1);
    a.exactOrderRate = (a.exactOrderRate * n + (c.exactOrder ? 1 : 0)) / (n + 1);
    a.meanKendall = (a.meanKendall * n + c.kendall) / (n + 1);
    a.minOverlap = std::min(a.minOverlap, c.overlap);
    a.minKendall = std::min(a.minKendall, c.kendall);
    a.worstBoundaryRank = std::max(a.worstBoundaryRank, c.worstRank);
    a.maxScoreDelta = std::max(a.maxScoreDelta, c.maxDelta);
    a.minBoundaryGap = a.nQuestions == 0 ? c.gap : std::min(a.minBoundaryGap, c.gap);
    ++a.nQuestions;
}

size_t argmax(std::span<const float> v) {
    return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct StepDelta {
    double deltaOverRms = 0, cosine = 1;
};

StepDelta stepDelta(std::span<const float> base, std::span<const float> other) {
    double sq = 0, maxd = 0, dot = 0, na = 0, nb = 0;
    for (size_t i = 0; i < base.size(); ++i) {
        const double a = base[i], b = other[i];
        sq += a * a;
        maxd = std::max(maxd, std::fabs(a - b));
        dot += a * b;
        na += a * a;
        nb += b * b;
    }
    const double rms = std::sqrt(sq / std::max<size_t>(1, base.size()));
    return {rms > 0 ? maxd / rms : 0.0, (na > 0 && nb > 0) ? dot / std::sqrt(na * nb) : 1.0};
}

// One configuration of a prefill: which routing keys, whether the gathered content is quantized, and
// (baseline only) the comparisons to make in each routing layer.
struct RunSpec {
    const KeyCopy* keys = nullptr;              // null: the bank's bf16 keys
    const Variant* content = nullptr;           // gathered K̄/V̄ rows through this format
    std::function<Status(size_t li, const memory::RoutingQueries&, const Scores&)> observe;
};

// memory::sparsePrefill with the bench's own scan (over `spec.keys`, keeping every score for the
// comparisons) and the gathered rows through `spec.content`. With the bank's keys the selection must
// be MemoryIndex::route's own, which is checked in every routing layer.
Result<memory::SparsePrefill> prefill(engine::Session& session, RoutingContext& c, memory::Router& router,
                                      const std::vector<ShardTable>& tables, const memory::QueryPrompt& q, const RunSpec& spec) {
    memory::MemoryIndex& index = *c.index;
    const memory::RoutingConfig& cfg = index.config();
    const size_t D = c.bank.params().headDim;
    std::vector<int32_t> pos(q.tokens.size());
    std::iota(pos.begin(), pos.end(), q.firstPosition);
    memory::SparsePrefillOptions opt;
    opt.route = [&](size_t li, const memory::RoutingQueries& rq) -> Result<memory::LayerRouting> {
        MSA_ASSIGN_OR_RETURN(Scores s, scoreLayer(router, cfg, c.bank, tables, rq, li, spec.keys));
        memory::LayerRouting r;
        r.layer = cfg.layers[li];
        r.nCandidates = static_cast<size_t>(std::count_if(s.scores.begin(), s.scores.end(), [](float x) { return std::isfinite(x); }));
        r.selected = ranking(s);
        r.selected.resize(std::min(r.selected.size(), cfg.topK));
        r.top = r.selected;
        for (const memory::ScoredDocument& d : r.selected) r.nChunks += c.bank.documents()[d.index].nChunks;
        if (!spec.keys) {   // the baseline must be MemoryIndex's own decision
            MSA_ASSIGN_OR_RETURN(memory::LayerRouting ref, index.route(li, rq, cfg.topK));
            if (ref.selected != r.selected)
                return Status(ErrorCode::Internal, "the bench's bf16 scoring of layer " + std::to_string(r.layer) +
                                                       " disagrees with MemoryIndex::route");
        }
        if (spec.observe) MSA_RETURN_IF_ERROR(spec.observe(li, rq, s));
        return r;
    };
    if (spec.content)
        opt.transformRows = [&](size_t, engine::LayerPrefix& rows) -> Status {
            MSA_RETURN_IF_ERROR(roundTrip(*spec.content, rows.k, D));
            return roundTrip(*spec.content, rows.v, D);
        };
    return memory::sparsePrefill(session, index, q.tokens, pos, q.routeMask, opt);
}

// The selected document ids of each routing layer, in layer order.
std::vector<std::vector<uint64_t>> selections(const memory::SparsePrefill& p) {
    std::vector<std::vector<uint64_t>> out;
    for (const memory::LayerRouting& l : p.layers) {
        std::vector<uint64_t> ids;
        for (const memory::ScoredDocument& d : l.selected) ids.push_back(d.id);
        out.push_back(std::move(ids));
    }
    return out;
}

// Round trip of every stored row of one tensor kind over the whole bank.
RoundTripError roundTripError(const memory::Bank& bank, const Variant& f, const std::string& tensor,
                              const std::function<std::span<const std::byte>(size_t row, size_t li)>& get, Status* st) {
    RoundTripError e;
    e.format = f.name;
    e.tensor = tensor;
    const memory::BankParams& bp = bank.params();
    double num = 0, den = 0;
    for (size_t row = 0; row < bank.documents().size(); ++row) {
        if (!bank.documents()[row].live()) continue;
        for (size_t li = 0; li < bp.routingLayers.size(); ++li) {
            const std::span<const std::byte> bytes = get(row, li);
            std::vector<float> x(bytes.size() / bank.elementBytes());
            memory::toF32(bp.storage, bytes, x);
            std::vector<float> y = x;
            if (Status s = roundTrip(f, y, bp.headDim); !s.ok()) {
                *st = s;
                return e;
            }
            for (size_t i = 0; i < x.size(); ++i) {
                const double d = static_cast<double>(x[i]) - y[i];
                num += d * d;
                den += static_cast<double>(x[i]) * x[i];
                e.maxAbsError = std::max(e.maxAbsError, std::fabs(d));
            }
        }
    }
    e.relRmsError = den > 0 ? std::sqrt(num / den) : 0;
    return e;
}

std::vector<std::string> readQuestions(const fs::path& file, size_t maxQuestions, Status* st) {
    std::vector<std::string> out;
    std::ifstream in(file);
    if (!in) {
        *st = notFound("the questions file " + quotedName(file.string()) + " cannot be read");
        return out;
    }
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_array()) {
        *st = Status(ErrorCode::Corrupt, quotedName(file.string()) + " is not a JSON array of questions");
        return out;
    }
    for (const auto& q : j) {
        const std::string text = q.is_string() ? q.get<std::string>() : q.value("question", std::string());
        if (!text.empty()) out.push_back(text);
        if (maxQuestions && out.size() >= maxQuestions) break;
    }
    if (out.empty()) *st = notFound(quotedName(file.string()) + " holds no question");
    return out;
}

}  // namespace

Result<QuantBenchResult> measureQuantization(const fs::path& bankPath, const fs::path& modelPath,
                                             const std::vector<std::string>& questions, const QuantMeasureOptions& o) {
    const auto t0 = Clock::now();
    if (questions.empty()) return invalidArgument("the quantization measurement needs at least one question");
    auto backend = engine::createCpuBackend();
    RouteRequest rr;
    rr.bank = bankPath;
    rr.model = modelPath;
    rr.nThreads = o.nThreads;
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<RoutingContext> ctx, openRouting(rr, *backend));
    RoutingContext& c = *ctx;
    const memory::BankParams& bp = c.bank.params();
    const memory::RoutingConfig& cfg = c.index->config();

    QuantBenchResult r;
    r.model = modelPath.string();
    r.bank = bankPath.string();
    r.routing = cfg.describe();
    r.nQuestions = questions.size();
    r.nDocuments = c.bank.nDocuments();
    r.nChunks = c.bank.nChunks();
    r.nTokens = c.bank.nTokens();
    r.topK = cfg.topK;
    r.chunkSize = bp.chunkSize;
    r.nRoutingLayers = bp.routingLayers.size();
    r.nRouteHeads = bp.nRouteHeads;
    r.nKvHeads = bp.nKvHeads;
    r.headDim = bp.headDim;
    r.keysShared = bp.keysShared;
    r.greedyTokens = o.greedyTokens;

    // Bytes per memory token (msa-spec §6.6 with each format's row size).
    {
        const double L = static_cast<double>(r.nRoutingLayers), P = static_cast<double>(r.chunkSize);
        const auto perToken = [&](double heads, double rowBytes) { return L * heads * rowBytes / P; };
        const double D = static_cast<double>(r.headDim);
        const std::vector<std::pair<std::string, double>> rowSizes = {
            {bp.storage == model::DType::F32 ? "f32" : "bf16", static_cast<double>(c.bank.elementBytes()) * D},
            {"fp8-e4m3", static_cast<double>(memory::quantizedRowBytes(r.headDim))},
            {"int8", static_cast<double>(memory::quantizedRowBytes(r.headDim))}};
        for (const auto& [name, baseRow] : rowSizes) {
            FormatBytes b;
            b.format = name;
            b.routingKeysPerToken = perToken(static_cast<double>(r.nRouteHeads), baseRow);
            b.keysPerToken = r.keysShared ? 0.0 : perToken(static_cast<double>(r.nKvHeads), baseRow);
            b.valuesPerToken = perToken(static_cast<double>(r.nKvHeads), baseRow);
            b.totalPerToken = b.routingKeysPerToken + b.keysPerToken + b.valuesPerToken;
            b.totalForBankChunks = r.nTokens ? b.totalPerToken * P * static_cast<double>(r.nChunks) / static_cast<double>(r.nTokens) : 0;
            r.bytes.push_back(b);
        }
    }

    // Round-trip error of the stored rows, and the quantized copies of the routing keys.
    MSA_ASSIGN_OR_RETURN(std::vector<ShardTable> tables, shardTables(c.bank));
    std::vector<Variant> variants;
    if (bp.storage == model::DType::F32) variants.push_back({"bf16", std::nullopt});
    variants.push_back({"fp8-e4m3", QuantFormat::Fp8E4M3});
    variants.push_back({"int8", QuantFormat::Int8});
    std::vector<KeyCopy> copies;
    for (const Variant& f : variants) {
        Status st = Status::ok();
        r.roundTrip.push_back(roundTripError(c.bank, f, "routing keys", [&](size_t row, size_t li) { return c.bank.routingKeysOf(row, li); }, &st));
        if (!bp.keysShared)
            r.roundTrip.push_back(roundTripError(c.bank, f, "K", [&](size_t row, size_t li) { return c.bank.keys(row, li); }, &st));
        r.roundTrip.push_back(roundTripError(c.bank, f, "V", [&](size_t row, size_t li) { return c.bank.values(row, li); }, &st));
        MSA_RETURN_IF_ERROR(st);
        KeyCopy copy(bp.routingLayers.size());
        for (size_t li = 0; li < bp.routingLayers.size(); ++li) {
            for (const memory::ShardSpan& span : c.bank.routingKeys(li)) {
                std::vector<float> x(span.bytes.size() / c.bank.elementBytes());
                memory::toF32(bp.storage, span.bytes, x);
                MSA_RETURN_IF_ERROR(roundTrip(f, x, bp.headDim));
                copy[li].push_back(std::move(x));
            }
        }
        copies.push_back(std::move(copy));
    }

    std::vector<size_t> effectVariant;   // r.logits[i] measures variants[effectVariant[i]]
    for (size_t vi = 0; vi < variants.size(); ++vi) {
        RoutingAgreement a;
        a.format = variants[vi].name;
        for (int layer : cfg.layers) {
            LayerAgreement l;
            l.layer = layer;
            a.layers.push_back(l);
        }
        r.routingAgreement.push_back(std::move(a));
        if (o.content)
            for (const char* scope : {"content", "keys+content"}) {
                LogitEffect e;
                e.format = variants[vi].name;
                e.scope = scope;
                r.logits.push_back(std::move(e));
                effectVariant.push_back(vi);
            }
    }

    memory::Router router(o.nThreads);
    r.baselineMatchesSparsePrefill = true;
    std::vector<double> stepSums(r.logits.size(), 0.0), cosSums(r.logits.size(), 0.0), agreeSteps(r.logits.size(), 0.0);
    for (const std::string& question : questions) {
        const memory::QueryPrompt q = memory::round1Query(*c.rt.tokenizer, c.wrap, question, cfg.topK);
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                             c.rt.model->createSession({.maxTokens = q.tokens.size() + o.greedyTokens + 16, .nThreads = o.nThreads}));
        // Baseline, with the routing comparisons in every routing layer.
        RunSpec base;
        base.observe = [&](size_t li, const memory::RoutingQueries& rq, const Scores& s) -> Status {
            for (size_t fi = 0; fi < variants.size(); ++fi) {
                MSA_ASSIGN_OR_RETURN(Scores sq, scoreLayer(router, cfg, c.bank, tables, rq, li, &copies[fi]));
                const Comparison cmp = compare(s, sq, cfg.topK);
                accumulate(r.routingAgreement[fi].layers[li], cmp);
                accumulate(r.routingAgreement[fi].all, cmp);
            }
            return Status::ok();
        };
        MSA_ASSIGN_OR_RETURN(memory::SparsePrefill bp0, prefill(*session, c, router, tables, q, base));
        const std::span<const float> l0 = bp0.logits;
        const std::vector<std::vector<uint64_t>> baseSel = selections(bp0);
        std::vector<std::vector<float>> baseLogits{std::vector<float>(l0.begin(), l0.end())};
        {
            std::vector<int32_t> pos(q.tokens.size());
            std::iota(pos.begin(), pos.end(), q.firstPosition);
            MSA_ASSIGN_OR_RETURN(memory::SparsePrefill sp, memory::sparsePrefill(*session, *c.index, q.tokens, pos, q.routeMask, {}));
            if (sp.logits.size() != l0.size() || std::memcmp(sp.logits.data(), baseLogits[0].data(), l0.size() * sizeof(float)) != 0)
                r.baselineMatchesSparsePrefill = false;
        }
        if (!o.content) continue;
        // The bf16 greedy transcript (sparsePrefill left the session where the baseline prefill did).
        std::vector<int32_t> transcript;
        int32_t next = static_cast<int32_t>(argmax(baseLogits[0]));
        int32_t p = q.firstPosition + static_cast<int32_t>(q.tokens.size());
        for (size_t s = 0; s < o.greedyTokens; ++s) {
            transcript.push_back(next);
            if (s + 1 == o.greedyTokens) break;
            const int32_t tok[1] = {next}, at[1] = {p++};
            MSA_ASSIGN_OR_RETURN(std::span<const float> lg, session->forward(tok, at, {}));
            baseLogits.emplace_back(lg.begin(), lg.end());
            next = static_cast<int32_t>(argmax(lg));
        }
        // Each format × scope, teacher-forced on the bf16 transcript.
        for (size_t ei = 0; ei < r.logits.size(); ++ei) {
            LogitEffect& e = r.logits[ei];
            const size_t fi = effectVariant[ei];
            RunSpec spec;
            spec.content = &variants[fi];
            if (e.scope == "keys+content") spec.keys = &copies[fi];
            MSA_ASSIGN_OR_RETURN(memory::SparsePrefill pq, prefill(*session, c, router, tables, q, spec));
            std::span<const float> lq = pq.logits;
            if (selections(pq) != baseSel) ++e.questionsRoutedDifferently;
            size_t prefix = transcript.size();
            int32_t at = q.firstPosition + static_cast<int32_t>(q.tokens.size());
            for (size_t s = 0; s < transcript.size(); ++s) {
                if (s > 0) {
                    const int32_t tok[1] = {transcript[s - 1]}, pp[1] = {at++};
                    MSA_ASSIGN_OR_RETURN(lq, session->forward(tok, pp, {}));
                }
                const StepDelta d = stepDelta(baseLogits[s], lq);
                e.maxDeltaOverRms = std::max(e.maxDeltaOverRms, d.deltaOverRms);
                e.minCosine = std::min(e.minCosine, d.cosine);
                stepSums[ei] += d.deltaOverRms;
                cosSums[ei] += d.cosine;
                const bool same = static_cast<int32_t>(argmax(lq)) == transcript[s];
                agreeSteps[ei] += same ? 1 : 0;
                if (!same && prefix == transcript.size()) prefix = s;
                if (s == 0 && same) e.firstTokenAgreement += 1;
                ++e.nSteps;
            }
            e.commonPrefix.push_back(prefix);
            if (prefix == transcript.size()) e.transcriptAgreement += 1;
            ++e.nQuestions;
        }
    }
    for (size_t ei = 0; ei < r.logits.size(); ++ei) {
        LogitEffect& e = r.logits[ei];
        const double steps = static_cast<double>(std::max<size_t>(1, e.nSteps)), qs = static_cast<double>(std::max<size_t>(1, e.nQuestions));
        e.meanDeltaOverRms = stepSums[ei] / steps;
        e.meanCosine = cosSums[ei] / steps;
        e.nextTokenAgreement = agreeSteps[ei] / steps;
        e.firstTokenAgreement /= qs;
        e.transcriptAgreement /= qs;
        e.meanCommonPrefix = static_cast<double>(std::accumulate(e.commonPrefix.begin(), e.commonPrefix.end(), size_t(0))) / qs;
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return r;
}

Result<QuantBenchResult> runQuantBench(const QuantBenchOptions& o) {
    const fs::path model = o.model.empty() ? findDemoModel() : o.model;
    if (model.empty()) return notFound("the demo model was not found (.cache/models/" + std::string(kDemoModelFile) + "); give --model");
    const fs::path archive = o.archive.empty() ? findDemoArchive() : o.archive;
    const fs::path questionsFile = o.questions.empty() ? demoQuestionsFile(archive) : o.questions;
    Status st = Status::ok();
    const std::vector<std::string> questions = readQuestions(questionsFile, o.maxQuestions, &st);
    MSA_RETURN_IF_ERROR(st);
    if (!o.bank.empty()) {
        MSA_ASSIGN_OR_RETURN(QuantBenchResult r, measureQuantization(o.bank, model, questions, o.measure));
        return r;
    }
    std::error_code ec;
    if (archive.empty() || !fs::is_directory(archive, ec))
        return notFound("the demo archive was not found (resources/demo/archive); give --archive");
    fs::path work = o.workDir;
    if (work.empty()) work = fs::temp_directory_path() / ("msa-bench-quant-" + std::to_string(::getpid()));
    fs::create_directories(work, ec);
    if (ec) return Status(ErrorCode::IoError, "cannot create " + quotedName(work.string()) + ": " + ec.message());
    const auto run = [&]() -> Result<QuantBenchResult> {
        const fs::path catalogPath = work / "catalog.sqlite", bankPath = work / "bank";
        {
            MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath));
            catalog::ImportRequest req;
            req.collection = "demo";
            req.paths = {archive};
            MSA_ASSIGN_OR_RETURN(catalog::ImportReport rep, catalog::importPaths(cat, req, {}, nullptr));
            (void)rep;
        }
        BuildOptions b;
        b.catalog = catalogPath;
        b.collection = "demo";
        b.model = model;
        b.bank = bankPath;
        b.nThreads = o.measure.nThreads;
        b.batchTokens = o.batchTokens;
        MSA_ASSIGN_OR_RETURN(BuildReport built, buildMemory(b));
        (void)built;
        MSA_ASSIGN_OR_RETURN(QuantBenchResult r, measureQuantization(bankPath, model, questions, o.measure));
        r.archive = archive.string();
        return r;
    };
    Result<QuantBenchResult> r = run();
    if (!o.keepWorkDir) fs::remove_all(work, ec);
    return r;
}

nlohmann::json toJson(const QuantBenchResult& r) {
    const auto layerJson = [](const LayerAgreement& l) {
        return nlohmann::json{{"layer", l.layer},
                              {"questions", l.nQuestions},
                              {"mean_overlap", l.meanOverlap},
                              {"min_overlap", l.minOverlap},
                              {"exact_set_rate", l.exactSetRate},
                              {"exact_order_rate", l.exactOrderRate},
                              {"mean_kendall_tau", l.meanKendall},
                              {"min_kendall_tau", l.minKendall},
                              {"worst_boundary_rank", l.worstBoundaryRank},
                              {"max_score_delta", l.maxScoreDelta},
                              {"min_boundary_gap", l.minBoundaryGap}};
    };
    nlohmann::json bytes = nlohmann::json::array(), rt = nlohmann::json::array(), routing = nlohmann::json::array(),
                   logits = nlohmann::json::array();
    for (const auto& b : r.bytes)
        bytes.push_back({{"format", b.format}, {"routing_keys_per_token", b.routingKeysPerToken}, {"keys_per_token", b.keysPerToken},
                         {"values_per_token", b.valuesPerToken}, {"total_per_token", b.totalPerToken},
                         {"total_for_bank_chunks_per_token", b.totalForBankChunks}});
    for (const auto& e : r.roundTrip)
        rt.push_back({{"format", e.format}, {"tensor", e.tensor}, {"rel_rms_error", e.relRmsError}, {"max_abs_error", e.maxAbsError}});
    for (const auto& a : r.routingAgreement) {
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& l : a.layers) layers.push_back(layerJson(l));
        routing.push_back({{"format", a.format}, {"all", layerJson(a.all)}, {"layers", layers}});
    }
    for (const auto& e : r.logits)
        logits.push_back({{"format", e.format}, {"scope", e.scope}, {"questions", e.nQuestions}, {"steps", e.nSteps},
                          {"max_delta_over_rms", e.maxDeltaOverRms}, {"mean_delta_over_rms", e.meanDeltaOverRms},
                          {"min_cosine", e.minCosine}, {"mean_cosine", e.meanCosine},
                          {"next_token_agreement", e.nextTokenAgreement}, {"first_token_agreement", e.firstTokenAgreement},
                          {"transcript_agreement", e.transcriptAgreement}, {"mean_common_prefix", e.meanCommonPrefix},
                          {"common_prefix", e.commonPrefix}, {"questions_routed_differently", e.questionsRoutedDifferently}});
    return {{"model", r.model},
            {"archive", r.archive},
            {"bank", r.bank},
            {"routing", r.routing},
            {"questions", r.nQuestions},
            {"documents", r.nDocuments},
            {"chunks", r.nChunks},
            {"tokens", r.nTokens},
            {"top_k", r.topK},
            {"chunk_size", r.chunkSize},
            {"routing_layers", r.nRoutingLayers},
            {"route_heads", r.nRouteHeads},
            {"kv_heads", r.nKvHeads},
            {"head_dim", r.headDim},
            {"keys_shared", r.keysShared},
            {"greedy_tokens", r.greedyTokens},
            {"baseline_matches_sparse_prefill", r.baselineMatchesSparsePrefill},
            {"bytes", bytes},
            {"round_trip", rt},
            {"routing_agreement", routing},
            {"logits", logits},
            {"seconds", r.seconds}};
}

std::string toText(const QuantBenchResult& r) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o << "model     " << r.model << "\n";
    if (!r.archive.empty()) o << "archive   " << r.archive << "\n";
    o << "bank      " << r.nDocuments << " documents, " << r.nChunks << " chunks, " << r.nTokens << " tokens; " << r.nRoutingLayers
      << " routing layers, " << r.nRouteHeads << " routing heads / " << r.nKvHeads << " KV heads of " << r.headDim << ", P " << r.chunkSize
      << ", k " << r.topK << (r.keysShared ? ", routing keys = K (training-free)" : "") << "\n";
    o << "routing   " << r.routing << "\n";
    o << "questions " << r.nQuestions << "; baseline prefill equals memory::sparsePrefill bit for bit: "
      << (r.baselineMatchesSparsePrefill ? "yes" : "NO") << "\n\n";

    o.precision(1);
    o << "bytes per memory token (msa-spec 6.6 arithmetic; one f32 scale per (chunk, head) row for 8-bit)\n";
    o << "  format      routing keys        K        V    total   (this bank's chunks)\n";
    for (const auto& b : r.bytes)
        o << "  " << std::left << std::setw(10) << b.format << std::right << std::setw(14) << b.routingKeysPerToken << std::setw(9)
          << b.keysPerToken << std::setw(9) << b.valuesPerToken << std::setw(9) << b.totalPerToken << std::setw(12)
          << b.totalForBankChunks << "\n";
    o.precision(5);
    o << "\nround trip of the bank's stored rows (relative rms error, max |error|)\n";
    for (const auto& e : r.roundTrip)
        o << "  " << std::left << std::setw(10) << e.format << std::setw(14) << e.tensor << std::right << std::setw(10) << e.relRmsError
          << std::setw(12) << e.maxAbsError << "\n";

    o << "\nrouting top-k vs the bank's storage (" << (r.bytes.empty() ? std::string("bf16") : r.bytes.front().format) << "), per routing layer over " << r.nQuestions
      << " questions (queries from the baseline prefill's own layer; overlap = |A∩B|/k)\n";
    for (const auto& a : r.routingAgreement) {
        o << "  " << a.format << "\n";
        o << "    layer  mean overlap  min overlap  exact set  exact order  mean tau  min tau  worst rank  max |dscore|  min base gap\n";
        auto row = [&](const LayerAgreement& l, const std::string& name) {
            o.precision(4);
            o << "    " << std::left << std::setw(5) << name << std::right << std::setw(14) << l.meanOverlap << std::setw(13) << l.minOverlap
              << std::setw(11) << l.exactSetRate << std::setw(13) << l.exactOrderRate << std::setw(10) << l.meanKendall << std::setw(9)
              << l.minKendall << std::setw(12) << l.worstBoundaryRank;
            o.precision(6);
            o << std::setw(14) << l.maxScoreDelta << std::setw(14) << l.minBoundaryGap << "\n";
        };
        for (const auto& l : a.layers) row(l, std::to_string(l.layer));
        row(a.all, "all");
    }
    if (!r.logits.empty()) {
        o << "\nlogits of compressed-memory sparse generation vs the bank's storage (" << r.greedyTokens
          << " greedy steps, teacher-forced on its transcript)\n";
        o << "  format    scope          max|d|/rms  mean|d|/rms  min cos     mean cos   next-token  first token  transcript  mean prefix  rerouted\n";
        for (const auto& e : r.logits) {
            o.precision(4);
            o << "  " << std::left << std::setw(10) << e.format << std::setw(14) << e.scope << std::right << std::setw(11)
              << e.maxDeltaOverRms << std::setw(13) << e.meanDeltaOverRms;
            o.precision(6);
            o << std::setw(10) << e.minCosine << std::setw(11) << e.meanCosine;
            o.precision(3);
            o << std::setw(12) << e.nextTokenAgreement << std::setw(13) << e.firstTokenAgreement << std::setw(12) << e.transcriptAgreement
              << std::setw(13) << e.meanCommonPrefix << std::setw(10) << e.questionsRoutedDifferently << "\n";
        }
    }
    o.precision(1);
    o << "\n" << r.seconds << " s\n";
    return o.str();
}

}  // namespace msa::jobs

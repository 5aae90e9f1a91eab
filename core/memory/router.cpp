#include "core/memory/router.h"

#include <cblas.h>

#include "core/memory/pooling.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <sstream>

namespace msa::memory {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

Result<HeadReduce> parseHead(const std::string& s) {
    if (s.empty() || s == "mean") return HeadReduce::Mean;   // expected MSA-4B value (msa-spec §1.3)
    if (s == "max") return HeadReduce::Max;
    return Status(ErrorCode::Unsupported, "msa_config head_reduce_method '" + s + "' (the reference knows mean, max)");
}
Result<QueryReduce> parseQuery(const std::string& s) {
    if (s.empty() || s == "max") return QueryReduce::Max;
    if (s == "mean") return QueryReduce::Mean;
    if (s == "last") return QueryReduce::Last;
    return Status(ErrorCode::Unsupported, "msa_config query_reduce_method '" + s + "' (the reference knows max, mean, last)");
}
Result<ChunkReduce> parseChunk(const std::string& s) {
    if (s.empty() || s == "max") return ChunkReduce::Max;
    if (s == "mean") return ChunkReduce::Mean;
    return Status(ErrorCode::Unsupported, "msa_config chunk_reduce_method '" + s + "' (the reference knows max, mean)");
}

std::string layerName(int layer, const char* what) { return "blk." + std::to_string(layer) + "." + what + ".weight"; }

// y[r] = W[r] · x for all rows of W (one token).
void project(const model::TensorView& w, const float* x, float* y) {
    for (uint64_t r = 0; r < w.nRows(); ++r) y[r] = model::dotRow(w.dtype, w.row(r), x, w.rowLength());
}

float headReduceInit(HeadReduce r) { return r == HeadReduce::Mean ? 0.0f : kNegInf; }

bool better(const ScoredDocument& a, const ScoredDocument& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.id < b.id;
}

}  // namespace

bool RoutingConfig::isRoutingLayer(int layer) const { return std::binary_search(layers.begin(), layers.end(), layer); }

std::string RoutingConfig::describe() const {
    std::ostringstream os;
    if (normalize)
        os << (queryScale == 1.0f ? "cosine" : "cosine x 1/sqrt(" + std::to_string(headDim) + ")");
    else
        os << "scaled-dot (1/sqrt(" << headDim << "))";
    os << ", head " << (headReduce == HeadReduce::Mean ? "mean" : "max") << ", token "
       << (queryReduce == QueryReduce::Max ? "max" : queryReduce == QueryReduce::Mean ? "mean" : "last") << ", chunk "
       << (chunkReduce == ChunkReduce::Max ? "max" : "mean") << ", " << (decoupled ? "router projections" : "attention Q/K")
       << ", k " << topK << ", P " << chunkSize << ", layers";
    for (int l : layers) os << ' ' << l;
    return os.str();
}

Result<RoutingConfig> routingConfigFromSettings(const model::ModelConfig& config, bool decoupled, std::vector<int> layers) {
    RoutingConfig cfg;
    std::sort(layers.begin(), layers.end());
    layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
    for (int l : layers)
        if (l < 0 || l >= config.nLayers)
            return Status(ErrorCode::InvalidArgument, "routing layer " + std::to_string(l) + " outside 0.." +
                                                          std::to_string(config.nLayers - 1));
    cfg.layers = std::move(layers);
    cfg.decoupled = decoupled;
    cfg.nQueryHeads = static_cast<size_t>(config.nHeads);
    cfg.nRouteHeads = static_cast<size_t>(config.nKvHeads);
    cfg.headDim = static_cast<size_t>(config.headDim);
    if (config.msa) {
        const model::MsaSettings& m = *config.msa;
        cfg.topK = static_cast<size_t>(std::max(m.docTopK, 1));
        if (m.poolingKernelSize) cfg.chunkSize = static_cast<size_t>(std::max(*m.poolingKernelSize, 1));
        cfg.auxLossMethod = m.auxLossMethod;
        MSA_ASSIGN_OR_RETURN(cfg.headReduce, parseHead(m.headReduceMethod));
        MSA_ASSIGN_OR_RETURN(cfg.queryReduce, parseQuery(m.queryReduceMethod));
        MSA_ASSIGN_OR_RETURN(cfg.chunkReduce, parseChunk(m.chunkReduceMethod));
    }
    // Exact string equality, as msa_service.py:318 and msa/memory_sparse_attention.py:192,264.
    cfg.normalize = cfg.auxLossMethod == "INFONCE";
    cfg.queryScale = (cfg.normalize && cfg.decoupled) ? 1.0f : 1.0f / std::sqrt(static_cast<float>(cfg.headDim));
    return cfg;
}

Result<RoutingConfig> routingConfigFor(const model::ModelFiles& files) {
    const model::ModelConfig& c = files.config();
    if (files.routingMode() == model::RoutingMode::MsaTrained) return routingConfigFromSettings(c, true, files.routerLayers());
    if (c.msa && !c.msa->routerLayers.empty()) return routingConfigFromSettings(c, false, c.msa->routerLayers);
    std::vector<int> upper;   // msa-spec §2.9: NL//2 .. NL-1 (paper §3.2.1)
    for (int l = c.nLayers / 2; l < c.nLayers; ++l) upper.push_back(l);
    return routingConfigFromSettings(c, false, std::move(upper));
}

void prepareQueries(const RoutingConfig& cfg, std::span<float> rows, size_t headDim) {
    if (cfg.normalize) l2NormalizeRows(rows.data(), rows.size() / headDim, headDim);
    if (cfg.queryScale != 1.0f)
        for (float& x : rows) x *= cfg.queryScale;
}

Result<RoutingQueries> routingQueriesFromLayer(const RoutingConfig& cfg, const model::ModelFiles& files,
                                               const engine::LayerTensors& layer, std::span<const uint8_t> routeMask) {
    if (!cfg.isRoutingLayer(layer.layer))
        return Status(ErrorCode::InvalidArgument, "layer " + std::to_string(layer.layer) + " is not a routing layer");
    if (routeMask.size() != layer.nTokens)
        return Status(ErrorCode::InvalidArgument, "routing mask has " + std::to_string(routeMask.size()) +
                                                      " entries for " + std::to_string(layer.nTokens) + " tokens");
    const size_t nValid = static_cast<size_t>(std::count_if(routeMask.begin(), routeMask.end(), [](uint8_t m) { return m != 0; }));
    if (nValid == 0) return Status(ErrorCode::InvalidArgument, "no routing-query token (doc_id 0) in the prompt");
    const model::ModelConfig& c = files.config();
    const size_t hidden = static_cast<size_t>(c.hiddenSize);
    RoutingQueries out;
    out.layer = layer.layer;
    out.nTokens = nValid;
    out.nHeads = cfg.nQueryHeads;
    out.headDim = cfg.headDim;
    const size_t width = out.nHeads * out.headDim;
    out.q.resize(nValid * width);
    const model::TensorView* w = nullptr;
    if (cfg.decoupled) {
        const std::string name = layerName(layer.layer, "router_q");
        w = files.tensors().find(name);
        if (!w) return Status(ErrorCode::NotFound, "router tensor " + name);
        if (w->nRows() != width || w->rowLength() != hidden)
            return Status(ErrorCode::Mismatch, name + " has the wrong shape for " + std::to_string(width) + " x " +
                                                   std::to_string(hidden));
    }
    size_t row = 0;
    for (size_t t = 0; t < layer.nTokens; ++t) {
        if (!routeMask[t]) continue;
        float* dst = out.q.data() + row * width;
        if (w)
            project(*w, layer.hiddenNormed + t * hidden, dst);
        else
            std::copy_n(layer.q + t * width, width, dst);
        ++row;
    }
    prepareQueries(cfg, out.q, out.headDim);
    return out;
}

Result<const model::TensorView*> routerKeyWeight(const RoutingConfig& cfg, const model::ModelFiles& files, int layer) {
    const std::string name = layerName(layer, "router_k");
    const model::TensorView* w = files.tensors().find(name);
    if (!w) return Status(ErrorCode::NotFound, "router tensor " + name);
    const size_t width = cfg.nRouteHeads * cfg.headDim, hidden = static_cast<size_t>(files.config().hiddenSize);
    if (w->nRows() != width || w->rowLength() != hidden)
        return Status(ErrorCode::Mismatch, name + " has the wrong shape for " + std::to_string(width) + " x " +
                                               std::to_string(hidden));
    return w;
}

Result<std::vector<float>> routingKeyRows(const RoutingConfig& cfg, const model::ModelFiles& files,
                                          const engine::LayerTensors& layer) {
    const size_t width = cfg.nRouteHeads * cfg.headDim;
    std::vector<float> rows(layer.nTokens * width);
    if (!cfg.decoupled) {
        std::copy_n(layer.k, rows.size(), rows.data());
        return rows;
    }
    const std::string name = layerName(layer.layer, "router_k");
    const model::TensorView* w = files.tensors().find(name);
    if (!w) return Status(ErrorCode::NotFound, "router tensor " + name);
    const size_t hidden = static_cast<size_t>(files.config().hiddenSize);
    if (w->nRows() != width || w->rowLength() != hidden)
        return Status(ErrorCode::Mismatch, name + " has the wrong shape for " + std::to_string(width) + " x " +
                                               std::to_string(hidden));
    for (size_t t = 0; t < layer.nTokens; ++t) project(*w, layer.hiddenNormed + t * hidden, rows.data() + t * width);
    return rows;
}

std::vector<ScoredDocument> selectTop(std::span<const float> scores, std::span<const uint64_t> ids, size_t k) {
    std::vector<ScoredDocument> all;
    for (size_t i = 0; i < scores.size(); ++i) {
        const float s = scores[i];
        if (std::isnan(s) || s == kNegInf) continue;
        all.push_back({ids.empty() ? i : ids[i], static_cast<uint32_t>(i), s});
    }
    const size_t n = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), better);
    all.resize(n);
    return all;
}

Router::Router(size_t nThreads) : m_team(std::make_unique<engine::ComputeThreads>(nThreads)) {}
Router::~Router() = default;

Result<std::vector<float>> Router::scoreDocuments(const RoutingConfig& cfg, const RoutingQueries& queries,
                                                  const RouteKeys& keys, const RouteOptions& options) {
    using model::DType;
    if (keys.dtype != DType::F32 && keys.dtype != DType::BF16)
        return Status(ErrorCode::InvalidArgument, "routing keys must be f32 or bf16, not " + std::string(model::dtypeName(keys.dtype)));
    if (queries.nTokens == 0 || queries.q.size() != queries.nTokens * queries.nHeads * queries.headDim)
        return Status(ErrorCode::InvalidArgument, "no routing-query token, or query rows of the wrong size");
    if (keys.nHeads == 0 || queries.nHeads % keys.nHeads != 0 || queries.headDim != keys.headDim)
        return Status(ErrorCode::InvalidArgument, "query heads " + std::to_string(queries.nHeads) + " x " +
                                                      std::to_string(queries.headDim) + " do not map onto key heads " +
                                                      std::to_string(keys.nHeads) + " x " + std::to_string(keys.headDim));
    const size_t elemBytes = keys.dtype == DType::F32 ? 4 : 2;
    const size_t D = keys.headDim;
    if (keys.data.size() != keys.nChunks * keys.nHeads * D * elemBytes)
        return Status(ErrorCode::InvalidArgument, "routing keys hold " + std::to_string(keys.data.size()) + " bytes, expected " +
                                                      std::to_string(keys.nChunks * keys.nHeads * D * elemBytes));
    const size_t nDocs = keys.nDocs();
    if (nDocs > 0 && (keys.chunkOffsets.front() != 0 || keys.chunkOffsets.back() != keys.nChunks ||
                      !std::is_sorted(keys.chunkOffsets.begin(), keys.chunkOffsets.end())))
        return Status(ErrorCode::InvalidArgument, "document table does not cover the chunks 0.." + std::to_string(keys.nChunks) + " in order");
    if (!keys.docIds.empty() && keys.docIds.size() != nDocs)
        return Status(ErrorCode::InvalidArgument, "document ids: " + std::to_string(keys.docIds.size()) + " for " + std::to_string(nDocs) + " documents");
    if (!options.allowed.empty() && options.allowed.size() != nDocs)
        return Status(ErrorCode::InvalidArgument, "candidate filter has " + std::to_string(options.allowed.size()) +
                                                      " entries for " + std::to_string(nDocs) + " documents");

    // Tiles: ranges of whole documents with at least tileChunks chunks (the last may be smaller).
    std::vector<size_t> tileStart{0};
    const size_t tileChunks = std::max<size_t>(options.tileChunks, 1);
    size_t acc = 0;
    for (size_t d = 0; d < nDocs; ++d) {
        acc += keys.chunkOffsets[d + 1] - keys.chunkOffsets[d];
        if (acc >= tileChunks && d + 1 < nDocs) {
            tileStart.push_back(d + 1);
            acc = 0;
        }
    }
    tileStart.push_back(nDocs);
    const size_t nTiles = tileStart.size() - 1;

    std::vector<float> scores(nDocs, kNegInf);
    const size_t nQ = queries.nTokens, H = queries.nHeads, group = queries.nHeads / keys.nHeads;
    const size_t keyRowBytes = D * elemBytes;
    const size_t chunkBytes = keys.nHeads * keyRowBytes;
    const float invH = 1.0f / static_cast<float>(H);
    // Head mean is linear: fold each KV group's query heads once (exact in real arithmetic; f32 here).
    const size_t G = keys.nHeads;
    std::vector<float> folded;
    if (cfg.headReduce == HeadReduce::Mean) {
        folded.assign(nQ * G * D, 0.0f);
        for (size_t t = 0; t < nQ; ++t)
            for (size_t h = 0; h < H; ++h) {
                const float* src = queries.q.data() + (t * H + h) * D;
                float* dst = folded.data() + (t * G + h / group) * D;
                for (size_t i = 0; i < D; ++i) dst[i] += src[i];
            }
    }
    std::vector<std::vector<float>> rowScratch(m_team->size(), std::vector<float>(nQ));
    // Head-mean branch: blocks of kScanBlock chunk rows converted to f32 once and scored against every
    // query token by one sgemm (S = K̄ᴿ_block · foldedᵀ): the dot-per-token loop re-converted each
    // chunk nQ times and ran at a fraction of the FMA rate. Each S element is one dot product over
    // G·D in the kernel's fixed order whatever the block's other rows, so scores still do not depend
    // on tiles or threads (tst_router checks it).
    constexpr size_t kScanBlock = 64;
    const bool blocked = cfg.headReduce == HeadReduce::Mean;
    std::vector<std::vector<float>> blockKeys(blocked ? m_team->size() : 0), blockScores(blocked ? m_team->size() : 0);
    for (size_t i = 0; i < blockKeys.size(); ++i) {
        blockKeys[i].resize(kScanBlock * G * D);
        blockScores[i].resize(kScanBlock * nQ);
    }
    std::atomic<bool> cancelled{false};

    std::vector<double> chunkSums(blocked && cfg.chunkReduce == ChunkReduce::Mean ? nDocs : 0, 0.0);
    const size_t width = G * D;

    m_team->parallelFor(nTiles, [&](size_t begin, size_t end, size_t thread) {
        float* a = rowScratch[thread].data();
        for (size_t tile = begin; tile < end; ++tile) {
            if (options.cancel && options.cancel->isCancelled()) {
                cancelled = true;
                return;
            }
            if (blocked) {
                // The tile's chunks in blocks of kScanBlock rows aligned on global chunk indices
                // (a demo document is ~6 chunks, far too few rows for an efficient product): each
                // chunk is always scored at the same row of the same block shape, whatever the tiles
                // and threads, so its score is bit-identical for every tiling (a block shared by two
                // tiles is computed by both; each folds only its own rows).
                float* kb = blockKeys[thread].data();
                float* sb = blockScores[thread].data();
                const size_t d0 = tileStart[tile], d1 = tileStart[tile + 1];
                if (d0 == d1) continue;   // no documents at all
                const size_t C0 = keys.chunkOffsets[d0], C1 = keys.chunkOffsets[d1];
                size_t d = d0;   // the document of chunk c, advanced as c grows
                for (size_t b0 = C0 - C0 % kScanBlock; b0 < C1; b0 += kScanBlock) {
                    const size_t b1 = std::min(b0 + kScanBlock, keys.nChunks);
                    const size_t lo = std::max(b0, C0), hi = std::min(b1, C1);
                    while (keys.chunkOffsets[d + 1] <= lo) ++d;
                    bool any = options.allowed.empty();
                    for (size_t e = d; !any && e < d1 && keys.chunkOffsets[e] < hi; ++e) any = options.allowed[e] != 0;
                    if (!any) continue;
                    // Converted even for f32 keys: a mapped section promises no float alignment.
                    model::dequantizeRow(keys.dtype, keys.data.data() + b0 * chunkBytes, kb, (b1 - b0) * width);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(b1 - b0), static_cast<int>(nQ),
                                static_cast<int>(width), invH, kb, static_cast<int>(width), folded.data(), static_cast<int>(width),
                                0.0f, sb, static_cast<int>(nQ));
                    for (size_t c = lo; c < hi; ++c) {
                        while (keys.chunkOffsets[d + 1] <= c) ++d;
                        if (!options.allowed.empty() && !options.allowed[d]) continue;
                        const float* row = sb + (c - b0) * nQ;
                        float sc = 0;
                        switch (cfg.queryReduce) {
                        case QueryReduce::Max: sc = *std::max_element(row, row + nQ); break;
                        case QueryReduce::Mean: {
                            float sum = 0;
                            for (size_t t = 0; t < nQ; ++t) sum += row[t];
                            sc = sum / static_cast<float>(nQ);
                            break;
                        }
                        case QueryReduce::Last: sc = row[nQ - 1]; break;
                        }
                        if (cfg.chunkReduce == ChunkReduce::Max) scores[d] = std::max(scores[d], sc);
                        else chunkSums[d] += sc;
                    }
                }
                if (cfg.chunkReduce == ChunkReduce::Mean)
                    for (size_t e = d0; e < d1; ++e) {
                        const size_t n = keys.chunkOffsets[e + 1] - keys.chunkOffsets[e];
                        if (n && (options.allowed.empty() || options.allowed[e]))
                            scores[e] = static_cast<float>(chunkSums[e] / static_cast<double>(n));
                    }
                continue;
            }
            for (size_t d = tileStart[tile]; d < tileStart[tile + 1]; ++d) {
                if (!options.allowed.empty() && !options.allowed[d]) continue;
                const size_t c0 = keys.chunkOffsets[d], c1 = keys.chunkOffsets[d + 1];
                if (c0 == c1) continue;   // an empty document is not a candidate
                float docScore = kNegInf;
                double docSum = 0;
                auto reduceChunk = [&](const float* row) {
                    float sc = 0;
                    switch (cfg.queryReduce) {
                    case QueryReduce::Max: sc = *std::max_element(row, row + nQ); break;
                    case QueryReduce::Mean: {
                        float sum = 0;
                        for (size_t t = 0; t < nQ; ++t) sum += row[t];
                        sc = sum / static_cast<float>(nQ);
                        break;
                    }
                    case QueryReduce::Last: sc = row[nQ - 1]; break;
                    }
                    if (cfg.chunkReduce == ChunkReduce::Max) docScore = std::max(docScore, sc);
                    else docSum += sc;
                };
                for (size_t c = c0; c < c1; ++c) {
                    const std::byte* chunk = keys.data.data() + c * chunkBytes;
                    // a[t] = max over h of q_t[h] · K̄ᴿ_c[h / group]  (GQA: msa_service.py:1100)
                    for (size_t t = 0; t < nQ; ++t) {
                        const float* qt = queries.q.data() + t * H * D;
                        float r = headReduceInit(cfg.headReduce);
                        for (size_t h = 0; h < H; ++h)
                            r = std::max(r, model::dotRow(keys.dtype, chunk + (h / group) * keyRowBytes, qt + h * D, D));
                        a[t] = r;
                    }
                    reduceChunk(a);
                }
                scores[d] = cfg.chunkReduce == ChunkReduce::Max ? docScore
                                                                : static_cast<float>(docSum / static_cast<double>(c1 - c0));
            }
        }
    });
    if (cancelled) return Status(ErrorCode::Cancelled, "routing scan cancelled");
    return scores;
}

Result<RouteResult> Router::route(const RoutingConfig& cfg, const RoutingQueries& queries, const RouteKeys& keys,
                                  const RouteOptions& options) {
    MSA_ASSIGN_OR_RETURN(std::vector<float> scores, scoreDocuments(cfg, queries, keys, options));
    RouteResult result;
    result.layer = queries.layer;
    const size_t nTop = std::max(options.topK, options.topN);
    result.top = selectTop(scores, keys.docIds, nTop);
    result.selected.assign(result.top.begin(), result.top.begin() + static_cast<std::ptrdiff_t>(std::min(options.topK, result.top.size())));
    result.top.resize(std::min(result.top.size(), std::max(options.topN, options.topK)));
    for (size_t d = 0; d < keys.nDocs(); ++d)
        if (scores[d] != kNegInf && !std::isnan(scores[d])) {
            ++result.nCandidates;
            result.nChunksScanned += keys.chunkOffsets[d + 1] - keys.chunkOffsets[d];
        }
    return result;
}

}  // namespace msa::memory

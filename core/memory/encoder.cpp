#include "core/memory/encoder.h"

#include "core/memory/pooling.h"

#include <numeric>

namespace msa::memory {

namespace {
Status encodePooled(engine::Session& session, const model::ModelFiles& files, const RoutingConfig& cfg,
                    std::span<const std::span<const int32_t>> docs, std::span<EncodedDocument> out, const CancelToken* cancel);

Result<bool> usePooledPath(const engine::Session& session, EncodePath path) {
    if (path == EncodePath::Pooled && !session.supportsPooling())
        return Status(ErrorCode::InvalidArgument, "the session's backend cannot pool chunks itself");
    return path == EncodePath::Pooled || (path == EncodePath::Auto && session.supportsPooling());
}
}  // namespace

Result<EncodedDocument> encodeDocument(engine::Session& session, const model::ModelFiles& files, const RoutingConfig& cfg,
                                       std::span<const int32_t> tokens, const CancelToken* cancel, EncodePath path) {
    if (tokens.empty()) return Status(ErrorCode::InvalidArgument, "empty memory document");
    if (cfg.layers.empty()) return Status(ErrorCode::InvalidArgument, "no routing layer");
    MSA_ASSIGN_OR_RETURN(const bool pooled, usePooledPath(session, path));
    if (pooled) {
        std::vector<EncodedDocument> one(1);
        const std::span<const int32_t> docs[1] = {tokens};
        MSA_RETURN_IF_ERROR(encodePooled(session, files, cfg, docs, one, cancel));
        return std::move(one[0]);
    }
    EncodedDocument out;
    out.nTokens = tokens.size();
    const size_t kvWidth = cfg.nRouteHeads * cfg.headDim;
    Status hookStatus;
    engine::ForwardOptions opt;
    opt.computeLogits = false;
    opt.stopAfterLayer = cfg.layers.back();
    opt.cancel = cancel;
    opt.layerHook = [&](const engine::LayerTensors& lt) {
        if (!hookStatus.isOk() || !cfg.isRoutingLayer(lt.layer)) return;
        PooledLayer p;
        p.layer = lt.layer;
        p.nChunks = chunkCount(lt.nTokens, cfg.chunkSize);
        // K after k_norm and RoPE at doc-local positions, raw V (msa-spec §3).
        p.k = meanPoolChunks({lt.k, lt.nTokens * kvWidth}, lt.nTokens, kvWidth, cfg.chunkSize);
        p.v = meanPoolChunks({lt.v, lt.nTokens * kvWidth}, lt.nTokens, kvWidth, cfg.chunkSize);
        if (cfg.decoupled) {
            auto rows = routingKeyRows(cfg, files, lt);
            if (!rows.ok()) {
                hookStatus = rows.status();
                return;
            }
            p.routeKey = meanPoolChunks(*rows, lt.nTokens, kvWidth, cfg.chunkSize);
        } else {
            p.routeKey = p.k;   // training-free: the pooled attention key itself (msa-spec §2.2, §2.9)
        }
        if (cfg.normalize) l2NormalizeRows(p.routeKey.data(), p.nChunks * cfg.nRouteHeads, cfg.headDim);
        out.layers.push_back(std::move(p));
    };
    std::vector<int32_t> positions(tokens.size());
    std::iota(positions.begin(), positions.end(), 0);
    session.truncate(0);
    auto r = session.forward(tokens, positions, opt);
    session.truncate(0);
    if (!r.ok()) return r.status();
    MSA_RETURN_IF_ERROR(hookStatus);
    if (out.layers.size() != cfg.layers.size())
        return Status(ErrorCode::Internal, "the forward reported " + std::to_string(out.layers.size()) + " of " +
                                               std::to_string(cfg.layers.size()) + " routing layers");
    return out;
}

namespace {

// Runs a batch's encoding forward on an emptied session (emptied again afterwards), then checks the
// hook's status (read after the forward: the hook sets it) and that every document received one pooled
// layer per routing layer.
Status runBatchForward(engine::Session& session, const RoutingConfig& cfg, std::span<const int32_t> tokens,
                       std::span<const int32_t> positions, const engine::ForwardOptions& opt, const Status& hookStatus,
                       std::span<const EncodedDocument> out) {
    session.truncate(0);
    auto r = session.forward(tokens, positions, opt);
    session.truncate(0);
    if (!r.ok()) return r.status();
    MSA_RETURN_IF_ERROR(hookStatus);
    for (const EncodedDocument& e : out)
        if (e.layers.size() != cfg.layers.size())
            return Status(ErrorCode::Internal, "the forward reported " + std::to_string(e.layers.size()) + " of " +
                                                   std::to_string(cfg.layers.size()) + " routing layers");
    return Status::ok();
}

// Runs one packed forward over `docs` (one segment each) and pools every document's rows.
Status encodePacked(engine::Session& session, const model::ModelFiles& files, const RoutingConfig& cfg,
                    std::span<const std::span<const int32_t>> docs, std::span<EncodedDocument> out,
                    const CancelToken* cancel) {
    const size_t kvWidth = cfg.nRouteHeads * cfg.headDim;
    std::vector<int32_t> tokens, positions;
    std::vector<uint32_t> segments;
    std::vector<size_t> starts;
    for (size_t d = 0; d < docs.size(); ++d) {
        starts.push_back(tokens.size());
        tokens.insert(tokens.end(), docs[d].begin(), docs[d].end());
        for (size_t i = 0; i < docs[d].size(); ++i) positions.push_back(static_cast<int32_t>(i));
        segments.push_back(static_cast<uint32_t>(docs[d].size()));
        out[d].nTokens = docs[d].size();
        out[d].layers.clear();
    }
    Status hookStatus;
    engine::ForwardOptions opt;
    opt.computeLogits = false;
    opt.stopAfterLayer = cfg.layers.back();
    opt.cancel = cancel;
    if (docs.size() > 1) opt.segments = segments;
    opt.layerHook = [&](const engine::LayerTensors& lt) {
        if (!hookStatus.isOk() || !cfg.isRoutingLayer(lt.layer)) return;
        // Routing-key rows for the whole batch in one product (decoupled: router_k_proj).
        std::vector<float> routeRows;
        if (cfg.decoupled) {
            auto rows = routingKeyRows(cfg, files, lt);
            if (!rows.ok()) {
                hookStatus = rows.status();
                return;
            }
            routeRows = std::move(rows).value();
        }
        for (size_t d = 0; d < docs.size(); ++d) {
            const size_t n = docs[d].size(), off = starts[d] * kvWidth;
            PooledLayer p;
            p.layer = lt.layer;
            p.nChunks = chunkCount(n, cfg.chunkSize);
            // K after k_norm and RoPE at doc-local positions, raw V (msa-spec §3).
            p.k = meanPoolChunks({lt.k + off, n * kvWidth}, n, kvWidth, cfg.chunkSize);
            p.v = meanPoolChunks({lt.v + off, n * kvWidth}, n, kvWidth, cfg.chunkSize);
            if (cfg.decoupled)
                p.routeKey = meanPoolChunks({routeRows.data() + off, n * kvWidth}, n, kvWidth, cfg.chunkSize);
            else
                p.routeKey = p.k;   // training-free: the pooled attention key itself (msa-spec §2.2, §2.9)
            if (cfg.normalize) l2NormalizeRows(p.routeKey.data(), p.nChunks * cfg.nRouteHeads, cfg.headDim);
            out[d].layers.push_back(std::move(p));
        }
    };
    return runBatchForward(session, cfg, tokens, positions, opt, hookStatus, out);
}

// The same as encodePacked, through the engine's pooled hook: the engine pools every segment's
// chunks where its tensors live and hands over only [chunks][nKv][D] rows per routing layer.
Status encodePooled(engine::Session& session, const model::ModelFiles& files, const RoutingConfig& cfg,
                    std::span<const std::span<const int32_t>> docs, std::span<EncodedDocument> out, const CancelToken* cancel) {
    const size_t kvWidth = cfg.nRouteHeads * cfg.headDim;
    engine::PoolingOptions pooling;
    pooling.chunkSize = cfg.chunkSize;
    pooling.layers = cfg.layers;
    if (cfg.decoupled)
        for (int l : cfg.layers) {
            MSA_ASSIGN_OR_RETURN(const model::TensorView* w, routerKeyWeight(cfg, files, l));
            pooling.routeKeyProj.push_back(w);
        }
    std::vector<int32_t> tokens, positions;
    std::vector<uint32_t> segments;
    std::vector<size_t> firstChunk;   // of each document in the forward's chunk order
    size_t nChunks = 0;
    for (size_t d = 0; d < docs.size(); ++d) {
        tokens.insert(tokens.end(), docs[d].begin(), docs[d].end());
        for (size_t i = 0; i < docs[d].size(); ++i) positions.push_back(static_cast<int32_t>(i));
        segments.push_back(static_cast<uint32_t>(docs[d].size()));
        firstChunk.push_back(nChunks);
        nChunks += chunkCount(docs[d].size(), cfg.chunkSize);
        out[d].nTokens = docs[d].size();
        out[d].layers.clear();
    }
    Status hookStatus;
    engine::ForwardOptions opt;
    opt.computeLogits = false;
    opt.stopAfterLayer = cfg.layers.back();
    opt.cancel = cancel;
    if (docs.size() > 1) opt.segments = segments;
    opt.pooling = &pooling;
    opt.pooledHook = [&](const engine::PooledRows& rows) {
        if (!hookStatus.isOk()) return;
        if (rows.nChunks != nChunks) {
            hookStatus = Status(ErrorCode::Internal, "the engine pooled " + std::to_string(rows.nChunks) + " chunks, " +
                                                         std::to_string(nChunks) + " expected");
            return;
        }
        for (size_t d = 0; d < docs.size(); ++d) {
            const size_t c0 = firstChunk[d] * kvWidth;
            PooledLayer p;
            p.layer = rows.layer;
            p.nChunks = chunkCount(docs[d].size(), cfg.chunkSize);
            const size_t len = p.nChunks * kvWidth;
            p.k.assign(rows.k + c0, rows.k + c0 + len);
            p.v.assign(rows.v + c0, rows.v + c0 + len);
            // Training-free: the pooled attention key itself (msa-spec §2.2, §2.9).
            const float* rk = cfg.decoupled ? rows.routeKey : rows.k;
            p.routeKey.assign(rk + c0, rk + c0 + len);
            if (cfg.normalize) l2NormalizeRows(p.routeKey.data(), p.nChunks * cfg.nRouteHeads, cfg.headDim);
            out[d].layers.push_back(std::move(p));
        }
    };
    return runBatchForward(session, cfg, tokens, positions, opt, hookStatus, out);
}

}  // namespace

Result<std::vector<EncodedDocument>> encodeDocuments(engine::Session& session, const model::ModelFiles& files,
                                                     const RoutingConfig& cfg,
                                                     std::span<const std::span<const int32_t>> documents,
                                                     size_t tokenBudget, const CancelToken* cancel, EncodePath path) {
    if (cfg.layers.empty()) return Status(ErrorCode::InvalidArgument, "no routing layer");
    MSA_ASSIGN_OR_RETURN(const bool pooled, usePooledPath(session, path));
    for (size_t d = 0; d < documents.size(); ++d)
        if (documents[d].empty())
            return Status(ErrorCode::InvalidArgument, "empty memory document (index " + std::to_string(d) + ")");
    std::vector<EncodedDocument> out(documents.size());
    size_t begin = 0;
    while (begin < documents.size()) {
        size_t end = begin + 1, total = documents[begin].size();
        while (end < documents.size() && total + documents[end].size() <= tokenBudget) total += documents[end++].size();
        const auto batch = documents.subspan(begin, end - begin);
        const auto dst = std::span<EncodedDocument>(out).subspan(begin, end - begin);
        MSA_RETURN_IF_ERROR(pooled ? encodePooled(session, files, cfg, batch, dst, cancel)
                                   : encodePacked(session, files, cfg, batch, dst, cancel));
        begin = end;
    }
    return out;
}

Result<std::vector<RoutingQueries>> collectRoutingQueries(engine::Session& session, const model::ModelFiles& files,
                                                          const RoutingConfig& cfg, std::span<const int32_t> head,
                                                          std::span<const int32_t> prompt, std::span<const uint8_t> routeMask,
                                                          int32_t queryStart, const CancelToken* cancel) {
    if (prompt.empty() || routeMask.size() != prompt.size())
        return Status(ErrorCode::InvalidArgument, "routing mask has " + std::to_string(routeMask.size()) + " entries for " +
                                                      std::to_string(prompt.size()) + " prompt tokens");
    if (cfg.layers.empty()) return Status(ErrorCode::InvalidArgument, "no routing layer");
    session.truncate(0);
    engine::ForwardOptions opt;
    opt.computeLogits = false;
    opt.stopAfterLayer = cfg.layers.back();
    opt.cancel = cancel;
    if (!head.empty()) {
        std::vector<int32_t> headPos(head.size());
        std::iota(headPos.begin(), headPos.end(), 0);
        auto r = session.forward(head, headPos, opt);
        if (!r.ok()) {
            session.truncate(0);
            return r.status();
        }
    }
    std::vector<RoutingQueries> out;
    Status hookStatus;
    opt.layerHook = [&](const engine::LayerTensors& lt) {
        if (!hookStatus.isOk() || !cfg.isRoutingLayer(lt.layer)) return;
        auto q = routingQueriesFromLayer(cfg, files, lt, routeMask);
        if (!q.ok()) hookStatus = q.status();
        else out.push_back(std::move(q).value());
    };
    std::vector<int32_t> positions(prompt.size());
    std::iota(positions.begin(), positions.end(), queryStart);
    auto r = session.forward(prompt, positions, opt);
    session.truncate(0);
    if (!r.ok()) return r.status();
    MSA_RETURN_IF_ERROR(hookStatus);
    return out;
}

}  // namespace msa::memory

#include "core/engine/chunk_pool.h"

#include <algorithm>
#include <string>

namespace msa::engine {

std::vector<ChunkSpan> segmentChunks(std::span<const uint32_t> segments, size_t nTokens, size_t chunkSize) {
    chunkSize = std::max<size_t>(chunkSize, 1);
    std::vector<ChunkSpan> out;
    const uint32_t whole[1] = {static_cast<uint32_t>(nTokens)};
    const std::span<const uint32_t> segs = segments.empty() ? std::span<const uint32_t>(whole, nTokens ? 1 : 0) : segments;
    size_t start = 0;
    for (uint32_t len : segs) {
        for (size_t c = 0; c < len; c += chunkSize)
            out.push_back({static_cast<uint32_t>(start + c), static_cast<uint32_t>(std::min(chunkSize, len - c))});
        start += len;
    }
    return out;
}

void poolChunkRows(const float* rows, size_t width, std::span<const ChunkSpan> chunks, size_t first, size_t last, float* out) {
    for (size_t c = first; c < last; ++c) {
        float* dst = out + (c - first) * width;
        std::fill(dst, dst + width, 0.0f);
        const ChunkSpan s = chunks[c];
        for (size_t t = s.start; t < size_t(s.start) + s.len; ++t) {
            const float* src = rows + t * width;
            for (size_t i = 0; i < width; ++i) dst[i] += src[i];
        }
        const float count = static_cast<float>(s.len);
        for (size_t i = 0; i < width; ++i) dst[i] /= count;
    }
}

Status validatePooling(const PoolingOptions& p, size_t nLayers, size_t hidden, size_t kvDim) {
    if (p.chunkSize == 0) return Status(ErrorCode::InvalidArgument, "forward(): pooling needs a chunk size > 0");
    for (size_t i = 0; i < p.layers.size(); ++i) {
        if (p.layers[i] < 0 || static_cast<size_t>(p.layers[i]) >= nLayers)
            return Status(ErrorCode::InvalidArgument, "forward(): pooling layer " + std::to_string(p.layers[i]) +
                                                          " is outside the model's " + std::to_string(nLayers) + " layers");
        if (i && p.layers[i] <= p.layers[i - 1])
            return Status(ErrorCode::InvalidArgument, "forward(): pooling layers must be ascending");
    }
    if (!p.routeKeyProj.empty() && p.routeKeyProj.size() != p.layers.size())
        return Status(ErrorCode::InvalidArgument, "forward(): " + std::to_string(p.routeKeyProj.size()) +
                                                      " routing-key projections for " + std::to_string(p.layers.size()) +
                                                      " pooled layers");
    for (const model::TensorView* w : p.routeKeyProj)
        if (w && (w->nRows() != kvDim || w->rowLength() != hidden))
            return Status(ErrorCode::Mismatch, "forward(): routing-key projection '" + w->name + "' is not " +
                                                   std::to_string(kvDim) + " x " + std::to_string(hidden));
    return Status::ok();
}

}  // namespace msa::engine

// chunk_pool.h: the segment-aware chunk plan and the reference mean pooling behind
// ForwardOptions::pooling (backend.h, msa-spec §3), shared by every backend: the CPU backend pools
// with poolChunkRows(); the CUDA backend uploads the same segmentChunks() plan and its kernel sums in
// the same order, so both produce the bits memory::meanPoolChunks() produces for one document.
//
// Ownership/threads: pure functions on caller-owned memory; call from any thread.
//
// Usage:
//     std::vector<ChunkSpan> plan = segmentChunks(opt.segments, nTokens, pooling.chunkSize);
//     poolChunkRows(k, kvDim, plan, 0, plan.size(), pooledK.data());
//
// Failure codes: validatePooling(): InvalidArgument (chunk size 0, layers unsorted or out of range,
// routeKeyProj count), Mismatch (a routeKeyProj of the wrong shape).
#pragma once

#include "core/engine/backend.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace msa::engine {

// Tokens [start, start + len) of the forward form one chunk (len >= 1).
struct ChunkSpan {
    uint32_t start = 0;
    uint32_t len = 0;
};

// Chunks of every segment in order (no segments: one segment of nTokens); a chunk never crosses a
// segment and the last chunk of a segment holds its remainder. chunkSize 0 is treated as 1.
std::vector<ChunkSpan> segmentChunks(std::span<const uint32_t> segments, size_t nTokens, size_t chunkSize);

// out[c - first] = mean of rows[t] over chunk c's tokens, for chunks [first, last): f32 sum in token
// order, then one division by the length (memory::meanPoolChunks' arithmetic).
void poolChunkRows(const float* rows, size_t width, std::span<const ChunkSpan> chunks, size_t first, size_t last, float* out);

// The checks every backend applies to ForwardOptions::pooling before running a forward.
Status validatePooling(const PoolingOptions& pooling, size_t nLayers, size_t hidden, size_t kvDim);

}  // namespace msa::engine

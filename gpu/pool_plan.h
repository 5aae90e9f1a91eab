// pool_plan.h: the index arithmetic of the CUDA chunk-pooling kernel (gpu/pool_kernels.cu), kept free
// of CUDA headers so that a plain C++ unit test (tests/gpu/tst_pool_plan.cpp, label unit) runs the very
// expressions the kernel runs (nvcc --expt-relaxed-constexpr lets device code call these constexpr
// functions) and compares them with the CPU backend's engine::poolChunkRows bit for bit.
//
// One kernel thread computes one pooled element; flat index i runs over
//   [nChunks][kvDim] K̄ | [nChunks][kvDim] V̄ | [nChunks][xDim] x̄    (x̄ only when xDim > 0).
// K̄ and V̄ land in the layer's output block (which a GEMM completes with K̄ᴿ = x̄·Wᵀ right after them,
// so that one copy moves the layer's rows to the host); x̄ lands in a separate scratch (the GEMM's
// input must not alias its output): see pool_kernels.h.
//
// Thread affinity: none (pure functions). Failure: none (the caller validated the shapes).
//
// Usage:
//     const PoolElement e = poolElement(flatIndex, nChunks, kvDim, xDim);
//     out[flatIndex] = poolMean(e.region == 0 ? k : e.region == 1 ? v : x, e.width, chunks[e.chunk], e.col);
#pragma once

#include <cstddef>
#include <cstdint>

namespace msa::gpu {

constexpr uint64_t poolOutputFloats(uint64_t nChunks, uint64_t kvDim, uint64_t xDim) { return nChunks * (2 * kvDim + xDim); }

struct PoolElement {
    uint32_t region = 0;   // 0: K, 1: V, 2: x̃ (the routing-key source)
    uint64_t chunk = 0;
    uint64_t col = 0;      // column inside the source row
    uint64_t width = 0;    // the source's row width
};

// Which pooled element flat index `i` of the layer's output block is.
constexpr PoolElement poolElement(uint64_t i, uint64_t nChunks, uint64_t kvDim, uint64_t xDim) {
    PoolElement e;
    const uint64_t kvBlock = nChunks * kvDim;
    if (i < kvBlock) {
        e.region = 0;
    } else if (i < 2 * kvBlock) {
        e.region = 1;
        i -= kvBlock;
    } else {
        e.region = 2;
        i -= 2 * kvBlock;
    }
    e.width = e.region == 2 ? xDim : kvDim;
    e.chunk = i / e.width;
    e.col = i % e.width;
    return e;
}

// The mean of column `col` over rows [start, start + len) of a [tokens][width] source: an f32 sum in
// token order, then one division (engine::poolChunkRows' arithmetic: equal bits for equal inputs).
constexpr float poolMean(const float* rows, uint64_t width, uint32_t start, uint32_t len, uint64_t col) {
    float acc = 0.0f;
    for (uint64_t t = start; t < uint64_t(start) + len; ++t) acc += rows[t * width + col];
    return acc / static_cast<float>(len);
}

}  // namespace msa::gpu

// launch_plan.h: the host-side arithmetic of the CUDA backend that needs no GPU, kept apart so that a
// plain C++ unit test (tests/gpu/tst_gpu_plan.cpp, label unit) checks it on every CI run:
//   - f32 <-> bf16 conversion with round-to-nearest-even (weights are converted on the host while
//     they are uploaded; the device's __float2bfloat16_rn rounds the same way),
//   - RoPE inverse frequencies (computed exactly as cpu::rope does, uploaded once per model),
//   - the visible key range of a query (prefix rows, causal, bidirectional, packed segments), shared
//     by the flash-attention kernel and its test,
//   - the split-K plan of flash attention / flash-decoding (how many key splits, workspace size),
//   - the KV-cache growth policy (the CPU backend's: doubling from 256, capped),
//   - the (value, index) order of the device argmax reduction,
//   - the row-major linear layer as a column-major GEMM (the cuBLAS call's arguments).
//
// Everything here is constexpr or inline, includes no CUDA header and allocates nothing except
// ropeInverseFrequencies(); the kernels call the constexpr functions from device code (nvcc's
// --expt-relaxed-constexpr), so host tests and kernels evaluate the same expressions.
//
// Thread affinity: none (pure functions). Failure: none (callers validate shapes first).
//
// Usage:
//     AttentionPlan p = planAttention(nTokens, nHeads, nKv, maxCtx, smCount);
//     workspace.resize(p.workspaceFloats(headDim, nTokens, nHeads));
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace msa::gpu {

// ---- bf16 ----------------------------------------------------------------------------------------

inline uint16_t f32ToBf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0)
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);   // NaN stays a (quiet) NaN
    const uint32_t lsb = (bits >> 16) & 1u;
    bits += 0x7fffu + lsb;   // round to nearest, ties to even (overflow carries into the exponent: inf)
    return static_cast<uint16_t>(bits >> 16);
}

inline float bf16ToF32(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// ---- RoPE ----------------------------------------------------------------------------------------

// theta^(-2i/rotaryDim) for i < rotaryDim/2, in double then rounded to f32, as cpu::rope computes it.
inline std::vector<float> ropeInverseFrequencies(size_t rotaryDim, double theta) {
    std::vector<float> f(rotaryDim / 2);
    for (size_t i = 0; i < f.size(); ++i)
        f[i] = static_cast<float>(std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(rotaryDim)));
    return f;
}

// ---- attention masks -----------------------------------------------------------------------------

// Keys [lo, hi) of the layer's context (prefix rows, then cached local tokens, then this call's
// tokens) that query token i of this call sees.
//   base: context rows in front of this call's tokens (prefix rows + tokens already cached)
//   segStart: for packed segments, index (within the call) of the first token of i's segment; < 0
//             when the call is not packed. Packing requires base == 0 (checked by the session).
struct KeyRange {
    int lo = 0;
    int hi = 0;
};
constexpr KeyRange visibleKeys(int i, int base, int nCall, bool causal, int segStart) {
    if (segStart >= 0) return {segStart, i + 1};
    return {0, causal ? base + i + 1 : base + nCall};
}

// ---- flash attention launch plan -----------------------------------------------------------------

// One block computes kFlashRowsPerBlock query rows of one KV head (rows enumerate (token, head of the
// KV group) so the heads sharing a KV head share its K/V tiles), kFlashKeysPerTile keys at a time.
inline constexpr int kFlashRowsPerBlock = 16;
inline constexpr int kFlashKeysPerTile = 32;
// Splitting the keys (flash-decoding) pays only with enough keys per split to hide the combine.
inline constexpr int kFlashMinKeysPerSplit = 256;
inline constexpr int kFlashMaxSplits = 64;

constexpr int ceilDiv(long a, long b) { return static_cast<int>((a + b - 1) / b); }

// The keys [begin, end) that split `split` of `nSplits` handles out of [lo, hi): equal chunks rounded
// up to whole tiles, the last ones possibly empty.
constexpr KeyRange splitKeys(int lo, int hi, int nSplits, int split) {
    const int len = hi > lo ? hi - lo : 0;
    const int chunk = ceilDiv(ceilDiv(len, nSplits), kFlashKeysPerTile) * kFlashKeysPerTile;
    const int b = lo + split * chunk;
    const int e = b + chunk < hi ? b + chunk : hi;
    return {b < hi ? b : hi, e};
}

struct AttentionPlan {
    int rowTiles = 0;   // grid.x
    int nKvHeads = 0;   // grid.y
    int nSplits = 1;    // grid.z; > 1: partial results go to the workspace, then a combine kernel
    // Workspace floats for nSplits > 1: per split and (token, head) the unnormalised output (headDim)
    // plus the running max and sum.
    size_t workspaceFloats(size_t headDim, size_t nTokens, size_t nHeads) const {
        return nSplits > 1 ? static_cast<size_t>(nSplits) * nTokens * nHeads * (headDim + 2) : 0;
    }
};

// Splits the keys when the (row tile, KV head) blocks alone would leave the GPU idle: decode (one
// token, a handful of blocks) over a long context is the case flash-decoding exists for. maxCtx is
// the longest key range a query can see (the cache capacity for a captured decode graph, whose
// shape must not depend on the current length).
inline AttentionPlan planAttention(size_t nTokens, size_t nHeads, size_t nKvHeads, size_t maxCtx, int smCount) {
    AttentionPlan p;
    const size_t group = nKvHeads ? nHeads / nKvHeads : 1;
    p.rowTiles = ceilDiv(static_cast<long>(nTokens * group), kFlashRowsPerBlock);
    p.nKvHeads = static_cast<int>(nKvHeads);
    const long blocks = static_cast<long>(p.rowTiles) * p.nKvHeads;
    const long target = 2L * std::max(smCount, 1);
    if (blocks >= target || maxCtx < 2 * static_cast<size_t>(kFlashMinKeysPerSplit)) return p;
    const int byOccupancy = ceilDiv(target, std::max(blocks, 1L));
    const int byKeys = static_cast<int>(maxCtx / kFlashMinKeysPerSplit);
    p.nSplits = std::max(1, std::min({byOccupancy, byKeys, kFlashMaxSplits}));
    return p;
}

// ---- GEMM mapping --------------------------------------------------------------------------------

// y[t][o] (row stride ldy) = sum_i x[t][i] * W[o][i] (+ beta * y) for a row-major weight W [outF × inF]
// and row-major activations x [nTok × inF], expressed for a column-major BLAS (cuBLAS): row-major W is
// column-major Wᵀ (inF × outF, ld inF), so Y (outF × nTok, ld ldy) = op(A) · B with A = W transposed,
// B = x (inF × nTok, ld inF). The unit test runs this mapping through OpenBLAS in column-major mode.
struct GemmShape {
    bool transA = true, transB = false;
    int m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
};
constexpr GemmShape linearGemm(size_t outF, size_t inF, size_t nTok, size_t ldy) {
    return {true, false, static_cast<int>(outF), static_cast<int>(nTok), static_cast<int>(inF), static_cast<int>(inF),
            static_cast<int>(inF), static_cast<int>(ldy)};
}

// ---- argmax reduction ----------------------------------------------------------------------------

// The order in which argmax_kernel reduces (value, index) pairs: a larger value wins, an equal value
// with a lower index wins (cpu::argmax keeps the first maximum), and kArgmaxNone marks a lane or warp
// that has seen no element yet (it loses to everything, also to -inf). The kernel and the host test
// of its reduction tree call this same function.
inline constexpr int kArgmaxNone = 0x7fffffff;
constexpr bool argmaxBetter(float v, int i, float bestV, int bestI) {
    return bestI == kArgmaxNone || (i != kArgmaxNone && (v > bestV || (v == bestV && i < bestI)));
}

// ---- KV cache ------------------------------------------------------------------------------------

// Rows per layer cache after growing to hold `needed` local tokens behind `maxPrefix` prefix rows:
// doubles from 256, never beyond maxTokens + maxPrefix (the CPU backend's policy, so both refuse and
// grow at the same points). Returns `current` when it is large enough.
constexpr size_t grownCapacity(size_t current, size_t needed, size_t maxTokens, size_t maxPrefix) {
    if (needed + maxPrefix <= current) return current;
    size_t cap = current ? current * 2 : 256;
    if (cap < needed + maxPrefix) cap = needed + maxPrefix;
    if (cap > maxTokens + maxPrefix) cap = maxTokens + maxPrefix;
    return cap;
}

}  // namespace msa::gpu

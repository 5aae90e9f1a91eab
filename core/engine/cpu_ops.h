// cpu_ops.h: the CPU reference operators of the transformer forward (f32 compute, f32 accumulation).
// The CUDA backend implements the same operations under the same names and argument order
// (msa::gpu::rmsNorm(..., stream)) so parity tests are mechanical (CONVENTIONS.md #4).
//
// All functions are pure over caller-owned buffers, allocate nothing, and are thread-safe on disjoint
// outputs; the forward pass splits work (rows, heads) across threads and calls them per range.
// Shapes are row-major; a "row" is one token.
#pragma once

#include <cstddef>
#include <cstdint>

namespace msa::cpu {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for nRows rows of `dim` values. In-place allowed.
void rmsNorm(const float* x, const float* weight, float* y, size_t nRows, size_t dim, float eps);

// How RoPE pairs the dimensions of a head. HF checkpoints (and GGUF Qwen2/Qwen3) rotate dimension i
// with i + headDim/2 ("NeoX" / rotate_half); GGUF Llama checkpoints have Q/K rows permuted at
// conversion so adjacent dimensions (2i, 2i+1) form the pairs ("normal").
enum class RopeStyle { NeoX, Adjacent };

// Rotates, in place, nTokens rows each holding nHeads heads of headDim values, token t at position
// positions[t] (positions are given, not assumed: document-wise RoPE restarts them per document).
// Frequencies: theta^(-2i/headDim) for pair i. Only the first `rotaryDim` dimensions rotate
// (rotaryDim == headDim for the supported architectures).
void rope(float* x, size_t nTokens, size_t nHeads, size_t headDim, size_t rotaryDim, const int32_t* positions,
          float theta, RopeStyle style);

// out[i] = silu(gate[i]) * up[i]. In-place on gate allowed.
void swiglu(const float* gate, const float* up, float* out, size_t n);

// Numerically stable softmax in place over n values (max subtracted; sums in f32).
void softmax(float* x, size_t n);

// Adds bias[c] to every row of x (nRows × nCols).
void addBias(float* x, const float* bias, size_t nRows, size_t nCols);

// x[i] += y[i]
void addInPlace(float* x, const float* y, size_t n);

// Index of the largest value; the lowest index wins ties (DESIGN.md §4 "Numerics").
size_t argmax(const float* x, size_t n);

// Causal grouped-query attention for one sequence over a context of nCtx key/value rows, of which the
// last nQuery rows belong to the queries themselves: query i (0-based) sees context rows
// [0, nCtx - nQuery + i]. Rows before that (a KV-cache prefix, or memory chunks placed in front) are
// visible to every query.
//   q:   nQuery × (nHeads × headDim)
//   k,v: per KV head a block of `kvStride` rows × headDim (row j of head g at (g*kvStride + j)*headDim)
//   out: nQuery × (nHeads × headDim)
//   scratch: at least nCtx floats (per calling thread)
// Heads [headBegin, headEnd) are computed, so threads can split by head. Query head h reads KV head
// h / (nHeads / nKvHeads). Scale is 1/sqrt(headDim).
void attention(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx,
               size_t nHeads, size_t nKvHeads, size_t headDim, size_t kvStride, size_t headBegin, size_t headEnd,
               float* scratch);

// The same attention computed with two sgemm calls per head and block of queries (S = Q·Kᵀ, softmax
// with the causal limit per row, O = P·V), for prefill and encoding where the scalar loop above is
// the bottleneck. Query blocks of kAttentionBlock rows only multiply the context they can see.
// scratch: at least attentionGemmScratch(nQuery, nCtx) floats per calling thread.
inline constexpr size_t kAttentionBlock = 128;
inline size_t attentionGemmScratch(size_t nQuery, size_t nCtx) { return (nQuery < kAttentionBlock ? nQuery : kAttentionBlock) * nCtx; }
void attentionGemm(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx, size_t nHeads,
                   size_t nKvHeads, size_t headDim, size_t kvStride, size_t headBegin, size_t headEnd, float* scratch);

// Block-diagonal causal attention over a packed batch: nSegments consecutive sequences of
// segments[s] query rows each, with no context in front (nCtx == nQuery == sum of segments); row i
// of segment s sees rows [start(s), start(s) + i] only. Blocks outside the diagonal are never
// computed. Each segment of at least gemmMinTokens rows runs attentionGemm(), shorter ones the direct
// loop, so every segment matches a separate forward of the same length bit for bit.
// scratch: at least segmentedAttentionScratch(segments, gemmMinTokens) floats per calling thread.
size_t segmentedAttentionScratch(const uint32_t* segments, size_t nSegments, size_t gemmMinTokens);
void segmentedAttention(const float* q, const float* k, const float* v, float* out, const uint32_t* segments,
                        size_t nSegments, size_t nHeads, size_t nKvHeads, size_t headDim, size_t kvStride,
                        size_t headBegin, size_t headEnd, size_t gemmMinTokens, float* scratch);

}  // namespace msa::cpu

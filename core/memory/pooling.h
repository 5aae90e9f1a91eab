// pooling.h: chunk-wise mean pooling of per-token rows (msa-spec §3) and the L2 normalisation the
// reference applies to pooled routing keys in its "INFONCE" branch (msa-spec §2.2).
//
// A wrapped document of n tokens is cut into C = ceil(n / P) chunks; chunk c covers tokens
// [cP, min((c+1)P, n)). Each pooled row is the mean of its chunk's token rows, summed in f32 and
// divided by the chunk's real length (no zero padding for the last partial chunk). The reference sums
// through a block-wide cumulative sum and differences (msa-spec §3, B9); we sum each chunk directly,
// which the spec asks for (at most about one bf16 ulp apart after the cast to bf16).
//
// Ownership/threads: pure functions on caller-owned memory; call from any thread.
//
// Usage:
//     std::vector<float> pooled = meanPoolChunks(rows, nTokens, nHeads * headDim, 64);
//     l2NormalizeRows(pooled.data(), pooled.size() / headDim, headDim);   // INFONCE branch only
//
// Failure codes: none (sizes are the caller's contract; chunkSize 0 is treated as 1).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace msa::memory {

inline constexpr size_t kDefaultChunkSize = 64;   // P (msa-spec §0, `pooling_kernel_size`)

// ceil(nTokens / chunkSize); 0 for an empty document.
size_t chunkCount(size_t nTokens, size_t chunkSize);

// rows: nTokens × rowWidth floats (rowWidth = nHeads · headDim). out: chunkCount × rowWidth floats.
void meanPoolChunks(const float* rows, size_t nTokens, size_t rowWidth, size_t chunkSize, float* out);
std::vector<float> meanPoolChunks(std::span<const float> rows, size_t nTokens, size_t rowWidth, size_t chunkSize);

// x[r] /= max(‖x[r]‖₂, eps) for each of nRows rows of `dim` floats (torch.nn.functional.normalize,
// p=2, eps=1e-12, which the reference uses at msa/memory_sparse_attention.py:194 and :265).
void l2NormalizeRows(float* x, size_t nRows, size_t dim, float eps = 1e-12f);

}  // namespace msa::memory

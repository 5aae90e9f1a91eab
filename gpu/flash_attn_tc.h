// flash_attn_tc.h: tensor-core flash attention for prefill and encoding (bank builds): bf16 Q/K/V
// tiles through the tensor cores (nvcuda::wmma 16×16×16 bf16, f32 accumulation), online softmax in
// f32, 64 query rows × 64 keys per tile, K/V tiles double-buffered in shared memory with cp.async.
// Same masks as flashAttention() (gpu/kernels_bf16.h): prefix rows visible to every query, causal
// within the call, packed segments block-diagonal causal, non-causal option, GQA. The CUDA-free tile
// plan, softmax step and a host emulation of the kernel are in gpu/flash_attn_tc_math.h.
//
//   flashAttentionTc       the kernel on bf16 K/V ([nKv][kvStride][headDim]); Q f32 (converted
//                          while it is loaded); output f32 or bf16. No split-K (prefill has enough
//                          query blocks to fill the GPU).
//   flashAttentionPrefill  the backend's entry point: calls with >= tc::kMinTokens query tokens, a
//                          head dimension of 64 or 128 and no key splits convert the first ctxRows
//                          rows of the f32 KV cache to a stream-ordered bf16 scratch (cudaMallocAsync,
//                          freed in stream order after the kernel) and run flashAttentionTc; every
//                          other call runs flashAttention() unchanged. The f32 cache stays the source
//                          of truth (exportRows is exact); the conversion reads/writes ~12 KB per
//                          token and layer, ~1% of the 4K-document encoding budget (gpu/README.md).
//
// Pointers are device pointers. Thread affinity: the thread that owns the stream's device; the
// kernel must not run inside a CUDA graph capture (flashAttentionPrefill allocates).
// Failure codes: Unsupported (head dimension not 64/128 for flashAttentionTc), InvalidArgument
// (inconsistent shapes), DeviceError (launch or attribute errors, naming the kernel), OutOfMemory
// (the bf16 scratch).
//
// Usage:
//     FlashAttentionArgs fa = ...;                       // as for flashAttention()
//     MSA_RETURN_IF_ERROR(flashAttentionPrefill(fa, prefixRows + nPast + nTokens, stream));
#pragma once

#include "gpu/kernels_bf16.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace msa::gpu {

struct FlashAttentionTcArgs {
    const float* q = nullptr;          // nTokens × nHeads × headDim
    const uint16_t* kBf16 = nullptr;   // [nKv][kvStride][headDim] bf16 bit patterns
    const uint16_t* vBf16 = nullptr;
    float* outF32 = nullptr;           // nTokens × nHeads × headDim; exactly one of outF32 / outBf16
    uint16_t* outBf16 = nullptr;
    size_t nTokens = 0, nHeads = 0, nKv = 0, headDim = 0, kvStride = 0;
    size_t prefixRows = 0;             // context in front: prefixRows + (*nPast if nPast else hostPast)
    const int32_t* nPast = nullptr;
    size_t hostPast = 0;
    bool causal = true;
    const int32_t* segStart = nullptr; // per token: first token of its segment (packed calls), or null
};
Status flashAttentionTc(const FlashAttentionTcArgs& a, cudaStream_t stream);

// Whether flashAttentionPrefill() takes the tensor-core path for these arguments.
bool useTensorCoreAttention(const FlashAttentionArgs& a);

// ctxRows: rows of each KV head's cache the call can see (prefixRows + nPast + nTokens, known on the
// host outside graph capture); at most kvStride.
Status flashAttentionPrefill(const FlashAttentionArgs& a, size_t ctxRows, cudaStream_t stream);

}  // namespace msa::gpu

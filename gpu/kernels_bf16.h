// kernels_bf16.h: the kernels of the CUDA backend's bf16 forward (gpu/cuda_backend.cu), each behind a
// host wrapper that checks the launch and returns a Status (CONVENTIONS.md #7). Weights and GEMM
// inputs are bf16 (passed as uint16_t bit patterns so that this header needs no cuda_bf16.h and the
// plain C++ tests can include it); the residual stream, Q/K/V, the KV cache and all accumulation are
// f32. Every kernel has a CPU reference in core/engine/cpu_ops.h and a row in tests/gpu/tst_gpu_ops.
//
//   embeddingBf16   x[t] = f32(table[tokens[t]])
//   rmsNormToBf16   y = bf16(rmsNorm(x) * w), optionally also the f32 value (for layer hooks)
//   qkvPost         from the fused QKV GEMM output: + bias, per-head QK-norm, RoPE at the given
//                   positions (both pairings), split into contiguous q, k, v (f32)
//   appendKv        this call's k, v into the head-major cache after base = prefixRows + *nPast
//   swigluBf16      bf16(silu(gate) * up) from the fused gate|up GEMM output
//   flashAttention  tiled varlen attention with online softmax: prefix rows, causal / bidirectional /
//                   packed segments (block-diagonal causal), GQA (a block serves the heads of one KV
//                   head), optional split-K over the keys (flash-decoding) + combine kernel
//   argmaxRows      per row index of the largest value, lowest index on ties (cpu::argmax)
//   convertToBf16   f32 -> bf16 on the device (tests)
//
// Pointers are device pointers unless named host*. Thread affinity: the thread that owns the
// stream's device. Failure codes: DeviceError (launch errors, naming the kernel), Unsupported (a head
// dimension without a compiled kernel: see supportedHeadDim), InvalidArgument (inconsistent shapes).
#pragma once

#include "core/engine/cpu_ops.h"
#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace msa::gpu {

// Head dimensions the attention and QKV kernels are compiled for.
bool supportedHeadDim(size_t headDim);

Status embeddingBf16(const uint16_t* table, const int32_t* tokens, float* x, size_t nTokens, size_t dim,
                     cudaStream_t stream);

// yF32 may be null. y must not alias x.
Status rmsNormToBf16(const float* x, const float* weight, uint16_t* y, float* yF32, size_t nRows, size_t dim, float eps,
                     cudaStream_t stream);

struct QkvPostArgs {
    const float* qkv = nullptr;        // nTokens × (nHeads + 2·nKv) × headDim: [q | k | v] per token
    const float* bias = nullptr;       // (nHeads + 2·nKv) × headDim or null
    const float* qNorm = nullptr;      // headDim or null (no QK-norm)
    const float* kNorm = nullptr;      // headDim or null
    const float* invFreq = nullptr;    // headDim / 2 (launch_plan.h ropeInverseFrequencies)
    const int32_t* positions = nullptr;
    float* q = nullptr;                // nTokens × nHeads × headDim
    float* k = nullptr;                // nTokens × nKv × headDim
    float* v = nullptr;                // nTokens × nKv × headDim
    size_t nTokens = 0, nHeads = 0, nKv = 0, headDim = 0;
    float eps = 1e-6f;
    cpu::RopeStyle style = cpu::RopeStyle::NeoX;
};
Status qkvPost(const QkvPostArgs& a, cudaStream_t stream);

// Cache layout per layer: [nKv][capacity][headDim]. Rows go to base + t, base = prefixRows + *nPast
// (nPast lives in device memory so that a captured decode graph reads the current length).
Status appendKv(const float* k, const float* v, float* kCache, float* vCache, size_t nTokens, size_t nKv, size_t headDim,
                size_t capacity, size_t prefixRows, const int32_t* nPast, cudaStream_t stream);

// gateUp: nTokens × 2·ffn ([gate | up] per token); out: nTokens × ffn.
Status swigluBf16(const float* gateUp, uint16_t* out, size_t nTokens, size_t ffn, cudaStream_t stream);

struct FlashAttentionArgs {
    const float* q = nullptr;          // nTokens × nHeads × headDim
    const float* kCache = nullptr;     // [nKv][kvStride][headDim]
    const float* vCache = nullptr;
    float* outF32 = nullptr;           // nTokens × nHeads × headDim; exactly one of outF32 / outBf16
    uint16_t* outBf16 = nullptr;
    size_t nTokens = 0, nHeads = 0, nKv = 0, headDim = 0, kvStride = 0;
    // Context in front of this call's tokens: prefixRows + *nPast (device) when nPast is set, else
    // prefixRows + hostPast.
    size_t prefixRows = 0;
    const int32_t* nPast = nullptr;
    size_t hostPast = 0;
    bool causal = true;
    const int32_t* segStart = nullptr; // per token: first token of its segment (packed calls), or null
    int nSplits = 1;                   // from planAttention()
    float* workspace = nullptr;        // AttentionPlan::workspaceFloats() floats when nSplits > 1
};
Status flashAttention(const FlashAttentionArgs& a, cudaStream_t stream);

// out[r] = argmax of row r (nRows × n, row-major); ties: the lowest index.
Status argmaxRows(const float* x, size_t nRows, size_t n, int32_t* out, cudaStream_t stream);

Status convertToBf16(const float* x, uint16_t* y, size_t n, cudaStream_t stream);

}  // namespace msa::gpu

// ops.h: CUDA versions of the CPU reference operators in core/engine/cpu_ops.h, with the same names
// and argument order plus a stream (CONVENTIONS.md #4), so tests/gpu/tst_gpu_ops compares them
// mechanically. f32 in and out with f32 accumulation; all pointers are device pointers.
//
// Thread affinity: call from the thread that owns the stream's device context (the engine thread).
// Failure codes: DeviceError (launch or runtime error, naming the statement and device), Unsupported
// (a shape the kernel does not handle, e.g. attention context beyond kMaxAttentionContext).
#pragma once

#include "core/engine/cpu_ops.h"
#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace msa::gpu {

// The attention kernel keeps one row of scores in shared memory.
inline constexpr size_t kMaxAttentionContext = 8192;

Status rmsNorm(const float* x, const float* weight, float* y, size_t nRows, size_t dim, float eps, cudaStream_t stream);
Status rope(float* x, size_t nTokens, size_t nHeads, size_t headDim, size_t rotaryDim, const int32_t* positions,
            float theta, cpu::RopeStyle style, cudaStream_t stream);
Status swiglu(const float* gate, const float* up, float* out, size_t n, cudaStream_t stream);
Status attention(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx, size_t nHeads,
                 size_t nKvHeads, size_t headDim, size_t kvStride, cudaStream_t stream);

}  // namespace msa::gpu

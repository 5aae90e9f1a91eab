// ops.cu: elementwise and attention kernels mirroring core/engine/cpu_ops.cpp.
//
// Covers: rms_norm_kernel (one block per row, warp-shuffle reduction), rope_kernel (one thread per
// rotated pair, both pairings, given positions), swiglu_kernel, attention_kernel (one block per
// (query, head); scores in shared memory; causal with a visible prefix, GQA). These are the parity
// baseline for the CUDA backend; the fused bf16 and flash-decoding versions of issue 6 must match them.
// Extend: add the kernel here, its wrapper in ops.h, and a row in tests/gpu/tst_gpu_ops.cpp.
#include "gpu/cuda_check.h"
#include "gpu/ops.h"

#include <cmath>

namespace msa::gpu {
namespace {

__device__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (≤ 1024); every thread gets the result.
__device__ float block_sum(float v, float* shared32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    const int nWarps = (blockDim.x + 31) >> 5;
    float t = lane < nWarps ? shared32[lane] : 0.0f;
    t = warp_sum(t);
    __syncthreads();
    return t;
}
__device__ float block_max(float v, float* shared32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_max(v);
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    const int nWarps = (blockDim.x + 31) >> 5;
    float t = lane < nWarps ? shared32[lane] : -INFINITY;
    t = warp_max(t);
    __syncthreads();
    return t;
}

__global__ void rms_norm_kernel(const float* x, const float* weight, float* y, int dim, float eps) {
    __shared__ float red[32];
    const float* xr = x + static_cast<size_t>(blockIdx.x) * dim;
    float* yr = y + static_cast<size_t>(blockIdx.x) * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, red);
    const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * weight[i];
}

__global__ void rope_kernel(float* x, int nTokens, int nHeads, int headDim, int rotaryDim, const int32_t* positions,
                            float theta, bool neox) {
    const int half = rotaryDim / 2;
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    const long total = static_cast<long>(nTokens) * nHeads * half;
    if (idx >= total) return;
    const int i = static_cast<int>(idx % half);
    const int h = static_cast<int>((idx / half) % nHeads);
    const int t = static_cast<int>(idx / (static_cast<long>(half) * nHeads));
    // Same rounding steps as the CPU: inverse frequency in double, angle in float.
    const float invFreq = static_cast<float>(pow(static_cast<double>(theta), -2.0 * i / rotaryDim));
    const float angle = static_cast<float>(positions[t]) * invFreq;
    float s, c;
    sincosf(angle, &s, &c);
    float* head = x + (static_cast<size_t>(t) * nHeads + h) * headDim;
    float* a = neox ? head + i : head + 2 * i;
    float* b = neox ? head + i + half : head + 2 * i + 1;
    const float x0 = *a, x1 = *b;
    *a = x0 * c - x1 * s;
    *b = x0 * s + x1 * c;
}

__global__ void swiglu_kernel(const float* gate, const float* up, float* out, size_t n) {
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// One block per (query i, head h). Query i sees context rows [0, nCtx - nQuery + i].
__global__ void attention_kernel(const float* q, const float* k, const float* v, float* out, int nQuery, int nCtx,
                                 int nHeads, int nKvHeads, int headDim, int kvStride) {
    extern __shared__ float scores[];
    __shared__ float red[32];
    const int i = blockIdx.x, h = blockIdx.y;
    const int g = h / (nHeads / nKvHeads);
    const int visible = nCtx - nQuery + i + 1;
    const float scale = rsqrtf(static_cast<float>(headDim));
    const float* qi = q + (static_cast<size_t>(i) * nHeads + h) * headDim;
    const float* kh = k + static_cast<size_t>(g) * kvStride * headDim;
    const float* vh = v + static_cast<size_t>(g) * kvStride * headDim;
    float localMax = -INFINITY;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {
        const float* kj = kh + static_cast<size_t>(j) * headDim;
        float dot = 0.0f;
        for (int d = 0; d < headDim; ++d) dot += qi[d] * kj[d];
        scores[j] = dot * scale;
        localMax = fmaxf(localMax, scores[j]);
    }
    const float m = block_max(localMax, red);
    float localSum = 0.0f;
    for (int j = threadIdx.x; j < visible; j += blockDim.x) {
        scores[j] = expf(scores[j] - m);
        localSum += scores[j];
    }
    const float inv = 1.0f / block_sum(localSum, red);
    float* o = out + (static_cast<size_t>(i) * nHeads + h) * headDim;
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < visible; ++j) acc += scores[j] * vh[static_cast<size_t>(j) * headDim + d];
        o[d] = acc * inv;
    }
}

unsigned blocksFor(size_t n, unsigned threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

Status rmsNorm(const float* x, const float* weight, float* y, size_t nRows, size_t dim, float eps, cudaStream_t stream) {
    if (nRows == 0) return Status::ok();
    rms_norm_kernel<<<static_cast<unsigned>(nRows), 256, 0, stream>>>(x, weight, y, static_cast<int>(dim), eps);
    MSA_CUDA_CHECK_LAUNCH("rms_norm_kernel");
    return Status::ok();
}

Status rope(float* x, size_t nTokens, size_t nHeads, size_t headDim, size_t rotaryDim, const int32_t* positions,
            float theta, cpu::RopeStyle style, cudaStream_t stream) {
    const size_t pairs = nTokens * nHeads * (rotaryDim / 2);
    if (pairs == 0) return Status::ok();
    rope_kernel<<<blocksFor(pairs, 256), 256, 0, stream>>>(x, static_cast<int>(nTokens), static_cast<int>(nHeads),
                                                           static_cast<int>(headDim), static_cast<int>(rotaryDim),
                                                           positions, theta, style == cpu::RopeStyle::NeoX);
    MSA_CUDA_CHECK_LAUNCH("rope_kernel");
    return Status::ok();
}

Status swiglu(const float* gate, const float* up, float* out, size_t n, cudaStream_t stream) {
    if (n == 0) return Status::ok();
    swiglu_kernel<<<blocksFor(n, 256), 256, 0, stream>>>(gate, up, out, n);
    MSA_CUDA_CHECK_LAUNCH("swiglu_kernel");
    return Status::ok();
}

Status attention(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx, size_t nHeads,
                 size_t nKvHeads, size_t headDim, size_t kvStride, cudaStream_t stream) {
    if (nQuery == 0) return Status::ok();
    if (nCtx > kMaxAttentionContext)
        return unsupported("attention context of " + std::to_string(nCtx) + " rows exceeds the baseline kernel's " +
                           std::to_string(kMaxAttentionContext));
    if (nQuery > nCtx || nKvHeads == 0 || nHeads % nKvHeads != 0) return invalidArgument("attention: inconsistent shapes");
    const dim3 grid(static_cast<unsigned>(nQuery), static_cast<unsigned>(nHeads));
    attention_kernel<<<grid, 128, nCtx * sizeof(float), stream>>>(q, k, v, out, static_cast<int>(nQuery),
                                                                  static_cast<int>(nCtx), static_cast<int>(nHeads),
                                                                  static_cast<int>(nKvHeads), static_cast<int>(headDim),
                                                                  static_cast<int>(kvStride));
    MSA_CUDA_CHECK_LAUNCH("attention_kernel");
    return Status::ok();
}

}  // namespace msa::gpu

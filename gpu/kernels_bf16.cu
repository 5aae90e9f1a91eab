// kernels_bf16.cu: the kernels of the bf16 forward (see kernels_bf16.h for the list and contracts).
//
// Numerics follow core/engine/cpu_ops.cpp step by step (same formula order: x * inv * w for RMSNorm,
// f32 angle = f32(pos) * invFreq for RoPE with the frequencies computed on the host exactly as the
// CPU does, expf/sincosf rather than the fast intrinsics), so that the remaining differences are the
// bf16 rounding of GEMM inputs and the order of f32 sums.
#include "gpu/cuda_check.h"
#include "gpu/kernels_bf16.h"
#include "gpu/launch_plan.h"

#include <cuda_bf16.h>

#include <climits>
#include <cmath>
#include <string>

namespace msa::gpu {
namespace {

constexpr unsigned kFull = 0xffffffffu;

__device__ float warpSum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}
__device__ float warpMax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

// Block-wide sum for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
__device__ float blockSum(float v, float* shared32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warpSum(v);
    if (lane == 0) shared32[warp] = v;
    __syncthreads();
    const int nWarps = (blockDim.x + 31) >> 5;
    float t = lane < nWarps ? shared32[lane] : 0.0f;
    t = warpSum(t);
    __syncthreads();
    return t;
}

unsigned blocksFor(size_t n, unsigned threads) { return static_cast<unsigned>((n + threads - 1) / threads); }
unsigned roundUpWarp(size_t n) { return static_cast<unsigned>((n + 31) / 32 * 32); }

// ---- elementwise ---------------------------------------------------------------------------------

__global__ void embedding_kernel(const __nv_bfloat16* table, const int32_t* tokens, float* x, size_t nTokens, size_t dim) {
    const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= nTokens * dim) return;
    const size_t t = idx / dim, c = idx % dim;
    x[idx] = __bfloat162float(table[static_cast<size_t>(tokens[t]) * dim + c]);
}

__global__ void rms_norm_bf16_kernel(const float* x, const float* weight, __nv_bfloat16* y, float* yF32, int dim, float eps) {
    __shared__ float red[32];
    const size_t row = blockIdx.x;
    const float* xr = x + row * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = blockSum(ss, red);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(dim) + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        const float v = xr[i] * inv * weight[i];
        y[row * dim + i] = __float2bfloat16_rn(v);
        if (yF32) yF32[row * dim + i] = v;
    }
}

// One block per (token, slot); slots are the q heads, then the k heads, then the v heads, in the
// order the fused QKV weight stores them. blockDim.x = headDim rounded up to a warp.
__global__ void qkv_post_kernel(QkvPostArgs a) {
    __shared__ float vals[1024];
    __shared__ float red[32];
    const int hd = static_cast<int>(a.headDim);
    const int nH = static_cast<int>(a.nHeads), nKv = static_cast<int>(a.nKv);
    const size_t t = blockIdx.x;
    const int slot = blockIdx.y;
    const int d = threadIdx.x;
    const size_t width = static_cast<size_t>(nH + 2 * nKv) * hd;
    const size_t off = static_cast<size_t>(slot) * hd;
    float val = 0.0f;
    if (d < hd) {
        val = a.qkv[t * width + off + d];
        if (a.bias) val += a.bias[off + d];
    }
    if (slot >= nH + nKv) {   // V: bias only
        if (d < hd) a.v[(t * nKv + (slot - nH - nKv)) * hd + d] = val;
        return;
    }
    const bool isQ = slot < nH;
    const float* norm = isQ ? a.qNorm : a.kNorm;
    if (norm) {
        const float ss = blockSum(val * val, red);
        const float inv = 1.0f / sqrtf(ss / static_cast<float>(hd) + a.eps);
        if (d < hd) val = val * inv * norm[d];
    }
    vals[d] = val;
    __syncthreads();
    if (d >= hd) return;
    const int half = hd / 2;
    const float pos = static_cast<float>(a.positions[t]);
    float out;
    if (a.style == cpu::RopeStyle::NeoX) {
        const int i = d < half ? d : d - half;
        float s, c;
        sincosf(pos * a.invFreq[i], &s, &c);
        out = d < half ? vals[d] * c - vals[d + half] * s : vals[d - half] * s + vals[d] * c;
    } else {
        const int i = d / 2;
        float s, c;
        sincosf(pos * a.invFreq[i], &s, &c);
        out = (d % 2 == 0) ? vals[d] * c - vals[d + 1] * s : vals[d - 1] * s + vals[d] * c;
    }
    if (isQ)
        a.q[(t * nH + slot) * hd + d] = out;
    else
        a.k[(t * nKv + (slot - nH)) * hd + d] = out;
}

__global__ void append_kv_kernel(const float* k, const float* v, float* kCache, float* vCache, size_t nTokens, int nKv,
                                 int hd, size_t capacity, size_t prefixRows, const int32_t* nPast) {
    const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= nTokens * nKv * hd) return;
    const size_t d = idx % hd;
    const size_t g = (idx / hd) % nKv;
    const size_t t = idx / (static_cast<size_t>(hd) * nKv);
    const size_t row = prefixRows + static_cast<size_t>(*nPast) + t;
    const size_t dst = (g * capacity + row) * hd + d;
    kCache[dst] = k[idx];
    vCache[dst] = v[idx];
}

__global__ void swiglu_bf16_kernel(const float* gateUp, __nv_bfloat16* out, size_t nTokens, size_t ffn) {
    const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= nTokens * ffn) return;
    const size_t t = idx / ffn, c = idx % ffn;
    const float g = gateUp[t * 2 * ffn + c];
    const float u = gateUp[t * 2 * ffn + ffn + c];
    out[idx] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
}

__global__ void convert_bf16_kernel(const float* x, __nv_bfloat16* y, size_t n) {
    const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2bfloat16_rn(x[i]);
}

// One block per row; (value, index) pairs reduce with "larger, or equal and lower index" wins.
__global__ void argmax_kernel(const float* x, size_t n, int32_t* out) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float* row = x + static_cast<size_t>(blockIdx.x) * n;
    float best = -INFINITY;
    int bestI = kArgmaxNone;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = row[i];
        if (v > best || bestI == kArgmaxNone) {   // strictly larger: a later equal value never wins
            best = v;
            bestI = static_cast<int>(i);
        }
    }
    auto better = [](float v, int i, float bv, int bi) { return argmaxBetter(v, i, bv, bi); };
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(kFull, best, o);
        const int i = __shfl_xor_sync(kFull, bestI, o);
        if (better(v, i, best, bestI)) {
            best = v;
            bestI = i;
        }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = best;
        si[warp] = bestI;
    }
    __syncthreads();
    if (warp == 0) {
        const int nWarps = static_cast<int>(blockDim.x >> 5);
        best = lane < nWarps ? sv[lane] : -INFINITY;
        bestI = lane < nWarps ? si[lane] : kArgmaxNone;
        for (int o = 16; o > 0; o >>= 1) {
            const float v = __shfl_xor_sync(kFull, best, o);
            const int i = __shfl_xor_sync(kFull, bestI, o);
            if (better(v, i, best, bestI)) {
                best = v;
                bestI = i;
            }
        }
        if (lane == 0) out[blockIdx.x] = bestI;
    }
}

// ---- flash attention -----------------------------------------------------------------------------

struct FlashParams {
    const float* q;
    const float* k;
    const float* v;
    float* outF32;
    __nv_bfloat16* outBf16;
    float* ws;
    int nTokens, nHeads, nKv, kvStride, prefixRows, hostPast;
    const int32_t* nPast;
    int causal;
    const int32_t* segStart;
    int nSplits;
    float scale;
};

constexpr int kFlashWarps = 4;
constexpr int kRowsPerWarp = kFlashRowsPerBlock / kFlashWarps;
static_assert(kFlashRowsPerBlock % kFlashWarps == 0, "rows must divide among the warps");
static_assert(kFlashKeysPerTile == 32, "one key per lane");

// grid (rowTiles, nKv, nSplits), 128 threads. Rows of a block: (token i, head r of KV group g) with
// row = i * group + r; warp w owns rows w, w + 4, w + 8, w + 12 of the tile. Per key tile, lane j
// scores key j against each of its rows (Q row broadcast from shared memory, K row j padded against
// bank conflicts), the warp updates the online softmax (max, sum) of that row, and each lane then
// accumulates the output dimensions lane, lane + 32, ... from the V tile.
template <int HD, bool OUT_BF16>
__global__ void __launch_bounds__(kFlashWarps * 32) flash_attention_kernel(FlashParams p) {
    constexpr int BR = kFlashRowsPerBlock, KT = kFlashKeysPerTile, DPL = (HD + 31) / 32;
    __shared__ float sQ[BR][HD];
    __shared__ float sK[KT][HD + 1];
    __shared__ float sV[KT][HD];

    const int g = blockIdx.y, split = blockIdx.z;
    const int group = p.nHeads / p.nKv;
    const int nRows = p.nTokens * group;
    const int row0 = blockIdx.x * BR;
    const int base = p.prefixRows + (p.nPast ? *p.nPast : p.hostPast);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    for (int idx = tid; idx < BR * HD; idx += blockDim.x) {
        const int r = idx / HD, d = idx % HD, row = row0 + r;
        float val = 0.0f;
        if (row < nRows) {
            const int i = row / group, h = g * group + row % group;
            val = p.q[(static_cast<size_t>(i) * p.nHeads + h) * HD + d];
        }
        sQ[r][d] = val;
    }

    // The keys any row of the tile sees, then this split's part of them.
    int tLo = INT_MAX, tHi = 0;
    for (int r = 0; r < BR && row0 + r < nRows; ++r) {
        const int i = (row0 + r) / group;
        const KeyRange kr = visibleKeys(i, base, p.nTokens, p.causal != 0, p.segStart ? p.segStart[i] : -1);
        tLo = min(tLo, kr.lo);
        tHi = max(tHi, kr.hi);
    }
    const KeyRange sp = splitKeys(tLo, tHi, p.nSplits, split);

    int lo[kRowsPerWarp], hi[kRowsPerWarp];
    bool valid[kRowsPerWarp];
    float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][DPL];
#pragma unroll
    for (int s = 0; s < kRowsPerWarp; ++s) {
        const int row = row0 + warp + kFlashWarps * s;
        valid[s] = row < nRows;
        lo[s] = hi[s] = 0;
        if (valid[s]) {
            const int i = row / group;
            const KeyRange kr = visibleKeys(i, base, p.nTokens, p.causal != 0, p.segStart ? p.segStart[i] : -1);
            lo[s] = kr.lo;
            hi[s] = kr.hi;
        }
        m[s] = -INFINITY;
        l[s] = 0.0f;
#pragma unroll
        for (int c = 0; c < DPL; ++c) o[s][c] = 0.0f;
    }

    const float* kBase = p.k + static_cast<size_t>(g) * p.kvStride * HD;
    const float* vBase = p.v + static_cast<size_t>(g) * p.kvStride * HD;
    for (int kt = sp.lo; kt < sp.hi; kt += KT) {
        __syncthreads();   // the previous tile is consumed (and, the first time, sQ is written)
        for (int idx = tid; idx < KT * HD; idx += blockDim.x) {
            const int j = idx / HD, d = idx % HD, key = kt + j;
            float kv = 0.0f, vv = 0.0f;
            if (key < sp.hi) {
                kv = kBase[static_cast<size_t>(key) * HD + d];
                vv = vBase[static_cast<size_t>(key) * HD + d];
            }
            sK[j][d] = kv;
            sV[j][d] = vv;
        }
        __syncthreads();
        const int key = kt + lane;
#pragma unroll
        for (int s = 0; s < kRowsPerWarp; ++s) {
            if (!valid[s]) continue;   // uniform across the warp
            const int r = warp + kFlashWarps * s;
            float sc = -INFINITY;
            if (key < sp.hi && key >= lo[s] && key < hi[s]) {
                float dot = 0.0f;
#pragma unroll 16
                for (int d = 0; d < HD; ++d) dot += sQ[r][d] * sK[lane][d];
                sc = dot * p.scale;
            }
            const float mt = warpMax(sc);
            if (mt == -INFINITY) continue;   // every key of the tile is masked for this row
            const float mNew = fmaxf(m[s], mt);
            const float corr = expf(m[s] - mNew);   // 0 while m is still -inf
            const float pj = sc == -INFINITY ? 0.0f : expf(sc - mNew);
            l[s] = l[s] * corr + warpSum(pj);
#pragma unroll
            for (int c = 0; c < DPL; ++c) o[s][c] *= corr;
            for (int jj = 0; jj < KT; ++jj) {
                const float pjj = __shfl_sync(kFull, pj, jj);
#pragma unroll
                for (int c = 0; c < DPL; ++c) {
                    const int d = lane + 32 * c;
                    if (HD % 32 == 0 || d < HD) o[s][c] += pjj * sV[jj][d];
                }
            }
            m[s] = mNew;
        }
    }

#pragma unroll
    for (int s = 0; s < kRowsPerWarp; ++s) {
        if (!valid[s]) continue;
        const int row = row0 + warp + kFlashWarps * s;
        const int i = row / group, h = g * group + row % group;
        const size_t at = static_cast<size_t>(i) * p.nHeads + h;
        if (p.nSplits == 1) {
            const float inv = 1.0f / l[s];   // l > 0: every query sees at least itself
#pragma unroll
            for (int c = 0; c < DPL; ++c) {
                const int d = lane + 32 * c;
                if (HD % 32 != 0 && d >= HD) continue;
                const float val = o[s][c] * inv;
                if constexpr (OUT_BF16)
                    p.outBf16[at * HD + d] = __float2bfloat16_rn(val);
                else
                    p.outF32[at * HD + d] = val;
            }
        } else {
            float* w = p.ws + (static_cast<size_t>(split) * p.nTokens * p.nHeads + at) * (HD + 2);
#pragma unroll
            for (int c = 0; c < DPL; ++c) {
                const int d = lane + 32 * c;
                if (HD % 32 == 0 || d < HD) w[d] = o[s][c];
            }
            if (lane == 0) {
                w[HD] = m[s];
                w[HD + 1] = l[s];
            }
        }
    }
}

// One block per (token, head): merges the splits' partial softmax states.
template <bool OUT_BF16>
__global__ void flash_combine_kernel(const float* ws, float* outF32, __nv_bfloat16* outBf16, int nSplits, size_t nTH, int hd) {
    const size_t at = blockIdx.x;
    const int d = threadIdx.x;
    const size_t stride = static_cast<size_t>(hd) + 2;
    float mMax = -INFINITY;
    for (int s = 0; s < nSplits; ++s) mMax = fmaxf(mMax, ws[(s * nTH + at) * stride + hd]);
    float sum = 0.0f, acc = 0.0f;
    for (int s = 0; s < nSplits; ++s) {
        const float* w = ws + (s * nTH + at) * stride;
        if (w[hd] == -INFINITY) continue;   // this split saw none of the row's keys
        const float f = expf(w[hd] - mMax);
        sum += w[hd + 1] * f;
        if (d < hd) acc += w[d] * f;
    }
    if (d >= hd) return;
    const float val = acc / sum;
    if constexpr (OUT_BF16)
        outBf16[at * hd + d] = __float2bfloat16_rn(val);
    else
        outF32[at * hd + d] = val;
}

template <int HD>
void launchFlash(const FlashParams& p, dim3 grid, bool bf16, cudaStream_t stream) {
    if (bf16)
        flash_attention_kernel<HD, true><<<grid, kFlashWarps * 32, 0, stream>>>(p);
    else
        flash_attention_kernel<HD, false><<<grid, kFlashWarps * 32, 0, stream>>>(p);
}

}  // namespace

bool supportedHeadDim(size_t headDim) { return headDim == 16 || headDim == 32 || headDim == 64 || headDim == 128; }

Status embeddingBf16(const uint16_t* table, const int32_t* tokens, float* x, size_t nTokens, size_t dim, cudaStream_t stream) {
    const size_t n = nTokens * dim;
    if (n == 0) return Status::ok();
    embedding_kernel<<<blocksFor(n, 256), 256, 0, stream>>>(reinterpret_cast<const __nv_bfloat16*>(table), tokens, x, nTokens, dim);
    MSA_CUDA_CHECK_LAUNCH("embedding_kernel");
    return Status::ok();
}

Status rmsNormToBf16(const float* x, const float* weight, uint16_t* y, float* yF32, size_t nRows, size_t dim, float eps,
                     cudaStream_t stream) {
    if (nRows == 0) return Status::ok();
    const unsigned threads = dim >= 256 ? 256 : roundUpWarp(dim);
    rms_norm_bf16_kernel<<<static_cast<unsigned>(nRows), threads, 0, stream>>>(x, weight, reinterpret_cast<__nv_bfloat16*>(y),
                                                                            yF32, static_cast<int>(dim), eps);
    MSA_CUDA_CHECK_LAUNCH("rms_norm_bf16_kernel");
    return Status::ok();
}

Status qkvPost(const QkvPostArgs& a, cudaStream_t stream) {
    if (a.nTokens == 0) return Status::ok();
    if (a.headDim == 0 || a.headDim % 2 != 0 || a.headDim > 1024 || a.nKv == 0)
        return invalidArgument("qkvPost: head dimension " + std::to_string(a.headDim) + " is not an even number <= 1024");
    const dim3 grid(static_cast<unsigned>(a.nTokens), static_cast<unsigned>(a.nHeads + 2 * a.nKv));
    qkv_post_kernel<<<grid, roundUpWarp(a.headDim), 0, stream>>>(a);
    MSA_CUDA_CHECK_LAUNCH("qkv_post_kernel");
    return Status::ok();
}

Status appendKv(const float* k, const float* v, float* kCache, float* vCache, size_t nTokens, size_t nKv, size_t headDim,
                size_t capacity, size_t prefixRows, const int32_t* nPast, cudaStream_t stream) {
    const size_t n = nTokens * nKv * headDim;
    if (n == 0) return Status::ok();
    append_kv_kernel<<<blocksFor(n, 256), 256, 0, stream>>>(k, v, kCache, vCache, nTokens, static_cast<int>(nKv),
                                                             static_cast<int>(headDim), capacity, prefixRows, nPast);
    MSA_CUDA_CHECK_LAUNCH("append_kv_kernel");
    return Status::ok();
}

Status swigluBf16(const float* gateUp, uint16_t* out, size_t nTokens, size_t ffn, cudaStream_t stream) {
    const size_t n = nTokens * ffn;
    if (n == 0) return Status::ok();
    swiglu_bf16_kernel<<<blocksFor(n, 256), 256, 0, stream>>>(gateUp, reinterpret_cast<__nv_bfloat16*>(out), nTokens, ffn);
    MSA_CUDA_CHECK_LAUNCH("swiglu_bf16_kernel");
    return Status::ok();
}

Status flashAttention(const FlashAttentionArgs& a, cudaStream_t stream) {
    if (a.nTokens == 0) return Status::ok();
    if (!supportedHeadDim(a.headDim))
        return unsupported("flash attention has no kernel for head dimension " + std::to_string(a.headDim));
    if (a.nKv == 0 || a.nHeads % a.nKv != 0 || (a.outF32 == nullptr) == (a.outBf16 == nullptr) || a.nSplits < 1 ||
        (a.nSplits > 1 && a.workspace == nullptr))
        return invalidArgument("flashAttention: inconsistent arguments");
    if (a.kvStride > static_cast<size_t>(INT_MAX) || a.nTokens * a.nHeads > static_cast<size_t>(INT_MAX))
        return invalidArgument("flashAttention: context or batch too large for 32-bit row indices");
    FlashParams p{};
    p.q = a.q;
    p.k = a.kCache;
    p.v = a.vCache;
    p.outF32 = a.nSplits == 1 ? a.outF32 : nullptr;
    p.outBf16 = a.nSplits == 1 ? reinterpret_cast<__nv_bfloat16*>(a.outBf16) : nullptr;
    p.ws = a.workspace;
    p.nTokens = static_cast<int>(a.nTokens);
    p.nHeads = static_cast<int>(a.nHeads);
    p.nKv = static_cast<int>(a.nKv);
    p.kvStride = static_cast<int>(a.kvStride);
    p.prefixRows = static_cast<int>(a.prefixRows);
    p.hostPast = static_cast<int>(a.hostPast);
    p.nPast = a.nPast;
    p.causal = a.causal ? 1 : 0;
    p.segStart = a.segStart;
    p.nSplits = a.nSplits;
    p.scale = 1.0f / sqrtf(static_cast<float>(a.headDim));
    const size_t group = a.nHeads / a.nKv;
    const dim3 grid(static_cast<unsigned>(ceilDiv(static_cast<long>(a.nTokens * group), kFlashRowsPerBlock)),
                    static_cast<unsigned>(a.nKv), static_cast<unsigned>(a.nSplits));
    const bool bf16 = a.outBf16 != nullptr;
    switch (a.headDim) {
    case 16: launchFlash<16>(p, grid, bf16, stream); break;
    case 32: launchFlash<32>(p, grid, bf16, stream); break;
    case 64: launchFlash<64>(p, grid, bf16, stream); break;
    default: launchFlash<128>(p, grid, bf16, stream); break;
    }
    MSA_CUDA_CHECK_LAUNCH("flash_attention_kernel");
    if (a.nSplits > 1) {
        const size_t nTH = a.nTokens * a.nHeads;
        const unsigned threads = roundUpWarp(a.headDim);
        if (bf16)
            flash_combine_kernel<true><<<static_cast<unsigned>(nTH), threads, 0, stream>>>(
                a.workspace, nullptr, reinterpret_cast<__nv_bfloat16*>(a.outBf16), a.nSplits, nTH, static_cast<int>(a.headDim));
        else
            flash_combine_kernel<false><<<static_cast<unsigned>(nTH), threads, 0, stream>>>(a.workspace, a.outF32, nullptr,
                                                                                            a.nSplits, nTH, static_cast<int>(a.headDim));
        MSA_CUDA_CHECK_LAUNCH("flash_combine_kernel");
    }
    return Status::ok();
}

Status argmaxRows(const float* x, size_t nRows, size_t n, int32_t* out, cudaStream_t stream) {
    if (nRows == 0) return Status::ok();
    if (n == 0 || n > static_cast<size_t>(INT_MAX)) return invalidArgument("argmaxRows: row length " + std::to_string(n));
    argmax_kernel<<<static_cast<unsigned>(nRows), 256, 0, stream>>>(x, n, out);
    MSA_CUDA_CHECK_LAUNCH("argmax_kernel");
    return Status::ok();
}

Status convertToBf16(const float* x, uint16_t* y, size_t n, cudaStream_t stream) {
    if (n == 0) return Status::ok();
    convert_bf16_kernel<<<blocksFor(n, 256), 256, 0, stream>>>(x, reinterpret_cast<__nv_bfloat16*>(y), n);
    MSA_CUDA_CHECK_LAUNCH("convert_bf16_kernel");
    return Status::ok();
}

}  // namespace msa::gpu

// flash_attn_tc.cu: tensor-core flash attention (see flash_attn_tc.h for the contract and
// flash_attn_tc_math.h for the tile plan, the softmax step and the host emulation the unit test runs).
//
// Block: 4 warps, 64 query rows of one KV head (grid.x: row tiles, grid.y: KV heads). Per 64-key
// tile, warp w (rows 16w..16w+15):
//   1. S = Q·Kᵀ with wmma (Q fragments held in registers for the whole block, K from the cp.async
//      stage as a column-major B operand), 4 accumulators of 16×16 stored to its sS strip;
//   2. lane L takes row L/2 and the keys of parity L%2: masks, running max (one shuffle joins the
//      two lanes of the row), p = exp2(s - m) written to sP as bf16, rescales its part of O;
//   3. O += P·V per 16-column block of the head (one accumulator live at a time, stored to sS and
//      added by the lane that owns those 8 columns of the row, so O never leaves registers in an
//      opaque fragment layout and the per-row rescale stays exact).
// The next K/V tile is loaded by cp.async into the other stage while this one is computed.
#include "gpu/cuda_check.h"
#include "gpu/flash_attn_tc.h"
#include "gpu/flash_attn_tc_math.h"
#include "gpu/launch_plan.h"

#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>

#include <climits>
#include <string>

namespace msa::gpu {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = tc::kWarps * 32;

struct TcParams {
    const float* q;
    const __nv_bfloat16* k;
    const __nv_bfloat16* v;
    float* outF32;
    __nv_bfloat16* outBf16;
    int nTokens, nHeads, nKv, kvStride, prefixRows, hostPast;
    const int32_t* nPast;
    int causal;
    const int32_t* segStart;
    float scaleLog2;
};

template <int HD, bool OUT_BF16>
__global__ void __launch_bounds__(kThreads) flash_attn_tc_kernel(TcParams p) {
    using namespace nvcuda;
    constexpr int LDQ = tc::ldQk(HD), LDP = tc::kLdP, LDS = tc::kLdS;
    constexpr int KT = tc::kKeys, NQF = HD / 16, NKF = KT / 16, CHUNKS = HD / 8;
    static_assert(HD % 16 == 0 && HD / 2 % 8 == 0, "whole wmma blocks; 8 output columns per lane");

    extern __shared__ __align__(128) unsigned char smem[];
    __nv_bfloat16* sQ = reinterpret_cast<__nv_bfloat16*>(smem);   // [kRows][LDQ]
    __nv_bfloat16* sK = sQ + tc::kRows * LDQ;                       // [2][KT][LDQ]
    __nv_bfloat16* sV = sK + 2 * KT * LDQ;                          // [2][KT][LDQ]
    __nv_bfloat16* sP = sV + 2 * KT * LDQ;                          // [kRows][LDP]
    float* sS = reinterpret_cast<float*>(sP + tc::kRows * LDP);     // [kRows][LDS]

    const int g = blockIdx.y;
    const int group = p.nHeads / p.nKv;
    const int nRows = p.nTokens * group;
    const int row0 = blockIdx.x * tc::kRows;
    const int base = p.prefixRows + (p.nPast ? *p.nPast : p.hostPast);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, half = lane & 1;

    for (int idx = tid; idx < tc::kRows * HD; idx += kThreads) {
        const int r = idx / HD, d = idx % HD, row = row0 + r;
        float val = 0.0f;
        if (row < nRows) {
            const int i = row / group, h = g * group + row % group;
            val = p.q[(static_cast<size_t>(i) * p.nHeads + h) * HD + d];
        }
        sQ[r * LDQ + d] = __float2bfloat16_rn(val);
    }

    const KeyRange blk = tc::blockKeys(row0, nRows, group, base, p.nTokens, p.causal != 0, p.segStart);
    const int nTiles = (blk.hi - blk.lo + KT - 1) / KT;

    // This lane's row (and its mask).
    const int myR = warp * tc::kWarpRows + (lane >> 1), myRow = row0 + myR;
    KeyRange mine{0, 0};
    if (myRow < nRows) {
        const int i = myRow / group;
        mine = visibleKeys(i, base, p.nTokens, p.causal != 0, p.segStart ? p.segStart[i] : -1);
    }

    const __nv_bfloat16* kBase = p.k + static_cast<size_t>(g) * p.kvStride * HD;
    const __nv_bfloat16* vBase = p.v + static_cast<size_t>(g) * p.kvStride * HD;
    auto loadTile = [&](int t, int stage) {
        const int kt = blk.lo + t * KT;
        __nv_bfloat16* dK = sK + stage * KT * LDQ;
        __nv_bfloat16* dV = sV + stage * KT * LDQ;
        for (int idx = tid; idx < KT * CHUNKS; idx += kThreads) {
            const int j = idx / CHUNKS, c = idx % CHUNKS, key = kt + j;
            __nv_bfloat16* dk = dK + j * LDQ + c * 8;
            __nv_bfloat16* dv = dV + j * LDQ + c * 8;
            if (key < blk.hi) {
                const size_t at = static_cast<size_t>(key) * HD + c * 8;
                __pipeline_memcpy_async(dk, kBase + at, 16);
                __pipeline_memcpy_async(dv, vBase + at, 16);
            } else {   // zeros, so that 0·V of a padded key is never 0·NaN
                *reinterpret_cast<uint4*>(dk) = make_uint4(0, 0, 0, 0);
                *reinterpret_cast<uint4*>(dv) = make_uint4(0, 0, 0, 0);
            }
        }
        __pipeline_commit();
    };

    if (nTiles > 0) loadTile(0, 0);
    __syncthreads();   // sQ written

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> qf[NQF];
#pragma unroll
    for (int ks = 0; ks < NQF; ++ks) wmma::load_matrix_sync(qf[ks], sQ + warp * tc::kWarpRows * LDQ + ks * 16, LDQ);

    float m = -INFINITY, l = 0.0f;
    float o[NQF][8];
#pragma unroll
    for (int nb = 0; nb < NQF; ++nb)
#pragma unroll
        for (int c = 0; c < 8; ++c) o[nb][c] = 0.0f;

    float* sSw = sS + warp * tc::kWarpRows * LDS;
    __nv_bfloat16* sPw = sP + warp * tc::kWarpRows * LDP;
    for (int t = 0; t < nTiles; ++t) {
        const int stage = t & 1;
        if (t + 1 < nTiles) {
            loadTile(t + 1, stage ^ 1);
            __pipeline_wait_prior(1);   // tile t has landed, t + 1 may still be in flight
        } else {
            __pipeline_wait_prior(0);
        }
        __syncthreads();   // tile t (cp.async and zero stores of every thread) is visible
        const __nv_bfloat16* kT = sK + stage * KT * LDQ;
        const __nv_bfloat16* vT = sV + stage * KT * LDQ;

        // 1. S = Q·Kᵀ (16 rows × 64 keys per warp).
#pragma unroll
        for (int nb = 0; nb < NKF; ++nb) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int ks = 0; ks < NQF; ++ks) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> kb;
                wmma::load_matrix_sync(kb, kT + nb * 16 * LDQ + ks * 16, LDQ);
                wmma::mma_sync(acc, qf[ks], kb, acc);
            }
            wmma::store_matrix_sync(sSw + nb * 16, acc, LDS, wmma::mem_row_major);
        }
        __syncwarp();

        // 2. Online softmax of row myR over this tile's keys kt + 2c + half.
        const int kt = blk.lo + t * KT;
        const float* sRow = sSw + (lane >> 1) * LDS;
        float sc[KT / 2];
        float mt = -INFINITY;
#pragma unroll
        for (int c = 0; c < KT / 2; ++c) {
            const int j = 2 * c + half, key = kt + j;
            const float s = key >= mine.lo && key < mine.hi ? sRow[j] * p.scaleLog2 : -INFINITY;
            sc[c] = s;
            mt = fmaxf(mt, s);
        }
        mt = fmaxf(mt, __shfl_xor_sync(kFull, mt, 1));
        const float mNew = fmaxf(m, mt);
        __nv_bfloat16* pRow = sPw + (lane >> 1) * LDP;
        float corr = 1.0f, sum = 0.0f;
        if (mNew == -INFINITY) {   // nothing visible yet in this row
#pragma unroll
            for (int c = 0; c < KT / 2; ++c) pRow[2 * c + half] = __float2bfloat16_rn(0.0f);
        } else {
            corr = tc::rescaleFactor(m, mNew);
#pragma unroll
            for (int c = 0; c < KT / 2; ++c) {
                const float pj = tc::probability(sc[c], mNew);
                sum += pj;
                pRow[2 * c + half] = __float2bfloat16_rn(pj);
            }
        }
        sum += __shfl_xor_sync(kFull, sum, 1);
        l = l * corr + sum;
        m = mNew;
#pragma unroll
        for (int nb = 0; nb < NQF; ++nb)
#pragma unroll
            for (int c = 0; c < 8; ++c) o[nb][c] *= corr;
        __syncwarp();   // sP complete, sS free

        // 3. O += P·V, one 16-column block of the head at a time.
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> pf[NKF];
#pragma unroll
        for (int ks = 0; ks < NKF; ++ks) wmma::load_matrix_sync(pf[ks], sPw + ks * 16, LDP);
#pragma unroll
        for (int nb = 0; nb < NQF; ++nb) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
#pragma unroll
            for (int ks = 0; ks < NKF; ++ks) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> vb;
                wmma::load_matrix_sync(vb, vT + ks * 16 * LDQ + nb * 16, LDQ);
                wmma::mma_sync(acc, pf[ks], vb, acc);
            }
            wmma::store_matrix_sync(sSw, acc, LDS, wmma::mem_row_major);
            __syncwarp();
#pragma unroll
            for (int c = 0; c < 8; ++c) o[nb][c] += sRow[half * 8 + c];
            __syncwarp();   // read before the next block overwrites the strip
        }
        __syncthreads();   // every warp is done with this stage before the next prefetch refills it
    }

    if (myRow >= nRows) return;
    const int i = myRow / group, h = g * group + myRow % group;
    const size_t at = (static_cast<size_t>(i) * p.nHeads + h) * HD;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;   // l > 0: every query sees at least itself
#pragma unroll
    for (int nb = 0; nb < NQF; ++nb)
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int d = nb * 16 + half * 8 + c;
            const float val = o[nb][c] * inv;
            if constexpr (OUT_BF16)
                p.outBf16[at + d] = __float2bfloat16_rn(val);
            else
                p.outF32[at + d] = val;
        }
}

// K and V rows [0, ctx) of every KV head, f32 [nKv][kvStride][hd] -> bf16 [nKv][ctx][hd].
__global__ void kv_to_bf16_kernel(const float* k, const float* v, __nv_bfloat16* kOut, __nv_bfloat16* vOut, size_t ctx,
                                  size_t kvStride, size_t hd, size_t n) {
    const size_t idx = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const size_t d = idx % hd, row = (idx / hd) % ctx, g = idx / (hd * ctx);
    const size_t src = (g * kvStride + row) * hd + d;
    kOut[idx] = __float2bfloat16_rn(k[src]);
    vOut[idx] = __float2bfloat16_rn(v[src]);
}

template <int HD, bool OUT_BF16>
Status launchTc(const TcParams& p, dim3 grid, cudaStream_t stream) {
    constexpr size_t smem = tc::smemBytes(HD);
    static_assert(smem <= 163 * 1024, "fits the opt-in shared memory of sm_80 and sm_90");
    // Above 48 KiB a kernel needs the opt-in attribute (per device; cheap next to a prefill kernel).
    MSA_CUDA_CHECK(cudaFuncSetAttribute(flash_attn_tc_kernel<HD, OUT_BF16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(smem)));
    flash_attn_tc_kernel<HD, OUT_BF16><<<grid, kThreads, smem, stream>>>(p);
    MSA_CUDA_CHECK_LAUNCH("flash_attn_tc_kernel");
    return Status::ok();
}

}  // namespace

Status flashAttentionTc(const FlashAttentionTcArgs& a, cudaStream_t stream) {
    if (a.nTokens == 0) return Status::ok();
    if (!tc::supportedHeadDim(a.headDim))
        return unsupported("tensor-core flash attention has no kernel for head dimension " + std::to_string(a.headDim));
    if (a.nKv == 0 || a.nHeads % a.nKv != 0 || (a.outF32 == nullptr) == (a.outBf16 == nullptr) || a.q == nullptr ||
        a.kBf16 == nullptr || a.vBf16 == nullptr)
        return invalidArgument("flashAttentionTc: inconsistent arguments");
    if (a.kvStride > static_cast<size_t>(INT_MAX) || a.nTokens * a.nHeads > static_cast<size_t>(INT_MAX) ||
        a.prefixRows + a.hostPast > static_cast<size_t>(INT_MAX))
        return invalidArgument("flashAttentionTc: context or batch too large for 32-bit row indices");
    TcParams p{};
    p.q = a.q;
    p.k = reinterpret_cast<const __nv_bfloat16*>(a.kBf16);
    p.v = reinterpret_cast<const __nv_bfloat16*>(a.vBf16);
    p.outF32 = a.outF32;
    p.outBf16 = reinterpret_cast<__nv_bfloat16*>(a.outBf16);
    p.nTokens = static_cast<int>(a.nTokens);
    p.nHeads = static_cast<int>(a.nHeads);
    p.nKv = static_cast<int>(a.nKv);
    p.kvStride = static_cast<int>(a.kvStride);
    p.prefixRows = static_cast<int>(a.prefixRows);
    p.hostPast = static_cast<int>(a.hostPast);
    p.nPast = a.nPast;
    p.causal = a.causal ? 1 : 0;
    p.segStart = a.segStart;
    p.scaleLog2 = (1.0f / sqrtf(static_cast<float>(a.headDim))) * tc::kLog2e;
    const size_t group = a.nHeads / a.nKv;
    const dim3 grid(static_cast<unsigned>(ceilDiv(static_cast<long>(a.nTokens * group), tc::kRows)), static_cast<unsigned>(a.nKv));
    const bool bf16 = a.outBf16 != nullptr;
    if (a.headDim == 64) return bf16 ? launchTc<64, true>(p, grid, stream) : launchTc<64, false>(p, grid, stream);
    return bf16 ? launchTc<128, true>(p, grid, stream) : launchTc<128, false>(p, grid, stream);
}

bool useTensorCoreAttention(const FlashAttentionArgs& a) {
    return a.nTokens >= tc::kMinTokens && tc::supportedHeadDim(a.headDim) && a.nSplits == 1;
}

Status flashAttentionPrefill(const FlashAttentionArgs& a, size_t ctxRows, cudaStream_t stream) {
    if (!useTensorCoreAttention(a)) return flashAttention(a, stream);
    if (ctxRows == 0 || ctxRows > a.kvStride || a.nKv == 0)
        return invalidArgument("flashAttentionPrefill: " + std::to_string(ctxRows) + " context rows for a cache of " +
                               std::to_string(a.kvStride));
    const size_t n = a.nKv * ctxRows * a.headDim;
    void* scratch = nullptr;
    MSA_CUDA_CHECK(cudaMallocAsync(&scratch, 2 * n * sizeof(__nv_bfloat16), stream));
    auto* kB = static_cast<__nv_bfloat16*>(scratch);
    auto* vB = kB + n;
    kv_to_bf16_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, stream>>>(a.kCache, a.vCache, kB, vB, ctxRows, a.kvStride,
                                                                                   a.headDim, n);
    const auto run = [&]() -> Status {
        MSA_CUDA_CHECK_LAUNCH("kv_to_bf16_kernel");
        FlashAttentionTcArgs t;
        t.q = a.q;
        t.kBf16 = reinterpret_cast<const uint16_t*>(kB);
        t.vBf16 = reinterpret_cast<const uint16_t*>(vB);
        t.outF32 = a.outF32;
        t.outBf16 = a.outBf16;
        t.nTokens = a.nTokens;
        t.nHeads = a.nHeads;
        t.nKv = a.nKv;
        t.headDim = a.headDim;
        t.kvStride = ctxRows;
        t.prefixRows = a.prefixRows;
        t.nPast = a.nPast;
        t.hostPast = a.hostPast;
        t.causal = a.causal;
        t.segStart = a.segStart;
        return flashAttentionTc(t, stream);
    };
    const Status st = run();
    // Stream-ordered: the scratch is released once the kernel has read it, on every path.
    const Status freed = cudaStatus(cudaFreeAsync(scratch, stream), "cudaFreeAsync(bf16 KV scratch)", __FILE__, __LINE__);
    return st.isOk() ? freed : st;
}

}  // namespace msa::gpu

// flash_attn_tc_math.h: the CUDA-free part of the tensor-core flash-attention kernel
// (gpu/flash_attn_tc.cu): its tile shape and shared-memory layout, the per-row online-softmax step
// (the same functions run in the kernel, as __host__ __device__, and on the host), and a host
// emulation of the whole kernel (tiling, masks, online softmax, rescaling, bf16 rounding of Q, K, V
// and P) that the unit test tests/gpu/tst_gpu_tc_emulation.cpp compares with cpu::attention on every
// CI run, since the kernel itself only runs where a GPU is.
//
// The emulation follows the kernel's arithmetic per tile: S = bf16(Q)·bf16(K)ᵀ in f32 (the tensor
// cores' summation order differs, which is within the f32 rounding), scores scaled into the log2
// domain, masked keys at -inf, P = exp2(S - m) rounded to bf16 for the P·V product while the row sum
// l adds the unrounded f32 values (even keys then odd keys, as the two lanes of a row hold them), and
// O = O·corr + P·V per tile.
//
// Thread affinity: none (pure functions). Failure: none (callers validate shapes).
//
// Usage (host):
//     TcEmulationArgs e{q, k, v, out, nTokens, nHeads, nKv, headDim, kvStride, base, causal, segStart};
//     emulateTcAttention(e);
#pragma once

#include "gpu/launch_plan.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(__CUDACC__)
#define MSA_TC_HD __host__ __device__ __forceinline__
#else
#define MSA_TC_HD inline
#endif

namespace msa::gpu::tc {

// A block computes kRows query rows of one KV head (rows enumerate (token i, head r of the KV group)
// as row = i·group + r, so the query heads sharing a KV head share its K/V tiles), kKeys keys per
// tile; warp w owns rows [16w, 16w + 16) and, within the warp, lane L owns row L/2 and the keys (or
// output columns) of parity / half L % 2.
inline constexpr int kRows = 64;
inline constexpr int kKeys = 64;
inline constexpr int kWarps = 4;
inline constexpr int kWarpRows = 16;
static_assert(kRows == kWarps * kWarpRows, "each warp owns one 16-row strip");
static_assert(kKeys == 64, "the softmax step gives each of the two lanes of a row 32 keys");
// Calls with fewer query tokens (decode, short prompts) stay on the CUDA-core kernel.
inline constexpr size_t kMinTokens = 64;

constexpr bool supportedHeadDim(size_t headDim) { return headDim == 64 || headDim == 128; }

// Shared-memory row strides (elements). The +8 bf16 / +4 f32 padding shifts consecutive rows by 16
// bytes so the 16-byte rows that wmma loads do not all hit the same banks; every fragment pointer
// stays 32-byte aligned as wmma requires (16 rows × stride × element size is a multiple of 32).
constexpr int ldQk(int headDim) { return headDim + 8; }   // sQ, sK, sV (bf16)
inline constexpr int kLdP = kKeys + 8;                     // sP (bf16)
inline constexpr int kLdS = kKeys + 4;                     // sS (f32): scores, then 16×16 P·V blocks

// Dynamic shared memory of one block: sQ, two K and two V stages (cp.async double buffering), sP, sS.
constexpr size_t smemBytes(int headDim) {
    return 2 * (static_cast<size_t>(kRows) * ldQk(headDim) + 4 * static_cast<size_t>(kKeys) * ldQk(headDim) +
                static_cast<size_t>(kRows) * kLdP) +
           4 * static_cast<size_t>(kRows) * kLdS;
}

// Scores are kept in the log2 domain: s = (q·k) · scale · log2(e), p = exp2(s - m).
inline constexpr float kLog2e = 1.4426950408889634f;

// Softmax state correction when the running max of a row moves from mOld to mNew (mNew finite).
MSA_TC_HD float rescaleFactor(float mOld, float mNew) { return mOld == -INFINITY ? 0.0f : exp2f(mOld - mNew); }
// Unnormalised probability of a (log2-domain) score against the row's running max (finite).
MSA_TC_HD float probability(float s, float mNew) { return s == -INFINITY ? 0.0f : exp2f(s - mNew); }

// The union of the keys the rows [row0, row0 + kRows) of a block see (rows past nRows ignored).
MSA_TC_HD KeyRange blockKeys(int row0, int nRows, int group, int base, int nTokens, bool causal, const int32_t* segStart) {
    KeyRange u{0x7fffffff, 0};
    const int last = (row0 + kRows < nRows ? row0 + kRows : nRows) - 1;
    for (int i = row0 / group; i <= last / group; ++i) {
        const KeyRange kr = visibleKeys(i, base, nTokens, causal, segStart ? segStart[i] : -1);
        u.lo = kr.lo < u.lo ? kr.lo : u.lo;
        u.hi = kr.hi > u.hi ? kr.hi : u.hi;
    }
    if (u.hi <= u.lo) u = {0, 0};
    return u;
}

// ---- host emulation ------------------------------------------------------------------------------

inline float roundBf16(float x) { return bf16ToF32(f32ToBf16(x)); }

struct TcEmulationArgs {
    const float* q = nullptr;   // nTokens × nHeads × headDim
    const float* k = nullptr;   // [nKv][kvStride][headDim]
    const float* v = nullptr;
    float* out = nullptr;       // nTokens × nHeads × headDim
    size_t nTokens = 0, nHeads = 0, nKv = 0, headDim = 0, kvStride = 0;
    int base = 0;               // context rows in front of this call's tokens (prefix + past)
    bool causal = true;
    const int32_t* segStart = nullptr;
};

// Runs the kernel's schedule on the host, block by block and tile by tile.
inline void emulateTcAttention(const TcEmulationArgs& a) {
    const int hd = static_cast<int>(a.headDim);
    const int group = static_cast<int>(a.nHeads / a.nKv);
    const int nTok = static_cast<int>(a.nTokens);
    const int nRows = nTok * group;
    const float scaleLog2 = (1.0f / std::sqrt(static_cast<float>(hd))) * kLog2e;
    std::vector<float> qb(static_cast<size_t>(kRows) * hd), kb(static_cast<size_t>(kKeys) * hd), vb(kb.size());
    std::vector<float> o(static_cast<size_t>(kRows) * hd), pv(hd), m(kRows), l(kRows), sc(kKeys), pr(kKeys);
    for (int g = 0; g < static_cast<int>(a.nKv); ++g) {
        const float* kBase = a.k + static_cast<size_t>(g) * a.kvStride * hd;
        const float* vBase = a.v + static_cast<size_t>(g) * a.kvStride * hd;
        for (int row0 = 0; row0 < nRows; row0 += kRows) {
            // sQ: bf16 rows, zero past nRows.
            for (int r = 0; r < kRows; ++r) {
                const int row = row0 + r;
                for (int d = 0; d < hd; ++d) {
                    float val = 0.0f;
                    if (row < nRows) {
                        const int i = row / group, h = g * group + row % group;
                        val = a.q[(static_cast<size_t>(i) * a.nHeads + h) * hd + d];
                    }
                    qb[static_cast<size_t>(r) * hd + d] = roundBf16(val);
                }
                m[r] = -INFINITY;
                l[r] = 0.0f;
            }
            std::fill(o.begin(), o.end(), 0.0f);
            const KeyRange t = blockKeys(row0, nRows, group, a.base, nTok, a.causal, a.segStart);
            for (int kt = t.lo; kt < t.hi; kt += kKeys) {
                for (int j = 0; j < kKeys; ++j)   // the cp.async tile, zero-filled past the block's keys
                    for (int d = 0; d < hd; ++d) {
                        const bool in = kt + j < t.hi;
                        kb[static_cast<size_t>(j) * hd + d] = in ? roundBf16(kBase[static_cast<size_t>(kt + j) * hd + d]) : 0.0f;
                        vb[static_cast<size_t>(j) * hd + d] = in ? roundBf16(vBase[static_cast<size_t>(kt + j) * hd + d]) : 0.0f;
                    }
                for (int r = 0; r < kRows; ++r) {
                    const int row = row0 + r;
                    KeyRange kr{0, 0};
                    if (row < nRows) {
                        const int i = row / group;
                        kr = visibleKeys(i, a.base, nTok, a.causal, a.segStart ? a.segStart[i] : -1);
                    }
                    float mt = -INFINITY;
                    for (int j = 0; j < kKeys; ++j) {
                        float dot = 0.0f;
                        for (int d = 0; d < hd; ++d) dot += qb[static_cast<size_t>(r) * hd + d] * kb[static_cast<size_t>(j) * hd + d];
                        const int key = kt + j;
                        sc[j] = key >= kr.lo && key < kr.hi ? dot * scaleLog2 : -INFINITY;
                        mt = std::fmax(mt, sc[j]);
                    }
                    const float mNew = std::fmax(m[r], mt);
                    float corr = 1.0f, sumEven = 0.0f, sumOdd = 0.0f;
                    if (mNew == -INFINITY) {
                        std::fill(pr.begin(), pr.end(), 0.0f);
                    } else {
                        corr = rescaleFactor(m[r], mNew);
                        for (int j = 0; j < kKeys; ++j) {
                            const float p = probability(sc[j], mNew);
                            (j % 2 ? sumOdd : sumEven) += p;
                            pr[j] = roundBf16(p);
                        }
                    }
                    l[r] = l[r] * corr + (sumEven + sumOdd);
                    m[r] = mNew;
                    std::fill(pv.begin(), pv.end(), 0.0f);
                    for (int j = 0; j < kKeys; ++j)
                        for (int d = 0; d < hd; ++d) pv[d] += pr[j] * vb[static_cast<size_t>(j) * hd + d];
                    for (int d = 0; d < hd; ++d) {
                        float& od = o[static_cast<size_t>(r) * hd + d];
                        od = od * corr + pv[d];
                    }
                }
            }
            for (int r = 0; r < kRows && row0 + r < nRows; ++r) {
                const int row = row0 + r, i = row / group, h = g * group + row % group;
                const float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
                for (int d = 0; d < hd; ++d)
                    a.out[(static_cast<size_t>(i) * a.nHeads + h) * hd + d] = o[static_cast<size_t>(r) * hd + d] * inv;
            }
        }
    }
}

}  // namespace msa::gpu::tc

// dtype.cpp: block layouts, exact dequantization, and row dot products (scalar + AVX2/FMA).
//
// The scalar code is the reference: it spells out the same f32 expressions as the `gguf` Python
// package so dequantization is bit-exact (this file is compiled without -ffp-contract=fast, so
// `a*b + c` is never fused into an FMA here). The AVX2 kernels use FMA freely: they only feed dot
// products, which are compared with a tolerance.
#include "core/model/dtype.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cassert>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#if defined(MSA_HAVE_AVX2_KERNELS)
#include <immintrin.h>
#define MSA_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#endif

namespace msa::model {

namespace {

constexpr std::array<DTypeInfo, kDTypeCount> kInfos = {{
    {DType::F32, "f32", 1, 4, 0, false},
    {DType::F16, "f16", 1, 2, 1, false},
    {DType::BF16, "bf16", 1, 2, 30, false},
    {DType::Q8_0, "q8_0", 32, 34, 8, true},
    {DType::Q4_0, "q4_0", 32, 18, 2, true},
    {DType::Q4_1, "q4_1", 32, 20, 3, true},
    {DType::Q4_K, "q4_K", 256, 144, 12, true},
    {DType::Q6_K, "q6_K", 256, 210, 14, true},
}};

inline uint16_t loadU16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);   // GGUF and safetensors are little-endian, as is every target we build for
    return v;
}

inline float loadF16(const uint8_t* p) { return f16ToF32(loadU16(p)); }

// q4_K packs eight 6-bit scales and eight 6-bit mins into 12 bytes (see dtype.h).
inline void q4kScaleMin(const uint8_t* s, int j, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = s[j] & 63;
        m = s[j + 4] & 63;
    } else {
        sc = static_cast<uint8_t>((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

// ---- scalar dequantization of one block -----------------------------------------------------------

void dequantQ8_0(const uint8_t* b, float* y) {
    const float d = loadF16(b);
    const auto* q = reinterpret_cast<const int8_t*>(b + 2);
    for (int i = 0; i < 32; ++i) y[i] = static_cast<float>(q[i]) * d;
}

void dequantQ4_0(const uint8_t* b, float* y) {
    const float d = loadF16(b);
    const uint8_t* qs = b + 2;
    for (int i = 0; i < 16; ++i) {
        y[i] = d * static_cast<float>((qs[i] & 0x0F) - 8);
        y[i + 16] = d * static_cast<float>((qs[i] >> 4) - 8);
    }
}

void dequantQ4_1(const uint8_t* b, float* y) {
    const float d = loadF16(b);
    const float m = loadF16(b + 2);
    const uint8_t* qs = b + 4;
    for (int i = 0; i < 16; ++i) {
        const float lo = d * static_cast<float>(qs[i] & 0x0F);
        const float hi = d * static_cast<float>(qs[i] >> 4);
        y[i] = lo + m;
        y[i + 16] = hi + m;
    }
}

void dequantQ4_K(const uint8_t* b, float* y) {
    const float d = loadF16(b);
    const float dmin = loadF16(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qs = b + 16;
    for (int g = 0; g < 4; ++g) {
        uint8_t sc0, m0, sc1, m1;
        q4kScaleMin(scales, 2 * g, sc0, m0);
        q4kScaleMin(scales, 2 * g + 1, sc1, m1);
        const float d0 = d * static_cast<float>(sc0), mm0 = dmin * static_cast<float>(m0);
        const float d1 = d * static_cast<float>(sc1), mm1 = dmin * static_cast<float>(m1);
        for (int l = 0; l < 32; ++l) {
            const float a = d0 * static_cast<float>(qs[l] & 0x0F);
            const float c = d1 * static_cast<float>(qs[l] >> 4);
            y[l] = a - mm0;
            y[l + 32] = c - mm1;
        }
        qs += 32;
        y += 64;
    }
}

// Unpacks the 256 signed 6-bit values of a q6_K block (q-32) in element order.
void unpackQ6_K(const uint8_t* b, int8_t* q) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    for (int n = 0; n < 2; ++n) {
        for (int l = 0; l < 32; ++l) {
            q[l] = static_cast<int8_t>(((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
        ql += 64;
        qh += 32;
        q += 128;
    }
}

void dequantQ6_K(const uint8_t* b, float* y) {
    int8_t q[256];
    unpackQ6_K(b, q);
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = loadF16(b + 208);
    for (int s = 0; s < 16; ++s) {
        const float ds = d * static_cast<float>(sc[s]);
        for (int l = 0; l < 16; ++l) y[s * 16 + l] = ds * static_cast<float>(q[s * 16 + l]);
    }
}

void dequantBlocksScalar(DType type, const uint8_t* p, size_t nBlocks, float* y) {
    switch (type) {
    case DType::F32:
        std::memcpy(y, p, nBlocks * 4);
        return;
    case DType::F16:
        for (size_t i = 0; i < nBlocks; ++i) y[i] = f16ToF32(loadU16(p + 2 * i));
        return;
    case DType::BF16:
        for (size_t i = 0; i < nBlocks; ++i) y[i] = bf16ToF32(loadU16(p + 2 * i));
        return;
    case DType::Q8_0:
        for (size_t i = 0; i < nBlocks; ++i) dequantQ8_0(p + 34 * i, y + 32 * i);
        return;
    case DType::Q4_0:
        for (size_t i = 0; i < nBlocks; ++i) dequantQ4_0(p + 18 * i, y + 32 * i);
        return;
    case DType::Q4_1:
        for (size_t i = 0; i < nBlocks; ++i) dequantQ4_1(p + 20 * i, y + 32 * i);
        return;
    case DType::Q4_K:
        for (size_t i = 0; i < nBlocks; ++i) dequantQ4_K(p + 144 * i, y + 256 * i);
        return;
    case DType::Q6_K:
        for (size_t i = 0; i < nBlocks; ++i) dequantQ6_K(p + 210 * i, y + 256 * i);
        return;
    }
}

// ---- scalar dot products --------------------------------------------------------------------------
// Quantized rows are dotted block by block: the integer part is summed against x, then scaled once,
// which is both what the SIMD path does and cheaper than dequantizing each element.

float dotScalar(DType type, const uint8_t* p, const float* x, size_t n) {
    float acc = 0.0f;
    switch (type) {
    case DType::F32:
        for (size_t i = 0; i < n; ++i) {
            float wi;
            std::memcpy(&wi, p + 4 * i, 4);
            acc += wi * x[i];
        }
        return acc;
    case DType::F16:
        for (size_t i = 0; i < n; ++i) acc += f16ToF32(loadU16(p + 2 * i)) * x[i];
        return acc;
    case DType::BF16:
        for (size_t i = 0; i < n; ++i) acc += bf16ToF32(loadU16(p + 2 * i)) * x[i];
        return acc;
    case DType::Q8_0:
        for (size_t b = 0; b < n / 32; ++b, p += 34, x += 32) {
            const auto* q = reinterpret_cast<const int8_t*>(p + 2);
            float s = 0.0f;
            for (int i = 0; i < 32; ++i) s += static_cast<float>(q[i]) * x[i];
            acc += loadF16(p) * s;
        }
        return acc;
    case DType::Q4_0:
        for (size_t b = 0; b < n / 32; ++b, p += 18, x += 32) {
            const uint8_t* qs = p + 2;
            float s = 0.0f;
            for (int i = 0; i < 16; ++i)
                s += static_cast<float>((qs[i] & 0x0F) - 8) * x[i] + static_cast<float>((qs[i] >> 4) - 8) * x[i + 16];
            acc += loadF16(p) * s;
        }
        return acc;
    case DType::Q4_1:
        for (size_t b = 0; b < n / 32; ++b, p += 20, x += 32) {
            const uint8_t* qs = p + 4;
            float s = 0.0f, sx = 0.0f;
            for (int i = 0; i < 16; ++i) {
                s += static_cast<float>(qs[i] & 0x0F) * x[i] + static_cast<float>(qs[i] >> 4) * x[i + 16];
                sx += x[i] + x[i + 16];
            }
            acc += loadF16(p) * s + loadF16(p + 2) * sx;
        }
        return acc;
    case DType::Q4_K:
        for (size_t b = 0; b < n / 256; ++b, p += 144) {
            const float d = loadF16(p), dmin = loadF16(p + 2);
            const uint8_t* qs = p + 16;
            for (int g = 0; g < 4; ++g, qs += 32, x += 64) {
                uint8_t sc0, m0, sc1, m1;
                q4kScaleMin(p + 4, 2 * g, sc0, m0);
                q4kScaleMin(p + 4, 2 * g + 1, sc1, m1);
                float s0 = 0, s1 = 0, x0 = 0, x1 = 0;
                for (int l = 0; l < 32; ++l) {
                    s0 += static_cast<float>(qs[l] & 0x0F) * x[l];
                    s1 += static_cast<float>(qs[l] >> 4) * x[l + 32];
                    x0 += x[l];
                    x1 += x[l + 32];
                }
                acc += d * (static_cast<float>(sc0) * s0 + static_cast<float>(sc1) * s1) -
                       dmin * (static_cast<float>(m0) * x0 + static_cast<float>(m1) * x1);
            }
        }
        return acc;
    case DType::Q6_K:
        for (size_t b = 0; b < n / 256; ++b, p += 210, x += 256) {
            int8_t q[256];
            unpackQ6_K(p, q);
            const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
            float s = 0.0f;
            for (int g = 0; g < 16; ++g) {
                float sg = 0.0f;
                for (int l = 0; l < 16; ++l) sg += static_cast<float>(q[g * 16 + l]) * x[g * 16 + l];
                s += static_cast<float>(sc[g]) * sg;
            }
            acc += loadF16(p + 208) * s;
        }
        return acc;
    }
    return acc;
}

// ---- integer dot products against q8 activations ---------------------------------------------------

float dotQ8Scalar(DType type, const uint8_t* p, const Q8Activations& x) {
    const size_t nb = x.n / 32;
    const int8_t* xq = x.q.data();
    float acc = 0.0f;
    switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: {
        std::vector<float> w(x.n);
        dequantBlocksScalar(type, p, x.n, w.data());
        for (size_t b = 0; b < nb; ++b) {
            float s = 0.0f;
            for (int i = 0; i < 32; ++i) s += w[32 * b + i] * static_cast<float>(xq[32 * b + i]);
            acc += x.d[b] * s;
        }
        return acc;
    }
    case DType::Q8_0:
        for (size_t b = 0; b < nb; ++b, p += 34, xq += 32) {
            const auto* q = reinterpret_cast<const int8_t*>(p + 2);
            int32_t s = 0;
            for (int i = 0; i < 32; ++i) s += q[i] * xq[i];
            acc += loadF16(p) * x.d[b] * static_cast<float>(s);
        }
        return acc;
    case DType::Q4_0:
        for (size_t b = 0; b < nb; ++b, p += 18, xq += 32) {
            const uint8_t* qs = p + 2;
            int32_t s = 0;
            for (int i = 0; i < 16; ++i) s += ((qs[i] & 0x0F) - 8) * xq[i] + ((qs[i] >> 4) - 8) * xq[i + 16];
            acc += loadF16(p) * x.d[b] * static_cast<float>(s);
        }
        return acc;
    case DType::Q4_1:
        for (size_t b = 0; b < nb; ++b, p += 20, xq += 32) {
            const uint8_t* qs = p + 4;
            int32_t s = 0;
            for (int i = 0; i < 16; ++i) s += (qs[i] & 0x0F) * xq[i] + (qs[i] >> 4) * xq[i + 16];
            acc += loadF16(p) * x.d[b] * static_cast<float>(s) + loadF16(p + 2) * x.sum[b];
        }
        return acc;
    case DType::Q4_K:
        for (size_t sb = 0; sb < nb / 8; ++sb, p += 144) {
            const float d = loadF16(p), dmin = loadF16(p + 2);
            const uint8_t* qs = p + 16;
            for (int g = 0; g < 4; ++g, qs += 32) {
                for (int h = 0; h < 2; ++h) {
                    const size_t b = sb * 8 + static_cast<size_t>(2 * g + h);
                    uint8_t sc, m;
                    q4kScaleMin(p + 4, 2 * g + h, sc, m);
                    int32_t s = 0;
                    for (int l = 0; l < 32; ++l) s += (h ? (qs[l] >> 4) : (qs[l] & 0x0F)) * x.q[32 * b + l];
                    acc += d * static_cast<float>(sc) * x.d[b] * static_cast<float>(s) - dmin * static_cast<float>(m) * x.sum[b];
                }
            }
        }
        return acc;
    case DType::Q6_K:
        for (size_t sb = 0; sb < nb / 8; ++sb, p += 210) {
            int8_t q[256];
            unpackQ6_K(p, q);
            const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
            const float d = loadF16(p + 208);
            for (int j = 0; j < 8; ++j) {
                const size_t b = sb * 8 + static_cast<size_t>(j);
                int32_t s0 = 0, s1 = 0;
                for (int l = 0; l < 16; ++l) {
                    s0 += q[32 * j + l] * x.q[32 * b + l];
                    s1 += q[32 * j + 16 + l] * x.q[32 * b + 16 + l];
                }
                acc += d * x.d[b] * static_cast<float>(sc[2 * j] * s0 + sc[2 * j + 1] * s1);
            }
        }
        return acc;
    }
    return acc;
}

// ---- AVX2 + FMA kernels ---------------------------------------------------------------------------
#if defined(MSA_HAVE_AVX2_KERNELS)

MSA_AVX2_TARGET inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

MSA_AVX2_TARGET inline float f16Scalar(const uint8_t* p) { return _cvtsh_ss(loadU16(p)); }

// 8 signed bytes at p -> 8 floats.
MSA_AVX2_TARGET inline __m256 i8x8(const int8_t* p) {
    __m128i v;
    std::memcpy(&v, p, 8);   // only the low 8 bytes are used
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}
MSA_AVX2_TARGET inline __m256 i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

// Sum of q[0..31]*x[0..31] for 32 signed bytes in a 256-bit register.
MSA_AVX2_TARGET inline __m256 dot32(__m256i q, const float* x, __m256 acc) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    acc = _mm256_fmadd_ps(i8x8(lo), _mm256_loadu_ps(x), acc);
    acc = _mm256_fmadd_ps(i8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), acc);
    acc = _mm256_fmadd_ps(i8x8(hi), _mm256_loadu_ps(x + 16), acc);
    acc = _mm256_fmadd_ps(i8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), acc);
    return acc;
}

MSA_AVX2_TARGET inline __m256 sum32(const float* x) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                         _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
}

// 16 packed bytes -> 32 nibbles in element order (low nibbles first), as unsigned bytes.
MSA_AVX2_TARGET inline __m256i nibbles32(const uint8_t* qs) {
    __m128i v;
    std::memcpy(&v, qs, 16);
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(v, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
    return _mm256_set_m128i(hi, lo);
}

MSA_AVX2_TARGET float dotAvx2(DType type, const uint8_t* p, const float* x, size_t n) {
    __m256 acc = _mm256_setzero_ps();
    switch (type) {
    case DType::F32: {
        size_t i = 0;
        __m256 acc2 = _mm256_setzero_ps();
        for (; i + 16 <= n; i += 16) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * i)), _mm256_loadu_ps(x + i), acc);
            acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * i + 32)),
                                   _mm256_loadu_ps(x + i + 8), acc2);
        }
        float s = hsum(_mm256_add_ps(acc, acc2));
        for (; i < n; ++i) {
            float w;
            std::memcpy(&w, p + 4 * i, 4);
            s += w * x[i];
        }
        return s;
    }
    case DType::F16: {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m128i h;
            std::memcpy(&h, p + 2 * i, 16);
            acc = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(x + i), acc);
        }
        float s = hsum(acc);
        for (; i < n; ++i) s += f16ToF32(loadU16(p + 2 * i)) * x[i];
        return s;
    }
    case DType::BF16: {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m128i h;
            std::memcpy(&h, p + 2 * i, 16);
            const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            acc = _mm256_fmadd_ps(_mm256_castsi256_ps(w), _mm256_loadu_ps(x + i), acc);
        }
        float s = hsum(acc);
        for (; i < n; ++i) s += bf16ToF32(loadU16(p + 2 * i)) * x[i];
        return s;
    }
    case DType::Q8_0:
        for (size_t b = 0; b < n / 32; ++b, p += 34, x += 32) {
            __m256i q;
            std::memcpy(&q, p + 2, 32);
            const __m256 s = dot32(q, x, _mm256_setzero_ps());
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16Scalar(p)), s, acc);
        }
        return hsum(acc);
    case DType::Q4_0: {
        const __m256i eight = _mm256_set1_epi8(8);
        for (size_t b = 0; b < n / 32; ++b, p += 18, x += 32) {
            const __m256i q = _mm256_sub_epi8(nibbles32(p + 2), eight);
            const __m256 s = dot32(q, x, _mm256_setzero_ps());
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16Scalar(p)), s, acc);
        }
        return hsum(acc);
    }
    case DType::Q4_1: {
        __m256 accM = _mm256_setzero_ps();
        for (size_t b = 0; b < n / 32; ++b, p += 20, x += 32) {
            const __m256 s = dot32(nibbles32(p + 4), x, _mm256_setzero_ps());
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16Scalar(p)), s, acc);
            accM = _mm256_fmadd_ps(_mm256_set1_ps(f16Scalar(p + 2)), sum32(x), accM);
        }
        return hsum(_mm256_add_ps(acc, accM));
    }
    case DType::Q4_K: {
        __m256 accM = _mm256_setzero_ps();
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (size_t b = 0; b < n / 256; ++b, p += 144) {
            const float d = f16Scalar(p), dmin = f16Scalar(p + 2);
            const uint8_t* qs = p + 16;
            for (int g = 0; g < 4; ++g, qs += 32, x += 64) {
                uint8_t sc0, m0, sc1, m1;
                q4kScaleMin(p + 4, 2 * g, sc0, m0);
                q4kScaleMin(p + 4, 2 * g + 1, sc1, m1);
                __m256i v;
                std::memcpy(&v, qs, 32);
                const __m256i lo = _mm256_and_si256(v, mask);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                const __m256 s0 = dot32(lo, x, _mm256_setzero_ps());
                const __m256 s1 = dot32(hi, x + 32, _mm256_setzero_ps());
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * static_cast<float>(sc0)), s0, acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * static_cast<float>(sc1)), s1, acc);
                accM = _mm256_fmadd_ps(_mm256_set1_ps(dmin * static_cast<float>(m0)), sum32(x), accM);
                accM = _mm256_fmadd_ps(_mm256_set1_ps(dmin * static_cast<float>(m1)), sum32(x + 32), accM);
            }
        }
        return hsum(_mm256_sub_ps(acc, accM));
    }
    case DType::Q6_K: {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        const __m256i m3 = _mm256_set1_epi8(0x03);
        const __m256i off = _mm256_set1_epi8(32);
        for (size_t b = 0; b < n / 256; ++b, p += 210) {
            const float d = f16Scalar(p + 208);
            const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
            const uint8_t* ql = p;
            const uint8_t* qh = p + 128;
            for (int h = 0; h < 2; ++h, ql += 64, qh += 32, sc += 8, x += 128) {
                __m256i l0, l1, hb;
                std::memcpy(&l0, ql, 32);
                std::memcpy(&l1, ql + 32, 32);
                std::memcpy(&hb, qh, 32);
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
                for (int r = 0; r < 4; ++r) {
                    const __m256i qr = _mm256_sub_epi8(q[r], off);
                    const __m128i lo = _mm256_castsi256_si128(qr), hi = _mm256_extracti128_si256(qr, 1);
                    const float* xr = x + 32 * r;
                    // Elements 0..15 use scale 2r, 16..31 scale 2r+1 (within this half).
                    __m256 s0 = _mm256_mul_ps(i8x8(lo), _mm256_loadu_ps(xr));
                    s0 = _mm256_fmadd_ps(i8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xr + 8), s0);
                    __m256 s1 = _mm256_mul_ps(i8x8(hi), _mm256_loadu_ps(xr + 16));
                    s1 = _mm256_fmadd_ps(i8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xr + 24), s1);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * static_cast<float>(sc[2 * r])), s0, acc);
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(d * static_cast<float>(sc[2 * r + 1])), s1, acc);
                }
            }
        }
        return hsum(acc);
    }
    }
    return hsum(acc);
}

// Signed x signed bytes -> 8 int32 lanes, lane k = sum of products of bytes 4k..4k+3. maddubs takes
// an unsigned and a signed operand, so |w| and x*sign(w) are used; |w| <= 128 and |x| <= 127 keep the
// pairwise int16 sums below saturation.
MSA_AVX2_TARGET inline __m256i dotS8(__m256i w, __m256i x) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}
// Unsigned weights (nibbles 0..15) x signed activations.
MSA_AVX2_TARGET inline __m256i dotU8(__m256i w, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

MSA_AVX2_TARGET float dotQ8Avx2(DType type, const uint8_t* p, const Q8Activations& x) {
    const size_t nb = x.n / 32;
    const int8_t* xq = x.q.data();
    __m256 acc = _mm256_setzero_ps();
    float offset = 0.0f;   // the q4_1 / q4_K min terms, which need only the activation block sums
    switch (type) {
    case DType::Q8_0:
        for (size_t b = 0; b < nb; ++b, p += 34, xq += 32) {
            __m256i w, xv;
            std::memcpy(&w, p + 2, 32);
            std::memcpy(&xv, xq, 32);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dotS8(w, xv)), _mm256_set1_ps(f16Scalar(p) * x.d[b]), acc);
        }
        return hsum(acc);
    case DType::Q4_0: {
        const __m256i eight = _mm256_set1_epi8(8);
        for (size_t b = 0; b < nb; ++b, p += 18, xq += 32) {
            __m256i xv;
            std::memcpy(&xv, xq, 32);
            const __m256i w = _mm256_sub_epi8(nibbles32(p + 2), eight);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dotS8(w, xv)), _mm256_set1_ps(f16Scalar(p) * x.d[b]), acc);
        }
        return hsum(acc);
    }
    case DType::Q4_1:
        for (size_t b = 0; b < nb; ++b, p += 20, xq += 32) {
            __m256i xv;
            std::memcpy(&xv, xq, 32);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dotU8(nibbles32(p + 4), xv)), _mm256_set1_ps(f16Scalar(p) * x.d[b]), acc);
            offset += f16Scalar(p + 2) * x.sum[b];
        }
        return hsum(acc) + offset;
    case DType::Q4_K: {
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (size_t sb = 0; sb < nb / 8; ++sb, p += 144) {
            const float d = f16Scalar(p), dmin = f16Scalar(p + 2);
            const uint8_t* qs = p + 16;
            for (int g = 0; g < 4; ++g, qs += 32) {
                __m256i v;
                std::memcpy(&v, qs, 32);
                const __m256i lo = _mm256_and_si256(v, mask);
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
                const size_t b0 = sb * 8 + static_cast<size_t>(2 * g), b1 = b0 + 1;
                uint8_t sc0, m0, sc1, m1;
                q4kScaleMin(p + 4, 2 * g, sc0, m0);
                q4kScaleMin(p + 4, 2 * g + 1, sc1, m1);
                __m256i x0, x1;
                std::memcpy(&x0, x.q.data() + 32 * b0, 32);
                std::memcpy(&x1, x.q.data() + 32 * b1, 32);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dotU8(lo, x0)), _mm256_set1_ps(d * static_cast<float>(sc0) * x.d[b0]), acc);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dotU8(hi, x1)), _mm256_set1_ps(d * static_cast<float>(sc1) * x.d[b1]), acc);
                offset += dmin * (static_cast<float>(m0) * x.sum[b0] + static_cast<float>(m1) * x.sum[b1]);
            }
        }
        return hsum(acc) - offset;
    }
    case DType::Q6_K: {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        const __m256i m3 = _mm256_set1_epi8(0x03);
        const __m256i off = _mm256_set1_epi8(32);
        for (size_t sb = 0; sb < nb / 8; ++sb, p += 210) {
            const float d = f16Scalar(p + 208);
            const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
            const uint8_t* ql = p;
            const uint8_t* qh = p + 128;
            for (int h = 0; h < 2; ++h, ql += 64, qh += 32, sc += 8) {
                __m256i l0, l1, hb;
                std::memcpy(&l0, ql, 32);
                std::memcpy(&l1, ql + 32, 32);
                std::memcpy(&hb, qh, 32);
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), m3), 4));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), m3), 4));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), m3), 4));
                for (int r = 0; r < 4; ++r) {
                    const size_t b = sb * 8 + static_cast<size_t>(4 * h + r);
                    __m256i xv;
                    std::memcpy(&xv, x.q.data() + 32 * b, 32);
                    const __m256i s = dotS8(_mm256_sub_epi8(q[r], off), xv);
                    // Lanes 0..3 hold elements 0..15 (scale 2r), lanes 4..7 elements 16..31 (scale 2r+1).
                    const float dd = d * x.d[b];
                    const __m256 scale = _mm256_set_m128(_mm_set1_ps(dd * static_cast<float>(sc[2 * r + 1])),
                                                         _mm_set1_ps(dd * static_cast<float>(sc[2 * r])));
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc);
                }
            }
        }
        return hsum(acc);
    }
    case DType::F32:
    case DType::F16:
    case DType::BF16:
        break;
    }
    return dotQ8Scalar(type, p, x);
}

// Dequantization with the scalar code's exact expressions: a separate multiply and add (this file is
// built with -ffp-contract=off, so the compiler does not fuse them either), hence bit-identical.
MSA_AVX2_TARGET void dequantAvx2(DType type, const uint8_t* p, size_t nBlocks, float* y) {
    switch (type) {
    case DType::Q8_0:
        for (size_t b = 0; b < nBlocks; ++b, p += 34, y += 32) {
            const __m256 d = _mm256_set1_ps(f16Scalar(p));
            const auto* q = reinterpret_cast<const int8_t*>(p + 2);
            for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(i8x8(q + 8 * k), d));
        }
        return;
    case DType::Q4_0: {
        const __m256i eight = _mm256_set1_epi8(8);
        for (size_t b = 0; b < nBlocks; ++b, p += 18, y += 32) {
            const __m256 d = _mm256_set1_ps(f16Scalar(p));
            alignas(32) int8_t q[32];
            _mm256_store_si256(reinterpret_cast<__m256i*>(q), _mm256_sub_epi8(nibbles32(p + 2), eight));
            for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(d, i8x8(q + 8 * k)));
        }
        return;
    }
    case DType::Q4_1:
        for (size_t b = 0; b < nBlocks; ++b, p += 20, y += 32) {
            const __m256 d = _mm256_set1_ps(f16Scalar(p));
            const __m256 m = _mm256_set1_ps(f16Scalar(p + 2));
            alignas(32) int8_t q[32];
            _mm256_store_si256(reinterpret_cast<__m256i*>(q), nibbles32(p + 4));
            for (int k = 0; k < 4; ++k) _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(d, i8x8(q + 8 * k)), m));
        }
        return;
    case DType::Q4_K: {
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (size_t b = 0; b < nBlocks; ++b, p += 144) {
            const float d = f16Scalar(p), dmin = f16Scalar(p + 2);
            const uint8_t* qs = p + 16;
            for (int g = 0; g < 4; ++g, qs += 32, y += 64) {
                uint8_t sc0, m0, sc1, m1;
                q4kScaleMin(p + 4, 2 * g, sc0, m0);
                q4kScaleMin(p + 4, 2 * g + 1, sc1, m1);
                const __m256 d0 = _mm256_set1_ps(d * static_cast<float>(sc0)), mm0 = _mm256_set1_ps(dmin * static_cast<float>(m0));
                const __m256 d1 = _mm256_set1_ps(d * static_cast<float>(sc1)), mm1 = _mm256_set1_ps(dmin * static_cast<float>(m1));
                __m256i v;
                std::memcpy(&v, qs, 32);
                alignas(32) int8_t lo[32], hi[32];
                _mm256_store_si256(reinterpret_cast<__m256i*>(lo), _mm256_and_si256(v, mask));
                _mm256_store_si256(reinterpret_cast<__m256i*>(hi), _mm256_and_si256(_mm256_srli_epi16(v, 4), mask));
                for (int k = 0; k < 4; ++k) {
                    _mm256_storeu_ps(y + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d0, i8x8(lo + 8 * k)), mm0));
                    _mm256_storeu_ps(y + 32 + 8 * k, _mm256_sub_ps(_mm256_mul_ps(d1, i8x8(hi + 8 * k)), mm1));
                }
            }
        }
        return;
    }
    case DType::Q6_K:
        for (size_t b = 0; b < nBlocks; ++b, p += 210, y += 256) {
            alignas(32) int8_t q[256];
            unpackQ6_K(p, q);
            const auto* sc = reinterpret_cast<const int8_t*>(p + 192);
            const float d = f16Scalar(p + 208);
            for (int s16 = 0; s16 < 16; ++s16) {
                const __m256 ds = _mm256_set1_ps(d * static_cast<float>(sc[s16]));
                _mm256_storeu_ps(y + 16 * s16, _mm256_mul_ps(ds, i8x8(q + 16 * s16)));
                _mm256_storeu_ps(y + 16 * s16 + 8, _mm256_mul_ps(ds, i8x8(q + 16 * s16 + 8)));
            }
        }
        return;
    case DType::BF16: {
        // A bf16 is the upper half of an f32: widening and shifting is exact (NaNs included). The
        // scalar loop calls bf16ToF32 out of line per element and was most of a routing scan's time.
        size_t i = 0;
        for (; i + 8 <= nBlocks; i += 8) {
            __m128i h;
            std::memcpy(&h, p + 2 * i, 16);
            _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
        }
        if (i < nBlocks) dequantBlocksScalar(type, p + 2 * i, nBlocks - i, y + i);
        return;
    }
    case DType::F32:
    case DType::F16:
        break;   // the compiler vectorises these loops; f16 NaN payloads stay exact on the scalar path
    }
    dequantBlocksScalar(type, p, nBlocks, y);
}

bool detectAvx2() {
    if (const char* v = std::getenv("MSA_NO_SIMD"); v && *v && std::string(v) != "0") return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

// Function-local so that a dot product run from another static initialiser still sees the answer.
bool useAvx2() {
    static const bool use = detectAvx2();
    return use;
}

#endif  // MSA_HAVE_AVX2_KERNELS

}  // namespace

const DTypeInfo& dtypeInfo(DType type) { return kInfos[static_cast<size_t>(type)]; }

std::string_view dtypeName(DType type) { return dtypeInfo(type).name; }

std::optional<DType> dtypeFromGgml(uint32_t ggmlType) {
    for (const DTypeInfo& i : kInfos)
        if (i.ggmlType == ggmlType) return i.type;
    return std::nullopt;
}

std::optional<DType> dtypeFromName(std::string_view name) {
    for (const DTypeInfo& i : kInfos) {
        if (i.name.size() != name.size()) continue;
        bool same = true;
        for (size_t k = 0; k < name.size() && same; ++k)
            same = std::tolower(static_cast<unsigned char>(name[k])) == std::tolower(static_cast<unsigned char>(i.name[k]));
        if (same) return i.type;
    }
    return std::nullopt;
}

Result<uint64_t> rowBytes(DType type, uint64_t nElements) {
    const DTypeInfo& i = dtypeInfo(type);
    if (nElements % i.blockElems != 0)
        return invalidArgument("a row of " + std::to_string(nElements) + " elements is not a multiple of the " +
                               std::string(i.name) + " block size " + std::to_string(i.blockElems));
    const uint64_t nBlocks = nElements / i.blockElems;
    if (nBlocks > std::numeric_limits<uint64_t>::max() / i.blockBytes)
        return unsupported("a row of " + std::to_string(nElements) + " elements overflows 64-bit sizes");
    return nBlocks * i.blockBytes;
}

Result<uint64_t> tensorBytes(DType type, std::span<const uint64_t> shape) {
    if (shape.empty()) return rowBytes(type, 1);   // a scalar is one row of one element
    MSA_ASSIGN_OR_RETURN(uint64_t bytes, rowBytes(type, shape[0]));
    for (size_t k = 1; k < shape.size(); ++k) {
        if (shape[k] != 0 && bytes > std::numeric_limits<uint64_t>::max() / shape[k])
            return unsupported("tensor size overflows 64-bit sizes");
        bytes *= shape[k];
    }
    return bytes;
}

float f16ToF32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    const uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            // Subnormal: mant * 2^-24 is exact in f32.
            const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
            std::memcpy(&bits, &v, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

float bf16ToF32(uint16_t b) {
    const uint32_t bits = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32ToF16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u)   // inf or NaN (NaN keeps a quiet payload bit)
        return static_cast<uint16_t>(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0u));
    if (absx >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);   // rounds to >= 65520: inf
    if (absx < 0x38800000u) {
        // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
        float a;
        std::memcpy(&a, &absx, 4);
        const float scaled = a * 16777216.0f;   // exact (power of two)
        uint32_t m = static_cast<uint32_t>(scaled);
        const float rem = scaled - static_cast<float>(m);
        if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
        return static_cast<uint16_t>(sign | m);   // m == 0x400 becomes the smallest normal, correctly
    }
    const uint32_t exp = ((absx >> 23) - 112) << 10;
    const uint32_t mant = absx & 0x7FFFFFu;
    uint32_t h = exp | (mant >> 13);
    const uint32_t rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;   // may carry into the exponent: correct
    return static_cast<uint16_t>(sign | h);
}

uint16_t f32ToBf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);   // quiet NaN
    x += 0x7FFFu + ((x >> 16) & 1u);
    return static_cast<uint16_t>(x >> 16);
}

void dequantizeBlocks(DType type, const void* row, size_t firstBlock, size_t nBlocks, float* dst) {
    const DTypeInfo& i = dtypeInfo(type);
    const uint8_t* p = static_cast<const uint8_t*>(row) + firstBlock * i.blockBytes;
#if defined(MSA_HAVE_AVX2_KERNELS)
    if (useAvx2()) return dequantAvx2(type, p, nBlocks, dst);
#endif
    dequantBlocksScalar(type, p, nBlocks, dst);
}

void dequantizeRow(DType type, const void* src, float* dst, size_t n) {
    const DTypeInfo& i = dtypeInfo(type);
    assert(n % i.blockElems == 0);
    dequantizeBlocks(type, src, 0, n / i.blockElems, dst);
}

void dequantizeRowScalar(DType type, const void* src, float* dst, size_t n) {
    const DTypeInfo& i = dtypeInfo(type);
    assert(n % i.blockElems == 0);
    dequantBlocksScalar(type, static_cast<const uint8_t*>(src), n / i.blockElems, dst);
}

float dotRowScalar(DType type, const void* row, const float* x, size_t n) {
    assert(n % dtypeInfo(type).blockElems == 0);
    return dotScalar(type, static_cast<const uint8_t*>(row), x, n);
}

float dotRow(DType type, const void* row, const float* x, size_t n) {
    assert(n % dtypeInfo(type).blockElems == 0);
#if defined(MSA_HAVE_AVX2_KERNELS)
    if (useAvx2()) return dotAvx2(type, static_cast<const uint8_t*>(row), x, n);
#endif
    return dotScalar(type, static_cast<const uint8_t*>(row), x, n);
}

void quantizeActivations(const float* x, size_t n, Q8Activations& out) {
    assert(n % 32 == 0);
    const size_t nb = n / 32;
    out.n = n;
    out.q.resize(n);
    out.d.resize(nb);
    out.sum.resize(nb);
    for (size_t b = 0; b < nb; ++b) {
        const float* xb = x + 32 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float d = amax / 127.0f;
        const float id = d > 0.0f ? 1.0f / d : 0.0f;
        int32_t s = 0;
        for (int i = 0; i < 32; ++i) {
            const int v = std::clamp(static_cast<int>(std::nearbyint(xb[i] * id)), -127, 127);
            out.q[32 * b + static_cast<size_t>(i)] = static_cast<int8_t>(v);
            s += v;
        }
        out.d[b] = d;
        out.sum[b] = d * static_cast<float>(s);
    }
}

float dotRowQ8Scalar(DType type, const void* row, const Q8Activations& x) {
    return dotQ8Scalar(type, static_cast<const uint8_t*>(row), x);
}

float dotRowQ8(DType type, const void* row, const Q8Activations& x) {
    assert(x.n % dtypeInfo(type).blockElems == 0);
#if defined(MSA_HAVE_AVX2_KERNELS)
    if (useAvx2()) return dotQ8Avx2(type, static_cast<const uint8_t*>(row), x);
#endif
    return dotQ8Scalar(type, static_cast<const uint8_t*>(row), x);
}

bool simdKernelsActive() {
#if defined(MSA_HAVE_AVX2_KERNELS)
    return useAvx2();
#else
    return false;
#endif
}

}  // namespace msa::model

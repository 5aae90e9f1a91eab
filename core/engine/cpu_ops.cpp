#include "core/engine/cpu_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

namespace msa::cpu {

void rmsNorm(const float* x, const float* weight, float* y, size_t nRows, size_t dim, float eps) {
    for (size_t r = 0; r < nRows; ++r) {
        const float* xr = x + r * dim;
        float* yr = y + r * dim;
        float sum = 0.0f;
        for (size_t i = 0; i < dim; ++i) sum += xr[i] * xr[i];
        const float inv = 1.0f / std::sqrt(sum / static_cast<float>(dim) + eps);
        for (size_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * weight[i];
    }
}

void rope(float* x, size_t nTokens, size_t nHeads, size_t headDim, size_t rotaryDim, const int32_t* positions,
          float theta, RopeStyle style) {
    assert(rotaryDim % 2 == 0 && rotaryDim <= headDim);
    const size_t half = rotaryDim / 2;
    // Frequencies once per call: theta^(-2i/d). Computed in double: pow in f32 drifts at large theta.
    std::vector<float> invFreq(half);
    for (size_t i = 0; i < half; ++i)
        invFreq[i] = static_cast<float>(std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(rotaryDim)));
    for (size_t t = 0; t < nTokens; ++t) {
        const float pos = static_cast<float>(positions[t]);
        for (size_t i = 0; i < half; ++i) {
            // Angle as float(pos) * float(invFreq), as the reference implementations compute it in f32.
            const float angle = pos * invFreq[i];
            const float c = std::cos(angle), s = std::sin(angle);
            for (size_t h = 0; h < nHeads; ++h) {
                float* head = x + (t * nHeads + h) * headDim;
                float* a;
                float* b;
                if (style == RopeStyle::NeoX) {
                    a = head + i;
                    b = head + i + half;
                } else {
                    a = head + 2 * i;
                    b = head + 2 * i + 1;
                }
                const float x0 = *a, x1 = *b;
                *a = x0 * c - x1 * s;
                *b = x0 * s + x1 * c;
            }
        }
    }
}

void swiglu(const float* gate, const float* up, float* out, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const float g = gate[i];
        out[i] = g / (1.0f + std::exp(-g)) * up[i];
    }
}

void softmax(float* x, size_t n) {
    if (n == 0) return;
    float m = x[0];
    for (size_t i = 1; i < n; ++i) m = std::max(m, x[i]);
    float sum = 0.0f;
    for (size_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - m);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (size_t i = 0; i < n; ++i) x[i] *= inv;
}

void addBias(float* x, const float* bias, size_t nRows, size_t nCols) {
    for (size_t r = 0; r < nRows; ++r)
        for (size_t c = 0; c < nCols; ++c) x[r * nCols + c] += bias[c];
}

void addInPlace(float* x, const float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) x[i] += y[i];
}

size_t argmax(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;   // strict: the first maximum is kept
    return best;
}

void attention(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx,
               size_t nHeads, size_t nKvHeads, size_t headDim, size_t kvStride, size_t headBegin, size_t headEnd,
               float* scratch) {
    assert(nQuery <= nCtx && nHeads % nKvHeads == 0);
    const size_t group = nHeads / nKvHeads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    const size_t rowStride = nHeads * headDim;
    const size_t prefix = nCtx - nQuery;
    for (size_t h = headBegin; h < headEnd; ++h) {
        const size_t g = h / group;
        const float* kh = k + g * kvStride * headDim;
        const float* vh = v + g * kvStride * headDim;
        for (size_t i = 0; i < nQuery; ++i) {
            const float* qi = q + i * rowStride + h * headDim;
            const size_t visible = prefix + i + 1;
            for (size_t j = 0; j < visible; ++j) {
                const float* kj = kh + j * headDim;
                float dot = 0.0f;
                for (size_t d = 0; d < headDim; ++d) dot += qi[d] * kj[d];
                scratch[j] = dot * scale;
            }
            softmax(scratch, visible);
            float* o = out + i * rowStride + h * headDim;
            for (size_t d = 0; d < headDim; ++d) o[d] = 0.0f;
            for (size_t j = 0; j < visible; ++j) {
                const float p = scratch[j];
                const float* vj = vh + j * headDim;
                for (size_t d = 0; d < headDim; ++d) o[d] += p * vj[d];
            }
        }
    }
}

void attentionGemm(const float* q, const float* k, const float* v, float* out, size_t nQuery, size_t nCtx, size_t nHeads,
                   size_t nKvHeads, size_t headDim, size_t kvStride, size_t headBegin, size_t headEnd, float* scratch) {
    assert(nQuery <= nCtx && nHeads % nKvHeads == 0);
    const size_t group = nHeads / nKvHeads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(headDim));
    const size_t rowStride = nHeads * headDim;
    const size_t prefix = nCtx - nQuery;
    const int hd = static_cast<int>(headDim), ld = static_cast<int>(rowStride);
    for (size_t h = headBegin; h < headEnd; ++h) {
        const float* kh = k + (h / group) * kvStride * headDim;
        const float* vh = v + (h / group) * kvStride * headDim;
        for (size_t i0 = 0; i0 < nQuery; i0 += kAttentionBlock) {
            const size_t rows = std::min(kAttentionBlock, nQuery - i0);
            const size_t ctx = prefix + i0 + rows;   // the last row of the block sees this many keys
            const int m = static_cast<int>(rows), n = static_cast<int>(ctx);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, hd, scale, q + i0 * rowStride + h * headDim, ld,
                        kh, hd, 0.0f, scratch, n);
            for (size_t r = 0; r < rows; ++r) {
                float* srow = scratch + r * ctx;
                const size_t visible = prefix + i0 + r + 1;
                softmax(srow, visible);
                for (size_t j = visible; j < ctx; ++j) srow[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, hd, n, 1.0f, scratch, n, vh, hd, 0.0f,
                        out + i0 * rowStride + h * headDim, ld);
        }
    }
}

size_t segmentedAttentionScratch(const uint32_t* segments, size_t nSegments, size_t gemmMinTokens) {
    size_t need = 0;
    for (size_t s = 0; s < nSegments; ++s) {
        const size_t len = segments[s];
        need = std::max(need, len >= gemmMinTokens ? attentionGemmScratch(len, len) : len);
    }
    return need;
}

void segmentedAttention(const float* q, const float* k, const float* v, float* out, const uint32_t* segments,
                        size_t nSegments, size_t nHeads, size_t nKvHeads, size_t headDim, size_t kvStride,
                        size_t headBegin, size_t headEnd, size_t gemmMinTokens, float* scratch) {
    const size_t rowStride = nHeads * headDim;
    size_t start = 0;
    for (size_t s = 0; s < nSegments; ++s) {
        const size_t len = segments[s];
        // Row j of KV head g lives at (g * kvStride + j) * headDim: shifting the base by start rows
        // makes the segment look like a sequence of its own with the same stride.
        const float* qs = q + start * rowStride;
        const float* ks = k + start * headDim;
        const float* vs = v + start * headDim;
        float* os = out + start * rowStride;
        if (len >= gemmMinTokens)
            attentionGemm(qs, ks, vs, os, len, len, nHeads, nKvHeads, headDim, kvStride, headBegin, headEnd, scratch);
        else
            attention(qs, ks, vs, os, len, len, nHeads, nKvHeads, headDim, kvStride, headBegin, headEnd, scratch);
        start += len;
    }
}

}  // namespace msa::cpu

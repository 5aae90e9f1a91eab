#include "core/memory/pooling.h"

#include <algorithm>
#include <cmath>

namespace msa::memory {

size_t chunkCount(size_t nTokens, size_t chunkSize) {
    chunkSize = std::max<size_t>(chunkSize, 1);
    return (nTokens + chunkSize - 1) / chunkSize;
}

void meanPoolChunks(const float* rows, size_t nTokens, size_t rowWidth, size_t chunkSize, float* out) {
    chunkSize = std::max<size_t>(chunkSize, 1);
    const size_t nChunks = chunkCount(nTokens, chunkSize);
    for (size_t c = 0; c < nChunks; ++c) {
        const size_t begin = c * chunkSize;
        const size_t end = std::min(begin + chunkSize, nTokens);
        float* dst = out + c * rowWidth;
        std::fill(dst, dst + rowWidth, 0.0f);
        // Token order inside the chunk, f32 accumulators: the reference's precision (fp32 sums).
        for (size_t t = begin; t < end; ++t) {
            const float* src = rows + t * rowWidth;
            for (size_t i = 0; i < rowWidth; ++i) dst[i] += src[i];
        }
        const float count = static_cast<float>(end - begin);
        for (size_t i = 0; i < rowWidth; ++i) dst[i] /= count;
    }
}

std::vector<float> meanPoolChunks(std::span<const float> rows, size_t nTokens, size_t rowWidth, size_t chunkSize) {
    std::vector<float> out(chunkCount(nTokens, chunkSize) * rowWidth);
    meanPoolChunks(rows.data(), nTokens, rowWidth, chunkSize, out.data());
    return out;
}

void l2NormalizeRows(float* x, size_t nRows, size_t dim, float eps) {
    for (size_t r = 0; r < nRows; ++r) {
        float* row = x + r * dim;
        double sum = 0;
        for (size_t i = 0; i < dim; ++i) sum += static_cast<double>(row[i]) * row[i];
        const float norm = std::max(static_cast<float>(std::sqrt(sum)), eps);
        for (size_t i = 0; i < dim; ++i) row[i] /= norm;
    }
}

}  // namespace msa::memory

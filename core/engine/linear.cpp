#include "core/engine/linear.h"

#include <cblas.h>

#include <algorithm>

namespace msa::engine {

float* LinearWorkspace::tile(size_t thread, size_t nFloats) {
    if (m_tiles.size() <= thread) m_tiles.resize(thread + 1);
    if (m_tiles[thread].size() < nFloats) m_tiles[thread].resize(nFloats);
    return m_tiles[thread].data();
}

void configureBlasForTeam() { openblas_set_num_threads(1); }

void linear(const model::TensorView& w, const float* x, size_t nTokens, float* y, ComputeThreads& team,
            LinearWorkspace& ws, size_t yStride) {
    const size_t in = w.rowLength();
    const size_t out = w.nRows();
    if (yStride == 0) yStride = out;
    const model::DType dt = w.dtype;

    if (nTokens < kGemmMinTokens) {
        team.parallelFor(out, [&](size_t begin, size_t end, size_t) {
            for (size_t r = begin; r < end; ++r) {
                const std::byte* row = w.row(r);
                for (size_t t = 0; t < nTokens; ++t) y[t * yStride + r] = model::dotRow(dt, row, x + t * in, in);
            }
        }, 16);
        return;
    }

    const size_t nTiles = (out + kTileRows - 1) / kTileRows;
    // Ensure every thread's scratch exists before the region (no allocation races inside it).
    if (dt != model::DType::F32)
        for (size_t t = 0; t < team.size(); ++t) ws.tile(t, kTileRows * in);
    team.parallelFor(nTiles, [&](size_t begin, size_t end, size_t thread) {
        for (size_t tileIndex = begin; tileIndex < end; ++tileIndex) {
            const size_t r0 = tileIndex * kTileRows;
            const size_t rows = std::min(kTileRows, out - r0);
            const float* wt;
            if (dt == model::DType::F32) {
                wt = reinterpret_cast<const float*>(w.row(r0));
            } else {
                float* buf = ws.tile(thread, kTileRows * in);
                for (size_t r = 0; r < rows; ++r) model::dequantizeRow(dt, w.row(r0 + r), buf + r * in, in);
                wt = buf;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nTokens), static_cast<int>(rows),
                        static_cast<int>(in), 1.0f, x, static_cast<int>(in), wt, static_cast<int>(in), 0.0f, y + r0,
                        static_cast<int>(yStride));
        }
    });
}

}  // namespace msa::engine

// linear.h: y = x · Wᵀ for a weight in any stored dtype, on the CPU, without converting the whole
// model to f32 (weights stay as stored: q4_1, q8_0, f16, ...).
//
// Two paths, chosen by the number of tokens:
//  - few tokens (decode): each output row is a dot product of the stored row with the activation
//    (model::dotRow, SIMD), split over rows across the team. Weight bytes are read once per token:
//    this path is bound by memory bandwidth.
//  - many tokens (prefill, bank encoding): tiles of kTileRows weight rows are converted to f32 into a
//    per-thread scratch and multiplied with all tokens by OpenBLAS sgemm (single-threaded per call;
//    the team splits the tiles). Conversion cost is paid once per tile for all tokens: compute bound.
//
// Ownership/threads: a LinearWorkspace belongs to one session; linear() is called from the session's
// thread and uses the team. x, y are caller-owned; y must not alias x.
#pragma once

#include "core/engine/compute_threads.h"
#include "core/model/model_files.h"

#include <vector>

namespace msa::engine {

class LinearWorkspace {
public:
    float* tile(size_t thread, size_t nFloats);

private:
    std::vector<std::vector<float>> m_tiles;
};

// Token count from which the sgemm path is used.
inline constexpr size_t kGemmMinTokens = 4;
inline constexpr size_t kTileRows = 64;

// x: nTokens × w.rowLength(); y: nTokens × w.nRows() (row stride yStride, default nRows).
void linear(const model::TensorView& w, const float* x, size_t nTokens, float* y, ComputeThreads& team,
            LinearWorkspace& ws, size_t yStride = 0);

// Configures OpenBLAS to run each call on the calling thread (the team does the splitting).
void configureBlasForTeam();

}  // namespace msa::engine

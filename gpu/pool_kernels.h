// pool_kernels.h: chunk pooling on the device for the CUDA backend's encoder forwards
// (engine::ForwardOptions::pooling, issue 6 item 2): instead of copying every token's K, V and x̃ to
// the host and synchronising per layer (the layer hook), a routing layer is pooled where it lives and
// only its [chunks][nKv][D] rows travel.
//
//   poolChunksF32  one kernel: segment-aware chunk means of K, V and optionally x̃ into one block
//                  (index arithmetic in pool_plan.h, shared with the CPU unit test)
//   ChunkPooler    per session: the chunk plan on the device, two device output blocks and two pinned
//                  host blocks (double buffering), a copy stream and events. Per pooled layer it
//                  queues on the compute stream the pooling kernel and, for decoupled routers, the
//                  f32 GEMM K̄ᴿ = x̄·Wᵀ (router_k_proj has no bias, so this equals the reference's
//                  mean of per-token projections up to f32 rounding, see backend.h), then ONE async
//                  copy of the block on the copy stream (waiting on an event), and hands the
//                  previous layer's rows to the hook after waiting only for that copy: the host's
//                  bank writes overlap the next layer's compute. finish() hands over the last one.
//
// Ownership: ChunkPooler owns its device/pinned memory, copy stream and events (released in the
// destructor after its copy stream drained; the owner drains the compute stream first); router
// weights are uploaded once per session as f32.
// Thread affinity: the session's thread, with the session's device current.
//
// Usage (cuda_backend.cu):
//     MSA_RETURN_IF_ERROR(m_pooler.begin(plan, *opt.pooling, kvDim, hidden, m_stream));
//     per layer: MSA_RETURN_IF_ERROR(m_pooler.layer(l, kNew, vNew, hF32, cublas, opt.pooledHook));
//     MSA_RETURN_IF_ERROR(m_pooler.finish(opt.pooledHook));
//
// Failure codes: DeviceError (a CUDA/cuBLAS call, naming it), OutOfMemory (buffers, weights),
// InvalidArgument (a layer outside the options).
#pragma once

#include "core/engine/backend.h"
#include "core/engine/chunk_pool.h"
#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

struct cublasContext;

namespace msa::gpu {

// outKV: 2·nChunks·kvDim floats (K̄ then V̄); outX: nChunks·xDim floats (pool_plan.h layout). x and
// outX may be null (xDim 0).
Status poolChunksF32(const float* k, const float* v, const float* x, size_t kvDim, size_t xDim,
                     const engine::ChunkSpan* chunks, size_t nChunks, float* outKV, float* outX, cudaStream_t stream);

class ChunkPooler {
public:
    ChunkPooler() = default;
    ~ChunkPooler();
    ChunkPooler(const ChunkPooler&) = delete;
    ChunkPooler& operator=(const ChunkPooler&) = delete;

    // Starts a pooled forward: uploads the plan (on `compute`), sizes the buffers, uploads router
    // weights not seen before. The caller has synchronised `compute` (no copy of an earlier forward
    // is still reading the plan's staging buffer).
    Status begin(std::span<const engine::ChunkSpan> plan, const engine::PoolingOptions& pooling, size_t kvDim, size_t hidden,
                 cudaStream_t compute);
    // After layer `layer`'s K/V (and x̃ in f32, when the options give it a projection) exist on the
    // compute stream. Layers not in the options are ignored.
    Status layer(int layer, const float* k, const float* v, const float* x, cublasContext* cublas, const engine::PooledHook& hook);
    // Hands the last pending layer to the hook.
    Status finish(const engine::PooledHook& hook);

private:
    Status deliver(const engine::PooledHook& hook);
    void release();

    const engine::PoolingOptions* m_opt = nullptr;
    cudaStream_t m_compute = nullptr;
    cudaStream_t m_copy = nullptr;
    cudaEvent_t m_ready[2] = {nullptr, nullptr};
    cudaEvent_t m_copied[2] = {nullptr, nullptr};
    engine::ChunkSpan* m_dPlan = nullptr;
    engine::ChunkSpan* m_hPlan = nullptr;   // pinned staging
    size_t m_planCap = 0;
    float* m_dOut[2] = {nullptr, nullptr};
    float* m_hOut[2] = {nullptr, nullptr};   // pinned
    size_t m_outCap = 0;                     // floats per block
    float* m_dX = nullptr;                   // pooled x̃ (the routing-key GEMM's input)
    size_t m_xCap = 0;
    size_t m_nChunks = 0, m_kvDim = 0, m_hidden = 0;
    std::unordered_map<const model::TensorView*, float*> m_weights;   // router_k_proj as f32 on the device
    int m_cur = 0;
    int m_pendingLayer = -1;   // layer whose block sits in slot m_pendingSlot, not yet handed over
    int m_pendingSlot = 0;
    bool m_pendingRoute = false;
};

}  // namespace msa::gpu

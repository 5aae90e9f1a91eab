#include "gpu/pool_kernels.h"

#include "gpu/cuda_check.h"
#include "gpu/pool_plan.h"

#include <cublas_v2.h>

#include <algorithm>
#include <string>

namespace msa::gpu {
namespace {

constexpr int kPoolThreads = 256;

__global__ void pool_chunks_kernel(const float* k, const float* v, const float* x, uint64_t kvDim, uint64_t xDim,
                                   const engine::ChunkSpan* chunks, uint64_t nChunks, float* outKV, float* outX) {
    const uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= poolOutputFloats(nChunks, kvDim, xDim)) return;
    const PoolElement e = poolElement(i, nChunks, kvDim, xDim);
    const engine::ChunkSpan c = chunks[e.chunk];
    const float* src = e.region == 0 ? k : e.region == 1 ? v : x;
    const float mean = poolMean(src, e.width, c.start, c.len, e.col);
    if (e.region < 2) outKV[i] = mean;
    else outX[i - 2 * nChunks * kvDim] = mean;
}

Status cublasCheck(cublasStatus_t s, const char* what) {
    if (s == CUBLAS_STATUS_SUCCESS) return Status::ok();
    return {s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::OutOfMemory : ErrorCode::DeviceError,
            std::string(what) + " failed: " + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")"};
}

template <typename T>
Status deviceAlloc(T** p, size_t count, const char* what) {
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(p), count * sizeof(T));
    if (e != cudaSuccess) {
        *p = nullptr;
        return cudaStatus(e, "cudaMalloc", __FILE__, __LINE__).withContext(std::string("chunk pooling: ") + what);
    }
    return Status::ok();
}

template <typename T>
Status pinnedAlloc(T** p, size_t count, const char* what) {
    const cudaError_t e = cudaMallocHost(reinterpret_cast<void**>(p), count * sizeof(T));
    if (e != cudaSuccess) {
        *p = nullptr;
        return cudaStatus(e, "cudaMallocHost", __FILE__, __LINE__).withContext(std::string("chunk pooling: ") + what);
    }
    return Status::ok();
}

template <typename T>
void deviceFree(T*& p) {
    if (p) cudaFree(p);
    p = nullptr;
}
template <typename T>
void pinnedFree(T*& p) {
    if (p) cudaFreeHost(p);
    p = nullptr;
}

}  // namespace

Status poolChunksF32(const float* k, const float* v, const float* x, size_t kvDim, size_t xDim,
                     const engine::ChunkSpan* chunks, size_t nChunks, float* outKV, float* outX, cudaStream_t stream) {
    if (!x || !outX) xDim = 0;
    const uint64_t total = poolOutputFloats(nChunks, kvDim, xDim);
    if (total == 0) return Status::ok();
    const uint64_t blocks = (total + kPoolThreads - 1) / kPoolThreads;
    if (blocks > 0x7fffffffull) return Status(ErrorCode::InvalidArgument, "chunk pooling: too many pooled elements");
    pool_chunks_kernel<<<static_cast<unsigned>(blocks), kPoolThreads, 0, stream>>>(k, v, x, kvDim, xDim, chunks, nChunks, outKV, outX);
    MSA_CUDA_CHECK_LAUNCH("pool_chunks_kernel");
    return Status::ok();
}

ChunkPooler::~ChunkPooler() { release(); }

void ChunkPooler::release() {
    // The owner has drained the compute stream (CudaSession's destructor does, before its members go).
    if (m_copy) cudaStreamSynchronize(m_copy);
    for (int s = 0; s < 2; ++s) {
        if (m_ready[s]) cudaEventDestroy(m_ready[s]);
        if (m_copied[s]) cudaEventDestroy(m_copied[s]);
        m_ready[s] = m_copied[s] = nullptr;
        deviceFree(m_dOut[s]);
        pinnedFree(m_hOut[s]);
    }
    if (m_copy) cudaStreamDestroy(m_copy);
    m_copy = nullptr;
    deviceFree(m_dPlan);
    pinnedFree(m_hPlan);
    deviceFree(m_dX);
    for (auto& [w, p] : m_weights) deviceFree(p);
    m_weights.clear();
    m_planCap = m_outCap = m_xCap = 0;
}

Status ChunkPooler::begin(std::span<const engine::ChunkSpan> plan, const engine::PoolingOptions& pooling, size_t kvDim,
                          size_t hidden, cudaStream_t compute) {
    m_opt = &pooling;
    m_compute = compute;
    m_pendingLayer = -1;
    m_cur = 0;
    m_nChunks = plan.size();
    m_kvDim = kvDim;
    m_hidden = hidden;
    if (!m_copy) {
        MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&m_copy, cudaStreamNonBlocking));
        for (int s = 0; s < 2; ++s) {
            MSA_CUDA_CHECK(cudaEventCreateWithFlags(&m_ready[s], cudaEventDisableTiming));
            MSA_CUDA_CHECK(cudaEventCreateWithFlags(&m_copied[s], cudaEventDisableTiming));
        }
    }
    // Copies of an earlier forward that ended early may still target the pinned blocks.
    MSA_CUDA_CHECK(cudaStreamSynchronize(m_copy));
    const bool anyProj = std::any_of(pooling.routeKeyProj.begin(), pooling.routeKeyProj.end(), [](auto* w) { return w != nullptr; });
    const size_t block = m_nChunks * (2 + (anyProj ? 1 : 0)) * kvDim;
    if (m_nChunks > m_planCap) {
        deviceFree(m_dPlan);
        pinnedFree(m_hPlan);
        m_planCap = 0;
        MSA_RETURN_IF_ERROR(deviceAlloc(&m_dPlan, m_nChunks, "the chunk plan"));
        MSA_RETURN_IF_ERROR(pinnedAlloc(&m_hPlan, m_nChunks, "the chunk plan"));
        m_planCap = m_nChunks;
    }
    if (block > m_outCap) {
        m_outCap = 0;
        for (int s = 0; s < 2; ++s) {
            deviceFree(m_dOut[s]);
            pinnedFree(m_hOut[s]);
        }
        for (int s = 0; s < 2; ++s) {
            MSA_RETURN_IF_ERROR(deviceAlloc(&m_dOut[s], block, "pooled rows"));
            MSA_RETURN_IF_ERROR(pinnedAlloc(&m_hOut[s], block, "pooled rows"));
        }
        m_outCap = block;
    }
    if (anyProj && m_nChunks * hidden > m_xCap) {
        deviceFree(m_dX);
        m_xCap = 0;
        MSA_RETURN_IF_ERROR(deviceAlloc(&m_dX, m_nChunks * hidden, "pooled hidden states"));
        m_xCap = m_nChunks * hidden;
    }
    for (const model::TensorView* w : pooling.routeKeyProj) {
        if (!w || m_weights.count(w)) continue;
        std::vector<float> host(w->nElements());
        for (uint64_t r = 0; r < w->nRows(); ++r)
            model::dequantizeRow(w->dtype, w->row(r), host.data() + r * w->rowLength(), w->rowLength());
        float* d = nullptr;
        MSA_RETURN_IF_ERROR(deviceAlloc(&d, host.size(), "a router_k_proj matrix"));
        m_weights[w] = d;   // owned from here on (freed by release())
        MSA_CUDA_CHECK(cudaMemcpy(d, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    }
    if (m_nChunks) {
        std::copy(plan.begin(), plan.end(), m_hPlan);
        MSA_CUDA_CHECK(cudaMemcpyAsync(m_dPlan, m_hPlan, m_nChunks * sizeof(engine::ChunkSpan), cudaMemcpyHostToDevice, compute));
    }
    return Status::ok();
}

Status ChunkPooler::layer(int layer, const float* k, const float* v, const float* x, cublasContext* cublas,
                          const engine::PooledHook& hook) {
    if (!m_opt) return Status(ErrorCode::Internal, "chunk pooling: layer() before begin()");
    const auto it = std::lower_bound(m_opt->layers.begin(), m_opt->layers.end(), layer);
    if (it == m_opt->layers.end() || *it != layer) return Status::ok();
    const size_t idx = static_cast<size_t>(it - m_opt->layers.begin());
    const model::TensorView* proj = m_opt->routeKeyProj.empty() ? nullptr : m_opt->routeKeyProj[idx];
    const int s = m_cur;
    const size_t kvBlock = m_nChunks * m_kvDim;
    const size_t block = (proj ? 3 : 2) * kvBlock;
    // Slot s was last copied for the layer two back, whose copy deliver() waited for.
    MSA_RETURN_IF_ERROR(poolChunksF32(k, v, proj ? x : nullptr, m_kvDim, proj ? m_hidden : 0, m_dPlan, m_nChunks, m_dOut[s],
                                      m_dX, m_compute));
    if (proj && m_nChunks) {
        // Row-major K̄ᴿ[c][r] = Σ_h x̄[c][h]·W[r][h]: column-major C(kvDim×nChunks) = Wᵀ·x̄, f32 without
        // TF32 (the CPU backend's precision class).
        const float one = 1.0f, zero = 0.0f;
        MSA_RETURN_IF_ERROR(cublasCheck(cublasSetStream(cublas, m_compute), "cublasSetStream"));
        MSA_RETURN_IF_ERROR(cublasCheck(
            cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m_kvDim), static_cast<int>(m_nChunks),
                         static_cast<int>(m_hidden), &one, m_weights.at(proj), CUDA_R_32F, static_cast<int>(m_hidden), m_dX,
                         CUDA_R_32F, static_cast<int>(m_hidden), &zero, m_dOut[s] + 2 * kvBlock, CUDA_R_32F,
                         static_cast<int>(m_kvDim), CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx (routing keys)"));
    }
    MSA_CUDA_CHECK(cudaEventRecord(m_ready[s], m_compute));
    MSA_CUDA_CHECK(cudaStreamWaitEvent(m_copy, m_ready[s], 0));
    if (block) MSA_CUDA_CHECK(cudaMemcpyAsync(m_hOut[s], m_dOut[s], block * sizeof(float), cudaMemcpyDeviceToHost, m_copy));
    MSA_CUDA_CHECK(cudaEventRecord(m_copied[s], m_copy));
    // The previous layer's rows have been copying while this layer was queued: hand them over now.
    MSA_RETURN_IF_ERROR(deliver(hook));
    m_pendingLayer = layer;
    m_pendingSlot = s;
    m_pendingRoute = proj != nullptr;
    m_cur = 1 - s;
    return Status::ok();
}

Status ChunkPooler::deliver(const engine::PooledHook& hook) {
    if (m_pendingLayer < 0) return Status::ok();
    const int s = m_pendingSlot, layer = m_pendingLayer;
    m_pendingLayer = -1;
    MSA_CUDA_CHECK(cudaEventSynchronize(m_copied[s]));
    const size_t kvBlock = m_nChunks * m_kvDim;
    const float* h = m_hOut[s];
    hook({layer, m_nChunks, h, h + kvBlock, m_pendingRoute ? h + 2 * kvBlock : nullptr});
    return Status::ok();
}

Status ChunkPooler::finish(const engine::PooledHook& hook) {
    Status st = deliver(hook);
    m_opt = nullptr;
    return st;
}

}  // namespace msa::gpu

// cuda_backend.cu: engine::Backend on one CUDA device (see cuda_backend.h).
//
// The forward per layer, for n tokens of one call (all on the session's stream):
//   h   = bf16(rmsNorm(x) * attn_norm)                      rmsNormToBf16 (+ f32 copy for hooks)
//   qkv = h · [Wq; Wk; Wv]ᵀ                                  one cuBLAS GEMM, f32 out
//   q,k,v = split(qkv + bias), QK-norm, RoPE(positions)      qkvPost
//   [hooks: f32 copies to pinned host buffers, memory hook may append prefix rows]
//   cache[prefix + nPast + t] = k, v                          appendKv
//   o   = attention(q, cache)                                 flashAttention (varlen, split-K)
//   x  += o · Woᵀ                                             GEMM with beta = 1 (fused residual)
//   x  += down(silu(gate) * up), gate|up in one GEMM           GEMM, swigluBf16, GEMM beta = 1
// then the final norm and the lm_head on the rows whose logits are wanted.
//
// KV cache: f32, head-major per layer ([nKv][capacity][headDim]) like the CPU backend. f32 rather than
// bf16 because (a) prefix rows (template head, pooled memory chunks) arrive as f32 and exportRows()
// must give back exactly what setPrefix() received, as the CPU does; (b) MSA contexts are short (the
// template head + k selected documents' pooled chunks + local tokens, a few thousand rows), so cache
// reads are small next to the weight reads of a decode step (e.g. MSA-4B: 8 GB of bf16 weights per
// token vs 0.3 MB of f32 K/V per context row). A bf16 cache is the next step for long local contexts.
//
// Every CUDA / cuBLAS call is checked; failures become Status (OutOfMemory for allocation failures,
// DeviceError otherwise) naming the call. Buffers are RAII, so error paths leak nothing.
#include "gpu/cuda_backend.h"
#include "gpu/cuda_check.h"
#include "gpu/flash_attn_tc.h"
#include "gpu/kernels_bf16.h"
#include "gpu/launch_plan.h"
#include "gpu/pool_kernels.h"

#include "core/engine/forward_checks.h"
#include "core/util/log.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <string>
#include <vector>

namespace msa::gpu {
namespace {

using model::TensorView;

Status cublasStatusOf(cublasStatus_t s, const char* statement, const char* file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return Status::ok();
    int device = -1;
    cudaGetDevice(&device);
    std::string m = std::string(statement) + " failed on cuda:" + std::to_string(device) + " at " + file + ":" +
                    std::to_string(line) + ": " + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) + ")";
    return {s == CUBLAS_STATUS_ALLOC_FAILED ? ErrorCode::OutOfMemory : ErrorCode::DeviceError, std::move(m)};
}
#define MSA_CUBLAS_CHECK(expr) MSA_RETURN_IF_ERROR(cublasStatusOf((expr), #expr, __FILE__, __LINE__))

// Where a CudaArray lives: device memory, or page-locked host memory (the source/target of
// asynchronous copies).
enum class MemoryKind { Device, PinnedHost };

// CUDA-allocated memory owned by value; contents are not preserved by allocate().
template <typename T, MemoryKind Kind>
class CudaArray {
public:
    CudaArray() = default;
    ~CudaArray() { release(); }
    CudaArray(const CudaArray&) = delete;
    CudaArray& operator=(const CudaArray&) = delete;
    CudaArray(CudaArray&& o) noexcept : m_p(o.m_p), m_n(o.m_n) {
        o.m_p = nullptr;
        o.m_n = 0;
    }
    CudaArray& operator=(CudaArray&& o) noexcept {
        if (this != &o) {
            release();
            m_p = o.m_p;
            m_n = o.m_n;
            o.m_p = nullptr;
            o.m_n = 0;
        }
        return *this;
    }
    Status allocate(size_t count, const std::string& what) {
        release();
        if (count == 0) return Status::ok();
        void* p = nullptr;
        constexpr bool device = Kind == MemoryKind::Device;
        const cudaError_t e = device ? cudaMalloc(&p, count * sizeof(T)) : cudaMallocHost(&p, count * sizeof(T));
        if (e != cudaSuccess)
            return cudaStatus(e, device ? "cudaMalloc" : "cudaMallocHost", __FILE__, __LINE__)
                .withContext("allocating " + std::to_string(count * sizeof(T)) + " bytes of " +
                             (device ? "device memory" : "pinned host memory") + " for " + what);
        m_p = static_cast<T*>(p);
        m_n = count;
        return Status::ok();
    }
    void release() {
        if (m_p) {
            if constexpr (Kind == MemoryKind::Device) cudaFree(m_p);
            else cudaFreeHost(m_p);
        }
        m_p = nullptr;
        m_n = 0;
    }
    T* get() const { return m_p; }
    size_t size() const { return m_n; }

private:
    T* m_p = nullptr;
    size_t m_n = 0;
};

template <typename T>
using DeviceArray = CudaArray<T, MemoryKind::Device>;
template <typename T>
using PinnedArray = CudaArray<T, MemoryKind::PinnedHost>;

// Small tensors (norm weights, biases) as f32 on the host.
std::vector<float> toF32(const TensorView& t) {
    std::vector<float> out(t.nElements());
    for (uint64_t r = 0; r < t.nRows(); ++r)
        model::dequantizeRow(t.dtype, t.row(r), out.data() + r * t.rowLength(), t.rowLength());
    return out;
}

Status uploadF32(const std::vector<float>& host, DeviceArray<float>& out, const std::string& what) {
    MSA_RETURN_IF_ERROR(out.allocate(host.size(), what));
    if (!host.empty()) MSA_CUDA_CHECK(cudaMemcpy(out.get(), host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice));
    return Status::ok();
}

// Converts weight rows to bf16 through two pinned staging halves: while one half is copied to the
// device, the host dequantizes the next rows into the other.
class Uploader {
public:
    static constexpr size_t kStagingElems = size_t(8) << 20;   // 16 MB of bf16 per half

    ~Uploader() {
        if (m_stream) cudaStreamSynchronize(m_stream);
        for (cudaEvent_t e : m_done)
            if (e) cudaEventDestroy(e);
        if (m_stream) cudaStreamDestroy(m_stream);
    }
    Status init() {
        MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
        for (int i = 0; i < 2; ++i) {
            MSA_RETURN_IF_ERROR(m_staging[i].allocate(kStagingElems, "weight upload staging"));
            MSA_CUDA_CHECK(cudaEventCreateWithFlags(&m_done[i], cudaEventDisableTiming));
        }
        return Status::ok();
    }
    // Writes all rows of `t` as bf16 to dst (nRows × rowLength elements).
    Status rows(const TensorView& t, uint16_t* dst) {
        const size_t rowLen = t.rowLength(), nRows = t.nRows();
        if (rowLen > kStagingElems) return unsupported("tensor '" + t.name + "' has rows longer than the upload staging buffer");
        if (m_row.size() < rowLen) m_row.resize(rowLen);
        const size_t batch = kStagingElems / rowLen;
        for (size_t r0 = 0; r0 < nRows; r0 += batch) {
            const size_t n = std::min(batch, nRows - r0);
            MSA_CUDA_CHECK(cudaEventSynchronize(m_done[m_cur]));   // the half's previous copy is done
            uint16_t* st = m_staging[m_cur].get();
            for (size_t r = 0; r < n; ++r) {
                model::dequantizeRow(t.dtype, t.row(r0 + r), m_row.data(), rowLen);
                for (size_t c = 0; c < rowLen; ++c) st[r * rowLen + c] = f32ToBf16(m_row[c]);
            }
            MSA_CUDA_CHECK(cudaMemcpyAsync(dst + r0 * rowLen, st, n * rowLen * sizeof(uint16_t), cudaMemcpyHostToDevice, m_stream));
            MSA_CUDA_CHECK(cudaEventRecord(m_done[m_cur], m_stream));
            m_cur ^= 1;
        }
        return Status::ok();
    }
    Status finish() {
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        return Status::ok();
    }

private:
    cudaStream_t m_stream = nullptr;
    PinnedArray<uint16_t> m_staging[2];
    cudaEvent_t m_done[2] = {nullptr, nullptr};
    int m_cur = 0;
    std::vector<float> m_row;
};

struct GpuLayer {
    DeviceArray<uint16_t> wqkv, wo, wgu, wdown;   // [Wq; Wk; Wv], Wo, [Wgate; Wup], Wdown (bf16, row-major)
    DeviceArray<float> attnNorm, ffnNorm, qNorm, kNorm, bqkv;
};

// y (ldy floats per token) = x · Wᵀ + beta · y for W [outF × inF] and x [nTok × inF], both bf16
// (launch_plan.h linearGemm maps it to column-major cuBLAS).
Status gemm(cublasHandle_t h, const uint16_t* w, size_t outF, size_t inF, const uint16_t* x, size_t nTok, float* y, size_t ldy,
            float beta) {
    const GemmShape g = linearGemm(outF, inF, nTok, ldy);
    const float alpha = 1.0f;
    MSA_CUBLAS_CHECK(cublasGemmEx(h, g.transA ? CUBLAS_OP_T : CUBLAS_OP_N, g.transB ? CUBLAS_OP_T : CUBLAS_OP_N, g.m, g.n, g.k,
                                  &alpha, w, CUDA_R_16BF, g.lda, x, CUDA_R_16BF, g.ldb, &beta, y, CUDA_R_32F, g.ldc,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return Status::ok();
}

class CudaModel final : public engine::LoadedModel, public std::enable_shared_from_this<CudaModel> {
public:
    CudaModel(std::shared_ptr<const model::ModelFiles> files, int device, CudaBackendOptions options)
        : m_files(std::move(files)), m_device(device), m_options(options) {}

    Status init() {
        const auto& c = m_files->config();
        const auto& ts = m_files->tensors();
        m_nLayers = static_cast<size_t>(c.nLayers);
        m_hidden = static_cast<size_t>(c.hiddenSize);
        m_nHeads = static_cast<size_t>(c.nHeads);
        m_nKv = static_cast<size_t>(c.nKvHeads);
        m_hd = static_cast<size_t>(c.headDim);
        m_ffn = static_cast<size_t>(c.ffnSize);
        m_eps = c.rmsNormEps;
        m_rope = c.ropeStyle == model::RopeStyle::NeoX ? cpu::RopeStyle::NeoX : cpu::RopeStyle::Adjacent;
        if (!supportedHeadDim(m_hd))
            return unsupported("the CUDA backend has no attention kernel for head dimension " + std::to_string(m_hd) +
                               " (supported: 16, 32, 64, 128)");
        if (m_nKv == 0 || m_nHeads % m_nKv != 0)
            return unsupported(std::to_string(m_nHeads) + " attention heads cannot share " + std::to_string(m_nKv) + " KV heads");
        MSA_CUDA_CHECK(cudaSetDevice(m_device));
        cudaDeviceProp prop{};
        MSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, m_device));
        m_smCount = prop.multiProcessorCount;

        auto need = [&](const std::string& name) -> Result<const TensorView*> {
            const TensorView* t = ts.find(name);
            if (!t) return notFound("tensor '" + name + "' is missing from '" + m_files->path().string() + "'");
            return t;
        };
        auto expectShape = [&](const TensorView& t, size_t rows, size_t cols) -> Status {
            if (t.nRows() != rows || t.rowLength() != cols)
                return {ErrorCode::Mismatch, "tensor '" + t.name + "' is " + std::to_string(t.nRows()) + "x" +
                                                 std::to_string(t.rowLength()) + ", expected " + std::to_string(rows) + "x" +
                                                 std::to_string(cols)};
            return Status::ok();
        };
        Uploader up;
        MSA_RETURN_IF_ERROR(up.init());
        MSA_ASSIGN_OR_RETURN(const TensorView* embed, need("token_embd.weight"));
        MSA_RETURN_IF_ERROR(expectShape(*embed, embed->nRows(), m_hidden));
        m_nEmbed = embed->nRows();
        MSA_RETURN_IF_ERROR(m_embed.allocate(embed->nElements(), "token_embd.weight"));
        MSA_RETURN_IF_ERROR(up.rows(*embed, m_embed.get()));
        const TensorView* output = ts.find("output.weight");
        m_vocab = output ? output->nRows() : m_nEmbed;
        if (output) {
            MSA_RETURN_IF_ERROR(expectShape(*output, m_vocab, m_hidden));
            MSA_RETURN_IF_ERROR(m_lmHead.allocate(output->nElements(), "output.weight"));
            MSA_RETURN_IF_ERROR(up.rows(*output, m_lmHead.get()));
        }
        MSA_ASSIGN_OR_RETURN(const TensorView* outNorm, need("output_norm.weight"));
        MSA_RETURN_IF_ERROR(uploadF32(toF32(*outNorm), m_outNorm, "output_norm.weight"));
        MSA_RETURN_IF_ERROR(uploadF32(ropeInverseFrequencies(m_hd, static_cast<float>(c.ropeTheta)), m_invFreq, "RoPE frequencies"));

        const size_t qDim = m_nHeads * m_hd, kvDim = m_nKv * m_hd;
        m_layers.resize(m_nLayers);
        for (size_t l = 0; l < m_nLayers; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            GpuLayer& w = m_layers[l];
            MSA_ASSIGN_OR_RETURN(const TensorView* wq, need(p + "attn_q.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* wk, need(p + "attn_k.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* wv, need(p + "attn_v.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* wo, need(p + "attn_output.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* gate, need(p + "ffn_gate.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* upW, need(p + "ffn_up.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* down, need(p + "ffn_down.weight"));
            MSA_RETURN_IF_ERROR(expectShape(*wq, qDim, m_hidden));
            MSA_RETURN_IF_ERROR(expectShape(*wk, kvDim, m_hidden));
            MSA_RETURN_IF_ERROR(expectShape(*wv, kvDim, m_hidden));
            MSA_RETURN_IF_ERROR(expectShape(*wo, m_hidden, qDim));
            MSA_RETURN_IF_ERROR(expectShape(*gate, m_ffn, m_hidden));
            MSA_RETURN_IF_ERROR(expectShape(*upW, m_ffn, m_hidden));
            MSA_RETURN_IF_ERROR(expectShape(*down, m_hidden, m_ffn));
            MSA_RETURN_IF_ERROR(w.wqkv.allocate((qDim + 2 * kvDim) * m_hidden, p + "attn_qkv"));
            MSA_RETURN_IF_ERROR(up.rows(*wq, w.wqkv.get()));
            MSA_RETURN_IF_ERROR(up.rows(*wk, w.wqkv.get() + qDim * m_hidden));
            MSA_RETURN_IF_ERROR(up.rows(*wv, w.wqkv.get() + (qDim + kvDim) * m_hidden));
            MSA_RETURN_IF_ERROR(w.wo.allocate(m_hidden * qDim, p + "attn_output"));
            MSA_RETURN_IF_ERROR(up.rows(*wo, w.wo.get()));
            MSA_RETURN_IF_ERROR(w.wgu.allocate(2 * m_ffn * m_hidden, p + "ffn_gate_up"));
            MSA_RETURN_IF_ERROR(up.rows(*gate, w.wgu.get()));
            MSA_RETURN_IF_ERROR(up.rows(*upW, w.wgu.get() + m_ffn * m_hidden));
            MSA_RETURN_IF_ERROR(w.wdown.allocate(m_hidden * m_ffn, p + "ffn_down"));
            MSA_RETURN_IF_ERROR(up.rows(*down, w.wdown.get()));
            MSA_ASSIGN_OR_RETURN(const TensorView* an, need(p + "attn_norm.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* fn, need(p + "ffn_norm.weight"));
            MSA_RETURN_IF_ERROR(uploadF32(toF32(*an), w.attnNorm, p + "attn_norm"));
            MSA_RETURN_IF_ERROR(uploadF32(toF32(*fn), w.ffnNorm, p + "ffn_norm"));
            if (c.qkNorm) {
                MSA_ASSIGN_OR_RETURN(const TensorView* qn, need(p + "attn_q_norm.weight"));
                MSA_ASSIGN_OR_RETURN(const TensorView* kn, need(p + "attn_k_norm.weight"));
                MSA_RETURN_IF_ERROR(uploadF32(toF32(*qn), w.qNorm, p + "attn_q_norm"));
                MSA_RETURN_IF_ERROR(uploadF32(toF32(*kn), w.kNorm, p + "attn_k_norm"));
            }
            if (c.attentionBias) {
                MSA_ASSIGN_OR_RETURN(const TensorView* bq, need(p + "attn_q.bias"));
                MSA_ASSIGN_OR_RETURN(const TensorView* bk, need(p + "attn_k.bias"));
                MSA_ASSIGN_OR_RETURN(const TensorView* bv, need(p + "attn_v.bias"));
                std::vector<float> b = toF32(*bq);
                const std::vector<float> k = toF32(*bk), v = toF32(*bv);
                b.insert(b.end(), k.begin(), k.end());
                b.insert(b.end(), v.begin(), v.end());
                if (b.size() != qDim + 2 * kvDim) return {ErrorCode::Mismatch, "the q/k/v biases of layer " + std::to_string(l) + " have the wrong size"};
                MSA_RETURN_IF_ERROR(uploadF32(b, w.bqkv, p + "attn_qkv.bias"));
            }
        }
        MSA_RETURN_IF_ERROR(up.finish());
        // uploadF32() copies pageable memory with cudaMemcpy on the default stream, which may return
        // before the DMA has landed; sessions run on non-blocking streams that do not wait for it, so a
        // first forward could read half-written norms or RoPE frequencies. Only the default stream is
        // waited for (not the device): another thread's session may be capturing a decode graph.
        MSA_CUDA_CHECK(cudaStreamSynchronize(nullptr));
        return Status::ok();
    }

    const model::ModelFiles& files() const override { return *m_files; }
    Result<std::unique_ptr<engine::Session>> createSession(const engine::SessionOptions& options) const override;

    const uint16_t* lmHead() const { return m_lmHead.get() ? m_lmHead.get() : m_embed.get(); }

    std::shared_ptr<const model::ModelFiles> m_files;
    int m_device = 0;
    CudaBackendOptions m_options;
    int m_smCount = 1;
    size_t m_nLayers = 0, m_hidden = 0, m_nHeads = 0, m_nKv = 0, m_hd = 0, m_ffn = 0, m_vocab = 0, m_nEmbed = 0;
    float m_eps = 1e-6f;
    cpu::RopeStyle m_rope = cpu::RopeStyle::NeoX;
    DeviceArray<uint16_t> m_embed, m_lmHead;   // m_lmHead empty when tied to the embedding
    DeviceArray<float> m_outNorm, m_invFreq;
    std::vector<GpuLayer> m_layers;
};

class CudaSession final : public engine::Session {
public:
    CudaSession(std::shared_ptr<const CudaModel> model, const engine::SessionOptions& options)
        : m_model(std::move(model)), m_m(*m_model), m_maxTokens(options.maxTokens) {
        m_prefix.assign(m_m.m_nLayers, 0);
        m_k.resize(m_m.m_nLayers);
        m_v.resize(m_m.m_nLayers);
    }
    ~CudaSession() override {
        cudaSetDevice(m_m.m_device);
        if (m_stream) cudaStreamSynchronize(m_stream);
        dropGraph();
        if (m_cublas) cublasDestroy(m_cublas);
        if (m_stream) cudaStreamDestroy(m_stream);
    }

    Status init() {
        MSA_CUDA_CHECK(cudaSetDevice(m_m.m_device));
        MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking));
        MSA_CUBLAS_CHECK(cublasCreate(&m_cublas));
        MSA_CUBLAS_CHECK(cublasSetStream(m_cublas, m_stream));
        // A fixed workspace keeps cuBLAS from allocating while a decode graph is captured.
        MSA_RETURN_IF_ERROR(m_cublasWs.allocate(size_t(32) << 20, "the cuBLAS workspace"));
        MSA_CUBLAS_CHECK(cublasSetWorkspace(m_cublas, m_cublasWs.get(), m_cublasWs.size()));
        MSA_RETURN_IF_ERROR(m_dNPast.allocate(1, "the context length"));
        MSA_RETURN_IF_ERROR(m_hNPast.allocate(1, "the context length"));
        MSA_RETURN_IF_ERROR(m_dArgmax.allocate(1, "the argmax result"));
        MSA_RETURN_IF_ERROR(m_hArgmax.allocate(1, "the argmax result"));
        return Status::ok();
    }

    size_t nPast() const override { return m_nPast; }
    size_t prefixRows(size_t layer) const override { return layer < m_prefix.size() ? m_prefix[layer] : 0; }
    size_t vocabSize() const override { return m_m.m_vocab; }
    bool supportsPooling() const override { return true; }
    void truncate(size_t n) override { m_nPast = std::min(n, m_nPast); }
    Status setPrefix(std::vector<engine::LayerPrefix> perLayer) override;
    Result<engine::LayerPrefix> exportRows(size_t layer, size_t begin, size_t end) const override;
    Result<std::span<const float>> forward(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                                           const engine::ForwardOptions& opt) override;
    Result<int32_t> argmaxLastLogits();
    uint64_t graphReplays() const { return m_graphReplays; }

private:
    Status reserve(size_t needed);
    Status uploadPrefixRows(size_t layer, size_t begin, const engine::LayerPrefix& p);
    Status appendPrefixRows(size_t layer, const engine::LayerPrefix& p, size_t nCall);
    Status ensureActivations(size_t n);
    Status ensureHookBuffers(size_t n);
    Status ensureLogits(size_t rows);
    Status ensureWorkspace(size_t floats);
    Status runLayers(size_t n, const engine::ForwardOptions& opt, size_t lastLayer, bool capturing);
    Status enqueueLogits(size_t first, size_t rows);
    Status runDecodeGraph(const engine::ForwardOptions& opt, bool* captureFailed);
    void dropGraph() {
        if (m_graphExec) cudaGraphExecDestroy(m_graphExec);
        if (m_graph) cudaGraphDestroy(m_graph);
        m_graphExec = nullptr;
        m_graph = nullptr;
    }
    Status sync() {
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        return Status::ok();
    }

    std::shared_ptr<const CudaModel> m_model;
    const CudaModel& m_m;
    size_t m_maxTokens;
    cudaStream_t m_stream = nullptr;
    cublasHandle_t m_cublas = nullptr;
    DeviceArray<uint8_t> m_cublasWs;

    size_t m_nPast = 0;
    std::vector<size_t> m_prefix;
    size_t m_maxPrefix = 0;
    size_t m_capacity = 0;   // rows per layer cache (prefix + local)
    std::vector<DeviceArray<float>> m_k, m_v;

    size_t m_actTokens = 0;
    DeviceArray<float> m_x, m_hF, m_qkv, m_q, m_kNew, m_vNew, m_gu, m_logits, m_ws;
    DeviceArray<uint16_t> m_hB, m_attnB, m_actB;
    DeviceArray<int32_t> m_dTokens, m_dPositions, m_dSegStart, m_dNPast, m_dArgmax;
    PinnedArray<int32_t> m_hTokens, m_hPositions, m_hSegStart, m_hNPast, m_hArgmax;
    PinnedArray<float> m_hHook, m_hLogits;
    size_t m_hookTokens = 0;
    size_t m_logitRows = 0;   // rows of m_logits written by the latest forward (0: none)

    // Bumped whenever a device pointer, the cache capacity or a prefix length changes: a captured
    // decode graph bakes all of them in.
    uint64_t m_layout = 1;
    uint64_t m_graphLayout = 0;
    uint64_t m_warmLayout = 0;   // the layout an eager decode step last ran with
    cudaGraph_t m_graph = nullptr;
    cudaGraphExec_t m_graphExec = nullptr;
    bool m_graphsBroken = false;
    uint64_t m_graphReplays = 0;
    ChunkPooler m_pooler;   // ForwardOptions::pooling: pooled on the device, rows copied on a second stream
};

Result<std::unique_ptr<engine::Session>> CudaModel::createSession(const engine::SessionOptions& options) const {
    std::unique_ptr<CudaSession> s;
    try {
        s = std::make_unique<CudaSession>(shared_from_this(), options);
    } catch (const std::exception& e) {
        return Status::fromException(e, "creating a CUDA session");
    }
    MSA_RETURN_IF_ERROR(s->init().withContext("creating a CUDA session"));
    return std::unique_ptr<engine::Session>(std::move(s));
}

Status CudaSession::reserve(size_t needed) {
    if (needed > m_maxTokens)
        return invalidArgument("the session holds at most " + std::to_string(m_maxTokens) + " tokens; " +
                               std::to_string(needed) + " were needed");
    const size_t cap = grownCapacity(m_capacity, needed, m_maxTokens, m_maxPrefix);
    if (cap == m_capacity) return Status::ok();
    const size_t nKv = m_m.m_nKv, hd = m_m.m_hd;
    // All new buffers first: on failure the old cache stays intact and consistent.
    std::vector<DeviceArray<float>> k(m_m.m_nLayers), v(m_m.m_nLayers);
    for (size_t l = 0; l < m_m.m_nLayers; ++l) {
        MSA_RETURN_IF_ERROR(k[l].allocate(nKv * cap * hd, "the K cache of layer " + std::to_string(l) + " (" + std::to_string(cap) + " rows)"));
        MSA_RETURN_IF_ERROR(v[l].allocate(nKv * cap * hd, "the V cache of layer " + std::to_string(l) + " (" + std::to_string(cap) + " rows)"));
    }
    // Whole old rows: a forward in progress may already have appended this call's tokens to earlier
    // layers (a memory hook grows the cache mid-forward).
    if (m_capacity)
        for (size_t l = 0; l < m_m.m_nLayers; ++l) {
            MSA_CUDA_CHECK(cudaMemcpy2DAsync(k[l].get(), cap * hd * sizeof(float), m_k[l].get(), m_capacity * hd * sizeof(float),
                                             m_capacity * hd * sizeof(float), nKv, cudaMemcpyDeviceToDevice, m_stream));
            MSA_CUDA_CHECK(cudaMemcpy2DAsync(v[l].get(), cap * hd * sizeof(float), m_v[l].get(), m_capacity * hd * sizeof(float),
                                             m_capacity * hd * sizeof(float), nKv, cudaMemcpyDeviceToDevice, m_stream));
        }
    MSA_RETURN_IF_ERROR(sync());   // nothing may still read the old buffers when they are freed
    m_k.swap(k);
    m_v.swap(v);
    m_capacity = cap;
    ++m_layout;
    return Status::ok();
}

// Rows [r][g][d] of `p` go to rows begin.. of each head's block of the layer cache.
Status CudaSession::uploadPrefixRows(size_t layer, size_t begin, const engine::LayerPrefix& p) {
    if (p.nRows == 0) return Status::ok();
    const size_t nKv = m_m.m_nKv, hd = m_m.m_hd, row = hd * sizeof(float);
    for (size_t g = 0; g < nKv; ++g) {
        MSA_CUDA_CHECK(cudaMemcpy2DAsync(m_k[layer].get() + (g * m_capacity + begin) * hd, row, p.k.data() + g * hd, nKv * row, row,
                                         p.nRows, cudaMemcpyHostToDevice, m_stream));
        MSA_CUDA_CHECK(cudaMemcpy2DAsync(m_v[layer].get() + (g * m_capacity + begin) * hd, row, p.v.data() + g * hd, nKv * row, row,
                                         p.nRows, cudaMemcpyHostToDevice, m_stream));
    }
    return sync();   // the rows are pageable memory the caller may free on return
}

Status CudaSession::setPrefix(std::vector<engine::LayerPrefix> perLayer) {
    MSA_CUDA_CHECK(cudaSetDevice(m_m.m_device));
    if (perLayer.size() != m_m.m_nLayers)
        return invalidArgument("setPrefix(): " + std::to_string(perLayer.size()) + " layers given, the model has " +
                               std::to_string(m_m.m_nLayers));
    const size_t rowFloats = m_m.m_nKv * m_m.m_hd;
    size_t maxRows = 0;
    for (size_t l = 0; l < m_m.m_nLayers; ++l) {
        const engine::LayerPrefix& p = perLayer[l];
        if (p.k.size() != p.nRows * rowFloats || p.v.size() != p.nRows * rowFloats)
            return invalidArgument("setPrefix(): layer " + std::to_string(l) + " has " + std::to_string(p.k.size()) + "/" +
                                   std::to_string(p.v.size()) + " K/V floats for " + std::to_string(p.nRows) + " rows of " +
                                   std::to_string(rowFloats));
        maxRows = std::max(maxRows, p.nRows);
    }
    m_nPast = 0;
    m_prefix.assign(m_m.m_nLayers, 0);   // nothing to preserve while the cache is re-laid out
    m_maxPrefix = maxRows;
    ++m_layout;
    if (m_capacity < m_maxPrefix + 1) {
        MSA_RETURN_IF_ERROR(sync());
        for (size_t l = 0; l < m_m.m_nLayers; ++l) {
            m_k[l].release();
            m_v[l].release();
        }
        m_capacity = 0;   // reserve() reallocates without copying
        MSA_RETURN_IF_ERROR(reserve(1));
    }
    for (size_t l = 0; l < m_m.m_nLayers; ++l) {
        MSA_RETURN_IF_ERROR(uploadPrefixRows(l, 0, perLayer[l]));
        m_prefix[l] = perLayer[l].nRows;
    }
    return Status::ok();
}

Status CudaSession::appendPrefixRows(size_t layer, const engine::LayerPrefix& p, size_t nCall) {
    const size_t rowFloats = m_m.m_nKv * m_m.m_hd;
    if (p.k.size() != p.nRows * rowFloats || p.v.size() != p.nRows * rowFloats)
        return invalidArgument("memory rows for layer " + std::to_string(layer) + ": " + std::to_string(p.k.size()) + "/" +
                               std::to_string(p.v.size()) + " K/V floats for " + std::to_string(p.nRows) + " rows of " +
                               std::to_string(rowFloats));
    const size_t begin = m_prefix[layer];
    m_maxPrefix = std::max(m_maxPrefix, begin + p.nRows);
    MSA_RETURN_IF_ERROR(reserve(m_nPast + nCall));
    MSA_RETURN_IF_ERROR(uploadPrefixRows(layer, begin, p));
    m_prefix[layer] = begin + p.nRows;
    ++m_layout;
    return Status::ok();
}

Result<engine::LayerPrefix> CudaSession::exportRows(size_t layer, size_t begin, size_t end) const {
    if (layer >= m_m.m_nLayers) return invalidArgument("exportRows(): no layer " + std::to_string(layer));
    const size_t rows = m_prefix[layer] + m_nPast;
    if (begin > end || end > rows)
        return invalidArgument("exportRows(): rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") outside the " +
                               std::to_string(rows) + " rows of layer " + std::to_string(layer));
    MSA_CUDA_CHECK(cudaSetDevice(m_m.m_device));
    const size_t nKv = m_m.m_nKv, hd = m_m.m_hd, row = hd * sizeof(float);
    engine::LayerPrefix out;
    out.nRows = end - begin;
    try {
        out.k.resize(out.nRows * nKv * hd);
        out.v.resize(out.nRows * nKv * hd);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "exportRows(): " + std::to_string(out.nRows) + " rows");
    }
    if (out.nRows == 0) return out;
    for (size_t g = 0; g < nKv; ++g) {
        MSA_CUDA_CHECK(cudaMemcpy2DAsync(out.k.data() + g * hd, nKv * row, m_k[layer].get() + (g * m_capacity + begin) * hd, row, row,
                                         out.nRows, cudaMemcpyDeviceToHost, m_stream));
        MSA_CUDA_CHECK(cudaMemcpy2DAsync(out.v.data() + g * hd, nKv * row, m_v[layer].get() + (g * m_capacity + begin) * hd, row, row,
                                         out.nRows, cudaMemcpyDeviceToHost, m_stream));
    }
    MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    return out;
}

Status CudaSession::ensureActivations(size_t n) {
    if (n <= m_actTokens) return Status::ok();
    MSA_RETURN_IF_ERROR(sync());
    const size_t t = std::max(n, std::min(m_actTokens * 2, std::max(n, m_maxTokens)));
    const size_t hidden = m_m.m_hidden, qDim = m_m.m_nHeads * m_m.m_hd, kvDim = m_m.m_nKv * m_m.m_hd, ffn = m_m.m_ffn;
    m_actTokens = 0;   // stays 0 if an allocation below fails, so the next call retries
    ++m_layout;
    MSA_RETURN_IF_ERROR(m_x.allocate(t * hidden, "the residual stream"));
    MSA_RETURN_IF_ERROR(m_hF.allocate(t * hidden, "the normed hidden state"));
    MSA_RETURN_IF_ERROR(m_hB.allocate(t * std::max(hidden, ffn), "the GEMM input"));
    MSA_RETURN_IF_ERROR(m_qkv.allocate(t * (qDim + 2 * kvDim), "Q/K/V"));
    MSA_RETURN_IF_ERROR(m_q.allocate(t * qDim, "Q"));
    MSA_RETURN_IF_ERROR(m_kNew.allocate(t * kvDim, "K"));
    MSA_RETURN_IF_ERROR(m_vNew.allocate(t * kvDim, "V"));
    MSA_RETURN_IF_ERROR(m_attnB.allocate(t * qDim, "the attention output"));
    MSA_RETURN_IF_ERROR(m_gu.allocate(t * 2 * ffn, "gate/up"));
    MSA_RETURN_IF_ERROR(m_actB.allocate(t * ffn, "the FFN activation"));
    MSA_RETURN_IF_ERROR(m_dTokens.allocate(t, "token ids"));
    MSA_RETURN_IF_ERROR(m_dPositions.allocate(t, "positions"));
    MSA_RETURN_IF_ERROR(m_dSegStart.allocate(t, "segment starts"));
    MSA_RETURN_IF_ERROR(m_hTokens.allocate(t, "token ids"));
    MSA_RETURN_IF_ERROR(m_hPositions.allocate(t, "positions"));
    MSA_RETURN_IF_ERROR(m_hSegStart.allocate(t, "segment starts"));
    m_actTokens = t;
    return Status::ok();
}

Status CudaSession::ensureHookBuffers(size_t n) {
    if (n <= m_hookTokens) return Status::ok();
    MSA_RETURN_IF_ERROR(sync());
    const size_t per = m_m.m_hidden + (m_m.m_nHeads + 2 * m_m.m_nKv) * m_m.m_hd;
    m_hookTokens = 0;
    MSA_RETURN_IF_ERROR(m_hHook.allocate(n * per, "layer hook copies"));
    m_hookTokens = n;
    return Status::ok();
}

Status CudaSession::ensureLogits(size_t rows) {
    // Both sizes: a failed pinned allocation below leaves m_logits grown but m_hLogits empty.
    if (rows * m_m.m_vocab <= m_logits.size() && rows * m_m.m_vocab <= m_hLogits.size()) return Status::ok();
    MSA_RETURN_IF_ERROR(sync());
    ++m_layout;
    m_logitRows = 0;
    MSA_RETURN_IF_ERROR(m_logits.allocate(rows * m_m.m_vocab, "logits"));
    MSA_RETURN_IF_ERROR(m_hLogits.allocate(rows * m_m.m_vocab, "logits"));
    return Status::ok();
}

Status CudaSession::ensureWorkspace(size_t floats) {
    if (floats <= m_ws.size()) return Status::ok();
    MSA_RETURN_IF_ERROR(sync());
    ++m_layout;
    return m_ws.allocate(floats, "the split-K attention workspace");
}

Status CudaSession::runLayers(size_t n, const engine::ForwardOptions& opt, size_t lastLayer, bool capturing) {
    const CudaModel& M = m_m;
    const size_t hidden = M.m_hidden, qDim = M.m_nHeads * M.m_hd, kvDim = M.m_nKv * M.m_hd, qkvDim = qDim + 2 * kvDim;
    const bool hooks = static_cast<bool>(opt.layerHook) || static_cast<bool>(opt.memoryHook);
    MSA_RETURN_IF_ERROR(embeddingBf16(M.m_embed.get(), m_dTokens.get(), m_x.get(), n, hidden, m_stream));
    for (size_t l = 0; l <= lastLayer; ++l) {
        if (!capturing && opt.cancel && opt.cancel->isCancelled()) return cancelled("forward cancelled at layer " + std::to_string(l));
        const GpuLayer& w = M.m_layers[l];
        MSA_RETURN_IF_ERROR(rmsNormToBf16(m_x.get(), w.attnNorm.get(), m_hB.get(), hooks || opt.pooling ? m_hF.get() : nullptr, n, hidden, M.m_eps, m_stream));
        MSA_RETURN_IF_ERROR(gemm(m_cublas, w.wqkv.get(), qkvDim, hidden, m_hB.get(), n, m_qkv.get(), qkvDim, 0.0f));
        QkvPostArgs qa;
        qa.qkv = m_qkv.get();
        qa.bias = w.bqkv.get();
        qa.qNorm = w.qNorm.get();
        qa.kNorm = w.kNorm.get();
        qa.invFreq = M.m_invFreq.get();
        qa.positions = m_dPositions.get();
        qa.q = m_q.get();
        qa.k = m_kNew.get();
        qa.v = m_vNew.get();
        qa.nTokens = n;
        qa.nHeads = M.m_nHeads;
        qa.nKv = M.m_nKv;
        qa.headDim = M.m_hd;
        qa.eps = M.m_eps;
        qa.style = M.m_rope;
        MSA_RETURN_IF_ERROR(qkvPost(qa, m_stream));

        engine::LayerTensors lt;
        if (hooks) {
            float* h = m_hHook.get();
            float* q = h + n * hidden;
            float* k = q + n * qDim;
            float* v = k + n * kvDim;
            MSA_CUDA_CHECK(cudaMemcpyAsync(h, m_hF.get(), n * hidden * sizeof(float), cudaMemcpyDeviceToHost, m_stream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(q, m_q.get(), n * qDim * sizeof(float), cudaMemcpyDeviceToHost, m_stream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(k, m_kNew.get(), n * kvDim * sizeof(float), cudaMemcpyDeviceToHost, m_stream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(v, m_vNew.get(), n * kvDim * sizeof(float), cudaMemcpyDeviceToHost, m_stream));
            MSA_RETURN_IF_ERROR(sync());
            lt = {static_cast<int>(l), n, h, q, k, v};
        }
        if (opt.memoryHook) {
            Result<engine::LayerPrefix> mem = opt.memoryHook(lt);
            if (!mem.ok()) return mem.status();
            if (mem->nRows) MSA_RETURN_IF_ERROR(appendPrefixRows(l, *mem, n));
        }
        MSA_RETURN_IF_ERROR(appendKv(m_kNew.get(), m_vNew.get(), m_k[l].get(), m_v[l].get(), n, M.m_nKv, M.m_hd, m_capacity,
                                     m_prefix[l], m_dNPast.get(), m_stream));
        if (opt.layerHook) opt.layerHook(lt);
        if (opt.pooling)
            MSA_RETURN_IF_ERROR(m_pooler.layer(static_cast<int>(l), m_kNew.get(), m_vNew.get(), m_hF.get(), m_cublas, opt.pooledHook));
        if (l == lastLayer && opt.stopAfterLayer >= 0) break;

        const size_t maxCtx = capturing ? m_capacity : m_prefix[l] + m_nPast + n;
        const AttentionPlan plan = planAttention(n, M.m_nHeads, M.m_nKv, maxCtx, M.m_smCount);
        const size_t wsFloats = plan.workspaceFloats(M.m_hd, n, M.m_nHeads);
        if (wsFloats > m_ws.size()) {
            if (capturing) return Status(ErrorCode::Internal, "the attention workspace was not sized before the graph capture");
            MSA_RETURN_IF_ERROR(ensureWorkspace(wsFloats));
        }
        FlashAttentionArgs fa;
        fa.q = m_q.get();
        fa.kCache = m_k[l].get();
        fa.vCache = m_v[l].get();
        fa.outBf16 = m_attnB.get();
        fa.nTokens = n;
        fa.nHeads = M.m_nHeads;
        fa.nKv = M.m_nKv;
        fa.headDim = M.m_hd;
        fa.kvStride = m_capacity;
        fa.prefixRows = m_prefix[l];
        fa.nPast = m_dNPast.get();
        fa.causal = opt.causal;
        fa.segStart = opt.segments.empty() ? nullptr : m_dSegStart.get();
        fa.nSplits = plan.nSplits;
        fa.workspace = m_ws.get();
        // Prefill/encoding calls take the tensor-core kernel (gpu/flash_attn_tc.h); a captured graph never allocates.
        MSA_RETURN_IF_ERROR(capturing ? flashAttention(fa, m_stream) : flashAttentionPrefill(fa, maxCtx, m_stream));
        MSA_RETURN_IF_ERROR(gemm(m_cublas, w.wo.get(), hidden, qDim, m_attnB.get(), n, m_x.get(), hidden, 1.0f));

        MSA_RETURN_IF_ERROR(rmsNormToBf16(m_x.get(), w.ffnNorm.get(), m_hB.get(), nullptr, n, hidden, M.m_eps, m_stream));
        MSA_RETURN_IF_ERROR(gemm(m_cublas, w.wgu.get(), 2 * M.m_ffn, hidden, m_hB.get(), n, m_gu.get(), 2 * M.m_ffn, 0.0f));
        MSA_RETURN_IF_ERROR(swigluBf16(m_gu.get(), m_actB.get(), n, M.m_ffn, m_stream));
        MSA_RETURN_IF_ERROR(gemm(m_cublas, w.wdown.get(), hidden, M.m_ffn, m_actB.get(), n, m_x.get(), hidden, 1.0f));
    }
    if (opt.pooling) MSA_RETURN_IF_ERROR(m_pooler.finish(opt.pooledHook));
    return Status::ok();
}

Status CudaSession::enqueueLogits(size_t first, size_t rows) {
    const CudaModel& M = m_m;
    MSA_RETURN_IF_ERROR(rmsNormToBf16(m_x.get() + first * M.m_hidden, M.m_outNorm.get(), m_hB.get(), nullptr, rows, M.m_hidden,
                                      M.m_eps, m_stream));
    return gemm(m_cublas, M.lmHead(), M.m_vocab, M.m_hidden, m_hB.get(), rows, m_logits.get(), M.m_vocab, 0.0f);
}

// One token, no hooks, logits of that token. The graph reads the token, its position and nPast from
// device memory, which forward() refreshed before calling this.
Status CudaSession::runDecodeGraph(const engine::ForwardOptions& opt, bool* captureFailed) {
    *captureFailed = false;
    const CudaModel& M = m_m;
    MSA_RETURN_IF_ERROR(ensureLogits(1));
    const AttentionPlan plan = planAttention(1, M.m_nHeads, M.m_nKv, m_capacity, M.m_smCount);
    MSA_RETURN_IF_ERROR(ensureWorkspace(plan.workspaceFloats(M.m_hd, 1, M.m_nHeads)));
    if (!m_graphExec || m_graphLayout != m_layout) {
        dropGraph();
        engine::ForwardOptions plain;
        plain.cancel = opt.cancel;
        const cudaError_t begin = cudaStreamBeginCapture(m_stream, cudaStreamCaptureModeThreadLocal);
        if (begin != cudaSuccess) {   // e.g. graphs unsupported here: decode eagerly, as for a failed capture
            *captureFailed = true;
            return cudaStatus(begin, "cudaStreamBeginCapture", __FILE__, __LINE__);
        }
        auto enqueue = [&]() -> Status {
            MSA_RETURN_IF_ERROR(runLayers(1, plain, M.m_nLayers - 1, true));
            return enqueueLogits(0, 1);
        };
        const Status enqueued = enqueue();
        cudaGraph_t graph = nullptr;
        const cudaError_t end = cudaStreamEndCapture(m_stream, &graph);   // always: leaves capture mode
        cudaGraphExec_t exec = nullptr;
        auto instantiate = [&]() -> Status {
            MSA_RETURN_IF_ERROR(enqueued);
            if (end != cudaSuccess) return cudaStatus(end, "cudaStreamEndCapture", __FILE__, __LINE__);
            const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
            if (inst != cudaSuccess) return cudaStatus(inst, "cudaGraphInstantiate", __FILE__, __LINE__);
            return Status::ok();
        };
        const Status st = instantiate();
        if (!st.isOk()) {
            if (exec) cudaGraphExecDestroy(exec);
            if (graph) cudaGraphDestroy(graph);
            cudaGetLastError();
            *captureFailed = true;
            return st;
        }
        m_graph = graph;
        m_graphExec = exec;
        m_graphLayout = m_layout;
    }
    MSA_CUDA_CHECK(cudaGraphLaunch(m_graphExec, m_stream));
    ++m_graphReplays;
    return Status::ok();
}

Result<std::span<const float>> CudaSession::forward(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                                                    const engine::ForwardOptions& opt) {
    const size_t n = tokens.size();
    MSA_RETURN_IF_ERROR(engine::checkForwardArguments(tokens, positions, opt,
                                                      {.vocab = m_m.m_nEmbed, .nLayers = m_m.m_nLayers, .hidden = m_m.m_hidden,
                                                       .kvDim = m_m.m_nKv * m_m.m_hd, .nPast = m_nPast, .prefixRows = m_prefix}));
    MSA_CUDA_CHECK(cudaSetDevice(m_m.m_device));
    MSA_RETURN_IF_ERROR(reserve(m_nPast + n));
    MSA_RETURN_IF_ERROR(ensureActivations(n));
    const bool hooks = static_cast<bool>(opt.layerHook) || static_cast<bool>(opt.memoryHook);
    if (hooks) MSA_RETURN_IF_ERROR(ensureHookBuffers(n));
    m_logitRows = 0;

    // Inputs through pinned memory. A previous forward that returned early (cancelled, hook error)
    // may still have copies from these buffers in flight: wait for the stream before overwriting.
    MSA_RETURN_IF_ERROR(sync());
    std::memcpy(m_hTokens.get(), tokens.data(), n * sizeof(int32_t));
    std::memcpy(m_hPositions.get(), positions.data(), n * sizeof(int32_t));
    m_hNPast.get()[0] = static_cast<int32_t>(m_nPast);
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_dTokens.get(), m_hTokens.get(), n * sizeof(int32_t), cudaMemcpyHostToDevice, m_stream));
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_dPositions.get(), m_hPositions.get(), n * sizeof(int32_t), cudaMemcpyHostToDevice, m_stream));
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_dNPast.get(), m_hNPast.get(), sizeof(int32_t), cudaMemcpyHostToDevice, m_stream));
    if (!opt.segments.empty()) {
        size_t start = 0;
        for (uint32_t len : opt.segments) {
            for (size_t i = 0; i < len; ++i) m_hSegStart.get()[start + i] = static_cast<int32_t>(start);
            start += len;
        }
        MSA_CUDA_CHECK(cudaMemcpyAsync(m_dSegStart.get(), m_hSegStart.get(), n * sizeof(int32_t), cudaMemcpyHostToDevice, m_stream));
    }
    if (opt.pooling)
        MSA_RETURN_IF_ERROR(m_pooler.begin(engine::segmentChunks(opt.segments, n, opt.pooling->chunkSize), *opt.pooling,
                                           m_m.m_nKv * m_m.m_hd, m_m.m_hidden, m_stream));

    const size_t nLayers = m_m.m_nLayers;
    const size_t lastLayer = opt.stopAfterLayer >= 0 ? std::min(static_cast<size_t>(opt.stopAfterLayer), nLayers - 1) : nLayers - 1;
    const bool wantLogits = opt.computeLogits && opt.stopAfterLayer < 0;
    const bool graph = m_m.m_options.decodeGraphs && !m_graphsBroken && n == 1 && !hooks && wantLogits && opt.segments.empty() && !opt.pooling;
    // A layout's first decode step runs eagerly: it loads every kernel and cuBLAS algorithm the step
    // needs (lazy module loading) before a capture records them.
    const bool warm = m_warmLayout == m_layout || (m_graphExec && m_graphLayout == m_layout);
    bool ran = false;
    if (graph && warm) {
        if (opt.cancel && opt.cancel->isCancelled()) return cancelled("forward cancelled before the decode step");
        bool captureFailed = false;
        Status st = runDecodeGraph(opt, &captureFailed);
        if (st.isOk()) {
            ran = true;
        } else if (captureFailed) {
            MSA_LOG(Warning) << "CUDA graph capture of the decode step failed; decoding with eager launches: " << st.toString();
            m_graphsBroken = true;
        } else {
            return st;
        }
    }
    if (!ran) {
        MSA_RETURN_IF_ERROR(runLayers(n, opt, lastLayer, false));
        if (wantLogits) {
            const size_t first = opt.allLogits ? 0 : n - 1;
            MSA_RETURN_IF_ERROR(ensureLogits(n - first));
            MSA_RETURN_IF_ERROR(enqueueLogits(first, n - first));
        }
    }
    if (graph && !ran) m_warmLayout = m_layout;
    if (!wantLogits) {
        MSA_RETURN_IF_ERROR(sync());   // device errors surface here, not in the next call
        m_nPast += n;
        return std::span<const float>();
    }
    const size_t rows = opt.allLogits ? n : 1;
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_hLogits.get(), m_logits.get(), rows * m_m.m_vocab * sizeof(float), cudaMemcpyDeviceToHost, m_stream));
    MSA_RETURN_IF_ERROR(sync());
    m_nPast += n;
    m_logitRows = rows;
    return std::span<const float>(m_hLogits.get(), rows * m_m.m_vocab);
}

Result<int32_t> CudaSession::argmaxLastLogits() {
    if (m_logitRows == 0) return invalidArgument("deviceArgmaxLastLogits(): the session's latest forward produced no logits");
    MSA_CUDA_CHECK(cudaSetDevice(m_m.m_device));
    MSA_RETURN_IF_ERROR(argmaxRows(m_logits.get() + (m_logitRows - 1) * m_m.m_vocab, 1, m_m.m_vocab, m_dArgmax.get(), m_stream));
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_hArgmax.get(), m_dArgmax.get(), sizeof(int32_t), cudaMemcpyDeviceToHost, m_stream));
    MSA_RETURN_IF_ERROR(sync());
    return m_hArgmax.get()[0];
}

class CudaBackend final : public engine::Backend {
public:
    CudaBackend(int device, CudaBackendOptions options) : m_device(device), m_options(options) {}
    std::string_view name() const override { return "cuda"; }
    Result<std::shared_ptr<const engine::LoadedModel>> load(std::shared_ptr<const model::ModelFiles> files) override {
        if (!files) return invalidArgument("no model files");
        std::shared_ptr<CudaModel> m;
        try {
            m = std::make_shared<CudaModel>(std::move(files), m_device, m_options);
        } catch (const std::exception& e) {
            return Status::fromException(e, "loading the model on CUDA");
        }
        // init() builds host vectors (norms, biases, the dequantization row) and may throw
        // std::bad_alloc for a large model: no exception may leave the backend.
        const Status st = [&]() -> Status {
            try {
                return m->init();
            } catch (const std::exception& e) {
                return Status::fromException(e, "uploading the weights");
            }
        }();
        MSA_RETURN_IF_ERROR(st.withContext("loading the model on cuda:" + std::to_string(m_device)));
        return std::shared_ptr<const engine::LoadedModel>(std::move(m));
    }

private:
    int m_device;
    CudaBackendOptions m_options;
};

}  // namespace

Result<std::unique_ptr<engine::Backend>> createCudaBackend(int deviceIndex, const CudaBackendOptions& options) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return cudaStatus(e, "cudaGetDeviceCount", __FILE__, __LINE__).withContext("creating the CUDA backend");
    if (deviceIndex < 0 || deviceIndex >= count)
        return notFound("no CUDA device " + std::to_string(deviceIndex) + " (" + std::to_string(count) + " present)");
    MSA_CUDA_CHECK(cudaSetDevice(deviceIndex));
    MSA_CUDA_CHECK(cudaFree(nullptr));   // creates the context now, so a broken device fails here
    return std::unique_ptr<engine::Backend>(new CudaBackend(deviceIndex, options));
}

Result<std::unique_ptr<engine::Backend>> createCudaBackend(int deviceIndex) {
    CudaBackendOptions options;
    const char* graphs = std::getenv("MSA_CUDA_GRAPHS");
    options.decodeGraphs = graphs && std::string_view(graphs) == "1";
    return createCudaBackend(deviceIndex, options);
}

Result<int32_t> deviceArgmaxLastLogits(engine::Session& session) {
    auto* s = dynamic_cast<CudaSession*>(&session);
    if (!s) return invalidArgument("deviceArgmaxLastLogits(): not a CUDA session");
    return s->argmaxLastLogits();
}

Result<uint64_t> decodeGraphReplays(const engine::Session& session) {
    const auto* s = dynamic_cast<const CudaSession*>(&session);
    if (!s) return invalidArgument("decodeGraphReplays(): not a CUDA session");
    return s->graphReplays();
}

}  // namespace msa::gpu

// cpu_backend.cpp: the CPU reference backend: the transformer forward for Llama, Qwen2 and Qwen3
// (and MSA checkpoints, which are Qwen3 for a plain forward) on weights kept in their stored dtype.
//
// Per layer: h = rmsNorm(x); q,k,v = linear(h) (+bias for Qwen2); QK-norm per head (Qwen3); RoPE at
// the given positions; append k,v to the cache; causal GQA attention; x += o_proj; h = rmsNorm(x);
// x += down(silu(gate(h)) * up(h)). Then the final norm and the (possibly tied) lm_head.
// Matches Hugging Face transformers' LlamaModel/Qwen2Model/Qwen3Model computed in f32.
#include "core/engine/backend.h"
#include "core/engine/chunk_pool.h"
#include "core/engine/forward_checks.h"

#include "core/engine/compute_threads.h"
#include "core/engine/cpu_ops.h"
#include "core/engine/linear.h"
#include "core/util/log.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <vector>

namespace msa::engine {
namespace {

using model::TensorView;

// From this many tokens per forward, attention uses the sgemm formulation (cpu::attentionGemm).
constexpr size_t kGemmAttentionMinTokens = 16;

struct LayerWeights {
    const TensorView* wq = nullptr;
    const TensorView* wk = nullptr;
    const TensorView* wv = nullptr;
    const TensorView* wo = nullptr;
    const TensorView* gate = nullptr;
    const TensorView* up = nullptr;
    const TensorView* down = nullptr;
    std::vector<float> attnNorm, ffnNorm, qNorm, kNorm, bq, bk, bv;   // small tensors converted to f32
};

// Converts a small tensor (norm weight, bias) to f32.
std::vector<float> toF32(const TensorView& t) {
    std::vector<float> out(t.nElements());
    for (uint64_t r = 0; r < t.nRows(); ++r) model::dequantizeRow(t.dtype, t.row(r), out.data() + r * t.rowLength(), t.rowLength());
    return out;
}

class CpuModel final : public LoadedModel, public std::enable_shared_from_this<CpuModel> {
public:
    explicit CpuModel(std::shared_ptr<const model::ModelFiles> files) : m_files(std::move(files)) {}

    Status init() {
        const auto& c = m_files->config();
        const auto& ts = m_files->tensors();
        auto need = [&](const std::string& name) -> Result<const TensorView*> {
            const TensorView* t = ts.find(name);
            if (!t) return notFound("tensor '" + name + "' is missing from '" + m_files->path().string() + "'");
            return t;
        };
        MSA_ASSIGN_OR_RETURN(m_embed, need("token_embd.weight"));
        const TensorView* output = ts.find("output.weight");
        m_lmHead = output ? output : m_embed;
        MSA_ASSIGN_OR_RETURN(const TensorView* outNorm, need("output_norm.weight"));
        m_outputNorm = toF32(*outNorm);
        m_layers.resize(static_cast<size_t>(c.nLayers));
        for (int l = 0; l < c.nLayers; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            LayerWeights& w = m_layers[static_cast<size_t>(l)];
            MSA_ASSIGN_OR_RETURN(w.wq, need(p + "attn_q.weight"));
            MSA_ASSIGN_OR_RETURN(w.wk, need(p + "attn_k.weight"));
            MSA_ASSIGN_OR_RETURN(w.wv, need(p + "attn_v.weight"));
            MSA_ASSIGN_OR_RETURN(w.wo, need(p + "attn_output.weight"));
            MSA_ASSIGN_OR_RETURN(w.gate, need(p + "ffn_gate.weight"));
            MSA_ASSIGN_OR_RETURN(w.up, need(p + "ffn_up.weight"));
            MSA_ASSIGN_OR_RETURN(w.down, need(p + "ffn_down.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* an, need(p + "attn_norm.weight"));
            MSA_ASSIGN_OR_RETURN(const TensorView* fn, need(p + "ffn_norm.weight"));
            w.attnNorm = toF32(*an);
            w.ffnNorm = toF32(*fn);
            if (c.qkNorm) {
                MSA_ASSIGN_OR_RETURN(const TensorView* qn, need(p + "attn_q_norm.weight"));
                MSA_ASSIGN_OR_RETURN(const TensorView* kn, need(p + "attn_k_norm.weight"));
                w.qNorm = toF32(*qn);
                w.kNorm = toF32(*kn);
            }
            if (c.attentionBias) {
                MSA_ASSIGN_OR_RETURN(const TensorView* bq, need(p + "attn_q.bias"));
                MSA_ASSIGN_OR_RETURN(const TensorView* bk, need(p + "attn_k.bias"));
                MSA_ASSIGN_OR_RETURN(const TensorView* bv, need(p + "attn_v.bias"));
                w.bq = toF32(*bq);
                w.bk = toF32(*bk);
                w.bv = toF32(*bv);
            }
        }
        return Status::ok();
    }

    const model::ModelFiles& files() const override { return *m_files; }
    Result<std::unique_ptr<Session>> createSession(const SessionOptions& options) const override;

    std::shared_ptr<const model::ModelFiles> m_files;
    const TensorView* m_embed = nullptr;
    const TensorView* m_lmHead = nullptr;
    std::vector<float> m_outputNorm;
    std::vector<LayerWeights> m_layers;
};

class CpuSession final : public Session {
public:
    CpuSession(std::shared_ptr<const CpuModel> model, const SessionOptions& options)
        : m_model(std::move(model)), m_team(options.nThreads), m_maxTokens(options.maxTokens) {
        const auto& c = m_model->m_files->config();
        m_nLayers = static_cast<size_t>(c.nLayers);
        m_hidden = static_cast<size_t>(c.hiddenSize);
        m_nHeads = static_cast<size_t>(c.nHeads);
        m_nKv = static_cast<size_t>(c.nKvHeads);
        m_hd = static_cast<size_t>(c.headDim);
        m_ffn = static_cast<size_t>(c.ffnSize);
        m_vocab = m_model->m_lmHead->nRows();
        m_eps = c.rmsNormEps;
        m_theta = static_cast<float>(c.ropeTheta);
        m_rope = c.ropeStyle == model::RopeStyle::NeoX ? cpu::RopeStyle::NeoX : cpu::RopeStyle::Adjacent;
        m_k.resize(m_nLayers);
        m_v.resize(m_nLayers);
        m_prefix.assign(m_nLayers, 0);
    }

    size_t nPast() const override { return m_nPast; }
    bool supportsPooling() const override { return true; }
    Status setPrefix(std::vector<LayerPrefix> perLayer) override;
    Status appendPrefixRows(size_t layer, const LayerPrefix& rows, size_t nCall);
    Status sizeScratch(size_t nCall);
    Status poolLayer(const PoolingOptions& pooling, const PooledHook& hook, size_t layer, size_t n,
                     std::span<const ChunkSpan> plan);
    Result<LayerPrefix> exportRows(size_t layer, size_t begin, size_t end) const override;
    size_t prefixRows(size_t layer) const override { return layer < m_prefix.size() ? m_prefix[layer] : 0; }
    size_t vocabSize() const override { return m_vocab; }
    void truncate(size_t n) override { m_nPast = std::min(n, m_nPast); }

    Result<std::span<const float>> forward(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                                           const ForwardOptions& opt) override;

private:
    // Grows the per-layer caches to hold `needed` tokens (capacity doubles, up to m_maxTokens).
    Status reserve(size_t needed);

    std::shared_ptr<const CpuModel> m_model;
    ComputeThreads m_team;
    LinearWorkspace m_ws;
    size_t m_maxTokens;
    size_t m_nLayers = 0, m_hidden = 0, m_nHeads = 0, m_nKv = 0, m_hd = 0, m_ffn = 0, m_vocab = 0;
    float m_eps = 1e-6f, m_theta = 10000.0f;
    cpu::RopeStyle m_rope = cpu::RopeStyle::NeoX;

    size_t m_nPast = 0;                    // local tokens in the cache
    std::vector<size_t> m_prefix;          // per layer: rows in front of the local tokens
    size_t m_maxPrefix = 0;
    size_t m_capacity = 0;                 // rows per layer cache (prefix + local)
    std::vector<std::vector<float>> m_k;   // per layer: nKv × capacity × hd
    std::vector<std::vector<float>> m_v;
    // Activations for the current call.
    std::vector<float> m_x, m_h, m_q, m_kNew, m_vNew, m_attn, m_o, m_gate, m_up, m_logits;
    std::vector<float> m_poolK, m_poolV, m_poolR, m_routeRows;   // pooled rows (ForwardOptions::pooling)
    std::vector<std::vector<float>> m_scratch;   // attention scores per thread
};

Result<std::unique_ptr<Session>> CpuModel::createSession(const SessionOptions& options) const {
    try {
        return std::unique_ptr<Session>(new CpuSession(shared_from_this(), options));
    } catch (const std::exception& e) {
        return Status::fromException(e, "creating a CPU session");
    }
}

// `needed` counts local tokens; each layer's cache also holds its prefix rows in front of them.
Status CpuSession::reserve(size_t needed) {
    if (needed > m_maxTokens)
        return invalidArgument("the session holds at most " + std::to_string(m_maxTokens) + " tokens; " +
                               std::to_string(needed) + " were needed");
    if (needed + m_maxPrefix <= m_capacity) return Status::ok();
    size_t cap = std::max<size_t>(m_capacity ? m_capacity * 2 : 256, needed + m_maxPrefix);
    cap = std::min(cap, m_maxTokens + m_maxPrefix);
    try {
        for (size_t l = 0; l < m_nLayers; ++l) {
            for (auto* cache : {&m_k[l], &m_v[l]}) {
                std::vector<float> grown(m_nKv * cap * m_hd);
                // Whole old rows: a forward in progress may already have appended this call's
                // tokens to earlier layers (a memory hook grows the cache mid-forward).
                for (size_t g = 0; g < m_nKv && m_capacity; ++g)
                    std::memcpy(grown.data() + g * cap * m_hd, cache->data() + g * m_capacity * m_hd,
                                m_capacity * m_hd * sizeof(float));
                cache->swap(grown);
            }
        }
    } catch (const std::bad_alloc&) {
        return {ErrorCode::OutOfMemory, "cannot grow the KV cache to " + std::to_string(cap) + " tokens"};
    }
    m_capacity = cap;
    return Status::ok();
}

Status CpuSession::setPrefix(std::vector<LayerPrefix> perLayer) {
    if (perLayer.size() != m_nLayers)
        return invalidArgument("setPrefix(): " + std::to_string(perLayer.size()) + " layers given, the model has " +
                               std::to_string(m_nLayers));
    const size_t rowFloats = m_nKv * m_hd;
    size_t maxRows = 0;
    for (size_t l = 0; l < m_nLayers; ++l) {
        const LayerPrefix& p = perLayer[l];
        if (p.k.size() != p.nRows * rowFloats || p.v.size() != p.nRows * rowFloats)
            return invalidArgument("setPrefix(): layer " + std::to_string(l) + " has " + std::to_string(p.k.size()) +
                                   "/" + std::to_string(p.v.size()) + " K/V floats for " + std::to_string(p.nRows) +
                                   " rows of " + std::to_string(rowFloats));
        maxRows = std::max(maxRows, p.nRows);
    }
    m_nPast = 0;
    m_prefix.assign(m_nLayers, 0);   // nothing to preserve while the cache is re-laid out
    m_maxPrefix = maxRows;
    if (m_capacity < m_maxPrefix + 1) {
        m_capacity = 0;   // reserve() reallocates
        MSA_RETURN_IF_ERROR(reserve(1));
    }
    for (size_t l = 0; l < m_nLayers; ++l) {
        const LayerPrefix& p = perLayer[l];
        for (size_t r = 0; r < p.nRows; ++r)
            for (size_t g = 0; g < m_nKv; ++g) {
                std::memcpy(m_k[l].data() + (g * m_capacity + r) * m_hd, p.k.data() + (r * m_nKv + g) * m_hd, m_hd * sizeof(float));
                std::memcpy(m_v[l].data() + (g * m_capacity + r) * m_hd, p.v.data() + (r * m_nKv + g) * m_hd, m_hd * sizeof(float));
            }
        m_prefix[l] = p.nRows;
    }
    return Status::ok();
}

// Pools layer `layer` if the options name it. The routing keys are projected per token with
// model::dotRow (what memory::routingKeyRows computes) and then pooled, as the reference does, so the
// result is bit-equal to pooling the layer hook's tensors on the host.
Status CpuSession::poolLayer(const PoolingOptions& pooling, const PooledHook& hook, size_t layer, size_t n,
                             std::span<const ChunkSpan> plan) {
    const auto it = std::lower_bound(pooling.layers.begin(), pooling.layers.end(), static_cast<int>(layer));
    if (it == pooling.layers.end() || *it != static_cast<int>(layer)) return Status::ok();
    const size_t idx = static_cast<size_t>(it - pooling.layers.begin());
    const TensorView* proj = pooling.routeKeyProj.empty() ? nullptr : pooling.routeKeyProj[idx];
    const size_t kvDim = m_nKv * m_hd, nChunks = plan.size();
    try {
        m_poolK.resize(nChunks * kvDim);
        m_poolV.resize(nChunks * kvDim);
        if (proj) {
            m_routeRows.resize(n * kvDim);
            m_poolR.resize(nChunks * kvDim);
        }
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "pooled rows of " + std::to_string(nChunks) + " chunks");
    }
    if (proj) {
        m_team.parallelFor(n, [&](size_t begin, size_t end, size_t) {
            for (size_t t = begin; t < end; ++t)
                for (size_t r = 0; r < kvDim; ++r)
                    m_routeRows[t * kvDim + r] = model::dotRow(proj->dtype, proj->row(r), m_h.data() + t * m_hidden, m_hidden);
        });
    }
    m_team.parallelFor(nChunks, [&](size_t begin, size_t end, size_t) {
        poolChunkRows(m_kNew.data(), kvDim, plan, begin, end, m_poolK.data() + begin * kvDim);
        poolChunkRows(m_vNew.data(), kvDim, plan, begin, end, m_poolV.data() + begin * kvDim);
        if (proj) poolChunkRows(m_routeRows.data(), kvDim, plan, begin, end, m_poolR.data() + begin * kvDim);
    });
    hook({static_cast<int>(layer), nChunks, m_poolK.data(), m_poolV.data(), proj ? m_poolR.data() : nullptr});
    return Status::ok();
}

Status CpuSession::sizeScratch(size_t n) {
    try {
        m_scratch.resize(m_team.size());
        const size_t ctxMax = m_maxPrefix + m_nPast + n;
        const size_t scratchFloats = n >= kGemmAttentionMinTokens ? cpu::attentionGemmScratch(n, ctxMax) : ctxMax;
        for (auto& s : m_scratch)
            if (s.size() < scratchFloats) s.resize(scratchFloats);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "attention scratch for " + std::to_string(n) + " tokens");
    }
    return Status::ok();
}

// Called from forward() (nPast == 0) before layer `layer` appends this call's nCall tokens.
Status CpuSession::appendPrefixRows(size_t layer, const LayerPrefix& p, size_t nCall) {
    const size_t rowFloats = m_nKv * m_hd;
    if (p.k.size() != p.nRows * rowFloats || p.v.size() != p.nRows * rowFloats)
        return invalidArgument("memory rows for layer " + std::to_string(layer) + ": " + std::to_string(p.k.size()) + "/" +
                               std::to_string(p.v.size()) + " K/V floats for " + std::to_string(p.nRows) + " rows of " +
                               std::to_string(rowFloats));
    const size_t begin = m_prefix[layer];
    m_maxPrefix = std::max(m_maxPrefix, begin + p.nRows);
    MSA_RETURN_IF_ERROR(reserve(m_nPast + nCall));
    MSA_RETURN_IF_ERROR(sizeScratch(nCall));
    for (size_t r = 0; r < p.nRows; ++r)
        for (size_t g = 0; g < m_nKv; ++g) {
            std::memcpy(m_k[layer].data() + (g * m_capacity + begin + r) * m_hd, p.k.data() + (r * m_nKv + g) * m_hd, m_hd * sizeof(float));
            std::memcpy(m_v[layer].data() + (g * m_capacity + begin + r) * m_hd, p.v.data() + (r * m_nKv + g) * m_hd, m_hd * sizeof(float));
        }
    m_prefix[layer] = begin + p.nRows;
    return Status::ok();
}

Result<LayerPrefix> CpuSession::exportRows(size_t layer, size_t begin, size_t end) const {
    if (layer >= m_nLayers) return invalidArgument("exportRows(): no layer " + std::to_string(layer));
    const size_t rows = m_prefix[layer] + m_nPast;
    if (begin > end || end > rows)
        return invalidArgument("exportRows(): rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                               ") outside the " + std::to_string(rows) + " rows of layer " + std::to_string(layer));
    LayerPrefix out;
    out.nRows = end - begin;
    out.k.resize(out.nRows * m_nKv * m_hd);
    out.v.resize(out.nRows * m_nKv * m_hd);
    for (size_t r = 0; r < out.nRows; ++r)
        for (size_t g = 0; g < m_nKv; ++g) {
            std::memcpy(out.k.data() + (r * m_nKv + g) * m_hd, m_k[layer].data() + (g * m_capacity + begin + r) * m_hd, m_hd * sizeof(float));
            std::memcpy(out.v.data() + (r * m_nKv + g) * m_hd, m_v[layer].data() + (g * m_capacity + begin + r) * m_hd, m_hd * sizeof(float));
        }
    return out;
}

Result<std::span<const float>> CpuSession::forward(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                                                   const ForwardOptions& opt) {
    const size_t n = tokens.size();
    MSA_RETURN_IF_ERROR(checkForwardArguments(tokens, positions, opt,
                                              {.vocab = m_model->m_embed->nRows(), .nLayers = m_nLayers, .hidden = m_hidden,
                                               .kvDim = m_nKv * m_hd, .nPast = m_nPast, .prefixRows = m_prefix}));
    std::vector<ChunkSpan> poolPlan;
    if (opt.pooling) poolPlan = segmentChunks(opt.segments, n, opt.pooling->chunkSize);
    MSA_RETURN_IF_ERROR(reserve(m_nPast + n));

    const size_t qDim = m_nHeads * m_hd, kvDim = m_nKv * m_hd;
    try {
        m_x.resize(n * m_hidden);
        m_h.resize(n * m_hidden);
        m_q.resize(n * qDim);
        m_kNew.resize(n * kvDim);
        m_vNew.resize(n * kvDim);
        m_attn.resize(n * qDim);
        m_o.resize(n * m_hidden);
        m_gate.resize(n * m_ffn);
        m_up.resize(n * m_ffn);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "activations for " + std::to_string(n) + " tokens");
    }
    MSA_RETURN_IF_ERROR(sizeScratch(n));

    const TensorView& embed = *m_model->m_embed;
    for (size_t t = 0; t < n; ++t)
        model::dequantizeRow(embed.dtype, embed.row(static_cast<uint64_t>(tokens[t])), m_x.data() + t * m_hidden, m_hidden);

    const size_t lastLayer = opt.stopAfterLayer >= 0 ? std::min(static_cast<size_t>(opt.stopAfterLayer), m_nLayers - 1)
                                                      : m_nLayers - 1;
    for (size_t l = 0; l <= lastLayer; ++l) {
        if (opt.cancel && opt.cancel->isCancelled()) return cancelled("forward cancelled at layer " + std::to_string(l));
        const LayerWeights& w = m_model->m_layers[l];
        cpu::rmsNorm(m_x.data(), w.attnNorm.data(), m_h.data(), n, m_hidden, m_eps);
        linear(*w.wq, m_h.data(), n, m_q.data(), m_team, m_ws);
        linear(*w.wk, m_h.data(), n, m_kNew.data(), m_team, m_ws);
        linear(*w.wv, m_h.data(), n, m_vNew.data(), m_team, m_ws);
        if (!w.bq.empty()) {
            cpu::addBias(m_q.data(), w.bq.data(), n, qDim);
            cpu::addBias(m_kNew.data(), w.bk.data(), n, kvDim);
            cpu::addBias(m_vNew.data(), w.bv.data(), n, kvDim);
        }
        if (!w.qNorm.empty()) {
            cpu::rmsNorm(m_q.data(), w.qNorm.data(), m_q.data(), n * m_nHeads, m_hd, m_eps);
            cpu::rmsNorm(m_kNew.data(), w.kNorm.data(), m_kNew.data(), n * m_nKv, m_hd, m_eps);
        }
        cpu::rope(m_q.data(), n, m_nHeads, m_hd, m_hd, positions.data(), m_theta, m_rope);
        cpu::rope(m_kNew.data(), n, m_nKv, m_hd, m_hd, positions.data(), m_theta, m_rope);

        if (opt.memoryHook) {
            Result<LayerPrefix> mem = opt.memoryHook({static_cast<int>(l), n, m_h.data(), m_q.data(), m_kNew.data(), m_vNew.data()});
            if (!mem.ok()) return mem.status();
            if (mem->nRows) MSA_RETURN_IF_ERROR(appendPrefixRows(l, *mem, n));
        }
        // Append to the cache after this layer's prefix: head-major so each head's keys are one run.
        const size_t base = m_prefix[l] + m_nPast;
        const size_t nCtx = base + n;
        for (size_t t = 0; t < n; ++t)
            for (size_t g = 0; g < m_nKv; ++g) {
                std::memcpy(m_k[l].data() + (g * m_capacity + base + t) * m_hd, m_kNew.data() + (t * m_nKv + g) * m_hd, m_hd * sizeof(float));
                std::memcpy(m_v[l].data() + (g * m_capacity + base + t) * m_hd, m_vNew.data() + (t * m_nKv + g) * m_hd, m_hd * sizeof(float));
            }
        if (opt.layerHook) opt.layerHook({static_cast<int>(l), n, m_h.data(), m_q.data(), m_kNew.data(), m_vNew.data()});
        if (opt.pooling) MSA_RETURN_IF_ERROR(poolLayer(*opt.pooling, opt.pooledHook, l, n, poolPlan));
        if (l == lastLayer && opt.stopAfterLayer >= 0) break;

        // Many queries (prefill, encoding): two sgemm per head; few (decode): the direct loop.
        const bool gemm = n >= kGemmAttentionMinTokens;
        // Packed independent sequences: block-diagonal causal, each block like a forward of its own.
        m_team.parallelFor(m_nHeads, [&](size_t begin, size_t end, size_t thread) {
            if (!opt.segments.empty()) {
                cpu::segmentedAttention(m_q.data(), m_k[l].data(), m_v[l].data(), m_attn.data(), opt.segments.data(),
                                        opt.segments.size(), m_nHeads, m_nKv, m_hd, m_capacity, begin, end,
                                        kGemmAttentionMinTokens, m_scratch[thread].data());
            } else if (!opt.causal && n > 1) {
                // Bidirectional inside this call (msa-spec B3): query i is the last row of the whole
                // context, so it sees every key, including the later tokens of this call.
                for (size_t i = 0; i < n; ++i)
                    cpu::attention(m_q.data() + i * qDim, m_k[l].data(), m_v[l].data(), m_attn.data() + i * qDim, 1, nCtx,
                                   m_nHeads, m_nKv, m_hd, m_capacity, begin, end, m_scratch[thread].data());
            } else if (gemm)
                cpu::attentionGemm(m_q.data(), m_k[l].data(), m_v[l].data(), m_attn.data(), n, nCtx, m_nHeads, m_nKv, m_hd,
                                   m_capacity, begin, end, m_scratch[thread].data());
            else
                cpu::attention(m_q.data(), m_k[l].data(), m_v[l].data(), m_attn.data(), n, nCtx, m_nHeads, m_nKv, m_hd,
                               m_capacity, begin, end, m_scratch[thread].data());
        });
        linear(*w.wo, m_attn.data(), n, m_o.data(), m_team, m_ws);
        cpu::addInPlace(m_x.data(), m_o.data(), n * m_hidden);

        cpu::rmsNorm(m_x.data(), w.ffnNorm.data(), m_h.data(), n, m_hidden, m_eps);
        linear(*w.gate, m_h.data(), n, m_gate.data(), m_team, m_ws);
        linear(*w.up, m_h.data(), n, m_up.data(), m_team, m_ws);
        cpu::swiglu(m_gate.data(), m_up.data(), m_gate.data(), n * m_ffn);
        linear(*w.down, m_gate.data(), n, m_o.data(), m_team, m_ws);
        cpu::addInPlace(m_x.data(), m_o.data(), n * m_hidden);
    }
    m_nPast += n;
    if (!opt.computeLogits || opt.stopAfterLayer >= 0) return std::span<const float>();

    const size_t first = opt.allLogits ? 0 : n - 1;
    const size_t rows = n - first;
    cpu::rmsNorm(m_x.data() + first * m_hidden, m_model->m_outputNorm.data(), m_h.data(), rows, m_hidden, m_eps);
    try {
        m_logits.resize(rows * m_vocab);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "logits for " + std::to_string(rows) + " tokens");
    }
    linear(*m_model->m_lmHead, m_h.data(), rows, m_logits.data(), m_team, m_ws);
    return std::span<const float>(m_logits.data(), rows * m_vocab);
}

class CpuBackend final : public Backend {
public:
    CpuBackend() { configureBlasForTeam(); }
    std::string_view name() const override { return "cpu"; }
    Result<std::shared_ptr<const LoadedModel>> load(std::shared_ptr<const model::ModelFiles> files) override {
        if (!files) return invalidArgument("no model files");
        auto m = std::make_shared<CpuModel>(std::move(files));
        MSA_RETURN_IF_ERROR(m->init().withContext("loading the model on the CPU"));
        return std::shared_ptr<const LoadedModel>(std::move(m));
    }
};

}  // namespace

std::unique_ptr<Backend> createCpuBackend() { return std::make_unique<CpuBackend>(); }

}  // namespace msa::engine

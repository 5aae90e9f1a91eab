// backend.h: the compute-backend interface (DESIGN.md §5, CONVENTIONS.md #3, #5).
//
//   Backend      — a way to run models (CPU here; CUDA in gpu/). Creates LoadedModels.
//   LoadedModel  — immutable weights + hyper-parameters on that backend; shared read-only by any
//                  number of sessions (llama.cpp's llama_model).
//   Session      — mutable per-conversation state: KV cache, scratch, threads (llama_context). Used by
//                  one thread at a time (the engine thread).
//
// Positions are always given by the caller (document-wise RoPE restarts them per memory document),
// and a layer hook exposes each layer's K (after QK-norm and RoPE), V and the normed hidden state, so
// that the memory encoder can pool them without a second forward, and can stop after the last layer
// it needs. A pooled hook (ForwardOptions::pooling) instead returns only each chunk's mean rows, pooled
// where the tensors live (on the device for CUDA).
//
// Failure codes: load(): Unsupported (an architecture/dtype the backend cannot run), OutOfMemory,
// DeviceError. createSession(): OutOfMemory. forward(): InvalidArgument (token id outside the
// vocabulary, positions/tokens size mismatch), OutOfRange-like InvalidArgument when the session's
// token capacity would be exceeded, Cancelled (checked between layers).
//
// Usage:
//     auto backend = msa::engine::createCpuBackend();
//     MSA_ASSIGN_OR_RETURN(auto model, backend->load(files));
//     MSA_ASSIGN_OR_RETURN(auto session, model->createSession({.maxTokens = 4096}));
//     MSA_ASSIGN_OR_RETURN(std::span<const float> logits, session->forward(ids, positions, {}));
#pragma once

#include "core/model/model_files.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace msa::engine {

// One layer's tensors for the tokens of the current forward call (row-major, one row per token).
struct LayerTensors {
    int layer = 0;
    size_t nTokens = 0;
    const float* hiddenNormed = nullptr;   // nTokens × hiddenSize: the attention input (after attn_norm)
    const float* q = nullptr;              // nTokens × nHeads × headDim, after QK-norm and RoPE
    const float* k = nullptr;              // nTokens × nKvHeads × headDim, after QK-norm and RoPE
    const float* v = nullptr;              // nTokens × nKvHeads × headDim
};
using LayerHook = std::function<void(const LayerTensors&)>;

// Key/value rows placed in front of a layer's local tokens: the template head and, in routing layers,
// the selected memory chunks (msa-spec §2.8). Rows are [nRows][nKvHeads][headDim], already rotated
// (chunks keep their document-local RoPE; nothing is re-rotated). Every local token attends to all of
// them (no mask); they take no positions of their own.
struct LayerPrefix {
    std::vector<float> k;
    std::vector<float> v;
    size_t nRows = 0;
};

// Memory assembly during a prefill (msa-spec §2.8): called in each layer after its Q/K/V exist and
// before its attention, while the session holds no local tokens yet. The rows it returns (possibly
// none) are appended to that layer's prefix, after the template head, and stay there for the later
// decode calls of the same round. This is where routing layers pick their documents: the hook reads
// the layer's normed hidden state (router_q_proj) or Q, scores the memory, and returns the selected
// documents' pooled K̄/V̄ rows. An error status aborts the forward with that status.
using MemoryHook = std::function<Result<LayerPrefix>(const LayerTensors&)>;

// Chunk pooling inside the engine (msa-spec §3): instead of handing every token's K/V/x̃ to the host
// (layerHook), a backend that supportsPooling() mean-pools them per chunk where they live and hands
// over only the pooled rows. Chunks never cross a segment (ForwardOptions::segments; no segments: one
// segment of all tokens): segment s of n_s tokens has ceil(n_s / chunkSize) chunks, chunk c covering
// its tokens [c·P, min((c+1)·P, n_s)); each pooled row is the f32 sum of its tokens' rows in token
// order divided by the chunk's real length (no padding; memory::meanPoolChunks' arithmetic).
//   K̄: the attention keys after k_norm and RoPE; V̄: the raw values; K̄ᴿ (only where routeKeyProj
//   names a matrix, i.e. decoupled MSA routers): the mean of W·x̃ over the chunk, W = router_k_proj
//   [nKvHeads·headDim × hidden], x̃ = the normed attention input. The reference projects every token
//   and then pools (msa-spec §3); W has no bias, so pooling x̃ first and projecting the pooled rows
//   is equal in exact arithmetic and P times cheaper. The CPU backend projects then pools (bit-equal
//   to the layer-hook path); the CUDA backend pools x̃ on the device and projects pooled rows on the
//   host (differences at f32 rounding level; tst_pooled_hook measures both orders).
struct PoolingOptions {
    size_t chunkSize = 0;                              // P (> 0)
    std::vector<int> layers;                           // the layers to pool, ascending
    std::vector<const model::TensorView*> routeKeyProj;// empty, or one per `layers` entry (null: no K̄ᴿ)
};

// One pooled layer of a forward: arrays are [nChunks][nKvHeads][headDim] f32, chunks of segment 0
// first. routeKey is null when the layer has no routeKeyProj (training-free routers use K̄).
// The pointers are valid only during the hook call.
struct PooledRows {
    int layer = 0;
    size_t nChunks = 0;
    const float* k = nullptr;
    const float* v = nullptr;
    const float* routeKey = nullptr;
};
using PooledHook = std::function<void(const PooledRows&)>;


struct ForwardOptions {
    bool allLogits = false;          // logits for every token (else only the last one)
    bool computeLogits = true;       // false: skip the final norm and lm_head (encoding)
    int stopAfterLayer = -1;         // >= 0: stop once this layer's K/V are computed (skip the rest)
    LayerHook layerHook = {};        // called on the session's thread after each layer's K/V exist
    MemoryHook memoryHook = {};      // prefill only (nPast() == 0): extra prefix rows per layer, see above
    // false: the tokens of this call attend to each other in both directions (every one sees all of
    // them), as the reference does when it feeds a multi-token injection during decoding (msa-spec
    // §9 B3). Only the reference-compatibility mode of Memory Interleave asks for it.
    bool causal = true;
    // Packing (the memory encoder's batches): lengths of consecutive independent sequences that sum
    // to the token count. Each token attends causally inside its own segment only (block-diagonal
    // causal attention; masked blocks are not computed). Positions stay the caller's (each segment
    // restarts at 0 for document-wise RoPE). Needs an empty context (no cached tokens, no prefix
    // rows) and no memoryHook: InvalidArgument otherwise, or when the lengths do not sum to the
    // token count.
    std::span<const uint32_t> segments = {};
    // With pooledHook set: pool these layers (see PoolingOptions) and call pooledHook once per layer
    // in `layers` order, on the session's thread, before forward() returns; a backend may call it a
    // layer late (after queueing the next layer's work) so that copying the rows overlaps compute.
    // Only for sessions whose supportsPooling() is true (InvalidArgument otherwise, or for a layer
    // out of range, unsorted layers, chunkSize 0, a routeKeyProj of the wrong shape).
    const PoolingOptions* pooling = nullptr;
    PooledHook pooledHook = {};
    const CancelToken* cancel = nullptr;
};

struct SessionOptions {
    size_t maxTokens = 4096;   // KV-cache capacity; the cache grows up to this on demand
    size_t nThreads = 0;       // 0: hardware_concurrency
};

class Session {
public:
    virtual ~Session() = default;
    // Replaces the per-layer prefixes (one entry per layer; an empty entry means none) and forgets the
    // local tokens. InvalidArgument when the count or a row size does not match the model;
    // OutOfMemory when the cache cannot hold them.
    virtual Status setPrefix(std::vector<LayerPrefix> perLayer) = 0;
    // Copies rows [begin, end) of layer `layer`'s context (prefix rows first, then local tokens) as
    // [rows][nKvHeads][headDim]; used to capture the template head's K/V for a memory bank.
    virtual Result<LayerPrefix> exportRows(size_t layer, size_t begin, size_t end) const = 0;
    virtual size_t prefixRows(size_t layer) const = 0;
    // Runs `tokens` at `positions` after the tokens already in the cache and appends their K/V.
    // Returns vocab floats (last token) or nTokens × vocab (allLogits); valid until the next call.
    virtual Result<std::span<const float>> forward(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                                                   const ForwardOptions& options) = 0;
    virtual size_t nPast() const = 0;
    // Forgets cached tokens from index n on (n <= nPast()).
    virtual void truncate(size_t n) = 0;
    virtual size_t vocabSize() const = 0;
    // True when forward() honours ForwardOptions::pooling / pooledHook.
    virtual bool supportsPooling() const { return false; }
};

class LoadedModel {
public:
    virtual ~LoadedModel() = default;
    virtual const model::ModelFiles& files() const = 0;
    virtual Result<std::unique_ptr<Session>> createSession(const SessionOptions& options) const = 0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string_view name() const = 0;
    virtual Result<std::shared_ptr<const LoadedModel>> load(std::shared_ptr<const model::ModelFiles> files) = 0;
};

std::unique_ptr<Backend> createCpuBackend();

}  // namespace msa::engine

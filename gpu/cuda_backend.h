// cuda_backend.h: the CUDA implementation of engine::Backend (core/engine/backend.h) for one device.
//
// Weights are uploaded once as bf16 (GGUF quantized types are dequantized on the host row by row,
// rounded to bf16 into a pinned staging buffer and copied asynchronously); GEMMs run in cuBLAS with
// bf16 inputs and f32 accumulation and output; the residual stream, Q/K/V and the KV cache are f32.
// A Session gives the same results as the CPU backend's for the same calls within bf16 tolerance,
// including prefix rows, memory hooks, packed segments, bidirectional calls and layer hooks (which
// receive f32 host copies of the layer's tensors; the copies are made only when a hook is set).
//
// No CUDA type appears here, so the mains and the registry compile with a plain C++ compiler.
//
// Ownership/threads: the Backend and its LoadedModels may be used from any thread (each call makes
// the backend's device current); a Session is used by one thread at a time, like every Session. A
// LoadedModel must outlive nothing: sessions keep their model alive.
//
// Failure codes: createCudaBackend(): NotFound (no such device), DeviceError (the device cannot be
// used). load(): Unsupported (head dimension without a kernel), OutOfMemory, DeviceError, and the
// tensor errors of the CPU backend (NotFound naming a missing tensor). Session calls: as in
// backend.h, plus OutOfMemory / DeviceError naming the CUDA or cuBLAS call that failed.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(auto backend, msa::gpu::createCudaBackend(0));
//     MSA_ASSIGN_OR_RETURN(auto model, backend->load(files));
//     MSA_ASSIGN_OR_RETURN(auto session, model->createSession({.maxTokens = 4096}));
#pragma once

#include "core/engine/backend.h"
#include "core/util/status.h"

#include <memory>

namespace msa::gpu {

struct CudaBackendOptions {
    // Capture the single-token decode step (no hooks, logits wanted) as a CUDA Graph and replay it;
    // positions, the token and the context length are read from device memory so one graph serves
    // every step until the cache is re-laid out (growth, new prefix). Any capture failure falls back
    // to eager launches for the rest of the session. Off by default until the parity suite has run
    // with it on a GPU (tests/gpu/tst_gpu_backend turns it on and compares with eager).
    bool decodeGraphs = false;
};

Result<std::unique_ptr<engine::Backend>> createCudaBackend(int deviceIndex, const CudaBackendOptions& options);
// Default options, except that the environment variable MSA_CUDA_GRAPHS=1 turns decode graphs on
// (the registry's factory calls this one).
Result<std::unique_ptr<engine::Backend>> createCudaBackend(int deviceIndex);

// Greedy sampling on the device: the index of the largest logit of the last row that `session`'s
// latest forward() produced (lowest index on ties, as cpu::argmax), without reading the logits back.
// InvalidArgument when `session` is not a CUDA session or holds no logits.
Result<int32_t> deviceArgmaxLastLogits(engine::Session& session);

// How many forward() calls of `session` ran as a CUDA Graph replay of the decode step: 0 without
// CudaBackendOptions::decodeGraphs or once a capture failure made the session decode eagerly (tests
// use it to tell a working graph from the silent fallback). InvalidArgument: not a CUDA session.
Result<uint64_t> decodeGraphReplays(const engine::Session& session);

}  // namespace msa::gpu

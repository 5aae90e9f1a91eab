// memory_tier.h: tiered memory for content K̄/V̄ (issue 6 item 4; msa-spec §6.3): the content stays in
// the mapped bank in host memory; after a routing layer selects its documents, only their chunks are
// copied to a per-layer device buffer, asynchronously on a copy stream, so the copy overlaps the next
// layer's work (its routing scan included). The CUDA backend consumes the rows through device pointers.
//
// Host side: at create() the tier tries to page-lock the bank's content sections in place
// (cudaHostRegister with cudaHostRegisterReadOnly over each shard's page-aligned content range), so
// cudaMemcpyAsync reads the mapping by DMA and returns at once. When the device or the OS refuses
// (no read-only registration support, RLIMIT_MEMLOCK, a file system without it), it falls back to
// pinned staging buffers per layer: the host thread memcpy's the selected chunks into pinned memory,
// then the device copy is asynchronous. hostRegistered() says which path is active.
//
// Device side: each routing-layer position has its own buffer of [rows][nKv][D] keys and values in the
// bank's storage dtype (bf16 normally; f32 banks stay f32), grown on demand, rows in selection order
// (the order of MemoryIndex::gather). Per layer two events order the streams:
//   stage(li)   — waits (on the copy stream) for the consumer's release of the previous rows, then
//                 enqueues the copies and records `copied`;
//   acquire(li) — makes the consumer stream wait for `copied`, returns the device pointers;
//   release(li) — records `consumed` on the consumer stream after its last use of the rows.
// So the engine's loop per routing layer is: route → stage(li, selected) → (next layers run while
// the copy is in flight) → acquire(li, computeStream) where layer li's attention needs the rows →
// attention kernels → release(li, computeStream).
//
// Ownership/threads: the tier borrows the Bank (must outlive it) and owns its device buffers, pinned
// buffers, streams, events and host registrations; one host thread at a time. Pointers returned by
// acquire() stay valid until the next stage() of the same layer.
//
// Failure codes: create(): InvalidArgument (no such device), DeviceError, OutOfMemory.
// stage(): InvalidArgument (layer position, a document row outside the bank), Corrupt (a document's
// K̄/V̄ sections disagree with its chunk count; checked before any copy is enqueued), DeviceError,
// OutOfMemory. acquire()/release(): InvalidArgument (layer never staged), DeviceError.
#pragma once

#include "core/memory/bank.h"
#include "core/memory/router.h"
#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <span>
#include <vector>

namespace msa::gpu {

// A layer's staged content on the device: rows = Σ chunks of the selected documents.
struct DeviceRows {
    const void* keys = nullptr;     // [nRows][nKvHeads][headDim] of dtype
    const void* values = nullptr;
    model::DType dtype = model::DType::BF16;
    size_t nRows = 0;
    size_t nKvHeads = 0, headDim = 0;
};

struct ContentTierOptions {
    bool registerMapping = true;   // false: always use pinned staging (tests compare the two paths)
};

class ContentTier {
public:
    static Result<std::unique_ptr<ContentTier>> create(const memory::Bank& bank, int device, const ContentTierOptions& options = {});
    ~ContentTier();
    ContentTier(const ContentTier&) = delete;
    ContentTier& operator=(const ContentTier&) = delete;

    int device() const { return m_device; }
    bool hostRegistered() const { return !m_registered.empty(); }
    cudaStream_t copyStream() const { return m_copyStream; }

    // Enqueues the copy of the selected documents' K̄/V̄ chunks (ScoredDocument::index = bank row) of
    // routing-layer position `li`. Returns when the copies are enqueued.
    Status stage(size_t li, std::span<const memory::ScoredDocument> selected);
    // Orders `consumer` after the layer's copy; the rows' device pointers.
    Result<DeviceRows> acquire(size_t li, cudaStream_t consumer);
    // Orders the layer's next stage() after everything enqueued on `consumer` so far.
    Status release(size_t li, cudaStream_t consumer);

private:
    struct Layer {
        void* keys = nullptr;
        void* values = nullptr;
        size_t capacityRows = 0;
        void* stageKeys = nullptr;     // pinned staging (fallback path)
        void* stageValues = nullptr;
        size_t stageCapacityRows = 0;
        cudaEvent_t copied = nullptr;
        cudaEvent_t consumed = nullptr;
        bool staged = false;
        bool consumedPending = false;
        size_t nRows = 0;
    };
    ContentTier() = default;
    Status growDevice(Layer& l, size_t rows);
    Status growStaging(Layer& l, size_t rows);

    const memory::Bank* m_bank = nullptr;
    int m_device = 0;
    size_t m_rowBytes = 0;
    cudaStream_t m_copyStream = nullptr;
    std::vector<Layer> m_layers;
    std::vector<void*> m_registered;   // base addresses given to cudaHostRegister
};

}  // namespace msa::gpu

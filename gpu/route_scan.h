// route_scan.h: the routing scan on a CUDA device (issue 6 item 3; msa-spec §2.4-2.7).
//
// Keys stay resident: DeviceRouteShard holds one shard's routing keys of one routing layer in device
// memory in the bank's storage dtype (bf16, or f32), uploaded once from the bank's mapped span, plus
// its document table (chunk → document, chunk counts, id ranks, ids) and the candidate filter.
// With KeyStorage::Fp8E4M3 / Int8 it holds an 8-bit copy instead (see "8-bit keys" below).
//
// One scan (enqueueScan) is three short kernels on one stream, none of which materialises the
// chunk × token score matrix:
//   1. score: a block takes 16 chunks, stages their keys and 16 folded query tokens at a time in
//      shared memory (K tiles of 128 elements), computes the 16×16 dots of length nKv·D (f32
//      accumulation), reduces over query tokens (max / mean / last) into one value per chunk, and
//      reduces chunk → document with an atomic max on order-preserving score bits (or a double sum
//      for chunk mean). Blocks whose 16 chunks hold no candidate return before loading anything.
//      Scratch: one u32 (and one double for chunk mean) per document; shared memory ≈ 17 KiB.
//   2. top-k: blocks of 2048 (score, id-rank) 64-bit keys sorted in shared memory (bitonic), each
//      keeping its first n; repeated over the survivors until one block remains (n ≤ 1024). The key
//      bits, the compare-exchange and the pass plan are memory:: host/device functions
//      (shard_merge.h: candidateScoreBits, bitonicCompareExchange, topKPassBlocks), and
//      emulateDeviceTopK runs the same network on the CPU (tst_shard_merge). NaN and −inf document
//      scores have key 0 (never candidates, as in selectTop); −0 ties with +0.
//   3. decode: the final n keys → DeviceCandidate slots (score, row in the shard, document id),
//      plus the candidate count in slot n — a fixed-size array, so Memory Parallel can exchange it
//      with one ncclAllGather.
// Head mean is folded into the query on the host (memory::foldHeadMean): the score of token t and
// chunk c is one dot q'_t · K̄ᴿ_c of length nKv·D. Head max is not linear; CudaRouteScanner hands
// such configs to the CPU scanner (and says so in its log) — no released checkpoint uses it.
// Ties: the 64-bit key is (order-preserving score bits, ~rank of the id), so equal scores rank by
// ascending id as on the CPU; equal keys give bit-identical device scores, so exact ties survive.
//
// CudaRouteScanner is the "cuda" memory::RouteScanner (registerRouteScanner() adds its factory):
// per routing-layer position one device table holding all the shards it is given, concatenated
// (one scan per layer however many bank shards), re-uploaded only when a shard's key span, table or
// ids move; its top-n is split back by shard. Results equal the CPU Router's ids, with scores within
// f32 summation-order differences (tests/gpu/tst_gpu_routing.cpp).
//
// 8-bit keys (issue 6 item 4; core/memory/key_quant.h is the format, core/memory/quant_route.h the
// algebra and the CPU reference). DeviceRouteShard::upload(..., KeyStorage::Fp8E4M3 or Int8)
// quantizes on the host, block by block (≤ 4 MiB of codes), with key_quant's own writer straight into
// two page-locked staging buffers that alternate with the copies (an event per buffer), and keeps
// codes [chunks][nKv][D] bytes + one f32 scale per (chunk, key head) row resident: D + 4 bytes per row
// instead of 2·D (MSA-4B: 132 vs 256 B per row, 297 vs 576 B per memory token over 18 layers; a
// 100M-token bank's routing keys ≈ 29.7 GB instead of 57.6 GB). The FMA score kernel reads them with
// a loader that forms x̂ = decode(code) · scale in f32 (decodeE4M3Bits/decodeInt8Bits, then one
// __fmul_rn, never fused) while staging a key tile, which is exactly key_quant's dequantizeRow; the
// dot with the folded query follows as for f32 keys. So the quantized scan equals the CPU Router over
// the dequantized keys (CpuRouteScanner with the same storage) up to f32 summation order. The scale
// is per key head and the head-mean fold sums only query heads of one group, so each folded q'_G
// meets rows scaled by its own s_{c,G}: the fold is unchanged (quant_route.h derives it).
// Tensor cores are not used for 8-bit keys: x̂ carries up to 24 significant bits, so a bf16 MMA
// could only take decode(code) (exact in bf16) and apply the scale after the dot per head
// (score = Σ_G s_{c,G}·(q'_G · decode(codes_{c,G}))), which is not the contract's value bit for bit;
// tst_quant_route measures that order on the CPU for whoever builds it. The FMA kernel is compute-
// rather than bandwidth-bound at tens of query tokens, so 8-bit keys save memory, not time, until
// then. NOT RUN ON A GPU: compiled only (tests/gpu/tst_gpu_routing has the rows a GPU session runs).
//
// Ownership/threads: every object here belongs to one device and is used by one host thread at a
// time; the functions switch to the object's device themselves. Destructors free device memory
// (errors ignored: nothing to report them to).
//
// Usage:
//     msa::gpu::registerRouteScanner();                         // once, e.g. from registerBackends()
//     auto scanner = msa::memory::createRouteScanner("cuda", {.device = 0});   // .keyStorage = KeyStorage::Int8: 8-bit keys
//     index.setScanner(std::move(scanner).value());
//
// Failure codes: DeviceError (a CUDA call failed; the message names it and the device), OutOfMemory
// (device or pinned allocation), InvalidArgument (shapes, dtype, filter size, n > kMaxScanTopN, a
// non-finite key with 8-bit storage),
// Cancelled (between shards).
#pragma once

#include "core/memory/route_scanner.h"
#include "core/memory/router.h"
#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace msa::gpu {

inline constexpr size_t kMaxScanTopN = 1024;

// Which score kernel a scan uses. Auto: tensor cores when the keys are bf16 and nKv·D is a multiple
// of 16 (every real model), else the FMA kernel. The tests run both on the same data.
enum class ScanKernel { Auto, Fma, TensorCore };   // the device top-k keeps ≤ half of a 2048-key block

// One slot of a scan's fixed-size answer. index == kNoCandidate marks an empty slot.
struct DeviceCandidate {
    float score;
    uint32_t index;   // row in the shard's document table
    uint64_t id;      // document id; in slot n: the shard's candidate count
};
static_assert(sizeof(DeviceCandidate) == 16);
inline constexpr uint32_t kNoCandidate = 0xFFFFFFFFu;

using memory::KeyStorage;

class DeviceRouteShard {
public:
    // Uploads `keys` (f32 or bf16; docIds required) to the current device, as they are (Native) or
    // quantized to 8 bits on the way. The filter starts as "all".
    static Result<std::unique_ptr<DeviceRouteShard>> upload(const memory::RouteKeys& keys, cudaStream_t stream,
                                                            KeyStorage storage = KeyStorage::Native);
    // One table from several parts (a layer's bank shards) in order: rows and chunks concatenated.
    static Result<std::unique_ptr<DeviceRouteShard>> upload(std::span<const memory::RouteKeys> parts, cudaStream_t stream,
                                                            KeyStorage storage = KeyStorage::Native);
    ~DeviceRouteShard();
    DeviceRouteShard(const DeviceRouteShard&) = delete;
    DeviceRouteShard& operator=(const DeviceRouteShard&) = delete;

    // The candidate filter per document (empty: all); uploads only when it changed.
    Status setAllowed(std::span<const uint8_t> allowed, cudaStream_t stream);

    int device() const { return m_device; }
    size_t nDocs() const { return m_nDocs; }
    size_t nChunks() const { return m_nChunks; }
    size_t width() const { return m_width; }              // nKv × D
    size_t nHeads() const { return m_nHeads; }            // key heads (nKv)
    size_t headDim() const { return m_headDim; }
    model::DType dtype() const { return m_dtype; }        // of the source keys
    KeyStorage storage() const { return m_storage; }      // what is resident
    size_t deviceBytes() const { return m_bytes; }        // everything this shard allocated
    size_t keyBytes() const { return m_keyBytes; }        // the keys alone (codes + scales, or native), padding excluded
    // Identity of the host spans it was made from (CudaRouteScanner's cache key).
    bool sameSource(std::span<const memory::RouteKeys> parts) const;

    struct DevicePtrs {
        const void* keys;         // native elements, or 8-bit codes
        const float* scales;      // 8-bit storage: one per (chunk, key head) row; else nullptr
        const uint32_t* chunkDoc;
        const uint32_t* docChunks;
        const uint32_t* rank;
        const uint32_t* rankToRow;
        const uint64_t* ids;
        const uint8_t* allowed;   // nullptr: all
    };
    DevicePtrs ptrs() const;

private:
    DeviceRouteShard() = default;
    int m_device = 0;
    size_t m_nDocs = 0, m_nChunks = 0, m_width = 0, m_nHeads = 0, m_headDim = 0, m_bytes = 0, m_keyBytes = 0;
    model::DType m_dtype = model::DType::BF16;
    KeyStorage m_storage = KeyStorage::Native;
    struct Source {
        const void* data;
        size_t bytes;
        const void* offsets;
        const void* ids;
        size_t nDocs;
    };
    std::vector<Source> m_sources;
    void* m_keys = nullptr;
    float* m_scales = nullptr;
    uint32_t* m_chunkDoc = nullptr;
    uint32_t* m_docChunks = nullptr;
    uint32_t* m_rank = nullptr;
    uint32_t* m_rankToRow = nullptr;
    uint64_t* m_ids = nullptr;
    uint8_t* m_allowed = nullptr;
    bool m_filtered = false;
    std::vector<uint8_t> m_hostAllowed;
};

// Per-device scratch of enqueueScan; grows on demand (after synchronising its stream).
class ScanWorkspace {
public:
    ScanWorkspace() = default;
    ~ScanWorkspace();
    ScanWorkspace(const ScanWorkspace&) = delete;
    ScanWorkspace& operator=(const ScanWorkspace&) = delete;
    Status reserve(size_t nDocs, size_t n, cudaStream_t stream);
    Status reserveQueries(size_t elements, cudaStream_t stream);   // bf16 hi/lo halves of the folded query
    void release();   // frees everything (call with the workspace's device current)

    uint32_t* docKey = nullptr;   // [nDocs]
    double* docSum = nullptr;     // [nDocs]
    uint64_t* candA = nullptr;    // [ceil(nDocs / 2048) · n]
    uint64_t* candB = nullptr;
    unsigned* count = nullptr;    // [1]
    void* qHi = nullptr;          // [tPad · width] bf16 (tensor-core kernel)
    void* qLo = nullptr;

private:
    size_t m_docs = 0, m_cand = 0, m_query = 0;
};

// Enqueues one shard's scan on `stream` (the shard's device must be current): dFolded holds
// nTokens × width f32 folded queries on that device; out receives n + 1 DeviceCandidate slots
// (slot n: candidate count in .id). No host synchronisation.
Status enqueueScan(const DeviceRouteShard& shard, const float* dFolded, size_t nTokens, memory::QueryReduce queryReduce,
                   memory::ChunkReduce chunkReduce, size_t n, ScanWorkspace& ws, DeviceCandidate* out, cudaStream_t stream,
                   ScanKernel kernel = ScanKernel::Auto);
// True when the tensor-core kernel handles this shard (native bf16 keys, width % 16 == 0); 8-bit
// shards always take the FMA kernel.
bool tensorCoreShape(const DeviceRouteShard& shard);

// Host side of a scan's answer: the filled slots in order, and the count.
memory::ShardScan decodeCandidates(std::span<const DeviceCandidate> slots, size_t n);

class CudaRouteScanner final : public memory::RouteScanner {
public:
    // storage: how routing keys are kept resident (Native, or 8-bit: see the header comment); the CPU
    // fallback (head max, n above the limit) then routes over the same dequantized keys.
    static Result<std::unique_ptr<CudaRouteScanner>> create(int device, size_t nCpuThreads = 0,
                                                            KeyStorage storage = KeyStorage::Native);
    ~CudaRouteScanner() override;
    std::string name() const override;
    Result<std::vector<memory::ShardScan>> scan(const memory::RoutingConfig& cfg, size_t layerPos,
                                                const memory::RoutingQueries& queries,
                                                std::span<const memory::ScanShard> shards, size_t n,
                                                const CancelToken* cancel) override;
    size_t residentBytes() const;   // routing keys and tables held on the device
    void setKernel(ScanKernel k) { m_kernel = k; }
    KeyStorage keyStorage() const { return m_storage; }

private:
    CudaRouteScanner() = default;
    int m_device = 0;
    size_t m_cpuThreads = 0;
    ScanKernel m_kernel = ScanKernel::Auto;
    KeyStorage m_storage = KeyStorage::Native;
    cudaStream_t m_stream = nullptr;
    std::unique_ptr<memory::CpuRouteScanner> m_cpu;   // head-max configs
    std::map<size_t, std::unique_ptr<DeviceRouteShard>> m_layers;   // per routing-layer position: all its shards
    ScanWorkspace m_ws;
    float* m_folded = nullptr;
    size_t m_foldedCapacity = 0;
    DeviceCandidate* m_out = nullptr;
    DeviceCandidate* m_hostOut = nullptr;   // pinned
    size_t m_outCapacity = 0;
};

// Adds the "cuda" factory to memory's scanner registry (idempotent).
void registerRouteScanner();

}  // namespace msa::gpu

// bench_gpu.cu: device-specific timing for `msa bench gpu` (see bench_gpu.h). Covers the copy
// bandwidth (the HBM limit every bandwidth-bound figure is reported against) and the device facts.
// Extend by adding a hook to jobs::DeviceBenchHooks and filling it here; keep every CUDA call under
// MSA_CUDA_CHECK and release memory on every path (DeviceBuffer).
#include "gpu/bench_gpu.h"
#include "gpu/cuda_check.h"
#include "gpu/route_scan.h"

#include "core/engine/compute_threads.h"
#include "core/util/log.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <new>
#include <vector>

namespace msa::gpu {
namespace {

// Owns one cudaMalloc allocation; frees it on every path.
class DeviceBuffer {
public:
    DeviceBuffer() = default;
    ~DeviceBuffer() {
        if (m_ptr) cudaFree(m_ptr);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    Status allocate(size_t bytes) {
        MSA_CUDA_CHECK(cudaMalloc(&m_ptr, bytes));
        return Status::ok();
    }
    void* get() const { return m_ptr; }

private:
    void* m_ptr = nullptr;
};

class Event {
public:
    ~Event() {
        if (m_event) cudaEventDestroy(m_event);
    }
    Status create() {
        MSA_CUDA_CHECK(cudaEventCreate(&m_event));
        return Status::ok();
    }
    cudaEvent_t get() const { return m_event; }

private:
    cudaEvent_t m_event = nullptr;
};

// One layer of synthetic routing keys resident on the device (gpu/route_scan's DeviceRouteShard, in
// the spec's storage) scanned by the real GPU scan (enqueueScan: score kernel, device top-k, decode).
//
// Where the keys come from: fillSyntheticKeys (the harness's and the peer's recipe) on the host, in
// page-locked memory so the upload is one DMA, then DeviceRouteShard::upload — the bank path of
// CudaRouteScanner, including the 8-bit quantization on the way. Generating them on the device would
// save that copy (splitmix64 is cheap there), but DeviceRouteShard can only be made from host
// RouteKeys (its constructor is private, upload() copies host spans), and a second private key table
// would not be the scan the product runs. At 100M tokens one layer is 1.5625M chunks × 8 × 128 bf16
// = 3.2 GB (host and device; 8-bit: 1.65 GB on the device), scanned once per routing layer.
class CudaBenchScanner final : public jobs::BenchScanner {
public:
    static Result<std::unique_ptr<jobs::BenchScanner>> open(int device, const jobs::ScanSpec& spec) {
        MSA_CUDA_CHECK(cudaSetDevice(device));
        std::unique_ptr<CudaBenchScanner> sc(new CudaBenchScanner());
        sc->m_device = device;
        sc->m_spec = spec;
        if (spec.nHeads == 0 || spec.headDim == 0 || spec.chunksPerDoc == 0 || spec.nQueryHeads % spec.nHeads != 0)
            return Status(ErrorCode::InvalidArgument, "scan spec: " + std::to_string(spec.nQueryHeads) + " query heads over " +
                                                          std::to_string(spec.nHeads) + " key heads of " + std::to_string(spec.headDim));
        const size_t rowElems = spec.nHeads * spec.headDim;
        const size_t nChunks = static_cast<size_t>(spec.nChunks);
        const size_t nElems = nChunks * rowElems;
        // Say plainly when one layer does not fit beside what is already resident (the model), before
        // pinning gigabytes of host memory: keys (+ scales) and the chunk → document table.
        const size_t keyBytes = spec.keyStorage == memory::KeyStorage::Native
                                    ? nElems * 2
                                    : nElems + nChunks * spec.nHeads * sizeof(float);
        const size_t need = keyBytes + nChunks * sizeof(uint32_t) + (size_t(64) << 20);
        size_t freeBytes = 0, totalBytes = 0;
        MSA_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
        if (need > freeBytes)
            return Status(ErrorCode::OutOfMemory, "one routing layer of " + std::to_string(spec.nChunks) + " chunks (" +
                                                      std::string(memory::keyStorageName(spec.keyStorage)) + ") needs " +
                                                      std::to_string(need >> 20) + " MiB on cuda:" + std::to_string(device) +
                                                      ", " + std::to_string(freeBytes >> 20) + " MiB free");
        MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&sc->m_stream, cudaStreamNonBlocking));
        {
            HostKeys host;
            MSA_RETURN_IF_ERROR(host.allocate(nElems));
            engine::ComputeThreads team(0);
            team.parallelFor(nChunks, [&](size_t b, size_t e, size_t) {
                jobs::fillSyntheticKeys(std::span<uint16_t>(host.data() + b * rowElems, (e - b) * rowElems), b, rowElems, spec.seed);
            }, 1024);
            std::vector<uint64_t> offsets, ids;
            for (uint64_t c = 0; c < spec.nChunks; c += spec.chunksPerDoc) offsets.push_back(c);
            offsets.push_back(spec.nChunks);
            ids.resize(offsets.size() - 1);
            for (size_t d = 0; d < ids.size(); ++d) ids[d] = d;
            memory::RouteKeys keys;
            keys.data = std::as_bytes(std::span<const uint16_t>(host.data(), nElems));
            keys.dtype = model::DType::BF16;
            keys.nChunks = nChunks;
            keys.nHeads = spec.nHeads;
            keys.headDim = spec.headDim;
            keys.chunkOffsets = offsets;
            keys.docIds = ids;
            // upload() synchronises its stream before returning: the host keys may go afterwards.
            MSA_ASSIGN_OR_RETURN(sc->m_shard, DeviceRouteShard::upload(keys, sc->m_stream, spec.keyStorage));
        }
        MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&sc->m_out), (kMaxScanTopN + 1) * sizeof(DeviceCandidate)));
        MSA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&sc->m_hostOut), (kMaxScanTopN + 1) * sizeof(DeviceCandidate)));
        MSA_CUDA_CHECK(cudaEventCreate(&sc->m_start));
        MSA_CUDA_CHECK(cudaEventCreate(&sc->m_stop));
        MSA_LOG(Info) << "bench scan: " << spec.nChunks << " chunks resident on cuda:" << device << " as "
                      << memory::keyStorageName(spec.keyStorage) << " (" << sc->m_shard->keyBytes() << " key bytes)";
        return std::unique_ptr<jobs::BenchScanner>(std::move(sc));
    }

    ~CudaBenchScanner() override {
        int prev = 0;
        const bool havePrev = cudaGetDevice(&prev) == cudaSuccess;
        cudaSetDevice(m_device);
        if (m_stream) cudaStreamSynchronize(m_stream);
        m_shard.reset();
        m_ws.release();
        if (m_folded) cudaFree(m_folded);
        if (m_out) cudaFree(m_out);
        if (m_hostOut) cudaFreeHost(m_hostOut);
        if (m_start) cudaEventDestroy(m_start);
        if (m_stop) cudaEventDestroy(m_stop);
        if (m_stream) cudaStreamDestroy(m_stream);
        if (havePrev && prev != m_device) cudaSetDevice(prev);
        cudaGetLastError();
    }

    Result<std::vector<uint32_t>> scan(std::span<const float> queries, size_t nTokens, size_t k) override {
        MSA_CUDA_CHECK(cudaSetDevice(m_device));
        MSA_RETURN_IF_ERROR(stageQueries(queries, nTokens, k));
        MSA_RETURN_IF_ERROR(enqueue(nTokens, k));
        MSA_CUDA_CHECK(cudaMemcpyAsync(m_hostOut, m_out, (k + 1) * sizeof(DeviceCandidate), cudaMemcpyDeviceToHost, m_stream));
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        const memory::ShardScan all = decodeCandidates({m_hostOut, k + 1}, k);
        std::vector<uint32_t> out;
        out.reserve(all.top.size());
        for (const memory::ScoredDocument& d : all.top) out.push_back(d.index);
        return out;
    }

    Result<std::vector<double>> timeLayers(std::span<const float> queries, size_t nTokens, size_t k, size_t nLayers,
                                           size_t repeats) override {
        MSA_CUDA_CHECK(cudaSetDevice(m_device));
        MSA_RETURN_IF_ERROR(stageQueries(queries, nTokens, k));
        // Warm-up: grows the workspace (which synchronises) outside the timed runs.
        MSA_RETURN_IF_ERROR(enqueue(nTokens, k));
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        std::vector<double> runs;
        for (size_t rep = 0; rep < repeats; ++rep) {
            MSA_CUDA_CHECK(cudaEventRecord(m_start, m_stream));
            for (size_t l = 0; l < nLayers; ++l) MSA_RETURN_IF_ERROR(enqueue(nTokens, k));
            MSA_CUDA_CHECK(cudaEventRecord(m_stop, m_stream));
            MSA_CUDA_CHECK(cudaEventSynchronize(m_stop));
            float ms = 0;
            MSA_CUDA_CHECK(cudaEventElapsedTime(&ms, m_start, m_stop));
            runs.push_back(static_cast<double>(ms));
        }
        return runs;
    }

    uint64_t keyBytesPerLayer() const override { return m_shard ? m_shard->keyBytes() : 0; }

private:
    // Page-locked host keys (pageable when the pinned allocation fails: the upload still works, slower).
    class HostKeys {
    public:
        ~HostKeys() {
            if (m_pinned) cudaFreeHost(m_pinned);
        }
        Status allocate(size_t elems) {
            if (cudaMallocHost(reinterpret_cast<void**>(&m_pinned), elems * sizeof(uint16_t)) != cudaSuccess) {
                cudaGetLastError();
                m_pinned = nullptr;
                MSA_LOG(Warning) << "bench scan: " << elems * 2 << " bytes of page-locked memory unavailable; staging pageable";
                try {
                    m_pageable.resize(elems);
                } catch (const std::bad_alloc&) {
                    return Status(ErrorCode::OutOfMemory, "host memory for " + std::to_string(elems * 2) + " bytes of synthetic routing keys");
                }
            }
            return Status::ok();
        }
        uint16_t* data() { return m_pinned ? m_pinned : m_pageable.data(); }

    private:
        uint16_t* m_pinned = nullptr;
        std::vector<uint16_t> m_pageable;
    };

    CudaBenchScanner() = default;

    // Head-mean-folded queries onto the device (the fold CudaRouteScanner does: memory::foldHeadMean).
    Status stageQueries(std::span<const float> queries, size_t nTokens, size_t k) {
        if (k == 0 || k > kMaxScanTopN)
            return Status(ErrorCode::InvalidArgument, "top-" + std::to_string(k) + " outside 1.." + std::to_string(kMaxScanTopN));
        if (nTokens == 0 || queries.size() != nTokens * m_spec.nQueryHeads * m_spec.headDim)
            return Status(ErrorCode::InvalidArgument, std::to_string(queries.size()) + " query values for " + std::to_string(nTokens) +
                                                          " tokens x " + std::to_string(m_spec.nQueryHeads) + " heads x " +
                                                          std::to_string(m_spec.headDim));
        memory::RoutingQueries q;
        q.layer = 0;
        q.nTokens = nTokens;
        q.nHeads = m_spec.nQueryHeads;
        q.headDim = m_spec.headDim;
        q.q.assign(queries.begin(), queries.end());
        MSA_ASSIGN_OR_RETURN(std::vector<float> folded, memory::foldHeadMean(q, m_spec.nHeads));
        if (folded.size() > m_foldedCapacity) {
            MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
            if (m_folded) cudaFree(m_folded);
            m_folded = nullptr;
            m_foldedCapacity = 0;
            MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&m_folded), folded.size() * sizeof(float)));
            m_foldedCapacity = folded.size();
        }
        MSA_CUDA_CHECK(cudaMemcpyAsync(m_folded, folded.data(), folded.size() * sizeof(float), cudaMemcpyHostToDevice, m_stream));
        // `folded` is pageable and dies here.
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        return Status::ok();
    }

    // The reductions of the training-free routing the harness's CPU scanner uses (RoutingConfig's
    // defaults: head mean folded above, token max, chunk max).
    Status enqueue(size_t nTokens, size_t k) {
        return enqueueScan(*m_shard, m_folded, nTokens, memory::QueryReduce::Max, memory::ChunkReduce::Max, k, m_ws, m_out, m_stream);
    }

    int m_device = 0;
    jobs::ScanSpec m_spec;
    cudaStream_t m_stream = nullptr;
    std::unique_ptr<DeviceRouteShard> m_shard;
    ScanWorkspace m_ws;
    float* m_folded = nullptr;
    size_t m_foldedCapacity = 0;
    DeviceCandidate* m_out = nullptr;
    DeviceCandidate* m_hostOut = nullptr;
    cudaEvent_t m_start = nullptr, m_stop = nullptr;
};

}  // namespace

double bf16PeakFlops(const std::string& name, std::string* source) {
    struct Entry {
        const char* match;
        const char* alsoMatch;   // nullptr: none
        double flops;
        const char* sheet;
    };
    // Order matters: the more specific names first.
    static const Entry table[] = {
        {"H100", "PCIe", 756e12, "H100 PCIe data sheet, dense bf16"},
        {"H100", "NVL", 835e12, "H100 NVL data sheet, dense bf16"},
        {"H200", nullptr, 989e12, "H200 data sheet, dense bf16"},
        {"H100", nullptr, 989e12, "H100 SXM data sheet, dense bf16"},
        {"A100", nullptr, 312e12, "A100 data sheet, dense bf16"},
    };
    for (const Entry& e : table) {
        if (name.find(e.match) == std::string::npos) continue;
        if (e.alsoMatch && name.find(e.alsoMatch) == std::string::npos) continue;
        if (source) *source = e.sheet;
        return e.flops;
    }
    if (source) *source = "unknown for " + name;
    return 0;
}

Result<double> measureCopyBandwidth(int device, uint64_t bytes) {
    MSA_CUDA_CHECK(cudaSetDevice(device));
    DeviceBuffer a, b;
    MSA_RETURN_IF_ERROR(a.allocate(bytes));
    MSA_RETURN_IF_ERROR(b.allocate(bytes));
    MSA_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
    Event start, stop;
    MSA_RETURN_IF_ERROR(start.create());
    MSA_RETURN_IF_ERROR(stop.create());
    std::vector<double> rates;
    for (int rep = 0; rep <= 10; ++rep) {
        MSA_CUDA_CHECK(cudaEventRecord(start.get()));
        MSA_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
        MSA_CUDA_CHECK(cudaEventRecord(stop.get()));
        MSA_CUDA_CHECK(cudaEventSynchronize(stop.get()));
        float ms = 0;
        MSA_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
        if (rep > 0 && ms > 0) rates.push_back(2.0 * static_cast<double>(bytes) / (static_cast<double>(ms) * 1e-3));
    }
    if (rates.empty()) return Status(ErrorCode::DeviceError, "the copy bandwidth could not be timed");
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

Result<jobs::DeviceBenchHooks> cudaBenchHooks(int device) {
    MSA_CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop{};
    MSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    jobs::DeviceBenchHooks h;
    h.deviceId = "cuda:" + std::to_string(device);
    h.deviceName = prop.name;
    h.peakBf16Flops = bf16PeakFlops(h.deviceName, &h.peakSource);
    h.copyBandwidth = [device](uint64_t bytes) { return measureCopyBandwidth(device, bytes); };
    h.openScanner = [device](const jobs::ScanSpec& spec) { return CudaBenchScanner::open(device, spec); };
    h.extraKeyStorages = {memory::KeyStorage::Fp8E4M3, memory::KeyStorage::Int8};
    h.checkAgainstCpuUpTo = 1000000;
    return h;
}

}  // namespace msa::gpu

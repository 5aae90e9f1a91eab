// memory_tier.cu: see memory_tier.h.
#include "gpu/memory_tier.h"

#include "core/util/log.h"
#include "gpu/cuda_check.h"
#include "gpu/device_util.h"

#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

namespace msa::gpu {

Result<std::unique_ptr<ContentTier>> ContentTier::create(const memory::Bank& bank, int device, const ContentTierOptions& options) {
    MSA_RETURN_IF_ERROR(checkDeviceIndex(device));
    DeviceGuard g;
    MSA_RETURN_IF_ERROR(g.enter(device));
    std::unique_ptr<ContentTier> t(new ContentTier());
    t->m_bank = &bank;
    t->m_device = device;
    const memory::BankParams& p = bank.params();
    t->m_rowBytes = size_t(p.nKvHeads) * p.headDim * bank.elementBytes();
    MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&t->m_copyStream, cudaStreamNonBlocking));
    t->m_layers.resize(p.routingLayers.size());
    for (Layer& l : t->m_layers) {
        MSA_CUDA_CHECK(cudaEventCreateWithFlags(&l.copied, cudaEventDisableTiming));
        MSA_CUDA_CHECK(cudaEventCreateWithFlags(&l.consumed, cudaEventDisableTiming));
    }

    int roSupported = 0, regSupported = 0;
    cudaDeviceGetAttribute(&roSupported, cudaDevAttrHostRegisterReadOnlySupported, device);
    cudaDeviceGetAttribute(&regSupported, cudaDevAttrHostRegisterSupported, device);
    cudaGetLastError();
    if (options.registerMapping && roSupported && regSupported && !bank.documents().empty()) {
        // One page-aligned range per shard file covering its K̄/V̄ sections of every layer.
        std::map<uint32_t, std::pair<uintptr_t, uintptr_t>> ranges;
        const auto& docs = bank.documents();
        for (size_t row = 0; row < docs.size(); ++row)
            for (size_t li = 0; li < t->m_layers.size(); ++li)
                for (std::span<const std::byte> s : {bank.keys(row, li), bank.values(row, li)}) {
                    if (s.empty()) continue;
                    const auto lo = reinterpret_cast<uintptr_t>(s.data()), hi = lo + s.size();
                    auto [it, inserted] = ranges.try_emplace(docs[row].shard, lo, hi);
                    if (!inserted) it->second = {std::min(it->second.first, lo), std::max(it->second.second, hi)};
                }
        const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
        bool ok = true;
        for (const auto& [shard, r] : ranges) {
            const uintptr_t lo = r.first / page * page, hi = (r.second + page - 1) / page * page;
            void* base = reinterpret_cast<void*>(lo);
            const cudaError_t e = cudaHostRegister(base, hi - lo, cudaHostRegisterPortable | cudaHostRegisterReadOnly);
            if (e != cudaSuccess) {
                cudaGetLastError();
                MSA_LOG(Info) << "content tier: page-locking shard " << shard << " of the bank failed (" << cudaGetErrorName(e)
                              << "); using pinned staging buffers";
                ok = false;
                break;
            }
            t->m_registered.push_back(base);
        }
        if (!ok) {
            for (void* b : t->m_registered) cudaHostUnregister(b);
            cudaGetLastError();
            t->m_registered.clear();
        }
    }
    return Result<std::unique_ptr<ContentTier>>(std::move(t));
}

ContentTier::~ContentTier() {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaSetDevice(m_device);
    if (m_copyStream) cudaStreamSynchronize(m_copyStream);
    for (Layer& l : m_layers) {
        if (l.consumedPending) cudaEventSynchronize(l.consumed);
        if (l.keys) cudaFree(l.keys);
        if (l.values) cudaFree(l.values);
        if (l.stageKeys) cudaFreeHost(l.stageKeys);
        if (l.stageValues) cudaFreeHost(l.stageValues);
        if (l.copied) cudaEventDestroy(l.copied);
        if (l.consumed) cudaEventDestroy(l.consumed);
    }
    for (void* b : m_registered) cudaHostUnregister(b);
    if (m_copyStream) cudaStreamDestroy(m_copyStream);
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
}

Status ContentTier::growDevice(Layer& l, size_t rows) {
    if (rows <= l.capacityRows) return Status::ok();
    const size_t cap = std::max(rows, l.capacityRows + l.capacityRows / 2);
    // The old buffers may still be read by the consumer or written by the copy stream.
    if (l.consumedPending) MSA_CUDA_CHECK(cudaEventSynchronize(l.consumed));
    MSA_CUDA_CHECK(cudaStreamSynchronize(m_copyStream));
    if (l.keys) cudaFree(l.keys);
    if (l.values) cudaFree(l.values);
    l.keys = l.values = nullptr;
    l.capacityRows = 0;
    MSA_CUDA_CHECK(cudaMalloc(&l.keys, cap * m_rowBytes));
    MSA_CUDA_CHECK(cudaMalloc(&l.values, cap * m_rowBytes));
    l.capacityRows = cap;
    return Status::ok();
}

Status ContentTier::growStaging(Layer& l, size_t rows) {
    if (rows <= l.stageCapacityRows) return Status::ok();
    if (l.stageKeys) cudaFreeHost(l.stageKeys);
    if (l.stageValues) cudaFreeHost(l.stageValues);
    l.stageKeys = l.stageValues = nullptr;
    l.stageCapacityRows = 0;
    MSA_CUDA_CHECK(cudaMallocHost(&l.stageKeys, rows * m_rowBytes));
    MSA_CUDA_CHECK(cudaMallocHost(&l.stageValues, rows * m_rowBytes));
    l.stageCapacityRows = rows;
    return Status::ok();
}

Status ContentTier::stage(size_t li, std::span<const memory::ScoredDocument> selected) {
    if (li >= m_layers.size()) return Status(ErrorCode::InvalidArgument, "no routing layer position " + std::to_string(li));
    const auto& docs = m_bank->documents();
    // Everything is checked before the first copy is enqueued: a failure half-way would leave the
    // layer's previous rows (still `staged`, still acquirable) partly overwritten.
    size_t rows = 0;
    for (const memory::ScoredDocument& d : selected) {
        if (d.index >= docs.size())
            return Status(ErrorCode::InvalidArgument, "document row " + std::to_string(d.index) + " outside the bank");
        const std::span<const std::byte> k = m_bank->keys(d.index, li), v = m_bank->values(d.index, li);
        if (k.size() != v.size() || k.size() != size_t(docs[d.index].nChunks) * m_rowBytes)
            return Status(ErrorCode::Corrupt, "the bank's K̄/V̄ of memory document " + std::to_string(docs[d.index].id) +
                                                  " do not match its chunk count");
        rows += docs[d.index].nChunks;
    }
    DeviceGuard g;
    MSA_RETURN_IF_ERROR(g.enter(m_device));
    Layer& l = m_layers[li];
    MSA_RETURN_IF_ERROR(growDevice(l, std::max<size_t>(rows, 1)));
    if (l.consumedPending) MSA_CUDA_CHECK(cudaStreamWaitEvent(m_copyStream, l.consumed, 0));
    auto* dk = static_cast<std::byte*>(l.keys);
    auto* dv = static_cast<std::byte*>(l.values);
    if (hostRegistered()) {
        size_t at = 0;
        for (const memory::ScoredDocument& d : selected) {
            const std::span<const std::byte> k = m_bank->keys(d.index, li), v = m_bank->values(d.index, li);
            MSA_CUDA_CHECK(cudaMemcpyAsync(dk + at, k.data(), k.size(), cudaMemcpyHostToDevice, m_copyStream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(dv + at, v.data(), v.size(), cudaMemcpyHostToDevice, m_copyStream));
            at += k.size();
        }
    } else {
        // The previous copy out of this layer's staging buffer must be finished before overwriting it.
        if (l.staged) MSA_CUDA_CHECK(cudaEventSynchronize(l.copied));
        MSA_RETURN_IF_ERROR(growStaging(l, std::max<size_t>(rows, 1)));
        auto* hk = static_cast<std::byte*>(l.stageKeys);
        auto* hv = static_cast<std::byte*>(l.stageValues);
        size_t at = 0;
        for (const memory::ScoredDocument& d : selected) {
            const std::span<const std::byte> k = m_bank->keys(d.index, li), v = m_bank->values(d.index, li);
            std::memcpy(hk + at, k.data(), k.size());
            std::memcpy(hv + at, v.data(), v.size());
            at += k.size();
        }
        if (at) {
            MSA_CUDA_CHECK(cudaMemcpyAsync(dk, hk, at, cudaMemcpyHostToDevice, m_copyStream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(dv, hv, at, cudaMemcpyHostToDevice, m_copyStream));
        }
    }
    MSA_CUDA_CHECK(cudaEventRecord(l.copied, m_copyStream));
    l.staged = true;
    l.consumedPending = false;
    l.nRows = rows;
    return Status::ok();
}

Result<DeviceRows> ContentTier::acquire(size_t li, cudaStream_t consumer) {
    if (li >= m_layers.size() || !m_layers[li].staged)
        return Status(ErrorCode::InvalidArgument, "routing layer position " + std::to_string(li) + " has no staged content");
    Layer& l = m_layers[li];
    MSA_CUDA_CHECK(cudaStreamWaitEvent(consumer, l.copied, 0));
    const memory::BankParams& p = m_bank->params();
    DeviceRows r;
    r.keys = l.keys;
    r.values = l.values;
    r.dtype = p.storage;
    r.nRows = l.nRows;
    r.nKvHeads = p.nKvHeads;
    r.headDim = p.headDim;
    return r;
}

Status ContentTier::release(size_t li, cudaStream_t consumer) {
    if (li >= m_layers.size() || !m_layers[li].staged)
        return Status(ErrorCode::InvalidArgument, "routing layer position " + std::to_string(li) + " has no staged content");
    Layer& l = m_layers[li];
    MSA_CUDA_CHECK(cudaEventRecord(l.consumed, consumer));
    l.consumedPending = true;
    return Status::ok();
}

}  // namespace msa::gpu

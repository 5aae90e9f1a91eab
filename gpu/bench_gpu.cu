// bench_gpu.cu: device-specific timing for `msa bench gpu` (see bench_gpu.h). Covers the copy
// bandwidth (the HBM limit every bandwidth-bound figure is reported against) and the device facts.
// Extend by adding a hook to jobs::DeviceBenchHooks and filling it here; keep every CUDA call under
// MSA_CUDA_CHECK and release memory on every path (DeviceBuffer).
#include "gpu/bench_gpu.h"
#include "gpu/cuda_check.h"

#include <cuda_runtime.h>

#include <algorithm>
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
    h.openScanner = [](const jobs::ScanSpec&) -> Result<std::unique_ptr<jobs::BenchScanner>> {
        return unimplemented("the fused CUDA routing scan (gpu/route_scan) is not wired into msa bench gpu in this build");
    };
    return h;
}

}  // namespace msa::gpu

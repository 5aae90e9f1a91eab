// device_query.cu: discovery of CUDA devices for the backend registry.
//
// Covers: runtime/driver versions, NCCL version, device enumeration, and a per-device self-test
// kernel that proves the device can run our code (the right architecture was compiled in, the
// context can be created, memory can be allocated). Any failure becomes the backend's reason;
// nothing here aborts (CONVENTIONS.md #7). A build machine without a driver reports
// "CUDA driver version is insufficient for CUDA runtime version" (BUILD-NOTES #6).
#include "gpu/cuda_backend.h"
#include "gpu/register.h"

#include "gpu/route_scan.h"

#include <cuda_runtime.h>
#if MSA_HAVE_NCCL
#include <nccl.h>
#endif

#include <string>
#include <vector>

namespace msa::gpu {
namespace {

// Fills out[i] = i * 3 + 1 so the host can verify that the kernel ran with the expected indexing.
__global__ void device_selftest_kernel(int* out, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i * 3 + 1;
}

std::string cudaErrorText(cudaError_t e) {
    return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

std::string versionText(int v) {   // 13000 -> "13.0"
    return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// Runs the self-test on `device`; returns an empty string on success, else the reason.
std::string selfTest(int device) {
    cudaError_t e = cudaSetDevice(device);
    if (e != cudaSuccess) return "cudaSetDevice: " + cudaErrorText(e);
    constexpr int n = 1000;
    int* d = nullptr;
    e = cudaMalloc(&d, n * sizeof(int));
    if (e != cudaSuccess) return "cudaMalloc: " + cudaErrorText(e);
    device_selftest_kernel<<<(n + 255) / 256, 256>>>(d, n);
    e = cudaGetLastError();
    std::vector<int> h(n, 0);
    if (e == cudaSuccess) e = cudaMemcpy(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) return "self-test kernel: " + cudaErrorText(e);
    for (int i = 0; i < n; ++i)
        if (h[i] != i * 3 + 1) return "self-test kernel produced wrong values at index " + std::to_string(i);
    return {};
}

}  // namespace

void registerBackends(engine::BackendRegistry& registry) {
    registerRouteScanner();   // memory::createRouteScanner("cuda") from here on (gpu/route_scan.h)
    engine::BackendInfo info;
    info.name = "cuda";
    info.built = true;
    info.create = [](int deviceIndex) -> Result<std::unique_ptr<engine::Backend>> { return createCudaBackend(deviceIndex); };

    int runtime = 0;
    if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) info.facts.emplace_back("cuda runtime", versionText(runtime));
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess)
        info.facts.emplace_back("cuda driver", driver ? versionText(driver) : std::string("none installed"));
#if MSA_HAVE_NCCL
    int nccl = 0;
    if (ncclGetVersion(&nccl) == ncclSuccess) info.facts.emplace_back("nccl", std::to_string(nccl));
#else
    info.facts.emplace_back("nccl", "not built");
#endif

    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear the sticky error so later calls report their own state
        info.reason = "no usable CUDA device: " + cudaErrorText(e);
        registry.add(std::move(info));
        return;
    }
    if (count == 0) {
        info.reason = "no CUDA device present";
        registry.add(std::move(info));
        return;
    }
    std::string failures;
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
            cudaGetLastError();
            continue;
        }
        const std::string why = selfTest(i);
        if (!why.empty()) {
            failures += "cuda:" + std::to_string(i) + " " + why + "; ";
            continue;
        }
        engine::DeviceInfo d;
        d.id = "cuda:" + std::to_string(i);
        d.name = prop.name;
        d.memoryBytes = prop.totalGlobalMem;
        d.computeUnits = static_cast<unsigned>(prop.multiProcessorCount);
        d.detail = "sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
                   std::to_string(prop.multiProcessorCount) + " SMs";
        info.devices.push_back(std::move(d));
    }
    info.usable = !info.devices.empty();
    if (!info.usable) info.reason = failures.empty() ? "no CUDA device passed the self-test" : failures;
    registry.add(std::move(info));
}

}  // namespace msa::gpu

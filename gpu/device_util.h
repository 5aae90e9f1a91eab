// device_util.h: selecting a CUDA device for a scope, shared by the gpu/ components that run on a
// device other than the caller's (memory tier, route scanner, memory-parallel ranks). Include only
// from gpu/ sources.
//
// Ownership/threads: a DeviceGuard belongs to one scope on one host thread (the CUDA current device
// is per host thread).
//
// Usage:
//     MSA_RETURN_IF_ERROR(checkDeviceIndex(device));
//     DeviceGuard g;
//     MSA_RETURN_IF_ERROR(g.enter(device));   // the caller's device is current again at scope exit
//
// Failure codes: checkDeviceIndex(): InvalidArgument (no such device), DeviceError (the count query);
// DeviceGuard::enter(): DeviceError.
#pragma once

#include "gpu/cuda_check.h"

#include <cuda_runtime.h>

#include <string>

namespace msa::gpu {

// InvalidArgument unless `device` names one of the present CUDA devices.
inline Status checkDeviceIndex(int device) {
    int count = 0;
    MSA_CUDA_CHECK(cudaGetDeviceCount(&count));
    if (device < 0 || device >= count)
        return Status(ErrorCode::InvalidArgument, "no CUDA device " + std::to_string(device) + " (" + std::to_string(count) + " present)");
    return Status::ok();
}

// Restores the caller's device at scope exit (the engine thread may be on another device). enter()
// may be called again in the same scope to move to another device; the device current before the
// first enter() is the one restored.
class DeviceGuard {
public:
    DeviceGuard() = default;
    DeviceGuard(const DeviceGuard&) = delete;
    DeviceGuard& operator=(const DeviceGuard&) = delete;
    ~DeviceGuard() {
        int cur = -1;
        if (m_prev >= 0 && cudaGetDevice(&cur) == cudaSuccess && cur != m_prev) cudaSetDevice(m_prev);
    }
    Status enter(int device) {
        int cur = -1;
        MSA_CUDA_CHECK(cudaGetDevice(&cur));
        if (m_prev < 0) m_prev = cur;
        if (cur != device) MSA_CUDA_CHECK(cudaSetDevice(device));
        return Status::ok();
    }

private:
    int m_prev = -1;
};

}  // namespace msa::gpu

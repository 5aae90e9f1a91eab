// cuda_check.h: the third error tier of CONVENTIONS.md #7 — every CUDA runtime call is checked and a
// failure becomes Status{DeviceError} naming the statement, file, line and device. Nothing aborts:
// a desktop app must survive a GPU fault. Include only from gpu/ sources.
#pragma once

#include "core/util/status.h"

#include <cuda_runtime_api.h>

#include <string>

namespace msa::gpu {

inline Status cudaStatus(cudaError_t e, const char* statement, const char* file, int line) {
    if (e == cudaSuccess) return Status::ok();
    int device = -1;
    cudaGetDevice(&device);
    cudaGetLastError();   // clear a non-sticky error so later calls report their own state
    std::string m = std::string(statement) + " failed on cuda:" + std::to_string(device) + " at " + file + ":" +
                    std::to_string(line) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return {e == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::DeviceError, std::move(m)};
}

}  // namespace msa::gpu

#define MSA_CUDA_CHECK(expr) MSA_RETURN_IF_ERROR(::msa::gpu::cudaStatus((expr), #expr, __FILE__, __LINE__))
// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define MSA_CUDA_CHECK_LAUNCH(what) MSA_RETURN_IF_ERROR(::msa::gpu::cudaStatus(cudaGetLastError(), what, __FILE__, __LINE__))

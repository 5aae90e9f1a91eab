// backend_registry.h: which compute backends this build has, which devices they see, and why a
// backend is not usable. The CPU backend is always present; the CUDA backend (gpu/) adds itself
// through msa::gpu::registerBackends() when the build has CUDA, and the mains add a "built without
// CUDA" entry otherwise, so users always see the reason (CONVENTIONS.md #3).
//
// This is the discovery half of the Backend interface; the model-runtime issue adds the factory that
// creates a Backend for a chosen device.
//
// Ownership/threads: built once in main() and then read-only; pass by const reference.
//
// Usage:
//     msa::engine::BackendRegistry reg = msa::engine::BackendRegistry::withCpu();
//     #if MSA_HAVE_CUDA
//     msa::gpu::registerBackends(reg);
//     #endif
//     for (const auto& b : reg.backends()) ...
#pragma once

#include "core/engine/backend.h"
#include "core/util/status.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace msa::engine {

struct DeviceInfo {
    std::string id;              // "cpu", "cuda:0"
    std::string name;            // "Intel(R) Xeon(R) ...", "NVIDIA H100 80GB HBM3"
    uint64_t memoryBytes = 0;    // host RAM for the CPU, device memory for a GPU
    unsigned computeUnits = 0;   // hardware threads, or streaming multiprocessors
    std::string detail;          // "sm_90", "2 threads", ...
};

// Creates a Backend bound to device `deviceIndex` of its kind (0 for the CPU). Called on the thread
// that will use the backend; failures are Status values (DeviceError, OutOfMemory), never aborts.
using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(int deviceIndex)>;

struct BackendInfo {
    std::string name;                                        // "cpu", "cuda"
    bool built = false;                                      // compiled into this binary
    bool usable = false;                                     // built and at least one device works
    std::string reason;                                      // why not usable (empty when usable)
    std::vector<DeviceInfo> devices;
    std::vector<std::pair<std::string, std::string>> facts;  // versions etc., shown by `msa doctor`
    BackendFactory create;                                   // set when built; empty otherwise
};

class BackendRegistry {
public:
    // A registry holding the CPU backend, described from /proc and sysconf.
    static BackendRegistry withCpu();

    void add(BackendInfo info);
    const std::vector<BackendInfo>& backends() const { return m_backends; }
    const BackendInfo* find(std::string_view name) const;
    // The backend a request without --device uses: the first usable GPU backend, else the CPU.
    const BackendInfo& preferred() const;

private:
    std::vector<BackendInfo> m_backends;
};

// The CPU's model name from /proc/cpuinfo ("unknown CPU" when unreadable).
std::string cpuModelName();

}  // namespace msa::engine

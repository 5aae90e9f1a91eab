// cmd_bench_gpu.cpp: `msa bench gpu` — picks the device (a usable GPU, or the CPU only when asked
// for with --device cpu), its timing hooks (gpu/bench_gpu.h, or the CPU's), the PyTorch peer
// (tests/tools/bench_peer_torch.py run by a Python that imports torch and transformers), and prints
// the table or --json. Without a usable GPU and without --device cpu it fails with DeviceError and
// the reason, so a CI log never shows CPU figures under a GPU heading.
#include "app/backend_setup.h"
#include "app/commands.h"

#include "core/jobs/bench_gpu.h"
#include "core/util/status.h"

#if MSA_HAVE_CUDA
#include "gpu/bench_gpu.h"
#endif

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace msa::app {
namespace {

namespace fs = std::filesystem;

// The peer script: --peer-script, $MSA_PEER_SCRIPT, the source tree beside a build folder
// (<build>/app/msa → <source>/tests/tools), the installed copy, or ./tests/tools.
fs::path findPeerScript(const std::string& given) {
    if (!given.empty()) return given;
    if (const char* env = std::getenv("MSA_PEER_SCRIPT")) return env;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    std::vector<fs::path> candidates;
    if (!ec) {
        candidates.push_back(exe.parent_path() / "../../tests/tools/bench_peer_torch.py");
        candidates.push_back(exe.parent_path() / "../share/msa-workbench/bench_peer_torch.py");
    }
    candidates.push_back(fs::current_path(ec) / "tests/tools/bench_peer_torch.py");
    for (const fs::path& c : candidates)
        if (fs::exists(c, ec)) return fs::weakly_canonical(c, ec);
    return {};
}

// "python3" when it imports torch and transformers (checked by running it), else empty.
std::string findPeerPython(const std::string& peer) {
    if (peer == "none") return {};
    const std::string python = peer == "auto" ? "python3" : peer;
    const std::string probe = "'" + python + "' -c 'import torch, transformers' >/dev/null 2>&1";
    return std::system(probe.c_str()) == 0 ? python : std::string();
}

}  // namespace

int runBenchGpu(const BenchArgs& a) {
    auto device = selectDevice(a.device, "bench");
    if (!device) return reportFailure("bench", device.status(), a.json);
    if (device->backend == "cpu" && a.device != "cpu") {
        return reportFailure("bench", Status(ErrorCode::DeviceError,
                                             "msa bench gpu needs a usable GPU: " +
                                                 (device->gpuProblem.empty() ? std::string("the CPU was chosen") : device->gpuProblem) +
                                                 " (use --device cpu --shape tiny to check the harness on the CPU)"),
                             a.json);
    }
    jobs::GpuBenchOptions o;
    o.shape = a.shape == "tiny" ? jobs::BenchModelShape::tiny() : jobs::BenchModelShape::msa4b();
    if (!a.bankMillions.empty()) {
        o.shape.bankTokens.clear();
        for (double m : a.bankMillions) o.shape.bankTokens.push_back(static_cast<uint64_t>(std::max(0.001, m) * 1e6));
    }
    o.device = *device;
    o.nThreads = static_cast<size_t>(std::max(0, a.threads));
    o.repeats = static_cast<size_t>(std::max(1, a.repeats));
    o.workDir = a.workDir;
    if (device->backend == "cpu") {
        o.hooks = jobs::cpuBenchHooks(o.nThreads);
        o.peerDevice = "cpu";
    } else {
#if MSA_HAVE_CUDA
        auto hooks = gpu::cudaBenchHooks(device->devices.front());
        if (!hooks) return reportFailure("bench", hooks.status(), a.json);
        o.hooks = std::move(*hooks);
        o.peerDevice = "cuda:" + std::to_string(device->devices.front());
#else
        return reportFailure("bench", Status(ErrorCode::DeviceError, "built without CUDA"), a.json);
#endif
    }
    o.peerPython = findPeerPython(a.peer);
    if (!o.peerPython.empty()) {
        o.peerScript = findPeerScript(a.peerScript);
        if (o.peerScript.empty()) {
            std::fprintf(stderr, "msa bench: note: the peer script bench_peer_torch.py was not found (--peer-script)\n");
            o.peerPython.clear();
        }
    } else if (a.peer != "none") {
        std::fprintf(stderr, "msa bench: note: no peer: '%s' cannot import torch and transformers\n",
                     a.peer == "auto" ? "python3" : a.peer.c_str());
    }
    auto r = jobs::runGpuBench(o);
    if (!r) return reportFailure("bench", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = {{"ok", true}, {"gpu", jobs::toJson(*r)}, {"device", deviceJson(*device)}};
        std::cout << j.dump(2) << std::endl;
    } else {
        std::cout << jobs::toText(*r);
    }
    // A routing scan that selects other documents than the CPU Router on the same keys is a wrong
    // result, not a slow one: the figures are printed, and the run fails.
    if (!r->scanChecksPassed) {
        std::fprintf(stderr, "msa bench: the device's routing scan disagrees with the CPU Router (see the check lines)\n");
        return 1;
    }
    return 0;
}

}  // namespace msa::app

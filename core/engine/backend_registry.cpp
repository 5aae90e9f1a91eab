#include "core/engine/backend_registry.h"

#include <algorithm>
#include <fstream>
#include <thread>
#include <unistd.h>

namespace msa::engine {

std::string cpuModelName() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) {
            const auto colon = line.find(':');
            if (colon != std::string::npos) {
                auto start = line.find_first_not_of(' ', colon + 1);
                if (start != std::string::npos) return line.substr(start);
            }
        }
    }
    return "unknown CPU";
}

BackendRegistry BackendRegistry::withCpu() {
    BackendInfo cpu;
    cpu.name = "cpu";
    cpu.built = true;
    cpu.usable = true;
    DeviceInfo dev;
    dev.id = "cpu";
    dev.name = cpuModelName();
    dev.computeUnits = std::max(1u, std::thread::hardware_concurrency());
    const long pages = ::sysconf(_SC_PHYS_PAGES);
    const long pageSize = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && pageSize > 0) dev.memoryBytes = static_cast<uint64_t>(pages) * static_cast<uint64_t>(pageSize);
    dev.detail = std::to_string(dev.computeUnits) + " hardware threads";
    cpu.devices.push_back(std::move(dev));
    cpu.facts.emplace_back("compute", "f32 reference backend");
    cpu.create = [](int) -> Result<std::unique_ptr<Backend>> { return createCpuBackend(); };
    BackendRegistry reg;
    reg.add(std::move(cpu));
    return reg;
}

void BackendRegistry::add(BackendInfo info) { m_backends.push_back(std::move(info)); }

const BackendInfo* BackendRegistry::find(std::string_view name) const {
    for (const auto& b : m_backends)
        if (b.name == name) return &b;
    return nullptr;
}

const BackendInfo& BackendRegistry::preferred() const {
    for (const auto& b : m_backends)
        if (b.usable && b.name != "cpu") return b;
    const BackendInfo* cpu = find("cpu");
    return cpu ? *cpu : m_backends.front();
}

}  // namespace msa::engine

#include "core/engine/device_select.h"

#include <charconv>

namespace msa::engine {
namespace {

// The device index of a registry id such as "cuda:3" (-1 when it has none).
int indexOf(const DeviceInfo& d) {
    const auto colon = d.id.rfind(':');
    if (colon == std::string::npos) return -1;
    int n = -1;
    const char* first = d.id.data() + colon + 1;
    const char* last = d.id.data() + d.id.size();
    auto [ptr, ec] = std::from_chars(first, last, n);
    return ec == std::errc() && ptr == last ? n : -1;
}

std::string availableText(const BackendRegistry& registry) {
    std::string s;
    for (const std::string& spec : deviceSpecs(registry)) s += (s.empty() ? "" : ", ") + spec;
    const BackendInfo* cuda = registry.find("cuda");
    if (cuda && !cuda->usable) s += " (cuda: " + (cuda->reason.empty() ? std::string("not usable") : cuda->reason) + ")";
    return s;
}

BackendChoice cpuChoice(const BackendRegistry& registry, std::string_view spec) {
    BackendChoice c;
    c.requested = std::string(spec);
    if (const BackendInfo* cpu = registry.find("cpu")) {
        c.factory = cpu->create;
        if (!cpu->devices.empty()) c.deviceName = cpu->devices.front().name;
    }
    return c;
}

BackendChoice gpuChoice(const BackendInfo& gpu, std::string_view spec, const DeviceInfo& device) {
    BackendChoice c;
    c.requested = std::string(spec);
    c.backend = gpu.name;
    c.deviceId = device.id;
    c.deviceName = device.name;
    c.devices = {indexOf(device)};
    c.factory = gpu.create;
    return c;
}

// Why the GPU backend named `name` cannot be used.
std::string whyNot(const BackendRegistry& registry, std::string_view name) {
    const BackendInfo* b = registry.find(name);
    if (!b) return "no " + std::string(name) + " backend in this build";
    if (!b->reason.empty()) return b->reason;
    if (!b->built) return "built without " + std::string(name);
    if (!b->create) return "its backend cannot create devices yet";
    return "no usable device";
}

BackendChoice fallBack(const BackendRegistry& registry, std::string_view spec, bool explicitRequest) {
    BackendChoice c = cpuChoice(registry, spec);
    c.fellBack = explicitRequest;
    const std::string why = whyNot(registry, "cuda");
    c.gpuProblem = why;
    c.note = explicitRequest ? std::string(spec) + " requested but not usable: " + why + "; running on the CPU"
                             : "no usable GPU (" + why + "); running on the CPU";
    return c;
}

bool usableGpu(const BackendInfo* b) { return b && b->usable && !b->devices.empty() && b->create; }

}  // namespace

Result<std::unique_ptr<Backend>> BackendChoice::create() const {
    if (!factory) return createCpuBackend();
    return factory(devices.empty() ? 0 : devices.front());
}

std::string BackendChoice::describe() const {
    return deviceName.empty() ? deviceId : deviceId + " (" + deviceName + ")";
}

std::vector<std::string> deviceSpecs(const BackendRegistry& registry) {
    std::vector<std::string> out = {"auto", "cpu"};
    const BackendInfo* cuda = registry.find("cuda");
    if (usableGpu(cuda)) {
        for (const DeviceInfo& d : cuda->devices) out.push_back(d.id);
        if (cuda->devices.size() > 1) out.push_back("cuda:all");
    }
    return out;
}

Result<BackendChoice> chooseBackend(const BackendRegistry& registry, std::string_view spec) {
    if (spec == "cpu") return cpuChoice(registry, spec);
    const BackendInfo* cuda = registry.find("cuda");
    const bool haveGpu = usableGpu(cuda);
    if (spec.empty() || spec == "auto") {
        const BackendInfo& preferred = registry.preferred();
        if (preferred.name != "cpu" && usableGpu(&preferred))
            return gpuChoice(preferred, spec, preferred.devices.front());
        return fallBack(registry, spec, false);
    }
    if (spec == "cuda") {
        if (!haveGpu) return fallBack(registry, spec, true);
        return gpuChoice(*cuda, spec, cuda->devices.front());
    }
    if (spec == "cuda:all") {
        if (!haveGpu) return fallBack(registry, spec, true);
        BackendChoice c = gpuChoice(*cuda, spec, cuda->devices.front());
        if (cuda->devices.size() > 1) {
            c.deviceId = "cuda:all";
            c.devices.clear();
            for (const DeviceInfo& d : cuda->devices) c.devices.push_back(indexOf(d));
            c.deviceName = std::to_string(cuda->devices.size()) + " × " + cuda->devices.front().name;
        }
        return c;
    }
    if (spec.starts_with("cuda:")) {
        const std::string_view digits = spec.substr(5);
        int n = -1;
        auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || n < 0)
            return invalidArgument("unknown device " + quotedName(spec) + "; available: " + availableText(registry));
        if (haveGpu) {
            for (const DeviceInfo& d : cuda->devices)
                if (indexOf(d) == n) return gpuChoice(*cuda, spec, d);
        } else if (n == 0) {
            return fallBack(registry, spec, true);
        }
        return invalidArgument("no device " + quotedName(spec) + "; available: " + availableText(registry));
    }
    return invalidArgument("unknown device " + quotedName(spec) +
                           " (expected auto, cpu, cuda, cuda:N or cuda:all); available: " + availableText(registry));
}

}  // namespace msa::engine

#include "app/backend_setup.h"

#if MSA_HAVE_CUDA
#include "gpu/register.h"
#endif

#include <nlohmann/json.hpp>

#include <cstdio>

namespace msa::app {

engine::BackendRegistry makeBackendRegistry() {
    engine::BackendRegistry registry = engine::BackendRegistry::withCpu();
#if MSA_HAVE_CUDA
    gpu::registerBackends(registry);
#else
    engine::BackendInfo cuda;
    cuda.name = "cuda";
    cuda.built = false;
    cuda.usable = false;
    cuda.reason = "built without CUDA";
    registry.add(std::move(cuda));
#endif
    return registry;
}

Result<engine::BackendChoice> selectDevice(std::string_view spec, const std::string& command) {
    // A plain CPU request needs no device discovery (which initialises the CUDA runtime).
    const engine::BackendRegistry registry =
        spec == "cpu" ? engine::BackendRegistry::withCpu() : makeBackendRegistry();
    MSA_ASSIGN_OR_RETURN(engine::BackendChoice choice, engine::chooseBackend(registry, spec));
    if (choice.fellBack) std::fprintf(stderr, "msa %s: note: %s\n", command.c_str(), choice.note.c_str());
    return choice;
}

nlohmann::json deviceJson(const engine::BackendChoice& c) {
    return {{"id", c.deviceId},   {"name", c.deviceName},       {"backend", c.backend}, {"devices", c.devices},
            {"requested", c.requested}, {"fell_back", c.fellBack}, {"note", c.note}};
}

}  // namespace msa::app

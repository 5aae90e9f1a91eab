#include "app/backend_setup.h"

#if MSA_HAVE_CUDA
#include "gpu/register.h"
#endif

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

}  // namespace msa::app

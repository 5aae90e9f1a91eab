// backend_setup.h: builds the backend registry for both mains (the composition root's one place
// that knows whether this build has CUDA). Thread affinity: call from main() only.
#pragma once

#include "core/engine/backend_registry.h"

namespace msa::app {

// The CPU backend plus the CUDA backend's devices, or a "cuda" entry saying "built without CUDA".
engine::BackendRegistry makeBackendRegistry();

}  // namespace msa::app

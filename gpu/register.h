// register.h: the one entry point of the CUDA backend that the mains call (DESIGN.md §2: "gpu
// registers itself with one function"). Only app/ includes this header, and only when the build
// has CUDA (MSA_HAVE_CUDA). No Qt and no CUDA types appear here, so the mains compile with a plain
// C++ compiler.
//
// Thread affinity: call once from main() before any backend is used.
// Failure: never fails; a missing driver or device is reported in the BackendInfo's reason.
#pragma once

#include "core/engine/backend_registry.h"

namespace msa::gpu {

// Adds the "cuda" backend to `registry`: its devices when the driver and a device work (each device
// is checked by running a small kernel), otherwise the reason none is usable.
void registerBackends(engine::BackendRegistry& registry);

}  // namespace msa::gpu

// backend_setup.h: builds the backend registry for both mains (the composition root's one place
// that knows whether this build has CUDA), and turns a --device option into a BackendChoice.
// Thread affinity: call from main() only.
//
// Failure codes: selectDevice(): InvalidArgument (unknown device spec, a device that does not exist).
#pragma once

#include "core/engine/backend_registry.h"
#include "core/engine/device_select.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <string_view>

namespace msa::app {

// The CPU backend plus the CUDA backend's devices, or a "cuda" entry saying "built without CUDA".
engine::BackendRegistry makeBackendRegistry();

// The backend and device `spec` (--device: "", auto, cpu, cuda, cuda:N, cuda:all) selects in this
// process. When a GPU was asked for but the CPU is used, prints "msa <command>: note: <why>" on stderr.
Result<engine::BackendChoice> selectDevice(std::string_view spec, const std::string& command);

// {"id", "name", "backend", "requested", "fell_back", "note"}: the "device" member of --json outputs.
nlohmann::json deviceJson(const engine::BackendChoice& choice);

}  // namespace msa::app

// doctor.h: the facts `msa doctor` prints and the GUI status bar shows: version, build, backends and
// their devices (or why none), the demo model and the demo archive. Computing it reads a few bytes of
// the demo model and lists the demo archive; it never loads a model.
//
// Thread affinity: runDoctor() is reentrant; the report is a plain value.
#pragma once

#include "core/engine/backend_registry.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

struct DemoModelFacts {
    std::filesystem::path path;                        // where it was found (empty when absent)
    std::vector<std::filesystem::path> searched;       // every place looked at
    bool present = false;
    bool looksValid = false;                           // starts with the GGUF magic and a known version
    uint32_t ggufVersion = 0;
    uint64_t sizeBytes = 0;
    std::string problem;                               // why it is absent or unusable
};

struct DemoArchiveFacts {
    std::filesystem::path path;
    bool present = false;
    uint64_t nFiles = 0;
    uint64_t nBytes = 0;
};

struct DoctorReport {
    std::string version;
    std::string buildType;
    std::string compiler;
    std::vector<engine::BackendInfo> backends;
    std::string preferredBackend;
    std::string autoDevice;                  // what --device auto runs on ("cuda:0 (NVIDIA ...)", "cpu (...)")
    std::string autoDeviceNote;              // why no GPU is used by auto (empty when one is)
    std::vector<std::string> deviceSpecs;    // the --device values this machine accepts
    DemoModelFacts demoModel;
    DemoArchiveFacts demoArchive;
    bool healthy() const;   // the CPU backend works and the demo model is present and valid
};

DoctorReport runDoctor(const engine::BackendRegistry& registry);

nlohmann::json toJson(const DoctorReport& report);
// The human-readable report, one fact per line.
std::string toText(const DoctorReport& report);
// One line for a status bar: "CPU · 2 threads | CUDA: built without CUDA".
std::string backendSummary(const engine::BackendRegistry& registry);

// Reads the GGUF header of a file: Ok with the version, Corrupt when the magic is wrong,
// Unsupported for an unknown version, NotFound/IoError from the file system.
struct GgufHeaderCheck {
    bool ok = false;
    uint32_t version = 0;
    std::string problem;
};
GgufHeaderCheck checkGgufHeader(const std::filesystem::path& path);

}  // namespace msa::jobs

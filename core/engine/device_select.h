// device_select.h: which backend and device a request runs on (issue 6 item 7, DESIGN.md §2 "a
// CUDA-enabled build still starts on a machine without a GPU: it picks the CPU backend and says why").
//
// chooseBackend() turns a user's device spec into a BackendChoice:
//   ""/"auto"  the first usable GPU backend's first device, else the CPU (note says why no GPU)
//   "cpu"      the CPU backend
//   "cuda"     cuda's first usable device; without one: the CPU, with a note saying why
//   "cuda:N"   device N (N must be one of the usable devices; "cuda:0" on a machine with no usable
//              GPU falls back like "cuda", because it is what "the GPU" means in scripts written
//              for one-GPU machines)
//   "cuda:all" Memory Parallel over every usable device (devices lists them all; the generating
//              device is the first); with one device it is cuda:0; without any it falls back
//
// Why the choice travels in the job requests (BuildOptions::device, RouteRequest::device, ...) and
// not as a process-wide selection: CONVENTIONS.md #3 keeps devices out of globals, the GUI changes the
// device while its engine threads live, and tests build requests for both backends side by side. A
// default-constructed BackendChoice is the CPU, so every existing caller keeps its behaviour.
//
// Ownership/threads: BackendChoice is a value; copy it to the thread that runs the job and call
// create() there (the factory binds the backend to that thread's device context).
//
// Failure codes: chooseBackend(): InvalidArgument (unknown spec, a device index that does not exist;
// the message lists the devices available). BackendChoice::create(): those of the backend's factory
// (DeviceError, OutOfMemory).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(engine::BackendChoice device, engine::chooseBackend(registry, "cuda"));
//     if (device.fellBack) std::fprintf(stderr, "msa: %s\n", device.note.c_str());
//     request.device = device;                       // on the job's thread:
//     MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, request.device.create());
#pragma once

#include "core/engine/backend_registry.h"
#include "core/util/status.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace msa::engine {

struct BackendChoice {
    std::string backend = "cpu";    // BackendInfo::name of the chosen backend
    std::string deviceId = "cpu";   // "cpu", "cuda:1", or "cuda:all" for Memory Parallel over several
    std::string deviceName;         // "NVIDIA H100 80GB HBM3", the CPU model; empty when unknown
    std::vector<int> devices = {0}; // device indices used; the first generates (Memory Parallel: all shards)
    std::string requested;          // the spec as given ("" for none)
    bool fellBack = false;          // a GPU was asked for explicitly but the CPU is used
    std::string note;               // why a GPU is not used (fallback, or auto without a GPU); empty otherwise
    std::string gpuProblem;         // the bare reason no GPU is usable ("built without CUDA"); empty when one is
    BackendFactory factory;         // empty: the CPU backend

    // A backend bound to devices.front() (call on the thread that uses it).
    Result<std::unique_ptr<Backend>> create() const;
    // "cuda:0 (NVIDIA H100 80GB HBM3)", "cpu (AMD EPYC 7B13)": for status bars and reports.
    std::string describe() const;
};

Result<BackendChoice> chooseBackend(const BackendRegistry& registry, std::string_view spec);

// The choices a device selector offers, in order: "auto", "cpu", each usable CUDA device ("cuda:N"),
// and "cuda:all" when there are several. Backends without a usable device are not listed (their
// reason is in the registry).
std::vector<std::string> deviceSpecs(const BackendRegistry& registry);

}  // namespace msa::engine

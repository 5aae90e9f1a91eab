// bench.h: `msa bench cpu` — throughput of the CPU backend on a real model, printed beside the
// physical limit of this machine. Measures, each as the median of `repeats` runs:
//   - prefill tokens/s: one forward over `promptTokens` tokens (fresh cache);
//   - decode tokens/s: `decodeTokens` single-token forwards after that prompt (greedy);
//   - copy bandwidth: memcpy of a buffer much larger than the caches on the same threads;
//   - the decode limit: bandwidth ÷ bytes of weights read per token (every weight is read once per
//     decoded token; the KV cache is small beside it at these lengths), and the fraction reached;
//   - the prefill limit: FLOPs per token (2 × multiply-adds of every matrix) ÷ the measured f32 sgemm
//     rate of OpenBLAS on the same threads.
// Timing is never asserted by tests (DESIGN.md §7); this is for people and CI logs.
//
// Thread affinity: runs on the calling thread with its own session. Failure codes: those of loading
// the model and of Session::forward.
#pragma once

#include "core/engine/device_select.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

struct CpuBenchOptions {
    std::filesystem::path model;
    size_t nThreads = 0;
    size_t promptTokens = 128;
    size_t decodeTokens = 64;
    size_t repeats = 3;
    engine::BackendChoice device;   // default: the CPU backend
};

struct CpuBenchResult {
    std::string model;
    std::string cpu;
    size_t nThreads = 0;
    uint64_t weightBytesPerToken = 0;
    double macsPerToken = 0;
    double prefillTokensPerSecond = 0;      // median
    double decodeTokensPerSecond = 0;       // median
    std::vector<double> prefillRuns, decodeRuns;
    double copyBandwidthBytesPerSecond = 0; // read + write bytes per second of memcpy
    double readBandwidthBytesPerSecond = 0; // half of the above: what a weight stream can read
    double decodeLimitTokensPerSecond = 0;
    double sgemmFlopsPerSecond = 0;
    double prefillLimitTokensPerSecond = 0;
    std::string simd;
};

Result<CpuBenchResult> runCpuBench(const CpuBenchOptions& options);
nlohmann::json toJson(const CpuBenchResult& r);
std::string toText(const CpuBenchResult& r);

}  // namespace msa::jobs

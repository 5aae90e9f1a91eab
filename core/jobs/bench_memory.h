// bench_memory.h: `msa bench memory` — the memory engine's figures, each beside its physical limit
// or its peer (issue 5 "Performance"; never asserted by tests, DESIGN.md §7):
//   (a) build throughput (tokens/s inside the encoder's packed forwards) on the demo archive vs the
//       same model's measured prefill throughput (one fresh forward of prefillTokens tokens);
//   (b) bank bytes per memory token of the built bank vs msa-spec §6.6's arithmetic for the model's
//       dims and the storage dtype (tensors × routing layers × KV heads × head dim × bytes / P);
//   (c) the routing scan per query over synthetic bf16 routing keys at each size in scanTokens (P = 64;
//       per routing layer, and × routing layers for a whole query), its GB/s, and the read bandwidth
//       of this machine measured in the same process (a STREAM-like summing read on the same threads);
//       both also per on-CPU second (process CPU time), which stays meaningful on a shared machine;
//   (d) peak RSS (getrusage) after build and ask vs the mapped working set (model file + bank);
//   (e) time to first token of the demo's suggested question over the demo bank (askQuestion's
//       streaming callback), and the whole answer's time.
// Every timing is the median of `repeats` runs (the build runs once: it is minutes on 2 cores).
//
// Thread affinity: runs on the calling thread (the engine thread). Creates its catalog and bank in
// `workDir` (a fresh temporary folder when empty) and removes it unless keepWorkDir.
// Failure codes: those of the catalog import, buildMemory, askQuestion, Router::route; NotFound when
// the demo archive is missing.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(MemoryBenchResult r, runMemoryBench({.model = path}));
//     std::cout << toText(r);
#pragma once

#include "core/engine/device_select.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

struct MemoryBenchOptions {
    std::filesystem::path model;
    std::filesystem::path archive;               // empty: findDemoArchive()
    std::filesystem::path workDir;               // empty: a temporary folder
    bool keepWorkDir = false;
    size_t nThreads = 0;
    size_t batchTokens = 512;                    // encoder packing (BuildOptions::batchTokens)
    size_t prefillTokens = 512;
    std::vector<uint64_t> scanTokens = {1000000, 10000000};
    size_t scanQueryTokens = 16;                 // routing-mask tokens of the synthetic question
    size_t repeats = 5;
    size_t askTokens = 32;                       // answer length for (e)
    bool skipBuild = false;                      // only (c) (smoke tests, quick scans)
    engine::BackendChoice device;                // default: the CPU backend
};

struct ScanFigure {
    uint64_t memoryTokens = 0, nChunks = 0, nDocuments = 0;
    uint64_t keyBytes = 0;                       // one routing layer's keys
    double layerSeconds = 0;                     // median, one routing layer
    double querySeconds = 0;                     // layerSeconds × routing layers
    double bytesPerSecond = 0;                   // keyBytes / layerSeconds
    double fractionOfBandwidth = 0;
    std::vector<double> runs;
    double layerCpuSeconds = 0;                  // median process CPU time of one layer's scan
    double onCpuBytesPerSecond = 0;              // keyBytes × threads / layerCpuSeconds
    double onCpuFractionOfBandwidth = 0;
};

struct MemoryBenchResult {
    std::string model, archive, cpu;
    size_t nThreads = 0;
    // (a)
    uint64_t buildDocuments = 0, buildTokens = 0;
    double buildSeconds = 0, encodeSeconds = 0;
    double buildTokensPerSecond = 0;             // inside the encoder forwards
    double prefillTokensPerSecond = 0;           // median
    std::vector<double> prefillRuns;
    // (b)
    std::string storage;
    uint64_t bankBytes = 0, bankTokens = 0, bankChunks = 0;
    size_t nRoutingLayers = 0, nKvHeads = 0, headDim = 0, chunkSize = 0, nTensors = 0;
    double bankBytesPerToken = 0;
    double specBytesPerToken = 0;                // msa-spec §6.6 arithmetic
    double specBytesForChunks = 0;               // the same arithmetic for the bank's actual chunks
    // (c)
    double readBandwidthBytesPerSecond = 0;
    double readBandwidthOnCpuBytesPerSecond = 0; // the same per on-CPU second (shared machines)
    double scanFlopsPerByte = 0;                 // 2 × query tokens per 2-byte key element
    double scanSgemmFlopsPerCpuSecond = 0;       // one thread, the scan's block shape
    double scanComputeLimitOnCpuBytesPerSecond = 0;   // sgemm rate × threads ÷ FLOP per byte
    size_t scanQueryTokens = 0;
    std::vector<ScanFigure> scans;
    // (d)
    uint64_t peakRssBytes = 0, mappedBytes = 0, modelBytes = 0;
    // (e)
    std::string question;
    double firstTokenSeconds = 0, answerSeconds = 0;
    std::vector<double> firstTokenRuns;
    size_t answerTokens = 0;
};

Result<MemoryBenchResult> runMemoryBench(const MemoryBenchOptions& options);
nlohmann::json toJson(const MemoryBenchResult& r);
std::string toText(const MemoryBenchResult& r);

}  // namespace msa::jobs

// bench_gpu.h: `msa bench gpu` (issue 6 "Performance") — the MSA operations at the real MSA-4B shape
// on one device, each figure beside the physical limit of that device and beside a PyTorch peer run
// on the same device in the same run (DESIGN.md §7).
//
// The model is a random-weight checkpoint written by writeRandomCheckpoint() into a work folder
// (config.json + model.safetensors, bf16, seeded): a plain Qwen3 config, so Hugging Face transformers
// loads it unchanged for the peer, and our loader resolves the training-free routing of msa-spec §2.9
// from it — routing layers 18–35 (the upper half of 36), P = 64, k = 16, scaled dot over the
// attention K (8 KV heads × 128), which is the shape and work of MSA-4B's routing. Speed does not
// depend on weight values; both sides read the same bytes.
//
// Measured (each the median of `repeats` after one warm-up):
//   encoding   tokens/s of forwards over `docsPerForward` packed documents of `docTokens` tokens each
//              (per-document causal attention, no logits, stopping after the last routing layer);
//              limit = peak bf16 FLOP/s ÷ FLOPs per token (matrices + attention at the mean context)
//   scan       all routing layers over synthetic banks of `bankTokens` tokens (bf16 keys, documents
//              of docTokens/P chunks), queries from `queryTokens` question tokens; one layer's keys
//              are generated and scanned once per routing layer (same bytes read per layer as 18
//              distinct layers, which at 100M tokens would not fit beside the model); timed by the
//              device's clock when the scanner can (BenchScanner::timeLayers: CUDA events), with the
//              keys' GB/s beside the copy's; 8-bit storages as extra rows (hooks.extraKeyStorages);
//              limit = key bytes ÷ the measured device-to-device copy bandwidth
//   decode     ms/token at batch 1 with `nSelectedDocs` documents' chunks (K̄/V̄ rows) in every
//              routing layer's prefix and the question in the cache; limit = (weights + KV bytes
//              read per token) ÷ copy bandwidth
//   ttft       time to first token for a `questionTokens` question per bank size: the prefill with
//              the routing scan in every routing layer (memory hook) plus the first decode step;
//              limit = the scan's + the prefill's (compute at peak or one weight read, the longer)
//              + one decode step's weight read
// Bandwidth limits use the copy's bytes read + written per second (the memory's total rate, which a
// read-only stream can at best reach), as STREAM and nvbandwidth count it.
// The device-specific parts (copy bandwidth, the routing scan over device-resident keys, the peak
// FLOP/s of the device) come in through DeviceBenchHooks: cpuBenchHooks() here; the CUDA ones from
// gpu/bench_gpu.h (core includes no CUDA). Everything else goes through the Backend interface, whose
// forward() returns host data and is therefore synchronous — wall-clock timing is exact.
//
// Thread affinity: runs on the calling thread. Failure codes: IoError/DiskFull (writing the
// checkpoint), those of loading the model and Session::forward, DeviceError/OutOfMemory from the
// hooks while loading; a figure the backend cannot produce (Unsupported, Unimplemented, a device
// error in its operation) keeps the reason in its note ("not measured: ...") and the run goes on; a
// failing peer is reported in the result (peerError), not as a failure.
#pragma once

#include "core/engine/device_select.h"
#include "core/memory/route_scanner.h"
#include "core/util/status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace msa::jobs {

struct BenchModelShape {
    std::string name;                    // "msa-4b" | "tiny"
    int nLayers = 36, hidden = 2560, nHeads = 32, nKvHeads = 8, headDim = 128, ffn = 9728, vocab = 151936;
    size_t chunkSize = 64, topK = 16;    // P, k (the training-free defaults the loader resolves)
    size_t docTokens = 4096;             // memory document length
    size_t docsPerForward = 4;           // documents packed per encoding forward
    size_t nSelectedDocs = 16;           // documents whose chunks are in the decode context
    size_t questionTokens = 256;
    size_t decodeTokens = 32;
    std::vector<uint64_t> bankTokens = {1000000, 10000000, 100000000};

    static BenchModelShape msa4b();
    static BenchModelShape tiny();       // 4 layers, hidden 64: checks the harness on the CPU in seconds
    uint64_t nParameters() const;        // including the (tied) embedding
    int firstRoutingLayer() const { return nLayers / 2; }
    int nRoutingLayers() const { return nLayers - nLayers / 2; }
};

// Writes <dir>/config.json (Qwen3ForCausalLM, tied embeddings) and <dir>/model.safetensors with
// seeded random bf16 weights (matrices ~ N(0, 0.02²)-like, norms near 1). Same seed → same bytes.
Status writeRandomCheckpoint(const std::filesystem::path& dir, const BenchModelShape& shape, uint64_t seed);

// Deterministic synthetic routing keys: chunk c, head g, dim d of a bank → a bf16 value in
// [-2, 2) from a 64-bit hash of (seed, c, g, d). Cheap enough to fill 100M tokens' keys.
void fillSyntheticKeys(std::span<uint16_t> out, uint64_t firstChunk, size_t rowElems, uint64_t seed);

// One layer's routing keys resident where the device computes, scanned with the reference's
// reductions (msa-spec §2: head mean, query-token max, chunk → document max, top-k).
class BenchScanner {
public:
    virtual ~BenchScanner() = default;
    // queries: nTokens × nHeads × headDim f32, already prepared (scaled); returns the top-k document
    // indices, score descending (ties by index).
    virtual Result<std::vector<uint32_t>> scan(std::span<const float> queries, size_t nTokens, size_t k) = 0;
    // Device-timed scans: after one warm-up, `repeats` times `nLayers` scans back to back (the one
    // resident table stands for every routing layer), each run's milliseconds as the device's clock
    // (CUDA events) measures it. Unimplemented (the CPU's): the caller times scan() with the host clock.
    virtual Result<std::vector<double>> timeLayers(std::span<const float> queries, size_t nTokens, size_t k,
                                                   size_t nLayers, size_t repeats) {
        (void)queries, (void)nTokens, (void)k, (void)nLayers, (void)repeats;
        return Status(ErrorCode::Unimplemented, "no device timing for this scanner");
    }
    // Bytes of keys one layer's scan reads (8-bit storage: codes + scales); 0: the spec's bf16 bytes.
    virtual uint64_t keyBytesPerLayer() const { return 0; }
};
struct ScanSpec {
    uint64_t nChunks = 0;
    size_t chunksPerDoc = 64;
    size_t nHeads = 8, headDim = 128, nQueryHeads = 32;
    uint64_t seed = 7;
    // How the keys are held while scanned: native bf16, or the 8-bit copies of ROUTING.md
    // "Quantized storage" (made from the same bf16 keys).
    memory::KeyStorage keyStorage = memory::KeyStorage::Native;
};

struct DeviceBenchHooks {
    std::string deviceName;                  // "NVIDIA H100 80GB HBM3", the CPU model
    std::string deviceId;                    // "cuda:0", "cpu"
    double peakBf16Flops = 0;                // data-sheet dense bf16 FLOP/s (0: unknown)
    std::string peakSource;                  // "H100 SXM data sheet", "unknown for this device"
    // Device-to-device copy: bytes read + written per second for a buffer of `bytes`.
    std::function<Result<double>(uint64_t bytes)> copyBandwidth;
    // Keys for one layer of a bank, on the device (synthetic, fillSyntheticKeys with spec.seed).
    std::function<Result<std::unique_ptr<BenchScanner>>(const ScanSpec& spec)> openScanner;
    // 8-bit storages the scan hook also measures, as extra rows "scan 1M fp8-e4m3" (no peer figure).
    std::vector<memory::KeyStorage> extraKeyStorages;
    // Compare the device's layer-0 top-k with the CPU Router's on the same keys and queries for banks
    // of at most this many tokens (0: never; the CPU hooks' scanner is the Router itself).
    uint64_t checkAgainstCpuUpTo = 0;
};
// The CPU's: memcpy bandwidth, memory::Router over host keys, peak unknown.
DeviceBenchHooks cpuBenchHooks(size_t nThreads);

struct GpuBenchOptions {
    BenchModelShape shape = BenchModelShape::msa4b();
    engine::BackendChoice device;
    DeviceBenchHooks hooks;
    std::filesystem::path workDir;           // empty: a temporary folder (removed afterwards)
    bool keepWorkDir = false;
    size_t repeats = 3;
    size_t nThreads = 0;                     // CPU backend threads
    uint64_t seed = 1234;
    // The peer: an interpreter and the script (tests/tools/bench_peer_torch.py); empty: no peer.
    std::string peerPython;
    std::filesystem::path peerScript;
    std::string peerDevice = "cuda";         // the peer's torch device ("cpu" with --device cpu)
};

struct Figure {
    std::string name;        // "encoding", "scan 10M", "decode", "ttft 10M"
    std::string unit;        // "tokens/s", "ms"
    double value = 0;        // ours (0 when not measured)
    double limit = 0;        // the physical limit in the same unit (0: unknown)
    double peer = 0;         // the peer's (0: not measured)
    double target = 0;       // the target on one H100 (0: none)
    bool higherIsBetter = true;
    std::string note;        // why a figure is missing, how the limit was derived
};

struct GpuBenchResult {
    std::string device, deviceId, shape, modelDir, peerDevice, peerError, peerVersions;
    double copyBandwidth = 0;     // bytes/s (read + write)
    double peakBf16Flops = 0;
    std::string peakSource;
    uint64_t nParameters = 0;
    std::vector<Figure> figures;
    nlohmann::json peer;          // the peer's JSON as printed
    // The routing-scan correctness checks against the CPU Router (DeviceBenchHooks::checkAgainstCpuUpTo):
    // one line per checked (bank, storage), "scan 1M: layer-0 top-16 identical to the CPU Router's".
    std::vector<std::string> scanChecks;
    bool scanChecksPassed = true;
};

Result<GpuBenchResult> runGpuBench(const GpuBenchOptions& options);
nlohmann::json toJson(const GpuBenchResult& r);
std::string toText(const GpuBenchResult& r);

// The peer as a subprocess: `python script args...`, stdout parsed as JSON. Failure: Internal with
// the peer's stderr tail when it exits non-zero or prints no JSON.
Result<nlohmann::json> runPeer(const std::string& python, const std::filesystem::path& script,
                               const std::vector<std::string>& args);

}  // namespace msa::jobs

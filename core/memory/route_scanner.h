// route_scanner.h: the seam between MemoryIndex and the device that scans routing keys (issue 6 item 3).
// A RouteScanner scores one routing layer's candidates shard by shard and returns each shard's top-n
// (score descending, document id ascending on ties) plus its candidate count; MemoryIndex merges the
// shards' lists exactly (core/memory/shard_merge.h), so a scanner never needs to see the whole bank.
//
//   CpuRouteScanner — the Router (tiled multithreaded scan of router.h) per shard; what MemoryIndex
//                     uses by default, bit-identical to the scan it did before this seam existed.
//   "cuda"          — gpu/route_scan.h, registered by msa::gpu::registerRouteScanner() when the build
//                     has CUDA: keys resident on the device, fused scan and device top-k.
//
// The registry lets core create a GPU scanner by name without including CUDA: gpu/ adds its factory
// once at start-up (registerRouteScannerFactory("cuda", fn)); createRouteScanner("cuda", opts) then
// works anywhere, and names without a factory give Unsupported.
//
// Head-mean folding (ROUTING.md "Head-mean folding"): with head mean the score of query token t and
// chunk c is  (1/H) Σ_h q_t[h]·K̄ᴿ_c[h/g] = Σ_G q'_t[G]·K̄ᴿ_c[G]  with  q'_t[G] = (1/H) Σ_{h∈G} q_t[h],
// one dot of length nKv·D. foldHeadMean() computes q' on the host for every device scanner. In the
// cosine branch the per-head normalisation is already done (keys at bank build, queries in
// prepareQueries), before the fold, which is what keeps the fold exact.
//
// Key storage (RouteScannerOptions::keyStorage; ROUTING.md "Quantized storage"): Native scans the
// bank's bf16/f32 keys; Fp8E4M3 / Int8 make the scanner keep an 8-bit copy (core/memory/key_quant.h:
// one f32 scale per (chunk, key head) row) and score that. The CPU scanner then routes over the
// dequantized keys (quant_route.h: the reference); the "cuda" scanner keeps codes + scales resident
// and dequantizes in its score kernel exactly as key_quant's reader does. The per-row scale belongs
// to one key head, so the head-mean fold is unchanged: the key a query head h meets is row
// (c, h/g) = decode(codes)·scale_{c,h/g} whatever the other heads' scales are.
//
// Ownership/threads: a scanner is owned by one MemoryIndex (or test) and used by one thread at a time.
// The RouteKeys passed to scan() are borrowed for the call; a device scanner may cache a copy keyed by
// (layer position, shard, data pointer, size), so the caller must keep a shard's key bytes unchanged
// while it lives (a Bank's mapped spans are). The registry is process-wide and thread-safe.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(auto scanner, createRouteScanner("cuda", {.device = 0}));
//     index.setScanner(std::move(scanner));       // MemoryIndex::route now scans on the GPU
//
// Failure codes: scan(): InvalidArgument (shapes, dtype, tables, filter size, with 8-bit storage a
// non-finite key), OutOfMemory (the quantized copy), Cancelled, and for device
// scanners DeviceError / OutOfMemory. createRouteScanner(): Unsupported (no factory of that name), plus
// what the factory returns (DeviceError when the device cannot be used).
#pragma once

#include "core/memory/router.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace msa::memory {

// One shard of one routing layer as the scanner sees it.
struct ScanShard {
    RouteKeys keys;                          // keys.docIds must be set: ids order ties and must be unique among candidates
    std::span<const uint8_t> allowed = {};   // per document of the shard; empty: all
};

// One shard's answer, ScoredDocument::index = the document's row in the shard's table. `top` is
// either the shard's own top-n (CpuRouteScanner) or the shard's members of the top-n of all shards
// together (a device scanner that scans a layer's shards as one table); mergeShardTops(lists, n)
// gives the same global top-n from either.
struct ShardScan {
    std::vector<ScoredDocument> top;   // score descending, id ascending on ties
    size_t nCandidates = 0;            // documents with a finite score (allowed and non-empty)
};

class RouteScanner {
public:
    virtual ~RouteScanner() = default;
    virtual std::string name() const = 0;   // "cpu", "cuda:0"
    // Scores every shard for routing-layer position `layerPos` and keeps top-n lists (see ShardScan).
    // Results are returned in shard order (one ShardScan per entry of `shards`).
    virtual Result<std::vector<ShardScan>> scan(const RoutingConfig& cfg, size_t layerPos, const RoutingQueries& queries,
                                                std::span<const ScanShard> shards, size_t n,
                                                const CancelToken* cancel) = 0;
};

// How a scanner holds routing keys (see the header comment).
enum class KeyStorage { Native, Fp8E4M3, Int8 };
std::string_view keyStorageName(KeyStorage s);                      // "native", "fp8-e4m3", "int8"
std::optional<KeyStorage> parseKeyStorage(std::string_view name);   // those, "fp8", "e4m3", "bf16"/"f32" = native

// The CPU scan: Router::scoreDocuments per shard, then selectTop. Owns the Router's threads. With an
// 8-bit storage it routes over each shard's dequantized keys (quantized once per shard and cached by
// (layer position, shard, key span), as the GPU scanner caches its upload).
class CpuRouteScanner final : public RouteScanner {
public:
    explicit CpuRouteScanner(size_t nThreads = 0, KeyStorage storage = KeyStorage::Native);
    ~CpuRouteScanner() override;
    std::string name() const override { return "cpu"; }
    Result<std::vector<ShardScan>> scan(const RoutingConfig& cfg, size_t layerPos, const RoutingQueries& queries,
                                        std::span<const ScanShard> shards, size_t n, const CancelToken* cancel) override;
    Router& router() { return m_router; }
    KeyStorage keyStorage() const { return m_storage; }

private:
    struct Dequantized;
    Router m_router;
    KeyStorage m_storage = KeyStorage::Native;
    std::map<std::pair<size_t, size_t>, std::unique_ptr<Dequantized>> m_dequantized;   // (layerPos, shard)
};

// Folded head-mean queries [nTokens][nKvHeads][D] (see the header comment). InvalidArgument when the
// query heads are not a multiple of nKvHeads or the rows have the wrong size.
Result<std::vector<float>> foldHeadMean(const RoutingQueries& queries, size_t nKvHeads);

struct RouteScannerOptions {
    int device = 0;          // device ordinal for device scanners
    size_t nThreads = 0;     // CPU threads (the CPU scanner, and a device scanner's CPU fallback)
    KeyStorage keyStorage = KeyStorage::Native;   // 8-bit routing keys (parseKeyStorage for a CLI value)
};

using RouteScannerFactory = std::function<Result<std::unique_ptr<RouteScanner>>(const RouteScannerOptions&)>;

// Adds or replaces the factory for `name` ("cuda"). "cpu" is always known.
void registerRouteScannerFactory(const std::string& name, RouteScannerFactory factory);
Result<std::unique_ptr<RouteScanner>> createRouteScanner(const std::string& name, const RouteScannerOptions& options = {});
std::vector<std::string> routeScannerNames();   // sorted, "cpu" included

}  // namespace msa::memory

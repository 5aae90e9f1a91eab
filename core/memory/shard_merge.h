// shard_merge.h: the host half of Memory Parallel (msa-spec §2.6, §6.2; issue 6 item 6): the exact
// global top-k from per-shard candidate lists, the sharding plan that spreads whole documents over W
// workers by chunk count, the split of one layer's routing keys into per-worker tables, and the
// order-preserving 32-bit encoding of scores that the device top-k sorts by.
//
// Exactness: the ranking is a total order (score descending, then document id ascending; ids unique
// among candidates). If every shard contributes its own first min(k, candidates) documents in that
// order, the global first k are among the contributions, so merging the W·k candidates with the same
// order gives exactly the single-shard result, ids and scores, ties included (tst_shard_merge).
//
// Plan: documents in table order, each to the worker with the fewest chunks so far, the lowest worker
// on ties (the reference's balanced_bucket_partition, msa_service.py:1451-1476); documents are never
// split. A worker's documents keep their table order.
//
// Ownership/threads: plain values and pure functions; any thread.
//
// Usage:
//     ShardPlan plan = planShards(chunkCounts, nGpus);
//     MSA_ASSIGN_OR_RETURN(std::vector<ShardTable> tables, splitRouteKeys(keys, allowed, plan));
//     ... each worker scans tables[w].view() and keeps its top-k ...
//     std::vector<ShardedDocument> top = mergeShardTops(perWorkerTops, k);
//
// Failure codes: splitRouteKeys(): InvalidArgument (plan and document table disagree, key bytes of
// the wrong size, filter size).
#pragma once

#include "core/memory/router.h"
#include "core/util/status.h"

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace msa::memory {

// True when a ranks before b: higher score, then lower id (the order of Router and MemoryIndex).
bool rankedBefore(const ScoredDocument& a, const ScoredDocument& b);

struct ShardedDocument {
    uint32_t shard = 0;     // which list it came from
    ScoredDocument doc;     // as the shard reported it (index = row in that shard's table)
    bool operator==(const ShardedDocument&) const = default;
};

// The first min(k, Σ sizes) documents of the union of the lists in ranking order. Each list must be
// its shard's top-min(k, candidates) in ranking order for the result to be the exact global top-k.
// NaN and −inf scores are dropped (they are never candidates).
std::vector<ShardedDocument> mergeShardTops(std::span<const std::vector<ScoredDocument>> tops, size_t k);

struct ShardPlan {
    size_t nWorkers = 0;
    std::vector<uint32_t> workerOf;               // per document of the table
    std::vector<std::vector<uint32_t>> docs;      // per worker: its documents' table rows, ascending
    std::vector<uint64_t> chunks;                 // per worker: chunks held
};

// Greedy balanced plan over documents with `chunkCounts` (see the header comment). nWorkers ≥ 1.
ShardPlan planShards(std::span<const uint64_t> chunkCounts, size_t nWorkers);

// One worker's copy of one layer's routing keys and its document table.
struct ShardTable {
    model::DType dtype = model::DType::BF16;
    size_t nHeads = 0, headDim = 0, nChunks = 0;
    std::vector<std::byte> keys;        // nChunks × nHeads × headDim elements of dtype
    std::vector<uint64_t> offsets{0};   // nDocs + 1
    std::vector<uint64_t> ids;          // document ids (the source's ids, or its row when it has none)
    std::vector<uint32_t> sourceRows;   // row of each document in the source table
    std::vector<uint8_t> allowed;       // empty when the source had no filter
    RouteKeys view() const;             // borrows this table
};

// Splits `keys` (with its optional filter) into one table per worker of `plan`.
Result<std::vector<ShardTable>> splitRouteKeys(const RouteKeys& keys, std::span<const uint8_t> allowed, const ShardPlan& plan);

// The scan's score-key arithmetic, as functions the CUDA kernels call too (nvcc sees __host__
// __device__; core never includes a CUDA header, the macro only spells the qualifiers), so the CPU
// tests cover exactly what the device computes.
#if defined(__CUDACC__)
#define MSA_SCAN_HD __host__ __device__
#else
#define MSA_SCAN_HD
#endif

// Order-preserving bits of a score: a > b  ⇔  orderedScoreBits(a) > orderedScoreBits(b) and
// a == b  ⇔  equal bits, for non-NaN floats (−0 is folded into +0 first: they compare equal, so they
// must tie and rank by id as rankedBefore does), and orderedScoreBits(−inf) > 0, so 0 can mean "no
// candidate". The device top-k sorts 64-bit keys (orderedScoreBits(score) << 32 | ~idRank), which
// ranks exactly as rankedBefore when idRank is the rank of the document's id among the shard's ids.
MSA_SCAN_HD inline uint32_t orderedScoreBits(float score) {
    if (score == 0.0f) score = 0.0f;   // −0 → +0
#if defined(__CUDA_ARCH__)
    const uint32_t u = __float_as_uint(score);
#else
    uint32_t u = 0;
    std::memcpy(&u, &score, sizeof u);
#endif
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
MSA_SCAN_HD inline float scoreFromOrderedBits(uint32_t bits) {
    const uint32_t u = (bits & 0x80000000u) ? (bits & 0x7FFFFFFFu) : ~bits;
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f = 0;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}
// A document score's key bits as the device top-k holds them: 0 ("no candidate") for NaN and −inf,
// which selectTop and mergeShardTops never rank; orderedScoreBits otherwise (+inf included, as the
// CPU counts it). Every nonzero value is a candidate, so the device's count is the CPU's nCandidates.
MSA_SCAN_HD inline uint32_t candidateScoreBits(float score) {
    if (score != score || score < -3.40282347e38f) return 0u;   // NaN, −inf
    return orderedScoreBits(score);
}
MSA_SCAN_HD inline uint64_t candidateKey(float score, uint32_t idRank) {
    return (uint64_t(orderedScoreBits(score)) << 32) | uint64_t(~idRank);
}

// The device top-k (gpu/route_scan.cu, route_scan.h step 2): blocks of kTopKBlockKeys keys (0 past
// the end) sorted descending in shared memory by a bitonic network of compare-exchange steps
// (bitonicCompareExchange for every i of a block, one (k, j) step at a time), each block keeping its
// first n; the survivors (blocks · n keys) are sorted again the same way until one block remains.
// topKPassBlocks() is the launch plan, topKScratchKeys() the size of each of the two candidate
// buffers the passes alternate between, emulateDeviceTopK() the whole thing on the host (the network
// run step by step: the pairs of one step are disjoint, so sequential order equals the device's).
inline constexpr size_t kTopKBlockKeys = 2048;
MSA_SCAN_HD inline void bitonicCompareExchange(uint64_t* s, uint32_t i, uint32_t j, uint32_t k) {
    const uint32_t ixj = i ^ j;
    if (ixj <= i) return;
    const uint64_t a = s[i], b = s[ixj];
    const bool descending = (i & k) == 0;
    if (descending ? (a < b) : (a > b)) {
        s[i] = b;
        s[ixj] = a;
    }
}
// Blocks of each pass for nDocs keys and top-n (1 ≤ n ≤ kTopKBlockKeys / 2): the first pass has
// max(1, ⌈nDocs / block⌉) blocks, each later one ⌈previous · n / block⌉, ending with a single block.
std::vector<size_t> topKPassBlocks(size_t nDocs, size_t n);
size_t topKScratchKeys(size_t nDocs, size_t n);
// The n keys the device top-k leaves in its last block, in order (0 for empty slots).
std::vector<uint64_t> emulateDeviceTopK(std::span<const uint64_t> keys, size_t n);

// For each document, the rank of its id among `ids` (ascending id, then row): what candidateKey takes.
std::vector<uint32_t> idRanks(std::span<const uint64_t> ids);

}  // namespace msa::memory

// memory_parallel.h: Memory Parallel over the local GPUs (issue 6 item 6; msa-spec §6.1-6.4).
//
// The bank's documents are spread over W ranks by chunk count (memory::planShards: whole documents,
// each to the least-loaded rank, the reference's balanced_bucket_partition). Every rank keeps its
// documents' routing keys of every routing layer resident on its GPU (gpu/route_scan.h). Per routing
// layer and query (route()):
//   1. the root (the generating GPU) folds the head mean into the prepared routing queries and
//      broadcasts them (ncclBroadcast; the reference all-gathers the router queries, §6.4 step 1);
//   2. each rank scans its shard and keeps its top-n as a fixed-size candidate array (n + 1 slots);
//   3. the arrays are exchanged with one ncclAllGather (§6.4 steps 2-3);
//   4. the root merges them exactly (memory::mergeShardTops: score descending, id ascending), which
//      is the single-shard result, ids and scores, whatever W (tests/gpu/tst_gpu_routing.cpp);
//   5. the selected documents' content K̄/V̄ is gathered to the root GPU by its ContentTier
//      (content()): in one process all shards' content lives in the same mapped host bank, so the
//      root copies the winners' chunks host → root GPU directly, instead of the reference's
//      all-to-all of K/V between ranks (§6.4 steps 4-6), which moves each chunk twice.
// World size 1 runs the same code: the broadcast and the exchange become plain copies, no NCCL call.
// NCCL is used when the build has it (MSA_HAVE_NCCL), W > 1 and the devices are distinct; otherwise
// (several ranks on one GPU, as the shard-reduction test does, or a build without NCCL) the same
// steps run as device-to-device and device-to-host copies.
//
// Ownership/threads: borrows the Bank (must outlive it); owns the communicators, streams, per-rank
// device buffers and the root's ContentTier. One host thread drives all ranks (NCCL group calls), one
// call at a time. route() is collective over all ranks, as the reference's doc_query.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(auto mp, MemoryParallel::create(bank, cfg, {.devices = {0, 1}}));
//     MSA_ASSIGN_OR_RETURN(memory::LayerRouting r, mp->route(li, queries, 10));
//     MSA_RETURN_IF_ERROR(mp->content().stage(li, r.selected));
//     MSA_ASSIGN_OR_RETURN(DeviceRows rows, mp->content().acquire(li, computeStream));
//
// Failure codes: create(): InvalidArgument (no device, a device index out of range, bank and config
// disagree), DeviceError (CUDA or NCCL failure, naming the call), OutOfMemory. route(): InvalidArgument
// (layer position, query shape, n above kMaxScanTopN), Unsupported (head max: not foldable; use the
// CPU scan), DeviceError, OutOfMemory.
#pragma once

#include "core/memory/bank.h"
#include "core/memory/route_scanner.h"
#include "core/memory/router.h"
#include "core/memory/shard_merge.h"
#include "core/memory/sparse.h"
#include "core/util/status.h"
#include "gpu/memory_tier.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

namespace msa::gpu {

struct MemoryParallelOptions {
    std::vector<int> devices;        // one rank per entry (a device may repeat: ranks then share it)
    size_t rootRank = 0;             // the generating GPU's rank
    bool registerMapping = true;     // ContentTierOptions::registerMapping
    // Routing keys resident as the bank stores them, or as 8-bit codes + per-(chunk, head) scales
    // (route_scan.h "8-bit keys"). Scales are per row, so a rank's 8-bit rows are the whole bank's:
    // the exact merge still gives the world-size-1 result of the same storage.
    memory::KeyStorage keyStorage = memory::KeyStorage::Native;
};

class MemoryParallel {
public:
    static Result<std::unique_ptr<MemoryParallel>> create(const memory::Bank& bank, const memory::RoutingConfig& cfg,
                                                          const MemoryParallelOptions& options);
    ~MemoryParallel();
    MemoryParallel(const MemoryParallel&) = delete;
    MemoryParallel& operator=(const MemoryParallel&) = delete;

    size_t worldSize() const;
    bool usesNccl() const;
    const memory::ShardPlan& plan() const;   // over the bank's document rows
    size_t residentBytes(size_t rank) const;

    // Candidate filter by memory document id (nullopt: every live document); tombstones never compete.
    void setFilter(std::optional<std::unordered_set<int64_t>> ids);

    // One routing layer over all ranks: the exact global top (LayerRouting as MemoryIndex::route
    // gives it: selected = top-k, top = top-max(topN, 1), index = bank row).
    Result<memory::LayerRouting> route(size_t li, const memory::RoutingQueries& queries, size_t topN);

    // The root GPU's content tier (selected K̄/V̄ → device rows).
    ContentTier& content();

    struct Impl;

private:
    explicit MemoryParallel(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m;
};

}  // namespace msa::gpu

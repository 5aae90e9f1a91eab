// memory_parallel.cu: see memory_parallel.h.
#include "gpu/memory_parallel.h"

#include "core/memory/route_scanner.h"
#include "gpu/cuda_check.h"
#include "gpu/device_util.h"
#include "gpu/route_scan.h"

#include <cuda_runtime.h>
#if MSA_HAVE_NCCL
#include <nccl.h>
#endif

#include <algorithm>
#include <set>
#include <string>

#if MSA_HAVE_NCCL
#define MSA_NCCL_CHECK(expr)                                                                                     \
    do {                                                                                                         \
        const ncclResult_t msa_nccl_r_ = (expr);                                                                 \
        if (msa_nccl_r_ != ncclSuccess)                                                                          \
            return ::msa::Status(::msa::ErrorCode::DeviceError, std::string(#expr) + " failed at " __FILE__ ":" + \
                                                                    std::to_string(__LINE__) + ": " +             \
                                                                    ncclGetErrorString(msa_nccl_r_));            \
    } while (0)
#endif

namespace msa::gpu {

#if MSA_HAVE_NCCL
namespace {
Status ncclStatus(ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return Status::ok();
    return Status(ErrorCode::DeviceError, std::string(what) + " failed: " + ncclGetErrorString(r));
}
// One collective per rank inside ncclGroupStart/ncclGroupEnd. The group is closed even when a call
// fails: NCCL's group depth is per host thread, so returning from inside an open group would turn
// every later NCCL call of this thread (the next route(), the communicators' destruction) into part
// of a group that never launches. ncclGroupEnd then reports the recorded error and drops the
// group's operations instead of launching a partial collective.
template <typename Ranks, typename Fn>
Status ncclGroup(Ranks& ranks, const char* what, Fn&& enqueue) {
    MSA_RETURN_IF_ERROR(ncclStatus(ncclGroupStart(), "ncclGroupStart"));
    ncclResult_t first = ncclSuccess;
    for (auto& r : ranks) {
        first = enqueue(r);
        if (first != ncclSuccess) break;
    }
    const ncclResult_t end = ncclGroupEnd();
    MSA_RETURN_IF_ERROR(ncclStatus(first, what));
    return ncclStatus(end, "ncclGroupEnd");
}
}  // namespace
#endif

struct MemoryParallel::Impl {
    struct Rank {
        int device = 0;
        cudaStream_t stream = nullptr;
#if MSA_HAVE_NCCL
        ncclComm_t comm = nullptr;
#endif
        std::vector<std::unique_ptr<DeviceRouteShard>> layers;   // per routing-layer position
        std::unique_ptr<ScanWorkspace> ws;
        std::vector<uint32_t> rows;       // bank rows of the rank's documents, in shard order
        std::vector<uint8_t> allowed;     // per document of the shard
        float* folded = nullptr;
        size_t foldedCapacity = 0;
        DeviceCandidate* send = nullptr;
        DeviceCandidate* recv = nullptr;  // W · slots (NCCL path)
        size_t slotCapacity = 0;
    };
    const memory::Bank* bank = nullptr;
    memory::RoutingConfig cfg;
    size_t root = 0;
    bool nccl = false;
    memory::ShardPlan plan;
    std::vector<Rank> ranks;
    std::unique_ptr<ContentTier> tier;
    DeviceCandidate* hostSlots = nullptr;   // pinned, W · slots
    size_t hostSlotCapacity = 0;
    std::optional<std::unordered_set<int64_t>> filter;

    void applyFilter() {
        const auto& docs = bank->documents();
        for (Rank& r : ranks) {
            r.allowed.resize(r.rows.size());
            for (size_t j = 0; j < r.rows.size(); ++j) {
                const memory::DocumentEntry& d = docs[r.rows[j]];
                r.allowed[j] = d.live() && (!filter || filter->count(d.id)) ? 1 : 0;
            }
        }
    }
    Status ensureBuffers(size_t foldedFloats, size_t slots);
    void destroy();
};

MemoryParallel::MemoryParallel(std::unique_ptr<Impl> impl) : m(std::move(impl)) {}

void MemoryParallel::Impl::destroy() {
    int prev = -1;
    cudaGetDevice(&prev);
    tier.reset();
    for (Rank& r : ranks) {
        if (cudaSetDevice(r.device) != cudaSuccess) continue;
        if (r.stream) cudaStreamSynchronize(r.stream);
        r.layers.clear();
        if (r.ws) r.ws->release();
        r.ws.reset();
        if (r.folded) cudaFree(r.folded);
        if (r.send) cudaFree(r.send);
        if (r.recv) cudaFree(r.recv);
#if MSA_HAVE_NCCL
        if (r.comm) ncclCommDestroy(r.comm);
#endif
        if (r.stream) cudaStreamDestroy(r.stream);
    }
    ranks.clear();
    if (hostSlots) cudaFreeHost(hostSlots);
    hostSlots = nullptr;
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
}

MemoryParallel::~MemoryParallel() {
    if (m) m->destroy();
}

Result<std::unique_ptr<MemoryParallel>> MemoryParallel::create(const memory::Bank& bank, const memory::RoutingConfig& cfg,
                                                               const MemoryParallelOptions& options) {
    const size_t W = options.devices.size();
    if (W == 0) return Status(ErrorCode::InvalidArgument, "Memory Parallel needs at least one device");
    if (options.rootRank >= W) return Status(ErrorCode::InvalidArgument, "root rank outside the world");
    int count = 0;
    MSA_CUDA_CHECK(cudaGetDeviceCount(&count));
    for (int d : options.devices)
        if (d < 0 || d >= count)
            return Status(ErrorCode::InvalidArgument, "no CUDA device " + std::to_string(d) + " (" + std::to_string(count) + " present)");
    const memory::BankParams& bp = bank.params();
    if (bp.routingLayers.size() != cfg.layers.size() || bp.nRouteHeads != cfg.nRouteHeads || bp.headDim != cfg.headDim)
        return Status(ErrorCode::InvalidArgument, "the bank's routing layers or key shape differ from the routing configuration");

    auto impl = std::make_unique<Impl>();
    impl->bank = &bank;
    impl->cfg = cfg;
    impl->cfg.topK = bp.topK;
    impl->root = options.rootRank;
    std::unique_ptr<MemoryParallel> mp(new MemoryParallel(std::move(impl)));
    Impl& I = *mp->m;
    const auto& docs = bank.documents();
    std::vector<uint64_t> chunks(docs.size());
    for (size_t i = 0; i < docs.size(); ++i) chunks[i] = docs[i].nChunks;
    I.plan = memory::planShards(chunks, W);
    I.ranks.resize(W);
    DeviceGuard g;
    for (size_t r = 0; r < W; ++r) {
        Impl::Rank& rk = I.ranks[r];
        rk.device = options.devices[r];
        MSA_RETURN_IF_ERROR(g.enter(rk.device));
        MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&rk.stream, cudaStreamNonBlocking));
        rk.ws = std::make_unique<ScanWorkspace>();
        rk.rows = I.plan.docs[r];
        // Each layer's keys of this rank's documents, gathered from the mapped bank and uploaded once.
        std::vector<uint64_t> offsets{0}, ids;
        for (uint32_t row : rk.rows) {
            offsets.push_back(offsets.back() + docs[row].nChunks);
            ids.push_back(static_cast<uint64_t>(docs[row].id));
        }
        for (size_t li = 0; li < bp.routingLayers.size(); ++li) {
            std::vector<std::byte> bytes;
            for (uint32_t row : rk.rows) {
                const std::span<const std::byte> s = bank.routingKeysOf(row, li);
                bytes.insert(bytes.end(), s.begin(), s.end());
            }
            memory::RouteKeys keys;
            keys.data = bytes;
            keys.dtype = bp.storage;
            keys.nChunks = offsets.back();
            keys.nHeads = bp.nRouteHeads;
            keys.headDim = bp.headDim;
            keys.chunkOffsets = offsets;
            keys.docIds = ids;
            MSA_ASSIGN_OR_RETURN(std::unique_ptr<DeviceRouteShard> shard, DeviceRouteShard::upload(keys, rk.stream, options.keyStorage));
            rk.layers.push_back(std::move(shard));
        }
    }
    I.applyFilter();
    const std::set<int> distinct(options.devices.begin(), options.devices.end());
#if MSA_HAVE_NCCL
    if (W > 1 && distinct.size() == W) {
        std::vector<ncclComm_t> comms(W);
        MSA_NCCL_CHECK(ncclCommInitAll(comms.data(), static_cast<int>(W), options.devices.data()));
        for (size_t r = 0; r < W; ++r) I.ranks[r].comm = comms[r];
        I.nccl = true;
    }
#endif
    MSA_ASSIGN_OR_RETURN(I.tier, ContentTier::create(bank, options.devices[options.rootRank], {.registerMapping = options.registerMapping}));
    return Result<std::unique_ptr<MemoryParallel>>(std::move(mp));
}

size_t MemoryParallel::worldSize() const { return m->ranks.size(); }
bool MemoryParallel::usesNccl() const { return m->nccl; }
const memory::ShardPlan& MemoryParallel::plan() const { return m->plan; }
size_t MemoryParallel::residentBytes(size_t rank) const {
    size_t b = 0;
    if (rank < m->ranks.size())
        for (const auto& s : m->ranks[rank].layers) b += s->deviceBytes();
    return b;
}
ContentTier& MemoryParallel::content() { return *m->tier; }

void MemoryParallel::setFilter(std::optional<std::unordered_set<int64_t>> ids) {
    m->filter = std::move(ids);
    m->applyFilter();
}

Status MemoryParallel::Impl::ensureBuffers(size_t foldedFloats, size_t slots) {
    const size_t W = ranks.size();
    DeviceGuard g;
    bool grow = W * slots > hostSlotCapacity;
    for (const Rank& r : ranks) grow = grow || foldedFloats > r.foldedCapacity || slots > r.slotCapacity;
    if (!grow) return Status::ok();
    // Every rank's stream may touch another rank's buffers or the shared pinned slots (peer copies
    // read root.folded, D2H copies write hostSlots), and a route() that failed half-way returns with
    // work still enqueued: drain all of them before anything is freed.
    for (const Rank& r : ranks) {
        MSA_RETURN_IF_ERROR(g.enter(r.device));
        MSA_CUDA_CHECK(cudaStreamSynchronize(r.stream));
    }
    for (Rank& r : ranks) {
        if (foldedFloats <= r.foldedCapacity && slots <= r.slotCapacity) continue;
        MSA_RETURN_IF_ERROR(g.enter(r.device));
        if (foldedFloats > r.foldedCapacity) {
            if (r.folded) cudaFree(r.folded);
            r.folded = nullptr;
            r.foldedCapacity = 0;
            MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&r.folded), foldedFloats * sizeof(float)));
            r.foldedCapacity = foldedFloats;
        }
        if (slots > r.slotCapacity) {
            if (r.send) cudaFree(r.send);
            if (r.recv) cudaFree(r.recv);
            r.send = r.recv = nullptr;
            r.slotCapacity = 0;
            MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&r.send), slots * sizeof(DeviceCandidate)));
            if (nccl) MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&r.recv), W * slots * sizeof(DeviceCandidate)));
            r.slotCapacity = slots;
        }
    }
    if (W * slots > hostSlotCapacity) {
        if (hostSlots) cudaFreeHost(hostSlots);
        hostSlots = nullptr;
        hostSlotCapacity = 0;
        MSA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&hostSlots), W * slots * sizeof(DeviceCandidate)));
        hostSlotCapacity = W * slots;
    }
    return Status::ok();
}

Result<memory::LayerRouting> MemoryParallel::route(size_t li, const memory::RoutingQueries& queries, size_t topN) {
    Impl& I = *m;
    if (li >= I.cfg.layers.size()) return Status(ErrorCode::InvalidArgument, "no routing layer position " + std::to_string(li));
    if (I.cfg.headReduce != memory::HeadReduce::Mean)
        return Status(ErrorCode::Unsupported, "Memory Parallel folds the head mean; head max routes on the CPU");
    const size_t n = std::max(topN, I.cfg.topK);
    if (n > kMaxScanTopN)
        return Status(ErrorCode::InvalidArgument, "top-" + std::to_string(n) + " above the GPU limit " + std::to_string(kMaxScanTopN));
    if (queries.headDim != I.cfg.headDim)
        return Status(ErrorCode::InvalidArgument, "routing queries of head dim " + std::to_string(queries.headDim));
    MSA_ASSIGN_OR_RETURN(std::vector<float> folded, memory::foldHeadMean(queries, I.cfg.nRouteHeads));
    const size_t slots = n + 1, W = I.ranks.size();
    MSA_RETURN_IF_ERROR(I.ensureBuffers(folded.size(), slots));
    const size_t foldedBytes = folded.size() * sizeof(float), slotBytes = slots * sizeof(DeviceCandidate);
    Impl::Rank& root = I.ranks[I.root];
    // On an error return, work already enqueued on the ranks' streams (peer copies reading
    // root.folded, copies into the pinned hostSlots) is drained, so the next call may rewrite or
    // free those buffers.
    struct DrainOnError {
        std::vector<Impl::Rank>& ranks;
        bool done = false;
        ~DrainOnError() {
            if (done) return;
            int prev = -1;
            cudaGetDevice(&prev);
            for (Impl::Rank& r : ranks)
                if (cudaSetDevice(r.device) == cudaSuccess && r.stream) cudaStreamSynchronize(r.stream);
            if (prev >= 0) cudaSetDevice(prev);
            cudaGetLastError();
        }
    } drain{I.ranks};
    DeviceGuard g;

    // 1. queries → root, then broadcast.
    MSA_RETURN_IF_ERROR(g.enter(root.device));
    MSA_CUDA_CHECK(cudaMemcpyAsync(root.folded, folded.data(), foldedBytes, cudaMemcpyHostToDevice, root.stream));
    MSA_CUDA_CHECK(cudaStreamSynchronize(root.stream));   // `folded` is pageable and the other ranks read root.folded
    if (I.nccl) {
#if MSA_HAVE_NCCL
        MSA_RETURN_IF_ERROR(ncclGroup(I.ranks, "ncclBroadcast of the folded routing queries", [&](Impl::Rank& r) {
            return ncclBroadcast(r.folded, r.folded, folded.size(), ncclFloat, static_cast<int>(I.root), r.comm, r.stream);
        }));
#endif
    } else {
        for (Impl::Rank& r : I.ranks) {
            if (&r == &root) continue;
            MSA_RETURN_IF_ERROR(g.enter(r.device));
            MSA_CUDA_CHECK(cudaMemcpyPeerAsync(r.folded, r.device, root.folded, root.device, foldedBytes, r.stream));
        }
    }
    // 2. per-rank scans.
    for (Impl::Rank& r : I.ranks) {
        MSA_RETURN_IF_ERROR(g.enter(r.device));
        DeviceRouteShard& shard = *r.layers[li];
        MSA_RETURN_IF_ERROR(shard.setAllowed(r.allowed, r.stream));
        MSA_RETURN_IF_ERROR(enqueueScan(shard, r.folded, queries.nTokens, I.cfg.queryReduce, I.cfg.chunkReduce, n, *r.ws, r.send, r.stream));
    }
    // 3. candidate exchange.
    if (I.nccl) {
#if MSA_HAVE_NCCL
        // DeviceCandidate slots travel as bytes (16 per slot): rank r's n + 1 slots land at recv + r·slots.
        MSA_RETURN_IF_ERROR(ncclGroup(I.ranks, "ncclAllGather of the candidate slots", [&](Impl::Rank& r) {
            return ncclAllGather(r.send, r.recv, slotBytes, ncclUint8, r.comm, r.stream);
        }));
#endif
        MSA_RETURN_IF_ERROR(g.enter(root.device));
        MSA_CUDA_CHECK(cudaMemcpyAsync(I.hostSlots, root.recv, W * slotBytes, cudaMemcpyDeviceToHost, root.stream));
    } else {
        for (size_t ri = 0; ri < W; ++ri) {
            Impl::Rank& r = I.ranks[ri];
            MSA_RETURN_IF_ERROR(g.enter(r.device));
            MSA_CUDA_CHECK(cudaMemcpyAsync(I.hostSlots + ri * slots, r.send, slotBytes, cudaMemcpyDeviceToHost, r.stream));
        }
    }
    for (Impl::Rank& r : I.ranks) {
        MSA_RETURN_IF_ERROR(g.enter(r.device));
        MSA_CUDA_CHECK(cudaStreamSynchronize(r.stream));
    }
    drain.done = true;   // nothing of this call is in flight any more
    // 4. exact merge on the root's host thread.
    std::vector<std::vector<memory::ScoredDocument>> lists(W);
    memory::LayerRouting out;
    out.layer = I.cfg.layers[li];
    for (size_t ri = 0; ri < W; ++ri) {
        memory::ShardScan s = decodeCandidates({I.hostSlots + ri * slots, slots}, n);
        out.nCandidates += s.nCandidates;
        lists[ri] = std::move(s.top);
    }
    std::vector<memory::ScoredDocument> top;
    for (const memory::ShardedDocument& d : memory::mergeShardTops(lists, n)) {
        memory::ScoredDocument doc = d.doc;
        if (d.doc.index >= I.ranks[d.shard].rows.size())
            return Status(ErrorCode::DeviceError, "rank " + std::to_string(d.shard) + " returned a document row outside its shard");
        doc.index = I.ranks[d.shard].rows[d.doc.index];   // shard row → bank row
        top.push_back(doc);
    }
    out.selected.assign(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(std::min(top.size(), I.cfg.topK)));
    top.resize(std::min(top.size(), std::max<size_t>(topN, 1)));
    if (top.size() < out.selected.size()) top = out.selected;
    out.top = std::move(top);
    for (const memory::ScoredDocument& d : out.selected) out.nChunks += I.bank->documents()[d.index].nChunks;
    return out;
}

}  // namespace msa::gpu

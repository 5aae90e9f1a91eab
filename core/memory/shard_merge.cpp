#include "core/memory/shard_merge.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace msa::memory {

bool rankedBefore(const ScoredDocument& a, const ScoredDocument& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.id < b.id;
}

std::vector<ShardedDocument> mergeShardTops(std::span<const std::vector<ScoredDocument>> tops, size_t k) {
    std::vector<ShardedDocument> all;
    for (size_t s = 0; s < tops.size(); ++s)
        for (const ScoredDocument& d : tops[s]) {
            if (std::isnan(d.score) || d.score == -std::numeric_limits<float>::infinity()) continue;
            all.push_back({static_cast<uint32_t>(s), d});
        }
    const size_t n = std::min(k, all.size());
    std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                      [](const ShardedDocument& a, const ShardedDocument& b) { return rankedBefore(a.doc, b.doc); });
    all.resize(n);
    return all;
}

ShardPlan planShards(std::span<const uint64_t> chunkCounts, size_t nWorkers) {
    ShardPlan plan;
    plan.nWorkers = std::max<size_t>(nWorkers, 1);
    plan.docs.resize(plan.nWorkers);
    plan.chunks.assign(plan.nWorkers, 0);
    plan.workerOf.resize(chunkCounts.size());
    for (size_t d = 0; d < chunkCounts.size(); ++d) {
        // min_element returns the first minimum: the lowest worker on ties.
        const size_t w = static_cast<size_t>(std::min_element(plan.chunks.begin(), plan.chunks.end()) - plan.chunks.begin());
        plan.workerOf[d] = static_cast<uint32_t>(w);
        plan.docs[w].push_back(static_cast<uint32_t>(d));
        plan.chunks[w] += chunkCounts[d];
    }
    return plan;
}

RouteKeys ShardTable::view() const {
    RouteKeys k;
    k.data = keys;
    k.dtype = dtype;
    k.nChunks = nChunks;
    k.nHeads = nHeads;
    k.headDim = headDim;
    k.chunkOffsets = offsets;
    k.docIds = ids;
    return k;
}

Result<std::vector<ShardTable>> splitRouteKeys(const RouteKeys& keys, std::span<const uint8_t> allowed, const ShardPlan& plan) {
    const size_t nDocs = keys.nDocs();
    if (plan.workerOf.size() != nDocs)
        return Status(ErrorCode::InvalidArgument, "the shard plan covers " + std::to_string(plan.workerOf.size()) +
                                                      " documents, the key table " + std::to_string(nDocs));
    if (!allowed.empty() && allowed.size() != nDocs)
        return Status(ErrorCode::InvalidArgument, "candidate filter has " + std::to_string(allowed.size()) + " entries for " +
                                                      std::to_string(nDocs) + " documents");
    if (keys.dtype != model::DType::F32 && keys.dtype != model::DType::BF16)
        return Status(ErrorCode::InvalidArgument, "routing keys must be f32 or bf16");
    const size_t elem = keys.dtype == model::DType::F32 ? 4 : 2;
    const size_t chunkBytes = keys.nHeads * keys.headDim * elem;
    if (keys.data.size() != keys.nChunks * chunkBytes || (nDocs && keys.chunkOffsets.back() != keys.nChunks))
        return Status(ErrorCode::InvalidArgument, "routing keys and document table disagree in size");
    std::vector<ShardTable> out(plan.nWorkers);
    for (size_t w = 0; w < plan.nWorkers; ++w) {
        ShardTable& t = out[w];
        t.dtype = keys.dtype;
        t.nHeads = keys.nHeads;
        t.headDim = keys.headDim;
        t.nChunks = 0;
        for (uint32_t d : plan.docs[w]) {
            if (d >= nDocs || plan.workerOf[d] != w) return Status(ErrorCode::InvalidArgument, "inconsistent shard plan");
            const uint64_t c0 = keys.chunkOffsets[d], c1 = keys.chunkOffsets[d + 1];
            if (c1 < c0) return Status(ErrorCode::InvalidArgument, "document table not ascending");
            t.keys.insert(t.keys.end(), keys.data.begin() + static_cast<std::ptrdiff_t>(c0 * chunkBytes),
                          keys.data.begin() + static_cast<std::ptrdiff_t>(c1 * chunkBytes));
            t.nChunks += c1 - c0;
            t.offsets.push_back(t.nChunks);
            t.ids.push_back(keys.docIds.empty() ? d : keys.docIds[d]);
            t.sourceRows.push_back(d);
            if (!allowed.empty()) t.allowed.push_back(allowed[d]);
        }
    }
    return out;
}

std::vector<uint32_t> idRanks(std::span<const uint64_t> ids) {
    std::vector<uint32_t> order(ids.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return ids[a] < ids[b]; });
    std::vector<uint32_t> rank(ids.size());
    for (size_t r = 0; r < order.size(); ++r) rank[order[r]] = static_cast<uint32_t>(r);
    return rank;
}

std::vector<size_t> topKPassBlocks(size_t nDocs, size_t n) {
    std::vector<size_t> blocks{std::max<size_t>((nDocs + kTopKBlockKeys - 1) / kTopKBlockKeys, 1)};
    n = std::clamp<size_t>(n, 1, kTopKBlockKeys / 2);   // halves the survivors each pass: terminates
    while (blocks.back() > 1) blocks.push_back((blocks.back() * n + kTopKBlockKeys - 1) / kTopKBlockKeys);
    return blocks;
}

size_t topKScratchKeys(size_t nDocs, size_t n) {
    size_t most = 0;
    for (size_t b : topKPassBlocks(nDocs, n)) most = std::max(most, b * std::max<size_t>(n, 1));
    return most;
}

std::vector<uint64_t> emulateDeviceTopK(std::span<const uint64_t> keys, size_t n) {
    if (n == 0 || n > kTopKBlockKeys / 2) return {};   // outside the device's contract (kMaxScanTopN)
    std::vector<uint64_t> in(keys.begin(), keys.end()), out;
    std::vector<uint64_t> s(kTopKBlockKeys);
    const std::vector<size_t> plan = topKPassBlocks(keys.size(), n);
    for (size_t blocks : plan) {
        out.assign(blocks * n, 0);
        for (size_t b = 0; b < blocks; ++b) {
            for (size_t i = 0; i < kTopKBlockKeys; ++i) s[i] = b * kTopKBlockKeys + i < in.size() ? in[b * kTopKBlockKeys + i] : 0;
            for (uint32_t k = 2; k <= kTopKBlockKeys; k <<= 1)
                for (uint32_t j = k >> 1; j > 0; j >>= 1)
                    for (uint32_t i = 0; i < kTopKBlockKeys; ++i) bitonicCompareExchange(s.data(), i, j, k);
            std::copy(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(n), out.begin() + static_cast<std::ptrdiff_t>(b * n));
        }
        in.swap(out);
    }
    in.resize(n);
    return in;
}

}  // namespace msa::memory

#include "core/memory/sparse.h"

#include "core/memory/shard_merge.h"
#include "core/model/dtype.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace msa::memory {

struct MemoryIndex::Impl {
    const Bank* bank = nullptr;
    const model::ModelFiles* files = nullptr;
    RoutingConfig cfg;
    std::unique_ptr<RouteScanner> scanner;   // CpuRouteScanner unless setScanner() replaced it
    // Per shard, the router's document table (layer-independent): chunk offsets relative to the
    // shard's first chunk, memory document ids, bank rows, and the candidate mask.
    struct Shard {
        std::vector<uint64_t> offsets{0};
        std::vector<uint64_t> ids;
        std::vector<uint32_t> rows;
        std::vector<uint8_t> live;
        std::vector<uint8_t> allowed;
    };
    std::vector<Shard> shards;
    std::optional<std::unordered_set<int64_t>> filter;
};

MemoryIndex::MemoryIndex(std::unique_ptr<Impl> impl) : m(std::move(impl)) {}
MemoryIndex::MemoryIndex(MemoryIndex&&) noexcept = default;
MemoryIndex& MemoryIndex::operator=(MemoryIndex&&) noexcept = default;
MemoryIndex::~MemoryIndex() = default;

Result<MemoryIndex> MemoryIndex::create(const Bank& bank, const model::ModelFiles& files, RoutingConfig cfg, size_t nThreads) {
    const BankParams& bp = bank.params();
    const std::vector<int> bankLayers(bp.routingLayers.begin(), bp.routingLayers.end());
    if (bankLayers != cfg.layers)
        return Status(ErrorCode::Mismatch, "the bank's routing layers differ from the model's routing configuration (" +
                                               cfg.describe() + ")");
    if (bp.nRouteHeads != cfg.nRouteHeads || bp.headDim != cfg.headDim)
        return Status(ErrorCode::Mismatch, "the bank has " + std::to_string(bp.nRouteHeads) + " routing heads of " +
                                               std::to_string(bp.headDim) + " dims; the model routes with " +
                                               std::to_string(cfg.nRouteHeads) + " of " + std::to_string(cfg.headDim));
    if (bp.nLayers != static_cast<uint32_t>(files.config().nLayers))
        return Status(ErrorCode::Mismatch, "the bank's template head covers " + std::to_string(bp.nLayers) +
                                               " layers; the model has " + std::to_string(files.config().nLayers));
    cfg.topK = bp.topK;   // k is fixed when the bank is built (it also sets the query positions)
    auto impl = std::make_unique<Impl>();
    impl->bank = &bank;
    impl->files = &files;
    impl->cfg = std::move(cfg);
    impl->scanner = std::make_unique<CpuRouteScanner>(nThreads);
    if (!impl->cfg.layers.empty()) {
        const auto& docs = bank.documents();
        for (const ShardSpan& span : bank.routingKeys(0)) {
            Impl::Shard s;
            for (size_t row = 0; row < docs.size(); ++row) {
                const DocumentEntry& d = docs[row];
                if (d.firstChunk < span.firstChunk || d.firstChunk >= span.firstChunk + span.nChunks) continue;
                if (d.firstChunk - span.firstChunk != s.offsets.back())
                    return Status(ErrorCode::Corrupt, "memory document " + std::to_string(d.id) +
                                                          " does not start where the previous one ends in its shard");
                s.offsets.push_back(d.firstChunk - span.firstChunk + d.nChunks);
                s.ids.push_back(static_cast<uint64_t>(d.id));
                s.rows.push_back(static_cast<uint32_t>(row));
                s.live.push_back(d.live() ? 1 : 0);
            }
            s.allowed = s.live;
            impl->shards.push_back(std::move(s));
        }
    }
    return MemoryIndex(std::move(impl));
}

const RoutingConfig& MemoryIndex::config() const { return m->cfg; }
void MemoryIndex::setScanner(std::unique_ptr<RouteScanner> scanner) {
    if (scanner) m->scanner = std::move(scanner);
}
const RouteScanner& MemoryIndex::scanner() const { return *m->scanner; }
const Bank& MemoryIndex::bank() const { return *m->bank; }
const model::ModelFiles& MemoryIndex::files() const { return *m->files; }
size_t MemoryIndex::templateLength() const { return m->bank->params().nTemplateTokens; }

void MemoryIndex::setFilter(std::optional<std::unordered_set<int64_t>> ids) {
    m->filter = std::move(ids);
    for (Impl::Shard& s : m->shards)
        for (size_t i = 0; i < s.ids.size(); ++i)
            s.allowed[i] = s.live[i] && (!m->filter || m->filter->count(static_cast<int64_t>(s.ids[i]))) ? 1 : 0;
}

Result<LayerRouting> MemoryIndex::route(size_t li, const RoutingQueries& queries, size_t topN, const CancelToken* cancel) {
    if (li >= m->cfg.layers.size()) return Status(ErrorCode::InvalidArgument, "no routing layer position " + std::to_string(li));
    const BankParams& bp = m->bank->params();
    const std::vector<ShardSpan> spans = m->bank->routingKeys(li);
    if (spans.size() != m->shards.size())
        return Status(ErrorCode::Internal, "routing layer " + std::to_string(li) + " has " + std::to_string(spans.size()) +
                                               " shard spans, the document table " + std::to_string(m->shards.size()));
    std::vector<ScanShard> scan(spans.size());
    for (size_t si = 0; si < spans.size(); ++si) {
        const Impl::Shard& s = m->shards[si];
        if (s.ids.empty()) continue;   // nDocs() == 0: the scanner skips it
        RouteKeys& keys = scan[si].keys;
        keys.data = spans[si].bytes;
        keys.dtype = bp.storage;
        keys.nChunks = spans[si].nChunks;
        keys.nHeads = bp.nRouteHeads;
        keys.headDim = bp.headDim;
        keys.chunkOffsets = s.offsets;
        keys.docIds = s.ids;
        scan[si].allowed = s.allowed;
    }
    // Each shard's top-n merged exactly (shard_merge.h): the same documents and scores as one
    // selectTop over the concatenated shards' scores.
    const size_t n = std::max(topN, m->cfg.topK);
    MSA_ASSIGN_OR_RETURN(std::vector<ShardScan> perShard, m->scanner->scan(m->cfg, li, queries, scan, n, cancel));
    LayerRouting out;
    out.layer = m->cfg.layers[li];
    std::vector<std::vector<ScoredDocument>> lists(perShard.size());
    for (size_t si = 0; si < perShard.size(); ++si) {
        out.nCandidates += perShard[si].nCandidates;
        lists[si] = std::move(perShard[si].top);
    }
    std::vector<ScoredDocument> top;
    for (const ShardedDocument& d : mergeShardTops(lists, n)) {
        ScoredDocument doc = d.doc;
        doc.index = m->shards[d.shard].rows[d.doc.index];   // shard row → bank row
        top.push_back(doc);
    }
    out.selected.assign(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(std::min(top.size(), m->cfg.topK)));
    top.resize(std::min(top.size(), std::max<size_t>(topN, 1)));
    if (top.size() < out.selected.size()) top = out.selected;
    out.top = std::move(top);
    for (const ScoredDocument& d : out.selected) out.nChunks += m->bank->documents()[d.index].nChunks;
    return out;
}

namespace {
void appendRows(std::vector<float>& dst, std::span<const std::byte> src, model::DType dtype) {
    const size_t elem = model::dtypeInfo(dtype).blockBytes;   // f32 / bf16: one element per block
    const size_t n = src.size() / elem;
    const size_t at = dst.size();
    dst.resize(at + n);
    model::dequantizeRow(dtype, src.data(), dst.data() + at, n);
}
}  // namespace

Result<engine::LayerPrefix> MemoryIndex::gather(size_t li, std::span<const ScoredDocument> selected) const {
    const BankParams& bp = m->bank->params();
    engine::LayerPrefix p;
    try {
        for (const ScoredDocument& d : selected) {
            appendRows(p.k, m->bank->keys(d.index, li), bp.storage);
            appendRows(p.v, m->bank->values(d.index, li), bp.storage);
            p.nRows += m->bank->documents()[d.index].nChunks;
        }
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "memory chunks of " + std::to_string(selected.size()) + " documents");
    }
    const size_t rowFloats = static_cast<size_t>(bp.nKvHeads) * bp.headDim;
    if (p.k.size() != p.nRows * rowFloats || p.v.size() != p.nRows * rowFloats)
        return Status(ErrorCode::Corrupt, "the bank's K̄/V̄ rows of the selected documents do not match their chunk counts");
    return p;
}

std::vector<engine::LayerPrefix> MemoryIndex::templatePrefixes() const {
    const BankParams& bp = m->bank->params();
    std::vector<engine::LayerPrefix> out(bp.nLayers);
    for (size_t l = 0; l < bp.nLayers; ++l) {
        appendRows(out[l].k, m->bank->templateKeys(l), bp.storage);
        appendRows(out[l].v, m->bank->templateValues(l), bp.storage);
        out[l].nRows = bp.nTemplateTokens;
    }
    return out;
}

Result<SparsePrefill> sparsePrefill(engine::Session& session, MemoryIndex& index, std::span<const int32_t> tokens,
                                    std::span<const int32_t> positions, std::span<const uint8_t> routeMask,
                                    const SparsePrefillOptions& options) {
    if (routeMask.size() != tokens.size())
        return Status(ErrorCode::InvalidArgument, "routing mask has " + std::to_string(routeMask.size()) + " entries for " +
                                                      std::to_string(tokens.size()) + " tokens");
    if (std::none_of(routeMask.begin(), routeMask.end(), [](uint8_t b) { return b != 0; }))
        return Status(ErrorCode::InvalidArgument, "the prompt has no routing-query token");
    MSA_RETURN_IF_ERROR(session.setPrefix(index.templatePrefixes()));
    const RoutingConfig& cfg = index.config();
    SparsePrefill out;
    engine::ForwardOptions opt;
    opt.allLogits = options.allLogits;
    opt.cancel = options.cancel;
    opt.memoryHook = [&](const engine::LayerTensors& lt) -> Result<engine::LayerPrefix> {
        const auto it = std::find(cfg.layers.begin(), cfg.layers.end(), lt.layer);
        if (it == cfg.layers.end()) return engine::LayerPrefix{};   // [template head; local tokens]
        const size_t li = static_cast<size_t>(it - cfg.layers.begin());
        MSA_ASSIGN_OR_RETURN(RoutingQueries q, routingQueriesFromLayer(cfg, index.files(), lt, routeMask));
        MSA_ASSIGN_OR_RETURN(LayerRouting r, options.route ? options.route(li, q) : index.route(li, q, options.topN, options.cancel));
        MSA_ASSIGN_OR_RETURN(engine::LayerPrefix rows, index.gather(li, r.selected));
        if (options.transformRows) MSA_RETURN_IF_ERROR(options.transformRows(li, rows));
        out.layers.push_back(std::move(r));
        return rows;
    };
    MSA_ASSIGN_OR_RETURN(out.logits, session.forward(tokens, positions, opt));
    if (out.layers.size() != cfg.layers.size())
        return Status(ErrorCode::Internal, "the prefill routed " + std::to_string(out.layers.size()) + " of " +
                                               std::to_string(cfg.layers.size()) + " routing layers");
    return out;
}

}  // namespace msa::memory

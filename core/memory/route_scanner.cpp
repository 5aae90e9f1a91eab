#include "core/memory/route_scanner.h"

#include "core/memory/quant_route.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

namespace msa::memory {

std::string_view keyStorageName(KeyStorage s) {
    switch (s) {
    case KeyStorage::Fp8E4M3: return "fp8-e4m3";
    case KeyStorage::Int8: return "int8";
    case KeyStorage::Native: break;
    }
    return "native";
}

std::optional<KeyStorage> parseKeyStorage(std::string_view name) {
    if (name == "native" || name == "bf16" || name == "f32") return KeyStorage::Native;
    if (const std::optional<QuantFormat> f = parseQuantFormat(name))
        return *f == QuantFormat::Fp8E4M3 ? KeyStorage::Fp8E4M3 : KeyStorage::Int8;
    return std::nullopt;
}

// One shard's dequantized keys and the key span they were made from.
struct CpuRouteScanner::Dequantized {
    const std::byte* data = nullptr;
    size_t bytes = 0;
    model::DType dtype = model::DType::F32;
    size_t nChunks = 0, nHeads = 0, headDim = 0;
    DequantizedRouteKeys keys;
};

CpuRouteScanner::CpuRouteScanner(size_t nThreads, KeyStorage storage) : m_router(nThreads), m_storage(storage) {}
CpuRouteScanner::~CpuRouteScanner() = default;

Result<std::vector<ShardScan>> CpuRouteScanner::scan(const RoutingConfig& cfg, size_t layerPos, const RoutingQueries& queries,
                                                     std::span<const ScanShard> shards, size_t n, const CancelToken* cancel) {
    std::vector<ShardScan> out(shards.size());
    const std::optional<QuantFormat> format = quantFormatOf(m_storage);
    for (size_t si = 0; si < shards.size(); ++si) {
        const ScanShard& s = shards[si];
        if (s.keys.nDocs() == 0) continue;
        RouteKeys keys = s.keys;
        if (format) {
            std::unique_ptr<Dequantized>& dq = m_dequantized[{layerPos, si}];
            if (!dq || dq->data != s.keys.data.data() || dq->bytes != s.keys.data.size() || dq->dtype != s.keys.dtype ||
                dq->nChunks != s.keys.nChunks || dq->nHeads != s.keys.nHeads || dq->headDim != s.keys.headDim) {
                dq.reset();
                MSA_ASSIGN_OR_RETURN(QuantizedRows q, quantizeRouteKeys(*format, s.keys));
                MSA_ASSIGN_OR_RETURN(DequantizedRouteKeys values, dequantizeRouteKeys(q, s.keys));
                dq = std::make_unique<Dequantized>(Dequantized{s.keys.data.data(), s.keys.data.size(), s.keys.dtype, s.keys.nChunks,
                                                               s.keys.nHeads, s.keys.headDim, std::move(values)});
            }
            keys = dq->keys.view(s.keys);
        }
        MSA_ASSIGN_OR_RETURN(std::vector<float> scores,
                             m_router.scoreDocuments(cfg, queries, keys, {.topK = cfg.topK, .allowed = s.allowed, .cancel = cancel}));
        for (float v : scores) out[si].nCandidates += std::isfinite(v) ? 1 : 0;
        out[si].top = selectTop(scores, s.keys.docIds, n);
    }
    return out;
}

Result<std::vector<float>> foldHeadMean(const RoutingQueries& queries, size_t nKvHeads) {
    const size_t H = queries.nHeads, D = queries.headDim, nQ = queries.nTokens;
    if (nKvHeads == 0 || H % nKvHeads != 0)
        return Status(ErrorCode::InvalidArgument, std::to_string(H) + " query heads do not map onto " + std::to_string(nKvHeads) + " key heads");
    if (queries.q.size() != nQ * H * D) return Status(ErrorCode::InvalidArgument, "query rows of the wrong size");
    const size_t group = H / nKvHeads;
    std::vector<float> folded(nQ * nKvHeads * D, 0.0f);
    // Sum first, then one multiplication by 1/H (exact when H is a power of two, as the CPU Router's
    // sgemm alpha), so a device dot of q' with a key is the Router's value up to summation order.
    const float invH = 1.0f / static_cast<float>(H);
    for (size_t t = 0; t < nQ; ++t)
        for (size_t h = 0; h < H; ++h) {
            const float* src = queries.q.data() + (t * H + h) * D;
            float* dst = folded.data() + (t * nKvHeads + h / group) * D;
            for (size_t i = 0; i < D; ++i) dst[i] += src[i];
        }
    for (float& x : folded) x *= invH;
    return folded;
}

namespace {
struct Registry {
    std::mutex mutex;
    std::map<std::string, RouteScannerFactory> factories;
};
Registry& registry() {
    static Registry r;
    return r;
}
}  // namespace

void registerRouteScannerFactory(const std::string& name, RouteScannerFactory factory) {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    r.factories[name] = std::move(factory);
}

Result<std::unique_ptr<RouteScanner>> createRouteScanner(const std::string& name, const RouteScannerOptions& options) {
    if (name == "cpu") return std::unique_ptr<RouteScanner>(std::make_unique<CpuRouteScanner>(options.nThreads, options.keyStorage));
    RouteScannerFactory f;
    {
        Registry& r = registry();
        std::lock_guard lock(r.mutex);
        const auto it = r.factories.find(name);
        if (it == r.factories.end())
            return Status(ErrorCode::Unsupported, "no routing scanner '" + name + "' in this build (known: cpu" +
                                                      (r.factories.empty() ? std::string() : ", ...") + ")");
        f = it->second;
    }
    return f(options);
}

std::vector<std::string> routeScannerNames() {
    std::vector<std::string> names{"cpu"};
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    for (const auto& [n, f] : r.factories)
        if (n != "cpu") names.push_back(n);
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace msa::memory

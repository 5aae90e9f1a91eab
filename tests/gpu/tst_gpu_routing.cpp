// tst_gpu_routing.cpp (label: gpu): the CUDA routing scan, content tier and Memory Parallel against the
// CPU Router. Skips (whole executable) without a usable device.
//  - CudaRouteScanner == CpuRouteScanner on seeded synthetic keys: 1 document and 1 token, odd sizes,
//    token and chunk counts that are not multiples of the kernel's tiles, more documents than one
//    top-k block (multi-pass device top-k), both scoring branches, the candidate filter, the other
//    reductions (token mean/last, chunk mean), f32 and bf16 keys: same ids in the same order (exact
//    ties by ascending id), scores within f32 summation-order tolerance, same candidate counts;
//  - a real multi-shard bank: MemoryIndex with the "cuda" scanner == MemoryIndex on the CPU;
//  - one bank split into 2, 3 and 5 shards on one GPU (Memory Parallel with repeated devices) gives
//    exactly (ids and scores, bit for bit) the world-size-1 result; with two GPUs, NCCL does too;
//  - the content tier's device rows equal the bank's K̄/V̄ bytes of the selected documents, through
//    the page-locked mapping and through pinned staging;
//  - 8-bit routing keys (KeyStorage::Fp8E4M3 / Int8): the codes and scales resident on the device equal
//    key_quant's host quantization byte for byte (a table of several parts crossing the upload's
//    staging blocks); the scan equals the CPU reference (CpuRouteScanner with the same storage = the
//    Router over the dequantized keys): same ids, scores within f32 tolerance, same candidate counts,
//    on odd sizes, both branches, the filter, the other reductions, f32 and bf16 sources; the
//    tensor-core request falls back to the FMA kernel bit for bit; split shards merge exactly; device
//    bytes per key row and per memory token are printed beside bf16's.
#include "core/memory/bank.h"
#include "core/memory/key_quant.h"
#include "core/memory/quant_route.h"
#include "core/memory/route_scanner.h"
#include "core/memory/shard_merge.h"
#include "core/memory/sparse.h"
#include "core/model/model_files.h"
#include "gpu/memory_parallel.h"
#include "gpu/memory_tier.h"
#include "gpu/route_scan.h"

#include "../core/memory/bank_test_util.h"
#include "../core/memory/routing_test_util.h"

#include <cuda_runtime_api.h>

#include <QTemporaryDir>
#include <QtTest>

#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <random>

using namespace msa;
using namespace msa::memory;

namespace {

RoutingConfig makeConfig(size_t H, size_t G, size_t D, bool cosine) {
    return msa::memory::testutil::makeConfig(H, G, D, cosine, 16);
}
using msa::memory::testutil::makeQueries;

struct SyntheticKeys {
    std::vector<std::byte> bytes;
    model::DType dtype = model::DType::BF16;
    std::vector<uint64_t> offsets{0};
    std::vector<uint64_t> ids;
    size_t nHeads = 0, headDim = 0;
    RouteKeys view() const {
        return RouteKeys{bytes, dtype, offsets.back(), nHeads, headDim, offsets, ids};
    }
};

SyntheticKeys makeKeys(size_t nDocs, size_t maxChunks, size_t G, size_t D, bool unit, model::DType dtype, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    SyntheticKeys k;
    k.dtype = dtype;
    k.nHeads = G;
    k.headDim = D;
    std::vector<float> prev;
    for (size_t d = 0; d < nDocs; ++d) {
        std::vector<float> rows;
        if (d % 7 == 6 && !prev.empty()) {
            rows = prev;   // an exact tie under another id
        } else {
            const size_t nc = (d % 11 == 3 && nDocs > 1) ? 0 : 1 + rng() % maxChunks;
            rows.resize(nc * G * D);
            for (float& x : rows) x = nd(rng);
            if (unit) msa::memory::testutil::normalizeRows(rows, D);
        }
        for (float x : rows) {
            if (dtype == model::DType::BF16) {
                const uint16_t b = model::f32ToBf16(x);
                const auto* p = reinterpret_cast<const std::byte*>(&b);
                k.bytes.insert(k.bytes.end(), p, p + 2);
            } else {
                const auto* p = reinterpret_cast<const std::byte*>(&x);
                k.bytes.insert(k.bytes.end(), p, p + 4);
            }
        }
        k.offsets.push_back(k.offsets.back() + rows.size() / (G * D));
        prev = rows;
    }
    k.ids.resize(nDocs);
    for (size_t i = 0; i < nDocs; ++i) k.ids[i] = 77 + 5 * i;
    std::shuffle(k.ids.begin(), k.ids.end(), rng);
    return k;
}

bool closeScore(float got, float ref) { return std::abs(got - ref) <= 1e-4f + 1e-4f * std::abs(ref); }

// GPU list vs CPU list: same length; each GPU score matches the CPU score of the same id; ids equal
// position by position except across CPU near-ties (within tolerance); exact GPU ties ascend by id.
QString compareLists(const std::vector<ScoredDocument>& gpu, const std::vector<ScoredDocument>& cpu,
                     const std::map<uint64_t, float>& cpuScoreOf) {
    if (gpu.size() != cpu.size()) return QString("sizes %1 (gpu) vs %2 (cpu)").arg(gpu.size()).arg(cpu.size());
    for (size_t i = 0; i < gpu.size(); ++i) {
        const auto it = cpuScoreOf.find(gpu[i].id);
        if (it == cpuScoreOf.end()) return QString("gpu id %1 at %2 is not a cpu candidate").arg(gpu[i].id).arg(i);
        if (!closeScore(gpu[i].score, it->second))
            return QString("id %1: gpu %2, cpu %3").arg(gpu[i].id).arg(double(gpu[i].score), 0, 'g', 9).arg(double(it->second), 0, 'g', 9);
        if (gpu[i].id != cpu[i].id && !closeScore(it->second, cpu[i].score))
            return QString("position %1: gpu id %2 (%3), cpu id %4 (%5)").arg(i).arg(gpu[i].id).arg(double(gpu[i].score)).arg(cpu[i].id).arg(double(cpu[i].score));
        if (i && gpu[i].score == gpu[i - 1].score && gpu[i].id < gpu[i - 1].id)
            return QString("tie at %1 not ordered by id").arg(i);
        if (gpu[i].score > (i ? gpu[i - 1].score : INFINITY)) return QString("not descending at %1").arg(i);
    }
    return {};
}

std::map<uint64_t, float> scoreMap(Router& router, const RoutingConfig& cfg, const RoutingQueries& q, const RouteKeys& keys,
                                   std::span<const uint8_t> allowed) {
    std::map<uint64_t, float> m;
    auto s = router.scoreDocuments(cfg, q, keys, {.allowed = allowed});
    if (!s.ok()) return m;
    for (size_t d = 0; d < s->size(); ++d)
        if (std::isfinite((*s)[d])) m[keys.docIds[d]] = (*s)[d];
    return m;
}

struct RealBank {
    QTemporaryDir dir;
    std::unique_ptr<model::ModelFiles> files;
    std::unique_ptr<Bank> bank;
    RoutingConfig cfg;
};

// A real bank file with several shards and a tombstone, shaped for the tiny MSA checkpoint.
Status makeRealBank(RealBank& rb, size_t nDocs) {
    MSA_ASSIGN_OR_RETURN(rb.files, model::ModelFiles::open(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16"));
    MSA_ASSIGN_OR_RETURN(rb.cfg, routingConfigFor(*rb.files));
    BankParams p = testing::smallParams(model::DType::BF16);
    p.modelFingerprint = rb.files->fingerprint().hex();
    p.nLayers = 4;
    p.routingLayers = {2, 3};
    p.nKvHeads = 2;
    p.nRouteHeads = 2;
    p.headDim = 16;
    p.topK = 16;
    p.maxShardBytes = 16 << 10;
    const std::string path = rb.dir.filePath("bank").toStdString();
    {
        MSA_ASSIGN_OR_RETURN(BankWriter w, BankWriter::create(path, p, testing::makeTemplate(p)));
        for (size_t i = 1; i <= nDocs; ++i) {
            testing::TestDoc d = testing::makeDoc(p, int64_t(i * 7 % 1009), 20 + uint64_t(i * 53 % 400));
            MSA_RETURN_IF_ERROR(w.append(d.input));
        }
        MSA_RETURN_IF_ERROR(w.commit());
        MSA_RETURN_IF_ERROR(w.remove(14));
        MSA_RETURN_IF_ERROR(w.commit());
    }
    MSA_ASSIGN_OR_RETURN(Bank b, Bank::open(path));
    rb.bank = std::make_unique<Bank>(std::move(b));
    return Status::ok();
}

}  // namespace

class TestGpuRouting : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
            cudaGetLastError();
            QSKIP("no usable CUDA device: the GPU routing tests need one");
        }
        m_nDevices = n;
        gpu::registerRouteScanner();
    }

    void scanMatchesCpu_data() {
        QTest::addColumn<int>("nDocs");
        QTest::addColumn<int>("maxChunks");
        QTest::addColumn<int>("H");
        QTest::addColumn<int>("G");
        QTest::addColumn<int>("D");
        QTest::addColumn<int>("nTokens");
        QTest::addColumn<bool>("cosine");
        QTest::addColumn<bool>("filter");
        QTest::addColumn<int>("queryReduce");   // 0 max, 1 mean, 2 last
        QTest::addColumn<int>("chunkReduce");   // 0 max, 1 mean
        QTest::addColumn<bool>("f32");
        QTest::addColumn<int>("topN");
        QTest::newRow("1 doc, 1 token") << 1 << 1 << 4 << 2 << 16 << 1 << false << false << 0 << 0 << false << 16;
        QTest::newRow("odd dot") << 157 << 6 << 8 << 2 << 16 << 5 << false << false << 0 << 0 << false << 40;
        QTest::newRow("odd cosine filter") << 157 << 6 << 8 << 2 << 16 << 5 << true << true << 0 << 0 << false << 40;
        QTest::newRow("msa-4b shape, 17 tokens") << 3001 << 7 << 32 << 8 << 128 << 17 << false << false << 0 << 0 << false << 16;
        QTest::newRow("cosine 33 tokens filter") << 999 << 5 << 32 << 8 << 128 << 33 << true << true << 0 << 0 << false << 64;
        QTest::newRow("multi-pass top-k") << 5000 << 2 << 4 << 1 << 24 << 3 << false << true << 0 << 0 << false << 300;
        QTest::newRow("token mean, chunk mean") << 301 << 9 << 6 << 3 << 20 << 19 << false << false << 1 << 1 << false << 30;
        QTest::newRow("token last") << 301 << 9 << 6 << 3 << 20 << 19 << true << false << 2 << 0 << false << 30;
        QTest::newRow("width 48, 16 tokens exactly") << 640 << 3 << 6 << 3 << 16 << 16 << false << false << 0 << 0 << false << 20;
        QTest::newRow("f32 keys, odd head dim") << 211 << 4 << 10 << 5 << 13 << 7 << false << true << 0 << 0 << true << 25;
    }
    void scanMatchesCpu() {
        QFETCH(int, nDocs);
        QFETCH(int, maxChunks);
        QFETCH(int, H);
        QFETCH(int, G);
        QFETCH(int, D);
        QFETCH(int, nTokens);
        QFETCH(bool, cosine);
        QFETCH(bool, filter);
        QFETCH(int, queryReduce);
        QFETCH(int, chunkReduce);
        QFETCH(bool, f32);
        QFETCH(int, topN);
        RoutingConfig cfg = makeConfig(H, G, D, cosine);
        cfg.queryReduce = queryReduce == 0 ? QueryReduce::Max : queryReduce == 1 ? QueryReduce::Mean : QueryReduce::Last;
        cfg.chunkReduce = chunkReduce == 0 ? ChunkReduce::Max : ChunkReduce::Mean;
        const SyntheticKeys keys = makeKeys(size_t(nDocs), size_t(maxChunks), G, D, cosine,
                                            f32 ? model::DType::F32 : model::DType::BF16, uint32_t(nDocs + nTokens));
        const RoutingQueries q = makeQueries(cfg, size_t(nTokens), 99);
        std::vector<uint8_t> allowed;
        if (filter)
            for (int d = 0; d < nDocs; ++d) allowed.push_back(d % 4 != 2);
        const std::vector<ScanShard> shards = {{keys.view(), allowed}};
        CpuRouteScanner cpu(2);
        auto ref = cpu.scan(cfg, 0, q, shards, size_t(topN), nullptr);
        QVERIFY2(ref.ok(), ref.status().toString().c_str());
        const auto cpuScores = scoreMap(cpu.router(), cfg, q, keys.view(), allowed);
        // Both score kernels (the tensor-core one only takes bf16 keys with nKv·D % 16 == 0 and
        // falls back to the FMA kernel otherwise), then the registry's default.
        for (gpu::ScanKernel kernel : {gpu::ScanKernel::Fma, gpu::ScanKernel::TensorCore}) {
            auto direct = gpu::CudaRouteScanner::create(0);
            QVERIFY2(direct.ok(), direct.status().toString().c_str());
            (*direct)->setKernel(kernel);
            auto got = (*direct)->scan(cfg, 0, q, shards, size_t(topN), nullptr);
            QVERIFY2(got.ok(), got.status().toString().c_str());
            QCOMPARE(got->size(), size_t(1));
            QCOMPARE((*got)[0].nCandidates, (*ref)[0].nCandidates);
            const QString diff = compareLists((*got)[0].top, (*ref)[0].top, cpuScores);
            QVERIFY2(diff.isEmpty(), qPrintable(QString(kernel == gpu::ScanKernel::Fma ? "fma: " : "tensor cores: ") + diff));
        }
        auto made = createRouteScanner("cuda", {.device = 0});
        QVERIFY2(made.ok(), made.status().toString().c_str());
        auto got = (*made)->scan(cfg, 0, q, shards, size_t(topN), nullptr);
        QVERIFY2(got.ok(), got.status().toString().c_str());
        QVERIFY2(compareLists((*got)[0].top, (*ref)[0].top, cpuScores).isEmpty(), "default kernel");
        // Second call: keys resident (cache hit), filter changed.
        std::vector<uint8_t> none(size_t(nDocs), 0);
        if (nDocs > 1) none[1] = 1;
        const std::vector<ScanShard> shards2 = {{keys.view(), none}};
        auto got2 = (*made)->scan(cfg, 0, q, shards2, size_t(topN), nullptr);
        QVERIFY(got2.ok());
        auto ref2 = cpu.scan(cfg, 0, q, shards2, size_t(topN), nullptr);
        QVERIFY(ref2.ok());
        QCOMPARE((*got2)[0].nCandidates, (*ref2)[0].nCandidates);
        QCOMPARE((*got2)[0].top.size(), (*ref2)[0].top.size());
        for (size_t i = 0; i < (*got2)[0].top.size(); ++i) QCOMPARE((*got2)[0].top[i].id, (*ref2)[0].top[i].id);
    }

    void quantizedUploadEqualsHostQuantization() {
        // Three parts (thousands of chunks, 1 chunk, thousands) of 8 × 128 (the MSA-4B width): the
        // upload's staging blocks are 4,096 chunks of that width, so both buffers alternate and a part
        // ends inside a block.
        const size_t G = 8, D = 128;
        const std::vector<SyntheticKeys> src = {makeKeys(820, 9, G, D, false, model::DType::BF16, 21),
                                                makeKeys(1, 1, G, D, false, model::DType::BF16, 22),
                                                makeKeys(1500, 7, G, D, false, model::DType::BF16, 23)};
        std::vector<RouteKeys> parts;
        for (const SyntheticKeys& k : src) parts.push_back(k.view());
        size_t nChunks = 0;
        for (const RouteKeys& k : parts) nChunks += k.nChunks;
        QVERIFY(nChunks > 2 * 4096);
        cudaStream_t stream = nullptr;
        QCOMPARE(cudaStreamCreate(&stream), cudaSuccess);
        for (const KeyStorage storage : {KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            auto shard = gpu::DeviceRouteShard::upload(parts, stream, storage);
            QVERIFY2(shard.ok(), shard.status().toString().c_str());
            QCOMPARE((*shard)->storage(), storage);
            QCOMPARE((*shard)->nChunks(), nChunks);
            QVERIFY(!gpu::tensorCoreShape(**shard));
            std::vector<uint8_t> codes(nChunks * G * D);
            std::vector<float> scales(nChunks * G);
            const auto p = (*shard)->ptrs();
            QVERIFY(p.scales != nullptr);
            QCOMPARE(cudaMemcpy(codes.data(), p.keys, codes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
            QCOMPARE(cudaMemcpy(scales.data(), p.scales, scales.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
            size_t row = 0;
            for (const RouteKeys& k : parts) {
                auto q = quantizeRouteKeys(*quantFormatOf(storage), k);
                QVERIFY(q.ok());
                QVERIFY(std::equal(q->codes.begin(), q->codes.end(), codes.begin() + std::ptrdiff_t(row * D)));
                QVERIFY(std::equal(q->scales.begin(), q->scales.end(), scales.begin() + std::ptrdiff_t(row)));
                row += q->nRows;
            }
            QCOMPARE((*shard)->keyBytes(), nChunks * G * (D + 4));
        }
        // A non-finite key is refused, naming the format, and leaks nothing.
        SyntheticKeys bad = makeKeys(3, 2, 2, 16, false, model::DType::F32, 1);
        const float inf = INFINITY;
        std::memcpy(bad.bytes.data() + 4 * 17, &inf, 4);
        auto refused = gpu::DeviceRouteShard::upload(bad.view(), stream, KeyStorage::Int8);
        QVERIFY(!refused.ok());
        QCOMPARE(refused.status().code(), ErrorCode::InvalidArgument);
        QVERIFY2(refused.status().message().find("int8") != std::string::npos, refused.status().message().c_str());
        cudaStreamDestroy(stream);
    }

    void quantizedScanMatchesCpuReference_data() {
        QTest::addColumn<int>("storage");
        QTest::addColumn<int>("nDocs");
        QTest::addColumn<int>("maxChunks");
        QTest::addColumn<int>("H");
        QTest::addColumn<int>("G");
        QTest::addColumn<int>("D");
        QTest::addColumn<int>("nTokens");
        QTest::addColumn<bool>("cosine");
        QTest::addColumn<bool>("filter");
        QTest::addColumn<int>("queryReduce");   // 0 max, 1 mean, 2 last
        QTest::addColumn<int>("chunkReduce");   // 0 max, 1 mean
        QTest::addColumn<bool>("f32");
        QTest::addColumn<int>("topN");
        for (const KeyStorage st : {KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            const int s = int(st);
            const char* f = st == KeyStorage::Fp8E4M3 ? "fp8" : "int8";
            QTest::addRow("%s 1 doc, 1 token", f) << s << 1 << 1 << 4 << 2 << 16 << 1 << false << false << 0 << 0 << false << 16;
            QTest::addRow("%s odd dot", f) << s << 157 << 6 << 8 << 2 << 16 << 5 << false << false << 0 << 0 << false << 40;
            QTest::addRow("%s odd cosine filter", f) << s << 157 << 6 << 8 << 2 << 16 << 5 << true << true << 0 << 0 << false << 40;
            QTest::addRow("%s msa-4b shape, 17 tokens", f) << s << 3001 << 7 << 32 << 8 << 128 << 17 << false << false << 0 << 0 << false << 16;
            QTest::addRow("%s cosine 33 tokens filter", f) << s << 999 << 5 << 32 << 8 << 128 << 33 << true << true << 0 << 0 << false << 64;
            QTest::addRow("%s multi-pass top-k", f) << s << 5000 << 2 << 4 << 1 << 24 << 3 << false << true << 0 << 0 << false << 300;
            QTest::addRow("%s token mean, chunk mean", f) << s << 301 << 9 << 6 << 3 << 20 << 19 << false << false << 1 << 1 << false << 30;
            QTest::addRow("%s token last", f) << s << 301 << 9 << 6 << 3 << 20 << 19 << true << false << 2 << 0 << false << 30;
            QTest::addRow("%s f32 source, odd head dim", f) << s << 211 << 4 << 10 << 5 << 13 << 7 << false << true << 0 << 0 << true << 25;
        }
    }
    void quantizedScanMatchesCpuReference() {
        QFETCH(int, storage);
        QFETCH(int, nDocs);
        QFETCH(int, maxChunks);
        QFETCH(int, H);
        QFETCH(int, G);
        QFETCH(int, D);
        QFETCH(int, nTokens);
        QFETCH(bool, cosine);
        QFETCH(bool, filter);
        QFETCH(int, queryReduce);
        QFETCH(int, chunkReduce);
        QFETCH(bool, f32);
        QFETCH(int, topN);
        const KeyStorage st = KeyStorage(storage);
        RoutingConfig cfg = makeConfig(H, G, D, cosine);
        cfg.queryReduce = queryReduce == 0 ? QueryReduce::Max : queryReduce == 1 ? QueryReduce::Mean : QueryReduce::Last;
        cfg.chunkReduce = chunkReduce == 0 ? ChunkReduce::Max : ChunkReduce::Mean;
        const SyntheticKeys keys = makeKeys(size_t(nDocs), size_t(maxChunks), G, D, cosine,
                                            f32 ? model::DType::F32 : model::DType::BF16, uint32_t(nDocs + nTokens));
        const RoutingQueries q = makeQueries(cfg, size_t(nTokens), 99);
        std::vector<uint8_t> allowed;
        if (filter)
            for (int d = 0; d < nDocs; ++d) allowed.push_back(d % 4 != 2);
        const std::vector<ScanShard> shards = {{keys.view(), allowed}};
        // The reference: the CPU scan over the dequantized keys (cosine: the stored unit keys were
        // quantized and are not re-normalised, on either side).
        CpuRouteScanner cpu(2, st);
        auto ref = cpu.scan(cfg, 0, q, shards, size_t(topN), nullptr);
        QVERIFY2(ref.ok(), ref.status().toString().c_str());
        auto qr = quantizeRouteKeys(*quantFormatOf(st), keys.view());
        QVERIFY(qr.ok());
        auto dq = dequantizeRouteKeys(*qr, keys.view());
        QVERIFY(dq.ok());
        const auto cpuScores = scoreMap(cpu.router(), cfg, q, dq->view(keys.view()), allowed);
        std::vector<std::vector<ScoredDocument>> lists;
        for (gpu::ScanKernel kernel : {gpu::ScanKernel::Fma, gpu::ScanKernel::TensorCore}) {
            auto direct = gpu::CudaRouteScanner::create(0, 0, st);
            QVERIFY2(direct.ok(), direct.status().toString().c_str());
            QCOMPARE((*direct)->keyStorage(), st);
            (*direct)->setKernel(kernel);
            auto got = (*direct)->scan(cfg, 0, q, shards, size_t(topN), nullptr);
            QVERIFY2(got.ok(), got.status().toString().c_str());
            QCOMPARE((*got)[0].nCandidates, (*ref)[0].nCandidates);
            const QString diff = compareLists((*got)[0].top, (*ref)[0].top, cpuScores);
            QVERIFY2(diff.isEmpty(), qPrintable(diff));
            lists.push_back((*got)[0].top);
        }
        // 8-bit tables always take the FMA kernel: the tensor-core request gives the same bits (chunk
        // mean sums chunks with double atomics in any order, which may even reorder exact ties, so
        // there only scores within tolerance position by position; each list already matched the CPU).
        auto sameRun = [&](const std::vector<ScoredDocument>& a, const std::vector<ScoredDocument>& b) {
            if (chunkReduce == 0) return a == b;
            if (a.size() != b.size()) return false;
            for (size_t i = 0; i < a.size(); ++i)
                if (!closeScore(a[i].score, b[i].score)) return false;
            return true;
        };
        QVERIFY(sameRun(lists[0], lists[1]));
        auto made = createRouteScanner("cuda", {.device = 0, .keyStorage = st});
        QVERIFY2(made.ok(), made.status().toString().c_str());
        auto got = (*made)->scan(cfg, 0, q, shards, size_t(topN), nullptr);
        QVERIFY2(got.ok(), got.status().toString().c_str());
        QVERIFY(sameRun((*got)[0].top, lists[0]));
        // Second call: the 8-bit copy stays resident, the filter changes.
        std::vector<uint8_t> some(size_t(nDocs), 0);
        for (size_t d = 0; d < some.size(); d += 3) some[d] = 1;
        const std::vector<ScanShard> shards2 = {{keys.view(), some}};
        auto got2 = (*made)->scan(cfg, 0, q, shards2, size_t(topN), nullptr);
        QVERIFY(got2.ok());
        auto ref2 = cpu.scan(cfg, 0, q, shards2, size_t(topN), nullptr);
        QVERIFY(ref2.ok());
        QCOMPARE((*got2)[0].nCandidates, (*ref2)[0].nCandidates);
        const auto cpuScores2 = scoreMap(cpu.router(), cfg, q, dq->view(keys.view()), some);
        const QString diff2 = compareLists((*got2)[0].top, (*ref2)[0].top, cpuScores2);
        QVERIFY2(diff2.isEmpty(), qPrintable(diff2));
    }

    void quantizedKeysDeviceBytes() {
        // One routing layer of 5,000 chunks of the MSA-4B shape (8 KV heads × 128), P = 64: bytes the
        // device holds for the keys alone and in all, per (chunk, head) row and per memory token.
        const size_t G = 8, D = 128, P = 64, nLayers = 18;
        const SyntheticKeys keys = makeKeys(1000, 9, G, D, false, model::DType::BF16, 31);
        const size_t nChunks = keys.offsets.back(), nRows = nChunks * G;
        cudaStream_t stream = nullptr;
        QCOMPARE(cudaStreamCreate(&stream), cudaSuccess);
        std::map<KeyStorage, size_t> keyBytes;
        for (const KeyStorage st : {KeyStorage::Native, KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            size_t freeBefore = 0, freeAfter = 0, total = 0;
            QCOMPARE(cudaMemGetInfo(&freeBefore, &total), cudaSuccess);
            auto shard = gpu::DeviceRouteShard::upload(keys.view(), stream, st);
            QVERIFY2(shard.ok(), shard.status().toString().c_str());
            QCOMPARE(cudaMemGetInfo(&freeAfter, &total), cudaSuccess);
            keyBytes[st] = (*shard)->keyBytes();
            const double perRow = double((*shard)->keyBytes()) / double(nRows);
            const double perToken = double((*shard)->keyBytes()) / double(nChunks * P);
            qInfo("%s: keys %zu B (%.1f B per (chunk, head) row, %.2f B per memory token per layer, %.1f B over %zu layers); "
                  "shard total %zu B; cudaMemGetInfo delta %zu B",
                  std::string(keyStorageName(st)).c_str(), (*shard)->keyBytes(), perRow, perToken, perToken * double(nLayers), nLayers,
                  (*shard)->deviceBytes(), freeBefore > freeAfter ? freeBefore - freeAfter : size_t(0));
            QVERIFY((*shard)->deviceBytes() > (*shard)->keyBytes());
        }
        QCOMPARE(keyBytes[KeyStorage::Native], nRows * D * 2);
        QCOMPARE(keyBytes[KeyStorage::Fp8E4M3], nRows * (D + 4));
        QCOMPARE(keyBytes[KeyStorage::Int8], nRows * (D + 4));
        // The scanner reports the same: 132 / 256 of the bf16 bytes for the keys.
        auto scanner = gpu::CudaRouteScanner::create(0, 0, KeyStorage::Int8);
        QVERIFY(scanner.ok());
        const RoutingConfig cfg = makeConfig(32, G, D, false);
        QVERIFY((*scanner)->scan(cfg, 0, makeQueries(cfg, 4, 1), std::vector<ScanShard>{{keys.view(), {}}}, 16, nullptr).ok());
        QVERIFY((*scanner)->residentBytes() >= nRows * (D + 4));
        QVERIFY((*scanner)->residentBytes() < nRows * D * 2);
        cudaStreamDestroy(stream);
    }

    void headMaxUsesTheCpuScan() {
        // Head max is not linear: the "cuda" scanner hands it to the CPU scan, so results are exact.
        RoutingConfig cfg = makeConfig(8, 2, 16, false);
        cfg.headReduce = HeadReduce::Max;
        const SyntheticKeys keys = makeKeys(97, 4, 2, 16, false, model::DType::BF16, 3);
        const RoutingQueries q = makeQueries(cfg, 3, 4);
        const std::vector<ScanShard> shards = {{keys.view(), {}}};
        CpuRouteScanner cpu(1);
        auto ref = cpu.scan(cfg, 0, q, shards, 20, nullptr);
        auto made = createRouteScanner("cuda", {.device = 0, .nThreads = 1});
        QVERIFY(ref.ok() && made.ok());
        auto got = (*made)->scan(cfg, 0, q, shards, 20, nullptr);
        QVERIFY(got.ok());
        QVERIFY((*got)[0].top == (*ref)[0].top);
        QCOMPARE((*got)[0].nCandidates, (*ref)[0].nCandidates);
    }

    void splitShardsOnOneGpuEqualOneShard_data() {
        QTest::addColumn<int>("kernel");
        QTest::addColumn<int>("storage");
        QTest::newRow("fma") << int(gpu::ScanKernel::Fma) << int(KeyStorage::Native);
        QTest::newRow("tensor cores") << int(gpu::ScanKernel::TensorCore) << int(KeyStorage::Native);
        // Scales are per (chunk, head) row, so a shard's 8-bit copy is the whole table's rows: exact too.
        QTest::newRow("fp8 keys") << int(gpu::ScanKernel::Auto) << int(KeyStorage::Fp8E4M3);
        QTest::newRow("int8 keys") << int(gpu::ScanKernel::Auto) << int(KeyStorage::Int8);
    }
    void splitShardsOnOneGpuEqualOneShard() {
        // Plan → split → the shards scanned (chunks now in plan order) → exact merge, against one GPU
        // scan of the whole table: equal scores need a chunk's score not to depend on its position.
        const RoutingConfig cfg = makeConfig(8, 2, 32, false);
        const SyntheticKeys keys = makeKeys(733, 5, 2, 32, false, model::DType::BF16, 5);
        const RoutingQueries q = makeQueries(cfg, 9, 6);
        std::vector<uint8_t> allowed;
        for (size_t d = 0; d < keys.ids.size(); ++d) allowed.push_back(d % 5 != 0);
        QFETCH(int, kernel);
        QFETCH(int, storage);
        auto scanner = gpu::CudaRouteScanner::create(0, 0, KeyStorage(storage));
        QVERIFY(scanner.ok());
        (*scanner)->setKernel(gpu::ScanKernel(kernel));
        const size_t n = 50;
        auto whole = (*scanner)->scan(cfg, 0, q, std::vector<ScanShard>{{keys.view(), allowed}}, n, nullptr);
        QVERIFY2(whole.ok(), whole.status().toString().c_str());
        std::vector<uint64_t> counts;
        for (size_t d = 0; d + 1 < keys.offsets.size(); ++d) counts.push_back(keys.offsets[d + 1] - keys.offsets[d]);
        for (size_t w : {size_t(2), size_t(3), size_t(5)}) {
            auto tables = splitRouteKeys(keys.view(), allowed, planShards(counts, w));
            QVERIFY(tables.ok());
            std::vector<ScanShard> shards;
            for (const ShardTable& t : *tables) shards.push_back({t.view(), t.allowed});
            auto parts = (*scanner)->scan(cfg, 1 + w, q, shards, n, nullptr);   // own cache slots
            QVERIFY2(parts.ok(), parts.status().toString().c_str());
            std::vector<std::vector<ScoredDocument>> lists;
            size_t nCand = 0;
            for (const ShardScan& s : *parts) {
                lists.push_back(s.top);
                nCand += s.nCandidates;
            }
            QCOMPARE(nCand, (*whole)[0].nCandidates);
            const auto merged = mergeShardTops(lists, n);
            QCOMPARE(merged.size(), (*whole)[0].top.size());
            for (size_t i = 0; i < merged.size(); ++i) {
                QCOMPARE(merged[i].doc.id, (*whole)[0].top[i].id);
                // Bit for bit: QCOMPARE on floats is qFuzzyCompare (about 1e-5 relative), so compare the bits.
                QCOMPARE(std::bit_cast<uint32_t>(merged[i].doc.score), std::bit_cast<uint32_t>((*whole)[0].top[i].score));
                QCOMPARE(size_t((*tables)[merged[i].shard].sourceRows[merged[i].doc.index]), size_t((*whole)[0].top[i].index));
            }
        }
    }

    void memoryIndexOnRealBank() {
        RealBank rb;
        const Status st = makeRealBank(rb, 90);
        QVERIFY2(st.isOk(), st.toString().c_str());
        QVERIFY(rb.bank->nShards() >= 3);
        auto cpuIndex = MemoryIndex::create(*rb.bank, *rb.files, rb.cfg, 1);
        auto gpuIndex = MemoryIndex::create(*rb.bank, *rb.files, rb.cfg, 1);
        QVERIFY(cpuIndex.ok() && gpuIndex.ok());
        auto scanner = createRouteScanner("cuda", {.device = 0});
        QVERIFY2(scanner.ok(), scanner.status().toString().c_str());
        gpuIndex->setScanner(std::move(scanner).value());
        QVERIFY(gpuIndex->scanner().name().rfind("cuda", 0) == 0);
        std::unordered_set<int64_t> some;
        for (int64_t id = 0; id < 1009; id += 3) some.insert(id);
        for (bool filtered : {false, true}) {
            cpuIndex->setFilter(filtered ? std::optional(some) : std::nullopt);
            gpuIndex->setFilter(filtered ? std::optional(some) : std::nullopt);
            for (size_t li = 0; li < 2; ++li) {
                const RoutingQueries q = makeQueries(rb.cfg, 6, uint32_t(40 + li));
                auto a = cpuIndex->route(li, q, 30);
                auto b = gpuIndex->route(li, q, 30);
                QVERIFY2(a.ok() && b.ok(), (a.ok() ? b.status() : a.status()).toString().c_str());
                QCOMPARE(b->nCandidates, a->nCandidates);
                std::map<uint64_t, float> ref;
                for (const auto& d : a->top) ref[d.id] = d.score;
                // Only the CPU's top is known here: compare where both lists agree on membership.
                QCOMPARE(b->top.size(), a->top.size());
                for (size_t i = 0; i < a->top.size(); ++i) {
                    if (b->top[i].id != a->top[i].id) {
                        QVERIFY2(closeScore(a->top[i].score, b->top[i].score), "different documents at a clear gap");
                        continue;
                    }
                    QVERIFY(closeScore(b->top[i].score, a->top[i].score));
                    QCOMPARE(b->top[i].index, a->top[i].index);
                }
                QCOMPARE(b->selected.size(), a->selected.size());
                QCOMPARE(b->nChunks, a->nChunks);
            }
        }
    }

    void memoryParallelSplitsExactly() {
        RealBank rb;
        const Status st = makeRealBank(rb, 120);
        QVERIFY2(st.isOk(), st.toString().c_str());
        auto one = gpu::MemoryParallel::create(*rb.bank, rb.cfg, {.devices = {0}});
        QVERIFY2(one.ok(), one.status().toString().c_str());
        QCOMPARE((*one)->worldSize(), size_t(1));
        QVERIFY(!(*one)->usesNccl());
        auto cpuIndex = MemoryIndex::create(*rb.bank, *rb.files, rb.cfg, 1);
        QVERIFY(cpuIndex.ok());
        std::vector<std::vector<int>> worlds = {{0, 0}, {0, 0, 0}, {0, 0, 0, 0, 0}};
        if (m_nDevices >= 2) worlds.push_back({0, 1});
        std::unordered_set<int64_t> some;
        for (int64_t id = 0; id < 1009; id += 2) some.insert(id);
        for (const auto& devices : worlds) {
            auto mp = gpu::MemoryParallel::create(*rb.bank, rb.cfg, {.devices = devices, .rootRank = devices.size() - 1});
            QVERIFY2(mp.ok(), mp.status().toString().c_str());
            QCOMPARE((*mp)->worldSize(), devices.size());
            for (bool filtered : {false, true}) {
                (*one)->setFilter(filtered ? std::optional(some) : std::nullopt);
                (*mp)->setFilter(filtered ? std::optional(some) : std::nullopt);
                cpuIndex->setFilter(filtered ? std::optional(some) : std::nullopt);
                for (size_t li = 0; li < 2; ++li) {
                    const RoutingQueries q = makeQueries(rb.cfg, 4, uint32_t(60 + li));
                    auto a = (*one)->route(li, q, 25);
                    auto b = (*mp)->route(li, q, 25);
                    QVERIFY2(a.ok() && b.ok(), (a.ok() ? b.status() : a.status()).toString().c_str());
                    QVERIFY2(a->top == b->top, qPrintable(QString("world %1 differs from world 1").arg(devices.size())));
                    QVERIFY(a->selected == b->selected);
                    QCOMPARE(a->nCandidates, b->nCandidates);
                    QCOMPARE(a->nChunks, b->nChunks);
                    auto c = cpuIndex->route(li, q, 25);
                    QVERIFY(c.ok());
                    QCOMPARE(a->nCandidates, c->nCandidates);
                    for (size_t i = 0; i < c->selected.size(); ++i)
                        QVERIFY(a->selected[i].id == c->selected[i].id || closeScore(a->selected[i].score, c->selected[i].score));
                }
            }
        }
    }

    void memoryParallelWith8BitKeysSplitsExactly() {
        // 8-bit keys: worlds of 3 and 5 ranks on one GPU equal world size 1 of the same storage bit for
        // bit, and the CPU index routing over the dequantized keys selects the same documents.
        RealBank rb;
        const Status st = makeRealBank(rb, 120);
        QVERIFY2(st.isOk(), st.toString().c_str());
        for (const KeyStorage storage : {KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            auto one = gpu::MemoryParallel::create(*rb.bank, rb.cfg, {.devices = {0}, .keyStorage = storage});
            QVERIFY2(one.ok(), one.status().toString().c_str());
            auto cpuIndex = MemoryIndex::create(*rb.bank, *rb.files, rb.cfg, 1);
            QVERIFY(cpuIndex.ok());
            cpuIndex->setScanner(std::make_unique<CpuRouteScanner>(1, storage));
            for (const std::vector<int>& devices : {std::vector<int>{0, 0, 0}, std::vector<int>{0, 0, 0, 0, 0}}) {
                auto mp = gpu::MemoryParallel::create(*rb.bank, rb.cfg, {.devices = devices, .keyStorage = storage});
                QVERIFY2(mp.ok(), mp.status().toString().c_str());
                for (size_t li = 0; li < 2; ++li) {
                    const RoutingQueries q = makeQueries(rb.cfg, 4, uint32_t(80 + li));
                    auto a = (*one)->route(li, q, 25);
                    auto b = (*mp)->route(li, q, 25);
                    QVERIFY2(a.ok() && b.ok(), (a.ok() ? b.status() : a.status()).toString().c_str());
                    QVERIFY2(a->top == b->top, qPrintable(QString("world %1 differs from world 1").arg(devices.size())));
                    QCOMPARE(a->nCandidates, b->nCandidates);
                    auto c = cpuIndex->route(li, q, 25);
                    QVERIFY(c.ok());
                    QCOMPARE(a->nCandidates, c->nCandidates);
                    QCOMPARE(a->selected.size(), c->selected.size());
                    for (size_t i = 0; i < c->selected.size(); ++i)
                        QVERIFY(a->selected[i].id == c->selected[i].id || closeScore(a->selected[i].score, c->selected[i].score));
                }
            }
        }
    }

    void contentTierCopiesSelectedRows() {
        RealBank rb;
        const Status st = makeRealBank(rb, 40);
        QVERIFY2(st.isOk(), st.toString().c_str());
        std::vector<ScoredDocument> sel;
        for (uint32_t row : {5u, 0u, 17u, 33u})
            if (rb.bank->documents()[row].live()) sel.push_back({uint64_t(rb.bank->documents()[row].id), row, 0.0f});
        for (bool registerMapping : {true, false}) {
            auto tier = gpu::ContentTier::create(*rb.bank, 0, {.registerMapping = registerMapping});
            QVERIFY2(tier.ok(), tier.status().toString().c_str());
            qInfo("content tier: %s", (*tier)->hostRegistered() ? "page-locked mapping" : "pinned staging");
            if (!registerMapping) QVERIFY(!(*tier)->hostRegistered());
            cudaStream_t consumer = nullptr;
            QCOMPARE(cudaStreamCreate(&consumer), cudaSuccess);
            for (int round = 0; round < 2; ++round)
                for (size_t li = 0; li < 2; ++li) {
                    std::vector<ScoredDocument> s = sel;
                    if (round) std::reverse(s.begin(), s.end());
                    QVERIFY((*tier)->stage(li, s).isOk());
                    auto rows = (*tier)->acquire(li, consumer);
                    QVERIFY(rows.ok());
                    std::vector<std::byte> wantK, wantV;
                    for (const auto& d : s) {
                        auto k = rb.bank->keys(d.index, li), v = rb.bank->values(d.index, li);
                        wantK.insert(wantK.end(), k.begin(), k.end());
                        wantV.insert(wantV.end(), v.begin(), v.end());
                    }
                    QCOMPARE(rows->nRows * rows->nKvHeads * rows->headDim * 2, wantK.size());
                    std::vector<std::byte> gotK(wantK.size()), gotV(wantV.size());
                    QCOMPARE(cudaMemcpyAsync(gotK.data(), rows->keys, gotK.size(), cudaMemcpyDeviceToHost, consumer), cudaSuccess);
                    QCOMPARE(cudaMemcpyAsync(gotV.data(), rows->values, gotV.size(), cudaMemcpyDeviceToHost, consumer), cudaSuccess);
                    QVERIFY((*tier)->release(li, consumer).isOk());
                    QCOMPARE(cudaStreamSynchronize(consumer), cudaSuccess);
                    QVERIFY(gotK == wantK);
                    QVERIFY(gotV == wantV);
                }
            cudaStreamDestroy(consumer);
        }
        auto tier = gpu::ContentTier::create(*rb.bank, 0);
        QVERIFY(tier.ok());
        QCOMPARE((*tier)->acquire(0, nullptr).status().code(), ErrorCode::InvalidArgument);
        std::vector<ScoredDocument> bad = {{1, 100000u, 0.0f}};
        QCOMPARE((*tier)->stage(0, bad).code(), ErrorCode::InvalidArgument);
    }

    void scanThroughput() {
        // Timing only where it is cheap to get: one layer of 1M memory tokens of the MSA-4B shape
        // (15,625 chunks × 8 × 128 bf16 = 32 MB), 40 query tokens, k 16, both kernels, CUDA events.
        // Prints ms per layer and key bandwidth; asserts that both kernels select the same documents.
        const size_t nDocs = 3125, chunksPerDoc = 5, G = 8, D = 128, W = G * D, nTokens = 40;
        std::mt19937 rng(1);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<uint16_t> bf(nDocs * chunksPerDoc * W);
        for (auto& x : bf) x = model::f32ToBf16(nd(rng));
        std::vector<uint64_t> offsets{0}, ids;
        for (size_t d = 0; d < nDocs; ++d) {
            offsets.push_back(offsets.back() + chunksPerDoc);
            ids.push_back(d);
        }
        const RouteKeys keys{std::as_bytes(std::span(bf)), model::DType::BF16, offsets.back(), G, D, offsets, ids};
        const RoutingConfig cfg = makeConfig(32, G, D, false);
        auto folded = foldHeadMean(makeQueries(cfg, nTokens, 2), G);
        QVERIFY(folded.ok());
        cudaStream_t stream = nullptr;
        QCOMPARE(cudaStreamCreate(&stream), cudaSuccess);
        auto shard = gpu::DeviceRouteShard::upload(keys, stream);
        QVERIFY2(shard.ok(), shard.status().toString().c_str());
        float* dq = nullptr;
        gpu::DeviceCandidate* dOut = nullptr;
        QCOMPARE(cudaMalloc(reinterpret_cast<void**>(&dq), folded->size() * 4), cudaSuccess);
        QCOMPARE(cudaMalloc(reinterpret_cast<void**>(&dOut), 17 * sizeof(gpu::DeviceCandidate)), cudaSuccess);
        QCOMPARE(cudaMemcpy(dq, folded->data(), folded->size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
        gpu::ScanWorkspace ws;
        cudaEvent_t t0 = nullptr, t1 = nullptr;
        cudaEventCreate(&t0);
        cudaEventCreate(&t1);
        std::vector<std::vector<uint64_t>> picks;
        for (gpu::ScanKernel kernel : {gpu::ScanKernel::Fma, gpu::ScanKernel::TensorCore}) {
            const int reps = 20;
            QVERIFY(gpu::enqueueScan(**shard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream, kernel).isOk());
            cudaEventRecord(t0, stream);
            for (int i = 0; i < reps; ++i)
                QVERIFY(gpu::enqueueScan(**shard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream, kernel).isOk());
            cudaEventRecord(t1, stream);
            QCOMPARE(cudaEventSynchronize(t1), cudaSuccess);
            float ms = 0;
            cudaEventElapsedTime(&ms, t0, t1);
            ms /= reps;
            const double gbs = double(bf.size() * 2) / (ms * 1e-3) / 1e9;
            qInfo("%s: %.3f ms per layer at 1M tokens (%.0f GB/s of keys), %.2f ms for 18 layers",
                  kernel == gpu::ScanKernel::Fma ? "fma kernel" : "tensor-core kernel", double(ms), gbs, double(ms) * 18);
            // The answer read back comes from one more scan into poisoned slots (0xFF: index =
            // kNoCandidate, count 2^64 − 1), so a kernel that writes nothing cannot pass on an
            // earlier kernel's answer.
            QCOMPARE(cudaMemsetAsync(dOut, 0xFF, 17 * sizeof(gpu::DeviceCandidate), stream), cudaSuccess);
            QVERIFY(gpu::enqueueScan(**shard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream, kernel).isOk());
            QCOMPARE(cudaStreamSynchronize(stream), cudaSuccess);
            std::vector<gpu::DeviceCandidate> host(17);
            QCOMPARE(cudaMemcpy(host.data(), dOut, host.size() * sizeof(gpu::DeviceCandidate), cudaMemcpyDeviceToHost), cudaSuccess);
            const ShardScan s = gpu::decodeCandidates(host, 16);
            QCOMPARE(s.nCandidates, nDocs);
            std::vector<uint64_t> p;
            for (const auto& d : s.top) p.push_back(d.id);
            picks.push_back(p);
        }
        QCOMPARE(picks[0].size(), size_t(16));
        QCOMPARE(picks[0], picks[1]);
        // 8-bit keys (FMA kernel): the same layer from fp8 / int8 codes + scales; bandwidth counts
        // the bytes actually read (codes + scales); the picks are checked against the CPU reference.
        for (const KeyStorage st : {KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            auto qshard = gpu::DeviceRouteShard::upload(keys, stream, st);
            QVERIFY2(qshard.ok(), qshard.status().toString().c_str());
            const int reps = 20;
            QVERIFY(gpu::enqueueScan(**qshard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream).isOk());
            cudaEventRecord(t0, stream);
            for (int i = 0; i < reps; ++i)
                QVERIFY(gpu::enqueueScan(**qshard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream).isOk());
            cudaEventRecord(t1, stream);
            QCOMPARE(cudaEventSynchronize(t1), cudaSuccess);
            float ms = 0;
            cudaEventElapsedTime(&ms, t0, t1);
            ms /= reps;
            const double gbs = double((*qshard)->keyBytes()) / (ms * 1e-3) / 1e9;
            qInfo("%s keys, fma kernel: %.3f ms per layer at 1M tokens (%.0f GB/s of codes + scales), %.2f ms for 18 layers; "
                  "%zu B of keys resident vs %zu B bf16",
                  std::string(keyStorageName(st)).c_str(), double(ms), gbs, double(ms) * 18, (*qshard)->keyBytes(), bf.size() * 2);
            QCOMPARE(cudaMemsetAsync(dOut, 0xFF, 17 * sizeof(gpu::DeviceCandidate), stream), cudaSuccess);   // poisoned, as above
            QVERIFY(gpu::enqueueScan(**qshard, dq, nTokens, QueryReduce::Max, ChunkReduce::Max, 16, ws, dOut, stream).isOk());
            QCOMPARE(cudaStreamSynchronize(stream), cudaSuccess);
            std::vector<gpu::DeviceCandidate> host(17);
            QCOMPARE(cudaMemcpy(host.data(), dOut, host.size() * sizeof(gpu::DeviceCandidate), cudaMemcpyDeviceToHost), cudaSuccess);
            const ShardScan got = gpu::decodeCandidates(host, 16);
            QCOMPARE(got.nCandidates, nDocs);
            CpuRouteScanner cpu(0, st);
            const RoutingQueries q = makeQueries(cfg, nTokens, 2);
            auto ref = cpu.scan(cfg, 0, q, std::vector<ScanShard>{{keys, {}}}, 16, nullptr);
            QVERIFY(ref.ok());
            auto qr = quantizeRouteKeys(*quantFormatOf(st), keys);
            QVERIFY(qr.ok());
            auto dqk = dequantizeRouteKeys(*qr, keys);
            QVERIFY(dqk.ok());
            const QString diff = compareLists(got.top, (*ref)[0].top, scoreMap(cpu.router(), cfg, q, dqk->view(keys), {}));
            QVERIFY2(diff.isEmpty(), qPrintable(diff));
        }
        cudaEventDestroy(t0);
        cudaEventDestroy(t1);
        cudaFree(dq);
        cudaFree(dOut);
        ws.release();
        shard->reset();
        cudaStreamDestroy(stream);
    }

private:
    int m_nDevices = 0;
};

QTEST_GUILESS_MAIN(TestGpuRouting)
#include "tst_gpu_routing.moc"

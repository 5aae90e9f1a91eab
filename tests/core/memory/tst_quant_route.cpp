// tst_quant_route.cpp (label: unit): routing over 8-bit routing keys on the CPU (core/memory/quant_route.h),
// the reference and the algebra of the GPU scan's 8-bit variant (gpu/route_scan.h "8-bit keys").
//  - decodeE4M3Bits / decodeInt8Bits (what the GPU kernel calls) equal key_quant's decoders on all 256
//    codes, bit for bit; quantizeRowsInto (the upload's writer into pinned staging) equals quantizeRows;
//  - quantizeRouteKeys numbers rows chunk × key head, crosses its 4096-chunk block boundary, and equals
//    key_quant on the widened table; quantizedKeyElement (the GPU kernel's key loader) gives exactly
//    the dequantized value of every element; non-finite keys are refused naming the row;
//  - the head-mean fold with per-(chunk, head) scales, in both orders (dequantize first, as the kernel;
//    scale after the per-head dot, the tensor-core form), equals Router::scoreDocuments over the
//    dequantized keys within f32 tolerance and selects the same ids, for both scoring branches, GQA
//    groups 1/2/3/4, odd head dims, token max/mean/last, chunk max/mean, and a filter;
//  - CpuRouteScanner with 8-bit storage routes exactly (bit for bit) like the Router over the
//    dequantized keys, re-quantizes when a shard's keys move, and differs from the native scan;
//  - keyStorage names and the registry's "cpu" factory option.
#include "core/memory/key_quant.h"
#include "core/memory/quant_route.h"
#include "core/memory/route_scanner.h"

#include "routing_test_util.h"

#include <QtTest>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

using namespace msa;
using namespace msa::memory;

namespace {

using msa::memory::testutil::makeConfig;
using msa::memory::testutil::makeQueries;

struct SyntheticKeys {
    std::vector<uint16_t> bf16;
    std::vector<uint64_t> offsets{0};
    std::vector<uint64_t> ids;
    size_t nHeads = 0, headDim = 0;
    RouteKeys view() const {
        return RouteKeys{std::as_bytes(std::span(bf16)), model::DType::BF16, offsets.back(), nHeads, headDim, offsets, ids};
    }
};

// nDocs documents of 0..maxChunks chunks (every 11th empty, every 7th a copy of the previous one under
// another id: an exact tie); rows L2-normalised per head when `unit` (the cosine branch's bank keys),
// heads of different magnitudes otherwise (so per-head scales differ).
SyntheticKeys makeKeys(size_t nDocs, size_t maxChunks, size_t G, size_t D, bool unit, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    SyntheticKeys k;
    k.nHeads = G;
    k.headDim = D;
    std::vector<float> prev;
    for (size_t d = 0; d < nDocs; ++d) {
        std::vector<float> rows;
        if (d % 7 == 6 && !prev.empty()) {
            rows = prev;
        } else {
            const size_t nc = (d % 11 == 3 && nDocs > 1) ? 0 : 1 + rng() % maxChunks;
            rows.resize(nc * G * D);
            for (size_t r = 0; r < nc * G; ++r) {
                const float headScale = unit ? 1.0f : std::ldexp(1.0f, int(r % G) - 1) * (1.0f + 0.1f * float(r % 5));
                for (size_t i = 0; i < D; ++i) rows[r * D + i] = headScale * nd(rng);
            }
            if (unit) msa::memory::testutil::normalizeRows(rows, D);
        }
        for (float x : rows) k.bf16.push_back(model::f32ToBf16(x));
        k.offsets.push_back(k.offsets.back() + rows.size() / (G * D));
        prev = rows;
    }
    k.ids.resize(nDocs);
    for (size_t i = 0; i < nDocs; ++i) k.ids[i] = 500 + 7 * i;
    std::shuffle(k.ids.begin(), k.ids.end(), rng);
    return k;
}

// Σ|q'·x̂| terms of a document's best chunk bound the f32 error; a fixed relative + absolute slack is
// simpler and ample here (scores are O(1), dots of ≤ 512 terms): 2e-5 · (1 + |ref|).
bool close(float got, float ref) { return std::abs(got - ref) <= 2e-5f * (1.0f + std::abs(ref)); }

}  // namespace

class TestQuantRoute : public QObject {
    Q_OBJECT
private slots:
    void deviceDecodersEqualKeyQuant() {
        for (int c = 0; c < 256; ++c) {
            const auto code = static_cast<uint8_t>(c);
            const float table = decodeE4M3(code), bits = decodeE4M3Bits(code);
            if (std::isnan(table)) {
                QVERIFY2(std::isnan(bits), qPrintable(QString("code %1").arg(c)));
                QCOMPARE(std::signbit(bits), std::signbit(table));
            } else {
                QCOMPARE(std::bit_cast<uint32_t>(bits), std::bit_cast<uint32_t>(table));
            }
            QCOMPARE(std::bit_cast<uint32_t>(decodeInt8Bits(code)), std::bit_cast<uint32_t>(decodeInt8(static_cast<int8_t>(code))));
        }
        QCOMPARE(decodeE4M3Bits(0x7E), 448.0f);
        QCOMPARE(decodeE4M3Bits(0x01), 0.001953125f);
        QCOMPARE(decodeE4M3Bits(0x80), -0.0f);
        QVERIFY(std::signbit(decodeE4M3Bits(0x80)));
        QCOMPARE(decodeInt8Bits(0x81), -127.0f);
    }

    void quantizeIntoEqualsQuantizeRows() {
        std::mt19937 rng(11);
        std::normal_distribution<float> nd(0.0f, 3.0f);
        std::vector<float> v(37 * 13);
        for (float& x : v) x = nd(rng);
        std::fill(v.begin() + 13 * 4, v.begin() + 13 * 5, 0.0f);   // an all-zero row
        for (QuantFormat f : {QuantFormat::Fp8E4M3, QuantFormat::Int8}) {
            auto ref = quantizeRows(f, v, 13);
            QVERIFY(ref.ok());
            std::vector<uint8_t> codes(v.size(), 0xAA);
            std::vector<float> scales(37, -1.0f);
            QVERIFY(quantizeRowsInto(f, v, 13, codes, scales).isOk());
            QCOMPARE(codes, ref->codes);
            QCOMPARE(scales, ref->scales);
            QCOMPARE(scales[4], 0.0f);
            std::vector<float> small(36);
            QCOMPARE(quantizeRowsInto(f, v, 13, codes, small).code(), ErrorCode::InvalidArgument);
        }
        v[13 * 20 + 3] = std::numeric_limits<float>::infinity();
        std::vector<uint8_t> codes(v.size());
        std::vector<float> scales(37);
        const Status s = quantizeRowsInto(QuantFormat::Int8, v, 13, codes, scales, 1000);
        QCOMPARE(s.code(), ErrorCode::InvalidArgument);
        QVERIFY2(s.message().find("row 1020") != std::string::npos, s.message().c_str());
    }

    void routeKeysQuantizeRowByRow() {
        // 4100 chunks of 2 heads × 3: the widening + quantization runs in blocks of 4096 chunks.
        SyntheticKeys k;
        k.nHeads = 2;
        k.headDim = 3;
        std::mt19937 rng(4);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> f32(4100 * 6);
        for (size_t i = 0; i < f32.size(); ++i) {
            k.bf16.push_back(model::f32ToBf16(nd(rng) * float(1 + (i / 3) % 2 * 9)));
            f32[i] = model::bf16ToF32(k.bf16.back());
        }
        k.offsets = {0, 1000, 1000, 4100};
        k.ids = {3, 1, 2};
        const RouteKeys keys = k.view();
        for (QuantFormat f : {QuantFormat::Fp8E4M3, QuantFormat::Int8}) {
            auto q = quantizeRouteKeys(f, keys);
            QVERIFY2(q.ok(), q.status().toString().c_str());
            QCOMPARE(q->nRows, size_t(8200));
            QCOMPARE(q->rowLength, size_t(3));
            auto ref = quantizeRows(f, f32, 3);
            QVERIFY(ref.ok());
            QCOMPARE(q->codes, ref->codes);
            QCOMPARE(q->scales, ref->scales);
            // Row (c, G) = c · nHeads + G: the heads' magnitudes differ by 10×, so do their scales.
            QVERIFY(q->scales[8199] > 3 * q->scales[8198]);
            auto dq = dequantizeRouteKeys(*q, keys);
            QVERIFY(dq.ok());
            std::vector<float> back(f32.size());
            dequantizeRows(*ref, back);
            QCOMPARE(dq->values, back);
            const RouteKeys v = dq->view(keys);
            QCOMPARE(v.dtype, model::DType::F32);
            QCOMPARE(v.nChunks, size_t(4100));
            QCOMPARE(v.data.size(), f32.size() * 4);
            QCOMPARE(v.docIds.data(), keys.docIds.data());
        }
        // The GPU loader's element function over the same rows, every element, odd shape (2 × 3).
        for (QuantFormat f : {QuantFormat::Fp8E4M3, QuantFormat::Int8}) {
            auto q = quantizeRouteKeys(f, keys);
            QVERIFY(q.ok());
            auto dq = dequantizeRouteKeys(*q, keys);
            QVERIFY(dq.ok());
            for (size_t c = 0; c < keys.nChunks; ++c)
                for (size_t e = 0; e < 6; ++e) {
                    const float v = quantizedKeyElement(f == QuantFormat::Fp8E4M3, q->codes.data(), q->scales.data(), 6, 2, 3, c, e);
                    if (std::bit_cast<uint32_t>(v) != std::bit_cast<uint32_t>(dq->values[c * 6 + e]))
                        QFAIL(qPrintable(QString("chunk %1 element %2: %3 vs %4").arg(c).arg(e).arg(double(v)).arg(double(dq->values[c * 6 + e]))));
                }
        }
        std::vector<float> nanKeys(2 * 6, 1.0f);
        nanKeys[7] = NAN;
        const std::vector<uint64_t> off = {0, 2};
        const RouteKeys bad{std::as_bytes(std::span(nanKeys)), model::DType::F32, 2, 2, 3, off, {}};
        auto r = quantizeRouteKeys(QuantFormat::Int8, bad);
        QVERIFY(!r.ok());
        QCOMPARE(r.status().code(), ErrorCode::InvalidArgument);
        QVERIFY2(r.status().message().find("row 2") != std::string::npos, r.status().message().c_str());
        const RouteKeys f16{std::as_bytes(std::span(nanKeys)), model::DType::F16, 2, 2, 3, off, {}};
        QCOMPARE(quantizeRouteKeys(QuantFormat::Int8, f16).status().code(), ErrorCode::InvalidArgument);
    }

    void foldedScoresEqualRouterOverDequantized_data() {
        QTest::addColumn<int>("nDocs");
        QTest::addColumn<int>("H");
        QTest::addColumn<int>("G");
        QTest::addColumn<int>("D");
        QTest::addColumn<int>("nTokens");
        QTest::addColumn<bool>("cosine");
        QTest::addColumn<bool>("filter");
        QTest::addColumn<int>("queryReduce");   // 0 max, 1 mean, 2 last
        QTest::addColumn<int>("chunkReduce");   // 0 max, 1 mean
        for (const bool fp8 : {true, false}) {
            const char* f = fp8 ? "fp8" : "int8";
            QTest::addRow("%s dot, 8/2 x 16", f) << 157 << 8 << 2 << 16 << 5 << false << false << 0 << 0;
            QTest::addRow("%s cosine, 8/2 x 16, filter", f) << 157 << 8 << 2 << 16 << 5 << true << true << 0 << 0;
            QTest::addRow("%s dot, msa-4b heads 32/8 x 64", f) << 61 << 32 << 8 << 64 << 7 << false << false << 0 << 0;
            QTest::addRow("%s cosine, 32/8 x 64, filter", f) << 61 << 32 << 8 << 64 << 7 << true << true << 0 << 0;
            QTest::addRow("%s odd head dim 13, groups of 3", f) << 83 << 9 << 3 << 13 << 4 << false << true << 0 << 0;
            QTest::addRow("%s no grouping (g = 1), 1 token", f) << 40 << 4 << 4 << 24 << 1 << true << false << 0 << 0;
            QTest::addRow("%s token mean, chunk mean", f) << 101 << 6 << 3 << 20 << 9 << false << false << 1 << 1;
            QTest::addRow("%s token last, cosine", f) << 101 << 6 << 3 << 20 << 9 << true << false << 2 << 0;
            QTest::addRow("%s 1 doc 1 chunk", f) << 1 << 2 << 1 << 8 << 1 << false << false << 0 << 0;
        }
    }
    void foldedScoresEqualRouterOverDequantized() {
        QFETCH(int, nDocs);
        QFETCH(int, H);
        QFETCH(int, G);
        QFETCH(int, D);
        QFETCH(int, nTokens);
        QFETCH(bool, cosine);
        QFETCH(bool, filter);
        QFETCH(int, queryReduce);
        QFETCH(int, chunkReduce);
        const QuantFormat format = QString(QTest::currentDataTag()).startsWith("fp8") ? QuantFormat::Fp8E4M3 : QuantFormat::Int8;
        RoutingConfig cfg = makeConfig(size_t(H), size_t(G), size_t(D), cosine);
        cfg.queryReduce = queryReduce == 0 ? QueryReduce::Max : queryReduce == 1 ? QueryReduce::Mean : QueryReduce::Last;
        cfg.chunkReduce = chunkReduce == 0 ? ChunkReduce::Max : ChunkReduce::Mean;
        const SyntheticKeys k = makeKeys(size_t(nDocs), 6, size_t(G), size_t(D), cosine, uint32_t(nDocs * 31 + D));
        const RouteKeys keys = k.view();
        const RoutingQueries q = makeQueries(cfg, size_t(nTokens), uint32_t(H + D));
        std::vector<uint8_t> allowed;
        if (filter)
            for (int d = 0; d < nDocs; ++d) allowed.push_back(d % 5 != 1);
        auto qr = quantizeRouteKeys(format, keys);
        QVERIFY(qr.ok());
        auto dq = dequantizeRouteKeys(*qr, keys);
        QVERIFY(dq.ok());
        Router router(2);
        // The reference: the Router over the dequantized keys (cosine: the stored, already normalised
        // keys were quantized; no re-normalisation, as on the GPU).
        auto ref = router.scoreDocuments(cfg, q, dq->view(keys), {.allowed = allowed});
        QVERIFY2(ref.ok(), ref.status().toString().c_str());
        auto native = router.scoreDocuments(cfg, q, keys, {.allowed = allowed});
        QVERIFY(native.ok());
        const size_t nTop = std::min<size_t>(size_t(nDocs), 24);
        const std::vector<ScoredDocument> refTop = selectTop(*ref, keys.docIds, nTop);
        size_t moved = 0;
        for (QuantDotOrder order : {QuantDotOrder::DequantizeFirst, QuantDotOrder::ScaleAfterDot}) {
            const char* name = order == QuantDotOrder::DequantizeFirst ? "dequantize first" : "scale after dot";
            auto got = foldedQuantizedScores(cfg, q, *qr, keys, allowed, order);
            QVERIFY2(got.ok(), got.status().toString().c_str());
            QCOMPARE(got->size(), ref->size());
            double worst = 0;
            for (size_t d = 0; d < got->size(); ++d) {
                const float a = (*got)[d], b = (*ref)[d];
                QCOMPARE(std::isfinite(a), std::isfinite(b));
                if (std::isfinite(b)) worst = std::max(worst, std::abs(double(a) - b) / (1.0 + std::abs(b)));
                if (std::isfinite(b))
                    QVERIFY2(close(a, b), qPrintable(QString("%1, doc %2: %3 vs router %4").arg(name).arg(d).arg(double(a), 0, 'g', 9).arg(double(b), 0, 'g', 9)));
                if (std::isfinite(b) && (*native)[d] != b) ++moved;
            }
            qInfo("%s: max |score - router| / (1 + |router|) = %.3g", name, worst);
            const std::vector<ScoredDocument> top = selectTop(*got, keys.docIds, nTop);
            QCOMPARE(top.size(), refTop.size());
            for (size_t i = 0; i < top.size(); ++i)
                QVERIFY2(top[i].id == refTop[i].id, qPrintable(QString("%1: position %2 id %3 vs %4").arg(name).arg(i).arg(top[i].id).arg(refTop[i].id)));
        }
        // The quantization did change scores (so a scan that ignored the 8-bit copy would fail above).
        QVERIFY(moved > 0);
    }

    void foldRefusesHeadMaxAndBadShapes() {
        RoutingConfig cfg = makeConfig(4, 2, 8, false);
        const SyntheticKeys k = makeKeys(5, 2, 2, 8, false, 1);
        const RouteKeys keys = k.view();
        const RoutingQueries q = makeQueries(cfg, 2, 2);
        auto qr = quantizeRouteKeys(QuantFormat::Int8, keys);
        QVERIFY(qr.ok());
        cfg.headReduce = HeadReduce::Max;
        QCOMPARE(foldedQuantizedScores(cfg, q, *qr, keys, {}, QuantDotOrder::DequantizeFirst).status().code(), ErrorCode::InvalidArgument);
        cfg.headReduce = HeadReduce::Mean;
        const std::vector<uint8_t> wrongFilter(3, 1);
        QCOMPARE(foldedQuantizedScores(cfg, q, *qr, keys, wrongFilter, QuantDotOrder::DequantizeFirst).status().code(),
                 ErrorCode::InvalidArgument);
        QuantizedRows shortRows = *qr;
        shortRows.nRows -= 2;
        QCOMPARE(foldedQuantizedScores(cfg, q, shortRows, keys, {}, QuantDotOrder::ScaleAfterDot).status().code(), ErrorCode::InvalidArgument);
        QCOMPARE(dequantizeRouteKeys(shortRows, keys).status().code(), ErrorCode::InvalidArgument);
    }

    void cpuScannerRoutesOverDequantizedKeys() {
        for (const KeyStorage storage : {KeyStorage::Fp8E4M3, KeyStorage::Int8}) {
            for (const bool cosine : {false, true}) {
                const RoutingConfig cfg = makeConfig(8, 2, 32, cosine);
                SyntheticKeys a = makeKeys(90, 5, 2, 32, cosine, 7), b = makeKeys(60, 5, 2, 32, cosine, 8);
                for (uint64_t& id : b.ids) id += 100000;   // unique across shards
                const RoutingQueries q = makeQueries(cfg, 6, 9);
                std::vector<uint8_t> allowedB(60, 1);
                allowedB[3] = allowedB[17] = 0;
                const std::vector<ScanShard> shards = {{a.view(), {}}, {b.view(), allowedB}};
                CpuRouteScanner scanner(2, storage), native(2);
                QCOMPARE(scanner.keyStorage(), storage);
                auto got = scanner.scan(cfg, 0, q, shards, 20, nullptr);
                QVERIFY2(got.ok(), got.status().toString().c_str());
                auto nat = native.scan(cfg, 0, q, shards, 20, nullptr);
                QVERIFY(nat.ok());
                Router router(1);
                bool differs = false;
                for (size_t si = 0; si < shards.size(); ++si) {
                    auto qr = quantizeRouteKeys(*quantFormatOf(storage), shards[si].keys);
                    QVERIFY(qr.ok());
                    auto dq = dequantizeRouteKeys(*qr, shards[si].keys);
                    QVERIFY(dq.ok());
                    auto scores = router.scoreDocuments(cfg, q, dq->view(shards[si].keys), {.allowed = shards[si].allowed});
                    QVERIFY(scores.ok());
                    QVERIFY((*got)[si].top == selectTop(*scores, shards[si].keys.docIds, 20));   // bit for bit
                    QCOMPARE((*got)[si].nCandidates, (*nat)[si].nCandidates);
                    differs = differs || !((*got)[si].top == (*nat)[si].top);
                }
                QVERIFY(differs);
                // Same layer position, shard 0's keys replaced: the cached copy must not be reused.
                const std::vector<ScanShard> moved = {{b.view(), allowedB}, {a.view(), {}}};
                auto again = scanner.scan(cfg, 0, q, moved, 20, nullptr);
                QVERIFY(again.ok());
                QVERIFY((*again)[0].top == (*got)[1].top);
                QVERIFY((*again)[1].top == (*got)[0].top);
            }
        }
    }

    void storageNamesAndFactory() {
        for (const KeyStorage s : {KeyStorage::Native, KeyStorage::Fp8E4M3, KeyStorage::Int8})
            QCOMPARE(parseKeyStorage(keyStorageName(s)), std::optional<KeyStorage>(s));
        QCOMPARE(parseKeyStorage("fp8"), std::optional<KeyStorage>(KeyStorage::Fp8E4M3));
        QCOMPARE(parseKeyStorage("bf16"), std::optional<KeyStorage>(KeyStorage::Native));
        QVERIFY(!parseKeyStorage("int4"));
        QVERIFY(!quantFormatOf(KeyStorage::Native));
        QCOMPARE(*quantFormatOf(KeyStorage::Int8), QuantFormat::Int8);
        auto made = createRouteScanner("cpu", {.nThreads = 1, .keyStorage = KeyStorage::Int8});
        QVERIFY(made.ok());
        auto* cpu = dynamic_cast<CpuRouteScanner*>(made->get());
        QVERIFY(cpu);
        QCOMPARE(cpu->keyStorage(), KeyStorage::Int8);
        // Bytes per (chunk, head) row resident: D + 4 vs 2·D for bf16 (MSA-4B D = 128: 132 vs 256).
        QCOMPARE(quantizedRowBytes(128), size_t(132));
    }
};

QTEST_GUILESS_MAIN(TestQuantRoute)
#include "tst_quant_route.moc"

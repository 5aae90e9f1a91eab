// tst_shard_merge.cpp (label: unit): the host half of Memory Parallel and the routing-scanner seam.
//  - orderedScoreBits/candidateKey rank exactly as (score desc, id asc), the device top-k's sort key
//    (−0 ties with +0; candidateScoreBits drops NaN and −inf as selectTop does);
//  - the device top-k (bitonic blocks + merge passes, emulateDeviceTopK with the kernels' own
//    compare-exchange and pass plan) equals a full sort for sizes around the block size, n up to the
//    device limit, n above the candidate count and heavy ties; decoded, it is selectTop's answer;
//  - planShards is the reference's greedy balance (whole documents, lowest worker on ties);
//  - one table of seeded bf16 routing keys (empty documents, duplicated keys under other ids for
//    exact ties, a filter) split into 1, 2, 3 and 5 shards: each shard's Router top-k merged by
//    mergeShardTops equals the single-table Router result exactly, ids and scores, for the
//    scaled-dot and cosine branches;
//  - the head-mean fold (foldHeadMean: one dot of length nKv·D per token and chunk, what the GPU
//    scanner computes) gives the Router's scores for both branches (algebra check in double);
//  - MemoryIndex over a real multi-shard bank (BankWriter with small shards, the tiny MSA checkpoint's
//    shapes) selects what one Router scan over all shards' keys concatenated selects, and the scanner
//    registry creates "cpu" and refuses unknown names.
#include "core/memory/bank.h"
#include "core/memory/route_scanner.h"
#include "core/memory/shard_merge.h"
#include "core/memory/sparse.h"
#include "core/model/model_files.h"

#include "bank_test_util.h"
#include "routing_test_util.h"

#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
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
        RouteKeys k;
        k.data = std::as_bytes(std::span(bf16));
        k.dtype = model::DType::BF16;
        k.nChunks = offsets.back();
        k.nHeads = nHeads;
        k.headDim = headDim;
        k.chunkOffsets = offsets;
        k.docIds = ids;
        return k;
    }
};

// nDocs documents of 0..6 chunks; every 7th document repeats the keys of the one before it under
// another id (an exact tie); ids are a shuffled permutation with gaps.
SyntheticKeys makeKeys(size_t nDocs, size_t G, size_t D, bool unit, uint32_t seed) {
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
            const size_t nc = d % 11 == 3 ? 0 : 1 + rng() % 6;
            rows.resize(nc * G * D);
            for (float& x : rows) x = nd(rng);
            if (unit) msa::memory::testutil::normalizeRows(rows, D);
        }
        for (float x : rows) k.bf16.push_back(model::f32ToBf16(x));
        k.offsets.push_back(k.offsets.back() + rows.size() / (G * D));
        prev = rows;
    }
    k.ids.resize(nDocs);
    for (size_t i = 0; i < nDocs; ++i) k.ids[i] = 1000 + 3 * i;
    std::shuffle(k.ids.begin(), k.ids.end(), rng);
    return k;
}

QString show(const std::vector<ScoredDocument>& v) {
    QStringList s;
    for (const auto& d : v) s << QString("%1:%2").arg(d.id).arg(double(d.score), 0, 'g', 9);
    return s.join(' ');
}

}  // namespace

class TestShardMerge : public QObject {
    Q_OBJECT
private slots:
    void orderedBitsRankLikeScores() {
        std::mt19937 rng(5);
        std::normal_distribution<float> nd(0.0f, 100.0f);
        std::vector<float> v = {0.0f, -0.0f, 1e-30f, -1e-30f, 3.5f, -3.5f, -std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
        for (int i = 0; i < 500; ++i) v.push_back(nd(rng));
        for (float a : v) {
            QCOMPARE(scoreFromOrderedBits(orderedScoreBits(a)), a);
            QVERIFY(orderedScoreBits(a) > 0);
            for (float b : v)
                if (a > b) QVERIFY(orderedScoreBits(a) > orderedScoreBits(b));
        }
        // The 64-bit candidate key ranks as rankedBefore when ranks follow the ids.
        std::vector<uint64_t> ids = {50, 7, 99, 7000, 3};
        const std::vector<uint32_t> rank = idRanks(ids);
        QCOMPARE(rank, (std::vector<uint32_t>{2, 1, 3, 4, 0}));
        const std::vector<float> sc = {1.0f, 1.0f, -2.0f, 1.0f, -2.0f};
        for (size_t i = 0; i < ids.size(); ++i)
            for (size_t j = 0; j < ids.size(); ++j) {
                const ScoredDocument a{ids[i], uint32_t(i), sc[i]}, b{ids[j], uint32_t(j), sc[j]};
                QCOMPARE(candidateKey(sc[i], rank[i]) > candidateKey(sc[j], rank[j]), rankedBefore(a, b));
            }
    }

    void orderedBitsTieEqualScores() {
        // −0 == +0: equal scores must give equal bits so the id decides, as in rankedBefore.
        QCOMPARE(orderedScoreBits(-0.0f), orderedScoreBits(0.0f));
        QVERIFY(!std::signbit(scoreFromOrderedBits(orderedScoreBits(-0.0f))));
        const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
        const std::vector<float> v = {0.0f, -0.0f, 1.0f, -1.0f, 1e-38f, -1e-38f, 1e-45f, -1e-45f, inf, -inf,
                                      std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
        for (float a : v)
            for (float b : v) {
                QCOMPARE(orderedScoreBits(a) == orderedScoreBits(b), a == b);
                QCOMPARE(orderedScoreBits(a) > orderedScoreBits(b), a > b);
            }
        // Candidates: everything selectTop keeps (+inf included), never NaN (either sign) or −inf.
        QCOMPARE(candidateScoreBits(nan), 0u);
        QCOMPARE(candidateScoreBits(-nan), 0u);
        QCOMPARE(candidateScoreBits(-inf), 0u);
        QVERIFY(candidateScoreBits(inf) > candidateScoreBits(std::numeric_limits<float>::max()));
        QVERIFY(candidateScoreBits(-std::numeric_limits<float>::max()) > 0u);
        QCOMPARE(candidateScoreBits(-0.0f), orderedScoreBits(0.0f));
    }

    void deviceTopKPlan() {
        // One block until 2048 documents; every pass at least halves the survivors; the scratch holds
        // the largest pass; the last pass is one block.
        QCOMPARE(topKPassBlocks(0, 16), (std::vector<size_t>{1}));
        QCOMPARE(topKPassBlocks(2048, 1024), (std::vector<size_t>{1}));
        QCOMPARE(topKPassBlocks(2049, 1024), (std::vector<size_t>{2, 1}));
        QCOMPARE(topKPassBlocks(100'000'000, 16), (std::vector<size_t>{48829, 382, 3, 1}));
        for (size_t nDocs : {size_t(0), size_t(1), size_t(4097), size_t(1'562'500), size_t(100'000'000), size_t(1) << 32})
            for (size_t n : {size_t(1), size_t(16), size_t(1000), size_t(1024)}) {
                const std::vector<size_t> plan = topKPassBlocks(nDocs, n);
                QCOMPARE(plan.back(), size_t(1));
                QVERIFY(plan.front() * kTopKBlockKeys >= nDocs);
                for (size_t i = 1; i < plan.size(); ++i) {
                    QVERIFY(plan[i] * kTopKBlockKeys >= plan[i - 1] * n);   // covers the previous survivors
                    QVERIFY(plan[i] < plan[i - 1]);
                }
                for (size_t b : plan) QVERIFY(b * n <= topKScratchKeys(nDocs, n));
                QVERIFY(plan.front() <= 0x7FFFFFFFu);   // gridDim.x
            }
    }

    void deviceTopKEqualsSort_data() {
        QTest::addColumn<int>("nDocs");
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("distinctScores");   // small: heavy ties
        QTest::addColumn<int>("emptyEvery");       // every k-th document has no candidate key
        QTest::newRow("empty") << 0 << 16 << 100 << 0;
        QTest::newRow("1 doc, n 16") << 1 << 16 << 100 << 0;
        QTest::newRow("n above candidates") << 50 << 40 << 1000 << 2;
        QTest::newRow("block - 1") << 2047 << 16 << 100000 << 0;
        QTest::newRow("block") << 2048 << 1024 << 100000 << 0;
        QTest::newRow("block + 1, n 1024") << 2049 << 1024 << 100000 << 5;
        QTest::newRow("ties, n 1") << 5000 << 1 << 3 << 0;
        QTest::newRow("ties, 3 passes") << 300000 << 300 << 7 << 3;
        QTest::newRow("n 1000, sparse") << 70001 << 1000 << 100000 << 1000;
    }
    void deviceTopKEqualsSort() {
        QFETCH(int, nDocs);
        QFETCH(int, n);
        QFETCH(int, distinctScores);
        QFETCH(int, emptyEvery);
        std::mt19937 rng(uint32_t(nDocs * 31 + n));
        std::vector<uint64_t> ids(static_cast<size_t>(nDocs));
        std::iota(ids.begin(), ids.end(), uint64_t(1000));
        std::shuffle(ids.begin(), ids.end(), rng);
        const std::vector<uint32_t> rank = idRanks(ids);
        const float inf = std::numeric_limits<float>::infinity();
        std::vector<float> scores(static_cast<size_t>(nDocs));
        std::vector<uint64_t> keys(static_cast<size_t>(nDocs));
        for (size_t d = 0; d < scores.size(); ++d) {
            const int r = int(rng() % uint32_t(distinctScores));
            float s = float(r - distinctScores / 2) * 0.25f;
            if (d % 97 == 5) s = std::numeric_limits<float>::quiet_NaN();
            if (d % 89 == 7) s = -inf;
            if (d % 83 == 11) s = -0.0f;
            if (d % 1009 == 13) s = inf;
            if (emptyEvery && d % size_t(emptyEvery) == 0) s = -inf;   // a filtered document scores −inf
            scores[d] = s;
            const uint32_t bits = candidateScoreBits(s);
            keys[d] = bits ? (uint64_t(bits) << 32) | uint64_t(~rank[d]) : 0;
        }
        const std::vector<uint64_t> got = emulateDeviceTopK(keys, size_t(n));
        QCOMPARE(got.size(), size_t(n));
        std::vector<uint64_t> want = keys;
        std::sort(want.begin(), want.end(), std::greater<>());
        want.resize(size_t(n), 0);
        QCOMPARE(got, want);
        // Decoded as the device's decode kernel does, it is the CPU's selectTop, ids and scores.
        std::vector<uint32_t> rankToRow(ids.size());
        for (size_t d = 0; d < ids.size(); ++d) rankToRow[rank[d]] = uint32_t(d);
        const std::vector<ScoredDocument> ref = selectTop(scores, ids, size_t(n));
        std::vector<ScoredDocument> dec;
        for (uint64_t k : got)
            if (k) {
                const uint32_t row = rankToRow[~uint32_t(k & 0xFFFFFFFFu)];
                dec.push_back({ids[row], row, scoreFromOrderedBits(uint32_t(k >> 32))});
            }
        QCOMPARE(dec.size(), ref.size());
        for (size_t i = 0; i < dec.size(); ++i) {
            QCOMPARE(dec[i].id, ref[i].id);
            QCOMPARE(dec[i].index, ref[i].index);
            QVERIFY(dec[i].score == ref[i].score);
        }
        const size_t candidates = size_t(std::count_if(keys.begin(), keys.end(), [](uint64_t k) { return k != 0; }));
        const size_t cpuCandidates =
            size_t(std::count_if(scores.begin(), scores.end(), [&](float s) { return !std::isnan(s) && s != -inf; }));
        QCOMPARE(candidates, cpuCandidates);
    }

    void planIsGreedyBalanced() {
        const std::vector<uint64_t> chunks = {5, 1, 1, 3, 0, 2, 8, 1, 1, 4};
        ShardPlan p = planShards(chunks, 3);
        // By hand: 5→w0; 1→w1; 1→w2; 3→w1(1<..., w1=1,w2=1 → w1); 0→w2; 2→w2; 8→w2? loads w0 5, w1 4, w2 3 → w2 ...
        std::vector<uint64_t> load(3, 0);
        std::vector<uint32_t> expect;
        for (uint64_t c : chunks) {
            size_t w = 0;
            for (size_t i = 1; i < 3; ++i)
                if (load[i] < load[w]) w = i;
            expect.push_back(uint32_t(w));
            load[w] += c;
        }
        QCOMPARE(p.workerOf, expect);
        QCOMPARE(p.chunks, load);
        size_t total = 0;
        for (size_t w = 0; w < 3; ++w) {
            QVERIFY(std::is_sorted(p.docs[w].begin(), p.docs[w].end()));
            total += p.docs[w].size();
            for (uint32_t d : p.docs[w]) QCOMPARE(p.workerOf[d], uint32_t(w));
        }
        QCOMPARE(total, chunks.size());
        // Balance: no worker exceeds the lightest by more than the largest document.
        QVERIFY(*std::max_element(load.begin(), load.end()) - *std::min_element(load.begin(), load.end()) <= 8);
        ShardPlan one = planShards(chunks, 1);
        QCOMPARE(one.docs[0].size(), chunks.size());
    }

    void mergedShardsEqualSingleScan_data() {
        QTest::addColumn<bool>("cosine");
        QTest::addColumn<bool>("filter");
        QTest::newRow("dot") << false << false;
        QTest::newRow("dot-filter") << false << true;
        QTest::newRow("cosine") << true << false;
        QTest::newRow("cosine-filter") << true << true;
    }
    void mergedShardsEqualSingleScan() {
        QFETCH(bool, cosine);
        QFETCH(bool, filter);
        const size_t H = 8, G = 2, D = 16;
        const RoutingConfig cfg = makeConfig(H, G, D, cosine);
        const SyntheticKeys keys = makeKeys(157, G, D, cosine, 11);
        const RoutingQueries q = makeQueries(cfg, 5, 12);
        std::vector<uint8_t> allowed;
        if (filter)
            for (size_t d = 0; d < keys.ids.size(); ++d) allowed.push_back(d % 3 != 1);
        Router router(2);
        const size_t k = 12;
        auto single = router.route(cfg, q, keys.view(), {.topK = k, .topN = 40, .allowed = allowed, .tileChunks = 16});
        QVERIFY2(single.ok(), single.status().toString().c_str());
        QCOMPARE(single->top.size(), size_t(40));
        // The fixture has exact ties inside the top 40 (duplicated keys under other ids).
        bool tie = false;
        for (size_t i = 1; i < single->top.size(); ++i) tie = tie || single->top[i].score == single->top[i - 1].score;
        QVERIFY2(tie, "no tie in the top 40: the fixture no longer tests the id rule");

        std::vector<uint64_t> counts;
        for (size_t d = 0; d + 1 < keys.offsets.size(); ++d) counts.push_back(keys.offsets[d + 1] - keys.offsets[d]);
        for (size_t w : {size_t(1), size_t(2), size_t(3), size_t(5)}) {
            const ShardPlan plan = planShards(counts, w);
            auto tables = splitRouteKeys(keys.view(), allowed, plan);
            QVERIFY2(tables.ok(), tables.status().toString().c_str());
            std::vector<std::vector<ScoredDocument>> tops;
            size_t nCand = 0;
            for (const ShardTable& t : *tables) {
                auto r = router.route(cfg, q, t.view(), {.topK = 40, .allowed = t.allowed, .tileChunks = 7});
                QVERIFY2(r.ok(), r.status().toString().c_str());
                nCand += r->nCandidates;
                tops.push_back(r->top);
            }
            QCOMPARE(nCand, single->nCandidates);
            const std::vector<ShardedDocument> merged = mergeShardTops(tops, 40);
            std::vector<ScoredDocument> got;
            for (const ShardedDocument& m : merged) {
                ScoredDocument d = m.doc;
                d.index = (*tables)[m.shard].sourceRows[m.doc.index];
                got.push_back(d);
            }
            QVERIFY2(got == single->top, qPrintable(QString("%1 shards:\n got %2\nwant %3").arg(w).arg(show(got), show(single->top))));
            // The same through the scanner seam (what MemoryIndex calls).
            CpuRouteScanner scanner(1);
            std::vector<ScanShard> shards;
            for (const ShardTable& t : *tables) shards.push_back({t.view(), t.allowed});
            auto scanned = scanner.scan(cfg, 0, q, shards, k, nullptr);
            QVERIFY(scanned.ok());
            std::vector<std::vector<ScoredDocument>> lists;
            for (const auto& s : *scanned) lists.push_back(s.top);
            const auto mk = mergeShardTops(lists, k);
            QCOMPARE(mk.size(), single->selected.size());
            for (size_t i = 0; i < mk.size(); ++i) {
                QCOMPARE(mk[i].doc.id, single->selected[i].id);
                QCOMPARE(mk[i].doc.score, single->selected[i].score);
            }
        }
    }

    void headMeanFoldMatchesRouter_data() {
        QTest::addColumn<bool>("cosine");
        QTest::newRow("dot") << false;
        QTest::newRow("cosine") << true;
    }
    void headMeanFoldMatchesRouter() {
        QFETCH(bool, cosine);
        const size_t H = 12, G = 3, D = 20;
        const RoutingConfig cfg = makeConfig(H, G, D, cosine);
        const SyntheticKeys keys = makeKeys(41, G, D, cosine, 21);
        const RoutingQueries q = makeQueries(cfg, 7, 22);
        Router router(1);
        auto ref = router.scoreDocuments(cfg, q, keys.view(), {});
        QVERIFY(ref.ok());
        auto folded = foldHeadMean(q, G);
        QVERIFY(folded.ok());
        QCOMPARE(folded->size(), q.nTokens * G * D);
        // σ_i = max_c max_t q'_t · K̄ᴿ_c over nKv·D, in double.
        for (size_t d = 0; d + 1 < keys.offsets.size(); ++d) {
            double best = -INFINITY;
            for (uint64_t c = keys.offsets[d]; c < keys.offsets[d + 1]; ++c)
                for (size_t t = 0; t < q.nTokens; ++t) {
                    double s = 0;
                    for (size_t i = 0; i < G * D; ++i)
                        s += double((*folded)[t * G * D + i]) * model::bf16ToF32(keys.bf16[c * G * D + i]);
                    best = std::max(best, s);
                }
            const float want = (*ref)[d];
            if (std::isinf(want)) {
                QVERIFY(std::isinf(best));
                continue;
            }
            QVERIFY2(std::abs(best - want) <= 1e-5 * (1.0 + std::abs(want)),
                     qPrintable(QString("doc %1: folded %2, router %3").arg(d).arg(best).arg(want)));
        }
        // Malformed: 12 heads onto 5 key heads.
        QCOMPARE(foldHeadMean(q, 5).status().code(), ErrorCode::InvalidArgument);
    }

    void bf16SplitQueryKeepsFoldAccuracy() {
        // The GPU's tensor-core scan multiplies bf16 keys by the folded query split into bf16 halves,
        // hi = rn(q'), lo = rn(q' − hi) (gpu/route_scan.cu splitQueryKernel). Against the f32 q':
        // |q'·k − (hi+lo)·k| ≤ 2⁻¹⁸ Σ|q'_i k_i| in exact arithmetic; a single bf16 q' is ~2⁻⁹.
        const size_t H = 32, G = 8, D = 128;
        const RoutingConfig cfg = makeConfig(H, G, D, false);
        const RoutingQueries q = makeQueries(cfg, 40, 7);
        auto folded = foldHeadMean(q, G);
        QVERIFY(folded.ok());
        const SyntheticKeys keys = makeKeys(30, G, D, false, 8);
        const size_t W = G * D;
        double worstSplit = 0, worstHi = 0;
        for (size_t c = 0; c < keys.offsets.back(); ++c)
            for (size_t t = 0; t < q.nTokens; ++t) {
                double exact = 0, split = 0, hiOnly = 0, mag = 0;
                for (size_t i = 0; i < W; ++i) {
                    const float x = (*folded)[t * W + i];
                    const double k = model::bf16ToF32(keys.bf16[c * W + i]);
                    const float hi = model::bf16ToF32(model::f32ToBf16(x));
                    const float lo = model::bf16ToF32(model::f32ToBf16(x - hi));
                    exact += double(x) * k;
                    split += (double(hi) + double(lo)) * k;
                    hiOnly += double(hi) * k;
                    mag += std::abs(double(x) * k);
                }
                worstSplit = std::max(worstSplit, std::abs(split - exact) / mag);
                worstHi = std::max(worstHi, std::abs(hiOnly - exact) / mag);
            }
        qInfo("relative dot error: bf16 hi+lo %.2e, bf16 hi only %.2e", worstSplit, worstHi);
        QVERIFY(worstSplit <= std::ldexp(1.0, -18));
        QVERIFY(worstHi > 50 * worstSplit);
    }

    void memoryIndexOverShardsEqualsOneScan() {
        auto files = model::ModelFiles::open(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16");
        QVERIFY2(files.ok(), files.status().toString().c_str());
        auto cfg = routingConfigFor(**files);
        QVERIFY(cfg.ok());
        BankParams p = testing::smallParams(model::DType::BF16);
        p.modelFingerprint = (*files)->fingerprint().hex();
        p.nLayers = 4;
        p.routingLayers = {2, 3};
        p.nKvHeads = 2;
        p.nRouteHeads = 2;
        p.headDim = 16;
        p.topK = 16;
        p.maxShardBytes = 12 << 10;   // a handful of documents per shard
        QTemporaryDir dir;
        const std::string path = dir.filePath("bank").toStdString();
        {
            auto w = BankWriter::create(path, p, testing::makeTemplate(p));
            QVERIFY2(w.ok(), w.status().toString().c_str());
            for (int64_t id = 1; id <= 60; ++id) {
                testing::TestDoc d = testing::makeDoc(p, id * 5 % 61, 30 + uint64_t(id * 37 % 300));
                QVERIFY(w->append(d.input).isOk());
            }
            QVERIFY(w->commit().isOk());
            QVERIFY(w->remove(10).isOk());   // a tombstone
            QVERIFY(w->commit().isOk());
        }
        auto bank = Bank::open(path);
        QVERIFY2(bank.ok(), bank.status().toString().c_str());
        QVERIFY2(bank->nShards() >= 3, qPrintable(QString("%1 shards").arg(bank->nShards())));
        auto index = MemoryIndex::create(*bank, **files, *cfg, 1);
        QVERIFY2(index.ok(), index.status().toString().c_str());
        QCOMPARE(index->scanner().name(), std::string("cpu"));
        std::unordered_set<int64_t> allowedIds;
        for (int64_t id = 0; id < 61; id += 2) allowedIds.insert(id);
        for (bool filtered : {false, true}) {
            index->setFilter(filtered ? std::optional(allowedIds) : std::nullopt);
            for (size_t li = 0; li < 2; ++li) {
                RoutingQueries q = makeQueries(*cfg, 3, uint32_t(30 + li));
                auto r = index->route(li, q, 25);
                QVERIFY2(r.ok(), r.status().toString().c_str());
                // One table over every shard's keys (concatenated), tombstones and filter as a mask.
                std::vector<std::byte> all;
                for (const ShardSpan& s : bank->routingKeys(li)) all.insert(all.end(), s.bytes.begin(), s.bytes.end());
                std::vector<uint64_t> offsets{0}, ids;
                std::vector<uint8_t> allowed;
                for (const DocumentEntry& d : bank->documents()) {
                    offsets.push_back(d.firstChunk + d.nChunks);
                    ids.push_back(uint64_t(d.id));
                    allowed.push_back(d.live() && (!filtered || allowedIds.count(d.id)));
                }
                RouteKeys k{all, model::DType::BF16, offsets.back(), 2, 16, offsets, ids};
                Router router(1);
                auto one = router.route(*cfg, q, k, {.topK = 16, .topN = 25, .allowed = allowed});
                QVERIFY(one.ok());
                QCOMPARE(r->nCandidates, one->nCandidates);
                QCOMPARE(r->top.size(), one->top.size());
                for (size_t i = 0; i < one->top.size(); ++i) {
                    QCOMPARE(r->top[i].id, one->top[i].id);
                    QCOMPARE(r->top[i].score, one->top[i].score);
                    QCOMPARE(size_t(r->top[i].index), size_t(one->top[i].index));   // bank row
                }
                QCOMPARE(r->selected.size(), size_t(16));
            }
        }
        // The registry: "cpu" always, unknown names refused.
        auto cpu = createRouteScanner("cpu", {.nThreads = 1});
        QVERIFY(cpu.ok());
        QCOMPARE((*cpu)->name(), std::string("cpu"));
        QCOMPARE(createRouteScanner("no-such-device").status().code(), ErrorCode::Unsupported);
        registerRouteScannerFactory("test-cpu", [](const RouteScannerOptions& o) -> Result<std::unique_ptr<RouteScanner>> {
            return std::unique_ptr<RouteScanner>(std::make_unique<CpuRouteScanner>(o.nThreads));
        });
        const auto names = routeScannerNames();
        QVERIFY(std::find(names.begin(), names.end(), "test-cpu") != names.end());
        auto made = createRouteScanner("test-cpu");
        QVERIFY(made.ok());
        index->setScanner(std::move(made).value());
        QCOMPARE(index->scanner().name(), std::string("cpu"));
    }
};

QTEST_GUILESS_MAIN(TestShardMerge)
#include "tst_shard_merge.moc"

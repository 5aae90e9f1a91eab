// tst_pool_plan.cpp (label unit, no GPU): the index arithmetic of the CUDA chunk-pooling kernel
// (gpu/pool_plan.h) run on the CPU over every thread index of a launch, as the kernel runs it: each
// pooled element must be written exactly once, and the whole output must equal the CPU backend's
// engine::poolChunkRows bit for bit (packed segments, partial last chunks, one-token segments, with
// and without the routing-key source x̃).
#include "core/engine/chunk_pool.h"
#include "gpu/pool_plan.h"

#include <QtTest>

#include <cmath>
#include <cstring>
#include <random>

using namespace msa;

class TestPoolPlan : public QObject {
    Q_OBJECT
private slots:
    void emulatedKernelEqualsCpuPooling_data() {
        QTest::addColumn<QList<uint>>("segments");
        QTest::addColumn<int>("chunk");
        QTest::addColumn<int>("kvDim");
        QTest::addColumn<int>("xDim");
        QTest::newRow("one token") << QList<uint>{1} << 64 << 8 << 0;
        QTest::newRow("odd") << QList<uint>{131} << 64 << 24 << 40;
        QTest::newRow("packed") << QList<uint>{5, 1, 64, 65, 3, 200} << 64 << 16 << 0;
        QTest::newRow("packed, x, P=4") << QList<uint>{3, 11, 40, 1, 17} << 4 << 12 << 20;
        QTest::newRow("P=1") << QList<uint>{2, 3} << 1 << 4 << 6;
    }
    void emulatedKernelEqualsCpuPooling() {
        QFETCH(QList<uint>, segments);
        QFETCH(int, chunk);
        QFETCH(int, kvDim);
        QFETCH(int, xDim);
        std::vector<uint32_t> segs(segments.begin(), segments.end());
        size_t n = 0;
        for (uint32_t s : segs) n += s;
        const auto plan = engine::segmentChunks(segs, n, size_t(chunk));
        std::mt19937 rng(7);
        std::normal_distribution<float> d(0.0f, 2.0f);
        auto rnd = [&](size_t count) {
            std::vector<float> v(count);
            for (float& x : v) x = d(rng);
            return v;
        };
        const auto k = rnd(n * kvDim), v = rnd(n * kvDim), x = rnd(n * std::max(xDim, 1));
        const uint64_t total = gpu::poolOutputFloats(plan.size(), kvDim, xDim);
        QCOMPARE(total, uint64_t(plan.size()) * (2 * kvDim + xDim));
        std::vector<float> outKV(2 * plan.size() * kvDim, std::nanf("")), outX(plan.size() * xDim, std::nanf(""));
        std::vector<int> writes(total, 0);
        // The kernel body for every thread index of the launch, including the idle tail of the last block.
        const uint64_t threads = (total + 255) / 256 * 256;
        for (uint64_t i = 0; i < threads; ++i) {
            if (i >= total) continue;
            const gpu::PoolElement e = gpu::poolElement(i, plan.size(), kvDim, xDim);
            QVERIFY(e.chunk < plan.size() && e.col < e.width);
            const engine::ChunkSpan c = plan[e.chunk];
            const float* src = e.region == 0 ? k.data() : e.region == 1 ? v.data() : x.data();
            const float mean = gpu::poolMean(src, e.width, c.start, c.len, e.col);
            ++writes[i];
            if (e.region < 2) outKV[i] = mean;
            else outX[i - 2 * plan.size() * kvDim] = mean;
        }
        for (int w : writes) QCOMPARE(w, 1);
        std::vector<float> want(2 * plan.size() * kvDim);
        engine::poolChunkRows(k.data(), kvDim, plan, 0, plan.size(), want.data());
        engine::poolChunkRows(v.data(), kvDim, plan, 0, plan.size(), want.data() + plan.size() * kvDim);
        QVERIFY(std::memcmp(outKV.data(), want.data(), want.size() * sizeof(float)) == 0);
        if (xDim) {
            std::vector<float> wantX(plan.size() * xDim);
            engine::poolChunkRows(x.data(), xDim, plan, 0, plan.size(), wantX.data());
            QVERIFY(std::memcmp(outX.data(), wantX.data(), wantX.size() * sizeof(float)) == 0);
        }
    }
};

QTEST_GUILESS_MAIN(TestPoolPlan)
#include "tst_pool_plan.moc"

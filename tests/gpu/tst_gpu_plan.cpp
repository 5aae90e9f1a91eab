// tst_gpu_plan.cpp (label: unit): the host-side arithmetic of the CUDA backend (gpu/launch_plan.h),
// which needs no GPU and therefore runs on every CI machine:
//   - f32 -> bf16 rounding against an independent nearest-value search (ties to even, NaN, inf),
//   - the RoPE frequency table reproduces cpu::rope bit for bit,
//   - the flash-attention algorithm as the kernel runs it (visible key ranges, row tiles sharing a KV
//     head, key tiles, split-K ranges, online softmax, combine) emulated on the host against
//     cpu::attention / cpu::segmentedAttention, for prefix + causal, bidirectional, packed segments
//     and single-token decode with many splits,
//   - planAttention and splitKeys (every key in exactly one split) and the KV growth policy,
//   - the cuBLAS argument mapping of a linear layer, run through OpenBLAS in column-major mode.
#include "core/engine/cpu_ops.h"
#include "gpu/launch_plan.h"

#include <cblas.h>

#include <QtTest>

#include <cfloat>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

using namespace msa;
using gpu::KeyRange;

namespace {
std::vector<float> randomVector(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// The bf16 value nearest to f (ties: even mantissa), found by comparing the two neighbours in double.
uint16_t nearestBf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    const uint16_t lo = static_cast<uint16_t>(bits >> 16);   // truncation: toward zero
    const uint16_t hi = static_cast<uint16_t>(lo + 1);       // next magnitude up
    const double dl = std::abs(double(gpu::bf16ToF32(lo)) - double(f));
    const double dh = std::abs(double(gpu::bf16ToF32(hi)) - double(f));
    if (dl < dh) return lo;
    if (dh < dl) return hi;
    return (lo & 1) ? hi : lo;
}

// The kernel's algorithm on the host: grid (row tiles, KV heads, splits), per block the union of its
// rows' key ranges split by splitKeys, tiles of kFlashKeysPerTile keys with an online softmax per
// row, then the combine of the splits. Cache layout [nKv][kvStride][hd], as the session keeps it.
std::vector<float> emulateFlash(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, int n,
                                int nHeads, int nKv, int hd, int kvStride, int base, bool causal, const std::vector<int>& segStart,
                                int nSplits) {
    const int group = nHeads / nKv, nRows = n * group;
    const int rowTiles = gpu::ceilDiv(nRows, gpu::kFlashRowsPerBlock);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    struct Partial {
        float m = -INFINITY, l = 0;
        std::vector<float> o;
    };
    std::vector<std::vector<Partial>> parts(size_t(n) * nHeads, std::vector<Partial>(nSplits));
    auto range = [&](int i) { return gpu::visibleKeys(i, base, n, causal, segStart.empty() ? -1 : segStart[i]); };
    for (int tile = 0; tile < rowTiles; ++tile)
        for (int g = 0; g < nKv; ++g)
            for (int split = 0; split < nSplits; ++split) {
                int tLo = INT_MAX, tHi = 0;
                for (int r = 0; r < gpu::kFlashRowsPerBlock && tile * gpu::kFlashRowsPerBlock + r < nRows; ++r) {
                    const KeyRange kr = range((tile * gpu::kFlashRowsPerBlock + r) / group);
                    tLo = std::min(tLo, kr.lo);
                    tHi = std::max(tHi, kr.hi);
                }
                const KeyRange sp = gpu::splitKeys(tLo, tHi, nSplits, split);
                for (int r = 0; r < gpu::kFlashRowsPerBlock; ++r) {
                    const int row = tile * gpu::kFlashRowsPerBlock + r;
                    if (row >= nRows) break;
                    const int i = row / group, h = g * group + row % group;
                    const KeyRange kr = range(i);
                    Partial& p = parts[size_t(i) * nHeads + h][split];
                    p.o.assign(hd, 0.0f);
                    for (int kt = sp.lo; kt < sp.hi; kt += gpu::kFlashKeysPerTile) {
                        std::vector<float> sc(gpu::kFlashKeysPerTile, -INFINITY);
                        float mt = -INFINITY;
                        for (int j = 0; j < gpu::kFlashKeysPerTile; ++j) {
                            const int key = kt + j;
                            if (key >= sp.hi || key < kr.lo || key >= kr.hi) continue;
                            float dot = 0;
                            for (int d = 0; d < hd; ++d) dot += q[(size_t(i) * nHeads + h) * hd + d] * k[(size_t(g) * kvStride + key) * hd + d];
                            sc[j] = dot * scale;
                            mt = std::max(mt, sc[j]);
                        }
                        if (mt == -INFINITY) continue;
                        const float mNew = std::max(p.m, mt), corr = std::exp(p.m - mNew);
                        float sum = 0;
                        for (auto& o : p.o) o *= corr;
                        for (int j = 0; j < gpu::kFlashKeysPerTile; ++j) {
                            const float pj = sc[j] == -INFINITY ? 0.0f : std::exp(sc[j] - mNew);
                            sum += pj;
                            for (int d = 0; d < hd && pj != 0.0f; ++d) p.o[d] += pj * v[(size_t(g) * kvStride + kt + j) * hd + d];
                        }
                        p.l = p.l * corr + sum;
                        p.m = mNew;
                    }
                }
            }
    std::vector<float> out(size_t(n) * nHeads * hd);
    for (size_t at = 0; at < parts.size(); ++at) {
        float mMax = -INFINITY;
        for (const Partial& p : parts[at]) mMax = std::max(mMax, p.m);
        float sum = 0;
        std::vector<float> acc(hd, 0.0f);
        for (const Partial& p : parts[at]) {
            if (p.m == -INFINITY) continue;
            const float f = std::exp(p.m - mMax);
            sum += p.l * f;
            for (int d = 0; d < hd; ++d) acc[d] += p.o[d] * f;
        }
        for (int d = 0; d < hd; ++d) out[at * hd + d] = acc[d] / sum;
    }
    return out;
}

double maxRelErr(const std::vector<float>& got, const std::vector<float>& ref, float atol) {
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - ref[i]) / (atol + std::abs(double(ref[i]))));
    return worst;
}
}  // namespace

class TestGpuPlan : public QObject {
    Q_OBJECT
private slots:
    void bf16KnownValues() {
        QCOMPARE(gpu::f32ToBf16(1.0f), uint16_t(0x3f80));
        QCOMPARE(gpu::f32ToBf16(-2.0f), uint16_t(0xc000));
        QCOMPARE(gpu::f32ToBf16(-0.0f), uint16_t(0x8000));
        QCOMPARE(gpu::f32ToBf16(1.0f + 1.0f / 256), uint16_t(0x3f80));       // tie -> even (down)
        QCOMPARE(gpu::f32ToBf16(1.0f + 3.0f / 256), uint16_t(0x3f82));       // tie -> even (up)
        QCOMPARE(gpu::f32ToBf16(1.0f + 1.0f / 256 + 1.0f / 65536), uint16_t(0x3f81));   // above the tie
        QCOMPARE(gpu::f32ToBf16(std::numeric_limits<float>::infinity()), uint16_t(0x7f80));
        QCOMPARE(gpu::f32ToBf16(FLT_MAX), uint16_t(0x7f80));                  // rounds past the largest bf16
        QVERIFY(std::isnan(gpu::bf16ToF32(gpu::f32ToBf16(std::numeric_limits<float>::quiet_NaN()))));
        QCOMPARE(gpu::bf16ToF32(0x3f80), 1.0f);
    }

    void bf16MatchesNearestValueSearch() {
        // Every bf16 value round-trips exactly; random floats round to the nearest bf16 (ties even).
        for (uint32_t h = 0; h < 0x10000; ++h) {
            const float f = gpu::bf16ToF32(static_cast<uint16_t>(h));
            if (std::isnan(f)) continue;
            QCOMPARE(gpu::f32ToBf16(f), static_cast<uint16_t>(h));
        }
        std::mt19937 rng(7);
        std::uniform_int_distribution<uint32_t> bits(0, 0x7f7effffu);   // finite magnitudes below the top binade edge
        for (int i = 0; i < 200000; ++i) {
            uint32_t b = bits(rng) | (i % 2 ? 0x80000000u : 0u);
            float f;
            std::memcpy(&f, &b, 4);
            const uint16_t got = gpu::f32ToBf16(f), want = nearestBf16(f);
            if (got != want) QFAIL(qPrintable(QString("bits %1: got %2, want %3").arg(b, 8, 16).arg(got, 4, 16).arg(want, 4, 16)));
        }
    }

    void ropeFrequenciesReproduceCpuRope_data() {
        QTest::addColumn<int>("hd");
        QTest::addColumn<double>("theta");
        QTest::addColumn<bool>("neox");
        QTest::newRow("16 neox 1e4") << 16 << 10000.0 << true;
        QTest::newRow("64 adjacent 1e4") << 64 << 10000.0 << false;
        QTest::newRow("128 neox 1e6") << 128 << 1000000.0 << true;
    }
    void ropeFrequenciesReproduceCpuRope() {
        QFETCH(int, hd);
        QFETCH(double, theta);
        QFETCH(bool, neox);
        const std::vector<int32_t> pos = {0, 1, 7, 4095, 40000};
        const size_t nHeads = 3;
        auto x = randomVector(pos.size() * nHeads * hd, 11);
        auto ref = x;
        cpu::rope(ref.data(), pos.size(), nHeads, hd, hd, pos.data(), static_cast<float>(theta),
                  neox ? cpu::RopeStyle::NeoX : cpu::RopeStyle::Adjacent);
        const std::vector<float> f = gpu::ropeInverseFrequencies(hd, static_cast<float>(theta));
        const int half = hd / 2;
        for (size_t t = 0; t < pos.size(); ++t)
            for (size_t h = 0; h < nHeads; ++h) {
                const float* in = x.data() + (t * nHeads + h) * hd;
                const float* want = ref.data() + (t * nHeads + h) * hd;
                for (int d = 0; d < hd; ++d) {
                    // The qkv_post_kernel's per-dimension formula.
                    const int i = neox ? (d < half ? d : d - half) : d / 2;
                    const float a = static_cast<float>(pos[t]) * f[i];
                    const float c = std::cos(a), s = std::sin(a);
                    float got;
                    if (neox) got = d < half ? in[d] * c - in[d + half] * s : in[d - half] * s + in[d] * c;
                    else got = d % 2 == 0 ? in[d] * c - in[d + 1] * s : in[d - 1] * s + in[d] * c;
                    if (got != want[d]) QFAIL(qPrintable(QString("t %1 h %2 d %3: %4 vs cpu %5").arg(t).arg(h).arg(d).arg(got).arg(want[d])));
                }
            }
    }

    void visibleKeysFollowTheCpuMasks() {
        // Prefix/cache of 10 rows, 4 tokens: causal sees the prefix and itself; bidirectional all.
        QCOMPARE(gpu::visibleKeys(0, 10, 4, true, -1).hi, 11);
        QCOMPARE(gpu::visibleKeys(3, 10, 4, true, -1).hi, 14);
        QCOMPARE(gpu::visibleKeys(0, 10, 4, false, -1).hi, 14);
        QCOMPARE(gpu::visibleKeys(2, 10, 4, true, -1).lo, 0);
        // Packed: token 5 of a segment starting at 3 sees [3, 6).
        QCOMPARE(gpu::visibleKeys(5, 0, 9, true, 3).lo, 3);
        QCOMPARE(gpu::visibleKeys(5, 0, 9, true, 3).hi, 6);
    }

    void splitKeysCoverEveryKeyOnce() {
        std::mt19937 rng(3);
        for (int trial = 0; trial < 2000; ++trial) {
            const int lo = static_cast<int>(rng() % 300), len = static_cast<int>(rng() % 5000);
            const int splits = 1 + static_cast<int>(rng() % gpu::kFlashMaxSplits);
            int next = lo;
            for (int s = 0; s < splits; ++s) {
                const KeyRange r = gpu::splitKeys(lo, lo + len, splits, s);
                QVERIFY(r.lo <= r.hi);
                if (r.lo == r.hi) continue;
                QCOMPARE(r.lo, next);
                QCOMPARE((r.lo - lo) % gpu::kFlashKeysPerTile, 0);
                next = r.hi;
            }
            QCOMPARE(next, lo + len);
        }
    }

    void planSplitsOnlyWhenTheGridIsSmall() {
        // MSA-4B decode on an H100 (132 SMs): 1 row tile x 8 KV heads; 4096 keys allow 16 splits.
        gpu::AttentionPlan p = gpu::planAttention(1, 32, 8, 4096, 132);
        QCOMPARE(p.rowTiles, 1);
        QCOMPARE(p.nKvHeads, 8);
        QCOMPARE(p.nSplits, 16);
        QCOMPARE(p.workspaceFloats(128, 1, 32), size_t(16) * 32 * 130);
        // Long context: limited by occupancy (ceil(264 / 8) = 33).
        QCOMPARE(gpu::planAttention(1, 32, 8, 100000, 132).nSplits, 33);
        // Prefill: enough blocks, no split, no workspace.
        p = gpu::planAttention(512, 32, 8, 512, 132);
        QCOMPARE(p.nSplits, 1);
        QCOMPARE(p.workspaceFloats(128, 512, 32), size_t(0));
        // Short context: never split.
        QCOMPARE(gpu::planAttention(1, 9, 3, 300, 132).nSplits, 1);
        QCOMPARE(gpu::planAttention(1, 9, 3, 1 << 20, 132).nSplits, gpu::kFlashMaxSplits);
    }

    void flashAlgorithmMatchesCpuAttention_data() {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("prefix");
        QTest::addColumn<int>("hd");
        QTest::addColumn<bool>("causal");
        QTest::addColumn<int>("splits");
        QTest::newRow("prefill prefix 70, 37 tokens") << 37 << 70 << 64 << true << 1;
        QTest::newRow("prefill split 3") << 37 << 70 << 64 << true << 3;
        QTest::newRow("decode 1 token, 2000 keys, 7 splits") << 1 << 1999 << 16 << true << 7;
        QTest::newRow("decode more splits than tiles") << 1 << 40 << 32 << true << 5;
        QTest::newRow("bidirectional 7 tokens") << 7 << 20 << 16 << false << 2;
        QTest::newRow("single token no prefix") << 1 << 0 << 128 << true << 1;
    }
    void flashAlgorithmMatchesCpuAttention() {
        QFETCH(int, n);
        QFETCH(int, prefix);
        QFETCH(int, hd);
        QFETCH(bool, causal);
        QFETCH(int, splits);
        const int nHeads = 6, nKv = 2, nCtx = prefix + n, stride = nCtx + 5;
        auto q = randomVector(size_t(n) * nHeads * hd, 1), k = randomVector(size_t(nKv) * stride * hd, 2),
             v = randomVector(size_t(nKv) * stride * hd, 3);
        std::vector<float> ref(size_t(n) * nHeads * hd), scratch(nCtx);
        if (causal) {
            cpu::attention(q.data(), k.data(), v.data(), ref.data(), n, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        } else {
            for (int i = 0; i < n; ++i)
                cpu::attention(q.data() + size_t(i) * nHeads * hd, k.data(), v.data(), ref.data() + size_t(i) * nHeads * hd, 1, nCtx,
                               nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        }
        const auto got = emulateFlash(q, k, v, n, nHeads, nKv, hd, stride, prefix, causal, {}, splits);
        QVERIFY2(maxRelErr(got, ref, 1e-3f) < 1e-4, "the tiled/split algorithm differs from cpu::attention");
    }

    void flashAlgorithmMatchesSegmentedAttention() {
        const std::vector<uint32_t> segs = {1, 17, 33, 5, 40};
        int n = 0;
        std::vector<int> segStart;
        for (uint32_t len : segs) {
            for (uint32_t i = 0; i < len; ++i) segStart.push_back(n);
            n += static_cast<int>(len);
        }
        const int nHeads = 4, nKv = 1, hd = 16;
        auto q = randomVector(size_t(n) * nHeads * hd, 4), k = randomVector(size_t(nKv) * n * hd, 5), v = randomVector(size_t(nKv) * n * hd, 6);
        std::vector<float> ref(size_t(n) * nHeads * hd), scratch(cpu::segmentedAttentionScratch(segs.data(), segs.size(), 16));
        cpu::segmentedAttention(q.data(), k.data(), v.data(), ref.data(), segs.data(), segs.size(), nHeads, nKv, hd, n, 0, nHeads, 16,
                                scratch.data());
        for (int splits : {1, 2}) {
            const auto got = emulateFlash(q, k, v, n, nHeads, nKv, hd, n, 0, true, segStart, splits);
            QVERIFY2(maxRelErr(got, ref, 1e-3f) < 1e-4, "packed segments differ from cpu::segmentedAttention");
        }
    }

    void argmaxReductionTreeMatchesCpuArgmax() {
        // argmax_kernel's reduction as it runs: 256 threads scan strided elements, a butterfly of
        // xor shuffles per warp (every lane reads its partner's value of the previous round), warp
        // results through shared memory, the same butterfly in warp 0. Ties across threads, warps and
        // within one thread must give the lowest index, as cpu::argmax does.
        auto emulate = [](const std::vector<float>& x) {
            constexpr int kThreads = 256, kWarps = kThreads / 32;
            auto butterfly = [](std::vector<float>& v, std::vector<int>& idx) {
                for (int o = 16; o > 0; o >>= 1) {
                    const std::vector<float> pv = v;
                    const std::vector<int> pi = idx;
                    for (int lane = 0; lane < 32; ++lane)
                        if (gpu::argmaxBetter(pv[lane ^ o], pi[lane ^ o], pv[lane], pi[lane])) {
                            v[lane] = pv[lane ^ o];
                            idx[lane] = pi[lane ^ o];
                        }
                }
            };
            std::vector<float> warpV(32, -INFINITY);
            std::vector<int> warpI(32, gpu::kArgmaxNone);
            for (int w = 0; w < kWarps; ++w) {
                std::vector<float> v(32, -INFINITY);
                std::vector<int> idx(32, gpu::kArgmaxNone);
                for (int lane = 0; lane < 32; ++lane)
                    for (size_t i = size_t(w * 32 + lane); i < x.size(); i += kThreads)
                        if (x[i] > v[lane] || idx[lane] == gpu::kArgmaxNone) {
                            v[lane] = x[i];
                            idx[lane] = static_cast<int>(i);
                        }
                butterfly(v, idx);
                warpV[w] = v[0];
                warpI[w] = idx[0];
            }
            butterfly(warpV, warpI);
            return warpI[0];
        };
        std::vector<std::vector<float>> rows;
        rows.push_back({-3.0f});
        rows.push_back({2.0f, 2.0f, 2.0f, 2.0f, 2.0f});                       // fewer elements than threads
        rows.push_back(std::vector<float>(1000, -INFINITY));                  // nothing but -inf: index 0
        for (uint32_t seed = 0; seed < 6; ++seed) {
            auto x = randomVector(1001 + seed * 997, 50 + seed);
            rows.push_back(x);
            x[7] = x[900] = 50.0f;   // tie across warps (threads 7 and 132)
            rows.push_back(x);
            x[3] = x[259] = 60.0f;   // tie inside one thread (3 and 3 + 256)
            rows.push_back(x);
            x[x.size() - 1] = 70.0f; // the last element
            rows.push_back(x);
            x[24] = x[8] = 80.0f;    // tie inside one warp (lanes 8 and 24)
            rows.push_back(x);
        }
        for (size_t r = 0; r < rows.size(); ++r)
            QVERIFY2(emulate(rows[r]) == static_cast<int>(cpu::argmax(rows[r].data(), rows[r].size())),
                     qPrintable(QString("row %1").arg(r)));
        QVERIFY(gpu::argmaxBetter(-INFINITY, 5, 0.0f, gpu::kArgmaxNone));   // anything beats "no element"
        QVERIFY(!gpu::argmaxBetter(1e30f, gpu::kArgmaxNone, -INFINITY, 3)); // "no element" beats nothing
        QVERIFY(gpu::argmaxBetter(1.0f, 2, 1.0f, 9) && !gpu::argmaxBetter(1.0f, 9, 1.0f, 2));
    }

    void kvGrowthFollowsTheCpuPolicy() {
        QCOMPARE(gpu::grownCapacity(0, 1, 4096, 0), size_t(256));
        QCOMPARE(gpu::grownCapacity(256, 200, 4096, 0), size_t(256));
        QCOMPARE(gpu::grownCapacity(256, 300, 4096, 0), size_t(512));
        QCOMPARE(gpu::grownCapacity(256, 1000, 4096, 0), size_t(1000));
        QCOMPARE(gpu::grownCapacity(512, 600, 600, 10), size_t(610));   // capped at maxTokens + prefix
        QCOMPARE(gpu::grownCapacity(0, 1, 64, 20), size_t(84));
    }
    void linearGemmMappingComputesXTimesWTransposed() {
        // W [5 × 7] row-major, x [3 × 7]; y written with a row stride of 9 (a slice of a wider row),
        // accumulating onto y (beta = 1) like the fused residual adds.
        const size_t outF = 5, inF = 7, nTok = 3, ldy = 9;
        const auto w = randomVector(outF * inF, 40), x = randomVector(nTok * inF, 41);
        std::vector<float> y = randomVector(nTok * ldy, 42), ref = y;
        for (size_t t = 0; t < nTok; ++t)
            for (size_t o = 0; o < outF; ++o) {
                double acc = 0;
                for (size_t i = 0; i < inF; ++i) acc += double(x[t * inF + i]) * w[o * inF + i];
                ref[t * ldy + o] += static_cast<float>(acc);
            }
        const gpu::GemmShape g = gpu::linearGemm(outF, inF, nTok, ldy);
        cblas_sgemm(CblasColMajor, g.transA ? CblasTrans : CblasNoTrans, g.transB ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, 1.0f,
                    w.data(), g.lda, x.data(), g.ldb, 1.0f, y.data(), g.ldc);
        for (size_t i = 0; i < y.size(); ++i) QVERIFY2(std::abs(y[i] - ref[i]) < 1e-4f, qPrintable(QString("element %1").arg(i)));
    }
};

QTEST_GUILESS_MAIN(TestGpuPlan)
#include "tst_gpu_plan.moc"

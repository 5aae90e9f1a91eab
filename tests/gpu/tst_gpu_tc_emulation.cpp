// tst_gpu_tc_emulation.cpp (label: unit): the tensor-core flash-attention kernel (gpu/flash_attn_tc.cu)
// as its host emulation (gpu/flash_attn_tc_math.h) runs it — 64-row blocks of one KV head, 64-key
// tiles from the block's first visible key, zero-padded tails, masks per row, online softmax in the
// log2 domain with rescaling, bf16 Q/K/V/P — against cpu::attention / cpu::segmentedAttention in f32
// on seeded inputs: sizes 1, odd and not multiples of a tile, prefix rows, non-causal, packed
// segments, GQA 4:1, head dims 64 and 128. Needs no GPU, so it runs on every CI machine; the same
// cases run on the device in tst_gpu_ops (label gpu).
//
// Tolerance: bf16 inputs (8-bit mantissa) perturb each score by ~|q||k|·2⁻⁹ and each probability's
// weight by 2⁻⁹, which for unit-variance inputs stays below 3e-2 absolute on the outputs; a mask or
// tiling mistake moves outputs by O(1).
#include "core/engine/cpu_ops.h"
#include "gpu/flash_attn_tc_math.h"
#include "gpu/launch_plan.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

using namespace msa;

namespace {
std::vector<float> randomVector(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// Largest |got - ref| - rtol·|ref| (<= atol passes), and where.
bool close(const std::vector<float>& got, const std::vector<float>& ref, float atol, float rtol, QString* where, float* worst) {
    *worst = 0.0f;
    bool ok = true;
    for (size_t i = 0; i < ref.size(); ++i) {
        const float err = std::abs(got[i] - ref[i]);
        *worst = std::max(*worst, err);
        if (!(err <= atol + rtol * std::abs(ref[i])) && ok) {
            *where = QString("index %1: emulated kernel %2, cpu %3").arg(i).arg(got[i]).arg(ref[i]);
            ok = false;
        }
    }
    return ok;
}

constexpr float kAtol = 3e-2f, kRtol = 2e-2f;     // bf16 Q/K/V/P vs f32 everything
constexpr float kAtolP = 8e-3f, kRtolP = 8e-3f;   // bf16 P vs f32 P (same bf16 inputs)
}  // namespace

class TstGpuTcEmulation : public QObject {
    Q_OBJECT
private slots:
    void kernelEmulationMatchesCpuAttention_data() {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("prefix");
        QTest::addColumn<int>("hd");
        QTest::addColumn<int>("nHeads");
        QTest::addColumn<int>("nKv");
        QTest::addColumn<bool>("causal");
        QTest::addColumn<float>("sd");
        QTest::newRow("1 token") << 1 << 0 << 64 << 2 << 1 << true << 1.0f;
        QTest::newRow("63 tokens, GQA 4:1") << 63 << 0 << 64 << 8 << 2 << true << 1.0f;
        QTest::newRow("65 tokens after 70 prefix rows") << 65 << 70 << 128 << 4 << 1 << true << 1.0f;
        QTest::newRow("130 tokens, hd128, GQA 4:1") << 130 << 0 << 128 << 8 << 2 << true << 1.0f;
        QTest::newRow("non-causal 97 after 33") << 97 << 33 << 64 << 4 << 4 << false << 1.0f;
        QTest::newRow("non-causal 1 after 200") << 1 << 200 << 128 << 4 << 1 << false << 1.0f;
        QTest::newRow("peaked scores (rescaling)") << 150 << 19 << 64 << 4 << 1 << true << 2.5f;
        QTest::newRow("200 tokens, 32/8 heads") << 200 << 0 << 128 << 32 << 8 << true << 1.0f;
    }
    void kernelEmulationMatchesCpuAttention() {
        QFETCH(int, n);
        QFETCH(int, prefix);
        QFETCH(int, hd);
        QFETCH(int, nHeads);
        QFETCH(int, nKv);
        QFETCH(bool, causal);
        QFETCH(float, sd);
        const size_t nCtx = size_t(prefix + n), stride = nCtx + 5, qRow = size_t(nHeads) * hd;
        auto q = randomVector(size_t(n) * qRow, 40 + n, sd), k = randomVector(size_t(nKv) * stride * hd, 41 + n, sd),
             v = randomVector(size_t(nKv) * stride * hd, 42 + n);
        std::vector<float> got(size_t(n) * qRow, NAN);
        const auto reference = [&](const std::vector<float>& rq, const std::vector<float>& rk, const std::vector<float>& rv) {
            std::vector<float> ref(size_t(n) * qRow), scratch(nCtx);
            if (causal)
                cpu::attention(rq.data(), rk.data(), rv.data(), ref.data(), n, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
            else   // one query at a time: every context row is visible to it
                for (int i = 0; i < n; ++i)
                    cpu::attention(rq.data() + i * qRow, rk.data(), rv.data(), ref.data() + i * qRow, 1, nCtx, nHeads, nKv, hd, stride, 0,
                                   nHeads, scratch.data());
            return ref;
        };
        const auto rounded = [](std::vector<float> x) {
            for (float& f : x) f = gpu::tc::roundBf16(f);
            return x;
        };
        const std::vector<float> ref = reference(q, k, v), refBf16Inputs = reference(rounded(q), rounded(k), rounded(v));
        gpu::tc::TcEmulationArgs e;
        e.q = q.data();
        e.k = k.data();
        e.v = v.data();
        e.out = got.data();
        e.nTokens = n;
        e.nHeads = nHeads;
        e.nKv = nKv;
        e.headDim = hd;
        e.kvStride = stride;
        e.base = prefix;
        e.causal = causal;
        gpu::tc::emulateTcAttention(e);
        QString where;
        float worst = 0.0f;
        // Against f32 attention on the same bf16-rounded inputs only P's rounding to bf16 and the
        // summation order remain: a tight bound that any tiling, mask or rescale slip exceeds.
        QVERIFY2(close(got, refBf16Inputs, kAtolP, kRtolP, &where, &worst), qPrintable("bf16 inputs: " + where));
        qInfo("max abs error vs f32 attention on bf16 inputs %.3g", static_cast<double>(worst));
        if (nCtx > 1) QVERIFY(worst > 0.0f);   // P is rounded: the emulation is not the reference by accident
        // Against the f32 inputs: the error of bf16 inputs grows with |q||k| (sd² per product term).
        QVERIFY2(close(got, ref, kAtol * sd * sd, kRtol * sd * sd, &where, &worst), qPrintable(where));
        qInfo("max abs error vs f32 attention %.3g", static_cast<double>(worst));
    }

    void packedSegmentsAreBlockDiagonal() {
        // Segments straddle the 64-row blocks and 64-key tiles (GQA 4:1: 16 tokens per block).
        const std::vector<uint32_t> segs = {1, 17, 70, 5, 64, 33};
        std::vector<int32_t> segStart;
        size_t n = 0;
        for (uint32_t len : segs) {
            for (uint32_t i = 0; i < len; ++i) segStart.push_back(static_cast<int32_t>(n));
            n += len;
        }
        const size_t nHeads = 8, nKv = 2, hd = 64;
        auto q = randomVector(n * nHeads * hd, 50), k = randomVector(nKv * n * hd, 51), v = randomVector(nKv * n * hd, 52);
        std::vector<float> ref(n * nHeads * hd), got(ref.size(), NAN), scratch(cpu::segmentedAttentionScratch(segs.data(), segs.size(), 16));
        cpu::segmentedAttention(q.data(), k.data(), v.data(), ref.data(), segs.data(), segs.size(), nHeads, nKv, hd, n, 0, nHeads, 16,
                                scratch.data());
        gpu::tc::TcEmulationArgs e;
        e.q = q.data();
        e.k = k.data();
        e.v = v.data();
        e.out = got.data();
        e.nTokens = n;
        e.nHeads = nHeads;
        e.nKv = nKv;
        e.headDim = hd;
        e.kvStride = n;
        e.segStart = segStart.data();
        gpu::tc::emulateTcAttention(e);
        QString where;
        float worst = 0.0f;
        QVERIFY2(close(got, ref, kAtol, kRtol, &where, &worst), qPrintable(where));
        qInfo("max abs error %.3g", static_cast<double>(worst));
    }

    void blockKeysCoverEveryRowOfTheBlock() {
        // The block's key range is the union of its rows' ranges (no visible key is skipped, and the
        // first tile starts at the lowest visible key), for causal, bidirectional and packed calls.
        std::vector<int32_t> segStart;
        for (int s = 0, at = 0; at < 300; ++s) {
            const int len = 1 + (s * 37) % 90;
            for (int i = 0; i < len && at < 300; ++i) segStart.push_back(at - i);
            at += len;
        }
        for (int group : {1, 3, 4}) {
            const int nTok = 300, nRows = nTok * group;
            for (int mode = 0; mode < 3; ++mode) {
                const int base = mode == 2 ? 0 : 45;
                const bool causal = mode != 1;
                const int32_t* seg = mode == 2 ? segStart.data() : nullptr;
                for (int row0 = 0; row0 < nRows; row0 += gpu::tc::kRows) {
                    const gpu::KeyRange b = gpu::tc::blockKeys(row0, nRows, group, base, nTok, causal, seg);
                    int lo = 1 << 30, hi = 0;
                    for (int r = row0; r < std::min(row0 + gpu::tc::kRows, nRows); ++r) {
                        const gpu::KeyRange kr = gpu::visibleKeys(r / group, base, nTok, causal, seg ? seg[r / group] : -1);
                        lo = std::min(lo, kr.lo);
                        hi = std::max(hi, kr.hi);
                    }
                    QCOMPARE(b.lo, lo);
                    QCOMPARE(b.hi, hi);
                }
            }
        }
    }

    void sharedMemoryFitsTheDevices() {
        // sm_80 and sm_90 allow 163 KiB and 227 KiB per block after the opt-in; above 48 KiB the
        // launcher must set cudaFuncAttributeMaxDynamicSharedMemorySize (it does, checked).
        QVERIFY(gpu::tc::smemBytes(128) <= 163u * 1024u);
        QVERIFY(gpu::tc::smemBytes(64) <= 163u * 1024u);
        QVERIFY(gpu::tc::smemBytes(128) > 48u * 1024u);
        // Two blocks per SM on an H100 for head dim 128 (227 KiB, 1 KiB reserved per block).
        QVERIFY(2 * (gpu::tc::smemBytes(128) + 1024) <= 228u * 1024u);
        QVERIFY(gpu::tc::supportedHeadDim(128) && gpu::tc::supportedHeadDim(64) && !gpu::tc::supportedHeadDim(80));
    }

    void softmaxStepHandlesEmptyAndGrowingMax() {
        QCOMPARE(gpu::tc::rescaleFactor(-INFINITY, 3.0f), 0.0f);
        QCOMPARE(gpu::tc::rescaleFactor(2.0f, 2.0f), 1.0f);
        QCOMPARE(gpu::tc::rescaleFactor(1.0f, 3.0f), 0.25f);
        QCOMPARE(gpu::tc::probability(-INFINITY, 0.0f), 0.0f);
        QCOMPARE(gpu::tc::probability(-1.0f, 0.0f), 0.5f);
    }
};

QTEST_GUILESS_MAIN(TstGpuTcEmulation)
#include "tst_gpu_tc_emulation.moc"

// tst_dtype: the weight types of core/model/dtype.h against the `gguf` Python package.
//
// Covers: block sizes and GGML ids; row/tensor byte sizes incl. the block-multiple rule and overflow;
// bit-exact dequantization of every type against fixtures made by gguf.quants.dequantize
// (tests/tools/make_model_fixtures.py); all 65536 f16 patterns; dequantizeBlocks on sub-ranges;
// dot products (SIMD path and scalar path) against dequantize-then-dot in double precision within
// 1e-5 of sum|w*x|. To cover a new type: add it to the fixture script and to kTypes below.
#include "core/model/dtype.h"

#include "test_files.h"

#include <QtTest/QtTest>

#include <cmath>
#include <random>

using namespace msa::model;
using namespace msa::model::testing;

namespace {

const char* kTypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q4_K", "q6_K"};

std::filesystem::path fixture(const std::string& name) { return std::filesystem::path(MSA_MODEL_FIXTURES) / name; }

}  // namespace

class TstDtype : public QObject {
    Q_OBJECT
private slots:
    void layouts() {
        QCOMPARE(dtypeInfo(DType::Q4_K).blockBytes, 144u);
        QCOMPARE(dtypeInfo(DType::Q6_K).blockBytes, 210u);
        QCOMPARE(dtypeInfo(DType::Q4_1).blockBytes, 20u);
        QCOMPARE(dtypeInfo(DType::Q4_0).blockBytes, 18u);
        QCOMPARE(dtypeInfo(DType::Q8_0).blockBytes, 34u);
        QCOMPARE(*dtypeFromGgml(12), DType::Q4_K);
        QCOMPARE(*dtypeFromGgml(30), DType::BF16);
        QVERIFY(!dtypeFromGgml(6));   // q5_0: a GGML type we do not implement
        QCOMPARE(*dtypeFromName("Q6_K"), DType::Q6_K);
        QCOMPARE(*dtypeFromName("BF16"), DType::BF16);
        QVERIFY(!dtypeFromName("q5_0"));
        for (int i = 0; i < kDTypeCount; ++i) QCOMPARE(static_cast<int>(dtypeInfo(static_cast<DType>(i)).type), i);
    }

    void sizes() {
        QCOMPARE(*rowBytes(DType::Q4_1, 576), uint64_t{18 * 20});
        QCOMPARE(*rowBytes(DType::Q6_K, 512), uint64_t{420});
        QCOMPARE(*rowBytes(DType::BF16, 3), uint64_t{6});
        auto bad = rowBytes(DType::Q4_K, 576);   // 576 is not a multiple of 256
        QVERIFY(!bad);
        QCOMPARE(bad.status().code(), msa::ErrorCode::InvalidArgument);
        const uint64_t shape[] = {32, 1ull << 40, 1ull << 30};
        auto over = tensorBytes(DType::Q8_0, shape);
        QVERIFY(!over);
        QCOMPARE(over.status().code(), msa::ErrorCode::Unsupported);
        const uint64_t ok[] = {64, 3, 2};
        QCOMPARE(*tensorBytes(DType::Q8_0, ok), uint64_t{2 * 34 * 6});
    }

    void f16AllPatterns() {
        const Bytes h = readFileBytes(fixture("f16_all.bin"));
        const Bytes want = readFileBytes(fixture("f16_all.f32"));
        QCOMPARE(h.size(), size_t{65536 * 2});
        QCOMPARE(want.size(), size_t{65536 * 4});
        for (size_t i = 0; i < 65536; ++i) {
            uint16_t bits;
            std::memcpy(&bits, h.data() + 2 * i, 2);
            const float got = f16ToF32(bits);
            if (std::memcmp(&got, want.data() + 4 * i, 4) != 0)
                QFAIL(qPrintable(QString("f16 pattern 0x%1 converts differently").arg(bits, 4, 16, QChar('0'))));
            // The rounding conversion must return every non-NaN half exactly.
            if (!std::isnan(got)) QCOMPARE(f32ToF16(got), bits);
        }
        QCOMPARE(f32ToF16(65520.0f), uint16_t{0x7C00});     // rounds to infinity
        QCOMPARE(f32ToF16(65519.0f), uint16_t{0x7BFF});     // largest finite half
        QCOMPARE(f32ToF16(1.0f + 1.0f / 2048), uint16_t{0x3C00});   // tie rounds to even
        QCOMPARE(f32ToBf16(1.0f), uint16_t{0x3F80});
    }

    void dequantizeMatchesGguf_data() {
        QTest::addColumn<QString>("type");
        for (const char* t : kTypes) QTest::newRow(t) << QString(t);
    }
    void dequantizeMatchesGguf() {
        QFETCH(QString, type);
        const DType dt = *dtypeFromName(type.toStdString());
        const Bytes raw = readFileBytes(fixture("quant_" + type.toStdString() + ".bin"));
        const Bytes want = readFileBytes(fixture("quant_" + type.toStdString() + ".f32"));
        QVERIFY2(!raw.empty() && !want.empty(), "fixtures missing: run tests/tools/make_model_fixtures.py");
        const DTypeInfo& info = dtypeInfo(dt);
        QCOMPARE(raw.size() % info.blockBytes, size_t{0});
        const size_t nBlocks = raw.size() / info.blockBytes;
        const size_t n = nBlocks * info.blockElems;
        QCOMPARE(want.size(), n * 4);
        std::vector<float> got(n), scalar(n);
        dequantizeRow(dt, raw.data(), got.data(), n);
        dequantizeRowScalar(dt, raw.data(), scalar.data(), n);
        QVERIFY2(std::memcmp(got.data(), scalar.data(), n * 4) == 0, "the SIMD and scalar paths differ");
        for (size_t i = 0; i < n; ++i)
            if (std::memcmp(&got[i], want.data() + 4 * i, 4) != 0) {
                float w;
                std::memcpy(&w, want.data() + 4 * i, 4);
                QFAIL(qPrintable(QString("%1 element %2 (block %3): got %4, gguf says %5")
                                     .arg(type).arg(i).arg(i / info.blockElems).arg(got[i], 0, 'g', 9).arg(w, 0, 'g', 9)));
            }
        // A sub-range of blocks decodes to the same values as the whole row.
        if (nBlocks >= 3) {
            std::vector<float> part(2 * info.blockElems);
            dequantizeBlocks(dt, raw.data(), 1, 2, part.data());
            QVERIFY(std::memcmp(part.data(), got.data() + info.blockElems, part.size() * 4) == 0);
        }
    }

    void dotMatchesDequantizeThenDot_data() { dequantizeMatchesGguf_data(); }
    void dotMatchesDequantizeThenDot() {
        QFETCH(QString, type);
        const DType dt = *dtypeFromName(type.toStdString());
        const Bytes raw = readFileBytes(fixture("quant_" + type.toStdString() + ".bin"));
        const DTypeInfo& info = dtypeInfo(dt);
        const size_t nBlocks = raw.size() / info.blockBytes;
        std::vector<float> w(nBlocks * info.blockElems);
        dequantizeRow(dt, raw.data(), w.data(), w.size());
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> x(w.size());
        for (float& v : x) v = nd(rng);
        // Rows of several lengths (1 block, odd block counts, the whole fixture); rows start at block
        // boundaries so that both the SIMD body and any tail handling are exercised.
        const size_t unit = std::max<size_t>(info.blockElems, 1);
        for (size_t nElems : {unit, unit * 3, unit * 7 + (info.blockElems == 1 ? 5 : 0), w.size()}) {
            if (nElems > w.size()) continue;
            double ref = 0, mag = 0;
            for (size_t i = 0; i < nElems; ++i) {
                ref += static_cast<double>(w[i]) * x[i];
                mag += std::fabs(static_cast<double>(w[i]) * x[i]);
            }
            const double tol = 1e-5 * mag + 1e-6;
            const float fast = dotRow(dt, raw.data(), x.data(), nElems);
            const float scalar = dotRowScalar(dt, raw.data(), x.data(), nElems);
            if (std::fabs(fast - ref) > tol || std::fabs(scalar - ref) > tol)
                QFAIL(qPrintable(QString("%1 n=%2: dot %3 scalar %4 reference %5 (tolerance %6, simd %7)")
                                     .arg(type).arg(nElems).arg(fast, 0, 'g', 9).arg(scalar, 0, 'g', 9).arg(ref, 0, 'g', 12)
                                     .arg(tol).arg(simdKernelsActive())));
        }
    }

    void quantizeActivationsRoundTrip() {
        std::mt19937 rng(11);
        std::normal_distribution<float> nd(0.0f, 3.0f);
        std::vector<float> x(256);
        for (float& v : x) v = nd(rng);
        std::fill(x.begin() + 64, x.begin() + 96, 0.0f);   // an all-zero block
        Q8Activations q;
        quantizeActivations(x.data(), x.size(), q);
        QCOMPARE(q.n, x.size());
        QCOMPARE(q.d.size(), size_t{8});
        QCOMPARE(q.d[2], 0.0f);
        for (size_t b = 0; b < 8; ++b) {
            int32_t s = 0;
            for (size_t i = 0; i < 32; ++i) {
                const float err = std::fabs(x[32 * b + i] - q.d[b] * static_cast<float>(q.q[32 * b + i]));
                QVERIFY(err <= q.d[b] * 0.5f * 1.0001f + 1e-7f);
                s += q.q[32 * b + i];
            }
            QCOMPARE(q.sum[b], q.d[b] * static_cast<float>(s));
        }
    }

    void q8DotMatchesReference_data() { dequantizeMatchesGguf_data(); }
    void q8DotMatchesReference() {
        // The integer path computes w . dequant(q8(x)) exactly up to float summation; compared with
        // that in double, and loosely with w . x (the activation's own rounding error).
        QFETCH(QString, type);
        const DType dt = *dtypeFromName(type.toStdString());
        const Bytes raw = readFileBytes(fixture("quant_" + type.toStdString() + ".bin"));
        const DTypeInfo& info = dtypeInfo(dt);
        const size_t nAll = raw.size() / info.blockBytes * info.blockElems;
        std::vector<float> w(nAll);
        dequantizeRow(dt, raw.data(), w.data(), nAll);
        std::mt19937 rng(9);
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> x(nAll);
        for (float& v : x) v = nd(rng);
        const size_t unit = std::max<size_t>(info.blockElems, 32);
        for (size_t n : {unit, unit * 3, nAll / unit * unit}) {
            if (n > nAll || n == 0) continue;
            Q8Activations q;
            quantizeActivations(x.data(), n, q);
            double ref = 0, mag = 0, exact = 0;
            for (size_t i = 0; i < n; ++i) {
                const double xi = static_cast<double>(q.d[i / 32]) * q.q[i];
                ref += static_cast<double>(w[i]) * xi;
                mag += std::fabs(static_cast<double>(w[i]) * xi);
                exact += static_cast<double>(w[i]) * x[i];
            }
            const double tol = 1e-5 * mag + 1e-6;
            const float fast = dotRowQ8(dt, raw.data(), q);
            const float scalar = dotRowQ8Scalar(dt, raw.data(), q);
            if (std::fabs(fast - ref) > tol || std::fabs(scalar - ref) > tol)
                QFAIL(qPrintable(QString("%1 n=%2: q8 dot %3 scalar %4 reference %5 (tolerance %6)")
                                     .arg(type).arg(n).arg(fast, 0, 'g', 9).arg(scalar, 0, 'g', 9).arg(ref, 0, 'g', 12).arg(tol)));
            // (The bf16 fixture ends in random bit patterns up to 1e38, where f32 sums overflow.)
            if (mag < 1e30)
                QVERIFY2(std::fabs(fast - exact) <= 0.02 * mag + 1e-4, qPrintable(QString("%1 vs f32 activation").arg(type)));
        }
    }

    void simdPathReported() {
        // On an x86-64 machine with AVX2 (every CI and developer machine of this project) the fast
        // path must actually be taken; elsewhere the scalar path is the documented fallback.
#if defined(__x86_64__)
        if (!qEnvironmentVariableIsSet("MSA_NO_SIMD") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            QVERIFY(simdKernelsActive());
#endif
    }
};

QTEST_GUILESS_MAIN(TstDtype)
#include "tst_dtype.moc"

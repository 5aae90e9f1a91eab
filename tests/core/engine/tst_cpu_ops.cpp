// tst_cpu_ops.cpp: the CPU reference operators and the sampler against straightforward double-
// precision implementations written here, plus properties that must hold whatever the numbers
// (RoPE composes and preserves norms, the two RoPE pairings are permutations of each other, causal
// attention never looks ahead, ties break to the lowest index, seeded sampling is reproducible).
// End-to-end parity with PyTorch comes from the golden-model tests. Extend with a slot per operator.
#include "core/engine/cpu_ops.h"
#include "core/engine/sampler.h"

#include <QtTest>

#include <cmath>
#include <random>
#include <vector>

using namespace msa;

namespace {
std::vector<float> randomVector(size_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
double maxAbsDiff(const std::vector<float>& a, const std::vector<double>& b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - b[i]));
    return m;
}
}  // namespace

class TestCpuOps : public QObject {
    Q_OBJECT
private slots:
    void rmsNormMatchesDouble() {
        const size_t rows = 3, dim = 37;
        auto x = randomVector(rows * dim, 1, 3.0f);
        auto w = randomVector(dim, 2);
        std::vector<float> y(rows * dim);
        cpu::rmsNorm(x.data(), w.data(), y.data(), rows, dim, 1e-6f);
        std::vector<double> ref(rows * dim);
        for (size_t r = 0; r < rows; ++r) {
            double ss = 0;
            for (size_t i = 0; i < dim; ++i) ss += double(x[r * dim + i]) * x[r * dim + i];
            const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
            for (size_t i = 0; i < dim; ++i) ref[r * dim + i] = x[r * dim + i] * inv * w[i];
        }
        QVERIFY(maxAbsDiff(y, ref) < 1e-5);
        cpu::rmsNorm(x.data(), w.data(), x.data(), rows, dim, 1e-6f);   // in place
        QVERIFY(maxAbsDiff(x, ref) < 1e-5);
    }

    void ropeMatchesDoubleAndComposes() {
        const size_t heads = 2, hd = 16;
        auto x = randomVector(heads * hd, 3);
        auto y = x;
        const int32_t pos[] = {37};
        cpu::rope(y.data(), 1, heads, hd, hd, pos, 10000.0f, cpu::RopeStyle::NeoX);
        std::vector<double> ref(x.size());
        for (size_t h = 0; h < heads; ++h)
            for (size_t i = 0; i < hd / 2; ++i) {
                const double f = std::pow(10000.0, -2.0 * i / hd), a = 37 * f;
                const double x0 = x[h * hd + i], x1 = x[h * hd + i + hd / 2];
                ref[h * hd + i] = x0 * std::cos(a) - x1 * std::sin(a);
                ref[h * hd + i + hd / 2] = x0 * std::sin(a) + x1 * std::cos(a);
            }
        QVERIFY(maxAbsDiff(y, ref) < 1e-4);

        // Rotation by 37 then by 5 equals rotation by 42; norms are preserved; position 0 is identity.
        auto z = y;
        const int32_t five[] = {5}, fortyTwo[] = {42}, zero[] = {0};
        cpu::rope(z.data(), 1, heads, hd, hd, five, 10000.0f, cpu::RopeStyle::NeoX);
        auto direct = x;
        cpu::rope(direct.data(), 1, heads, hd, hd, fortyTwo, 10000.0f, cpu::RopeStyle::NeoX);
        for (size_t i = 0; i < x.size(); ++i) QVERIFY(std::abs(z[i] - direct[i]) < 1e-4);
        double n0 = 0, n1 = 0;
        for (size_t i = 0; i < x.size(); ++i) { n0 += x[i] * x[i]; n1 += direct[i] * direct[i]; }
        QVERIFY(std::abs(n0 - n1) < 1e-3 * n0);
        auto same = x;
        cpu::rope(same.data(), 1, heads, hd, hd, zero, 10000.0f, cpu::RopeStyle::NeoX);
        QVERIFY(same == x);
    }

    void ropeStylesArePermutations() {
        // Adjacent pairing on a vector whose dims are interleaved equals NeoX on the original, interleaved.
        const size_t hd = 8;
        auto x = randomVector(hd, 4);
        std::vector<float> inter(hd);
        for (size_t i = 0; i < hd / 2; ++i) { inter[2 * i] = x[i]; inter[2 * i + 1] = x[i + hd / 2]; }
        const int32_t pos[] = {11};
        cpu::rope(x.data(), 1, 1, hd, hd, pos, 500000.0f, cpu::RopeStyle::NeoX);
        cpu::rope(inter.data(), 1, 1, hd, hd, pos, 500000.0f, cpu::RopeStyle::Adjacent);
        for (size_t i = 0; i < hd / 2; ++i) {
            QCOMPARE(inter[2 * i], x[i]);
            QCOMPARE(inter[2 * i + 1], x[i + hd / 2]);
        }
    }

    void swigluSoftmaxArgmax() {
        const float gate[] = {-2.0f, 0.0f, 1.5f}, up[] = {3.0f, 7.0f, -2.0f};
        float out[3];
        cpu::swiglu(gate, up, out, 3);
        for (int i = 0; i < 3; ++i) QVERIFY(std::abs(out[i] - gate[i] / (1 + std::exp(-gate[i])) * up[i]) < 1e-6);
        float big[] = {1000.0f, 1001.0f, 999.0f};   // would overflow without max subtraction
        cpu::softmax(big, 3);
        QVERIFY(std::abs(big[0] + big[1] + big[2] - 1.0f) < 1e-6);
        QVERIFY(big[1] > big[0] && big[0] > big[2]);
        const float ties[] = {1.0f, 5.0f, 2.0f, 5.0f};
        QCOMPARE(cpu::argmax(ties, 4), size_t(1));
    }

    void attentionMatchesNaiveWithPrefixAndGqa() {
        const size_t nHeads = 4, nKv = 2, hd = 8, nQ = 5, prefix = 3, nCtx = prefix + nQ, stride = 16;
        auto q = randomVector(nQ * nHeads * hd, 5);
        auto k = randomVector(nKv * stride * hd, 6);
        auto v = randomVector(nKv * stride * hd, 7);
        std::vector<float> out(nQ * nHeads * hd), scratch(nCtx);
        cpu::attention(q.data(), k.data(), v.data(), out.data(), nQ, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        std::vector<double> ref(out.size());
        for (size_t h = 0; h < nHeads; ++h) {
            const size_t g = h / (nHeads / nKv);
            for (size_t i = 0; i < nQ; ++i) {
                const size_t visible = prefix + i + 1;
                std::vector<double> s(visible);
                double m = -1e300;
                for (size_t j = 0; j < visible; ++j) {
                    double d = 0;
                    for (size_t c = 0; c < hd; ++c) d += double(q[(i * nHeads + h) * hd + c]) * k[(g * stride + j) * hd + c];
                    s[j] = d / std::sqrt(double(hd));
                    m = std::max(m, s[j]);
                }
                double sum = 0;
                for (auto& e : s) { e = std::exp(e - m); sum += e; }
                for (size_t c = 0; c < hd; ++c) {
                    double o = 0;
                    for (size_t j = 0; j < visible; ++j) o += s[j] / sum * v[(g * stride + j) * hd + c];
                    ref[(i * nHeads + h) * hd + c] = o;
                }
            }
        }
        QVERIFY(maxAbsDiff(out, ref) < 1e-5);

        // Causality: changing a future key/value row does not change earlier queries.
        auto k2 = k;
        auto v2 = v;
        for (size_t c = 0; c < hd; ++c) { k2[(0 * stride + nCtx - 1) * hd + c] += 10; v2[(1 * stride + nCtx - 1) * hd + c] -= 10; }
        std::vector<float> out2(out.size());
        cpu::attention(q.data(), k2.data(), v2.data(), out2.data(), nQ, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        for (size_t i = 0; i + 1 < nQ; ++i)
            for (size_t c = 0; c < nHeads * hd; ++c) QCOMPARE(out2[i * nHeads * hd + c], out[i * nHeads * hd + c]);
        bool lastChanged = false;
        for (size_t c = 0; c < nHeads * hd; ++c) lastChanged |= out2[(nQ - 1) * nHeads * hd + c] != out[(nQ - 1) * nHeads * hd + c];
        QVERIFY(lastChanged);
    }

    void attentionGemmEqualsDirect() {
        // More queries than one block (128) so the per-block causal limits are exercised, plus a prefix.
        const size_t nHeads = 6, nKv = 2, hd = 16, nQ = 300, prefix = 7, nCtx = prefix + nQ, stride = 320;
        auto q = randomVector(nQ * nHeads * hd, 21);
        auto k = randomVector(nKv * stride * hd, 22);
        auto v = randomVector(nKv * stride * hd, 23);
        std::vector<float> direct(nQ * nHeads * hd), gemm(direct.size()), scratch(nCtx),
            gemmScratch(cpu::attentionGemmScratch(nQ, nCtx));
        cpu::attention(q.data(), k.data(), v.data(), direct.data(), nQ, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        cpu::attentionGemm(q.data(), k.data(), v.data(), gemm.data(), nQ, nCtx, nHeads, nKv, hd, stride, 0, nHeads,
                           gemmScratch.data());
        double maxDiff = 0;
        for (size_t i = 0; i < direct.size(); ++i) maxDiff = std::max(maxDiff, double(std::abs(direct[i] - gemm[i])));
        QVERIFY2(maxDiff < 1e-5, qPrintable(QString::number(maxDiff)));
    }

    void samplerGreedyAndPenalty() {
        engine::Sampler greedy;
        std::vector<float> logits = {0.5f, 2.0f, 2.0f, -1.0f};
        QCOMPARE(greedy.sample(logits, {}), 1);   // tie between 1 and 2: lowest index
        // HF rule: positive logits are divided, negative multiplied.
        std::vector<float> l2 = {4.0f, -2.0f, 3.0f};
        const int32_t hist[] = {0, 1, 0};
        engine::applyRepetitionPenalty(l2, hist, 2.0f, 0);
        QCOMPARE(l2[0], 2.0f);
        QCOMPARE(l2[1], -4.0f);
        QCOMPARE(l2[2], 3.0f);
        engine::Sampler penalised({.repetitionPenalty = 2.0f});
        std::vector<float> l3 = {4.0f, -2.0f, 3.0f};
        QCOMPARE(penalised.sample(l3, hist), 2);   // 4/2 = 2 < 3
    }

    void samplerSeededDistribution() {
        const std::vector<float> base = {1.0f, 2.0f, 0.0f, 1.5f};
        auto draw = [&](uint64_t seed, int n) {
            engine::Sampler s({.temperature = 1.0f, .seed = seed});
            std::vector<int32_t> out;
            for (int i = 0; i < n; ++i) {
                auto l = base;
                out.push_back(s.sample(l, {}));
            }
            return out;
        };
        QCOMPARE(draw(7, 200), draw(7, 200));   // reproducible
        QVERIFY(draw(7, 200) != draw(8, 200));
        const auto many = draw(1, 20000);
        std::vector<double> p(base.begin(), base.end());
        double sum = 0;
        for (auto& e : p) { e = std::exp(e); sum += e; }
        for (size_t t = 0; t < p.size(); ++t) {
            const double freq = double(std::count(many.begin(), many.end(), int32_t(t))) / many.size();
            QVERIFY2(std::abs(freq - p[t] / sum) < 0.015, qPrintable(QString::number(t)));
        }
        // top-k 2 only ever yields the two best; a tiny top-p is greedy.
        engine::Sampler k2({.temperature = 1.0f, .topK = 2, .seed = 3});
        engine::Sampler p0({.temperature = 1.0f, .topP = 0.01f, .seed = 3});
        for (int i = 0; i < 500; ++i) {
            auto l = base;
            const int32_t t = k2.sample(l, {});
            QVERIFY(t == 1 || t == 3);
            auto l2 = base;
            QCOMPARE(p0.sample(l2, {}), 1);
        }
    }
};

QTEST_GUILESS_MAIN(TestCpuOps)
#include "tst_cpu_ops.moc"

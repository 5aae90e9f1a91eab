// tst_forward_segments.cpp: packed independent sequences in one forward (ForwardOptions::segments,
// the memory encoder's batching). A packed forward must give every sequence what a forward of that
// sequence alone gives (logits and the hooked K/V, up to f32 summation order in the projections),
// across the direct (< 16 tokens) and sgemm attention paths and across the 128-row query blocks;
// cpu::segmentedAttention must equal separate attention calls bit for bit; bad segment lists and a
// non-empty context are InvalidArgument.
#include "core/engine/backend.h"
#include "core/engine/cpu_ops.h"
#include "core/model/model_files.h"

#include <QtTest>

#include <numeric>
#include <random>

using namespace msa;

namespace {
double maxAbsDiff(std::span<const float> a, std::span<const float> b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}
double maxAbs(std::span<const float> a) {
    double m = 0;
    for (float x : a) m = std::max(m, std::abs(double(x)));
    return m;
}
}  // namespace

class TestForwardSegments : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        auto files = model::ModelFiles::open(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
        QVERIFY2(files.ok(), files.status().toString().c_str());
        m_backend = engine::createCpuBackend();
        auto loaded = m_backend->load(std::move(files).value());
        QVERIFY(loaded.ok());
        m_model = *loaded;
    }

    void segmentedAttentionEqualsSeparateCalls() {
        const size_t nHeads = 4, nKv = 2, hd = 8, stride = 300;
        const std::vector<uint32_t> segs = {3, 17, 1, 140, 15};
        const size_t n = std::accumulate(segs.begin(), segs.end(), size_t(0));
        std::mt19937 rng(7);
        std::normal_distribution<float> nd;
        std::vector<float> q(n * nHeads * hd), k(nKv * stride * hd), v(nKv * stride * hd);
        for (auto* buf : {&q, &k, &v})
            for (float& x : *buf) x = nd(rng);
        std::vector<float> packed(q.size(), -1.0f), separate(q.size(), -2.0f);
        std::vector<float> scratch(cpu::segmentedAttentionScratch(segs.data(), segs.size(), 16));
        cpu::segmentedAttention(q.data(), k.data(), v.data(), packed.data(), segs.data(), segs.size(), nHeads, nKv, hd, stride,
                                0, nHeads, 16, scratch.data());
        size_t start = 0;
        for (uint32_t len : segs) {
            // The same sequence copied to the start of its own buffers, as a separate forward has it.
            std::vector<float> ks(nKv * len * hd), vs(nKv * len * hd), out(len * nHeads * hd);
            for (size_t g = 0; g < nKv; ++g)
                for (size_t j = 0; j < len; ++j)
                    for (size_t d = 0; d < hd; ++d) {
                        ks[(g * len + j) * hd + d] = k[(g * stride + start + j) * hd + d];
                        vs[(g * len + j) * hd + d] = v[(g * stride + start + j) * hd + d];
                    }
            std::vector<float> sc(std::max<size_t>(cpu::attentionGemmScratch(len, len), len));
            if (len >= 16)
                cpu::attentionGemm(q.data() + start * nHeads * hd, ks.data(), vs.data(), out.data(), len, len, nHeads, nKv, hd,
                                   len, 0, nHeads, sc.data());
            else
                cpu::attention(q.data() + start * nHeads * hd, ks.data(), vs.data(), out.data(), len, len, nHeads, nKv, hd, len,
                               0, nHeads, sc.data());
            std::copy(out.begin(), out.end(), separate.begin() + static_cast<std::ptrdiff_t>(start * nHeads * hd));
            start += len;
        }
        QCOMPARE(packed, separate);
    }

    void packedForwardEqualsSeparateForwards() {
        const size_t nLayers = static_cast<size_t>(m_model->files().config().nLayers);
        const std::vector<uint32_t> segs = {5, 20, 150, 1, 33};
        std::vector<int32_t> tokens, positions;
        for (size_t s = 0; s < segs.size(); ++s)
            for (uint32_t i = 0; i < segs[s]; ++i) {
                tokens.push_back(static_cast<int32_t>((s * 131 + i * 37 + 11) % 256));
                positions.push_back(static_cast<int32_t>(i));
            }
        const size_t kvWidth = static_cast<size_t>(m_model->files().config().nKvHeads * m_model->files().config().headDim);
        std::vector<std::vector<float>> packedK(nLayers);
        engine::ForwardOptions opt;
        opt.allLogits = true;
        opt.segments = segs;
        opt.layerHook = [&](const engine::LayerTensors& lt) {
            packedK[static_cast<size_t>(lt.layer)].assign(lt.k, lt.k + lt.nTokens * kvWidth);
        };
        auto session = m_model->createSession({.maxTokens = 512, .nThreads = 2});
        QVERIFY(session.ok());
        auto packed = (*session)->forward(tokens, positions, opt);
        QVERIFY2(packed.ok(), packed.status().toString().c_str());
        const std::vector<float> packedLogits(packed->begin(), packed->end());
        const size_t vocab = (*session)->vocabSize();
        QCOMPARE(packedLogits.size(), tokens.size() * vocab);

        size_t start = 0;
        for (uint32_t len : segs) {
            std::vector<std::vector<float>> sepK(nLayers);
            engine::ForwardOptions one;
            one.allLogits = true;
            one.layerHook = [&](const engine::LayerTensors& lt) {
                sepK[static_cast<size_t>(lt.layer)].assign(lt.k, lt.k + lt.nTokens * kvWidth);
            };
            (*session)->truncate(0);
            std::vector<int32_t> pos(len);
            std::iota(pos.begin(), pos.end(), 0);
            auto sep = (*session)->forward(std::span<const int32_t>(tokens).subspan(start, len), pos, one);
            QVERIFY(sep.ok());
            const std::span<const float> mine(packedLogits.data() + start * vocab, len * vocab);
            const double diff = maxAbsDiff(mine, *sep);
            QVERIFY2(diff <= 1e-4 * std::max(1.0, maxAbs(*sep)),
                     qPrintable(QString("segment of %1 tokens: logits differ by %2").arg(len).arg(diff)));
            for (size_t l = 0; l < nLayers; ++l) {
                const std::span<const float> pk(packedK[l].data() + start * kvWidth, len * kvWidth);
                QVERIFY(maxAbsDiff(pk, sepK[l]) <= 1e-4 * std::max(1.0, maxAbs(sepK[l])));
            }
            start += len;
        }
        // The packed forward really isolated the segments: without them, later segments see the
        // earlier ones and their logits change.
        (*session)->truncate(0);
        auto joined = (*session)->forward(tokens, positions, {.allLogits = true});
        QVERIFY(joined.ok());
        const size_t last = tokens.size() - 1;
        QVERIFY(maxAbsDiff(std::span<const float>(packedLogits).subspan(last * vocab, vocab), joined->subspan(last * vocab, vocab)) > 1e-3);
    }

    void badSegmentsAreInvalidArgument() {
        auto session = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        QVERIFY(session.ok());
        const std::vector<int32_t> tokens = {1, 2, 3, 4}, positions = {0, 1, 0, 1};
        const std::vector<uint32_t> shortSum = {2, 1}, zero = {2, 0, 2}, good = {2, 2};
        engine::ForwardOptions opt;
        opt.segments = shortSum;
        QCOMPARE((*session)->forward(tokens, positions, opt).status().code(), ErrorCode::InvalidArgument);
        opt.segments = zero;
        QCOMPARE((*session)->forward(tokens, positions, opt).status().code(), ErrorCode::InvalidArgument);
        QVERIFY((*session)->forward(std::span<const int32_t>(tokens).first(1), std::span<const int32_t>(positions).first(1), {}).ok());
        opt.segments = good;   // a token is already cached: segments need an empty context
        QCOMPARE((*session)->forward(tokens, positions, opt).status().code(), ErrorCode::InvalidArgument);
        (*session)->truncate(0);
        opt.memoryHook = [](const engine::LayerTensors&) -> Result<engine::LayerPrefix> { return engine::LayerPrefix{}; };
        QCOMPARE((*session)->forward(tokens, positions, opt).status().code(), ErrorCode::InvalidArgument);
        opt.memoryHook = {};
        QVERIFY((*session)->forward(tokens, positions, opt).ok());
    }

private:
    std::unique_ptr<engine::Backend> m_backend;
    std::shared_ptr<const engine::LoadedModel> m_model;
};

QTEST_GUILESS_MAIN(TestForwardSegments)
#include "tst_forward_segments.moc"

// tst_session_prefix.cpp: per-layer key/value prefixes in a Session (the hook through which MSA places
// the template head and the selected memory chunks in front of the local tokens, msa-spec §2.8).
// Exporting the K/V rows of some tokens and installing them as a prefix in a fresh session must give
// the same logits as having run those tokens in that session; layers may have different prefix
// lengths; truncate() keeps the prefix; wrong sizes are InvalidArgument.
#include "core/engine/backend.h"
#include "core/model/model_files.h"

#include <QtTest>

#include <numeric>

using namespace msa;

namespace {
std::vector<int32_t> iota(size_t n, int32_t start) {
    std::vector<int32_t> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
}
double maxAbsDiff(std::span<const float> a, std::span<const float> b) {
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}
}  // namespace

class TestSessionPrefix : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        auto files = model::ModelFiles::open(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
        QVERIFY2(files.ok(), files.status().toString().c_str());
        m_backend = engine::createCpuBackend();
        auto loaded = m_backend->load(std::move(files).value());
        QVERIFY(loaded.ok());
        m_model = *loaded;
        m_nLayers = static_cast<size_t>(m_model->files().config().nLayers);
        for (int32_t i = 0; i < 20; ++i) m_tokens.push_back((i * 37 + 11) % 256);
    }

    void exportedRowsAsPrefixEqualRunningTheTokens() {
        const std::vector<int32_t> head(m_tokens.begin(), m_tokens.begin() + 10);
        const std::vector<int32_t> tail(m_tokens.begin() + 10, m_tokens.end());
        auto a = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        QVERIFY(a.ok());
        QVERIFY((*a)->forward(head, iota(10, 0), {}).ok());
        std::vector<engine::LayerPrefix> prefix;
        for (size_t l = 0; l < m_nLayers; ++l) {
            auto rows = (*a)->exportRows(l, 0, 10);
            QVERIFY(rows.ok());
            prefix.push_back(std::move(rows).value());
        }
        auto ra = (*a)->forward(tail, iota(10, 10), {.allLogits = true});
        QVERIFY(ra.ok());
        const std::vector<float> expected(ra->begin(), ra->end());

        auto b = m_model->createSession({.maxTokens = 64, .nThreads = 2});
        QVERIFY(b.ok());
        QVERIFY((*b)->setPrefix(prefix).ok());
        QCOMPARE((*b)->prefixRows(0), size_t(10));
        QCOMPARE((*b)->nPast(), size_t(0));
        auto rb = (*b)->forward(tail, iota(10, 10), {.allLogits = true});
        QVERIFY(rb.ok());
        QVERIFY2(maxAbsDiff(*rb, expected) < 1e-5, "prefix rows do not reproduce the tokens they came from");

        // truncate() forgets local tokens only; the prefix stays.
        (*b)->truncate(0);
        auto again = (*b)->forward(tail, iota(10, 10), {.allLogits = true});
        QVERIFY(again.ok());
        QVERIFY(maxAbsDiff(*again, expected) < 1e-5);
        // The exported context of a prefixed session starts with the prefix rows.
        auto firstRows = (*b)->exportRows(0, 0, 10);
        QVERIFY(firstRows.ok());
        QCOMPARE(firstRows->k, prefix[0].k);
    }

    void emptyPrefixIsPlainAndLayersMayDiffer() {
        auto plain = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        auto r0 = (*plain)->forward(m_tokens, iota(m_tokens.size(), 0), {});
        QVERIFY(r0.ok());
        const std::vector<float> expected(r0->begin(), r0->end());
        auto s = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        QVERIFY((*s)->setPrefix(std::vector<engine::LayerPrefix>(m_nLayers)).ok());
        auto r1 = (*s)->forward(m_tokens, iota(m_tokens.size(), 0), {});
        QVERIFY(r1.ok());
        QCOMPARE(maxAbsDiff(*r1, expected), 0.0);

        // A prefix in the last layer only changes the result; the earlier layers are untouched.
        auto src = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        QVERIFY((*src)->forward(std::span(m_tokens).first(4), iota(4, 0), {}).ok());
        std::vector<engine::LayerPrefix> onlyLast(m_nLayers);
        onlyLast.back() = std::move((*src)->exportRows(m_nLayers - 1, 0, 4)).value();
        QVERIFY((*s)->setPrefix(onlyLast).ok());
        QCOMPARE((*s)->prefixRows(0), size_t(0));
        QCOMPARE((*s)->prefixRows(m_nLayers - 1), size_t(4));
        auto r2 = (*s)->forward(m_tokens, iota(m_tokens.size(), 0), {});
        QVERIFY(r2.ok());
        QVERIFY(maxAbsDiff(*r2, expected) > 1e-4);
    }

    void badPrefixes() {
        auto s = m_model->createSession({.maxTokens = 64, .nThreads = 1});
        QCOMPARE((*s)->setPrefix(std::vector<engine::LayerPrefix>(m_nLayers + 1)).code(), ErrorCode::InvalidArgument);
        std::vector<engine::LayerPrefix> wrong(m_nLayers);
        wrong[0].nRows = 2;
        wrong[0].k.resize(3);
        wrong[0].v.resize(3);
        QCOMPARE((*s)->setPrefix(wrong).code(), ErrorCode::InvalidArgument);
        QCOMPARE((*s)->exportRows(0, 0, 1).status().code(), ErrorCode::InvalidArgument);   // nothing cached yet
        QCOMPARE((*s)->exportRows(m_nLayers, 0, 0).status().code(), ErrorCode::InvalidArgument);
    }

private:
    std::unique_ptr<engine::Backend> m_backend;
    std::shared_ptr<const engine::LoadedModel> m_model;
    size_t m_nLayers = 0;
    std::vector<int32_t> m_tokens;
};

QTEST_GUILESS_MAIN(TestSessionPrefix)
#include "tst_session_prefix.moc"

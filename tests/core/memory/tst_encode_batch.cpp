// tst_encode_batch.cpp: encodeDocuments() — many memory documents packed into one encoder forward as
// independent segments — must pool exactly what one-at-a-time encodeDocument() pools (up to f32
// summation order in the projections: the batch's matrix products run over more rows), on the tiny
// MSA checkpoint (decoupled router keys, INFONCE normalisation, training-free keys) and on the demo
// model when present (skipped otherwise). Also: documents longer than the budget run alone, the
// output order is the input order, and empty documents are refused.
#include "core/engine/backend.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/encoder.h"
#include "core/util/paths.h"

#include <QtTest>

#include <cmath>

using namespace msa;

namespace {

const std::string kMsaModel = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

double relErr(const std::vector<float>& got, const std::vector<float>& want) {
    double worst = 0, scale = 1e-3;
    for (float w : want) scale = std::max(scale, double(std::abs(w)));
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(double(got[i]) - double(want[i])) / scale);
    return worst;
}

std::vector<std::vector<int32_t>> makeDocuments(const std::vector<size_t>& lengths, int32_t vocab) {
    std::vector<std::vector<int32_t>> docs;
    for (size_t d = 0; d < lengths.size(); ++d) {
        std::vector<int32_t> doc;
        for (size_t i = 0; i < lengths[d]; ++i) doc.push_back(static_cast<int32_t>((d * 7919 + i * 37 + 11) % static_cast<size_t>(vocab)));
        docs.push_back(std::move(doc));
    }
    return docs;
}

// Packed vs one at a time; returns the worst relative error over every pooled array.
void comparePackedWithSingle(engine::Session& session, const model::ModelFiles& files, const memory::RoutingConfig& cfg,
                             const std::vector<std::vector<int32_t>>& docs, size_t budget, double tolerance) {
    std::vector<std::span<const int32_t>> spans(docs.begin(), docs.end());
    auto packed = memory::encodeDocuments(session, files, cfg, spans, budget);
    QVERIFY2(packed.ok(), packed.status().toString().c_str());
    QCOMPARE(packed->size(), docs.size());
    QCOMPARE(session.nPast(), size_t(0));
    for (size_t d = 0; d < docs.size(); ++d) {
        auto one = memory::encodeDocument(session, files, cfg, docs[d]);
        QVERIFY2(one.ok(), one.status().toString().c_str());
        const memory::EncodedDocument& p = (*packed)[d];
        QCOMPARE(p.nTokens, one->nTokens);
        QCOMPARE(p.layers.size(), one->layers.size());
        for (size_t l = 0; l < p.layers.size(); ++l) {
            QCOMPARE(p.layers[l].layer, one->layers[l].layer);
            QCOMPARE(p.layers[l].nChunks, one->layers[l].nChunks);
            for (auto [a, b] : {std::pair{&p.layers[l].k, &one->layers[l].k}, std::pair{&p.layers[l].v, &one->layers[l].v},
                                std::pair{&p.layers[l].routeKey, &one->layers[l].routeKey}}) {
                QCOMPARE(a->size(), b->size());
                const double err = relErr(*a, *b);
                QVERIFY2(err <= tolerance, qPrintable(QString("document %1 (%2 tokens), layer %3: relative error %4")
                                                          .arg(d).arg(docs[d].size()).arg(p.layers[l].layer).arg(err)));
            }
        }
    }
}

}  // namespace

class TestEncodeBatch : public QObject {
    Q_OBJECT
private slots:
    void msaCheckpointPackedEqualsSingle() {
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto cfgOr = memory::routingConfigFor(files);
        QVERIFY2(cfgOr.ok(), cfgOr.status().toString().c_str());
        memory::RoutingConfig cfg = *cfgOr;
        QVERIFY(cfg.decoupled);
        cfg.chunkSize = 4;   // partial last chunks in most documents
        auto session = rt->model->createSession({.maxTokens = 1024, .nThreads = 2});
        QVERIFY(session.ok());
        // 16+ documents of mixed lengths: below and above the 16-token sgemm threshold, one above
        // the budget (runs alone), several forwards in all.
        const auto docs = makeDocuments({3, 11, 40, 1, 17, 64, 9, 130, 5, 33, 70, 2, 15, 16, 300, 8, 21}, 256);
        comparePackedWithSingle(**session, files, cfg, docs, 128, 1e-5);

        memory::RoutingConfig cos = cfg;   // INFONCE: normalisation per document after pooling
        cos.normalize = true;
        comparePackedWithSingle(**session, files, cos, docs, 256, 1e-5);

        auto tf = memory::routingConfigFromSettings(files.config(), false, {2, 3});
        QVERIFY(tf.ok());
        comparePackedWithSingle(**session, files, *tf, docs, 2048, 1e-5);

        // Empty input: nothing to do; an empty document: refused.
        auto none = memory::encodeDocuments(**session, files, cfg, {}, 128);
        QVERIFY(none.ok() && none->empty());
        std::vector<std::span<const int32_t>> withEmpty = {docs[0], {}};
        QCOMPARE(memory::encodeDocuments(**session, files, cfg, withEmpty, 128).status().code(), ErrorCode::InvalidArgument);
    }

    void demoModelPackedEqualsSingle() {
        const std::filesystem::path model = findDemoModel();
        if (model.empty() || !std::filesystem::exists(model)) QSKIP("demo model not found (core/util/paths.h findDemoModel)");
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(model, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        auto cfg = memory::routingConfigFor(*rt->files);
        QVERIFY(cfg.ok());
        auto session = rt->model->createSession({.maxTokens = 1024, .nThreads = 2});
        QVERIFY(session.ok());
        const auto docs = makeDocuments({90, 7, 200, 64, 130, 12, 400}, 49152);
        comparePackedWithSingle(**session, *rt->files, *cfg, docs, 512, 1e-4);
    }
};

QTEST_GUILESS_MAIN(TestEncodeBatch)
#include "tst_encode_batch.moc"

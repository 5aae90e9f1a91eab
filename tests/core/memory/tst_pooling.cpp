// tst_pooling.cpp: chunk mean pooling (msa-spec §3) against a naive double implementation, including
// the partial last chunk and documents shorter than one chunk; the INFONCE key normalisation; and
// the encoder on the tiny MSA checkpoint (tests/fixtures/models/msa-qwen3-bf16, router tensors in
// layers 2 and 3): its pooled K̄/V̄/K̄ᴿ equal a naive pooling of the full forward's per-token tensors
// (so stopping after the last routing layer changes nothing), K̄ᴿ is router_k applied to the normed
// hidden state (not the attention key), and the training-free key is the pooled attention key.
#include "core/engine/backend.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/encoder.h"
#include "core/memory/pooling.h"

#include <QtTest>

#include <cmath>
#include <random>

using namespace msa;

namespace {

const std::string kMsaModel = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

std::vector<double> naivePool(const std::vector<float>& rows, size_t n, size_t width, size_t p) {
    std::vector<double> out;
    for (size_t c0 = 0; c0 < n; c0 += p) {
        const size_t c1 = std::min(c0 + p, n);
        for (size_t i = 0; i < width; ++i) {
            double s = 0;
            for (size_t t = c0; t < c1; ++t) s += rows[t * width + i];
            out.push_back(s / static_cast<double>(c1 - c0));
        }
    }
    return out;
}

double maxRelErr(const std::vector<float>& got, const std::vector<double>& want) {
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i)
        worst = std::max(worst, std::abs(got[i] - want[i]) / std::max(std::abs(want[i]), 1e-3));
    return worst;
}

}  // namespace

class TestPooling : public QObject {
    Q_OBJECT
private slots:
    void chunkCounts() {
        QCOMPARE(memory::chunkCount(0, 64), size_t(0));
        QCOMPARE(memory::chunkCount(1, 64), size_t(1));
        QCOMPARE(memory::chunkCount(64, 64), size_t(1));
        QCOMPARE(memory::chunkCount(65, 64), size_t(2));
        QCOMPARE(memory::chunkCount(130, 64), size_t(3));
    }

    void meanMatchesNaive_data() {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("p");
        for (int n : {1, 5, 63, 64, 65, 127, 130, 200}) QTest::addRow("n%d_p64", n) << n << 64;
        for (int n : {1, 3, 4, 9}) QTest::addRow("n%d_p4", n) << n << 4;
    }
    void meanMatchesNaive() {
        QFETCH(int, n);
        QFETCH(int, p);
        const size_t width = 2 * 16;
        std::mt19937 rng(static_cast<unsigned>(n * 131 + p));
        std::normal_distribution<float> dist(0.0f, 3.0f);
        std::vector<float> rows(static_cast<size_t>(n) * width);
        for (float& x : rows) x = dist(rng) + 5.0f;   // an offset makes a wrong divisor visible
        const auto got = memory::meanPoolChunks(rows, static_cast<size_t>(n), width, static_cast<size_t>(p));
        const auto want = naivePool(rows, static_cast<size_t>(n), width, static_cast<size_t>(p));
        QCOMPARE(got.size(), want.size());
        QCOMPARE(got.size(), memory::chunkCount(static_cast<size_t>(n), static_cast<size_t>(p)) * width);
        QVERIFY2(maxRelErr(got, want) < 1e-5, QByteArray::number(maxRelErr(got, want)));
    }

    void partialLastChunkIsMeanOverRealLength() {
        // 66 tokens, P 64: the last chunk holds 2 tokens whose values are 10 and 20 -> mean 15, not 30/64.
        std::vector<float> rows(66, 1.0f);
        rows[64] = 10.0f;
        rows[65] = 20.0f;
        const auto got = memory::meanPoolChunks(rows, 66, 1, 64);
        QCOMPARE(got.size(), size_t(2));
        QCOMPARE(got[0], 1.0f);
        QCOMPARE(got[1], 15.0f);
    }

    void l2Normalize() {
        std::vector<float> x{3, 4, 0, 0, 0, 0};
        memory::l2NormalizeRows(x.data(), 3, 2);
        QCOMPARE(x[0], 0.6f);
        QCOMPARE(x[1], 0.8f);
        QCOMPARE(x[2], 0.0f);   // a zero row stays zero (eps 1e-12, like F.normalize)
        QCOMPARE(x[5], 0.0f);
    }

    void encoderMatchesNaivePooling() {
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto cfgOr = memory::routingConfigFor(files);
        QVERIFY2(cfgOr.ok(), cfgOr.status().toString().c_str());
        memory::RoutingConfig cfg = *cfgOr;
        QCOMPARE(cfg.layers, (std::vector<int>{2, 3}));
        QVERIFY(cfg.decoupled);
        QVERIFY(!cfg.normalize);   // INFONCE_DECOUPLE: scaled dot (msa-spec §2.4 branch A)
        cfg.chunkSize = 4;         // several chunks from a short document, with a partial last one

        auto sessionOr = rt->model->createSession({.maxTokens = 256, .nThreads = 2});
        QVERIFY(sessionOr.ok());
        engine::Session& session = **sessionOr;
        std::vector<int32_t> doc;
        for (int i = 0; i < 11; ++i) doc.push_back((i * 37 + 11) % 256);

        // Per-token tensors from a full forward (all layers, logits computed).
        struct Rows { std::vector<float> hidden, k, v; };
        std::map<int, Rows> full;
        engine::ForwardOptions opt;
        opt.layerHook = [&](const engine::LayerTensors& lt) {
            const size_t kv = cfg.nRouteHeads * cfg.headDim, hid = static_cast<size_t>(files.config().hiddenSize);
            full[lt.layer] = {std::vector<float>(lt.hiddenNormed, lt.hiddenNormed + lt.nTokens * hid),
                              std::vector<float>(lt.k, lt.k + lt.nTokens * kv), std::vector<float>(lt.v, lt.v + lt.nTokens * kv)};
        };
        std::vector<int32_t> pos(doc.size());
        std::iota(pos.begin(), pos.end(), 0);
        QVERIFY(session.forward(doc, pos, opt).ok());

        auto enc = memory::encodeDocument(session, files, cfg, doc);
        QVERIFY2(enc.ok(), enc.status().toString().c_str());
        QCOMPARE(session.nPast(), size_t(0));
        QCOMPARE(enc->nTokens, doc.size());
        QCOMPARE(enc->layers.size(), size_t(2));
        const size_t kvWidth = cfg.nRouteHeads * cfg.headDim;
        for (const memory::PooledLayer& p : enc->layers) {
            QCOMPARE(p.nChunks, size_t(3));
            const Rows& r = full.at(p.layer);
            QVERIFY(maxRelErr(p.k, naivePool(r.k, doc.size(), kvWidth, 4)) < 1e-5);
            QVERIFY(maxRelErr(p.v, naivePool(r.v, doc.size(), kvWidth, 4)) < 1e-5);
            // Router key: router_k (bf16 weights) · x̃ in double, then pooled.
            const model::TensorView* w = files.tensors().find("blk." + std::to_string(p.layer) + ".router_k.weight");
            QVERIFY(w);
            const size_t hid = w->rowLength();
            std::vector<float> proj(doc.size() * kvWidth);
            std::vector<float> wRow(hid);
            for (size_t o = 0; o < kvWidth; ++o) {
                model::dequantizeRow(w->dtype, w->row(o), wRow.data(), hid);
                for (size_t t = 0; t < doc.size(); ++t) {
                    double s = 0;
                    for (size_t i = 0; i < hid; ++i) s += static_cast<double>(wRow[i]) * r.hidden[t * hid + i];
                    proj[t * kvWidth + o] = static_cast<float>(s);
                }
            }
            const double err = maxRelErr(p.routeKey, naivePool(proj, doc.size(), kvWidth, 4));
            QVERIFY2(err < 1e-4, QByteArray::number(err));
            // And it is not the attention key.
            QVERIFY(maxRelErr(p.routeKey, naivePool(r.k, doc.size(), kvWidth, 4)) > 1e-2);
        }

        // Training-free on the same weights: the routing key is the pooled attention key itself.
        auto tf = memory::routingConfigFromSettings(files.config(), false, {2, 3});
        QVERIFY(tf.ok());
        tf->chunkSize = 4;
        auto encTf = memory::encodeDocument(session, files, *tf, doc);
        QVERIFY(encTf.ok());
        for (const memory::PooledLayer& p : encTf->layers) QCOMPARE(p.routeKey, p.k);

        // INFONCE: the pooled routing key is L2-normalised per head after pooling (msa-spec §2.2).
        memory::RoutingConfig cos = cfg;
        cos.normalize = true;
        auto encCos = memory::encodeDocument(session, files, cos, doc);
        QVERIFY(encCos.ok());
        for (size_t li = 0; li < 2; ++li) {
            std::vector<float> expect = enc->layers[li].routeKey;
            memory::l2NormalizeRows(expect.data(), expect.size() / cfg.headDim, cfg.headDim);
            QCOMPARE(encCos->layers[li].routeKey, expect);
            QCOMPARE(encCos->layers[li].k, enc->layers[li].k);
        }
        QVERIFY(!memory::encodeDocument(session, files, cfg, {}).ok());
    }
};

QTEST_GUILESS_MAIN(TestPooling)
#include "tst_pooling.moc"

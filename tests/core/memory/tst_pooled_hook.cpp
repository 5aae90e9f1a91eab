// tst_pooled_hook.cpp: ForwardOptions::pooling (backend.h) on the CPU backend. The pooled hook must hand
// over exactly the bits the layer hook + memory::meanPoolChunks path pools today: encodeDocuments()
// and encodeDocument() through EncodePath::Pooled vs EncodePath::LayerHook, compared with memcmp, on
// the tiny MSA checkpoint (decoupled router keys, INFONCE normalisation, training-free keys) with
// packed segments whose last chunks are partial, and on the demo model when present. Also: the
// segment chunk plan, the option checks, and the size of the difference between the reference's
// project-then-pool and the CUDA backend's pool-then-project for router_k_proj (no bias: equal in
// exact arithmetic).
#include "core/engine/backend.h"
#include "core/engine/chunk_pool.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/encoder.h"
#include "core/memory/pooling.h"
#include "core/model/dtype.h"
#include "core/util/paths.h"

#include <QElapsedTimer>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <numeric>

using namespace msa;

namespace {

const std::string kMsaModel = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

std::vector<std::vector<int32_t>> makeDocuments(const std::vector<size_t>& lengths, int32_t vocab) {
    std::vector<std::vector<int32_t>> docs;
    for (size_t d = 0; d < lengths.size(); ++d) {
        std::vector<int32_t> doc;
        for (size_t i = 0; i < lengths[d]; ++i) doc.push_back(static_cast<int32_t>((d * 7919 + i * 37 + 11) % static_cast<size_t>(vocab)));
        docs.push_back(std::move(doc));
    }
    return docs;
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

void compareDocs(const std::vector<memory::EncodedDocument>& a, const std::vector<memory::EncodedDocument>& b) {
    QCOMPARE(a.size(), b.size());
    for (size_t d = 0; d < a.size(); ++d) {
        QCOMPARE(a[d].nTokens, b[d].nTokens);
        QCOMPARE(a[d].layers.size(), b[d].layers.size());
        for (size_t l = 0; l < a[d].layers.size(); ++l) {
            const memory::PooledLayer &x = a[d].layers[l], &y = b[d].layers[l];
            QCOMPARE(x.layer, y.layer);
            QCOMPARE(x.nChunks, y.nChunks);
            QVERIFY2(!x.k.empty() && sameBits(x.k, y.k), qPrintable(QString("K̄ differs: document %1 layer %2").arg(d).arg(x.layer)));
            QVERIFY2(sameBits(x.v, y.v), qPrintable(QString("V̄ differs: document %1 layer %2").arg(d).arg(x.layer)));
            QVERIFY2(sameBits(x.routeKey, y.routeKey), qPrintable(QString("K̄ᴿ differs: document %1 layer %2").arg(d).arg(x.layer)));
        }
    }
}

void comparePaths(engine::Session& session, const model::ModelFiles& files, const memory::RoutingConfig& cfg,
                  const std::vector<std::vector<int32_t>>& docs, size_t budget) {
    std::vector<std::span<const int32_t>> spans(docs.begin(), docs.end());
    QElapsedTimer timer;
    timer.start();
    auto old = memory::encodeDocuments(session, files, cfg, spans, budget, nullptr, memory::EncodePath::LayerHook);
    double oldMs = double(timer.nsecsElapsed()) / 1e6;
    QVERIFY2(old.ok(), old.status().toString().c_str());
    timer.restart();
    auto pooled = memory::encodeDocuments(session, files, cfg, spans, budget, nullptr, memory::EncodePath::Pooled);
    double pooledMs = double(timer.nsecsElapsed()) / 1e6;
    QVERIFY2(pooled.ok(), pooled.status().toString().c_str());
    compareDocs(*pooled, *old);
    timer.restart();
    auto autoPath = memory::encodeDocuments(session, files, cfg, spans, budget);   // the CPU backend pools itself
    pooledMs = std::min(pooledMs, double(timer.nsecsElapsed()) / 1e6);
    QVERIFY2(autoPath.ok(), autoPath.status().toString().c_str());
    compareDocs(*autoPath, *old);
    timer.restart();
    QVERIFY(memory::encodeDocuments(session, files, cfg, spans, budget, nullptr, memory::EncodePath::LayerHook).ok());
    oldMs = std::min(oldMs, double(timer.nsecsElapsed()) / 1e6);
    // Information only (a shared machine): the pooled path projects routing keys on the session's threads.
    qInfo("encode (%s): layer hook %.1f ms, pooled hook %.1f ms (best of 2)", cfg.decoupled ? "decoupled" : "training-free",
          oldMs, pooledMs);
    // One document per forward (no segments) through both paths.
    for (size_t d : {size_t(0), docs.size() - 1}) {
        auto a = memory::encodeDocument(session, files, cfg, docs[d], nullptr, memory::EncodePath::LayerHook);
        auto b = memory::encodeDocument(session, files, cfg, docs[d], nullptr, memory::EncodePath::Pooled);
        QVERIFY2(a.ok() && b.ok(), "encodeDocument failed");
        compareDocs({*b}, {*a});
    }
}


}  // namespace

class TestPooledHook : public QObject {
    Q_OBJECT
private slots:
    void chunkPlan() {
        // Segments 5, 1, 8, 4 with P = 4: partial last chunks, a one-token segment, an exact multiple.
        const std::vector<uint32_t> segs = {5, 1, 8, 4};
        const auto plan = engine::segmentChunks(segs, 18, 4);
        const std::vector<std::pair<uint32_t, uint32_t>> want = {{0, 4}, {4, 1}, {5, 1}, {6, 4}, {10, 4}, {14, 4}};
        QCOMPARE(plan.size(), want.size());
        for (size_t i = 0; i < plan.size(); ++i) {
            QCOMPARE(plan[i].start, want[i].first);
            QCOMPARE(plan[i].len, want[i].second);
        }
        QCOMPARE(engine::segmentChunks({}, 130, 64).size(), size_t(3));
        QCOMPARE(engine::segmentChunks({}, 130, 64).back().len, uint32_t(2));
        QVERIFY(engine::segmentChunks({}, 0, 64).empty());
        // Pooling one segment of the plan = meanPoolChunks of that document, bit for bit.
        std::vector<float> rows(18 * 3);
        for (size_t i = 0; i < rows.size(); ++i) rows[i] = std::sin(float(i) * 0.37f) * 3.0f + 0.1f * float(i);
        std::vector<float> pooled(plan.size() * 3);
        engine::poolChunkRows(rows.data(), 3, plan, 0, plan.size(), pooled.data());
        const auto third = memory::meanPoolChunks(std::span<const float>(rows).subspan(6 * 3, 8 * 3), 8, 3, 4);
        QVERIFY(std::memcmp(third.data(), pooled.data() + 3 * 3, third.size() * sizeof(float)) == 0);
        const auto first = memory::meanPoolChunks(std::span<const float>(rows).subspan(0, 5 * 3), 5, 3, 4);
        QVERIFY(std::memcmp(first.data(), pooled.data(), first.size() * sizeof(float)) == 0);
    }

    void msaCheckpointPooledEqualsLayerHook() {
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto cfgOr = memory::routingConfigFor(files);
        QVERIFY2(cfgOr.ok(), cfgOr.status().toString().c_str());
        memory::RoutingConfig cfg = *cfgOr;
        QVERIFY(cfg.decoupled);
        cfg.chunkSize = 4;
        auto session = rt->model->createSession({.maxTokens = 1024, .nThreads = 2});
        QVERIFY(session.ok());
        QVERIFY((*session)->supportsPooling());
        const auto docs = makeDocuments({3, 11, 40, 1, 17, 64, 9, 130, 5, 33, 70, 2, 15, 16, 300, 8, 21}, 256);
        comparePaths(**session, files, cfg, docs, 128);
        memory::RoutingConfig cos = cfg;
        cos.normalize = true;
        comparePaths(**session, files, cos, docs, 256);
        auto tf = memory::routingConfigFromSettings(files.config(), false, {2, 3});
        QVERIFY(tf.ok());
        comparePaths(**session, files, *tf, docs, 2048);
    }

    // The reference projects each token with router_k_proj and then pools (msa-spec §3); the CUDA
    // backend pools x̃ and projects the pooled rows. router_k_proj has no bias, so both are the same
    // linear map; in f32 they differ only by rounding.
    void projectThenPoolEqualsPoolThenProject() {
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto cfg = memory::routingConfigFor(files);
        QVERIFY(cfg.ok() && cfg->decoupled);
        QVERIFY2(!files.tensors().find("blk." + std::to_string(cfg->layers[0]) + ".router_k.bias"), "router_k_proj has a bias");
        auto w = memory::routerKeyWeight(*cfg, files, cfg->layers[0]);
        QVERIFY2(w.ok(), w.status().toString().c_str());
        auto session = rt->model->createSession({.maxTokens = 256, .nThreads = 2});
        QVERIFY(session.ok());
        const auto docs = makeDocuments({70}, 256);
        std::vector<float> hidden;
        size_t nTok = 0;
        engine::ForwardOptions opt;
        opt.computeLogits = false;
        opt.stopAfterLayer = cfg->layers[0];
        opt.layerHook = [&](const engine::LayerTensors& lt) {
            if (lt.layer != cfg->layers[0]) return;
            nTok = lt.nTokens;
            hidden.assign(lt.hiddenNormed, lt.hiddenNormed + lt.nTokens * size_t(files.config().hiddenSize));
        };
        std::vector<int32_t> pos(docs[0].size());
        std::iota(pos.begin(), pos.end(), 0);
        QVERIFY((*session)->forward(docs[0], pos, opt).ok());
        (*session)->truncate(0);
        const size_t H = size_t(files.config().hiddenSize), W = (*w)->nRows(), P = 8;
        std::vector<float> proj(nTok * W);
        for (size_t t = 0; t < nTok; ++t)
            for (size_t r = 0; r < W; ++r) proj[t * W + r] = model::dotRow((*w)->dtype, (*w)->row(r), hidden.data() + t * H, H);
        const auto a = memory::meanPoolChunks(proj, nTok, W, P);
        const auto xbar = memory::meanPoolChunks(hidden, nTok, H, P);
        std::vector<float> b(a.size());
        for (size_t c = 0; c < a.size() / W; ++c)
            for (size_t r = 0; r < W; ++r) b[c * W + r] = model::dotRow((*w)->dtype, (*w)->row(r), xbar.data() + c * H, H);
        double worst = 0, scale = 0;
        for (float x : a) scale = std::max(scale, double(std::abs(x)));
        for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
        qInfo("project-then-pool vs pool-then-project: max |diff| %.3g (max |value| %.3g)", worst, scale);
        QVERIFY(scale > 0);
        QVERIFY2(worst <= 1e-5 * scale, qPrintable(QString("max diff %1 of %2").arg(worst).arg(scale)));
    }

    void invalidOptionsAreRefused() {
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        auto session = rt->model->createSession({.maxTokens = 64, .nThreads = 1});
        QVERIFY(session.ok());
        const std::vector<int32_t> ids = {1, 2, 3, 4, 5};
        const std::vector<int32_t> pos = {0, 1, 2, 3, 4};
        auto run = [&](const engine::PoolingOptions* p, bool hook) {
            engine::ForwardOptions opt;
            opt.computeLogits = false;
            opt.pooling = p;
            if (hook) opt.pooledHook = [](const engine::PooledRows&) {};
            auto r = (*session)->forward(ids, pos, opt);
            (*session)->truncate(0);
            return r.ok() ? ErrorCode::Ok : r.status().code();
        };
        engine::PoolingOptions good{.chunkSize = 2, .layers = {0, 1}, .routeKeyProj = {}};
        QCOMPARE(run(&good, true), ErrorCode::Ok);
        QCOMPARE(run(&good, false), ErrorCode::InvalidArgument);
        QCOMPARE(run(nullptr, true), ErrorCode::InvalidArgument);
        engine::PoolingOptions zero = good;
        zero.chunkSize = 0;
        QCOMPARE(run(&zero, true), ErrorCode::InvalidArgument);
        engine::PoolingOptions unsorted = good;
        unsorted.layers = {1, 0};
        QCOMPARE(run(&unsorted, true), ErrorCode::InvalidArgument);
        engine::PoolingOptions outside = good;
        outside.layers = {0, 999};
        QCOMPARE(run(&outside, true), ErrorCode::InvalidArgument);
        engine::PoolingOptions wrongShape = good;
        wrongShape.routeKeyProj = {rt->files->tensors().find("blk.0.attn_q.weight"), nullptr};
        QVERIFY(wrongShape.routeKeyProj[0]);
        QCOMPARE(run(&wrongShape, true), ErrorCode::Mismatch);
    }

    void demoModelPooledEqualsLayerHook() {
        const std::filesystem::path model = findDemoModel();
        if (model.empty() || !std::filesystem::exists(model)) QSKIP("demo model not found (core/util/paths.h findDemoModel)");
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(model, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        auto cfg = memory::routingConfigFor(*rt->files);
        QVERIFY(cfg.ok());
        auto session = rt->model->createSession({.maxTokens = 1024, .nThreads = 2});
        QVERIFY(session.ok());
        comparePaths(**session, *rt->files, *cfg, makeDocuments({90, 7, 200, 64, 130, 12, 400}, 49152), 512);
    }
};

QTEST_GUILESS_MAIN(TestPooledHook)
#include "tst_pooled_hook.moc"

// tst_router.cpp: the router (msa-spec §2.4-2.6) against a naive double implementation of
//   σ_i = chunk-reduce_c token-reduce_t head-reduce_h ( q_t[h] · K̄ᴿ_c[h / (H/G)] )
// on random data for both scoring branches; the GQA head mapping; ties broken by document id; the
// candidate filter; tiling and thread-count invariance (bit-identical); bf16 keys; parity with
// tests/tools/msa_router_reference.py (a numpy re-implementation of the reference's operations,
// committed as tests/fixtures/msa-router/router_reference.json); the round-1 query layout and document
// wrapping with the real Qwen3 tokenizer; and an end-to-end route on the tiny MSA checkpoint.
#include "core/engine/backend.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/encoder.h"
#include "core/memory/pooling.h"
#include "core/memory/router.h"
#include "core/memory/wrap.h"
#include "core/model/dtype.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

using namespace msa;

namespace {

const std::string kMsaModel = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";
const std::string kFixture = MSA_SOURCE_DIR "/tests/fixtures/msa-router/router_reference.json";

model::ModelConfig fakeConfig(int h, int g, int d, const std::string& method, const std::string& head = "mean",
                              const std::string& query = "max", const std::string& chunk = "max") {
    model::ModelConfig c;
    c.arch = model::Architecture::Qwen3;
    c.nLayers = 4;
    c.nHeads = h;
    c.nKvHeads = g;
    c.headDim = d;
    c.hiddenSize = h * d;
    model::MsaSettings m;
    m.routerLayers = {2, 3};
    m.auxLossMethod = method;
    m.headReduceMethod = head;
    m.queryReduceMethod = query;
    m.chunkReduceMethod = chunk;
    m.decoupleRouter = true;
    c.msa = m;
    return c;
}

struct Bank {
    std::vector<float> keys;           // nChunks × G × D
    std::vector<uint16_t> keysBf16;
    std::vector<uint64_t> offsets{0};
    std::vector<uint64_t> ids;
    size_t g = 0, d = 0;
    size_t nChunks() const { return offsets.back(); }
    memory::RouteKeys view(bool bf16 = false) const {
        memory::RouteKeys k;
        if (bf16) k.data = std::as_bytes(std::span<const uint16_t>(keysBf16));
        else k.data = std::as_bytes(std::span<const float>(keys));
        k.dtype = bf16 ? model::DType::BF16 : model::DType::F32;
        k.nChunks = nChunks();
        k.nHeads = g;
        k.headDim = d;
        k.chunkOffsets = offsets;
        k.docIds = ids;
        return k;
    }
    void addDoc(const std::vector<float>& pooled, uint64_t id) {
        keys.insert(keys.end(), pooled.begin(), pooled.end());
        offsets.push_back(offsets.back() + pooled.size() / (g * d));
        ids.push_back(id);
    }
    void makeBf16() {
        keysBf16.resize(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) keysBf16[i] = model::f32ToBf16(keys[i]);
    }
};

Bank randomBank(std::mt19937& rng, size_t nDocs, size_t g, size_t d, size_t maxChunks) {
    Bank b;
    b.g = g;
    b.d = d;
    std::normal_distribution<float> dist;
    std::uniform_int_distribution<size_t> nc(1, maxChunks);
    for (size_t i = 0; i < nDocs; ++i) {
        std::vector<float> pooled(nc(rng) * g * d);
        for (float& x : pooled) x = dist(rng);
        b.addDoc(pooled, 5000 + 3 * i);
    }
    return b;
}

memory::RoutingQueries randomQueries(std::mt19937& rng, const memory::RoutingConfig& cfg, size_t nTokens) {
    memory::RoutingQueries q;
    q.layer = 2;
    q.nTokens = nTokens;
    q.nHeads = cfg.nQueryHeads;
    q.headDim = cfg.headDim;
    q.q.resize(nTokens * q.nHeads * q.headDim);
    std::normal_distribution<float> dist;
    for (float& x : q.q) x = dist(rng);
    return q;
}

// The spec's formula in double, from RAW queries and keys (preparation done here, independently).
std::vector<double> naiveScores(const memory::RoutingConfig& cfg, const std::vector<float>& rawQ, size_t nQ,
                                const std::vector<float>& keys, const std::vector<uint64_t>& offsets, size_t g, size_t d,
                                const std::vector<uint8_t>& allowed = {}) {
    const size_t h = cfg.nQueryHeads, group = h / g;
    auto unit = [&](const float* x) {
        double n = 0;
        for (size_t i = 0; i < d; ++i) n += double(x[i]) * x[i];
        return std::max(std::sqrt(n), 1e-12);
    };
    const double scale = cfg.normalize && cfg.decoupled ? 1.0 : 1.0 / std::sqrt(double(d));
    std::vector<double> out;
    for (size_t doc = 0; doc + 1 < offsets.size(); ++doc) {
        if (!allowed.empty() && !allowed[doc]) {
            out.push_back(-INFINITY);
            continue;
        }
        double best = -INFINITY, sum = 0;
        for (size_t c = offsets[doc]; c < offsets[doc + 1]; ++c) {
            std::vector<double> a(nQ);
            for (size_t t = 0; t < nQ; ++t) {
                double r = cfg.headReduce == memory::HeadReduce::Mean ? 0 : -INFINITY;
                for (size_t hh = 0; hh < h; ++hh) {
                    const float* q = rawQ.data() + (t * h + hh) * d;
                    const float* k = keys.data() + (c * g + hh / group) * d;
                    double s = 0;
                    for (size_t i = 0; i < d; ++i) s += double(q[i]) * k[i];
                    if (cfg.normalize) s /= unit(q) * unit(k);
                    s *= scale;
                    r = cfg.headReduce == memory::HeadReduce::Mean ? r + s : std::max(r, s);
                }
                a[t] = cfg.headReduce == memory::HeadReduce::Mean ? r / double(h) : r;
            }
            double sc = 0;
            if (cfg.queryReduce == memory::QueryReduce::Max) sc = *std::max_element(a.begin(), a.end());
            else if (cfg.queryReduce == memory::QueryReduce::Mean) {
                for (double x : a) sc += x;
                sc /= double(nQ);
            } else sc = a.back();
            best = std::max(best, sc);
            sum += sc;
        }
        out.push_back(cfg.chunkReduce == memory::ChunkReduce::Max ? best : sum / double(offsets[doc + 1] - offsets[doc]));
    }
    return out;
}

bool close(double got, double want, double rel) { return std::abs(got - want) <= rel * std::max(std::abs(want), 1e-2); }

}  // namespace

class TestRouter : public QObject {
    Q_OBJECT
private slots:
    void branchSelection() {
        // Exact string equality, as the reference (msa-spec §2.4, B1).
        auto a = memory::routingConfigFromSettings(fakeConfig(4, 2, 16, "INFONCE_DECOUPLE"), true, {2, 3});
        QVERIFY(a.ok());
        QVERIFY(!a->normalize);
        QCOMPARE(a->queryScale, 0.25f);
        auto b = memory::routingConfigFromSettings(fakeConfig(4, 2, 16, "INFONCE"), true, {2, 3});
        QVERIFY(b->normalize);
        QCOMPARE(b->queryScale, 1.0f);
        auto c = memory::routingConfigFromSettings(fakeConfig(4, 2, 16, "INFONCE"), false, {2, 3});
        QVERIFY(c->normalize);
        QCOMPARE(c->queryScale, 0.25f);   // cosine × 1/sqrt(D) when not decoupled (msa_service.py:318-321)
        auto d = memory::routingConfigFromSettings(fakeConfig(4, 2, 16, "infonce"), true, {2, 3});
        QVERIFY(!d->normalize);
        auto bad = memory::routingConfigFromSettings(fakeConfig(4, 2, 16, "INFONCE", "median"), true, {2, 3});
        QCOMPARE(bad.status().code(), ErrorCode::Unsupported);
    }

    void matchesNaive_data() {
        QTest::addColumn<QString>("method");
        QTest::addColumn<bool>("decoupled");
        QTest::addColumn<QString>("head");
        QTest::addColumn<QString>("query");
        QTest::addColumn<QString>("chunk");
        QTest::newRow("scaled_dot") << "INFONCE_DECOUPLE" << true << "mean" << "max" << "max";
        QTest::newRow("cosine") << "INFONCE" << true << "mean" << "max" << "max";
        QTest::newRow("cosine_not_decoupled") << "INFONCE" << false << "mean" << "max" << "max";
        QTest::newRow("head_max_query_mean_chunk_mean") << "INFONCE_DECOUPLE" << true << "max" << "mean" << "mean";
        QTest::newRow("query_last") << "INFONCE_DECOUPLE" << true << "mean" << "last" << "max";
    }
    void matchesNaive() {
        QFETCH(QString, method);
        QFETCH(bool, decoupled);
        QFETCH(QString, head);
        QFETCH(QString, query);
        QFETCH(QString, chunk);
        const size_t H = 8, G = 2, D = 32;
        auto cfg = memory::routingConfigFromSettings(
            fakeConfig(H, G, D, method.toStdString(), head.toStdString(), query.toStdString(), chunk.toStdString()), decoupled, {2, 3});
        QVERIFY(cfg.ok());
        std::mt19937 rng(7);
        Bank bank = randomBank(rng, 60, G, D, 5);
        memory::RoutingQueries q = randomQueries(rng, *cfg, 6);
        const std::vector<float> raw = q.q;
        memory::prepareQueries(*cfg, q.q, D);
        std::vector<float> keys = bank.keys;   // the encoder normalises pooled keys in the cosine branch
        if (cfg->normalize) memory::l2NormalizeRows(bank.keys.data(), bank.keys.size() / D, D);
        const auto want = naiveScores(*cfg, raw, 6, keys, bank.offsets, G, D);
        memory::Router router(2);
        auto got = router.scoreDocuments(*cfg, q, bank.view(), {});
        QVERIFY(got.ok());
        for (size_t i = 0; i < want.size(); ++i)
            QVERIFY2(close((*got)[i], want[i], 1e-5), qPrintable(QString("doc %1: %2 vs %3").arg(i).arg((*got)[i]).arg(want[i])));
        auto r = router.route(*cfg, q, bank.view(), {.topK = 7, .topN = 12});
        QVERIFY(r.ok());
        QCOMPARE(r->selected.size(), size_t(7));
        QCOMPARE(r->top.size(), size_t(12));
        QCOMPARE(r->nCandidates, size_t(60));
        QCOMPARE(r->nChunksScanned, bank.nChunks());
        std::vector<size_t> order(want.size());
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return want[a] > want[b]; });
        for (size_t i = 0; i < 12; ++i) {
            QCOMPARE(r->top[i].index, uint32_t(order[i]));
            QCOMPARE(r->top[i].id, bank.ids[order[i]]);
            if (i < 7) QCOMPARE(r->selected[i], r->top[i]);
        }
    }

    void gqaMapping() {
        // H 4, G 2: query heads 0,1 read key head 0; heads 2,3 read key head 1 (⌊h / 2⌋, not h mod 2).
        const size_t H = 4, G = 2, D = 4;
        auto cfg = memory::routingConfigFromSettings(fakeConfig(H, G, D, "INFONCE_DECOUPLE"), true, {2});
        Bank bank;
        bank.g = G;
        bank.d = D;
        bank.addDoc({0, 0, 0, 0, 1, 0, 0, 0}, 1);   // key head 1 = e0
        bank.addDoc({1, 0, 0, 0, 0, 0, 0, 0}, 2);   // key head 0 = e0
        memory::RoutingQueries q;
        q.layer = 2;
        q.nTokens = 1;
        q.nHeads = H;
        q.headDim = D;
        q.q = {0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};   // only heads 2 and 3 are e0
        memory::Router router(1);
        auto s = router.scoreDocuments(*cfg, q, bank.view(), {});
        QVERIFY(s.ok());
        QCOMPARE((*s)[0], 0.5f);   // (1 + 1) / 4 heads
        QCOMPARE((*s)[1], 0.0f);
        auto r = router.route(*cfg, q, bank.view(), {.topK = 1});
        QCOMPARE(r->selected.front().id, uint64_t(1));
    }

    void tiesByIdAndFilter() {
        const size_t H = 4, G = 2, D = 8;
        auto cfg = memory::routingConfigFromSettings(fakeConfig(H, G, D, "INFONCE_DECOUPLE"), true, {2});
        std::mt19937 rng(3);
        std::normal_distribution<float> dist;
        std::vector<float> a(2 * G * D), b(3 * G * D);
        for (float& x : a) x = dist(rng);
        for (float& x : b) x = dist(rng);
        Bank bank;
        bank.g = G;
        bank.d = D;
        // Identical documents with ids 90, 40, 70 (indices 0, 1, 2) and another document (id 10).
        bank.addDoc(a, 90);
        bank.addDoc(a, 40);
        bank.addDoc(b, 10);
        bank.addDoc(a, 70);
        memory::RoutingQueries q = randomQueries(rng, *cfg, 3);
        // Make the query favour `a`.
        for (size_t h = 0; h < H; ++h)
            for (size_t i = 0; i < D; ++i) q.q[h * D + i] = 4 * a[(h / 2) * D + i];
        memory::Router router(2);
        auto r = router.route(*cfg, q, bank.view(), {.topK = 3, .topN = 4});
        QVERIFY(r.ok());
        QCOMPARE(r->selected[0].score, r->selected[2].score);
        QCOMPARE(r->selected[0].id, uint64_t(40));
        QCOMPARE(r->selected[1].id, uint64_t(70));
        QCOMPARE(r->selected[2].id, uint64_t(90));
        QCOMPARE(r->top[3].id, uint64_t(10));
        // Filter: only indices 0 and 2 allowed.
        const std::vector<uint8_t> allowed{1, 0, 1, 0};
        auto f = router.route(*cfg, q, bank.view(), {.topK = 3, .allowed = allowed});
        QVERIFY(f.ok());
        QCOMPARE(f->selected.size(), size_t(2));
        QCOMPARE(f->selected[0].id, uint64_t(90));
        QCOMPARE(f->selected[1].id, uint64_t(10));
        QCOMPARE(f->nCandidates, size_t(2));
        QCOMPARE(f->nChunksScanned, size_t(5));
        // Nothing allowed: an empty selection, not an error.
        const std::vector<uint8_t> none(4, 0);
        auto e = router.route(*cfg, q, bank.view(), {.topK = 3, .allowed = none});
        QVERIFY(e.ok());
        QVERIFY(e->selected.empty());
        // A filter of the wrong size is refused.
        const std::vector<uint8_t> wrong(3, 1);
        QCOMPARE(router.route(*cfg, q, bank.view(), {.allowed = wrong}).status().code(), ErrorCode::InvalidArgument);
    }

    void tilingInvariance() {
        const size_t H = 8, G = 4, D = 16;
        auto cfg = memory::routingConfigFromSettings(fakeConfig(H, G, D, "INFONCE_DECOUPLE", "mean", "mean", "mean"), true, {2});
        std::mt19937 rng(11);
        Bank bank = randomBank(rng, 500, G, D, 9);
        // An empty document in the middle is never a candidate.
        bank.offsets.insert(bank.offsets.begin() + 100, bank.offsets[99]);
        bank.ids.insert(bank.ids.begin() + 99, 1);
        memory::RoutingQueries q = randomQueries(rng, *cfg, 5);
        memory::prepareQueries(*cfg, q.q, D);
        std::optional<std::vector<float>> first;
        std::optional<memory::RouteResult> firstR;
        for (size_t threads : {1, 3})
            for (size_t tile : {1, 2, 7, 64, 1000, 1000000}) {
                memory::Router router(threads);
                auto s = router.scoreDocuments(*cfg, q, bank.view(), {.tileChunks = tile});
                auto r = router.route(*cfg, q, bank.view(), {.topK = 16, .topN = 40, .tileChunks = tile});
                QVERIFY(s.ok() && r.ok());
                QCOMPARE(r->nCandidates, size_t(500));
                if (!first) {
                    first = *s;
                    firstR = *r;
                    continue;
                }
                QVERIFY(std::memcmp(first->data(), s->data(), s->size() * sizeof(float)) == 0);
                QCOMPARE(r->selected, firstR->selected);
                QCOMPARE(r->top, firstR->top);
            }
    }

    void bf16Keys() {
        const size_t H = 8, G = 2, D = 32;
        auto cfg = memory::routingConfigFromSettings(fakeConfig(H, G, D, "INFONCE_DECOUPLE"), true, {2});
        std::mt19937 rng(5);
        Bank bank = randomBank(rng, 80, G, D, 4);
        bank.makeBf16();
        std::vector<float> rounded(bank.keys.size());
        for (size_t i = 0; i < rounded.size(); ++i) rounded[i] = model::bf16ToF32(bank.keysBf16[i]);
        memory::RoutingQueries q = randomQueries(rng, *cfg, 4);
        const std::vector<float> raw = q.q;
        memory::prepareQueries(*cfg, q.q, D);
        const auto want = naiveScores(*cfg, raw, 4, rounded, bank.offsets, G, D);
        memory::Router router(2);
        auto got = router.scoreDocuments(*cfg, q, bank.view(true), {});
        QVERIFY2(got.ok(), got.status().toString().c_str());
        for (size_t i = 0; i < want.size(); ++i) QVERIFY(close((*got)[i], want[i], 1e-5));
        // Malformed views are refused.
        memory::RouteKeys v = bank.view(true);
        v.nChunks += 1;
        QCOMPARE(router.scoreDocuments(*cfg, q, v, {}).status().code(), ErrorCode::InvalidArgument);
        memory::RouteKeys h = bank.view();
        h.nHeads = 3;
        QCOMPARE(router.scoreDocuments(*cfg, q, h, {}).status().code(), ErrorCode::InvalidArgument);
        memory::RouteKeys f16 = bank.view(true);
        f16.dtype = model::DType::F16;
        QCOMPARE(router.scoreDocuments(*cfg, q, f16, {}).status().code(), ErrorCode::InvalidArgument);
    }

    void pythonReferenceParity() {
        std::ifstream in(kFixture);
        QVERIFY2(in.good(), kFixture.c_str());
        const auto fx = nlohmann::json::parse(in);
        const size_t H = fx["heads"], G = fx["route_heads"], D = fx["head_dim"], P = fx["chunk_size"], K = fx["top_k"];
        const auto ids = fx["doc_ids"].get<std::vector<uint64_t>>();
        const auto lengths = fx["doc_lengths"].get<std::vector<size_t>>();
        size_t nChecked = 0;
        for (const auto& c : fx["cases"]) {
            model::ModelConfig mc = fakeConfig(int(H), int(G), int(D), c["aux_loss_method"], c["head_reduce_method"],
                                               c["query_reduce_method"], c["chunk_reduce_method"]);
            mc.msa->poolingKernelSize = int(P);
            auto cfg = memory::routingConfigFromSettings(mc, c["decouple_router"].get<bool>(), {2, 3});
            QVERIFY(cfg.ok());
            QCOMPARE(cfg->chunkSize, P);
            const auto mask = c["mask"].get<std::vector<uint8_t>>();
            std::vector<uint8_t> allowed;
            if (!c["allowed"].is_null()) allowed = c["allowed"].get<std::vector<uint8_t>>();
            for (size_t l = 0; l < fx["layers"].size(); ++l) {
                const auto& layer = fx["layers"][l];
                // Keys: pool each document's token rows (the encoder's path), normalise in INFONCE.
                Bank bank;
                bank.g = G;
                bank.d = D;
                for (size_t i = 0; i < lengths.size(); ++i) {
                    const auto rows = layer["doc_key_rows"][i].get<std::vector<float>>();
                    auto pooled = memory::meanPoolChunks(rows, lengths[i], G * D, cfg->chunkSize);
                    if (cfg->normalize) memory::l2NormalizeRows(pooled.data(), pooled.size() / D, D);
                    bank.addDoc(pooled, ids[i]);
                }
                // Queries: the mask tokens only, prepared for the branch. The reference's "last"
                // takes sequence index (mask count − 1); the fixture uses a prefix mask for it.
                const auto rows = layer["query_rows"].get<std::vector<float>>();
                memory::RoutingQueries q;
                q.layer = 2;
                q.nHeads = H;
                q.headDim = D;
                for (size_t t = 0; t < mask.size(); ++t)
                    if (mask[t]) {
                        q.q.insert(q.q.end(), rows.begin() + long(t * H * D), rows.begin() + long((t + 1) * H * D));
                        ++q.nTokens;
                    }
                memory::prepareQueries(*cfg, q.q, D);
                memory::Router router(2);
                auto r = router.route(*cfg, q, bank.view(), {.topK = K, .allowed = allowed, .tileChunks = 5});
                auto s = router.scoreDocuments(*cfg, q, bank.view(), {.allowed = allowed});
                QVERIFY(r.ok() && s.ok());
                const auto& want = c["per_layer"][l];
                const auto wantIds = want["top_ids"].get<std::vector<uint64_t>>();
                const auto wantScores = want["top_scores"].get<std::vector<double>>();
                QCOMPARE(r->selected.size(), wantIds.size());
                for (size_t i = 0; i < wantIds.size(); ++i) {
                    QVERIFY2(r->selected[i].id == wantIds[i],
                             qPrintable(QString("%1 layer %2 rank %3: id %4, reference %5").arg(QString::fromStdString(c["name"]))
                                            .arg(l).arg(i).arg(r->selected[i].id).arg(wantIds[i])));
                    QVERIFY(close(r->selected[i].score, wantScores[i], 1e-5));
                }
                for (size_t i = 0; i < lengths.size(); ++i) {
                    if (want["scores"][i].is_null()) {
                        QVERIFY(std::isinf((*s)[i]));
                        continue;
                    }
                    QVERIFY2(close((*s)[i], want["scores"][i].get<double>(), 1e-5),
                             qPrintable(QString("%1 doc %2").arg(QString::fromStdString(c["name"])).arg(i)));
                    ++nChecked;
                }
            }
        }
        QVERIFY(nChecked >= 150);
    }

    void wrappingStrings() {
        const auto msaW = memory::documentWrapping(true, model::ChatTemplateKind::ChatMl, {});
        QCOMPARE(memory::wrapDocumentText(msaW, 0, "x"), std::string("<|im_start|>[0]. x[0]<|im_end|>"));
        QCOMPARE(msaW.templateHead, std::string("<|im_start|>user\n"));
        QCOMPARE(msaW.templateTail + msaW.responseHead, std::string("<|im_end|>\n<|im_start|>"));
        QCOMPARE(memory::questionBlock("Q?"),
                 std::string("\nPlease answer the question based on the above historical document information\n\nQ?\n"
                             "Please return all documents related to the question\n"));
        const auto chatml = memory::documentWrapping(false, model::ChatTemplateKind::Qwen3, {});
        QCOMPARE(memory::wrapDocumentText(chatml, 3, "y"), std::string("<|im_start|>[3]. y[3]<|im_end|>"));
        QCOMPARE(chatml.responseHead, std::string("<|im_start|>assistant\n"));
        const auto llama = memory::documentWrapping(false, model::ChatTemplateKind::Llama3, "<|begin_of_text|>");
        QCOMPARE(memory::wrapDocumentText(llama, 3, "y"),
                 std::string("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n[3]. y[3]<|eot_id|>"));
    }

    void wrappingAndRound1Query() {
        const std::string dir = MSA_TEST_DATA_DIR "/tokenizers/qwen3";
        if (!std::filesystem::exists(dir + "/tokenizer.json")) QSKIP("MSA_TEST_DATA_DIR has no tokenizers/qwen3");
        auto tok = model::Tokenizer::fromJsonFile(dir + "/tokenizer.json");
        QVERIFY(tok.ok());
        const auto w = memory::documentWrapping(true, model::ChatTemplateKind::Qwen3, {});
        QCOMPARE(memory::wrapDocumentText(w, 12, "Bill Watts was born May 5, 1939."),
                 std::string("<|im_start|>[12]. Bill Watts was born May 5, 1939.[12]<|im_end|>"));
        // Expected ids from Hugging Face tokenizers 0.23.3 (add_special_tokens=False).
        QCOMPARE(memory::wrapDocumentTokens(*tok, w, 12, "Bill Watts was born May 5, 1939."),
                 (std::vector<model::TokenId>{151644, 58, 16, 17, 936, 8596, 58236, 572, 9223, 3217, 220, 20, 11, 220, 16, 24,
                                              18, 24, 7873, 16, 17, 60, 151645}));
        const auto q = memory::round1Query(*tok, w, "When was Erik Watts's father born?", 16);
        QCOMPARE(q.head, (std::vector<model::TokenId>{151644, 872, 198}));
        QCOMPARE(q.firstPosition, 19);   // 3 + k (msa-spec §4)
        QCOMPARE(q.tokens.size(), size_t(30 + 3));
        QCOMPARE(std::vector<model::TokenId>(q.tokens.end() - 3, q.tokens.end()), (std::vector<model::TokenId>{151645, 198, 151644}));
        QCOMPARE(std::vector<model::TokenId>(q.tokens.begin(), q.tokens.begin() + 4), (std::vector<model::TokenId>{198, 5501, 4226, 279}));
        QCOMPARE(size_t(std::count(q.routeMask.begin(), q.routeMask.end(), 1)), size_t(30));
        QCOMPARE(q.routeMask[29], uint8_t(1));   // the question block's trailing "\n" routes in round 1
        QCOMPARE(q.routeMask[30], uint8_t(0));
    }

    void routingQueriesFromTheModel() {
        // The queries are router_q·x̃ (MSA) or the attention Q after q_norm+RoPE at the prompt's global
        // positions (training-free), for the mask tokens only, in prompt order, then prepared.
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto msaCfg = memory::routingConfigFor(files);
        auto tfCfg = memory::routingConfigFromSettings(files.config(), false, {2, 3});
        QVERIFY(msaCfg.ok() && tfCfg.ok());
        auto session = rt->model->createSession({.maxTokens = 128, .nThreads = 1});
        QVERIFY(session.ok());
        const std::vector<int32_t> head{60, 117, 10};
        const std::vector<int32_t> prompt{72, 101, 108, 108, 111, 33, 10, 200};
        const std::vector<uint8_t> mask{0, 1, 1, 0, 1, 1, 1, 0};
        const int32_t start = 19;
        // Per-token tensors of the same forward, captured by hand.
        std::map<int, std::pair<std::vector<float>, std::vector<float>>> seen;   // layer -> (x̃, q)
        const size_t hid = size_t(files.config().hiddenSize), qw = msaCfg->nQueryHeads * msaCfg->headDim;
        engine::ForwardOptions opt;
        opt.computeLogits = false;
        QVERIFY((*session)->forward(head, std::vector<int32_t>{0, 1, 2}, opt).ok());
        opt.layerHook = [&](const engine::LayerTensors& lt) {
            seen[lt.layer] = {std::vector<float>(lt.hiddenNormed, lt.hiddenNormed + lt.nTokens * hid),
                              std::vector<float>(lt.q, lt.q + lt.nTokens * qw)};
        };
        std::vector<int32_t> pos(prompt.size());
        std::iota(pos.begin(), pos.end(), start);
        QVERIFY((*session)->forward(prompt, pos, opt).ok());
        std::vector<size_t> rows;
        for (size_t t = 0; t < mask.size(); ++t)
            if (mask[t]) rows.push_back(t);

        auto msaQ = memory::collectRoutingQueries(**session, files, *msaCfg, head, prompt, mask, start);
        QVERIFY2(msaQ.ok(), msaQ.status().toString().c_str());
        QCOMPARE((*session)->nPast(), size_t(0));
        for (const auto& q : *msaQ) {
            QCOMPARE(q.nTokens, rows.size());
            const model::TensorView* w = files.tensors().find("blk." + std::to_string(q.layer) + ".router_q.weight");
            QVERIFY(w);
            std::vector<float> wr(hid);
            for (size_t i = 0; i < rows.size(); ++i)
                for (size_t o = 0; o < qw; ++o) {
                    model::dequantizeRow(w->dtype, w->row(o), wr.data(), hid);
                    double sum = 0;
                    for (size_t j = 0; j < hid; ++j) sum += double(wr[j]) * seen[q.layer].first[rows[i] * hid + j];
                    QVERIFY(close(q.q[i * qw + o], sum / std::sqrt(double(msaCfg->headDim)), 1e-4));
                }
        }
        auto tfQ = memory::collectRoutingQueries(**session, files, *tfCfg, head, prompt, mask, start);
        QVERIFY(tfQ.ok());
        for (const auto& q : *tfQ)
            for (size_t i = 0; i < rows.size(); ++i)
                for (size_t o = 0; o < qw; ++o)
                    QCOMPARE(q.q[i * qw + o], seen[q.layer].second[rows[i] * qw + o] * tfCfg->queryScale);
        // RoPE at the global position: another start gives other training-free queries.
        auto shifted = memory::collectRoutingQueries(**session, files, *tfCfg, head, prompt, mask, start + 5);
        QVERIFY(shifted.ok());
        QVERIFY(shifted->front().q != tfQ->front().q);
        // No routing token, or a mask of the wrong size, is refused.
        QCOMPARE(memory::collectRoutingQueries(**session, files, *msaCfg, head, prompt, std::vector<uint8_t>(8, 0), start)
                     .status().code(), ErrorCode::InvalidArgument);
        QCOMPARE(memory::collectRoutingQueries(**session, files, *msaCfg, head, prompt, std::vector<uint8_t>(3, 1), start)
                     .status().code(), ErrorCode::InvalidArgument);
    }

    void endToEndTinyMsa_data() {
        QTest::addColumn<QString>("variant");
        QTest::newRow("msa_scaled_dot") << "msa";
        QTest::newRow("msa_cosine") << "cosine";
        QTest::newRow("training_free") << "free";
    }
    void endToEndTinyMsa() {
        QFETCH(QString, variant);
        auto backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsaModel, *backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        const model::ModelFiles& files = *rt->files;
        auto cfgOr = memory::routingConfigFor(files);
        QVERIFY(cfgOr.ok());
        memory::RoutingConfig cfg = *cfgOr;
        QCOMPARE(cfg.layers, (std::vector<int>{2, 3}));
        if (variant == "cosine") {   // as if msa_config said "INFONCE"
            cfg.normalize = true;
            cfg.queryScale = 1.0f;
        } else if (variant == "free") {
            auto tf = memory::routingConfigFromSettings(files.config(), false, {2, 3});
            QVERIFY(tf.ok());
            cfg = *tf;
        }
        auto session = rt->model->createSession({.maxTokens = 512, .nThreads = 2});
        QVERIFY(session.ok());
        // Five short token-id documents (the fixture's byte-level vocabulary has no special tokens);
        // document 3 is exactly the question's routing tokens.
        std::vector<std::vector<int32_t>> docs;
        std::mt19937 rng(42);
        std::uniform_int_distribution<int32_t> tokDist(0, 255);
        for (int i = 0; i < 5; ++i) {
            std::vector<int32_t> d(20 + size_t(i) * 17);
            for (auto& t : d) t = tokDist(rng);
            docs.push_back(d);
        }
        std::vector<int32_t> question(docs[3].begin(), docs[3].begin() + 24);
        docs[3] = question;
        std::map<int, Bank> banks;
        for (int l : cfg.layers) banks[l] = Bank{{}, {}, {0}, {}, cfg.nRouteHeads, cfg.headDim};
        for (size_t i = 0; i < docs.size(); ++i) {
            auto enc = memory::encodeDocument(**session, files, cfg, docs[i]);
            QVERIFY2(enc.ok(), enc.status().toString().c_str());
            for (const auto& p : enc->layers) {
                QCOMPARE(p.nChunks, memory::chunkCount(docs[i].size(), 64));
                banks[p.layer].addDoc(p.routeKey, i);
            }
        }
        // The route: a template head at 0..2, the question at 3 + k (msa-spec §4), memory-free.
        const std::vector<int32_t> head{60, 117, 10};
        std::vector<int32_t> prompt = question;
        prompt.push_back(10);
        std::vector<uint8_t> mask(prompt.size(), 1);
        mask.back() = 0;
        std::vector<std::vector<memory::RouteResult>> runs;
        for (int run = 0; run < 2; ++run) {
            auto qs = memory::collectRoutingQueries(**session, files, cfg, head, prompt, mask, int32_t(3 + cfg.topK));
            QVERIFY2(qs.ok(), qs.status().toString().c_str());
            QCOMPARE(qs->size(), cfg.layers.size());
            memory::Router router(run == 0 ? 1 : 2);
            std::vector<memory::RouteResult> results;
            for (const auto& q : *qs) {
                QCOMPARE(q.nTokens, question.size());
                auto r = router.route(cfg, q, banks[q.layer].view(), {.topK = cfg.topK, .topN = 5, .tileChunks = size_t(1 + run)});
                QVERIFY(r.ok());
                QCOMPARE(r->selected.size(), size_t(5));   // min(k, #docs): no threshold (msa-spec §2.6)
                results.push_back(*r);
            }
            runs.push_back(results);
        }
        for (size_t l = 0; l < runs[0].size(); ++l) {
            QCOMPARE(runs[0][l].selected, runs[1][l].selected);   // deterministic across runs/threads/tiles
            QString line = QString("%1 layer %2:").arg(variant).arg(runs[0][l].layer);
            for (const auto& s : runs[0][l].selected) line += QString(" [%1] %2").arg(s.id).arg(double(s.score), 0, 'g', 5);
            qInfo("%s", qPrintable(line));
        }
        // Observation, not an assertion: this checkpoint's router weights are random (never trained),
        // so nothing makes the copy of the question win; ROUTING.md reports what it does.
    }
};

QTEST_GUILESS_MAIN(TestRouter)
#include "tst_router.moc"

// tst_memory_jobs.cpp: `msa build` / `msa route` as library calls on a real catalog and the tiny MSA
// checkpoint (tests/fixtures/models/msa-qwen3-bf16, router tensors in layers 2 and 3): a first build
// encodes every memory document; a second one skips them all (content hashes); a changed file
// re-encodes exactly one document and tombstones the old one; a cancelled build leaves the bank as it
// was; another model's build is refused with Mismatch; routing is deterministic and uses the model's
// routing layers; titles come from the catalog.
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/memory_jobs.h"
#include "core/memory/bank.h"

#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

using namespace msa;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";
const std::string kQwen3 = MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32";

void writeText(const QString& path, const std::string& text) { std::ofstream(path.toStdString()) << text; }
}  // namespace

class TestMemoryJobs : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        QVERIFY(QDir(m_dir.path()).mkpath("files"));
        const char* topics[] = {"kelp forests grow fast in cold water", "the cello top is cut from old spruce",
                                "the boat Wenna was refitted in March", "tide tables shift by an hour in summer",
                                "the lifeboat house was built from a wrecked barque", "urchins were removed from the reef"};
        for (int i = 0; i < 6; ++i) {
            std::string text;
            for (int r = 0; r < 4; ++r) text += std::string(topics[i]) + ". ";
            writeText(m_dir.filePath(QString("files/note%1.txt").arg(i)), text);
        }
        m_catalog = m_dir.filePath("c.sqlite").toStdString();
        QVERIFY(importNow().ok());
        m_bank = m_dir.filePath("bank").toStdString();
    }

    void firstBuildEncodesEverything() {
        auto r = jobs::buildMemory(options());
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QCOMPARE(r->nDocuments, uint64_t(6));
        QCOMPARE(r->nEncoded, uint64_t(6));
        QCOMPARE(r->bankDocuments, uint64_t(6));
        QVERIFY(r->nTokens > 6 * 100);   // byte-level tokenizer: one token per byte of the wrapped text
        auto bank = memory::Bank::open(m_bank);
        QVERIFY(bank.ok());
        QCOMPARE(bank->params().routingLayers, (std::vector<uint32_t>{2, 3}));
        QVERIFY(!bank->params().keysShared);   // trained router: K̄ᴿ stored beside K̄
        QVERIFY(bank->verify().ok());
    }

    void secondBuildSkipsUnchanged() {
        auto r = jobs::buildMemory(options());
        QVERIFY(r.ok());
        QCOMPARE(r->nEncoded, uint64_t(0));
        QCOMPARE(r->nUnchanged, uint64_t(6));
    }

    void changedFileReencodesOneDocument() {
        writeText(m_dir.filePath("files/note3.txt"), "tide tables were corrected for summer time. ");
        QVERIFY(importNow().ok());
        auto r = jobs::buildMemory(options());
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QCOMPARE(r->nEncoded, uint64_t(1));
        QCOMPARE(r->nUnchanged, uint64_t(5));
        QCOMPARE(r->nRemoved, uint64_t(1));   // the old memory document of note3
        QCOMPARE(r->bankDocuments, uint64_t(6));
    }

    void cancelledBuildChangesNothing() {
        writeText(m_dir.filePath("files/note0.txt"), "kelp forests were mapped again. ");
        QVERIFY(importNow().ok());
        CancelToken cancel;
        cancel.cancel();
        auto o = options();
        o.cancel = &cancel;
        auto r = jobs::buildMemory(o);
        QVERIFY(r.ok());
        QVERIFY(r->cancelled);
        QCOMPARE(r->nEncoded, uint64_t(0));
        auto resumed = jobs::buildMemory(options());
        QVERIFY(resumed.ok());
        QCOMPARE(resumed->nEncoded, uint64_t(1));
    }

    void anotherModelIsRefused() {
        auto o = options();
        o.model = kQwen3;
        QCOMPARE(jobs::buildMemory(o).status().code(), ErrorCode::Mismatch);
    }

    void routingIsDeterministic() {
        jobs::RouteRequest req;
        req.bank = m_bank;
        req.model = kMsa;
        req.catalog = m_catalog;
        req.question = "Where did the spruce for the cello top come from?";
        auto a = jobs::routeQuestion(req);
        QVERIFY2(a.ok(), a.status().toString().c_str());
        req.nThreads = 1;
        auto b = jobs::routeQuestion(req);
        QVERIFY(b.ok());
        QCOMPARE(a->layers.size(), size_t(2));
        QCOMPARE(a->layers[0].layer, 2);
        QCOMPARE(a->layers[1].layer, 3);
        for (size_t l = 0; l < 2; ++l) {
            QCOMPARE(a->layers[l].selected.size(), size_t(6));   // k = 16 > 6 documents
            for (size_t i = 0; i < a->layers[l].selected.size(); ++i) {
                QCOMPARE(a->layers[l].selected[i].id, b->layers[l].selected[i].id);
                QCOMPARE(a->layers[l].selected[i].score, b->layers[l].selected[i].score);
                if (i) QVERIFY(a->layers[l].selected[i - 1].score >= a->layers[l].selected[i].score);
            }
        }
        QVERIFY(!a->overall.empty());
        QVERIFY(a->overall.front().title.rfind("note", 0) == 0);   // titles from the catalog
    }

    void askUsesTheTopDocumentsAndIsDeterministic() {
        jobs::AskRequest req;
        req.route.bank = m_bank;
        req.route.model = kMsa;
        req.route.catalog = m_catalog;
        req.route.question = "Where did the spruce for the cello top come from?";
        req.method = jobs::AnswerMethod::TrainingFree;   // original text injected into a chat prompt
        req.nDocuments = 2;
        req.maxTokens = 8;
        std::string streamed;
        auto a = jobs::askQuestion(req, [&](std::string_view p) { streamed += p; return true; });
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->used.size(), size_t(2));
        QCOMPARE(a->used[0].id, a->routing.overall[0].id);   // the documents most layers selected, in order
        QCOMPARE(a->used[1].id, a->routing.overall[1].id);
        QVERIFY(a->answerTokens >= 1 && a->answerTokens <= 8);
        QCOMPARE(streamed, a->answer);
        auto b = jobs::askQuestion(req);
        QVERIFY(b.ok());
        QCOMPARE(b->answer, a->answer);   // greedy
        QCOMPARE(a->trace.hops.size(), size_t(1));
        QCOMPARE(a->trace.hops[0].injected, (std::vector<int64_t>{a->used[0].id, a->used[1].id}));
        QCOMPARE(a->trace.hops[0].layers.size(), size_t(2));
        req.route.catalog.reset();
        QCOMPARE(jobs::askQuestion(req).status().code(), ErrorCode::InvalidArgument);
    }

    void askTemperatureSamples() {
        jobs::AskRequest req = askRequest();
        req.method = jobs::AnswerMethod::TrainingFree;
        req.maxTokens = 12;
        auto greedy = jobs::askQuestion(req);
        req.temperature = 1.5f;
        req.seed = 7;
        auto a = jobs::askQuestion(req);
        auto b = jobs::askQuestion(req);
        QVERIFY(greedy.ok() && a.ok() && b.ok());
        QCOMPARE(a->answer, b->answer);          // the seed makes sampling reproducible
        QVERIFY(a->answer != greedy->answer);    // and it is sampling, not argmax
    }

    void askHopsRouteAgainWithInjectedText() {
        jobs::AskRequest req = askRequest();
        req.method = jobs::AnswerMethod::TrainingFree;
        req.hops = 2;
        req.nDocuments = 2;
        auto a = jobs::askQuestion(req);
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->trace.hops.size(), size_t(2));
        QCOMPARE(a->trace.hops[1].injected.size(), size_t(1));   // half the first hop's budget, new documents only
        QVERIFY(a->trace.hops[1].injected[0] != a->trace.hops[0].injected[0]);
        QCOMPARE(a->used.size(), size_t(3));
    }

    void askInterleaveIsTheDefaultForMsaModels() {
        jobs::AskRequest req = askRequest();
        req.maxGenerateTokens = 6;
        std::string streamed;
        auto a = jobs::askQuestion(req, [&](std::string_view p) { streamed += p; return true; });
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->method, std::string("msa-interleave"));
        QVERIFY(!a->trace.hops.empty());
        const auto& hop = a->trace.hops[0];
        QCOMPARE(hop.layers.size(), size_t(2));
        for (const auto& l : hop.layers) {
            const auto nSel = std::count_if(l.top.begin(), l.top.end(), [](const memory::TraceDocument& d) { return d.selected; });
            QCOMPARE(size_t(nSel), size_t(6));   // k = 16 > 6 documents: all selected
        }
        QVERIFY(hop.generatedTokens >= 1 && hop.generatedTokens <= 7);
        QVERIFY(!streamed.empty());
        auto back = memory::traceFromJson(memory::toJson(a->trace));
        QVERIFY(back.ok());
        // Interleave needs the trained router; a stock model is refused with a clear reason.
        req.route.model = MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32";
        req.method = jobs::AnswerMethod::Interleave;
        auto refused = jobs::askQuestion(req);
        QVERIFY(!refused.ok());
        QVERIFY(refused.status().code() == ErrorCode::Unsupported || refused.status().code() == ErrorCode::Mismatch);
    }

    void askCompressedAnswersOverChunkMemory() {
        jobs::AskRequest req = askRequest();
        req.method = jobs::AnswerMethod::TrainingFree;
        req.injection = jobs::Injection::Compressed;
        auto a = jobs::askQuestion(req);
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->method, std::string("training-free (compressed memory)"));
        QCOMPARE(a->trace.hops.size(), size_t(1));
        QVERIFY(a->answerTokens >= 1 && a->answerTokens <= 8);
        QCOMPARE(a->routing.layers.size(), size_t(2));
    }

    void filterRestrictsRouting() {
        jobs::RouteRequest r = askRequest().route;
        r.filter.collection = "no-such-collection";
        QCOMPARE(jobs::routeQuestion(r).status().code(), ErrorCode::NotFound);   // a misspelt collection is an error
        r.filter.collection = "notes";
        r.filter.kind = "no-such-kind";
        auto none = jobs::routeQuestion(r);
        QVERIFY2(none.ok(), none.status().toString().c_str());
        QCOMPARE(none->nCandidates, size_t(0));
        r.filter.kind.reset();
        r.filter.collection = "notes";
        auto all = jobs::routeQuestion(r);
        QVERIFY(all.ok());
        QCOMPARE(all->nCandidates, size_t(6));
        r.catalog.reset();
        QCOMPARE(jobs::routeQuestion(r).status().code(), ErrorCode::InvalidArgument);
    }

private:
    jobs::AskRequest askRequest() const {
        jobs::AskRequest req;
        req.route.bank = m_bank;
        req.route.model = kMsa;
        req.route.catalog = m_catalog;
        req.route.question = "Where did the spruce for the cello top come from?";
        req.maxTokens = 8;
        return req;
    }
    Status importNow() {
        auto cat = catalog::Catalog::open(m_catalog);
        if (!cat) return cat.status();
        catalog::ImportRequest req;
        req.collection = "notes";
        req.paths = {m_dir.filePath("files").toStdString()};
        return catalog::importPaths(*cat, req, {}, nullptr).status();
    }
    jobs::BuildOptions options() const {
        jobs::BuildOptions o;
        o.catalog = m_catalog;
        o.collection = "notes";
        o.model = kMsa;
        o.bank = m_bank;
        o.nThreads = 2;
        return o;
    }

    QTemporaryDir m_dir;
    std::string m_catalog, m_bank;
};

QTEST_GUILESS_MAIN(TestMemoryJobs)
#include "tst_memory_jobs.moc"

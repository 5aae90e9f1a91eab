// tst_demo_memory.cpp: the memory engine end to end with the demo model (SmolLM2-135M-Instruct,
// training-free routing over its upper 15 layers) on the bundled demo archive, as a user runs it:
// import the archive into a new catalog, build the bank, ask a two-hop question, save the turn.
// It asserts on documents and structure, never on the wording:
//  - the build encodes every memory document of the collection;
//  - hop 1 routes exactly as `msa route` does for the same question (same per-layer selections);
//  - hop 2 routes again with the injected text and brings new documents only;
//  - every injected document is a catalog document of an archive file; citations are injected ones;
//  - the compressed-memory answer attends to the documents its own prefill selected;
//  - the stored chat turn reads back with the same trace.
// Skips when the demo model is absent (packaging/setup.sh build fetches it).
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/history.h"
#include "core/jobs/memory_jobs.h"
#include "core/util/paths.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

#include <set>

using namespace msa;

class TestDemoMemory : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        m_model = findDemoModel();
        if (m_model.empty()) QSKIP("demo model absent: run packaging/setup.sh build to fetch it");
        m_archive = findDemoArchive();
        QVERIFY2(!m_archive.empty(), "demo archive not found");
        QVERIFY(m_dir.isValid());
        m_catalog = m_dir.filePath("catalog.sqlite").toStdString();
        m_bank = m_dir.filePath("bank").toStdString();
        auto cat = catalog::Catalog::open(m_catalog);
        QVERIFY(cat.ok());
        catalog::ImportRequest req;
        req.collection = "demo";
        req.paths = {m_archive.string()};
        auto imported = catalog::importPaths(*cat, req, {}, nullptr);
        QVERIFY2(imported.ok(), imported.status().toString().c_str());
    }

    void buildEncodesTheArchive() {
        jobs::BuildOptions o;
        o.catalog = m_catalog;
        o.collection = "demo";
        o.model = m_model;
        o.bank = m_bank;
        auto r = jobs::buildMemory(o);
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QVERIFY(r->nDocuments >= 40);
        QCOMPARE(r->nEncoded + r->nSkipped, r->nDocuments);
        QCOMPARE(r->bankDocuments, r->nEncoded);
        qInfo("demo bank: %llu documents, %llu tokens, %.0f tokens/s", (unsigned long long)r->bankDocuments,
              (unsigned long long)r->bankTokens, r->tokensPerSecond);
    }

    void twoHopAnswerTraceAndHistory() {
        jobs::AskRequest a;
        a.route.bank = m_bank;
        a.route.model = m_model;
        a.route.catalog = m_catalog;
        a.route.question = "What is the scale length of the instrument Nell gave her brother?";   // q10, two hops
        a.method = jobs::AnswerMethod::TrainingFree;
        a.hops = 2;
        a.nDocuments = 4;
        a.maxTokens = 24;
        auto r = jobs::askQuestion(a);
        QVERIFY2(r.ok(), r.status().toString().c_str());
        const memory::RoutingTrace& t = r->trace;
        QCOMPARE(t.hops.size(), size_t(2));
        QCOMPARE(t.hops[0].layers.size(), size_t(15));   // 30 layers, upper half routes
        QCOMPARE(t.hops[0].injected.size(), size_t(4));
        QCOMPARE(t.hops[1].injected.size(), size_t(2));

        // Hop 1 is round-1 routing: the same selections as `msa route`.
        auto route = jobs::routeQuestion(a.route);
        QVERIFY(route.ok());
        for (size_t l = 0; l < route->layers.size(); ++l) {
            std::set<int64_t> want, got;
            for (const auto& d : route->layers[l].selected) want.insert(d.id);
            for (const auto& d : t.hops[0].layers[l].top)
                if (d.selected) got.insert(d.id);
            QCOMPARE(got, want);
        }
        // Hop 2 routes with the injected text: new documents only, and its ranking differs.
        std::set<int64_t> injected;
        for (const auto& h : t.hops)
            for (int64_t id : h.injected) QVERIFY2(injected.insert(id).second, "a document was injected twice");
        bool differs = false;
        for (size_t l = 0; l < t.hops[0].layers.size(); ++l)
            if (t.hops[0].layers[l].top[0].id != t.hops[1].layers[l].top[0].id ||
                t.hops[0].layers[l].top[0].score != t.hops[1].layers[l].top[0].score)
                differs = true;
        QVERIFY2(differs, "hop 2 routed exactly like hop 1 although its query holds the injected text");

        // Every injected document is a catalog document of an archive file; citations were injected.
        auto cat = catalog::Catalog::open(m_catalog, {.readOnly = true, .create = false});
        QVERIFY(cat.ok());
        for (int64_t id : injected) {
            auto m = cat->memoryDocument(id);
            QVERIFY(m.ok());
            auto d = cat->document(m->documentId);
            QVERIFY(d.ok() && !d->sources.empty());
            QVERIFY2(d->sources[0].first.rfind(m_archive.string(), 0) == 0, d->sources[0].first.c_str());
        }
        for (int64_t id : t.citations) QVERIFY(injected.count(id));
        for (const auto& d : t.documents) QVERIFY(!d.title.empty());

        // The turn goes to the history and reads back with the same trace.
        auto saved = jobs::recordTurn(m_catalog, t);
        QVERIFY2(saved.ok(), saved.status().toString().c_str());
        auto back = jobs::loadTurn(m_catalog, saved->turnId);
        QVERIFY2(back.ok(), back.status().toString().c_str());
        QVERIFY(back->trace.has_value());
        QCOMPARE(memory::toJson(*back->trace).dump(), memory::toJson(t).dump());
    }

    void compressedMemoryAnswer() {
        jobs::AskRequest a;
        a.route.bank = m_bank;
        a.route.model = m_model;
        a.route.catalog = m_catalog;
        a.route.question = "Who looked after Tupper while Nell was at the workshop?";
        a.method = jobs::AnswerMethod::TrainingFree;
        a.injection = jobs::Injection::Compressed;
        a.maxTokens = 16;
        auto r = jobs::askQuestion(a);
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QCOMPARE(r->trace.hops.size(), size_t(1));
        QVERIFY(r->answerTokens >= 1);
        // Each routing layer placed k = 16 documents' chunks in its context.
        for (const auto& l : r->trace.hops[0].layers)
            QCOMPARE(size_t(std::count_if(l.top.begin(), l.top.end(), [](const memory::TraceDocument& d) { return d.selected; })),
                     size_t(16));
        QVERIFY(r->firstTokenSeconds > 0 && r->firstTokenSeconds <= r->seconds);
    }

private:
    QTemporaryDir m_dir;
    std::filesystem::path m_model, m_archive;
    std::string m_catalog, m_bank;
};

QTEST_GUILESS_MAIN(TestDemoMemory)
#include "tst_demo_memory.moc"

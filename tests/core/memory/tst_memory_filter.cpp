// tst_memory_filter.cpp: the routing candidate filter (issue 5 item 3): filterMemoryDocuments() on
// the demo archive's catalog returns exactly the memory documents whose catalog document matches
// the kind / date range / participant / collection (checked document by document against
// Catalog::document), and routing with a filter over a bank (tiny MSA checkpoint) only ever scores
// and selects those documents.
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/memory_jobs.h"

#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <set>

using namespace msa;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";
const std::filesystem::path kArchive = MSA_SOURCE_DIR "/resources/demo/archive";

std::string lowered(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}
}  // namespace

class TestMemoryFilter : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        if (!std::filesystem::is_directory(kArchive)) QSKIP("demo archive absent (resources/demo/archive)");
        QVERIFY(m_dir.isValid());
        m_catalog = std::filesystem::path(m_dir.path().toStdString()) / "catalog.sqlite";
        auto cat = catalog::Catalog::open(m_catalog);
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        catalog::ImportRequest req;
        req.collection = "demo";
        req.paths = {kArchive};
        auto rep = catalog::importPaths(*cat, req, {}, nullptr);
        QVERIFY2(rep.ok(), rep.status().toString().c_str());
        auto all = cat->memoryDocuments("demo");
        QVERIFY(all.ok());
        for (const auto& m : *all) m_all.push_back(m.id);
        QVERIFY(m_all.size() > 20);
    }

    // Every memory document is in or out of the filter exactly as its catalog document says.
    void filterMatchesDocumentMetadata() {
        auto cat = catalog::Catalog::open(m_catalog, {.readOnly = true, .create = false});
        QVERIFY(cat.ok());
        std::vector<jobs::MemoryFilter> cases(4);
        cases[0].participant = "nell";
        cases[1].kind = "email";
        cases[2].fromUnix = 1672531200;   // 2023
        cases[2].toUnix = 1704067200;
        cases[3].collection = "demo";
        cases[3].kind = "chat";
        cases[3].participant = "a";
        for (const auto& f : cases) {
            auto ids = jobs::filterMemoryDocuments(m_catalog, f);
            QVERIFY2(ids.ok(), ids.status().toString().c_str());
            const std::set<int64_t> in(ids->begin(), ids->end());
            QVERIFY(!in.empty());
            QVERIFY(in.size() < m_all.size());
            for (int64_t id : m_all) {
                auto md = cat->memoryDocument(id);
                QVERIFY(md.ok());
                auto doc = cat->document(md->documentId);
                QVERIFY(doc.ok());
                bool pass = true;
                if (f.kind) pass = pass && doc->kind == *f.kind;
                if (f.fromUnix) pass = pass && doc->dateUnix && *doc->dateUnix >= *f.fromUnix;
                if (f.toUnix) pass = pass && doc->dateUnix && *doc->dateUnix < *f.toUnix;
                if (f.participant) {
                    bool hit = lowered(doc->author).find(*f.participant) != std::string::npos;
                    for (const auto& p : doc->participants) hit = hit || lowered(p).find(*f.participant) != std::string::npos;
                    pass = pass && hit;
                }
                QVERIFY2(pass == (in.count(id) == 1), qPrintable(QString("memory document %1").arg(id)));
            }
        }
        jobs::MemoryFilter unknown;
        unknown.collection = "nope";
        QCOMPARE(jobs::filterMemoryDocuments(m_catalog, unknown).status().code(), ErrorCode::NotFound);
    }

    void routingOnlyScoresCandidates() {
        const std::filesystem::path bank = std::filesystem::path(m_dir.path().toStdString()) / "bank";
        jobs::BuildOptions b;
        b.catalog = m_catalog;
        b.collection = "demo";
        b.model = kMsa;
        b.bank = bank;
        b.nThreads = 2;
        auto built = jobs::buildMemory(b);
        QVERIFY2(built.ok(), built.status().toString().c_str());

        jobs::RouteRequest r;
        r.bank = bank;
        r.model = kMsa;
        r.catalog = m_catalog;
        r.question = "Where was the boat kept over the winter?";
        r.topN = 50;
        r.filter.kind = "email";
        auto ids = jobs::filterMemoryDocuments(m_catalog, r.filter);
        QVERIFY(ids.ok());
        const std::set<int64_t> allowed(ids->begin(), ids->end());
        auto routed = jobs::routeQuestion(r);
        QVERIFY2(routed.ok(), routed.status().toString().c_str());
        QCOMPARE(routed->nCandidates, allowed.size());
        QVERIFY(!routed->overall.empty());
        for (const auto& layer : routed->layers) {
            QVERIFY(!layer.selected.empty());
            for (const auto& d : layer.top) QVERIFY2(allowed.count(d.id), qPrintable(QString("document %1 is not an email").arg(d.id)));
        }
        // Without the filter every document is a candidate; a filter without a catalog is refused.
        r.filter = {};
        auto unfiltered = jobs::routeQuestion(r);
        QVERIFY(unfiltered.ok());
        QCOMPARE(unfiltered->nCandidates, m_all.size());
        r.filter.kind = "email";
        r.catalog.reset();
        QCOMPARE(jobs::routeQuestion(r).status().code(), ErrorCode::InvalidArgument);
    }

private:
    QTemporaryDir m_dir;
    std::filesystem::path m_catalog;
    std::vector<int64_t> m_all;
};

QTEST_GUILESS_MAIN(TestMemoryFilter)
#include "tst_memory_filter.moc"

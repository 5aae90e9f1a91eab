// tst_demo_archive.cpp: the bundled demo archive (resources/demo/archive) imports completely: every
// file is imported (no failures, nothing skipped), chats become one memory document per day and the
// mbox one per message, the evaluation questions beside the archive are NOT imported, and full-text
// search finds the documents behind the suggested multi-hop question. Skips when the archive is absent.
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/util/paths.h"

#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

using namespace msa;

class TestDemoArchive : public QObject {
    Q_OBJECT
private slots:
    void importsCompletely() {
        const std::filesystem::path archive = findDemoArchive();
        if (archive.empty()) QSKIP("demo archive absent");
        QTemporaryDir dir;
        auto cat = catalog::Catalog::open(dir.filePath("demo.sqlite").toStdString());
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        catalog::ImportRequest req;
        req.collection = "demo";
        req.paths = {archive};
        auto rep = catalog::importPaths(*cat, req, {}, nullptr);
        QVERIFY2(rep.ok(), rep.status().toString().c_str());
        size_t nFiles = 0;
        for (const auto& e : std::filesystem::recursive_directory_iterator(archive)) nFiles += e.is_regular_file();
        QCOMPARE(rep->nSeen, uint64_t(nFiles));
        QCOMPARE(rep->nImported, uint64_t(nFiles));
        QCOMPARE(rep->nFailed, uint64_t(0));
        QCOMPARE(rep->nSkipped, uint64_t(0));
        QVERIFY2(rep->nDocuments > nFiles, "chat days and mbox messages are documents of their own");

        // The questions file (with answers) lies beside the archive and must not be in the catalog.
        catalog::SearchQuery answers;
        answers.match = "supporting_files";
        auto leaked = cat->search(answers);
        QVERIFY(leaked.ok());
        QVERIFY(leaked->empty());

        // The suggested question's hops are findable: cello top ← beam ← lifeboat house ← the wreck.
        std::ifstream qin(demoQuestionsFile(archive));
        const auto questions = nlohmann::json::parse(qin);
        std::set<std::string> supporting;
        for (const auto& q : questions)
            if (q.value("suggested", false))
                for (const auto& f : q.at("supporting_files")) supporting.insert((archive / f.get<std::string>()).string());
        QCOMPARE(supporting.size(), size_t(3));
        std::set<std::string> found;
        for (const char* query : {"cello AND beam", "lifeboat AND beam", "\"Solveig Marie\""}) {
            catalog::SearchQuery q;
            q.match = query;
            q.collection = "demo";
            auto hits = cat->search(q);
            QVERIFY2(hits.ok(), hits.status().toString().c_str());
            for (const auto& h : *hits)
                for (const auto& s : supporting)
                    if (h.path == s) found.insert(s);
        }
        QCOMPARE(found, supporting);
    }
};

QTEST_GUILESS_MAIN(TestDemoArchive)
#include "tst_demo_archive.moc"

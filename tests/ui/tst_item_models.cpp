// tst_item_models.cpp (label: gui, offscreen; hermetic): QAbstractItemModelTester (QtTest) on every
// item model of ui/: DocumentTableModel with a real listing and a real FTS5 search of a catalog
// imported here, refilled and cleared; the Library's sort/filter proxy over it (sorted by SortRole,
// filtered); the Chat tab's conversation list is tested in tst_chat_history with stored turns.
// The tester checks the model's invariants on every change and fails the test on a violation.
#include "ui/document_table_model.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"

#include <QAbstractItemModelTester>
#include <QSortFilterProxyModel>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

using namespace msa;
using namespace msa::ui;

class TestItemModels : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        QDir(m_dir.path()).mkpath("files");
        const char* notes[] = {"Anna wrote: the cello top is cut from old spruce from the Jura.",
                               "Boat log: the boat Wenna was refitted in March by Marguerite.",
                               "Garden notes: kelp grows fast in cold water; spruce needles on the path."};
        for (int i = 0; i < 3; ++i)
            std::ofstream(m_dir.filePath(QString("files/note%1.txt").arg(i)).toStdString()) << notes[i] << "\n";
        auto cat = catalog::Catalog::open(m_dir.filePath("catalog.sqlite").toStdString());
        QVERIFY2(cat.ok(), cat.ok() ? "" : cat.status().toString().c_str());
        catalog::ImportRequest req;
        req.collection = "notes";
        req.paths = {m_dir.filePath("files").toStdString()};
        auto r = catalog::importPaths(*cat, req, {}, nullptr);
        QVERIFY2(r.ok(), r.ok() ? "" : r.status().toString().c_str());
        auto docs = cat->listDocuments(std::string("notes"), 100, 0);
        QVERIFY(docs.ok());
        m_listing.collection = "notes";
        m_listing.documents = docs.value();
        QCOMPARE(m_listing.documents.size(), size_t(3));
        catalog::SearchQuery q;
        q.match = "spruce";
        q.highlightOpen = "\x02";
        q.highlightClose = "\x03";
        auto hits = cat->search(q);
        QVERIFY(hits.ok());
        m_search.query = "spruce";
        m_search.hits = hits.value();
        QCOMPARE(m_search.hits.size(), size_t(2));
    }

    void documentTableModel() {
        DocumentTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setDocuments(m_listing);
        QCOMPARE(model.rowCount(), 3);
        QVERIFY(!model.isSearchResult());
        model.setDocuments(m_search);
        QCOMPARE(model.rowCount(), 2);
        QVERIFY(model.isSearchResult());
        QVERIFY(model.data(model.index(0, DocumentTableModel::MatchColumn)).toString().contains("<b>"));
        model.clear();
        QCOMPARE(model.rowCount(), 0);
        model.setDocuments(m_listing);
        QCOMPARE(model.rowCount(), 3);
    }

    void libraryProxy() {
        DocumentTableModel model;
        QSortFilterProxyModel proxy;
        proxy.setSourceModel(&model);
        proxy.setSortRole(DocumentTableModel::SortRole);
        proxy.setFilterKeyColumn(-1);
        proxy.setFilterCaseSensitivity(Qt::CaseInsensitive);
        QAbstractItemModelTester tester(&proxy, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setDocuments(m_listing);
        proxy.sort(DocumentTableModel::TitleColumn, Qt::DescendingOrder);
        QCOMPARE(proxy.rowCount(), 3);
        proxy.setFilterFixedString("boat");
        QCOMPARE(proxy.rowCount(), 1);
        model.setDocuments(m_search);
        proxy.setFilterFixedString(QString());
        QCOMPARE(proxy.rowCount(), 2);
        model.clear();
        QCOMPARE(proxy.rowCount(), 0);
    }

private:
    QTemporaryDir m_dir;
    DocumentList m_listing, m_search;
};

QTEST_MAIN(TestItemModels)
#include "tst_item_models.moc"

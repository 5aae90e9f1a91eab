// tst_library_view.cpp (label: gui, offscreen): the Library tab on a real catalog in a temporary folder.
// First run imports the (hermetic) demo archive in the background and the view then shows the
// collection with its document count, the documents and the import report naming the broken file;
// the FTS5 search box shows a highlighted snippet; selecting a document fills the viewer with its text,
// metadata and memory segments; a broken catalog file is a readable message; cancel and Resume work from the panel; dropping a folder imports it; the document model passes
// QAbstractItemModelTester; and closing the window during a 2,000-file import shuts down cleanly.
// Extend: one slot per Library feature, driving the real widgets by objectName.
#include "ui/document_table_model.h"
#include "ui/main_window.h"
#include "ui/views/library_view.h"

#include <QAbstractItemModelTester>
#include <QDir>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMimeData>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QStatusBar>
#include <QTableView>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QTreeWidget>
#include <QtTest>

#include <cstdlib>

using namespace msa;
using namespace msa::ui;

namespace {
void writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
    QCOMPARE(f.write(bytes), bytes.size());
}

UiContext makeContext(QSettings* settings, const QString& catalogPath) {
    UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    c.catalogPath = catalogPath;
    return c;
}

catalog::DocumentInfo doc(int64_t id, const char* kind, const char* title, std::optional<int64_t> date, int nSeg) {
    catalog::DocumentInfo d;
    d.id = id;
    d.kind = kind;
    d.title = title;
    d.author = "Anna";
    d.participants = {"Jon", "Anna"};
    d.dateUnix = date;
    d.segments.resize(static_cast<size_t>(nSeg));
    return d;
}
}  // namespace

class TestLibraryView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_tmp.isValid());
        const QString a = m_tmp.filePath("demo/archive");
        QVERIFY(QDir().mkpath(a));
        writeFile(a + "/boat.md", "# The boat\n\nMarguerite repaired the blue boat in Pemberley harbour last spring.\n");
        writeFile(a + "/notes.txt", "Shopping list: lanterns, rope, varnish for the hull.\n");
        writeFile(a + "/letter.eml",
                  "From: Anna Berg <anna@example.org>\r\nTo: Jon Ek <jon@example.org>\r\nSubject: The lighthouse visit\r\n"
                  "Date: Tue, 14 May 2024 09:30:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                  "Dear Jon,\r\nthe lighthouse keeper showed us the lamp room. Anna\r\n");
        writeFile(a + "/broken.pdf", "%PDF-1.7\nthis is not really a pdf at all\n");
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(a), 1);
    }

    void documentModelPassesTester() {
        DocumentTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        QSortFilterProxyModel proxy;
        proxy.setSourceModel(&model);
        proxy.setSortRole(DocumentTableModel::SortRole);
        QAbstractItemModelTester proxyTester(&proxy, QAbstractItemModelTester::FailureReportingMode::QtTest);
        DocumentList list;
        list.documents = {doc(1, "email", "B letter", 1715679000, 2), doc(2, "note", "a note", std::nullopt, 1),
                          doc(3, "chat", "C chat", 1600000000, 5)};
        model.setDocuments(list);
        QCOMPARE(model.rowCount(), 3);
        QCOMPARE(model.columnCount(), int(DocumentTableModel::ColumnCount));
        QCOMPARE(model.index(0, DocumentTableModel::DateColumn).data().toString(), QString("2024-05-14 09:30"));
        QCOMPARE(model.index(0, DocumentTableModel::ParticipantsColumn).data().toString(), QString("Anna, Jon"));
        QCOMPARE(model.index(2, DocumentTableModel::SegmentsColumn).data().toInt(), 5);
        QVERIFY(!model.isSearchResult());
        proxy.sort(DocumentTableModel::DateColumn, Qt::DescendingOrder);
        QCOMPARE(proxy.index(0, DocumentTableModel::TitleColumn).data().toString(), QString("B letter"));
        QCOMPARE(proxy.index(2, DocumentTableModel::TitleColumn).data().toString(), QString("a note"));   // undated last
        proxy.sort(DocumentTableModel::SegmentsColumn, Qt::AscendingOrder);
        QCOMPARE(proxy.index(0, DocumentTableModel::SegmentsColumn).data().toInt(), 1);

        DocumentList hits;
        hits.query = "x";
        catalog::SearchHit h;
        h.documentId = 7;
        h.kind = "web";
        h.title = "<script>";
        h.snippet = "a < b and \x02lighthouse\x03 & more";
        h.memoryDocumentIds = {1, 2};
        hits.hits = {h};
        model.setDocuments(hits);
        QVERIFY(model.isSearchResult());
        QCOMPARE(model.rowCount(), 1);
        QCOMPARE(model.index(0, DocumentTableModel::MatchColumn).data().toString(),
                 QString("a &lt; b and <b>lighthouse</b> &amp; more"));
        QCOMPARE(model.index(0, DocumentTableModel::MatchColumn).data(DocumentTableModel::SearchTextRole).toString(),
                 QString("a < b and lighthouse & more"));
        QCOMPARE(model.index(0, 0).data(DocumentTableModel::DocumentIdRole).toLongLong(), 7);
        model.clear();
        QCOMPARE(model.rowCount(), 0);
    }

    void firstRunSearchViewerAndDrop() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, dir.filePath("catalog.sqlite")));
        w.resize(1280, 800);
        w.show();
        w.selectTab("library");
        auto* view = w.libraryView();
        QSignalSpy settled(view, &LibraryView::settled);
        QTRY_VERIFY_WITH_TIMEOUT(view->isSettled(), 60000);
        QVERIFY(view->lastError().isEmpty());
        // The sidebar shows the demo collection with its document count.
        auto* collections = w.findChild<QListWidget*>("collections");
        QCOMPARE(view->collectionCount(), 1);
        QCOMPARE(collections->count(), 2);
        QCOMPARE(collections->item(0)->text(), QString("All collections"));
        QCOMPARE(collections->item(1)->text(), QString("Demo archive (3 documents)"));
        QCOMPARE(view->currentCollection(), QString(LibraryView::kDemoCollection));
        QCOMPARE(view->documentModel()->rowCount(), 3);
        // The import report lists the broken PDF with its reason.
        auto* report = w.findChild<QTreeWidget*>("importReport");
        QVERIFY(w.findChild<QWidget*>("importReportPanel")->isVisible());
        QCOMPARE(report->topLevelItemCount(), 1);
        QVERIFY(report->topLevelItem(0)->text(0).endsWith("broken.pdf"));
        QVERIFY(!report->topLevelItem(0)->text(3).isEmpty());
        QVERIFY(w.findChild<QLabel*>("importSummary")->text().contains("3 imported"));

        // Search (debounced) → a highlighted snippet.
        QSignalSpy shown(view, &LibraryView::documentsShown);
        QTest::keyClicks(w.findChild<QLineEdit*>("librarySearch"), "lighthouse");
        QTRY_VERIFY(view->documentModel()->isSearchResult());
        QCOMPARE(view->documentModel()->rowCount(), 1);
        const QString match = view->documentModel()->row(0).matchHtml;
        QVERIFY2(match.contains("<b>lighthouse</b>", Qt::CaseInsensitive), qPrintable(match));
        auto* table = w.findChild<QTableView*>("libraryDocuments");
        QVERIFY(!table->isColumnHidden(DocumentTableModel::MatchColumn));

        // Selecting the hit fills the viewer with text, metadata and segments.
        QSignalSpy docShown(view, &LibraryView::documentShown);
        table->setCurrentIndex(table->model()->index(0, DocumentTableModel::TitleColumn));
        QTRY_COMPARE(docShown.count(), 1);
        QCOMPARE(view->shownDocumentId(), view->documentModel()->row(0).id);
        const QString text = w.findChild<QTextBrowser*>("documentViewer")->toPlainText();
        QVERIFY2(text.contains("lamp room"), qPrintable(text));
        QVERIFY(text.contains("Memory segments (1)") || text.contains("Memory segments (2)"));
        QVERIFY(text.contains("email"));
        QVERIFY(text.contains("letter.eml"));

        // A bad query is a readable message, not a crash.
        w.findChild<QLineEdit*>("librarySearch")->setText("\"unbalanced");
        QTRY_VERIFY(w.findChild<QLabel*>("libraryError")->isVisible());
        QVERIFY(!view->lastError().isEmpty());
        w.findChild<QLineEdit*>("librarySearch")->clear();
        QTRY_VERIFY(!view->documentModel()->isSearchResult() && view->documentModel()->rowCount() == 3);

        // Dropping a folder imports it into the selected collection.
        const QString extra = dir.filePath("extra");
        QVERIFY(QDir().mkpath(extra));
        writeFile(extra + "/cove.md", "# The cove\n\nA quiet cove north of the harbour.\n");
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(extra)});
        QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(view, &enter);
        QVERIFY(enter.isAccepted());
        QSignalSpy finished(w.catalog(), &CatalogClient::importFinished);
        QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(view, &drop);
        QTRY_COMPARE(finished.count(), 1);
        QTRY_COMPARE(collections->item(1)->text(), QString("Demo archive (4 documents)"));
        QTRY_COMPARE(view->documentModel()->rowCount(), 4);
        QCOMPARE(view->currentCollection(), QString(LibraryView::kDemoCollection));
        QCOMPARE(settings.value("library/collection").toString(), QString(LibraryView::kDemoCollection));

        // "All collections" lists every document; with it selected a drop makes a collection named
        // after the folder.
        collections->setCurrentRow(0);
        QCOMPARE(view->currentCollection(), QString());
        QTRY_COMPARE(view->documentModel()->rowCount(), 4);
        const QString trip = dir.filePath("trip");
        QVERIFY(QDir().mkpath(trip));
        writeFile(trip + "/day1.txt", "We sailed to the skerries and back.\n");
        QVERIFY(view->importPaths({trip}));
        QTRY_COMPARE(finished.count(), 2);
        QTRY_COMPARE(view->collectionCount(), 2);
        QTRY_COMPARE(view->currentCollection(), QString("trip"));
        QTRY_COMPARE(view->documentModel()->rowCount(), 1);
        QCOMPARE(settled.count(), 1);
    }

    void catalogErrorIsAMessage() {
        // A catalog file that is not SQLite: the view shows a readable error and still settles.
        QTemporaryDir dir;
        writeFile(dir.filePath("bad.sqlite"), QByteArray(8192, 'x'));
        QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, dir.filePath("bad.sqlite")));
        w.show();
        QTRY_VERIFY(w.libraryView()->isSettled());
        QVERIFY(!w.libraryView()->lastError().isEmpty());
        QVERIFY(w.findChild<QLabel*>("libraryError")->isVisible());
        QVERIFY2(w.findChild<QLabel*>("libraryError")->text().contains("bad.sqlite"),
                 qPrintable(w.findChild<QLabel*>("libraryError")->text()));
        QCOMPARE(w.libraryView()->collectionCount(), 0);
        QVERIFY(!w.statusBar()->currentMessage().isEmpty());
    }

    void closeDuringImport() {
        QTemporaryDir dir;
        const QString many = dir.filePath("many");
        QVERIFY(QDir().mkpath(many));
        QByteArray filler;
        for (int i = 0; i < 60; ++i) filler += "salt pepper harbour lantern rope ";
        for (int i = 0; i < 2000; ++i) writeFile(QString("%1/n%2.txt").arg(many).arg(i), QByteArray::number(i) + filler);
        const QByteArray oldArchive = qgetenv("MSA_DEMO_ARCHIVE");
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(many), 1);
        const QString path = dir.filePath("catalog.sqlite");
        {
            QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
            MainWindow w(makeContext(&settings, path));
            w.show();
            QSignalSpy progress(w.catalog(), &CatalogClient::importProgress);
            QSignalSpy finished(w.catalog(), &CatalogClient::importFinished);
            QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty(), 30000);
            QVERIFY(w.findChild<QWidget*>("importPanel")->isVisible());
            QVERIFY(w.catalog()->importRunning());
            // Cancel with the panel's button: the report says so and offers Resume.
            QTest::mouseClick(w.findChild<QPushButton*>("importCancel"), Qt::LeftButton);
            QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
            QVERIFY(finished.first().at(0).value<ImportOutcome>().report.cancelled);
            QVERIFY(!w.findChild<QWidget*>("importPanel")->isVisible());
            QVERIFY(w.findChild<QLabel*>("importSummary")->text().startsWith("Import cancelled"));
            auto* resume = w.findChild<QPushButton*>("importResume");
            QVERIFY(resume->isVisible());
            // Resume, then close the window while that import runs.
            progress.clear();
            QTest::mouseClick(resume, Qt::LeftButton);
            QVERIFY(w.catalog()->importRunning());
            QVERIFY(w.findChild<QWidget*>("importPanel")->isVisible());
            QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty(), 30000);
            QVERIFY(w.close());   // cancels and stops the catalog thread; a hang trips the test timeout
            QVERIFY(w.catalog()->isShutDown());
        }
        ::setenv("MSA_DEMO_ARCHIVE", oldArchive.constData(), 1);
        // The catalog is consistent and opens again.
        CatalogClient client(path);
        QSignalSpy cols(&client, &CatalogClient::collectionsReady);
        client.open();
        QTRY_COMPARE(cols.count(), 1);
        const auto c = cols.first().at(0).value<std::vector<catalog::CollectionInfo>>();
        QCOMPARE(c.size(), size_t(1));
        QVERIFY(c[0].nDocuments < 2000);
    }

private:
    QTemporaryDir m_tmp;
};

QTEST_MAIN(TestLibraryView)
#include "tst_library_view.moc"

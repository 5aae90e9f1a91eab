// tst_catalog_host.cpp (label: gui, offscreen): the catalog thread. CatalogClient opens a catalog in a
// temporary folder on its own thread, imports a small mixed folder (Markdown, text, e-mail and one
// broken PDF) with coalesced progress and a finished report naming the broken file and its reason;
// lists, searches (highlight markers) and fetches documents with segments; reports a bad FTS5 query
// as a readable failure; cancels an import of 2,000 generated files midway with the catalog still
// usable (and a second run resuming to completion); and shuts down during an import without hanging.
// Extend: one slot per new CatalogClient request.
#include "ui/catalog_host.h"

#include <QDir>
#include <QFile>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QThread>
#include <QtTest>

using namespace msa;
using namespace msa::ui;

namespace {
void writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
    QCOMPARE(f.write(bytes), bytes.size());
}

void makeMixedFolder(const QString& dir) {
    QDir().mkpath(dir);
    writeFile(dir + "/boat.md", "# The boat\n\nMarguerite repaired the blue boat in Pemberley harbour last spring.\n");
    writeFile(dir + "/notes.txt", "Shopping list: lanterns, rope, varnish for the hull.\nCall the harbour master.\n");
    writeFile(dir + "/letter.eml",
              "From: Anna Berg <anna@example.org>\r\nTo: Jon Ek <jon@example.org>\r\nSubject: The lighthouse visit\r\n"
              "Date: Tue, 14 May 2024 09:30:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
              "Dear Jon,\r\nthe lighthouse keeper showed us the lamp room. Anna\r\n");
    writeFile(dir + "/broken.pdf", "%PDF-1.7\nthis is not really a pdf at all\n");
}

void makeManyFiles(const QString& dir, int n) {
    QDir().mkpath(dir);
    QByteArray filler;
    for (int i = 0; i < 60; ++i) filler += "word" + QByteArray::number(i) + " salt pepper harbour lantern ";
    for (int i = 0; i < n; ++i)
        writeFile(QString("%1/note_%2.txt").arg(dir).arg(i, 5, 10, QChar('0')),
                  "Note number " + QByteArray::number(i) + " unique" + QByteArray::number(i) + "\n" + filler);
}

ImportOutcome lastOutcome(const QSignalSpy& spy) { return spy.last().at(0).value<ImportOutcome>(); }
}  // namespace

class TestCatalogHost : public QObject {
    Q_OBJECT
private slots:
    void importsListsSearchesFetches() {
        QTemporaryDir tmp;
        makeMixedFolder(tmp.filePath("mixed"));
        CatalogClient client(tmp.filePath("cat/catalog.sqlite"));   // the folder does not exist yet
        QCOMPARE(client.path(), tmp.filePath("cat/catalog.sqlite"));
        QSignalSpy opened(&client, &CatalogClient::opened);
        QSignalSpy cols(&client, &CatalogClient::collectionsReady);
        QSignalSpy progress(&client, &CatalogClient::importProgress);
        QSignalSpy finished(&client, &CatalogClient::importFinished);
        QSignalSpy failed(&client, &CatalogClient::failed);
        client.open();
        QTRY_COMPARE(opened.count(), 1);
        QVERIFY(opened.first().at(0).toBool());
        QTRY_COMPARE(cols.count(), 1);
        QVERIFY(cols.first().at(0).value<std::vector<catalog::CollectionInfo>>().empty());

        QVERIFY(client.startImport("mixed", {tmp.filePath("mixed")}));
        QVERIFY(client.importRunning());
        QVERIFY(!client.startImport("other", {tmp.filePath("mixed")}));   // one at a time
        QTRY_COMPARE(failed.count(), 1);
        QTRY_COMPARE(finished.count(), 1);
        QVERIFY(!client.importRunning());
        const ImportOutcome o = lastOutcome(finished);
        QVERIFY2(o.ok, qPrintable(o.error));
        QCOMPARE(o.collection, QString("mixed"));
        QVERIFY(!o.report.cancelled);
        QCOMPARE(o.report.nSeen, 4u);
        QCOMPARE(o.report.nImported, 3u);
        QCOMPARE(o.report.nFailed + o.report.nSkipped, 1u);
        bool brokenReported = false;
        for (const auto& f : o.report.files)
            if (QString::fromStdString(f.path).endsWith("broken.pdf") && !f.reason.empty()) brokenReported = true;
        QVERIFY2(brokenReported, "the report names the broken PDF with a reason");
        // Progress arrived (at least the final update) with the totals.
        QVERIFY(progress.count() >= 1);
        const auto last = progress.last().at(0).value<ImportProgressUpdate>();
        QCOMPARE(last.total, 4u);
        QCOMPARE(last.done, 4u);
        QVERIFY(last.bytesTotal > 0);
        // The host refreshes the collections after the import.
        QTRY_COMPARE(cols.count(), 2);
        const auto c = cols.last().at(0).value<std::vector<catalog::CollectionInfo>>();
        QCOMPARE(c.size(), size_t(1));
        QCOMPARE(c[0].name, std::string("mixed"));
        QCOMPARE(c[0].nDocuments, 3);

        QSignalSpy docs(&client, &CatalogClient::documentsReady);
        const quint64 listId = client.listDocuments("mixed");
        QTRY_COMPARE(docs.count(), 1);
        auto list = docs.last().at(0).value<DocumentList>();
        QCOMPARE(list.requestId, listId);
        QCOMPARE(list.documents.size(), size_t(3));

        const quint64 searchId = client.search("lighthouse", QString());
        QTRY_COMPARE(docs.count(), 2);
        list = docs.last().at(0).value<DocumentList>();
        QCOMPARE(list.requestId, searchId);
        QCOMPARE(list.hits.size(), size_t(1));
        const QString snippet = QString::fromStdString(list.hits[0].snippet);
        QVERIFY2(snippet.contains(QString("\x02") + "lighthouse" + "\x03", Qt::CaseInsensitive), qPrintable(snippet));

        QSignalSpy doc(&client, &CatalogClient::documentReady);
        client.fetchDocument(list.hits[0].documentId);
        QTRY_COMPARE(doc.count(), 1);
        const auto d = doc.last().at(0).value<catalog::DocumentInfo>();
        QCOMPARE(d.kind, std::string("email"));
        QVERIFY(QString::fromStdString(d.text).contains("lamp room"));
        QVERIFY(!d.segments.empty());

        // A bad FTS5 query and a missing document are readable failures, and the host keeps working.
        const int nFailed = failed.count();
        client.search("\"unbalanced", QString());
        QTRY_COMPARE(failed.count(), nFailed + 1);
        QVERIFY(!failed.last().at(1).toString().isEmpty());
        client.fetchDocument(987654);
        QTRY_COMPARE(failed.count(), nFailed + 2);
        QVERIFY2(failed.last().at(2).toString().contains("not_found", Qt::CaseInsensitive) ||
                     failed.last().at(2).toString().contains("987654"),
                 qPrintable(failed.last().at(2).toString()));
        client.listDocuments(QString());
        QTRY_COMPARE(docs.count(), 3);
        QCOMPARE(docs.last().at(0).value<DocumentList>().documents.size(), size_t(3));
    }

    void openFailureIsReported() {
        QTemporaryDir tmp;
        writeFile(tmp.filePath("garbage.sqlite"), QByteArray(8192, 'x'));
        CatalogClient client(tmp.filePath("garbage.sqlite"));
        QSignalSpy opened(&client, &CatalogClient::opened);
        QSignalSpy failed(&client, &CatalogClient::failed);
        client.open();
        QTRY_COMPARE(opened.count(), 1);
        QVERIFY(!opened.first().at(0).toBool());
        QTRY_COMPARE(failed.count(), 1);
        // Requests on an unopened catalog fail politely too.
        client.listDocuments(QString());
        QTRY_COMPARE(failed.count(), 2);
    }

    void cancelLargeImportKeepsCatalogUsable() {
        QTemporaryDir tmp;
        makeManyFiles(tmp.filePath("many"), 2000);
        CatalogClient client(tmp.filePath("catalog.sqlite"));
        QSignalSpy progress(&client, &CatalogClient::importProgress);
        QSignalSpy finished(&client, &CatalogClient::importFinished);
        client.open();
        QVERIFY(client.startImport("many", {tmp.filePath("many")}));
        QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty() && progress.last().at(0).value<ImportProgressUpdate>().done > 0, 30000);
        client.cancelImport();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 30000);
        const ImportOutcome o = lastOutcome(finished);
        QVERIFY2(o.ok, qPrintable(o.error));
        QVERIFY(o.report.cancelled);
        QVERIFY2(o.report.nImported < 2000u, qPrintable(QString::number(o.report.nImported)));
        // Progress is coalesced: far fewer updates than files.
        QVERIFY2(progress.count() < 200, qPrintable(QString::number(progress.count())));

        // The catalog stays usable: list and search, then resume to completion.
        QSignalSpy docs(&client, &CatalogClient::documentsReady);
        client.listDocuments("many", 5000);
        QTRY_COMPARE(docs.count(), 1);
        const size_t nAfterCancel = docs.last().at(0).value<DocumentList>().documents.size();
        QCOMPARE(nAfterCancel, size_t(o.report.nImported));
        QVERIFY(client.startImport("many", {tmp.filePath("many")}));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 60000);
        const ImportOutcome again = lastOutcome(finished);
        QVERIFY2(again.ok, qPrintable(again.error));
        QVERIFY(!again.report.cancelled);
        QCOMPARE(again.report.nUnchanged, o.report.nImported);   // the committed part is skipped
        QCOMPARE(again.report.nImported + again.report.nUnchanged, 2000u);
        client.search("unique1999", "many");
        QTRY_COMPARE(docs.count(), 2);
        QCOMPARE(docs.last().at(0).value<DocumentList>().hits.size(), size_t(1));
    }

    void shutdownDuringImport() {
        QTemporaryDir tmp;
        makeManyFiles(tmp.filePath("many"), 2000);
        const QString path = tmp.filePath("catalog.sqlite");
        {
            CatalogClient client(path);
            QSignalSpy progress(&client, &CatalogClient::importProgress);
            client.open();
            QVERIFY(client.startImport("many", {tmp.filePath("many")}));
            QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty(), 30000);
            client.shutdown();   // cancel → finish → close → quit → wait; a hang trips the test timeout
            QVERIFY(client.isShutDown());
            QVERIFY(!client.importRunning());
            client.shutdown();   // idempotent
            client.listDocuments(QString());   // ignored after shutdown, no crash
        }
        // The next session opens the same catalog and finishes the import (lock released, data consistent).
        CatalogClient client(path);
        QSignalSpy opened(&client, &CatalogClient::opened);
        QSignalSpy finished(&client, &CatalogClient::importFinished);
        client.open();
        QTRY_COMPARE(opened.count(), 1);
        QVERIFY(opened.first().at(0).toBool());
        QVERIFY(client.startImport("many", {tmp.filePath("many")}));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 60000);
        const ImportOutcome o = lastOutcome(finished);
        QVERIFY2(o.ok, qPrintable(o.error));
        QCOMPARE(o.report.nImported + o.report.nUnchanged, 2000u);
    }
};

QTEST_GUILESS_MAIN(TestCatalogHost)
#include "tst_catalog_host.moc"

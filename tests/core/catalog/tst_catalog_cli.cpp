// tst_catalog_cli.cpp: `msa import`, `msa search` and `msa catalog` as a user runs them.
//
// Covers: the JSON report (stdout and --report FILE) with every failed/skipped file and its reason;
// exit codes (0 when something was imported, non-zero when nothing could be, 2 on usage errors);
// search --json with filters and highlight markers; catalog stats/collections/show; SIGINT cancels
// an import cleanly (exit code 8, run recorded as cancelled, catalog consistent) and the next run
// resumes. To extend: add a slot per command or option.
#include "core/catalog/catalog.h"
#include "core/catalog/schema.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <signal.h>

using namespace msa::catalog;

namespace {

void writeFile(const QString& path, const QByteArray& bytes) {
    QDir().mkpath(QFileInfo(path).path());
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(bytes);
}

struct Run {
    int exitCode = -1;
    QByteArray out, err;
};

Run runMsa(const QStringList& args) {
    QProcess p;
    p.start(MSA_CLI_PATH, args);
    Run r;
    if (!p.waitForFinished(120000)) return r;
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1;
    r.out = p.readAllStandardOutput();
    r.err = p.readAllStandardError();
    return r;
}

}  // namespace

class TstCatalogCli : public QObject {
    Q_OBJECT
    QTemporaryDir m_dir;
    QString db() const { return m_dir.filePath("cli.msacat"); }

private slots:
    void importReportsJson() {
        const QString root = m_dir.filePath("in");
        writeFile(root + "/a.txt", "The heron waited by the weir.\n");
        writeFile(root + "/b.md", "---\ntitle: Weir notes\ndate: 2022-06-01\n---\nHeron and otter.\n");
        writeFile(root + "/c.eml", "From: Otto <otto@example.org>\nTo: me@example.org\nSubject: Otter sighting\n"
                                   "Date: Wed, 01 Jun 2022 07:00:00 +0000\n\nSaw an otter near the heron.\n");
        writeFile(root + "/bad.pdf", "%PDF-1.4 nonsense");
        writeFile(root + "/blob.bin", QByteArray("\0\1\2\3", 4));
        const QString reportPath = m_dir.filePath("report.json");
        Run r = runMsa({"import", "--catalog", db(), "--collection", "cli", "--json", "--report", reportPath, root});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        const QJsonObject j = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(j["ok"].toBool(), true);
        QCOMPARE(j["imported"].toInt(), 3);
        QCOMPARE(j["failed"].toInt() + j["skipped"].toInt(), 2);
        QCOMPARE(j["documents"].toInt(), 3);
        int nReasons = 0;
        for (const QJsonValue& f : j["files"].toArray()) {
            const QJsonObject o = f.toObject();
            if (o["outcome"] == "failed" || o["outcome"] == "skipped") {
                QVERIFY(!o["reason"].toString().isEmpty());
                QVERIFY(!o["error_code"].toString().isEmpty());
                ++nReasons;
            }
        }
        QCOMPARE(nReasons, 2);
        QFile report(reportPath);
        QVERIFY(report.open(QIODevice::ReadOnly));
        QCOMPARE(QJsonDocument::fromJson(report.readAll()).object()["imported"].toInt(), 3);

        // Again: everything unchanged; the text report says so.
        Run again = runMsa({"import", "--catalog", db(), "--collection", "cli", "--quiet", root});
        QCOMPARE(again.exitCode, 0);
        QVERIFY2(again.out.contains("5 unchanged"), again.out.constData());
    }

    void nothingImportableFails() {
        const QString root = m_dir.filePath("junk");
        writeFile(root + "/x.bin", QByteArray("\0\0\0\1", 4));
        Run r = runMsa({"import", "--catalog", m_dir.filePath("junk.msacat"), "--quiet", root});
        QVERIFY(r.exitCode != 0);
        QVERIFY(r.err.contains("nothing could be imported"));
        Run missing = runMsa({"import", "--catalog", m_dir.filePath("junk.msacat"), "--quiet", m_dir.filePath("nope")});
        QCOMPARE(missing.exitCode, 3);   // not_found
        QCOMPARE(runMsa({"import", "--catalog", db()}).exitCode, 2);   // usage: no PATH
    }

    void searchJson() {
        Run r = runMsa({"search", "--catalog", db(), "--json", "heron"});
        QVERIFY2(r.exitCode == 0, r.err.constData());
        QJsonArray hits = QJsonDocument::fromJson(r.out).object()["hits"].toArray();
        QCOMPARE(hits.size(), 3);
        for (const QJsonValue& h : hits) QVERIFY(h.toObject()["snippet"].toString().contains("[heron]", Qt::CaseInsensitive));
        r = runMsa({"search", "--catalog", db(), "--json", "--type", "email", "--participant", "otto", "--from",
                 "2022-06-01", "--to", "2022-06-01", "otter"});
        QCOMPARE(r.exitCode, 0);
        hits = QJsonDocument::fromJson(r.out).object()["hits"].toArray();
        QCOMPARE(hits.size(), 1);
        QCOMPARE(hits[0].toObject()["title"].toString(), QString("Otter sighting"));
        QCOMPARE(hits[0].toObject()["date"].toString(), QString("2022-06-01"));
        QVERIFY(!hits[0].toObject()["memory_document_ids"].toArray().isEmpty());
        r = runMsa({"search", "--catalog", db(), "--json", "--collection", "elsewhere", "heron"});
        QCOMPARE(QJsonDocument::fromJson(r.out).object()["hits"].toArray().size(), 0);
        r = runMsa({"search", "--catalog", db(), "--json", "\"unbalanced"});
        QCOMPARE(r.exitCode, 2);   // invalid_argument
        QCOMPARE(QJsonDocument::fromJson(r.out).object()["error"].toObject()["code"].toString(), QString("invalid_argument"));
        r = runMsa({"search", "--catalog", db(), "--from", "June", "x"});
        QCOMPARE(r.exitCode, 2);
        r = runMsa({"search", "--catalog", m_dir.filePath("absent.msacat"), "x"});
        QCOMPARE(r.exitCode, 3);
    }

    void catalogCommands() {
        Run r = runMsa({"catalog", "--catalog", db(), "--json", "stats"});
        QCOMPARE(r.exitCode, 0);
        const QJsonObject st = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(st["documents"].toInt(), 3);
        QCOMPARE(st["schema_version"].toInt(), msa::catalog::latestSchemaVersion());
        r = runMsa({"catalog", "--catalog", db(), "--json", "collections"});
        QCOMPARE(QJsonDocument::fromJson(r.out).object()["collections"].toArray()[0].toObject()["name"].toString(),
                 QString("cli"));
        r = runMsa({"catalog", "--catalog", db(), "--json", "show", "1"});
        QCOMPARE(r.exitCode, 0);
        const QJsonObject doc = QJsonDocument::fromJson(r.out).object();
        QCOMPARE(doc["memory_documents"].toArray().size(), 1);
        QCOMPARE(doc["sources"].toArray().size(), 1);
        QCOMPARE(runMsa({"catalog", "--catalog", db(), "show", "999"}).exitCode, 3);
    }

    void sigintCancelsAndResumes() {
        const QString root = m_dir.filePath("many");
        for (int i = 0; i < 4000; ++i)
            writeFile(root + QString("/d%1/f%2.txt").arg(i % 20).arg(i),
                      QByteArray("Line about the number ") + QByteArray::number(i) + " and some filler words.\n");
        const QString cat = m_dir.filePath("sigint.msacat");
        QProcess p;
        p.start(MSA_CLI_PATH, {"import", "--catalog", cat, "--quiet", root});
        QVERIFY(p.waitForStarted());
        // Wait until the first batch is committed, then Ctrl-C.
        QElapsedTimer t;
        t.start();
        bool progressed = false;
        while (!progressed && t.elapsed() < 60000 && p.state() == QProcess::Running) {
            QTest::qWait(20);
            if (!QFile::exists(cat)) continue;
            auto c = Catalog::open(cat.toStdString(), {.readOnly = true, .create = false});
            if (c.ok()) {
                auto st = c->stats();
                progressed = st.ok() && st->nSourceFiles > 0;
            }
        }
        if (p.state() != QProcess::Running) QSKIP("the import finished before it could be interrupted");
        QVERIFY(progressed);
        ::kill(static_cast<pid_t>(p.processId()), SIGINT);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), 8);   // cancelled
        QVERIFY(p.readAllStandardOutput().contains("Cancelled"));
        {
            auto c = Catalog::open(cat.toStdString());
            QVERIFY(c.ok());
            auto integrity = c->checkIntegrity();
            QVERIFY(integrity.ok() && integrity->ok);
            auto s = c->db().prepare("SELECT status FROM import_runs");
            QVERIFY(s.ok() && s->step().valueOr(false));
            QCOMPARE(s->text(0), std::string("cancelled"));
            QVERIFY(c->stats()->nSourceFiles < 4000);
        }
        Run resume = runMsa({"import", "--catalog", cat, "--json", "--quiet", root});
        QCOMPARE(resume.exitCode, 0);
        const QJsonObject j = QJsonDocument::fromJson(resume.out).object();
        QCOMPARE(j["imported"].toInt() + j["unchanged"].toInt(), 4000);
        QVERIFY(j["unchanged"].toInt() > 0);   // it resumed: the cancelled run's work was kept
        auto c = Catalog::open(cat.toStdString());
        QCOMPARE(c->stats()->nDocuments, int64_t{4000});
    }
};

QTEST_GUILESS_MAIN(TstCatalogCli)
#include "tst_catalog_cli.moc"

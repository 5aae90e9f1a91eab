// tst_catalog_crash.cpp: crash safety of `msa import` (label slow).
//
// Generates a few thousand small files, imports them once cleanly as the reference, then imports
// them again into a second catalog while killing the `msa import` child with SIGKILL at random
// points (20 kills). After every kill the catalog must pass PRAGMA integrity_check,
// foreign_key_check and the catalog's own invariants (no orphan documents, segments inside their
// documents, FTS index consistent). A final run resumes and must exit 0, and the result must equal
// the clean import: the same source files (path, size, mtime, hash, status), documents (id, hash),
// links and memory documents (id, document, span). To extend: add file kinds to generate().
#include "core/catalog/catalog.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QProcess>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest>

#include <string>
#include <vector>

using namespace msa::catalog;
using msa::Result;
using msa::Status;

namespace {

constexpr int kFiles = 3000;
constexpr int kKills = 20;

const char* kWords[] = {"river", "lantern", "orchard", "copper", "meadow", "harbor", "violet", "ember", "glacier",
                        "saffron", "thimble", "quarry", "falcon", "juniper", "mosaic", "nectar", "pebble", "tundra"};

void generate(const QString& root) {
    QRandomGenerator rng(1234);   // fixed seed: the same tree every run
    for (int i = 0; i < kFiles; ++i) {
        const QString dir = root + QString("/folder%1").arg(i % 40, 2, 10, QChar('0'));
        QDir().mkpath(dir);
        std::string body;
        const int nWords = 40 + static_cast<int>(rng.bounded(400));
        for (int w = 0; w < nWords; ++w) {
            body += kWords[rng.bounded(static_cast<int>(std::size(kWords)))];
            body += (w % 17 == 16) ? ".\n\n" : " ";
        }
        body += "\nunique-token-" + std::to_string(i) + "\n";
        QString name;
        std::string content;
        switch (i % 10) {
            case 0:
                name = QString("mail%1.eml").arg(i);
                content = "From: Person " + std::to_string(i % 7) + " <p" + std::to_string(i % 7) +
                          "@example.org>\nTo: me@example.org\nSubject: Note " + std::to_string(i) +
                          "\nDate: Mon, 01 Apr 2024 10:00:00 +0000\nMessage-ID: <m" + std::to_string(i) +
                          "@example.org>\n\n" + body;
                break;
            case 1:
                name = QString("note%1.md").arg(i);
                content = "---\ntitle: Note " + std::to_string(i) + "\ndate: 2023-01-0" + std::to_string(1 + i % 9) +
                          "\n---\n# Heading\n\n" + body;
                break;
            case 2:
                name = QString("blob%1.bin").arg(i);
                content = std::string("\0\1\2\3binary", 10) + body;
                break;
            case 3:
                name = QString("dup%1.txt").arg(i);
                content = "This duplicate text is shared by many files.\n";
                break;
            default:
                name = QString("text%1.txt").arg(i);
                content = body;
        }
        QFile f(dir + "/" + name);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(content.data(), static_cast<qint64>(content.size()));
    }
}

QStringList importArgs(const QString& db, const QString& root) {
    return {"import", "--catalog", db, "--collection", "crash", "--threads", "2", "--quiet", root};
}

// Everything that must be identical between a clean import and a crashed-and-resumed one.
std::vector<std::string> dump(const QString& dbPath) {
    std::vector<std::string> out;
    auto cat = Catalog::open(dbPath.toStdString(), {.readOnly = true, .create = false});
    if (!cat) {
        out.push_back("open failed: " + cat.status().toString());
        return out;
    }
    const char* queries[] = {
        "SELECT 'file', path, size, mtime_ns, coalesce(content_hash,''), status, coalesce(importer,''), "
        "coalesce(error_code,'') FROM source_files ORDER BY path",
        "SELECT 'doc', id, content_hash, kind, title, n_bytes FROM documents ORDER BY id",
        "SELECT 'link', f.path, ds.ordinal, d.content_hash FROM document_sources ds JOIN source_files f ON "
        "f.id = ds.source_file_id JOIN documents d ON d.id = ds.document_id ORDER BY f.path, ds.ordinal",
        "SELECT 'mem', m.id, d.content_hash, m.segment_index, m.segment_kind, m.span_start, m.span_end "
        "FROM memory_documents m JOIN documents d ON d.id = m.document_id ORDER BY m.id",
    };
    for (const char* sql : queries) {
        auto s = cat->db().prepare(sql);
        if (!s) {
            out.push_back(s.status().toString());
            continue;
        }
        while (s->step().valueOr(false)) {
            std::string row;
            for (int c = 0; c < 8; ++c) row += s->text(c) + "|";
            out.push_back(std::move(row));
        }
    }
    return out;
}

}  // namespace

class TstCatalogCrash : public QObject {
    Q_OBJECT
private slots:
    void killAndResume() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString root = dir.filePath("archive");
        generate(root);

        // Reference: one clean run.
        const QString cleanDb = dir.filePath("clean.msacat");
        QElapsedTimer timer;
        timer.start();
        QProcess clean;
        clean.start(MSA_CLI_PATH, importArgs(cleanDb, root));
        QVERIFY(clean.waitForFinished(600000));
        const qint64 cleanMs = timer.elapsed();
        QVERIFY2(clean.exitStatus() == QProcess::NormalExit && clean.exitCode() == 0, clean.readAllStandardError().constData());
        qInfo("clean import of %d files: %lld ms (%.0f files/s)", kFiles, static_cast<long long>(cleanMs),
              kFiles * 1000.0 / static_cast<double>(std::max<qint64>(1, cleanMs)));
        const std::vector<std::string> expected = dump(cleanDb);
        QVERIFY(expected.size() > static_cast<size_t>(kFiles));

        // Crash runs: each resumes the previous one and is killed after a random delay.
        const QString db = dir.filePath("crashed.msacat");
        QRandomGenerator rng(42);
        int nKilledMidRun = 0;
        int64_t committed = 0;   // files in the crashed catalog after the previous kill
        for (int k = 0; k < kKills; ++k) {
            QProcess p;
            p.start(MSA_CLI_PATH, importArgs(db, root));
            QVERIFY(p.waitForStarted());
            // Kill somewhere in the work that is left: start-up, the walk, the middle of a batch or a
            // commit. The remaining time is estimated from the clean run and the committed files.
            const double remaining = static_cast<double>(cleanMs) * static_cast<double>(kFiles - committed) / kFiles;
            const int delay = 5 + static_cast<int>(rng.generateDouble() * remaining);
            if (!p.waitForFinished(delay)) {
                p.kill();   // SIGKILL
                ++nKilledMidRun;
                QVERIFY(p.waitForFinished(60000));
            }
            if (!QFile::exists(db)) continue;   // killed before the catalog was created
            auto cat = Catalog::open(db.toStdString());
            QVERIFY2(cat.ok(), cat.status().toString().c_str());
            auto integrity = cat->checkIntegrity();
            QVERIFY(integrity.ok());
            QVERIFY2(integrity->ok, qPrintable(QString("after kill %1: %2").arg(k).arg(
                                        integrity->problems.empty() ? "" : integrity->problems.front().c_str())));
            committed = cat->stats()->nSourceFiles;
        }
        qInfo("%d of %d runs were killed mid-run", nKilledMidRun, kKills);
        {
            // The killed runs must have committed real progress, else resuming proves nothing.
            auto cat = Catalog::open(db.toStdString());
            QVERIFY(cat.ok());
            auto st = cat->stats();
            QVERIFY(st.ok());
            qInfo("before resuming: %lld of %d files committed by the killed runs",
                  static_cast<long long>(st->nSourceFiles), kFiles);
            QVERIFY(st->nSourceFiles > 0);
        }
        QVERIFY2(nKilledMidRun >= kKills / 2, "most kills must land while the import is running");

        // Resume to the end.
        QProcess resume;
        resume.start(MSA_CLI_PATH, importArgs(db, root));
        QVERIFY(resume.waitForFinished(600000));
        QVERIFY2(resume.exitStatus() == QProcess::NormalExit && resume.exitCode() == 0,
                 resume.readAllStandardError().constData());
        const std::vector<std::string> actual = dump(db);
        QCOMPARE(actual.size(), expected.size());
        for (size_t i = 0; i < actual.size(); ++i) QCOMPARE(actual[i], expected[i]);

        // The interrupted runs are recorded as such.
        auto cat = Catalog::open(db.toStdString());
        QVERIFY(cat.ok());
        auto s = cat->db().prepare("SELECT count(*) FROM import_runs WHERE status = 'running'");
        QVERIFY(s.ok() && s->step().valueOr(false));
        QCOMPARE(s->int64(0), int64_t{0});
    }
};

QTEST_GUILESS_MAIN(TstCatalogCrash)
#include "tst_catalog_crash.moc"

// tst_catalog_schema.cpp: the catalog schema, its pragmas and migrations.
//
// Covers: a new catalog is at the latest user_version with WAL, foreign keys and FTS5; reopening is
// a no-op; a newer-than-known schema and a non-SQLite file are refused with specific codes; every
// committed fixture tests/fixtures/catalog/catalog-v<N>.sqlite (a catalog written by the release
// that introduced schema N) upgrades to the latest schema with its rows intact and the same schema
// text as a fresh catalog. To extend: add the fixture of a new schema version; the test finds it.
#include "core/catalog/catalog.h"
#include "core/catalog/schema.h"
#include "core/catalog/sqlite_db.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <map>

using namespace msa::catalog;
using msa::Result;
using msa::Status;

namespace {

std::map<std::string, std::string> schemaText(Db& db) {
    std::map<std::string, std::string> out;
    auto s = db.prepare("SELECT type || ' ' || name, coalesce(sql, '') FROM sqlite_master ORDER BY 1");
    if (!s) return out;
    while (s->step().valueOr(false)) out[s->text(0)] = s->text(1);
    return out;
}

int64_t scalar(Db& db, const char* sql) {
    auto s = db.prepare(sql);
    if (!s || !s->step().valueOr(false)) return -1;
    return s->int64(0);
}

}  // namespace

class TstCatalogSchema : public QObject {
    Q_OBJECT
private slots:
    void newCatalogIsAtLatestVersion() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("new.msacat").toStdString();
        auto cat = Catalog::open(path);
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        QCOMPARE(cat->foundSchemaVersion(), 0);
        QCOMPARE(cat->schemaVersion(), latestSchemaVersion());
        QCOMPARE(scalar(cat->db(), "PRAGMA user_version"), static_cast<int64_t>(latestSchemaVersion()));
        QCOMPARE(scalar(cat->db(), "PRAGMA foreign_keys"), int64_t{1});
        auto mode = cat->db().prepare("PRAGMA journal_mode");
        QVERIFY(mode.ok() && mode->step().valueOr(false));
        QCOMPARE(mode->text(0), std::string("wal"));
        for (const char* table : {"collections", "source_files", "documents", "document_sources", "memory_documents",
                                  "import_runs", "import_run_files", "documents_fts"}) {
            auto s = cat->db().prepare("SELECT count(*) FROM sqlite_master WHERE name = ?");
            QVERIFY(s.ok());
            s->bind(1, table);
            QVERIFY(s->step().valueOr(false));
            QVERIFY2(s->int64(0) == 1, table);
        }
        auto integrity = cat->checkIntegrity();
        QVERIFY(integrity.ok() && integrity->ok);
        // Foreign keys are enforced, not just declared.
        Status bad = cat->db().exec("INSERT INTO memory_documents(document_id, segment_index, segment_kind, span_start, "
                                    "span_end, token_estimate) VALUES (999, 0, 'whole', 0, 1, 1)");
        QVERIFY(!bad.isOk());
    }

    void reopenIsNoOp() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("c.msacat").toStdString();
        { QVERIFY(Catalog::open(path).ok()); }
        auto again = Catalog::open(path);
        QVERIFY(again.ok());
        QCOMPARE(again->foundSchemaVersion(), latestSchemaVersion());
    }

    void migrationsAreNumberedForward() {
        int expected = 1;
        for (const Migration& m : migrations()) QCOMPARE(m.version, expected++);
        QCOMPARE(latestSchemaVersion(), expected - 1);
    }

    void newerSchemaIsRefused() {
        QTemporaryDir dir;
        const std::string path = dir.filePath("future.msacat").toStdString();
        {
            auto cat = Catalog::open(path);
            QVERIFY(cat.ok());
            QVERIFY(cat->db().exec("PRAGMA user_version = " + std::to_string(latestSchemaVersion() + 1)).isOk());
        }
        auto cat = Catalog::open(path);
        QVERIFY(!cat.ok());
        QCOMPARE(cat.status().code(), msa::ErrorCode::Unsupported);
    }

    void nonSqliteFileIsCorrupt() {
        QTemporaryDir dir;
        const QString path = dir.filePath("junk.msacat");
        QFile f(path);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(8192, 'x'));
        f.close();
        auto cat = Catalog::open(path.toStdString());
        QVERIFY(!cat.ok());
        QCOMPARE(cat.status().code(), msa::ErrorCode::Corrupt);
    }

    void readOnlyMissingIsNotFound() {
        QTemporaryDir dir;
        auto cat = Catalog::open(dir.filePath("absent.msacat").toStdString(), {.readOnly = true, .create = false});
        QVERIFY(!cat.ok());
        QCOMPARE(cat.status().code(), msa::ErrorCode::NotFound);
    }

    void fixturesUpgrade_data() {
        QTest::addColumn<QString>("fixture");
        QTest::addColumn<int>("version");
        const QDir fixtures(QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/catalog"));
        const QStringList files = fixtures.entryList({"catalog-v*.sqlite"}, QDir::Files, QDir::Name);
        QVERIFY2(files.contains("catalog-v1.sqlite"), "the released schema 1 fixture is missing");
        for (const QString& f : files) {
            const int v = f.mid(9, f.size() - 9 - 7).toInt();
            QTest::newRow(qPrintable(f)) << fixtures.filePath(f) << v;
        }
    }

    void fixturesUpgrade() {
        QFETCH(QString, fixture);
        QFETCH(int, version);
        QTemporaryDir dir;
        const QString copy = dir.filePath("old.msacat");
        QVERIFY(QFile::copy(fixture, copy));
        QFile::setPermissions(copy, QFile::ReadOwner | QFile::WriteOwner);
        {
            // The fixture really is at its version before we touch it.
            auto raw = Db::open(copy.toStdString(), true, false);
            QVERIFY(raw.ok());
            QCOMPARE(scalar(*raw, "PRAGMA user_version"), static_cast<int64_t>(version));
        }
        auto cat = Catalog::open(copy.toStdString());
        QVERIFY2(cat.ok(), cat.status().toString().c_str());
        QCOMPARE(cat->foundSchemaVersion(), version);
        QCOMPARE(cat->schemaVersion(), latestSchemaVersion());
        auto integrity = cat->checkIntegrity();
        QVERIFY(integrity.ok());
        QVERIFY2(integrity->ok, integrity->problems.empty() ? "" : integrity->problems.front().c_str());

        // Same schema as a catalog created fresh by this build.
        auto fresh = Catalog::open(dir.filePath("fresh.msacat").toStdString());
        QVERIFY(fresh.ok());
        QCOMPARE(schemaText(cat->db()), schemaText(fresh->db()));

        // The rows written by the old release are all there and searchable.
        auto stats = cat->stats();
        QVERIFY(stats.ok());
        QCOMPARE(stats->nDocuments, int64_t{3});
        QCOMPARE(stats->nImported, int64_t{3});
        QVERIFY(stats->nMemoryDocuments >= 3);
        for (const char* word : {"zeppelin", "marmalade", "quokka"}) {
            SearchQuery q;
            q.match = word;
            auto hits = cat->search(q);
            QVERIFY(hits.ok());
            QVERIFY2(hits->size() == 1, word);
            QVERIFY(!hits->front().memoryDocumentIds.empty());
        }
        SearchQuery mail;
        mail.match = "quokka";
        mail.kind = "email";
        mail.participant = "alice@example.org";
        auto hits = cat->search(mail);
        QVERIFY(hits.ok());
        QCOMPARE(hits->size(), size_t{1});
        QCOMPARE(hits->front().title, std::string("Fixture mail about the quokka"));
        auto cols = cat->collections();
        QVERIFY(cols.ok());
        QCOMPARE(cols->size(), size_t{1});
        QCOMPARE(cols->front().name, std::string("fixture"));
    }
};

QTEST_GUILESS_MAIN(TstCatalogSchema)
#include "tst_catalog_schema.moc"

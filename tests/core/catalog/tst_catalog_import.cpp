// tst_catalog_import.cpp: the import pipeline end to end on a tree made in a QTemporaryDir.
//
// Covers: first import (counts, every skipped/failed file reported with a reason, duplicates stored
// once and linked twice), incremental re-import (nothing changed -> all unchanged; one file
// modified -> only it re-imported and its old document gone; mtime-only change -> touched; deleted
// -> marked and its documents dropped), hostile inputs (0-byte file, sparse 2 GB file, symlink
// loop, non-UTF-8 file name, invalid UTF-8 content, unreadable file, binary), cancellation and
// resume, progress reporting, and FTS5 search with filters and snippet highlights.
// To extend: add files in makeTree() and assertions in the matching slot.
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QtTest>

#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <thread>

using namespace msa::catalog;
using msa::Result;
using msa::Status;

namespace {

void writeFile(const QString& path, std::string_view bytes) {
    QDir().mkpath(QFileInfo(path).path());
    QFile f(path);
    QVERIFY2(f.open(QIODevice::WriteOnly | QIODevice::Truncate), qPrintable(path));
    f.write(bytes.data(), static_cast<qint64>(bytes.size()));
}

void setMtime(const QString& path, time_t seconds) {
    struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
    QCOMPARE(::utimensat(AT_FDCWD, QFile::encodeName(path).constData(), times, 0), 0);
}

const FileReport* findReport(const ImportReport& r, const std::string& suffix) {
    for (const FileReport& f : r.files)
        if (f.path.size() >= suffix.size() && f.path.compare(f.path.size() - suffix.size(), suffix.size(), suffix) == 0)
            return &f;
    return nullptr;
}

size_t hitCount(const Catalog& cat, const std::string& match) {
    SearchQuery q;
    q.match = match;
    auto hits = cat.search(q);
    return hits.ok() ? hits->size() : 9999;
}

void verifyIntegrity(const Catalog& cat) {
    auto rep = cat.checkIntegrity();
    QVERIFY(rep.ok());
    QVERIFY2(rep->ok, rep->problems.empty() ? "" : rep->problems.front().c_str());
}

const char* kMail = "From: Alice <alice@example.org>\r\nTo: Bob <bob@example.org>\r\nSubject: Budget meeting\r\n"
                    "Date: Tue, 05 Mar 2024 14:03:00 +0000\r\nMessage-ID: <x1@example.org>\r\n\r\n"
                    "Bring the spreadsheet about the kumquat budget.\r\n";

}  // namespace

class TstCatalogImport : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    QString root() const { return m_dir.filePath("archive"); }
    std::string dbPath() const { return m_dir.filePath("catalog.msacat").toStdString(); }

    Result<ImportReport> runImport(Catalog& cat, const std::string& collection = "main",
                                   const msa::CancelToken* cancel = nullptr, std::vector<msa::Progress>* seen = nullptr) {
        ImportRequest req;
        req.collection = collection;
        req.paths = {root().toStdString()};
        req.limits.maxFileBytes = 64ull << 20;
        req.batchFiles = 3;   // several batches even on a small tree
        return importPaths(cat, req, [seen](const msa::Progress& p, uint64_t) { if (seen) seen->push_back(p); }, cancel);
    }

    void makeTree() {
        const QString r = root();
        writeFile(r + "/notes/a.txt", "Apricot notes\n\nThe marmalade recipe needs apricots and patience.\n");
        writeFile(r + "/notes/b.md", "---\ntitle: Garden plan\ndate: 2023-05-02\n---\n# Garden\n\nPlant the zucchini early.\n");
        writeFile(r + "/notes/dup1.txt", "Duplicate content about the okapi.\n");
        writeFile(r + "/notes/sub/dup2.txt", "Duplicate content about the okapi.\n");
        writeFile(r + "/code/x.py", "def pelican():\n    return 'pelican'\n");
        writeFile(r + "/mail/m.eml", kMail);
        writeFile(r + "/bad/blob.bin", std::string("\x7f" "ELF\0\0\0\0binary", 14));
        writeFile(r + "/bad/empty.txt", "");
        writeFile(r + "/bad/broken.pdf", "%PDF-1.4\nthis is not really a pdf\n");
        writeFile(r + "/bad/invalid-utf8.txt", "caf\xC3\xA9 and a broken \xC3\x28 sequence about the narwhal\n");
        writeFile(r + QString::fromLatin1("/bad/") + QFile::decodeName("latin1-\xe9t\xe9.txt"), "file name is not UTF-8: walrus\n");
        // A symlink loop: following it would recurse forever.
        QVERIFY(QFile::link("..", r + "/notes/sub/loop"));
        // A sparse 2 GB file: above the limit, skipped without being read.
        QFile big(r + "/bad/huge.txt");
        QVERIFY(big.open(QIODevice::WriteOnly));
        QVERIFY(big.resize(qint64{2} << 30));
        big.close();
    }

private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        makeTree();
    }

    void firstImport() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        std::vector<msa::Progress> progress;
        QElapsedTimer timer;
        timer.start();
        auto rep = runImport(*cat, "main", nullptr, &progress);
        QVERIFY2(rep.ok(), rep.status().toString().c_str());
        QVERIFY2(timer.elapsed() < 20000, "the 2 GB sparse file must not be read");
        QCOMPARE(rep->nSeen, uint64_t{12});
        // good: a, b, dup1, dup2, x.py, m.eml, invalid-utf8, latin1 name
        QCOMPARE(rep->nImported, uint64_t{8});
        QCOMPARE(rep->nSkipped + rep->nFailed, uint64_t{4});
        for (const char* name : {"blob.bin", "empty.txt", "broken.pdf", "huge.txt"}) {
            const FileReport* f = findReport(*rep, name);
            QVERIFY2(f, name);
            QVERIFY2(f->outcome == "skipped" || f->outcome == "failed", name);
            QVERIFY2(!f->reason.empty() && !f->errorCode.empty(), name);
        }
        QVERIFY(findReport(*rep, "huge.txt")->reason.find("max_file_bytes") != std::string::npos);
        QVERIFY(findReport(*rep, "blob.bin")->reason.find("binary") != std::string::npos);
        QVERIFY(findReport(*rep, "empty.txt")->reason.find("empty") != std::string::npos);
        // Repaired UTF-8 is imported and reported.
        const FileReport* repaired = findReport(*rep, "invalid-utf8.txt");
        QVERIFY(repaired);
        QCOMPARE(repaired->outcome, std::string("imported"));
        QVERIFY(repaired->reason.find("invalid UTF-8") != std::string::npos);

        // Duplicates: one document, two sources.
        QCOMPARE(rep->nDocuments, uint64_t{8});
        QCOMPARE(rep->nNewDocuments, uint64_t{7});
        SearchQuery q;
        q.match = "okapi";
        auto hits = cat->search(q);
        QVERIFY(hits.ok());
        QCOMPARE(hits->size(), size_t{1});
        auto doc = cat->document(hits->front().documentId);
        QVERIFY(doc.ok());
        QCOMPARE(doc->sources.size(), size_t{2});
        QCOMPARE(doc->segments.size(), size_t{1});
        QCOMPARE(doc->segments[0].segmentKind, std::string("whole"));

        // The per-file report is also in the catalog, one row per written file.
        auto s = cat->db().prepare("SELECT count(*) FROM import_run_files WHERE run_id = ?");
        QVERIFY(s.ok());
        s->bind(1, rep->runId);
        QVERIFY(s->step().valueOr(false));
        QCOMPARE(s->int64(0), int64_t{12});

        QVERIFY(!progress.empty());
        QVERIFY(progress.back().finished);
        QCOMPARE(progress.back().done, uint64_t{12});
        QCOMPARE(progress.back().total, uint64_t{12});
        QCOMPARE(hitCount(*cat, "walrus"), size_t{1});   // non-UTF-8 file name
        verifyIntegrity(*cat);
    }

    void reimportUnchanged() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        auto before = cat->stats();
        auto rep = runImport(*cat);
        QVERIFY(rep.ok());
        QCOMPARE(rep->nUnchanged, uint64_t{12});
        QCOMPARE(rep->nImported + rep->nUpdated + rep->nTouched + rep->nDeleted + rep->nDocuments, uint64_t{0});
        QCOMPARE(rep->nBytes, uint64_t{0});   // nothing read
        auto after = cat->stats();
        QCOMPARE(after->nDocuments, before->nDocuments);
        QCOMPARE(after->nMemoryDocuments, before->nMemoryDocuments);
    }

    void modifyTouchDelete() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        SearchQuery garden;
        garden.match = "zucchini";
        const int64_t gardenId = cat->search(garden)->front().documentId;
        const int64_t memIdsBefore = cat->stats()->nMemoryDocuments;

        writeFile(root() + "/notes/a.txt", "Apricot notes\n\nThe chutney recipe replaced the old one.\n");
        setMtime(root() + "/notes/a.txt", 1700000000);
        setMtime(root() + "/notes/b.md", 1700000100);   // same content, new mtime
        QVERIFY(QFile::remove(root() + "/code/x.py"));
        QVERIFY(QFile::remove(root() + "/notes/dup1.txt"));

        auto rep = runImport(*cat);
        QVERIFY2(rep.ok(), rep.status().toString().c_str());
        QCOMPARE(rep->nUpdated, uint64_t{1});
        QCOMPARE(rep->nTouched, uint64_t{1});
        QCOMPARE(rep->nDeleted, uint64_t{2});
        QCOMPARE(rep->nImported, uint64_t{0});
        QCOMPARE(rep->nUnchanged, uint64_t{8});
        QCOMPARE(rep->nDocuments, uint64_t{1});

        QCOMPARE(hitCount(*cat, "marmalade"), size_t{0});   // the old version is gone
        QCOMPARE(hitCount(*cat, "chutney"), size_t{1});
        QCOMPARE(hitCount(*cat, "pelican"), size_t{0});     // deleted file's document dropped
        QCOMPARE(hitCount(*cat, "okapi"), size_t{1});       // still linked from dup2
        QCOMPARE(cat->search(garden)->front().documentId, gardenId);   // touched: untouched document
        // New memory document ids are never reused ids of removed ones (AUTOINCREMENT).
        auto maxId = cat->db().prepare("SELECT max(id) FROM memory_documents");
        QVERIFY(maxId.ok() && maxId->step().valueOr(false));
        QVERIFY(maxId->int64(0) > memIdsBefore);

        auto files = cat->sourceFiles(std::string("main"));
        QVERIFY(files.ok());
        int nDeleted = 0;
        for (const SourceFileInfo& f : *files) nDeleted += f.status == "deleted";
        QCOMPARE(nDeleted, 2);
        verifyIntegrity(*cat);

        // A deleted file that comes back is imported again.
        writeFile(root() + "/code/x.py", "def pelican():\n    return 'pelican'\n");
        auto back = runImport(*cat);
        QVERIFY(back.ok());
        QCOMPARE(back->nImported, uint64_t{1});
        QCOMPARE(hitCount(*cat, "pelican"), size_t{1});
        verifyIntegrity(*cat);
    }

    void unreadableFile() {
        if (::geteuid() == 0) QSKIP("running as root: permissions do not stop reads");
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        const QString path = root() + "/notes/secret.txt";
        writeFile(path, "secret");
        QVERIFY(QFile::setPermissions(path, QFileDevice::Permissions()));
        auto rep = runImport(*cat);
        QFile::setPermissions(path, QFile::ReadOwner | QFile::WriteOwner);
        QVERIFY(rep.ok());
        const FileReport* f = findReport(*rep, "secret.txt");
        QVERIFY(f);
        QCOMPARE(f->outcome, std::string("failed"));
        QCOMPARE(f->errorCode, std::string("permission_denied"));
        QFile::remove(path);
    }

    void searchFiltersAndSnippets() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        // A second collection holding the same e-mail: the document is shared, the filter still works.
        QTemporaryDir other;
        writeFile(other.filePath("inbox/m.eml"), kMail);
        writeFile(other.filePath("inbox/n.txt"), "Only in the other collection: kumquat jam.\n");
        ImportRequest req;
        req.collection = "other";
        req.paths = {other.path().toStdString()};
        auto rep = importPaths(*cat, req, {}, nullptr);
        QVERIFY(rep.ok());
        QCOMPARE(rep->nNewDocuments, uint64_t{1});

        SearchQuery q;
        q.match = "kumquat";
        q.highlightOpen = "<<";
        q.highlightClose = ">>";
        auto all = cat->search(q);
        QVERIFY(all.ok());
        QCOMPARE(all->size(), size_t{2});
        for (const SearchHit& h : *all) QVERIFY2(h.snippet.find("<<kumquat>>") != std::string::npos, h.snippet.c_str());
        QVERIFY(all->at(0).score >= all->at(1).score);

        q.collection = "main";
        QCOMPARE(cat->search(q)->size(), size_t{1});
        q.collection = "other";
        QCOMPARE(cat->search(q)->size(), size_t{2});
        q.collection.reset();
        q.kind = "email";
        auto mail = cat->search(q);
        QCOMPARE(mail->size(), size_t{1});
        QCOMPARE(mail->front().title, std::string("Budget meeting"));
        QCOMPARE(mail->front().author, std::string("Alice <alice@example.org>"));
        q.kind.reset();
        q.participant = "bob@example";
        QCOMPARE(cat->search(q)->size(), size_t{1});
        q.participant = "nobody";
        QCOMPARE(cat->search(q)->size(), size_t{0});
        q.participant.reset();
        q.fromUnix = 1709596800;   // 2024-03-05
        q.toUnix = 1709683200;     // 2024-03-06
        QCOMPARE(cat->search(q)->size(), size_t{1});
        q.fromUnix = 1709683200;
        q.toUnix.reset();
        QCOMPARE(cat->search(q)->size(), size_t{0});

        // FTS5 syntax: phrases, prefixes, boolean operators; a malformed query is InvalidArgument.
        SearchQuery phrase;
        phrase.match = "\"kumquat budget\"";
        QCOMPARE(cat->search(phrase)->size(), size_t{1});
        phrase.match = "kumq*";
        QCOMPARE(cat->search(phrase)->size(), size_t{2});
        phrase.match = "kumquat NOT jam";
        QCOMPARE(cat->search(phrase)->size(), size_t{1});
        phrase.match = "\"unbalanced";
        auto bad = cat->search(phrase);
        QVERIFY(!bad.ok());
        QVERIFY2(bad.status().code() == msa::ErrorCode::InvalidArgument, bad.status().toString().c_str());
        // Title matches weigh more than body matches.
        SearchQuery title;
        title.match = "garden";
        QVERIFY(!cat->search(title)->empty());
        QCOMPARE(cat->search(title)->front().title, std::string("Garden plan"));
    }

    void cancelAndResume() {
        QTemporaryDir dir;
        const std::string db = dir.filePath("c.msacat").toStdString();
        auto cat = Catalog::open(db);
        QVERIFY(cat.ok());
        msa::CancelToken cancel;
        cancel.cancel();
        auto rep = runImport(*cat, "main", &cancel);
        QVERIFY(rep.ok());
        QVERIFY(rep->cancelled);
        QCOMPARE(rep->nImported, uint64_t{0});
        QCOMPARE(cat->stats()->nDeleted, int64_t{0});
        auto again = runImport(*cat);
        QVERIFY(again.ok());
        QVERIFY(!again->cancelled);
        QVERIFY2(again->nImported == 7, qPrintable(QString::fromStdString(toJson(*again).dump())));
        verifyIntegrity(*cat);
        // The run history says what happened.
        auto s = cat->db().prepare("SELECT status FROM import_runs ORDER BY id");
        QVERIFY(s.ok());
        QVERIFY(s->step().valueOr(false));
        QCOMPARE(s->text(0), std::string("cancelled"));
        QVERIFY(s->step().valueOr(false));
        QCOMPARE(s->text(0), std::string("completed"));
    }

    void missingRootIsReportedNotDeleted() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        ImportRequest req;
        req.collection = "main";
        req.paths = {m_dir.filePath("does-not-exist").toStdString()};
        auto rep = importPaths(*cat, req, {}, nullptr);
        QVERIFY(rep.ok());
        QCOMPARE(rep->nFailed, uint64_t{1});
        QCOMPARE(rep->files.front().errorCode, std::string("not_found"));
        QCOMPARE(rep->nDeleted, uint64_t{0});
    }

    void fifoAndFileChangingWhileRead() {
        QTemporaryDir dir;
        const QString tree = dir.filePath("t");
        writeFile(tree + "/stable.txt", "A stable file about the ibis.\n");
        // A FIFO must not block the import (nobody ever writes to it).
        QCOMPARE(::mkfifo(QFile::encodeName(tree + "/pipe.txt").constData(), 0644), 0);
        QVERIFY(QFile::link(tree + "/no-such-target.txt", tree + "/dangling.txt"));
        // A file that grows while the import runs.
        const QString growing = tree + "/growing.txt";
        writeFile(growing, "Growing log about the egret.\n");
        std::atomic<bool> stop{false};
        std::thread appender([&] {
            while (!stop.load()) {
                QFile f(growing);
                if (f.open(QIODevice::Append)) f.write(QByteArray(4096, 'e') + "\n");
                f.close();
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        });
        auto cat = Catalog::open(dir.filePath("c.msacat").toStdString());
        QVERIFY(cat.ok());
        ImportRequest req;
        req.paths = {tree.toStdString()};
        auto rep = importPaths(*cat, req, {}, nullptr);
        stop = true;
        appender.join();
        QVERIFY2(rep.ok(), rep.status().toString().c_str());
        QCOMPARE(rep->nSeen, uint64_t{3});   // the FIFO is not a regular file: not even seen
        const FileReport* dangling = findReport(*rep, "dangling.txt");
        QVERIFY(dangling);
        QCOMPARE(dangling->outcome, std::string("failed"));
        QVERIFY(dangling->reason.find("broken symbolic link") != std::string::npos);
        const FileReport* g = findReport(*rep, "growing.txt");
        qInfo("growing file: %s", g ? (g->outcome + ": " + g->reason).c_str() : "imported between two appends");
        if (g) {   // caught in the act: reported and retried next time
            QCOMPARE(g->outcome, std::string("failed"));
            QVERIFY2(g->reason.find("retried") != std::string::npos, g->reason.c_str());
        }
        verifyIntegrity(*cat);
        auto again = importPaths(*cat, req, {}, nullptr);
        QVERIFY(again.ok());
        QCOMPARE(hitCount(*cat, "egret"), size_t{1});
        QCOMPARE(hitCount(*cat, "ibis"), size_t{1});
        verifyIntegrity(*cat);
    }

    void sameTextUnderTwoNamesIsOneDocument() {
        QTemporaryDir dir;
        writeFile(dir.filePath("t/LICENSE-a.py"), "# The albatross licence, version 1.\n");
        writeFile(dir.filePath("t/sub/LICENSE-b.py"), "# The albatross licence, version 1.\n");
        auto cat = Catalog::open(dir.filePath("c.msacat").toStdString());
        QVERIFY(cat.ok());
        ImportRequest req;
        req.paths = {dir.filePath("t").toStdString()};
        auto rep = importPaths(*cat, req, {}, nullptr);
        QVERIFY(rep.ok());
        QCOMPARE(rep->nImported, uint64_t{2});
        QCOMPARE(rep->nNewDocuments, uint64_t{1});
        SearchQuery q;
        q.match = "albatross";
        auto hits = cat->search(q);
        QCOMPARE(hits->size(), size_t{1});
        QCOMPARE(cat->document(hits->front().documentId)->sources.size(), size_t{2});
        // Changing one copy splits them; deleting the other keeps the changed one.
        writeFile(dir.filePath("t/LICENSE-a.py"), "# The albatross licence, version 2.\n");
        setMtime(dir.filePath("t/LICENSE-a.py"), 1600000000);
        QVERIFY(QFile::remove(dir.filePath("t/sub/LICENSE-b.py")));
        auto rep2 = importPaths(*cat, req, {}, nullptr);
        QVERIFY(rep2.ok());
        QCOMPARE(rep2->nUpdated, uint64_t{1});
        QCOMPARE(rep2->nDeleted, uint64_t{1});
        QCOMPARE(cat->stats()->nDocuments, int64_t{1});
        q.match = "\"version 1\"";
        QCOMPARE(cat->search(q)->size(), size_t{0});
        verifyIntegrity(*cat);
    }

    void secondImporterIsBusy() {
        auto cat = Catalog::open(dbPath());
        QVERIFY(cat.ok());
        // Hold the import lock as another process would.
        const QByteArray lockPath = QFile::encodeName(QString::fromStdString(dbPath() + ".import-lock"));
        const int fd = ::open(lockPath.constData(), O_RDWR | O_CREAT, 0644);
        QVERIFY(fd >= 0);
        QCOMPARE(::flock(fd, LOCK_EX), 0);
        // flock locks belong to the open file description: a second open in this process conflicts too.
        auto rep = runImport(*cat);
        ::close(fd);
        QVERIFY(!rep.ok());
        QCOMPARE(rep.status().code(), msa::ErrorCode::Busy);
    }
};

QTEST_GUILESS_MAIN(TstCatalogImport)
#include "tst_catalog_import.moc"

// catalog_host.h: the catalog's own thread (DESIGN.md §6, CONVENTIONS.md #8-#10).
//
// CatalogHost is a QObject that lives on a dedicated QThread and owns the one msa::catalog::Catalog
// connection of the GUI process (one connection, one owner: CONVENTIONS.md #11). It runs imports,
// searches, document listings and document fetches; every request reaches it as a queued call and
// every result leaves it as a queued signal carrying value types, so no catalog object is ever touched
// by two threads and the GUI never waits on SQLite.
//
// CatalogClient is its GUI-thread front: it creates the thread and the host, offers the requests as
// plain member functions (they return at once) and re-emits the host's results on the GUI thread.
// Import progress is coalesced on the worker to at most ~15 updates per second. Cancelling an import
// sets the request's CancelToken from the GUI thread (an atomic); the pipeline commits what it finished
// and reports cancelled = true.
//
// Shutdown (CatalogClient::shutdown(), also run by the destructor): cancel the running import → the
// import returns → the catalog is closed on its own thread → the thread's event loop quits → wait.
// After shutdown() requests are ignored.
//
// Ownership: CatalogClient owns the thread and the host (deleted after the thread has finished).
// Thread affinity: CatalogClient on the GUI thread; CatalogHost on its thread only.
//
// Usage:
//     auto* client = new CatalogClient(path, this);
//     connect(client, &CatalogClient::collectionsReady, this, &View::showCollections);
//     client->open();                                 // → opened(ok, message) + collectionsReady
//     client->startImport("notes", {"/home/me/notes"}); // → importProgress* + importFinished
//
// Failures (catalog Status codes: NotFound, Corrupt, Unsupported, Busy, PermissionDenied, DiskFull,
// IoError, InvalidArgument for a bad FTS5 query, Internal) arrive as failed(operation, summary, detail);
// none of them ends the thread.
#pragma once

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/util/progress.h"

#include <QObject>
#include <QString>
#include <QStringList>

#include <chrono>
#include <memory>
#include <optional>
#include <vector>

class QThread;

namespace msa::ui {

// One coalesced import progress update (value type, crosses threads).
struct ImportProgressUpdate {
    QString collection;
    quint64 done = 0, total = 0;               // files
    quint64 bytesDone = 0, bytesTotal = 0;
    double filesPerSecond = 0, bytesPerSecond = 0;
    double elapsedSeconds = 0, etaSeconds = -1;   // eta < 0: unknown
    quint64 nDocuments = 0;
    QString current;
    bool finished = false;
};

// The end of an import: either a report (possibly cancelled) or the Status that stopped it.
struct ImportOutcome {
    bool ok = false;
    QString collection;
    QString error;                 // Status::toString() when !ok
    catalog::ImportReport report;  // valid when ok
};

// A document listing or search result set, tagged with its request.
struct DocumentList {
    quint64 requestId = 0;
    QString query;                 // empty: a listing, else the FTS5 query
    QString collection;            // empty: all collections
    std::vector<catalog::DocumentInfo> documents;   // listing (text left empty, segments counted)
    std::vector<catalog::SearchHit> hits;           // search
};

class CatalogHost : public QObject {
    Q_OBJECT
public:
    explicit CatalogHost(QString path);
    ~CatalogHost() override;

    // Worker-thread entry points, reached only through CatalogClient's queued calls.
    void open();
    void close();
    void refreshCollections();
    void listDocuments(quint64 requestId, const QString& collection, int limit);
    void search(quint64 requestId, const QString& query, const QString& collection, int limit);
    void fetchDocument(qint64 documentId);
    // The catalog document behind a memory document (routing traces name memory document ids).
    void fetchMemoryDocument(qint64 memoryDocumentId);
    void runImport(const QString& collection, const QStringList& paths, const std::shared_ptr<CancelToken>& cancel);

signals:
    void opened(bool ok, const QString& message);
    void collectionsReady(const std::vector<msa::catalog::CollectionInfo>& collections);
    void documentsReady(const msa::ui::DocumentList& list);
    void documentReady(const msa::catalog::DocumentInfo& document);
    void importProgress(const msa::ui::ImportProgressUpdate& update);
    void importFinished(const msa::ui::ImportOutcome& outcome);
    void failed(const QString& operation, const QString& summary, const QString& detail);

private:
    bool ready(const QString& operation);
    void fail(const QString& operation, const Status& status);

    QString m_path;
    std::optional<catalog::Catalog> m_catalog;
};

class CatalogClient : public QObject {
    Q_OBJECT
public:
    explicit CatalogClient(QString path, QObject* parent = nullptr);
    ~CatalogClient() override;

    // The default catalog file: <AppDataLocation>/catalog.sqlite.
    static QString defaultPath();

    const QString& path() const { return m_path; }
    bool importRunning() const { return m_cancel != nullptr; }
    bool isShutDown() const { return m_thread == nullptr; }

    void open();
    void refreshCollections();
    quint64 listDocuments(const QString& collection, int limit = 5000);
    quint64 search(const QString& query, const QString& collection, int limit = 200);
    void fetchDocument(qint64 documentId);
    // → documentReady for the document holding this memory document (routing/citation ids).
    void fetchMemoryDocument(qint64 memoryDocumentId);
    // Returns false (and emits failed) when an import is already running.
    bool startImport(const QString& collection, const QStringList& paths);
    void cancelImport();
    // cancel → finish → close the catalog on its thread → quit → wait. Idempotent.
    void shutdown();

signals:
    void opened(bool ok, const QString& message);
    void collectionsReady(const std::vector<msa::catalog::CollectionInfo>& collections);
    void documentsReady(const msa::ui::DocumentList& list);
    void documentReady(const msa::catalog::DocumentInfo& document);
    void importStarted(const QString& collection, const QStringList& paths);
    void importProgress(const msa::ui::ImportProgressUpdate& update);
    void importFinished(const msa::ui::ImportOutcome& outcome);
    void failed(const QString& operation, const QString& summary, const QString& detail);

private:
    template <typename F>
    void post(F&& f);

    QString m_path;
    QThread* m_thread = nullptr;
    CatalogHost* m_host = nullptr;
    std::shared_ptr<CancelToken> m_cancel;   // the running import's token (GUI thread only)
    quint64 m_nextRequest = 1;
};

}  // namespace msa::ui

Q_DECLARE_METATYPE(msa::ui::ImportProgressUpdate)
Q_DECLARE_METATYPE(msa::ui::ImportOutcome)
Q_DECLARE_METATYPE(msa::ui::DocumentList)
Q_DECLARE_METATYPE(msa::catalog::DocumentInfo)
Q_DECLARE_METATYPE(std::vector<msa::catalog::CollectionInfo>)

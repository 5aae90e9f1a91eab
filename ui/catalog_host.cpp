#include "ui/catalog_host.h"

#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>
#include <QThread>

#include <filesystem>
#include <utility>

namespace msa::ui {

namespace {
QString qs(const std::string& s) { return QString::fromStdString(s); }

std::filesystem::path toPath(const QString& s) { return std::filesystem::path(s.toStdU16String()); }

// Progress reaches the GUI at most this often; the pipeline itself reports more often.
constexpr std::chrono::milliseconds kProgressInterval{66};

void registerTypes() {
    qRegisterMetaType<ImportProgressUpdate>();
    qRegisterMetaType<ImportOutcome>();
    qRegisterMetaType<DocumentList>();
    qRegisterMetaType<catalog::DocumentInfo>();
    qRegisterMetaType<std::vector<catalog::CollectionInfo>>();
}
}  // namespace

// ---------------------------------------------------------------- CatalogHost (worker thread)

CatalogHost::CatalogHost(QString path) : m_path(std::move(path)) {}
CatalogHost::~CatalogHost() = default;

void CatalogHost::fail(const QString& operation, const Status& status) {
    const QString detail = qs(status.toString());
    emit failed(operation, tr("%1 failed: %2").arg(operation, qs(status.message())), detail);
}

bool CatalogHost::ready(const QString& operation) {
    if (m_catalog) return true;
    emit failed(operation, tr("%1 failed: the catalog is not open").arg(operation),
                tr("catalog file: %1").arg(m_path));
    return false;
}

void CatalogHost::open() {
    if (m_catalog) {
        emit opened(true, m_path);
        return;
    }
    const QFileInfo info(m_path);
    if (!info.absoluteDir().exists() && !QDir().mkpath(info.absolutePath())) {
        const QString msg = tr("cannot create the folder of the catalog %1").arg(m_path);
        emit opened(false, msg);
        emit failed(tr("Opening the catalog"), msg, msg);
        return;
    }
    auto cat = catalog::Catalog::open(toPath(m_path));
    if (!cat.ok()) {
        emit opened(false, qs(cat.status().toString()));
        fail(tr("Opening the catalog"), cat.status());
        return;
    }
    m_catalog.emplace(std::move(cat).value());
    emit opened(true, m_path);
    refreshCollections();
}

void CatalogHost::close() { m_catalog.reset(); }

void CatalogHost::refreshCollections() {
    if (!ready(tr("Listing collections"))) return;
    auto cols = m_catalog->collections();
    if (!cols.ok()) return fail(tr("Listing collections"), cols.status());
    emit collectionsReady(cols.value());
}

void CatalogHost::listDocuments(quint64 requestId, const QString& collection, int limit) {
    if (!ready(tr("Listing documents"))) return;
    std::optional<std::string> col;
    if (!collection.isEmpty()) col = collection.toStdString();
    auto docs = m_catalog->listDocuments(col, limit, 0);
    if (!docs.ok()) return fail(tr("Listing documents"), docs.status());
    DocumentList list;
    list.requestId = requestId;
    list.collection = collection;
    list.documents = std::move(docs).value();
    emit documentsReady(list);
}

void CatalogHost::search(quint64 requestId, const QString& query, const QString& collection, int limit) {
    if (!ready(tr("Searching"))) return;
    catalog::SearchQuery q;
    q.match = query.toStdString();
    if (!collection.isEmpty()) q.collection = collection.toStdString();
    q.limit = limit;
    // Control characters cannot occur in extracted text, so the view can escape the snippet as HTML
    // and then turn these markers into <b>…</b> without ambiguity.
    q.highlightOpen.assign(1, '\x02');
    q.highlightClose.assign(1, '\x03');
    q.snippetTokens = 24;
    auto hits = m_catalog->search(q);
    if (!hits.ok()) return fail(tr("Searching"), hits.status());
    DocumentList list;
    list.requestId = requestId;
    list.query = query;
    list.collection = collection;
    list.hits = std::move(hits).value();
    emit documentsReady(list);
}

void CatalogHost::fetchDocument(qint64 documentId) {
    if (!ready(tr("Opening a document"))) return;
    auto doc = m_catalog->document(documentId);
    if (!doc.ok()) return fail(tr("Opening a document"), doc.status());
    emit documentReady(doc.value());
}

void CatalogHost::fetchMemoryDocument(qint64 memoryDocumentId) {
    if (!ready(tr("Opening a document"))) return;
    auto m = m_catalog->memoryDocument(memoryDocumentId);
    if (!m.ok()) return fail(tr("Opening a document"), m.status());
    fetchDocument(m.value().documentId);
}

void CatalogHost::runImport(const QString& collection, const QStringList& paths,
                            const std::shared_ptr<CancelToken>& cancel) {
    ImportOutcome outcome;
    outcome.collection = collection;
    if (!m_catalog) {
        outcome.error = tr("the catalog is not open (%1)").arg(m_path);
        emit importFinished(outcome);
        return;
    }
    catalog::ImportRequest req;
    req.collection = collection.toStdString();
    for (const QString& p : paths) req.paths.push_back(toPath(p));

    using Clock = std::chrono::steady_clock;
    Clock::time_point last{};
    auto onProgress = [&](const Progress& p, uint64_t nDocuments) {
        const auto now = Clock::now();
        if (!p.finished && now - last < kProgressInterval) return;
        last = now;
        ImportProgressUpdate u;
        u.collection = collection;
        u.done = p.done;
        u.total = p.total;
        u.bytesDone = p.bytesDone;
        u.bytesTotal = p.bytesTotal;
        u.filesPerSecond = p.unitsPerSecond;
        u.bytesPerSecond = p.bytesPerSecond;
        u.elapsedSeconds = p.elapsedSeconds;
        u.etaSeconds = p.etaSeconds;
        u.nDocuments = nDocuments;
        u.current = qs(p.current);
        u.finished = p.finished;
        emit importProgress(u);
    };
    auto rep = catalog::importPaths(*m_catalog, req, onProgress, cancel.get());
    if (rep.ok()) {
        outcome.ok = true;
        outcome.report = std::move(rep).value();
    } else {
        outcome.error = qs(rep.status().toString());
    }
    emit importFinished(outcome);
    refreshCollections();
}

// ---------------------------------------------------------------- CatalogClient (GUI thread)

CatalogClient::CatalogClient(QString path, QObject* parent) : QObject(parent), m_path(std::move(path)) {
    registerTypes();
    if (m_path.isEmpty()) m_path = defaultPath();
    m_thread = new QThread();
    m_thread->setObjectName("catalog");
    m_host = new CatalogHost(m_path);
    m_host->moveToThread(m_thread);
    connect(m_host, &CatalogHost::opened, this, &CatalogClient::opened);
    connect(m_host, &CatalogHost::collectionsReady, this, &CatalogClient::collectionsReady);
    connect(m_host, &CatalogHost::documentsReady, this, &CatalogClient::documentsReady);
    connect(m_host, &CatalogHost::documentReady, this, &CatalogClient::documentReady);
    connect(m_host, &CatalogHost::importProgress, this, &CatalogClient::importProgress);
    connect(m_host, &CatalogHost::importFinished, this, [this](const ImportOutcome& o) {
        m_cancel.reset();
        emit importFinished(o);
    });
    connect(m_host, &CatalogHost::failed, this, &CatalogClient::failed);
    m_thread->start();
}

CatalogClient::~CatalogClient() { shutdown(); }

QString CatalogClient::defaultPath() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("catalog.sqlite");
}

template <typename F>
void CatalogClient::post(F&& f) {
    if (!m_host) return;
    QMetaObject::invokeMethod(m_host, std::forward<F>(f), Qt::QueuedConnection);
}

void CatalogClient::open() {
    post([h = m_host] { h->open(); });
}

void CatalogClient::refreshCollections() {
    post([h = m_host] { h->refreshCollections(); });
}

quint64 CatalogClient::listDocuments(const QString& collection, int limit) {
    const quint64 id = m_nextRequest++;
    post([h = m_host, id, collection, limit] { h->listDocuments(id, collection, limit); });
    return id;
}

quint64 CatalogClient::search(const QString& query, const QString& collection, int limit) {
    const quint64 id = m_nextRequest++;
    post([h = m_host, id, query, collection, limit] { h->search(id, query, collection, limit); });
    return id;
}

void CatalogClient::fetchDocument(qint64 documentId) {
    post([h = m_host, documentId] { h->fetchDocument(documentId); });
}

void CatalogClient::fetchMemoryDocument(qint64 memoryDocumentId) {
    post([h = m_host, memoryDocumentId] { h->fetchMemoryDocument(memoryDocumentId); });
}

bool CatalogClient::startImport(const QString& collection, const QStringList& paths) {
    if (!m_host) return false;
    if (m_cancel) {
        emit failed(tr("Importing"), tr("An import is already running; wait for it or cancel it first."),
                    tr("running import into the catalog %1").arg(m_path));
        return false;
    }
    m_cancel = std::make_shared<CancelToken>();
    post([h = m_host, collection, paths, token = m_cancel] { h->runImport(collection, paths, token); });
    emit importStarted(collection, paths);
    return true;
}

void CatalogClient::cancelImport() {
    if (m_cancel) m_cancel->cancel();
}

void CatalogClient::shutdown() {
    if (!m_thread) return;
    cancelImport();
    // Queued behind the running import (which returns promptly once cancelled): the connection is
    // closed on the thread that owns it, then the event loop ends.
    post([h = m_host] { h->close(); });
    m_thread->quit();
    m_thread->wait();
    delete m_host;
    m_host = nullptr;
    delete m_thread;
    m_thread = nullptr;
    m_cancel.reset();
}

}  // namespace msa::ui

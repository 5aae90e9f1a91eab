#include "ui/memory_host.h"

#include "core/jobs/bank_files.h"
#include "core/memory/bank.h"
#include "core/model/dtype.h"

#include <QFileInfo>
#include <QLocale>
#include <QThread>

#include <chrono>
#include <filesystem>
#include <utility>

namespace msa::ui {

namespace {
QString qs(const std::string& s) { return QString::fromStdString(s); }
std::filesystem::path toPath(const QString& s) { return std::filesystem::path(s.toStdU16String()); }

// The plot gets a point at most this often; buildMemory's meter reports every 100 ms.
constexpr std::chrono::milliseconds kProgressInterval{250};

void registerTypes() {
    qRegisterMetaType<MemoryBuildRequest>();
    qRegisterMetaType<MemoryProgressUpdate>();
    qRegisterMetaType<BankFacts>();
    qRegisterMetaType<MemoryBuildOutcome>();
    qRegisterMetaType<BankFileRequest>();
    qRegisterMetaType<BankFileProgress>();
    qRegisterMetaType<BankFileOutcome>();
}
}  // namespace

// ---------------------------------------------------------------- MemoryHost (worker thread)

MemoryHost::MemoryHost() = default;
MemoryHost::~MemoryHost() = default;

BankFacts MemoryHost::bankFacts(const QString& path) {
    BankFacts f;
    f.path = path;
    f.exists = !path.isEmpty() && QFileInfo::exists(QFileInfo(path).absoluteFilePath() + "/manifest.json");
    if (!f.exists) return f;
    auto bank = memory::Bank::open(toPath(path));
    if (!bank.ok()) {
        f.error = qs(bank.status().toString());
        return f;
    }
    const memory::Bank& b = bank.value();
    const memory::BankParams& p = b.params();
    f.ok = true;
    f.nDocuments = b.nDocuments();
    f.nChunks = b.nChunks();
    f.nTokens = b.nTokens();
    f.nBytes = b.diskBytes();
    f.nTombstones = b.nTombstones();
    f.nShards = b.nShards();
    f.generation = b.generation();
    f.modelFingerprint = qs(p.modelFingerprint);
    QStringList layers;
    for (uint32_t l : p.routingLayers) layers << QString::number(l);
    const auto dtype = model::dtypeName(p.storage);
    const auto scoring = memory::scoringBranchName(p.scoring);
    f.routing = QObject::tr("chunk %1 tokens, top-k %2, routing layers %3 of %4, %5 route heads × %6, %7, %8 scoring%9")
                    .arg(p.chunkSize)
                    .arg(p.topK)
                    .arg(layers.join(','))
                    .arg(p.nLayers)
                    .arg(p.nRouteHeads)
                    .arg(p.headDim)
                    .arg(QString::fromUtf8(dtype.data(), static_cast<qsizetype>(dtype.size())),
                         QString::fromUtf8(scoring.data(), static_cast<qsizetype>(scoring.size())),
                         p.keysShared ? QObject::tr(", keys shared") : QString());
    return f;
}

void MemoryHost::readBank(const QString& path) { emit bankReady(bankFacts(path)); }

void MemoryHost::runBuild(const MemoryBuildRequest& request, const std::shared_ptr<CancelToken>& cancel) {
    MemoryBuildOutcome outcome;
    outcome.collection = request.collection;
    const BankFacts before = bankFacts(request.bankPath);
    outcome.alreadyInBank = before.ok ? before.nDocuments : 0;
    emit buildStarted(request.bankPath, outcome.alreadyInBank);

    jobs::BuildOptions o;
    o.catalog = toPath(request.catalogPath);
    o.collection = request.collection.toStdString();
    o.model = toPath(request.modelPath);
    o.bank = toPath(request.bankPath);
    o.nThreads = static_cast<size_t>(std::max(0, request.threads));
    o.maxDocumentTokens = static_cast<size_t>(std::max(1, request.maxDocumentTokens));
    o.storage = request.storage == "f32" ? model::DType::F32 : model::DType::BF16;
    o.device = request.device;
    o.cancel = cancel.get();

    using Clock = std::chrono::steady_clock;
    Clock::time_point last{};
    double lastElapsed = 0;
    uint64_t lastTokens = 0;
    o.progress = [&](const Progress& p) {
        const auto now = Clock::now();
        if (!p.finished && now - last < kProgressInterval) return;
        last = now;
        MemoryProgressUpdate u;
        u.done = p.done;
        u.total = p.total;
        u.tokens = p.bytesDone;
        u.elapsedSeconds = p.elapsedSeconds;
        const double dt = p.elapsedSeconds - lastElapsed;
        u.tokensPerSecond = dt > 0 ? static_cast<double>(p.bytesDone - lastTokens) / dt : 0;
        u.averageTokensPerSecond = p.bytesPerSecond;
        u.etaSeconds = p.etaSeconds;
        u.current = qs(p.current);
        u.finished = p.finished;
        lastElapsed = p.elapsedSeconds;
        lastTokens = p.bytesDone;
        emit buildProgress(u);
    };

    auto rep = jobs::buildMemory(o);
    if (rep.ok()) {
        outcome.ok = true;
        outcome.report = std::move(rep).value();
        const auto& r = outcome.report;
        outcome.summary = (r.cancelled ? QObject::tr("Build cancelled: %1 encoded, %2 unchanged, %3 skipped, %4 removed "
                                                     "(committed; Build again resumes)")
                                       : QObject::tr("Build finished: %1 encoded, %2 unchanged, %3 skipped, %4 removed"))
                              .arg(r.nEncoded)
                              .arg(r.nUnchanged)
                              .arg(r.nSkipped)
                              .arg(r.nRemoved) +
                          QObject::tr(" · %1 tokens in %2 s (%3 tokens/s)")
                              .arg(r.nTokens)
                              .arg(r.seconds, 0, 'f', 1)
                              .arg(r.tokensPerSecond, 0, 'f', 0);
    } else {
        outcome.error = qs(rep.status().toString());
        outcome.summary = QObject::tr("Build of “%1” failed: %2").arg(request.collection, qs(rep.status().message()));
    }
    emit buildFinished(outcome);
    // What is on disk now (the last commit survives a failure, so a partial bank still shows).
    emit bankReady(bankFacts(request.bankPath));
}

void MemoryHost::runBankFile(const BankFileRequest& request, const std::shared_ptr<CancelToken>& cancel) {
    BankFileOutcome out;
    out.operation = request.operation;
    out.bankPath = request.bankPath;
    out.file = request.file;
    using Clock = std::chrono::steady_clock;
    Clock::time_point last{};
    ProgressFn progress = [&](const Progress& p) {
        const auto now = Clock::now();
        if (!p.finished && now - last < kProgressInterval) return;
        last = now;
        BankFileProgress u;
        u.operation = request.operation;
        u.bytesDone = p.bytesDone;
        u.bytesTotal = p.bytesTotal;
        u.bytesPerSecond = p.bytesPerSecond;
        u.etaSeconds = p.etaSeconds;
        u.finished = p.finished;
        emit bankFileProgress(u);
    };
    const QLocale loc;
    auto fail = [&](const Status& st, const QString& what) {
        out.cancelled = st.code() == ErrorCode::Cancelled;
        out.error = qs(st.toString());
        out.summary = out.cancelled ? QObject::tr("%1 cancelled: nothing was changed.").arg(what)
                                    : QObject::tr("%1 failed: %2").arg(what, qs(st.message()));
    };

    switch (request.operation) {
    case BankFileOperation::Export: {
        jobs::BankExportRequest r;
        r.bank = toPath(request.bankPath);
        r.file = toPath(request.file);
        if (!request.catalogPath.isEmpty()) r.catalog = toPath(request.catalogPath);
        r.zstd = request.zstd;
        r.cancel = cancel.get();
        r.progress = progress;
        auto res = jobs::exportBank(r);
        if (!res) {
            fail(res.status(), QObject::tr("Export of %1").arg(request.bankPath));
            break;
        }
        const auto& x = res->archive;
        out.ok = true;
        out.summary = QObject::tr("Exported %1 documents (%2 files) to %3: %4 on disk (%5 raw%6), %7 s")
                          .arg(x.nDocuments)
                          .arg(x.nFiles)
                          .arg(request.file, loc.formattedDataSize(static_cast<qint64>(x.fileBytes)),
                               loc.formattedDataSize(static_cast<qint64>(x.rawBytes)),
                               x.compressed ? QObject::tr(", zstd") : QString())
                          .arg(x.seconds, 0, 'f', 1);
        if (r.catalog)
            out.summary += QObject::tr("; with the text of %1 catalog documents%2")
                               .arg(x.nDocumentRecords)
                               .arg(res->nMissingDocuments
                                        ? QObject::tr(" (%1 bank documents are not in the catalog)").arg(res->nMissingDocuments)
                                        : QString());
        break;
    }
    case BankFileOperation::Import: {
        jobs::BankImportRequest r;
        r.file = toPath(request.file);
        r.bank = toPath(request.bankPath);
        if (!request.catalogPath.isEmpty()) r.catalog = toPath(request.catalogPath);
        if (!request.modelPath.isEmpty()) r.model = request.modelPath.toStdString();
        r.force = request.force;
        r.cancel = cancel.get();
        r.progress = progress;
        auto res = jobs::importBank(r);
        if (!res) {
            const Status& st = res.status();
            fail(st, QObject::tr("Import of %1").arg(request.file));
            if (st.code() == ErrorCode::Mismatch)
                out.summary = QObject::tr("Import refused: %1 holds a bank built with another model than %2; choose "
                                          "that model in the Memory tab (or Settings) first. Nothing was changed.")
                                  .arg(request.file, QFileInfo(request.modelPath).fileName());
            break;
        }
        const auto& x = res->archive;
        out.ok = true;
        out.bankPath = qs(x.bank.string());
        out.summary = QObject::tr("Imported %1 documents (%2 files, every checksum verified) into %3%4, %5 s")
                          .arg(x.nDocuments)
                          .arg(x.nFiles)
                          .arg(out.bankPath, x.replaced ? QObject::tr(" (replaced the previous bank)") : QString())
                          .arg(x.seconds, 0, 'f', 1);
        if (r.catalog)
            out.summary += QObject::tr("; catalog: %1 documents added, %2 already present")
                               .arg(res->documents.nDocumentsAdded)
                               .arg(res->documents.nMemoryDocumentsPresent);
        break;
    }
    case BankFileOperation::Verify: {
        const auto t0 = Clock::now();
        auto bank = memory::Bank::open(toPath(request.bankPath));
        if (!bank) {
            fail(bank.status(), QObject::tr("Verify of %1").arg(request.bankPath));
            break;
        }
        auto rep = bank->verify(cancel.get());
        if (!rep) {
            fail(rep.status(), QObject::tr("Verify of %1").arg(request.bankPath));
            break;
        }
        out.ok = true;
        out.summary = QObject::tr("Bank OK: every checksum verified, %1 sections in %2 shards + template, %3 in %4 s%5")
                          .arg(rep->nSections)
                          .arg(rep->nShards)
                          .arg(loc.formattedDataSize(static_cast<qint64>(rep->nBytes)))
                          .arg(std::chrono::duration<double>(Clock::now() - t0).count(), 0, 'f', 2)
                          .arg(rep->nOrphanFiles ? QObject::tr(" (%1 uncommitted files from an interrupted write ignored)")
                                                       .arg(rep->nOrphanFiles)
                                                 : QString());
        break;
    }
    }
    emit bankFileFinished(out);
    if (out.ok && request.operation == BankFileOperation::Import) emit bankReady(bankFacts(out.bankPath));
}

// ---------------------------------------------------------------- MemoryClient (GUI thread)

MemoryClient::MemoryClient(QObject* parent) : QObject(parent) {
    registerTypes();
    m_thread = new QThread();
    m_thread->setObjectName("memory");
    m_host = new MemoryHost();
    m_host->moveToThread(m_thread);
    connect(m_host, &MemoryHost::buildStarted, this, &MemoryClient::buildStarted);
    connect(m_host, &MemoryHost::buildProgress, this, &MemoryClient::buildProgress);
    connect(m_host, &MemoryHost::buildFinished, this, [this](const MemoryBuildOutcome& o) {
        m_cancel.reset();
        emit buildFinished(o);
    });
    connect(m_host, &MemoryHost::bankReady, this, &MemoryClient::bankReady);
    connect(m_host, &MemoryHost::bankFileProgress, this, &MemoryClient::bankFileProgress);
    connect(m_host, &MemoryHost::bankFileFinished, this, [this](const BankFileOutcome& o) {
        m_fileCancel.reset();
        emit bankFileFinished(o);
    });
    m_thread->start();
}

MemoryClient::~MemoryClient() { shutdown(); }

template <typename F>
void MemoryClient::post(F&& f) {
    if (!m_host) return;
    QMetaObject::invokeMethod(m_host, std::forward<F>(f), Qt::QueuedConnection);
}

bool MemoryClient::startBuild(const MemoryBuildRequest& request) {
    if (!m_host || m_cancel || m_fileCancel) return false;
    m_cancel = std::make_shared<CancelToken>();
    post([h = m_host, request, token = m_cancel] { h->runBuild(request, token); });
    return true;
}

void MemoryClient::cancelBuild() {
    if (m_cancel) m_cancel->cancel();
}

bool MemoryClient::startBankFile(const BankFileRequest& request) {
    if (!m_host || m_cancel || m_fileCancel) return false;
    m_fileCancel = std::make_shared<CancelToken>();
    post([h = m_host, request, token = m_fileCancel] { h->runBankFile(request, token); });
    return true;
}

void MemoryClient::cancelBankFile() {
    if (m_fileCancel) m_fileCancel->cancel();
}

void MemoryClient::openBank(const QString& path) {
    post([h = m_host, path] { h->readBank(path); });
}

void MemoryClient::shutdown() {
    if (!m_thread) return;
    cancelBuild();
    cancelBankFile();
    // quit() is handled after the running build returns (it polls the token between and inside documents).
    m_thread->quit();
    m_thread->wait();
    delete m_host;
    m_host = nullptr;
    delete m_thread;
    m_thread = nullptr;
    m_cancel.reset();
    m_fileCancel.reset();
}

}  // namespace msa::ui

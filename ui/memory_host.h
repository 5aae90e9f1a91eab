// memory_host.h: the memory engine's own thread for the Memory tab (DESIGN.md §6, CONVENTIONS.md #8-#10).
//
// MemoryHost is a QObject living on a dedicated QThread. It runs jobs::buildMemory (encode a catalog
// collection into a memory bank, incremental and resumable) and opens banks to report their facts
// (memory::Bank::open). Requests reach it as queued calls; results leave it as queued signals carrying
// value types, so the GUI never waits on the model or the disk.
//
// MemoryClient is its GUI-thread front: it owns the thread and the host, offers the requests as plain
// member functions that return at once and re-emits the host's results on the GUI thread. Build
// progress is coalesced on the worker (at most ~4 updates per second) and carries the tokens/s of the
// last interval (for the live plot) beside the run's average. Cancelling sets the build's CancelToken
// (an atomic) from the GUI thread; buildMemory stops between documents (or inside one), commits what it
// finished and reports cancelled = true, so the bank stays valid and the next build resumes from it.
//
// Shutdown (MemoryClient::shutdown(), also run by the destructor): cancel → the build commits and
// returns → the thread's event loop quits → wait. After shutdown() requests are ignored.
//
// Ownership: MemoryClient owns the thread and the host. Thread affinity: MemoryClient on the GUI
// thread; MemoryHost on its thread only.
//
// Usage:
//     auto* memory = new MemoryClient(this);
//     connect(memory, &MemoryClient::buildProgress, this, &View::showProgress);
//     connect(memory, &MemoryClient::buildFinished, this, &View::showOutcome);
//     memory->startBuild(request);    // → buildStarted, buildProgress*, buildFinished (+ bankReady)
//     memory->openBank(path);         // → bankReady(facts)
//     memory->startBankFile(request); // → bankFileProgress*, bankFileFinished (+ bankReady)
//
// Failures arrive in the outcome/facts as a summary and the full Status text (codes of buildMemory:
// NotFound for a missing catalog/collection/model, Corrupt/Unsupported for a broken model or bank,
// Mismatch for a bank built with another model, Busy when another writer holds the bank, DiskFull,
// IoError, PermissionDenied); none of them ends the thread.
#pragma once

#include "core/jobs/memory_jobs.h"
#include "core/util/progress.h"

#include <QObject>
#include <QString>

#include <memory>
#include <vector>

class QThread;

namespace msa::ui {

struct MemoryBuildRequest {
    QString catalogPath;
    QString collection;
    QString modelPath;
    QString bankPath;
    int threads = 0;                  // 0: all cores
    QString storage = "bf16";         // bf16 | f32
    int maxDocumentTokens = 8192;     // longer documents are skipped with a reason
    engine::BackendChoice device;     // the Settings tab's device (default: the CPU)
};

// One coalesced progress update (value type, crosses threads). Units: documents; tokens encoded.
struct MemoryProgressUpdate {
    quint64 done = 0, total = 0;
    quint64 tokens = 0;
    double elapsedSeconds = 0;
    double tokensPerSecond = 0;       // over the interval since the previous update
    double averageTokensPerSecond = 0;
    double etaSeconds = -1;           // < 0: unknown
    QString current;
    bool finished = false;
};

// A bank's facts, or why it could not be read.
struct BankFacts {
    QString path;
    bool exists = false;              // a manifest.json is there
    bool ok = false;                  // opened and valid
    QString error;                    // Status text when exists && !ok
    quint64 nDocuments = 0, nChunks = 0, nTokens = 0, nBytes = 0, nTombstones = 0;
    quint64 nShards = 0, generation = 0;
    QString modelFingerprint;
    QString routing;                  // "chunk 64, top-k 16, layers 0,4,8, 3 kv heads x 64, bf16, dot, keys shared"
};

// Bank files (issue 7 item 3): export a bank to one archive file, import one into a bank folder,
// verify every checksum of a bank. Export and import run core/jobs/bank_files.h (with the catalog
// rows of the memory documents, so the text travels with the bank); verify runs Bank::verify.
enum class BankFileOperation { Export, Import, Verify };

struct BankFileRequest {
    BankFileOperation operation = BankFileOperation::Verify;
    QString bankPath;                 // export/verify: the bank; import: the target folder
    QString file;                     // the archive (export: written; import: read)
    QString catalogPath;              // export: include the documents; import: restore them (empty: skip)
    QString modelPath;                // import: refuse a bank of another model (empty: accept any)
    bool zstd = true;                 // export
    bool force = false;               // import: replace an existing bank at the target
};

struct BankFileProgress {
    BankFileOperation operation = BankFileOperation::Verify;
    quint64 bytesDone = 0, bytesTotal = 0;
    double bytesPerSecond = 0;
    double etaSeconds = -1;
    bool finished = false;
};

struct BankFileOutcome {
    BankFileOperation operation = BankFileOperation::Verify;
    bool ok = false;
    bool cancelled = false;           // stopped by Cancel: nothing was written or replaced
    QString bankPath;                 // the bank concerned (import: the target)
    QString file;
    QString summary;                  // one line for the view
    QString error;                    // Status::toString() when !ok
};

struct MemoryBuildOutcome {
    bool ok = false;
    QString collection;
    QString summary;                  // one line for the view
    QString error;                    // Status::toString() when !ok
    quint64 alreadyInBank = 0;        // live documents before the run
    jobs::BuildReport report;         // valid when ok (report.cancelled after a cancel)
};

class MemoryHost : public QObject {
    Q_OBJECT
public:
    MemoryHost();
    ~MemoryHost() override;

    // Worker-thread entry points, reached only through MemoryClient's queued calls.
    void runBuild(const MemoryBuildRequest& request, const std::shared_ptr<CancelToken>& cancel);
    void readBank(const QString& path);
    void runBankFile(const BankFileRequest& request, const std::shared_ptr<CancelToken>& cancel);

    // Reads a bank's facts (Bank::open); reentrant, used by the host and by tests.
    static BankFacts bankFacts(const QString& path);

signals:
    void buildStarted(const QString& bankPath, quint64 alreadyInBank);
    void buildProgress(const msa::ui::MemoryProgressUpdate& update);
    void buildFinished(const msa::ui::MemoryBuildOutcome& outcome);
    void bankReady(const msa::ui::BankFacts& facts);
    void bankFileProgress(const msa::ui::BankFileProgress& progress);
    void bankFileFinished(const msa::ui::BankFileOutcome& outcome);
};

class MemoryClient : public QObject {
    Q_OBJECT
public:
    explicit MemoryClient(QObject* parent = nullptr);
    ~MemoryClient() override;

    bool buildRunning() const { return m_cancel != nullptr; }
    bool bankFileRunning() const { return m_fileCancel != nullptr; }
    bool isShutDown() const { return m_thread == nullptr; }

    // Returns false (nothing started) when a build is already running or after shutdown().
    bool startBuild(const MemoryBuildRequest& request);
    void cancelBuild();
    void openBank(const QString& path);
    // Export/import/verify on the memory thread; false when a build or another bank-file job runs
    // or after shutdown(). Cancel stops export and import (the partial file or folder is removed,
    // an existing bank is untouched); verify stops between sections.
    bool startBankFile(const BankFileRequest& request);
    void cancelBankFile();
    // cancel → the build commits and returns → quit → wait. Idempotent.
    void shutdown();

signals:
    void buildStarted(const QString& bankPath, quint64 alreadyInBank);
    void buildProgress(const msa::ui::MemoryProgressUpdate& update);
    void buildFinished(const msa::ui::MemoryBuildOutcome& outcome);
    void bankReady(const msa::ui::BankFacts& facts);
    void bankFileProgress(const msa::ui::BankFileProgress& progress);
    void bankFileFinished(const msa::ui::BankFileOutcome& outcome);

private:
    template <typename F>
    void post(F&& f);

    QThread* m_thread = nullptr;
    MemoryHost* m_host = nullptr;
    std::shared_ptr<CancelToken> m_cancel;   // the running build's token (GUI thread only)
    std::shared_ptr<CancelToken> m_fileCancel;   // the running export/import/verify's token
};

}  // namespace msa::ui

Q_DECLARE_METATYPE(msa::ui::MemoryBuildRequest)
Q_DECLARE_METATYPE(msa::ui::MemoryProgressUpdate)
Q_DECLARE_METATYPE(msa::ui::BankFacts)
Q_DECLARE_METATYPE(msa::ui::MemoryBuildOutcome)
Q_DECLARE_METATYPE(msa::ui::BankFileRequest)
Q_DECLARE_METATYPE(msa::ui::BankFileProgress)
Q_DECLARE_METATYPE(msa::ui::BankFileOutcome)

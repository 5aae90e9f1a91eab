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

    // Reads a bank's facts (Bank::open); reentrant, used by the host and by tests.
    static BankFacts bankFacts(const QString& path);

signals:
    void buildStarted(const QString& bankPath, quint64 alreadyInBank);
    void buildProgress(const msa::ui::MemoryProgressUpdate& update);
    void buildFinished(const msa::ui::MemoryBuildOutcome& outcome);
    void bankReady(const msa::ui::BankFacts& facts);
};

class MemoryClient : public QObject {
    Q_OBJECT
public:
    explicit MemoryClient(QObject* parent = nullptr);
    ~MemoryClient() override;

    bool buildRunning() const { return m_cancel != nullptr; }
    bool isShutDown() const { return m_thread == nullptr; }

    // Returns false (nothing started) when a build is already running or after shutdown().
    bool startBuild(const MemoryBuildRequest& request);
    void cancelBuild();
    void openBank(const QString& path);
    // cancel → the build commits and returns → quit → wait. Idempotent.
    void shutdown();

signals:
    void buildStarted(const QString& bankPath, quint64 alreadyInBank);
    void buildProgress(const msa::ui::MemoryProgressUpdate& update);
    void buildFinished(const msa::ui::MemoryBuildOutcome& outcome);
    void bankReady(const msa::ui::BankFacts& facts);

private:
    template <typename F>
    void post(F&& f);

    QThread* m_thread = nullptr;
    MemoryHost* m_host = nullptr;
    std::shared_ptr<CancelToken> m_cancel;   // the running build's token (GUI thread only)
};

}  // namespace msa::ui

Q_DECLARE_METATYPE(msa::ui::MemoryBuildRequest)
Q_DECLARE_METATYPE(msa::ui::MemoryProgressUpdate)
Q_DECLARE_METATYPE(msa::ui::BankFacts)
Q_DECLARE_METATYPE(msa::ui::MemoryBuildOutcome)

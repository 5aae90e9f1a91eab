// answer_host.h: the engine's own thread for answering (DESIGN.md §6, CONVENTIONS.md #8-#10): the Chat
// tab's questions (jobs::askQuestion, the answer streamed piece by piece) and the Routing inspector's
// "Route only" (jobs::routeQuestion) run here, never on the GUI thread.
//
// AnswerHost lives on a dedicated QThread and runs one job at a time; each job opens the model, the bank
// and the catalog through core/jobs (the jobs API takes paths and keeps nothing open between calls).
// AnswerClient is its GUI-thread front: ask()/route() return at once with a request id; results come
// back as queued signals carrying value types. Streamed pieces are coalesced on the worker to at most
// one signal per ~40 ms, so a fast model cannot flood the GUI event loop. cancel() sets the running
// request's CancelToken (an atomic) from the GUI thread; the generator stops between tokens and the
// partial answer arrives as answered() with stopReason "cancelled".
//
// Shutdown (AnswerClient::shutdown(), also run by the destructor): cancel → the job returns → the
// thread's event loop quits → wait. Routing has no cancel point; it takes one question's prefill.
//
// Ownership: AnswerClient owns the thread and the host. Thread affinity: AnswerClient on the GUI
// thread; AnswerHost on its thread only.
//
// Usage:
//     auto* engine = new AnswerClient(this);
//     connect(engine, &AnswerClient::piece, this, [](quint64 id, const QString& text) { ... });
//     connect(engine, &AnswerClient::answered, this, [](quint64 id, const jobs::AskReport& r) { ... });
//     const quint64 id = engine->ask(request);   // → piece* + (answered | failed)
//
// Stored conversations (the catalog's chat history) are read, loaded and deleted on this thread too
// (listConversations/loadConversation/deleteConversation), after a running answer; the answers go to
// the conversation set with setConversation() (nullopt: the next answer starts a new one), and
// turnRecorded() says where each answer was stored.
//
// Failures (the Status codes of jobs::askQuestion/routeQuestion: NotFound for a missing model, bank
// or catalog, Mismatch for a bank built with another model, Corrupt, InvalidArgument, IoError) arrive
// as failed(id, operation, summary, detail); none of them ends the thread.
#pragma once

#include "core/catalog/catalog.h"
#include "core/jobs/history.h"
#include "core/jobs/memory_jobs.h"
#include "core/util/progress.h"

#include <QObject>
#include <QString>

#include <memory>
#include <optional>
#include <vector>

class QThread;

namespace msa::ui {

// The answering bank's fixed parameters, for read-only display (Chat's k, Settings' chunk size and k).
struct BankSummary {
    QString path;
    bool exists = false;        // a manifest.json is there
    bool ok = false;            // opened (manifest, shard headers and document tables checked)
    quint32 chunkSize = 0;      // P
    quint32 topK = 0;           // k
    quint64 nDocuments = 0;
    QString error;              // the Status message when exists && !ok
};

class AnswerHost : public QObject {
    Q_OBJECT
public:
    using QObject::QObject;
    void ask(quint64 id, const jobs::AskRequest& request, const std::shared_ptr<CancelToken>& cancel);
    void route(quint64 id, const jobs::RouteRequest& request);
    void setConversation(std::optional<int64_t> conversationId) { m_conversation = conversationId; }
    void listConversations(const QString& catalogPath);
    void loadConversation(const QString& catalogPath, qint64 conversationId);
    void deleteConversation(const QString& catalogPath, qint64 conversationId);
    void readBank(const QString& bankPath);

signals:
    void piece(quint64 id, const QString& text);
    void answered(quint64 id, const msa::jobs::AskReport& report);
    void routed(quint64 id, const msa::jobs::RouteReport& report);
    void failed(quint64 id, const QString& operation, const QString& summary, const QString& detail);
    void turnRecorded(qint64 conversationId, qint64 turnId);
    void conversationsReady(const std::vector<msa::catalog::ConversationInfo>& conversations);
    void conversationLoaded(qint64 conversationId, const std::vector<msa::jobs::LoadedTurn>& turns);
    void conversationDeleted(qint64 conversationId);
    void historyFailed(const QString& operation, const QString& summary, const QString& detail);
    void bankRead(const msa::ui::BankSummary& bank);

private:
    // Answers of this window's session are turns of one conversation in the catalog's history
    // (created with the first answer; `msa history` lists them).
    std::optional<int64_t> m_conversation;
};

class AnswerClient : public QObject {
    Q_OBJECT
public:
    explicit AnswerClient(QObject* parent = nullptr);
    ~AnswerClient() override;

    // Queue a question (request.cancel is replaced by the client's token). Returns the request id, 0
    // when the client is shut down or another job is running (busy()).
    quint64 ask(jobs::AskRequest request);
    quint64 route(const jobs::RouteRequest& request);
    // Cancels the running ask (no effect on a route or when idle).
    void cancel();
    // The stored history (queued behind a running answer): the next answers go to `conversationId`
    // (nullopt: a new conversation, created with the next answer).
    void setConversation(std::optional<qint64> conversationId);
    void listConversations(const QString& catalogPath);            // → conversationsReady
    void loadConversation(const QString& catalogPath, qint64 id);  // → conversationLoaded
    void deleteConversation(const QString& catalogPath, qint64 id);   // → conversationDeleted
    // Opens the bank (no bulk data read) for its parameters: → bankRead.
    void readBank(const QString& bankPath);
    bool busy() const { return m_running != 0; }
    quint64 runningRequest() const { return m_running; }
    void shutdown();

signals:
    void busyChanged(bool busy);
    void piece(quint64 id, const QString& text);
    void answered(quint64 id, const msa::jobs::AskReport& report);
    void routed(quint64 id, const msa::jobs::RouteReport& report);
    void failed(quint64 id, const QString& operation, const QString& summary, const QString& detail);
    void turnRecorded(qint64 conversationId, qint64 turnId);
    void conversationsReady(const std::vector<msa::catalog::ConversationInfo>& conversations);
    void conversationLoaded(qint64 conversationId, const std::vector<msa::jobs::LoadedTurn>& turns);
    void conversationDeleted(qint64 conversationId);
    void historyFailed(const QString& operation, const QString& summary, const QString& detail);
    void bankRead(const msa::ui::BankSummary& bank);

private:
    template <typename F>
    void post(F&& f);
    void finish(quint64 id);

    QThread* m_thread = nullptr;
    AnswerHost* m_host = nullptr;
    std::shared_ptr<CancelToken> m_cancel;   // the running ask's token (GUI thread only)
    quint64 m_nextRequest = 1;
    quint64 m_running = 0;
};

}  // namespace msa::ui

Q_DECLARE_METATYPE(msa::jobs::AskReport)
Q_DECLARE_METATYPE(msa::jobs::RouteReport)
Q_DECLARE_METATYPE(std::vector<msa::catalog::ConversationInfo>)
Q_DECLARE_METATYPE(std::vector<msa::jobs::LoadedTurn>)
Q_DECLARE_METATYPE(msa::ui::BankSummary)

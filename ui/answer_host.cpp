#include "ui/answer_host.h"

#include "core/jobs/history.h"
#include "core/memory/bank.h"
#include "core/util/log.h"

#include <QThread>

#include <chrono>
#include <filesystem>
#include <string>

namespace msa::ui {
namespace {
constexpr auto kPieceInterval = std::chrono::milliseconds(40);

QString qs(const std::string& s) { return QString::fromStdString(s); }

void registerTypes() {
    qRegisterMetaType<jobs::AskReport>();
    qRegisterMetaType<jobs::RouteReport>();
    qRegisterMetaType<std::vector<catalog::ConversationInfo>>();
    qRegisterMetaType<std::vector<jobs::LoadedTurn>>();
    qRegisterMetaType<BankSummary>();
}

// The first line of a Status message as the summary, the whole Status (with its code) as the detail.
void splitStatus(const Status& status, QString& summary, QString& detail) {
    detail = qs(status.toString());
    summary = qs(status.message());
    const qsizetype nl = summary.indexOf('\n');
    if (nl > 0) summary.truncate(nl);
}
}  // namespace

// ---------------------------------------------------------------- AnswerHost (engine thread)

void AnswerHost::ask(quint64 id, const jobs::AskRequest& request, const std::shared_ptr<CancelToken>& cancel) {
    jobs::AskRequest req = request;
    req.cancel = cancel.get();
    using Clock = std::chrono::steady_clock;
    std::string pending;
    Clock::time_point last{};
    auto flush = [&] {
        if (pending.empty()) return;
        emit piece(id, QString::fromUtf8(pending.data(), static_cast<qsizetype>(pending.size())));
        pending.clear();
        last = Clock::now();
    };
    std::string streamed;   // everything sent, for an answer cancelled inside the engine
    auto onPiece = [&](std::string_view p) {
        streamed.append(p);
        pending.append(p);
        // A piece may end inside a UTF-8 sequence; hold back an incomplete tail.
        size_t keep = 0;
        for (size_t i = pending.size(); i > 0 && keep < 4; --i) {
            const auto c = static_cast<unsigned char>(pending[i - 1]);
            if ((c & 0xC0) == 0x80) { ++keep; continue; }
            if (c >= 0xC0) {
                const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                if (keep + 1 < need) keep += 1; else keep = 0;
            } else {
                keep = 0;
            }
            break;
        }
        if (Clock::now() - last >= kPieceInterval && pending.size() > keep) {
            const std::string tail = pending.substr(pending.size() - keep);
            pending.resize(pending.size() - keep);
            flush();
            pending = tail;
        }
        return !cancel->isCancelled();
    };
    auto report = jobs::askQuestion(req, onPiece);
    flush();
    if (!report.ok() && report.status().code() == ErrorCode::Cancelled) {
        // Some answer paths (Memory Interleave) end a cancelled answer with a Cancelled status: to the
        // user it is the same Stop, with what was written so far kept.
        jobs::AskReport r;
        r.answer = streamed;
        r.stopReason = "cancelled";
        emit answered(id, r);
        return;
    }
    if (!report.ok()) {
        QString summary, detail;
        splitStatus(report.status(), summary, detail);
        emit failed(id, tr("Answering"), summary, detail);
        return;
    }
    jobs::AskReport r = std::move(report).value();
    if (cancel->isCancelled()) r.stopReason = "cancelled";
    if (req.route.catalog && r.stopReason != "cancelled") {
        // The history is a convenience: a failure to save is logged, the answer is still shown.
        auto saved = jobs::recordTurn(*req.route.catalog, r.trace, m_conversation);
        if (saved) {
            m_conversation = saved->conversationId;
            emit turnRecorded(saved->conversationId, saved->turnId);
        } else MSA_LOG(Warning) << "the answer was not saved to the history: " << saved.status().toString();
    }
    emit answered(id, r);
}

void AnswerHost::route(quint64 id, const jobs::RouteRequest& request) {
    auto report = jobs::routeQuestion(request);
    if (!report.ok()) {
        QString summary, detail;
        splitStatus(report.status(), summary, detail);
        emit failed(id, tr("Routing"), summary, detail);
        return;
    }
    emit routed(id, report.value());
}

void AnswerHost::listConversations(const QString& catalogPath) {
    auto cat = catalog::Catalog::open(catalogPath.toStdString());
    auto list = cat ? cat->conversations() : Result<std::vector<catalog::ConversationInfo>>(cat.status());
    if (!list) {
        QString summary, detail;
        splitStatus(list.status(), summary, detail);
        emit historyFailed(tr("Reading the conversations"), summary, detail);
        return;
    }
    emit conversationsReady(list.value());
}

void AnswerHost::loadConversation(const QString& catalogPath, qint64 conversationId) {
    const std::filesystem::path path = catalogPath.toStdString();
    std::vector<jobs::LoadedTurn> out;
    Status status = Status::ok();
    {
        auto cat = catalog::Catalog::open(path);
        if (!cat) status = cat.status();
        auto turns = cat ? cat->turns(conversationId) : Result<std::vector<catalog::ChatTurn>>(cat.status());
        if (!turns) status = turns.status();
        else
            for (const auto& t : turns.value()) {
                auto loaded = jobs::loadTurn(path, t.id);   // the trace parsed
                if (!loaded) { status = loaded.status(); break; }
                out.push_back(std::move(loaded).value());
            }
    }
    if (!status.isOk()) {
        QString summary, detail;
        splitStatus(status, summary, detail);
        emit historyFailed(tr("Loading the conversation"), summary, detail);
        return;
    }
    emit conversationLoaded(conversationId, out);
}

void AnswerHost::deleteConversation(const QString& catalogPath, qint64 conversationId) {
    auto cat = catalog::Catalog::open(catalogPath.toStdString());
    const Status status = cat ? cat->deleteConversation(conversationId) : cat.status();
    if (!status.isOk()) {
        QString summary, detail;
        splitStatus(status, summary, detail);
        emit historyFailed(tr("Deleting the conversation"), summary, detail);
        return;
    }
    if (m_conversation == conversationId) m_conversation.reset();
    emit conversationDeleted(conversationId);
}

void AnswerHost::readBank(const QString& bankPath) {
    BankSummary b;
    b.path = bankPath;
    b.exists = !bankPath.isEmpty() && std::filesystem::exists(std::filesystem::path(bankPath.toStdString()) / "manifest.json");
    if (b.exists) {
        auto bank = memory::Bank::open(bankPath.toStdString());
        if (bank) {
            b.ok = true;
            b.chunkSize = bank.value().params().chunkSize;
            b.topK = bank.value().params().topK;
            b.nDocuments = bank.value().nDocuments();
        } else {
            b.error = qs(bank.status().message());
        }
    }
    emit bankRead(b);
}

// ---------------------------------------------------------------- AnswerClient (GUI thread)

AnswerClient::AnswerClient(QObject* parent) : QObject(parent) {
    registerTypes();
    m_thread = new QThread();
    m_thread->setObjectName("engine");
    m_host = new AnswerHost();
    m_host->moveToThread(m_thread);
    connect(m_host, &AnswerHost::piece, this, [this](quint64 id, const QString& text) {
        if (id == m_running) emit piece(id, text);
    });
    connect(m_host, &AnswerHost::answered, this, [this](quint64 id, const jobs::AskReport& r) {
        finish(id);
        emit answered(id, r);
    });
    connect(m_host, &AnswerHost::routed, this, [this](quint64 id, const jobs::RouteReport& r) {
        finish(id);
        emit routed(id, r);
    });
    connect(m_host, &AnswerHost::failed, this,
            [this](quint64 id, const QString& op, const QString& summary, const QString& detail) {
                finish(id);
                emit failed(id, op, summary, detail);
            });
    connect(m_host, &AnswerHost::turnRecorded, this, &AnswerClient::turnRecorded);
    connect(m_host, &AnswerHost::conversationsReady, this, &AnswerClient::conversationsReady);
    connect(m_host, &AnswerHost::conversationLoaded, this, &AnswerClient::conversationLoaded);
    connect(m_host, &AnswerHost::conversationDeleted, this, &AnswerClient::conversationDeleted);
    connect(m_host, &AnswerHost::historyFailed, this, &AnswerClient::historyFailed);
    connect(m_host, &AnswerHost::bankRead, this, &AnswerClient::bankRead);
    m_thread->start();
}

AnswerClient::~AnswerClient() { shutdown(); }

template <typename F>
void AnswerClient::post(F&& f) {
    QMetaObject::invokeMethod(m_host, std::forward<F>(f), Qt::QueuedConnection);
}

void AnswerClient::finish(quint64 id) {
    if (id != m_running) return;
    m_running = 0;
    m_cancel.reset();
    emit busyChanged(false);
}

quint64 AnswerClient::ask(jobs::AskRequest request) {
    if (!m_host || m_running) return 0;
    const quint64 id = m_nextRequest++;
    m_running = id;
    m_cancel = std::make_shared<CancelToken>();
    request.cancel = nullptr;   // the host sets its own pointer to the shared token
    post([h = m_host, id, request, token = m_cancel] { h->ask(id, request, token); });
    emit busyChanged(true);
    return id;
}

quint64 AnswerClient::route(const jobs::RouteRequest& request) {
    if (!m_host || m_running) return 0;
    const quint64 id = m_nextRequest++;
    m_running = id;
    post([h = m_host, id, request] { h->route(id, request); });
    emit busyChanged(true);
    return id;
}

void AnswerClient::cancel() {
    if (m_cancel) m_cancel->cancel();
}

void AnswerClient::setConversation(std::optional<qint64> conversationId) {
    if (!m_host) return;
    post([h = m_host, conversationId] { h->setConversation(conversationId); });
}

void AnswerClient::listConversations(const QString& catalogPath) {
    if (m_host) post([h = m_host, catalogPath] { h->listConversations(catalogPath); });
}

void AnswerClient::loadConversation(const QString& catalogPath, qint64 id) {
    if (m_host) post([h = m_host, catalogPath, id] { h->loadConversation(catalogPath, id); });
}

void AnswerClient::deleteConversation(const QString& catalogPath, qint64 id) {
    if (m_host) post([h = m_host, catalogPath, id] { h->deleteConversation(catalogPath, id); });
}

void AnswerClient::readBank(const QString& bankPath) {
    if (m_host) post([h = m_host, bankPath] { h->readBank(bankPath); });
}

void AnswerClient::shutdown() {
    if (!m_thread) return;
    cancel();
    m_thread->quit();   // the event loop ends after the running job returns
    m_thread->wait();
    delete m_host;
    m_host = nullptr;
    delete m_thread;
    m_thread = nullptr;
    m_cancel.reset();
    m_running = 0;
}

}  // namespace msa::ui

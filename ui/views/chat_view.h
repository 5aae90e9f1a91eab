// chat_view.h: the Chat tab (DESIGN.md §6, issue 7 item 4): the conversation with the archive's memory.
// A question runs on the engine thread (AnswerClient); the answer streams into the transcript as its
// pieces arrive; Stop (Esc) cancels it between tokens and keeps what was written. Under each answer:
// its sources (the documents whose text was given to the model, the ones the answer cites marked) and
// every `[id]` in the answer as links that open the document in the Library (openDocument), a compact
// "memory used: …" line (hops, documents, candidates, tokens, time) and an "Inspect routing" link that
// shows the answer's routing trace in the Routing tab. The suggested demo question is one click away.
// Input is disabled, with a sentence saying what to do, while no model/bank/catalog is configured.
// Conversations: the answers are stored in the catalog's history (AnswerHost records each as a turn);
// the sidebar lists the stored conversations (read on the engine thread), selecting one shows its turns
// (with their traces, so "Inspect routing" works on any stored turn) and continues it; "New" starts a
// new one, "Delete" removes one after a confirmation; "Copy" / "Export…" give it as Markdown
// (conversationMarkdown). The options row (method, injection, hops, the bank's k read-only, candidate
// filters: collection, date range, participant) is stored as ChatOptions and goes into the AskRequest.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the AnswerClient is borrowed (the main
// window owns it and shuts it down first) and may be null (asking is then disabled).
//
// Usage:
//     auto* chat = new ChatView(context, engine, tabs);
//     chat->setSetup(AnswerSetup::fromSettings(context, catalogPath));
//     connect(chat, &ChatView::openDocument, library, &LibraryView::showMemoryDocument);
//     connect(chat, &ChatView::traceSelected, routing, &RoutingView::showTrace);
#pragma once

#include "core/catalog/catalog.h"
#include "core/jobs/history.h"
#include "core/jobs/memory_jobs.h"
#include "core/memory/trace.h"
#include "ui/answer_setup.h"
#include "ui/app_settings.h"
#include "ui/conversation_markdown.h"
#include "ui/ui_context.h"

#include <QWidget>

#include <optional>
#include <vector>

class QBoxLayout;
class QComboBox;
class QLabel;
class QListWidget;
class QSpinBox;
class QLineEdit;
class QPushButton;
class QTextBrowser;
class QUrl;
class QSettings;

namespace msa::ui {

class AnswerClient;
struct BankSummary;

class ChatView : public QWidget {
    Q_OBJECT
public:
    struct Turn {
        QString question;
        QString answer;                 // grows while streaming
        bool done = false;
        QString error;                  // a failed answer: summary (detail in errorDetail)
        QString errorDetail;
        jobs::AskReport report;         // valid when done and error is empty
        memory::RoutingTrace trace;     // valid when done and error is empty
        qint64 turnId = 0;              // the stored turn (0: not stored)
        bool stored = false;            // loaded from the history (report is empty; trace carries it)
    };

    ChatView(const UiContext& context, AnswerClient* engine, QWidget* parent = nullptr);

    void setSetup(const AnswerSetup& setup);
    const AnswerSetup& setup() const { return m_setup; }
    // Starts answering; false when the setup is incomplete, the engine is busy or the question empty.
    bool ask(const QString& question);
    void stop();
    bool answering() const { return m_request != 0; }

    // The demo archive's suggested multi-hop question (empty when the archive has none).
    QString suggestedQuestion() const { return m_suggested; }
    const std::vector<Turn>& turns() const { return m_turns; }
    // The "memory used: …" line of a finished answer.
    QString memoryLine(const Turn& turn) const;
    QTextBrowser* transcript() const { return m_transcript; }
    QLineEdit* input() const { return m_input; }
    QPushButton* askButton() const { return m_ask; }
    QPushButton* stopButton() const { return m_stop; }
    QLabel* hint() const { return m_hint; }

    // Conversations (the catalog's history).
    QListWidget* conversationList() const { return m_conversations; }
    std::optional<qint64> currentConversation() const { return m_conversation; }
    void refreshConversations();                 // → conversationsRefreshed
    void openConversation(qint64 conversationId);   // → conversationShown
    void newConversation();
    // Asks for confirmation first when `confirm`; → conversationDeleted when done.
    void deleteConversation(qint64 conversationId, bool confirm = true);
    // The shown conversation as Markdown; copyMarkdown puts it on the clipboard, exportMarkdown writes it.
    QString markdown() const;
    void copyMarkdown();
    bool exportMarkdown(const QString& path);
    // The documents of a turn with their titles: those given to the model (a stored turn: injected).
    static std::vector<std::pair<qint64, QString>> sources(const Turn& turn);

    // Answer options (persisted as ChatOptions; applied to the setup used by ask()).
    const ChatOptions& options() const { return m_options; }
    void setOptions(const ChatOptions& options);
    void setCollections(const QStringList& collections);
    void showBank(const BankSummary& bank);   // the bank's k (read-only), from AnswerClient::bankRead
    QComboBox* methodBox() const { return m_method; }
    QComboBox* injectionBox() const { return m_injection; }
    QSpinBox* hopsBox() const { return m_hops; }
    QLabel* topKLabel() const { return m_topK; }
    QComboBox* collectionBox() const { return m_collection; }
    QLineEdit* fromEdit() const { return m_from; }
    QLineEdit* toEdit() const { return m_to; }
    QLineEdit* participantEdit() const { return m_participant; }

signals:
    void openDocument(qint64 memoryDocumentId);
    void traceSelected(const msa::memory::RoutingTrace& trace);
    void inspectRouting();   // the user asked to see a trace (switch to the Routing tab)
    void answerFinished(int turn);
    void statusMessage(const QString& message);
    void conversationsRefreshed();
    void conversationShown(qint64 conversationId);
    void conversationDeleted(qint64 conversationId);

private:
    void onPiece(quint64 id, const QString& text);
    void onAnswered(quint64 id, const jobs::AskReport& report);
    void onFailed(quint64 id, const QString& operation, const QString& summary, const QString& detail);
    void onLink(const QUrl& url);
    void render();
    void updateControls();
    void buildOptionsRow(QWidget* parent, QBoxLayout* layout);
    void optionsEdited();
    void showOptions();
    void onConversations(const std::vector<catalog::ConversationInfo>& list);
    void onConversationLoaded(qint64 id, const std::vector<jobs::LoadedTurn>& turns);

    AnswerClient* m_engine = nullptr;
    AnswerSetup m_setup;
    QTextBrowser* m_transcript = nullptr;
    QLineEdit* m_input = nullptr;
    QPushButton* m_ask = nullptr;
    QPushButton* m_stop = nullptr;
    QPushButton* m_suggest = nullptr;
    QLabel* m_hint = nullptr;
    QListWidget* m_conversations = nullptr;
    QPushButton* m_newConversation = nullptr;
    QPushButton* m_deleteConversation = nullptr;
    QPushButton* m_copy = nullptr;
    QPushButton* m_export = nullptr;
    QComboBox* m_method = nullptr;
    QComboBox* m_injection = nullptr;
    QSpinBox* m_hops = nullptr;
    QLabel* m_topK = nullptr;
    QComboBox* m_collection = nullptr;
    QLineEdit* m_from = nullptr;
    QLineEdit* m_to = nullptr;
    QLineEdit* m_participant = nullptr;
    QSettings* m_settings = nullptr;   // borrowed from the UiContext (may be null)
    ChatOptions m_options;
    QString m_bankShown;               // the bank whose k m_topK shows (BankSummary::path)
    std::optional<qint64> m_conversation;   // the shown (and continued) conversation
    qint64 m_loading = 0;                   // the conversation being loaded
    std::vector<catalog::ConversationInfo> m_stored;
    QString m_suggested;
    std::vector<Turn> m_turns;
    quint64 m_request = 0;
};

}  // namespace msa::ui

// chat_view.h: the Chat tab (DESIGN.md §6, issue 7 item 4): the conversation with the archive's memory.
// A question runs on the engine thread (AnswerClient); the answer streams into the transcript as its
// pieces arrive; Stop (Esc) cancels it between tokens and keeps what was written. Under each answer:
// its sources (the documents whose text was given to the model, the ones the answer cites marked) and
// every `[id]` in the answer as links that open the document in the Library (openDocument), a compact
// "memory used: …" line (hops, documents, candidates, tokens, time) and an "Inspect routing" link that
// shows the answer's routing trace in the Routing tab. The suggested demo question is one click away.
// Input is disabled, with a sentence saying what to do, while no model/bank/catalog is configured.
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

#include "core/jobs/memory_jobs.h"
#include "core/memory/trace.h"
#include "ui/answer_setup.h"
#include "ui/ui_context.h"

#include <QWidget>

#include <vector>

class QLabel;
class QLineEdit;
class QPushButton;
class QTextBrowser;
class QUrl;

namespace msa::ui {

class AnswerClient;

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

signals:
    void openDocument(qint64 memoryDocumentId);
    void traceSelected(const msa::memory::RoutingTrace& trace);
    void inspectRouting();   // the user asked to see a trace (switch to the Routing tab)
    void answerFinished(int turn);
    void statusMessage(const QString& message);

private:
    void onPiece(quint64 id, const QString& text);
    void onAnswered(quint64 id, const jobs::AskReport& report);
    void onFailed(quint64 id, const QString& operation, const QString& summary, const QString& detail);
    void onLink(const QUrl& url);
    void render();
    void updateControls();

    AnswerClient* m_engine = nullptr;
    AnswerSetup m_setup;
    QTextBrowser* m_transcript = nullptr;
    QLineEdit* m_input = nullptr;
    QPushButton* m_ask = nullptr;
    QPushButton* m_stop = nullptr;
    QPushButton* m_suggest = nullptr;
    QLabel* m_hint = nullptr;
    QString m_suggested;
    std::vector<Turn> m_turns;
    quint64 m_request = 0;
};

}  // namespace msa::ui

// chat_view.h: Chat tab: the conversation with the archive's memory, a question box, and the suggested first question.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext is read during
// construction (and its QSettings borrowed for the view's lifetime where noted).
#pragma once

#include "ui/ui_context.h"

#include <QWidget>

class QLineEdit;
class QTextBrowser;

namespace msa::ui {

class ChatView : public QWidget {
    Q_OBJECT
public:
    explicit ChatView(const UiContext& context, QWidget* parent = nullptr);

    // The demo archive's suggested multi-hop question (empty when the archive has none).
    QString suggestedQuestion() const { return m_suggested; }

private:
    QTextBrowser* m_transcript = nullptr;
    QLineEdit* m_input = nullptr;
    QString m_suggested;
};

}  // namespace msa::ui

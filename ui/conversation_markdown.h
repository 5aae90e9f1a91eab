// conversation_markdown.h: a chat conversation as Markdown, for "Copy as Markdown" and "Export…" in the
// Chat tab: a title heading, then per turn the question (a "### " heading), the answer as written and its
// citations as a list of "[id] title" lines. Pure function over value types (any thread; no I/O).
//
// Usage:
//     QString md = conversationMarkdown(tr("Cello questions"), {{question, answer, {{3, "note0.txt"}}}});
#pragma once

#include <QString>

#include <utility>
#include <vector>

namespace msa::ui {

struct MarkdownTurn {
    QString question;
    QString answer;
    std::vector<std::pair<qint64, QString>> citations;   // memory document id, title (may be empty)
};

QString conversationMarkdown(const QString& title, const std::vector<MarkdownTurn>& turns);

}  // namespace msa::ui

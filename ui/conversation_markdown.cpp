#include "ui/conversation_markdown.h"

#include <QStringList>

namespace msa::ui {
namespace {
// A question or title is one line in Markdown: line breaks become spaces.
QString oneLine(const QString& s) {
    QString out = s.simplified();
    return out.isEmpty() ? QStringLiteral("(untitled)") : out;
}
}  // namespace

QString conversationMarkdown(const QString& title, const std::vector<MarkdownTurn>& turns) {
    QString md = QStringLiteral("# ") + oneLine(title) + QStringLiteral("\n");
    for (const MarkdownTurn& t : turns) {
        md += QStringLiteral("\n### ") + oneLine(t.question) + QStringLiteral("\n\n");
        QString answer = t.answer.trimmed();
        md += (answer.isEmpty() ? QStringLiteral("_(no answer)_") : answer) + QStringLiteral("\n");
        if (!t.citations.empty()) {
            md += QStringLiteral("\nSources:\n\n");
            for (const auto& [id, docTitle] : t.citations) {
                md += QStringLiteral("- [%1]").arg(id);
                if (!docTitle.trimmed().isEmpty()) md += QLatin1Char(' ') + docTitle.simplified();
                md += QLatin1Char('\n');
            }
        }
    }
    return md;
}

}  // namespace msa::ui

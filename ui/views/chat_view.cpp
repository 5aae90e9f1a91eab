#include "ui/views/chat_view.h"

#include "core/util/paths.h"

#include <QFile>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineEdit>
#include <QPushButton>
#include <QTextBrowser>
#include <QVBoxLayout>

namespace msa::ui {
namespace {
// The demo questions (beside the archive folder, not in it) mark one multi-hop question as suggested.
QString readSuggestedQuestion(const std::filesystem::path& archive) {
    if (archive.empty()) return {};
    QFile f(QString::fromStdString(demoQuestionsFile(archive).string()));
    if (!f.open(QIODevice::ReadOnly)) return {};
    const QJsonDocument doc = QJsonDocument::fromJson(f.readAll());
    for (const QJsonValue& v : doc.array()) {
        const QJsonObject q = v.toObject();
        if (q.value("suggested").toBool()) return q.value("question").toString();
    }
    return {};
}
}  // namespace

ChatView::ChatView(const UiContext& context, QWidget* parent) : QWidget(parent) {
    setObjectName("chatView");
    auto* layout = new QVBoxLayout(this);
    m_transcript = new QTextBrowser(this);
    m_transcript->setObjectName("chatTranscript");
    m_transcript->setOpenLinks(false);
    m_suggested = readSuggestedQuestion(context.doctor.demoArchive.path);
    QString html = tr("<h3>Chat with your archive</h3>"
                      "<p>Answers will come from the memory bank built in the <b>Memory</b> tab; every "
                      "answer cites the documents it used as <code>[i]</code> links, and the <b>Routing</b> "
                      "tab shows which documents the model's attention routed to at each hop.</p>");
    if (!m_suggested.isEmpty())
        html += tr("<p>Suggested first question (it needs facts from several files):</p><blockquote><i>%1</i></blockquote>")
                    .arg(m_suggested.toHtmlEscaped());
    m_transcript->setHtml(html);

    auto* row = new QHBoxLayout;
    m_input = new QLineEdit(this);
    m_input->setObjectName("chatInput");
    m_input->setPlaceholderText(tr("Ask a question about your archive…"));
    m_input->setText(m_suggested);
    auto* ask = new QPushButton(tr("Ask"), this);
    ask->setObjectName("chatAsk");
    ask->setEnabled(false);
    ask->setToolTip(tr("Asking needs a memory bank (Memory tab)."));
    row->addWidget(m_input, 1);
    row->addWidget(ask);
    layout->addWidget(m_transcript, 1);
    layout->addLayout(row);
}

}  // namespace msa::ui

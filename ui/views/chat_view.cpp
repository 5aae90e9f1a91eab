#include "ui/views/chat_view.h"

#include "ui/answer_host.h"
#include "ui/trace_convert.h"

#include "core/util/paths.h"

#include <QFile>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QRegularExpression>
#include <QScrollBar>
#include <QShortcut>
#include <QTextBrowser>
#include <QUrl>
#include <QVBoxLayout>

#include <set>

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

QString qs(const std::string& s) { return QString::fromStdString(s); }

// HTML of an answer: escaped, line breaks kept, and each [id] / [id, id] of a known document a link.
QString answerHtml(const QString& text, const std::set<int64_t>& known) {
    static const QRegularExpression cite(QStringLiteral("\\[(\\d{1,15}(?:\\s*,\\s*\\d{1,15})*)\\]"));
    QString out;
    qsizetype last = 0;
    auto it = cite.globalMatch(text);
    while (it.hasNext()) {
        const auto m = it.next();
        out += text.mid(last, m.capturedStart() - last).toHtmlEscaped();
        QStringList parts;
        for (const QString& n : m.captured(1).split(',')) {
            const qint64 id = n.trimmed().toLongLong();
            parts << (known.count(id) ? QString("<a href='doc:%1'>%1</a>").arg(id) : QString::number(id));
        }
        out += '[' + parts.join(", ") + ']';
        last = m.capturedEnd();
    }
    out += text.mid(last).toHtmlEscaped();
    return out.replace('\n', QStringLiteral("<br>"));
}
}  // namespace

ChatView::ChatView(const UiContext& context, AnswerClient* engine, QWidget* parent) : QWidget(parent), m_engine(engine) {
    setObjectName("chatView");
    auto* layout = new QVBoxLayout(this);
    m_transcript = new QTextBrowser(this);
    m_transcript->setObjectName("chatTranscript");
    m_transcript->setOpenLinks(false);
    connect(m_transcript, &QTextBrowser::anchorClicked, this, &ChatView::onLink);
    m_suggested = readSuggestedQuestion(context.doctor.demoArchive.path);

    m_hint = new QLabel(this);
    m_hint->setObjectName("chatHint");
    m_hint->setWordWrap(true);
    m_hint->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_hint->setStyleSheet(QStringLiteral("QLabel { background: #fff4e0; border: 1px solid #e0b060; padding: 6px; }"));

    auto* row = new QHBoxLayout;
    m_input = new QLineEdit(this);
    m_input->setObjectName("chatInput");
    m_input->setPlaceholderText(tr("Ask a question about your archive…"));
    m_input->setText(m_suggested);
    m_ask = new QPushButton(tr("Ask"), this);
    m_ask->setObjectName("chatAsk");
    m_ask->setDefault(true);
    m_stop = new QPushButton(tr("Stop"), this);
    m_stop->setObjectName("chatStop");
    m_stop->setToolTip(tr("Stop the answer (Esc); what was written so far is kept"));
    m_suggest = new QPushButton(tr("Suggested question"), this);
    m_suggest->setObjectName("chatSuggested");
    m_suggest->setToolTip(m_suggested.isEmpty() ? tr("The demo archive's questions were not found") : m_suggested);
    m_suggest->setEnabled(!m_suggested.isEmpty());
    row->addWidget(m_input, 1);
    row->addWidget(m_ask);
    row->addWidget(m_stop);
    row->addWidget(m_suggest);
    layout->addWidget(m_transcript, 1);
    layout->addWidget(m_hint);
    layout->addLayout(row);

    connect(m_ask, &QPushButton::clicked, this, [this] { ask(m_input->text()); });
    connect(m_input, &QLineEdit::returnPressed, this, [this] { ask(m_input->text()); });
    connect(m_stop, &QPushButton::clicked, this, &ChatView::stop);
    connect(m_suggest, &QPushButton::clicked, this, [this] { m_input->setText(m_suggested); m_input->setFocus(); });
    auto* esc = new QShortcut(QKeySequence(Qt::Key_Escape), this);
    esc->setContext(Qt::WidgetWithChildrenShortcut);
    connect(esc, &QShortcut::activated, this, &ChatView::stop);
    if (m_engine) {
        connect(m_engine, &AnswerClient::piece, this, &ChatView::onPiece);
        connect(m_engine, &AnswerClient::answered, this, &ChatView::onAnswered);
        connect(m_engine, &AnswerClient::failed, this, &ChatView::onFailed);
        connect(m_engine, &AnswerClient::busyChanged, this, [this] { updateControls(); });
    }
    render();
    updateControls();
}

void ChatView::setSetup(const AnswerSetup& setup) {
    m_setup = setup;
    updateControls();
}

void ChatView::updateControls() {
    QString problem = m_setup.problem();
    if (!m_engine) problem = tr("The engine is not available in this window.");
    const bool ready = problem.isEmpty();
    const bool busy = m_engine && m_engine->busy();
    m_hint->setText(ready ? QString() : problem);
    m_hint->setVisible(!ready);
    m_input->setEnabled(ready && !answering());
    m_ask->setEnabled(ready && !busy);
    m_ask->setToolTip(ready ? tr("Ask (Enter)") : problem);
    m_stop->setEnabled(answering());
}

bool ChatView::ask(const QString& question) {
    const QString q = question.trimmed();
    if (q.isEmpty() || !m_engine || !m_setup.ready() || m_engine->busy()) return false;
    jobs::AskRequest req;
    req.route.bank = m_setup.bank.toStdString();
    req.route.model = m_setup.model.toStdString();
    req.route.catalog = std::filesystem::path(m_setup.catalog.toStdString());
    req.route.question = q.toStdString();
    req.route.topN = static_cast<size_t>(std::max(1, m_setup.topN));
    req.route.nThreads = static_cast<size_t>(std::max(0, m_setup.nThreads));
    req.nDocuments = static_cast<size_t>(std::max(1, m_setup.nDocuments));
    req.maxTokens = static_cast<size_t>(std::max(1, m_setup.maxTokens));
    req.hops = static_cast<size_t>(std::max(1, m_setup.hops));
    req.method = m_setup.method;
    req.injection = m_setup.injection;
    m_request = m_engine->ask(req);
    if (m_request == 0) return false;
    Turn t;
    t.question = q;
    m_turns.push_back(std::move(t));
    m_input->clear();
    render();
    updateControls();
    emit statusMessage(tr("Answering…"));
    return true;
}

void ChatView::stop() {
    if (answering() && m_engine) m_engine->cancel();
}

void ChatView::onPiece(quint64 id, const QString& text) {
    if (id != m_request || m_turns.empty()) return;
    m_turns.back().answer += text;
    render();
}

void ChatView::onAnswered(quint64 id, const jobs::AskReport& report) {
    if (id != m_request || m_turns.empty()) return;
    m_request = 0;
    Turn& t = m_turns.back();
    t.done = true;
    t.report = report;
    t.answer = qs(report.answer);
    t.trace = traceFromAsk(report);
    t.trace.question = t.question.toStdString();
    render();
    updateControls();
    emit statusMessage(report.stopReason == "cancelled" ? tr("Answer stopped") : tr("Answered in %1 s").arg(report.seconds, 0, 'f', 1));
    if (!t.trace.hops.empty()) emit traceSelected(t.trace);
    emit answerFinished(static_cast<int>(m_turns.size()) - 1);
}

void ChatView::onFailed(quint64 id, const QString& operation, const QString& summary, const QString& detail) {
    if (id != m_request || m_turns.empty()) return;
    m_request = 0;
    Turn& t = m_turns.back();
    t.done = true;
    t.error = summary;
    t.errorDetail = detail;
    render();
    updateControls();
    emit statusMessage(operation + ": " + summary);
    emit answerFinished(static_cast<int>(m_turns.size()) - 1);
}

void ChatView::onLink(const QUrl& url) {
    if (url.scheme() == QLatin1String("doc")) {
        bool ok = false;
        const qint64 id = url.path().toLongLong(&ok);
        if (ok) emit openDocument(id);
    } else if (url.scheme() == QLatin1String("trace")) {
        bool ok = false;
        const int i = url.path().toInt(&ok);
        if (ok && i >= 0 && i < static_cast<int>(m_turns.size()) && m_turns[static_cast<size_t>(i)].done &&
            m_turns[static_cast<size_t>(i)].error.isEmpty() && !m_turns[static_cast<size_t>(i)].trace.hops.empty()) {
            emit traceSelected(m_turns[static_cast<size_t>(i)].trace);
            emit inspectRouting();
        }
    }
}

QString ChatView::memoryLine(const Turn& t) const {
    if (!t.done || !t.error.isEmpty()) return {};
    const bool stopped = t.report.stopReason == "cancelled";
    if (t.trace.hops.empty() && t.report.used.empty())
        return tr("memory used: none") + (stopped ? tr(" · stopped") : QString());
    QStringList ids;
    for (const auto& d : t.report.used) ids << QString("[%1]").arg(d.id);
    return tr("memory used: %n hop(s)", nullptr, static_cast<int>(std::max<size_t>(t.trace.hops.size(), 1))) +
           tr(" · %n document(s) %1", nullptr, static_cast<int>(t.report.used.size())).arg(ids.join(' ')) +
           tr(" · routed over %1 candidates in %2 layers").arg(t.report.routing.nCandidates).arg(t.report.routing.layers.size()) +
           tr(" · %1 prompt + %2 answer tokens").arg(t.report.promptTokens).arg(t.report.answerTokens) +
           tr(" · %1 s").arg(t.report.seconds, 0, 'f', 1) +
           (stopped ? tr(" · stopped") : QString());
}

void ChatView::render() {
    QString html;
    if (m_turns.empty()) {
        html = tr("<h3>Chat with your archive</h3>"
                  "<p>Answers come from the memory bank built in the <b>Memory</b> tab; every answer lists the "
                  "documents it used as <code>[id]</code> links that open them in the Library, and the <b>Routing</b> "
                  "tab shows which documents the model's attention routed to.</p>");
        if (!m_suggested.isEmpty())
            html += tr("<p>Suggested first question (it needs facts from several files):</p><blockquote><i>%1</i></blockquote>")
                        .arg(m_suggested.toHtmlEscaped());
    }
    for (size_t i = 0; i < m_turns.size(); ++i) {
        const Turn& t = m_turns[i];
        html += QString("<p style='margin-top:12px'><b>%1</b> %2</p>").arg(tr("You:"), t.question.toHtmlEscaped());
        std::set<int64_t> known;
        for (const auto& d : t.report.used) known.insert(d.id);
        for (const auto& d : t.trace.documents) known.insert(d.id);
        QString answer = answerHtml(t.answer, known);
        if (!t.done) answer += QStringLiteral(" <span style='color:#888'>▍</span>");
        if (t.answer.isEmpty() && !t.done) answer = tr("<i style='color:#888'>routing and reading the documents…</i>");
        html += QString("<p><b>%1</b> %2</p>").arg(tr("Archive:"), answer);
        if (!t.error.isEmpty()) {
            html += QString("<p style='color:#b00020'><b>%1</b> %2<br><small>%3</small></p>")
                        .arg(tr("Answering failed:"), t.error.toHtmlEscaped(), t.errorDetail.toHtmlEscaped());
            continue;
        }
        if (!t.done) continue;
        const std::set<int64_t> cited(t.trace.citations.begin(), t.trace.citations.end());
        QStringList sources;
        for (const auto& d : t.report.used) {
            QString s = QString("<a href='doc:%1'>[%1]</a> %2").arg(d.id).arg(qs(d.title).toHtmlEscaped());
            if (cited.count(d.id)) s += tr(" <b>(cited)</b>");
            sources << s;
        }
        if (!sources.isEmpty()) html += QString("<p><small>%1<br>%2</small></p>").arg(tr("Sources given to the model:"), sources.join("<br>"));
        QString line = memoryLine(t).toHtmlEscaped();
        if (!t.trace.hops.empty()) line += QString(" · <a href='trace:%1'>%2</a>").arg(i).arg(tr("Inspect routing"));
        html += QString("<p style='color:#555'><small>%1</small></p>").arg(line);
    }
    m_transcript->setHtml(html);
    m_transcript->verticalScrollBar()->setValue(m_transcript->verticalScrollBar()->maximum());
}

}  // namespace msa::ui

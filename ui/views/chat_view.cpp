#include "ui/views/chat_view.h"

#include "ui/answer_host.h"
#include "ui/trace_convert.h"

#include "core/util/paths.h"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDate>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QListWidget>
#include <QMessageBox>
#include <QSaveFile>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
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

#include <algorithm>
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

ChatView::ChatView(const UiContext& context, AnswerClient* engine, QWidget* parent)
    : QWidget(parent), m_engine(engine), m_settings(context.settings) {
    setObjectName("chatView");
    auto* outer = new QHBoxLayout(this);
    outer->setContentsMargins(0, 0, 0, 0);
    auto* split = new QSplitter(Qt::Horizontal, this);
    outer->addWidget(split);

    // The stored conversations.
    auto* side = new QWidget(split);
    auto* sideLayout = new QVBoxLayout(side);
    sideLayout->addWidget(new QLabel(tr("Conversations"), side));
    m_conversations = new QListWidget(side);
    m_conversations->setObjectName("chatConversations");
    m_conversations->setToolTip(tr("Stored conversations (newest first); select one to read and continue it"));
    m_conversations->setTextElideMode(Qt::ElideRight);
    m_conversations->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    sideLayout->addWidget(m_conversations, 1);
    auto* sideButtons = new QGridLayout;
    m_newConversation = new QPushButton(tr("New"), side);
    m_newConversation->setObjectName("chatNewConversation");
    m_newConversation->setToolTip(tr("Start a new conversation (the next answers are stored in it)"));
    m_deleteConversation = new QPushButton(tr("Delete…"), side);
    m_deleteConversation->setObjectName("chatDeleteConversation");
    m_copy = new QPushButton(tr("Copy"), side);
    m_copy->setObjectName("chatCopyMarkdown");
    m_copy->setToolTip(tr("Copy the conversation as Markdown"));
    m_export = new QPushButton(tr("Export…"), side);
    m_export->setObjectName("chatExportMarkdown");
    m_export->setToolTip(tr("Save the conversation as a Markdown file"));
    sideButtons->addWidget(m_newConversation, 0, 0);
    sideButtons->addWidget(m_deleteConversation, 0, 1);
    sideButtons->addWidget(m_copy, 1, 0);
    sideButtons->addWidget(m_export, 1, 1);
    sideLayout->addLayout(sideButtons);
    split->addWidget(side);

    auto* main = new QWidget(split);
    auto* layout = new QVBoxLayout(main);
    split->addWidget(main);
    split->setStretchFactor(0, 0);
    split->setStretchFactor(1, 1);
    split->setSizes({220, 800});
    buildOptionsRow(main, layout);
    m_transcript = new QTextBrowser(main);
    m_transcript->setObjectName("chatTranscript");
    m_transcript->setOpenLinks(false);
    connect(m_transcript, &QTextBrowser::anchorClicked, this, &ChatView::onLink);
    m_suggested = readSuggestedQuestion(context.doctor.demoArchive.path);

    m_hint = new QLabel(main);
    m_hint->setObjectName("chatHint");
    m_hint->setWordWrap(true);
    m_hint->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_hint->setFrameShape(QFrame::StyledPanel);

    auto* row = new QHBoxLayout;
    m_input = new QLineEdit(main);
    m_input->setObjectName("chatInput");
    m_input->setPlaceholderText(tr("Ask a question about your archive…"));
    m_input->setText(m_suggested);
    m_ask = new QPushButton(tr("Ask"), main);
    m_ask->setObjectName("chatAsk");
    m_ask->setDefault(true);
    m_stop = new QPushButton(tr("Stop"), main);
    m_stop->setObjectName("chatStop");
    m_stop->setToolTip(tr("Stop the answer (Esc); what was written so far is kept"));
    m_suggest = new QPushButton(tr("Suggested question"), main);
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
        connect(m_engine, &AnswerClient::conversationsReady, this, &ChatView::onConversations);
        connect(m_engine, &AnswerClient::conversationLoaded, this, &ChatView::onConversationLoaded);
        connect(m_engine, &AnswerClient::turnRecorded, this, [this](qint64 conversation, qint64 turn) {
            m_conversation = conversation;
            for (auto it = m_turns.rbegin(); it != m_turns.rend(); ++it)
                if (!it->stored && it->turnId == 0) { it->turnId = turn; break; }
            refreshConversations();
        });
        connect(m_engine, &AnswerClient::conversationDeleted, this, [this](qint64 id) {
            if (m_conversation == id) newConversation();
            refreshConversations();
            emit conversationDeleted(id);
        });
        connect(m_engine, &AnswerClient::historyFailed, this,
                [this](const QString& op, const QString& summary, const QString&) { emit statusMessage(op + ": " + summary); });
    }
    connect(m_conversations, &QListWidget::itemClicked, this, [this](QListWidgetItem* item) {
        if (item) openConversation(item->data(Qt::UserRole).toLongLong());
    });
    connect(m_newConversation, &QPushButton::clicked, this, &ChatView::newConversation);
    connect(m_deleteConversation, &QPushButton::clicked, this, [this] {
        if (QListWidgetItem* item = m_conversations->currentItem()) deleteConversation(item->data(Qt::UserRole).toLongLong());
    });
    connect(m_copy, &QPushButton::clicked, this, &ChatView::copyMarkdown);
    connect(m_export, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getSaveFileName(this, tr("Export the conversation"),
                                                          QDir::home().filePath(tr("conversation.md")),
                                                          tr("Markdown (*.md);;All files (*)"));
        if (!path.isEmpty() && !exportMarkdown(path))
            QMessageBox::warning(this, tr("Export"), tr("Could not write %1.").arg(QDir::toNativeSeparators(path)));
    });
    render();
    updateControls();
}

void ChatView::setSetup(const AnswerSetup& setup) {
    const bool catalogChanged = setup.catalog != m_setup.catalog;
    m_setup = setup;
    if (m_setup.bank != m_bankShown) m_topK->setText(tr("k: –"));
    showOptions();
    if (catalogChanged) refreshConversations();
    updateControls();
}

void ChatView::showBank(const BankSummary& bank) {
    m_bankShown = bank.path;
    m_topK->setText(bank.ok ? tr("k: %1").arg(bank.topK) : tr("k: –"));
}

void ChatView::buildOptionsRow(QWidget* parent, QBoxLayout* layout) {
    auto* row = new QHBoxLayout;
    m_method = new QComboBox(parent);
    m_method->setObjectName("chatMethod");
    m_method->addItem(tr("Auto"), QStringLiteral("auto"));
    m_method->addItem(tr("Memory Interleave"), QStringLiteral("interleave"));
    m_method->addItem(tr("Training-free"), QStringLiteral("training-free"));
    m_method->setToolTip(tr("Answer method: Auto uses Memory Interleave for MSA-trained models, training-free otherwise"));
    m_injection = new QComboBox(parent);
    m_injection->setObjectName("chatInjection");
    m_injection->addItem(tr("Original text"), QStringLiteral("text"));
    m_injection->addItem(tr("Compressed (chunk K/V)"), QStringLiteral("kv"));
    m_injection->setToolTip(tr("Training-free: how the chosen documents reach the model"));
    m_hops = new QSpinBox(parent);
    m_hops->setObjectName("chatHops");
    m_hops->setRange(1, 10);
    m_hops->setPrefix(tr("hops: "));
    m_topK = new QLabel(tr("k: –"), parent);
    m_topK->setObjectName("chatTopK");
    m_topK->setToolTip(tr("Documents chosen per routing layer: fixed by the bank"));
    m_collection = new QComboBox(parent);
    m_collection->setObjectName("chatCollection");
    m_collection->addItem(tr("All collections"), QString());
    m_collection->setToolTip(tr("Only documents of this collection are candidates"));
    m_from = new QLineEdit(parent);
    m_from->setObjectName("chatFrom");
    m_from->setPlaceholderText(tr("from yyyy-mm-dd"));
    m_to = new QLineEdit(parent);
    m_to->setObjectName("chatTo");
    m_to->setPlaceholderText(tr("to yyyy-mm-dd"));
    m_participant = new QLineEdit(parent);
    m_participant->setObjectName("chatParticipant");
    m_participant->setPlaceholderText(tr("participant"));
    m_participant->setToolTip(tr("Only documents whose author or a participant contains this text"));
    for (QWidget* w : std::initializer_list<QWidget*>{m_method, m_injection, m_hops, m_topK, m_collection, m_from, m_to, m_participant})
        row->addWidget(w);
    row->addStretch(1);
    layout->addLayout(row);

    if (m_settings) {
        const AppSettings app = AppSettings::load(*m_settings, AppSettings{});
        m_options = ChatOptions::load(*m_settings, app);
    }
    showOptions();
    connect(m_method, &QComboBox::currentIndexChanged, this, &ChatView::optionsEdited);
    connect(m_injection, &QComboBox::currentIndexChanged, this, &ChatView::optionsEdited);
    connect(m_hops, &QSpinBox::valueChanged, this, &ChatView::optionsEdited);
    connect(m_collection, &QComboBox::currentIndexChanged, this, &ChatView::optionsEdited);
    connect(m_from, &QLineEdit::editingFinished, this, &ChatView::optionsEdited);
    connect(m_to, &QLineEdit::editingFinished, this, &ChatView::optionsEdited);
    connect(m_participant, &QLineEdit::editingFinished, this, &ChatView::optionsEdited);
}

void ChatView::showOptions() {
    const QSignalBlocker b1(m_method), b2(m_injection), b3(m_hops), b4(m_collection), b5(m_from), b6(m_to), b7(m_participant);
    m_method->setCurrentIndex(std::max(0, m_method->findData(m_options.method)));
    m_injection->setCurrentIndex(std::max(0, m_injection->findData(m_options.injection)));
    m_hops->setValue(m_options.hops);
    int c = m_collection->findData(m_options.collection);
    if (c < 0) {
        m_collection->addItem(m_options.collection, m_options.collection);
        c = m_collection->count() - 1;
    }
    m_collection->setCurrentIndex(c);
    m_from->setText(m_options.from);
    m_to->setText(m_options.to);
    m_participant->setText(m_options.participant);
}

void ChatView::setOptions(const ChatOptions& options) {
    m_options = options;
    if (m_settings) m_options.save(*m_settings);
    m_setup.method = m_options.answerMethod();
    m_setup.injection = m_options.answerInjection();
    m_setup.hops = m_options.hops;
    m_setup.filter = m_options.filter();
    showOptions();
}

void ChatView::optionsEdited() {
    ChatOptions o;
    o.method = m_method->currentData().toString();
    o.injection = m_injection->currentData().toString();
    o.hops = m_hops->value();
    o.collection = m_collection->currentData().toString();
    o.from = m_from->text().trimmed();
    o.to = m_to->text().trimmed();
    o.participant = m_participant->text().trimmed();
    for (const QString& d : {o.from, o.to})
        if (!d.isEmpty() && !QDate::fromString(d, Qt::ISODate).isValid())
            emit statusMessage(tr("\"%1\" is not a date (yyyy-mm-dd): that end of the date range is open").arg(d));
    setOptions(o);
}

void ChatView::setCollections(const QStringList& collections) {
    const QSignalBlocker block(m_collection);
    m_collection->clear();
    m_collection->addItem(tr("All collections"), QString());
    for (const QString& c : collections) m_collection->addItem(c, c);
    showOptions();
}

// ---------------------------------------------------------------- conversations

void ChatView::refreshConversations() {
    if (m_engine && !m_setup.catalog.isEmpty() && QFileInfo::exists(m_setup.catalog)) m_engine->listConversations(m_setup.catalog);
}

void ChatView::onConversations(const std::vector<catalog::ConversationInfo>& list) {
    m_stored = list;
    const QSignalBlocker block(m_conversations);
    m_conversations->clear();
    for (const auto& c : list) {
        const QString when = QDateTime::fromSecsSinceEpoch(c.createdAt).toString(QStringLiteral("yyyy-MM-dd HH:mm"));
        auto* item = new QListWidgetItem(tr("%1\n%2 · %n turn(s)", nullptr, static_cast<int>(c.nTurns)).arg(qs(c.title), when),
                                         m_conversations);
        item->setData(Qt::UserRole, static_cast<qint64>(c.id));
        item->setToolTip(qs(c.title));
        if (m_conversation == c.id) m_conversations->setCurrentItem(item);
    }
    updateControls();
    emit conversationsRefreshed();
}

void ChatView::openConversation(qint64 conversationId) {
    if (!m_engine || answering() || m_setup.catalog.isEmpty()) return;
    m_loading = conversationId;
    m_engine->loadConversation(m_setup.catalog, conversationId);
}

void ChatView::onConversationLoaded(qint64 id, const std::vector<jobs::LoadedTurn>& turns) {
    if (id != m_loading || answering()) return;
    m_loading = 0;
    m_conversation = id;
    m_engine->setConversation(id);   // the next answers continue it
    m_turns.clear();
    for (const auto& lt : turns) {
        Turn t;
        t.question = qs(lt.turn.question);
        t.answer = qs(lt.turn.answer);
        t.done = true;
        t.stored = true;
        t.turnId = lt.turn.id;
        if (lt.trace) t.trace = *lt.trace;
        t.trace.citations = lt.turn.citations;
        t.trace.seconds = lt.turn.seconds;
        if (t.trace.question.empty()) t.trace.question = lt.turn.question;
        if (t.trace.documents.empty()) t.trace.aggregate();
        m_turns.push_back(std::move(t));
    }
    for (int i = 0; i < m_conversations->count(); ++i)
        if (m_conversations->item(i)->data(Qt::UserRole).toLongLong() == id) {
            const QSignalBlocker block(m_conversations);
            m_conversations->setCurrentRow(i);
        }
    render();
    updateControls();
    emit conversationShown(id);
}

void ChatView::newConversation() {
    if (answering()) return;
    m_conversation.reset();
    m_loading = 0;
    if (m_engine) m_engine->setConversation(std::nullopt);
    m_turns.clear();
    {
        const QSignalBlocker block(m_conversations);
        m_conversations->clearSelection();
        m_conversations->setCurrentItem(nullptr);
    }
    render();
    updateControls();
}

void ChatView::deleteConversation(qint64 conversationId, bool confirm) {
    if (!m_engine || m_setup.catalog.isEmpty()) return;
    if (confirm) {
        QString title;
        for (const auto& c : m_stored)
            if (c.id == conversationId) title = qs(c.title);
        if (QMessageBox::question(this, tr("Delete the conversation"),
                                  tr("Delete the conversation \"%1\" and its turns from the history?").arg(title),
                                  QMessageBox::Yes | QMessageBox::No, QMessageBox::No) != QMessageBox::Yes)
            return;
    }
    m_engine->deleteConversation(m_setup.catalog, conversationId);
}

std::vector<std::pair<qint64, QString>> ChatView::sources(const Turn& t) {
    std::vector<std::pair<qint64, QString>> out;
    if (!t.report.used.empty()) {
        for (const auto& d : t.report.used) out.emplace_back(d.id, qs(d.title));
        return out;
    }
    auto titleOf = [&t](int64_t id) {
        for (const auto& d : t.trace.documents)
            if (d.id == id) return qs(d.title);
        return QString();
    };
    std::set<int64_t> seen;
    for (const auto& h : t.trace.hops)
        for (int64_t id : h.injected)
            if (seen.insert(id).second) out.emplace_back(id, titleOf(id));
    for (int64_t id : t.trace.citations)
        if (seen.insert(id).second) out.emplace_back(id, titleOf(id));
    return out;
}

QString ChatView::markdown() const {
    QString title;
    for (const auto& c : m_stored)
        if (m_conversation == c.id) title = qs(c.title);
    if (title.isEmpty() && !m_turns.empty()) title = m_turns.front().question;
    std::vector<MarkdownTurn> turns;
    for (const Turn& t : m_turns) {
        if (!t.done || !t.error.isEmpty()) continue;
        MarkdownTurn m{t.question, t.answer, {}};
        const std::set<int64_t> cited(t.trace.citations.begin(), t.trace.citations.end());
        // Citations: the cited documents, else (an answer citing none) the sources given to the model.
        for (const auto& [id, docTitle] : sources(t))
            if (cited.empty() || cited.count(id)) m.citations.emplace_back(id, docTitle);
        for (int64_t id : t.trace.citations) {
            bool listed = false;
            for (const auto& c : m.citations) listed = listed || c.first == id;
            if (!listed) m.citations.emplace_back(id, QString());
        }
        turns.push_back(std::move(m));
    }
    return conversationMarkdown(title.isEmpty() ? tr("Conversation") : title, turns);
}

void ChatView::copyMarkdown() {
    QApplication::clipboard()->setText(markdown());
    emit statusMessage(tr("Conversation copied as Markdown"));
}

bool ChatView::exportMarkdown(const QString& path) {
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) return false;
    f.write(markdown().toUtf8());
    if (!f.commit()) return false;
    emit statusMessage(tr("Conversation exported to %1").arg(QDir::toNativeSeparators(path)));
    return true;
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
    m_newConversation->setEnabled(!answering());
    m_conversations->setEnabled(!answering());
    m_deleteConversation->setEnabled(!answering() && m_conversations->currentItem() != nullptr);
    const bool any = std::any_of(m_turns.begin(), m_turns.end(), [](const Turn& t) { return t.done && t.error.isEmpty(); });
    m_copy->setEnabled(any);
    m_export->setEnabled(any);
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
    req.route.device = m_setup.device;
    req.nDocuments = static_cast<size_t>(std::max(1, m_setup.nDocuments));
    req.maxTokens = static_cast<size_t>(std::max(1, m_setup.maxTokens));
    req.temperature = static_cast<float>(m_setup.temperature);
    req.hops = static_cast<size_t>(std::max(1, m_setup.hops));
    req.method = m_setup.method;
    req.injection = m_setup.injection;
    req.route.filter = m_setup.filter;
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
    if (t.stored) {
        const auto src = sources(t);
        QStringList ids;
        for (const auto& d : src) ids << QString("[%1]").arg(d.first);
        return tr("memory used: %n hop(s)", nullptr, static_cast<int>(std::max<size_t>(t.trace.hops.size(), 1))) +
               tr(" · %n document(s) %1", nullptr, static_cast<int>(src.size())).arg(ids.join(' ')) +
               tr(" · %1 s").arg(t.trace.seconds, 0, 'f', 1) + tr(" · stored");
    }
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
        for (const auto& d : sources(t)) known.insert(d.first);
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
        QStringList sourceLinks;
        for (const auto& [id, title] : sources(t)) {
            QString s = QString("<a href='doc:%1'>[%1]</a> %2").arg(id).arg(title.toHtmlEscaped());
            if (cited.count(id)) s += tr(" <b>(cited)</b>");
            sourceLinks << s;
        }
        if (!sourceLinks.isEmpty()) html += QString("<p><small>%1<br>%2</small></p>").arg(tr("Sources given to the model:"), sourceLinks.join("<br>"));
        QString line = memoryLine(t).toHtmlEscaped();
        if (!t.trace.hops.empty()) line += QString(" · <a href='trace:%1'>%2</a>").arg(i).arg(tr("Inspect routing"));
        html += QString("<p style='color:#555'><small>%1</small></p>").arg(line);
    }
    m_transcript->setHtml(html);
    m_transcript->verticalScrollBar()->setValue(m_transcript->verticalScrollBar()->maximum());
}

}  // namespace msa::ui

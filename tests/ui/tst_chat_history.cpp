// tst_chat_history.cpp (label: gui, offscreen; hermetic): the Chat tab's stored conversations and
// answer options in the real main window, on a catalog and bank built here with the tiny MSA checkpoint
// (tests/fixtures/models/msa-qwen3-bf16): two answers are two turns of one listed conversation; "New"
// starts a second one; selecting the first shows its stored turns (question, answer, sources, memory
// line) and "Inspect routing" of a stored turn shows its trace in the Routing tab; the Markdown
// export and the Copy button write the conversation (questions, answers, citations with titles);
// a delete confirmation answered "No" keeps it, a confirmed delete removes it from
// the list and the catalog; the options row reaches the AskRequest (a participant filter that no
// document passes leaves the answer without sources, or fails with a message) and is saved in
// QSettings; compressed injection reaches the engine (a shorter prompt than the original
// text); QAbstractItemModelTester runs on the conversation list's model. conversationMarkdown is
// checked on its own.
#include "chat_test_util.h"

#include "core/catalog/catalog.h"
#include "core/memory/bank.h"
#include "ui/answer_host.h"
#include "ui/conversation_markdown.h"
#include "ui/main_window.h"
#include "ui/views/chat_view.h"
#include "ui/views/routing_view.h"

#include <QAbstractItemModelTester>
#include <QClipboard>
#include <QComboBox>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMessageBox>
#include <QPushButton>
#include <QTimer>
#include <QSettings>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest>

using namespace msa;
using namespace msa::ui;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

UiContext makeContext(QSettings* settings, const QString& catalogPath) {
    UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    c.catalogPath = catalogPath;
    return c;
}

bool answer(ChatView* chat, const QString& q) {
    QSignalSpy finished(chat, &ChatView::answerFinished);
    if (!chat->ask(q)) return false;
    return finished.wait(120000) || finished.count() == 1;
}

int64_t storedConversations(const std::string& catalogPath) {
    auto cat = catalog::Catalog::open(catalogPath);
    if (!cat) return -1;
    auto list = cat->conversations();
    return list ? static_cast<int64_t>(list->size()) : -1;
}
}  // namespace

class TestChatHistory : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_dir.isValid());
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
        m_bank = testing::buildSmallBank(m_dir, kMsa);
        QVERIFY2(m_bank.error.empty(), m_bank.error.c_str());
    }

    void markdownBuilder() {
        const QString md = conversationMarkdown("Cello\nquestions",
                                                {{"Where is the spruce from?", "From the Jura [3].\n", {{3, "note0.txt"}, {5, ""}}},
                                                 {"And the boat?", "", {}}});
        QCOMPARE(md, QString("# Cello questions\n"
                             "\n### Where is the spruce from?\n\nFrom the Jura [3].\n"
                             "\nSources:\n\n- [3] note0.txt\n- [5]\n"
                             "\n### And the boat?\n\n_(no answer)_\n"));
    }

    void conversationsStoredListedExportedDeleted() {
        QSettings settings(m_dir.filePath("s.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        settings.setValue("engine/threads", 2);
        settings.setValue("generation/maxTokens", 24);
        settings.setValue(ChatOptions::kMethodKey, "training-free");
        settings.setValue(ChatOptions::kHopsKey, 1);
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        ChatView* chat = w.chatView();
        QCOMPARE(chat->methodBox()->currentData().toString(), QString("training-free"));
        QCOMPARE(chat->setup().method, jobs::AnswerMethod::TrainingFree);
        // k from the bank (read on the engine thread): the bank's own value.
        const auto bankParams = memory::Bank::open(m_bank.bank);
        QVERIFY(bankParams.ok());
        QTRY_COMPARE_WITH_TIMEOUT(chat->topKLabel()->text(), QString("k: %1").arg(bankParams.value().params().topK), 20000);
        // The Settings tab shows the active bank's chunk size and k (read-only).
        auto* bankLabel = w.findChild<QLabel*>("settingsChunk");
        QVERIFY(bankLabel);
        QVERIFY2(bankLabel->text().startsWith(QString("chunk size %1 tokens · k = %2 documents per routing layer · 4 document")
                                                  .arg(bankParams.value().params().chunkSize).arg(bankParams.value().params().topK)),
                 qPrintable(bankLabel->text()));
        QListWidget* list = chat->conversationList();
        QAbstractItemModelTester tester(list->model(), QAbstractItemModelTester::FailureReportingMode::QtTest);
        const QString q1 = "Where does the spruce of the cello top come from?";
        const QString q2 = "Who refitted the boat Wenna?";
        QVERIFY(answer(chat, q1));
        QVERIFY(answer(chat, q2));
        QVERIFY2(chat->turns().back().error.isEmpty(), qPrintable(chat->turns().back().errorDetail));
        QTRY_COMPARE_WITH_TIMEOUT(list->count(), 1, 20000);
        QTRY_VERIFY_WITH_TIMEOUT(list->item(0)->text().contains("2 turn"), 20000);
        QVERIFY(chat->currentConversation().has_value());
        const qint64 first = *chat->currentConversation();
        QCOMPARE(list->item(0)->data(Qt::UserRole).toLongLong(), first);

        // New conversation: the next answer goes to a second one.
        chat->newConversation();
        QVERIFY(chat->turns().empty());
        QVERIFY(!chat->currentConversation());
        const QString q3 = "What grows fast in cold water?";
        QVERIFY(answer(chat, q3));
        QTRY_COMPARE_WITH_TIMEOUT(list->count(), 2, 20000);
        QTRY_VERIFY_WITH_TIMEOUT(chat->currentConversation().has_value(), 20000);
        QVERIFY(*chat->currentConversation() != first);
        QCOMPARE(storedConversations(m_bank.catalog), int64_t(2));

        // Selecting the first shows its stored turns; a stored turn's trace reaches the Routing tab.
        QSignalSpy shown(chat, &ChatView::conversationShown);
        chat->openConversation(first);
        QVERIFY(shown.wait(20000));
        QCOMPARE(chat->turns().size(), size_t(2));
        QCOMPARE(chat->turns()[0].question, q1);
        QCOMPARE(chat->turns()[1].question, q2);
        QVERIFY(chat->turns()[0].stored);
        QVERIFY(!chat->turns()[0].answer.isEmpty());
        QVERIFY(!chat->turns()[0].trace.hops.empty());
        const QString text = chat->transcript()->toPlainText();
        QVERIFY(text.contains(q1) && text.contains(q2));
        QVERIFY2(text.contains("memory used: 1 hop"), qPrintable(text));
        const auto src = ChatView::sources(chat->turns()[0]);
        QVERIFY(!src.empty());
        for (const auto& [id, title] : src) {
            QVERIFY(m_bank.memoryIds.count(id));
            QVERIFY(chat->transcript()->toHtml().contains(QString("doc:%1").arg(id)));
        }
        emit chat->transcript()->anchorClicked(QUrl("trace:1"));
        QCOMPARE(QString::fromStdString(w.routingView()->trace().question), q2);

        // Markdown: questions, answers, citations with titles; the export writes exactly that.
        const QString md = chat->markdown();
        QVERIFY(md.startsWith("# "));
        QVERIFY(md.contains("### " + q1) && md.contains("### " + q2));
        QVERIFY(!md.contains(q3));
        QVERIFY(md.contains(chat->turns()[0].answer.trimmed()));
        QVERIFY2(md.contains(QString("- [%1]").arg(ChatView::sources(chat->turns()[0]).front().first)) ||
                     !chat->turns()[0].trace.citations.empty(), qPrintable(md));
        auto* copy = chat->findChild<QPushButton*>("chatCopyMarkdown");
        QVERIFY(copy && copy->isEnabled());
        QTest::mouseClick(copy, Qt::LeftButton);
        QCOMPARE(QApplication::clipboard()->text(), md);
        const QString file = m_dir.filePath("export.md");
        QVERIFY(chat->exportMarkdown(file));
        QFile f(file);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(QString::fromUtf8(f.readAll()), md);

        // Delete the shown one: gone from the list, the catalog, and the view starts afresh.
        QSignalSpy deleted(chat, &ChatView::conversationDeleted);
        // The confirmation answered "No" keeps it.
        QString asked;
        QTimer::singleShot(100, chat, [&asked] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (!box) return;
            asked = box->text();
            box->button(QMessageBox::No)->click();
        });
        chat->deleteConversation(first, true);
        QVERIFY2(asked.contains("Delete the conversation"), qPrintable(asked));
        QVERIFY(!deleted.wait(500));
        QCOMPARE(storedConversations(m_bank.catalog), int64_t(2));
        chat->deleteConversation(first, false);
        QVERIFY(deleted.wait(20000));
        QTRY_COMPARE_WITH_TIMEOUT(list->count(), 1, 20000);
        QVERIFY(list->item(0)->data(Qt::UserRole).toLongLong() != first);
        QCOMPARE(storedConversations(m_bank.catalog), int64_t(1));
        QVERIFY(chat->turns().empty());
    }

    void optionsReachTheRequest() {
        QSettings settings(m_dir.filePath("o.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        settings.setValue("engine/threads", 2);
        settings.setValue("generation/maxTokens", 16);
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        ChatView* chat = w.chatView();
        // The collection combo lists the catalog's collections.
        QTRY_VERIFY_WITH_TIMEOUT(chat->collectionBox()->findData("notes") >= 0, 20000);

        ChatOptions o = chat->options();
        o.method = "training-free";
        o.hops = 1;
        o.participant = "nobody-by-this-name";
        chat->setOptions(o);
        QCOMPARE(settings.value(ChatOptions::kParticipantKey).toString(), QString("nobody-by-this-name"));
        QCOMPARE(chat->participantEdit()->text(), QString("nobody-by-this-name"));
        QVERIFY(chat->setup().filter.participant.has_value());
        QVERIFY(answer(chat, "Where does the spruce come from?"));
        const ChatView::Turn& t = chat->turns().back();
        qInfo() << "filtered answer:" << (t.error.isEmpty() ? QString("no sources, answer: %1").arg(t.answer) : t.error);
        if (t.error.isEmpty()) {
            QVERIFY(t.report.used.empty());
            for (const auto& h : t.trace.hops)
                for (const auto& l : h.layers)
                    for (const auto& d : l.top) QVERIFY2(!d.selected, "a filtered-out document was selected");
        } else {
            QVERIFY(chat->transcript()->toPlainText().contains(t.error));
        }

        // The collection filter keeps the bank's documents: sources again; and a new window reads it back.
        o.participant.clear();
        o.collection = "notes";
        o.from = "2000-01-01";
        chat->setOptions(o);
        QCOMPARE(chat->collectionBox()->currentData().toString(), QString("notes"));
        QVERIFY(chat->setup().filter.collection == std::optional<std::string>("notes"));
        QVERIFY(chat->setup().filter.fromUnix == std::optional<int64_t>(946684800));
        o.to = "2000-01-01";   // inclusive: up to the end of that UTC day
        chat->setOptions(o);
        QVERIFY(chat->setup().filter.toUnix == std::optional<int64_t>(946684800 + 86400));
        QCOMPARE(chat->toEdit()->text(), QString("2000-01-01"));
        // A malformed date leaves that end open (and says so when typed).
        QSignalSpy status(chat, &ChatView::statusMessage);
        chat->toEdit()->setText("2024-13-45");
        emit chat->toEdit()->editingFinished();
        QVERIFY(!chat->setup().filter.toUnix.has_value());
        QVERIFY(!status.isEmpty() && status.last().at(0).toString().contains("2024-13-45"));
        o.from.clear();
        o.to.clear();
        chat->setOptions(o);
        QVERIFY(answer(chat, "Where does the spruce come from?"));
        QVERIFY2(chat->turns().back().error.isEmpty(), qPrintable(chat->turns().back().errorDetail));
        QVERIFY(!chat->turns().back().report.used.empty());
        const size_t originalPrompt = chat->turns().back().report.promptTokens;
        // Compressed injection reaches the engine (training-free, chunk K/V): an answer with sources.
        o.injection = "kv";
        chat->setOptions(o);
        QCOMPARE(chat->setup().injection, jobs::Injection::Compressed);
        QVERIFY(answer(chat, "Where does the spruce come from?"));
        QVERIFY2(chat->turns().back().error.isEmpty(), qPrintable(chat->turns().back().errorDetail));
        QVERIFY(!chat->turns().back().report.used.empty());
        // The documents' text is not in the prompt any more (their K/V is in the attention).
        QVERIFY2(chat->turns().back().report.promptTokens < originalPrompt,
                 qPrintable(QString("prompt tokens: original %1, compressed %2").arg(originalPrompt).arg(chat->turns().back().report.promptTokens)));
        MainWindow w2(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        QCOMPARE(w2.chatView()->options().collection, QString("notes"));
        QCOMPARE(w2.chatView()->methodBox()->currentData().toString(), QString("training-free"));
        QCOMPARE(w2.chatView()->injectionBox()->currentData().toString(), QString("kv"));
    }

private:
    QTemporaryDir m_dir;
    testing::SmallBank m_bank;
};

QTEST_MAIN(TestChatHistory)
#include "tst_chat_history.moc"

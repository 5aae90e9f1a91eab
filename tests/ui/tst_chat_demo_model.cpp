// tst_chat_demo_model.cpp (labels: gui, model; skipped without the demo model): the Chat tab with the
// demo model (SmolLM2-135M-Instruct Q4_1, packaging/setup.sh fetches it) on a bank of four notes built
// here: the answer is visible in the transcript while it is still being generated (streaming), it ends
// with sources that are memory documents of the bank; a longer answer stopped after its first piece
// ends as "cancelled" with fewer tokens than allowed, and the partial text is kept.
#include "chat_test_util.h"

#include "core/util/paths.h"
#include "ui/answer_host.h"
#include "ui/main_window.h"
#include "ui/views/chat_view.h"

#include <QSettings>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest>

using namespace msa;
using namespace msa::ui;

class TestChatDemoModel : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        m_model = findDemoModel().string();
        if (m_model.empty()) QSKIP("the demo model is missing (run packaging/setup.sh, or set MSA_DEMO_MODEL)");
        QVERIFY(m_dir.isValid());
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
        m_bank = testing::buildSmallBank(m_dir, m_model);
        QVERIFY2(m_bank.error.empty(), m_bank.error.c_str());
    }

    void streamsCitesAndStops() {
        QSettings settings(m_dir.filePath("s.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(m_model));
        settings.setValue("memory/maxHops", 2);   // training-free over two routing hops
        UiContext c;
        c.registry = engine::BackendRegistry::withCpu();
        c.doctor = jobs::runDoctor(c.registry);
        c.settings = &settings;
        c.catalogPath = QString::fromStdString(m_bank.catalog);
        MainWindow w(std::move(c));
        ChatView* chat = w.chatView();
        AnswerSetup setup = chat->setup();
        setup.maxTokens = 48;
        chat->setSetup(setup);

        QSignalSpy pieces(w.engine(), &AnswerClient::piece);
        QSignalSpy finished(chat, &ChatView::answerFinished);
        QVERIFY(chat->ask("Who refitted the boat Wenna, and where?"));
        // Streaming: text shows in the transcript before the answer is complete.
        QTRY_VERIFY_WITH_TIMEOUT(pieces.count() >= 1, 120000);
        if (finished.count() == 0) {
            QVERIFY(!chat->turns().back().done);
            QVERIFY(!chat->turns().back().answer.isEmpty());
            QVERIFY(chat->transcript()->toPlainText().contains(chat->turns().back().answer.left(8)));
        }
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 300000);
        const ChatView::Turn& turn = chat->turns().back();
        QVERIFY2(turn.error.isEmpty(), qPrintable(turn.errorDetail));
        QVERIFY(!turn.answer.isEmpty());
        QVERIFY(!turn.report.used.empty());
        for (const auto& d : turn.report.used) QVERIFY(m_bank.memoryIds.count(d.id));
        for (int64_t id : turn.trace.citations) QVERIFY(m_bank.memoryIds.count(id));
        QVERIFY(chat->transcript()->toPlainText().contains("memory used:"));
        QVERIFY(turn.trace.hops.size() >= 1 && turn.trace.hops.size() <= 2);
        for (const auto& hop : turn.trace.hops)
            for (int64_t id : hop.injected) QVERIFY(m_bank.memoryIds.count(id));

        // Stop after the first piece of a long answer.
        setup.maxTokens = 400;
        chat->setSetup(setup);
        pieces.clear();
        QVERIFY(chat->ask("Tell me everything the notes say about boats, cellos and letters, in detail."));
        QTRY_VERIFY_WITH_TIMEOUT(pieces.count() >= 1, 120000);
        chat->stop();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 120000);
        const ChatView::Turn& stopped = chat->turns().back();
        QCOMPARE(stopped.report.stopReason, std::string("cancelled"));
        QVERIFY(stopped.report.answerTokens >= 1);
        QVERIFY(stopped.report.answerTokens < 400);
        QVERIFY(!stopped.answer.isEmpty());
    }

private:
    QTemporaryDir m_dir;
    std::string m_model;
    testing::SmallBank m_bank;
};

QTEST_MAIN(TestChatDemoModel)
#include "tst_chat_demo_model.moc"

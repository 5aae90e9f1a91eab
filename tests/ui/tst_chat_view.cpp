// tst_chat_view.cpp (label: gui, offscreen; hermetic): the Chat tab in the real main window on a catalog
// and a bank built here with the tiny MSA checkpoint (tests/fixtures/models/msa-qwen3-bf16): with no
// bank the input is disabled and the hint says to build the memory first; a question runs on the
// engine thread, its streamed pieces add up to the final answer, the sources listed are memory
// documents of the bank and link to them, the "memory used" line and the routing trace (hop 0 with the
// checkpoint's routing layers, the sources injected) reach the Routing tab, a source link opens its
// document in the Library with the memory segment marked; Stop cancels (stop reason "cancelled");
// closing the window during an answer cancels it and joins the engine thread; an engine failure
// (a bank built with another model) is a message in the transcript.
// The demo-model run (streaming visible mid-answer, stop mid-answer) is tst_chat_demo_model.
#include "chat_test_util.h"

#include "ui/answer_host.h"
#include "ui/main_window.h"
#include "ui/views/chat_view.h"
#include "ui/views/library_view.h"
#include "ui/views/routing_view.h"

#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QElapsedTimer>
#include <QSettings>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QtTest>

#include <cstdlib>

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
}  // namespace

class TestChatView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_dir.isValid());
        // No first-run demo import in these windows: the catalog is the test's own.
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
        m_bank = testing::buildSmallBank(m_dir, kMsa);
        QVERIFY2(m_bank.error.empty(), m_bank.error.c_str());
        QCOMPARE(m_bank.memoryIds.size(), size_t(4));
    }

    void disabledWithoutABank() {
        QSettings settings(m_dir.filePath("empty.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, m_dir.filePath("no-bank-here"));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        ChatView* chat = w.chatView();
        QVERIFY(!chat->input()->isEnabled());
        QVERIFY(!chat->askButton()->isEnabled());
        QVERIFY(!chat->stopButton()->isEnabled());
        QVERIFY(!chat->hint()->isHidden());
        QVERIFY2(chat->hint()->text().contains("build the memory first"), qPrintable(chat->hint()->text()));
        QVERIFY(!chat->ask("anything"));
        QVERIFY(chat->turns().empty());
    }

    void asksStreamsCitesAndOpens() {
        QSettings settings(m_dir.filePath("s.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        settings.setValue("engine/threads", 2);
        settings.setValue("memory/maxHops", 1);
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        w.show();
        ChatView* chat = w.chatView();
        QVERIFY(chat->input()->isEnabled());
        QVERIFY(chat->hint()->isHidden());
        // Training-free, one hop: its sources and trace are deterministic (Memory Interleave is below).
        AnswerSetup setup = chat->setup();
        QCOMPARE(setup.hops, 1);
        setup.method = jobs::AnswerMethod::TrainingFree;
        chat->setSetup(setup);

        QSignalSpy pieces(w.engine(), &AnswerClient::piece);
        QSignalSpy finished(chat, &ChatView::answerFinished);
        chat->input()->setText("Where does the spruce of the cello top come from?");
        QTest::mouseClick(chat->askButton(), Qt::LeftButton);
        QVERIFY(chat->answering());
        QVERIFY(chat->stopButton()->isEnabled());
        QVERIFY(!chat->askButton()->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 120000);
        const ChatView::Turn& turn = chat->turns().back();
        QVERIFY2(turn.error.isEmpty(), qPrintable(turn.error + "\n" + turn.errorDetail));
        QVERIFY(!turn.answer.isEmpty());
        QVERIFY(pieces.count() >= 1);
        QString streamed;
        for (const auto& args : pieces) streamed += args.at(1).toString();
        QCOMPARE(streamed, turn.answer);   // coalescing loses nothing

        // Sources: memory documents of the bank, linked; the memory line; the trace in the Routing tab.
        QVERIFY(!turn.report.used.empty());
        const QString html = chat->transcript()->toHtml();
        for (const auto& d : turn.report.used) {
            QVERIFY(m_bank.memoryIds.count(d.id));
            QVERIFY2(html.contains(QString("doc:%1").arg(d.id)), qPrintable(html));
        }
        QVERIFY(chat->memoryLine(turn).startsWith("memory used: 1 hop"));
        QVERIFY(chat->transcript()->toPlainText().contains("memory used: 1 hop"));
        const memory::RoutingTrace& trace = w.routingView()->trace();
        QCOMPARE(trace.hops.size(), size_t(1));
        QCOMPARE(trace.hops[0].layers.size(), size_t(2));
        QCOMPARE(trace.hops[0].injected.size(), turn.report.used.size());
        QCOMPARE(trace.question, std::string("Where does the spruce of the cello top come from?"));
        for (int64_t id : trace.citations) QVERIFY(m_bank.memoryIds.count(id));

        // A source link opens its document in the Library, with that memory segment marked.
        const int64_t first = turn.report.used.front().id;
        emit chat->transcript()->anchorClicked(QUrl(QString("doc:%1").arg(first)));
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.libraryView()));
        QTRY_COMPARE_WITH_TIMEOUT(w.libraryView()->shownMemoryDocumentId(), qint64(first), 10000);
        auto cat = catalog::Catalog::open(m_bank.catalog);
        QVERIFY(cat.ok());
        auto md = cat->memoryDocument(first);
        QVERIFY(md.ok());
        QCOMPARE(w.libraryView()->shownDocumentId(), qint64(md->documentId));

        // "Inspect routing" shows the Routing tab.
        emit chat->transcript()->anchorClicked(QUrl("trace:0"));
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.routingView()));

        // Stop: cancelled before the first token; the turn ends as stopped, the input comes back.
        QVERIFY(chat->ask("Who refitted the boat Wenna?"));
        QVERIFY(!chat->ask("a second question while one runs"));
        chat->stop();
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, 120000);
        QCOMPARE(chat->turns().size(), size_t(2));
        QVERIFY2(chat->turns().back().error.isEmpty(), qPrintable(chat->turns().back().errorDetail));
        QCOMPARE(chat->turns().back().report.stopReason, std::string("cancelled"));
        QCOMPARE(chat->turns().back().report.answerTokens, size_t(0));
        QVERIFY(chat->memoryLine(chat->turns().back()).endsWith("stopped"));
        QVERIFY(!chat->answering());
        QVERIFY(chat->input()->isEnabled());
        QVERIFY(!chat->stopButton()->isEnabled());
    }

    void memoryInterleaveAnswer() {
        // The tiny checkpoint is an MSA model: by default it answers by Memory Interleave, and the
        // engine's own trace (not the hop-0 conversion) reaches the Routing tab.
        QSettings settings(m_dir.filePath("i.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        settings.setValue("engine/threads", 2);
        settings.setValue("generation/maxTokens", 24);
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        ChatView* chat = w.chatView();
        QCOMPARE(chat->setup().method, jobs::AnswerMethod::Auto);
        QSignalSpy finished(chat, &ChatView::answerFinished);
        QVERIFY(chat->ask("Who refitted the boat Wenna?"));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 120000);
        const ChatView::Turn& turn = chat->turns().back();
        QVERIFY2(turn.error.isEmpty(), qPrintable(turn.errorDetail));
        QCOMPARE(turn.report.method.rfind("msa-interleave", 0), size_t(0));
        QVERIFY(!turn.report.trace.hops.empty());
        QCOMPARE(turn.trace.hops.size(), turn.report.trace.hops.size());
        QCOMPARE(w.routingView()->trace().hops.size(), turn.report.trace.hops.size());
        for (const auto& hop : turn.trace.hops)
            for (const auto& layer : hop.layers)
                for (const auto& d : layer.top) QVERIFY(m_bank.memoryIds.count(d.id));
        QVERIFY(chat->transcript()->toPlainText().contains("memory used:"));
    }

    void closingDuringAnAnswerStopsIt() {
        QSettings settings(m_dir.filePath("c.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        w.show();
        AnswerSetup setup = w.chatView()->setup();
        setup.maxTokens = 100000;   // would run for a long time if closing did not cancel it
        w.chatView()->setSetup(setup);
        QSignalSpy pieces(w.engine(), &AnswerClient::piece);
        QVERIFY(w.chatView()->ask("Who refitted the boat Wenna?"));
        QTRY_VERIFY_WITH_TIMEOUT(pieces.count() >= 1, 60000);
        QElapsedTimer t;
        t.start();
        QVERIFY(w.close());   // cancels between tokens and joins the engine thread
        QVERIFY2(t.elapsed() < 20000, qPrintable(QString::number(t.elapsed())));
        QVERIFY(!w.engine()->busy());
        QCOMPARE(w.engine()->ask({}), quint64(0));   // shut down: no more requests
    }

    void failureIsAMessage() {
        // A bank built with another model: Mismatch from the engine thread, shown in the transcript.
        QSettings settings(m_dir.filePath("f.ini"), QSettings::IniFormat);
        settings.setValue(AnswerSetup::kBankKey, QString::fromStdString(m_bank.bank));
        settings.setValue("engine/model", QString(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32"));
        MainWindow w(makeContext(&settings, QString::fromStdString(m_bank.catalog)));
        ChatView* chat = w.chatView();
        QSignalSpy finished(chat, &ChatView::answerFinished);
        QVERIFY(chat->ask("Who refitted the boat?"));
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 60000);
        QVERIFY(!chat->turns().back().error.isEmpty());
        QVERIFY(chat->transcript()->toPlainText().contains("Answering failed"));
        QVERIFY(chat->input()->isEnabled());
    }

private:
    QTemporaryDir m_dir;
    testing::SmallBank m_bank;
};

QTEST_MAIN(TestChatView)
#include "tst_chat_view.moc"

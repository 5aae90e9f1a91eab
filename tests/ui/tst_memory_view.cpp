// tst_memory_view.cpp (labels: gui, model; offscreen; skips without the demo model): the Memory tab on a
// real catalog (a small first-run "Demo archive" imported by the Library) and the real demo model.
// A build from the view fills the tokens/s plot and ends with the bank's facts, which match the bank
// on disk; a second build keeps every document ("already in the bank"); a tiny document-token limit
// lists every document as skipped with its reason; Cancel during a build of a larger collection
// commits a valid partial bank and Build resumes it to completion; a model that does not open, and a
// corrupt bank, and a bank built with another model (two tiny fixture models), are messages in the view, not crashes; closing the window during a build leaves a
// valid bank.
#include "core/memory/bank.h"
#include "core/util/paths.h"
#include "ui/main_window.h"
#include "ui/memory_host.h"
#include "ui/views/library_view.h"
#include "ui/views/memory_view.h"

#include <QDir>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include <cstdlib>

using namespace msa;
using namespace msa::ui;

namespace {
void writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    QVERIFY2(f.open(QIODevice::WriteOnly), qPrintable(path));
    QCOMPARE(f.write(bytes), bytes.size());
}

UiContext makeContext(QSettings* settings, const QString& catalogPath) {
    UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    c.catalogPath = catalogPath;
    return c;
}

const char* kTopics[] = {"the lighthouse keeper", "the blue boat", "the harbour festival", "the winter storm",
                         "the apple orchard", "the old library", "the mountain railway", "the village choir"};

QByteArray note(int i) {
    QByteArray text = QByteArray("# Note ") + QByteArray::number(i) + "\n\n";
    for (int s = 0; s < 6; ++s)
        text += QByteArray("On day ") + QByteArray::number(i * 7 + s) + " we talked about " + kTopics[(i + s) % 8] +
                " and wrote down what Anna and Jon remembered of it.\n";
    return text;
}

MemoryBuildOutcome lastOutcome(const QSignalSpy& spy) {
    return spy.isEmpty() ? MemoryBuildOutcome{} : spy.last().at(0).value<MemoryBuildOutcome>();
}
}  // namespace

class TestMemoryView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_tmp.isValid());
        m_model = QString::fromStdString(findDemoModel().string());
        // The first-run import makes a 4-document "Demo archive"; "Big" (40 notes) is imported by hand.
        const QString a = m_tmp.filePath("demo/archive");
        QVERIFY(QDir().mkpath(a));
        for (int i = 0; i < 4; ++i) writeFile(a + QString("/note%1.md").arg(i), note(i));
        const QString big = m_tmp.filePath("big");
        QVERIFY(QDir().mkpath(big));
        for (int i = 0; i < 40; ++i) writeFile(big + QString("/n%1.md").arg(i, 2, 10, QChar('0')), note(100 + i));
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(a), 1);
    }

    void buildFillsPlotAndShowsBank() {
        if (m_model.isEmpty()) QSKIP("demo model not found: run packaging/setup.sh (model label)");
        QSettings settings(m_tmp.filePath("s.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, m_tmp.filePath("catalog.sqlite")));
        w.show();
        QVERIFY(w.selectTab("memory"));
        MemoryView* view = w.memoryView();
        QTRY_VERIFY_WITH_TIMEOUT(w.libraryView()->isSettled(), 60000);
        QTRY_VERIFY(view->selectCollection("Demo archive"));
        view->setModelPath(m_model);
        QCOMPARE(view->bankPath(), QDir(m_tmp.filePath("banks")).filePath("Demo_archive"));
        QTRY_VERIFY(view->findChild<QLabel*>("memoryBankFacts")->text().contains("No memory bank"));

        QSignalSpy outcomes(view->memoryClient(), &MemoryClient::buildFinished);
        QSignalSpy shown(view, &MemoryView::bankShown);
        QVERIFY(view->findChild<QPushButton*>("memoryBuild")->isEnabled());
        QTest::mouseClick(view->findChild<QPushButton*>("memoryBuild"), Qt::LeftButton);
        QVERIFY(view->buildRunning());
        QVERIFY(view->findChild<QPushButton*>("memoryCancel")->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 1, 300000);
        const MemoryBuildOutcome o = lastOutcome(outcomes);
        QVERIFY2(o.ok, qPrintable(o.error));
        QVERIFY(!o.report.cancelled);
        QCOMPARE(o.report.nDocuments, quint64(4));
        QCOMPARE(o.report.nEncoded, quint64(4));
        QVERIFY(o.report.nTokens > 100);
        QVERIFY(view->ratePointCount() >= 1);
        QVERIFY(view->isVisible());
        QVERIFY(!view->findChild<QLabel*>("memoryError")->isVisible());

        // The facts shown are the bank's on disk.
        QTRY_VERIFY(!shown.isEmpty() && shown.last().at(0).value<BankFacts>().ok);
        // ... and it is the bank the answering views use from now on.
        QCOMPARE(settings.value(AppSettings::kActiveBankKey).toString(), view->bankPath());
        auto bank = memory::Bank::open(view->bankPath().toStdString());
        QVERIFY2(bank.ok(), bank.ok() ? "" : bank.status().toString().c_str());
        QCOMPARE(bank->nDocuments(), quint64(4));
        const QString facts = view->findChild<QLabel*>("memoryBankFacts")->text();
        QVERIFY2(facts.contains(QLocale().toString(bank->nTokens())), qPrintable(facts));
        QVERIFY(facts.contains(QString::fromStdString(bank->params().modelFingerprint)));
        QVERIFY(facts.contains("top-k"));
        QCOMPARE(view->findChild<QListWidget*>("memorySkipped")->item(0)->text(), QString("none"));

        // Building again keeps every document.
        QSignalSpy started(view->memoryClient(), &MemoryClient::buildStarted);
        QVERIFY(view->startBuild());
        QTRY_COMPARE(started.count(), 1);
        QCOMPARE(started.at(0).at(1).value<quint64>(), quint64(4));
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 2, 300000);
        QCOMPARE(lastOutcome(outcomes).alreadyInBank, quint64(4));
        QCOMPARE(lastOutcome(outcomes).report.nUnchanged, quint64(4));
        QCOMPARE(lastOutcome(outcomes).report.nEncoded, quint64(0));
        QVERIFY2(view->findChild<QLabel*>("memoryResume")->text().startsWith("4 documents in the bank"),
                 qPrintable(view->findChild<QLabel*>("memoryResume")->text()));

        // A tiny token limit: every document is listed with the reason it was skipped.
        view->setBankPath(m_tmp.filePath("banks/limited"));
        view->setDocumentTokenLimit(16);
        QVERIFY(view->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 3, 300000);
        QCOMPARE(lastOutcome(outcomes).report.nSkipped, quint64(4));
        auto* skipped = view->findChild<QListWidget*>("memorySkipped");
        QCOMPARE(skipped->count(), 4);
        QVERIFY2(skipped->item(0)->text().contains("exceed the limit of 16"), qPrintable(skipped->item(0)->text()));
    }

    void cancelThenResume() {
        if (m_model.isEmpty()) QSKIP("demo model not found: run packaging/setup.sh (model label)");
        QSettings settings(m_tmp.filePath("s.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, m_tmp.filePath("catalog.sqlite")));
        w.show();
        QTRY_VERIFY_WITH_TIMEOUT(w.libraryView()->isSettled(), 60000);
        QSignalSpy imported(w.catalog(), &CatalogClient::importFinished);
        QVERIFY(w.catalog()->startImport("Big", {m_tmp.filePath("big")}));
        QTRY_COMPARE_WITH_TIMEOUT(imported.count(), 1, 60000);
        MemoryView* view = w.memoryView();
        QTRY_VERIFY(view->selectCollection("Big"));
        view->setModelPath(m_model);

        QSignalSpy outcomes(view->memoryClient(), &MemoryClient::buildFinished);
        QSignalSpy progress(view->memoryClient(), &MemoryClient::buildProgress);
        QVERIFY(view->startBuild());
        QVERIFY(!view->startBuild());   // one build at a time
        QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty() && progress.last().at(0).value<MemoryProgressUpdate>().done >= 2, 300000);
        QTest::mouseClick(view->findChild<QPushButton*>("memoryCancel"), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 1, 300000);
        const MemoryBuildOutcome c = lastOutcome(outcomes);
        QVERIFY2(c.ok, qPrintable(c.error));
        QVERIFY(c.report.cancelled);
        QVERIFY(c.report.bankDocuments >= 2 && c.report.bankDocuments < 40);
        QVERIFY(view->findChild<QLabel*>("memoryResume")->text().contains("Build again to resume"));
        auto partial = memory::Bank::open(view->bankPath().toStdString());
        QVERIFY2(partial.ok(), partial.ok() ? "" : partial.status().toString().c_str());
        QCOMPARE(partial->nDocuments(), c.report.bankDocuments);

        // Build resumes: what the cancelled run committed is kept, the rest is encoded.
        QVERIFY(view->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 2, 600000);
        const MemoryBuildOutcome r = lastOutcome(outcomes);
        QVERIFY2(r.ok && !r.report.cancelled, qPrintable(r.error));
        QCOMPARE(r.alreadyInBank, c.report.bankDocuments);
        QCOMPARE(r.report.nUnchanged, c.report.bankDocuments);
        QCOMPARE(r.report.nEncoded + r.report.nUnchanged, quint64(40));
        QCOMPARE(r.report.bankDocuments, quint64(40));
        QVERIFY(view->ratePointCount() >= 1);

        // Closing the window during a build: it stops, commits, and the bank opens.
        view->setBankPath(m_tmp.filePath("banks/closed"));
        QVERIFY(view->startBuild());
        QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty() && progress.last().at(0).value<MemoryProgressUpdate>().done >= 1 &&
                                     view->buildRunning(),
                                 300000);
        w.close();
        QVERIFY(view->memoryClient()->isShutDown());
        auto closed = memory::Bank::open(m_tmp.filePath("banks/closed").toStdString());
        QVERIFY2(closed.ok(), closed.ok() ? "" : closed.status().toString().c_str());
        QVERIFY(closed->nDocuments() < 40);
    }

    void errorsAreMessages() {
        QSettings settings(m_tmp.filePath("s2.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, m_tmp.filePath("catalog.sqlite")));
        w.show();
        QVERIFY(w.selectTab("memory"));
        MemoryView* view = w.memoryView();
        QTRY_VERIFY_WITH_TIMEOUT(w.libraryView()->isSettled(), 60000);
        QTRY_VERIFY(view->selectCollection("Demo archive"));
        auto* error = view->findChild<QLabel*>("memoryError");

        // A file that is not a model: refused before anything starts, with the reason.
        writeFile(m_tmp.filePath("bad.gguf"), QByteArray("GGUF\x03\0\0\0 this is not a model", 28));
        view->setModelPath(m_tmp.filePath("bad.gguf"));
        QVERIFY(!view->findChild<QLabel*>("memoryModelCheck")->text().isEmpty());
        QVERIFY(!view->startBuild());
        QVERIFY(error->isVisible());
        QVERIFY2(error->text().contains("cannot be used"), qPrintable(error->text()));

        // A bank built with another model: the build fails with Mismatch and the bank is kept as it was.
        // (Two tiny random models from tests/fixtures, so this needs no demo model.)
        const QString fixtures = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/");
        QSignalSpy outcomes(view->memoryClient(), &MemoryClient::buildFinished);
        view->setModelPath(fixtures + "llama-f32");
        QVERIFY2(view->findChild<QLabel*>("memoryModelCheck")->text().contains("llama"),
                 qPrintable(view->findChild<QLabel*>("memoryModelCheck")->text()));
        view->setBankPath(m_tmp.filePath("banks/tiny"));
        QVERIFY(view->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 1, 120000);
        QVERIFY2(lastOutcome(outcomes).ok, qPrintable(lastOutcome(outcomes).error));
        QCOMPARE(lastOutcome(outcomes).report.bankDocuments, quint64(4));
        QVERIFY(!error->isVisible());
        view->setModelPath(fixtures + "qwen2-f32");
        QVERIFY(view->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 2, 120000);
        QVERIFY(!lastOutcome(outcomes).ok);
        QVERIFY2(lastOutcome(outcomes).error.startsWith("mismatch"), qPrintable(lastOutcome(outcomes).error));
        QVERIFY(error->isVisible());
        QVERIFY2(error->text().contains("was built with model fingerprint"), qPrintable(error->text()));
        auto kept = memory::Bank::open(m_tmp.filePath("banks/tiny").toStdString());
        QVERIFY(kept.ok());
        QCOMPARE(kept->nDocuments(), quint64(4));

        // A corrupt bank: shown when opened, and the build fails with the bank's message.
        if (m_model.isEmpty()) QSKIP("demo model not found: the corrupt-bank build needs it (model label)");
        view->setModelPath(m_model);
        const QString bad = m_tmp.filePath("banks/corrupt");
        QVERIFY(QDir().mkpath(bad));
        writeFile(bad + "/manifest.json", "{ \"format\": \"msa-bank\", truncated");
        QSignalSpy shown(view, &MemoryView::bankShown);
        view->setBankPath(bad);
        QTRY_VERIFY(!shown.isEmpty());
        QVERIFY(!shown.last().at(0).value<BankFacts>().ok);
        QTRY_VERIFY(error->isVisible());
        QVERIFY2(error->text().contains("cannot be read"), qPrintable(error->text()));
        QVERIFY(view->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(outcomes.count(), 3, 120000);
        QVERIFY(!lastOutcome(outcomes).ok);
        QVERIFY(error->isVisible());
        QVERIFY2(error->text().contains("manifest.json"), qPrintable(error->text()));
        // Nothing was written over the broken bank.
        QFile m(bad + "/manifest.json");
        QVERIFY(m.open(QIODevice::ReadOnly));
        QCOMPARE(m.readAll(), QByteArray("{ \"format\": \"msa-bank\", truncated"));
    }

private:
    QTemporaryDir m_tmp;
    QString m_model;
};

QTEST_MAIN(TestMemoryView)
#include "tst_memory_view.moc"

// tst_workbench_e2e.cpp (label gui; offscreen): the real MainWindow end to end, driven as a user would:
// import a folder of text notes written here (Library) → build its memory (Memory tab, real
// jobs::buildMemory) → ask a question (Chat, real generation) → the Routing tab shows the hop → a
// chosen document opens in the Library. Then the Memory tab's bank files: Export, Verify, Import into a
// new folder (its facts equal the original's), an import that would overwrite refused with the bank left
// intact, an archive of another model refused with a clear message. Cancel during a 1,500-file import and
// during a build leaves a consistent state (the catalog passes its integrity check, the bank verifies),
// and closing the window during an export shuts down cleanly (no partial archive left behind).
// The hermetic run uses the tiny MSA checkpoint (tests/fixtures/models/msa-qwen3-bf16, a real model);
// demoModelEndToEnd repeats the import→build→ask→route→open chain with the demo model and skips
// without it (core/util/paths.h findDemoModel). First run (UiContext::firstRun): without the demo
// model the Memory tab explains how to get it; with it the demo archive's memory is built and the
// suggested question is highlighted in Chat (skipped without the demo model).
#include "core/catalog/catalog.h"
#include "core/memory/bank.h"
#include "core/memory/bank_archive.h"
#include "core/util/paths.h"
#include "ui/answer_host.h"
#include "ui/catalog_host.h"
#include "ui/main_window.h"
#include "ui/memory_host.h"
#include "ui/views/chat_view.h"
#include "ui/views/library_view.h"
#include "ui/views/memory_view.h"
#include "ui/views/routing_view.h"

#include <QAction>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>

#include <fstream>

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

void writeNotes(const QString& folder) {
    QDir().mkpath(folder);
    const char* notes[] = {
        "Anna wrote: the cello top is cut from old spruce that Jon brought from the Jura in 2019.",
        "Boat log: the boat Wenna was refitted in March at Pemberley harbour by Marguerite.",
        "Garden notes: kelp forests grow fast in cold water; the tide tables shift by an hour in summer.",
        "Letter from Jon: the lifeboat house was built from a wrecked barque called Hope."};
    for (int i = 0; i < 4; ++i) std::ofstream(QDir(folder).filePath(QString("note%1.txt").arg(i)).toStdString()) << notes[i] << "\n";
}

std::filesystem::path fsPath(const QString& s) { return std::filesystem::path(s.toStdString()); }

// One outcome of a bank-file job, waited for on the view's signal.
struct FileResult {
    bool ok = false, cancelled = false;
    QString summary;
};
bool waitFile(QSignalSpy& spy, FileResult& r, int timeoutMs) {
    if (!spy.wait(timeoutMs) && spy.isEmpty()) return false;
    const QList<QVariant> args = spy.takeFirst();
    r.ok = args.at(0).toBool();
    r.cancelled = args.at(1).toBool();
    r.summary = args.at(2).toString();
    return true;
}
}  // namespace

class TestWorkbenchE2E : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_dir.isValid());
        // No first-run demo import: the catalog holds only what the test imports.
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
    }

    void endToEndTinyModel() { endToEnd(QString::fromStdString(kMsa), "tiny", true); }

    void demoModelEndToEnd() {
        const std::filesystem::path demo = findDemoModel();
        if (demo.empty()) QSKIP("demo model absent (packaging/setup.sh build fetches it)");
        endToEnd(QString::fromStdString(demo.string()), "demo", false);
    }

    // Closing the window during a bank import cancels it: the target is a complete bank or absent, and
    // nothing half-written is left beside it.
    void closeDuringBankImport() {
        if (m_archive.isEmpty()) QSKIP("needs the archive exported by endToEndTinyModel");
        const QString root = m_dir.filePath("close-import");
        QDir().mkpath(root + "/target-parent");
        QSettings settings(root + "/settings.ini", QSettings::IniFormat);
        settings.setValue("engine/model", QString::fromStdString(kMsa));
        MainWindow w(makeContext(&settings, root + "/catalog.sqlite"));
        w.show();
        QTRY_VERIFY_WITH_TIMEOUT(w.libraryView()->isSettled(), 30000);
        MemoryView* memory = w.memoryView();
        memory->setModelPath(QString::fromStdString(kMsa));
        const QString target = root + "/target-parent/bank";
        QVERIFY(memory->importBankFrom(m_archive, target));
        w.close();
        QVERIFY(memory->memoryClient()->isShutDown());
        if (QFileInfo::exists(target)) {   // it finished before the cancel was seen
            auto b = memory::Bank::open(fsPath(target));
            QVERIFY2(b.ok(), b.ok() ? "" : b.status().toString().c_str());
            QVERIFY(b->verify().ok());
        }
        const QStringList entries = QDir(root + "/target-parent").entryList(QDir::AllEntries | QDir::NoDotAndDotDot | QDir::Hidden);
        QVERIFY2(entries.isEmpty() || entries == QStringList{"bank"}, qPrintable(entries.join(", ")));
    }

    // The main actions have window-wide shortcuts (Actions menu) that work from any tab.
    void shortcuts() {
        const QString root = m_dir.filePath("shortcuts");
        QDir().mkpath(root);
        QSettings settings(root + "/settings.ini", QSettings::IniFormat);
        MainWindow w(makeContext(&settings, root + "/catalog.sqlite"));
        w.show();
        QVERIFY(QTest::qWaitForWindowActive(&w));
        const struct { const char* action; QKeySequence key; } expected[] = {
            {"actionImportFolder", QKeySequence("Ctrl+Shift+O")}, {"actionBuild", QKeySequence("Ctrl+B")},
            {"actionAsk", QKeySequence("Ctrl+Return")},           {"actionRoute", QKeySequence("Ctrl+R")},
            {"actionStop", QKeySequence("Ctrl+.")},               {"actionExportBank", QKeySequence("Ctrl+Shift+E")},
            {"actionImportBank", QKeySequence("Ctrl+Shift+I")},   {"actionVerifyBank", QKeySequence("Ctrl+Shift+V")},
        };
        for (const auto& e : expected) {
            auto* a = w.findChild<QAction*>(e.action);
            QVERIFY2(a, e.action);
            QCOMPARE(a->shortcut(), e.key);
        }
        w.selectTab("library");
        QTest::keyClick(&w, Qt::Key_R, Qt::ControlModifier);   // Route only, from the Library tab
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.routingView()));
        QTest::keyClick(&w, Qt::Key_B, Qt::ControlModifier);   // Build (no collection: nothing starts)
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.memoryView()));
        QVERIFY(!w.memoryView()->buildRunning());
        QTest::keyClick(&w, Qt::Key_V, Qt::ControlModifier | Qt::ShiftModifier);   // Verify: no bank → message
        QVERIFY(!w.memoryView()->bankFileRunning());
        auto* error = w.memoryView()->findChild<QLabel*>("memoryError");
        QVERIFY(error && !error->isHidden());
        QVERIFY2(error->text().contains("to verify"), qPrintable(error->text()));
    }

    // First start without the demo model: the demo archive is imported, no build starts, and the Memory
    // tab says how to get the model.
    void firstRunWithoutDemoModel() {
        const QString root = m_dir.filePath("first-nomodel");
        QDir().mkpath(root);
        qputenv("MSA_DEMO_ARCHIVE", QByteArray(MSA_SOURCE_DIR "/resources/demo/archive"));
        qputenv("MSA_DEMO_MODEL", m_dir.filePath("no-such-model.gguf").toUtf8());
        QSettings settings(root + "/settings.ini", QSettings::IniFormat);
        UiContext c = makeContext(&settings, root + "/catalog.sqlite");
        c.firstRun = true;
        MainWindow w(std::move(c));
        QSignalSpy done(&w, &MainWindow::firstRunFinished);
        w.show();
        QVERIFY(w.firstRunBuildPending());
        QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 120000);
        QCOMPARE(done.at(0).at(0).toBool(), false);
        QVERIFY(!w.firstRunBuildPending());
        QVERIFY(!w.memoryView()->buildRunning());
        QVERIFY(w.libraryView()->selectCollection(LibraryView::kDemoCollection));   // step 1 happened
        auto* line = w.memoryView()->findChild<QLabel*>("memoryProgressLine");
        QVERIFY(line);
        QVERIFY2(line->text().contains("packaging/setup.sh build"), qPrintable(line->text()));
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
        qunsetenv("MSA_DEMO_MODEL");
    }

    // First start with the demo model: demo import, then the demo memory build with the Memory tab's
    // progress, then the suggested question highlighted in Chat (which can answer from that bank).
    void firstRunBuildsDemoMemory() {
        const std::filesystem::path demo = findDemoModel();
        if (demo.empty()) QSKIP("demo model absent (packaging/setup.sh build fetches it)");
        const QString root = m_dir.filePath("first-demo");
        QDir().mkpath(root);
        qputenv("MSA_DEMO_ARCHIVE", QByteArray(MSA_SOURCE_DIR "/resources/demo/archive"));
        QSettings settings(root + "/settings.ini", QSettings::IniFormat);
        settings.setValue("paths/bankDir", root + "/banks");
        settings.setValue("engine/threads", 2);
        UiContext c = makeContext(&settings, root + "/catalog.sqlite");
        c.firstRun = true;
        MainWindow w(std::move(c));
        QSignalSpy done(&w, &MainWindow::firstRunFinished);
        QSignalSpy progress(w.memoryView()->memoryClient(), &MemoryClient::buildProgress);
        w.show();
        QTRY_VERIFY_WITH_TIMEOUT(w.memoryView()->buildRunning() || done.count() == 1, 120000);
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(w.memoryView()));   // its progress is visible
        QCOMPARE(w.memoryView()->currentCollection(), QString(LibraryView::kDemoCollection));
        QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 1200000);
        QCOMPARE(done.at(0).at(0).toBool(), true);
        QVERIFY(progress.count() >= 1);
        const BankFacts facts = MemoryHost::bankFacts(w.memoryView()->bankPath());
        QVERIFY2(facts.ok, qPrintable(facts.error));
        QVERIFY(facts.nDocuments > 0);
        auto* suggest = w.chatView()->findChild<QPushButton*>("chatSuggested");
        QVERIFY(suggest);
        QVERIFY(suggest->property("highlighted").toBool());
        QVERIFY(suggest->isEnabled());
        w.selectTab("chat");
        QTRY_VERIFY_WITH_TIMEOUT(w.chatView()->input()->isEnabled(), 10000);
        QTest::mouseClick(suggest, Qt::LeftButton);
        QCOMPARE(w.chatView()->input()->text(), w.chatView()->suggestedQuestion());
        qputenv("MSA_DEMO_ARCHIVE", m_dir.filePath("no-demo-archive").toUtf8());
    }

private:
    // import → build → ask → routing → open; with bankFiles also export/verify/import and the cancels.
    void endToEnd(const QString& model, const QString& tag, bool bankFiles) {
        const QString root = m_dir.filePath(tag);
        QDir().mkpath(root);
        const QString notes = root + "/notes";
        writeNotes(notes);
        const QString catalogPath = root + "/catalog.sqlite";
        QSettings settings(root + "/settings.ini", QSettings::IniFormat);
        settings.setValue("engine/model", model);
        settings.setValue("engine/threads", 2);
        settings.setValue("memory/maxHops", 1);
        settings.setValue("generation/maxTokens", 24);
        settings.setValue("paths/bankDir", root + "/banks");
        MainWindow w(makeContext(&settings, catalogPath));
        w.show();
        LibraryView* library = w.libraryView();
        MemoryView* memory = w.memoryView();
        ChatView* chat = w.chatView();
        RoutingView* routing = w.routingView();
        QTRY_VERIFY_WITH_TIMEOUT(library->isSettled(), 30000);

        // ---- Library: import the folder (a new collection named after it).
        QSignalSpy imported(w.catalog(), &CatalogClient::importFinished);
        QVERIFY(library->importPaths({notes}));
        QTRY_COMPARE_WITH_TIMEOUT(imported.count(), 1, 60000);
        QVERIFY(imported.at(0).at(0).value<ImportOutcome>().ok);
        QCOMPARE(imported.at(0).at(0).value<ImportOutcome>().report.nImported, uint64_t(4));

        // ---- Memory: build it from the tab.
        QTRY_VERIFY_WITH_TIMEOUT(memory->selectCollection("notes"), 10000);
        memory->setModelPath(model);
        QCOMPARE(memory->bankPath(), root + "/banks/notes");
        QSignalSpy built(memory, &MemoryView::buildFinished);
        QSignalSpy active(memory, &MemoryView::activeBankChanged);
        QVERIFY(memory->startBuild());
        QTRY_COMPARE_WITH_TIMEOUT(built.count(), 1, 600000);
        QCOMPARE(built.at(0).at(0).toBool(), true);
        QCOMPARE(built.at(0).at(1).toBool(), false);
        const BankFacts facts = MemoryHost::bankFacts(memory->bankPath());
        QVERIFY2(facts.ok, qPrintable(facts.error));
        QCOMPARE(facts.nDocuments, quint64(4));
        QTRY_COMPARE_WITH_TIMEOUT(active.count(), 1, 10000);
        QCOMPARE(settings.value(AppSettings::kActiveBankKey).toString(), memory->bankPath());

        // ---- Chat: ask; the answer arrives with sources from the bank.
        w.selectTab("chat");
        QTRY_VERIFY_WITH_TIMEOUT(chat->input()->isEnabled(), 10000);
        // Training-free routing: the injected documents are the routed ones, so sources are never empty.
        AnswerSetup setup = chat->setup();
        setup.method = jobs::AnswerMethod::TrainingFree;
        chat->setSetup(setup);
        QSignalSpy answered(chat, &ChatView::answerFinished);
        QVERIFY(chat->ask("Where does the spruce of the cello top come from?"));
        QTRY_COMPARE_WITH_TIMEOUT(answered.count(), 1, 600000);
        const ChatView::Turn& turn = chat->turns().back();
        QVERIFY2(turn.error.isEmpty(), qPrintable(turn.error + "\n" + turn.errorDetail));
        QVERIFY(!turn.report.used.empty());

        // ---- Routing: the hop is shown (trace, layer table); a chosen document opens in the Library.
        w.selectTab("routing");
        const memory::RoutingTrace& trace = routing->trace();
        QVERIFY(!trace.hops.empty());
        QVERIFY(!trace.hops[0].layers.empty());
        QVERIFY(!trace.hops[0].injected.empty());
        QVERIFY(routing->layerTable()->rowCount() > 0);
        QSignalSpy open(routing, &RoutingView::openDocument);
        emit routing->layerTable()->cellDoubleClicked(0, 1);
        QCOMPARE(open.count(), 1);
        const qint64 chosen = open.at(0).at(0).toLongLong();
        QCOMPARE(w.tabs()->currentWidget(), static_cast<QWidget*>(library));
        QTRY_COMPARE_WITH_TIMEOUT(library->shownMemoryDocumentId(), chosen, 10000);
        {
            auto cat = catalog::Catalog::open(fsPath(catalogPath));
            QVERIFY(cat.ok());
            auto md = cat->memoryDocument(chosen);
            QVERIFY2(md.ok(), md.ok() ? "" : md.status().toString().c_str());
            QTRY_COMPARE_WITH_TIMEOUT(library->shownDocumentId(), qint64(md->documentId), 10000);
        }
        if (!bankFiles) return;

        // ---- Bank files: export (with the documents), verify, import into a new folder.
        w.selectTab("memory");
        const QString bank = memory->bankPath();
        const QString archive = root + "/notes.msabank";
        QSignalSpy fileDone(memory, &MemoryView::bankFileFinished);
        FileResult r;
        QVERIFY(memory->exportBankTo(archive));
        QVERIFY(memory->bankFileRunning());
        QVERIFY(!memory->startBuild());   // one job at a time on the memory thread
        QVERIFY(waitFile(fileDone, r, 60000));
        QVERIFY2(r.ok, qPrintable(r.summary));
        QVERIFY2(r.summary.contains("Exported 4 documents"), qPrintable(r.summary));
        QVERIFY(QFileInfo(archive).size() > 0);
        m_archive = archive;
        QVERIFY(memory->verifyBank());
        QVERIFY(waitFile(fileDone, r, 60000));
        QVERIFY2(r.ok && r.summary.startsWith("Bank OK: every checksum verified"), qPrintable(r.summary));

        const QString copy = root + "/imported";
        QSignalSpy shown(memory, &MemoryView::bankShown);
        QVERIFY(memory->importBankFrom(archive, copy));
        QVERIFY(waitFile(fileDone, r, 60000));
        QVERIFY2(r.ok, qPrintable(r.summary));
        QTRY_VERIFY_WITH_TIMEOUT(!shown.isEmpty() && shown.last().at(0).value<BankFacts>().path == copy, 10000);
        QCOMPARE(memory->bankPath(), copy);
        const BankFacts copied = MemoryHost::bankFacts(copy);
        QVERIFY2(copied.ok, qPrintable(copied.error));
        QCOMPARE(copied.nDocuments, facts.nDocuments);
        QCOMPARE(copied.nChunks, facts.nChunks);
        QCOMPARE(copied.modelFingerprint, facts.modelFingerprint);

        // Importing over an existing bank without "replace" fails; the bank there still verifies.
        QVERIFY(memory->importBankFrom(archive, copy));
        QVERIFY(waitFile(fileDone, r, 60000));
        QVERIFY(!r.ok);
        QVERIFY(!r.cancelled);
        auto kept = memory::Bank::open(fsPath(copy));
        QVERIFY(kept.ok());
        QVERIFY(kept->verify().ok());

        // An archive of another model is refused with a clear message; nothing is created.
        memory->setModelPath("0123456789abcdef0123456789abcdef");   // a fingerprint no model here has
        QVERIFY(memory->importBankFrom(archive, root + "/other"));
        QVERIFY(waitFile(fileDone, r, 60000));
        QVERIFY(!r.ok);
        QVERIFY2(r.summary.contains("another model"), qPrintable(r.summary));
        QVERIFY(!QFileInfo::exists(root + "/other/manifest.json"));
        memory->setModelPath(model);

        // ---- Cancel during an import: what was committed stays, the catalog passes its integrity check.
        const QString many = root + "/many";
        QDir().mkpath(many);
        for (int i = 0; i < 1500; ++i)
            std::ofstream(QDir(many).filePath(QString("n%1.txt").arg(i)).toStdString())
                << "Note " << i << ": the tide was " << (i % 7) << " feet at the harbour wall, wrote Jon.\n";
        w.selectTab("library");
        library->selectCollection(QString());
        QSignalSpy progress(w.catalog(), &CatalogClient::importProgress);
        imported.clear();
        QVERIFY(library->importPaths({many}));
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() >= 1 || imported.count() == 1, 60000);
        w.catalog()->cancelImport();
        QTRY_COMPARE_WITH_TIMEOUT(imported.count(), 1, 60000);
        const ImportOutcome cancelled = imported.at(0).at(0).value<ImportOutcome>();
        QVERIFY2(cancelled.ok, qPrintable(cancelled.error));
        qInfo("import of 1,500 files: cancelled=%d, %llu imported", int(cancelled.report.cancelled),
              static_cast<unsigned long long>(cancelled.report.nImported));
        if (cancelled.report.cancelled) QVERIFY(cancelled.report.nImported < 1500);
        {
            auto cat = catalog::Catalog::open(fsPath(catalogPath));
            QVERIFY(cat.ok());
            auto check = cat->checkIntegrity();
            QVERIFY(check.ok());
            QVERIFY(check->ok);
        }

        // ---- Cancel during a build of that collection: the bank keeps its commit and verifies.
        w.selectTab("memory");
        QTRY_VERIFY_WITH_TIMEOUT(memory->selectCollection("many"), 10000);
        memory->setBankPath(root + "/banks/many");
        QSignalSpy buildProgress(memory->memoryClient(), &MemoryClient::buildProgress);
        built.clear();
        QVERIFY(memory->startBuild());
        QTRY_VERIFY_WITH_TIMEOUT(buildProgress.count() >= 1 || built.count() == 1, 120000);
        memory->cancelBuild();
        QTRY_COMPARE_WITH_TIMEOUT(built.count(), 1, 120000);
        QCOMPARE(built.at(0).at(0).toBool(), true);
        qInfo("build of that collection: cancelled=%d", int(built.at(0).at(1).toBool()));
        if (QFileInfo::exists(root + "/banks/many/manifest.json")) {
            auto partial = memory::Bank::open(fsPath(root + "/banks/many"));
            QVERIFY2(partial.ok(), partial.ok() ? "" : partial.status().toString().c_str());
            QVERIFY(partial->verify().ok());
        }

        // ---- Closing the window during an export cancels it: no partial archive is left behind.
        memory->setBankPath(bank);
        const QString late = root + "/late.msabank";
        QVERIFY(memory->exportBankTo(late));
        w.close();
        QVERIFY(memory->memoryClient()->isShutDown());
        if (QFileInfo::exists(late)) QVERIFY(memory::readBankArchiveInfo(fsPath(late)).ok());   // finished first
        const QStringList leftovers = QDir(root).entryList({"late.msabank?*"}, QDir::Files | QDir::Hidden);
        QVERIFY2(leftovers.isEmpty(), qPrintable(leftovers.join(", ")));
    }

    QTemporaryDir m_dir;
    QString m_archive;   // exported by endToEndTinyModel
};

QTEST_MAIN(TestWorkbenchE2E)
#include "tst_workbench_e2e.moc"

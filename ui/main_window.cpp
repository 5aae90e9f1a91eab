#include "ui/main_window.h"

#include "ui/answer_host.h"
#include "ui/app_settings.h"
#include "ui/catalog_host.h"
#include "ui/views/chat_view.h"
#include "ui/views/library_view.h"
#include "ui/views/memory_view.h"
#include "ui/views/routing_view.h"
#include "ui/views/settings_view.h"

#include "core/util/build_info.h"
#include "core/util/paths.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>

#include <functional>

namespace msa::ui {

MainWindow::MainWindow(UiContext context, QWidget* parent)
    : QMainWindow(parent), m_context(std::move(context)) {
    Q_ASSERT(m_context.settings != nullptr);
    setObjectName("mainWindow");
    setWindowTitle(tr("MSA Workbench"));
    setMinimumSize(960, 600);

    m_tabs = new QTabWidget(this);
    m_tabs->setObjectName("mainTabs");
    m_tabs->setDocumentMode(true);
    // The catalog: --catalog (UiContext) first, then the Settings tab's choice, else the default.
    if (m_context.catalogPath.isEmpty())
        m_context.catalogPath = m_context.settings->value(AppSettings::kCatalogKey).toString();
    m_catalog = new CatalogClient(m_context.catalogPath, this);
    m_library = new LibraryView(m_context, m_catalog, m_tabs);
    m_memory = new MemoryView(m_context, m_catalog, m_tabs);
    m_engine = new AnswerClient(this);
    m_chat = new ChatView(m_context, m_engine, m_tabs);
    m_routing = new RoutingView(m_context, m_engine, m_tabs);
    m_routing->setQuestion(m_chat->suggestedQuestion());
    m_settingsView = new SettingsView(m_context, m_tabs);
    // Stable object names let tests, --tab and saved state find a tab whatever its translated label.
    const struct { QWidget* w; const char* name; QString label; } tabs[] = {
        {m_library, "library", tr("&Library")},   {m_memory, "memory", tr("&Memory")},
        {m_chat, "chat", tr("&Chat")},            {m_routing, "routing", tr("&Routing")},
        {m_settingsView, "settings", tr("&Settings")},
    };
    for (const auto& t : tabs) {
        t.w->setProperty("tabName", QString::fromLatin1(t.name));
        m_tabs->addTab(t.w, t.label);
    }
    setCentralWidget(m_tabs);
    buildMenus();

    m_backendLabel = new QLabel(this);
    m_backendLabel->setObjectName("backendStatus");
    statusBar()->addPermanentWidget(m_backendLabel);
    showDeviceInUse();
    connect(this, &MainWindow::settingsChanged, this, &MainWindow::showDeviceInUse);
    const auto& model = m_context.doctor.demoModel;
    statusBar()->showMessage(model.present && model.looksValid
                                 ? tr("Demo model ready: %1").arg(QString::fromStdString(model.path.filename().string()))
                                 : tr("Demo model missing: run packaging/setup.sh"));

    connect(m_library, &LibraryView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m); });
    connect(m_memory, &MemoryView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m); });
    // Settings changes reach every view through the window (views that use them connect to settingsChanged).
    connect(m_settingsView, &SettingsView::settingsChanged, this, &MainWindow::settingsChanged);
    connect(this, &MainWindow::settingsChanged, m_memory, &MemoryView::applySettings);
    connect(m_chat, &ChatView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m); });
    connect(m_routing, &RoutingView::statusMessage, this, [this](const QString& m) { statusBar()->showMessage(m); });
    // A document named by an answer or a routing trace opens in the Library.
    auto open = [this](qint64 memoryDocumentId) {
        selectTab("library");
        m_library->showMemoryDocument(memoryDocumentId);
    };
    connect(m_chat, &ChatView::openDocument, this, open);
    connect(m_routing, &RoutingView::openDocument, this, open);
    connect(m_chat, &ChatView::traceSelected, m_routing, &RoutingView::showTrace);
    connect(m_chat, &ChatView::inspectRouting, this, [this] { selectTab("routing"); });
    connect(m_engine, &AnswerClient::bankRead, this, [this](const BankSummary& bank) {
        if (bank.path != m_bankRead) return;   // an older read
        m_chat->showBank(bank);
        m_settingsView->showBank(bank);
    });
    // The Chat tab's collection filter lists the catalog's collections.
    connect(m_catalog, &CatalogClient::collectionsReady, m_chat, [this](const std::vector<catalog::CollectionInfo>& list) {
        QStringList names;
        for (const auto& c : list) names << QString::fromStdString(c.name);
        m_chat->setCollections(names);
    });
    // The bank may have been built (Memory tab) or the model changed (Settings) since: re-check on tab switches.
    connect(m_tabs, &QTabWidget::currentChanged, this, [this] { refreshAnswerSetup(); });
    connect(this, &MainWindow::settingsChanged, this, &MainWindow::refreshAnswerSetup);
    connect(m_memory, &MemoryView::activeBankChanged, this, [this] {
        m_bankRead.clear();   // rebuilt in place: read its parameters again
        refreshAnswerSetup();
    });
    refreshAnswerSetup();
    restoreWindowState();
    if (m_context.firstRun) {
        m_firstRunPending = true;
        auto go = [this] { startFirstRunBuild(); };
        if (m_library->isSettled()) QMetaObject::invokeMethod(this, go, Qt::QueuedConnection);
        else connect(m_library, &LibraryView::settled, this, go, Qt::SingleShotConnection);
    }
    m_catalog->open();
}

// First run, step 2 (step 1 is the Library's demo import): build the demo collection's memory with the
// demo model, on the memory thread with the Memory tab's progress, then offer the suggested question.
void MainWindow::startFirstRunBuild(bool retried) {
    const std::filesystem::path model = findDemoModel();
    if (model.empty()) {
        m_firstRunPending = false;
        const QString hint = tr("<b>The demo model is missing</b>, so the demo archive's memory was not built. Get it "
                                "with <tt>packaging/setup.sh build</tt> (it fetches SmolLM2-135M-Instruct), or choose "
                                "another model above and press Build memory.");
        m_memory->showHint(hint);
        statusBar()->showMessage(tr("Demo model missing: run packaging/setup.sh build, then Build memory in the Memory tab"));
        emit firstRunFinished(false);
        return;
    }
    if (!m_memory->selectCollection(QString::fromLatin1(LibraryView::kDemoCollection))) {
        // The Memory tab's collection list may lag the import by one listing: try once more when it arrives.
        if (!retried) {
            connect(m_catalog, &CatalogClient::collectionsReady, this, [this] { startFirstRunBuild(true); },
                    static_cast<Qt::ConnectionType>(Qt::QueuedConnection | Qt::SingleShotConnection));
            m_catalog->refreshCollections();
            return;
        }
        m_firstRunPending = false;
        m_memory->showHint(tr("The demo archive was not imported, so there is nothing to build a memory of yet."));
        emit firstRunFinished(false);
        return;
    }
    const QString modelPath = QString::fromStdString(model.string());
    if (m_memory->modelPath() != modelPath) m_memory->setModelPath(modelPath);
    connect(m_memory, &MemoryView::buildFinished, this, [this](bool ok, bool cancelled) {
        m_firstRunPending = false;
        if (ok && !cancelled) offerSuggestedQuestion();
        emit firstRunFinished(ok && !cancelled);
    }, Qt::SingleShotConnection);
    selectTab("memory");
    if (!m_memory->startBuild()) {
        m_firstRunPending = false;
        disconnect(m_memory, &MemoryView::buildFinished, this, nullptr);
        emit firstRunFinished(false);
    }
}

void MainWindow::offerSuggestedQuestion() {
    refreshAnswerSetup();
    if (m_chat->suggestedQuestion().isEmpty()) return;
    if (auto* suggest = m_chat->findChild<QPushButton*>("chatSuggested")) {
        suggest->setProperty("highlighted", true);
        suggest->setStyleSheet("QPushButton { font-weight: bold; background: #ffe082; border: 1px solid #ff8f00; "
                               "padding: 3px 10px; }");
        suggest->setText(tr("Try the suggested question"));
    }
    const int chat = m_tabs->indexOf(m_chat);
    m_tabs->setTabText(chat, tr("&Chat ★"));
    statusBar()->showMessage(tr("The demo memory is built: open the Chat tab and try the suggested multi-hop question"));
}

MainWindow::~MainWindow() {
    // Stop the engine and catalog threads before the views that listen to them go away.
    m_engine->shutdown();
    m_memory->shutdown();
    m_catalog->shutdown();
}

void MainWindow::showDeviceInUse() {
    // The backends this build has, then the device the Settings tab's choice runs on (and why not a GPU).
    const engine::BackendChoice c = deviceChoiceFor(m_context.registry, m_settingsView->current().device);
    m_backendLabel->setText(tr("%1 · device: %2")
                                .arg(QString::fromStdString(jobs::backendSummary(m_context.registry)),
                                     QString::fromStdString(c.describe())));
    m_backendLabel->setToolTip(QString::fromStdString(c.note));
}

void MainWindow::refreshAnswerSetup() {
    const AnswerSetup setup = AnswerSetup::fromSettings(m_context, m_catalog->path());
    m_chat->setSetup(setup);
    m_routing->setSetup(setup);
    // The bank's fixed parameters (k, chunk size) are read on the engine thread when it changes.
    if (setup.bank != m_bankRead) {
        m_bankRead = setup.bank;
        m_engine->readBank(setup.bank);
    }
}

void MainWindow::buildMenus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);
    // The main actions work from every tab: each shows its tab and does what that tab's button does.
    // (The buttons carry no shortcut of their own, so no key is ever ambiguous; Esc stays tab-local:
    // it cancels that tab's import/build/answer.)
    QMenu* actions = menuBar()->addMenu(tr("&Actions"));
    auto clickIn = [this](const char* tab, QWidget* view, const char* button) {
        return [this, tab, view, button] {
            selectTab(QString::fromLatin1(tab));
            if (auto* b = view->findChild<QPushButton*>(QString::fromLatin1(button)); b && b->isEnabled()) b->click();
        };
    };
    struct Entry { QString text; QKeySequence key; std::function<void()> run; const char* name; };
    const Entry entries[] = {
        {tr("&Import a folder into the Library…"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O),
         clickIn("library", m_library, "libraryAddFolder"), "actionImportFolder"},
        {tr("&Build memory"), QKeySequence(Qt::CTRL | Qt::Key_B), clickIn("memory", m_memory, "memoryBuild"), "actionBuild"},
        {tr("&Ask the question"), QKeySequence(Qt::CTRL | Qt::Key_Return), clickIn("chat", m_chat, "chatAsk"), "actionAsk"},
        {tr("&Route only"), QKeySequence(Qt::CTRL | Qt::Key_R), clickIn("routing", m_routing, "routingRouteOnly"), "actionRoute"},
        {tr("&Stop what is running"), QKeySequence(Qt::CTRL | Qt::Key_Period), [this] { stopAll(); }, "actionStop"},
        {tr("&Export the memory bank…"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E),
         clickIn("memory", m_memory, "memoryExportBank"), "actionExportBank"},
        {tr("I&mport a memory bank…"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_I),
         clickIn("memory", m_memory, "memoryImportBank"), "actionImportBank"},
        {tr("&Verify the memory bank"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_V),
         clickIn("memory", m_memory, "memoryVerifyBank"), "actionVerifyBank"},
    };
    for (const Entry& e : entries) {
        QAction* a = actions->addAction(e.text, this, e.run);
        a->setObjectName(QString::fromLatin1(e.name));
        a->setShortcut(e.key);
    }
    QMenu* view = menuBar()->addMenu(tr("&View"));
    for (int i = 0; i < m_tabs->count(); ++i) {
        QAction* a = view->addAction(m_tabs->tabText(i).remove('&'), this, [this, i] { m_tabs->setCurrentIndex(i); });
        a->setShortcut(QKeySequence(Qt::ALT | static_cast<Qt::Key>(Qt::Key_1 + i)));
    }
    QMenu* help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&About MSA Workbench"), this, [this] {
        QMessageBox::about(this, tr("About MSA Workbench"),
                           tr("<b>MSA Workbench %1</b><p>Chat with your personal archive through Memory Sparse "
                              "Attention, and see where the model's attention went.</p><p>Backends: %2</p>")
                               .arg(QString::fromUtf8(versionString().data(), static_cast<int>(versionString().size())),
                                    m_backendLabel->text().toHtmlEscaped()));
    });
}

void MainWindow::stopAll() {
    m_engine->cancel();
    m_memory->cancelBuild();
    m_memory->cancelBankFile();
    m_catalog->cancelImport();
}

bool MainWindow::selectTab(const QString& name) {
    for (int i = 0; i < m_tabs->count(); ++i) {
        if (m_tabs->widget(i)->property("tabName").toString() == name) {
            m_tabs->setCurrentIndex(i);
            return true;
        }
    }
    return false;
}

QString MainWindow::backendStatusText() const { return m_backendLabel->text(); }

void MainWindow::restoreWindowState() {
    QSettings& s = *m_context.settings;
    if (!restoreGeometry(s.value("mainWindow/geometry").toByteArray())) resize(1280, 800);
    restoreState(s.value("mainWindow/state").toByteArray());
    const int tab = s.value("mainWindow/tab", 0).toInt();
    if (tab >= 0 && tab < m_tabs->count()) m_tabs->setCurrentIndex(tab);
}

void MainWindow::saveWindowState() {
    QSettings& s = *m_context.settings;
    s.setValue("mainWindow/geometry", saveGeometry());
    s.setValue("mainWindow/state", saveState());
    s.setValue("mainWindow/tab", m_tabs->currentIndex());
    s.sync();
}

void MainWindow::closeEvent(QCloseEvent* event) {
    saveWindowState();
    // Stop a running answer (between tokens), cancel a running build and import (what they finished
    // stays committed) and stop their threads.
    m_engine->shutdown();
    m_memory->shutdown();
    m_catalog->shutdown();
    event->accept();
}

}  // namespace msa::ui

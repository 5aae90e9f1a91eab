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

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QKeySequence>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>

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
    m_backendLabel->setText(QString::fromStdString(jobs::backendSummary(m_context.registry)));
    statusBar()->addPermanentWidget(m_backendLabel);
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
    m_catalog->open();
}

MainWindow::~MainWindow() {
    // Stop the engine and catalog threads before the views that listen to them go away.
    m_engine->shutdown();
    m_memory->shutdown();
    m_catalog->shutdown();
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

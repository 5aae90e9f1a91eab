// main_window.h: the workbench's main window: the Library, Memory, Chat, Routing and Settings tabs
// (DESIGN.md §6), a status bar naming the backend and device, and window state remembered in
// QSettings (geometry, splitter/tab state); Settings tab changes are re-emitted as settingsChanged()
// for the views. It owns the CatalogClient (the catalog's thread) and opens
// the catalog at construction; closing the window cancels a running import or memory build and stops those threads.
//
// Thread affinity: GUI thread only. Ownership: the window owns its views (Qt parent/child); the
// UiContext's QSettings is borrowed and must outlive the window.
//
// Usage (app/workbench_main.cpp):
//     msa::ui::MainWindow w(context);
//     w.show();
#pragma once

#include "ui/app_settings.h"
#include "ui/ui_context.h"

#include <QMainWindow>

class QLabel;
class QTabWidget;

namespace msa::ui {

class AnswerClient;
class CatalogClient;
class LibraryView;
class MemoryView;
class ChatView;
class RoutingView;
class SettingsView;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(UiContext context, QWidget* parent = nullptr);
    ~MainWindow() override;

    // Tab by its stable object name ("library", "memory", "chat", "routing", "settings");
    // returns false when there is no such tab.
    bool selectTab(const QString& name);
    QTabWidget* tabs() const { return m_tabs; }
    QString backendStatusText() const;
    CatalogClient* catalog() const { return m_catalog; }
    LibraryView* libraryView() const { return m_library; }
    ChatView* chatView() const { return m_chat; }
    RoutingView* routingView() const { return m_routing; }
    AnswerClient* engine() const { return m_engine; }
    // Re-reads where the bank, model and catalog are (QSettings; AnswerSetup) for Chat and Routing.
    void refreshAnswerSetup();
    void showDeviceInUse();   // the status bar: backends, and the device the Settings choice runs on
    MemoryView* memoryView() const { return m_memory; }
    SettingsView* settingsView() const { return m_settingsView; }

    // First run (UiContext::firstRun): true while the demo build is pending or running.
    bool firstRunBuildPending() const { return m_firstRunPending; }

signals:
    // First run: the demo memory build finished (ok: the suggested question is highlighted in Chat),
    // or could not start (ok false, with the reason shown in the Memory tab).
    void firstRunFinished(bool ok);
    // Forwarded from the Settings tab to every view (connect a view's slot to it).
    void settingsChanged(const msa::ui::AppSettings& settings);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void restoreWindowState();
    void saveWindowState();
    void buildMenus();
    // Ctrl+.: stops the running answer/route, memory build, bank export/import and catalog import.
    void stopAll();
    void startFirstRunBuild(bool retried = false);
    void offerSuggestedQuestion();

    UiContext m_context;
    QTabWidget* m_tabs = nullptr;
    QLabel* m_backendLabel = nullptr;
    QString m_bankRead;   // the bank whose parameters were last asked for (AnswerClient::readBank)
    CatalogClient* m_catalog = nullptr;   // the catalog thread's front; shut down on close
    AnswerClient* m_engine = nullptr;     // the engine thread's front (answering, routing); shut down on close
    LibraryView* m_library = nullptr;
    MemoryView* m_memory = nullptr;
    ChatView* m_chat = nullptr;
    RoutingView* m_routing = nullptr;
    SettingsView* m_settingsView = nullptr;
    bool m_firstRunPending = false;
};

}  // namespace msa::ui

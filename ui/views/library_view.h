// library_view.h: the Library tab (DESIGN.md §6, issue 7 item 2): the collections sidebar with document
// counts, "Add folder…" and drag-and-drop import into the selected collection, the import progress
// panel (files, bytes, rate, ETA, current file, Cancel), the import report (every skipped/failed file
// with its reason, and Resume after a cancel: pausing is cancel + resume, since an import skips the
// files committed before), the sortable/filterable document table, the debounced FTS5 search box whose results
// show highlighted snippets, and the document viewer (text, metadata, memory segments).
//
// Shortcuts: Ctrl+F search, Ctrl+Shift+O add folder (the window's Actions menu), Ctrl+Shift+R resume, Escape cancels an import.
//
// First run: when the catalog has no "Demo archive" collection and msa::findDemoArchive() finds the
// archive, it is imported in the background with the progress panel showing.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the CatalogClient is borrowed (the
// main window owns it and shuts it down before the view goes away). All catalog work runs on the
// client's thread; results arrive as queued signals. Errors show in the view's error line (summary,
// with the detail below it) and as statusMessage(), never as a crash or a modal box.
//
// Usage:
//     auto* view = new LibraryView(context, client, tabs);
//     connect(view, &LibraryView::statusMessage, statusBar(), ...);
//     client->open();   // the view reacts to opened/collectionsReady
#pragma once

#include "ui/catalog_host.h"
#include "ui/ui_context.h"

#include <QWidget>

class QFrame;
class QLabel;
class QLineEdit;
class QListWidget;
class QProgressBar;
class QSettings;
class QPushButton;
class QSortFilterProxyModel;
class QTableView;
class QTextBrowser;
class QTimer;
class QTreeWidget;

namespace msa::ui {

class DocumentTableModel;

class LibraryView : public QWidget {
    Q_OBJECT
public:
    static constexpr const char* kDemoCollection = "Demo archive";

    LibraryView(const UiContext& context, CatalogClient* catalog, QWidget* parent = nullptr);

    // Number of collections in the sidebar (not counting the "All collections" row).
    int collectionCount() const;
    // The collection selected in the sidebar (empty: "All collections" or none). The selection is
    // remembered in QSettings (library/collection).
    QString currentCollection() const;
    bool selectCollection(const QString& name);
    // Starts an import of these files/folders into the selected collection (or, with none selected,
    // into a new collection named after the first path). Returns false when one is already running.
    bool importPaths(const QStringList& paths);
    // Re-runs the last import (after a cancel or a failure): unchanged files are skipped, so this
    // resumes where the cancelled run stopped. Returns false when there is none or one is running.
    bool resumeImport();
    // Selects the first row of the document table (the viewer then fills); false when it is empty.
    bool selectFirstDocument();
    // Opens the document holding this memory document (a routing/citation id) in the viewer, with
    // that memory segment highlighted; documentShown() follows (or an error in the error line).
    void showMemoryDocument(qint64 memoryDocumentId);
    qint64 shownMemoryDocumentId() const { return m_shownMemoryDocument; }
    // True once the first-run decision is taken (and its import, if any, finished) and the document
    // table has been filled after it.
    bool isSettled() const { return m_settled; }
    DocumentTableModel* documentModel() const { return m_model; }
    QSortFilterProxyModel* documentProxy() const { return m_proxy; }
    qint64 shownDocumentId() const { return m_shownDocument; }
    QString lastError() const { return m_lastError; }

signals:
    void statusMessage(const QString& message);
    void settled();
    void documentsShown();
    void documentShown(qint64 documentId);

protected:
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void onOpened(bool ok, const QString& message);
    void onCollections(const std::vector<catalog::CollectionInfo>& collections);
    void onDocuments(const DocumentList& list);
    void onDocument(const catalog::DocumentInfo& document);
    void onImportStarted(const QString& collection, const QStringList& paths);
    void onImportProgress(const ImportProgressUpdate& update);
    void onImportFinished(const ImportOutcome& outcome);
    void onFailed(const QString& operation, const QString& summary, const QString& detail);
    void addFolder();
    void refreshDocuments();
    void showError(const QString& summary, const QString& detail);
    void finishFirstRun();

    CatalogClient* m_catalog = nullptr;
    QSettings* m_settings = nullptr;   // borrowed from the UiContext
    QListWidget* m_collections = nullptr;
    QPushButton* m_addFolder = nullptr;
    QLineEdit* m_search = nullptr;
    QLineEdit* m_filter = nullptr;
    QTimer* m_searchDebounce = nullptr;
    QLabel* m_error = nullptr;
    QFrame* m_importPanel = nullptr;
    QProgressBar* m_importBar = nullptr;
    QLabel* m_importStatus = nullptr;
    QLabel* m_importCurrent = nullptr;
    QPushButton* m_importCancel = nullptr;
    QPushButton* m_resume = nullptr;
    QFrame* m_reportPanel = nullptr;
    QLabel* m_reportSummary = nullptr;
    QTreeWidget* m_report = nullptr;
    QTableView* m_table = nullptr;
    DocumentTableModel* m_model = nullptr;
    QSortFilterProxyModel* m_proxy = nullptr;
    QTextBrowser* m_viewer = nullptr;

    quint64 m_latestListRequest = 0;
    quint64 m_settleRequest = 0;
    qint64 m_requestedDocument = -1;
    qint64 m_shownDocument = -1;
    qint64 m_requestedMemoryDocument = -1;   // showMemoryDocument() waiting for its document
    qint64 m_shownMemoryDocument = -1;
    bool m_haveCollections = false;
    bool m_firstRunImport = false;
    bool m_firstRunDone = false;
    bool m_settled = false;
    QString m_lastError;
    QString m_pendingSelect;   // collection to select once the sidebar is refreshed
    QString m_lastImportCollection;   // for resumeImport()
    QStringList m_lastImportPaths;
};

}  // namespace msa::ui

// memory_view.h: the Memory tab (DESIGN.md §6, issue 7 item 3): choose a collection (from the
// catalog), the model file and the bank folder; Build (Ctrl+B, Actions menu) encodes the collection into the bank on
// the memory engine's thread (MemoryClient) with a live tokens/s plot (QCustomPlot: the last interval's
// rate and the run's average), documents done/total, tokens, ETA and the current document; Cancel
// (Escape) stops it after committing what was finished; the next Build resumes ("N documents already
// in the bank" are kept). After a build, or when a bank is opened, the bank's facts show (documents,
// chunks, tokens, bytes and bytes per token, shards, model fingerprint, routing configuration), and the
// documents the build skipped are listed with their reasons. Errors (a corrupt model, a bank built with
// another model, a full disk) show in the error line with the full message; the bank keeps its last
// commit. Export… (Ctrl+Shift+E), Import… (Ctrl+Shift+I) and Verify (Ctrl+Shift+V) carry a bank as
// one archive file and check its checksums, on the same thread, with progress and Cancel.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the view owns its MemoryClient (shut
// down by shutdown(), which the main window calls on close); the CatalogClient is borrowed.
//
// Usage:
//     auto* view = new MemoryView(context, catalogClient, tabs);
//     connect(settingsView, &SettingsView::settingsChanged, view, &MemoryView::applySettings);
//     view->startBuild();
#pragma once

#include "ui/app_settings.h"
#include "ui/catalog_host.h"
#include "ui/memory_host.h"
#include "ui/ui_context.h"

#include <QWidget>

class QComboBox;
class QCustomPlot;
class QLabel;
class QLineEdit;
class QToolButton;
class QListWidget;
class QProgressBar;
class QPushButton;
class QSettings;

namespace msa::ui {

class MemoryView : public QWidget {
    Q_OBJECT
public:
    MemoryView(const UiContext& context, CatalogClient* catalog, QWidget* parent = nullptr);
    ~MemoryView() override;

    MemoryClient* memoryClient() const { return m_memory; }
    QString currentCollection() const;
    bool selectCollection(const QString& name);
    QString modelPath() const;
    QString bankPath() const;
    void setModelPath(const QString& path);
    void setBankPath(const QString& path);
    // Documents whose wrapped text is longer are skipped with a reason (default 8192 tokens).
    void setDocumentTokenLimit(int nTokens) { m_documentTokenLimit = nTokens; }
    bool buildRunning() const;
    // Points on the tokens/s plot of the current (or last) build.
    int ratePointCount() const;

    // Starts a build of the selected collection; false (with the reason in the error line) when one
    // is running or the inputs are incomplete.
    bool startBuild();
    void cancelBuild();
    void openBank();

    // Bank files (Export… / Import… / Verify buttons; these are their non-dialog forms). Each runs on
    // the memory thread with progress in the tab and Cancel (Esc); false (reason in the error line)
    // when a build or another bank-file job runs or the inputs are missing. Export includes the memory
    // documents' catalog rows; import restores them into the window's catalog, refuses an archive of
    // another model than the tab's, never replaces an existing bank unless `replace`, and makes the
    // imported bank the shown (and active) one.
    bool exportBankTo(const QString& file);
    bool importBankFrom(const QString& file, const QString& targetFolder, bool replace = false);
    bool verifyBank();
    bool bankFileRunning() const;
    void cancelBankFile();
    // Shows a line of advice (e.g. the first-run "demo model missing" hint) in the progress line.
    void showHint(const QString& html);
    // Cancels a running build (it commits) and stops the memory thread. Idempotent.
    void shutdown();

public slots:
    // Model, bank folder, threads and storage from the Settings tab (ignored for a running build).
    void applySettings(const msa::ui::AppSettings& settings);

signals:
    void statusMessage(const QString& message);
    void buildFinished(bool ok, bool cancelled);
    void bankShown(const msa::ui::BankFacts& facts);
    void bankFileFinished(bool ok, bool cancelled, const QString& summary);
    // A valid bank was built or opened; its folder is stored as AppSettings::kActiveBankKey for the
    // views that answer from it.
    void activeBankChanged(const QString& bankPath);

public:
    // Models that opened successfully here, most recent first (QSettings "engine/recentModels").
    QStringList recentModels() const;
    static constexpr const char* kRecentModelsKey = "engine/recentModels";
    static constexpr int kMaxRecentModels = 8;

private:
    void rememberModel(const QString& path);
    void refreshRecentModels();
    void showCollections(const std::vector<catalog::CollectionInfo>& collections);
    void showStarted(const QString& bankPath, quint64 alreadyInBank);
    void showProgress(const MemoryProgressUpdate& update);
    void showOutcome(const MemoryBuildOutcome& outcome);
    void showBank(const BankFacts& facts);
    void showError(const QString& summary, const QString& detail);
    void collectionChanged();
    void updateButtons();
    void showDevice();   // the Settings tab's device, read-only here
    bool startBankFile(const BankFileRequest& request);
    void showBankFileProgress(const BankFileProgress& progress);
    void showBankFileOutcome(const BankFileOutcome& outcome);

    AppSettings m_settings;
    engine::BackendRegistry m_registry;   // copy of the UiContext's: resolves m_settings.device
    QSettings* m_store = nullptr;         // borrowed from the UiContext
    CatalogClient* m_catalog = nullptr;   // borrowed
    MemoryClient* m_memory = nullptr;     // owned (child)
    int m_documentTokenLimit = 8192;
    bool m_bankEdited = false;            // the user typed a bank path: collection changes keep it

    QComboBox* m_collection = nullptr;
    QLineEdit* m_model = nullptr;
    QLabel* m_modelCheck = nullptr;
    QToolButton* m_recentModels = nullptr;
    QLineEdit* m_bank = nullptr;
    QComboBox* m_device = nullptr;
    QPushButton* m_build = nullptr;
    QPushButton* m_cancel = nullptr;
    QPushButton* m_open = nullptr;
    QPushButton* m_export = nullptr;
    QPushButton* m_import = nullptr;
    QPushButton* m_verify = nullptr;
    QLabel* m_resume = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_progressLine = nullptr;
    QLabel* m_error = nullptr;
    QCustomPlot* m_rate = nullptr;        // tokens/s during a build; qcustomplot.h stays in the .cpp
    QLabel* m_bankFacts = nullptr;
    QListWidget* m_skipped = nullptr;
};

}  // namespace msa::ui

// settings_view.h: the Settings tab (issue 7 item 6): model (file picker, validated by opening its
// header and tensor table), device, CPU threads, bank folder, catalog file, top-k documents, maximum
// hops, bank storage dtype, injection mode, temperature and maximum answer tokens; the active bank's
// chunk size and k shown read-only (fixed by the bank); theme follows the system. Values are AppSettings, persisted in
// QSettings on every change (nothing is lost if the app is killed) and announced with
// settingsChanged(), which the main window forwards to the other views. Problems (a model that does not
// open, a folder that cannot be written) show inline under the field, in red, with the reason.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext's QSettings is borrowed
// for the view's lifetime.
//
// Usage:
//     auto* view = new SettingsView(context, tabs);
//     connect(view, &SettingsView::settingsChanged, memoryView, &MemoryView::applySettings);
#pragma once

#include "ui/answer_host.h"
#include "ui/app_settings.h"
#include "ui/ui_context.h"

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QSpinBox;

class QSettings;

namespace msa::ui {

class SettingsView : public QWidget {
    Q_OBJECT
public:
    explicit SettingsView(const UiContext& context, QWidget* parent = nullptr);

    // Keys under which the values are stored (AppSettings owns them).
    static constexpr const char* kModelKey = AppSettings::kModelKey;
    static constexpr const char* kDeviceKey = AppSettings::kDeviceKey;
    static constexpr const char* kThreadsKey = AppSettings::kThreadsKey;
    static constexpr const char* kTopKKey = AppSettings::kTopKKey;
    static constexpr const char* kHopsKey = AppSettings::kHopsKey;
    static constexpr const char* kTemperatureKey = AppSettings::kTemperatureKey;

    const AppSettings& current() const { return m_current; }
    // The inline message under the model field (empty when the model opens) and its summary.
    QString modelProblem() const;
    QString folderProblem() const;   // bank folder / catalog file problems, empty when none
    // The active bank's chunk size and k, read-only (read on the engine thread: AnswerClient::readBank).
    void showBank(const BankSummary& bank);
    QLabel* bankLabel() const { return m_chunk; }
    // The device the current choice runs on ("cpu (AMD EPYC)"), as the status bar shows it.
    QString deviceInUse() const { return m_deviceInUse; }

signals:
    void settingsChanged(const msa::ui::AppSettings& settings);

private:
    void save();
    void validate();
    void showDevice(const QString& spec);

    QSettings* m_settings = nullptr;   // borrowed from the UiContext
    AppSettings m_current;
    QLineEdit* m_model = nullptr;
    QLabel* m_modelCheck = nullptr;
    QComboBox* m_device = nullptr;
    QLabel* m_deviceNote = nullptr;
    engine::BackendRegistry m_registry;   // copy of the UiContext's
    QString m_deviceInUse;
    QSpinBox* m_threads = nullptr;
    QLineEdit* m_bankDir = nullptr;
    QLabel* m_bankDirCheck = nullptr;
    QLineEdit* m_catalog = nullptr;
    QLabel* m_catalogCheck = nullptr;
    QSpinBox* m_topK = nullptr;
    QSpinBox* m_hops = nullptr;
    QComboBox* m_storage = nullptr;
    QComboBox* m_injection = nullptr;
    QDoubleSpinBox* m_temperature = nullptr;
    QSpinBox* m_maxTokens = nullptr;
    QLabel* m_chunk = nullptr;
    bool m_modelOk = false;
    bool m_modelChecked = false;
    QString m_checkedModel;   // the path m_modelCheck speaks about
};

}  // namespace msa::ui

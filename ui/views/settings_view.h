// settings_view.h: Settings tab: model, device, threads, top-k, hops and temperature, persisted with QSettings.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext is read during
// construction (and its QSettings borrowed for the view's lifetime where noted).
#pragma once

#include "ui/ui_context.h"

#include <QWidget>

class QComboBox;
class QDoubleSpinBox;
class QLineEdit;
class QSpinBox;

class QSettings;

namespace msa::ui {

class SettingsView : public QWidget {
    Q_OBJECT
public:
    explicit SettingsView(const UiContext& context, QWidget* parent = nullptr);

    // Keys under which the values are stored (shared with the engine host later).
    static constexpr const char* kModelKey = "engine/model";
    static constexpr const char* kDeviceKey = "engine/device";
    static constexpr const char* kThreadsKey = "engine/threads";
    static constexpr const char* kTopKKey = "memory/topK";
    static constexpr const char* kHopsKey = "memory/maxHops";
    static constexpr const char* kTemperatureKey = "generation/temperature";

signals:
    void settingsChanged();

private:
    void save();

    QSettings* m_settings = nullptr;   // borrowed from the UiContext
    QLineEdit* m_model = nullptr;
    QComboBox* m_device = nullptr;
    QSpinBox* m_threads = nullptr;
    QSpinBox* m_topK = nullptr;
    QSpinBox* m_hops = nullptr;
    QDoubleSpinBox* m_temperature = nullptr;
};

}  // namespace msa::ui

#include "ui/views/settings_view.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardItemModel>

#include <thread>

namespace msa::ui {

SettingsView::SettingsView(const UiContext& context, QWidget* parent)
    : QWidget(parent), m_settings(context.settings) {
    setObjectName("settingsView");
    auto* form = new QFormLayout(this);

    auto* modelRow = new QHBoxLayout;
    m_model = new QLineEdit(this);
    m_model->setObjectName("settingsModel");
    m_model->setPlaceholderText(tr("GGUF file or Hugging Face model folder"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Choose a model"), m_model->text(),
                                                       tr("GGUF models (*.gguf);;All files (*)"));
        if (!f.isEmpty()) m_model->setText(f);
    });
    modelRow->addWidget(m_model, 1);
    modelRow->addWidget(browse);
    form->addRow(tr("Model:"), modelRow);

    // Every backend is listed; unusable ones are disabled and carry their reason as a tooltip.
    m_device = new QComboBox(this);
    m_device->setObjectName("settingsDevice");
    auto* items = qobject_cast<QStandardItemModel*>(m_device->model());
    for (const auto& b : context.registry.backends()) {
        if (b.devices.empty()) {
            m_device->addItem(QString::fromStdString(b.name + " (" + b.reason + ")"), QString::fromStdString(b.name));
            if (items) items->item(m_device->count() - 1)->setEnabled(false);
            continue;
        }
        for (const auto& d : b.devices)
            m_device->addItem(QString::fromStdString(d.id + " — " + d.name), QString::fromStdString(d.id));
    }
    form->addRow(tr("Device:"), m_device);

    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    m_threads = new QSpinBox(this);
    m_threads->setObjectName("settingsThreads");
    m_threads->setRange(1, hw);
    form->addRow(tr("CPU threads:"), m_threads);

    m_topK = new QSpinBox(this);
    m_topK->setObjectName("settingsTopK");
    m_topK->setRange(1, 256);
    m_topK->setToolTip(tr("Documents each routing layer selects (the MSA reference uses 16)."));
    form->addRow(tr("Top-k documents:"), m_topK);

    m_hops = new QSpinBox(this);
    m_hops->setObjectName("settingsHops");
    m_hops->setRange(1, 10);
    m_hops->setToolTip(tr("Maximum Memory Interleave rounds per question."));
    form->addRow(tr("Maximum hops:"), m_hops);

    m_temperature = new QDoubleSpinBox(this);
    m_temperature->setObjectName("settingsTemperature");
    m_temperature->setRange(0.0, 2.0);
    m_temperature->setSingleStep(0.1);
    m_temperature->setToolTip(tr("0 means greedy decoding (deterministic)."));
    form->addRow(tr("Temperature:"), m_temperature);

    auto* chunk = new QLabel(tr("64 tokens (read from the memory bank once one is built)"), this);
    chunk->setObjectName("settingsChunk");
    form->addRow(tr("Chunk size:"), chunk);
    form->addRow(tr("Theme:"), new QLabel(tr("follows the system"), this));

    // Load, then save on every change so nothing is lost if the app is killed.
    QSettings& s = *m_settings;
    const QString defaultModel = QString::fromStdString(context.doctor.demoModel.path.string());
    m_model->setText(s.value(kModelKey, defaultModel).toString());
    const int deviceIndex = m_device->findData(s.value(kDeviceKey, QStringLiteral("cpu")));
    m_device->setCurrentIndex(deviceIndex >= 0 ? deviceIndex : 0);
    m_threads->setValue(s.value(kThreadsKey, hw).toInt());
    m_topK->setValue(s.value(kTopKKey, 16).toInt());
    m_hops->setValue(s.value(kHopsKey, 3).toInt());
    m_temperature->setValue(s.value(kTemperatureKey, 0.0).toDouble());

    connect(m_model, &QLineEdit::editingFinished, this, &SettingsView::save);
    connect(m_device, &QComboBox::currentIndexChanged, this, &SettingsView::save);
    connect(m_threads, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_topK, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_hops, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_temperature, &QDoubleSpinBox::valueChanged, this, &SettingsView::save);
}

void SettingsView::save() {
    QSettings& s = *m_settings;
    s.setValue(kModelKey, m_model->text());
    s.setValue(kDeviceKey, m_device->currentData());
    s.setValue(kThreadsKey, m_threads->value());
    s.setValue(kTopKKey, m_topK->value());
    s.setValue(kHopsKey, m_hops->value());
    s.setValue(kTemperatureKey, m_temperature->value());
    emit settingsChanged();
}

}  // namespace msa::ui

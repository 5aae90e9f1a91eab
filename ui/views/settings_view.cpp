#include "ui/views/settings_view.h"


#include "ui/catalog_host.h"

#include <QComboBox>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QVBoxLayout>

#include <algorithm>
#include <functional>
#include <thread>

namespace msa::ui {

namespace {
QLabel* inlineMessage(const char* name, QWidget* parent) {
    auto* l = new QLabel(parent);
    l->setObjectName(name);
    l->setWordWrap(true);
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return l;
}

void setMessage(QLabel* label, bool ok, const QString& text) {
    label->setStyleSheet(ok ? "QLabel { color: #2e7d32; }" : "QLabel { color: #b00020; }");
    label->setText(text);
}

// A line edit with a Browse… button; `pick` returns the chosen path or an empty string.
QHBoxLayout* pathRow(QLineEdit* edit, QWidget* parent, std::function<QString()> pick) {
    auto* row = new QHBoxLayout;
    auto* browse = new QPushButton(QObject::tr("Browse…"), parent);
    QObject::connect(browse, &QPushButton::clicked, edit, [edit, pick = std::move(pick)] {
        const QString p = pick();
        if (p.isEmpty()) return;
        edit->setText(p);
        emit edit->editingFinished();
    });
    row->addWidget(edit, 1);
    row->addWidget(browse);
    return row;
}
}  // namespace

SettingsView::SettingsView(const UiContext& context, QWidget* parent)
    : QWidget(parent), m_settings(context.settings) {
    setObjectName("settingsView");
    auto* outer = new QVBoxLayout(this);

    // ---- engine
    auto* engineBox = new QGroupBox(tr("Model and engine"), this);
    auto* engine = new QFormLayout(engineBox);
    m_model = new QLineEdit(engineBox);
    m_model->setObjectName("settingsModel");
    m_model->setPlaceholderText(tr("GGUF file or Hugging Face model folder"));
    engine->addRow(tr("Model:"), pathRow(m_model, engineBox, [this] {
                       return QFileDialog::getOpenFileName(this, tr("Choose a model"), m_model->text(),
                                                           tr("GGUF models (*.gguf);;All files (*)"));
                   }));
    m_modelCheck = inlineMessage("settingsModelCheck", engineBox);
    engine->addRow(QString(), m_modelCheck);

    // The --device choices (core/engine/device_select.h): Auto, the CPU, each usable GPU, all GPUs
    // (Memory Parallel) when there are several; a backend without a usable device is listed disabled
    // with its reason, so the user sees why there is no GPU. The item data is the stored spec.
    m_registry = context.registry;
    m_device = new QComboBox(engineBox);
    m_device->setObjectName("settingsDevice");
    auto* items = qobject_cast<QStandardItemModel*>(m_device->model());
    const engine::BackendChoice autoChoice = deviceChoiceFor(m_registry, QStringLiteral("auto"));
    m_device->addItem(tr("Auto (%1)").arg(QString::fromStdString(autoChoice.describe())), QStringLiteral("auto"));
    for (const auto& b : m_registry.backends()) {
        if (b.name == "cpu") {
            m_device->addItem(tr("CPU — %1").arg(QString::fromStdString(autoChoice.backend == "cpu" ? autoChoice.deviceName
                                                                                                 : b.devices.front().name)),
                              QStringLiteral("cpu"));
            continue;
        }
        if (!b.usable || b.devices.empty() || !b.create) {
            const std::string why = !b.reason.empty() ? b.reason : (b.create ? "no usable device" : "its backend cannot run models yet");
            m_device->addItem(tr("%1 — not usable: %2").arg(QString::fromStdString(b.name).toUpper(), QString::fromStdString(why)),
                              QString::fromStdString(b.name));
            if (items) {
                items->item(m_device->count() - 1)->setEnabled(false);
                items->item(m_device->count() - 1)->setToolTip(QString::fromStdString(why));
            }
            continue;
        }
        for (const auto& d : b.devices)
            m_device->addItem(QString::fromStdString(d.id + " — " + d.name), QString::fromStdString(d.id));
        if (b.devices.size() > 1)
            m_device->addItem(tr("All %1 GPUs (Memory Parallel) — %2:all").arg(b.devices.size()).arg(QString::fromStdString(b.name)),
                              QString::fromStdString(b.name + ":all"));
    }
    engine->addRow(tr("&Device:"), m_device);
    m_deviceNote = inlineMessage("settingsDeviceNote", engineBox);
    engine->addRow(QString(), m_deviceNote);

    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    m_threads = new QSpinBox(engineBox);
    m_threads->setObjectName("settingsThreads");
    m_threads->setRange(1, hw);
    m_threads->setToolTip(tr("CPU threads for encoding and generation."));
    engine->addRow(tr("CPU &threads:"), m_threads);
    outer->addWidget(engineBox);

    // ---- where things live
    auto* pathsBox = new QGroupBox(tr("Files"), this);
    auto* paths = new QFormLayout(pathsBox);
    m_bankDir = new QLineEdit(pathsBox);
    m_bankDir->setObjectName("settingsBankDir");
    m_bankDir->setToolTip(tr("Each collection's memory bank is a folder in here, named after the collection."));
    paths->addRow(tr("Bank folder:"), pathRow(m_bankDir, pathsBox, [this] {
                      return QFileDialog::getExistingDirectory(this, tr("Folder for memory banks"), m_bankDir->text());
                  }));
    m_bankDirCheck = inlineMessage("settingsBankDirCheck", pathsBox);
    paths->addRow(QString(), m_bankDirCheck);
    m_catalog = new QLineEdit(pathsBox);
    m_catalog->setObjectName("settingsCatalog");
    // The placeholder names the catalog this window uses when the field is empty (--catalog wins).
    m_catalog->setPlaceholderText(context.catalogPath.isEmpty() ? CatalogClient::defaultPath() : context.catalogPath);
    m_catalog->setToolTip(tr("The SQLite catalog of imported documents; empty: the default. Used from the next start "
                             "(msa-workbench --catalog FILE overrides it)."));
    paths->addRow(tr("Catalog file:"), pathRow(m_catalog, pathsBox, [this] {
                      return QFileDialog::getSaveFileName(this, tr("Catalog file"), m_catalog->text(), tr("SQLite catalogs (*.sqlite)"),
                                                          nullptr, QFileDialog::DontConfirmOverwrite);
                  }));
    m_catalogCheck = inlineMessage("settingsCatalogCheck", pathsBox);
    paths->addRow(QString(), m_catalogCheck);
    outer->addWidget(pathsBox);

    // ---- memory and answering
    auto* memoryBox = new QGroupBox(tr("Memory and answers"), this);
    auto* memory = new QFormLayout(memoryBox);
    m_topK = new QSpinBox(memoryBox);
    m_topK->setObjectName("settingsTopK");
    m_topK->setRange(1, 256);
    m_topK->setToolTip(tr("Documents each routing layer selects (the MSA reference uses 16)."));
    memory->addRow(tr("Top-&k documents:"), m_topK);
    m_hops = new QSpinBox(memoryBox);
    m_hops->setObjectName("settingsHops");
    m_hops->setRange(1, 10);
    m_hops->setToolTip(tr("Maximum Memory Interleave rounds per question."));
    memory->addRow(tr("Maximum &hops:"), m_hops);
    m_storage = new QComboBox(memoryBox);
    m_storage->setObjectName("settingsStorage");
    m_storage->addItem(tr("bf16 (half the size)"), QStringLiteral("bf16"));
    m_storage->addItem(tr("f32 (exact)"), QStringLiteral("f32"));
    m_storage->setToolTip(tr("How a new bank stores pooled keys and values; an existing bank keeps its own."));
    memory->addRow(tr("Bank &storage:"), m_storage);
    m_injection = new QComboBox(memoryBox);
    m_injection->setObjectName("settingsInjection");
    m_injection->addItem(tr("Document text (training-free)"), QStringLiteral("text"));
    m_injection->addItem(tr("Compressed: chunk K/V in the attention (training-free)"), QStringLiteral("kv"));
    m_injection->setToolTip(tr("How the selected documents reach the model when answering (training-free method): "
                               "their original text in the prompt, or their pooled chunk K/V from the bank."));
    memory->addRow(tr("&Injection:"), m_injection);
    m_temperature = new QDoubleSpinBox(memoryBox);
    m_temperature->setObjectName("settingsTemperature");
    m_temperature->setRange(0.0, 2.0);
    m_temperature->setSingleStep(0.1);
    m_temperature->setToolTip(tr("0 means greedy decoding (deterministic)."));
    memory->addRow(tr("T&emperature:"), m_temperature);
    m_maxTokens = new QSpinBox(memoryBox);
    m_maxTokens->setObjectName("settingsMaxTokens");
    m_maxTokens->setRange(1, 8192);
    memory->addRow(tr("Maximum &answer tokens:"), m_maxTokens);
    m_chunk = new QLabel(tr("no active bank (a bank fixes its chunk size and k when it is built)"), memoryBox);
    m_chunk->setObjectName("settingsChunk");
    m_chunk->setTextInteractionFlags(Qt::TextSelectableByMouse);
    memory->addRow(tr("Active bank:"), m_chunk);
    memory->addRow(tr("Theme:"), new QLabel(tr("follows the system"), memoryBox));
    outer->addWidget(memoryBox);
    outer->addStretch(1);

    // Load, then save on every change so nothing is lost if the app is killed.
    m_current = AppSettings::load(*m_settings, AppSettings::defaults(context));
    const AppSettings& s = m_current;
    m_model->setText(s.modelPath);
    const int deviceIndex = m_device->findData(s.device);
    m_device->setCurrentIndex(deviceIndex >= 0 ? deviceIndex : 0);
    showDevice(s.device);
    m_threads->setValue(std::clamp(s.threads, 1, hw));
    m_bankDir->setText(s.bankDir);
    m_catalog->setText(s.catalogPath);
    m_topK->setValue(s.topK);
    m_hops->setValue(s.maxHops);
    m_storage->setCurrentIndex(std::max(0, m_storage->findData(s.storage)));
    m_injection->setCurrentIndex(std::max(0, m_injection->findData(s.injection)));
    m_temperature->setValue(s.temperature);
    m_maxTokens->setValue(s.maxAnswerTokens);
    validate();

    connect(m_model, &QLineEdit::editingFinished, this, &SettingsView::save);
    connect(m_bankDir, &QLineEdit::editingFinished, this, &SettingsView::save);
    connect(m_catalog, &QLineEdit::editingFinished, this, &SettingsView::save);
    connect(m_device, &QComboBox::currentIndexChanged, this, &SettingsView::save);
    connect(m_storage, &QComboBox::currentIndexChanged, this, &SettingsView::save);
    connect(m_injection, &QComboBox::currentIndexChanged, this, &SettingsView::save);
    connect(m_threads, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_topK, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_hops, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_maxTokens, &QSpinBox::valueChanged, this, &SettingsView::save);
    connect(m_temperature, &QDoubleSpinBox::valueChanged, this, &SettingsView::save);
}

void SettingsView::showDevice(const QString& spec) {
    const engine::BackendChoice c = deviceChoiceFor(m_registry, spec);
    m_deviceInUse = QString::fromStdString(c.describe());
    // Grey when the choice is what was asked for; red when a GPU was asked for but the CPU runs.
    m_deviceNote->setStyleSheet(c.fellBack ? "QLabel { color: #b00020; }" : "QLabel { color: palette(mid); }");
    m_deviceNote->setText(c.note.empty() ? tr("Runs on %1").arg(m_deviceInUse)
                                         : tr("Runs on %1: %2").arg(m_deviceInUse, QString::fromStdString(c.note)));
}

void SettingsView::showBank(const BankSummary& bank) {
    if (!bank.exists) {
        m_chunk->setText(tr("no active bank (a bank fixes its chunk size and k when it is built)"));
    } else if (!bank.ok) {
        m_chunk->setText(tr("%1: %2").arg(QDir::toNativeSeparators(bank.path), bank.error));
    } else {
        m_chunk->setText(tr("chunk size %1 tokens · k = %2 documents per routing layer · %n document(s) · %3", nullptr,
                            static_cast<int>(bank.nDocuments))
                             .arg(bank.chunkSize).arg(bank.topK).arg(QDir::toNativeSeparators(bank.path)));
    }
}

QString SettingsView::modelProblem() const { return m_modelOk ? QString() : m_modelCheck->text(); }

QString SettingsView::folderProblem() const {
    QStringList p;
    if (!m_bankDirCheck->isHidden() && !m_bankDirCheck->text().isEmpty()) p << m_bankDirCheck->text();
    if (!m_catalogCheck->isHidden() && !m_catalogCheck->text().isEmpty()) p << m_catalogCheck->text();
    return p.join('\n');
}

void SettingsView::validate() {
    if (!m_modelChecked || m_model->text() != m_checkedModel) {   // opening the model's header is cheap, but not free
        m_modelChecked = true;
        m_checkedModel = m_model->text();
        const ModelCheck model = checkModel(m_checkedModel);
        m_modelOk = model.ok;
        setMessage(m_modelCheck, model.ok, model.ok ? model.summary : model.problem);
    }

    const QString bank = checkWritableFolder(m_bankDir->text());
    setMessage(m_bankDirCheck, bank.isEmpty(), bank);
    m_bankDirCheck->setVisible(!bank.isEmpty());

    QString catalog;
    if (!m_catalog->text().trimmed().isEmpty()) {
        const QFileInfo info(m_catalog->text());
        if (info.isDir()) catalog = tr("%1 is a folder; name a catalog file (e.g. catalog.sqlite)").arg(m_catalog->text());
        else if (!info.exists()) catalog = checkWritableFolder(info.absolutePath());
    }
    setMessage(m_catalogCheck, catalog.isEmpty(), catalog);
    m_catalogCheck->setVisible(!catalog.isEmpty());
}

void SettingsView::save() {
    AppSettings s = m_current;
    s.modelPath = m_model->text().trimmed();
    s.device = m_device->currentData().toString();
    showDevice(s.device);
    s.threads = m_threads->value();
    s.bankDir = m_bankDir->text().trimmed();
    s.catalogPath = m_catalog->text().trimmed();
    s.topK = m_topK->value();
    s.maxHops = m_hops->value();
    s.storage = m_storage->currentData().toString();
    s.injection = m_injection->currentData().toString();
    s.temperature = m_temperature->value();
    s.maxAnswerTokens = m_maxTokens->value();
    validate();
    // What the user typed is kept even when it does not validate (the file may appear later); the
    // inline message says what is wrong and the views check again before they use it.
    s.save(*m_settings);
    const bool changed = !(s == m_current);
    m_current = s;
    if (changed) emit settingsChanged(m_current);
}

}  // namespace msa::ui

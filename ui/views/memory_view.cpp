#include "ui/views/memory_view.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLocale>
#include <QProgressBar>
#include <QPushButton>
#include <QVBoxLayout>

#include <qcustomplot.h>

namespace msa::ui {

MemoryView::MemoryView(const UiContext& context, QWidget* parent) : QWidget(parent) {
    setObjectName("memoryView");
    auto* layout = new QVBoxLayout(this);

    auto* modelBox = new QGroupBox(tr("Model and device"), this);
    auto* form = new QFormLayout(modelBox);
    const auto& model = context.doctor.demoModel;
    auto* modelLabel = new QLabel(modelBox);
    modelLabel->setObjectName("memoryModel");
    modelLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    if (model.present) {
        modelLabel->setText(tr("%1 — %2, GGUF v%3")
                                .arg(QString::fromStdString(model.path.filename().string()),
                                     QLocale().formattedDataSize(static_cast<qint64>(model.sizeBytes)))
                                .arg(model.ggufVersion));
        modelLabel->setToolTip(QString::fromStdString(model.path.string()));
    } else {
        modelLabel->setText(tr("demo model not found — run packaging/setup.sh"));
    }
    form->addRow(tr("Model:"), modelLabel);
    auto* device = new QComboBox(modelBox);
    device->setObjectName("memoryDevice");
    for (const auto& b : context.registry.backends())
        for (const auto& d : b.devices) device->addItem(QString::fromStdString(d.id + " — " + d.name));
    form->addRow(tr("Device:"), device);
    auto* bank = new QLabel(tr("No memory bank has been built for this collection yet."), modelBox);
    bank->setObjectName("memoryBankFacts");
    form->addRow(tr("Memory bank:"), bank);
    layout->addWidget(modelBox);

    auto* buildBox = new QGroupBox(tr("Build"), this);
    auto* buildLayout = new QVBoxLayout(buildBox);
    auto* build = new QPushButton(tr("Build memory"), buildBox);
    build->setObjectName("memoryBuild");
    build->setEnabled(false);
    build->setToolTip(tr("Building a memory bank needs the catalog and the MSA engine (not in this version yet)."));
    auto* progress = new QProgressBar(buildBox);
    progress->setObjectName("memoryProgress");
    progress->setRange(0, 100);
    progress->setValue(0);
    progress->setFormat(tr("idle"));
    buildLayout->addWidget(build);
    buildLayout->addWidget(progress);

    m_rate = new QCustomPlot(buildBox);
    m_rate->setObjectName("memoryRatePlot");
    m_rate->setMinimumHeight(220);
    m_rate->xAxis->setLabel(tr("elapsed (s)"));
    m_rate->yAxis->setLabel(tr("tokens / s"));
    m_rate->xAxis->setRange(0, 60);
    m_rate->yAxis->setRange(0, 1000);
    m_rate->addGraph();
    m_rate->plotLayout()->insertRow(0);
    m_rate->plotLayout()->addElement(0, 0, new QCPTextElement(m_rate, tr("Encoding throughput"), QFont(font().family(), 10, QFont::Bold)));
    buildLayout->addWidget(m_rate, 1);
    layout->addWidget(buildBox, 1);
}

}  // namespace msa::ui

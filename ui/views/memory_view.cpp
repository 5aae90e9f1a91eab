#include "ui/views/memory_view.h"

#include <QAction>
#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QLocale>
#include <QMessageBox>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QToolButton>
#include <QMenu>
#include <QSplitter>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

namespace msa::ui {

namespace {
constexpr const char* kCollectionKey = "memory/collection";

QString duration(double seconds) {
    if (seconds < 0) return QObject::tr("unknown");
    const qint64 s = static_cast<qint64>(std::llround(seconds));
    if (s >= 3600) return QStringLiteral("%1:%2:%3").arg(s / 3600).arg(s / 60 % 60, 2, 10, QChar('0')).arg(s % 60, 2, 10, QChar('0'));
    return QStringLiteral("%1:%2").arg(s / 60).arg(s % 60, 2, 10, QChar('0'));
}
}  // namespace

MemoryView::MemoryView(const UiContext& context, CatalogClient* catalog, QWidget* parent)
    : QWidget(parent),
      m_settings(AppSettings::load(*context.settings, AppSettings::defaults(context))),
      m_registry(context.registry),
      m_catalog(catalog) {
    setObjectName("memoryView");
    m_memory = new MemoryClient(this);
    QSettings* store = context.settings;
    m_store = store;
    auto* layout = new QVBoxLayout(this);

    // ---- what to build from, with what, into where
    auto* sourceBox = new QGroupBox(tr("Collection, model and bank"), this);
    auto* form = new QFormLayout(sourceBox);
    m_collection = new QComboBox(sourceBox);
    m_collection->setObjectName("memoryCollection");
    m_collection->setPlaceholderText(tr("no collections yet: import one in the Library tab"));
    form->addRow(tr("C&ollection:"), m_collection);

    auto* modelRow = new QHBoxLayout;
    m_model = new QLineEdit(m_settings.modelPath, sourceBox);
    m_model->setObjectName("memoryModel");
    m_model->setPlaceholderText(tr("GGUF file or Hugging Face model folder"));
    auto* browseModel = new QPushButton(tr("Browse…"), sourceBox);
    // Models that opened here before (most recent first), kept in QSettings.
    m_recentModels = new QToolButton(sourceBox);
    m_recentModels->setObjectName("memoryRecentModels");
    m_recentModels->setText(tr("Recent"));
    m_recentModels->setPopupMode(QToolButton::InstantPopup);
    m_recentModels->setMenu(new QMenu(m_recentModels));
    modelRow->addWidget(m_model, 1);
    modelRow->addWidget(browseModel);
    modelRow->addWidget(m_recentModels);
    form->addRow(tr("Model:"), modelRow);
    m_modelCheck = new QLabel(sourceBox);
    m_modelCheck->setObjectName("memoryModelCheck");
    m_modelCheck->setWordWrap(true);
    form->addRow(QString(), m_modelCheck);

    auto* bankRow = new QHBoxLayout;
    m_bank = new QLineEdit(sourceBox);
    m_bank->setObjectName("memoryBankPath");
    m_bank->setPlaceholderText(tr("memory bank folder (created by the first build)"));
    auto* browseBank = new QPushButton(tr("Browse…"), sourceBox);
    bankRow->addWidget(m_bank, 1);
    bankRow->addWidget(browseBank);
    form->addRow(tr("Bank folder:"), bankRow);

    m_device = new QComboBox(sourceBox);
    m_device->setObjectName("memoryDevice");
    m_device->setEnabled(false);   // chosen in the Settings tab; shown here so a build says where it runs
    showDevice();
    form->addRow(tr("Device:"), m_device);
    layout->addWidget(sourceBox);

    // ---- build controls and progress
    auto* controls = new QHBoxLayout;
    m_build = new QPushButton(tr("&Build memory"), this);
    m_build->setObjectName("memoryBuild");
    // Ctrl+B, Ctrl+Shift+E/I/V: the window's Actions menu (they work from every tab).
    m_build->setToolTip(tr("Encode the collection's documents into the bank (Ctrl+B). Documents already in the "
                           "bank and unchanged are kept, so this also resumes a cancelled build."));
    m_cancel = new QPushButton(tr("Cancel"), this);
    m_cancel->setObjectName("memoryCancel");
    m_cancel->setShortcut(QKeySequence(Qt::Key_Escape));
    m_cancel->setToolTip(tr("Stop after committing the documents finished so far (Esc)."));
    m_open = new QPushButton(tr("Open bank"), this);
    m_open->setObjectName("memoryOpenBank");
    m_open->setToolTip(tr("Read the bank folder's facts again."));
    m_progress = new QProgressBar(this);
    m_progress->setObjectName("memoryProgress");
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_progress->setFormat(tr("idle"));
    controls->addWidget(m_build);
    controls->addWidget(m_cancel);
    controls->addWidget(m_open);
    m_export = new QPushButton(tr("E&xport…"), this);
    m_export->setObjectName("memoryExportBank");
    m_export->setToolTip(tr("Write the bank and its documents' text into one archive file (Ctrl+Shift+E)."));
    m_import = new QPushButton(tr("&Import…"), this);
    m_import->setObjectName("memoryImportBank");
    m_import->setToolTip(tr("Restore a bank archive into a bank folder and its documents into the catalog; "
                            "every checksum is verified first (Ctrl+Shift+I)."));
    m_verify = new QPushButton(tr("&Verify"), this);
    m_verify->setObjectName("memoryVerifyBank");
    m_verify->setToolTip(tr("Check every checksum of the bank, bulk data included (Ctrl+Shift+V)."));
    controls->addWidget(m_export);
    controls->addWidget(m_import);
    controls->addWidget(m_verify);
    controls->addWidget(m_progress, 1);
    layout->addLayout(controls);

    m_progressLine = new QLabel(this);
    m_progressLine->setObjectName("memoryProgressLine");
    m_progressLine->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_progressLine);
    m_resume = new QLabel(this);
    m_resume->setObjectName("memoryResume");
    layout->addWidget(m_resume);
    m_error = new QLabel(this);
    m_error->setObjectName("memoryError");
    m_error->setWordWrap(true);
    m_error->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_error->setStyleSheet("QLabel { color: #b00020; }");
    m_error->hide();
    layout->addWidget(m_error);

    // ---- the live plot beside the bank's facts and the skipped documents
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->setObjectName("memorySplitter");
    m_rate = new QCustomPlot(split);
    m_rate->setObjectName("memoryRatePlot");
    m_rate->setMinimumHeight(220);
    m_rate->xAxis->setLabel(tr("elapsed (s)"));
    m_rate->yAxis->setLabel(tr("tokens / s"));
    m_rate->xAxis->setRange(0, 60);
    m_rate->yAxis->setRange(0, 1000);
    QCPGraph* now = m_rate->addGraph();
    now->setName(tr("last interval"));
    now->setPen(QPen(QColor(0x1f, 0x77, 0xb4), 2));
    now->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 4));
    QCPGraph* avg = m_rate->addGraph();
    avg->setName(tr("run average"));
    avg->setPen(QPen(QColor(0xff, 0x7f, 0x0e), 1.5, Qt::DashLine));
    m_rate->legend->setVisible(true);
    m_rate->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignBottom | Qt::AlignRight);
    m_rate->plotLayout()->insertRow(0);
    m_rate->plotLayout()->addElement(0, 0, new QCPTextElement(m_rate, tr("Encoding throughput"), QFont(font().family(), 10, QFont::Bold)));

    auto* side = new QWidget(split);
    auto* sideLayout = new QVBoxLayout(side);
    sideLayout->setContentsMargins(0, 0, 0, 0);
    auto* factsBox = new QGroupBox(tr("Memory bank"), side);
    auto* factsLayout = new QVBoxLayout(factsBox);
    m_bankFacts = new QLabel(tr("No bank opened yet."), factsBox);
    m_bankFacts->setObjectName("memoryBankFacts");
    m_bankFacts->setWordWrap(true);
    m_bankFacts->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_bankFacts->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    factsLayout->addWidget(m_bankFacts);
    sideLayout->addWidget(factsBox);
    auto* skippedBox = new QGroupBox(tr("Skipped documents"), side);
    auto* skippedLayout = new QVBoxLayout(skippedBox);
    m_skipped = new QListWidget(skippedBox);
    m_skipped->setObjectName("memorySkipped");
    skippedLayout->addWidget(m_skipped);
    sideLayout->addWidget(skippedBox, 1);
    split->addWidget(m_rate);
    split->addWidget(side);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    layout->addWidget(split, 1);

    // ---- wiring
    connect(browseModel, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Choose a model"), m_model->text(),
                                                       tr("GGUF models (*.gguf);;All files (*)"));
        if (!f.isEmpty()) setModelPath(f);
    });
    connect(m_model, &QLineEdit::editingFinished, this, [this] { setModelPath(m_model->text()); });
    connect(browseBank, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("Choose the bank folder"), m_bank->text());
        if (!d.isEmpty()) {
            m_bankEdited = true;
            setBankPath(d);
        }
    });
    connect(m_bank, &QLineEdit::textEdited, this, [this] { m_bankEdited = true; });
    connect(m_bank, &QLineEdit::editingFinished, this, [this] { openBank(); });
    connect(m_collection, &QComboBox::currentIndexChanged, this, [this, store] {
        if (m_collection->currentIndex() >= 0) store->setValue(kCollectionKey, m_collection->currentText());
        collectionChanged();
    });
    connect(m_build, &QPushButton::clicked, this, [this] { startBuild(); });
    connect(m_cancel, &QPushButton::clicked, this, [this] {
        cancelBuild();
        cancelBankFile();
    });
    connect(m_export, &QPushButton::clicked, this, [this] {
        const QString bank = m_bank->text();
        const QString suggested = QFileInfo(bank).absolutePath() + "/" + QFileInfo(bank).fileName() + ".msabank";
        const QString f = QFileDialog::getSaveFileName(this, tr("Export the memory bank"), suggested,
                                                       tr("Bank archives (*.msabank);;All files (*)"));
        if (!f.isEmpty()) exportBankTo(f);
    });
    connect(m_import, &QPushButton::clicked, this, [this] {
        const QString f = QFileDialog::getOpenFileName(this, tr("Import a memory bank archive"), QFileInfo(m_bank->text()).absolutePath(),
                                                       tr("Bank archives (*.msabank);;All files (*)"));
        if (f.isEmpty()) return;
        const QString target = QFileDialog::getExistingDirectory(this, tr("Restore the bank into which folder?"),
                                                                 QFileInfo(m_bank->text()).absolutePath());
        if (target.isEmpty()) return;
        // An empty folder is the target itself; otherwise a new folder named after the archive inside it.
        QString folder = target;
        if (!QDir(target).isEmpty()) folder = target + "/" + QFileInfo(f).completeBaseName();
        bool replace = false;
        if (QFileInfo::exists(folder + "/manifest.json")) {
            replace = QMessageBox::question(this, tr("Replace the bank?"),
                                            tr("%1 already holds a memory bank. Replace it with the archive's bank? "
                                               "(The old one is only removed once the new one is complete.)")
                                                .arg(folder)) == QMessageBox::Yes;
            if (!replace) return;
        }
        importBankFrom(f, folder, replace);
    });
    connect(m_verify, &QPushButton::clicked, this, [this] { verifyBank(); });
    connect(m_open, &QPushButton::clicked, this, &MemoryView::openBank);

    connect(m_catalog, &CatalogClient::collectionsReady, this, &MemoryView::showCollections);
    connect(m_memory, &MemoryClient::buildStarted, this, &MemoryView::showStarted);
    connect(m_memory, &MemoryClient::buildProgress, this, &MemoryView::showProgress);
    connect(m_memory, &MemoryClient::buildFinished, this, &MemoryView::showOutcome);
    connect(m_memory, &MemoryClient::bankReady, this, &MemoryView::showBank);
    connect(m_memory, &MemoryClient::bankFileProgress, this, &MemoryView::showBankFileProgress);
    connect(m_memory, &MemoryClient::bankFileFinished, this, &MemoryView::showBankFileOutcome);

    m_collection->setProperty("remembered", store->value(kCollectionKey).toString());
    setModelPath(m_model->text());
    updateButtons();
}

MemoryView::~MemoryView() { shutdown(); }

void MemoryView::shutdown() { m_memory->shutdown(); }

QString MemoryView::currentCollection() const { return m_collection->currentIndex() >= 0 ? m_collection->currentText() : QString(); }
QString MemoryView::modelPath() const { return m_model->text(); }
QString MemoryView::bankPath() const { return m_bank->text(); }
bool MemoryView::buildRunning() const { return m_memory->buildRunning(); }
int MemoryView::ratePointCount() const { return m_rate->graph(0)->dataCount(); }

bool MemoryView::selectCollection(const QString& name) {
    const int i = m_collection->findText(name);
    if (i < 0) return false;
    m_collection->setCurrentIndex(i);
    return true;
}

void MemoryView::setModelPath(const QString& path) {
    if (m_model->text() != path) m_model->setText(path);
    const ModelCheck check = checkModel(path);
    m_modelCheck->setStyleSheet(check.ok ? "QLabel { color: #2e7d32; }" : "QLabel { color: #b00020; }");
    m_modelCheck->setText(check.ok ? check.summary : check.problem);
    if (check.ok) rememberModel(path);
    else refreshRecentModels();
    updateButtons();
}

QStringList MemoryView::recentModels() const {
    return m_store ? m_store->value(kRecentModelsKey).toStringList() : QStringList();
}

void MemoryView::rememberModel(const QString& path) {
    if (!m_store || path.isEmpty()) return;
    QStringList recent = recentModels();
    recent.removeAll(path);
    recent.prepend(path);
    while (recent.size() > kMaxRecentModels) recent.removeLast();
    m_store->setValue(kRecentModelsKey, recent);
    refreshRecentModels();
}

void MemoryView::refreshRecentModels() {
    QMenu* menu = m_recentModels->menu();
    menu->clear();
    const QStringList recent = recentModels();
    for (const QString& path : recent)
        menu->addAction(path, this, [this, path] { setModelPath(path); });
    m_recentModels->setEnabled(!recent.isEmpty());
}

void MemoryView::setBankPath(const QString& path) {
    m_bank->setText(path);
    if (!buildRunning()) m_resume->clear();
    openBank();
}

void MemoryView::showCollections(const std::vector<catalog::CollectionInfo>& collections) {
    const QString keep = m_collection->currentIndex() >= 0 ? m_collection->currentText()
                                                           : m_collection->property("remembered").toString();
    {
        const QSignalBlocker block(m_collection);
        m_collection->clear();
        for (const auto& c : collections) m_collection->addItem(QString::fromStdString(c.name));
        int i = m_collection->findText(keep);
        if (i < 0) i = m_collection->findText(QStringLiteral("Demo archive"));
        if (i < 0 && m_collection->count() > 0) i = 0;
        m_collection->setCurrentIndex(i);
    }
    collectionChanged();
}

void MemoryView::collectionChanged() {
    const QString c = currentCollection();
    if (!c.isEmpty() && !m_bankEdited && !buildRunning()) setBankPath(m_settings.bankPathFor(c));
    updateButtons();
}

void MemoryView::showDevice() {
    const engine::BackendChoice c = deviceChoiceFor(m_registry, m_settings.device);
    m_device->clear();
    m_device->addItem(QString::fromStdString(c.describe()), QString::fromStdString(c.deviceId));
    m_device->setToolTip(c.note.empty() ? tr("Memory encoding runs here; change it in the Settings tab.")
                                        : QString::fromStdString(c.note));
}

void MemoryView::applySettings(const AppSettings& settings) {
    const bool modelChanged = settings.modelPath != m_settings.modelPath;
    const bool bankDirChanged = settings.bankDir != m_settings.bankDir;
    m_settings = settings;
    showDevice();
    if (buildRunning()) return;   // the running build keeps its inputs; the next one uses these
    if (modelChanged) setModelPath(settings.modelPath);
    if (bankDirChanged) {
        m_bankEdited = false;
        collectionChanged();
    }
}

void MemoryView::openBank() {
    if (!m_bank->text().isEmpty()) m_memory->openBank(m_bank->text());
}

bool MemoryView::bankFileRunning() const { return m_memory->bankFileRunning(); }

void MemoryView::cancelBankFile() {
    if (!bankFileRunning()) return;
    m_memory->cancelBankFile();
    m_progress->setFormat(tr("cancelling…"));
}

void MemoryView::showHint(const QString& html) {
    m_progressLine->setTextFormat(Qt::RichText);
    m_progressLine->setText(html);
}

bool MemoryView::exportBankTo(const QString& file) {
    BankFileRequest r;
    r.operation = BankFileOperation::Export;
    r.bankPath = m_bank->text();
    r.file = file;
    r.catalogPath = m_catalog->path();
    if (r.bankPath.isEmpty() || !QFileInfo::exists(r.bankPath + "/manifest.json")) {
        showError(tr("No memory bank in %1 to export: build it first.").arg(r.bankPath), QString());
        return false;
    }
    return startBankFile(r);
}

bool MemoryView::importBankFrom(const QString& file, const QString& targetFolder, bool replace) {
    BankFileRequest r;
    r.operation = BankFileOperation::Import;
    r.file = file;
    r.bankPath = targetFolder;
    r.catalogPath = m_catalog->path();
    r.modelPath = m_model->text();
    r.force = replace;
    if (!QFileInfo(file).isFile()) {
        showError(tr("%1 is not a file.").arg(file), QString());
        return false;
    }
    return startBankFile(r);
}

bool MemoryView::verifyBank() {
    BankFileRequest r;
    r.operation = BankFileOperation::Verify;
    r.bankPath = m_bank->text();
    if (r.bankPath.isEmpty() || !QFileInfo::exists(r.bankPath + "/manifest.json")) {
        showError(tr("No memory bank in %1 to verify.").arg(r.bankPath), QString());
        return false;
    }
    return startBankFile(r);
}

bool MemoryView::startBankFile(const BankFileRequest& r) {
    if (!m_memory->startBankFile(r)) {
        showError(tr("Wait for the running build or bank job to finish (or cancel it) first."), QString());
        return false;
    }
    m_error->hide();
    m_progressLine->setTextFormat(Qt::AutoText);
    m_progress->setRange(0, 0);
    const QString what = r.operation == BankFileOperation::Export   ? tr("Exporting the bank to %1…").arg(r.file)
                         : r.operation == BankFileOperation::Import ? tr("Importing %1 into %2…").arg(r.file, r.bankPath)
                                                                    : tr("Verifying every checksum of %1…").arg(r.bankPath);
    m_progress->setFormat(r.operation == BankFileOperation::Verify ? tr("verifying…") : tr("starting…"));
    m_progressLine->setText(what);
    updateButtons();
    emit statusMessage(what);
    return true;
}

void MemoryView::showBankFileProgress(const BankFileProgress& p) {
    const QLocale loc;
    if (p.bytesTotal > 0) {
        m_progress->setRange(0, 1000);
        m_progress->setValue(static_cast<int>(1000.0 * static_cast<double>(p.bytesDone) / static_cast<double>(p.bytesTotal)));
    }
    m_progress->setFormat(tr("%p%"));
    m_progressLine->setText(tr("%1: %2 of %3 · %4/s · ETA %5")
                                .arg(p.operation == BankFileOperation::Export ? tr("Export") : tr("Import"),
                                     loc.formattedDataSize(static_cast<qint64>(p.bytesDone)),
                                     loc.formattedDataSize(static_cast<qint64>(p.bytesTotal)),
                                     loc.formattedDataSize(static_cast<qint64>(p.bytesPerSecond)), duration(p.etaSeconds)));
}

void MemoryView::showBankFileOutcome(const BankFileOutcome& o) {
    updateButtons();
    m_progress->setRange(0, 1);
    m_progress->setValue(o.ok ? 1 : 0);
    m_progress->setFormat(o.ok ? tr("done") : o.cancelled ? tr("cancelled") : tr("failed"));
    m_progressLine->setText(o.summary);
    if (!o.ok && !o.cancelled) showError(o.summary, o.error);
    if (o.ok && o.operation == BankFileOperation::Import && o.bankPath != m_bank->text()) {
        m_bankEdited = true;
        m_bank->setText(o.bankPath);   // the bankReady that follows shows (and activates) it
    }
    emit statusMessage(o.summary);
    emit bankFileFinished(o.ok, o.cancelled, o.summary);
}

bool MemoryView::startBuild() {
    if (buildRunning() || bankFileRunning()) return false;
    QString problem;
    const ModelCheck model = checkModel(m_model->text());
    if (currentCollection().isEmpty()) problem = tr("Choose a collection first (import one in the Library tab).");
    else if (!model.ok) problem = tr("The model cannot be used: %1").arg(model.problem);
    else if (m_bank->text().trimmed().isEmpty()) problem = tr("Choose a bank folder.");
    if (!problem.isEmpty()) {
        showError(problem, QString());
        return false;
    }
    MemoryBuildRequest r;
    r.catalogPath = m_catalog->path();
    r.collection = currentCollection();
    r.modelPath = m_model->text();
    r.bankPath = m_bank->text();
    r.threads = m_settings.threads;
    r.storage = m_settings.storage;
    r.device = deviceChoiceFor(m_registry, m_settings.device);
    r.maxDocumentTokens = m_documentTokenLimit;
    if (!m_memory->startBuild(r)) return false;

    m_error->hide();
    m_progressLine->setTextFormat(Qt::AutoText);   // a first-run hint may have switched it to rich text
    m_skipped->clear();
    m_rate->graph(0)->data()->clear();
    m_rate->graph(1)->data()->clear();
    m_rate->xAxis->setRange(0, 60);
    m_rate->yAxis->setRange(0, 1000);
    m_rate->replot(QCustomPlot::rpQueuedReplot);
    m_progress->setRange(0, 0);   // busy until the first update gives the total
    m_progress->setFormat(tr("starting…"));
    m_progressLine->setText(tr("Opening the catalog, the model and the bank…"));
    updateButtons();
    emit statusMessage(tr("Building the memory of “%1”…").arg(r.collection));
    return true;
}

void MemoryView::cancelBuild() {
    if (!buildRunning()) return;
    m_memory->cancelBuild();
    m_progress->setFormat(tr("cancelling… (committing finished documents)"));
}

void MemoryView::showStarted(const QString& bankPath, quint64 alreadyInBank) {
    m_resume->setText(alreadyInBank > 0
                          ? tr("%1 documents already in the bank %2: unchanged ones are kept, the build continues from there.")
                                .arg(alreadyInBank)
                                .arg(bankPath)
                          : tr("New bank %1.").arg(bankPath));
}

void MemoryView::showProgress(const MemoryProgressUpdate& u) {
    const int total = static_cast<int>(std::min<quint64>(u.total, INT_MAX));
    m_progress->setRange(0, std::max(total, 1));
    m_progress->setValue(static_cast<int>(std::min<quint64>(u.done, INT_MAX)));
    m_progress->setFormat(tr("%1 / %2 documents").arg(u.done).arg(u.total));
    const QLocale loc;
    m_progressLine->setText(tr("%1 / %2 documents · %3 tokens · %4 tokens/s (average %5) · elapsed %6 · ETA %7%8")
                                .arg(u.done)
                                .arg(u.total)
                                .arg(loc.toString(u.tokens))
                                .arg(loc.toString(u.tokensPerSecond, 'f', 0))
                                .arg(loc.toString(u.averageTokensPerSecond, 'f', 0))
                                .arg(duration(u.elapsedSeconds), duration(u.etaSeconds))
                                .arg(u.current.isEmpty() ? QString() : tr(" · %1").arg(u.current)));
    // The closing update's interval holds only the final commit (no tokens): it is not a rate to plot.
    const bool commitOnly = u.finished && u.tokensPerSecond == 0 && m_rate->graph(0)->dataCount() > 0;
    if (!commitOnly) {
        m_rate->graph(0)->addData(u.elapsedSeconds, u.tokensPerSecond);
        m_rate->graph(1)->addData(u.elapsedSeconds, u.averageTokensPerSecond);
    }
    bool found = false;
    const QCPRange y = m_rate->graph(0)->getValueRange(found);
    const double top = std::max({found ? y.upper : 0.0, u.averageTokensPerSecond, 10.0});
    m_rate->yAxis->setRange(0, top * 1.15);
    m_rate->xAxis->setRange(0, std::max(60.0, u.elapsedSeconds * 1.1));
    m_rate->replot(QCustomPlot::rpQueuedReplot);
}

void MemoryView::showOutcome(const MemoryBuildOutcome& o) {
    updateButtons();
    m_progress->setRange(0, std::max<int>(1, static_cast<int>(o.report.nDocuments)));
    m_progress->setValue(o.ok ? static_cast<int>(o.report.nEncoded + o.report.nUnchanged + o.report.nSkipped) : 0);
    m_progress->setFormat(o.ok ? (o.report.cancelled ? tr("cancelled") : tr("done")) : tr("failed"));
    if (!o.ok) {
        showError(o.summary, o.error);
        m_progressLine->setText(tr("Nothing committed before the failure is lost; fix the cause and Build again."));
    } else {
        m_progressLine->setText(o.summary);
        for (const auto& [id, reason] : o.report.skipped) {
            auto* item = new QListWidgetItem(tr("memory document %1: %2").arg(id).arg(QString::fromStdString(reason)), m_skipped);
            item->setData(Qt::UserRole, static_cast<qint64>(id));
        }
        if (o.report.skipped.empty()) m_skipped->addItem(tr("none"));
        m_resume->setText(o.report.cancelled
                              ? tr("Cancelled: %1 documents are in the bank; Build again to resume from there.")
                                    .arg(o.report.bankDocuments)
                              : tr("%1 documents in the bank; Build again adds new and changed documents only.")
                                    .arg(o.report.bankDocuments));
    }
    emit statusMessage(o.summary);
    emit buildFinished(o.ok, o.ok && o.report.cancelled);
}

void MemoryView::showBank(const BankFacts& f) {
    if (f.path != m_bank->text()) return;   // an answer for a path no longer shown
    const QLocale loc;
    if (!f.exists) {
        m_bankFacts->setText(tr("No memory bank in %1 yet: Build creates it.").arg(f.path.toHtmlEscaped()));
        if (!buildRunning()) m_resume->clear();
    } else if (!f.ok) {
        m_bankFacts->setText(tr("<b>The bank cannot be read.</b><br>%1").arg(f.error.toHtmlEscaped()));
        showError(tr("The bank %1 cannot be read").arg(f.path), f.error);
    } else {
        const double perToken = f.nTokens ? static_cast<double>(f.nBytes) / static_cast<double>(f.nTokens) : 0;
        m_bankFacts->setText(tr("<table>"
                                "<tr><td>Documents:</td><td><b>%1</b></td></tr>"
                                "<tr><td>Chunks:</td><td>%2</td></tr>"
                                "<tr><td>Tokens:</td><td>%3</td></tr>"
                                "<tr><td>Size:</td><td>%4 (%5 bytes per token)</td></tr>"
                                "<tr><td>Shards:</td><td>%6 (generation %7, %8 tombstones)</td></tr>"
                                "<tr><td>Model:</td><td><tt>%9</tt></td></tr>"
                                "<tr><td>Routing:</td><td>%10</td></tr>"
                                "<tr><td>Folder:</td><td>%11</td></tr></table>")
                                 .arg(loc.toString(f.nDocuments), loc.toString(f.nChunks), loc.toString(f.nTokens),
                                      loc.formattedDataSize(static_cast<qint64>(f.nBytes)), loc.toString(perToken, 'f', 0),
                                      loc.toString(f.nShards), loc.toString(f.generation), loc.toString(f.nTombstones),
                                      f.modelFingerprint.toHtmlEscaped())
                                 .arg(f.routing.toHtmlEscaped(), f.path.toHtmlEscaped()));
        if (f.nDocuments > 0 && m_store->value(AppSettings::kActiveBankKey).toString() != f.path) {
            m_store->setValue(AppSettings::kActiveBankKey, f.path);
            emit activeBankChanged(f.path);
        }
        if (!buildRunning() && m_resume->text().isEmpty())
            m_resume->setText(tr("%1 documents already in the bank: Build adds new and changed documents only.").arg(f.nDocuments));
    }
    emit bankShown(f);
}

void MemoryView::showError(const QString& summary, const QString& detail) {
    m_error->setText(detail.isEmpty() || detail == summary
                         ? summary.toHtmlEscaped()
                         : QStringLiteral("<b>%1</b><br><small>%2</small>").arg(summary.toHtmlEscaped(), detail.toHtmlEscaped()));
    m_error->show();
    emit statusMessage(summary);
}

void MemoryView::updateButtons() {
    const bool running = buildRunning() || bankFileRunning();
    m_build->setEnabled(!running && m_collection->currentIndex() >= 0);
    m_cancel->setEnabled(running);
    m_export->setEnabled(!running);
    m_import->setEnabled(!running);
    m_verify->setEnabled(!running);
    m_collection->setEnabled(!running);
    m_model->setEnabled(!running);
    m_bank->setEnabled(!running);
}

}  // namespace msa::ui

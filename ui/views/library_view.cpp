#include "ui/views/library_view.h"

#include "ui/document_table_model.h"

#include "core/util/paths.h"

#include <QAbstractTextDocumentLayout>
#include <QDateTime>
#include <QTimeZone>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFrame>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMimeData>
#include <QPainter>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSortFilterProxyModel>
#include <QShortcut>
#include <QSplitter>
#include <QStyledItemDelegate>
#include <QTableView>
#include <QTextBrowser>
#include <QTextDocument>
#include <QTimer>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <filesystem>

namespace msa::ui {

namespace {

constexpr int kCollectionNameRole = Qt::UserRole + 1;
constexpr const char* kSelectedCollectionKey = "library/collection";
constexpr int kDocumentListLimit = 5000;   // the table lists the newest this many; search reaches all
constexpr int kMaxViewerChars = 400000;   // a viewer, not an editor: huge texts are cut with a note

// Paints the Match column's HTML (escaped snippet with <b> highlights) in one line.
class HtmlDelegate : public QStyledItemDelegate {
public:
    using QStyledItemDelegate::QStyledItemDelegate;
    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override {
        QStyleOptionViewItem opt = option;
        initStyleOption(&opt, index);
        const QString html = opt.text;
        opt.text.clear();
        opt.widget->style()->drawControl(QStyle::CE_ItemViewItem, &opt, painter, opt.widget);
        QTextDocument doc;
        doc.setDefaultFont(opt.font);
        doc.setDocumentMargin(2);
        doc.setHtml(html);
        painter->save();
        painter->translate(opt.rect.topLeft());
        painter->setClipRect(opt.rect.translated(-opt.rect.topLeft()));
        QAbstractTextDocumentLayout::PaintContext ctx;
        ctx.palette = opt.palette;
        if (opt.state & QStyle::State_Selected)
            ctx.palette.setColor(QPalette::Text, opt.palette.color(QPalette::HighlightedText));
        doc.documentLayout()->draw(painter, ctx);
        painter->restore();
    }
};

QString formatBytes(double bytes) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) {
        bytes /= 1024.0;
        ++u;
    }
    return QString::number(bytes, 'f', u == 0 ? 0 : 1) + ' ' + units[u];
}

QString formatSeconds(double s) {
    if (s < 0) return QObject::tr("unknown");
    const qint64 t = static_cast<qint64>(s + 0.5);
    if (t < 60) return QString("%1 s").arg(t);
    if (t < 3600) return QString("%1 min %2 s").arg(t / 60).arg(t % 60);
    return QString("%1 h %2 min").arg(t / 3600).arg((t % 3600) / 60);
}

QString formatDate(const std::optional<int64_t>& unix) {
    return unix ? QDateTime::fromSecsSinceEpoch(*unix, Qt::UTC).toString("yyyy-MM-dd HH:mm 'UTC'") : QString();
}

}  // namespace

LibraryView::LibraryView(const UiContext& context, CatalogClient* catalog, QWidget* parent)
    : QWidget(parent), m_catalog(catalog) {
    m_settings = context.settings;
    Q_ASSERT(m_catalog != nullptr);
    setObjectName("libraryView");
    setAcceptDrops(true);
    auto* layout = new QVBoxLayout(this);
    auto* splitter = new QSplitter(Qt::Horizontal, this);
    splitter->setObjectName("librarySplitter");

    // Collections sidebar.
    auto* side = new QWidget(splitter);
    auto* sideLayout = new QVBoxLayout(side);
    sideLayout->setContentsMargins(0, 0, 0, 0);
    auto* sideTitle = new QLabel(tr("<b>Collections</b>"), side);
    m_collections = new QListWidget(side);
    m_collections->setObjectName("collections");
    m_addFolder = new QPushButton(tr("&Add folder…"), side);
    m_addFolder->setObjectName("libraryAddFolder");
    m_addFolder->setToolTip(tr("Import a folder into the selected collection (or drop files and folders here)"));
    sideLayout->addWidget(sideTitle);
    sideLayout->addWidget(m_collections, 1);
    sideLayout->addWidget(m_addFolder);

    auto* main = new QWidget(splitter);
    auto* mainLayout = new QVBoxLayout(main);
    mainLayout->setContentsMargins(0, 0, 0, 0);

    auto* searchRow = new QHBoxLayout();
    m_search = new QLineEdit(main);
    m_search->setObjectName("librarySearch");
    m_search->setPlaceholderText(tr("Full-text search: words, \"phrases\", AND/OR/NOT, prefix*"));
    m_search->setClearButtonEnabled(true);
    m_filter = new QLineEdit(main);
    m_filter->setObjectName("libraryFilter");
    m_filter->setPlaceholderText(tr("Filter the table"));
    m_filter->setClearButtonEnabled(true);
    searchRow->addWidget(m_search, 3);
    searchRow->addWidget(m_filter, 1);
    mainLayout->addLayout(searchRow);

    m_error = new QLabel(main);
    m_error->setObjectName("libraryError");
    m_error->setWordWrap(true);
    m_error->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_error->setStyleSheet("QLabel { color: #b00020; }");
    m_error->hide();
    mainLayout->addWidget(m_error);

    // Import progress panel.
    m_importPanel = new QFrame(main);
    m_importPanel->setObjectName("importPanel");
    m_importPanel->setFrameShape(QFrame::StyledPanel);
    auto* ipLayout = new QVBoxLayout(m_importPanel);
    auto* ipTop = new QHBoxLayout();
    m_importBar = new QProgressBar(m_importPanel);
    m_importBar->setObjectName("importProgressBar");
    m_importCancel = new QPushButton(tr("Cancel import"), m_importPanel);
    m_importCancel->setObjectName("importCancel");
    ipTop->addWidget(m_importBar, 1);
    ipTop->addWidget(m_importCancel);
    m_importStatus = new QLabel(m_importPanel);
    m_importStatus->setObjectName("importStatus");
    m_importCurrent = new QLabel(m_importPanel);
    m_importCurrent->setObjectName("importCurrent");
    m_importCurrent->setTextFormat(Qt::PlainText);
    m_importCurrent->setMinimumWidth(100);
    m_importCurrent->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    ipLayout->addLayout(ipTop);
    ipLayout->addWidget(m_importStatus);
    ipLayout->addWidget(m_importCurrent);
    m_importPanel->hide();
    mainLayout->addWidget(m_importPanel);

    // Import report panel: the last import's summary and every skipped/failed/deleted file.
    m_reportPanel = new QFrame(main);
    m_reportPanel->setObjectName("importReportPanel");
    m_reportPanel->setFrameShape(QFrame::StyledPanel);
    auto* rpLayout = new QVBoxLayout(m_reportPanel);
    auto* rpTop = new QHBoxLayout();
    m_reportSummary = new QLabel(m_reportPanel);
    m_reportSummary->setObjectName("importSummary");
    m_reportSummary->setWordWrap(true);
    m_resume = new QPushButton(tr("&Resume import"), m_reportPanel);
    m_resume->setObjectName("importResume");
    m_resume->setToolTip(tr("Import the same paths again: files committed before are skipped (Ctrl+Shift+R)"));
    m_resume->hide();
    auto* rpClose = new QPushButton(tr("Hide report"), m_reportPanel);
    rpClose->setObjectName("importReportClose");
    rpTop->addWidget(m_reportSummary, 1);
    rpTop->addWidget(m_resume);
    rpTop->addWidget(rpClose);
    m_report = new QTreeWidget(m_reportPanel);
    m_report->setObjectName("importReport");
    m_report->setRootIsDecorated(false);
    m_report->setUniformRowHeights(true);
    m_report->setHeaderLabels({tr("File"), tr("Outcome"), tr("Code"), tr("Reason")});
    m_report->setMaximumHeight(160);
    m_report->setTextElideMode(Qt::ElideLeft);   // the file name matters more than the folder
    m_report->header()->resizeSection(0, 420);
    m_report->header()->resizeSection(1, 80);
    m_report->header()->resizeSection(2, 110);
    rpLayout->addLayout(rpTop);
    rpLayout->addWidget(m_report);
    m_reportPanel->hide();
    mainLayout->addWidget(m_reportPanel);

    // Documents table over the viewer.
    auto* docSplit = new QSplitter(Qt::Vertical, main);
    docSplit->setObjectName("libraryDocSplitter");
    m_model = new DocumentTableModel(this);
    m_proxy = new QSortFilterProxyModel(this);
    m_proxy->setSourceModel(m_model);
    m_proxy->setSortRole(DocumentTableModel::SortRole);
    m_proxy->setFilterRole(DocumentTableModel::SearchTextRole);
    m_proxy->setFilterKeyColumn(-1);
    m_proxy->setFilterCaseSensitivity(Qt::CaseInsensitive);
    m_table = new QTableView(docSplit);
    m_table->setObjectName("libraryDocuments");
    m_table->setModel(m_proxy);
    m_table->setSortingEnabled(true);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setWordWrap(false);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setDefaultSectionSize(m_table->fontMetrics().height() + 8);
    m_table->setItemDelegateForColumn(DocumentTableModel::MatchColumn, new HtmlDelegate(m_table));
    m_table->horizontalHeader()->setStretchLastSection(true);
    m_table->horizontalHeader()->resizeSection(DocumentTableModel::KindColumn, 70);
    m_table->horizontalHeader()->resizeSection(DocumentTableModel::DateColumn, 130);
    m_table->horizontalHeader()->resizeSection(DocumentTableModel::TitleColumn, 300);
    m_table->horizontalHeader()->resizeSection(DocumentTableModel::ParticipantsColumn, 220);
    m_table->horizontalHeader()->resizeSection(DocumentTableModel::SegmentsColumn, 70);
    m_table->sortByColumn(DocumentTableModel::DateColumn, Qt::DescendingOrder);
    m_viewer = new QTextBrowser(docSplit);
    m_viewer->setObjectName("documentViewer");
    m_viewer->setOpenLinks(false);
    m_viewer->setPlaceholderText(tr("Select a document to read it, with its metadata and memory segments."));
    docSplit->addWidget(m_table);
    docSplit->addWidget(m_viewer);
    docSplit->setStretchFactor(0, 3);
    docSplit->setStretchFactor(1, 2);
    mainLayout->addWidget(docSplit, 1);

    splitter->addWidget(side);
    splitter->addWidget(main);
    splitter->setStretchFactor(0, 1);
    splitter->setStretchFactor(1, 5);
    layout->addWidget(splitter);

    m_searchDebounce = new QTimer(this);
    m_searchDebounce->setSingleShot(true);
    m_searchDebounce->setInterval(250);

    connect(m_addFolder, &QPushButton::clicked, this, &LibraryView::addFolder);
    connect(m_importCancel, &QPushButton::clicked, this, [this] {
        m_catalog->cancelImport();
        m_importCancel->setEnabled(false);
        m_importStatus->setText(tr("Cancelling… (files finished so far are kept)"));
    });
    connect(rpClose, &QPushButton::clicked, m_reportPanel, &QWidget::hide);
    connect(m_resume, &QPushButton::clicked, this, &LibraryView::resumeImport);
    auto* focusSearch = new QShortcut(QKeySequence::Find, this);
    connect(focusSearch, &QShortcut::activated, m_search, [this] {
        m_search->setFocus();
        m_search->selectAll();
    });
    // Ctrl+Shift+O is the window's Actions menu entry (it works from every tab).
    auto* resume = new QShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R), this);
    connect(resume, &QShortcut::activated, this, &LibraryView::resumeImport);
    auto* cancel = new QShortcut(QKeySequence(Qt::Key_Escape), m_importPanel);
    cancel->setContext(Qt::WidgetWithChildrenShortcut);
    connect(cancel, &QShortcut::activated, m_importCancel, &QPushButton::click);
    connect(m_search, &QLineEdit::textChanged, m_searchDebounce, [this] { m_searchDebounce->start(); });
    connect(m_searchDebounce, &QTimer::timeout, this, &LibraryView::refreshDocuments);
    connect(m_filter, &QLineEdit::textChanged, m_proxy, &QSortFilterProxyModel::setFilterFixedString);
    connect(m_collections, &QListWidget::currentItemChanged, this, [this] {
        if (m_settings) m_settings->setValue(kSelectedCollectionKey, currentCollection());
        refreshDocuments();
    });
    connect(m_table->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
            [this](const QModelIndex& current) {
                if (!current.isValid()) return;
                const qint64 id = current.data(DocumentTableModel::DocumentIdRole).toLongLong();
                m_requestedDocument = id;
                m_requestedMemoryDocument = -1;
                m_catalog->fetchDocument(m_requestedDocument);
            });

    connect(m_catalog, &CatalogClient::opened, this, &LibraryView::onOpened);
    connect(m_catalog, &CatalogClient::collectionsReady, this, &LibraryView::onCollections);
    connect(m_catalog, &CatalogClient::documentsReady, this, &LibraryView::onDocuments);
    connect(m_catalog, &CatalogClient::documentReady, this, &LibraryView::onDocument);
    connect(m_catalog, &CatalogClient::importStarted, this, &LibraryView::onImportStarted);
    connect(m_catalog, &CatalogClient::importProgress, this, &LibraryView::onImportProgress);
    connect(m_catalog, &CatalogClient::importFinished, this, &LibraryView::onImportFinished);
    connect(m_catalog, &CatalogClient::failed, this, &LibraryView::onFailed);
}

int LibraryView::collectionCount() const { return std::max(0, m_collections->count() - 1); }   // less "All"

QString LibraryView::currentCollection() const {
    const QListWidgetItem* item = m_collections->currentItem();
    return item ? item->data(kCollectionNameRole).toString() : QString();
}

bool LibraryView::selectCollection(const QString& name) {
    for (int i = 0; i < m_collections->count(); ++i) {
        if (m_collections->item(i)->data(kCollectionNameRole).toString() == name) {
            m_collections->setCurrentRow(i);
            return true;
        }
    }
    return false;
}

void LibraryView::showError(const QString& summary, const QString& detail) {
    m_lastError = summary;
    m_error->setText(detail.isEmpty() || detail == summary ? summary.toHtmlEscaped()
                                                           : QString("<b>%1</b><br><small>%2</small>")
                                                                 .arg(summary.toHtmlEscaped(), detail.toHtmlEscaped()));
    m_error->setToolTip(detail);
    m_error->show();
    emit statusMessage(summary);
}

void LibraryView::onFailed(const QString& operation, const QString& summary, const QString& detail) {
    Q_UNUSED(operation);
    showError(summary, detail);
}

void LibraryView::onOpened(bool ok, const QString& message) {
    if (ok) {
        emit statusMessage(tr("Catalog: %1").arg(message));
        return;
    }
    // onFailed shows the reason; nothing will come after this, so the first-run wait ends here.
    finishFirstRun();
    if (!m_settled) {
        m_settled = true;
        emit settled();
    }
}

void LibraryView::onCollections(const std::vector<catalog::CollectionInfo>& collections) {
    QString keep = m_pendingSelect.isEmpty() ? currentCollection() : m_pendingSelect;
    if (!m_haveCollections)   // start-up: the collection selected last time, else the demo
        keep = m_settings ? m_settings->value(kSelectedCollectionKey, QString(kDemoCollection)).toString()
                          : QString(kDemoCollection);
    {
        const QSignalBlocker block(m_collections);
        m_collections->clear();
        // Row 0 stands for every collection (its name is empty): listing and search then span them all.
        auto* all = new QListWidgetItem(tr("All collections"), m_collections);
        all->setData(kCollectionNameRole, QString());
        QFont f = all->font();
        f.setItalic(true);
        all->setFont(f);
        for (const auto& c : collections) {
            const QString name = QString::fromStdString(c.name);
            auto* item = new QListWidgetItem(tr("%1 (%2 documents)").arg(name).arg(c.nDocuments), m_collections);
            item->setData(kCollectionNameRole, name);
            QStringList roots;
            for (const auto& r : c.roots) roots << QString::fromStdString(r);
            item->setToolTip(tr("%1 files from:\n%2").arg(c.nFiles).arg(roots.join('\n')));
        }
        if (!selectCollection(keep) && !selectCollection(kDemoCollection)) m_collections->setCurrentRow(0);
    }
    if (m_settings) m_settings->setValue(kSelectedCollectionKey, currentCollection());
    m_pendingSelect.clear();
    const bool firstTime = !m_haveCollections;
    m_haveCollections = true;
    if (firstTime && !m_firstRunDone) {
        bool haveDemo = false;
        for (const auto& c : collections) haveDemo = haveDemo || c.name == kDemoCollection;
        const std::filesystem::path archive = msa::findDemoArchive();
        std::error_code ec;
        if (!haveDemo && !archive.empty() && std::filesystem::is_directory(archive, ec)) {
            m_firstRunImport = true;
            m_pendingSelect = kDemoCollection;
            emit statusMessage(tr("First run: importing the demo archive…"));
            if (!m_catalog->startImport(kDemoCollection, {QString::fromStdString(archive.string())})) finishFirstRun();
            return;
        }
        finishFirstRun();
    }
    refreshDocuments();
}

void LibraryView::finishFirstRun() {
    if (m_firstRunDone) return;
    m_firstRunDone = true;
    m_firstRunImport = false;
    m_settleRequest = 0;   // the next listing settles the view
}

void LibraryView::refreshDocuments() {
    const QString query = m_search->text().trimmed();
    const QString collection = currentCollection();
    m_latestListRequest = query.isEmpty() ? m_catalog->listDocuments(collection, kDocumentListLimit) : m_catalog->search(query, collection);
    if (m_firstRunDone && !m_settled && m_settleRequest == 0) m_settleRequest = m_latestListRequest;
}

void LibraryView::onDocuments(const DocumentList& list) {
    if (list.requestId != m_latestListRequest) return;   // a newer request is on its way
    m_model->setDocuments(list);
    m_table->setColumnHidden(DocumentTableModel::MatchColumn, list.query.isEmpty());
    if (!list.query.isEmpty()) m_table->sortByColumn(DocumentTableModel::MatchColumn, Qt::DescendingOrder);
    const int n = m_model->rowCount();
    const QString where = list.collection.isEmpty() ? tr("all collections") : list.collection;
    QString message = list.query.isEmpty() ? tr("%n document(s) in %1", nullptr, n).arg(where)
                                           : tr("%n match(es) for \"%1\" in %2", nullptr, n).arg(list.query, where);
    if (list.query.isEmpty() && n >= kDocumentListLimit)
        message += tr(" (the newest %1 are listed; search reaches all)").arg(kDocumentListLimit);
    emit statusMessage(message);
    if (m_error->isVisible() && m_lastError.startsWith(tr("Searching"))) m_error->hide();
    emit documentsShown();
    if (!m_settled && m_settleRequest != 0 && list.requestId >= m_settleRequest) {
        m_settled = true;
        emit settled();
    }
}

void LibraryView::onDocument(const catalog::DocumentInfo& d) {
    qint64 highlight = -1;
    if (m_requestedMemoryDocument >= 0) {
        bool holds = false;
        for (const auto& seg : d.segments) holds = holds || seg.id == m_requestedMemoryDocument;
        if (!holds) return;
        highlight = m_requestedMemoryDocument;
        m_requestedMemoryDocument = -1;
        m_requestedDocument = d.id;
    }
    if (d.id != m_requestedDocument) return;
    m_shownMemoryDocument = highlight;
    const auto q = [](const std::string& s) { return QString::fromStdString(s).toHtmlEscaped(); };
    QString html;
    html += QString("<h2>%1</h2>").arg(d.title.empty() ? tr("(untitled)") : q(d.title));
    html += "<table cellspacing='2' cellpadding='2'>";
    const auto row = [&html](const QString& k, const QString& v) {
        if (!v.isEmpty()) html += QString("<tr><td><b>%1</b></td><td>%2</td></tr>").arg(k, v);
    };
    row(tr("Kind"), q(d.kind));
    row(tr("Date"), formatDate(d.dateUnix));
    row(tr("Author"), q(d.author));
    QStringList people;
    for (const auto& p : d.participants) people << q(p);
    row(tr("Participants"), people.join(", "));
    QStringList sources;
    for (const auto& [path, locator] : d.sources)
        sources << q(path) + (locator.empty() ? QString() : " <i>(" + q(locator) + ")</i>");
    row(tr("Sources"), sources.join("<br>"));
    row(tr("Text"), tr("%1 bytes (UTF-8)").arg(d.text.size()));
    row(tr("Content hash"), "<code>" + q(d.contentHash) + "</code>");
    if (!d.metadataJson.empty() && d.metadataJson != "{}") row(tr("Metadata"), "<code>" + q(d.metadataJson) + "</code>");
    html += "</table>";
    html += QString("<h3>%1</h3>").arg(tr("Memory segments (%1)").arg(d.segments.size()));
    html += "<table border='1' cellspacing='0' cellpadding='3'><tr><th>#</th><th>" + tr("Kind") + "</th><th>" +
            tr("Span") + "</th><th>" + tr("Tokens (est.)") + "</th><th>" + tr("Label") + "</th></tr>";
    for (const auto& s : d.segments) {
        html += QString(s.id == highlight ? "<tr style='background-color:#ffe9b0'>" : "<tr>") +
                QString("<td>%1</td><td>%2</td><td>%3–%4</td><td align='right'>%5%6</td><td>%7</td></tr>")
                    .arg(s.segmentIndex)
                    .arg(q(s.segmentKind))
                    .arg(s.spanStart)
                    .arg(s.spanEnd)
                    .arg(s.tokenEstimate)
                    .arg(s.tokenCount ? QString(" (%1)").arg(*s.tokenCount) : QString())
                    .arg(q(s.label));
    }
    html += "</table>";
    QString text = QString::fromStdString(d.text);
    QString cut;
    if (text.size() > kMaxViewerChars) {
        cut = tr("<p><i>(showing the first %1 of %2 characters)</i></p>").arg(kMaxViewerChars).arg(text.size());
        text.truncate(kMaxViewerChars);
    }
    html += QString("<h3>%1</h3>").arg(tr("Text")) + cut +
            "<pre style='white-space: pre-wrap'>" + text.toHtmlEscaped() + "</pre>";
    m_viewer->setHtml(html);
    m_shownDocument = d.id;
    emit documentShown(d.id);
}

void LibraryView::onImportStarted(const QString& collection, const QStringList& paths) {
    m_lastImportCollection = collection;
    m_lastImportPaths = paths;
    m_reportPanel->hide();
    m_importPanel->show();
    m_importCancel->setEnabled(true);
    m_importBar->setRange(0, 0);   // busy until the walk has counted the files
    m_importStatus->setText(tr("Importing into “%1”: scanning…").arg(collection.toHtmlEscaped()));
    m_importCurrent->clear();
    m_addFolder->setEnabled(false);
}

void LibraryView::onImportProgress(const ImportProgressUpdate& u) {
    if (!m_importPanel->isVisible()) m_importPanel->show();
    if (u.total > 0) {
        // QProgressBar is int-based: scale to per-mille so very large archives fit.
        m_importBar->setRange(0, 1000);
        m_importBar->setValue(static_cast<int>(1000.0 * double(u.done) / double(u.total)));
        m_importBar->setFormat(QString("%1 / %2 files").arg(u.done).arg(u.total));
    }
    m_importStatus->setText(
        tr("Importing into “%1”: %2 of %3 files · %4 of %5 · %6 files/s · %7/s · %8 documents · ETA %9")
            .arg(u.collection.toHtmlEscaped())
            .arg(u.done)
            .arg(u.total)
            .arg(formatBytes(double(u.bytesDone)), formatBytes(double(u.bytesTotal)))
            .arg(u.filesPerSecond, 0, 'f', 1)
            .arg(formatBytes(u.bytesPerSecond))
            .arg(u.nDocuments)
            .arg(formatSeconds(u.etaSeconds)));
    m_importCurrent->setText(u.current);
    m_importCurrent->setToolTip(u.current);
}

void LibraryView::onImportFinished(const ImportOutcome& o) {
    m_importPanel->hide();
    m_addFolder->setEnabled(true);
    if (!o.ok) {
        showError(tr("Import into “%1” failed").arg(o.collection), o.error);
        m_reportSummary->setText(tr("Import into “%1” failed: %2").arg(o.collection, o.error));
        m_report->clear();
        m_report->hide();
        m_resume->setVisible(true);
        m_reportPanel->show();
    } else {
        const auto& r = o.report;
        const QString summary =
            tr("%1 into “%2”: %3 files seen, %4 imported, %5 updated, %6 unchanged, %7 skipped, %8 failed, %9 deleted; "
               "%10 documents (%11 new), %12 memory segments, %13 in %14.")
                .arg(r.cancelled ? tr("Import cancelled") : tr("Import finished"), o.collection)
                .arg(r.nSeen)
                .arg(r.nImported)
                .arg(r.nUpdated)
                .arg(r.nUnchanged)
                .arg(r.nSkipped)
                .arg(r.nFailed)
                .arg(r.nDeleted)
                .arg(r.nDocuments)
                .arg(r.nNewDocuments)
                .arg(r.nMemoryDocuments)
                .arg(formatBytes(double(r.nBytes)))
                .arg(formatSeconds(r.seconds));
        m_reportSummary->setText(summary);
        m_report->clear();
        for (const auto& f : r.files) {
            auto* item = new QTreeWidgetItem(m_report, {QString::fromStdString(f.path), QString::fromStdString(f.outcome),
                                                        QString::fromStdString(f.errorCode),
                                                        QString::fromStdString(f.reason)});
            item->setToolTip(0, item->text(0));
            item->setToolTip(3, item->text(3));
        }
        m_report->setVisible(!r.files.empty());
        m_resume->setVisible(r.cancelled);
        m_reportPanel->show();
        m_error->hide();
        emit statusMessage(summary);
    }
    if (m_firstRunImport) finishFirstRun();
    // The host refreshes the collections after every import; onCollections then lists the documents.
    m_pendingSelect = o.collection;
}

void LibraryView::addFolder() {
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Add a folder to the library"));
    if (!dir.isEmpty()) importPaths({dir});
}

bool LibraryView::importPaths(const QStringList& paths) {
    if (paths.isEmpty()) return false;
    QString collection = currentCollection();
    if (collection.isEmpty()) {
        const QFileInfo first(paths.front());
        collection = first.isDir() ? first.fileName() : first.dir().dirName();
        if (collection.isEmpty()) collection = QStringLiteral("default");
    }
    m_pendingSelect = collection;
    const bool ok = m_catalog->startImport(collection, paths);
    if (!ok) m_pendingSelect.clear();
    return ok;
}

bool LibraryView::resumeImport() {
    if (m_lastImportPaths.isEmpty() || m_catalog->importRunning()) return false;
    m_pendingSelect = m_lastImportCollection;
    return m_catalog->startImport(m_lastImportCollection, m_lastImportPaths);
}

void LibraryView::showMemoryDocument(qint64 memoryDocumentId) {
    m_requestedMemoryDocument = memoryDocumentId;
    m_catalog->fetchMemoryDocument(memoryDocumentId);
}

bool LibraryView::selectFirstDocument() {
    if (m_proxy->rowCount() == 0) return false;
    m_table->setCurrentIndex(m_proxy->index(0, DocumentTableModel::TitleColumn));
    return true;
}

void LibraryView::dragEnterEvent(QDragEnterEvent* event) {
    const QMimeData* mime = event->mimeData();
    if (mime->hasUrls()) {
        for (const QUrl& u : mime->urls()) {
            if (u.isLocalFile()) {
                event->acceptProposedAction();
                return;
            }
        }
    }
    event->ignore();
}

void LibraryView::dropEvent(QDropEvent* event) {
    QStringList paths;
    for (const QUrl& u : event->mimeData()->urls())
        if (u.isLocalFile()) paths << u.toLocalFile();
    if (paths.isEmpty()) {
        event->ignore();
        return;
    }
    event->acceptProposedAction();
    importPaths(paths);
}

}  // namespace msa::ui

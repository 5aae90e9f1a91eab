#include "ui/views/library_view.h"

#include <QFileSystemModel>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QSplitter>
#include <QTreeView>
#include <QVBoxLayout>

namespace msa::ui {

LibraryView::LibraryView(const UiContext& context, QWidget* parent) : QWidget(parent) {
    setObjectName("libraryView");
    auto* layout = new QVBoxLayout(this);
    auto* splitter = new QSplitter(Qt::Horizontal, this);
    splitter->setObjectName("librarySplitter");

    // Collections sidebar. Until the catalog exists the demo archive folder is shown as it is on disk.
    auto* side = new QWidget(splitter);
    auto* sideLayout = new QVBoxLayout(side);
    sideLayout->setContentsMargins(0, 0, 0, 0);
    auto* sideTitle = new QLabel(tr("<b>Collections</b>"), side);
    m_collections = new QListWidget(side);
    m_collections->setObjectName("collections");
    sideLayout->addWidget(sideTitle);
    sideLayout->addWidget(m_collections);

    auto* main = new QWidget(splitter);
    auto* mainLayout = new QVBoxLayout(main);
    mainLayout->setContentsMargins(0, 0, 0, 0);
    m_search = new QLineEdit(main);
    m_search->setObjectName("librarySearch");
    m_search->setPlaceholderText(tr("Full-text search (available once the archive is imported into a catalog)"));
    m_search->setEnabled(false);
    m_search->setClearButtonEnabled(true);
    auto* banner = new QLabel(main);
    banner->setObjectName("libraryBanner");
    banner->setWordWrap(true);
    m_files = new QTreeView(main);
    m_files->setObjectName("libraryFiles");
    m_files->setUniformRowHeights(true);
    m_files->setSortingEnabled(true);
    mainLayout->addWidget(m_search);
    mainLayout->addWidget(banner);
    mainLayout->addWidget(m_files, 1);

    const auto& archive = context.doctor.demoArchive;
    if (archive.present) {
        const QString root = QString::fromStdString(archive.path.string());
        auto* item = new QListWidgetItem(tr("Demo archive (%1 files)").arg(archive.nFiles), m_collections);
        item->setToolTip(root);
        m_collections->setCurrentItem(item);
        auto* model = new QFileSystemModel(this);
        model->setReadOnly(true);
        m_files->setModel(model);
        m_files->setRootIndex(model->setRootPath(root));
        m_files->header()->setSectionResizeMode(0, QHeaderView::Stretch);
        m_files->sortByColumn(0, Qt::AscendingOrder);
        banner->setText(tr("The bundled demo archive: a fictional person's notes, e-mails, chats and web pages "
                           "in <code>%1</code>. It becomes the default collection once it is imported.")
                            .arg(root.toHtmlEscaped()));
    } else {
        banner->setText(tr("No collection yet, and the demo archive was not found (set MSA_DEMO_ARCHIVE)."));
    }
    splitter->addWidget(side);
    splitter->addWidget(main);
    splitter->setStretchFactor(0, 1);
    splitter->setStretchFactor(1, 4);
    layout->addWidget(splitter);
}

int LibraryView::collectionCount() const { return m_collections->count(); }

}  // namespace msa::ui

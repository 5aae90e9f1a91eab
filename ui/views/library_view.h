// library_view.h: Library tab: collections sidebar, the documents of the selected collection, full-text search and import reports.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext is read during
// construction (and its QSettings borrowed for the view's lifetime where noted).
#pragma once

#include "ui/ui_context.h"

#include <QWidget>

class QLineEdit;
class QListWidget;
class QTreeView;

namespace msa::ui {

class LibraryView : public QWidget {
    Q_OBJECT
public:
    explicit LibraryView(const UiContext& context, QWidget* parent = nullptr);

    // Number of collections in the sidebar (the demo archive counts as one before import).
    int collectionCount() const;

private:
    QListWidget* m_collections = nullptr;
    QTreeView* m_files = nullptr;
    QLineEdit* m_search = nullptr;
};

}  // namespace msa::ui

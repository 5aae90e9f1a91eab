// document_table_model.h: the Library's document table (kind, date, title, participants, segments,
// match) over a listing or a search result from the catalog (CatalogClient::documentsReady).
//
// Thread affinity: GUI thread only (CONVENTIONS.md #10); it is filled with value types that crossed
// from the catalog thread. Ownership: plain Qt parent/child.
//
// Search snippets arrive with the \x02/\x03 highlight markers CatalogHost asks the catalog for; the
// model HTML-escapes them and turns the markers into <b>…</b> (Qt::DisplayRole of the Match column
// is that HTML; HtmlDelegate paints it). SortRole gives raw values (date as Unix seconds, counts as
// numbers) for QSortFilterProxyModel.
//
// Usage:
//     auto* model = new DocumentTableModel(this);
//     model->setDocuments(list);              // a DocumentList
//     proxy->setSourceModel(model); proxy->setSortRole(DocumentTableModel::SortRole);
#pragma once

#include "ui/catalog_host.h"

#include <QAbstractTableModel>

#include <optional>
#include <vector>

namespace msa::ui {

class DocumentTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { KindColumn, DateColumn, TitleColumn, ParticipantsColumn, SegmentsColumn, MatchColumn, ColumnCount };
    enum Role { SortRole = Qt::UserRole + 1, DocumentIdRole, SearchTextRole };

    struct Row {
        qint64 id = 0;
        QString kind;
        std::optional<qint64> dateUnix;
        QString title;
        QString participants;   // author first, then the others, comma-separated
        int nSegments = 0;
        QString matchHtml;      // search snippet with <b> highlights; empty for a listing
        double score = 0;
    };

    explicit DocumentTableModel(QObject* parent = nullptr);

    void setDocuments(const DocumentList& list);
    void clear();
    const Row& row(int r) const { return m_rows[static_cast<size_t>(r)]; }
    bool isSearchResult() const { return m_search; }

    // HTML-escapes a catalog snippet and turns the \x02…\x03 markers into <b>…</b>.
    static QString snippetToHtml(const QString& snippet);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    std::vector<Row> m_rows;
    bool m_search = false;
};

}  // namespace msa::ui

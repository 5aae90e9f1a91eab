#include "ui/document_table_model.h"

#include <QDateTime>
#include <QTimeZone>
#include <QTextDocumentFragment>

#include <limits>

namespace msa::ui {

namespace {
QString joinPeople(const std::string& author, const std::vector<std::string>& participants) {
    QStringList people;
    if (!author.empty()) people << QString::fromStdString(author);
    for (const auto& p : participants) {
        const QString q = QString::fromStdString(p);
        if (!people.contains(q)) people << q;
    }
    return people.join(", ");
}
}  // namespace

DocumentTableModel::DocumentTableModel(QObject* parent) : QAbstractTableModel(parent) {}

QString DocumentTableModel::snippetToHtml(const QString& snippet) {
    QString html = snippet.toHtmlEscaped();
    html.replace(QChar(0x02), QStringLiteral("<b>"));
    html.replace(QChar(0x03), QStringLiteral("</b>"));
    html.replace('\n', ' ');
    return html;
}

void DocumentTableModel::setDocuments(const DocumentList& list) {
    beginResetModel();
    m_rows.clear();
    m_search = !list.query.isEmpty();
    if (m_search) {
        m_rows.reserve(list.hits.size());
        for (const auto& h : list.hits) {
            Row r;
            r.id = h.documentId;
            r.kind = QString::fromStdString(h.kind);
            r.dateUnix = h.dateUnix;
            r.title = QString::fromStdString(h.title);
            r.participants = joinPeople(h.author, h.participants);
            r.nSegments = static_cast<int>(h.memoryDocumentIds.size());
            r.matchHtml = snippetToHtml(QString::fromStdString(h.snippet));
            r.score = h.score;
            m_rows.push_back(std::move(r));
        }
    } else {
        m_rows.reserve(list.documents.size());
        for (const auto& d : list.documents) {
            Row r;
            r.id = d.id;
            r.kind = QString::fromStdString(d.kind);
            r.dateUnix = d.dateUnix;
            r.title = QString::fromStdString(d.title);
            r.participants = joinPeople(d.author, d.participants);
            r.nSegments = static_cast<int>(d.segments.size());
            m_rows.push_back(std::move(r));
        }
    }
    endResetModel();
}

void DocumentTableModel::clear() {
    beginResetModel();
    m_rows.clear();
    m_search = false;
    endResetModel();
}

int DocumentTableModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : static_cast<int>(m_rows.size());
}

int DocumentTableModel::columnCount(const QModelIndex& parent) const { return parent.isValid() ? 0 : ColumnCount; }

QVariant DocumentTableModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const Row& r = m_rows[static_cast<size_t>(index.row())];
    if (role == DocumentIdRole) return r.id;
    switch (role) {
    case Qt::DisplayRole:
        switch (index.column()) {
        case KindColumn: return r.kind;
        case DateColumn:
            return r.dateUnix ? QDateTime::fromSecsSinceEpoch(*r.dateUnix, Qt::UTC).toString("yyyy-MM-dd HH:mm")
                              : QString();
        case TitleColumn: return r.title;
        case ParticipantsColumn: return r.participants;
        case SegmentsColumn: return r.nSegments;
        case MatchColumn: return r.matchHtml;
        default: return {};
        }
    case SortRole:
        switch (index.column()) {
        case DateColumn: return r.dateUnix ? QVariant(*r.dateUnix) : QVariant(std::numeric_limits<qint64>::min());
        case SegmentsColumn: return r.nSegments;
        case MatchColumn: return r.score;
        case TitleColumn: return r.title.toLower();
        default: return data(index, Qt::DisplayRole);
        }
    case SearchTextRole:   // plain text of the match, for filtering
        return index.column() == MatchColumn ? QTextDocumentFragment::fromHtml(r.matchHtml).toPlainText()
                                             : data(index, Qt::DisplayRole);
    case Qt::ToolTipRole:
        if (index.column() == TitleColumn) return r.title;
        if (index.column() == ParticipantsColumn) return r.participants;
        return {};
    case Qt::TextAlignmentRole:
        return index.column() == SegmentsColumn ? QVariant(Qt::AlignRight | Qt::AlignVCenter) : QVariant();
    default: return {};
    }
}

QVariant DocumentTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole) return {};
    switch (section) {
    case KindColumn: return tr("Kind");
    case DateColumn: return tr("Date");
    case TitleColumn: return tr("Title");
    case ParticipantsColumn: return tr("Participants");
    case SegmentsColumn: return tr("Segments");
    case MatchColumn: return tr("Match");
    default: return {};
    }
}

}  // namespace msa::ui

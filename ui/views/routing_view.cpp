#include "ui/views/routing_view.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <qcustomplot.h>

namespace msa::ui {

RoutingView::RoutingView(const UiContext&, QWidget* parent) : QWidget(parent) {
    setObjectName("routingView");
    auto* layout = new QVBoxLayout(this);
    auto* top = new QHBoxLayout;
    auto* hop = new QComboBox(this);
    hop->setObjectName("routingHop");
    hop->setEnabled(false);
    hop->setPlaceholderText(tr("no answer selected"));
    top->addWidget(new QLabel(tr("Hop:"), this));
    top->addWidget(hop);
    top->addStretch(1);
    auto* hint = new QLabel(tr("Select an answer in the Chat tab to see where the sparse attention went."), this);
    hint->setObjectName("routingHint");
    top->addWidget(hint);
    layout->addLayout(top);

    auto* splitter = new QSplitter(Qt::Vertical, this);
    m_scores = new QCustomPlot(splitter);
    m_scores->setObjectName("routingScores");
    m_scores->setMinimumHeight(200);
    m_scores->xAxis->setLabel(tr("document (top-N by score, aggregated over routing layers)"));
    m_scores->yAxis->setLabel(tr("routing score"));
    m_scores->xAxis->setRange(0, 16);
    m_scores->yAxis->setRange(0, 1);
    m_scores->plotLayout()->insertRow(0);
    m_scores->plotLayout()->addElement(0, 0, new QCPTextElement(m_scores, tr("Routing scores per document"), QFont(font().family(), 10, QFont::Bold)));

    m_layers = new QTableWidget(0, 3, splitter);
    m_layers->setObjectName("routingLayers");
    m_layers->setHorizontalHeaderLabels({tr("Routing layer"), tr("Chosen documents (top-k)"), tr("Best score")});
    m_layers->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
    m_layers->setEditTriggers(QAbstractItemView::NoEditTriggers);
    splitter->addWidget(m_scores);
    splitter->addWidget(m_layers);
    layout->addWidget(splitter, 1);
}

}  // namespace msa::ui

#include "ui/views/routing_view.h"

#include "ui/answer_host.h"
#include "ui/trace_convert.h"

#include <QComboBox>
#include <QGraphicsEllipseItem>
#include <QGraphicsScene>
#include <QGraphicsSceneHoverEvent>
#include <QGraphicsSimpleTextItem>
#include <QGraphicsView>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMouseEvent>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace msa::ui {
namespace {
const QColor kCited(230, 126, 34);      // orange: the answer cites it
const QColor kSelected(52, 120, 198);   // blue: chosen by at least one routing layer (or injected)
const QColor kOther(170, 170, 170);     // grey: in a layer's top-N only
constexpr int kDocRole = Qt::UserRole + 1;
constexpr int kNodeIdKey = 0;            // QGraphicsItem::data key holding the document id

QString qs(const std::string& s) { return QString::fromStdString(s); }

QString elide(const QString& s, int n) { return s.size() <= n ? s : s.left(n - 1) + QChar(0x2026); }

QCPBars* makeBars(QCustomPlot* plot, const QColor& color, const QString& name) {
    auto* b = new QCPBars(plot->xAxis, plot->yAxis);
    b->setWidth(0.7);
    b->setPen(QPen(color.darker(130)));
    b->setBrush(color);
    b->setName(name);
    return b;
}
}  // namespace

RoutingView::RoutingView(const UiContext&, AnswerClient* engine, QWidget* parent) : QWidget(parent), m_engine(engine) {
    setObjectName("routingView");
    auto* layout = new QVBoxLayout(this);

    auto* top = new QHBoxLayout;
    m_hopBox = new QComboBox(this);
    m_hopBox->setObjectName("routingHop");
    m_hopBox->setEnabled(false);
    m_hopBox->setPlaceholderText(tr("no answer"));
    top->addWidget(new QLabel(tr("Hop:"), this));
    top->addWidget(m_hopBox);
    m_question = new QLineEdit(this);
    m_question->setObjectName("routingQuestion");
    m_question->setPlaceholderText(tr("A question to route over the memory bank (no answer is generated)"));
    top->addWidget(m_question, 1);
    m_route = new QPushButton(tr("Route only"), this);
    m_route->setObjectName("routingRouteOnly");
    m_route->setToolTip(tr("Route the question over the memory bank, like `msa route` (Ctrl+R)"));
    // Ctrl+R is the window's Actions menu entry (it works from every tab).
    top->addWidget(m_route);
    layout->addLayout(top);

    m_summary = new QLabel(tr("Ask a question in the Chat tab, or route one here, to see where the sparse attention went."), this);
    m_summary->setObjectName("routingHint");
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);
    layout->addWidget(m_summary);

    // (a) aggregate scores per document.
    m_scores = new QCustomPlot(this);
    m_scores->setObjectName("routingScores");
    m_scores->setMinimumHeight(180);
    m_scores->yAxis->setLabel(tr("routing score"));
    m_scores->xAxis->setLabel(tr("document (best score over hops and layers; dots: mean)"));
    m_scores->plotLayout()->insertRow(0);
    m_scores->plotLayout()->addElement(0, 0, new QCPTextElement(m_scores, tr("Routing scores per document"),
                                                                QFont(font().family(), 10, QFont::Bold)));
    m_barsOther = makeBars(m_scores, kOther, tr("top-N only"));
    m_barsSelected = makeBars(m_scores, kSelected, tr("selected by a layer"));
    m_barsCited = makeBars(m_scores, kCited, tr("cited"));
    m_mean = m_scores->addGraph();
    m_mean->setName(tr("mean score"));
    m_mean->setLineStyle(QCPGraph::lsNone);
    m_mean->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, Qt::black, Qt::black, 5));
    // The legend in a row of its own under the plot, so it never covers a bar.
    m_scores->legend->setVisible(true);
    m_scores->legend->setFont(QFont(font().family(), 8));
    m_scores->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_scores->legend->setBorderPen(Qt::NoPen);
    m_scores->axisRect()->insetLayout()->take(m_scores->legend);
    m_scores->plotLayout()->addElement(2, 0, m_scores->legend);
    m_scores->plotLayout()->setRowStretchFactor(2, 0.001);
    m_scores->plotLayout()->simplify();
    m_scores->setInteractions(QCP::Interactions());
    m_scores->setMouseTracking(true);
    m_scores->installEventFilter(this);

    // (b) layer × document heat map of the chosen hop.
    m_heat = new QCustomPlot(this);
    m_heat->setObjectName("routingHeatMap");
    m_heat->setMinimumHeight(180);
    m_heat->plotLayout()->insertRow(0);
    m_heat->plotLayout()->addElement(0, 0, new QCPTextElement(m_heat, tr("Scores per routing layer (chosen hop)"),
                                                              QFont(font().family(), 10, QFont::Bold)));
    m_heat->xAxis->setLabel(tr("document"));
    m_heat->yAxis->setLabel(tr("routing layer"));
    m_heatMap = new QCPColorMap(m_heat->xAxis, m_heat->yAxis);
    m_heatMap->setInterpolate(false);
    auto* scale = new QCPColorScale(m_heat);
    scale->setLabel(tr("score"));
    m_heat->plotLayout()->addElement(1, 1, scale);
    m_heatMap->setColorScale(scale);
    // After setColorScale (which hands the scale's gradient to the map): documents outside a layer's
    // top-N have no score and stay blank instead of looking like low scores.
    QCPColorGradient gradient(QCPColorGradient::gpThermal);
    gradient.setNanHandling(QCPColorGradient::nhTransparent);
    scale->setGradient(gradient);
    m_heatMap->setGradient(gradient);
    auto* group = new QCPMarginGroup(m_heat);
    m_heat->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    scale->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    m_heat->setMouseTracking(true);
    m_heat->installEventFilter(this);

    // (c) the hop graph.
    m_graph = new QGraphicsScene(this);
    m_graphView = new QGraphicsView(m_graph, this);
    m_graphView->setObjectName("routingGraph");
    m_graphView->setRenderHint(QPainter::Antialiasing);
    m_graphView->setMouseTracking(true);
    m_graphView->viewport()->installEventFilter(this);
    m_graphView->setMinimumHeight(160);

    // (d) the chosen set per layer.
    m_layers = new QTableWidget(0, 4, this);
    m_layers->setObjectName("routingLayers");
    m_layers->setHorizontalHeaderLabels({tr("Layer"), tr("Chosen documents (top-k)"), tr("Best score"), tr("Top-N")});
    m_layers->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
    m_layers->verticalHeader()->setVisible(false);
    m_layers->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_layers->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_layers->setToolTip(tr("Double-click a row to open its best chosen document"));
    m_layers->setWordWrap(false);
    connect(m_layers, &QTableWidget::cellDoubleClicked, this, [this](int row, int) {
        if (auto* item = m_layers->item(row, 1)) {
            const QVariant id = item->data(kDocRole);
            if (id.isValid()) emit openDocument(id.toLongLong());
        }
    });

    auto* left = new QSplitter(Qt::Vertical, this);
    left->addWidget(m_scores);
    left->addWidget(m_graphView);
    auto* right = new QSplitter(Qt::Vertical, this);
    right->addWidget(m_heat);
    right->addWidget(m_layers);
    auto* split = new QSplitter(Qt::Horizontal, this);
    split->addWidget(left);
    split->addWidget(right);
    left->setSizes({380, 300});
    right->setSizes({330, 350});
    split->setSizes({640, 640});
    layout->addWidget(split, 1);

    connect(m_hopBox, &QComboBox::currentIndexChanged, this, [this](int i) {
        if (i >= 0 && i != m_hop) selectHop(i);
    });
    connect(m_route, &QPushButton::clicked, this, [this] { routeQuestion(); });
    connect(m_question, &QLineEdit::returnPressed, this, [this] { routeQuestion(); });
    connect(m_scores, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable* p, int index, QMouseEvent*) {
        if (p == m_mean) return;
        auto* bars = qobject_cast<QCPBars*>(p);
        if (!bars || index < 0 || index >= bars->data()->size()) return;
        const int64_t id = documentAtBar((bars->data()->constBegin() + index)->key);
        if (id >= 0) emit openDocument(id);
    });
    connect(m_heat, &QCustomPlot::mouseRelease, this, [this](QMouseEvent* e) {
        if (m_chartDocs.empty()) return;
        const double x = m_heat->xAxis->pixelToCoord(e->position().x());
        const double y = m_heat->yAxis->pixelToCoord(e->position().y());
        if (y < -0.5 || y > m_heatMap->data()->valueSize() - 0.5) return;
        const int64_t id = documentAtBar(x);
        if (id >= 0) emit openDocument(id);
    });
    if (m_engine) {
        connect(m_engine, &AnswerClient::busyChanged, this, [this] { updateRouteButton(); });
        connect(m_engine, &AnswerClient::routed, this, [this](quint64 id, const jobs::RouteReport& r) {
            if (id != m_routeRequest) return;
            m_routeRequest = 0;
            showTrace(traceFromRoute(r));
            emit statusMessage(tr("Routed over %n document(s) in %1 s", nullptr, static_cast<int>(r.nCandidates))
                                   .arg(r.seconds, 0, 'f', 2));
            emit routeFinished(true);
        });
        connect(m_engine, &AnswerClient::failed, this,
                [this](quint64 id, const QString& op, const QString& summary, const QString& detail) {
                    if (id != m_routeRequest) return;
                    m_routeRequest = 0;
                    m_summary->setText(tr("<span style='color:#b00020'><b>%1 failed:</b> %2</span><br><small>%3</small>")
                                           .arg(op.toHtmlEscaped(), summary.toHtmlEscaped(), detail.toHtmlEscaped()));
                    emit statusMessage(op + ": " + summary);
                    emit routeFinished(false);
                });
    }
    updateRouteButton();
}

void RoutingView::setSetup(const AnswerSetup& setup) {
    m_setup = setup;
    updateRouteButton();
}

void RoutingView::setQuestion(const QString& question) { m_question->setText(question); }

void RoutingView::updateRouteButton() {
    const QString problem = m_setup.problem();
    const bool busy = m_engine == nullptr || m_engine->busy();
    m_route->setEnabled(problem.isEmpty() && !busy);
    m_route->setToolTip(!problem.isEmpty() ? problem
                        : busy          ? tr("The engine is busy with another question")
                                        : tr("Route the question over the memory bank, like `msa route` (Ctrl+R)"));
    if (m_trace.hops.empty() && !problem.isEmpty()) m_summary->setText(problem);
}

bool RoutingView::routeQuestion() {
    const QString q = m_question->text().trimmed();
    if (!m_engine || q.isEmpty() || !m_setup.ready() || m_engine->busy()) return false;
    jobs::RouteRequest r;
    r.bank = m_setup.bank.toStdString();
    r.model = m_setup.model.toStdString();
    if (!m_setup.catalog.isEmpty()) r.catalog = std::filesystem::path(m_setup.catalog.toStdString());
    r.question = q.toStdString();
    r.topN = static_cast<size_t>(std::max(1, m_setup.topN));
    r.nThreads = static_cast<size_t>(std::max(0, m_setup.nThreads));
    r.device = m_setup.device;
    r.filter = m_setup.filter;   // the Chat tab's candidate filters apply to "Route only" too
    m_routeRequest = m_engine->route(r);
    if (m_routeRequest == 0) return false;
    m_summary->setText(tr("Routing \"%1\" over %2 …").arg(q.toHtmlEscaped(), m_setup.bank.toHtmlEscaped()));
    return true;
}

void RoutingView::showTrace(const memory::RoutingTrace& trace) {
    m_trace = trace;
    if (m_trace.documents.empty() && !m_trace.hops.empty()) m_trace.aggregate();
    if (!m_trace.question.empty() && m_question->text().isEmpty()) m_question->setText(qs(m_trace.question));
    {
        const QSignalBlocker block(m_hopBox);
        m_hopBox->clear();
        for (const auto& h : m_trace.hops) m_hopBox->addItem(tr("%1 of %2").arg(h.hop + 1).arg(m_trace.hops.size()));
        m_hopBox->setEnabled(m_trace.hops.size() > 1);
        m_hop = 0;
        m_hopBox->setCurrentIndex(m_trace.hops.empty() ? -1 : 0);
    }
    size_t nSelected = 0;
    for (const auto& d : m_trace.documents) nSelected += d.layerVotes > 0;
    QString s = tr("<b>%1</b><br>%2 · %n hop(s) · %3 documents in the layers' top-N, %4 selected · top-k %5",
                   nullptr, static_cast<int>(m_trace.hops.size()))
                    .arg(qs(m_trace.question).toHtmlEscaped(), qs(m_trace.method).toHtmlEscaped())
                    .arg(m_trace.documents.size())
                    .arg(nSelected)
                    .arg(m_trace.topK);
    if (!m_trace.citations.empty()) {
        QStringList c;
        for (int64_t id : m_trace.citations) c << QString("[%1]").arg(id);
        s += tr(" · cited: %1").arg(c.join(' '));
    }
    if (m_trace.seconds > 0) s += tr(" · %1 s").arg(m_trace.seconds, 0, 'f', 2);
    m_summary->setText(s);
    drawBars();
    drawGraph();
    rebuildHop();
}

void RoutingView::selectHop(int hop) {
    if (hop < 0 || hop >= static_cast<int>(m_trace.hops.size())) return;
    m_hop = hop;
    if (m_hopBox->currentIndex() != hop) {
        const QSignalBlocker block(m_hopBox);
        m_hopBox->setCurrentIndex(hop);
    }
    rebuildHop();
}

void RoutingView::rebuildHop() {
    drawHeatMap();
    fillTable();
}

QString RoutingView::titleOf(int64_t id) const {
    for (const auto& d : m_trace.documents)
        if (d.id == id) return qs(d.title);
    return {};
}

QString RoutingView::describe(int64_t id) const {
    for (const auto& d : m_trace.documents) {
        if (d.id != id) continue;
        QString t = tr("[%1] %2\nbest score %3, mean %4\nselected by %5 layer(s) in %6 hop(s)")
                        .arg(id)
                        .arg(d.title.empty() ? tr("(untitled)") : qs(d.title))
                        .arg(d.bestScore, 0, 'f', 4)
                        .arg(d.meanScore, 0, 'f', 4)
                        .arg(d.layerVotes)
                        .arg(d.hops);
        if (d.cited) t += tr("\ncited by the answer");
        return t + tr("\nclick to open it in the Library");
    }
    return QString("[%1]").arg(id);
}

int64_t RoutingView::documentAtBar(double key) const {
    const long i = std::lround(key);
    if (i < 0 || i >= static_cast<long>(m_chartDocs.size()) || std::abs(key - static_cast<double>(i)) > 0.5) return -1;
    return m_chartDocs[static_cast<size_t>(i)];
}

void RoutingView::drawBars() {
    m_chartDocs.clear();
    QVector<double> kc, vc, ks, vs, ko, vo, km, vm;
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    const std::set<int64_t> injected = [this] {
        std::set<int64_t> s;
        for (const auto& h : m_trace.hops) s.insert(h.injected.begin(), h.injected.end());
        return s;
    }();
    double maxScore = 0, minScore = 0;
    for (const auto& d : m_trace.documents) {
        if (static_cast<int>(m_chartDocs.size()) >= kMaxDocuments) break;
        const double x = static_cast<double>(m_chartDocs.size());
        m_chartDocs.push_back(d.id);
        ticker->addTick(x, QString::number(d.id));
        if (d.cited) {
            kc << x;
            vc << d.bestScore;
        } else if (d.layerVotes > 0 || injected.count(d.id)) {
            ks << x;
            vs << d.bestScore;
        } else {
            ko << x;
            vo << d.bestScore;
        }
        km << x;
        vm << d.meanScore;
        maxScore = std::max({maxScore, static_cast<double>(d.bestScore), static_cast<double>(d.meanScore)});
        minScore = std::min({minScore, static_cast<double>(d.bestScore), static_cast<double>(d.meanScore)});
    }
    m_barsCited->setData(kc, vc, true);
    m_barsSelected->setData(ks, vs, true);
    m_barsOther->setData(ko, vo, true);
    m_mean->setData(km, vm, true);
    m_scores->xAxis->setTicker(ticker);
    m_scores->xAxis->setTickLabelRotation(m_chartDocs.size() > 12 ? 60 : 0);
    m_scores->xAxis->setRange(-0.6, std::max<double>(m_chartDocs.size(), 1) - 0.4);
    const double pad = std::max(1e-3, (maxScore - minScore) * 0.08);
    m_scores->yAxis->setRange(minScore < 0 ? minScore - pad : 0, maxScore > 0 ? maxScore + pad : 1);
    m_scores->replot();
}

void RoutingView::drawHeatMap() {
    const int nDocs = static_cast<int>(m_chartDocs.size());
    if (m_trace.hops.empty() || nDocs == 0) {
        m_heatMap->data()->clear();
        m_heat->replot();
        return;
    }
    const memory::TraceHop& hop = m_trace.hops[static_cast<size_t>(m_hop)];
    const int nLayers = static_cast<int>(hop.layers.size());
    std::map<int64_t, int> column;
    QSharedPointer<QCPAxisTickerText> xt(new QCPAxisTickerText), yt(new QCPAxisTickerText);
    for (int i = 0; i < nDocs; ++i) {
        column[m_chartDocs[static_cast<size_t>(i)]] = i;
        xt->addTick(i, QString::number(m_chartDocs[static_cast<size_t>(i)]));
    }
    m_heatMap->data()->setSize(nDocs, std::max(nLayers, 1));
    m_heatMap->data()->setRange(QCPRange(0, std::max(nDocs - 1, 0)), QCPRange(0, std::max(nLayers - 1, 0)));
    m_heatMap->data()->fill(std::numeric_limits<double>::quiet_NaN());
    const int labelEvery = std::max(1, (nLayers + 7) / 8);
    for (int l = 0; l < nLayers; ++l) {
        const memory::TraceLayer& layer = hop.layers[static_cast<size_t>(l)];
        if (l % labelEvery == 0) yt->addTick(l, QString::number(layer.layer));
        for (const auto& d : layer.top) {
            auto it = column.find(d.id);
            if (it != column.end()) m_heatMap->data()->setCell(it->second, l, d.score);
        }
    }
    m_heat->xAxis->setTicker(xt);
    m_heat->xAxis->setTickLabelRotation(nDocs > 12 ? 60 : 0);
    m_heat->yAxis->setTicker(yt);
    m_heatMap->rescaleDataRange(true);
    m_heat->rescaleAxes();
    m_heat->xAxis->setRange(-0.5, nDocs - 0.5);
    m_heat->yAxis->setRange(-0.5, std::max(nLayers, 1) - 0.5);
    m_heat->replot();
}

void RoutingView::drawGraph() {
    m_graph->clear();
    m_nodeCount = 0;
    if (m_trace.hops.empty()) return;
    const std::set<int64_t> cited(m_trace.citations.begin(), m_trace.citations.end());
    constexpr double kColumn = 220, kRow = 34, kRadius = 11;
    QFont small = font();
    small.setPointSizeF(std::max(7.0, small.pointSizeF() - 1));

    auto addNode = [&](double x, double y, const QColor& color, const QString& label, const QString& tip, int64_t id) {
        auto* e = m_graph->addEllipse(x - kRadius, y - kRadius, 2 * kRadius, 2 * kRadius, QPen(color.darker(140)), color);
        e->setToolTip(tip);
        e->setZValue(2);
        if (id >= 0) {
            e->setData(kNodeIdKey, QVariant::fromValue<qint64>(id));
            e->setCursor(Qt::PointingHandCursor);
        }
        auto* t = m_graph->addSimpleText(label, small);
        t->setPos(x + kRadius + 4, y - t->boundingRect().height() / 2);
        t->setToolTip(tip);
        if (id >= 0) t->setData(kNodeIdKey, QVariant::fromValue<qint64>(id));
        ++m_nodeCount;
        return QPointF(x, y);
    };

    // Column 0: the question.
    std::vector<QPointF> previous = {addNode(0, 0, QColor(90, 90, 90), elide(qs(m_trace.question), 28),
                                             qs(m_trace.question), -1)};
    std::vector<int64_t> previousInjected;
    std::map<int64_t, QPointF> previousPos;
    for (size_t h = 0; h < m_trace.hops.size(); ++h) {
        const memory::TraceHop& hop = m_trace.hops[h];
        // The hop's documents: chosen by at least one layer or injected, by votes then best score.
        std::map<int64_t, std::pair<int, float>> votes;
        for (const auto& l : hop.layers)
            for (const auto& d : l.top)
                if (d.selected) {
                    auto& v = votes.try_emplace(d.id, 0, -std::numeric_limits<float>::infinity()).first->second;
                    ++v.first;
                    v.second = std::max(v.second, d.score);
                }
        for (int64_t id : hop.injected) votes.try_emplace(id, 0, 0.0f);
        std::vector<std::pair<int64_t, std::pair<int, float>>> docs(votes.begin(), votes.end());
        std::stable_sort(docs.begin(), docs.end(), [](const auto& a, const auto& b) {
            if (a.second.first != b.second.first) return a.second.first > b.second.first;
            return a.second.second > b.second.second;
        });
        if (static_cast<int>(docs.size()) > kMaxGraphNodes) docs.resize(kMaxGraphNodes);
        const std::set<int64_t> injected(hop.injected.begin(), hop.injected.end());
        const double x = kColumn * static_cast<double>(h + 1);
        auto* header = m_graph->addSimpleText(tr("hop %1").arg(hop.hop + 1), small);
        header->setPos(x - kRadius, -kRow * (static_cast<double>(docs.size()) / 2.0 + 1));
        std::map<int64_t, QPointF> pos;
        for (size_t i = 0; i < docs.size(); ++i) {
            const int64_t id = docs[i].first;
            const double y = kRow * (static_cast<double>(i) - static_cast<double>(docs.size() - 1) / 2.0);
            const QColor color = cited.count(id) ? kCited : injected.count(id) ? kSelected : kSelected.lighter(150);
            QString label = QString("[%1] %2").arg(id).arg(elide(titleOf(id), 22));
            if (docs[i].second.first > 0) label += tr(" ×%1").arg(docs[i].second.first);
            pos[id] = addNode(x, y, color, label, describe(id), id);
            // Edges: from the question (hop 1) or from what the previous hop injected into the prompt.
            QPen pen(injected.count(id) ? QColor(60, 60, 60) : QColor(180, 180, 180));
            pen.setWidthF(injected.count(id) ? 1.6 : 0.8);
            if (h == 0 || previousInjected.empty()) {
                for (const QPointF& p : previous) m_graph->addLine(QLineF(p, pos[id]), pen)->setZValue(0);
            } else {
                for (int64_t from : previousInjected) {
                    auto it = previousPos.find(from);
                    if (it != previousPos.end()) m_graph->addLine(QLineF(it->second, pos[id]), pen)->setZValue(0);
                }
            }
        }
        previous.clear();
        for (const auto& [id, p] : pos) previous.push_back(p);
        previousInjected.assign(hop.injected.begin(), hop.injected.end());
        previousPos = pos;
    }
    auto* legend = m_graph->addSimpleText(tr("orange: cited · blue: injected into the prompt · light: selected only · ×n: layers that chose it"), small);
    const QRectF r = m_graph->itemsBoundingRect();
    legend->setPos(r.left(), r.bottom() + 8);
    m_graph->setSceneRect(m_graph->itemsBoundingRect().adjusted(-10, -10, 10, 10));
    fitGraph();
}

// Scaled down (never up, never below half size) so a whole hop fits; scrolling covers the rest.
void RoutingView::fitGraph() {
    if (m_graph->items().isEmpty()) return;
    const QRectF scene = m_graph->sceneRect();
    const QSize view = m_graphView->viewport()->size();
    const double scale = std::clamp(std::min(view.width() / scene.width(), view.height() / scene.height()), 0.5, 1.0);
    m_graphView->setTransform(QTransform::fromScale(scale, scale));
    m_graphView->centerOn(scene.center());
}

void RoutingView::fillTable() {
    m_layers->setRowCount(0);
    if (m_trace.hops.empty()) return;
    const memory::TraceHop& hop = m_trace.hops[static_cast<size_t>(m_hop)];
    m_layers->setRowCount(static_cast<int>(hop.layers.size()));
    for (int row = 0; row < static_cast<int>(hop.layers.size()); ++row) {
        const memory::TraceLayer& l = hop.layers[static_cast<size_t>(row)];
        QStringList chosen, tips;
        float best = -std::numeric_limits<float>::infinity();
        int64_t bestId = -1;
        for (const auto& d : l.top) {
            tips << QString("[%1] %2  %3%4").arg(d.id).arg(qs(d.title)).arg(d.score, 0, 'f', 4).arg(d.selected ? tr("  (chosen)") : QString());
            if (!d.selected) continue;
            chosen << QString("[%1] %2").arg(d.id).arg(elide(qs(d.title), 24));
            if (d.score > best) {
                best = d.score;
                bestId = d.id;
            }
        }
        auto* layer = new QTableWidgetItem(QString::number(l.layer));
        auto* docs = new QTableWidgetItem(chosen.join(QStringLiteral(", ")));
        docs->setToolTip(tips.join('\n'));
        if (bestId >= 0) docs->setData(kDocRole, QVariant::fromValue<qint64>(bestId));
        auto* score = new QTableWidgetItem(bestId >= 0 ? QString::number(best, 'f', 4) : QString());
        auto* n = new QTableWidgetItem(QString::number(l.top.size()));
        m_layers->setItem(row, 0, layer);
        m_layers->setItem(row, 1, docs);
        m_layers->setItem(row, 2, score);
        m_layers->setItem(row, 3, n);
    }
    m_layers->resizeColumnToContents(0);
}

bool RoutingView::eventFilter(QObject* watched, QEvent* event) {
    if (watched == m_graphView->viewport()) {
        if (event->type() == QEvent::Resize) fitGraph();
        if (event->type() == QEvent::MouseButtonRelease) {
            auto* me = static_cast<QMouseEvent*>(event);
            if (me->button() == Qt::LeftButton)
                for (QGraphicsItem* item : m_graphView->items(me->position().toPoint())) {
                    const QVariant id = item->data(kNodeIdKey);
                    if (id.isValid()) {
                        emit openDocument(id.toLongLong());
                        return true;
                    }
                }
        }
        return QWidget::eventFilter(watched, event);
    }
    if (event->type() == QEvent::MouseMove && (watched == m_scores || watched == m_heat)) {
        auto* plot = static_cast<QCustomPlot*>(watched);
        auto* me = static_cast<QMouseEvent*>(event);
        const double x = plot->xAxis->pixelToCoord(me->position().x());
        const double y = plot->yAxis->pixelToCoord(me->position().y());
        const int64_t id = documentAtBar(x);
        if (id >= 0 && plot->axisRect()->rect().contains(me->position().toPoint())) {
            QString tip = describe(id);
            if (watched == m_heat && !m_trace.hops.empty()) {
                const long l = std::lround(y);
                const auto& layers = m_trace.hops[static_cast<size_t>(m_hop)].layers;
                if (l >= 0 && l < static_cast<long>(layers.size())) {
                    const auto& layer = layers[static_cast<size_t>(l)];
                    QString cell = tr("layer %1: not in this layer's top-N").arg(layer.layer);
                    for (const auto& d : layer.top)
                        if (d.id == id)
                            cell = tr("layer %1: score %2%3").arg(layer.layer).arg(d.score, 0, 'f', 4).arg(d.selected ? tr(" (chosen)") : QString());
                    tip = cell + "\n" + tip;
                }
            }
            QToolTip::showText(me->globalPosition().toPoint(), tip, plot);
            plot->setCursor(Qt::PointingHandCursor);
        } else {
            QToolTip::hideText();
            plot->unsetCursor();
        }
    }
    return QWidget::eventFilter(watched, event);
}

}  // namespace msa::ui

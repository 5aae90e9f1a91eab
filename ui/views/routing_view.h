// routing_view.h: the Routing inspector (DESIGN.md §6, issue 7 item 5): where the sparse attention went
// for one answer (a memory::RoutingTrace): a hop selector; (a) a bar chart of the documents' best routing
// score aggregated over hops and layers (top documents only, cited/selected highlighted, mean score as
// dots); (b) a routing layer × document heat map of the chosen hop's scores; (c) the hop graph (question →
// hop-0 documents → next-hop documents, drawn with QGraphicsScene); (d) a per-layer table of the chosen
// set. Hovering a document anywhere shows its id, title and scores; clicking it emits openDocument(id)
// (the main window opens it in the Library). "Route only" routes a question without generating (like
// `msa route`) on the engine thread and shows the result as a one-hop trace.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the AnswerClient is borrowed (the main
// window owns it) and may be null (then "Route only" is disabled).
//
// Usage:
//     auto* view = new RoutingView(context, engine, tabs);
//     view->setSetup(setup);                 // bank/model/catalog for Route only
//     view->showTrace(traceFromAsk(report)); // from the Chat tab
//     connect(view, &RoutingView::openDocument, this, ...);
#pragma once

#include "core/memory/trace.h"
#include "ui/answer_setup.h"
#include "ui/ui_context.h"

#include <QWidget>

#include <vector>

class QComboBox;
class QCPBars;
class QCPColorMap;
class QCPGraph;
class QCustomPlot;
class QGraphicsScene;
class QGraphicsView;
class QLabel;
class QLineEdit;
class QPushButton;
class QTableWidget;

namespace msa::ui {

class AnswerClient;

class RoutingView : public QWidget {
    Q_OBJECT
public:
    // Documents shown in the bar chart and the heat map (the rest stays in the table and tooltips).
    static constexpr int kMaxDocuments = 30;
    // Document nodes per hop in the graph.
    static constexpr int kMaxGraphNodes = 12;

    RoutingView(const UiContext& context, AnswerClient* engine, QWidget* parent = nullptr);

    void setSetup(const AnswerSetup& setup);
    void setQuestion(const QString& question);
    void showTrace(const memory::RoutingTrace& trace);
    // Runs "Route only" for the question box; false when it cannot start (no bank, busy, empty).
    bool routeQuestion();
    void selectHop(int hop);

    const memory::RoutingTrace& trace() const { return m_trace; }
    int currentHop() const { return m_hop; }
    // The document ids in bar-chart order (x = 0, 1, ...).
    const std::vector<int64_t>& chartDocuments() const { return m_chartDocs; }
    QCustomPlot* scorePlot() const { return m_scores; }
    QCustomPlot* heatPlot() const { return m_heat; }
    QCPBars* citedBars() const { return m_barsCited; }
    QCPBars* selectedBars() const { return m_barsSelected; }
    QCPBars* otherBars() const { return m_barsOther; }
    QCPColorMap* heatMap() const { return m_heatMap; }
    QGraphicsScene* graphScene() const { return m_graph; }
    QGraphicsView* graphView() const { return m_graphView; }
    int graphNodeCount() const { return m_nodeCount; }
    QTableWidget* layerTable() const { return m_layers; }

signals:
    void openDocument(qint64 memoryDocumentId);
    void statusMessage(const QString& message);
    void routeFinished(bool ok);   // a "Route only" request ended (shown, or the failure in the summary)

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuildHop();
    void drawBars();
    void drawHeatMap();
    void drawGraph();
    void fitGraph();
    void fillTable();
    int64_t documentAtBar(double key) const;
    QString describe(int64_t id) const;
    QString titleOf(int64_t id) const;
    void updateRouteButton();

    AnswerClient* m_engine = nullptr;
    AnswerSetup m_setup;
    memory::RoutingTrace m_trace;
    int m_hop = 0;
    quint64 m_routeRequest = 0;
    std::vector<int64_t> m_chartDocs;   // bar chart / heat map columns
    int m_nodeCount = 0;

    QComboBox* m_hopBox = nullptr;
    QLineEdit* m_question = nullptr;
    QPushButton* m_route = nullptr;
    QLabel* m_summary = nullptr;
    QCustomPlot* m_scores = nullptr;   // qcustomplot.h stays in the .cpp (BUILD-NOTES #10)
    QCPBars* m_barsCited = nullptr;
    QCPBars* m_barsSelected = nullptr;
    QCPBars* m_barsOther = nullptr;
    QCPGraph* m_mean = nullptr;
    QCustomPlot* m_heat = nullptr;
    QCPColorMap* m_heatMap = nullptr;
    QGraphicsScene* m_graph = nullptr;
    QGraphicsView* m_graphView = nullptr;
    QTableWidget* m_layers = nullptr;
};

}  // namespace msa::ui

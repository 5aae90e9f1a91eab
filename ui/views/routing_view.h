// routing_view.h: Routing inspector: for a selected answer, per hop the routing scores of the top documents and the chosen set per layer.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext is read during
// construction (and its QSettings borrowed for the view's lifetime where noted).
#pragma once

#include "ui/ui_context.h"

#include <QWidget>

class QCustomPlot;
class QTableWidget;

namespace msa::ui {

class RoutingView : public QWidget {
    Q_OBJECT
public:
    explicit RoutingView(const UiContext& context, QWidget* parent = nullptr);

private:
    QCustomPlot* m_scores = nullptr;   // bar chart of document scores; header kept out (BUILD-NOTES #10)
    QTableWidget* m_layers = nullptr;
};

}  // namespace msa::ui

// memory_view.h: Memory tab: the model and device used to build the memory bank, build progress with a tokens/s plot, and bank facts.
//
// Thread affinity: GUI thread only. Ownership: Qt parent/child; the UiContext is read during
// construction (and its QSettings borrowed for the view's lifetime where noted).
#pragma once

#include "ui/ui_context.h"

#include <QWidget>

class QCustomPlot;

namespace msa::ui {

class MemoryView : public QWidget {
    Q_OBJECT
public:
    explicit MemoryView(const UiContext& context, QWidget* parent = nullptr);

private:
    QCustomPlot* m_rate = nullptr;   // tokens/s during a build; qcustomplot.h stays in the .cpp
};

}  // namespace msa::ui

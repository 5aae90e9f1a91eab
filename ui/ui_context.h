// ui_context.h: what the composition root (app/workbench_main.cpp) hands the window: facts computed
// once at start-up and the settings store. Value type plus a non-owning QSettings pointer; lives on
// the GUI thread. Tests build one by hand with a QSettings on a temporary file.
#pragma once

#include "core/engine/backend_registry.h"
#include "core/jobs/doctor.h"

#include <QString>

class QSettings;

namespace msa::ui {

struct UiContext {
    engine::BackendRegistry registry;   // backends and devices (read-only after start-up)
    jobs::DoctorReport doctor;          // demo model / archive facts
    QSettings* settings = nullptr;      // not owned; outlives the window
    QString catalogPath;                // the SQLite catalog; empty: CatalogClient::defaultPath()
    // First start (no settings yet; workbench_main decides): after the Library's demo import the
    // window builds the demo archive's memory with the demo model and then offers the suggested
    // question in Chat (or explains how to get the model). Off by default so tests opt in.
    bool firstRun = false;
};

}  // namespace msa::ui

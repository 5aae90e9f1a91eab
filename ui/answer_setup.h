// answer_setup.h: what answering and "Route only" need (bank, model, catalog, threads, k) and where it
// comes from: QSettings keys "memory/bank" (the bank folder; default <AppDataLocation>/banks/demo) and
// "engine/model" / "engine/threads" (the Settings tab; default the demo model). GUI thread; value type.
//
// Usage:
//     AnswerSetup s = AnswerSetup::fromSettings(context, catalogPath);
//     if (!s.ready()) showHint(s.problem());
#pragma once

#include "ui/ui_context.h"

#include <QString>

namespace msa::ui {

struct AnswerSetup {
    static constexpr const char* kBankKey = "memory/bank";

    QString bank;      // bank folder (manifest.json inside)
    QString model;     // GGUF file or safetensors folder
    QString catalog;   // the SQLite catalog holding the documents' text
    int nThreads = 0;  // 0: all cores
    int topN = 24;     // documents listed per layer for inspection (above k = 16, so unchosen ones show too)
    int nDocuments = 4;   // documents whose text is given to the model
    int maxTokens = 256;  // answer length limit

    static QString defaultBankPath();
    static AnswerSetup fromSettings(const UiContext& context, const QString& catalogPath);
    // Empty when answering can start; else what is missing, as a sentence with what to do.
    QString problem() const;
    bool ready() const { return problem().isEmpty(); }
};

}  // namespace msa::ui

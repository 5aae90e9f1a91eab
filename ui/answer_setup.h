// answer_setup.h: what answering and "Route only" need (bank, model, catalog, threads, hops, answer
// length) and where it comes from: the active bank is QSettings "memory/bank" (AppSettings::
// kActiveBankKey: written by the Memory tab after a build or when a bank is opened, or by
// `msa-workbench --bank`; default the Demo archive's bank in AppSettings' bank folder), the rest is
// AppSettings (the Settings tab; default the demo model); method, injection, hops and the candidate
// filters are the Chat tab's ChatOptions (hops and injection default to AppSettings'). GUI thread; value type.
//
// Usage:
//     AnswerSetup s = AnswerSetup::fromSettings(context, catalogPath);
//     if (!s.ready()) showHint(s.problem());
#pragma once

#include "core/jobs/memory_jobs.h"
#include "ui/ui_context.h"

#include <QString>

namespace msa::ui {

struct AnswerSetup {
    static constexpr const char* kBankKey = "memory/bank";   // = AppSettings::kActiveBankKey

    QString bank;      // bank folder (manifest.json inside)
    QString model;     // GGUF file or safetensors folder
    QString catalog;   // the SQLite catalog holding the documents' text
    int nThreads = 0;  // 0: all cores
    int topN = 24;     // documents listed per layer for inspection (above k = 16, so unchosen ones show too)
    int nDocuments = 4;   // documents whose text is given to the model
    int maxTokens = 256;  // answer length limit
    double temperature = 0.0;   // training-free answers (0 = greedy)
    int hops = 1;         // routing hops (training-free, original text)
    jobs::AnswerMethod method = jobs::AnswerMethod::Auto;   // Memory Interleave iff the model is an MSA model
    jobs::Injection injection = jobs::Injection::Original;   // training-free: text, or chunk K/V ("kv")
    jobs::CandidateFilter filter;   // the Chat tab's candidate filters (ChatOptions)
    engine::BackendChoice device;   // the Settings tab's device (AppSettings::device via deviceChoiceFor)

    static AnswerSetup fromSettings(const UiContext& context, const QString& catalogPath);
    // Empty when answering can start; else what is missing, as a sentence with what to do.
    QString problem() const;
    bool ready() const { return problem().isEmpty(); }
};

}  // namespace msa::ui

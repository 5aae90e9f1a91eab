// app_settings.h: the workbench's user settings as one value type, stored in QSettings under fixed
// keys, plus the checks the Settings tab shows inline (model file, folders) and the bank folder that a
// collection gets. The Settings tab edits it; MainWindow forwards every change to the views
// (MemoryView uses model, bank folder, threads and storage; Chat uses top-k, hops, temperature,
// injection and max answer tokens); the catalog path is read when the window starts.
//
// Thread affinity: a plain value (copy it to any thread); load()/save() touch the QSettings and run on
// the GUI thread. checkModel() reads the model's header (a few KiB through a mapping, no weights) and is
// reentrant.
//
// Usage:
//     AppSettings s = AppSettings::load(*context.settings, AppSettings::defaults(context));
//     s.topK = 32; s.save(*context.settings);
//     ModelCheck m = checkModel(s.modelPath);   // m.ok, m.summary or m.problem
#pragma once

#include "core/engine/device_select.h"
#include "core/jobs/memory_jobs.h"
#include "ui/ui_context.h"

#include <QMetaType>
#include <QString>

class QSettings;

namespace msa::ui {

struct AppSettings {
    // Keys (also read by tests and by views that only need one value).
    static constexpr const char* kModelKey = "engine/model";
    static constexpr const char* kDeviceKey = "engine/device";
    static constexpr const char* kThreadsKey = "engine/threads";
    static constexpr const char* kBankDirKey = "paths/bankDir";
    static constexpr const char* kCatalogKey = "paths/catalog";
    static constexpr const char* kTopKKey = "memory/topK";
    static constexpr const char* kHopsKey = "memory/maxHops";
    static constexpr const char* kStorageKey = "memory/storage";
    static constexpr const char* kInjectionKey = "memory/injection";
    static constexpr const char* kTemperatureKey = "generation/temperature";
    static constexpr const char* kMaxTokensKey = "generation/maxTokens";
    // The bank Chat and Routing answer from: written by the Memory tab when a build finishes or a valid
    // bank is opened (not edited in the Settings tab).
    static constexpr const char* kActiveBankKey = "memory/bank";

    QString modelPath;                 // .gguf file or Hugging Face folder
    QString device = "auto";           // --device spec: auto | cpu | cuda:N | cuda:all (deviceChoiceFor)
    int threads = 0;                   // 0: all cores
    QString bankDir;                   // banks live in <bankDir>/<collection slug>
    QString catalogPath;               // empty: CatalogClient::defaultPath()
    int topK = 16;                     // documents selected per routing layer
    int maxHops = 3;
    QString storage = "bf16";          // bank storage dtype: bf16 | f32
    QString injection = "text";        // text (training-free text injection) | kv (compressed: chunk K/V in the attention)
    double temperature = 0.0;
    int maxAnswerTokens = 256;

    // Defaults for this machine: the demo model when found, all cores, banks beside the catalog.
    static AppSettings defaults(const UiContext& context);
    static AppSettings load(const QSettings& settings, const AppSettings& defaults);
    void save(QSettings& settings) const;

    // <bankDir>/<collection as a file name>: letters, digits, '-', '_' and '.' kept, the rest '_'.
    QString bankPathFor(const QString& collection) const;

    bool operator==(const AppSettings&) const = default;
};

// The Chat tab's answer options (its options row), stored under "chat/…" keys apart from AppSettings so
// that the Settings tab's saves never overwrite them; hops and injection start from AppSettings.
struct ChatOptions {
    static constexpr const char* kMethodKey = "chat/method";
    static constexpr const char* kInjectionKey = "chat/injection";
    static constexpr const char* kHopsKey = "chat/hops";
    static constexpr const char* kCollectionKey = "chat/filterCollection";
    static constexpr const char* kFromKey = "chat/filterFrom";
    static constexpr const char* kToKey = "chat/filterTo";
    static constexpr const char* kParticipantKey = "chat/filterParticipant";

    QString method = "auto";       // auto | interleave | training-free
    QString injection = "text";    // text (original) | kv (compressed)
    int hops = 3;
    QString collection;            // empty: every collection
    QString from, to;              // yyyy-MM-dd, inclusive; empty: open
    QString participant;           // substring of the author or a participant

    static ChatOptions load(const QSettings& settings, const AppSettings& app);
    void save(QSettings& settings) const;
    jobs::AnswerMethod answerMethod() const;
    jobs::Injection answerInjection() const;
    // The candidate filter of AskRequest::route.filter (dates as UTC days; `to` includes its whole day).
    jobs::CandidateFilter filter() const;
    bool operator==(const ChatOptions&) const = default;
};

struct ModelCheck {
    bool ok = false;
    QString summary;   // "llama, 30 layers, GGUF, 138 MB, training-free routing"
    QString problem;   // the Status message when !ok
};
// Opens the model's header and tensor table (core/model ModelFiles::open) without reading weights.
ModelCheck checkModel(const QString& path);

// The backend and device a stored spec selects on this machine (core/engine/device_select.h); when
// this machine lacks that device (settings written on another one, a GPU removed) it is "auto", with
// a note saying so. Never fails: the CPU is always there.
engine::BackendChoice deviceChoiceFor(const engine::BackendRegistry& registry, const QString& spec);

// Empty when `path` names a folder that exists or can be created and written; else why not.
QString checkWritableFolder(const QString& path);

}  // namespace msa::ui

Q_DECLARE_METATYPE(msa::ui::AppSettings)

#include "ui/app_settings.h"

#include "ui/catalog_host.h"

#include "core/model/model_config.h"
#include "core/model/gguf_file.h"
#include "core/model/model_files.h"

#include <QDate>
#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QLocale>
#include <QSettings>
#include <QTimeZone>

#include <algorithm>
#include <thread>

namespace msa::ui {

engine::BackendChoice deviceChoiceFor(const engine::BackendRegistry& registry, const QString& spec) {
    Result<engine::BackendChoice> c = engine::chooseBackend(registry, spec.toStdString());
    if (c) return *c;
    Result<engine::BackendChoice> fallback = engine::chooseBackend(registry, "auto");
    engine::BackendChoice out = fallback ? *fallback : engine::BackendChoice{};
    out.requested = spec.toStdString();
    out.fellBack = true;
    out.note = "the stored device " + quotedName(spec.toStdString()) + " is not available here (" + c.status().message() +
               "); using " + out.describe();
    return out;
}

AppSettings AppSettings::defaults(const UiContext& context) {
    AppSettings s;
    if (context.doctor.demoModel.present) s.modelPath = QString::fromStdString(context.doctor.demoModel.path.string());
    s.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const QString catalog = context.catalogPath.isEmpty() ? CatalogClient::defaultPath() : context.catalogPath;
    // Banks beside the catalog they were built from, so a test or demo catalog keeps its banks with it.
    s.bankDir = QFileInfo(catalog).absoluteDir().filePath("banks");
    return s;
}

AppSettings AppSettings::load(const QSettings& q, const AppSettings& d) {
    AppSettings s;
    s.modelPath = q.value(kModelKey, d.modelPath).toString();
    s.device = q.value(kDeviceKey, d.device).toString();
    s.threads = q.value(kThreadsKey, d.threads).toInt();
    s.bankDir = q.value(kBankDirKey, d.bankDir).toString();
    s.catalogPath = q.value(kCatalogKey, d.catalogPath).toString();
    s.topK = q.value(kTopKKey, d.topK).toInt();
    s.maxHops = q.value(kHopsKey, d.maxHops).toInt();
    s.storage = q.value(kStorageKey, d.storage).toString();
    if (s.storage != "bf16" && s.storage != "f32") s.storage = d.storage;
    s.injection = q.value(kInjectionKey, d.injection).toString();
    if (s.injection != "text" && s.injection != "kv") s.injection = d.injection;
    s.temperature = q.value(kTemperatureKey, d.temperature).toDouble();
    s.maxAnswerTokens = q.value(kMaxTokensKey, d.maxAnswerTokens).toInt();
    return s;
}

void AppSettings::save(QSettings& q) const {
    q.setValue(kModelKey, modelPath);
    q.setValue(kDeviceKey, device);
    q.setValue(kThreadsKey, threads);
    q.setValue(kBankDirKey, bankDir);
    q.setValue(kCatalogKey, catalogPath);
    q.setValue(kTopKKey, topK);
    q.setValue(kHopsKey, maxHops);
    q.setValue(kStorageKey, storage);
    q.setValue(kInjectionKey, injection);
    q.setValue(kTemperatureKey, temperature);
    q.setValue(kMaxTokensKey, maxAnswerTokens);
    q.sync();
}

QString AppSettings::bankPathFor(const QString& collection) const {
    QString slug;
    for (const QChar c : collection) slug += (c.isLetterOrNumber() || c == '-' || c == '_' || c == '.') ? c : QChar('_');
    if (slug.isEmpty() || slug.startsWith('.')) slug.prepend("collection");
    return QDir(bankDir).filePath(slug);
}

ModelCheck checkModel(const QString& path) {
    ModelCheck check;
    if (path.trimmed().isEmpty()) {
        check.problem = QObject::tr("no model chosen");
        return check;
    }
    auto files = model::ModelFiles::open(std::filesystem::path(path.toStdU16String()));
    if (!files.ok()) {
        check.problem = QString::fromStdString(files.status().toString());
        return check;
    }
    const model::ModelFiles& m = **files;
    const auto& c = m.config();
    check.ok = true;
    check.summary = QObject::tr("%1, %2 layers, %3, %4, %5 routing")
                        .arg(QString::fromUtf8(model::architectureName(c.arch).data(),
                                               static_cast<qsizetype>(model::architectureName(c.arch).size())))
                        .arg(c.nLayers)
                        .arg(m.gguf() ? QStringLiteral("GGUF v%1").arg(m.gguf()->version()) : QStringLiteral("safetensors"))
                        .arg(QLocale().formattedDataSize(static_cast<qint64>(m.totalBytes())))
                        .arg(QString::fromUtf8(model::routingModeName(m.routingMode()).data(),
                                               static_cast<qsizetype>(model::routingModeName(m.routingMode()).size())));
    return check;
}

QString checkWritableFolder(const QString& path) {
    if (path.trimmed().isEmpty()) return QObject::tr("no folder chosen");
    const QFileInfo info(path);
    if (info.exists() && !info.isDir()) return QObject::tr("%1 is a file, not a folder").arg(path);
    if (!info.exists()) {
        // The nearest existing ancestor must be writable so the folder can be made when first used.
        QString ancestor = info.absoluteFilePath();
        while (!QFileInfo::exists(ancestor)) {
            const QString up = QFileInfo(ancestor).absolutePath();
            if (up == ancestor) break;
            ancestor = up;
        }
        if (!QFileInfo(ancestor).isDir() || !QFileInfo(ancestor).isWritable())
            return QObject::tr("%1 does not exist and %2 is not a writable folder").arg(path, ancestor);
        return {};
    }
    if (!info.isWritable()) return QObject::tr("%1 is not writable").arg(path);
    return {};
}

}  // namespace msa::ui

namespace msa::ui {

ChatOptions ChatOptions::load(const QSettings& q, const AppSettings& app) {
    ChatOptions o;
    o.method = q.value(kMethodKey, o.method).toString();
    o.injection = q.value(kInjectionKey, app.injection).toString();
    o.hops = std::max(1, q.value(kHopsKey, app.maxHops).toInt());
    o.collection = q.value(kCollectionKey).toString();
    o.from = q.value(kFromKey).toString();
    o.to = q.value(kToKey).toString();
    o.participant = q.value(kParticipantKey).toString();
    return o;
}

void ChatOptions::save(QSettings& q) const {
    q.setValue(kMethodKey, method);
    q.setValue(kInjectionKey, injection);
    q.setValue(kHopsKey, hops);
    q.setValue(kCollectionKey, collection);
    q.setValue(kFromKey, from);
    q.setValue(kToKey, to);
    q.setValue(kParticipantKey, participant);
}

jobs::AnswerMethod ChatOptions::answerMethod() const {
    if (method == QLatin1String("interleave")) return jobs::AnswerMethod::Interleave;
    if (method == QLatin1String("training-free")) return jobs::AnswerMethod::TrainingFree;
    return jobs::AnswerMethod::Auto;
}

jobs::Injection ChatOptions::answerInjection() const {
    return injection == QLatin1String("kv") ? jobs::Injection::Compressed : jobs::Injection::Original;
}

jobs::CandidateFilter ChatOptions::filter() const {
    jobs::CandidateFilter f;
    if (!collection.trimmed().isEmpty()) f.collection = collection.trimmed().toStdString();
    if (!participant.trimmed().isEmpty()) f.participant = participant.trimmed().toStdString();
    const QDate fromDay = QDate::fromString(from.trimmed(), Qt::ISODate);
    if (fromDay.isValid()) f.fromUnix = fromDay.startOfDay(QTimeZone::utc()).toSecsSinceEpoch();
    const QDate toDay = QDate::fromString(to.trimmed(), Qt::ISODate);
    if (toDay.isValid()) f.toUnix = toDay.addDays(1).startOfDay(QTimeZone::utc()).toSecsSinceEpoch();
    return f;
}

}  // namespace msa::ui

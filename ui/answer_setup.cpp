#include "ui/answer_setup.h"

#include "ui/app_settings.h"
#include "ui/views/library_view.h"

#include <QDir>
#include <QFileInfo>
#include <QSettings>

namespace msa::ui {

AnswerSetup AnswerSetup::fromSettings(const UiContext& context, const QString& catalogPath) {
    AnswerSetup s;
    UiContext c = context;
    if (c.catalogPath.isEmpty()) c.catalogPath = catalogPath;
    const AppSettings defaults = AppSettings::defaults(c);
    const AppSettings app = context.settings ? AppSettings::load(*context.settings, defaults) : defaults;
    const QString demoBank = app.bankPathFor(QString::fromLatin1(LibraryView::kDemoCollection));
    s.bank = context.settings ? context.settings->value(kBankKey, demoBank).toString() : demoBank;
    s.model = app.modelPath;
    s.nThreads = app.threads;
    s.maxTokens = app.maxAnswerTokens;
    s.temperature = app.temperature;
    s.hops = app.maxHops;
    s.injection = app.injection == QLatin1String("kv") ? jobs::Injection::Compressed : jobs::Injection::Original;
    if (context.settings) {
        const ChatOptions o = ChatOptions::load(*context.settings, app);
        s.method = o.answerMethod();
        s.injection = o.answerInjection();
        s.hops = o.hops;
        s.filter = o.filter();
    }
    s.device = deviceChoiceFor(context.registry, app.device);
    s.catalog = catalogPath;
    return s;
}

QString AnswerSetup::problem() const {
    if (model.isEmpty() || !QFileInfo::exists(model))
        return QObject::tr("No model: choose one in the Settings tab (or run packaging/setup.sh to fetch the demo model).");
    if (bank.isEmpty() || !QFileInfo::exists(QDir(bank).filePath("manifest.json")))
        return QObject::tr("No memory bank yet at %1: build the memory first in the Memory tab "
                           "(or: msa build --catalog CATALOG --collection \"Demo archive\" --bank %1).")
            .arg(QDir::toNativeSeparators(bank));
    if (catalog.isEmpty() || !QFileInfo::exists(catalog))
        return QObject::tr("No catalog yet: import documents in the Library tab first.");
    return {};
}

}  // namespace msa::ui

#include "ui/answer_setup.h"

#include <QDir>
#include <QFileInfo>
#include <QSettings>
#include <QStandardPaths>

namespace msa::ui {

QString AnswerSetup::defaultBankPath() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)).filePath("banks/demo");
}

AnswerSetup AnswerSetup::fromSettings(const UiContext& context, const QString& catalogPath) {
    AnswerSetup s;
    const QString demoModel = QString::fromStdString(context.doctor.demoModel.path.string());
    if (context.settings) {
        s.bank = context.settings->value(kBankKey, defaultBankPath()).toString();
        s.model = context.settings->value("engine/model", demoModel).toString();
        s.nThreads = context.settings->value("engine/threads", 0).toInt();
    } else {
        s.bank = defaultBankPath();
        s.model = demoModel;
    }
    if (s.model.isEmpty()) s.model = demoModel;
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

// tst_settings_view.cpp (label: gui, offscreen): the Settings tab. Every value persists in QSettings
// and comes back in a new window; a model path that does not open shows the reason inline (and the
// demo model, when present, its architecture); a bank folder that is a file is an inline error; a
// change reaches the Memory tab through MainWindow::settingsChanged; the catalog chosen in Settings is
// the one the next window opens; AppSettings::bankPathFor makes a file name of a collection.
#include "core/util/paths.h"
#include "ui/app_settings.h"
#include "ui/catalog_host.h"
#include "ui/main_window.h"
#include "ui/views/memory_view.h"
#include "ui/views/settings_view.h"

#include <QComboBox>
#include <QMenu>
#include <QToolButton>
#include <QDir>
#include <QDoubleSpinBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTemporaryDir>
#include <QtTest>

using namespace msa;
using namespace msa::ui;

namespace {
UiContext makeContext(QSettings* settings, const QString& catalogPath) {
    UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    c.catalogPath = catalogPath;
    return c;
}

void editLine(QWidget* root, const char* name, const QString& text) {
    auto* e = root->findChild<QLineEdit*>(name);
    QVERIFY2(e, name);
    e->setText(text);
    emit e->editingFinished();
}
}  // namespace

class TestSettingsView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_tmp.isValid());
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(m_tmp.filePath("no-archive")), 1);   // no first-run import
    }

    void persistsEveryValue() {
        const QString ini = m_tmp.filePath("p.ini");
        const QString banks = m_tmp.filePath("my banks");
        {
            QSettings settings(ini, QSettings::IniFormat);
            SettingsView v(makeContext(&settings, m_tmp.filePath("c.sqlite")));
            QSignalSpy changed(&v, &SettingsView::settingsChanged);
            editLine(&v, "settingsBankDir", banks);
            editLine(&v, "settingsCatalog", m_tmp.filePath("other.sqlite"));
            v.findChild<QSpinBox*>("settingsTopK")->setValue(24);
            v.findChild<QSpinBox*>("settingsThreads")->setValue(1);
            v.findChild<QSpinBox*>("settingsMaxTokens")->setValue(512);
            v.findChild<QDoubleSpinBox*>("settingsTemperature")->setValue(0.7);
            auto* storage = v.findChild<QComboBox*>("settingsStorage");
            storage->setCurrentIndex(storage->findData("f32"));
            QCOMPARE(changed.count(), 7);
            const AppSettings last = changed.last().at(0).value<AppSettings>();
            QCOMPARE(last.storage, QString("f32"));
            QCOMPARE(last.bankDir, banks);
            // The compressed ("kv") injection is selectable (the engine supports it) and saved.
            auto* injection = v.findChild<QComboBox*>("settingsInjection");
            QCOMPARE(injection->currentData().toString(), QString("text"));
            QVERIFY(qobject_cast<QStandardItemModel*>(injection->model())->item(1)->isEnabled());
            injection->setCurrentIndex(injection->findData("kv"));
            QCOMPARE(changed.count(), 8);
            QCOMPARE(changed.last().at(0).value<AppSettings>().injection, QString("kv"));
            injection->setCurrentIndex(injection->findData("text"));
        }
        QSettings settings(ini, QSettings::IniFormat);
        QCOMPARE(settings.value(AppSettings::kTopKKey).toInt(), 24);
        QCOMPARE(settings.value(AppSettings::kStorageKey).toString(), QString("f32"));
        QCOMPARE(settings.value(AppSettings::kMaxTokensKey).toInt(), 512);
        QCOMPARE(settings.value(AppSettings::kInjectionKey).toString(), QString("text"));
        SettingsView again(makeContext(&settings, m_tmp.filePath("c.sqlite")));
        QCOMPARE(again.findChild<QLineEdit*>("settingsBankDir")->text(), banks);
        QCOMPARE(again.findChild<QLineEdit*>("settingsCatalog")->text(), m_tmp.filePath("other.sqlite"));
        QCOMPARE(again.findChild<QSpinBox*>("settingsTopK")->value(), 24);
        QCOMPARE(again.findChild<QSpinBox*>("settingsThreads")->value(), 1);
        QCOMPARE(again.findChild<QSpinBox*>("settingsMaxTokens")->value(), 512);
        QCOMPARE(again.findChild<QDoubleSpinBox*>("settingsTemperature")->value(), 0.7);
        QCOMPARE(again.findChild<QComboBox*>("settingsStorage")->currentData().toString(), QString("f32"));
        QCOMPARE(again.current().bankPathFor("Mail: 2024/Q1"), QDir(banks).filePath("Mail__2024_Q1"));
        QCOMPARE(again.current().bankPathFor(".."), QDir(banks).filePath("collection.."));
    }

    void invalidPathsShowInline() {
        QSettings settings(m_tmp.filePath("v.ini"), QSettings::IniFormat);
        SettingsView v(makeContext(&settings, m_tmp.filePath("c.sqlite")));
        v.show();
        auto* check = v.findChild<QLabel*>("settingsModelCheck");
        editLine(&v, "settingsModel", m_tmp.filePath("missing.gguf"));
        QVERIFY(!v.modelProblem().isEmpty());
        QVERIFY2(check->text().contains("missing.gguf"), qPrintable(check->text()));
        QVERIFY(check->styleSheet().contains("#b00020"));

        QFile junk(m_tmp.filePath("junk.gguf"));
        QVERIFY(junk.open(QIODevice::WriteOnly));
        junk.write("definitely not GGUF");
        junk.close();
        editLine(&v, "settingsModel", junk.fileName());
        QVERIFY(!v.modelProblem().isEmpty());
        QVERIFY2(check->text().contains("junk.gguf"), qPrintable(check->text()));
        // What was typed is still kept, so nothing the user entered is lost.
        QCOMPARE(settings.value(AppSettings::kModelKey).toString(), junk.fileName());

        const QString model = QString::fromStdString(findDemoModel().string());
        if (!model.isEmpty()) {
            editLine(&v, "settingsModel", model);
            QVERIFY(v.modelProblem().isEmpty());
            QVERIFY2(check->text().contains("layers"), qPrintable(check->text()));
            QVERIFY(check->styleSheet().contains("#2e7d32"));
        }

        editLine(&v, "settingsBankDir", junk.fileName());
        auto* bankCheck = v.findChild<QLabel*>("settingsBankDirCheck");
        QVERIFY(bankCheck->isVisible());
        QVERIFY2(bankCheck->text().contains("is a file"), qPrintable(bankCheck->text()));
        editLine(&v, "settingsBankDir", m_tmp.filePath("fresh/banks"));
        QVERIFY(!bankCheck->isVisible());
        QVERIFY(v.folderProblem().isEmpty());
        editLine(&v, "settingsCatalog", m_tmp.path());
        QVERIFY2(v.folderProblem().contains("is a folder"), qPrintable(v.folderProblem()));
    }

    void recentModelsAreRemembered() {
        const QString ini = m_tmp.filePath("recent.ini");
        const QString msa = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16");
        const QString qwen = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
        {
            QSettings settings(ini, QSettings::IniFormat);
            MainWindow w(makeContext(&settings, QString()));
            w.memoryView()->setModelPath(msa);
            w.memoryView()->setModelPath(m_tmp.filePath("not-a-model.gguf"));   // invalid: not remembered
            w.memoryView()->setModelPath(qwen);
            w.memoryView()->setModelPath(msa);                                  // moves to the front, once
            // (The window's starting model, the demo model when present, opened first and comes after.)
            const QStringList recent = w.memoryView()->recentModels();
            QVERIFY(recent.size() >= 2);
            QCOMPARE(recent.mid(0, 2), (QStringList{msa, qwen}));
            QCOMPARE(recent.count(msa), 1);
            QVERIFY(!recent.contains(m_tmp.filePath("not-a-model.gguf")));
            auto* button = w.memoryView()->findChild<QToolButton*>("memoryRecentModels");
            QVERIFY(button && button->menu());
            QCOMPARE(button->menu()->actions().size(), recent.size());
            button->menu()->actions().at(1)->trigger();                         // pick the older one
            QCOMPARE(w.memoryView()->modelPath(), qwen);
        }
        QSettings settings(ini, QSettings::IniFormat);
        MainWindow next(makeContext(&settings, QString()));
        const QStringList kept = next.memoryView()->recentModels();   // survives a restart
        QVERIFY(kept.contains(qwen) && kept.contains(msa));
    }

    void changesReachTheViewsAndTheNextStart() {
        const QString ini = m_tmp.filePath("w.ini");
        const QString chosen = m_tmp.filePath("chosen.sqlite");
        {
            QSettings settings(ini, QSettings::IniFormat);
            MainWindow w(makeContext(&settings, QString()));   // no --catalog: Settings decides
            QSignalSpy forwarded(&w, &MainWindow::settingsChanged);
            editLine(w.settingsView(), "settingsBankDir", m_tmp.filePath("elsewhere"));
            QCOMPARE(forwarded.count(), 1);
            // The Memory tab follows: a collection's bank folder is now under the new bank folder.
            const QString notes = m_tmp.filePath("notes");
            QVERIFY(QDir().mkpath(notes));
            QFile f(notes + "/a.txt");
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("The lighthouse lamp was repaired in May.\n");
            f.close();
            QSignalSpy imported(w.catalog(), &CatalogClient::importFinished);
            QVERIFY(w.catalog()->startImport("My notes", {notes}));
            QTRY_COMPARE_WITH_TIMEOUT(imported.count(), 1, 30000);
            QTRY_VERIFY(w.memoryView()->selectCollection("My notes"));
            QCOMPARE(w.memoryView()->bankPath(), QDir(m_tmp.filePath("elsewhere")).filePath("My_notes"));
            editLine(w.settingsView(), "settingsBankDir", m_tmp.filePath("third"));
            QCOMPARE(w.memoryView()->bankPath(), QDir(m_tmp.filePath("third")).filePath("My_notes"));
            QCOMPARE(forwarded.count(), 2);
            editLine(w.settingsView(), "settingsCatalog", chosen);
            QCOMPARE(forwarded.count(), 3);
        }
        QSettings settings(ini, QSettings::IniFormat);
        MainWindow next(makeContext(&settings, QString()));
        QCOMPARE(next.catalog()->path(), chosen);
        QSignalSpy opened(next.catalog(), &CatalogClient::opened);
        QTRY_COMPARE(opened.count(), 1);
        QVERIFY(QFile::exists(chosen));
    }

private:
    QTemporaryDir m_tmp;
};

QTEST_MAIN(TestSettingsView)
#include "tst_settings_view.moc"

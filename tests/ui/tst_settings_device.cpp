// tst_settings_device.cpp (label: gui, offscreen): the Settings tab's Device selector (issue 6 item
// 7). It lists Auto (with what auto picks), the CPU, each usable GPU and "all GPUs" when there are
// several; a backend without a usable device is listed disabled with its reason; the choice persists
// in QSettings and comes back in a new window; the status bar and the Memory tab show the device in
// use; the requests the engine threads run carry it (AnswerSetup::device). The GPU registries are
// hand-built (their factory makes a CPU backend): only the selection logic is under test here.
#include "core/jobs/doctor.h"
#include "ui/answer_setup.h"
#include "ui/app_settings.h"
#include "ui/main_window.h"
#include "ui/views/settings_view.h"

#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardItemModel>
#include <QTemporaryDir>
#include <QtTest>

using namespace msa;
using namespace msa::ui;

namespace {

engine::BackendRegistry cpuOnly() {
    engine::BackendRegistry reg = engine::BackendRegistry::withCpu();
    engine::BackendInfo cuda;
    cuda.name = "cuda";
    cuda.reason = "built without CUDA";
    reg.add(cuda);
    return reg;
}

engine::BackendRegistry twoGpus() {
    engine::BackendRegistry reg = engine::BackendRegistry::withCpu();
    engine::BackendInfo cuda;
    cuda.name = "cuda";
    cuda.built = cuda.usable = true;
    for (int i = 0; i < 2; ++i) {
        engine::DeviceInfo d;
        d.id = "cuda:" + std::to_string(i);
        d.name = "Test GPU " + std::to_string(i);
        cuda.devices.push_back(d);
    }
    cuda.create = [](int) -> Result<std::unique_ptr<engine::Backend>> { return engine::createCpuBackend(); };
    reg.add(cuda);
    return reg;
}

UiContext makeContext(QSettings* settings, engine::BackendRegistry registry) {
    UiContext c;
    c.registry = std::move(registry);
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    c.catalogPath = QFileInfo(settings->fileName()).dir().filePath("catalog.sqlite");
    return c;
}

QStringList dataOf(const QComboBox* box) {
    QStringList l;
    for (int i = 0; i < box->count(); ++i) l << box->itemData(i).toString();
    return l;
}

}  // namespace

class TestSettingsDevice : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_tmp.isValid());
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(m_tmp.filePath("no-archive")), 1);
    }

    void cpuBuildListsAutoCpuAndWhyNoGpu() {
        QSettings settings(m_tmp.filePath("cpu.ini"), QSettings::IniFormat);
        SettingsView v(makeContext(&settings, cpuOnly()));
        auto* box = v.findChild<QComboBox*>("settingsDevice");
        QVERIFY(box);
        QCOMPARE(dataOf(box), (QStringList{"auto", "cpu", "cuda"}));
        QCOMPARE(box->currentData().toString(), QString("auto"));   // the default
        QVERIFY2(box->itemText(0).startsWith("Auto (cpu"), qPrintable(box->itemText(0)));
        auto* items = qobject_cast<QStandardItemModel*>(box->model());
        QVERIFY(items);
        QVERIFY(items->item(1)->isEnabled());
        QVERIFY(!items->item(2)->isEnabled());   // greyed, and says why
        QVERIFY2(box->itemText(2).contains("not usable: built without CUDA"), qPrintable(box->itemText(2)));
        const QString note = v.findChild<QLabel*>("settingsDeviceNote")->text();
        QVERIFY2(note.startsWith("Runs on cpu") && note.contains("built without CUDA"), qPrintable(note));
        QVERIFY(v.deviceInUse().startsWith("cpu"));
    }

    void choicePersistsAndComesBack() {
        const QString ini = m_tmp.filePath("gpu.ini");
        {
            QSettings settings(ini, QSettings::IniFormat);
            SettingsView v(makeContext(&settings, twoGpus()));
            auto* box = v.findChild<QComboBox*>("settingsDevice");
            QCOMPARE(dataOf(box), (QStringList{"auto", "cpu", "cuda:0", "cuda:1", "cuda:all"}));
            QVERIFY2(box->itemText(0).contains("cuda:0 (Test GPU 0)"), qPrintable(box->itemText(0)));
            QSignalSpy changed(&v, &SettingsView::settingsChanged);
            box->setCurrentIndex(box->findData("cuda:1"));
            QCOMPARE(changed.count(), 1);
            QCOMPARE(changed.last().at(0).value<AppSettings>().device, QString("cuda:1"));
            QCOMPARE(v.deviceInUse(), QString("cuda:1 (Test GPU 1)"));
            QCOMPARE(v.findChild<QLabel*>("settingsDeviceNote")->text(), QString("Runs on cuda:1 (Test GPU 1)"));
        }
        QSettings settings(ini, QSettings::IniFormat);
        QCOMPARE(settings.value(AppSettings::kDeviceKey).toString(), QString("cuda:1"));
        SettingsView again(makeContext(&settings, twoGpus()));
        QCOMPARE(again.findChild<QComboBox*>("settingsDevice")->currentData().toString(), QString("cuda:1"));
        // The requests of the Chat/Routing tabs' engine thread carry the device.
        const AnswerSetup setup = AnswerSetup::fromSettings(makeContext(&settings, twoGpus()), m_tmp.filePath("c.sqlite"));
        QCOMPARE(setup.device.deviceId, std::string("cuda:1"));
        QCOMPARE(setup.device.devices, std::vector<int>{1});

        // The same settings on a machine without that GPU: Auto is shown, and the note says why.
        SettingsView elsewhere(makeContext(&settings, cpuOnly()));
        QCOMPARE(elsewhere.findChild<QComboBox*>("settingsDevice")->currentData().toString(), QString("auto"));
        const engine::BackendChoice c = deviceChoiceFor(cpuOnly(), "cuda:1");
        QCOMPARE(c.deviceId, std::string("cpu"));
        QVERIFY(c.fellBack);
        QVERIFY2(c.note.find("the stored device 'cuda:1' is not available here") != std::string::npos, c.note.c_str());
    }

    void statusBarAndMemoryTabShowTheDeviceInUse() {
        QSettings settings(m_tmp.filePath("window.ini"), QSettings::IniFormat);
        MainWindow w(makeContext(&settings, twoGpus()));
        QVERIFY2(w.backendStatusText().endsWith("device: cuda:0 (Test GPU 0)"), qPrintable(w.backendStatusText()));
        auto* box = w.findChild<QComboBox*>("settingsDevice");
        box->setCurrentIndex(box->findData("cpu"));
        QVERIFY2(w.backendStatusText().contains("device: cpu"), qPrintable(w.backendStatusText()));
        auto* memoryDevice = w.findChild<QComboBox*>("memoryDevice");
        QVERIFY(memoryDevice);
        QCOMPARE(memoryDevice->currentData().toString(), QString("cpu"));
        box->setCurrentIndex(box->findData("cuda:all"));
        QCOMPARE(memoryDevice->currentData().toString(), QString("cuda:all"));
        QVERIFY2(w.backendStatusText().endsWith("device: cuda:all (2 × Test GPU 0)"), qPrintable(w.backendStatusText()));
    }

private:
    QTemporaryDir m_tmp;
};

QTEST_MAIN(TestSettingsDevice)
#include "tst_settings_device.moc"

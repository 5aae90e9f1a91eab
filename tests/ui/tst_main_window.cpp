// tst_main_window.cpp (label: gui, offscreen): the main window has the five tabs of the design with
// their real widgets, the status bar names the backends and why CUDA is not usable, the window and
// settings are remembered in QSettings, a screenshot has real content (not pixels compared: colour
// variety and per-tab differences), and the msa-workbench executable's --screenshot/--tab work.
// Extend: each new view gets a slot checking its widgets by objectName.
#include "ui/main_window.h"
#include "ui/views/chat_view.h"
#include "ui/views/library_view.h"
#include "ui/views/settings_view.h"

#include <QApplication>
#include <QFileInfo>
#include <QImage>
#include <QLineEdit>
#include <QProcess>
#include <QSettings>
#include <QSpinBox>
#include <QStatusBar>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QtTest>

#include <cstdlib>
#include <unordered_map>

using namespace msa;

namespace {
ui::UiContext makeContext(QSettings* settings) {
    ui::UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    engine::BackendInfo cuda;
    cuda.name = "cuda";
    cuda.reason = "built without CUDA";
    c.registry.add(cuda);
    c.doctor = jobs::runDoctor(c.registry);
    c.settings = settings;
    // Each window gets its own catalog beside its settings file (never the user's).
    c.catalogPath = QFileInfo(settings->fileName()).dir().filePath("catalog.sqlite");
    return c;
}

// Colour statistics of an image: number of distinct colours and the share of the most common one.
struct ColourStats {
    size_t distinct = 0;
    double dominantShare = 1.0;
};
ColourStats colourStats(const QImage& image) {
    std::unordered_map<QRgb, size_t> counts;
    const QImage img = image.convertToFormat(QImage::Format_RGB32);
    for (int y = 0; y < img.height(); ++y) {
        const QRgb* row = reinterpret_cast<const QRgb*>(img.constScanLine(y));
        for (int x = 0; x < img.width(); ++x) ++counts[row[x]];
    }
    size_t top = 0;
    for (const auto& [c, n] : counts) top = std::max(top, n);
    return {counts.size(), img.isNull() ? 1.0 : double(top) / (double(img.width()) * img.height())};
}
}  // namespace

class TestMainWindow : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        // Hermetic demo archive: an archive folder with questions.json beside it (not inside).
        QVERIFY(m_archive.isValid());
        QVERIFY(QDir(m_archive.path()).mkpath("archive"));
        QFile q(m_archive.filePath("questions.json"));
        QVERIFY(q.open(QIODevice::WriteOnly));
        q.write(R"([{"id":"q1","question":"Which town?"},{"id":"q2","question":"Who repaired the boat?","suggested":true}])");
        q.close();
        ::setenv("MSA_DEMO_ARCHIVE", qPrintable(m_archive.filePath("archive")), 1);
    }

    void everyTabExists() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
        ui::MainWindow w(makeContext(&settings));
        QCOMPARE(w.tabs()->count(), 5);
        const QStringList names = {"library", "memory", "chat", "routing", "settings"};
        for (int i = 0; i < names.size(); ++i) {
            QVERIFY(w.selectTab(names[i]));
            QCOMPARE(w.tabs()->currentIndex(), i);
        }
        QVERIFY(!w.selectTab("bogus"));
        // Each view carries its real widgets.
        for (const char* objectName : {"collections", "libraryDocuments", "librarySearch", "documentViewer", "libraryAddFolder",
                                       "importPanel", "importReport", "memoryRatePlot", "memoryDevice",
                                       "chatTranscript", "chatInput", "routingScores", "routingLayers", "settingsTopK",
                                       "settingsDevice", "backendStatus"})
            QVERIFY2(w.findChild<QWidget*>(objectName) != nullptr, objectName);
        // The (empty) demo archive is imported on first run and becomes the one collection.
        QTRY_COMPARE(w.findChild<ui::LibraryView*>()->collectionCount(), 1);
        QTRY_VERIFY(w.findChild<ui::LibraryView*>()->isSettled());
        QCOMPARE(w.findChild<ui::LibraryView*>()->currentCollection(), QString("Demo archive"));
        QCOMPARE(w.findChild<ui::ChatView*>()->suggestedQuestion(), QString("Who repaired the boat?"));
        QCOMPARE(w.findChild<QLineEdit*>("chatInput")->text(), QString("Who repaired the boat?"));
    }

    void statusBarNamesBackends() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
        ui::MainWindow w(makeContext(&settings));
        const QString text = w.backendStatusText();
        QVERIFY2(text.startsWith("CPU"), qPrintable(text));
        QVERIFY2(text.contains("CUDA: built without CUDA"), qPrintable(text));
        QVERIFY(!w.statusBar()->currentMessage().isEmpty());   // demo model ready / missing
    }

    void screenshotHasContent() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath("s.ini"), QSettings::IniFormat);
        ui::MainWindow w(makeContext(&settings));
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QImage shots[5];
        const QStringList names = {"library", "memory", "chat", "routing", "settings"};
        for (int i = 0; i < 5; ++i) {
            w.selectTab(names[i]);
            QCoreApplication::processEvents();
            shots[i] = w.grab().toImage();
            QCOMPARE(shots[i].size(), QSize(1280, 800));
            const ColourStats s = colourStats(shots[i]);
            // Text, frames and plots give dozens of colours (antialiasing); a blank window gives a handful.
            QVERIFY2(s.distinct > 20, qPrintable(names[i] + ": " + QString::number(s.distinct) + " colours"));
            QVERIFY2(s.dominantShare < 0.97, qPrintable(names[i] + ": one colour covers " + QString::number(s.dominantShare)));
        }
        for (int i = 1; i < 5; ++i) QVERIFY2(shots[i] != shots[0], qPrintable(names[i] + " looks like library"));
    }

    void geometryAndTabRemembered() {
        QTemporaryDir dir;
        const QString ini = dir.filePath("s.ini");
        {
            QSettings settings(ini, QSettings::IniFormat);
            ui::MainWindow w(makeContext(&settings));
            w.show();
            QVERIFY(QTest::qWaitForWindowExposed(&w));
            w.resize(1111, 707);
            w.selectTab("routing");
            QVERIFY(w.close());
        }
        QSettings settings(ini, QSettings::IniFormat);
        QVERIFY(settings.contains("mainWindow/geometry"));
        ui::MainWindow again(makeContext(&settings));
        QCOMPARE(again.size(), QSize(1111, 707));
        QCOMPARE(again.tabs()->currentIndex(), 3);
    }

    void settingsPersist() {
        QTemporaryDir dir;
        const QString ini = dir.filePath("s.ini");
        {
            QSettings settings(ini, QSettings::IniFormat);
            ui::MainWindow w(makeContext(&settings));
            auto* topK = w.findChild<QSpinBox*>("settingsTopK");
            QCOMPARE(topK->value(), 16);   // the MSA reference's default k
            topK->setValue(32);
            w.findChild<QSpinBox*>("settingsHops")->setValue(5);
        }
        QSettings settings(ini, QSettings::IniFormat);
        QCOMPARE(settings.value(ui::SettingsView::kTopKKey).toInt(), 32);
        ui::MainWindow again(makeContext(&settings));
        QCOMPARE(again.findChild<QSpinBox*>("settingsTopK")->value(), 32);
        QCOMPARE(again.findChild<QSpinBox*>("settingsHops")->value(), 5);
    }

    void executableScreenshot() {
        QTemporaryDir dir;
        const QString png = dir.filePath("shots/chat.png");   // the folder does not exist yet
        QProcess p;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("QT_QPA_PLATFORM", "offscreen");
        p.setProcessEnvironment(env);
        p.start(QStringLiteral(MSA_WORKBENCH_PATH),
                {"--settings", dir.filePath("s.ini"), "--catalog", dir.filePath("c.sqlite"), "--tab", "chat", "--size",
                 "1280x800", "--screenshot", png});
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
        QImage img(png);
        QVERIFY2(!img.isNull(), "screenshot is not a readable PNG");
        QCOMPARE(img.size(), QSize(1280, 800));
        QVERIFY(colourStats(img).distinct > 20);
        // The first-run import of the demo archive finished before the grab: the catalog has the collection.
        QVERIFY(QFileInfo::exists(dir.filePath("c.sqlite")));

        p.start(QStringLiteral(MSA_WORKBENCH_PATH),
                {"--settings", dir.filePath("s.ini"), "--catalog", dir.filePath("c.sqlite"), "--tab", "bogus"});
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 2);
        QVERIFY(p.readAllStandardError().contains("unknown tab 'bogus'"));
    }

private:
    QTemporaryDir m_archive;
};

QTEST_MAIN(TestMainWindow)
#include "tst_main_window.moc"

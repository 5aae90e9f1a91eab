// workbench_main.cpp: the msa-workbench GUI, a composition root (CONVENTIONS.md #1): it builds the
// backend registry and the start-up facts, creates the settings store and the main window, and runs.
//
// Options:
//   --screenshot FILE   render the window to a PNG once it has laid out, then exit (works with
//                       QT_QPA_PLATFORM=offscreen, so it needs no display)
//   --screenshot-all DIR  the same for every tab in turn: DIR/library.png, memory, chat, routing, settings
//   --tab NAME          open on library|memory|chat|routing|settings
//   --size WxH          initial window size (default: the remembered geometry, else 1280x800)
//   --settings FILE     keep settings in this INI file instead of the user's (tests, demos)
//   --catalog FILE      use this SQLite catalog instead of <AppDataLocation>/catalog.sqlite
//   --bank FOLDER       answer and route over this memory bank (remembered as memory/bank)
//   --build-memory      once the Library has settled, build the memory of the Memory tab's collection
//                       (with --screenshot the picture is taken when that build has finished)
// With --screenshot the Library first settles (first-run demo import finished and its documents listed,
// at most 120 s) so the picture shows real catalog content; with --tab routing and a memory bank in
// place (--bank, or the Memory tab's active bank, QSettings memory/bank) the suggested demo
// question is then routed ("Route only"; --tab routing) or answered (--tab chat), at most 420 s more,
// so the picture shows a real trace or answer.
#include "app/backend_setup.h"
#include "core/jobs/doctor.h"
#include "core/util/build_info.h"
#include "ui/answer_setup.h"
#include "ui/main_window.h"
#include "ui/views/library_view.h"
#include "ui/views/chat_view.h"
#include "ui/views/memory_view.h"
#include "ui/views/routing_view.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <QPixmap>
#include <QSettings>
#include <QTimer>

#include <cstdio>
#include <functional>
#include <memory>

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    QApplication::setOrganizationName("msa-workbench");
    QApplication::setApplicationName("msa-workbench");
    QApplication::setApplicationVersion(QString::fromUtf8(msa::versionString().data(),
                                                          static_cast<int>(msa::versionString().size())));

    QCommandLineParser parser;
    parser.setApplicationDescription("MSA Workbench: chat with your personal archive through Memory Sparse Attention.");
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption screenshotOpt("screenshot", "Render the window to FILE (PNG) and exit.", "FILE");
    const QCommandLineOption screenshotAllOpt("screenshot-all", "Render every tab to DIR/<tab>.png (library, memory, chat, "
                                              "routing, settings) and exit.", "DIR");
    const QCommandLineOption tabOpt("tab", "Open on tab NAME: library, memory, chat, routing, settings.", "NAME");
    const QCommandLineOption sizeOpt("size", "Initial window size WxH, e.g. 1280x800.", "WxH");
    const QCommandLineOption settingsOpt("settings", "Keep settings in this INI FILE.", "FILE");
    const QCommandLineOption catalogOpt("catalog", "Use this SQLite catalog FILE (default: catalog.sqlite in the app data folder).",
                                        "FILE");
    const QCommandLineOption bankOpt("bank", "Answer and route over this memory bank FOLDER (remembered).", "FOLDER");
    const QCommandLineOption buildMemoryOpt("build-memory",
                                            "Build the memory of the Memory tab's collection once the library has settled.");
    parser.addOptions({screenshotOpt, screenshotAllOpt, tabOpt, sizeOpt, settingsOpt, catalogOpt, buildMemoryOpt, bankOpt});
    parser.process(app);   // exits with 0 for --help/--version and 1 with a message for unknown options

    std::unique_ptr<QSettings> settings;
    if (parser.isSet(settingsOpt))
        settings = std::make_unique<QSettings>(parser.value(settingsOpt), QSettings::IniFormat);
    else
        settings = std::make_unique<QSettings>();

    // First start: nothing stored yet (decided before --bank stores anything). Pictures and scripted
    // builds skip the automatic first-run build (they choose their own work).
    const bool firstRun = settings->allKeys().isEmpty();
    if (parser.isSet(bankOpt))
        settings->setValue(msa::ui::AnswerSetup::kBankKey, QFileInfo(parser.value(bankOpt)).absoluteFilePath());

    msa::ui::UiContext context;
    context.registry = msa::app::makeBackendRegistry();
    context.doctor = msa::jobs::runDoctor(context.registry);
    context.settings = settings.get();
    context.firstRun = firstRun && !parser.isSet(screenshotOpt) && !parser.isSet(screenshotAllOpt) && !parser.isSet(buildMemoryOpt);
    if (parser.isSet(catalogOpt)) context.catalogPath = QFileInfo(parser.value(catalogOpt)).absoluteFilePath();

    msa::ui::MainWindow window(std::move(context));
    if (parser.isSet(tabOpt) && !window.selectTab(parser.value(tabOpt))) {
        std::fprintf(stderr, "msa-workbench: usage error: unknown tab '%s' (library, memory, chat, routing, settings)\n",
                     qPrintable(parser.value(tabOpt)));
        return 2;
    }
    if (parser.isSet(sizeOpt)) {
        const QStringList wh = parser.value(sizeOpt).split('x');
        bool okW = false, okH = false;
        const int w = wh.value(0).toInt(&okW), h = wh.value(1).toInt(&okH);
        if (wh.size() != 2 || !okW || !okH || w < 200 || h < 200) {
            std::fprintf(stderr, "msa-workbench: usage error: --size wants WxH, e.g. 1280x800\n");
            return 2;
        }
        window.resize(w, h);
    }
    window.show();

    // --build-memory: start the build when the Library has settled; `then` runs when it has finished
    // (or at once when it could not start: the Memory tab shows why).
    const bool buildMemory = parser.isSet(buildMemoryOpt);
    auto whenBuilt = [&window](std::function<void()> then) {
        msa::ui::MemoryView* memory = window.memoryView();
        const QMetaObject::Connection done = QObject::connect(
            memory, &msa::ui::MemoryView::buildFinished, &window, [then](bool, bool) { then(); }, Qt::SingleShotConnection);
        if (!memory->startBuild()) {
            std::fprintf(stderr, "msa-workbench: the memory build did not start (see the Memory tab)\n");
            QObject::disconnect(done);
            then();
        }
    };
    if (buildMemory && !parser.isSet(screenshotOpt) && !parser.isSet(screenshotAllOpt)) {
        msa::ui::LibraryView* library = window.libraryView();
        auto start = [whenBuilt] { whenBuilt([] {}); };
        if (library->isSettled()) start();
        else QObject::connect(library, &msa::ui::LibraryView::settled, &window, start, Qt::SingleShotConnection);
    }

    if (parser.isSet(screenshotOpt) || parser.isSet(screenshotAllOpt)) {
        // Pictures: one FILE of the --tab tab, or (--screenshot-all DIR) DIR/<tab>.png of every tab in order.
        struct Shot { QString tab, path; };
        auto shots = std::make_shared<std::vector<Shot>>();
        if (parser.isSet(screenshotAllOpt)) {
            const QString dir = parser.value(screenshotAllOpt);
            for (const char* t : {"library", "memory", "chat", "routing", "settings"})
                shots->push_back({QString::fromLatin1(t), QDir(dir).filePath(QString::fromLatin1(t) + ".png")});
        } else {
            shots->push_back({parser.value(tabOpt), parser.value(screenshotOpt)});
        }
        // Grab the window itself (no display server is needed; BUILD-NOTES "Screenshots").
        auto save = [&window](const QString& path) {
            const QPixmap shot = window.grab();
            const QFileInfo info(path);
            if (!info.absoluteDir().exists()) QDir().mkpath(info.absolutePath());
            if (shot.isNull() || !shot.save(path, "PNG")) {
                std::fprintf(stderr, "msa-workbench: io_error: cannot write screenshot '%s'\n", qPrintable(path));
                return false;
            }
            std::printf("msa-workbench: screenshot written to %s (%dx%d)\n", qPrintable(path), shot.width(), shot.height());
            std::fflush(stdout);
            return true;
        };
        msa::ui::LibraryView* library = window.libraryView();
        // With a memory bank in place, the Routing and Chat pictures show real work: the suggested
        // question routed (Routing) or answered (Chat), waiting at most 420 s for it (several hops of a
        // small model on a few cores). `next` runs after the picture.
        auto shootTab = [&window, save](const Shot& shot, std::function<void(bool)> next) {
            if (!shot.tab.isEmpty()) window.selectTab(shot.tab);
            auto done = std::make_shared<bool>(false);
            auto finish = [done, &window, save, shot, next] {
                if (*done) return;
                *done = true;
                QTimer::singleShot(300, &window, [save, shot, next] { next(save(shot.path)); });
            };
            bool started = false;
            msa::ui::RoutingView* routing = window.routingView();
            msa::ui::ChatView* chat = window.chatView();
            // After the Chat picture (--screenshot-all) the Routing tab already holds that answer's trace,
            // every hop: show it rather than a one-hop "Route only".
            if (shot.tab == QLatin1String("routing") && routing->trace().hops.empty() && routing->routeQuestion()) {
                QObject::connect(routing, &msa::ui::RoutingView::routeFinished, &window, finish, Qt::SingleShotConnection);
                started = true;
            } else if (shot.tab == QLatin1String("chat") && chat->ask(chat->suggestedQuestion())) {
                QObject::connect(chat, &msa::ui::ChatView::answerFinished, &window, finish, Qt::SingleShotConnection);
                started = true;
            }
            if (!started) {
                QTimer::singleShot(600, &window, finish);
                return;
            }
            QTimer::singleShot(420000, &window, [finish, done] {
                if (*done) return;
                std::fprintf(stderr, "msa-workbench: the question did not finish within 420 s; taking the screenshot anyway\n");
                finish();
            });
        };
        // Shots one after another; the window closes (saving its state like a user) after the last.
        auto runShots = std::make_shared<std::function<void(size_t, bool)>>();
        *runShots = [&window, shots, shootTab, runShots](size_t i, bool allOk) {
            if (i >= shots->size()) {
                window.close();
                QApplication::exit(allOk ? 0 : 4);
                *runShots = nullptr;   // break the self-reference
                return;
            }
            shootTab((*shots)[i], [runShots, i, allOk](bool ok) { (*runShots)(i + 1, allOk && ok); });
        };
        // Wait for the Library to settle (first-run import done, documents listed), at most 120 s; open
        // the newest document too, so the picture shows the viewer with text and segments.
        auto shoot = [library, buildMemory, whenBuilt, runShots] {
            library->selectFirstDocument();
            auto all = [runShots] { (*runShots)(0, true); };
            if (buildMemory) whenBuilt(all);
            else all();
        };
        if (library->isSettled()) {
            shoot();
        } else {
            auto fired = std::make_shared<bool>(false);
            auto once = [fired, shoot] {
                if (*fired) return;
                *fired = true;
                shoot();
            };
            QObject::connect(library, &msa::ui::LibraryView::settled, &window, once);
            QTimer::singleShot(120000, &window, [once, fired] {
                if (*fired) return;   // settled in time (a --build-memory build or the question may still be running)
                std::fprintf(stderr, "msa-workbench: the library did not settle within 120 s; taking the screenshot anyway\n");
                once();
            });
        }
    }
    return QApplication::exec();
}

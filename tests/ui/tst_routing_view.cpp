// tst_routing_view.cpp (label: gui, offscreen): the Routing inspector on a synthetic two-hop trace —
// the bar chart has one bar per document in the layers' top-N with the cited one in the cited series
// at its best score; the heat map is layers × documents with the chosen hop's scores (NaN where a
// document is not in a layer's top-N) and changes with the hop; the hop graph has the question plus
// the selected/injected documents of each hop; the table has one row per layer; clicking a bar, a graph
// node and a table row emits openDocument with that document's id. The converters: `msa route` output
// → one-hop trace, `[n]` citations, an answer's trace (injected = documents given to the model,
// citations = those the answer cites). "Route only" on a bank built here from the tiny MSA checkpoint
// (tests/fixtures/models/msa-qwen3-bf16, routing layers 2 and 3) shows a one-hop trace of bank documents.
#include "ui/answer_host.h"
#include "ui/trace_convert.h"
#include "ui/views/routing_view.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"

#include <QComboBox>
#include <QGraphicsItem>
#include <QGraphicsScene>
#include <QGraphicsView>
#include <QSettings>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>

#include <qcustomplot.h>

#include <cmath>
#include <fstream>
#include <set>

using namespace msa;
using namespace msa::ui;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

memory::TraceLayer layer(int index, std::vector<std::tuple<int64_t, float, bool>> docs) {
    memory::TraceLayer l;
    l.layer = index;
    for (auto [id, score, sel] : docs) l.top.push_back({id, score, sel, "doc " + std::to_string(id)});
    return l;
}

// Hop 0: layers 2, 3, 5 over documents 11..15; hop 1: layers 2, 3, 5 over 12, 16, 17.
memory::RoutingTrace syntheticTrace() {
    memory::RoutingTrace t;
    t.question = "Who repaired the boat?";
    t.method = "training-free";
    t.topK = 2;
    memory::TraceHop h0;
    h0.hop = 0;
    h0.layers = {layer(2, {{11, 0.9f, true}, {12, 0.8f, true}, {13, 0.5f, false}}),
                 layer(3, {{12, 0.7f, true}, {14, 0.6f, true}, {11, 0.4f, false}}),
                 layer(5, {{11, 0.95f, true}, {15, 0.3f, true}, {13, 0.2f, false}})};
    h0.injected = {11, 12};
    memory::TraceHop h1;
    h1.hop = 1;
    h1.layers = {layer(2, {{16, 0.85f, true}, {12, 0.6f, true}}),
                 layer(3, {{17, 0.75f, true}, {16, 0.5f, true}}),
                 layer(5, {{16, 0.65f, true}, {11, 0.1f, false}})};
    h1.injected = {16};
    t.hops = {h0, h1};
    t.citations = {12};
    t.aggregate();
    return t;
}

UiContext makeContext(QSettings* settings) {
    UiContext c;
    c.registry = engine::BackendRegistry::withCpu();
    c.settings = settings;
    return c;
}

QPoint barCenter(QCustomPlot* plot, double key, double value) {
    return QPoint(qRound(plot->xAxis->coordToPixel(key)), qRound(plot->yAxis->coordToPixel(value / 2)));
}
}  // namespace

class TestRoutingView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QVERIFY(m_dir.isValid());
        m_settings = std::make_unique<QSettings>(m_dir.filePath("s.ini"), QSettings::IniFormat);
    }

    void rendersSyntheticTrace() {
        RoutingView view(makeContext(m_settings.get()), nullptr);
        view.resize(1280, 760);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        const memory::RoutingTrace t = syntheticTrace();
        view.showTrace(t);

        // (a) one bar per document of the aggregate (7 distinct documents), cited one in the cited series.
        QCOMPARE(t.documents.size(), size_t(7));
        QCOMPARE(view.chartDocuments().size(), size_t(7));
        const int nBars = view.citedBars()->data()->size() + view.selectedBars()->data()->size() + view.otherBars()->data()->size();
        QCOMPARE(nBars, 7);
        QCOMPARE(view.citedBars()->data()->size(), 1);
        const double citedKey = view.citedBars()->data()->constBegin()->key;
        QCOMPARE(view.chartDocuments()[static_cast<size_t>(citedKey)], int64_t(12));
        QCOMPARE(view.citedBars()->data()->constBegin()->value, double(0.8f));   // 12's best score over hops and layers
        // 13 was never selected: the grey series; every other document was chosen by a layer.
        QCOMPARE(view.otherBars()->data()->size(), 1);
        QCOMPARE(view.chartDocuments()[static_cast<size_t>(view.otherBars()->data()->constBegin()->key)], int64_t(13));

        // (b) heat map: 7 documents × 3 layers of hop 0.
        QCPColorMapData* heat = view.heatMap()->data();
        QCOMPARE(heat->keySize(), 7);
        QCOMPARE(heat->valueSize(), 3);
        auto column = [&](int64_t id) {
            const auto& docs = view.chartDocuments();
            return static_cast<int>(std::find(docs.begin(), docs.end(), id) - docs.begin());
        };
        QCOMPARE(heat->cell(column(11), 0), double(0.9f));
        QCOMPARE(heat->cell(column(14), 1), double(0.6f));
        QCOMPARE(heat->cell(column(15), 2), double(0.3f));
        QVERIFY(std::isnan(heat->cell(column(16), 0)));   // hop-1 document: not in hop 0's layers
        QCOMPARE(view.heatMap()->gradient().nanHandling(), QCPColorGradient::nhTransparent);   // drawn blank
        QCOMPARE(view.layerTable()->rowCount(), 3);
        QCOMPARE(view.layerTable()->item(0, 0)->text(), QString("2"));
        QVERIFY(view.layerTable()->item(0, 1)->text().contains("[11]"));
        QVERIFY(view.layerTable()->item(0, 1)->text().contains("[12]"));
        QVERIFY(!view.layerTable()->item(0, 1)->text().contains("[13]"));

        // Hop 1 changes the heat map and the table, not the bars.
        view.findChild<QComboBox*>("routingHop")->setCurrentIndex(1);
        QCOMPARE(view.currentHop(), 1);
        QCOMPARE(heat->cell(column(16), 0), double(0.85f));
        QCOMPARE(heat->cell(column(17), 1), double(0.75f));
        QVERIFY(std::isnan(heat->cell(column(14), 1)));
        QVERIFY(view.layerTable()->item(1, 1)->text().contains("[17]"));
        QCOMPARE(nBars, view.citedBars()->data()->size() + view.selectedBars()->data()->size() + view.otherBars()->data()->size());

        // (c) graph: the question + hop 0's chosen/injected {11, 12, 14, 15} + hop 1's {16, 12, 17}.
        QCOMPARE(view.graphNodeCount(), 1 + 4 + 3);
        std::multiset<qint64> nodeIds;
        for (QGraphicsItem* item : view.graphScene()->items())
            if (item->type() == QGraphicsEllipseItem::Type && item->data(0).isValid()) nodeIds.insert(item->data(0).toLongLong());
        QCOMPARE(nodeIds, (std::multiset<qint64>{11, 12, 14, 15, 16, 12, 17}));
    }

    void clickingADocumentOpensIt() {
        RoutingView view(makeContext(m_settings.get()), nullptr);
        view.resize(1280, 760);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.showTrace(syntheticTrace());
        QSignalSpy open(&view, &RoutingView::openDocument);

        // A bar: the cited document's.
        QCustomPlot* plot = view.scorePlot();
        plot->replot();
        const auto bar = view.citedBars()->data()->constBegin();
        QTest::mouseClick(plot, Qt::LeftButton, Qt::NoModifier, barCenter(plot, bar->key, bar->value));
        QCOMPARE(open.count(), 1);
        QCOMPARE(open.at(0).at(0).toLongLong(), qint64(12));

        // A node of the hop graph: document 17 (hop 1 only).
        QGraphicsItem* node17 = nullptr;
        for (QGraphicsItem* item : view.graphScene()->items())
            if (item->type() == QGraphicsEllipseItem::Type && item->data(0).toLongLong() == 17) node17 = item;
        QVERIFY(node17);
        QGraphicsView* gv = view.graphView();
        gv->ensureVisible(node17);
        const QPoint p = gv->mapFromScene(node17->sceneBoundingRect().center());
        QTest::mouseClick(gv->viewport(), Qt::LeftButton, Qt::NoModifier, p);
        QCOMPARE(open.count(), 2);
        QCOMPARE(open.at(1).at(0).toLongLong(), qint64(17));

        // The table: a double-click on layer 3's row opens its best chosen document (12 at 0.7).
        emit view.layerTable()->cellDoubleClicked(1, 1);
        QCOMPARE(open.count(), 3);
        QCOMPARE(open.at(2).at(0).toLongLong(), qint64(12));
    }

    void convertsRouteAndAskReports() {
        jobs::RouteReport r;
        r.question = "q";
        r.topK = 1;
        r.layers = {{2, {{5, 0.9f, "five"}}, {{5, 0.9f, "five"}, {7, 0.4f, "seven"}}},
                    {3, {{7, 0.8f, "seven"}}, {{7, 0.8f, "seven"}, {5, 0.1f, "five"}}}};
        r.overall = {{5, 1, 0.9f, "five"}, {7, 1, 0.8f, "seven"}};
        const memory::RoutingTrace t = traceFromRoute(r);
        QCOMPARE(t.hops.size(), size_t(1));
        QCOMPARE(t.hops[0].layers.size(), size_t(2));
        QCOMPARE(t.hops[0].layers[1].layer, 3);
        QVERIFY(t.hops[0].layers[0].top[0].selected);
        QVERIFY(!t.hops[0].layers[0].top[1].selected);
        QCOMPARE(t.documents.size(), size_t(2));
        QCOMPARE(t.documents[0].id, int64_t(5));   // ties on votes: best score first
        QCOMPARE(t.documents[0].title, std::string("five"));
        QVERIFY(t.citations.empty());
        QCOMPARE(t.method.rfind("route only", 0), size_t(0));

        QCOMPARE(citedIds("As [7] and [5, 9] say; see [7]. [x] [] [12"), (std::vector<int64_t>{7, 5, 9}));

        jobs::AskReport a;
        a.routing = r;
        a.used = {r.overall[1], r.overall[0]};
        a.answer = "It was Anna [7], not [99].";
        const memory::RoutingTrace at = traceFromAsk(a);
        QCOMPARE(at.hops[0].injected, (std::vector<int64_t>{7, 5}));
        QCOMPARE(at.citations, (std::vector<int64_t>{7}));   // 99 was not given to the model
        QCOMPARE(at.answer, a.answer);
        QCOMPARE(at.method, std::string("training-free"));
        bool sevenCited = false;
        for (const auto& d : at.documents) sevenCited = sevenCited || (d.id == 7 && d.cited);
        QVERIFY(sevenCited);
    }

    void routeOnlyOnARealBank() {
        // A small catalog and a bank of it built with the tiny MSA checkpoint.
        QVERIFY(QDir(m_dir.path()).mkpath("files"));
        const char* notes[] = {"the cello top is cut from old spruce from the Jura", "the boat Wenna was refitted in March",
                               "kelp forests grow fast in cold water", "the lifeboat house was built from a wrecked barque"};
        for (int i = 0; i < 4; ++i) std::ofstream(m_dir.filePath(QString("files/n%1.txt").arg(i)).toStdString()) << notes[i] << ".\n";
        const std::string catalogPath = m_dir.filePath("c.sqlite").toStdString();
        {
            auto cat = catalog::Catalog::open(catalogPath);
            QVERIFY(cat.ok());
            catalog::ImportRequest req;
            req.collection = "notes";
            req.paths = {m_dir.filePath("files").toStdString()};
            QVERIFY(catalog::importPaths(*cat, req, {}, nullptr).ok());
        }
        jobs::BuildOptions b;
        b.catalog = catalogPath;
        b.collection = "notes";
        b.model = kMsa;
        b.bank = m_dir.filePath("bank").toStdString();
        b.nThreads = 2;
        auto built = jobs::buildMemory(b);
        QVERIFY2(built.ok(), built.status().toString().c_str());
        QCOMPARE(built->bankDocuments, uint64_t(4));

        AnswerClient engine;
        RoutingView view(makeContext(m_settings.get()), &engine);
        auto* route = view.findChild<QPushButton*>("routingRouteOnly");
        AnswerSetup setup;
        setup.model = QString::fromStdString(kMsa);
        setup.catalog = QString::fromStdString(catalogPath);
        setup.bank = m_dir.filePath("missing-bank");
        view.setSetup(setup);
        QVERIFY(!route->isEnabled());
        QVERIFY(!view.routeQuestion());
        setup.bank = QString::fromStdString(b.bank.string());
        view.setSetup(setup);
        QVERIFY(route->isEnabled());
        view.setQuestion("Where does the spruce of the cello top come from?");
        QSignalSpy finished(&view, &RoutingView::routeFinished);
        QVERIFY(view.routeQuestion());
        QVERIFY(!route->isEnabled());   // one job at a time
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 60000);
        QCOMPARE(finished.at(0).at(0).toBool(), true);
        QTRY_VERIFY(route->isEnabled());
        const memory::RoutingTrace& t = view.trace();
        QCOMPARE(t.hops.size(), size_t(1));
        QCOMPARE(t.hops[0].layers.size(), size_t(2));   // the checkpoint's routing layers
        QCOMPARE(t.hops[0].layers[0].layer, 2);
        QCOMPARE(t.hops[0].layers[1].layer, 3);
        auto cat = catalog::Catalog::open(catalogPath);
        QVERIFY(cat.ok());
        auto docs = cat->memoryDocuments("notes");
        QVERIFY(docs.ok());
        std::set<int64_t> bankIds;
        for (const auto& d : *docs) bankIds.insert(d.id);
        QCOMPARE(t.documents.size(), size_t(4));
        for (const auto& d : t.documents) {
            QVERIFY(bankIds.count(d.id));
            QVERIFY(!d.title.empty());
        }
        QCOMPARE(static_cast<size_t>(view.layerTable()->rowCount()), size_t(2));
        QCOMPARE(view.heatMap()->data()->keySize(), 4);
        QCOMPARE(view.heatMap()->data()->valueSize(), 2);
    }

private:
    QTemporaryDir m_dir;
    std::unique_ptr<QSettings> m_settings;
};

QTEST_MAIN(TestRoutingView)
#include "tst_routing_view.moc"

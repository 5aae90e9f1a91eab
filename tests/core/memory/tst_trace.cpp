// tst_trace.cpp: the routing trace's aggregate (votes, hops, best/mean score, citations; ordering)
// and its JSON round trip, and that a malformed stored trace is refused with Corrupt, not half read.
#include "core/memory/trace.h"

#include <nlohmann/json.hpp>

#include <QtTest>

using namespace msa;
using namespace msa::memory;

class TstTrace : public QObject {
    Q_OBJECT
private:
    static RoutingTrace sample() {
        RoutingTrace t;
        t.question = "Where did Ines tune the cello?";
        t.method = "training-free";
        t.topK = 2;
        TraceHop h0;
        h0.hop = 0;
        h0.layers = {{4, {{7, 0.9f, true, "a.md"}, {3, 0.5f, true, "b.md"}, {9, 0.1f, false, "c.md"}}},
                     {5, {{3, 0.8f, true, "b.md"}, {9, 0.7f, true, "c.md"}, {7, 0.2f, false, "a.md"}}}};
        TraceHop h1;
        h1.hop = 1;
        h1.layers = {{4, {{3, 0.6f, true, "b.md"}, {11, 0.4f, true, ""}}}};
        t.hops = {h0, h1};
        t.citations = {9, 42};
        return t;
    }
private slots:
    void aggregateCountsVotesHopsAndScores() {
        RoutingTrace t = sample();
        t.aggregate();
        QCOMPARE(t.documents.size(), size_t(5));   // 3, 7, 9, 11 and the cited-only 42
        // 3 was selected by three (hop, layer) pairs in two hops: first.
        QCOMPARE(t.documents[0].id, int64_t(3));
        QCOMPARE(t.documents[0].layerVotes, size_t(3));
        QCOMPARE(t.documents[0].hops, size_t(2));
        QCOMPARE(t.documents[0].bestScore, 0.8f);
        QVERIFY(std::abs(t.documents[0].meanScore - (0.5f + 0.8f + 0.6f) / 3) < 1e-6f);
        QCOMPARE(t.documents[0].title, std::string("b.md"));
        // 7 (one vote, best 0.9) before 9 (one vote, best 0.7) before 11 (one vote, 0.4).
        QCOMPARE(t.documents[1].id, int64_t(7));
        QCOMPARE(t.documents[2].id, int64_t(9));
        QVERIFY(t.documents[2].cited);
        QVERIFY(!t.documents[1].cited);
        QCOMPARE(t.documents[3].id, int64_t(11));
        QCOMPARE(t.documents[4].id, int64_t(42));
        QCOMPARE(t.documents[4].layerVotes, size_t(0));
        QVERIFY(t.documents[4].cited);
    }
    void jsonRoundTrip() {
        RoutingTrace t = sample();
        t.hops[0].generatedIds = {3, 7};
        t.hops[0].injected = {3, 7};
        t.hops[0].text = "[3][7]<|object_ref_end|>";
        t.answer = "In Bergen.";
        t.seconds = 1.5;
        t.aggregate();
        const nlohmann::json j = toJson(t);
        auto back = traceFromJson(nlohmann::json::parse(j.dump()));
        QVERIFY2(back.ok(), back.status().toString().c_str());
        QCOMPARE(toJson(*back).dump(), j.dump());
        QCOMPARE(back->hops[0].layers[1].top[1].id, int64_t(9));
        QCOMPARE(back->hops[0].text, t.hops[0].text);
    }
    void malformedIsCorrupt() {
        nlohmann::json j = toJson(sample());
        j["hops"][0].erase("layers");
        auto r = traceFromJson(j);
        QVERIFY(!r.ok());
        QCOMPARE(r.status().code(), ErrorCode::Corrupt);
        QVERIFY(!traceFromJson(nlohmann::json{{"question", "x"}}).ok());
    }
};

QTEST_GUILESS_MAIN(TstTrace)
#include "tst_trace.moc"

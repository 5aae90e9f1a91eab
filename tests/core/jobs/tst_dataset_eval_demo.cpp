// tst_dataset_eval_demo.cpp: `msa eval` end to end with the demo model (SmolLM2-135M-Instruct, found
// by findDemoModel(); skipped when absent) on the LoCoMo-shaped fixture: one memory of the three
// sessions, routing and BM25 recall per question, answers generated and scored, and the second run
// reusing the bank.
#include "core/jobs/dataset_eval.h"
#include "core/util/paths.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

using namespace msa;
using namespace msa::jobs;

class TestDatasetEvalDemo : public QObject {
    Q_OBJECT
private slots:
    void locomoWithAnswers() {
        const auto model = findDemoModel();
        if (model.empty()) QSKIP("the demo model (SmolLM2-135M-Instruct.Q4_1.gguf) is not installed: run packaging/setup.sh");
        QTemporaryDir dir;
        DatasetEvalRequest r;
        r.dataset = MSA_SOURCE_DIR "/tests/fixtures/eval/locomo-mini.json";
        r.model = model;
        r.workdir = dir.filePath("work").toStdString();
        r.k = 3;
        r.answers = true;
        r.maxAnswerTokens = 24;
        auto a = evaluateDataset(r);
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->format, std::string("locomo"));
        QCOMPARE(a->nMemoryDocuments, size_t(3));
        QCOMPARE(a->build.nEncoded, uint64_t(3));
        QCOMPARE(a->questions.size(), size_t(5));
        QCOMPARE(a->nScored, size_t(5));
        QCOMPARE(a->nAnswerScored, size_t(4));   // the adversarial question has no gold answer
        QVERIFY(!a->layers.empty());
        for (const auto& q : a->questions) {
            QCOMPARE(q.layers.size(), a->layers.size());
            for (const auto& l : q.layers) QCOMPARE(l.atK, 1.0);   // k = every document
            QVERIFY(q.answered);
            QVERIFY(!q.answer.empty());
            QVERIFY(q.exactMatch == 0.0 || q.exactMatch == 1.0);
            QVERIFY(q.f1 >= 0.0 && q.f1 <= 1.0);
        }
        // "ines", "flat", "bakery" occur only in conv-b's session: BM25 ranks it first.
        QCOMPARE(a->questions[3].bm25.at1, 1.0);
        QCOMPARE(a->questions[3].bm25Top.front(), std::string("conv-b/session_1"));
        r.answers = false;
        auto b = evaluateDataset(r);
        QVERIFY2(b.ok(), b.status().toString().c_str());
        QCOMPARE(b->build.nEncoded, uint64_t(0));
        for (size_t i = 0; i < 5; ++i) QCOMPARE(b->questions[i].routedTop, a->questions[i].routedTop);
        qInfo("demo model on locomo-mini: routing R@1 %.2f, BM25 R@1 %.2f, EM %.2f, F1 %.2f, %.1f s", a->routed.at1, a->bm25.at1,
              a->exactMatch, a->f1, a->seconds);
    }
};

QTEST_GUILESS_MAIN(TestDatasetEvalDemo)
#include "tst_dataset_eval_demo.moc"

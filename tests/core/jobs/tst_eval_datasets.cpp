// tst_eval_datasets.cpp: the evaluation data sets of `msa eval` — format detection, the MuSiQue and
// LoCoMo loaders on small committed fixtures (tests/fixtures/eval, original text) and on the real
// files of ../shared/data/eval when present, malformed input (Corrupt naming the field and the
// question), the SQuAD v1.1 answer metrics (expectations written from the official evaluation
// script's rules: lower → drop punctuation → drop a/an/the → collapse white space; F1 over the
// multiset of tokens, 0 when nothing is shared), recall@k, the FTS5 query sanitiser, and an end-to-end
// evaluateDataset on the tiny MSA checkpoint (memory built once, reused on the second run).
#include "core/catalog/catalog.h"
#include "core/jobs/dataset_eval.h"
#include "core/jobs/eval_datasets.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

#include <filesystem>
#include <fstream>

using namespace msa;
using namespace msa::jobs;
using nlohmann::json;

namespace {
const std::string kFixtures = MSA_SOURCE_DIR "/tests/fixtures/eval";
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

json readJson(const std::string& path) { return json::parse(std::ifstream(path)); }
}  // namespace

class TestEvalDatasets : public QObject {
    Q_OBJECT
private slots:
    void detectsFormats() {
        QCOMPARE(*detectDatasetFile(kFixtures + "/musique-mini.json"), DatasetFormat::Musique);
        QCOMPARE(*detectDatasetFile(kFixtures + "/locomo-mini.json"), DatasetFormat::Locomo);
        QCOMPARE(*detectDatasetFile(MSA_SOURCE_DIR "/resources/demo/questions.json"), DatasetFormat::DemoQuestions);
        QCOMPARE(detectDatasetFormat(json::object()).status().code(), ErrorCode::Unsupported);
        QCOMPARE(detectDatasetFormat(json::array()).status().code(), ErrorCode::InvalidArgument);
        QCOMPARE(detectDatasetFormat(json::parse(R"([{"foo": 1}])")).status().code(), ErrorCode::Unsupported);
        QCOMPARE(detectDatasetFile("/nonexistent/eval.json").status().code(), ErrorCode::NotFound);
        // The demo format is detected but not loaded here (it needs an existing bank and catalog).
        QCOMPARE(loadEvalDataset(MSA_SOURCE_DIR "/resources/demo/questions.json").status().code(), ErrorCode::Unsupported);
    }

    void loadsMusique() {
        auto ds = loadEvalDataset(kFixtures + "/musique-mini.json");
        QVERIFY2(ds.ok(), ds.status().toString().c_str());
        QCOMPARE(ds->format, DatasetFormat::Musique);
        // 11 paragraphs, 7 distinct: shared paragraphs become one memory document.
        QCOMPARE(ds->documents.size(), size_t(7));
        QCOMPARE(ds->documents[0].key, std::string("p00000"));
        QCOMPARE(ds->documents[1].title, std::string("Pelmouth"));
        QCOMPARE(ds->documents[1].content().rfind("Pelmouth\n\nPelmouth is a small market town", 0), size_t(0));
        QCOMPARE(ds->questions.size(), size_t(3));
        const auto& q0 = ds->questions[0];
        QCOMPARE(q0.id, std::string("2hop__1_2"));
        QCOMPARE(q0.category, std::string("2hop"));
        QCOMPARE(q0.answers, (std::vector<std::string>{"the Wend", "River Wend", "Wend River"}));
        QCOMPARE(q0.gold, (std::vector<size_t>{0, 1}));
        QCOMPARE(q0.context, (std::vector<size_t>{0, 1, 2, 3}));
        QCOMPARE(ds->questions[1].gold, (std::vector<size_t>{1, 4}));   // Pelmouth is shared with question 0
        QCOMPARE(ds->questions[1].answers, (std::vector<std::string>{"1907"}));
        QCOMPARE(ds->questions[2].gold, (std::vector<size_t>{0, 5}));
        QCOMPARE(ds->questions[2].category, std::string("3hop"));

        // Limiting questions keeps the whole memory unless asked; restricting re-indexes the gold.
        const EvalDataset all = limitDataset(*ds, 1, false);
        QCOMPARE(all.documents.size(), size_t(7));
        QCOMPARE(all.questions.size(), size_t(1));
        const EvalDataset own = limitDataset(*ds, 2, true);
        QCOMPARE(own.documents.size(), size_t(5));   // q0's 4 paragraphs + Wend Bridge
        QCOMPARE(own.documents[4].title, std::string("Wend Bridge"));
        QCOMPARE(own.questions[1].gold, (std::vector<size_t>{1, 4}));
    }

    void loadsLocomo() {
        auto ds = loadEvalDataset(kFixtures + "/locomo-mini.json");
        QVERIFY2(ds.ok(), ds.status().toString().c_str());
        QCOMPARE(ds->format, DatasetFormat::Locomo);
        QCOMPARE(ds->documents.size(), size_t(3));   // one memory document per session
        QCOMPARE(ds->documents[0].key, std::string("conv-a/session_1"));
        QCOMPARE(ds->documents[2].key, std::string("conv-b/session_1"));
        QCOMPARE(ds->documents[1].title, std::string("conv-a session 2 (6:45 pm on 20 March, 2024)"));
        QVERIFY(ds->documents[1].text.find("Tamsin: It cracked in the kiln, so I am making a mug instead. "
                                           "[shares a photo: a photo of a lopsided clay mug]\n") != std::string::npos);
        QCOMPARE(ds->questions.size(), size_t(5));
        QCOMPARE(ds->questions[0].gold, (std::vector<size_t>{0}));
        QCOMPARE(ds->questions[0].category, std::string("1"));
        // "D1:3; D2:2" in one entry names two sessions.
        QCOMPARE(ds->questions[1].gold, (std::vector<size_t>{0, 1}));
        QCOMPARE(ds->questions[1].goldTurns, (std::vector<std::string>{"D1:3", "D2:2"}));
        // Adversarial: no gold answer; the bogus evidence id "D" is dropped and counted.
        QVERIFY(ds->questions[2].answers.empty());
        QCOMPARE(ds->questions[2].gold, (std::vector<size_t>{1}));
        QCOMPARE(ds->questions[2].nUnresolvedEvidence, size_t(1));
        // Dia ids are per conversation: conv-b's D1:1 is conv-b's session, not conv-a's.
        QCOMPARE(ds->questions[3].id, std::string("conv-b#0"));
        QCOMPARE(ds->questions[3].gold, (std::vector<size_t>{2}));
        QCOMPARE(ds->questions[3].answers, (std::vector<std::string>{"2021"}));   // a number in the file
        QCOMPARE(ds->questions[3].context, (std::vector<size_t>{2}));
        QCOMPARE(ds->questions[0].context, (std::vector<size_t>{0, 1}));
    }

    void malformedInputIsCorruptNamingFieldAndQuestion() {
        json m = readJson(kFixtures + "/musique-mini.json");
        m[1]["paragraphs"][1]["paragraph_text"] = 42;
        auto r = parseEvalDataset(m, "m.json");
        QCOMPARE(r.status().code(), ErrorCode::Corrupt);
        QVERIFY2(r.status().message().find("question 1") != std::string::npos &&
                     r.status().message().find("paragraphs[1]") != std::string::npos &&
                     r.status().message().find("paragraph_text") != std::string::npos,
                 r.status().message().c_str());
        json m2 = readJson(kFixtures + "/musique-mini.json");
        m2[2].erase("question");
        r = parseEvalDataset(m2, "m.json");
        QCOMPARE(r.status().code(), ErrorCode::Corrupt);
        QVERIFY(r.status().message().find("question 2: missing field question") != std::string::npos);
        json m3 = readJson(kFixtures + "/musique-mini.json");
        m3[0]["paragraphs"][0]["is_supporting"] = "yes";
        QCOMPARE(parseEvalDataset(m3, "m.json").status().code(), ErrorCode::Corrupt);

        json l = readJson(kFixtures + "/locomo-mini.json");
        l[0]["qa"][2]["evidence"] = "D2:3";
        auto lr = parseEvalDataset(l, "l.json");
        QCOMPARE(lr.status().code(), ErrorCode::Corrupt);
        QVERIFY2(lr.status().message().find("conversation 0: question 2: evidence is not an array") != std::string::npos,
                 lr.status().message().c_str());
        json l2 = readJson(kFixtures + "/locomo-mini.json");
        l2[1]["conversation"]["session_1"][1].erase("dia_id");
        lr = parseEvalDataset(l2, "l.json");
        QCOMPARE(lr.status().code(), ErrorCode::Corrupt);
        QVERIFY(lr.status().message().find("conversation.session_1[1]: missing field dia_id") != std::string::npos);

        QTemporaryDir dir;
        const std::string bad = dir.filePath("bad.json").toStdString();
        std::ofstream(bad) << "[{\"question\": ";
        QCOMPARE(loadEvalDataset(bad).status().code(), ErrorCode::Corrupt);
    }

    void realFiles() {
        const std::string dir = MSA_TEST_DATA_DIR "/eval";
        if (!std::filesystem::exists(dir + "/musique-100.json") || !std::filesystem::exists(dir + "/locomo-conv0-4.json"))
            QSKIP("../shared/data/eval (musique-100.json, locomo-conv0-4.json) is absent");
        auto m = loadEvalDataset(dir + "/musique-100.json");
        QVERIFY2(m.ok(), m.status().toString().c_str());
        QCOMPARE(m->questions.size(), size_t(100));
        QCOMPARE(m->documents.size(), size_t(1890));   // 2000 paragraphs, distinct by title + text (counted in Python)
        size_t nGold = 0;
        for (const auto& q : m->questions) {
            QVERIFY(q.gold.size() >= 2);   // multi-hop: 2 to 4 supporting paragraphs
            QVERIFY(!q.answers.empty());
            nGold += q.gold.size();
        }
        QCOMPARE(nGold, size_t(237));
        QCOMPARE(m->questions[0].gold, (std::vector<size_t>{6, 10}));

        auto l = loadEvalDataset(dir + "/locomo-conv0-4.json");
        QVERIFY2(l.ok(), l.status().toString().c_str());
        QCOMPARE(l->documents.size(), size_t(128));   // 19 + 19 + 32 + 29 + 29 sessions
        QCOMPARE(l->questions.size(), size_t(999));
        size_t unresolved = 0, noGold = 0, withAnswer = 0;
        for (const auto& q : l->questions) {
            unresolved += q.nUnresolvedEvidence;
            noGold += q.gold.empty() ? 1 : 0;
            withAnswer += q.answers.empty() ? 0 : 1;
        }
        QCOMPARE(unresolved, size_t(2));
        QCOMPARE(noGold, size_t(2));
        QCOMPARE(withAnswer, size_t(764));
    }

    void squadNormalisation() {
        QCOMPARE(normalizeAnswer("The Cat!"), std::string("cat"));
        QCOMPARE(normalizeAnswer("  An  apple,\ta day \n"), std::string("apple day"));
        QCOMPARE(normalizeAnswer("Theory of the Case"), std::string("theory of case"));   // "the" only as a word
        QCOMPARE(normalizeAnswer("don't"), std::string("dont"));                          // punctuation deleted, not spaced
        QCOMPARE(normalizeAnswer("U.S.A."), std::string("usa"));
        QCOMPARE(normalizeAnswer("a-team"), std::string("ateam"));                        // punctuation before articles
        QCOMPARE(normalizeAnswer("the_end"), std::string("theend"));                      // '_' is in string.punctuation
        QCOMPARE(normalizeAnswer("A"), std::string(""));
        QCOMPARE(normalizeAnswer("Café au lait"), std::string("café au lait"));
    }

    void squadMetrics() {
        QCOMPARE(exactMatch("The River Wend", "river wend"), 1.0);
        QCOMPARE(exactMatch("River Wend.", "the Wend"), 0.0);
        QCOMPARE(exactMatch("a", "the"), 1.0);   // both normalise to ""
        QCOMPARE(tokenF1("the river wend in pelmouth", "River Wend"), 2.0 / 3.0);   // P 2/4, R 2/2
        QCOMPARE(tokenF1("wend wend", "wend"), 2.0 / 3.0);                           // shared counts are a multiset min
        QCOMPARE(tokenF1("wend", "wend wend"), 2.0 / 3.0);
        QCOMPARE(tokenF1("", "wend"), 0.0);
        QCOMPARE(tokenF1("", ""), 0.0);          // v1.1: nothing shared → 0
        QCOMPARE(tokenF1("Pelmouth", "Wend"), 0.0);
        const std::vector<std::string> golds = {"the Wend", "River Wend", "Wend River"};
        QCOMPARE(bestExactMatch("the river wend", golds), 1.0);
        QCOMPARE(bestF1("Wend", golds), 1.0);    // "the Wend" normalises to "wend"
        QCOMPARE(bestF1("river", golds), 2.0 / 3.0);
        QCOMPARE(bestF1("river", {}), 0.0);
        QCOMPARE(normalizeAnswer(stripCitations("The Wend [3] [4, 5].")), std::string("wend"));
        QCOMPARE(stripCitations("[x] and [ ] stay"), std::string("[x] and [ ] stay"));
        QCOMPARE(citedNumbers("see [3] and [4, 5], [3] again, [x] [12"), (std::vector<long long>{3, 4, 5}));
    }

    void recall() {
        const std::vector<size_t> ranking = {3, 1, 3, 0};
        QCOMPARE(recallAt(ranking, {0, 1}, 1), 0.0);
        QCOMPARE(recallAt(ranking, {0, 1}, 2), 0.5);
        QCOMPARE(recallAt(ranking, {0, 1}, 3), 1.0);   // the repeated 3 does not take a place
        QCOMPARE(recallAt(ranking, {}, 3), 0.0);
        QCOMPARE(recallAt({}, {1}, 5), 0.0);
    }

    void ftsQuery() {
        QCOMPARE(ftsQueryFor("What's the \"river\" OR name? river"), std::string("\"river\" OR \"name\""));
        QCOMPARE(ftsQueryFor("Who was it?"), std::string());
        QCOMPARE(ftsQueryFor("NEAR(a b) AND c*"), std::string("\"near\""));
        QCOMPARE(ftsQueryFor("Café 1907"), std::string("\"café\" OR \"1907\""));
    }

    void defaultWorkdirs() {
        const std::string f = kFixtures + "/locomo-mini.json";
        auto ds = loadEvalDataset(f);
        QVERIFY(ds.ok());
        const EvalDataset one = limitDataset(*ds, 1, true), three = limitDataset(*ds, 3, true), four = limitDataset(*ds, 4, true);
        QCOMPARE(defaultEvalWorkdir(f, &one), defaultEvalWorkdir(f, &three));   // same sessions (conv-a's)
        QVERIFY(defaultEvalWorkdir(f, &one) != defaultEvalWorkdir(f, &four));
        QVERIFY(defaultEvalWorkdir(f, nullptr) != defaultEvalWorkdir(f, &four));
        QVERIFY(defaultEvalWorkdir(f, nullptr) != defaultEvalWorkdir(kFixtures + "/musique-mini.json", nullptr));
    }

    void endToEndOnTinyModel() {
        QTemporaryDir dir;
        DatasetEvalRequest r;
        r.dataset = kFixtures + "/musique-mini.json";
        r.model = kMsa;
        r.workdir = dir.filePath("work").toStdString();
        r.k = 7;   // every document: each layer's top-7 holds all gold
        auto a = evaluateDataset(r);
        QVERIFY2(a.ok(), a.status().toString().c_str());
        QCOMPARE(a->format, std::string("musique"));
        QCOMPARE(a->nMemoryDocuments, size_t(7));
        QCOMPARE(a->build.nEncoded, uint64_t(7));
        QCOMPARE(a->build.bankDocuments, uint64_t(7));
        QCOMPARE(a->questions.size(), size_t(3));
        QCOMPARE(a->nScored, size_t(3));
        QCOMPARE(a->layers, (std::vector<int>{2, 3}));
        for (const auto& q : a->questions) {
            QCOMPARE(q.layers.size(), size_t(2));
            for (const auto& l : q.layers) QCOMPARE(l.atK, 1.0);
            QCOMPARE(q.layerMean.atK, 1.0);
            QCOMPARE(q.layerMean.at1, (q.layers[0].at1 + q.layers[1].at1) / 2);
            QVERIFY(q.routed.at1 <= q.routed.at5 && q.routed.at5 <= q.routed.atK && q.routed.atK <= 1.0);
            QVERIFY(q.bm25.at1 <= q.bm25.at5 && q.bm25.at5 <= q.bm25.atK);
            QCOMPARE(q.routedTop.size() <= 7, true);
        }
        // BM25: "Wend Bridge" is the only paragraph with "bridge" and "rebuilt"; Pelmouth matches "pelmouth" and "river".
        QCOMPARE(a->questions[1].bm25.atK, 1.0);
        QCOMPARE(a->questions[1].bm25Top.front(), std::string("p00004"));
        // The memory is a real catalog: 7 memory documents in collection "eval".
        {
            auto cat = catalog::Catalog::open(a->catalog, {.readOnly = true, .create = false});
            QVERIFY(cat.ok());
            auto mds = cat->memoryDocuments("eval");
            QVERIFY(mds.ok());
            QCOMPARE(mds->size(), size_t(7));
        }
        // Second run: nothing re-encoded, same numbers.
        auto b = evaluateDataset(r);
        QVERIFY2(b.ok(), b.status().toString().c_str());
        QCOMPARE(b->build.nEncoded, uint64_t(0));
        QCOMPARE(b->build.nUnchanged, uint64_t(7));
        for (size_t i = 0; i < 3; ++i) {
            QCOMPARE(b->questions[i].routed.at1, a->questions[i].routed.at1);
            QCOMPARE(b->questions[i].routedTop, a->questions[i].routedTop);
        }
        const json j = toJson(*b);
        for (const char* f : {"recall_at_1", "recall_at_5", "recall_at_k", "bm25_recall_at_1", "bm25_recall_at_5", "bm25_recall_at_k",
                              "layer_mean_recall_at_k", "exact_match", "f1", "layers", "questions"})
            QVERIFY2(j.contains(f), f);
        QCOMPARE(j["questions"][1]["bm25_recall_at_k"].get<double>(), 1.0);
        QCOMPARE(j["layers"].size(), size_t(2));

        // A copied work folder does not keep the old folder's documents in its collection.
        {
            std::error_code ec;
            std::filesystem::copy(r.workdir, dir.filePath("moved").toStdString(), std::filesystem::copy_options::recursive, ec);
            QVERIFY(!ec);
            DatasetEvalRequest m = r;
            m.workdir = dir.filePath("moved").toStdString();
            auto moved = evaluateDataset(m);
            QVERIFY2(moved.ok(), moved.status().toString().c_str());
            QCOMPARE(moved->build.bankDocuments, uint64_t(7));
            auto cat = catalog::Catalog::open(moved->catalog, {.readOnly = true, .create = false});
            QVERIFY(cat.ok());
            QCOMPARE(cat->memoryDocuments("eval")->size(), size_t(7));
        }

        // Memory of the limited questions only; with answers (the tiny model's words are noise, but
        // the answer is generated and scored).
        r.limit = 1;
        r.memoryOfLimit = true;
        r.answers = true;
        r.maxAnswerTokens = 4;
        auto c = evaluateDataset(r);   // same work folder: the 3 other documents leave the collection and the bank
        QVERIFY2(c.ok(), c.status().toString().c_str());
        QCOMPARE(c->nMemoryDocuments, size_t(4));
        QCOMPARE(c->build.nRemoved, uint64_t(3));
        QCOMPARE(c->build.nEncoded, uint64_t(0));
        {
            auto cat = catalog::Catalog::open(c->catalog, {.readOnly = true, .create = false});
            QVERIFY(cat.ok());
            QCOMPARE(cat->memoryDocuments("eval")->size(), size_t(4));
        }
        QCOMPARE(c->questions.size(), size_t(1));
        QVERIFY(c->questions[0].answered);
        QCOMPARE(c->nAnswerScored, size_t(1));
        QVERIFY(c->f1 >= 0.0 && c->f1 <= 1.0);
    }

private:
};

QTEST_GUILESS_MAIN(TestEvalDatasets)
#include "tst_eval_datasets.moc"

// tst_sparse.cpp: sparse generation and Memory Interleave on the tiny MSA checkpoint
// (tests/fixtures/models/msa-qwen3-bf16: router tensors in layers 2 and 3, byte-level tokenizer, so
// every protocol string is spelled byte by byte) over a real bank built from a real catalog.
//
//  - the memory hook's prefill equals a plain forward over explicitly assembled per-layer contexts
//    [template head; K̄/V̄ of the selected documents; local tokens] (so routing happens in the right
//    place and nothing else changes), and decode steps keep that memory;
//  - the first routing layer selects what memory-free routing selects (its input does not depend
//    on memory), while the second routing layer's scores change because its queries see the memory
//    the first one selected (msa-spec §2.8);
//  - the candidate filter and tombstones restrict the selection;
//  - the engine's non-causal mode (B3) changes earlier tokens only;
//  - the interleave protocol, replayed with a forced token script: ids → sorted, de-duplicated
//    injection that ends the call; a regenerate round routed by the latest injected block and the
//    question; <End-of-Retrieve> → question restatement → answer extraction (msa-spec §5.4-5.6).
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/memory_jobs.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/encoder.h"
#include "core/memory/interleave.h"
#include "core/memory/sparse.h"
#include "core/memory/wrap.h"

#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>
#include <numeric>

using namespace msa;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";

std::vector<int32_t> iota(size_t n, int32_t first) {
    std::vector<int32_t> v(n);
    std::iota(v.begin(), v.end(), first);
    return v;
}

float maxAbsDiff(std::span<const float> a, std::span<const float> b) {
    float m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}
}  // namespace

class TestSparse : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        QVERIFY(QDir(m_dir.path()).mkpath("files"));
        const char* topics[] = {"kelp", "cello", "spruce", "tide", "harbour", "urchin", "varnish", "lifeboat", "barque",
                                "seal", "ferry", "lighthouse", "storm", "bridge", "rosin", "herring", "anchor", "otter",
                                "gannet", "bellows"};
        for (int i = 0; i < 20; ++i) {
            std::string text;
            for (int r = 0; r < 2 + i % 3; ++r) text += "Notes on the " + std::string(topics[i]) + " number " + std::to_string(i * 7 + r) + ". ";
            std::ofstream(m_dir.filePath(QString("files/n%1.txt").arg(i, 2, 10, QChar('0'))).toStdString()) << text;
        }
        m_catalog = m_dir.filePath("c.sqlite").toStdString();
        m_bankPath = m_dir.filePath("bank").toStdString();
        {
            auto cat = catalog::Catalog::open(m_catalog);
            QVERIFY(cat.ok());
            catalog::ImportRequest req;
            req.collection = "notes";
            req.paths = {m_dir.filePath("files").toStdString()};
            QVERIFY(catalog::importPaths(*cat, req, {}, nullptr).ok());
        }
        jobs::BuildOptions o;
        o.catalog = m_catalog;
        o.collection = "notes";
        o.model = kMsa;
        o.bank = m_bankPath;
        o.nThreads = 2;
        auto built = jobs::buildMemory(o);
        QVERIFY2(built.ok(), built.status().toString().c_str());
        QCOMPARE(built->bankDocuments, uint64_t(20));

        m_backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kMsa, *m_backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        m_rt = std::move(rt).value();
        auto bank = memory::Bank::open(m_bankPath);
        QVERIFY(bank.ok());
        m_bank = std::make_unique<memory::Bank>(std::move(bank).value());
        auto cfg = memory::routingConfigFor(*m_rt.files);
        QVERIFY(cfg.ok());
        auto index = memory::MemoryIndex::create(*m_bank, *m_rt.files, *cfg, 2);
        QVERIFY2(index.ok(), index.status().toString().c_str());
        m_index = std::make_unique<memory::MemoryIndex>(std::move(index).value());
        m_wrap = memory::documentWrapping(true, m_rt.chatTemplate.kind(), {});
        m_query = memory::round1Query(*m_rt.tokenizer, m_wrap, "Which notes talk about the cello and its spruce top?",
                                      m_index->config().topK);
        QCOMPARE(m_index->config().topK, size_t(16));
        QCOMPARE(m_index->templateLength(), m_query.head.size());
        for (const auto& d : m_bank->documents()) m_ids.push_back(d.id);
    }

    void prefillEqualsExplicitAssembly() {
        auto s = session();
        const auto pos = iota(m_query.tokens.size(), m_query.firstPosition);
        auto p = memory::sparsePrefill(*s, *m_index, m_query.tokens, pos, m_query.routeMask, {.allLogits = true});
        QVERIFY2(p.ok(), p.status().toString().c_str());
        QCOMPARE(p->layers.size(), size_t(2));
        QCOMPARE(p->layers[0].layer, 2);
        QCOMPARE(p->layers[1].layer, 3);
        for (const auto& l : p->layers) {
            QCOMPARE(l.selected.size(), size_t(16));   // k of 20 documents
            QCOMPARE(l.nCandidates, size_t(20));
            for (size_t i = 1; i < l.selected.size(); ++i)   // score descending, id ascending on ties
                QVERIFY(l.selected[i - 1].score > l.selected[i].score ||
                        (l.selected[i - 1].score == l.selected[i].score && l.selected[i - 1].id < l.selected[i].id));
        }
        QCOMPARE(s->prefixRows(0), m_query.head.size());                       // not a routing layer
        QCOMPARE(s->prefixRows(2), m_query.head.size() + p->layers[0].nChunks);
        QCOMPARE(s->prefixRows(3), m_query.head.size() + p->layers[1].nChunks);
        const std::vector<float> sparse(p->logits.begin(), p->logits.end());

        auto e = explicitSession(*p);
        auto plain = e->forward(m_query.tokens, pos, {.allLogits = true});
        QVERIFY(plain.ok());
        QCOMPARE(plain->size(), sparse.size());
        QVERIFY2(maxAbsDiff(*plain, sparse) == 0.0f, "sparse prefill differs from the explicitly assembled context");

        // Decode: one more token attends to the same memory without re-routing.
        const int32_t next = 65, nextPos = pos.back() + 1;
        auto d1 = s->forward(std::span<const int32_t>(&next, 1), std::span<const int32_t>(&nextPos, 1), {});
        QVERIFY(d1.ok());
        const std::vector<float> step(d1->begin(), d1->end());
        auto e2 = explicitSession(*p);
        std::vector<int32_t> all = m_query.tokens;
        all.push_back(next);
        auto full = e2->forward(all, iota(all.size(), m_query.firstPosition), {});
        QVERIFY(full.ok());
        const float diff = maxAbsDiff(*full, step);
        QVERIFY2(diff < 1e-4f, qPrintable(QString("decode step vs one forward: %1").arg(diff)));
    }

    void firstRoutingLayerIsMemoryFreeSecondSeesMemory() {
        auto s = session();
        const auto pos = iota(m_query.tokens.size(), m_query.firstPosition);
        auto p = memory::sparsePrefill(*s, *m_index, m_query.tokens, pos, m_query.routeMask, {.topN = 20});
        QVERIFY(p.ok());
        // Memory-free routing queries over the same (bank, bf16) template head.
        auto s2 = session();
        QVERIFY(s2->setPrefix(m_index->templatePrefixes()).isOk());
        std::vector<memory::RoutingQueries> freeQ;
        engine::ForwardOptions fo;
        fo.computeLogits = false;
        fo.layerHook = [&](const engine::LayerTensors& lt) {
            if (!m_index->config().isRoutingLayer(lt.layer)) return;
            auto q = memory::routingQueriesFromLayer(m_index->config(), *m_rt.files, lt, m_query.routeMask);
            if (q.ok()) freeQ.push_back(std::move(q).value());
        };
        QVERIFY(s2->forward(m_query.tokens, pos, fo).ok());
        QCOMPARE(freeQ.size(), size_t(2));
        auto free = &freeQ;
        auto r0 = m_index->route(0, (*free)[0], 20);
        auto r1 = m_index->route(1, (*free)[1], 20);
        QVERIFY(r0.ok() && r1.ok());
        // Layer 2: its input only passed through layers 0-1, whose context is [template; local].
        QCOMPARE(r0->top.size(), p->layers[0].top.size());
        float firstDiff = 0;
        for (size_t i = 0; i < r0->top.size(); ++i) {
            QCOMPARE(r0->top[i].id, p->layers[0].top[i].id);
            firstDiff = std::max(firstDiff, std::abs(r0->top[i].score - p->layers[0].top[i].score));
        }
        QVERIFY2(firstDiff < 1e-6f, qPrintable(QString("layer 2 score difference %1").arg(firstDiff)));
        // Layer 3: its queries come from hidden states that attended to layer 2's memory chunks.
        float change = 0;
        for (const auto& a : r1->top)
            for (const auto& b : p->layers[1].top)
                if (a.id == b.id) change = std::max(change, std::abs(a.score - b.score));
        qInfo("layer 3: max score change from memory %.2e", double(change));
        QVERIFY2(change > 1e-4f, "layer 3 routing ignored the memory layer 2 selected");
    }

    void filterRestrictsCandidates() {
        std::unordered_set<int64_t> allowed = {m_ids[1], m_ids[4], m_ids[9], m_ids[15], m_ids[19]};
        m_index->setFilter(allowed);
        auto s = session();
        auto p = memory::sparsePrefill(*s, *m_index, m_query.tokens, iota(m_query.tokens.size(), m_query.firstPosition),
                                       m_query.routeMask, {});
        m_index->setFilter(std::nullopt);
        QVERIFY(p.ok());
        for (const auto& l : p->layers) {
            QCOMPARE(l.nCandidates, size_t(5));
            QCOMPARE(l.selected.size(), size_t(5));
            for (const auto& d : l.selected) QVERIFY(allowed.count(static_cast<int64_t>(d.id)));
        }
    }

    void nonCausalIsPermutationEquivariant() {
        // Bidirectional attention over tokens that carry their own positions does not depend on the
        // order they are fed in; causal attention does.
        const std::vector<int32_t> toks = {72, 101, 108, 108, 111};
        const std::vector<int32_t> pos = {0, 1, 2, 3, 4};
        const std::vector<int32_t> rtoks(toks.rbegin(), toks.rend()), rpos(pos.rbegin(), pos.rend());
        auto run = [&](const std::vector<int32_t>& t, const std::vector<int32_t>& p, bool causal) {
            auto s = session();
            engine::ForwardOptions o;
            o.allLogits = true;
            o.causal = causal;
            auto r = s->forward(t, p, o);
            if (!r.ok()) qFatal("forward");
            return std::vector<float>(r->begin(), r->end());
        };
        const size_t v = m_rt.tokenizer->vocabSize();
        auto reversedRowsDiff = [&](const std::vector<float>& a, const std::vector<float>& b) {
            float m = 0;
            for (size_t i = 0; i < toks.size(); ++i)
                m = std::max(m, maxAbsDiff(std::span<const float>(a).subspan(i * v, v),
                                           std::span<const float>(b).subspan((toks.size() - 1 - i) * v, v)));
            return m;
        };
        const float bi = reversedRowsDiff(run(toks, pos, false), run(rtoks, rpos, false));
        const float causal = reversedRowsDiff(run(toks, pos, true), run(rtoks, rpos, true));
        QVERIFY2(bi < 1e-4f, qPrintable(QString("non-causal, reversed order: %1").arg(bi)));
        QVERIFY2(causal > 1e-3f, qPrintable(QString("causal, reversed order: %1").arg(causal)));
    }

    void textHelpersFollowTheReference() {
        QCOMPARE(memory::parseIds("x[12] [3][a][] [007]"), (std::vector<int64_t>{12, 3, 7}));
        QCOMPARE(memory::extractAnswer("a The answer to the question is: 1 The answer to the question is:  May 5 <|im_end|>x"),
                 std::string("May 5"));
        QCOMPARE(memory::responseOf("junk\nPlease answer the question based on X<|endoftext|>"),
                 std::string("\nPlease answer the question based on X"));
        // split(...)[1]: only up to a second occurrence.
        QCOMPARE(memory::responseOf("\nPlease answer the question based A\nPlease answer the question based B"),
                 std::string("\nPlease answer the question based A"));
    }

    void regenerateMaskMarksQuestionAndLatestBlock() {
        const std::string prompt =
            "\nPlease answer the question based on the above historical document information\n\nQ?\n"
            "Please return all documents related to the question\n<|im_end|>\n<|im_start|>[3]<|object_ref_end|>[3]. old\n"
            "<|object_ref_end|>[5]<|object_ref_end|>[5]. new text\n<|object_ref_end|>";
        const auto ids = m_rt.tokenizer->encode(prompt, {.matchSpecial = true, .addBos = false});
        QCOMPARE(ids.size(), prompt.size());   // byte-level: one token per byte
        const auto exact = memory::regenerateRouteMask(*m_rt.tokenizer, prompt, ids, false);
        const auto ref = memory::regenerateRouteMask(*m_rt.tokenizer, prompt, ids, true);
        QCOMPARE(exact, ref);   // the two rules only differ at BPE merges across region boundaries
        const std::string anchor = "Please return all documents related to the question";
        const size_t anchorEnd = prompt.find(anchor) + anchor.size();
        const size_t r1 = prompt.rfind("[5]. new text");
        const size_t r1End = prompt.rfind("<|object_ref_end|>");
        for (size_t i = 0; i < ids.size(); ++i) {
            const bool want = i < anchorEnd || (i >= r1 && i < r1End);
            QVERIFY2(bool(exact[i]) == want, qPrintable(QString("byte %1 (%2)").arg(i).arg(prompt[i])));
        }
    }

    void interleaveReplaysTheProtocol() {
        auto s = session();
        auto script = [&](const std::string& text) {
            auto ids = m_rt.tokenizer->encode(text, {.matchSpecial = true, .addBos = false});
            return ids;
        };
        const int64_t a = m_ids[7], b = m_ids[2];
        memory::InterleaveOptions o;
        o.eosIds = {0};
        const std::string round1 = "[" + std::to_string(a) + "][" + std::to_string(b) + "][" + std::to_string(a) + "][999]<|object_ref_end|>";
        const std::string round2 = "<End-of-Retrieve>";
        const std::string answer = "The answer to the question is: spruce top<|im_end|>";
        for (const auto& part : {round1, round2, answer}) {
            auto ids = script(part);
            o.forcedTokens.insert(o.forcedTokens.end(), ids.begin(), ids.end());
        }
        o.forcedTokens.push_back(0);   // EOS
        std::string streamed;
        o.onText = [&](std::string_view piece, bool) {
            streamed += piece;
            return true;
        };
        auto cat = catalog::Catalog::open(m_catalog, {.readOnly = true, .create = false});
        QVERIFY(cat.ok());
        auto lookup = [&](int64_t id) -> std::optional<std::string> {
            auto m = cat->memoryDocument(id);
            if (!m) return std::nullopt;
            return m->text;
        };
        auto r = memory::memoryInterleave(*s, *m_index, *m_rt.tokenizer, m_wrap, "Which notes talk about the cello?", lookup, o);
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QCOMPARE(r->rounds.size(), size_t(2));
        const auto& r0 = r->rounds[0];
        const auto& r1 = r->rounds[1];
        QCOMPARE(r0.stopReason, std::string("ids"));
        const int64_t lo = std::min(a, b), hi = std::max(a, b);
        QCOMPARE(r0.injectedIds, (std::vector<int64_t>{lo, hi}));   // sorted, de-duplicated, unknown 999 dropped
        QCOMPARE(r0.generatedText, round1);
        const std::string injected = "[" + std::to_string(lo) + "]. " + *lookup(lo) + "\n[" + std::to_string(hi) + "]. " +
                                     *lookup(hi) + "\n<|object_ref_end|>";
        const std::string q1 = memory::questionBlock("Which notes talk about the cello?") + "<|im_end|>\n<|im_start|>";
        QCOMPARE(r0.text, q1 + round1 + injected);
        // Round 2 re-encodes the whole response from the same first position, routed by the
        // question and the latest injected block.
        QCOMPARE(r1.firstPosition, r0.firstPosition);
        QCOMPARE(r1.prompt, script(r0.text));
        QVERIFY(r1.routeMask[0] == 1 && r1.routeMask[r0.text.find(injected) + 1] == 1);
        QVERIFY(r1.routeMask[q1.size() + 1] == 0);   // the generated id list does not route
        QVERIFY(r1.restated);
        QCOMPARE(r1.stopReason, std::string("answer"));
        const std::string restatement = "<|im_start|>The user's question is: Which notes talk about the cello?\n<|object_ref_end|>";
        QCOMPARE(r1.text, r0.text + round2 + restatement + answer);
        QCOMPARE(r->answer, std::string("spruce top"));
        QCOMPARE(r->stopReason, std::string("answer"));
        QVERIFY(std::find(r->predictedIds.begin(), r->predictedIds.end(), a) != r->predictedIds.end());
        QVERIFY(streamed.find(injected) != std::string::npos);
        QVERIFY(streamed.find("spruce top") != std::string::npos);
    }

    void interleaveCapsIterations() {
        auto s = session();
        memory::InterleaveOptions o;
        o.eosIds = {};                 // never ends by itself
        o.maxGenerateTokens = 12;
        o.retrieveCharLimit = 1000000;
        const auto forced = m_rt.tokenizer->encode("abcdefghijklmnopqrstuvwxyz", {.matchSpecial = false, .addBos = false});
        o.forcedTokens = forced;
        auto r = memory::memoryInterleave(*s, *m_index, *m_rt.tokenizer, m_wrap, "anything?", {}, o);
        QVERIFY(r.ok());
        QCOMPARE(r->rounds.size(), size_t(1));
        QCOMPARE(r->stopReason, std::string("cap"));
        QCOMPARE(r->rounds[0].iterations, size_t(13));
        // Inputs of iterations 1..13: the prompt and 12 picks (the 13th pick is never fed).
        QCOMPARE(r->rounds[0].generatedText, std::string("abcdefghijklm"));
        QCOMPARE(r->rounds[0].text, memory::questionBlock("anything?") + "<|im_end|>\n<|im_start|>abcdefghijkl");
    }

private:
    std::unique_ptr<engine::Session> session() {
        auto s = m_rt.model->createSession({.maxTokens = 4096, .nThreads = 2});
        if (!s.ok()) qFatal("session: %s", s.status().toString().c_str());
        return std::move(s).value();
    }
    std::unique_ptr<engine::Session> explicitSession(const memory::SparsePrefill& p) {
        auto e = session();
        std::vector<engine::LayerPrefix> prefixes = m_index->templatePrefixes();
        for (size_t li = 0; li < p.layers.size(); ++li) {
            auto rows = m_index->gather(li, p.layers[li].selected);
            if (!rows.ok()) qFatal("gather");
            auto& pre = prefixes[static_cast<size_t>(p.layers[li].layer)];
            pre.k.insert(pre.k.end(), rows->k.begin(), rows->k.end());
            pre.v.insert(pre.v.end(), rows->v.begin(), rows->v.end());
            pre.nRows += rows->nRows;
        }
        if (!e->setPrefix(std::move(prefixes)).isOk()) qFatal("setPrefix");
        return e;
    }

    QTemporaryDir m_dir;
    std::string m_catalog, m_bankPath;
    std::unique_ptr<engine::Backend> m_backend;
    jobs::ModelRuntime m_rt;
    std::unique_ptr<memory::Bank> m_bank;
    std::unique_ptr<memory::MemoryIndex> m_index;
    memory::DocumentWrapping m_wrap;
    memory::QueryPrompt m_query;
    std::vector<int64_t> m_ids;
};

QTEST_GUILESS_MAIN(TestSparse)
#include "tst_sparse.moc"

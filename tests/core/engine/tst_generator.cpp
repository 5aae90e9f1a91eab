// tst_generator.cpp: the streaming generation loop on a tiny real model (tests/fixtures/models/
// qwen3-f32, whose greedy continuation of prompt p33 is known from transformers): greedy output
// equals the reference ids; a stop string ends generation and never reaches the stream, not even
// its first characters (they are held back until the string is complete or ruled out); the token
// budget, the callback and the cancel token each stop generation with their own reason; the
// streamed pieces always add up to the returned text.
#include "core/engine/generator.h"
#include "core/jobs/model_runtime.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>

using namespace msa;

namespace {
const std::string kModel = MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32";
}

class TestGenerator : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        m_backend = engine::createCpuBackend();
        auto rt = jobs::openModelRuntime(kModel, *m_backend);
        QVERIFY2(rt.ok(), rt.status().toString().c_str());
        m_rt = std::move(rt).value();
        std::ifstream in(kModel + "/golden.json");
        const auto golden = nlohmann::json::parse(in);
        for (const auto& g : golden.at("greedy"))
            if (g.at("prompt") == "p33") {
                m_prompt = g.at("prompt_ids").get<std::vector<int32_t>>();
                m_expected = g.at("token_ids").get<std::vector<int32_t>>();
            }
        QCOMPARE(m_expected.size(), size_t(24));
        // The first seven reference tokens are the bytes "> ", 0x88, 0x88, "/Fd" (byte-level vocabulary).
        QCOMPARE(std::vector<int32_t>(m_expected.begin(), m_expected.begin() + 7), (std::vector<int32_t>{62, 32, 136, 136, 47, 70, 100}));
    }

    void greedyMatchesReferenceAndBudget() {
        auto session = m_rt.model->createSession({});
        QVERIFY(session.ok());
        engine::GenerateOptions o;
        o.maxTokens = 10;
        std::string streamed;
        auto r = engine::generate(**session, *m_rt.tokenizer, m_prompt, o, [&](std::string_view p, int32_t) {
            streamed += p;
            return true;
        });
        QVERIFY(r.ok());
        QCOMPARE(r->stopReason, std::string("max-tokens"));
        QCOMPARE(r->tokens, std::vector<int32_t>(m_expected.begin(), m_expected.begin() + 10));
        QCOMPARE(streamed, r->text);
        QCOMPARE(r->nPromptTokens, m_prompt.size());
    }

    void stopStringIsHeldBackAndCut() {
        auto session = m_rt.model->createSession({});
        QVERIFY(session.ok());
        engine::GenerateOptions o;
        o.maxTokens = 20;
        o.stopStrings = {"/Fd"};
        std::vector<std::string> pieces;
        auto r = engine::generate(**session, *m_rt.tokenizer, m_prompt, o, [&](std::string_view p, int32_t) {
            pieces.emplace_back(p);
            return true;
        });
        QVERIFY(r.ok());
        QCOMPARE(r->stopReason, std::string("stop-string"));
        QCOMPARE(r->tokens.size(), size_t(7));   // stopped on the token completing "/Fd"
        std::string joined;
        for (const auto& p : pieces) {
            QVERIFY2(p.find('/') == std::string::npos, "the start of the stop string was streamed");
            joined += p;
        }
        QCOMPARE(joined, r->text);
        QVERIFY(r->text.rfind("> ", 0) == 0);
        QVERIFY(r->text.find("/Fd") == std::string::npos);
    }

    void heldTextIsReleasedWhenTheStopStringFails() {
        auto session = m_rt.model->createSession({});
        QVERIFY(session.ok());
        engine::GenerateOptions o;
        o.maxTokens = 7;
        o.stopStrings = {"/Fx"};   // "/F" matches a prefix, then "d" rules it out
        auto r = engine::generate(**session, *m_rt.tokenizer, m_prompt, o);
        QVERIFY(r.ok());
        QCOMPARE(r->stopReason, std::string("max-tokens"));
        QVERIFY2(r->text.size() >= 3 && r->text.substr(r->text.size() - 3) == "/Fd", r->text.c_str());
    }

    void callbackAndCancelStop() {
        auto session = m_rt.model->createSession({});
        QVERIFY(session.ok());
        engine::GenerateOptions o;
        o.maxTokens = 20;
        int calls = 0;
        auto r = engine::generate(**session, *m_rt.tokenizer, m_prompt, o, [&](std::string_view, int32_t) {
            return ++calls < 2;
        });
        QVERIFY(r.ok());
        QCOMPARE(r->stopReason, std::string("callback"));
        QCOMPARE(calls, 2);

        CancelToken cancel;
        cancel.cancel();
        o.cancel = &cancel;
        auto session2 = m_rt.model->createSession({});
        auto c = engine::generate(**session2, *m_rt.tokenizer, m_prompt, o);
        QVERIFY(c.ok());   // cancelling is not a failure
        QCOMPARE(c->stopReason, std::string("cancelled"));
        QVERIFY(c->tokens.empty());
    }

    void emptyPromptIsAnError() {
        auto session = m_rt.model->createSession({});
        QCOMPARE(engine::generate(**session, *m_rt.tokenizer, {}, {}).status().code(), ErrorCode::InvalidArgument);
    }

private:
    std::unique_ptr<engine::Backend> m_backend;
    jobs::ModelRuntime m_rt;
    std::vector<int32_t> m_prompt, m_expected;
};

QTEST_GUILESS_MAIN(TestGenerator)
#include "tst_generator.moc"

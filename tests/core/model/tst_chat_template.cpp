// tst_chat_template.cpp: msa::model::ChatTemplate against jinja2 renderings of the real templates.
//
// Covers: family detection from the template source (Qwen3 tokenizer_config.json, SmolLM2's GGUF
// tokenizer.chat_template, Meta's Llama-3 template), SmolLM2's default system prompt, and byte-exact
// prompts for fixed conversations (with/without system, multi-turn reasoning, tool results,
// non-ASCII, with/without generation prompt, Qwen3 enable_thinking unset/false/true). Expected
// strings come from tests/tools/tokenizer_reference.py chat (jinja2 configured like transformers'
// apply_chat_template), committed as tests/core/model/data/chat_templates.json.
// Extend: add a conversation to CONVERSATIONS in the script and regenerate (see README.md there).
#include "core/model/chat_template.h"

#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using msa::model::ChatMessage;
using msa::model::ChatTemplate;
using msa::model::ChatTemplateKind;
using msa::model::ChatTemplateOptions;

class TestChatTemplate : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void detectsFamilies();
    void matchesJinjaRenderings();
    void unknownTemplateIsUnsupported();

private:
    nlohmann::json m_fixture;
};

void TestChatTemplate::initTestCase() {
    std::ifstream f(std::string(MSA_SOURCE_DIR) + "/tests/core/model/data/chat_templates.json");
    QVERIFY(f.good());
    std::stringstream ss;
    ss << f.rdbuf();
    m_fixture = nlohmann::json::parse(ss.str());
}

void TestChatTemplate::detectsFamilies() {
    const auto& t = m_fixture.at("templates");
    auto qwen = ChatTemplate::detect(t.at("qwen3").get<std::string>());
    QVERIFY(qwen.ok());
    QCOMPARE(qwen->kind(), ChatTemplateKind::Qwen3);
    auto smol = ChatTemplate::detect(t.at("smollm2").get<std::string>());
    QVERIFY(smol.ok());
    QCOMPARE(smol->kind(), ChatTemplateKind::ChatMl);
    QCOMPARE(smol->defaultSystemPrompt(), std::string("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    auto llama = ChatTemplate::detect(t.at("llama3").get<std::string>());
    QVERIFY(llama.ok());
    QCOMPARE(llama->kind(), ChatTemplateKind::Llama3);
    QCOMPARE(llama->endOfTurn(), std::string("<|eot_id|>"));
    QCOMPARE(qwen->defaultSystemPrompt(), std::string());   // Qwen3 writes a system turn only when given one
}

void TestChatTemplate::matchesJinjaRenderings() {
    const auto& convs = m_fixture.at("conversations");
    int n = 0;
    for (const auto& c : m_fixture.at("cases")) {
        const std::string name = c.at("template").get<std::string>();
        auto tmpl = ChatTemplate::detect(m_fixture.at("templates").at(name).get<std::string>());
        QVERIFY(tmpl.ok());
        std::vector<ChatMessage> messages;
        for (const auto& m : convs.at(c.at("conversation").get<size_t>()))
            messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
        ChatTemplateOptions o;
        o.addGenerationPrompt = c.at("add_generation_prompt").get<bool>();
        if (!c.at("enable_thinking").is_null()) o.enableThinking = c.at("enable_thinking").get<bool>();
        o.bosToken = "<|begin_of_text|>";
        const std::string got = tmpl->apply(messages, o);
        const std::string expected = c.at("expected").get<std::string>();
        if (got != expected)
            qWarning("%s conversation %d gen=%d:\n--- expected\n%s\n--- got\n%s", name.c_str(),
                     c.at("conversation").get<int>(), int(o.addGenerationPrompt), expected.c_str(), got.c_str());
        QCOMPARE(got, expected);
        ++n;
    }
    qInfo("chat templates: %d renderings identical to jinja2", n);
    QVERIFY(n >= 40);
}

void TestChatTemplate::unknownTemplateIsUnsupported() {
    QCOMPARE(ChatTemplate::detect("{{ messages[0]['content'] }}").status().code(), msa::ErrorCode::Unsupported);
    QCOMPARE(ChatTemplate::detect("").status().code(), msa::ErrorCode::InvalidArgument);
    const ChatMessage user{"user", "Hi"};
    QCOMPARE(ChatTemplate::chatMl().apply({&user, 1}), std::string("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
}

QTEST_GUILESS_MAIN(TestChatTemplate)
#include "tst_chat_template.moc"

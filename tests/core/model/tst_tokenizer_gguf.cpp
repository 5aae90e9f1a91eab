// tst_tokenizer_gguf.cpp: the GGUF-metadata path of msa::model::Tokenizer (TokenizerSpec) on the
// real demo model, SmolLM2-135M-Instruct.Q4_1.gguf.
//
// tests/tools/tokenizer_reference.py gguf reads the tokenizer.* arrays with the Python `gguf` package
// (standing in for the project's GGUF reader) and computes reference ids with Hugging Face `tokenizers`
// built from the same arrays and SmolLM2's pre-tokenizer (Digits + ByteLevel). This test fills a
// TokenizerSpec from that dump and compares every string; the chat template found in the file must
// be recognised as ChatML with SmolLM2's default system prompt.
// Skips (whole executable) without the demo model or without python3 + gguf + tokenizers.
#include "core/model/chat_template.h"
#include "core/model/tokenizer.h"
#include "core/util/paths.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using msa::model::TokenId;
using msa::model::Tokenizer;
using msa::model::TokenizerSpec;

namespace {

std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return out;
}

std::optional<TokenId> optId(const nlohmann::json& j, const char* key) {
    if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
    return j.at(key).get<TokenId>();
}

}  // namespace

class TestTokenizerGguf : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void matchesHfOnDemoModel();
    void specErrors();

private:
    nlohmann::json m_dump;
    std::optional<Tokenizer> m_tok;
};

void TestTokenizerGguf::initTestCase() {
    const std::filesystem::path model = msa::findDemoModel();
    if (model.empty()) QSKIP("demo model absent (run packaging/setup.sh or set MSA_DEMO_MODEL)");
    QProcess check;
    check.start("python3", {"-c", "import gguf, tokenizers"});
    if (!check.waitForFinished(60000) || check.exitCode() != 0)
        QSKIP("python3 -c 'import gguf, tokenizers' failed: pip install gguf tokenizers to run the GGUF tokenizer test");
    QTemporaryDir tmp;
    QVERIFY(tmp.isValid());
    const QString out = tmp.filePath("spec.json");
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start("python3", {QString(MSA_SOURCE_DIR) + "/tests/tools/tokenizer_reference.py", "gguf", "--model",
                        QString::fromStdString(model.string()), "--count", "3000", "--out", out});
    QVERIFY(p.waitForFinished(300000));
    QVERIFY2(p.exitCode() == 0, p.readAll().constData());
    std::ifstream f(out.toStdString());
    std::stringstream ss;
    ss << f.rdbuf();
    m_dump = nlohmann::json::parse(ss.str());

    // What a GGUF reader hands over.
    TokenizerSpec spec;
    spec.model = m_dump.at("model").get<std::string>();
    spec.preTokenizer = m_dump.at("pre").get<std::string>();
    spec.tokens = m_dump.at("tokens").get<std::vector<std::string>>();
    spec.merges = m_dump.at("merges").get<std::vector<std::string>>();
    spec.tokenTypes = m_dump.at("token_type").get<std::vector<int32_t>>();
    spec.bosId = optId(m_dump, "bos_token_id");
    spec.eosId = optId(m_dump, "eos_token_id");
    spec.unknownId = optId(m_dump, "unknown_token_id");
    spec.paddingId = optId(m_dump, "padding_token_id");
    spec.addBos = m_dump.value("add_bos_token", false);
    spec.chatTemplate = m_dump.value("chat_template", "");
    msa::Result<Tokenizer> tok = Tokenizer::fromSpec(spec, model.string());
    QVERIFY2(tok.ok(), tok.status().toString().c_str());
    qInfo("SmolLM2 from GGUF metadata: %s", tok->describe().c_str());
    m_tok.emplace(std::move(tok).value());
}

void TestTokenizerGguf::matchesHfOnDemoModel() {
    int nFailed = 0;
    const auto& cases = m_dump.at("cases");
    for (const auto& c : cases) {
        const std::string in = unhex(c.at("in").get<std::string>());
        const auto expected = c.at("ids").get<std::vector<TokenId>>();
        const auto got = m_tok->encode(in);
        if (got != expected && ++nFailed <= 5) qWarning("mismatch for hex %s", c.at("in").get<std::string>().c_str());
    }
    qInfo("SmolLM2 (GGUF) vs HF tokenizers: %zu strings compared, %d mismatches", cases.size(), nFailed);
    QCOMPARE(nFailed, 0);
    QCOMPARE(m_tok->encode("12"), (std::vector<TokenId>{*m_tok->findToken("1"), *m_tok->findToken("2")}));
    QCOMPARE(m_tok->specialIds().eos, std::optional<TokenId>(2));
    QCOMPARE(m_tok->specialIds().eot, std::optional<TokenId>(2));   // <|im_end|>
    auto tmpl = msa::model::ChatTemplate::detect(m_tok->chatTemplateSource());
    QVERIFY(tmpl.ok());
    QCOMPARE(tmpl->kind(), msa::model::ChatTemplateKind::ChatMl);
    QCOMPARE(tmpl->defaultSystemPrompt(), std::string("You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
}

void TestTokenizerGguf::specErrors() {
    TokenizerSpec s;
    s.tokens = {"a", "b"};
    s.preTokenizer = "no-such-pre";
    QCOMPARE(Tokenizer::fromSpec(s, "x.gguf").status().code(), msa::ErrorCode::Unsupported);
    s.preTokenizer = "gpt-2";
    s.merges = {"a c"};
    QCOMPARE(Tokenizer::fromSpec(s, "x.gguf").status().code(), msa::ErrorCode::Corrupt);
    s.merges = {};
    s.tokenTypes = {1};
    QCOMPARE(Tokenizer::fromSpec(s, "x.gguf").status().code(), msa::ErrorCode::Corrupt);
    s.tokenTypes = {};
    s.eosId = 7;
    QCOMPARE(Tokenizer::fromSpec(s, "x.gguf").status().code(), msa::ErrorCode::Corrupt);
    s.eosId.reset();
    s.model = "llama";
    QCOMPARE(Tokenizer::fromSpec(s, "x.gguf").status().code(), msa::ErrorCode::Unsupported);
}

QTEST_GUILESS_MAIN(TestTokenizerGguf)
#include "tst_tokenizer_gguf.moc"

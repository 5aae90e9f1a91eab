// tst_forward_golden.cpp: the CPU forward pass against Hugging Face transformers. For every tiny
// random checkpoint in tests/fixtures/models/*/ (made by tests/tools/make_golden_models.py: Llama,
// Qwen2 with QKV bias, Qwen3 with QK-norm, an MSA-config Qwen3; f32, bf16 and f16 weights) it checks:
//  - full-sequence logits for every stored case (incl. positions starting at 100 and a position jump
//    inside one sequence) within 1e-4 relative to the largest reference logit;
//  - greedy continuations token for token (the maker redrew prompts until no step is a near-tie);
//  - incremental decode (prefill a prefix, then one token per call) equals the full forward;
//  - the result does not depend on the thread count.
// Extend: a new architecture/dtype gets a new fixture folder; nothing here changes.
#include "core/engine/backend.h"
#include "core/engine/cpu_ops.h"
#include "core/model/model_files.h"

#include <QDir>
#include <QFile>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <numeric>

using namespace msa;
using nlohmann::json;

namespace {
const QString kFixtures = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models");

struct Fixture {
    QString dir;
    json golden;
    std::vector<float> logits;
};

Fixture loadFixture(const QString& dir) {
    Fixture f;
    f.dir = dir;
    std::ifstream in((dir + "/golden.json").toStdString());
    f.golden = json::parse(in);
    QFile bin(dir + "/" + QString::fromStdString(f.golden.at("logits_file").get<std::string>()));
    if (bin.open(QIODevice::ReadOnly)) {
        const QByteArray bytes = bin.readAll();
        f.logits.resize(static_cast<size_t>(bytes.size()) / sizeof(float));
        std::memcpy(f.logits.data(), bytes.constData(), f.logits.size() * sizeof(float));
    }
    return f;
}

double relErr(std::span<const float> got, const float* ref, size_t n) {
    double maxRef = 0, maxDiff = 0;
    for (size_t i = 0; i < n; ++i) {
        maxRef = std::max(maxRef, std::abs(double(ref[i])));
        maxDiff = std::max(maxDiff, std::abs(double(got[i]) - double(ref[i])));
    }
    return maxRef > 0 ? maxDiff / maxRef : maxDiff;
}

std::vector<int32_t> ids(const json& j) { return j.get<std::vector<int32_t>>(); }
std::vector<int32_t> iota(size_t n, int32_t start = 0) {
    std::vector<int32_t> v(n);
    std::iota(v.begin(), v.end(), start);
    return v;
}
}  // namespace

class TestForwardGolden : public QObject {
    Q_OBJECT
private slots:
    void fixtures_data() {
        QTest::addColumn<QString>("dir");
        const QStringList dirs = QDir(kFixtures).entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name);
        int n = 0;
        for (const QString& d : dirs)
            if (QFile::exists(kFixtures + "/" + d + "/golden.json")) {
                QTest::newRow(qPrintable(d)) << kFixtures + "/" + d;
                ++n;
            }
        QVERIFY2(n >= 4, "expected the golden fixtures of tests/fixtures/models");
    }

    void fixtures() {
        QFETCH(QString, dir);
        const Fixture fx = loadFixture(dir);
        auto opened = model::ModelFiles::open(dir.toStdString());
        QVERIFY2(opened.ok(), opened.status().toString().c_str());
        std::shared_ptr<const model::ModelFiles> files = std::move(opened).value();
        auto backend = engine::createCpuBackend();
        auto loaded = backend->load(files);
        QVERIFY2(loaded.ok(), loaded.status().toString().c_str());
        const size_t vocab = fx.golden.at("vocab_size").get<size_t>();

        for (size_t threads : {size_t(1), size_t(2)}) {
            auto session = (*loaded)->createSession({.maxTokens = 512, .nThreads = threads});
            QVERIFY(session.ok());
            engine::Session& s = **session;
            QCOMPARE(s.vocabSize(), vocab);

            for (const json& c : fx.golden.at("forward_cases")) {
                const auto tokens = ids(c.at("token_ids"));
                const auto positions = ids(c.at("position_ids"));
                const size_t first = c.at("first_stored_position_index").get<size_t>();
                const size_t rows = c.at("shape")[0].get<size_t>();
                const size_t offset = c.at("offset_floats").get<size_t>();
                QVERIFY(offset + rows * vocab <= fx.logits.size());
                s.truncate(0);
                auto r = s.forward(tokens, positions, {.allLogits = true});
                QVERIFY2(r.ok(), r.status().toString().c_str());
                QCOMPARE(r->size(), tokens.size() * vocab);
                const double err = relErr(r->subspan(first * vocab, rows * vocab), fx.logits.data() + offset, rows * vocab);
                QVERIFY2(err < 1e-4, qPrintable(QString("%1 case %2 (%3 threads): relative error %4")
                                                    .arg(dir, QString::fromStdString(c.at("name").get<std::string>()))
                                                    .arg(threads).arg(err)));
            }

            for (const json& g : fx.golden.at("greedy")) {
                const auto prompt = ids(g.at("prompt_ids"));
                const auto expected = ids(g.at("token_ids"));
                s.truncate(0);
                auto r = s.forward(prompt, iota(prompt.size()), {});
                QVERIFY(r.ok());
                std::vector<int32_t> got;
                for (size_t i = 0; i < expected.size(); ++i) {
                    const int32_t t = static_cast<int32_t>(cpu::argmax(r->data(), vocab));
                    got.push_back(t);
                    const int32_t pos = static_cast<int32_t>(s.nPast());
                    r = s.forward(std::span<const int32_t>(&t, 1), std::span<const int32_t>(&pos, 1), {});
                    QVERIFY(r.ok());
                }
                QCOMPARE(got, expected);
            }
        }

        // Incremental decode equals the full forward (KV cache, positions continuing from the cache).
        auto session = (*loaded)->createSession({.maxTokens = 512, .nThreads = 2});
        QVERIFY(session.ok());
        const json& longest = fx.golden.at("forward_cases")[3];
        const auto tokens = ids(longest.at("token_ids"));
        const size_t k = tokens.size() / 3;
        engine::Session& s = **session;
        QVERIFY(s.forward(std::span(tokens).first(k), iota(k), {}).ok());
        std::span<const float> last;
        for (size_t i = k; i < tokens.size(); ++i) {
            const int32_t pos = static_cast<int32_t>(i);
            auto r = s.forward(std::span(tokens).subspan(i, 1), std::span<const int32_t>(&pos, 1), {});
            QVERIFY(r.ok());
            last = *r;
        }
        const size_t rows = longest.at("shape")[0].get<size_t>();
        const float* ref = fx.logits.data() + longest.at("offset_floats").get<size_t>() + (rows - 1) * vocab;
        QVERIFY2(relErr(last, ref, vocab) < 1e-4, "incremental decode differs from the full forward");
    }

    void badRequestsAreRejected() {
        const QString dir = kFixtures + "/qwen3-f32";
        if (!QFile::exists(dir + "/config.json")) QSKIP("qwen3-f32 fixture absent");
        auto files = model::ModelFiles::open(dir.toStdString());
        QVERIFY(files.ok());
        auto loaded = engine::createCpuBackend()->load(std::move(files).value());
        QVERIFY(loaded.ok());
        auto session = (*loaded)->createSession({.maxTokens = 8, .nThreads = 1});
        QVERIFY(session.ok());
        const std::vector<int32_t> bad = {1, 99999};
        QCOMPARE((*session)->forward(bad, iota(2), {}).status().code(), ErrorCode::InvalidArgument);
        const std::vector<int32_t> ok = {1, 2};
        QCOMPARE((*session)->forward(ok, iota(3), {}).status().code(), ErrorCode::InvalidArgument);
        const std::vector<int32_t> tooMany(9, 1);
        QCOMPARE((*session)->forward(tooMany, iota(9), {}).status().code(), ErrorCode::InvalidArgument);
        CancelToken cancel;
        cancel.cancel();
        QCOMPARE((*session)->forward(ok, iota(2), {.cancel = &cancel}).status().code(), ErrorCode::Cancelled);
        QCOMPARE((*session)->nPast(), size_t(0));   // nothing half-appended
    }
};

QTEST_GUILESS_MAIN(TestForwardGolden)
#include "tst_forward_golden.moc"

// tst_demo_gguf: the real demo model (SmolLM2-135M-Instruct Q4_1 GGUF) against the `gguf` package.
//
// Skips (reported by CTest as Skipped) when the model is not where msa::findDemoModel() looks.
// The reference is made by tests/tools/dump_gguf_reference.py with gguf.GGUFReader, live when python3
// can import gguf, else the committed fixtures/smollm2-135m-instruct-q4_1.reference.json: metadata
// keys, types and values, the tensor directory, and dequantized rows of Q8_0, Q4_1 and F32 tensors,
// which must match bit-exactly. Also
// checks the ModelFiles view (config from metadata, canonical shapes, tied output, routing mode) and
// that row dot products agree with dequantize-then-dot on real weights.
#include "core/model/gguf_file.h"
#include "core/model/model_files.h"
#include "core/util/paths.h"

#include "test_files.h"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <random>

using namespace msa::model;
using namespace msa::model::testing;
using nlohmann::json;

namespace {

bool sameValue(const GgufValue& v, const json& j) {
    if (const auto* a = v.array()) {
        if (!j.is_array() || j.size() != a->size()) return false;
        for (size_t i = 0; i < a->size(); ++i)
            if (!sameValue((*a)[i], j[i])) return false;
        return true;
    }
    if (const auto* u = std::get_if<uint64_t>(&v.value)) return j.is_number_integer() && j.get<uint64_t>() == *u;
    if (const auto* i = std::get_if<int64_t>(&v.value)) return j.is_number_integer() && j.get<int64_t>() == *i;
    if (const auto* d = std::get_if<double>(&v.value)) return j.is_number() && j.get<double>() == *d;
    if (const auto* b = std::get_if<bool>(&v.value)) return j.is_boolean() && j.get<bool>() == *b;
    if (const auto* s = std::get_if<std::string_view>(&v.value)) return j.is_string() && j.get<std::string>() == *s;
    return false;
}

}  // namespace

class TstDemoGguf : public QObject {
    Q_OBJECT
private:
    std::filesystem::path m_model;
    json m_ref;
    QTemporaryDir m_tmp;

private slots:
    void initTestCase() {
        m_model = msa::findDemoModel();
        if (m_model.empty()) {
            std::string where;
            for (const auto& c : msa::demoModelCandidates()) {
                where += ' ';
                where += c.string();
            }
            QSKIP(qPrintable(QString("demo model %1 not found (looked in:%2); packaging/setup.sh fetches it")
                                 .arg(QString::fromStdString(std::string(msa::kDemoModelFile)))
                                 .arg(QString::fromStdString(where))));
        }
        // Prefer a live reading by the `gguf` package when Python has it; else the committed dump
        // made by the same script (so CI needs no Python).
        std::filesystem::path refPath = std::filesystem::path(MSA_MODEL_FIXTURES) / "smollm2-135m-instruct-q4_1.reference.json";
        QProcess py;
        const QString live = m_tmp.filePath("live-reference.json");
        py.start("python3", {QString(MSA_SOURCE_DIR) + "/tests/tools/dump_gguf_reference.py",
                             QString::fromStdString(m_model.string()), live});
        if (py.waitForFinished(120000) && py.exitStatus() == QProcess::NormalExit && py.exitCode() == 0) {
            refPath = live.toStdString();
            qInfo("reference: live gguf.GGUFReader run");
        } else {
            qInfo("reference: committed dump (python3 with the gguf package not available)");
        }
        std::ifstream in(refPath);
        QVERIFY(in.good());
        m_ref = json::parse(in);
        QCOMPARE(static_cast<uint64_t>(std::filesystem::file_size(m_model)), m_ref["file_size"].get<uint64_t>());
    }

    void metadataMatchesGgufReader() {
        auto g = GgufFile::open(m_model);
        QVERIFY2(g.ok(), g.status().toString().c_str());
        QCOMPARE(g->version(), m_ref["version"].get<uint32_t>());
        QCOMPARE(g->dataOffset(), m_ref["data_offset"].get<uint64_t>());
        QCOMPARE(g->alignment(), m_ref["alignment"].get<uint64_t>());
        QCOMPARE(g->metadata().size(), m_ref["kv_count"].get<size_t>());
        for (const auto& [key, w] : m_ref["metadata"].items()) {
            const GgufValue* v = g->find(key);
            QVERIFY2(v, key.c_str());
            std::vector<uint32_t> types = {static_cast<uint32_t>(v->type)};
            if (v->type == GgufType::Array) types.push_back(static_cast<uint32_t>(v->elemType));
            QCOMPARE(types, w["type"].get<std::vector<uint32_t>>());
            if (w.contains("value")) {
                QVERIFY2(sameValue(*v, w["value"]), (key + " differs: " + w["value"].dump().substr(0, 200)).c_str());
            } else {
                const auto* a = v->array();
                QVERIFY(a);
                QCOMPARE(a->size(), w["length"].get<size_t>());
                const json& head = w["head"];
                const json& tail = w["tail"];
                for (size_t i = 0; i < head.size(); ++i) QVERIFY2(sameValue((*a)[i], head[i]), key.c_str());
                for (size_t i = 0; i < tail.size(); ++i)
                    QVERIFY2(sameValue((*a)[a->size() - tail.size() + i], tail[i]), key.c_str());
            }
        }
    }

    void tensorDirectoryMatchesGgufReader() {
        auto g = GgufFile::open(m_model);
        QVERIFY(g.ok());
        const json& tensors = m_ref["tensors"];
        QCOMPARE(g->tensors().size(), tensors.size());
        for (size_t i = 0; i < tensors.size(); ++i) {
            const GgufTensorInfo& t = g->tensors()[i];
            QCOMPARE(std::string(t.name), tensors[i]["name"].get<std::string>());
            QCOMPARE(t.shape, tensors[i]["ggml_shape"].get<std::vector<uint64_t>>());
            QCOMPARE(dtypeInfo(t.dtype).ggmlType, tensors[i]["type"].get<uint32_t>());
            QCOMPARE(g->dataOffset() + t.offset, tensors[i]["offset"].get<uint64_t>());
            QCOMPARE(t.nBytes, tensors[i]["n_bytes"].get<uint64_t>());
        }
    }

    void rowsMatchGgufDequantize() {
        auto m = ModelFiles::open(m_model);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        std::mt19937 rng(3);
        std::normal_distribution<float> nd;
        for (const json& r : m_ref["rows"]) {
            const std::string name = r["tensor"].get<std::string>();
            const TensorView* t = (*m)->tensors().find(name);
            QVERIFY2(t, name.c_str());
            const auto row = r["row"].get<uint64_t>();
            const auto want = r["values"].get<std::vector<float>>();
            QCOMPARE(t->rowLength(), uint64_t{want.size()});
            std::vector<float> got(want.size());
            dequantizeRow(t->dtype, t->row(row), got.data(), got.size());
            for (size_t i = 0; i < got.size(); ++i)
                if (std::memcmp(&got[i], &want[i], 4) != 0)
                    QFAIL(qPrintable(QString("%1 row %2 element %3: %4 vs gguf %5").arg(name.c_str()).arg(row).arg(i)
                                         .arg(got[i], 0, 'g', 9).arg(want[i], 0, 'g', 9)));
            std::vector<float> x(want.size());
            for (float& v : x) v = nd(rng);
            double ref = 0, mag = 0;
            for (size_t i = 0; i < x.size(); ++i) {
                ref += static_cast<double>(want[i]) * x[i];
                mag += std::fabs(static_cast<double>(want[i]) * x[i]);
            }
            const float dot = dotRow(t->dtype, t->row(row), x.data(), x.size());
            QVERIFY2(std::fabs(dot - ref) <= 1e-5 * mag + 1e-6, qPrintable(QString("%1 dot %2 vs %3").arg(name.c_str()).arg(dot).arg(ref)));
        }
    }

    void modelView() {
        auto m = ModelFiles::open(m_model);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        const ModelConfig& c = (*m)->config();
        const json& meta = m_ref["metadata"];
        QCOMPARE(c.arch, Architecture::Llama);
        QCOMPARE(c.nLayers, meta["llama.block_count"]["value"].get<int>());
        QCOMPARE(c.nHeads, meta["llama.attention.head_count"]["value"].get<int>());
        QCOMPARE(c.nKvHeads, meta["llama.attention.head_count_kv"]["value"].get<int>());
        QCOMPARE(c.hiddenSize, meta["llama.embedding_length"]["value"].get<int>());
        QCOMPARE(c.ffnSize, meta["llama.feed_forward_length"]["value"].get<int>());
        QCOMPARE(c.vocabSize, meta["llama.vocab_size"]["value"].get<int>());
        QCOMPARE(c.contextLength, meta["llama.context_length"]["value"].get<int64_t>());
        QCOMPARE(c.ropeTheta, meta["llama.rope.freq_base"]["value"].get<double>());
        QCOMPARE(static_cast<double>(c.rmsNormEps), meta["llama.attention.layer_norm_rms_epsilon"]["value"].get<double>());
        QCOMPARE(c.headDim, meta["llama.rope.dimension_count"]["value"].get<int>());
        QVERIFY(c.tieWordEmbeddings);   // the file has no output.weight
        QCOMPARE(c.ropeStyle, RopeStyle::Interleaved);
        QCOMPARE((*m)->routingMode(), RoutingMode::TrainingFree);
        QCOMPARE((*m)->tensors().find("token_embd.weight")->shape,
                 (std::vector<uint64_t>{static_cast<uint64_t>(c.vocabSize), static_cast<uint64_t>(c.hiddenSize)}));
        QCOMPARE((*m)->tensors().all().size(), m_ref["tensors"].size());
        // The fingerprint is a function of the file: opening it twice agrees.
        QCOMPARE((*ModelFiles::open(m_model))->fingerprint(), (*m)->fingerprint());
    }
};

QTEST_GUILESS_MAIN(TstDemoGguf)
#include "tst_demo_gguf.moc"

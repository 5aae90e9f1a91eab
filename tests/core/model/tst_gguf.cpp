// tst_gguf: the GGUF reader (core/model/gguf_file.h).
//
// Covers: parity with the `gguf` Python package on fixtures/tiny.gguf (written by GGUFWriter, every
// metadata type incl. nested string arrays, alignment 64, one tensor of each supported type; expected
// values read by GGUFReader and dequantized by gguf.quants); typed accessors and their codes;
// one corrupt-file case per validation rule, each expecting its own code and a message naming the
// file and the tensor/key; a fuzz loop of random byte flips and truncations that must never crash
// (and whose successful opens must expose only in-bounds, decodable tensors).
// To extend: add a row to corruptFiles_data() that breaks exactly one thing in a valid builder file.
#include "core/model/gguf_file.h"

#include "test_files.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <random>

using namespace msa::model;
using namespace msa::model::testing;
using msa::ErrorCode;

Q_DECLARE_METATYPE(msa::ErrorCode)

namespace {

std::filesystem::path fixture(const std::string& name) { return std::filesystem::path(MSA_MODEL_FIXTURES) / name; }

// Compares one metadata value with GGUFReader's JSON view (nested arrays are flattened there).
void flatten(const GgufValue& v, std::vector<const GgufValue*>& out) {
    if (const auto* a = v.array()) {
        for (const GgufValue& e : *a) flatten(e, out);
    } else {
        out.push_back(&v);
    }
}

bool sameScalar(const GgufValue& v, const nlohmann::json& j) {
    if (const auto* u = std::get_if<uint64_t>(&v.value)) return j.is_number_integer() && j.get<uint64_t>() == *u;
    if (const auto* i = std::get_if<int64_t>(&v.value)) return j.is_number_integer() && j.get<int64_t>() == *i;
    if (const auto* d = std::get_if<double>(&v.value)) return j.is_number() && j.get<double>() == *d;
    if (const auto* b = std::get_if<bool>(&v.value)) return j.is_boolean() && j.get<bool>() == *b;
    if (const auto* s = std::get_if<std::string_view>(&v.value)) return j.is_string() && j.get<std::string>() == *s;
    return false;
}

// A small valid GGUF: llama-ish metadata and three tensors of different types.
GgufBuilder validBuilder() {
    GgufBuilder b;
    b.addStr("general.architecture", "llama");
    b.addU32("llama.block_count", 1);
    b.addStrArray("tokenizer.ggml.tokens", {"a", "b", "c"});
    b.addTensor("tok.weight", {32, 2}, 2 /*q4_0*/, 2 * 18);
    b.addTensor("norm.weight", {8}, 0 /*f32*/, 32);
    b.addTensor("blk.0.ffn.weight", {256, 1}, 14 /*q6_K*/, 210);
    return b;
}

}  // namespace

class TstGguf : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    std::filesystem::path write(const Bytes& b, const char* name = "t.gguf") {
        const std::filesystem::path p = std::filesystem::path(m_dir.path().toStdString()) / name;
        writeFileBytes(p, b);
        return p;
    }

private slots:
    void initTestCase() { QVERIFY(m_dir.isValid()); }

    void matchesGgufReader() {
        const auto path = fixture("tiny.gguf");
        auto g = GgufFile::open(path);
        QVERIFY2(g.ok(), g.status().toString().c_str());
        std::ifstream jf(fixture("tiny.gguf.json"));
        const nlohmann::json want = nlohmann::json::parse(jf);
        QCOMPARE(g->version(), want["version"].get<uint32_t>());
        QCOMPARE(g->alignment(), want["alignment"].get<uint64_t>());
        QCOMPARE(g->dataOffset(), want["data_offset"].get<uint64_t>());

        // Metadata: the same keys, types and values.
        QCOMPARE(g->metadata().size(), want["metadata"].size());
        for (const auto& [key, w] : want["metadata"].items()) {
            const GgufValue* v = g->find(key);
            QVERIFY2(v, key.c_str());
            std::vector<uint32_t> types;
            for (const GgufValue* cur = v;;) {
                types.push_back(static_cast<uint32_t>(cur->type));
                if (cur->type != GgufType::Array) break;
                if (cur->array()->empty()) {
                    types.push_back(static_cast<uint32_t>(cur->elemType));
                    break;
                }
                cur = &cur->array()->front();
            }
            QCOMPARE(types, w["type"].get<std::vector<uint32_t>>());
            std::vector<const GgufValue*> leaves;
            flatten(*v, leaves);
            const nlohmann::json wv = w["value"].is_array() ? w["value"] : nlohmann::json::array({w["value"]});
            QCOMPARE(leaves.size(), wv.size());
            for (size_t i = 0; i < leaves.size(); ++i)
                QVERIFY2(sameScalar(*leaves[i], wv[i]), (key + " item " + std::to_string(i) + " = " + wv[i].dump()).c_str());
        }

        // Tensors: names, GGML shapes, types, absolute offsets, sizes, and bit-exact values.
        const std::vector<float> values = readF32(fixture("tiny.gguf.f32"));
        QCOMPARE(g->tensors().size(), want["tensors"].size());
        size_t at = 0;
        for (size_t i = 0; i < g->tensors().size(); ++i) {
            const GgufTensorInfo& t = g->tensors()[i];
            const nlohmann::json& w = want["tensors"][i];
            QCOMPARE(std::string(t.name), w["name"].get<std::string>());
            QCOMPARE(t.shape, w["ggml_shape"].get<std::vector<uint64_t>>());
            QCOMPARE(dtypeInfo(t.dtype).ggmlType, w["type"].get<uint32_t>());
            QCOMPARE(g->dataOffset() + t.offset, w["offset"].get<uint64_t>());
            QCOMPARE(t.nBytes, w["n_bytes"].get<uint64_t>());
            std::vector<float> got(t.nElements);
            dequantizeRow(t.dtype, t.data.data(), got.data(), got.size());
            QVERIFY(at + got.size() <= values.size());
            QVERIFY2(std::memcmp(got.data(), values.data() + at, got.size() * 4) == 0, std::string(t.name).c_str());
            at += got.size();
        }
        QCOMPARE(at, values.size());
    }

    void accessors() {
        auto g = GgufFile::open(fixture("tiny.gguf"));
        QVERIFY(g.ok());
        QCOMPARE(*g->getString("test.string"), std::string("héllo wörld ✓"));
        QCOMPARE(*g->getString("test.empty_string"), std::string());
        QCOMPARE(*g->getU32("test.u32"), 4000000000u);
        QCOMPARE(*g->getU32("test.u8"), 200u);                        // widened losslessly
        QCOMPARE(*g->getU64("test.u64"), (uint64_t{1} << 63) + 5);
        QCOMPARE(*g->getI64("test.i64"), -(int64_t{1} << 62));
        QCOMPARE(*g->getF32("test.f32"), 0.1f);
        QCOMPARE(*g->getBool("test.bool"), true);
        QCOMPARE(*g->getIntArray("test.array_i32"), (std::vector<int64_t>{1, -2, 3}));
        QCOMPARE(*g->getF32Array("test.array_f32"), (std::vector<float>{0.5f, -1.25f}));
        QCOMPARE(*g->getStringArray("test.array_str"), (std::vector<std::string_view>{"a", "", "ccc"}));
        auto nested = g->getArray("test.nested_str");
        QVERIFY(nested.ok());
        QCOMPARE((*nested)->size(), size_t{2});
        QCOMPARE((*nested)->at(1).array()->size(), size_t{1});
        QCOMPARE(std::get<std::string_view>((*nested)->at(1).array()->at(0).value), std::string_view("zzz"));

        QCOMPARE(g->getU32("test.u64").status().code(), ErrorCode::Mismatch);     // does not fit
        QCOMPARE(g->getU32("test.i8").status().code(), ErrorCode::Mismatch);      // negative
        QCOMPARE(g->getString("test.u32").status().code(), ErrorCode::Mismatch);
        QCOMPARE(g->getStringArray("test.nested_str").status().code(), ErrorCode::Mismatch);
        const msa::Status missing = g->getString("no.such.key").status();
        QCOMPARE(missing.code(), ErrorCode::NotFound);
        QVERIFY(missing.message().find("no.such.key") != std::string::npos);
        QVERIFY(g->findTensor("t_q6_K"));
        QVERIFY(!g->findTensor("nope"));
    }

    void validBuilderOpens() {
        auto g = GgufFile::open(write(validBuilder().build()));
        QVERIFY2(g.ok(), g.status().toString().c_str());
        QCOMPARE(g->tensors().size(), size_t{3});
        QCOMPARE(g->findTensor("blk.0.ffn.weight")->dtype, DType::Q6_K);
    }

    void corruptFiles_data() {
        QTest::addColumn<int>("caseId");
        QTest::addColumn<msa::ErrorCode>("code");
        QTest::addColumn<QString>("mustName");
        QTest::newRow("wrong magic") << 0 << ErrorCode::Corrupt << "magic";
        QTest::newRow("version 1") << 1 << ErrorCode::Unsupported << "version 1";
        QTest::newRow("version 4") << 2 << ErrorCode::Unsupported << "version 4";
        QTest::newRow("truncated header") << 3 << ErrorCode::Corrupt << "truncated";
        QTest::newRow("tensor past end of file") << 4 << ErrorCode::Corrupt << "blk.0.ffn.weight";
        QTest::newRow("unsupported dtype q5_0") << 5 << ErrorCode::Unsupported << "norm.weight";
        QTest::newRow("unknown dtype id") << 6 << ErrorCode::Unsupported << "norm.weight";
        QTest::newRow("row not a block multiple") << 7 << ErrorCode::Corrupt << "tok.weight";
        QTest::newRow("absurd tensor count") << 8 << ErrorCode::Corrupt << "tensor count";
        QTest::newRow("absurd kv count") << 9 << ErrorCode::Corrupt << "metadata count";
        QTest::newRow("absurd string length") << 10 << ErrorCode::Corrupt << "string length";
        QTest::newRow("absurd array length") << 11 << ErrorCode::Corrupt << "tokenizer.ggml.tokens";
        QTest::newRow("misaligned offset") << 12 << ErrorCode::Corrupt << "norm.weight";
        QTest::newRow("overlapping tensors") << 13 << ErrorCode::Corrupt << "overlaps";
        QTest::newRow("duplicate tensor") << 14 << ErrorCode::Corrupt << "duplicate";
        QTest::newRow("zero dimensions") << 15 << ErrorCode::Corrupt << "norm.weight";
        QTest::newRow("five dimensions") << 16 << ErrorCode::Corrupt << "norm.weight";
        QTest::newRow("zero-size dimension") << 17 << ErrorCode::Corrupt << "norm.weight";
        QTest::newRow("alignment not a power of two") << 18 << ErrorCode::Corrupt << "alignment";
        QTest::newRow("empty file") << 19 << ErrorCode::Corrupt << "truncated";
        QTest::newRow("invalid metadata type") << 20 << ErrorCode::Corrupt << "bad.type";
        QTest::newRow("element count overflow") << 21 << ErrorCode::Corrupt << "norm.weight";
        QTest::newRow("bool not 0/1") << 22 << ErrorCode::Corrupt << "flag";
        QTest::newRow("duplicate key") << 23 << ErrorCode::Corrupt << "llama.block_count";
    }
    void corruptFiles() {
        QFETCH(int, caseId);
        QFETCH(msa::ErrorCode, code);
        QFETCH(QString, mustName);
        GgufBuilder b = validBuilder();
        Bytes bytes;
        switch (caseId) {
        case 0: bytes = b.build(); bytes[0] = 'X'; break;
        case 1: b.version = 1; bytes = b.build(); break;
        case 2: b.version = 4; bytes = b.build(); break;
        case 3: bytes = b.build(); bytes.resize(40); break;
        case 4: bytes = b.build(); bytes.resize(bytes.size() - 1); break;
        case 5: b.tensors[1].type = 6; break;
        case 6: b.tensors[1].type = 1000; break;
        case 7: b.tensors[0].ne = {31, 2}; break;
        case 8: b.tensorCountOverride = int64_t{1} << 60; break;
        case 9: b.kvCountOverride = int64_t{1} << 61; break;
        case 10: {
            bytes = b.build();
            // The first key's length field follows magic, version and the two counts (24 bytes).
            const uint64_t huge = uint64_t{1} << 62;
            std::memcpy(bytes.data() + 24, &huge, 8);
            break;
        }
        case 11: {
            Bytes v;
            put<uint32_t>(v, 9);
            put<uint32_t>(v, 8);
            put<uint64_t>(v, uint64_t{1} << 40);
            b.kv[2].second = v;
            break;
        }
        case 12: b.tensors[1].offsetOverride = 40; break;   // not a multiple of 32
        case 13: b.tensors[1].offsetOverride = 0; break;    // on top of tok.weight
        case 14: b.tensors[2].name = "tok.weight"; break;
        case 15: b.tensors[1].ne = {}; break;
        case 16: b.tensors[1].ne = {8, 1, 1, 1, 1}; break;
        case 17: b.tensors[1].ne = {8, 0}; break;
        case 18: b.writeAlignmentKey = true; b.alignment = 48; break;
        case 19: bytes = {}; break;
        case 20: { Bytes v; put<uint32_t>(v, 13); put<uint32_t>(v, 0); b.kv.emplace_back("bad.type", v); break; }
        case 21: b.tensors[1].ne = {uint64_t{1} << 32, uint64_t{1} << 32}; break;
        case 22: { Bytes v; put<uint32_t>(v, 7); v.push_back(2); b.kv.emplace_back("flag", v); break; }
        case 23: b.addU32("llama.block_count", 2); break;
        }
        if (bytes.empty() && caseId != 19) bytes = b.build();
        const auto path = write(bytes);
        auto g = GgufFile::open(path);
        QVERIFY2(!g.ok(), "a broken file was accepted");
        QCOMPARE(g.status().code(), code);
        const std::string msg = g.status().message();
        QVERIFY2(msg.find(path.string()) != std::string::npos, msg.c_str());
        QVERIFY2(msg.find(mustName.toStdString()) != std::string::npos, msg.c_str());
    }

    void missingFile() {
        auto g = GgufFile::open(std::filesystem::path(m_dir.path().toStdString()) / "absent.gguf");
        QCOMPARE(g.status().code(), ErrorCode::NotFound);
    }

    void fuzz() {
        // Two valid starting points: the GGUFWriter fixture (every type) and a file built here.
        const Bytes bases[2] = {readFileBytes(fixture("tiny.gguf")), validBuilder().build()};
        QVERIFY(!bases[0].empty());
        std::mt19937_64 rng(12345);
        const auto path = std::filesystem::path(m_dir.path().toStdString()) / "fuzz.gguf";
        int nOk = 0, nFail = 0;
        const int iterations = qEnvironmentVariableIntValue("MSA_FUZZ_ITERATIONS") > 0
                                   ? qEnvironmentVariableIntValue("MSA_FUZZ_ITERATIONS") : 4000;
        for (int it = 0; it < iterations; ++it) {
            Bytes b = bases[it % 2];
            const int mode = static_cast<int>(rng() % 4);
            if (mode == 0) {
                b.resize(rng() % b.size());
            } else {
                // Flip a few bytes, mostly in the header where the structure lives.
                const size_t headerEnd = std::min<size_t>(b.size(), it % 2 ? 200 : 1400);
                const int flips = 1 + static_cast<int>(rng() % 4);
                for (int f = 0; f < flips; ++f) {
                    const size_t at = (mode == 3) ? rng() % b.size() : rng() % headerEnd;
                    b[at] = (rng() % 3 == 0) ? static_cast<uint8_t>(0xFF) : static_cast<uint8_t>(rng());
                }
            }
            writeFileBytes(path, b);
            auto g = GgufFile::open(path);
            if (!g.ok()) {
                ++nFail;
                const ErrorCode c = g.status().code();
                if (c != ErrorCode::Corrupt && c != ErrorCode::Unsupported)
                    QFAIL(qPrintable(QString("iteration %1: unexpected code %2").arg(it).arg(g.status().toString().c_str())));
                continue;
            }
            ++nOk;
            // Whatever was accepted must be usable: spans inside the file and decodable.
            for (const GgufTensorInfo& t : g->tensors()) {
                QVERIFY(t.data.size() == t.nBytes);
                std::vector<float> out(t.nElements);
                dequantizeRow(t.dtype, t.data.data(), out.data(), out.size());
            }
            for (const GgufKeyValue& kv : g->metadata()) (void)g->getString(kv.key);
        }
        qInfo("fuzz: %d iterations, %d opened, %d rejected", iterations, nOk, nFail);
        QVERIFY(nFail > 0);
        QVERIFY(nOk > 0);   // flips inside tensor data leave a valid file
    }
};

QTEST_GUILESS_MAIN(TstGguf)
#include "tst_gguf.moc"

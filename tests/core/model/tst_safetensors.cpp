// tst_safetensors: the safetensors readers (core/model/safetensors_file.h).
//
// Covers: parity with fixtures/tiny.safetensors written by the `safetensors` package (names, dtypes,
// shapes incl. a scalar and an empty tensor, values, __metadata__); sharded sets through
// model.safetensors.index.json; one corrupt-file case per validation rule with its own code and a
// message naming the file and tensor; a fuzz loop of byte flips/truncations that must never crash.
// To extend: add a row to corruptFiles_data() that breaks one thing in validHeader().
#include "core/model/safetensors_file.h"

#include "test_files.h"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <random>

using namespace msa::model;
using namespace msa::model::testing;
using msa::ErrorCode;
using nlohmann::json;

Q_DECLARE_METATYPE(msa::ErrorCode)

namespace {

std::filesystem::path fixture(const std::string& name) { return std::filesystem::path(MSA_MODEL_FIXTURES) / name; }

// a: F32 [2,3] at [0,24), b: BF16 [4] at [24,32), c: F16 [2,2] at [32,40).
json validHeader() {
    return json{{"__metadata__", {{"format", "pt"}}},
                {"a", {{"dtype", "F32"}, {"shape", {2, 3}}, {"data_offsets", {0, 24}}}},
                {"b", {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {24, 32}}}},
                {"c", {{"dtype", "F16"}, {"shape", {2, 2}}, {"data_offsets", {32, 40}}}}};
}

}  // namespace

class TstSafetensors : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    std::filesystem::path dir() const { return m_dir.path().toStdString(); }
    std::filesystem::path write(const Bytes& b, const char* name = "t.safetensors") {
        writeFileBytes(dir() / name, b);
        return dir() / name;
    }

private slots:
    void initTestCase() { QVERIFY(m_dir.isValid()); }

    void matchesSafetensorsPackage() {
        auto f = SafetensorsFile::open(fixture("tiny.safetensors"));
        QVERIFY2(f.ok(), f.status().toString().c_str());
        std::ifstream jf(fixture("tiny.safetensors.json"));
        const json want = json::parse(jf);
        QCOMPARE(f->metadata().at("format"), std::string("pt"));
        QCOMPARE(f->metadata().at("note"), std::string("fixture"));
        QCOMPARE(f->tensors().size(), want["tensors"].size());
        for (const auto& [name, w] : want["tensors"].items()) {
            const SafetensorsTensor* t = f->findTensor(name);
            QVERIFY2(t, name.c_str());
            QCOMPARE(std::string(dtypeName(t->dtype)), w["dtype"].get<std::string>() == "F32" ? std::string("f32") : std::string("f16"));
            QCOMPARE(t->shape, w["shape"].get<std::vector<uint64_t>>());
            const auto values = w["values"].get<std::vector<float>>();
            std::vector<float> got(values.size());
            if (!got.empty()) dequantizeRow(t->dtype, t->data.data(), got.data(), got.size());
            QCOMPARE(got, values);
        }
    }

    void sharded() {
        json h1 = {{"x", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
        json h2 = {{"y", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {0, 8}}}},
                   {"z", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}}}};
        write(buildSafetensors(h1, 8), "model-00001-of-00002.safetensors");
        write(buildSafetensors(h2, 12), "model-00002-of-00002.safetensors");
        json index = {{"metadata", {{"total_size", 20}}},
                      {"weight_map", {{"x", "model-00001-of-00002.safetensors"},
                                      {"y", "model-00002-of-00002.safetensors"},
                                      {"z", "model-00002-of-00002.safetensors"}}}};
        const std::string text = index.dump();
        write(Bytes(text.begin(), text.end()), "model.safetensors.index.json");
        auto set = SafetensorsSet::open(dir() / "model.safetensors.index.json");
        QVERIFY2(set.ok(), set.status().toString().c_str());
        QCOMPARE(set->files().size(), size_t{2});
        QCOMPARE(set->tensors().size(), size_t{3});
        QVERIFY(set->findTensor("z"));
        QCOMPARE(set->findTensor("z")->file->filename().string(), std::string("model-00002-of-00002.safetensors"));

        // The index names a tensor its shard lacks.
        index["weight_map"]["w"] = "model-00001-of-00002.safetensors";
        std::string t2 = index.dump();
        write(Bytes(t2.begin(), t2.end()), "bad1.index.json");
        auto bad = SafetensorsSet::open(dir() / "bad1.index.json");
        QCOMPARE(bad.status().code(), ErrorCode::Corrupt);
        QVERIFY(bad.status().message().find("'w'") != std::string::npos);

        // A shard that does not exist.
        index["weight_map"].erase("w");
        index["weight_map"]["x"] = "model-00003-of-00003.safetensors";
        t2 = index.dump();
        write(Bytes(t2.begin(), t2.end()), "bad2.index.json");
        QCOMPARE(SafetensorsSet::open(dir() / "bad2.index.json").status().code(), ErrorCode::NotFound);

        // A shard name reaching outside the folder.
        index["weight_map"]["x"] = "../model-00001-of-00002.safetensors";
        t2 = index.dump();
        write(Bytes(t2.begin(), t2.end()), "bad3.index.json");
        QCOMPARE(SafetensorsSet::open(dir() / "bad3.index.json").status().code(), ErrorCode::Corrupt);
    }

    void duplicateAcrossShards() {
        json h = {{"y", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {0, 8}}}}};
        write(buildSafetensors(h, 8), "s1.safetensors");
        write(buildSafetensors(h, 8), "s2.safetensors");
        json idx = {{"weight_map", {{"y", "s1.safetensors"}, {"y_other", "s2.safetensors"}}}};
        // y_other does not exist in s2 -> Corrupt naming it (the index is checked before duplicates).
        std::string t = idx.dump();
        write(Bytes(t.begin(), t.end()), "d.index.json");
        auto r = SafetensorsSet::open(dir() / "d.index.json");
        QCOMPARE(r.status().code(), ErrorCode::Corrupt);
        QVERIFY(r.status().message().find("y_other") != std::string::npos);
        // Listing both shards for real names: "y" is then in both files.
        idx = {{"weight_map", {{"y", "s1.safetensors"}}}};
        json h2 = {{"y", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {0, 8}}}},
                   {"k", {{"dtype", "F16"}, {"shape", {4}}, {"data_offsets", {8, 16}}}}};
        write(buildSafetensors(h2, 16), "s3.safetensors");
        idx["weight_map"]["k"] = "s3.safetensors";
        t = idx.dump();
        write(Bytes(t.begin(), t.end()), "d2.index.json");
        auto r2 = SafetensorsSet::open(dir() / "d2.index.json");
        QCOMPARE(r2.status().code(), ErrorCode::Corrupt);
        QVERIFY2(r2.status().message().find("'y' also appears") != std::string::npos, r2.status().message().c_str());
    }

    void corruptFiles_data() {
        QTest::addColumn<int>("caseId");
        QTest::addColumn<msa::ErrorCode>("code");
        QTest::addColumn<QString>("mustName");
        QTest::newRow("too short for the length") << 0 << ErrorCode::Corrupt << "truncated";
        QTest::newRow("header length past end") << 1 << ErrorCode::Corrupt << "truncated";
        QTest::newRow("header not JSON") << 2 << ErrorCode::Corrupt << "JSON";
        QTest::newRow("header not an object") << 3 << ErrorCode::Corrupt << "object";
        QTest::newRow("tensor past end of file") << 4 << ErrorCode::Corrupt << "'c'";
        QTest::newRow("unsupported dtype I8") << 5 << ErrorCode::Unsupported << "'b'";
        QTest::newRow("unknown dtype") << 6 << ErrorCode::Unsupported << "'b'";
        QTest::newRow("size does not match shape") << 7 << ErrorCode::Corrupt << "'a'";
        QTest::newRow("overlapping tensors") << 8 << ErrorCode::Corrupt << "overlaps";
        QTest::newRow("end before begin") << 9 << ErrorCode::Corrupt << "'a'";
        QTest::newRow("negative shape") << 10 << ErrorCode::Corrupt << "'a'";
        QTest::newRow("absurd shape (overflow)") << 11 << ErrorCode::Corrupt << "'a'";
        QTest::newRow("missing data_offsets") << 12 << ErrorCode::Corrupt << "'c'";
        QTest::newRow("absurd header length") << 13 << ErrorCode::Corrupt << "header length";
        QTest::newRow("metadata not strings") << 14 << ErrorCode::Corrupt << "__metadata__";
        QTest::newRow("empty file") << 15 << ErrorCode::Corrupt << "truncated";
    }
    void corruptFiles() {
        QFETCH(int, caseId);
        QFETCH(msa::ErrorCode, code);
        QFETCH(QString, mustName);
        json h = validHeader();
        uint64_t dataSize = 40;
        Bytes b;
        switch (caseId) {
        case 0: b = {1, 2, 3}; break;
        case 1: b = buildSafetensors(h, dataSize); b[0] = 0xFF; b[1] = 0xFF; break;
        case 2: { std::string s = "{\"a\": [1, 2"; b.resize(8); uint64_t n = s.size(); std::memcpy(b.data(), &n, 8); b.insert(b.end(), s.begin(), s.end()); break; }
        case 3: { std::string s = "[1,2,3]"; b.resize(8); uint64_t n = s.size(); std::memcpy(b.data(), &n, 8); b.insert(b.end(), s.begin(), s.end()); break; }
        case 4: dataSize = 39; break;
        case 5: h["b"]["dtype"] = "I8"; h["b"]["data_offsets"] = {24, 28}; break;
        case 6: h["b"]["dtype"] = "Q4"; break;
        case 7: h["a"]["shape"] = {2, 2}; break;
        case 8: h["b"]["data_offsets"] = {20, 28}; break;
        case 9: h["a"]["data_offsets"] = {24, 0}; break;
        case 10: h["a"]["shape"] = {-2, 3}; break;
        case 11: h["a"]["shape"] = {uint64_t{1} << 40, uint64_t{1} << 40}; break;
        case 12: h["c"].erase("data_offsets"); break;
        case 13: { b.resize(8); uint64_t n = uint64_t{1} << 62; std::memcpy(b.data(), &n, 8); b.resize(200, ' '); break; }
        case 14: h["__metadata__"]["x"] = 3; break;
        case 15: b = {}; break;
        }
        if (b.empty() && caseId != 15) b = buildSafetensors(h, dataSize);
        const auto path = write(b);
        auto f = SafetensorsFile::open(path);
        QVERIFY2(!f.ok(), "a broken file was accepted");
        QCOMPARE(f.status().code(), code);
        const std::string msg = f.status().message();
        QVERIFY2(msg.find(path.string()) != std::string::npos, msg.c_str());
        QVERIFY2(msg.find(mustName.toStdString()) != std::string::npos, msg.c_str());
    }

    void validOpens() {
        auto f = SafetensorsFile::open(write(buildSafetensors(validHeader(), 40)));
        QVERIFY2(f.ok(), f.status().toString().c_str());
        QCOMPARE(f->tensors().size(), size_t{3});
        QCOMPARE(f->findTensor("b")->dtype, DType::BF16);
        QCOMPARE(f->findTensor("b")->data.size(), size_t{8});
    }

    void fuzz() {
        // Two valid starting points: the `safetensors` package's fixture and a file built here.
        const Bytes bases[2] = {readFileBytes(fixture("tiny.safetensors")), buildSafetensors(validHeader(), 40)};
        QVERIFY(!bases[0].empty());
        std::mt19937_64 rng(777);
        const auto path = dir() / "fuzz.safetensors";
        int nOk = 0, nFail = 0;
        const int iterations = qEnvironmentVariableIntValue("MSA_FUZZ_ITERATIONS") > 0
                                   ? qEnvironmentVariableIntValue("MSA_FUZZ_ITERATIONS") : 4000;
        const char interesting[] = "0123456789-[]{}\",:eE. FIBU";
        for (int it = 0; it < iterations; ++it) {
            Bytes b = bases[it % 2];
            uint64_t headerLen = 0;
            std::memcpy(&headerLen, b.data(), 8);
            const int mode = static_cast<int>(rng() % 4);
            if (mode == 0) {
                b.resize(rng() % b.size());
            } else {
                const int flips = 1 + static_cast<int>(rng() % 3);
                for (int f = 0; f < flips; ++f) {
                    const size_t at = (mode == 3) ? rng() % b.size() : rng() % (8 + headerLen);
                    // JSON-aware mutations reach the validation code more often than random bytes.
                    b[at] = (mode == 2) ? static_cast<uint8_t>(interesting[rng() % (sizeof(interesting) - 1)])
                                        : static_cast<uint8_t>(rng());
                }
            }
            writeFileBytes(path, b);
            auto f = SafetensorsFile::open(path);
            if (!f.ok()) {
                ++nFail;
                const ErrorCode c = f.status().code();
                if (c != ErrorCode::Corrupt && c != ErrorCode::Unsupported)
                    QFAIL(qPrintable(QString("iteration %1: unexpected %2").arg(it).arg(f.status().toString().c_str())));
                continue;
            }
            ++nOk;
            for (const SafetensorsTensor& t : f->tensors()) {
                uint64_t n = 1;
                for (uint64_t d : t.shape) n *= d;
                QCOMPARE(t.data.size(), n * dtypeInfo(t.dtype).blockBytes);
                std::vector<float> out(n);
                if (n) dequantizeRow(t.dtype, t.data.data(), out.data(), n);
            }
        }
        qInfo("fuzz: %d iterations, %d opened, %d rejected", iterations, nOk, nFail);
        QVERIFY(nFail > 0);
        QVERIFY(nOk > 0);
    }
};

QTEST_GUILESS_MAIN(TstSafetensors)
#include "tst_safetensors.moc"

// tst_doctor.cpp: core/jobs/doctor — the GGUF header check behind "demo model valid", the demo
// model/archive search (MSA_DEMO_MODEL / MSA_DEMO_ARCHIVE overrides), the JSON report's contract and
// the status-bar summary. Extend with a slot per new fact the doctor reports.
#include "core/jobs/doctor.h"
#include "core/util/paths.h"

#include <QTemporaryDir>
#include <QtTest>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

using namespace msa;

namespace {
std::string writeBytes(const QTemporaryDir& dir, const char* name, const std::string& bytes) {
    const std::string path = dir.filePath(name).toStdString();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
}
std::string ggufHeader(uint32_t version) {
    std::string h = "GGUF";
    for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((version >> (8 * i)) & 0xff));
    h += std::string(16, '\0');   // tensor and metadata counts
    return h;
}
// Sets an environment variable for the scope of one test.
struct ScopedEnv {
    std::string name;
    ScopedEnv(const char* n, const std::string& v) : name(n) { ::setenv(n, v.c_str(), 1); }
    ~ScopedEnv() { ::unsetenv(name.c_str()); }
};
}  // namespace

class TestDoctor : public QObject {
    Q_OBJECT
private slots:
    void ggufHeaderCheck() {
        QTemporaryDir dir;
        QVERIFY(jobs::checkGgufHeader(writeBytes(dir, "v3.gguf", ggufHeader(3))).ok);
        QCOMPARE(jobs::checkGgufHeader(writeBytes(dir, "v2.gguf", ggufHeader(2))).version, 2u);
        const auto v9 = jobs::checkGgufHeader(writeBytes(dir, "v9.gguf", ggufHeader(9)));
        QVERIFY(!v9.ok);
        QVERIFY(v9.problem.find("version 9") != std::string::npos);
        const auto magic = jobs::checkGgufHeader(writeBytes(dir, "bad.gguf", "GGML" + ggufHeader(3).substr(4)));
        QVERIFY(!magic.ok);
        QVERIFY(magic.problem.find("magic") != std::string::npos);
        const auto shortFile = jobs::checkGgufHeader(writeBytes(dir, "short.gguf", "GGU"));
        QVERIFY(!shortFile.ok);
        QVERIFY(shortFile.problem.find("truncated") != std::string::npos);
        QVERIFY(!jobs::checkGgufHeader(dir.filePath("none.gguf").toStdString()).ok);
    }

    void demoModelOverride() {
        QTemporaryDir dir;
        const std::string good = writeBytes(dir, "m.gguf", ggufHeader(3));
        {
            ScopedEnv env("MSA_DEMO_MODEL", good);
            const auto report = jobs::runDoctor(engine::BackendRegistry::withCpu());
            QVERIFY(report.demoModel.present);
            QVERIFY(report.demoModel.looksValid);
            QCOMPARE(report.demoModel.ggufVersion, 3u);
            QCOMPARE(report.demoModel.path.string(), good);
            QVERIFY(report.healthy());
        }
        {
            // An explicit path that does not exist is reported, never replaced by another copy.
            ScopedEnv env("MSA_DEMO_MODEL", dir.filePath("missing.gguf").toStdString());
            const auto report = jobs::runDoctor(engine::BackendRegistry::withCpu());
            QVERIFY(!report.demoModel.present);
            QVERIFY(!report.healthy());
            QCOMPARE(report.demoModel.searched.size(), size_t(1));
            QVERIFY(report.demoModel.problem.find("setup.sh") != std::string::npos);
        }
        {
            ScopedEnv env("MSA_DEMO_MODEL", writeBytes(dir, "corrupt.gguf", "not a model at all"));
            const auto report = jobs::runDoctor(engine::BackendRegistry::withCpu());
            QVERIFY(report.demoModel.present);
            QVERIFY(!report.demoModel.looksValid);
            QVERIFY(!report.healthy());
        }
    }

    void demoArchiveOverride() {
        QTemporaryDir dir;
        QVERIFY(QDir(dir.path()).mkpath("mail"));
        writeBytes(dir, "a.md", "hello");
        writeBytes(dir, "mail/b.eml", "From: x\n\nbody");
        ScopedEnv env("MSA_DEMO_ARCHIVE", dir.path().toStdString());
        const auto report = jobs::runDoctor(engine::BackendRegistry::withCpu());
        QVERIFY(report.demoArchive.present);
        QCOMPARE(report.demoArchive.nFiles, uint64_t(2));
        QCOMPARE(report.demoArchive.nBytes, uint64_t(5 + 13));
    }

    void jsonContract() {
        engine::BackendRegistry reg = engine::BackendRegistry::withCpu();
        engine::BackendInfo cuda;
        cuda.name = "cuda";
        cuda.reason = "built without CUDA";
        reg.add(cuda);
        const nlohmann::json j = jobs::toJson(jobs::runDoctor(reg));
        for (const char* key : {"version", "build_type", "backends", "preferred_backend", "demo_model", "demo_archive", "healthy"})
            QVERIFY2(j.contains(key), key);
        QCOMPARE(j["backends"].size(), size_t(2));
        QCOMPARE(j["backends"][0]["name"].get<std::string>(), std::string("cpu"));
        QVERIFY(j["backends"][0]["usable"].get<bool>());
        QVERIFY(j["backends"][0]["devices"][0]["compute_units"].get<unsigned>() >= 1);
        QCOMPARE(j["backends"][1]["reason"].get<std::string>(), std::string("built without CUDA"));
        QCOMPARE(j["preferred_backend"].get<std::string>(), std::string("cpu"));   // unusable GPU is never preferred
    }

    void summaryLine() {
        engine::BackendRegistry reg = engine::BackendRegistry::withCpu();
        engine::BackendInfo cuda;
        cuda.name = "cuda";
        cuda.built = true;
        cuda.reason = "no CUDA device present";
        reg.add(cuda);
        const std::string s = jobs::backendSummary(reg);
        QVERIFY2(s.find("CPU") == 0, s.c_str());
        QVERIFY2(s.find("CUDA: no CUDA device present") != std::string::npos, s.c_str());
        QCOMPARE(reg.preferred().name, std::string("cpu"));
        engine::BackendInfo gpu;
        gpu.name = "cuda2";
        gpu.built = gpu.usable = true;
        gpu.devices.push_back({"cuda:0", "Test GPU", 1, 1, ""});
        reg.add(gpu);
        QCOMPARE(reg.preferred().name, std::string("cuda2"));   // a usable GPU wins
    }
};

QTEST_GUILESS_MAIN(TestDoctor)
#include "tst_doctor.moc"

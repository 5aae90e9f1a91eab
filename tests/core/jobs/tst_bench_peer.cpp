// tst_bench_peer.cpp: the PyTorch peer of `msa bench gpu` (tests/tools/bench_peer_torch.py) computes
// what our engine computes, so that its timings are a fair yardstick. On the tiny random checkpoint
// that the harness writes (core/jobs/bench_gpu.h writeRandomCheckpoint):
//   - the peer's logits (Hugging Face transformers Qwen3, float32 on the CPU) equal our CPU backend's
//     for every token within 1e-4 + 1e-3·|ref|;
//   - the peer's reference routing (matmul, head mean, token max, chunk → document max by
//     scatter_reduce, torch.topk) over the synthetic keys — which the peer regenerates from the same
//     splitmix64 recipe in numpy — selects the same documents in the same order as our memory::Router
//     through the harness's CPU scanner, with the same scores.
// Skips when python3 cannot import torch and transformers. Also checks the checkpoint is
// deterministic (same seed → same bytes) and that a device without a routing scan gets its figures
// noted "not measured", not a failed run. Extend: add a field to parity.json and compare it here.
#include "core/engine/backend.h"
#include "core/jobs/bench_gpu.h"
#include "core/model/model_files.h"

#include <QCryptographicHash>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>
#include <random>

using namespace msa;

namespace {
bool peerAvailable() {
    QProcess p;
    p.start(QStringLiteral("python3"), {QStringLiteral("-c"), QStringLiteral("import torch, transformers, numpy")});
    return p.waitForFinished(120000) && p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}

QByteArray sha(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly)) return {};
    QCryptographicHash h(QCryptographicHash::Sha256);
    h.addData(&f);
    return h.result();
}
}  // namespace

class TestBenchPeer : public QObject {
    Q_OBJECT
private slots:
    void checkpointIsDeterministic() {
        QTemporaryDir a, b;
        const jobs::BenchModelShape s = jobs::BenchModelShape::tiny();
        QVERIFY(jobs::writeRandomCheckpoint(a.filePath("m").toStdString(), s, 5).ok());
        QVERIFY(jobs::writeRandomCheckpoint(b.filePath("m").toStdString(), s, 5).ok());
        QCOMPARE(sha(a.filePath("m/model.safetensors")), sha(b.filePath("m/model.safetensors")));
        QVERIFY(jobs::writeRandomCheckpoint(b.filePath("m").toStdString(), s, 6).ok());
        QVERIFY(sha(a.filePath("m/model.safetensors")) != sha(b.filePath("m/model.safetensors")));
        Result<std::unique_ptr<model::ModelFiles>> files = model::ModelFiles::open(a.filePath("m").toStdString());
        QVERIFY2(files.ok(), files.ok() ? "" : files.status().toString().c_str());
        QCOMPARE((*files)->config().nLayers, s.nLayers);
        QCOMPARE((*files)->config().hiddenSize, s.hidden);
    }

    // The harness on the CPU backend with a device whose routing scan is missing (as on a GPU before
    // the fused scan is wired): the scan and ttft figures say why, the others are measured.
    void missingOperationsAreNotedNotFatal() {
        jobs::GpuBenchOptions o;
        o.shape = jobs::BenchModelShape::tiny();
        o.shape.bankTokens = {20000};
        o.hooks = jobs::cpuBenchHooks(2);
        o.hooks.openScanner = [](const jobs::ScanSpec&) -> Result<std::unique_ptr<jobs::BenchScanner>> {
            return unimplemented("no scan here");
        };
        o.repeats = 1;
        o.nThreads = 2;
        Result<jobs::GpuBenchResult> r = jobs::runGpuBench(o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.status().toString().c_str());
        QCOMPARE(r->figures.size(), size_t{4});
        for (const jobs::Figure& f : r->figures) {
            const bool needsScan = f.name.rfind("scan", 0) == 0 || f.name.rfind("ttft", 0) == 0;
            if (needsScan) {
                QCOMPARE(f.value, 0.0);
                QVERIFY2(f.note.rfind("not measured: unimplemented: no scan here", 0) == 0, f.note.c_str());
            } else {
                QVERIFY2(f.value > 0, f.name.c_str());
            }
        }
        const std::string text = jobs::toText(*r);
        QVERIFY2(text.find("not measured: unimplemented: no scan here") != std::string::npos, text.c_str());
        QCOMPARE(jobs::toJson(*r)["figures"].size(), size_t{4});
    }

    // The scan rows of the 8-bit storages and the check against the CPU Router, driven through the
    // CPU hooks (a GPU session runs the same path with the CUDA hooks: tests/gpu/tst_gpu_bench): one
    // extra row per storage with its own (smaller) key bytes, one check line per (bank, storage); and
    // a scanner over other keys (another seed) makes the check fail, so it can.
    void eightBitRowsAndCpuCheck() {
        jobs::GpuBenchOptions o;
        o.shape = jobs::BenchModelShape::tiny();
        o.shape.bankTokens = {20000};
        o.hooks = jobs::cpuBenchHooks(2);
        o.hooks.extraKeyStorages = {memory::KeyStorage::Fp8E4M3, memory::KeyStorage::Int8};
        o.hooks.checkAgainstCpuUpTo = 1000000;
        o.repeats = 1;
        o.nThreads = 2;
        Result<jobs::GpuBenchResult> r = jobs::runGpuBench(o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.status().toString().c_str());
        std::vector<std::string> names;
        for (const jobs::Figure& f : r->figures) names.push_back(f.name);
        const std::vector<std::string> expected = {"encoding", "scan 20000", "scan 20000 fp8-e4m3", "scan 20000 int8", "decode", "ttft 20000"};
        QCOMPARE(names, expected);
        const jobs::Figure& native = r->figures[1];
        QVERIFY2(native.value > 0, native.note.c_str());
        QVERIFY2(native.note.find("host clock") != std::string::npos, native.note.c_str());
        for (size_t i : {size_t{2}, size_t{3}}) {
            const jobs::Figure& f = r->figures[i];
            QVERIFY2(f.value > 0, f.note.c_str());
            QCOMPARE(f.peer, 0.0);
            // D + 4 bytes per (chunk, head) row instead of 2·D: the tiny shape's 16 dims → 20/32 of the bf16 bytes.
            QVERIFY2(std::abs(f.limit / native.limit - 20.0 / 32.0) < 1e-9, f.note.c_str());
        }
        QCOMPARE(r->scanChecks.size(), size_t{3});
        QVERIFY2(r->scanChecksPassed, jobs::toText(*r).c_str());
        for (const std::string& c : r->scanChecks) QVERIFY2(c.find("identical to the CPU Router's") != std::string::npos, c.c_str());
        QVERIFY(jobs::toJson(*r)["scan_checks_passed"].get<bool>());

        // A scanner over different keys: the check says so (and the run still completes).
        jobs::DeviceBenchHooks cpu = jobs::cpuBenchHooks(2);
        o.hooks.extraKeyStorages.clear();
        o.hooks.openScanner = [cpu](const jobs::ScanSpec& spec) {
            jobs::ScanSpec other = spec;
            other.seed = spec.seed + 1;
            return cpu.openScanner(other);
        };
        Result<jobs::GpuBenchResult> bad = jobs::runGpuBench(o);
        QVERIFY2(bad.ok(), bad.ok() ? "" : bad.status().toString().c_str());
        QCOMPARE(bad->scanChecks.size(), size_t{1});
        QVERIFY(!bad->scanChecksPassed);
        QVERIFY2(bad->scanChecks[0].find("DIFFERS") != std::string::npos, bad->scanChecks[0].c_str());
    }

    void peerComputesWhatWeCompute() {
        if (!peerAvailable()) QSKIP("python3 cannot import torch, transformers and numpy (pip install torch transformers numpy)");
        QTemporaryDir dir;
        const jobs::BenchModelShape s = jobs::BenchModelShape::tiny();
        const std::string modelDir = dir.filePath("model").toStdString();
        QVERIFY(jobs::writeRandomCheckpoint(modelDir, s, 42).ok());

        // Our logits for every token.
        std::mt19937 rng(3);
        std::uniform_int_distribution<int32_t> pick(3, s.vocab - 1);
        std::vector<int32_t> tokens(37), pos(37);
        for (size_t i = 0; i < tokens.size(); ++i) {
            tokens[i] = pick(rng);
            pos[i] = static_cast<int32_t>(i);
        }
        Result<std::unique_ptr<model::ModelFiles>> opened = model::ModelFiles::open(modelDir);
        QVERIFY(opened.ok());
        std::shared_ptr<const model::ModelFiles> files = std::move(*opened);
        auto loaded = engine::createCpuBackend()->load(files);
        QVERIFY(loaded.ok());
        auto session = (*loaded)->createSession({.maxTokens = 64, .nThreads = 2});
        QVERIFY(session.ok());
        engine::ForwardOptions fo;
        fo.allLogits = true;
        auto logits = (*session)->forward(tokens, pos, fo);
        QVERIFY(logits.ok());
        const std::vector<float> ours(logits->begin(), logits->end());

        // Our routing over synthetic keys: 200 chunks in documents of 3 (the last has 2), 9 query tokens.
        jobs::ScanSpec spec;
        spec.nChunks = 200;
        spec.chunksPerDoc = 3;
        spec.nHeads = static_cast<size_t>(s.nKvHeads);
        spec.headDim = static_cast<size_t>(s.headDim);
        spec.nQueryHeads = static_cast<size_t>(s.nHeads);
        spec.seed = 11;
        const size_t T = 9, k = 8;
        std::normal_distribution<float> nd;
        std::vector<float> raw(T * spec.nQueryHeads * spec.headDim);
        for (float& x : raw) x = nd(rng);
        std::vector<float> prepared = raw;
        for (float& x : prepared) x *= 1.0f / std::sqrt(static_cast<float>(spec.headDim));
        auto scanner = jobs::cpuBenchHooks(2).openScanner(spec);
        QVERIFY(scanner.ok());
        auto top = (*scanner)->scan(prepared, T, k);
        QVERIFY(top.ok());
        QCOMPARE(top->size(), k);

        const QString input = dir.filePath("parity.json");
        {
            nlohmann::json j = {{"tokens", tokens}, {"queries", raw}, {"query_tokens", T},
                                {"query_heads", spec.nQueryHeads}, {"key_heads", spec.nHeads},
                                {"head_dim", spec.headDim}, {"n_chunks", spec.nChunks},
                                {"chunks_per_doc", spec.chunksPerDoc}, {"keys_seed", spec.seed}, {"top_k", k}};
            std::ofstream(input.toStdString()) << j.dump();
        }
        Result<nlohmann::json> peer = jobs::runPeer("python3", MSA_SOURCE_DIR "/tests/tools/bench_peer_torch.py",
                                                    {"parity", "--checkpoint", modelDir, "--input", input.toStdString()});
        QVERIFY2(peer.ok(), peer.ok() ? "" : peer.status().toString().c_str());

        const std::vector<float> theirs = (*peer)["logits"].get<std::vector<float>>();
        QCOMPARE(theirs.size(), ours.size());
        double worst = 0;
        for (size_t i = 0; i < ours.size(); ++i) {
            const double err = std::abs(static_cast<double>(ours[i]) - theirs[i]);
            worst = std::max(worst, err);
            QVERIFY2(err <= 1e-4 + 1e-3 * std::abs(theirs[i]),
                     qPrintable(QString("logit %1: ours %2, peer %3").arg(i).arg(ours[i]).arg(theirs[i])));
        }
        qInfo("logits: %zu values, max |ours - peer| = %.3g", ours.size(), worst);

        const std::vector<uint32_t> peerTop = (*peer)["topk"].get<std::vector<uint32_t>>();
        QCOMPARE(peerTop, *top);
    }
};

QTEST_GUILESS_MAIN(TestBenchPeer)
#include "tst_bench_peer.moc"

// tst_device_cli.cpp: --device on the msa executable (issue 6 item 7): in a build or on a machine
// without a usable GPU, `--device cuda` runs on the CPU, says why on stderr and in --json, and gives
// the CPU's result; a device that does not exist or a malformed spec exits 2 naming the available
// devices; `msa bench gpu` without a GPU exits 9 (DeviceError) with the reason, and with
// `--device cpu --shape tiny` runs the whole harness on the CPU. Runs the real binary with QProcess.
// On a machine with a usable GPU the fallback cases skip (they describe the CPU-only situation).
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QtTest>

namespace {
struct Run {
    int exitCode = -1;
    QString out;
    QString err;
};

Run runMsa(const QStringList& args, int timeoutMs = 120000) {
    QProcess p;
    p.start(QStringLiteral(MSA_CLI_PATH), args);
    if (!p.waitForFinished(timeoutMs)) {
        p.kill();
        return {};
    }
    Run r;
    r.exitCode = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

const QString kTiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32");
}  // namespace

class TestDeviceCli : public QObject {
    Q_OBJECT
    bool m_gpu = false;
    QJsonObject m_doctor;
private slots:
    void initTestCase() {
        const Run d = runMsa({"doctor", "--json"});
        QCOMPARE(d.exitCode, 0);
        m_doctor = QJsonDocument::fromJson(d.out.toUtf8()).object();
        for (const QJsonValue b : m_doctor["backends"].toArray())
            if (b.toObject()["name"] == QStringLiteral("cuda") && b.toObject()["usable"].toBool()) m_gpu = true;
    }

    void doctorListsTheDeviceChoices() {
        const QJsonObject dev = m_doctor["device"].toObject();
        const QJsonArray choices = dev["choices"].toArray();
        QVERIFY(choices.contains(QStringLiteral("auto")));
        QVERIFY(choices.contains(QStringLiteral("cpu")));
        QVERIFY(!dev["auto"].toString().isEmpty());
        const Run text = runMsa({"doctor"});
        QVERIFY2(text.out.contains("--device choices: auto cpu"), qPrintable(text.out));
    }

    void generateOnCudaFallsBackToTheCpuAndSaysWhy() {
        if (m_gpu) QSKIP("a CUDA device is usable here: --device cuda does not fall back");
        const Run cpu = runMsa({"generate", "--json", "--device", "cpu", "--model", kTiny, "--max-tokens", "4", "abc"});
        QCOMPARE(cpu.exitCode, 0);
        const Run cuda = runMsa({"generate", "--json", "--device", "cuda", "--model", kTiny, "--max-tokens", "4", "abc"});
        QCOMPARE(cuda.exitCode, 0);
        QVERIFY2(cuda.err.startsWith("msa generate: note: cuda requested but not usable: "), qPrintable(cuda.err));
        QVERIFY2(cuda.err.contains("; running on the CPU\n"), qPrintable(cuda.err));
        const QJsonObject j = QJsonDocument::fromJson(cuda.out.toUtf8()).object();
        const QJsonObject dev = j["device"].toObject();
        QCOMPARE(dev["id"].toString(), QString("cpu"));
        QCOMPARE(dev["requested"].toString(), QString("cuda"));
        QVERIFY(dev["fell_back"].toBool());
        QVERIFY2(dev["note"].toString().contains("requested but not usable"), qPrintable(dev["note"].toString()));
        // The same computation as on the CPU: identical greedy tokens.
        QCOMPARE(j["tokens"], QJsonDocument::fromJson(cpu.out.toUtf8()).object()["tokens"]);
        QVERIFY(!QJsonDocument::fromJson(cpu.out.toUtf8()).object()["device"].toObject()["fell_back"].toBool());

        // Text mode: the note on stderr, the device in the timing line.
        const Run text = runMsa({"generate", "--device", "cuda:all", "--model", kTiny, "--max-tokens", "2", "abc"});
        QCOMPARE(text.exitCode, 0);
        QVERIFY2(text.err.contains("msa generate: note: cuda:all requested but not usable"), qPrintable(text.err));
        QVERIFY2(text.err.contains("device: cpu"), qPrintable(text.err));
    }

    void unknownDevicesAreUsageErrors() {
        for (const QString& spec : {QStringLiteral("cuda:7"), QStringLiteral("tpu"), QStringLiteral("cuda:x")}) {
            const Run r = runMsa({"generate", "--device", spec, "--model", kTiny, "--max-tokens", "1", "abc"});
            QCOMPARE(r.exitCode, 2);
            QVERIFY2(r.err.startsWith("msa generate: invalid_argument: "), qPrintable(r.err));
            QVERIFY2(r.err.contains(spec) && r.err.contains("available: auto, cpu"), qPrintable(r.err));
            QCOMPARE(r.err.count('\n'), 1);
        }
        const Run route = runMsa({"route", "--json", "--device", "cuda:7", "--bank", "/nonexistent", "--model", kTiny, "q"});
        QCOMPARE(route.exitCode, 2);
        QCOMPARE(QJsonDocument::fromJson(route.out.toUtf8()).object()["error"].toObject()["code"].toString(),
                 QString("invalid_argument"));
    }

    void everyModelCommandTakesDevice() {
        for (const char* sub : {"generate", "bench", "build", "route", "ask", "eval"}) {
            const Run r = runMsa({sub, "--help"});
            QCOMPARE(r.exitCode, 0);
            QVERIFY2(r.out.contains("--device"), sub);
        }
    }

    void benchGpuWithoutGpuIsADeviceError() {
        if (m_gpu) QSKIP("a CUDA device is usable here");
        const Run r = runMsa({"bench", "gpu", "--json"});
        QCOMPARE(r.exitCode, 9);
        QVERIFY2(r.err.startsWith("msa bench: device_error: msa bench gpu needs a usable GPU: "), qPrintable(r.err));
        QVERIFY2(r.err.contains("--device cpu"), qPrintable(r.err));
        QCOMPARE(QJsonDocument::fromJson(r.out.toUtf8()).object()["error"].toObject()["code"].toString(),
                 QString("device_error"));
    }

    void benchGpuHarnessRunsOnTheCpu() {
        const Run r = runMsa({"bench", "gpu", "--device", "cpu", "--shape", "tiny", "--peer", "none", "--repeats", "1",
                              "--json"}, 300000);
        QCOMPARE(r.exitCode, 0);
        const QJsonObject j = QJsonDocument::fromJson(r.out.toUtf8()).object();
        QVERIFY(j["ok"].toBool());
        const QJsonObject g = j["gpu"].toObject();
        QCOMPARE(g["device_id"].toString(), QString("cpu"));
        QCOMPARE(g["shape"].toString(), QString("tiny"));
        QVERIFY(g["copy_bandwidth_bytes_per_s"].toDouble() > 0);
        QStringList names;
        for (const QJsonValue f : g["figures"].toArray()) {
            const QJsonObject o = f.toObject();
            names << o["name"].toString();
            QVERIFY2(o["value"].toDouble() > 0, qPrintable(o["name"].toString()));
        }
        QCOMPARE(names, (QStringList{"encoding", "scan 64K", "scan 256K", "decode", "ttft 64K", "ttft 256K"}));
        QVERIFY(!g["peer_error"].toString().isEmpty());   // --peer none says so
    }

    // The whole run with the PyTorch peer as a subprocess (tests/tools/bench_peer_torch.py) on the CPU.
    void benchGpuRunsThePeerInTheSameRun() {
        QProcess probe;
        probe.start(QStringLiteral("python3"), {QStringLiteral("-c"), QStringLiteral("import torch, transformers")});
        if (!probe.waitForFinished(120000) || probe.exitCode() != 0) QSKIP("python3 cannot import torch and transformers");
        const Run r = runMsa({"bench", "gpu", "--device", "cpu", "--shape", "tiny", "--repeats", "1", "--bank-mtokens",
                              "0.03", "--peer-script", MSA_SOURCE_DIR "/tests/tools/bench_peer_torch.py", "--json"}, 300000);
        QCOMPARE(r.exitCode, 0);
        const QJsonObject g = QJsonDocument::fromJson(r.out.toUtf8()).object()["gpu"].toObject();
        QVERIFY2(g["peer_error"].toString().isEmpty(), qPrintable(g["peer_error"].toString()));
        QCOMPARE(g["peer_device"].toString(), QString("cpu"));
        QStringList names;
        for (const QJsonValue f : g["figures"].toArray()) {
            const QJsonObject o = f.toObject();
            names << o["name"].toString();
            QVERIFY2(o["peer"].toDouble() > 0, qPrintable(o["name"].toString()));
            QVERIFY(o.contains("speedup_vs_peer"));
        }
        QCOMPARE(names, (QStringList{"encoding", "scan 30000", "decode", "ttft 30000"}));
        QVERIFY(g["peer"].toObject()["versions"].toString().startsWith("torch "));
    }
};

QTEST_GUILESS_MAIN(TestDeviceCli)
#include "tst_device_cli.moc"

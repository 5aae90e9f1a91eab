// tst_bench_memory.cpp: a smoke test of `msa bench memory` at tiny sizes on the tiny MSA checkpoint
// (tests/fixtures/models/msa-qwen3-bf16): the whole command (build from the demo archive, bank bytes,
// synthetic routing scans, RSS, first token) runs and prints JSON whose figures are consistent with
// each other. Timings are printed, never asserted (DESIGN.md §7).
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QtTest>

namespace {
const QString kTiny = QStringLiteral(MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16");
const QString kArchive = QStringLiteral(MSA_SOURCE_DIR "/resources/demo/archive");

QJsonObject runBench(const QStringList& extra, int* exitCode) {
    QProcess p;
    p.start(QStringLiteral(MSA_CLI_PATH), QStringList{"bench", "memory", "--model", kTiny, "--json", "--repeats", "1"} + extra);
    if (!p.waitForFinished(240000)) {
        p.kill();
        *exitCode = -1;
        return {};
    }
    *exitCode = p.exitCode();
    const QByteArray err = p.readAllStandardError();
    if (*exitCode != 0) qWarning("%s", err.constData());
    return QJsonDocument::fromJson(p.readAllStandardOutput()).object();
}
}  // namespace

class TestBenchMemory : public QObject {
    Q_OBJECT
private slots:
    void scanOnlyAtTinySizes() {
        int rc = 0;
        const QJsonObject j = runBench({"--scan-only", "--scan-mtokens", "0.01", "0.02"}, &rc);
        QCOMPARE(rc, 0);
        const QJsonObject scan = j["scan"].toObject();
        QVERIFY(scan["read_bandwidth_bytes_per_s"].toDouble() > 0);
        const QJsonArray sizes = scan["sizes"].toArray();
        QCOMPARE(sizes.size(), 2);
        QCOMPARE(sizes[0].toObject()["memory_tokens"].toInteger(), 10000);
        QCOMPARE(sizes[0].toObject()["chunks"].toInteger(), 157);   // ceil(10000 / 64)
        QCOMPARE(sizes[1].toObject()["chunks"].toInteger(), 313);
        for (const auto& s : sizes) {
            const QJsonObject o = s.toObject();
            QVERIFY(o["layer_seconds"].toDouble() > 0);
            QVERIFY(o["fraction_of_bandwidth"].toDouble() > 0);
            // One routing layer of bf16 keys: chunks × KV heads × head dim × 2 bytes.
            QCOMPARE(o["key_bytes_per_layer"].toInteger() % (o["chunks"].toInteger() * 2), 0);
        }
    }

    void wholeBenchOnTheDemoArchive() {
        if (!QFileInfo::exists(kArchive)) QSKIP("demo archive absent (resources/demo/archive)");
        int rc = 0;
        const QJsonObject j = runBench({"--archive", kArchive, "--scan-mtokens", "0.01"}, &rc);
        QCOMPARE(rc, 0);
        const QJsonObject build = j["build"].toObject(), bank = j["bank"].toObject(), mem = j["memory"].toObject();
        QVERIFY(build["documents"].toInteger() >= 30);
        QVERIFY(build["tokens_per_s"].toDouble() > 0 && build["prefill_tokens_per_s"].toDouble() > 0);
        // The bank holds at least the §6.6 payload of its chunks, and the arithmetic is the model's.
        QCOMPARE(bank["tokens"].toInteger(), build["tokens"].toInteger());
        QVERIFY(bank["bytes"].toDouble() >= bank["spec_bytes_for_chunks"].toDouble());
        QCOMPARE(bank["spec_bytes_per_token"].toDouble(),
                 bank["tensors"].toDouble() * bank["routing_layers"].toDouble() * bank["kv_heads"].toDouble() *
                     bank["head_dim"].toDouble() * 2 / bank["chunk_size"].toDouble());
        QVERIFY(mem["peak_rss_bytes"].toDouble() > 0 && mem["mapped_bytes"].toDouble() > bank["bytes"].toDouble());
        QVERIFY(!j["ask"].toObject()["question"].toString().isEmpty());
        QVERIFY(j["ask"].toObject()["first_token_seconds"].toDouble() > 0);
    }
};

QTEST_GUILESS_MAIN(TestBenchMemory)
#include "tst_bench_memory.moc"

// tst_key_quant.cpp: 8-bit storage of bank rows (core/memory/key_quant.h) and its effect on routing.
//
//  - FP8 E4M3 bit-exact against PyTorch's torch.float8_e4m3fn (saturating by a clamp to ±448, see
//    tests/tools/fp8_e4m3_peer.py): all 256 codes decoded, and encodings of every representable
//    value, every tie and one ulp either side, subnormals, saturation and specials, from the
//    committed fixture tests/fixtures/key-quant/e4m3_peer.txt (always runs); plus a live dense sweep
//    (~10M float32 values from 2^-12 to 480) through the same script when python3 with torch or
//    ml_dtypes is available (that test function QSKIPs otherwise);
//  - int8 rounding (ties to even, saturation at ±127);
//  - round-trip error bounds of both formats on rows over many magnitudes; scales of all-zero,
//    huge and tiny rows; refusal of non-finite values and ragged sizes;
//  - end to end on the tiny MSA checkpoint (tests/fixtures/models/msa-qwen3-bf16) over a bank of 48
//    documents: quantized routing keys keep the bf16 top-k within the agreement measured with
//    `msa bench quant` (thresholds below, with the measured values beside them).
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/bench_quant.h"
#include "core/jobs/memory_jobs.h"
#include "core/memory/key_quant.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <bit>
#include <cfloat>
#include <cmath>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

using namespace msa;
using memory::QuantFormat;

namespace {
const std::string kMsa = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";
const std::string kFixture = MSA_SOURCE_DIR "/tests/fixtures/key-quant/e4m3_peer.txt";
const QString kPeer = MSA_SOURCE_DIR "/tests/tools/fp8_e4m3_peer.py";

float fromBits(uint32_t b) { return std::bit_cast<float>(b); }

bool pythonPeerAvailable() {
    QProcess p;
    p.start("python3", {"-c", "import numpy\ntry:\n    import torch\nexcept ImportError:\n    import ml_dtypes\n"});
    return p.waitForFinished(120000) && p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}
}  // namespace

class TestKeyQuant : public QObject {
    Q_OBJECT
private slots:
    void decodeMatchesPeer() {
        std::ifstream in(kFixture);
        QVERIFY2(in, "tests/fixtures/key-quant/e4m3_peer.txt is missing");
        std::string line;
        int n = 0;
        while (std::getline(in, line)) {
            std::istringstream s(line);
            std::string kind, a, b;
            if (!(s >> kind >> a >> b) || kind != "decode") continue;
            const auto code = static_cast<uint8_t>(std::stoul(a, nullptr, 16));
            const float v = memory::decodeE4M3(code);
            if (b == "nan") QVERIFY2(std::isnan(v), qPrintable(QString("code %1").arg(code)));
            else QCOMPARE(std::bit_cast<uint32_t>(v), static_cast<uint32_t>(std::stoul(b, nullptr, 16)));
            ++n;
        }
        QCOMPARE(n, 256);
        QCOMPARE(memory::decodeE4M3(0x7E), 448.0f);
        QCOMPARE(memory::decodeE4M3(0x01), std::ldexp(1.0f, -9));
        QCOMPARE(memory::decodeE4M3(0x08), std::ldexp(1.0f, -6));
    }

    void encodeMatchesPeerFixture() {
        std::ifstream in(kFixture);
        QVERIFY(in);
        std::string line;
        int n = 0, ties = 0;
        while (std::getline(in, line)) {
            std::istringstream s(line);
            std::string kind, a, b;
            if (!(s >> kind >> a >> b) || kind != "encode") continue;
            const uint32_t bits = static_cast<uint32_t>(std::stoul(a, nullptr, 16));
            const auto want = static_cast<uint8_t>(std::stoul(b, nullptr, 16));
            const float x = fromBits(bits);
            const uint8_t got = memory::encodeE4M3(x);
            if (got != want) QFAIL(qPrintable(QString("encode(%1 = 0x%2) = 0x%3, peer 0x%4").arg(double(x), 0, 'g', 9)
                                                  .arg(bits, 8, 16, QChar('0')).arg(got, 2, 16, QChar('0')).arg(want, 2, 16, QChar('0'))));
            // A tie: exactly halfway between two codes' values.
            if (std::isfinite(x) && std::fabs(x) < 448.0f && (want & 0x7F) < 0x7E) {
                const float lo = std::fabs(memory::decodeE4M3(want & 0x7F));
                const float hi = memory::decodeE4M3(static_cast<uint8_t>((want & 0x7F) + 1));
                const float other = memory::decodeE4M3(static_cast<uint8_t>((want & 0x7F) - ((want & 0x7F) ? 1 : 0)));
                if (std::fabs(x) - lo == hi - std::fabs(x) || lo - std::fabs(x) == std::fabs(x) - other) ++ties;
            }
            ++n;
        }
        QVERIFY2(n > 7000, qPrintable(QString("%1 encodings").arg(n)));
        QCOMPARE(ties, 252);   // the midpoints between the 127 finite non-negative values, both signs
    }

    void encodeMatchesPeerLiveSweep() {
        if (!pythonPeerAvailable()) QSKIP("python3 with numpy and torch (or ml_dtypes) is not available for the live FP8 peer sweep");
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        // Every 17th float32 bit pattern from 2^-12 to 480 (the range where codes change), and the
        // first 4096 patterns above 0 and below +inf.
        std::vector<uint32_t> bits;
        for (uint32_t b = std::bit_cast<uint32_t>(std::ldexp(1.0f, -12)); b <= std::bit_cast<uint32_t>(480.0f); b += 17) bits.push_back(b);
        for (uint32_t b = 0; b < 4096; ++b) bits.push_back(b);
        for (uint32_t b = 0x7F800000u - 4096; b <= 0x7F800000u; ++b) bits.push_back(b);
        const std::string src = dir.filePath("in.f32").toStdString(), dst = dir.filePath("out.u8").toStdString();
        {
            std::ofstream out(src, std::ios::binary);
            out.write(reinterpret_cast<const char*>(bits.data()), static_cast<std::streamsize>(bits.size() * 4));
        }
        QProcess p;
        p.start("python3", {kPeer, "convert", QString::fromStdString(src), QString::fromStdString(dst)});
        QVERIFY(p.waitForFinished(300000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        std::ifstream in(dst, std::ios::binary);
        std::vector<uint8_t> codes(bits.size());
        in.read(reinterpret_cast<char*>(codes.data()), static_cast<std::streamsize>(codes.size()));
        QCOMPARE(static_cast<size_t>(in.gcount()), codes.size());
        size_t bad = 0;
        for (size_t i = 0; i < bits.size(); ++i) {
            const float x = fromBits(bits[i]);
            const uint8_t got = memory::encodeE4M3(x);
            if (got != codes[i] && bad++ < 5)
                qWarning("encode(0x%08x) = 0x%02x, peer 0x%02x", bits[i], got, codes[i]);
            if (memory::encodeE4M3(-x) != (got | 0x80)) ++bad;   // the peer is sign-symmetric (fixture checks negatives)
        }
        QCOMPARE(bad, size_t(0));
        qInfo("live sweep: %zu float32 values bit-exact with the peer", bits.size());
    }

    void saturationAndSpecials() {
        QCOMPARE(memory::encodeE4M3(448.0f), uint8_t(0x7E));
        QCOMPARE(memory::encodeE4M3(1e30f), uint8_t(0x7E));
        QCOMPARE(memory::encodeE4M3(-INFINITY), uint8_t(0xFE));
        QCOMPARE(memory::encodeE4M3(INFINITY), uint8_t(0x7E));
        QCOMPARE(memory::encodeE4M3(NAN) & 0x7F, 0x7F);
        QCOMPARE(memory::encodeE4M3(-0.0f), uint8_t(0x80));
        QCOMPARE(memory::encodeE4M3(std::ldexp(1.0f, -10)), uint8_t(0x00));             // tie to even: 0
        QCOMPARE(memory::encodeE4M3(std::ldexp(3.0f, -10)), uint8_t(0x02));             // 1.5 units: even 2
        QCOMPARE(memory::encodeE4M3(std::nextafter(std::ldexp(1.0f, -10), 1.0f)), uint8_t(0x01));
    }

    void int8Rounding() {
        QCOMPARE(memory::encodeInt8(0.5f), int8_t(0));
        QCOMPARE(memory::encodeInt8(1.5f), int8_t(2));
        QCOMPARE(memory::encodeInt8(2.5f), int8_t(2));
        QCOMPARE(memory::encodeInt8(-2.5f), int8_t(-2));
        QCOMPARE(memory::encodeInt8(-0.49999997f), int8_t(0));
        QCOMPARE(memory::encodeInt8(126.5f), int8_t(126));
        QCOMPARE(memory::encodeInt8(127.49f), int8_t(127));
        QCOMPARE(memory::encodeInt8(1000.0f), int8_t(127));
        QCOMPARE(memory::encodeInt8(-1000.0f), int8_t(-127));   // symmetric: -128 is never written
        QCOMPARE(memory::encodeInt8(NAN), int8_t(0));
    }

    void roundTripBounds_data() {
        QTest::addColumn<int>("format");
        QTest::newRow("fp8-e4m3") << int(QuantFormat::Fp8E4M3);
        QTest::newRow("int8") << int(QuantFormat::Int8);
    }
    void roundTripBounds() {
        QFETCH(int, format);
        const auto f = static_cast<QuantFormat>(format);
        std::mt19937 rng(7);
        std::normal_distribution<float> nd;
        const size_t D = 64, nRows = 400;
        std::vector<float> x(nRows * D);
        for (size_t r = 0; r < nRows; ++r) {
            const float mag = std::ldexp(1.0f, static_cast<int>(r % 40) - 20);   // rows over 40 binades
            for (size_t i = 0; i < D; ++i) x[r * D + i] = nd(rng) * mag * (i % 9 == 0 ? 8.0f : 1.0f);
        }
        auto q = memory::quantizeRows(f, x, D);
        QVERIFY2(q.ok(), q.status().toString().c_str());
        QCOMPARE(q->nRows, nRows);
        QCOMPARE(q->bytes(), nRows * memory::quantizedRowBytes(D));
        std::vector<float> y(x.size());
        memory::dequantizeRows(*q, y);
        double worst = 0, sq = 0, nsq = 0;
        for (size_t r = 0; r < nRows; ++r) {
            const float scale = q->scales[r];
            float amax = 0;
            for (size_t i = 0; i < D; ++i) amax = std::max(amax, std::fabs(x[r * D + i]));
            QCOMPARE(scale, amax / memory::quantFormatMax(f));   // these rows are far from FLT_MIN and FLT_MAX
            for (size_t i = 0; i < D; ++i) {
                const double a = x[r * D + i], e = std::fabs(a - y[r * D + i]);
                const double bound = f == QuantFormat::Int8 ? 0.5 * scale
                                                            : std::max(std::ldexp(std::fabs(a), -4), std::ldexp(double(scale), -10));
                const double slack = 1e-6 * std::fabs(a) + std::ldexp(double(scale), -20);   // f32 roundings of x/scale, code*scale
                worst = std::max(worst, e / (bound + slack));
                sq += e * e;
                nsq += a * a;
            }
            // The row's largest element lands on the format's largest code (within its rounding).
            QVERIFY(std::fabs(memory::quantFormatMax(f) * scale - amax) <= 1e-6 * amax);
        }
        QVERIFY2(worst <= 1.0, qPrintable(QString("error / bound reaches %1").arg(worst)));
        const double rel = std::sqrt(sq / nsq);
        qInfo("%s: relative rms error %.5f", std::string(memory::quantFormatName(f)).c_str(), rel);
        QVERIFY(rel < (f == QuantFormat::Int8 ? 0.02 : 0.04));
        QVERIFY(rel > 1e-4);   // it is a lossy format: a copy that returned x would be a bug here

        // The reader contract: value = decode(code) * scale, one multiply.
        std::vector<float> one(D);
        memory::dequantizeRow(f, q->codes.data() + 5 * D, q->scales[5], one.data(), D);
        for (size_t i = 0; i < D; ++i) {
            const float dec = f == QuantFormat::Int8 ? float(static_cast<int8_t>(q->codes[5 * D + i])) : memory::decodeE4M3(q->codes[5 * D + i]);
            QCOMPARE(std::bit_cast<uint32_t>(one[i]), std::bit_cast<uint32_t>(dec * q->scales[5]));
        }
    }

    void scaleHandling() {
        for (QuantFormat f : {QuantFormat::Fp8E4M3, QuantFormat::Int8}) {
            // All-zero row: scale 0, codes 0, zeros back.
            std::vector<float> zero(32, 0.0f);
            zero[3] = -0.0f;
            auto q = memory::quantizeRows(f, zero, 16);
            QVERIFY(q.ok());
            QCOMPARE(q->scales[0], 0.0f);
            QCOMPARE(q->scales[1], 0.0f);
            for (uint8_t c : q->codes) QCOMPARE(c, uint8_t(0));
            std::vector<float> back(32, 1.0f);
            memory::dequantizeRows(*q, back);
            for (float v : back) QCOMPARE(v, 0.0f);

            // Huge values: a finite scale, nothing overflows, the bound holds.
            std::vector<float> huge = {3.0e38f, -FLT_MAX, 1.0e38f, 5.0e37f};
            q = memory::quantizeRows(f, huge, 4);
            QVERIFY(q.ok());
            QVERIFY(std::isfinite(q->scales[0]));
            std::vector<float> hb(4);
            memory::dequantizeRows(*q, hb);
            for (size_t i = 0; i < 4; ++i) {
                QVERIFY(std::isfinite(hb[i]));
                QVERIFY(std::fabs(double(hb[i]) - huge[i]) <= 0.07 * FLT_MAX);
            }
            QCOMPARE(hb[1], -memory::quantFormatMax(f) * q->scales[0]);

            // Tiny values: the scale never goes subnormal (FLT_MIN), so x / scale cannot overflow.
            std::vector<float> tiny = {1e-42f, -3e-43f, 0.0f, 1e-44f};
            q = memory::quantizeRows(f, tiny, 4);
            QVERIFY(q.ok());
            QCOMPARE(q->scales[0], FLT_MIN);
            memory::dequantizeRows(*q, hb);
            for (size_t i = 0; i < 4; ++i) QVERIFY(std::fabs(hb[i] - tiny[i]) <= FLT_MIN);

            // Refusals.
            std::vector<float> bad = {1.0f, NAN, 2.0f, 3.0f};
            auto r = memory::quantizeRows(f, bad, 2);
            QVERIFY(!r.ok());
            QCOMPARE(r.status().code(), ErrorCode::InvalidArgument);
            QVERIFY(r.status().message().find("row 0") != std::string::npos);
            bad[1] = INFINITY;
            QVERIFY(!memory::quantizeRows(f, bad, 4).ok());
            QCOMPARE(memory::quantizeRows(f, huge, 3).status().code(), ErrorCode::InvalidArgument);
            QCOMPARE(memory::quantizeRows(f, huge, 0).status().code(), ErrorCode::InvalidArgument);
        }
        QCOMPARE(memory::parseQuantFormat("fp8-e4m3"), std::optional(QuantFormat::Fp8E4M3));
        QCOMPARE(memory::parseQuantFormat("int8"), std::optional(QuantFormat::Int8));
        QVERIFY(!memory::parseQuantFormat("int4"));
    }

    // Quantized routing keys on the tiny MSA checkpoint: a real bank (48 documents, k = 16), eight
    // questions, both routing layers with their in-context queries.
    void tinyMsaTopKAgreement() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        QVERIFY(QDir(dir.path()).mkpath("files"));
        const char* topics[] = {"kelp", "cello", "spruce", "tide", "harbour", "urchin", "varnish", "lifeboat", "barque", "seal",
                                "ferry", "lighthouse", "storm", "bridge", "rosin", "herring"};
        for (int i = 0; i < 48; ++i) {
            std::string text;
            for (int r = 0; r < 1 + i % 4; ++r)
                text += "Notes on the " + std::string(topics[i % 16]) + " and the " + topics[(i * 5 + r) % 16] + ", entry " +
                        std::to_string(i * 11 + r) + ". ";
            std::ofstream(dir.filePath(QString("files/n%1.txt").arg(i, 2, 10, QChar('0'))).toStdString()) << text;
        }
        const std::string catalogPath = dir.filePath("c.sqlite").toStdString(), bankPath = dir.filePath("bank").toStdString();
        {
            auto cat = catalog::Catalog::open(catalogPath);
            QVERIFY(cat.ok());
            catalog::ImportRequest req;
            req.collection = "notes";
            req.paths = {dir.filePath("files").toStdString()};
            QVERIFY(catalog::importPaths(*cat, req, {}, nullptr).ok());
        }
        jobs::BuildOptions o;
        o.catalog = catalogPath;
        o.collection = "notes";
        o.model = kMsa;
        o.bank = bankPath;
        o.nThreads = 2;
        auto built = jobs::buildMemory(o);
        QVERIFY2(built.ok(), built.status().toString().c_str());
        QCOMPARE(built->bankDocuments, uint64_t(48));

        const std::vector<std::string> questions = {"Which notes talk about the cello and its spruce top?",
                                                    "Where is the lighthouse near the harbour?",
                                                    "What happened to the lifeboat in the storm?",
                                                    "Tell me about herring and seal.",
                                                    "Is the varnish on the barque new?",
                                                    "Which ferry crosses under the bridge?",
                                                    "How much rosin for the cello?",
                                                    "Kelp and urchin at low tide."};
        auto r = jobs::measureQuantization(bankPath, kMsa, questions, {.nThreads = 2, .greedyTokens = 4});
        QVERIFY2(r.ok(), r.status().toString().c_str());
        QVERIFY(r->baselineMatchesSparsePrefill);
        QCOMPARE(r->topK, size_t(16));
        QCOMPARE(r->routingAgreement.size(), size_t(2));
        std::cout << jobs::toText(*r);
        for (const auto& a : r->routingAgreement) {
            QCOMPARE(a.all.nQuestions, questions.size() * 2);   // two routing layers
            // Thresholds chosen from the measurement recorded in ROUTING.md "Quantized storage".
            const bool fp8 = a.format == "fp8-e4m3";
            // Measured (48 documents, 8 questions, 2 layers): fp8 mean overlap 0.949, min 0.875, mean τ 0.949;
            // int8 0.973, 0.9375, 0.988. The router weights are random, so bf16 boundary gaps go down to
            // 1.6e-4 while fp8 moves scores by up to 0.027 (int8 0.0033): swaps at the boundary are expected.
            QVERIFY2(a.all.meanOverlap >= (fp8 ? 0.90 : 0.95), qPrintable(QString::fromStdString(a.format) + QString(" mean overlap %1").arg(a.all.meanOverlap)));
            QVERIFY2(a.all.minOverlap >= (fp8 ? 0.8125 : 0.875), qPrintable(QString::fromStdString(a.format) + QString(" min overlap %1").arg(a.all.minOverlap)));
            QVERIFY2(a.all.meanKendall >= (fp8 ? 0.90 : 0.97), qPrintable(QString::fromStdString(a.format) + QString(" mean tau %1").arg(a.all.meanKendall)));
        }
        QVERIFY(r->routingAgreement[0].all.maxScoreDelta > r->routingAgreement[1].all.maxScoreDelta);   // fp8 is coarser
        QVERIFY(r->routingAgreement[1].all.maxScoreDelta > 0);
        for (const auto& e : r->logits) {
            QCOMPARE(e.nQuestions, questions.size());
            QVERIFY(e.minCosine > 0.9999);   // measured ≥ 0.99998
            QVERIFY(e.maxDeltaOverRms < 0.1);   // measured ≤ 0.022
            // "content" keeps the bf16 keys, yet a later routing layer may still select differently:
            // its queries come from hidden states that attended to the earlier layers' quantized rows.
        }
    }

    // The CLI: `msa bench quant` on the tiny checkpoint over the demo archive, JSON output.
    void cliOnTheDemoArchive() {
        const QString archive = MSA_SOURCE_DIR "/resources/demo/archive";
        if (!QFileInfo::exists(archive)) QSKIP("demo archive absent (resources/demo/archive)");
        QProcess p;
        p.start(MSA_BINARY, {"bench", "quant", "--model", QString::fromStdString(kMsa), "--archive", archive, "--max-questions", "3",
                             "--greedy-tokens", "3", "--threads", "2", "--json"});
        QVERIFY(p.waitForFinished(240000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        const QJsonObject j = QJsonDocument::fromJson(p.readAllStandardOutput()).object();
        QVERIFY(j["ok"].toBool());
        QCOMPARE(j["questions"].toInt(), 3);
        QVERIFY(j["documents"].toInt() >= 30);
        QVERIFY(j["baseline_matches_sparse_prefill"].toBool());
        const QJsonArray bytes = j["bytes"].toArray();
        QCOMPARE(bytes.size(), 3);
        // bf16: 3 tensors × 2 layers × 2 heads × 16 × 2 B / 64 = 6 B per token; 8-bit: (16 + 4) B rows.
        QCOMPARE(bytes[0].toObject()["total_per_token"].toDouble(), 6.0);
        QCOMPARE(bytes[1].toObject()["total_per_token"].toDouble(), 3.75);
        QCOMPARE(j["routing_agreement"].toArray().size(), 2);
        QCOMPARE(j["logits"].toArray().size(), 4);
        for (const auto& e : j["logits"].toArray()) QCOMPARE(e.toObject()["steps"].toInt(), 9);   // 3 questions × 3 steps

        QProcess bad;
        bad.start(MSA_BINARY, {"bench", "quant", "--model", QString::fromStdString(kMsa), "--bank", "/nonexistent/bank", "--json"});
        QVERIFY(bad.waitForFinished(60000));
        QVERIFY(bad.exitCode() != 0);
        QVERIFY(!QJsonDocument::fromJson(bad.readAllStandardOutput()).object()["ok"].toBool());
    }
};

QTEST_GUILESS_MAIN(TestKeyQuant)
#include "tst_key_quant.moc"

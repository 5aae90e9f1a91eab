// tst_util.cpp: core/util — Status/Result and exit codes, the log hook, cancel token and progress
// meter, file mapping (bounds-checked slices), and XXH3 checksums against values computed by the
// Python `xxhash` package (the reference implementation's bindings). Extend by adding a slot.
#include "core/util/checksum.h"
#include "core/util/file_map.h"
#include "core/util/log.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <QTemporaryDir>
#include <QtTest>

#include <cerrno>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

using namespace msa;

namespace {
Result<int> parsePositive(int v) {
    if (v <= 0) return invalidArgument("value must be positive, got " + std::to_string(v));
    return v * 2;
}
Status chain(int v, int* out) {
    MSA_ASSIGN_OR_RETURN(int doubled, parsePositive(v));
    *out = doubled;
    MSA_RETURN_IF_ERROR(doubled > 100 ? Status(ErrorCode::Unsupported, "too big") : Status::ok());
    return Status::ok();
}
std::string writeFile(const QTemporaryDir& dir, const char* name, const std::string& content) {
    const std::string path = dir.filePath(name).toStdString();
    std::ofstream(path, std::ios::binary) << content;
    return path;
}
}  // namespace

class TestUtil : public QObject {
    Q_OBJECT
private slots:
    void statusBasics() {
        const Status ok;
        QVERIFY(ok.isOk());
        QCOMPARE(ok.toString(), std::string("ok"));
        const Status nf = notFound("no such file 'a.gguf'").withContext("loading model");
        QVERIFY(!nf.isOk());
        QCOMPARE(nf.code(), ErrorCode::NotFound);
        QCOMPARE(nf.message(), std::string("loading model: no such file 'a.gguf'"));
        QCOMPARE(nf.toString(), std::string("not_found: loading model: no such file 'a.gguf'"));
        QVERIFY(ok.withContext("x").isOk());   // context never turns success into failure
    }

    void resultAndMacros() {
        Result<int> r = parsePositive(4);
        QVERIFY(r.ok());
        QCOMPARE(*r, 8);
        Result<int> bad = parsePositive(-1);
        QVERIFY(!bad);
        QCOMPARE(bad.status().code(), ErrorCode::InvalidArgument);
        QCOMPARE(bad.valueOr(7), 7);
        int out = 0;
        QVERIFY(chain(3, &out).isOk());
        QCOMPARE(out, 6);
        QCOMPARE(chain(-3, &out).code(), ErrorCode::InvalidArgument);
        QCOMPARE(chain(60, &out).code(), ErrorCode::Unsupported);
        Result<std::string> moved = std::string("payload");
        const std::string taken = std::move(moved).value();
        QCOMPARE(taken, std::string("payload"));
    }

    void errnoMapping() {
        QCOMPARE(statusFromErrno(ENOENT, "open").code(), ErrorCode::NotFound);
        QCOMPARE(statusFromErrno(EACCES, "open").code(), ErrorCode::PermissionDenied);
        QCOMPARE(statusFromErrno(ENOSPC, "write").code(), ErrorCode::DiskFull);
        QCOMPARE(statusFromErrno(EIO, "read").code(), ErrorCode::IoError);
        QVERIFY(statusFromErrno(ENOSPC, "write bank").message().find("write bank: ") == 0);
    }

    void exitCodesAreDistinctPerFamily() {
        QCOMPARE(exitCodeFor(ErrorCode::Ok), 0);
        QCOMPARE(exitCodeFor(ErrorCode::InvalidArgument), 2);
        QCOMPARE(exitCodeFor(ErrorCode::NotFound), 3);
        QCOMPARE(exitCodeFor(ErrorCode::DiskFull), 4);
        QCOMPARE(exitCodeFor(ErrorCode::Corrupt), 5);
        QCOMPARE(exitCodeFor(ErrorCode::Unimplemented), 6);
        QCOMPARE(exitCodeFor(ErrorCode::Cancelled), 8);
        QCOMPARE(exitCodeFor(ErrorCode::DeviceError), 9);
        // Every code has a distinct name (they appear in --json output).
        std::set<std::string_view> names;
        for (int c = 0; c <= static_cast<int>(ErrorCode::Internal); ++c) {
            const auto name = errorCodeName(static_cast<ErrorCode>(c));
            QVERIFY2(name != "unknown", qPrintable(QString::number(c)));
            names.insert(name);
            if (c != 0) QVERIFY(exitCodeFor(static_cast<ErrorCode>(c)) != 0);
        }
        QCOMPARE(names.size(), static_cast<size_t>(ErrorCode::Internal) + 1);
    }

    void fromException() {
        QCOMPARE(Status::fromException(std::bad_alloc(), "x").code(), ErrorCode::OutOfMemory);
        const Status s = Status::fromException(std::runtime_error("boom"), "parsing");
        QCOMPARE(s.code(), ErrorCode::Internal);
        QCOMPARE(s.message(), std::string("parsing: boom"));
    }

    void logHookAndLevel() {
        std::vector<std::pair<LogLevel, std::string>> seen;
        LogHook previous = setLogHook([&](LogLevel l, std::string_view m) { seen.emplace_back(l, std::string(m)); });
        const LogLevel oldLevel = logLevel();
        setLogLevel(LogLevel::Info);
        int formatted = 0;
        auto expensive = [&] { ++formatted; return 42; };
        MSA_LOG(Debug) << "hidden " << expensive();
        MSA_LOG(Info) << "loaded " << 3 << " tensors";
        MSA_LOG(Error) << "failed";
        setLogLevel(oldLevel);
        setLogHook(std::move(previous));
        QCOMPARE(formatted, 0);   // below-level messages are not even formatted
        QCOMPARE(seen.size(), size_t(2));
        QCOMPARE(seen[0].first, LogLevel::Info);
        QCOMPARE(seen[0].second, std::string("loaded 3 tensors"));
        QCOMPARE(seen[1].first, LogLevel::Error);
    }

    void cancelTokenAcrossThreads() {
        CancelToken token;
        QVERIFY(!token.isCancelled());
        int iterations = 0;
        std::thread worker([&] {
            while (!token.isCancelled()) { ++iterations; std::this_thread::yield(); }
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        token.cancel();
        worker.join();   // the loop ends only because the other thread saw the cancel
        QVERIFY(token.isCancelled());
        QVERIFY(iterations > 0);
    }

    void progressMeterRateEtaAndThrottle() {
        std::vector<Progress> reports;
        ProgressMeter meter("import", 10, [&](const Progress& p) { reports.push_back(p); },
                            std::chrono::milliseconds(50), 1000);
        meter.advance(1, 100, "a.txt");   // first call reports at once
        QCOMPARE(reports.size(), size_t(1));
        meter.advance(1, 100, "b.txt");   // within the interval: throttled
        QCOMPARE(reports.size(), size_t(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(60));
        meter.advance(3, 300, "c.txt");
        QCOMPARE(reports.size(), size_t(2));
        const Progress& p = reports.back();
        QCOMPARE(p.done, uint64_t(5));
        QCOMPARE(p.bytesDone, uint64_t(500));
        QCOMPARE(p.current, std::string("c.txt"));
        QVERIFY(p.unitsPerSecond > 0);
        // Half the bytes are done, so the ETA is about the elapsed time.
        QVERIFY(p.etaSeconds > 0.5 * p.elapsedSeconds && p.etaSeconds < 1.5 * p.elapsedSeconds);
        QCOMPARE(p.fraction(), 0.5);
        meter.finish();
        QVERIFY(reports.back().finished);
        QCOMPARE(reports.back().etaSeconds, 0.0);

        ProgressMeter unknown("scan", 0, nullptr);
        unknown.advance(4);
        QVERIFY(unknown.snapshot().etaSeconds < 0);   // no total: ETA unknown, not invented
    }

    void fileMappingReadsAndBounds() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const std::string content("GGUF\x03\x00\x00\x00payload", 15);
        const std::string path = writeFile(dir, "a.bin", content);
        Result<FileMapping> m = FileMapping::open(path);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        QCOMPARE(m->size(), content.size());
        QVERIFY(std::memcmp(m->data(), content.data(), content.size()) == 0);
        auto s = m->slice(8, 7, "payload");
        QVERIFY(s.ok());
        QCOMPARE(std::string(reinterpret_cast<const char*>(s->data()), s->size()), std::string("payload"));
        QVERIFY(m->slice(content.size(), 0, "empty tail").ok());
        auto past = m->slice(8, 8, "tensor 'blk.0.attn_q.weight'");
        QCOMPARE(past.status().code(), ErrorCode::Corrupt);
        QVERIFY(past.status().message().find("blk.0.attn_q.weight") != std::string::npos);
        QVERIFY(past.status().message().find("a.bin") != std::string::npos);
        // offset + length overflows 64 bits: must be rejected, not wrapped.
        QCOMPARE(m->slice(8, UINT64_MAX - 4, "huge").status().code(), ErrorCode::Corrupt);
        QCOMPARE(m->slice(UINT64_MAX, 1, "huge offset").status().code(), ErrorCode::Corrupt);

        FileMapping moved = std::move(m.value());
        QCOMPARE(moved.size(), content.size());
        QCOMPARE(m->size(), size_t(0));   // moved-from mapping is empty, no double unmap
    }

    void fileMappingErrors() {
        QTemporaryDir dir;
        const std::string empty = writeFile(dir, "empty.bin", "");
        Result<FileMapping> e = FileMapping::open(empty);
        QVERIFY(e.ok());
        QCOMPARE(e->size(), size_t(0));
        QCOMPARE(FileMapping::open(dir.filePath("missing.bin").toStdString()).status().code(), ErrorCode::NotFound);
        QCOMPARE(FileMapping::open(dir.path().toStdString()).status().code(), ErrorCode::InvalidArgument);
    }

    void xxh3MatchesReference() {
        // Expected values from Python: xxhash.xxh3_64_hexdigest / xxh3_128_hexdigest (xxhash 3.x).
        QCOMPARE(hex64(xxh3_64(std::string_view(""))), std::string("2d06800538d394c2"));
        QCOMPARE(hex64(xxh3_64(std::string_view("abc"))), std::string("78af5f94892f3950"));
        QCOMPARE(hex64(xxh3_64(std::string_view("MSA Workbench"))), std::string("41a5f06b11e5cb83"));
        QCOMPARE(hex64(xxh3_64(std::string_view("abc"), 42)), std::string("d8438def21bbdcc3"));
        QCOMPARE(xxh3_128(std::string_view("")).hex(), std::string("99aa06d3014798d86001c324468d497f"));
        QCOMPARE(xxh3_128(std::string_view("MSA Workbench")).hex(), std::string("9dac1b93d8aa61ed08b551c18fcb54aa"));
        std::string big;
        for (int r = 0; r < 5; ++r)
            for (int i = 0; i < 256; ++i) big.push_back(static_cast<char>(i));
        QCOMPARE(hex64(xxh3_64(big)), std::string("4844b009e164352e"));
        QCOMPARE(xxh3_128(big).hex(), std::string("d92ab3a1cb0542a74844b009e164352e"));

        // Streaming in uneven pieces equals one shot.
        Hasher h;
        h.update(std::string_view(big).substr(0, 7));
        h.update(std::string_view(big).substr(7, 500));
        h.update(std::string_view(big).substr(507));
        QCOMPARE(hex64(h.digest64()), std::string("4844b009e164352e"));
        QCOMPARE(h.digest128().hex(), std::string("d92ab3a1cb0542a74844b009e164352e"));
    }

    void hashFileAndCancel() {
        QTemporaryDir dir;
        std::string content(3 << 20, 'x');   // larger than one read block
        content[12345] = 'y';
        const std::string path = writeFile(dir, "big.bin", content);
        Result<Digest128> d = hashFile(path);
        QVERIFY(d.ok());
        QVERIFY(*d == xxh3_128(content));
        CancelToken cancelled;
        cancelled.cancel();
        QCOMPARE(hashFile(path, &cancelled).status().code(), ErrorCode::Cancelled);
        QCOMPARE(hashFile(dir.filePath("nope").toStdString()).status().code(), ErrorCode::NotFound);
    }
};

QTEST_GUILESS_MAIN(TestUtil)
#include "tst_util.moc"

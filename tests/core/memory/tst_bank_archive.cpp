// tst_bank_archive: single-file bank export/import (core/memory/bank_archive.h, core/jobs/bank_files.h,
// `msa bank export|import|verify --model`).
//
// Covers: export -> import restores every file of the bank folder byte for byte (plain and zstd,
// bf16/f32/shared keys, multi-block shards); the archive's structure is walked independently of
// the reader and a byte flipped in every region (file header, each entry header, name, every block,
// each footer, trailer) plus random flips and truncations are all refused with Corrupt and leave
// nothing behind; wrong magic (Corrupt) and version (Unsupported); another model (Mismatch naming
// both fingerprints, exit 7); an existing bank needs --force (then swapped in whole); cancel and
// SIGKILL during export never leave a final file; the memory documents travel with the bank from one
// catalog to a new one (text, title, sources, ids) and back into the same catalog idempotently.
#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/jobs/bank_files.h"
#include "core/jobs/memory_jobs.h"
#include "core/memory/bank.h"
#include "core/memory/bank_archive.h"
#include "core/util/checksum.h"
#include "tests/core/memory/bank_test_util.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstring>
#include <fstream>
#include <map>
#include <set>

using namespace msa::memory;
using msa::ErrorCode;
using msa::model::DType;
namespace fs = std::filesystem;

namespace {

const char* kOtherModel = "ffffffffffffffffffffffffffffffff";

std::string readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeAll(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// name -> bytes of every file in a folder (not recursive: a bank is flat).
std::map<std::string, std::string> folderBytes(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out[e.path().filename().string()] = readAll(e.path());
    return out;
}

// Documents 1..n; `tokens` fixes every document's length (0: 1..4 chunks each).
void makeBank(const fs::path& dir, const BankParams& p, int n, uint64_t tokens = 0, int firstId = 1) {
    auto w = BankWriter::create(dir, p, testing::makeTemplate(p));
    QVERIFY2(w.ok(), w.status().toString().c_str());
    for (int id = firstId; id < firstId + n; ++id) {
        testing::TestDoc d = testing::makeDoc(p, id, tokens ? tokens : testing::tokensFor(id));
        QVERIFY(w->append(d.input).isOk());
        if (!tokens && id % 7 == 0) QVERIFY(w->commit().isOk());   // several small shards; sized documents: one large shard
    }
    QVERIFY(w->commit().isOk());
}

// The archive's regions, found by walking the documented layout (independent of the reader).
struct Region {
    std::string what;
    uint64_t offset, length;
};
std::vector<Region> regionsOf(const std::string& a) {
    auto u32 = [&](uint64_t at) { uint32_t v; std::memcpy(&v, a.data() + at, 4); return v; };
    std::vector<Region> out{{"file header", 0, 64}};
    uint64_t at = 64;
    for (int entry = 0; at + 64 <= a.size(); ++entry) {
        if (std::memcmp(a.data() + at, "MSABEND", 8) == 0) {
            out.push_back({"trailer", at, 64});
            break;
        }
        const uint32_t nameLen = u32(at + 12);
        const std::string tag = "entry " + std::to_string(entry);
        out.push_back({tag + " header", at, 64});
        out.push_back({tag + " name", at + 64, nameLen});
        at += 64 + nameLen;
        for (int block = 0;; ++block) {
            const uint32_t sLen = u32(at);
            out.push_back({tag + " block header " + std::to_string(block), at, 8});
            at += 8;
            if (sLen == 0) break;
            out.push_back({tag + " block " + std::to_string(block), at, sLen});
            at += sLen;
        }
        out.push_back({tag + " footer", at, 64});
        at += 64;
    }
    return out;
}

// Nothing of an import may remain: no target, no staging folder or documents file beside it.
bool nothingWritten(const fs::path& parent, const std::set<std::string>& before) {
    std::set<std::string> now;
    for (const auto& e : fs::directory_iterator(parent)) now.insert(e.path().filename().string());
    return now == before;
}

std::set<std::string> listing(const fs::path& parent) {
    std::set<std::string> s;
    for (const auto& e : fs::directory_iterator(parent)) s.insert(e.path().filename().string());
    return s;
}

int runMsa(const QStringList& args, QByteArray* out, QByteArray* err = nullptr) {
    QProcess pr;
    pr.start(MSA_BINARY, args);
    pr.waitForFinished(60000);
    *out = pr.readAllStandardOutput();
    if (err) *err = pr.readAllStandardError();
    return pr.exitCode();
}

}  // namespace

class TestBankArchive : public QObject {
    Q_OBJECT

private slots:
    void roundTrip_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<bool>("shared");
        QTest::addColumn<bool>("zstd");
        QTest::addColumn<int>("tokens");
        QTest::newRow("bf16 plain") << int(DType::BF16) << false << false << 0;
        QTest::newRow("bf16 zstd") << int(DType::BF16) << false << true << 0;
        QTest::newRow("f32 shared zstd") << int(DType::F32) << true << true << 0;
        // 4000-token f32 documents: shards of several MiB, so entries span many 1 MiB blocks.
        QTest::newRow("f32 multi-block plain") << int(DType::F32) << false << false << 4000;
        QTest::newRow("f32 multi-block zstd") << int(DType::F32) << false << true << 4000;
    }

    void roundTrip() {
        QFETCH(int, dtype);
        QFETCH(bool, shared);
        QFETCH(bool, zstd);
        QFETCH(int, tokens);
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("bank").toStdString(), file = tmp.filePath("bank.msabank").toStdString();
        const BankParams p = testing::smallParams(static_cast<DType>(dtype), shared);
        makeBank(src, p, tokens ? 30 : 40, static_cast<uint64_t>(tokens));
        {   // tombstones travel too (they live in the manifest)
            auto w = BankWriter::open(src);
            QVERIFY(w.ok());
            QVERIFY(w->remove(3).isOk());
            QVERIFY(w->commit().isOk());
        }
        BankExportOptions eo;
        eo.zstd = zstd;
        std::vector<msa::Progress> seen;
        eo.progress = [&](const msa::Progress& pr) { seen.push_back(pr); };
        auto ex = exportBankArchive(src, file, eo);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(ex->fileBytes, static_cast<uint64_t>(fs::file_size(file)));
        QCOMPARE(ex->modelFingerprint, p.modelFingerprint);
        QVERIFY(!seen.empty() && seen.back().finished);
        QCOMPARE(seen.back().bytesDone, seen.back().bytesTotal);
        if (tokens) QVERIFY(ex->rawBytes > 2 * kArchiveBlockBytes);
        if (zstd) QVERIFY(ex->fileBytes < ex->rawBytes);
        QVERIFY(!fs::exists(file.string() + ".partial-" + std::to_string(::getpid())));

        auto info = readBankArchiveInfo(file);
        QVERIFY(info.ok());
        QCOMPARE(info->modelFingerprint, p.modelFingerprint);
        QCOMPARE(info->compressed, zstd);
        QCOMPARE(info->bankName, std::string("bank"));
        QVERIFY(!info->hasDocuments);

        const fs::path dst = tmp.filePath("restored").toStdString();
        BankImportOptions io;
        io.expectFingerprint = p.modelFingerprint;
        auto im = importBankArchive(file, dst, io);
        QVERIFY2(im.ok(), im.status().toString().c_str());
        QCOMPARE(im->nDocuments, uint64_t(tokens ? 29 : 39));
        // Every file, byte for byte (manifest, template, every shard, the lock file).
        const auto a = folderBytes(src), b = folderBytes(dst);
        QCOMPARE(a.size(), b.size());
        for (const auto& [name, bytes] : a) {
            QVERIFY2(b.count(name), name.c_str());
            QVERIFY2(b.at(name) == bytes, name.c_str());
        }
        auto bank = Bank::open(dst, {.verifyData = true, .expectFingerprint = p.modelFingerprint});
        QVERIFY(bank.ok());
        QVERIFY(!bank->findDocument(3).has_value());
        QVERIFY(bank->verify().ok());
    }

    void documentsEntryRoundTrip() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(src, p, 12);
        std::vector<int64_t> asked;
        BankExportOptions eo;
        eo.zstd = true;
        eo.documents = [&](std::span<const int64_t> ids, const DocumentLineSink& sink) -> msa::Status {
            asked.assign(ids.begin(), ids.end());
            for (int64_t id : ids) {
                const std::string line = "{\"id\":" + std::to_string(id) + ",\"text\":\"d\\u00e9j\\u00e0 " + std::string(3000, 'x') + "\"}";
                MSA_RETURN_IF_ERROR(sink(line));
            }
            return {};
        };
        auto ex = exportBankArchive(src, file, eo);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(asked.size(), size_t{12});
        QCOMPARE(ex->nDocumentRecords, uint64_t{12});
        std::vector<std::string> lines;
        BankImportOptions io;
        io.documents = [&](const fs::path& jsonl, uint64_t n) -> msa::Status {
            std::ifstream in(jsonl);
            for (std::string l; std::getline(in, l);) lines.push_back(l);
            return n == lines.size() ? msa::Status{} : msa::corrupt("count");
        };
        auto im = importBankArchive(file, tmp.filePath("r").toStdString(), io);
        QVERIFY2(im.ok(), im.status().toString().c_str());
        QCOMPARE(lines.size(), size_t{12});
        QVERIFY(lines[4].find("\"id\":" + std::to_string(asked[4])) != std::string::npos);
        // A failing sink aborts the import: no bank appears.
        const auto before = listing(tmp.path().toStdString());
        io.documents = [](const fs::path&, uint64_t) { return msa::Status(ErrorCode::Mismatch, "sink says no"); };
        auto bad = importBankArchive(file, tmp.filePath("r2").toStdString(), io);
        QVERIFY(!bad.ok());
        QCOMPARE(bad.status().code(), ErrorCode::Mismatch);
        QVERIFY(nothingWritten(tmp.path().toStdString(), before));
    }

    // A flipped byte in every region of the archive: Corrupt, and nothing is written.
    void bitFlipInEachRegion_data() {
        QTest::addColumn<bool>("zstd");
        QTest::newRow("plain") << false;
        QTest::newRow("zstd") << true;
    }
    void bitFlipInEachRegion() {
        QFETCH(bool, zstd);
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        const BankParams p = testing::smallParams(DType::F32);
        makeBank(src, p, 25, 3000);   // a 1.8 MB shard: an entry of several blocks
        BankExportOptions eo;
        eo.zstd = zstd;
        eo.documents = [](std::span<const int64_t> ids, const DocumentLineSink& sink) -> msa::Status {
            for (int64_t id : ids) MSA_RETURN_IF_ERROR(sink("{\"id\":" + std::to_string(id) + "}"));
            return {};
        };
        QVERIFY(exportBankArchive(src, file, eo).ok());
        const std::string good = readAll(file);
        const std::vector<Region> regions = regionsOf(good);
        QCOMPARE(regions.back().what, std::string("trailer"));
        QCOMPARE(regions.back().offset + 64, static_cast<uint64_t>(good.size()));
        bool multiBlock = false;
        for (const Region& r : regions) multiBlock = multiBlock || r.what.find(" block 1") != std::string::npos;
        QVERIFY(multiBlock);
        const fs::path bad = tmp.filePath("bad.msabank").toStdString();
        const fs::path dst = tmp.filePath("restored").toStdString();
        int sinkCalls = 0;
        for (const Region& r : regions) {
            if (r.length == 0) continue;
            for (const uint64_t at : {r.offset, r.offset + r.length / 2, r.offset + r.length - 1}) {
                std::string b = good;
                b[at] = static_cast<char>(b[at] ^ 0x04);
                writeAll(bad, b);
                const auto before = listing(tmp.path().toStdString());
                BankImportOptions io;
                io.documents = [&](const fs::path&, uint64_t) { ++sinkCalls; return msa::Status{}; };
                auto im = importBankArchive(bad, dst, io);
                QVERIFY2(!im.ok(), qPrintable(QString::fromStdString(r.what + " at " + std::to_string(at))));
                QVERIFY2(im.status().code() == ErrorCode::Corrupt,
                         qPrintable(QString::fromStdString(r.what + ": " + im.status().toString())));
                QVERIFY2(nothingWritten(tmp.path().toStdString(), before), r.what.c_str());
            }
        }
        QCOMPARE(sinkCalls, 0);   // documents are never handed out from a damaged archive
        // The untouched archive still imports.
        QVERIFY(importBankArchive(file, dst).ok());
    }

    void randomFlipsAndTruncations() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(src, p, 25);
        BankExportOptions zo;
        zo.zstd = true;
        QVERIFY(exportBankArchive(src, file, zo).ok());
        const std::string good = readAll(file);
        const fs::path bad = tmp.filePath("bad.msabank").toStdString(), dst = tmp.filePath("r").toStdString();
        const auto before = listing(tmp.path().toStdString());
        QRandomGenerator rng(7);
        for (int i = 0; i < 150; ++i) {
            std::string b = good;
            const size_t at = rng.bounded(static_cast<quint32>(b.size()));
            b[at] = static_cast<char>(b[at] ^ (1 << rng.bounded(8)));
            writeAll(bad, b);
            auto im = importBankArchive(bad, dst);
            QVERIFY2(!im.ok() && im.status().code() == ErrorCode::Corrupt, qPrintable(QString::number(at)));
        }
        for (size_t len : {size_t{0}, size_t{10}, size_t{64}, size_t{100}, good.size() / 3, good.size() / 2,
                           good.size() - 64, good.size() - 1}) {
            writeAll(bad, good.substr(0, len));
            auto im = importBankArchive(bad, dst);
            QVERIFY2(!im.ok() && im.status().code() == ErrorCode::Corrupt, qPrintable(QString::number(len)));
            QVERIFY(im.status().message().find("bad.msabank") != std::string::npos);
        }
        // Bytes appended after the trailer are refused too.
        writeAll(bad, good + "x");
        auto extra = importBankArchive(bad, dst);
        QVERIFY(!extra.ok() && extra.status().code() == ErrorCode::Corrupt);
        fs::remove(bad);
        QVERIFY(nothingWritten(tmp.path().toStdString(), before));
    }

    void wrongMagicAndVersion() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        makeBank(src, testing::smallParams(DType::BF16), 3);
        QVERIFY(exportBankArchive(src, file).ok());
        std::string a = readAll(file);
        const fs::path dst = tmp.filePath("r").toStdString();
        std::string magic = a;
        magic[0] = 'X';
        writeAll(file.string() + ".m", magic);
        auto m = importBankArchive(file.string() + ".m", dst);
        QCOMPARE(m.status().code(), ErrorCode::Corrupt);
        QVERIFY(m.status().message().find("bad magic") != std::string::npos);
        // Version 2 with a valid header checksum: Unsupported, naming the version.
        std::string v = a;
        const uint32_t two = 2;
        std::memcpy(v.data() + 8, &two, 4);
        const uint64_t sum = msa::xxh3_64(std::string_view(v.data(), 56));
        std::memcpy(v.data() + 56, &sum, 8);
        writeAll(file.string() + ".v", v);
        auto u = importBankArchive(file.string() + ".v", dst);
        QCOMPARE(u.status().code(), ErrorCode::Unsupported);
        QVERIFY(u.status().message().find("version 2") != std::string::npos);
        QVERIFY(!fs::exists(dst));
        // A bank folder is not an archive; a missing file is NotFound.
        QCOMPARE(importBankArchive(src, dst).status().code(), ErrorCode::InvalidArgument);
        QCOMPARE(importBankArchive(tmp.filePath("none").toStdString(), dst).status().code(), ErrorCode::NotFound);
    }

    void fingerprintMismatchAndForce() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(src, p, 6);
        QVERIFY(exportBankArchive(src, file).ok());
        const fs::path dst = tmp.filePath("r").toStdString();
        const auto before = listing(tmp.path().toStdString());
        BankImportOptions io;
        io.expectFingerprint = kOtherModel;
        auto mm = importBankArchive(file, dst, io);
        QCOMPARE(mm.status().code(), ErrorCode::Mismatch);
        QVERIFY(mm.status().message().find(p.modelFingerprint) != std::string::npos);
        QVERIFY(mm.status().message().find(kOtherModel) != std::string::npos);
        QVERIFY(nothingWritten(tmp.path().toStdString(), before));

        // An existing bank is never overwritten without force...
        const fs::path other = tmp.filePath("other").toStdString();
        makeBank(other, p, 2, 0, 100);
        const auto otherBytes = folderBytes(other);
        auto refused = importBankArchive(file, other);
        QCOMPARE(refused.status().code(), ErrorCode::AlreadyExists);
        QVERIFY(folderBytes(other) == otherBytes);
        // ...nor replaced while a writer holds it...
        {
            auto w = BankWriter::open(other);
            QVERIFY(w.ok());
            BankImportOptions busy;
            busy.force = true;
            QCOMPARE(importBankArchive(file, other, busy).status().code(), ErrorCode::Busy);
        }
        QVERIFY(folderBytes(other) == otherBytes);
        // ...and with force it is replaced as a whole (no file of the old bank remains).
        BankImportOptions fo;
        fo.force = true;
        auto forced = importBankArchive(file, other, fo);
        QVERIFY2(forced.ok(), forced.status().toString().c_str());
        QVERIFY(forced->replaced);
        QVERIFY(folderBytes(other) == folderBytes(src));
        std::set<std::string> left = listing(tmp.path().toStdString());
        for (const std::string& n : left) QVERIFY2(n.find(".import-") == std::string::npos, n.c_str());
    }

    void cancelLeavesNoFile() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString(), file = tmp.filePath("b.msabank").toStdString();
        makeBank(src, testing::smallParams(DType::F32), 10, 3000);
        msa::CancelToken cancel;
        BankExportOptions eo;
        eo.cancel = &cancel;
        eo.progress = [&](const msa::Progress& pr) { if (pr.bytesDone > 0) cancel.cancel(); };
        auto ex = exportBankArchive(src, file, eo);
        QCOMPARE(ex.status().code(), ErrorCode::Cancelled);
        QCOMPARE(listing(tmp.path().toStdString()), std::set<std::string>{"b"});
        // Import cancels the same way, before anything is exposed.
        QVERIFY(exportBankArchive(src, file).ok());
        msa::CancelToken c2;
        BankImportOptions io;
        io.cancel = &c2;
        io.progress = [&](const msa::Progress& pr) { if (pr.bytesDone > 0) c2.cancel(); };
        QCOMPARE(importBankArchive(file, tmp.filePath("r").toStdString(), io).status().code(), ErrorCode::Cancelled);
        QCOMPARE(listing(tmp.path().toStdString()), (std::set<std::string>{"b", "b.msabank"}));
    }

    // SIGKILL at random moments of `msa bank export`: FILE either does not exist or is complete.
    void killDuringExport() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString();
        makeBank(src, testing::smallParams(DType::F32), 60, 16000);   // ~23 MiB
        const QString file = tmp.filePath("k.msabank");
        QElapsedTimer t;
        t.start();
        QByteArray out;
        QCOMPARE(runMsa({"bank", "export", QString::fromStdString(src.string()), file, "--zstd", "-q"}, &out), 0);
        const qint64 fullMs = std::max<qint64>(t.elapsed(), 20);
        QVERIFY(fs::remove(file.toStdString()));
        int killedRunning = 0, complete = 0;
        QRandomGenerator rng(11);
        for (int i = 0; i < 16; ++i) {
            QProcess child;
            child.start(MSA_BINARY, {"bank", "export", QString::fromStdString(src.string()), file, "--zstd", "-q"});
            QVERIFY(child.waitForStarted());
            QThread::msleep(static_cast<unsigned long>(rng.bounded(static_cast<quint32>(fullMs))));
            if (child.state() == QProcess::Running) ++killedRunning;
            child.kill();
            child.waitForFinished();
            if (fs::exists(file.toStdString())) {
                // Present means finished: it imports and verifies.
                ++complete;
                const fs::path dst = tmp.filePath("r%1").arg(i).toStdString();
                auto im = importBankArchive(file.toStdString(), dst);
                QVERIFY2(im.ok(), im.status().toString().c_str());
                QVERIFY(folderBytes(dst) == folderBytes(src));
                fs::remove_all(dst);
                fs::remove(file.toStdString());
            }
        }
        qInfo("%d of 16 kills hit a running export (full export %lld ms); %d found a finished file", killedRunning,
              static_cast<long long>(fullMs), complete);
        QVERIFY2(killedRunning >= 8, qPrintable(QString::number(killedRunning)));
        // What a killed export leaves is only ever a .partial-<pid> file.
        for (const std::string& n : listing(tmp.path().toStdString()))
            QVERIFY2(n == "b" || n.find("k.msabank.partial-") == 0, n.c_str());
    }

    // SIGKILL at random moments of `msa bank import`: the target is absent or complete, and the
    // staging folders killed imports leave are removed by the next import.
    void killDuringImport() {
        QTemporaryDir tmp;
        const fs::path src = tmp.filePath("b").toStdString();
        makeBank(src, testing::smallParams(DType::F32), 60, 16000);
        const QString file = tmp.filePath("k.msabank");
        QVERIFY(exportBankArchive(src, file.toStdString()).ok());
        QVERIFY(QDir(tmp.path()).mkpath("to"));
        const QString dst = tmp.filePath("to/bank");
        QElapsedTimer t;
        t.start();
        QByteArray out;
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "-q"}, &out), 0);
        const qint64 fullMs = std::max<qint64>(t.elapsed(), 20);
        fs::remove_all(dst.toStdString());
        int killedRunning = 0, complete = 0;
        QRandomGenerator rng(5);
        for (int i = 0; i < 12; ++i) {
            QProcess child;
            child.start(MSA_BINARY, {"bank", "import", file, "--bank", dst, "-q"});
            QVERIFY(child.waitForStarted());
            QThread::msleep(static_cast<unsigned long>(rng.bounded(static_cast<quint32>(fullMs))));
            if (child.state() == QProcess::Running) ++killedRunning;
            child.kill();
            child.waitForFinished();
            if (fs::exists(dst.toStdString())) {
                ++complete;
                QVERIFY(folderBytes(dst.toStdString()) == folderBytes(src));
                fs::remove_all(dst.toStdString());
            }
        }
        qInfo("%d of 12 kills hit a running import (full import %lld ms); %d found a complete bank", killedRunning,
              static_cast<long long>(fullMs), complete);
        QVERIFY2(killedRunning >= 6, qPrintable(QString::number(killedRunning)));
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "-q"}, &out), 0);
        QVERIFY(folderBytes(dst.toStdString()) == folderBytes(src));
        QCOMPARE(listing(tmp.filePath("to").toStdString()), std::set<std::string>{"bank"});
    }

    // The memory documents travel from one catalog to a new one with their ids, text and sources.
    void catalogDocumentsTravel() {
        QTemporaryDir tmp;
        const fs::path cat1 = tmp.filePath("c1.msacat").toStdString();
        QVERIFY(fs::copy_file(MSA_SOURCE_DIR "/tests/fixtures/catalog/catalog-v1.sqlite", cat1));
        fs::permissions(cat1, fs::perms::owner_read | fs::perms::owner_write);
        std::vector<msa::catalog::MemoryDocumentText> texts;
        {
            auto c = msa::catalog::Catalog::open(cat1);
            QVERIFY2(c.ok(), c.status().toString().c_str());
            auto m = c->memoryDocuments("fixture");
            QVERIFY(m.ok() && m->size() >= 3);
            texts = *m;
        }
        // A bank over exactly those memory document ids, plus one the catalog does not hold.
        const BankParams p = testing::smallParams(DType::BF16);
        const fs::path bank = tmp.filePath("bank").toStdString();
        {
            auto w = BankWriter::create(bank, p, testing::makeTemplate(p));
            QVERIFY(w.ok());
            for (const auto& t : texts) QVERIFY(w->append(testing::makeDoc(p, t.id, 70).input).isOk());
            QVERIFY(w->append(testing::makeDoc(p, 999, 70).input).isOk());
            QVERIFY(w->commit().isOk());
        }
        const fs::path file = tmp.filePath("bank.msabank").toStdString();
        msa::jobs::BankExportRequest er;
        er.bank = bank;
        er.file = file;
        er.catalog = cat1;
        er.zstd = true;
        auto ex = msa::jobs::exportBank(er);
        QVERIFY2(ex.ok(), ex.status().toString().c_str());
        QCOMPARE(ex->nMissingDocuments, uint64_t{1});
        QVERIFY(ex->archive.nDocumentRecords >= 3);

        const fs::path cat2 = tmp.filePath("c2.msacat").toStdString();
        msa::jobs::BankImportRequest ir;
        ir.file = file;
        ir.bank = tmp.filePath("restored").toStdString();
        ir.catalog = cat2;
        ir.model = p.modelFingerprint;
        auto im = msa::jobs::importBank(ir);
        QVERIFY2(im.ok(), im.status().toString().c_str());
        QCOMPARE(im->documents.nMemoryDocumentsAdded, static_cast<int64_t>(texts.size()));
        {
            auto c1 = msa::catalog::Catalog::open(cat1);
            auto c2 = msa::catalog::Catalog::open(cat2);
            QVERIFY(c1.ok() && c2.ok());
            for (const auto& t : texts) {
                auto m = c2->memoryDocument(t.id);
                QVERIFY2(m.ok(), m.status().toString().c_str());
                QCOMPARE(m->text, t.text);
                QCOMPARE(m->title, t.title);
                QCOMPARE(m->label, t.label);
                auto d1 = c1->document(t.documentId);
                auto d2 = c2->document(m->documentId);
                QVERIFY(d1.ok() && d2.ok());
                QCOMPARE(d2->contentHash, d1->contentHash);
                QCOMPARE(d2->dateUnix, d1->dateUnix);
                QCOMPARE(d2->author, d1->author);
                QCOMPARE(d2->participants, d1->participants);
                QCOMPARE(d2->metadataJson, d1->metadataJson);
                QCOMPARE(d2->sources, d1->sources);
            }
            auto cols = c2->collections();
            QVERIFY(cols.ok() && cols->size() == 1 && cols->front().name == "fixture");
            msa::catalog::SearchQuery q;
            q.match = "quokka";
            auto hits = c2->search(q);
            QVERIFY(hits.ok() && hits->size() == 1);
            auto integrity = c2->checkIntegrity();
            QVERIFY(integrity.ok());
            QVERIFY2(integrity->ok, integrity->problems.empty() ? "" : integrity->problems.front().c_str());
        }
        // The same through the command line.
        {
            const QString cliFile = tmp.filePath("cli.msabank"), cat5 = tmp.filePath("c5.msacat");
            QByteArray out;
            QCOMPARE(runMsa({"bank", "export", QString::fromStdString(bank.string()), cliFile, "--catalog",
                             QString::fromStdString(cat1.string()), "--json"}, &out), 0);
            QJsonObject o = QJsonDocument::fromJson(out).object();
            QCOMPARE(o["missing_documents"].toInt(), 1);
            QCOMPARE(o["document_records"].toInt(), static_cast<int>(ex->archive.nDocumentRecords));
            QCOMPARE(runMsa({"bank", "import", cliFile, "--bank", tmp.filePath("cli-bank"), "--catalog", cat5,
                             "--model", QString::fromStdString(p.modelFingerprint), "--json"}, &out), 0);
            o = QJsonDocument::fromJson(out).object();
            QCOMPARE(o["catalog_memory_documents_added"].toInt(), static_cast<int>(texts.size()));
            auto c5 = msa::catalog::Catalog::open(cat5.toStdString());
            QVERIFY(c5.ok());
            QCOMPARE(c5->memoryDocument(texts.back().id)->text, texts.back().text);
        }
        // Importing the same documents into the catalog they came from adds nothing.
        ir.bank = tmp.filePath("restored2").toStdString();
        ir.catalog = cat1;
        auto again = msa::jobs::importBank(ir);
        QVERIFY2(again.ok(), again.status().toString().c_str());
        QCOMPARE(again->documents.nMemoryDocumentsAdded, int64_t{0});
        QCOMPARE(again->documents.nMemoryDocumentsPresent, static_cast<int64_t>(texts.size()));
        // A catalog where those ids hold other text refuses (Mismatch) and no bank is installed.
        const fs::path cat3 = tmp.filePath("c3.msacat").toStdString();
        {
            auto c3 = msa::catalog::Catalog::open(cat3);
            QVERIFY(c3.ok());
            msa::catalog::PortableDocument other;
            other.document.contentHash = "other";
            other.document.kind = "text";
            other.document.title = "Other";
            other.document.text = "completely different text that is long enough";
            other.sources.push_back({"elsewhere", "/x/other.txt", ""});
            msa::catalog::MemoryDocumentInfo seg;
            seg.id = texts.front().id;
            seg.segmentKind = "whole";
            seg.spanEnd = 10;
            seg.tokenEstimate = 3;
            other.document.segments.push_back(seg);
            QVERIFY(c3->addPortableDocuments({other}).ok());
        }
        ir.bank = tmp.filePath("restored3").toStdString();
        ir.catalog = cat3;
        auto clash = msa::jobs::importBank(ir);
        QCOMPARE(clash.status().code(), ErrorCode::Mismatch);
        QVERIFY(!fs::exists(tmp.filePath("restored3").toStdString()));
        // A wrong model is refused before anything, including the catalog, is touched.
        ir.bank = tmp.filePath("restored4").toStdString();
        ir.catalog = tmp.filePath("c4.msacat").toStdString();
        ir.model = kOtherModel;
        QCOMPARE(msa::jobs::importBank(ir).status().code(), ErrorCode::Mismatch);
        QVERIFY(!fs::exists(tmp.filePath("c4.msacat").toStdString()));
        QVERIFY(!fs::exists(tmp.filePath("restored4").toStdString()));
    }

    // End to end with a real model (the tiny MSA checkpoint): a bank built from a catalog, carried in
    // one file to another folder with a NEW catalog, is usable there: an incremental build finds
    // every document unchanged (same ids, same text hashes) and routing gives the same documents,
    // scores and titles. The model fingerprint is checked from the model folder itself.
    void usableElsewhereWithARealModel() {
        const std::string model = MSA_SOURCE_DIR "/tests/fixtures/models/msa-qwen3-bf16";
        QTemporaryDir tmp;
        QVERIFY(QDir(tmp.path()).mkpath("files"));
        const char* topics[] = {"kelp forests grow fast in cold water", "the cello top is cut from old spruce",
                                "the boat Wenna was refitted in March", "tide tables shift by an hour in summer"};
        for (int i = 0; i < 4; ++i) {
            std::ofstream f(tmp.filePath(QString("files/note%1.txt").arg(i)).toStdString());
            for (int r = 0; r < 3; ++r) f << topics[i] << ". ";
        }
        const std::string cat1 = tmp.filePath("a.msacat").toStdString();
        {
            auto cat = msa::catalog::Catalog::open(cat1);
            QVERIFY(cat.ok());
            msa::catalog::ImportRequest req;
            req.collection = "notes";
            req.paths = {tmp.filePath("files").toStdString()};
            QVERIFY(msa::catalog::importPaths(*cat, req, {}, nullptr).ok());
        }
        msa::jobs::BuildOptions bo;
        bo.catalog = cat1;
        bo.collection = "notes";
        bo.model = model;
        bo.bank = tmp.filePath("bank").toStdString();
        auto built = msa::jobs::buildMemory(bo);
        QVERIFY2(built.ok(), built.status().toString().c_str());
        QCOMPARE(built->nEncoded, uint64_t{4});

        const QString file = tmp.filePath("notes.msabank");
        QByteArray out;
        QCOMPARE(runMsa({"bank", "export", QString::fromStdString(bo.bank.string()), file, "--zstd", "--catalog",
                         QString::fromStdString(cat1), "-q"}, &out), 0);
        QVERIFY(QDir(tmp.path()).mkpath("elsewhere"));
        const QString bank2 = tmp.filePath("elsewhere/bank"), cat2 = tmp.filePath("elsewhere/b.msacat");
        QCOMPARE(runMsa({"bank", "import", file, "--bank", bank2, "--catalog", cat2, "--model",
                         QString::fromStdString(model), "-q"}, &out), 0);
        // Another model folder is refused by its real fingerprint.
        QCOMPARE(runMsa({"bank", "import", file, "--bank", tmp.filePath("elsewhere/x"), "--model",
                         MSA_SOURCE_DIR "/tests/fixtures/models/qwen3-f32"}, &out), msa::exitCodeFor(ErrorCode::Mismatch));

        bo.catalog = cat2.toStdString();
        bo.bank = bank2.toStdString();
        auto again = msa::jobs::buildMemory(bo);
        QVERIFY2(again.ok(), again.status().toString().c_str());
        QCOMPARE(again->nEncoded, uint64_t{0});
        QCOMPARE(again->nUnchanged, uint64_t{4});

        msa::jobs::RouteRequest rq;
        rq.model = model;
        rq.question = "Where did the spruce for the cello top come from?";
        rq.bank = tmp.filePath("bank").toStdString();
        rq.catalog = cat1;
        auto a = msa::jobs::routeQuestion(rq);
        rq.bank = bank2.toStdString();
        rq.catalog = cat2.toStdString();
        auto b = msa::jobs::routeQuestion(rq);
        QVERIFY2(a.ok() && b.ok(), (a.ok() ? b : a).status().toString().c_str());
        QCOMPARE(a->overall.size(), b->overall.size());
        for (size_t i = 0; i < a->overall.size(); ++i) {
            QCOMPARE(b->overall[i].id, a->overall[i].id);
            QCOMPARE(b->overall[i].bestScore, a->overall[i].bestScore);
            QCOMPARE(b->overall[i].title, a->overall[i].title);
            QVERIFY(!b->overall[i].title.empty());
        }
    }

    // The command line: export/import/verify --model, --json, exit codes.
    void cli() {
        QTemporaryDir tmp;
        const BankParams p = testing::smallParams(DType::BF16);
        const QString bank = tmp.filePath("bank"), file = tmp.filePath("bank.msabank");
        makeBank(bank.toStdString(), p, 8);
        QByteArray out, err;
        QCOMPARE(runMsa({"bank", "export", bank, file, "--zstd", "--json"}, &out), 0);
        QJsonObject o = QJsonDocument::fromJson(out).object();
        QVERIFY(o["ok"].toBool());
        QCOMPARE(o["compression"].toString(), QString("zstd"));
        QCOMPARE(o["documents"].toInt(), 8);
        const QString dst = tmp.filePath("restored");
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "--model", kOtherModel}, &out, &err),
                 msa::exitCodeFor(ErrorCode::Mismatch));
        QVERIFY(err.contains(QByteArray::fromStdString(p.modelFingerprint)) && err.contains(kOtherModel));
        QVERIFY(!QFileInfo::exists(dst));
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "--model", QString::fromStdString(p.modelFingerprint),
                         "--json"}, &out), 0);
        o = QJsonDocument::fromJson(out).object();
        QCOMPARE(o["documents"].toInt(), 8);
        QVERIFY(folderBytes(bank.toStdString()) == folderBytes(dst.toStdString()));
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "--json"}, &out), msa::exitCodeFor(ErrorCode::AlreadyExists));
        QCOMPARE(QJsonDocument::fromJson(out).object()["error"].toObject()["code"].toString(), QString("already_exists"));
        QCOMPARE(runMsa({"bank", "import", file, "--bank", dst, "--force"}, &out), 0);
        // verify --model checks the fingerprint as well as every checksum.
        QCOMPARE(runMsa({"bank", "verify", "--bank", dst, "--model", QString::fromStdString(p.modelFingerprint)}, &out), 0);
        QCOMPARE(runMsa({"bank", "verify", dst, "--model", kOtherModel, "--json"}, &out), msa::exitCodeFor(ErrorCode::Mismatch));
        QCOMPARE(QJsonDocument::fromJson(out).object()["error"].toObject()["code"].toString(), QString("mismatch"));
        // A damaged archive: exit 5, nothing installed.
        std::string a = readAll(file.toStdString());
        a[a.size() / 2] = static_cast<char>(a[a.size() / 2] ^ 1);
        writeAll(file.toStdString(), a);
        QCOMPARE(runMsa({"bank", "import", file, "--bank", tmp.filePath("r2")}, &out), msa::exitCodeFor(ErrorCode::Corrupt));
        QVERIFY(!QFileInfo::exists(tmp.filePath("r2")));
        // Usage errors.
        QCOMPARE(runMsa({"bank", "export", bank}, &out), msa::exitCodeFor(ErrorCode::InvalidArgument));
        QCOMPARE(runMsa({"bank", "import", file, "--bank", tmp.filePath("r3"), "--model", tmp.filePath("no-model.gguf")}, &out),
                 msa::exitCodeFor(ErrorCode::NotFound));
    }
};

QTEST_GUILESS_MAIN(TestBankArchive)
#include "tst_bank_archive.moc"

// tst_bank: the memory bank format: round trips (f32, bf16 with round-to-nearest-even), shards,
// reopen and append, tombstones and compaction, detection of corruption in every section, SIGKILL
// during appends, and a full disk.
#include "core/memory/bank.h"
#include "core/model/dtype.h"
#include "tests/core/memory/bank_test_util.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QRandomGenerator>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <algorithm>
#include <fstream>
#include <map>

using namespace msa::memory;
using msa::ErrorCode;
using msa::model::DType;
namespace fs = std::filesystem;

namespace {

std::vector<float> asF32(const Bank& b, std::span<const std::byte> s) {
    std::vector<float> out(s.size() / b.elementBytes());
    toF32(b.params().storage, s, out);
    return out;
}

// Expected stored bytes of f32 input: bit-exact f32, or the reference bf16 conversion.
std::vector<std::byte> expectedBytes(DType storage, std::span<const float> in) {
    std::vector<std::byte> out(in.size() * (storage == DType::F32 ? 4 : 2));
    for (size_t i = 0; i < in.size(); ++i) {
        if (storage == DType::F32) {
            std::memcpy(&out[4 * i], &in[i], 4);
        } else {
            const uint16_t h = msa::model::f32ToBf16(in[i]);
            std::memcpy(&out[2 * i], &h, 2);
        }
    }
    return out;
}

bool sameBytes(std::span<const std::byte> a, const std::vector<std::byte>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// Checks every tensor of live document `id` against the generator.
void checkDocument(const Bank& b, int64_t id, uint64_t nTokens) {
    const BankParams& p = b.params();
    auto row = b.findDocument(id);
    QVERIFY2(row.has_value(), qPrintable(QString("document %1 missing").arg(id)));
    const DocumentEntry& e = b.documents()[*row];
    QCOMPARE(e.nTokens, nTokens);
    QCOMPARE(e.nChunks, uint32_t((nTokens + p.chunkSize - 1) / p.chunkSize));
    testing::TestDoc d = testing::makeDoc(p, id, nTokens);
    QCOMPARE(e.contentHash, d.input.contentHash);
    for (size_t l = 0; l < p.routingLayers.size(); ++l) {
        QVERIFY(sameBytes(b.values(*row, l), expectedBytes(p.storage, d.v[l])));
        QVERIFY(sameBytes(b.keys(*row, l), expectedBytes(p.storage, d.k[l])));
        QVERIFY(sameBytes(b.routingKeysOf(*row, l), expectedBytes(p.storage, p.keysShared ? d.k[l] : d.r[l])));
    }
}

struct SectionInfo {
    uint32_t kind, layer;
    uint64_t offset, length;
};

// Reads a container's section table straight from the bytes (independent of the reader).
std::vector<SectionInfo> sectionsOf(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::vector<char> head(64);
    in.read(head.data(), 64);
    uint32_t n = 0;
    std::memcpy(&n, &head[12], 4);
    std::vector<SectionInfo> out;
    for (uint32_t i = 0; i < n; ++i) {
        char e[32];
        in.read(e, 32);
        SectionInfo s{};
        std::memcpy(&s.kind, e, 4);
        std::memcpy(&s.layer, e + 4, 4);
        std::memcpy(&s.offset, e + 8, 8);
        std::memcpy(&s.length, e + 16, 8);
        out.push_back(s);
    }
    return out;
}

void flipByte(const fs::path& file, uint64_t offset) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
}

fs::path firstShard(const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().rfind("shard-", 0) == 0) return e.path();
    return {};
}

// A committed bank of documents 1..n with 1..4 chunks each.
void makeBank(const fs::path& dir, const BankParams& p, int n) {
    auto w = BankWriter::create(dir, p, testing::makeTemplate(p));
    QVERIFY2(w.ok(), qPrintable(QString::fromStdString(w.status().toString())));
    for (int id = 1; id <= n; ++id) {
        testing::TestDoc d = testing::makeDoc(p, id, testing::tokensFor(id));
        QVERIFY(w->append(d.input).isOk());
    }
    QVERIFY(w->commit().isOk());
}

}  // namespace

class TestBank : public QObject {
    Q_OBJECT

private:
    void roundTrip(DType storage, bool shared) {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        const BankParams p = testing::smallParams(storage, shared);
        makeBank(dir, p, 9);
        auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = p.modelFingerprint});
        QVERIFY2(b.ok(), qPrintable(QString::fromStdString(b.status().toString())));
        QCOMPARE(b->nDocuments(), uint64_t(9));
        QCOMPARE(b->elementBytes(), size_t(storage == DType::F32 ? 4 : 2));
        QCOMPARE(b->params().routingLayers, p.routingLayers);
        QCOMPARE(b->params().keysShared, shared);
        uint64_t chunks = 0, tokens = 0;
        for (int id = 1; id <= 9; ++id) {
            checkDocument(*b, id, testing::tokensFor(id));
            chunks += (testing::tokensFor(id) + 63) / 64;
            tokens += testing::tokensFor(id);
        }
        QCOMPARE(b->nChunks(), chunks);
        QCOMPARE(b->nTokens(), tokens);
        // Template head of every model layer.
        const TemplateHead t = testing::makeTemplate(p);
        for (uint32_t l = 0; l < p.nLayers; ++l) {
            QVERIFY(sameBytes(b->templateKeys(l), expectedBytes(storage, t.keys[l])));
            QVERIFY(sameBytes(b->templateValues(l), expectedBytes(storage, t.values[l])));
        }
        // The scan view: one contiguous span per shard covering all chunks in document order.
        for (size_t l = 0; l < p.routingLayers.size(); ++l) {
            auto spans = b->routingKeys(l);
            QCOMPARE(spans.size(), size_t(1));
            QCOMPARE(spans[0].nChunks, chunks);
            QCOMPARE(spans[0].bytes.size(), chunks * p.nRouteHeads * p.headDim * b->elementBytes());
            const auto row = *b->findDocument(5);
            const DocumentEntry& e = b->documents()[row];
            const uint64_t rb = uint64_t(p.nRouteHeads) * p.headDim * b->elementBytes();
            QVERIFY(std::memcmp(spans[0].bytes.data() + e.firstChunk * rb, b->routingKeysOf(row, l).data(), e.nChunks * rb) == 0);
        }
        // Candidate mapping chunk -> document.
        const std::vector<uint32_t> map = b->chunkToDocument();
        QCOMPARE(map.size(), chunks);
        for (uint64_t c = 0; c < chunks; ++c) {
            const DocumentEntry& e = b->documents()[map[c]];
            QVERIFY(c >= e.firstChunk && c < e.firstChunk + e.nChunks);
            QCOMPARE(*b->documentOfChunk(c), size_t(map[c]));
        }
        QVERIFY(!b->documentOfChunk(chunks).has_value());
        // Widening back to f32.
        const auto row = *b->findDocument(3);
        testing::TestDoc d = testing::makeDoc(p, 3, testing::tokensFor(3));
        const std::vector<float> v = asF32(*b, b->values(row, 1));
        QCOMPARE(v.size(), d.v[1].size());
        for (size_t i = 0; i < v.size(); ++i) {
            if (storage == DType::F32) QCOMPARE(v[i], d.v[1][i]);
            else QVERIFY(std::abs(v[i] - d.v[1][i]) <= std::abs(d.v[1][i]) * (1.0f / 256));
        }
    }

private slots:
    void roundTripF32() { roundTrip(DType::F32, false); }
    void roundTripBf16() { roundTrip(DType::BF16, false); }
    void roundTripSharedKeys() { roundTrip(DType::BF16, true); }

    // bf16 conversion is round-to-nearest-even on exact ties (1 + 2^-8 lies halfway between 1 and the
    // next bf16; 1 + 3*2^-8 halfway between two others).
    void bf16TiesToEven() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        BankParams p = testing::smallParams(DType::BF16);
        auto w = BankWriter::create(dir, p, testing::makeTemplate(p));
        QVERIFY(w.ok());
        testing::TestDoc d = testing::makeDoc(p, 7, 10);
        d.v[0][0] = 1.0f + 1.0f / 256;        // tie -> 0x3f80 (even)
        d.v[0][1] = 1.0f + 3.0f / 256;        // tie -> 0x3f82 (even)
        d.v[0][2] = -(1.0f + 1.0f / 256 + 1.0f / 65536);   // above the tie -> 0xbf81
        QVERIFY(w->append(d.input).isOk());
        QVERIFY(w->commit().isOk());
        auto b = Bank::open(dir);
        QVERIFY(b.ok());
        const auto s = b->values(*b->findDocument(7), 0);
        uint16_t h[3];
        std::memcpy(h, s.data(), 6);
        QCOMPARE(h[0], uint16_t(0x3f80));
        QCOMPARE(h[1], uint16_t(0x3f82));
        QCOMPARE(h[2], uint16_t(0xbf81));
    }

    void multiShardReopenAppend() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        BankParams p = testing::smallParams(DType::BF16);
        p.maxShardBytes = 8 * 1024;   // ~10 chunks of all layers: a commit every few documents
        makeBank(dir, p, 20);
        {
            auto b = Bank::open(dir);
            QVERIFY(b.ok());
            auto spans = b->routingKeys(2);
            QVERIFY2(spans.size() >= 4, qPrintable(QString::number(spans.size())));
            uint64_t next = 0;
            for (const ShardSpan& s : spans) {
                QCOMPARE(s.firstChunk, next);
                next += s.nChunks;
            }
            QCOMPARE(next, b->nChunksTotal());
        }
        {
            auto w = BankWriter::open(dir);
            QVERIFY(w.ok());
            QCOMPARE(*w->contentHash(4), std::string("hash-4"));
            for (int id = 21; id <= 25; ++id) {
                testing::TestDoc d = testing::makeDoc(p, id, testing::tokensFor(id));
                QVERIFY(w->append(d.input).isOk());
            }
            testing::TestDoc dup = testing::makeDoc(p, 3, 10);
            QCOMPARE(w->append(dup.input).code(), ErrorCode::InvalidArgument);
            QVERIFY(w->commit().isOk());
            // A second writer is refused while the first holds the lock.
            auto w2 = BankWriter::open(dir);
            QCOMPARE(w2.status().code(), ErrorCode::Busy);
        }
        auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY(b.ok());
        QCOMPARE(b->nDocuments(), uint64_t(25));
        for (int id = 1; id <= 25; ++id) checkDocument(*b, id, testing::tokensFor(id));
    }

    void tombstoneReplaceCompact() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        BankParams p = testing::smallParams(DType::BF16);
        p.maxShardBytes = 16 * 1024;
        makeBank(dir, p, 12);
        uint64_t bytesBefore = 0;
        {
            auto w = BankWriter::open(dir);
            QVERIFY(w.ok());
            QVERIFY(w->remove(2).isOk());
            QVERIFY(w->remove(7).isOk());
            QCOMPARE(w->remove(7).code(), ErrorCode::NotFound);
            QCOMPARE(w->remove(99).code(), ErrorCode::NotFound);
            testing::TestDoc changed = testing::makeDoc(p, 5, 200, "hash-5-v2");
            QVERIFY(w->replace(changed.input).isOk());
            QVERIFY(w->commit().isOk());
            QCOMPARE(*w->contentHash(5), std::string("hash-5-v2"));
            QVERIFY(!w->contentHash(2).has_value());
        }
        {
            auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
            QVERIFY(b.ok());
            QCOMPARE(b->nDocuments(), uint64_t(10));
            QCOMPARE(b->nTombstones(), uint64_t(3));
            QVERIFY(!b->findDocument(2));
            QVERIFY(!b->findDocument(7));
            QCOMPARE(*b->contentHash(5), std::string("hash-5-v2"));
            QCOMPARE(b->documents()[*b->findDocument(5)].nTokens, uint64_t(200));
            int tomb = 0;
            for (const DocumentEntry& e : b->documents()) tomb += e.live() ? 0 : 1;
            QCOMPARE(tomb, 3);
            bytesBefore = b->diskBytes();
        }
        {
            auto w = BankWriter::open(dir);
            QVERIFY(w.ok());
            auto rep = w->compact();
            QVERIFY2(rep.ok(), qPrintable(QString::fromStdString(rep.status().toString())));
            QCOMPARE(rep->nDocuments, uint64_t(10));
            QCOMPARE(rep->nRemoved, uint64_t(3));
            QVERIFY(rep->bytesAfter < bytesBefore);
        }
        auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY(b.ok());
        QCOMPARE(b->nTombstones(), uint64_t(0));
        QCOMPARE(b->nChunksTotal(), b->nChunks());
        QCOMPARE(b->documents().size(), size_t(10));
        QCOMPARE(b->verify()->nOrphanFiles, uint64_t(0));
        for (int id : {1, 3, 4, 6, 8, 9, 10, 11, 12}) checkDocument(*b, id, testing::tokensFor(id));
        const auto row = *b->findDocument(5);
        QCOMPARE(b->documents()[row].contentHash, std::string("hash-5-v2"));
        testing::TestDoc v2 = testing::makeDoc(p, 5, 200);
        QVERIFY(sameBytes(b->values(row, 2), expectedBytes(p.storage, v2.v[2])));
    }

    // A flipped byte in any section of any file is found: metadata at open(), bulk data by verify()
    // (and by open() with verifyData), always as Corrupt and naming the file and section.
    void corruptionOfEachSection() {
        QTemporaryDir tmp;
        const fs::path base = tmp.filePath("base").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(base, p, 6);
        struct Case { std::string file; uint64_t offset; bool atOpen; std::string expect; };
        std::vector<Case> cases;
        const fs::path shard = firstShard(base);
        for (const std::string& f : {std::string("template.msab"), shard.filename().string()}) {
            const auto secs = sectionsOf(base / f);
            QVERIFY(!secs.empty());
            for (const SectionInfo& s : secs) {
                const bool meta = s.kind == 1 || s.kind == 2 || s.kind >= 6;   // tables and template
                if (s.length == 0) continue;
                cases.push_back({f, s.offset + s.length / 2, meta, "checksum mismatch"});
            }
            cases.push_back({f, 20, true, "header"});          // a count in the header
            cases.push_back({f, 64 + 8, true, "section table"}); // first table entry's offset
        }
        cases.push_back({"manifest.json", 40, true, "manifest.json"});
        for (const Case& c : cases) {
            const fs::path dir = tmp.filePath("case").toStdString();
            fs::remove_all(dir);
            fs::copy(base, dir);
            flipByte(dir / c.file, c.offset);
            const QString what = QString::fromStdString(c.file + " @" + std::to_string(c.offset));
            auto b = Bank::open(dir);
            if (c.atOpen) {
                QVERIFY2(!b.ok(), qPrintable(what));
                QCOMPARE(b.status().code(), ErrorCode::Corrupt);
            } else {
                QVERIFY2(b.ok(), qPrintable(what));
                auto v = b->verify();
                QVERIFY2(!v.ok(), qPrintable(what));
                QCOMPARE(v.status().code(), ErrorCode::Corrupt);
                QVERIFY2(v.status().message().find(c.file) != std::string::npos, qPrintable(QString::fromStdString(v.status().message())));
                QVERIFY(v.status().message().find("checksum mismatch") != std::string::npos);
                auto strict = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
                QCOMPARE(strict.status().code(), ErrorCode::Corrupt);
            }
            const std::string msg = (c.atOpen ? b.status() : b->verify().status()).message();
            QVERIFY2(msg.find(c.file) != std::string::npos || c.file == "manifest.json", qPrintable(QString::fromStdString(msg)));
        }
        QVERIFY(cases.size() >= 20);

        // Truncation, an unknown format version, another model, a missing bank.
        {
            const fs::path dir = tmp.filePath("trunc").toStdString();
            fs::copy(base, dir);
            fs::resize_file(dir / shard.filename(), fs::file_size(dir / shard.filename()) - 4096);
            auto b = Bank::open(dir);
            QCOMPARE(b.status().code(), ErrorCode::Corrupt);
            QVERIFY(b.status().message().find(shard.filename().string()) != std::string::npos);
        }
        {
            const fs::path dir = tmp.filePath("version").toStdString();
            fs::copy(base, dir);
            std::ifstream in(dir / "manifest.json");
            std::string text((std::istreambuf_iterator<char>(in)), {});
            in.close();
            const auto pos = text.find("\"format_version\": 1");
            QVERIFY(pos != std::string::npos);
            text.replace(pos, 19, "\"format_version\": 9");
            std::ofstream(dir / "manifest.json") << text;
            QCOMPARE(Bank::open(dir).status().code(), ErrorCode::Unsupported);
        }
        QCOMPARE(Bank::open(base, {.verifyData = false, .expectFingerprint = std::string(32, 'f')}).status().code(),
                 ErrorCode::Mismatch);
        QCOMPARE(Bank::open(tmp.filePath("nothing").toStdString()).status().code(), ErrorCode::NotFound);
        QVERIFY(Bank::open(base, {.verifyData = true, .expectFingerprint = std::nullopt}).ok());
    }

    // 300 random byte flips anywhere in any file: the bank either refuses to open (with full data
    // verification) or everything it serves is exactly what was written (the flip hit padding or
    // manifest whitespace).
    void randomFlipsNeverServeCorruptData() {
        QTemporaryDir tmp;
        const fs::path base = tmp.filePath("base").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        BankParams small = p;
        small.maxShardBytes = 8 * 1024;
        makeBank(base, small, 12);
        {
            auto w = BankWriter::open(base);
            QVERIFY(w.ok());
            QVERIFY(w->remove(4).isOk());
            QVERIFY(w->commit().isOk());
        }
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(base))
            if (e.path().filename() != "lock") files.push_back(e.path().filename());
        std::sort(files.begin(), files.end());
        QRandomGenerator rng(4242);
        int refused = 0;
        for (int i = 0; i < 300; ++i) {
            const fs::path dir = tmp.filePath("flip").toStdString();
            fs::remove_all(dir);
            fs::copy(base, dir);
            const fs::path f = files[rng.bounded(static_cast<quint32>(files.size()))];
            const uint64_t size = fs::file_size(dir / f);
            flipByte(dir / f, rng.bounded(static_cast<quint64>(size)));
            auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
            if (!b.ok()) {
                const ErrorCode c = b.status().code();
                QVERIFY2(c == ErrorCode::Corrupt || c == ErrorCode::Unsupported, qPrintable(QString::fromStdString(b.status().toString())));
                ++refused;
                continue;
            }
            QCOMPARE(b->nDocuments(), uint64_t(11));
            for (int id = 1; id <= 12; ++id)
                if (id != 4) checkDocument(*b, id, testing::tokensFor(id));
            const TemplateHead t = testing::makeTemplate(p);
            for (uint32_t l = 0; l < p.nLayers; ++l) QVERIFY(sameBytes(b->templateKeys(l), expectedBytes(p.storage, t.keys[l])));
        }
        qInfo("%d of 300 flips refused; the rest hit bytes that carry no data", refused);
        QVERIFY(refused > 200);
    }

    // SIGKILL at random moments during appends: the bank always opens, holds only whole documents,
    // verifies clean and accepts more.
    void killDuringAppend() {
        QTemporaryDir tmp;
        const QString dir = tmp.filePath("bank");
        QCOMPARE(QProcess::execute(MSA_BANK_CRASH_HELPER, {"create", dir}), 0);
        const BankParams p = testing::smallParams(DType::BF16);
        int killedRunning = 0, tornLeft = 0;
        int64_t committedBefore = 0;
        QRandomGenerator rng(12345);
        for (int round = 0; round < 24; ++round) {
            QProcess child;
            child.start(MSA_BANK_CRASH_HELPER, {"append", dir, "100000"});
            QVERIFY(child.waitForStarted());
            // Wait until the child is in its append loop (it printed a committed id), then kill it
            // somewhere in the following commits.
            QVERIFY(child.waitForReadyRead(10000));
            QThread::usleep(rng.bounded(20000));
            if (child.state() == QProcess::Running) ++killedRunning;
            child.kill();   // SIGKILL
            QVERIFY(child.waitForFinished(10000));
            const fs::path d = dir.toStdString();
            auto b = Bank::open(d, {.verifyData = true, .expectFingerprint = p.modelFingerprint});
            QVERIFY2(b.ok(), qPrintable(QString::fromStdString(b.status().toString())));
            // Documents 1..n, each whole and exactly as written (the helper appends ids in order).
            const int64_t n = static_cast<int64_t>(b->nDocuments());
            QVERIFY(n >= committedBefore);
            for (int64_t id = 1; id <= n; ++id) QVERIFY(b->findDocument(id).has_value());
            if (n > 0) checkDocument(*b, n, testing::tokensFor(n));
            committedBefore = n;
            tornLeft += b->verify()->nOrphanFiles > 0 ? 1 : 0;
        }
        qInfo("%d of 24 kills hit a running append; %d left a torn (uncommitted) file behind, %lld documents committed",
              killedRunning, tornLeft, static_cast<long long>(committedBefore));
        QVERIFY2(killedRunning >= 20, qPrintable(QString::number(killedRunning)));
        QVERIFY(committedBefore > 0);
        // Further appends work (the writer also clears torn files).
        QProcess more;
        more.start(MSA_BANK_CRASH_HELPER, {"append", dir, "3"});
        QVERIFY(more.waitForFinished(30000));
        QCOMPARE(more.exitCode(), 0);
        auto b = Bank::open(dir.toStdString(), {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY(b.ok());
        QCOMPARE(int64_t(b->nDocuments()), committedBefore + 3);
        QCOMPARE(b->verify()->nOrphanFiles, uint64_t(0));
        for (int64_t id = 1; id <= int64_t(b->nDocuments()); id += 7) checkDocument(*b, id, testing::tokensFor(id));
    }

    // Pending work: remove of a pending document, rollback, and a commit that fails on a full disk
    // keeps the pending documents so a later commit (after space was freed) succeeds.
    void pendingRollbackAndRetry() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(dir, p, 3);
        auto w = BankWriter::open(dir);
        QVERIFY(w.ok());
        testing::TestDoc d4 = testing::makeDoc(p, 4, 100), d5 = testing::makeDoc(p, 5, 4096);
        QVERIFY(w->append(d4.input).isOk());
        QVERIFY(w->remove(4).isOk());             // pending: simply dropped
        QCOMPARE(w->nPendingDocuments(), uint64_t(0));
        QVERIFY(w->append(d4.input).isOk());
        QVERIFY(w->remove(1).isOk());
        w->rollback();
        QVERIFY(w->commit().isOk());              // nothing to do
        QCOMPARE(Bank::open(dir)->nDocuments(), uint64_t(3));

        QVERIFY(w->append(d5.input).isOk());      // 48 KiB shard
        rlimit old{};
        QCOMPARE(getrlimit(RLIMIT_FSIZE, &old), 0);
        auto previous = std::signal(SIGXFSZ, SIG_IGN);
        rlimit small = old;
        small.rlim_cur = 20000;
        QCOMPARE(setrlimit(RLIMIT_FSIZE, &small), 0);
        const msa::Status st = w->commit();
        QCOMPARE(setrlimit(RLIMIT_FSIZE, &old), 0);
        std::signal(SIGXFSZ, previous);
        QCOMPARE(st.code(), ErrorCode::DiskFull);
        QCOMPARE(w->nPendingDocuments(), uint64_t(1));
        {
            auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
            QVERIFY(b.ok());
            QCOMPARE(b->nDocuments(), uint64_t(3));
            QCOMPARE(b->verify()->nOrphanFiles, uint64_t(0));
        }
        QVERIFY(w->commit().isOk());
        auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY(b.ok());
        QCOMPARE(b->nDocuments(), uint64_t(4));
        checkDocument(*b, 5, 4096);
    }

    // SIGKILL at random moments during a compaction: the bank keeps exactly the live documents.
    void killDuringCompact() {
        QTemporaryDir tmp;
        const QString dir = tmp.filePath("bank");
        QCOMPARE(QProcess::execute(MSA_BANK_CRASH_HELPER, {"create", dir}), 0);
        QProcess fill;
        fill.start(MSA_BANK_CRASH_HELPER, {"append", dir, "150"});   // 150 shards of one document
        QVERIFY(fill.waitForFinished(60000));
        QCOMPARE(fill.exitCode(), 0);
        const BankParams p = testing::smallParams(DType::BF16);
        {
            auto w = BankWriter::open(dir.toStdString());
            QVERIFY(w.ok());
            for (int64_t id = 3; id <= 150; id += 4) QVERIFY(w->remove(id).isOk());
            QVERIFY(w->commit().isOk());
        }
        const fs::path pristine = dir.toStdString() + ".pristine";
        fs::copy(dir.toStdString(), pristine);
        QRandomGenerator rng(777);
        int compacted = 0, interrupted = 0;
        for (int round = 0; round < 16; ++round) {
            // Start from the uncompacted bank each time; sweep the kill over the ~30 ms a compaction takes.
            fs::remove_all(dir.toStdString());
            fs::copy(pristine, dir.toStdString());
            QProcess child;
            child.start(MSA_BANK_CRASH_HELPER, {"compact", dir});
            QVERIFY(child.waitForStarted());
            QThread::usleep(static_cast<unsigned long>(round) * 2500 + rng.bounded(2500));
            child.kill();
            QVERIFY(child.waitForFinished(10000));
            auto b = Bank::open(dir.toStdString(), {.verifyData = true, .expectFingerprint = std::nullopt});
            QVERIFY2(b.ok(), qPrintable(QString::fromStdString(b.status().toString())));
            QCOMPARE(b->nDocuments(), uint64_t(150 - 37));
            for (int64_t id = 1; id <= 150; ++id) QCOMPARE(b->findDocument(id).has_value(), (id - 3) % 4 != 0 || id < 3);
            checkDocument(*b, 150, testing::tokensFor(150));
            compacted += b->nTombstones() == 0 ? 1 : 0;
            interrupted += b->verify()->nOrphanFiles > 0 ? 1 : 0;
        }
        // The next writer finishes the job.
        auto w = BankWriter::open(dir.toStdString());
        QVERIFY(w.ok());
        QVERIFY(w->compact().ok());
        qInfo("compaction had committed in %d of 16 rounds; %d kills left uncommitted or stale files", compacted, interrupted);
    }

    // A full disk (RLIMIT_FSIZE with SIGXFSZ ignored) fails the append with DiskFull and leaves every
    // earlier document readable.
    void diskFull() {
        QTemporaryDir tmp;
        const QString dir = tmp.filePath("bank");
        QCOMPARE(QProcess::execute(MSA_BANK_CRASH_HELPER, {"create", dir}), 0);
        // A document of 4096 tokens is 64 chunks x 3 layers x (4+2+2 heads) x 16 x 2 B = 48 KiB, so its
        // shard fits a 400 kB file limit but not a 40 kB one (the manifest still would).
        QProcess child;
        child.start(MSA_BANK_CRASH_HELPER, {"append", dir, "3", "400000", "4096"});
        QVERIFY(child.waitForFinished(30000));
        QCOMPARE(child.exitCode(), 0);
        child.start(MSA_BANK_CRASH_HELPER, {"append", dir, "3", "40000", "4096"});
        QVERIFY(child.waitForFinished(30000));
        QCOMPARE(child.exitCode(), static_cast<int>(ErrorCode::DiskFull));
        QVERIFY(child.readAllStandardError().contains("disk_full"));
        auto b = Bank::open(dir.toStdString(), {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY2(b.ok(), qPrintable(QString::fromStdString(b.status().toString())));
        QCOMPARE(b->nDocuments(), uint64_t(3));
        for (int64_t id = 1; id <= 3; ++id) checkDocument(*b, id, 4096);
        QCOMPARE(b->verify()->nOrphanFiles, uint64_t(0));   // the failed shard was removed
    }

    // On-disk bytes per memory token for the demo model (training-free: all 30 layers route, K̄ᴿ = K̄)
    // and MSA-4B (18 routing layers), against the arithmetic of msa-spec §6.6.
    void bytesPerToken_data() {
        QTest::addColumn<int>("layers");
        QTest::addColumn<int>("firstRouting");
        QTest::addColumn<int>("kv");
        QTest::addColumn<int>("dim");
        QTest::addColumn<bool>("shared");
        QTest::addColumn<int>("docs");
        QTest::addColumn<double>("expected");
        QTest::newRow("demo-training-free") << 30 << 0 << 3 << 64 << true << 100 << 2.0 * 30 * 3 * 64 * 2 / 64;
        QTest::newRow("msa-4b") << 36 << 18 << 8 << 128 << false << 20 << 3.0 * 18 * 8 * 128 * 2 / 64;
    }
    void bytesPerToken() {
        QFETCH(int, layers);
        QFETCH(int, firstRouting);
        QFETCH(int, kv);
        QFETCH(int, dim);
        QFETCH(bool, shared);
        QFETCH(int, docs);
        QFETCH(double, expected);
        BankParams p = testing::smallParams(DType::BF16, shared);
        p.nLayers = static_cast<uint32_t>(layers);
        p.routingLayers.clear();
        for (int l = firstRouting; l < layers; ++l) p.routingLayers.push_back(static_cast<uint32_t>(l));
        p.nKvHeads = p.nRouteHeads = static_cast<uint32_t>(kv);
        p.headDim = static_cast<uint32_t>(dim);
        p.maxShardBytes = 1ull << 30;
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        {
            auto w = BankWriter::create(dir, p, testing::makeTemplate(p));
            QVERIFY(w.ok());
            for (int id = 1; id <= docs; ++id) {
                testing::TestDoc d = testing::makeDoc(p, id, 1024);   // 16 whole chunks
                QVERIFY(w->append(d.input).isOk());
            }
            QVERIFY(w->commit().isOk());
        }
        auto b = Bank::open(dir, {.verifyData = true, .expectFingerprint = std::nullopt});
        QVERIFY(b.ok());
        const double tokens = static_cast<double>(b->nTokens());
        uint64_t tensorBytes = 0;
        for (size_t l = 0; l < p.routingLayers.size(); ++l)
            for (const ShardSpan& s : b->routingKeys(l)) tensorBytes += s.bytes.size();
        for (size_t row = 0; row < b->documents().size(); ++row)
            for (size_t l = 0; l < p.routingLayers.size(); ++l)
                tensorBytes += b->values(row, l).size() + (shared ? 0 : b->keys(row, l).size());
        const uint64_t shardBytes = fs::file_size(firstShard(dir));
        const double perToken = static_cast<double>(b->diskBytes()) / tokens;
        qInfo("%s: tensors %.1f B/token (spec arithmetic %.1f), shard file %.2f B/token, whole bank %.2f B/token "
              "over %.0f tokens (template %llu B fixed)",
              QTest::currentDataTag(), static_cast<double>(tensorBytes) / tokens, expected,
              static_cast<double>(shardBytes) / tokens, perToken, tokens,
              static_cast<unsigned long long>(fs::file_size(dir / "template.msab")));
        QCOMPARE(static_cast<double>(tensorBytes) / tokens, expected);
        QVERIFY(static_cast<double>(shardBytes) / tokens < expected * 1.001);
    }

    // The CLI: info/verify/compact, --json, exit codes (5 = corrupt).
    void cli() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        const BankParams p = testing::smallParams(DType::BF16);
        makeBank(dir, p, 5);
        {
            auto w = BankWriter::open(dir);
            QVERIFY(w.ok());
            QVERIFY(w->remove(2).isOk());
            QVERIFY(w->commit().isOk());
        }
        auto run = [](const QStringList& args, QByteArray* out) {
            QProcess pr;
            pr.start(MSA_BINARY, args);
            pr.waitForFinished(30000);
            *out = pr.readAllStandardOutput();
            return pr.exitCode();
        };
        const QString bank = QString::fromStdString(dir.string());
        QByteArray out;
        QCOMPARE(run({"bank", "info", "--bank", bank, "--json"}, &out), 0);
        QJsonObject o = QJsonDocument::fromJson(out).object();
        QCOMPARE(o["documents"].toInt(), 4);
        QCOMPARE(o["tombstones"].toInt(), 1);
        QCOMPARE(o["storage_dtype"].toString(), QString("bf16"));
        QCOMPARE(o["model_fingerprint"].toString(), QString::fromStdString(p.modelFingerprint));
        QCOMPARE(run({"bank", "verify", "--bank", bank, "--json"}, &out), 0);
        QVERIFY(QJsonDocument::fromJson(out).object()["ok"].toBool());
        QCOMPARE(run({"bank", "compact", "--bank", bank, "--json"}, &out), 0);
        QCOMPARE(QJsonDocument::fromJson(out).object()["removed"].toInt(), 1);
        QCOMPARE(run({"bank", "info", "--bank", bank, "--json"}, &out), 0);
        QCOMPARE(QJsonDocument::fromJson(out).object()["tombstones"].toInt(), 0);
        // Damage the values of the last layer: verify fails with the corrupt exit code and names it.
        const fs::path shard = firstShard(dir);
        const auto secs = sectionsOf(shard);
        flipByte(shard, secs.back().offset + 3);
        QCOMPARE(run({"bank", "verify", "--bank", bank, "--json"}, &out), msa::exitCodeFor(ErrorCode::Corrupt));
        o = QJsonDocument::fromJson(out).object();
        QCOMPARE(o["error"].toObject()["code"].toString(), QString("corrupt"));
        QVERIFY(o["error"].toObject()["message"].toString().contains("values [layer 2]"));
        QCOMPARE(run({"bank", "info", "--bank", tmp.filePath("none"), "--json"}, &out), msa::exitCodeFor(ErrorCode::NotFound));
    }
};

QTEST_GUILESS_MAIN(TestBank)
#include "tst_bank.moc"

// bank_archive.cpp: single-file bank export/import (layout: core/memory/README.md "Bank archive files").
#include "core/memory/bank_archive.h"

#include "core/memory/bank.h"
#include "core/util/checksum.h"

#include <nlohmann/json.hpp>
#include <zstd.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <set>

namespace msa::memory {
namespace fs = std::filesystem;

namespace {

constexpr char kEntryMagic[4] = {'M', 'S', 'A', 'E'};
constexpr char kFooterMagic[4] = {'M', 'S', 'A', 'F'};
constexpr char kTrailerMagic[8] = {'M', 'S', 'A', 'B', 'E', 'N', 'D', '\0'};
constexpr size_t kRecord = 64;                 // header, entry header, entry footer, trailer
constexpr uint32_t kMaxNameBytes = 255;

enum class EntryKind : uint32_t { Manifest = 1, BankFile = 2, Documents = 3 };
enum class Compression : uint32_t { None = 0, Zstd = 1 };

constexpr const char* kArchiveManifestName = "archive.json";
constexpr const char* kDocumentsName = "documents.jsonl";

template <typename T>
void putLe(std::byte* dst, T v) { std::memcpy(dst, &v, sizeof v); }   // x86-64/aarch64: little-endian
template <typename T>
T getLe(const std::byte* src) { T v; std::memcpy(&v, src, sizeof v); return v; }

// Seals a 64-byte record: bytes 56..63 = XXH3-64 of bytes 0..55.
void seal(std::byte* rec) { putLe<uint64_t>(rec + 56, xxh3_64(std::span<const std::byte>(rec, 56))); }
bool sealed(const std::byte* rec) { return getLe<uint64_t>(rec + 56) == xxh3_64(std::span<const std::byte>(rec, 56)); }

Status writeErrno(int err, const fs::path& file, std::string_view what) {
    if (err == EFBIG) return {ErrorCode::DiskFull, "writing " + quotedName(file.string()) + ": " + std::string(what) +
                                                       ": file size limit reached"};
    return statusFromErrno(err, "writing " + quotedName(file.string()) + ": " + std::string(what));
}

Status syncDir(const fs::path& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "opening folder " + quotedName(dir.string()));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return writeErrno(err, dir, "fsync of the folder");
    return {};
}

// A file written sequentially; hashes what it writes when asked to.
class OutFile {
public:
    ~OutFile() { if (m_fd >= 0) ::close(m_fd); }
    Status open(const fs::path& p, bool exclusive) {
        m_path = p;
        m_fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC), 0644);
        if (m_fd < 0) return writeErrno(errno, p, "create");
        return {};
    }
    Status write(std::span<const std::byte> data) {
        if (m_hash) m_hash->update(data);
        while (!data.empty()) {
            const ssize_t n = ::write(m_fd, data.data(), data.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return writeErrno(errno, m_path, "write");
            }
            if (n == 0) return writeErrno(ENOSPC, m_path, "write");
            data = data.subspan(static_cast<size_t>(n));
            m_pos += static_cast<uint64_t>(n);
        }
        return {};
    }
    Status syncAndClose() {
        if (::fsync(m_fd) != 0) return writeErrno(errno, m_path, "fsync");
        const int fd = m_fd;
        m_fd = -1;
        if (::close(fd) != 0) return writeErrno(errno, m_path, "close");
        return {};
    }
    void hashWith(Hasher* h) { m_hash = h; }
    uint64_t pos() const { return m_pos; }
    const fs::path& path() const { return m_path; }

private:
    int m_fd = -1;
    uint64_t m_pos = 0;
    fs::path m_path;
    Hasher* m_hash = nullptr;
};

// Removes a path (file or folder tree) when the guard is still armed at scope exit.
struct RemoveGuard {
    fs::path path;
    bool armed = true;
    ~RemoveGuard() {
        if (!armed || path.empty()) return;
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// ---- writer -------------------------------------------------------------------------------------

class EntryWriter {
public:
    EntryWriter(OutFile& out, Compression c, int level) : m_out(out), m_compression(c), m_level(level) {}
    ~EntryWriter() { if (m_cctx) ZSTD_freeCCtx(m_cctx); }

    Status begin(EntryKind kind, std::string_view name) {
        std::byte rec[kRecord] = {};
        std::memcpy(rec, kEntryMagic, 4);
        putLe<uint32_t>(rec + 4, static_cast<uint32_t>(kind));
        putLe<uint32_t>(rec + 8, static_cast<uint32_t>(m_compression));
        putLe<uint32_t>(rec + 12, static_cast<uint32_t>(name.size()));
        putLe<uint64_t>(rec + 16, xxh3_64(name));
        seal(rec);
        MSA_RETURN_IF_ERROR(m_out.write(rec));
        MSA_RETURN_IF_ERROR(m_out.write(std::as_bytes(std::span(name.data(), name.size()))));
        m_raw = std::make_unique<Hasher>();
        m_stored = std::make_unique<Hasher>();
        m_rawBytes = m_storedBytes = m_nBlocks = 0;
        m_buf.clear();
        return {};
    }
    // Buffers raw bytes; full blocks are written as they fill.
    Status add(std::span<const std::byte> data) {
        while (!data.empty()) {
            const size_t take = std::min(data.size(), size_t(kArchiveBlockBytes) - m_buf.size());
            m_buf.insert(m_buf.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
            data = data.subspan(take);
            if (m_buf.size() == kArchiveBlockBytes) MSA_RETURN_IF_ERROR(flushBlock());
        }
        return {};
    }
    Status end() {
        if (!m_buf.empty()) MSA_RETURN_IF_ERROR(flushBlock());
        std::byte term[8] = {};   // a block with stored length 0 ends the payload
        MSA_RETURN_IF_ERROR(storedWrite(term));
        std::byte rec[kRecord] = {};
        std::memcpy(rec, kFooterMagic, 4);
        putLe<uint32_t>(rec + 4, m_nBlocks);
        putLe<uint64_t>(rec + 8, m_rawBytes);
        putLe<uint64_t>(rec + 16, m_storedBytes);
        putLe<uint64_t>(rec + 24, m_raw->digest64());
        putLe<uint64_t>(rec + 32, m_stored->digest64());
        seal(rec);
        return m_out.write(rec);
    }
    uint64_t rawBytes() const { return m_rawBytes; }

private:
    Status storedWrite(std::span<const std::byte> b) {
        m_stored->update(b);
        m_storedBytes += b.size();
        return m_out.write(b);
    }
    Status flushBlock() {
        m_raw->update(m_buf);
        m_rawBytes += m_buf.size();
        std::span<const std::byte> stored = m_buf;
        if (m_compression == Compression::Zstd) {
            if (!m_cctx) m_cctx = ZSTD_createCCtx();
            if (!m_cctx) return {ErrorCode::OutOfMemory, "zstd: cannot create a compression context"};
            m_zbuf.resize(ZSTD_compressBound(kArchiveBlockBytes));
            const size_t n = ZSTD_compressCCtx(m_cctx, m_zbuf.data(), m_zbuf.size(), m_buf.data(), m_buf.size(), m_level);
            if (ZSTD_isError(n)) return {ErrorCode::Internal, std::string("zstd compression failed: ") + ZSTD_getErrorName(n)};
            stored = std::span<const std::byte>(m_zbuf.data(), n);
        }
        std::byte head[8];
        putLe<uint32_t>(head, static_cast<uint32_t>(stored.size()));
        putLe<uint32_t>(head + 4, static_cast<uint32_t>(m_buf.size()));
        MSA_RETURN_IF_ERROR(storedWrite(head));
        MSA_RETURN_IF_ERROR(storedWrite(stored));
        ++m_nBlocks;
        m_buf.clear();
        return {};
    }

    OutFile& m_out;
    Compression m_compression;
    int m_level;
    ZSTD_CCtx* m_cctx = nullptr;
    std::vector<std::byte> m_buf, m_zbuf;
    std::unique_ptr<Hasher> m_raw, m_stored;
    uint64_t m_rawBytes = 0, m_storedBytes = 0;
    uint32_t m_nBlocks = 0;
};

Result<std::string> readSmallFile(const fs::path& p) {
    const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "reading " + quotedName(p.string()));
    std::string out;
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return statusFromErrno(err, "reading " + quotedName(p.string()));
        }
        if (n == 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
}

struct SourceFile {
    std::string name;
    int fd = -1;
    uint64_t size = 0;
};

struct Snapshot {
    std::string manifestText;
    std::vector<SourceFile> files;   // template + shards (manifest.json is manifestText)
    ~Snapshot() { for (SourceFile& f : files) if (f.fd >= 0) ::close(f.fd); }
    Snapshot() = default;
    Snapshot(const Snapshot&) = delete;
    Snapshot& operator=(const Snapshot&) = delete;
};

// Opens every committed file of one generation. A writer may commit (or compact) meanwhile: the
// manifest is read again after opening the files and the snapshot retried when it changed. Open
// descriptors keep a shard's bytes readable even if a compaction unlinks it afterwards.
Status takeSnapshot(const fs::path& dir, Snapshot& snap) {
    for (int attempt = 0; attempt < 8; ++attempt) {
        for (SourceFile& f : snap.files) if (f.fd >= 0) ::close(f.fd);
        snap.files.clear();
        MSA_ASSIGN_OR_RETURN(snap.manifestText, readSmallFile(dir / "manifest.json"));
        nlohmann::json j = nlohmann::json::parse(snap.manifestText, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return corrupt(quotedName((dir / "manifest.json").string()) + ": not valid JSON");
        std::vector<std::string> names;
        try {
            names.push_back(j.at("template").at("file").get<std::string>());
            for (const auto& s : j.at("shards")) names.push_back(s.at("file").get<std::string>());
        } catch (const std::exception& e) {
            return corrupt(quotedName((dir / "manifest.json").string()) + ": " + e.what());
        }
        bool vanished = false;
        for (const std::string& n : names) {
            SourceFile f;
            f.name = n;
            f.fd = ::open((dir / n).c_str(), O_RDONLY | O_CLOEXEC);
            if (f.fd < 0) {
                if (errno == ENOENT) { vanished = true; break; }
                return statusFromErrno(errno, "opening " + quotedName((dir / n).string()));
            }
            struct stat st{};
            if (::fstat(f.fd, &st) != 0) {
                const int err = errno;
                ::close(f.fd);
                return statusFromErrno(err, "stat " + quotedName((dir / n).string()));
            }
            f.size = static_cast<uint64_t>(st.st_size);
            snap.files.push_back(f);
        }
        if (vanished) continue;
        MSA_ASSIGN_OR_RETURN(std::string again, readSmallFile(dir / "manifest.json"));
        if (again == snap.manifestText) return {};
    }
    return {ErrorCode::Busy, "the bank " + quotedName(dir.string()) + " kept changing while it was being exported; retry"};
}

Status checkCancel(const CancelToken* c) { return c && c->isCancelled() ? cancelled("export cancelled") : Status{}; }

Result<BankExportReport> exportImpl(const fs::path& bankDir, const fs::path& file, const BankExportOptions& o,
                                    OutFile& out) {
    const auto t0 = std::chrono::steady_clock::now();
    BankExportReport rep;
    // Validate the bank first (manifest, headers, tables): an archive of a damaged bank is useless.
    MSA_ASSIGN_OR_RETURN(Bank bank, Bank::open(bankDir));
    Snapshot snap;
    MSA_RETURN_IF_ERROR(takeSnapshot(bankDir, snap));
    const nlohmann::json bankManifest = nlohmann::json::parse(snap.manifestText, nullptr, false);
    if (bankManifest.value("generation", uint64_t{0}) != bank.generation()) {
        // A commit landed between open and snapshot: reopen at the snapshot's generation.
        MSA_ASSIGN_OR_RETURN(bank, Bank::open(bankDir));
        if (bankManifest.value("generation", uint64_t{0}) != bank.generation())
            return Status(ErrorCode::Busy, "the bank " + quotedName(bankDir.string()) + " changed during export; retry");
    }
    const BankParams& p = bank.params();
    std::vector<int64_t> liveIds;
    for (const DocumentEntry& d : bank.documents())
        if (d.live()) liveIds.push_back(d.id);

    const Compression comp = o.zstd ? Compression::Zstd : Compression::None;
    fs::path absBank = fs::absolute(bankDir).lexically_normal();
    if (absBank.filename().empty()) absBank = absBank.parent_path();   // "bank/"
    std::string bankName = absBank.filename().string();
    if (bankName.empty() || bankName == "." || bankName == "..") bankName = "bank";
    Hasher whole;
    out.hashWith(&whole);

    std::byte head[kRecord] = {};
    std::memcpy(head, kBankArchiveMagic, 8);
    putLe<uint32_t>(head + 8, kBankArchiveVersion);
    putLe<uint32_t>(head + 12, o.zstd ? 1u : 0u);
    seal(head);
    MSA_RETURN_IF_ERROR(out.write(head));

    uint64_t totalBytes = snap.manifestText.size();
    for (const SourceFile& f : snap.files) totalBytes += f.size;
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    files.push_back({{"name", "manifest.json"}, {"bytes", snap.manifestText.size()}});
    for (const SourceFile& f : snap.files) files.push_back({{"name", f.name}, {"bytes", f.size}});
    nlohmann::ordered_json m = {
        {"format", "msa-bank-archive"},
        {"format_version", kBankArchiveVersion},
        {"created_unix", std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count()},
        {"compression", o.zstd ? "zstd" : "none"},
        {"bank", {{"name", bankName},
                  {"format_version", kBankFormatVersion},
                  {"generation", bank.generation()},
                  {"model_fingerprint", p.modelFingerprint},
                  {"tokenizer_hash", p.tokenizerHash},
                  {"storage_dtype", std::string(model::dtypeName(p.storage))},
                  {"documents", bank.nDocuments()},
                  {"chunks", bank.nChunks()},
                  {"tokens", bank.nTokens()}}},
        {"files", files},
        {"documents", {{"included", static_cast<bool>(o.documents)}, {"origin", o.documentsOrigin}}},
    };
    const std::string manifestText = m.dump(1);

    ProgressMeter meter("export", snap.files.size() + 1, o.progress, std::chrono::milliseconds(100), totalBytes);
    EntryWriter entry(out, comp, std::clamp(o.zstdLevel, 1, 19));
    MSA_RETURN_IF_ERROR(entry.begin(EntryKind::Manifest, kArchiveManifestName));
    MSA_RETURN_IF_ERROR(entry.add(std::as_bytes(std::span(manifestText.data(), manifestText.size()))));
    MSA_RETURN_IF_ERROR(entry.end());

    MSA_RETURN_IF_ERROR(entry.begin(EntryKind::BankFile, "manifest.json"));
    MSA_RETURN_IF_ERROR(entry.add(std::as_bytes(std::span(snap.manifestText.data(), snap.manifestText.size()))));
    MSA_RETURN_IF_ERROR(entry.end());
    rep.rawBytes += snap.manifestText.size();
    meter.advance(1, snap.manifestText.size(), "manifest.json");

    std::vector<std::byte> buf(kArchiveBlockBytes);
    for (const SourceFile& f : snap.files) {
        MSA_RETURN_IF_ERROR(entry.begin(EntryKind::BankFile, f.name));
        uint64_t done = 0;
        while (done < f.size) {
            MSA_RETURN_IF_ERROR(checkCancel(o.cancel));
            const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), f.size - done));
            const ssize_t n = ::pread(f.fd, buf.data(), want, static_cast<off_t>(done));
            if (n < 0) {
                if (errno == EINTR) continue;
                return statusFromErrno(errno, "reading " + quotedName((bankDir / f.name).string()));
            }
            if (n == 0) return corrupt(quotedName((bankDir / f.name).string()) + ": shorter than when the export began");
            MSA_RETURN_IF_ERROR(entry.add(std::span<const std::byte>(buf.data(), static_cast<size_t>(n))));
            done += static_cast<uint64_t>(n);
            meter.advance(0, static_cast<uint64_t>(n), f.name);
        }
        MSA_RETURN_IF_ERROR(entry.end());
        rep.rawBytes += f.size;
        meter.advance(1, 0, f.name);
    }

    if (o.documents) {
        MSA_RETURN_IF_ERROR(entry.begin(EntryKind::Documents, kDocumentsName));
        uint64_t nLines = 0;
        DocumentLineSink emit = [&](std::string_view line) -> Status {
            MSA_RETURN_IF_ERROR(checkCancel(o.cancel));
            if (line.find('\n') != std::string_view::npos) return invalidArgument("a document record holds a raw newline");
            MSA_RETURN_IF_ERROR(entry.add(std::as_bytes(std::span(line.data(), line.size()))));
            const std::byte nl{'\n'};
            MSA_RETURN_IF_ERROR(entry.add(std::span<const std::byte>(&nl, 1)));
            ++nLines;
            return {};
        };
        MSA_RETURN_IF_ERROR(o.documents(liveIds, emit).withContext("exporting the memory documents"));
        MSA_RETURN_IF_ERROR(entry.end());
        rep.rawBytes += entry.rawBytes();
        rep.nDocumentRecords = nLines;
    }
    MSA_RETURN_IF_ERROR(checkCancel(o.cancel));

    const uint64_t nEntries = 2 + snap.files.size() + (o.documents ? 1 : 0);
    const uint64_t bodyHash = whole.digest64();
    std::byte trailer[kRecord] = {};
    std::memcpy(trailer, kTrailerMagic, 8);
    putLe<uint64_t>(trailer + 8, nEntries);
    putLe<uint64_t>(trailer + 16, out.pos() + kRecord);
    putLe<uint64_t>(trailer + 24, bodyHash);
    seal(trailer);
    out.hashWith(nullptr);
    MSA_RETURN_IF_ERROR(out.write(trailer));
    meter.finish();

    rep.file = file;
    rep.modelFingerprint = p.modelFingerprint;
    rep.generation = bank.generation();
    rep.nFiles = 1 + snap.files.size();
    rep.nDocuments = bank.nDocuments();
    rep.fileBytes = out.pos();
    rep.compressed = o.zstd;
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
}

// ---- reader -------------------------------------------------------------------------------------

class ArchiveReader {
public:
    ~ArchiveReader() {
        if (m_fd >= 0) ::close(m_fd);
        if (m_dctx) ZSTD_freeDCtx(m_dctx);
    }
    Status open(const fs::path& p) {
        m_path = p;
        m_fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (m_fd < 0) return statusFromErrno(errno, "opening " + quotedName(p.string()));
        struct stat st{};
        if (::fstat(m_fd, &st) != 0) return statusFromErrno(errno, "stat " + quotedName(p.string()));
        if (S_ISDIR(st.st_mode)) return invalidArgument(quotedName(p.string()) + " is a folder, not a bank archive");
        m_size = static_cast<uint64_t>(st.st_size);
        m_buf.resize(1u << 20);
        return {};
    }
    // Exactly n bytes, all of them fed to the whole-file hash.
    Status read(std::byte* dst, size_t n, std::string_view what) {
        if (n > m_size - std::min(m_size, m_pos))
            return corrupt(where() + "truncated: " + std::string(what) + " at offset " + std::to_string(m_pos) + " needs " +
                           std::to_string(n) + " bytes, the file has " + std::to_string(m_size - std::min(m_size, m_pos)) + " left");
        size_t got = 0;
        while (got < n) {
            const ssize_t r = ::pread(m_fd, dst + got, n - got, static_cast<off_t>(m_pos + got));
            if (r < 0) {
                if (errno == EINTR) continue;
                return statusFromErrno(errno, "reading " + quotedName(m_path.string()));
            }
            if (r == 0) return corrupt(where() + "truncated while reading " + std::string(what));
            got += static_cast<size_t>(r);
        }
        m_whole.update(std::span<const std::byte>(dst, n));
        m_pos += n;
        return {};
    }
    std::string where() const { return quotedName(m_path.string()) + ": "; }
    // Progress in archive bytes read so far.
    void reportProgress(ProgressMeter& meter, const std::string& current) {
        meter.advance(0, m_pos - m_reported, current);
        m_reported = m_pos;
    }
    uint64_t pos() const { return m_pos; }
    uint64_t size() const { return m_size; }
    uint64_t wholeHash() const { return m_whole.digest64(); }

    Status readHeader(bool* compressed) {
        std::byte h[kRecord];
        if (m_size < kRecord) return corrupt(where() + "too short to be a bank archive (" + std::to_string(m_size) + " bytes)");
        MSA_RETURN_IF_ERROR(read(h, kRecord, "the file header"));
        if (std::memcmp(h, kBankArchiveMagic, 8) != 0) return corrupt(where() + "not a memory bank archive (bad magic)");
        if (!sealed(h)) return corrupt(where() + "file header: checksum mismatch");
        const uint32_t version = getLe<uint32_t>(h + 8);
        if (version != kBankArchiveVersion)
            return unsupported(where() + "bank archive format version " + std::to_string(version) + " (this build reads " +
                               std::to_string(kBankArchiveVersion) + ")");
        const uint32_t flags = getLe<uint32_t>(h + 12);
        if ((flags & ~1u) != 0) return corrupt(where() + "file header: unknown flags");
        *compressed = (flags & 1u) != 0;
        return {};
    }

    struct Entry {
        EntryKind kind{};
        Compression compression{};
        std::string name;
        uint64_t index = 0;
    };
    // Reads the next entry header, or the trailer (returns false then, after checking it).
    Result<bool> next(Entry& e, uint64_t nEntriesSoFar) {
        std::byte h[kRecord];
        const uint64_t at = m_pos;
        const uint64_t hashBefore = m_whole.digest64();
        MSA_RETURN_IF_ERROR(read(h, kRecord, "an entry header or the trailer"));
        if (std::memcmp(h, kTrailerMagic, 8) == 0) {
            if (!sealed(h)) return corrupt(where() + "trailer: checksum mismatch");
            if (getLe<uint64_t>(h + 8) != nEntriesSoFar)
                return corrupt(where() + "trailer: " + std::to_string(getLe<uint64_t>(h + 8)) + " entries recorded, " +
                               std::to_string(nEntriesSoFar) + " found");
            if (getLe<uint64_t>(h + 16) != m_size || m_pos != m_size)
                return corrupt(where() + "trailer: file length " + std::to_string(getLe<uint64_t>(h + 16)) + " recorded, " +
                               std::to_string(m_size) + " found (bytes after the trailer or a cut)");
            if (getLe<uint64_t>(h + 24) != hashBefore) return corrupt(where() + "whole-file checksum mismatch");
            return false;
        }
        const std::string label = "entry " + std::to_string(nEntriesSoFar) + " at offset " + std::to_string(at);
        if (std::memcmp(h, kEntryMagic, 4) != 0) return corrupt(where() + label + ": bad entry magic");
        if (!sealed(h)) return corrupt(where() + label + ": entry header checksum mismatch");
        const uint32_t kind = getLe<uint32_t>(h + 4), comp = getLe<uint32_t>(h + 8), nameLen = getLe<uint32_t>(h + 12);
        if (kind < 1 || kind > 3) return corrupt(where() + label + ": unknown entry kind " + std::to_string(kind));
        if (comp > 1) return corrupt(where() + label + ": unknown compression " + std::to_string(comp));
        if (nameLen == 0 || nameLen > kMaxNameBytes) return corrupt(where() + label + ": bad name length");
        e.kind = static_cast<EntryKind>(kind);
        e.compression = static_cast<Compression>(comp);
        e.name.assign(nameLen, '\0');
        MSA_RETURN_IF_ERROR(read(reinterpret_cast<std::byte*>(e.name.data()), nameLen, label + " name"));
        if (xxh3_64(e.name) != getLe<uint64_t>(h + 16)) return corrupt(where() + label + ": name checksum mismatch");
        e.index = nEntriesSoFar;
        return true;
    }

    // Streams the entry's raw bytes to `sink` block by block, then checks its footer.
    Status payload(const Entry& e, const std::function<Status(std::span<const std::byte>)>& sink, const CancelToken* cancel,
                   ProgressMeter* meter, uint64_t* rawOut) {
        const std::string label = "entry " + quotedName(e.name);
        Hasher raw, stored;
        uint64_t rawBytes = 0, storedBytes = 0;
        uint32_t nBlocks = 0;
        std::vector<std::byte> in;
        for (;;) {
            if (cancel && cancel->isCancelled()) return cancelled("import cancelled");
            std::byte bh[8];
            MSA_RETURN_IF_ERROR(read(bh, 8, label + " block header"));
            stored.update(bh);
            storedBytes += 8;
            const uint32_t sLen = getLe<uint32_t>(bh), rLen = getLe<uint32_t>(bh + 4);
            if (sLen == 0) {
                if (rLen != 0) return corrupt(where() + label + ": bad end-of-payload marker");
                break;
            }
            if (rLen == 0 || rLen > kArchiveBlockBytes) return corrupt(where() + label + ": block of " + std::to_string(rLen) + " raw bytes");
            if (e.compression == Compression::None ? sLen != rLen : sLen > ZSTD_compressBound(kArchiveBlockBytes))
                return corrupt(where() + label + ": block of " + std::to_string(sLen) + " stored bytes");
            in.resize(sLen);
            MSA_RETURN_IF_ERROR(read(in.data(), sLen, label + " block"));
            stored.update(in);
            storedBytes += sLen;
            std::span<const std::byte> out = in;
            if (e.compression == Compression::Zstd) {
                if (!m_dctx) m_dctx = ZSTD_createDCtx();
                if (!m_dctx) return {ErrorCode::OutOfMemory, "zstd: cannot create a decompression context"};
                m_zbuf.resize(rLen);
                const size_t n = ZSTD_decompressDCtx(m_dctx, m_zbuf.data(), m_zbuf.size(), in.data(), in.size());
                if (ZSTD_isError(n) || n != rLen)
                    return corrupt(where() + label + ": block " + std::to_string(nBlocks) + " does not decompress (" +
                                   (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong length") + ")");
                out = std::span<const std::byte>(m_zbuf.data(), n);
            }
            raw.update(out);
            rawBytes += out.size();
            ++nBlocks;
            MSA_RETURN_IF_ERROR(sink(out));
            if (meter) reportProgress(*meter, e.name);
        }
        std::byte f[kRecord];
        MSA_RETURN_IF_ERROR(read(f, kRecord, label + " footer"));
        if (std::memcmp(f, kFooterMagic, 4) != 0) return corrupt(where() + label + ": bad footer magic");
        if (!sealed(f)) return corrupt(where() + label + ": footer checksum mismatch");
        if (getLe<uint32_t>(f + 4) != nBlocks || getLe<uint64_t>(f + 8) != rawBytes || getLe<uint64_t>(f + 16) != storedBytes)
            return corrupt(where() + label + ": block count or length differs from the footer");
        if (getLe<uint64_t>(f + 32) != stored.digest64()) return corrupt(where() + label + ": stored-bytes checksum mismatch");
        if (getLe<uint64_t>(f + 24) != raw.digest64()) return corrupt(where() + label + ": checksum mismatch");
        if (rawOut) *rawOut = rawBytes;
        return {};
    }

private:
    int m_fd = -1;
    fs::path m_path;
    uint64_t m_size = 0, m_pos = 0, m_reported = 0;
    Hasher m_whole;
    std::vector<std::byte> m_buf, m_zbuf;
    ZSTD_DCtx* m_dctx = nullptr;
};

struct ArchiveManifest {
    std::string text;
    std::string fingerprint, bankName;
    bool hasDocuments = false;
    std::vector<std::pair<std::string, uint64_t>> files;
};

bool safeBankFileName(const std::string& n) {
    static const std::regex shard("shard-[0-9]{8}\\.msab");
    return n == "manifest.json" || n == "template.msab" || std::regex_match(n, shard);
}

Result<ArchiveManifest> parseArchiveManifest(const std::string& text, const std::string& where) {
    ArchiveManifest m;
    m.text = text;
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return corrupt(where + "the archive manifest is not valid JSON");
    try {
        if (j.at("format").get<std::string>() != "msa-bank-archive") return corrupt(where + "not a bank archive manifest");
        const auto& b = j.at("bank");
        m.fingerprint = b.at("model_fingerprint").get<std::string>();
        m.bankName = b.at("name").get<std::string>();
        for (const auto& f : j.at("files")) {
            std::string n = f.at("name").get<std::string>();
            if (!safeBankFileName(n)) return corrupt(where + "the archive names an unexpected bank file " + quotedName(n));
            m.files.emplace_back(std::move(n), f.at("bytes").get<uint64_t>());
        }
        m.hasDocuments = j.at("documents").at("included").get<bool>();
    } catch (const std::exception& e) {
        return corrupt(where + "archive manifest: " + e.what());
    }
    if (m.bankName.empty() || m.bankName.find('/') != std::string::npos || m.bankName == "." || m.bankName == "..")
        m.bankName = "bank";
    return m;
}

// Reads the header and the first entry (the manifest) with all its checks.
Result<ArchiveManifest> readManifestEntry(ArchiveReader& r, bool* compressed) {
    MSA_RETURN_IF_ERROR(r.readHeader(compressed));
    ArchiveReader::Entry e;
    MSA_ASSIGN_OR_RETURN(bool more, r.next(e, 0));
    if (!more || e.kind != EntryKind::Manifest || e.name != kArchiveManifestName) return corrupt(r.where() + "the first entry is not the archive manifest");
    std::string text;
    MSA_RETURN_IF_ERROR(r.payload(e, [&](std::span<const std::byte> b) -> Status {
        if (text.size() + b.size() > (16u << 20)) return corrupt(r.where() + "archive manifest larger than 16 MiB");
        text.append(reinterpret_cast<const char*>(b.data()), b.size());
        return {};
    }, nullptr, nullptr, nullptr));
    return parseArchiveManifest(text, r.where());
}

std::string uniqueSuffix() {
    return std::to_string(::getpid()) + "-" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000007);
}

// Staging folders (and documents files) of imports that were killed: ".NAME.import-<pid>-<n>[...]"
// whose process is gone. Removed before a new import of NAME so they do not pile up.
void removeStaleStaging(const fs::path& parent, const std::string& name) {
    const std::string prefix = "." + name + ".import-";
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(parent, ec)) {
        const std::string n = e.path().filename().string();
        if (n.rfind(prefix, 0) != 0) continue;
        const long pid = std::strtol(n.c_str() + prefix.size(), nullptr, 10);
        if (pid <= 0 || pid == ::getpid()) continue;
        if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;   // still running (or not ours to judge)
        std::error_code rm;
        fs::remove_all(e.path(), rm);
    }
}

bool folderHasEntries(const fs::path& p) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return false;
    return !fs::is_directory(p, ec) || fs::directory_iterator(p, ec) != fs::directory_iterator();
}

}  // namespace

Result<BankExportReport> exportBankArchive(const fs::path& bankDir, const fs::path& file, const BankExportOptions& o) {
    std::error_code ec;
    if (fs::is_directory(file, ec)) return invalidArgument(quotedName(file.string()) + " is a folder; give a file name for the archive");
    const fs::path absFile = fs::absolute(file).lexically_normal();
    fs::path absBank = fs::absolute(bankDir).lexically_normal();
    if (absBank.filename().empty()) absBank = absBank.parent_path();
    if (absFile.parent_path() == absBank) return invalidArgument("the archive cannot be written inside the bank folder it exports");
    const fs::path tmp = file.string() + ".partial-" + std::to_string(::getpid());
    RemoveGuard guard{tmp};
    OutFile out;
    MSA_RETURN_IF_ERROR(out.open(tmp, false));
    try {
        MSA_ASSIGN_OR_RETURN(BankExportReport rep, exportImpl(bankDir, file, o, out));
        MSA_RETURN_IF_ERROR(out.syncAndClose());
        if (::rename(tmp.c_str(), file.c_str()) != 0) return writeErrno(errno, file, "rename from the temporary name");
        guard.armed = false;
        MSA_RETURN_IF_ERROR(syncDir(absFile.parent_path()));
        return rep;
    } catch (const std::exception& e) {
        return Status::fromException(e, "exporting " + quotedName(bankDir.string()));
    }
}

Result<BankArchiveInfo> readBankArchiveInfo(const fs::path& file) {
    ArchiveReader r;
    MSA_RETURN_IF_ERROR(r.open(file));
    BankArchiveInfo info;
    MSA_ASSIGN_OR_RETURN(ArchiveManifest m, readManifestEntry(r, &info.compressed));
    info.formatVersion = kBankArchiveVersion;
    info.modelFingerprint = m.fingerprint;
    info.bankName = m.bankName;
    info.manifestJson = m.text;
    info.hasDocuments = m.hasDocuments;
    return info;
}

Result<BankImportReport> importBankArchive(const fs::path& file, const fs::path& bankDir, const BankImportOptions& o) {
    try {
        const auto t0 = std::chrono::steady_clock::now();
        ArchiveReader r;
        MSA_RETURN_IF_ERROR(r.open(file));
        bool compressed = false;
        MSA_ASSIGN_OR_RETURN(ArchiveManifest m, readManifestEntry(r, &compressed));
        if (o.expectFingerprint && *o.expectFingerprint != m.fingerprint)
            return Status(ErrorCode::Mismatch, r.where() + "the bank was built with model fingerprint " + m.fingerprint +
                                                   ", but the given model's fingerprint is " + *o.expectFingerprint +
                                                   "; import it with the model it was built with");
        const bool exists = folderHasEntries(bankDir);
        if (exists && !o.force)
            return Status(ErrorCode::AlreadyExists, quotedName(bankDir.string()) +
                                                        " already exists and is not empty; pass --force to replace it");
        fs::path absBank = fs::absolute(bankDir).lexically_normal();
        if (absBank.filename().empty()) absBank = absBank.parent_path();   // "dir/"
        const fs::path parent = absBank.parent_path();
        std::error_code ec;
        int lockFd = -1;
        if (exists && fs::is_directory(absBank, ec)) {
            // Never swap a bank out from under a writer: take its lock for the exchange.
            const fs::path lockPath = absBank / "lock";
            lockFd = ::open(lockPath.c_str(), O_RDWR | O_CLOEXEC);
            if (lockFd >= 0 && ::flock(lockFd, LOCK_EX | LOCK_NB) != 0) {
                ::close(lockFd);
                return Status(ErrorCode::Busy, quotedName(absBank.string()) + " is being written by another process; "
                                                                            "not replaced");
            }
        }
        struct LockCloser { int fd; ~LockCloser() { if (fd >= 0) ::close(fd); } } lockCloser{lockFd};
        fs::create_directories(parent, ec);
        if (ec) return statusFromErrno(ec.value(), "creating " + quotedName(parent.string()));
        removeStaleStaging(parent, absBank.filename().string());
        const std::string suffix = uniqueSuffix();
        const fs::path staging = parent / ("." + absBank.filename().string() + ".import-" + suffix);
        const fs::path docsFile = parent / ("." + absBank.filename().string() + ".import-" + suffix + ".documents.jsonl");
        RemoveGuard stagingGuard{staging}, docsGuard{docsFile};
        if (!fs::create_directory(staging, ec) || ec) return statusFromErrno(ec ? ec.value() : EEXIST, "creating " + quotedName(staging.string()));

        ProgressMeter meter("import", m.files.size(), o.progress, std::chrono::milliseconds(100), r.size());
        std::set<std::string> seen;
        std::map<std::string, uint64_t> expected(m.files.begin(), m.files.end());
        uint64_t nEntries = 1, nLines = 0, rawTotal = 0;
        bool sawDocuments = false;
        for (;;) {
            ArchiveReader::Entry e;
            MSA_ASSIGN_OR_RETURN(bool more, r.next(e, nEntries));
            if (!more) break;
            ++nEntries;
            if (e.kind == EntryKind::Manifest) return corrupt(r.where() + "a second archive manifest");
            if (e.kind == EntryKind::Documents) {
                if (sawDocuments || e.name != kDocumentsName) return corrupt(r.where() + "unexpected documents entry " + quotedName(e.name));
                sawDocuments = true;
                OutFile out;
                MSA_RETURN_IF_ERROR(out.open(docsFile, true));
                uint64_t raw = 0;
                MSA_RETURN_IF_ERROR(r.payload(e, [&](std::span<const std::byte> b) -> Status {
                    nLines += static_cast<uint64_t>(std::count(b.begin(), b.end(), std::byte{'\n'}));
                    return out.write(b);
                }, o.cancel, &meter, &raw));
                MSA_RETURN_IF_ERROR(out.syncAndClose());
                rawTotal += raw;
                continue;
            }
            auto it = expected.find(e.name);
            if (it == expected.end() || seen.count(e.name)) return corrupt(r.where() + "entry " + quotedName(e.name) + " is not in the manifest's file list (or repeats)");
            seen.insert(e.name);
            OutFile out;
            MSA_RETURN_IF_ERROR(out.open(staging / e.name, true));
            uint64_t raw = 0;
            MSA_RETURN_IF_ERROR(r.payload(e, [&](std::span<const std::byte> b) -> Status {
                if (out.pos() + b.size() > it->second) return corrupt(r.where() + "entry " + quotedName(e.name) + " is longer than the manifest says");
                return out.write(b);
            }, o.cancel, &meter, &raw));
            if (raw != it->second) return corrupt(r.where() + "entry " + quotedName(e.name) + " is shorter than the manifest says");
            MSA_RETURN_IF_ERROR(out.syncAndClose());
            rawTotal += raw;
            meter.advance(1, 0, e.name);
        }
        if (seen.size() != expected.size()) return corrupt(r.where() + "bank files listed in the manifest are missing");
        if (sawDocuments != m.hasDocuments) return corrupt(r.where() + "the documents entry does not match the manifest");
        {
            // The empty lock file a writer creates: restored so the folder equals the exported one.
            OutFile lock;
            MSA_RETURN_IF_ERROR(lock.open(staging / "lock", true));
            MSA_RETURN_IF_ERROR(lock.syncAndClose());
        }
        MSA_RETURN_IF_ERROR(syncDir(staging));
        // The restored bank passes its own full verification (every section checksum) before use.
        OpenOptions bo;
        bo.verifyData = true;
        bo.expectFingerprint = m.fingerprint;
        auto restored = Bank::open(staging, bo);
        if (!restored) return corrupt(r.where() + "the restored bank fails verification: " + restored.status().message());
        BankImportReport rep;
        rep.nDocuments = restored->nDocuments();
        if (sawDocuments && o.documents) {
            MSA_RETURN_IF_ERROR(o.documents(docsFile, nLines).withContext("importing the memory documents"));
            rep.nDocumentRecords = nLines;
        }
        if (o.cancel && o.cancel->isCancelled()) return cancelled("import cancelled");
        if (exists) {
            // Swap the new folder in atomically; the old bank ends up at the staging name and is removed.
            if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, absBank.c_str(), RENAME_EXCHANGE) != 0)
                return writeErrno(errno, absBank, "exchange with the imported bank");
            rep.replaced = true;
        } else {
            fs::remove(absBank, ec);   // an empty folder, if any
            if (::rename(staging.c_str(), absBank.c_str()) != 0) return writeErrno(errno, absBank, "rename into place");
            stagingGuard.armed = false;
        }
        MSA_RETURN_IF_ERROR(syncDir(parent));
        r.reportProgress(meter, {});
        meter.finish();
        rep.bank = bankDir;
        rep.modelFingerprint = m.fingerprint;
        rep.nFiles = m.files.size();
        rep.rawBytes = rawTotal;
        rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return rep;
    } catch (const std::exception& e) {
        return Status::fromException(e, "importing " + quotedName(file.string()));
    }
}

}  // namespace msa::memory

// bank_archive.h: a memory bank as ONE self-contained file (issue 5 item 7; the byte layout is in
// core/memory/README.md "Bank archive files").
//
// exportBankArchive() streams the committed files of a bank folder (manifest.json, template.msab,
// every shard named by the manifest) bit for bit into one archive, optionally zstd-compressed in
// independent blocks of at most 1 MiB, plus an archive manifest (model fingerprint, bank counts, file
// list) and, when the caller supplies them, the memory documents' text and metadata as JSON lines
// (the catalog rows the bank refers to; core/jobs/bank_files.h gets them from a catalog, so this
// module does not depend on core/catalog). Every entry carries XXH3-64 checksums of its raw and its
// stored bytes, the trailer one of the whole file. Memory is bounded (one block) whatever the bank's
// size. The archive is written under a temporary name (FILE.partial-<pid>), fsync'ed and renamed
// over FILE only when complete, so a killed or cancelled export never leaves a FILE that looks done.
//
// importBankArchive() reads the archive once, start to end: it checks the model fingerprint in the
// manifest entry against ImportOptions::expectFingerprint before writing anything (Mismatch naming
// both fingerprints), extracts the bank files into a hidden staging folder beside the target,
// verifies every entry checksum, the whole-file checksum and then the restored bank itself
// (Bank::open with verifyData), hands the memory documents to the caller's sink, and only then moves
// the folder into place (atomically swapping with an existing bank when `force`). Any failure removes
// the staging folder: nothing half-imported is ever visible (a killed import's staging folder is
// removed by the next import of the same name once its process is gone).
//
// Ownership/threads: free functions; each call runs on the caller's thread and owns what it opens.
// The progress callback is called on that thread; the cancel token may be set from any thread.
//
// Usage:
//     BankExportOptions o; o.zstd = true; o.cancel = &token;
//     MSA_ASSIGN_OR_RETURN(BankExportReport r, exportBankArchive("bank", "bank.msabank", o));
//     BankImportOptions i; i.expectFingerprint = model->fingerprint().hex();
//     MSA_ASSIGN_OR_RETURN(BankImportReport r2, importBankArchive("bank.msabank", "restored", i));
//
// Failure codes:
//   export: NotFound (no bank), Corrupt (the bank's own checks), Unsupported, InvalidArgument (FILE is
//           a folder or inside the bank), Cancelled, DiskFull, IoError, PermissionDenied, and
//           whatever the document source returns.
//   import / readBankArchiveInfo: NotFound (no FILE), Corrupt (bad magic, truncated, any checksum,
//           length or name that contradicts the format, or a restored bank that fails its own
//           verification; the message names the entry), Unsupported (archive format version),
//           Mismatch (model fingerprint != expectFingerprint), AlreadyExists (target holds a bank or
//           other files and !force), Busy (force over a bank whose writer lock is held), Cancelled, DiskFull, IoError, PermissionDenied, and whatever
//           the document sink returns.
#pragma once

#include "core/util/progress.h"
#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace msa::memory {

inline constexpr uint32_t kBankArchiveVersion = 1;
inline constexpr char kBankArchiveMagic[8] = {'M', 'S', 'A', 'B', 'A', 'R', 'C', 'H'};
inline constexpr uint32_t kArchiveBlockBytes = 1u << 20;   // raw bytes per block (bounded memory)

// Writes one JSON line (no newline inside) into the documents entry.
using DocumentLineSink = std::function<Status(std::string_view jsonLine)>;
// Produces the records of the given live memory document ids (bank order) through `emit`.
using DocumentSource = std::function<Status(std::span<const int64_t> ids, const DocumentLineSink& emit)>;

struct BankExportOptions {
    bool zstd = false;
    int zstdLevel = 3;                       // 1..19; 3 compresses ~hundreds of MB/s per core
    DocumentSource documents;                // empty: the archive holds no documents entry
    std::string documentsOrigin;             // recorded in the manifest (e.g. the catalog path)
    const CancelToken* cancel = nullptr;
    ProgressFn progress;                     // stage "export", units = files, bytes = raw bytes
};

struct BankExportReport {
    std::filesystem::path file;
    std::string modelFingerprint;
    uint64_t generation = 0;
    uint64_t nFiles = 0;                     // bank files stored
    uint64_t nDocuments = 0;                 // live documents in the bank
    uint64_t nDocumentRecords = 0;           // JSON lines in the documents entry
    uint64_t rawBytes = 0;                   // bank files + documents, uncompressed
    uint64_t fileBytes = 0;                  // the archive
    bool compressed = false;
    double seconds = 0;
};

Result<BankExportReport> exportBankArchive(const std::filesystem::path& bankDir, const std::filesystem::path& file,
                                           const BankExportOptions& options = {});

// Reads the header and the manifest entry only (fast; "which model is this for").
struct BankArchiveInfo {
    uint32_t formatVersion = 0;
    bool compressed = false;
    std::string modelFingerprint;
    std::string bankName;                    // the exported folder's name
    std::string manifestJson;                // the manifest entry's text
    bool hasDocuments = false;
};
Result<BankArchiveInfo> readBankArchiveInfo(const std::filesystem::path& file);

// Receives the extracted documents entry (a JSON-lines file) after every checksum has passed and
// before the bank is moved into place. A failure aborts the import (the bank is not installed).
using DocumentImportSink = std::function<Status(const std::filesystem::path& documentsJsonl, uint64_t nLines)>;

struct BankImportOptions {
    std::optional<std::string> expectFingerprint;   // Mismatch when the archive is for another model
    bool force = false;                             // replace an existing bank at the target
    DocumentImportSink documents;                   // empty: documents in the archive are skipped
    const CancelToken* cancel = nullptr;
    ProgressFn progress;                            // stage "import", bytes = archive bytes read
};

struct BankImportReport {
    std::filesystem::path bank;
    std::string modelFingerprint;
    uint64_t nFiles = 0;
    uint64_t nDocuments = 0;                 // live documents of the restored bank
    uint64_t nDocumentRecords = 0;           // lines handed to the sink (0 when none)
    uint64_t rawBytes = 0;
    bool replaced = false;                   // an existing bank was swapped out (force)
    double seconds = 0;
};

Result<BankImportReport> importBankArchive(const std::filesystem::path& file, const std::filesystem::path& bankDir,
                                           const BankImportOptions& options = {});

}  // namespace msa::memory

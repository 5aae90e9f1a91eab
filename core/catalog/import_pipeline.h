// import_pipeline.h: importing files and folders into a catalog collection, incrementally and
// crash-safely (DESIGN.md §3 step 1; the design is described in core/catalog/README.md).
//
// Shape: the calling thread walks the given paths (sorted, directory symlinks not followed, VCS
// folders skipped), decides per file from the previous state whether it is unchanged (same size
// and mtime), and hands the others to a small ThreadPool that reads, hashes (XXH3-128), detects,
// extracts and segments them. The calling thread is the ONE writer: it writes results in walk order
// (a bounded reorder buffer keeps memory flat and ids deterministic) and commits a transaction per
// batch, so `kill -9` at any moment leaves the catalog consistent (SQLite WAL atomicity) and the
// next run skips everything committed before (same size/mtime) and resumes.
//
// Ownership: importPaths() borrows the Catalog for its duration; the Catalog must not be used by
// another thread meanwhile. Thread affinity: call from one thread; the progress callback runs on
// that thread. An advisory lock file (<catalog>.import-lock) keeps two processes from importing
// into one catalog at once.
//
// Usage:
//     ImportRequest req; req.collection = "notes"; req.paths = {"/home/me/notes"};
//     MSA_ASSIGN_OR_RETURN(ImportReport rep, importPaths(catalog, req, onProgress, &cancel));
//
// Failure codes: Busy (another import holds the lock), InvalidArgument (no paths / bad collection
// name), and the catalog's own failures (Corrupt, DiskFull, IoError, ...). A file that cannot be
// imported is NOT a failure of the call: it is a row in the report. Cancellation returns a report
// with cancelled = true (work finished before the cancel is committed).
#pragma once

#include "core/catalog/catalog.h"
#include "core/catalog/importer.h"
#include "core/util/progress.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace msa::catalog {

struct ImportRequest {
    std::string collection = "default";
    std::vector<std::filesystem::path> paths;
    ImportLimits limits;
    int nThreads = 2;
    int batchFiles = 256;        // commit at least every this many written files...
    int batchMillis = 500;       // ...or this often, whichever comes first
    uint64_t batchBytes = 64ull << 20;   // ...or after this much document text
};

// One line of the report for a file that was not simply unchanged.
struct FileReport {
    std::string path;
    std::string outcome;     // imported | updated | touched | skipped | failed | deleted
    std::string importer;
    std::string errorCode;   // errorCodeName() for skipped/failed
    std::string reason;
    int nDocuments = 0;
};

struct ImportReport {
    int64_t runId = 0;
    std::string collection;
    uint64_t nSeen = 0, nImported = 0, nUpdated = 0, nUnchanged = 0, nTouched = 0, nSkipped = 0, nFailed = 0,
             nDeleted = 0;
    uint64_t nDocuments = 0;         // documents extracted from the files written in this run
    uint64_t nNewDocuments = 0;      // of which new content (not already in the catalog)
    uint64_t nMemoryDocuments = 0;   // memory documents created
    uint64_t nBytes = 0;             // bytes of the files read in this run
    uint64_t nBytesSeen = 0;         // bytes of all files seen
    double seconds = 0;
    bool cancelled = false;
    // Skipped, failed and deleted files, plus imported files with warnings (imported files without
    // warnings are listed in the catalog's import_run_files, not kept here: memory stays flat).
    std::vector<FileReport> files;
};

using ImportProgressFn = std::function<void(const Progress& progress, uint64_t nDocuments)>;

Result<ImportReport> importPaths(Catalog& catalog, const ImportRequest& request, const ImportProgressFn& progress,
                                 const CancelToken* cancel);

nlohmann::json toJson(const ImportReport& report);

}  // namespace msa::catalog

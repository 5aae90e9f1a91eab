// bench_import.h: `msa bench import` — import throughput on a generated archive of small mixed files
// (plain text, Markdown with front matter, e-mails, HTML pages, source code, WhatsApp chats), written
// to a temporary folder, imported into a fresh catalog with the real pipeline, then re-imported
// unchanged. Reports files/s, MB/s and the process's peak resident memory after each size, so that
// "memory flat in the number of files" is visible (the sizes run smallest first).
//
// Peer: the same files read and hashed (XXH3) by a plain loop, the floor any importer pays for I/O,
// measured in the same process.
// Thread affinity: runs on the calling thread; the pipeline uses its own pool.
// Failure codes: IoError/DiskFull writing the files, and those of Catalog::open / importPaths.
#pragma once

#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

struct ImportBenchOptions {
    std::vector<size_t> sizes = {2000, 10000};   // files per generated archive
    int nThreads = 2;
    std::filesystem::path workDir;               // empty: a folder under the system temp dir
    bool keep = false;                           // keep the generated files and catalogs
};

struct ImportBenchRun {
    size_t nFiles = 0;
    uint64_t nBytes = 0;
    uint64_t nDocuments = 0;
    uint64_t nFailed = 0;
    double importSeconds = 0;
    double reimportSeconds = 0;       // everything unchanged
    double hashOnlySeconds = 0;       // the peer: read + hash every file
    double peakRssMiB = 0;            // process peak after this run
    double filesPerSecond() const { return importSeconds > 0 ? static_cast<double>(nFiles) / importSeconds : 0; }
    double megabytesPerSecond() const { return importSeconds > 0 ? static_cast<double>(nBytes) / 1e6 / importSeconds : 0; }
};

Result<std::vector<ImportBenchRun>> runImportBench(const ImportBenchOptions& options);
nlohmann::json toJson(const std::vector<ImportBenchRun>& runs);
std::string toText(const std::vector<ImportBenchRun>& runs);

}  // namespace msa::jobs

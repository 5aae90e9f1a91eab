// bank_files.h: `msa bank export` / `msa bank import` as jobs: a bank archive
// (core/memory/bank_archive.h) together with the catalog rows its documents come from, so a bank
// can be carried to another machine and used there with its text, titles and sources.
//
// The documents entry is JSON lines, one catalog document per line (core/memory/README.md "Bank
// archive files" lists the fields); the catalog side is Catalog::portableDocuments and
// Catalog::addPortableDocuments, batched so memory stays bounded.
//
// Ownership/threads: each call runs on the caller's thread and opens and closes what it needs.
//
// Usage:
//     jobs::BankExportRequest r; r.bank = "bank"; r.file = "bank.msabank"; r.catalog = "a.msacat"; r.zstd = true;
//     MSA_ASSIGN_OR_RETURN(jobs::BankExportResult e, jobs::exportBank(r));
//
// Failure codes: those of exportBankArchive/importBankArchive and of the catalog; NotFound (model,
// catalog), Mismatch (model fingerprint, memory document ids taken by other text in the catalog),
// InvalidArgument (a documents line that is not a valid record: Corrupt when it came from an archive).
#pragma once

#include "core/catalog/catalog.h"
#include "core/memory/bank_archive.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace msa::jobs {

// The fingerprint of a model path (GGUF file or HF folder), or the argument itself when it is
// 32 hex digits and no such path exists (so scripts can pass a fingerprint from `msa bank info`).
Result<std::string> modelFingerprintOf(const std::string& modelOrFingerprint);

struct BankExportRequest {
    std::filesystem::path bank, file;
    std::optional<std::filesystem::path> catalog;   // include the memory documents' text and metadata
    bool zstd = false;
    const CancelToken* cancel = nullptr;
    ProgressFn progress;
};
struct BankExportResult {
    memory::BankExportReport archive;
    uint64_t nMissingDocuments = 0;                 // live bank documents the catalog does not hold
};
Result<BankExportResult> exportBank(const BankExportRequest& request);

struct BankImportRequest {
    std::filesystem::path file;
    std::optional<std::filesystem::path> bank;      // default: ./<the exported folder's name>
    std::optional<std::filesystem::path> catalog;   // restore the memory documents into this catalog
    std::optional<std::string> model;               // path or fingerprint; Mismatch when different
    bool force = false;
    const CancelToken* cancel = nullptr;
    ProgressFn progress;
};
struct BankImportResult {
    memory::BankImportReport archive;
    catalog::PortableImportReport documents;
    bool documentsInArchive = false;
};
Result<BankImportResult> importBank(const BankImportRequest& request);

// One documents line <-> one portable document.
nlohmann::json portableToJson(const catalog::PortableDocument& d);
Result<catalog::PortableDocument> portableFromJson(const nlohmann::json& j);

nlohmann::json toJson(const BankExportResult& r);
nlohmann::json toJson(const BankImportResult& r);

}  // namespace msa::jobs

// catalog.h: the SQLite catalog of imported personal archives (DESIGN.md §3 steps 1-2).
//
// A catalog is one SQLite file (WAL mode, foreign keys on, 5 s busy timeout) holding collections,
// the source files seen by imports, the extracted documents (deduplicated by content hash and linked
// to every path holding them), the memory documents (routing units) each document is segmented
// into, the import runs with a per-file report, and an FTS5 index for BM25 search. The schema is
// described in core/catalog/README.md and created/upgraded by schema.h's migrations on open().
//
// Ownership: a Catalog owns one connection; it is move-only. Thread affinity: one thread at a time
// (the import pipeline's writer is the caller's thread; the GUI gives the catalog to one worker).
// Several processes may open the same file (WAL: readers never block the one writer).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(msa::catalog::Catalog cat, msa::catalog::Catalog::open("archive.msacat"));
//     msa::catalog::SearchQuery q; q.match = "pemberley AND darcy"; q.limit = 10;
//     MSA_ASSIGN_OR_RETURN(auto hits, cat.search(q));
//
// Failure codes (all functions): NotFound (no such catalog/collection/document), Corrupt (not a
// SQLite file or damaged), Unsupported (schema newer than this build), Busy (locked by another
// writer beyond the timeout), PermissionDenied, DiskFull, IoError, InvalidArgument (bad FTS5 query
// or filter), Internal.
#pragma once

#include "core/catalog/sqlite_db.h"
#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace msa::catalog {

struct OpenOptions {
    bool readOnly = false;   // no migration; fails with Unsupported/NotFound when not at the latest schema
    bool create = true;      // create the file when missing (ignored when readOnly)
};

struct CollectionInfo {
    int64_t id = 0;
    std::string name;
    std::vector<std::string> roots;
    std::string settingsJson;
    int64_t nFiles = 0;       // source files not marked deleted
    int64_t nDocuments = 0;
};

struct CatalogStats {
    int schemaVersion = 0;
    int64_t nCollections = 0;
    int64_t nSourceFiles = 0;        // all statuses
    int64_t nImported = 0, nSkipped = 0, nFailed = 0, nDeleted = 0;
    int64_t nDocuments = 0;
    int64_t nMemoryDocuments = 0;
    int64_t nTextBytes = 0;
    int64_t nTokenEstimate = 0;
    int64_t nImportRuns = 0;
    std::vector<std::pair<std::string, int64_t>> documentsByKind;
    int64_t fileBytes = 0;           // size of the database file (main + WAL)
};

struct SearchQuery {
    std::string match;                       // FTS5 query syntax: words, "phrases", AND/OR/NOT, prefix*, NEAR()
    std::optional<std::string> collection;   // collection name
    std::optional<std::string> kind;         // document kind ('email', 'chat', 'pdf', ...)
    std::optional<int64_t> fromUnix;         // inclusive, documents.date_unix
    std::optional<int64_t> toUnix;           // exclusive
    std::optional<std::string> participant;  // substring of author or any participant (case-insensitive)
    int limit = 20;
    int offset = 0;
    std::string highlightOpen = "[";
    std::string highlightClose = "]";
    int snippetTokens = 16;
};

struct SearchHit {
    int64_t documentId = 0;
    std::string kind;
    std::string title;
    std::string author;
    std::vector<std::string> participants;
    std::optional<int64_t> dateUnix;
    std::string snippet;        // with the highlight markers around matched terms
    double score = 0;           // BM25 (FTS5 sign flipped: higher is better)
    std::string path;           // one source path (the first linked), for display
    std::string locator;        // where inside that file
    std::vector<int64_t> memoryDocumentIds;
};

struct MemoryDocumentInfo {
    int64_t id = 0;
    int segmentIndex = 0;
    std::string segmentKind;
    int64_t spanStart = 0, spanEnd = 0;
    std::string label;
    int64_t tokenEstimate = 0;
    std::optional<int64_t> tokenCount;
};

struct DocumentInfo {
    int64_t id = 0;
    std::string contentHash;
    std::string kind;
    std::string title;
    std::string author;
    std::vector<std::string> participants;
    std::optional<int64_t> dateUnix;
    std::string metadataJson;
    std::string text;
    std::vector<std::pair<std::string, std::string>> sources;   // (path, locator)
    std::vector<MemoryDocumentInfo> segments;
};

// One memory document (the routing unit) with its text: the byte span of its catalog document.
struct MemoryDocumentText {
    int64_t id = 0;
    int64_t documentId = 0;
    std::string kind;
    std::string title;
    std::string label;
    std::string text;
};

struct SourceFileInfo {
    int64_t id = 0;
    std::string collection;
    std::string path;
    int64_t size = 0;
    int64_t mtimeNs = 0;
    std::string contentHash;
    std::string importer;
    std::string status;
    std::string errorCode;
    std::string error;
};

// Result of PRAGMA integrity_check + foreign_key_check + the catalog's own invariants.
struct IntegrityReport {
    bool ok = true;
    std::vector<std::string> problems;
};

class Catalog {
public:
    Catalog() = default;
    Catalog(Catalog&&) noexcept = default;
    Catalog& operator=(Catalog&&) noexcept = default;

    // Opens or creates a catalog and migrates it to the latest schema.
    static Result<Catalog> open(const std::filesystem::path& path, OpenOptions options = {});

    int schemaVersion() const { return m_schemaVersion; }
    int foundSchemaVersion() const { return m_foundVersion; }   // before migration (0: new file)
    const std::filesystem::path& path() const { return m_db.path(); }

    // The collection's id, created when missing. Adds `root` to its roots when given.
    Result<int64_t> ensureCollection(const std::string& name, const std::string& root = {});
    Result<std::optional<int64_t>> findCollection(const std::string& name) const;
    Result<std::vector<CollectionInfo>> collections() const;

    Result<CatalogStats> stats() const;
    Result<std::vector<SearchHit>> search(const SearchQuery& query) const;
    Result<DocumentInfo> document(int64_t documentId) const;
    // A memory document by its stable id (the [i] of the MSA protocol); NotFound when absent.
    Result<MemoryDocumentText> memoryDocument(int64_t memoryDocumentId) const;
    // Every memory document of a collection with its text, by ascending id (one query).
    Result<std::vector<MemoryDocumentText>> memoryDocuments(const std::string& collection) const;
    // Ids of the memory documents whose catalog document passes the filter fields of `filter`
    // (collection, kind, date range, participant; `match`, limit and offset are ignored): the
    // candidate set a user restricts routing to. Ascending ids.
    Result<std::vector<int64_t>> memoryDocumentIds(const SearchQuery& filter) const;
    // Lists documents (newest first by id) of an optional collection, without their text.
    Result<std::vector<DocumentInfo>> listDocuments(const std::optional<std::string>& collection, int limit,
                                                    int offset) const;
    Result<std::vector<SourceFileInfo>> sourceFiles(const std::optional<std::string>& collection) const;

    // On a read-only catalog the FTS5 index check (which FTS5 runs as a write command) is left out.
    Result<IntegrityReport> checkIntegrity() const;

    // For the import pipeline (same module); the connection stays owned by this Catalog.
    Db& db() { return m_db; }
    const Db& db() const { return m_db; }

private:
    Db m_db;
    bool m_readOnly = false;
    int m_schemaVersion = 0;
    int m_foundVersion = 0;
};

}  // namespace msa::catalog

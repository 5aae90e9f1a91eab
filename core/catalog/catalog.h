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
#include <span>
#include <string>
#include <vector>

namespace msa::catalog {

struct OpenOptions {
    bool readOnly = false;   // no migration: an older schema is read as it is (schemaVersion() tells),
                             // a newer one or a missing file fails (Unsupported / NotFound)
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

// A catalog document as a bank archive carries it (core/memory/bank_archive.h): its text and
// metadata, where it came from (collection, path, locator), and the memory documents (segments) a
// bank refers to, under their ids, so the bank can be used with another catalog.
struct PortableSource {
    std::string collection;
    std::string path;
    std::string locator;
};
struct PortableDocument {
    DocumentInfo document;                 // contentHash, kind, title, author, participants, dateUnix,
                                           // metadataJson, text; `segments` = the exported memory documents
    std::vector<PortableSource> sources;
};
struct PortableImportReport {
    int64_t nDocumentsAdded = 0;           // new catalog documents
    int64_t nMemoryDocumentsAdded = 0;
    int64_t nMemoryDocumentsPresent = 0;   // already there with the same document and span
};

// One question asked of a memory bank, its answer and how it was reached (schema v2).
struct ConversationInfo {
    int64_t id = 0;
    std::string title;
    int64_t createdAt = 0;                 // Unix seconds
    std::string bankPath;
    std::string modelFingerprint;
    int64_t nTurns = 0;                    // filled by conversations()
};
struct ChatTurn {
    int64_t id = 0;                        // assigned by addChatTurn()
    int64_t conversationId = 0;
    int64_t ordinal = 0;                   // assigned by addChatTurn(): 0, 1, 2, ...
    std::string question;
    std::string answer;
    std::vector<int64_t> citations;        // memory document ids, in citation order
    std::string traceJson = "{}";          // memory::toJson(RoutingTrace).dump(); stored as given
    std::string method;
    int64_t createdAt = 0;                 // 0: now
    double seconds = 0;
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

    // The documents behind the given memory document ids, grouped by catalog document (document order,
    // segments by id). Ids the catalog does not hold are skipped (the caller compares counts).
    Result<std::vector<PortableDocument>> portableDocuments(std::span<const int64_t> memoryDocumentIds) const;
    // Adds documents exported from another catalog in one transaction, keeping their memory
    // document ids (banks refer to them). A document already present (same content hash) is reused;
    // a memory document id already present is accepted when it is the same segment of the same
    // document, otherwise Mismatch (the bank's ids would point at other text here; import into a
    // new catalog instead). Collections and source file rows are created as needed (status
    // 'imported', size/mtime 0: a later `msa import` of the real files refreshes them).
    // Failure codes: Mismatch, InvalidArgument (a segment outside its text), Busy, DiskFull, IoError.
    Result<PortableImportReport> addPortableDocuments(const std::vector<PortableDocument>& documents);

    // Chat history (schema v2). Failure codes: InvalidArgument (empty question, bad JSON text),
    // NotFound (no such conversation/turn), Unsupported (a read-only open of a version 1 catalog:
    // open it read-write once to upgrade), Busy, DiskFull, IoError, Internal.
    Result<int64_t> createConversation(const std::string& title, const std::string& bankPath,
                                       const std::string& modelFingerprint);
    // Appends a turn to its conversation (ordinal = number of turns so far); returns the turn id.
    Result<int64_t> addChatTurn(const ChatTurn& turn);
    Result<std::vector<ConversationInfo>> conversations() const;   // newest first
    Result<ConversationInfo> conversation(int64_t conversationId) const;
    Result<std::vector<ChatTurn>> turns(int64_t conversationId) const;   // by ordinal
    Result<ChatTurn> turn(int64_t turnId) const;
    Status deleteConversation(int64_t conversationId);                  // with its turns

    // On a read-only catalog the FTS5 index check (which FTS5 runs as a write command) is left out.
    Result<IntegrityReport> checkIntegrity() const;

    // For the import pipeline (same module); the connection stays owned by this Catalog.
    Db& db() { return m_db; }
    const Db& db() const { return m_db; }

private:
    Status requireSchema(int version, std::string_view what) const;

    Db m_db;
    bool m_readOnly = false;
    int m_schemaVersion = 0;
    int m_foundVersion = 0;
};

}  // namespace msa::catalog

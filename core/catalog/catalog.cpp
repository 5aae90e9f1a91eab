#include "core/catalog/catalog.h"

#include "core/catalog/schema.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <system_error>

namespace msa::catalog {
namespace {

int64_t nowUnix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::vector<std::string> parseStringArray(const std::string& json) {
    std::vector<std::string> out;
    nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
    if (!j.is_array()) return out;
    for (const auto& v : j)
        if (v.is_string()) out.push_back(v.get<std::string>());
    return out;
}

Result<int64_t> scalar(const Db& db, std::string_view sql) {
    MSA_ASSIGN_OR_RETURN(Stmt s, db.prepare(sql));
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    return row ? s.int64(0) : 0;
}

}  // namespace

Result<Catalog> Catalog::open(const std::filesystem::path& path, OpenOptions options) {
    Catalog cat;
    MSA_ASSIGN_OR_RETURN(cat.m_db, Db::open(path, options.readOnly, options.create));
    cat.m_readOnly = options.readOnly;
    if (options.readOnly) {
        MSA_ASSIGN_OR_RETURN(int64_t v, scalar(cat.m_db, "PRAGMA user_version"));
        // An older schema is read as it is (a read-only open never migrates): every later migration
        // only adds tables, so what version 1 readers need is all there; the functions that need a
        // newer table say so (requireSchema).
        if (v < 1 || v > latestSchemaVersion())
            return unsupported("catalog '" + path.string() + "' has schema version " + std::to_string(v) +
                               (v < 1 ? "; it is not an initialised catalog"
                                      : "; this build reads versions 1 to " + std::to_string(latestSchemaVersion())));
        cat.m_foundVersion = cat.m_schemaVersion = static_cast<int>(v);
        return cat;
    }
    // journal_mode is the first statement that reads the header, so a non-SQLite file fails here
    // (Corrupt, "file is not a database").
    MSA_ASSIGN_OR_RETURN(Stmt wal, cat.m_db.prepare("PRAGMA journal_mode = WAL"));
    MSA_ASSIGN_OR_RETURN(bool row, wal.step());
    const std::string mode = row ? wal.text(0) : std::string("no answer");
    wal.reset();
    if (mode != "wal")
        return Status(ErrorCode::Unsupported, "catalog '" + path.string() + "': cannot switch to WAL mode (" + mode + ")");
    // NORMAL in WAL mode: a process crash never loses a committed transaction; a power cut may lose
    // the last ones but never leaves the file inconsistent.
    MSA_RETURN_IF_ERROR(cat.m_db.exec("PRAGMA synchronous = NORMAL"));
    MSA_ASSIGN_OR_RETURN(cat.m_foundVersion, migrate(cat.m_db));
    cat.m_schemaVersion = latestSchemaVersion();
    return cat;
}

Result<std::optional<int64_t>> Catalog::findCollection(const std::string& name) const {
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare("SELECT id FROM collections WHERE name = ?"));
    s.bind(1, name);
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) return std::optional<int64_t>();
    return std::optional<int64_t>(s.int64(0));
}

Result<int64_t> Catalog::ensureCollection(const std::string& name, const std::string& root) {
    if (name.empty()) return invalidArgument("a collection needs a non-empty name");
    Transaction tx(m_db);
    MSA_RETURN_IF_ERROR(tx.begin());
    MSA_ASSIGN_OR_RETURN(std::optional<int64_t> id, findCollection(name));
    if (!id) {
        MSA_ASSIGN_OR_RETURN(Stmt ins, m_db.prepare("INSERT INTO collections(name, created_at) VALUES (?, ?)"));
        ins.bind(1, name).bind(2, nowUnix());
        MSA_RETURN_IF_ERROR(ins.run());
        id = m_db.lastInsertRowid();
    }
    if (!root.empty()) {
        MSA_ASSIGN_OR_RETURN(Stmt sel, m_db.prepare("SELECT roots_json FROM collections WHERE id = ?"));
        sel.bind(1, *id);
        MSA_ASSIGN_OR_RETURN(bool row, sel.step());
        std::vector<std::string> roots = row ? parseStringArray(sel.text(0)) : std::vector<std::string>{};
        sel.reset();   // a statement left mid-row would block COMMIT
        if (std::find(roots.begin(), roots.end(), root) == roots.end()) {
            roots.push_back(root);
            MSA_ASSIGN_OR_RETURN(Stmt up, m_db.prepare("UPDATE collections SET roots_json = ? WHERE id = ?"));
            up.bind(1, nlohmann::json(roots).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
                .bind(2, *id);
            MSA_RETURN_IF_ERROR(up.run());
        }
    }
    MSA_RETURN_IF_ERROR(tx.commit());
    return *id;
}

Result<std::vector<CollectionInfo>> Catalog::collections() const {
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(R"SQL(
        SELECT c.id, c.name, c.roots_json, c.settings_json,
          (SELECT count(*) FROM source_files f WHERE f.collection_id = c.id AND f.status != 'deleted'),
          (SELECT count(DISTINCT ds.document_id) FROM document_sources ds
             JOIN source_files f ON f.id = ds.source_file_id WHERE f.collection_id = c.id)
        FROM collections c ORDER BY c.name)SQL"));
    std::vector<CollectionInfo> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        CollectionInfo c;
        c.id = s.int64(0);
        c.name = s.text(1);
        c.roots = parseStringArray(s.text(2));
        c.settingsJson = s.text(3);
        c.nFiles = s.int64(4);
        c.nDocuments = s.int64(5);
        out.push_back(std::move(c));
    }
    return out;
}

Result<CatalogStats> Catalog::stats() const {
    CatalogStats st;
    st.schemaVersion = m_schemaVersion;
    MSA_ASSIGN_OR_RETURN(st.nCollections, scalar(m_db, "SELECT count(*) FROM collections"));
    MSA_ASSIGN_OR_RETURN(st.nSourceFiles, scalar(m_db, "SELECT count(*) FROM source_files"));
    MSA_ASSIGN_OR_RETURN(st.nImported, scalar(m_db, "SELECT count(*) FROM source_files WHERE status='imported'"));
    MSA_ASSIGN_OR_RETURN(st.nSkipped, scalar(m_db, "SELECT count(*) FROM source_files WHERE status='skipped'"));
    MSA_ASSIGN_OR_RETURN(st.nFailed, scalar(m_db, "SELECT count(*) FROM source_files WHERE status='failed'"));
    MSA_ASSIGN_OR_RETURN(st.nDeleted, scalar(m_db, "SELECT count(*) FROM source_files WHERE status='deleted'"));
    MSA_ASSIGN_OR_RETURN(st.nDocuments, scalar(m_db, "SELECT count(*) FROM documents"));
    MSA_ASSIGN_OR_RETURN(st.nMemoryDocuments, scalar(m_db, "SELECT count(*) FROM memory_documents"));
    MSA_ASSIGN_OR_RETURN(st.nTextBytes, scalar(m_db, "SELECT coalesce(sum(n_bytes), 0) FROM documents"));
    MSA_ASSIGN_OR_RETURN(st.nTokenEstimate,
                         scalar(m_db, "SELECT coalesce(sum(token_estimate), 0) FROM memory_documents"));
    MSA_ASSIGN_OR_RETURN(st.nImportRuns, scalar(m_db, "SELECT count(*) FROM import_runs"));
    MSA_ASSIGN_OR_RETURN(Stmt k, m_db.prepare("SELECT kind, count(*) FROM documents GROUP BY kind ORDER BY kind"));
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, k.step());
        if (!row) break;
        st.documentsByKind.emplace_back(k.text(0), k.int64(1));
    }
    std::error_code ec;
    for (const char* suffix : {"", "-wal"}) {
        const auto size = std::filesystem::file_size(m_db.path().string() + suffix, ec);
        if (!ec) st.fileBytes += static_cast<int64_t>(size);
    }
    return st;
}

namespace {
// The metadata filter of a SearchQuery (collection, kind, date range, participant) as SQL over the
// documents table aliased `d`, with its five parameters numbered from `first` (search() and
// memoryDocumentIds() share it).
void appendFilterSql(std::string& sql, const SearchQuery& q, int first) {
    // Appended piece by piece: GCC 12 raises a false -Wrestrict on "literal" + std::string.
    auto add = [&](const char* text, int param) {
        sql += text;
        sql += '?';
        sql += std::to_string(first + param);
    };
    if (q.collection) {
        add(" AND EXISTS (SELECT 1 FROM document_sources ds JOIN source_files f ON f.id = ds.source_file_id"
            " JOIN collections c ON c.id = f.collection_id WHERE ds.document_id = d.id AND c.name = ", 0);
        sql += ')';
    }
    if (q.kind) add(" AND d.kind = ", 1);
    if (q.fromUnix) add(" AND d.date_unix >= ", 2);
    if (q.toUnix) add(" AND d.date_unix < ", 3);
    if (q.participant) {
        add(" AND (d.author LIKE ", 4);
        add(" OR EXISTS (SELECT 1 FROM json_each(d.participants_json) p WHERE p.value LIKE ", 4);
        sql += "))";
    }
}

void bindFilter(Stmt& s, const SearchQuery& q, int first) {
    if (q.collection) s.bind(first, *q.collection);
    if (q.kind) s.bind(first + 1, *q.kind);
    if (q.fromUnix) s.bind(first + 2, *q.fromUnix);
    if (q.toUnix) s.bind(first + 3, *q.toUnix);
    if (q.participant) s.bind(first + 4, "%" + *q.participant + "%");
}
}  // namespace

Result<std::vector<SearchHit>> Catalog::search(const SearchQuery& q) const {
    if (q.match.empty()) return invalidArgument("empty search query");
    if (q.limit <= 0 || q.offset < 0) return invalidArgument("search limit must be positive and offset >= 0");
    std::string sql = R"SQL(
        SELECT d.id, d.kind, d.title, coalesce(d.author, ''), d.participants_json, d.date_unix,
               snippet(documents_fts, 1, ?1, ?2, '…', ?3), -bm25(documents_fts, 10.0, 1.0),
               (SELECT f.path || char(31) || coalesce(ds.locator, '') FROM document_sources ds
                  JOIN source_files f ON f.id = ds.source_file_id
                  WHERE ds.document_id = d.id ORDER BY f.id, ds.ordinal LIMIT 1)
        FROM documents_fts JOIN documents d ON d.id = documents_fts.rowid
        WHERE documents_fts MATCH ?4)SQL";
    appendFilterSql(sql, q, 5);
    sql += " ORDER BY bm25(documents_fts, 10.0, 1.0), d.id LIMIT ?10 OFFSET ?11";
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(sql));
    s.bind(1, q.highlightOpen).bind(2, q.highlightClose).bind(3, static_cast<int64_t>(q.snippetTokens));
    s.bind(4, q.match);
    bindFilter(s, q, 5);
    s.bind(10, static_cast<int64_t>(q.limit)).bind(11, static_cast<int64_t>(q.offset));
    std::vector<SearchHit> hits;
    for (;;) {
        Result<bool> row = s.step();
        if (!row) {
            // SQLITE_ERROR from a read of our own fixed SQL means the MATCH expression was rejected
            // ("fts5: syntax error", "unterminated string", "no such column").
            if (row.status().code() == ErrorCode::Internal)
                return invalidArgument("invalid FTS5 query '" + q.match + "': " + row.status().message());
            return row.status().withContext("searching for '" + q.match + "'");
        }
        if (!*row) break;
        SearchHit h;
        h.documentId = s.int64(0);
        h.kind = s.text(1);
        h.title = s.text(2);
        h.author = s.text(3);
        h.participants = parseStringArray(s.text(4));
        h.dateUnix = s.optInt64(5);
        h.snippet = s.text(6);
        h.score = s.real(7);
        const std::string src = s.text(8);
        const size_t sep = src.find('\x1f');
        h.path = src.substr(0, sep);
        if (sep != std::string::npos) h.locator = src.substr(sep + 1);
        hits.push_back(std::move(h));
    }
    MSA_ASSIGN_OR_RETURN(Stmt m, m_db.prepare("SELECT id FROM memory_documents WHERE document_id = ? ORDER BY segment_index"));
    for (SearchHit& h : hits) {
        m.reset();
        m.bind(1, h.documentId);
        for (;;) {
            MSA_ASSIGN_OR_RETURN(bool row, m.step());
            if (!row) break;
            h.memoryDocumentIds.push_back(m.int64(0));
        }
    }
    return hits;
}

Result<std::vector<int64_t>> Catalog::memoryDocumentIds(const SearchQuery& q) const {
    std::string sql = "SELECT m.id FROM memory_documents m JOIN documents d ON d.id = m.document_id WHERE 1";
    appendFilterSql(sql, q, 1);
    sql += " ORDER BY m.id";
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(sql));
    bindFilter(s, q, 1);
    std::vector<int64_t> ids;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        ids.push_back(s.int64(0));
    }
    return ids;
}

namespace {
// The span is in bytes: substr over the BLOB cast counts bytes (over TEXT it would count characters).
constexpr const char* kMemoryDocumentSelect =
    "SELECT m.id, d.id, d.kind, d.title, coalesce(m.label,''), "
    "CAST(substr(CAST(d.text AS BLOB), m.span_start + 1, m.span_end - m.span_start) AS TEXT) "
    "FROM memory_documents m JOIN documents d ON d.id = m.document_id ";

MemoryDocumentText memoryDocumentRow(const Stmt& s) {
    MemoryDocumentText m;
    m.id = s.int64(0);
    m.documentId = s.int64(1);
    m.kind = s.text(2);
    m.title = s.text(3);
    m.label = s.text(4);
    m.text = s.text(5);
    return m;
}
}  // namespace

Result<MemoryDocumentText> Catalog::memoryDocument(int64_t memoryDocumentId) const {
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(std::string(kMemoryDocumentSelect) + "WHERE m.id = ?"));
    s.bind(1, memoryDocumentId);
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row)
        return notFound("no memory document " + std::to_string(memoryDocumentId) + " in catalog '" + path().string() + "'");
    return memoryDocumentRow(s);
}

Result<std::vector<MemoryDocumentText>> Catalog::memoryDocuments(const std::string& collection) const {
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(
        std::string(kMemoryDocumentSelect) +
        "WHERE EXISTS (SELECT 1 FROM document_sources ds JOIN source_files f ON f.id = ds.source_file_id "
        "JOIN collections c ON c.id = f.collection_id WHERE ds.document_id = d.id AND c.name = ?) ORDER BY m.id"));
    s.bind(1, collection);
    std::vector<MemoryDocumentText> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        out.push_back(memoryDocumentRow(s));
    }
    return out;
}

Result<DocumentInfo> Catalog::document(int64_t documentId) const {
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(
        "SELECT id, content_hash, kind, title, coalesce(author,''), participants_json, date_unix, metadata_json, text "
        "FROM documents WHERE id = ?"));
    s.bind(1, documentId);
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) return notFound("no document " + std::to_string(documentId) + " in catalog '" + path().string() + "'");
    DocumentInfo d;
    d.id = s.int64(0);
    d.contentHash = s.text(1);
    d.kind = s.text(2);
    d.title = s.text(3);
    d.author = s.text(4);
    d.participants = parseStringArray(s.text(5));
    d.dateUnix = s.optInt64(6);
    d.metadataJson = s.text(7);
    d.text = s.text(8);
    MSA_ASSIGN_OR_RETURN(Stmt src, m_db.prepare(
        "SELECT f.path, coalesce(ds.locator,'') FROM document_sources ds JOIN source_files f ON f.id = ds.source_file_id "
        "WHERE ds.document_id = ? ORDER BY f.path, ds.ordinal"));
    src.bind(1, documentId);
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool r, src.step());
        if (!r) break;
        d.sources.emplace_back(src.text(0), src.text(1));
    }
    MSA_ASSIGN_OR_RETURN(Stmt seg, m_db.prepare(
        "SELECT id, segment_index, segment_kind, span_start, span_end, coalesce(label,''), token_estimate, token_count "
        "FROM memory_documents WHERE document_id = ? ORDER BY segment_index"));
    seg.bind(1, documentId);
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool r, seg.step());
        if (!r) break;
        MemoryDocumentInfo m;
        m.id = seg.int64(0);
        m.segmentIndex = static_cast<int>(seg.int64(1));
        m.segmentKind = seg.text(2);
        m.spanStart = seg.int64(3);
        m.spanEnd = seg.int64(4);
        m.label = seg.text(5);
        m.tokenEstimate = seg.int64(6);
        m.tokenCount = seg.optInt64(7);
        d.segments.push_back(std::move(m));
    }
    return d;
}

Result<std::vector<DocumentInfo>> Catalog::listDocuments(const std::optional<std::string>& collection, int limit,
                                                         int offset) const {
    std::string sql =
        "SELECT d.id, d.content_hash, d.kind, d.title, coalesce(d.author,''), d.participants_json, d.date_unix, "
        "(SELECT count(*) FROM memory_documents m WHERE m.document_id = d.id) FROM documents d";
    if (collection)
        sql += " WHERE EXISTS (SELECT 1 FROM document_sources ds JOIN source_files f ON f.id = ds.source_file_id "
               "JOIN collections c ON c.id = f.collection_id WHERE ds.document_id = d.id AND c.name = ?3)";
    sql += " ORDER BY d.id LIMIT ?1 OFFSET ?2";
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(sql));
    s.bind(1, static_cast<int64_t>(limit)).bind(2, static_cast<int64_t>(offset));
    if (collection) s.bind(3, *collection);
    std::vector<DocumentInfo> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        DocumentInfo d;
        d.id = s.int64(0);
        d.contentHash = s.text(1);
        d.kind = s.text(2);
        d.title = s.text(3);
        d.author = s.text(4);
        d.participants = parseStringArray(s.text(5));
        d.dateUnix = s.optInt64(6);
        d.segments.resize(static_cast<size_t>(s.int64(7)));
        out.push_back(std::move(d));
    }
    return out;
}

Result<std::vector<SourceFileInfo>> Catalog::sourceFiles(const std::optional<std::string>& collection) const {
    std::string sql =
        "SELECT f.id, c.name, f.path, f.size, f.mtime_ns, coalesce(f.content_hash,''), coalesce(f.importer,''), "
        "f.status, coalesce(f.error_code,''), coalesce(f.error,'') FROM source_files f "
        "JOIN collections c ON c.id = f.collection_id";
    if (collection) sql += " WHERE c.name = ?1";
    sql += " ORDER BY c.name, f.path";
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(sql));
    if (collection) s.bind(1, *collection);
    std::vector<SourceFileInfo> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        SourceFileInfo f;
        f.id = s.int64(0);
        f.collection = s.text(1);
        f.path = s.text(2);
        f.size = s.int64(3);
        f.mtimeNs = s.int64(4);
        f.contentHash = s.text(5);
        f.importer = s.text(6);
        f.status = s.text(7);
        f.errorCode = s.text(8);
        f.error = s.text(9);
        out.push_back(std::move(f));
    }
    return out;
}

Result<IntegrityReport> Catalog::checkIntegrity() const {
    IntegrityReport rep;
    MSA_ASSIGN_OR_RETURN(Stmt ic, m_db.prepare("PRAGMA integrity_check"));
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, ic.step());
        if (!row) break;
        if (ic.text(0) != "ok") rep.problems.push_back("integrity_check: " + ic.text(0));
    }
    MSA_ASSIGN_OR_RETURN(Stmt fk, m_db.prepare("PRAGMA foreign_key_check"));
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, fk.step());
        if (!row) break;
        rep.problems.push_back("foreign_key_check: row " + fk.text(1) + " of " + fk.text(0) + " points to missing " +
                               fk.text(2));
    }
    // The catalog's own invariants: every document is reachable from a live file and has segments;
    // the FTS index agrees with its content table.
    struct Check { const char* what; const char* sql; };
    const Check checks[] = {
        {"documents without a source link",
         "SELECT count(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM document_sources ds WHERE ds.document_id = d.id)"},
        {"documents without memory documents",
         "SELECT count(*) FROM documents d WHERE NOT EXISTS (SELECT 1 FROM memory_documents m WHERE m.document_id = d.id)"},
        {"links from deleted/failed files",
         "SELECT count(*) FROM document_sources ds JOIN source_files f ON f.id = ds.source_file_id WHERE f.status != 'imported'"},
        {"segments outside their document",
         "SELECT count(*) FROM memory_documents m JOIN documents d ON d.id = m.document_id WHERE m.span_end > d.n_bytes"},
    };
    for (const Check& c : checks) {
        MSA_ASSIGN_OR_RETURN(int64_t n, scalar(m_db, c.sql));
        if (n != 0) rep.problems.push_back(std::string(c.what) + ": " + std::to_string(n));
    }
    if (!m_readOnly) {
        // 'integrity-check' with rank 1 also compares the index with the external content table.
        Status fts = const_cast<Db&>(m_db).exec(
            "INSERT INTO documents_fts(documents_fts, rank) VALUES ('integrity-check', 1)");
        if (!fts) rep.problems.push_back("fts5 integrity-check: " + fts.message());
    }
    rep.ok = rep.problems.empty();
    return rep;
}

}  // namespace msa::catalog

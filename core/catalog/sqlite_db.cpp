#include "core/catalog/sqlite_db.h"

#include <sqlite3.h>

#include <system_error>
#include <utility>

namespace msa::catalog {

ErrorCode errorCodeForSqlite(int rc) {
    switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED: return ErrorCode::Busy;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB: return ErrorCode::Corrupt;
        case SQLITE_FULL: return ErrorCode::DiskFull;
        case SQLITE_PERM:
        case SQLITE_READONLY:
        case SQLITE_AUTH: return ErrorCode::PermissionDenied;
        case SQLITE_CANTOPEN: return ErrorCode::NotFound;
        case SQLITE_NOMEM: return ErrorCode::OutOfMemory;
        case SQLITE_IOERR: return ErrorCode::IoError;
        case SQLITE_INTERRUPT: return ErrorCode::Cancelled;
        default: return ErrorCode::Internal;
    }
}

// ---- Stmt ---------------------------------------------------------------------------------------

Stmt::~Stmt() {
    if (m_stmt) sqlite3_finalize(m_stmt);
}
Stmt::Stmt(Stmt&& other) noexcept : m_stmt(std::exchange(other.m_stmt, nullptr)), m_db(other.m_db) {}
Stmt& Stmt::operator=(Stmt&& other) noexcept {
    if (this != &other) {
        if (m_stmt) sqlite3_finalize(m_stmt);
        m_stmt = std::exchange(other.m_stmt, nullptr);
        m_db = other.m_db;
    }
    return *this;
}

Stmt& Stmt::bind(int index, int64_t value) {
    sqlite3_bind_int64(m_stmt, index, value);
    return *this;
}
Stmt& Stmt::bind(int index, std::string_view text) {
    sqlite3_bind_text64(m_stmt, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
}
Stmt& Stmt::bind(int index, double value) {
    sqlite3_bind_double(m_stmt, index, value);
    return *this;
}
Stmt& Stmt::bind(int index, std::optional<int64_t> value) {
    return value ? bind(index, *value) : bindNull(index);
}
Stmt& Stmt::bindNull(int index) {
    sqlite3_bind_null(m_stmt, index);
    return *this;
}

Result<bool> Stmt::step() {
    const int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    const char* sql = sqlite3_sql(m_stmt);
    Status s = m_db->lastError(rc, std::string("executing '") + (sql ? std::string(sql).substr(0, 80) : "") + "'");
    sqlite3_reset(m_stmt);
    return s;
}

Status Stmt::run() {
    Result<bool> r = step();
    if (!r) return r.status();
    sqlite3_reset(m_stmt);
    return {};
}

void Stmt::reset() {
    sqlite3_reset(m_stmt);
    sqlite3_clear_bindings(m_stmt);
}

int64_t Stmt::int64(int column) const { return sqlite3_column_int64(m_stmt, column); }
double Stmt::real(int column) const { return sqlite3_column_double(m_stmt, column); }
std::string Stmt::text(int column) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(m_stmt, column));
    if (!p) return {};
    return std::string(p, static_cast<size_t>(sqlite3_column_bytes(m_stmt, column)));
}
bool Stmt::isNull(int column) const { return sqlite3_column_type(m_stmt, column) == SQLITE_NULL; }
std::optional<int64_t> Stmt::optInt64(int column) const {
    if (isNull(column)) return std::nullopt;
    return int64(column);
}

// ---- Db -----------------------------------------------------------------------------------------

Db::~Db() {
    if (m_db) sqlite3_close_v2(m_db);
}
Db::Db(Db&& other) noexcept : m_db(std::exchange(other.m_db, nullptr)), m_path(std::move(other.m_path)) {}
Db& Db::operator=(Db&& other) noexcept {
    if (this != &other) {
        if (m_db) sqlite3_close_v2(m_db);
        m_db = std::exchange(other.m_db, nullptr);
        m_path = std::move(other.m_path);
    }
    return *this;
}

Result<Db> Db::open(const std::filesystem::path& path, bool readOnly, bool create, int busyTimeoutMs) {
    Db db;
    db.m_path = path;
    int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    flags |= readOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (!readOnly && create) flags |= SQLITE_OPEN_CREATE;
    std::error_code ec;
    if (!create && !std::filesystem::exists(path, ec))
        return notFound("catalog '" + path.string() + "' does not exist");
    const int rc = sqlite3_open_v2(path.c_str(), &db.m_db, flags, nullptr);
    if (rc != SQLITE_OK) {
        Status s = db.m_db ? db.lastError(rc, "opening catalog")
                           : Status(ErrorCode::OutOfMemory, "opening catalog '" + path.string() + "'");
        return s;
    }
    sqlite3_busy_timeout(db.m_db, busyTimeoutMs);
    sqlite3_extended_result_codes(db.m_db, 1);
    MSA_RETURN_IF_ERROR(db.exec("PRAGMA foreign_keys = ON"));
    return db;
}

Status Db::exec(std::string_view sql) {
    char* err = nullptr;
    const std::string s(sql);
    const int rc = sqlite3_exec(m_db, s.c_str(), nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return {};
    std::string message = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return Status(errorCodeForSqlite(rc), "catalog '" + m_path.string() + "': " + message + " (in '" +
                                              s.substr(0, 80) + "')");
}

Result<Stmt> Db::prepare(std::string_view sql) const {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(m_db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &stmt, nullptr);
    if (rc != SQLITE_OK) return lastError(rc, "preparing '" + std::string(sql.substr(0, 80)) + "'");
    return Stmt(stmt, this);
}

int64_t Db::lastInsertRowid() const { return sqlite3_last_insert_rowid(m_db); }
int Db::changes() const { return sqlite3_changes(m_db); }

Status Db::lastError(int rc, std::string_view what) const {
    const char* msg = m_db ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
    ErrorCode code = errorCodeForSqlite(rc);
    std::string message = msg ? msg : "unknown SQLite error";
    // FTS5 reports query syntax errors as SQLITE_ERROR with "fts5: syntax error ...".
    if (code == ErrorCode::Internal && message.rfind("fts5:", 0) == 0) code = ErrorCode::InvalidArgument;
    return Status(code, "catalog '" + m_path.string() + "': " + std::string(what) + ": " + message);
}

// ---- Transaction --------------------------------------------------------------------------------

Transaction::~Transaction() {
    if (m_active) (void)m_db->exec("ROLLBACK");
}
Status Transaction::begin() {
    MSA_RETURN_IF_ERROR(m_db->exec("BEGIN IMMEDIATE"));
    m_active = true;
    return {};
}
Status Transaction::commit() {
    Status s = m_db->exec("COMMIT");
    if (s) {
        m_active = false;
        return s;
    }
    // A statement left mid-row blocks COMMIT: name it, it is a bug in the caller.
    for (sqlite3_stmt* st = sqlite3_next_stmt(m_db->handle(), nullptr); st; st = sqlite3_next_stmt(m_db->handle(), st))
        if (sqlite3_stmt_busy(st)) s = s.withContext(std::string("busy statement '") + sqlite3_sql(st) + "'");
    return s;
}

}  // namespace msa::catalog

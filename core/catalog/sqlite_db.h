// sqlite_db.h: a thin RAII layer over the SQLite C API used inside core/catalog (not a public API of
// the project: other modules talk to the Catalog class).
//
// Why our own wrapper: the C API is small, and every failure must become a Status naming the SQL and
// the database file (DESIGN.md §4 "Errors"); no third-party C++ wrapper adds anything we need.
//
// Ownership: Db owns one sqlite3 connection; Stmt owns one prepared statement and must not outlive
// its Db. Thread affinity: a Db and its statements are used by one thread at a time (the connection
// is opened with SQLITE_OPEN_NOMUTEX; CONVENTIONS.md #11 "one owner per connection").
//
// Failure codes: Busy (SQLITE_BUSY/LOCKED after the busy timeout), Corrupt (SQLITE_CORRUPT/NOTADB),
// DiskFull (SQLITE_FULL), PermissionDenied (SQLITE_PERM/READONLY/CANTOPEN on an existing file),
// InvalidArgument (a malformed FTS5 query), IoError, Internal.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(Db db, Db::open(path, false));
//     MSA_ASSIGN_OR_RETURN(Stmt s, db.prepare("SELECT id FROM collections WHERE name = ?"));
//     s.bind(1, name);
//     MSA_ASSIGN_OR_RETURN(bool row, s.step());
#pragma once

#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace msa::catalog {

class Db;

class Stmt {
public:
    Stmt() = default;
    ~Stmt();
    Stmt(Stmt&& other) noexcept;
    Stmt& operator=(Stmt&& other) noexcept;
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    // Parameters are 1-based, as in SQLite. Text is copied (SQLITE_TRANSIENT).
    Stmt& bind(int index, int64_t value);
    Stmt& bind(int index, std::string_view text);
    Stmt& bind(int index, const char* text) { return bind(index, std::string_view(text)); }
    Stmt& bind(int index, const std::string& text) { return bind(index, std::string_view(text)); }
    Stmt& bind(int index, double value);
    Stmt& bind(int index, std::optional<int64_t> value);
    Stmt& bindNull(int index);

    // true: a row is available; false: done. Failures name the SQL.
    Result<bool> step();
    // step() for statements that return no rows.
    Status run();
    void reset();   // reset + clear bindings, ready for reuse

    int64_t int64(int column) const;
    double real(int column) const;
    std::string text(int column) const;
    bool isNull(int column) const;
    std::optional<int64_t> optInt64(int column) const;

private:
    friend class Db;
    Stmt(sqlite3_stmt* stmt, const Db* db) : m_stmt(stmt), m_db(db) {}
    sqlite3_stmt* m_stmt = nullptr;
    const Db* m_db = nullptr;
};

class Db {
public:
    Db() = default;
    ~Db();
    Db(Db&& other) noexcept;
    Db& operator=(Db&& other) noexcept;
    Db(const Db&) = delete;
    Db& operator=(const Db&) = delete;

    // Opens (and with create, creates) the database file. Sets foreign_keys=ON and the busy timeout;
    // WAL is set by the catalog after checking that the file is a SQLite database.
    static Result<Db> open(const std::filesystem::path& path, bool readOnly, bool create = true,
                           int busyTimeoutMs = 5000);

    Status exec(std::string_view sql);   // one or more statements, no results
    Result<Stmt> prepare(std::string_view sql) const;
    int64_t lastInsertRowid() const;
    int changes() const;

    // A Status for the connection's last error (code mapped as in the header comment).
    Status lastError(int rc, std::string_view what) const;
    sqlite3* handle() const { return m_db; }
    const std::filesystem::path& path() const { return m_path; }

private:
    sqlite3* m_db = nullptr;
    std::filesystem::path m_path;
};

// Maps a SQLite result code to our error codes.
ErrorCode errorCodeForSqlite(int rc);

// RAII transaction: BEGIN IMMEDIATE on begin(), ROLLBACK in the destructor unless commit() succeeded.
class Transaction {
public:
    explicit Transaction(Db& db) : m_db(&db) {}
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    Status begin();
    Status commit();
    bool active() const { return m_active; }

private:
    Db* m_db;
    bool m_active = false;
};

}  // namespace msa::catalog

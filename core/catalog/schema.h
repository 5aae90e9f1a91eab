// schema.h: the catalog's SQL schema as forward-only numbered migrations (CONVENTIONS.md #11).
//
// Migration N turns a database at user_version N-1 into one at user_version N; each runs inside one
// transaction together with the `PRAGMA user_version = N` that records it, so an interrupted upgrade
// leaves the database at N-1. Released migrations are never edited: a change is a new migration,
// and tests/fixtures/catalog/catalog-v<N>.sqlite is the fixture the upgrade test opens.
//
// Thread affinity: plain data; migrate() runs on the thread that owns the Db.
// Failure codes of migrate(): Unsupported (the file is newer than this build), Corrupt, Busy,
// DiskFull, IoError, Internal.
#pragma once

#include "core/catalog/sqlite_db.h"

#include <span>
#include <string_view>

namespace msa::catalog {

struct Migration {
    int version;            // the user_version after this migration
    std::string_view what;  // one line for the log
    std::string_view sql;
};

std::span<const Migration> migrations();
int latestSchemaVersion();

// Brings `db` to latestSchemaVersion(). Returns the version found before migrating.
Result<int> migrate(Db& db);

}  // namespace msa::catalog

#include "core/catalog/schema.h"

#include "core/util/log.h"

#include <string>

namespace msa::catalog {
namespace {

// Version 1 (released with the first catalog). Times are Unix seconds (UTC) unless named *_ns.
// Text columns holding lists/maps are JSON (arrays/objects) so they can be queried with json_each.
constexpr std::string_view kSchemaV1 = R"SQL(
CREATE TABLE collections (
  id            INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  roots_json    TEXT NOT NULL DEFAULT '[]',   -- folders/files imported into this collection
  settings_json TEXT NOT NULL DEFAULT '{}',   -- per-collection import settings
  created_at    INTEGER NOT NULL
);

CREATE TABLE import_runs (
  id            INTEGER PRIMARY KEY,
  collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  started_at    INTEGER NOT NULL,
  finished_at   INTEGER,
  status        TEXT NOT NULL CHECK (status IN ('running','completed','cancelled','failed','interrupted')),
  roots_json    TEXT NOT NULL DEFAULT '[]',
  n_seen        INTEGER NOT NULL DEFAULT 0,
  n_imported    INTEGER NOT NULL DEFAULT 0,   -- new files
  n_updated     INTEGER NOT NULL DEFAULT 0,   -- changed files re-imported
  n_unchanged   INTEGER NOT NULL DEFAULT 0,
  n_skipped     INTEGER NOT NULL DEFAULT 0,   -- not importable (binary, too large, ...)
  n_failed      INTEGER NOT NULL DEFAULT 0,
  n_deleted     INTEGER NOT NULL DEFAULT 0,
  n_documents   INTEGER NOT NULL DEFAULT 0,
  n_bytes       INTEGER NOT NULL DEFAULT 0,
  error         TEXT
);

CREATE TABLE source_files (
  id            INTEGER PRIMARY KEY,
  collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
  path          TEXT NOT NULL,
  size          INTEGER NOT NULL,
  mtime_ns      INTEGER NOT NULL,
  content_hash  TEXT,                          -- xxh3-128 of the file bytes, hex
  importer      TEXT,                          -- 'text', 'pdf', 'email', ... (NULL when undetected)
  language      TEXT,                          -- source code language, when importer = 'code'
  status        TEXT NOT NULL CHECK (status IN ('imported','skipped','failed','deleted')),
  error_code    TEXT,                          -- errorCodeName() of the failure/skip
  error         TEXT,                          -- the reason, for humans
  warnings_json TEXT NOT NULL DEFAULT '[]',    -- e.g. repaired invalid UTF-8
  last_run_id   INTEGER REFERENCES import_runs(id) ON DELETE SET NULL,
  updated_at    INTEGER NOT NULL,
  UNIQUE (collection_id, path)
);
CREATE INDEX source_files_status ON source_files(collection_id, status);

-- One row per distinct content: a file copied to three places is stored once and linked three times
-- through document_sources. content_hash = xxh3-128 over (kind, NUL, normalised text).
CREATE TABLE documents (
  id                INTEGER PRIMARY KEY,
  content_hash      TEXT NOT NULL UNIQUE,
  kind              TEXT NOT NULL,             -- the importer type: 'text', 'markdown', 'email', 'chat', ...
  title             TEXT NOT NULL DEFAULT '',
  author            TEXT,
  participants_json TEXT NOT NULL DEFAULT '[]',
  date_unix         INTEGER,                   -- the document's own date (message, chat day, front matter)
  metadata_json     TEXT NOT NULL DEFAULT '{}',
  text              TEXT NOT NULL,             -- normalised UTF-8 (LF line ends, NFC where the source allows)
  n_bytes           INTEGER NOT NULL,
  created_at        INTEGER NOT NULL
);
CREATE INDEX documents_date ON documents(date_unix);
CREATE INDEX documents_kind ON documents(kind);

CREATE TABLE document_sources (
  source_file_id INTEGER NOT NULL REFERENCES source_files(id) ON DELETE CASCADE,
  ordinal        INTEGER NOT NULL,             -- position of the document inside its file
  document_id    INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  locator        TEXT,                         -- where in the file: 'message 3', '#general/2016-01-14', 'pages 1-4'
  PRIMARY KEY (source_file_id, ordinal)
) WITHOUT ROWID;
CREATE INDEX document_sources_document ON document_sources(document_id);

-- The routing units. AUTOINCREMENT so that an id is never reused after a document is replaced:
-- memory banks refer to these ids.
CREATE TABLE memory_documents (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  document_id    INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  segment_index  INTEGER NOT NULL,
  segment_kind   TEXT NOT NULL,                -- 'whole', 'email', 'chat-day', 'conversation', 'section', 'pages'
  span_start     INTEGER NOT NULL,             -- byte offsets into documents.text, [start, end)
  span_end       INTEGER NOT NULL,
  label          TEXT,                         -- heading path, page range, ...
  token_estimate INTEGER NOT NULL,             -- ~bytes/4 until a model's tokenizer counts
  token_count    INTEGER,                      -- exact count, filled by the bank build
  UNIQUE (document_id, segment_index),
  CHECK (span_start >= 0 AND span_end >= span_start)
);

CREATE TABLE import_run_files (
  run_id       INTEGER NOT NULL REFERENCES import_runs(id) ON DELETE CASCADE,
  path         TEXT NOT NULL,
  outcome      TEXT NOT NULL CHECK (outcome IN ('imported','updated','skipped','failed','deleted','touched')),
  importer     TEXT,
  error_code   TEXT,
  reason       TEXT,
  n_documents  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, path)
) WITHOUT ROWID;

-- Full-text index over documents (external content: the text is stored once, in documents).
CREATE VIRTUAL TABLE documents_fts USING fts5(
  title, text, content='documents', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER documents_fts_insert AFTER INSERT ON documents BEGIN
  INSERT INTO documents_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
END;
CREATE TRIGGER documents_fts_delete AFTER DELETE ON documents BEGIN
  INSERT INTO documents_fts(documents_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
END;
CREATE TRIGGER documents_fts_update AFTER UPDATE OF title, text ON documents BEGIN
  INSERT INTO documents_fts(documents_fts, rowid, title, text) VALUES ('delete', old.id, old.title, old.text);
  INSERT INTO documents_fts(rowid, title, text) VALUES (new.id, new.title, new.text);
END;
)SQL";

// Version 2: chat history. A conversation is a series of questions asked of one memory bank; each
// turn keeps the answer, its citations and the routing trace (memory::toJson(RoutingTrace) as text:
// the catalog stores it opaquely, the jobs layer converts). Citations are memory document ids, kept
// as a JSON array without a foreign key: a cited document may later be re-imported under a new id
// and the history must still say what was cited then.
constexpr std::string_view kSchemaV2 = R"SQL(
CREATE TABLE conversations (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  title             TEXT NOT NULL DEFAULT '',
  created_at        INTEGER NOT NULL,
  bank_path         TEXT NOT NULL DEFAULT '',
  model_fingerprint TEXT NOT NULL DEFAULT ''
);

CREATE TABLE chat_turns (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  ordinal         INTEGER NOT NULL,             -- 0, 1, 2, ... within the conversation
  question        TEXT NOT NULL,
  answer          TEXT NOT NULL DEFAULT '',
  citations_json  TEXT NOT NULL DEFAULT '[]',   -- memory document ids, in citation order
  trace_json      TEXT NOT NULL DEFAULT '{}',   -- the routing trace (core/memory/trace.h toJson)
  method          TEXT NOT NULL DEFAULT '',     -- 'msa-interleave', 'training-free', ...
  created_at      INTEGER NOT NULL,
  seconds         REAL NOT NULL DEFAULT 0,
  UNIQUE (conversation_id, ordinal)
);
)SQL";

constexpr Migration kMigrations[] = {
    {1, "initial catalog schema", kSchemaV1},
    {2, "chat history: conversations and chat turns with routing traces", kSchemaV2},
};

Result<int> userVersion(Db& db) {
    MSA_ASSIGN_OR_RETURN(Stmt s, db.prepare("PRAGMA user_version"));
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    return row ? static_cast<int>(s.int64(0)) : 0;
}

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }
int latestSchemaVersion() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<int> migrate(Db& db) {
    MSA_ASSIGN_OR_RETURN(const int found, userVersion(db));
    if (found > latestSchemaVersion())
        return unsupported("catalog '" + db.path().string() + "' has schema version " + std::to_string(found) +
                           ", newer than this build understands (" + std::to_string(latestSchemaVersion()) +
                           "); update MSA Workbench");
    for (const Migration& m : kMigrations) {
        if (m.version <= found) continue;
        Transaction tx(db);
        MSA_RETURN_IF_ERROR(tx.begin());
        // Re-read inside the write lock: another process may have migrated meanwhile.
        MSA_ASSIGN_OR_RETURN(const int now, userVersion(db));
        if (now >= m.version) continue;
        MSA_RETURN_IF_ERROR(db.exec(m.sql).withContext("migration " + std::to_string(m.version)));
        MSA_RETURN_IF_ERROR(db.exec("PRAGMA user_version = " + std::to_string(m.version)));
        MSA_RETURN_IF_ERROR(tx.commit());
        MSA_LOG(Debug) << "catalog " << db.path().string() << ": migrated to schema " << m.version << " ("
                       << m.what << ")";
    }
    return found;
}

}  // namespace msa::catalog

#include "core/catalog/import_pipeline.h"

#include "core/catalog/segmenter.h"
#include "core/catalog/text_decode.h"
#include "core/util/checksum.h"
#include "core/util/log.h"
#include "core/util/thread_pool.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace msa::catalog {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

int64_t nowUnix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string jsonDump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

// A file found by the walk.
struct Candidate {
    std::string path;
    int64_t size = 0;
    int64_t mtimeNs = 0;
    std::string walkError;   // set when the entry itself could not be examined
    ErrorCode walkCode = ErrorCode::Ok;
};

// What the catalog knew about a path before this run.
struct Known {
    int64_t size = 0;
    int64_t mtimeNs = 0;
    std::string hash;
    std::string status;
};

struct PreparedDocument {
    ExtractedDocument doc;
    std::string contentHash;
    std::vector<Segment> segments;
};

enum class Outcome { Unchanged, Imported, Updated, Touched, Skipped, Failed, Cancelled };

const char* outcomeName(Outcome o) {
    switch (o) {
        case Outcome::Unchanged: return "unchanged";
        case Outcome::Imported: return "imported";
        case Outcome::Updated: return "updated";
        case Outcome::Touched: return "touched";
        case Outcome::Skipped: return "skipped";
        case Outcome::Failed: return "failed";
        case Outcome::Cancelled: return "cancelled";
    }
    return "failed";
}

struct PreparedFile {
    size_t index = 0;
    Candidate file;
    Outcome outcome = Outcome::Failed;
    bool retryNextRun = false;   // store size -1 so the next run looks again
    std::string hash;
    std::string importer;
    std::string language;
    ErrorCode code = ErrorCode::Ok;
    std::string reason;
    std::vector<std::string> warnings;
    std::vector<PreparedDocument> docs;
};

bool statFile(const std::string& path, int64_t& size, int64_t& mtimeNs, int& err) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        err = errno;
        return false;
    }
    size = static_cast<int64_t>(st.st_size);
    mtimeNs = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    return true;
}

// Reads the whole file with read(2), not mmap: a file truncated by another process while mapped
// would kill us with SIGBUS, and "a file that changes while being read" is a case we must survive.
Status readWhole(const std::string& path, int64_t expectedSize, std::string& out, const CancelToken* cancel) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "opening '" + path + "'");
    out.resize(static_cast<size_t>(expectedSize));
    size_t got = 0;
    Status result;
    while (got < out.size()) {
        if (cancel && cancel->isCancelled()) {
            result = cancelled();
            break;
        }
        const size_t want = std::min<size_t>(out.size() - got, 8u << 20);
        const ssize_t n = ::read(fd, out.data() + got, want);
        if (n < 0) {
            if (errno == EINTR) continue;
            result = statusFromErrno(errno, "reading '" + path + "'");
            break;
        }
        if (n == 0) break;
        got += static_cast<size_t>(n);
    }
    if (result && got != out.size()) result = ioError("file shrank while being read");
    if (result) {
        char probe;
        if (::read(fd, &probe, 1) == 1) result = ioError("file grew while being read");
    }
    ::close(fd);
    return result;
}

PreparedFile prepare(size_t index, const Candidate& c, const Known* known, const ImportLimits& limits,
                     const CancelToken* cancel) {
    PreparedFile pf;
    pf.index = index;
    pf.file = c;
    auto fail = [&](Outcome o, ErrorCode code, std::string reason) {
        pf.outcome = o;
        pf.code = code;
        pf.reason = std::move(reason);
        pf.docs.clear();
        return std::move(pf);
    };
    if (cancel && cancel->isCancelled()) return fail(Outcome::Cancelled, ErrorCode::Cancelled, "cancelled");
    if (!c.walkError.empty()) return fail(Outcome::Failed, c.walkCode, c.walkError);
    if (c.size == 0) return fail(Outcome::Skipped, ErrorCode::InvalidArgument, "empty file (0 bytes)");
    if (static_cast<uint64_t>(c.size) > limits.maxFileBytes)
        return fail(Outcome::Skipped, ErrorCode::Unsupported,
                    "file is " + std::to_string(c.size) + " bytes, larger than the import limit max_file_bytes = " +
                        std::to_string(limits.maxFileBytes) + " (not read)");
    std::string bytes;
    if (Status s = readWhole(c.path, c.size, bytes, cancel); !s) {
        if (s.code() == ErrorCode::Cancelled) return fail(Outcome::Cancelled, s.code(), s.message());
        const bool changed = s.message().find("while being read") != std::string::npos;
        pf.retryNextRun = changed;
        return fail(Outcome::Failed, s.code(), changed ? s.message() + "; it will be retried by the next import"
                                                        : s.message());
    }
    pf.hash = xxh3_128(std::string_view(bytes)).hex();
    const bool wasImported = known && known->status == "imported";
    if (wasImported && known->hash == pf.hash) {
        pf.outcome = Outcome::Touched;   // only the mtime changed
        return pf;
    }
    const std::string_view head = std::string_view(bytes).substr(0, 8192);
    const Detection det = detectFileType(c.path, head);
    pf.importer = std::string(fileTypeName(det.type));
    pf.language = det.language;
    if (det.type == FileType::Unknown) return fail(Outcome::Skipped, ErrorCode::Unsupported, det.reason);

    Result<Extraction> ex = [&]() -> Result<Extraction> {
        try {
            return extractFile(c.path, det, bytes, limits, cancel);
        } catch (const std::exception& e) {
            // Libraries we call (nlohmann::json on odd input, std::regex on huge lines) may throw;
            // the file fails, the import goes on.
            return Status::fromException(e, "extracting");
        }
    }();
    if (!ex) {
        if (ex.status().code() == ErrorCode::Cancelled) return fail(Outcome::Cancelled, ErrorCode::Cancelled, "cancelled");
        // Unsupported content (binary, not a Slack export) is a skip; everything else is a failure.
        const Outcome o = ex.status().code() == ErrorCode::Unsupported ? Outcome::Skipped : Outcome::Failed;
        return fail(o, ex.status().code(), ex.status().message());
    }
    // The file must not have changed while we read and parsed it.
    int64_t size2 = 0, mtime2 = 0;
    int err = 0;
    if (!statFile(c.path, size2, mtime2, err) || size2 != c.size || mtime2 != c.mtimeNs) {
        pf.retryNextRun = true;
        return fail(Outcome::Failed, ErrorCode::IoError,
                    "file changed while being read; it will be retried by the next import");
    }
    pf.warnings = std::move(ex->warnings);
    if (pf.language.empty()) pf.language = ex->language;
    for (ExtractedDocument& d : ex->documents) {
        if (d.text.empty()) continue;
        PreparedDocument p;
        // Identity is (kind, text): a file copied under another name (whose title may come from the
        // file name) is still one document. Metadata and title come from the first file imported.
        Hasher h;
        h.update(d.kind);
        h.update(std::string_view("\0", 1));
        h.update(d.text);
        p.contentHash = h.digest128().hex();
        p.segments = segmentDocument(d, limits);
        p.doc = std::move(d);
        pf.docs.push_back(std::move(p));
    }
    if (pf.docs.empty()) return fail(Outcome::Failed, ErrorCode::InvalidArgument, "no text extracted");
    pf.outcome = wasImported || (known && known->status != "deleted") ? Outcome::Updated : Outcome::Imported;
    return pf;
}

// Walks the request paths. Directory symlinks are not followed (no loops); file symlinks are.
// FIFOs, sockets and devices are not files to import and are passed over (reading a FIFO would block).
struct WalkResult {
    std::vector<Candidate> files;
    std::vector<std::string> roots;          // absolute roots that exist (deletion is inferred under them)
    std::vector<Candidate> rootErrors;       // roots or folders that do not exist or cannot be listed
    std::vector<std::string> unlisted;       // folders that could not be listed: nothing under them is "deleted"
};

bool isVcsDir(const fs::path& p) {
    const std::string n = p.filename().string();
    return n == ".git" || n == ".hg" || n == ".svn";
}

WalkResult walk(const std::vector<fs::path>& paths, const std::unordered_set<std::string>& exclude,
                const CancelToken* cancel) {
    WalkResult w;
    auto addFile = [&](const fs::path& p) {
        Candidate c;
        c.path = p.string();
        if (exclude.count(c.path)) return;
        int err = 0;
        if (!statFile(c.path, c.size, c.mtimeNs, err)) {
            c.walkCode = statusFromErrno(err, "").code();
            c.walkError = err == ENOENT ? "broken symbolic link or vanished file" : statusFromErrno(err, "stat").message();
        }
        w.files.push_back(std::move(c));
    };
    auto unlistable = [&](const fs::path& dir, const std::error_code& ec) {
        Candidate c;
        c.path = dir.string();
        c.walkCode = ec == std::errc::permission_denied ? ErrorCode::PermissionDenied : ErrorCode::IoError;
        c.walkError = "cannot list folder: " + ec.message();
        w.rootErrors.push_back(std::move(c));
        w.unlisted.push_back(dir.string());
    };
    for (const fs::path& given : paths) {
        std::error_code ec;
        fs::path root = fs::absolute(given, ec).lexically_normal();
        if (!root.has_filename() && root.has_parent_path() && root != root.root_path()) root = root.parent_path();
        const fs::file_status st = fs::status(root, ec);
        if (ec || !fs::exists(st)) {
            Candidate c;
            c.path = root.string();
            c.walkCode = ErrorCode::NotFound;
            c.walkError = "path not found (its files are not marked deleted)";
            w.rootErrors.push_back(std::move(c));
            continue;
        }
        w.roots.push_back(root.string());
        if (!fs::is_directory(st)) {
            if (fs::is_regular_file(st)) addFile(root);
            continue;
        }
        // Depth-first with an explicit stack: no recursion depth limit, and each folder that cannot
        // be listed is reported by name.
        std::vector<fs::path> stack{root};
        while (!stack.empty()) {
            if (cancel && cancel->isCancelled()) return w;
            const fs::path dir = std::move(stack.back());
            stack.pop_back();
            fs::directory_iterator it(dir, ec), end;
            if (ec) {
                unlistable(dir, ec);
                continue;
            }
            for (; it != end; it.increment(ec)) {
                const fs::directory_entry& e = *it;
                std::error_code ec2;
                const fs::file_status ls = e.symlink_status(ec2);
                if (ec2) continue;
                if (fs::is_symlink(ls)) {
                    // A symlink to a file is imported under the link's path; to a folder it is not followed.
                    const fs::file_status target = fs::status(e.path(), ec2);
                    if (ec2 || !fs::exists(target)) addFile(e.path());   // reported as a broken link
                    else if (fs::is_regular_file(target)) addFile(e.path());
                } else if (fs::is_directory(ls)) {
                    if (!isVcsDir(e.path())) stack.push_back(e.path());
                } else if (fs::is_regular_file(ls)) {
                    addFile(e.path());
                }
            }
            if (ec) unlistable(dir, ec);   // listing stopped half-way
        }
    }
    std::sort(w.files.begin(), w.files.end(), [](const Candidate& a, const Candidate& b) { return a.path < b.path; });
    w.files.erase(std::unique(w.files.begin(), w.files.end(),
                              [](const Candidate& a, const Candidate& b) { return a.path == b.path; }),
                  w.files.end());
    return w;
}

bool underRoot(const std::string& path, const std::vector<std::string>& roots) {
    for (const std::string& r : roots) {
        if (path == r) return true;
        if (path.size() > r.size() && path.compare(0, r.size(), r) == 0 && (r.back() == '/' || path[r.size()] == '/'))
            return true;
    }
    return false;
}

// The single writer: owns the statements, the open batch transaction and the run's counters.
class Writer {
public:
    Writer(Db& db, int64_t collectionId, int64_t runId, ImportReport& report)
        : m_db(db), m_collectionId(collectionId), m_runId(runId), m_report(report) {}

    Status init() {
        MSA_ASSIGN_OR_RETURN(m_upsertFile, m_db.prepare(R"SQL(
            INSERT INTO source_files(collection_id, path, size, mtime_ns, content_hash, importer, language, status,
                                     error_code, error, warnings_json, last_run_id, updated_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
            ON CONFLICT(collection_id, path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
              content_hash = excluded.content_hash, importer = excluded.importer, language = excluded.language,
              status = excluded.status, error_code = excluded.error_code, error = excluded.error,
              warnings_json = excluded.warnings_json, last_run_id = excluded.last_run_id,
              updated_at = excluded.updated_at
            RETURNING id)SQL"));
        MSA_ASSIGN_OR_RETURN(m_touchFile, m_db.prepare(
            "UPDATE source_files SET size = ?3, mtime_ns = ?4, last_run_id = ?5, updated_at = ?6 "
            "WHERE collection_id = ?1 AND path = ?2"));
        MSA_ASSIGN_OR_RETURN(m_oldLinks, m_db.prepare("SELECT document_id FROM document_sources WHERE source_file_id = ?"));
        MSA_ASSIGN_OR_RETURN(m_dropLinks, m_db.prepare("DELETE FROM document_sources WHERE source_file_id = ?"));
        MSA_ASSIGN_OR_RETURN(m_gcDoc, m_db.prepare(
            "DELETE FROM documents WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM document_sources WHERE document_id = ?1)"));
        MSA_ASSIGN_OR_RETURN(m_insertDoc, m_db.prepare(R"SQL(
            INSERT INTO documents(content_hash, kind, title, author, participants_json, date_unix, metadata_json, text,
                                  n_bytes, created_at)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(content_hash) DO NOTHING)SQL"));
        MSA_ASSIGN_OR_RETURN(m_findDoc, m_db.prepare("SELECT id FROM documents WHERE content_hash = ?"));
        MSA_ASSIGN_OR_RETURN(m_insertSeg, m_db.prepare(
            "INSERT INTO memory_documents(document_id, segment_index, segment_kind, span_start, span_end, label, "
            "token_estimate) VALUES (?, ?, ?, ?, ?, ?, ?)"));
        MSA_ASSIGN_OR_RETURN(m_link, m_db.prepare(
            "INSERT OR REPLACE INTO document_sources(source_file_id, ordinal, document_id, locator) VALUES (?, ?, ?, ?)"));
        MSA_ASSIGN_OR_RETURN(m_runFile, m_db.prepare(
            "INSERT OR REPLACE INTO import_run_files(run_id, path, outcome, importer, error_code, reason, n_documents) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"));
        MSA_ASSIGN_OR_RETURN(m_markDeleted, m_db.prepare(
            "UPDATE source_files SET status = 'deleted', error_code = NULL, error = NULL, last_run_id = ?2, "
            "updated_at = ?3 WHERE id = ?1"));
        MSA_ASSIGN_OR_RETURN(m_updateRun, m_db.prepare(
            "UPDATE import_runs SET n_seen = ?2, n_imported = ?3, n_updated = ?4, n_unchanged = ?5, n_skipped = ?6, "
            "n_failed = ?7, n_deleted = ?8, n_documents = ?9, n_bytes = ?10 WHERE id = ?1"));
        return {};
    }

    Status write(PreparedFile& pf) {
        if (pf.outcome == Outcome::Unchanged) {
            ++m_report.nUnchanged;
            return {};
        }
        MSA_RETURN_IF_ERROR(ensureBatch());
        const int64_t now = nowUnix();
        FileReport fr{pf.file.path, outcomeName(pf.outcome), pf.importer, {}, pf.reason, 0};
        if (pf.code != ErrorCode::Ok) fr.errorCode = std::string(errorCodeName(pf.code));
        if (pf.outcome == Outcome::Touched) {
            m_touchFile.reset();
            m_touchFile.bind(1, m_collectionId).bind(2, pf.file.path).bind(3, pf.file.size).bind(4, pf.file.mtimeNs)
                .bind(5, m_runId).bind(6, now);
            MSA_RETURN_IF_ERROR(m_touchFile.run());
            ++m_report.nTouched;
        } else {
            const bool ok = pf.outcome == Outcome::Imported || pf.outcome == Outcome::Updated;
            const char* status = ok ? "imported" : pf.outcome == Outcome::Skipped ? "skipped" : "failed";
            m_upsertFile.reset();
            m_upsertFile.bind(1, m_collectionId).bind(2, pf.file.path)
                .bind(3, pf.retryNextRun ? int64_t{-1} : pf.file.size).bind(4, pf.file.mtimeNs);
            if (pf.hash.empty()) m_upsertFile.bindNull(5);
            else m_upsertFile.bind(5, pf.hash);
            if (pf.importer.empty()) m_upsertFile.bindNull(6);
            else m_upsertFile.bind(6, pf.importer);
            if (pf.language.empty()) m_upsertFile.bindNull(7);
            else m_upsertFile.bind(7, pf.language);
            m_upsertFile.bind(8, status);
            if (ok) m_upsertFile.bindNull(9).bindNull(10);
            else m_upsertFile.bind(9, fr.errorCode).bind(10, pf.reason);
            m_upsertFile.bind(11, jsonDump(pf.warnings)).bind(12, m_runId).bind(13, now);
            MSA_ASSIGN_OR_RETURN(bool row, m_upsertFile.step());
            if (!row) return Status(ErrorCode::Internal, "upsert of source file returned no id");
            const int64_t fileId = m_upsertFile.int64(0);
            m_upsertFile.reset();
            MSA_ASSIGN_OR_RETURN(std::vector<int64_t> old, unlink(fileId));
            int ordinal = 0;
            for (PreparedDocument& d : pf.docs) {
                MSA_ASSIGN_OR_RETURN(int64_t docId, insertDocument(d));
                m_link.reset();
                m_link.bind(1, fileId).bind(2, static_cast<int64_t>(ordinal++)).bind(3, docId);
                if (d.doc.locator.empty()) m_link.bindNull(4);
                else m_link.bind(4, d.doc.locator);
                MSA_RETURN_IF_ERROR(m_link.run());
            }
            MSA_RETURN_IF_ERROR(collect(old));
            fr.nDocuments = ordinal;
            m_report.nDocuments += static_cast<uint64_t>(ordinal);
            m_report.nBytes += static_cast<uint64_t>(pf.file.size);
            switch (pf.outcome) {
                case Outcome::Imported: ++m_report.nImported; break;
                case Outcome::Updated: ++m_report.nUpdated; break;
                case Outcome::Skipped: ++m_report.nSkipped; break;
                default: ++m_report.nFailed; break;
            }
        }
        if (!pf.warnings.empty() && fr.reason.empty()) {
            for (const std::string& w : pf.warnings) fr.reason += (fr.reason.empty() ? "" : "; ") + w;
        }
        MSA_RETURN_IF_ERROR(recordRunFile(fr));
        if (pf.outcome == Outcome::Skipped || pf.outcome == Outcome::Failed || !pf.warnings.empty())
            m_report.files.push_back(std::move(fr));
        ++m_batchFiles;
        return {};
    }

    // Marks a path that vanished from the disk as deleted and drops its documents.
    Status markDeleted(int64_t fileId, const std::string& path) {
        MSA_RETURN_IF_ERROR(ensureBatch());
        m_markDeleted.reset();
        m_markDeleted.bind(1, fileId).bind(2, m_runId).bind(3, nowUnix());
        MSA_RETURN_IF_ERROR(m_markDeleted.run());
        MSA_ASSIGN_OR_RETURN(std::vector<int64_t> old, unlink(fileId));
        MSA_RETURN_IF_ERROR(collect(old));
        FileReport fr{path, "deleted", {}, {}, "no longer on disk", 0};
        MSA_RETURN_IF_ERROR(recordRunFile(fr));
        m_report.files.push_back(std::move(fr));
        ++m_report.nDeleted;
        ++m_batchFiles;
        return {};
    }

    Status recordRootError(const Candidate& c) {
        MSA_RETURN_IF_ERROR(ensureBatch());
        FileReport fr{c.path, "failed", {}, std::string(errorCodeName(c.walkCode)), c.walkError, 0};
        MSA_RETURN_IF_ERROR(recordRunFile(fr));
        m_report.files.push_back(std::move(fr));
        ++m_report.nFailed;
        return {};
    }

    bool batchDue(const ImportRequest& req) const {
        return m_tx && (m_batchFiles >= req.batchFiles || m_batchBytes >= req.batchBytes ||
                        Clock::now() - m_batchStart >= std::chrono::milliseconds(req.batchMillis));
    }

    // Rolls back the open batch (after a write failed half-way through a file).
    void abandon() { m_tx.reset(); }

    Status commit() {
        if (!m_tx) return {};
        m_updateRun.reset();
        m_updateRun.bind(1, m_runId).bind(2, static_cast<int64_t>(m_report.nSeen))
            .bind(3, static_cast<int64_t>(m_report.nImported)).bind(4, static_cast<int64_t>(m_report.nUpdated))
            .bind(5, static_cast<int64_t>(m_report.nUnchanged + m_report.nTouched))
            .bind(6, static_cast<int64_t>(m_report.nSkipped)).bind(7, static_cast<int64_t>(m_report.nFailed))
            .bind(8, static_cast<int64_t>(m_report.nDeleted)).bind(9, static_cast<int64_t>(m_report.nDocuments))
            .bind(10, static_cast<int64_t>(m_report.nBytes));
        MSA_RETURN_IF_ERROR(m_updateRun.run());
        MSA_RETURN_IF_ERROR(m_tx->commit());
        m_tx.reset();
        return {};
    }

private:
    Status ensureBatch() {
        if (m_tx) return {};
        m_tx = std::make_unique<Transaction>(m_db);
        MSA_RETURN_IF_ERROR(m_tx->begin());
        m_batchStart = Clock::now();
        m_batchFiles = 0;
        m_batchBytes = 0;
        return {};
    }

    Result<std::vector<int64_t>> unlink(int64_t fileId) {
        std::vector<int64_t> old;
        m_oldLinks.reset();
        m_oldLinks.bind(1, fileId);
        for (;;) {
            MSA_ASSIGN_OR_RETURN(bool row, m_oldLinks.step());
            if (!row) break;
            old.push_back(m_oldLinks.int64(0));
        }
        m_oldLinks.reset();
        m_dropLinks.reset();
        m_dropLinks.bind(1, fileId);
        MSA_RETURN_IF_ERROR(m_dropLinks.run());
        return old;
    }

    // Deletes documents (and, by cascade, their memory documents) no longer linked from any file.
    Status collect(const std::vector<int64_t>& docIds) {
        for (int64_t id : docIds) {
            m_gcDoc.reset();
            m_gcDoc.bind(1, id);
            MSA_RETURN_IF_ERROR(m_gcDoc.run());
        }
        return {};
    }

    Result<int64_t> insertDocument(PreparedDocument& d) {
        const ExtractedDocument& doc = d.doc;
        m_insertDoc.reset();
        m_insertDoc.bind(1, d.contentHash).bind(2, doc.kind).bind(3, doc.title);
        if (doc.author.empty()) m_insertDoc.bindNull(4);
        else m_insertDoc.bind(4, doc.author);
        m_insertDoc.bind(5, jsonDump(doc.participants)).bind(6, doc.dateUnix).bind(7, jsonDump(doc.metadata))
            .bind(8, doc.text).bind(9, static_cast<int64_t>(doc.text.size())).bind(10, nowUnix());
        MSA_RETURN_IF_ERROR(m_insertDoc.run());
        const bool inserted = m_db.changes() > 0;
        m_findDoc.reset();
        m_findDoc.bind(1, d.contentHash);
        MSA_ASSIGN_OR_RETURN(bool row, m_findDoc.step());
        if (!row) return Status(ErrorCode::Internal, "document vanished after insert");
        const int64_t docId = m_findDoc.int64(0);
        m_findDoc.reset();
        if (inserted) {
            ++m_report.nNewDocuments;
            m_batchBytes += doc.text.size();
            int index = 0;
            for (const Segment& s : d.segments) {
                m_insertSeg.reset();
                m_insertSeg.bind(1, docId).bind(2, static_cast<int64_t>(index++)).bind(3, s.kind)
                    .bind(4, static_cast<int64_t>(s.start)).bind(5, static_cast<int64_t>(s.end));
                if (s.label.empty()) m_insertSeg.bindNull(6);
                else m_insertSeg.bind(6, s.label);
                m_insertSeg.bind(7, s.tokenEstimate);
                MSA_RETURN_IF_ERROR(m_insertSeg.run());
                ++m_report.nMemoryDocuments;
            }
        }
        return docId;
    }

    Status recordRunFile(const FileReport& fr) {
        m_runFile.reset();
        m_runFile.bind(1, m_runId).bind(2, fr.path).bind(3, fr.outcome);
        if (fr.importer.empty()) m_runFile.bindNull(4);
        else m_runFile.bind(4, fr.importer);
        if (fr.errorCode.empty()) m_runFile.bindNull(5);
        else m_runFile.bind(5, fr.errorCode);
        if (fr.reason.empty()) m_runFile.bindNull(6);
        else m_runFile.bind(6, fr.reason);
        m_runFile.bind(7, static_cast<int64_t>(fr.nDocuments));
        return m_runFile.run();
    }

    Db& m_db;
    int64_t m_collectionId;
    int64_t m_runId;
    ImportReport& m_report;
    std::unique_ptr<Transaction> m_tx;
    Clock::time_point m_batchStart;
    int m_batchFiles = 0;
    uint64_t m_batchBytes = 0;
    Stmt m_upsertFile, m_touchFile, m_oldLinks, m_dropLinks, m_gcDoc, m_insertDoc, m_findDoc, m_insertSeg, m_link,
        m_runFile, m_markDeleted, m_updateRun;
};

// Completed extractions, handed from the pool to the writer.
class ResultQueue {
public:
    void push(PreparedFile pf) {
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            m_items.push_back(std::move(pf));
        }
        m_cv.notify_one();
    }
    PreparedFile pop() {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_cv.wait(lock, [this] { return !m_items.empty(); });
        PreparedFile pf = std::move(m_items.front());
        m_items.pop_front();
        return pf;
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<PreparedFile> m_items;
};

// Advisory whole-run lock: flock() is released by the kernel when the process dies, even by SIGKILL.
class ImportLock {
public:
    ~ImportLock() {
        if (m_fd >= 0) ::close(m_fd);
    }
    Status acquire(const fs::path& catalogPath) {
        const std::string lockPath = catalogPath.string() + ".import-lock";
        m_fd = ::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (m_fd < 0) return statusFromErrno(errno, "creating lock file '" + lockPath + "'");
        if (::flock(m_fd, LOCK_EX | LOCK_NB) != 0)
            return Status(ErrorCode::Busy, "another import is running on catalog '" + catalogPath.string() + "'");
        return {};
    }

private:
    int m_fd = -1;
};

}  // namespace

Result<ImportReport> importPaths(Catalog& catalog, const ImportRequest& req, const ImportProgressFn& progress,
                                 const CancelToken* cancel) {
    const auto t0 = Clock::now();
    if (req.paths.empty()) return invalidArgument("nothing to import: no paths given");
    ImportLock lock;
    MSA_RETURN_IF_ERROR(lock.acquire(catalog.path()));
    Db& db = catalog.db();

    ImportReport report;
    report.collection = req.collection;
    // A run left 'running' by a killed process is over.
    MSA_RETURN_IF_ERROR(db.exec("UPDATE import_runs SET status = 'interrupted' WHERE status = 'running'"));

    std::unordered_set<std::string> exclude;
    {
        std::error_code ec;
        const std::string cat = fs::absolute(catalog.path(), ec).lexically_normal().string();
        for (const char* suffix : {"", "-wal", "-shm", "-journal", ".import-lock"}) exclude.insert(cat + suffix);
    }
    WalkResult w = walk(req.paths, exclude, cancel);
    int64_t collectionId = 0;
    for (const std::string& root : w.roots) {
        MSA_ASSIGN_OR_RETURN(collectionId, catalog.ensureCollection(req.collection, root));
    }
    if (collectionId == 0) {
        MSA_ASSIGN_OR_RETURN(collectionId, catalog.ensureCollection(req.collection));
    }

    int64_t runId = 0;
    {
        MSA_ASSIGN_OR_RETURN(Stmt ins, db.prepare(
            "INSERT INTO import_runs(collection_id, started_at, status, roots_json) VALUES (?, ?, 'running', ?)"));
        ins.bind(1, collectionId).bind(2, nowUnix()).bind(3, jsonDump(w.roots));
        MSA_RETURN_IF_ERROR(ins.run());
        runId = db.lastInsertRowid();
    }
    report.runId = runId;

    // What the catalog knew before this run (one row per path: memory grows with the archive size,
    // ~100 bytes a file; the documents themselves are never held).
    std::unordered_map<std::string, std::pair<int64_t, Known>> known;
    {
        MSA_ASSIGN_OR_RETURN(Stmt s, db.prepare(
            "SELECT id, path, size, mtime_ns, coalesce(content_hash,''), status FROM source_files WHERE collection_id = ?"));
        s.bind(1, collectionId);
        for (;;) {
            MSA_ASSIGN_OR_RETURN(bool row, s.step());
            if (!row) break;
            known[s.text(1)] = {s.int64(0), Known{s.int64(2), s.int64(3), s.text(4), s.text(5)}};
        }
    }

    Writer writer(db, collectionId, runId, report);
    MSA_RETURN_IF_ERROR(writer.init());
    for (const Candidate& c : w.rootErrors) MSA_RETURN_IF_ERROR(writer.recordRootError(c));

    uint64_t totalBytes = 0;
    for (const Candidate& c : w.files) totalBytes += static_cast<uint64_t>(std::max<int64_t>(0, c.size));
    report.nSeen = w.files.size();
    report.nBytesSeen = totalBytes;
    ProgressMeter meter("import", w.files.size(),
                        [&](const Progress& p) {
                            if (progress) progress(p, report.nDocuments);
                        },
                        std::chrono::milliseconds(100), totalBytes);

    Status failure;
    {
        ResultQueue results;
        ThreadPool pool(static_cast<size_t>(std::max(1, req.nThreads)));
        const size_t maxInFlight = static_cast<size_t>(std::max(1, req.nThreads)) * 8;
        std::map<size_t, PreparedFile> ready;   // reorder buffer
        size_t nextDispatch = 0, nextWrite = 0, inFlight = 0;
        // Bytes of the files dispatched and not yet written: extraction holds a file's bytes and its
        // text, so a run of huge files is throttled (one at a time past the budget).
        uint64_t bytesInFlight = 0;
        const uint64_t bytesBudget = std::max<uint64_t>(64ull << 20, req.limits.maxFileBytes);
        auto stopped = [&] { return (cancel && cancel->isCancelled()) || !failure.isOk(); };
        while (nextWrite < w.files.size()) {
            while (!stopped() && nextDispatch < w.files.size() && nextDispatch - nextWrite < maxInFlight &&
                   (bytesInFlight < bytesBudget || nextDispatch == nextWrite)) {
                const size_t i = nextDispatch++;
                const Candidate& c = w.files[i];
                auto k = known.find(c.path);
                const Known* kn = k == known.end() ? nullptr : &k->second.second;
                if (kn && c.walkError.empty() && kn->status != "deleted" && kn->size == c.size &&
                    kn->mtimeNs == c.mtimeNs) {
                    PreparedFile pf;
                    pf.index = i;
                    pf.file = c;
                    pf.outcome = Outcome::Unchanged;
                    ready.emplace(i, std::move(pf));
                    continue;
                }
                ++inFlight;
                if (static_cast<uint64_t>(std::max<int64_t>(0, c.size)) <= req.limits.maxFileBytes)
                    bytesInFlight += static_cast<uint64_t>(std::max<int64_t>(0, c.size));
                pool.submit([&results, &req, cancel, i, c, kn] {
                    // Every dispatched file must come back, or the writer would wait forever.
                    try {
                        results.push(prepare(i, c, kn, req.limits, cancel));
                    } catch (const std::exception& e) {
                        PreparedFile pf;
                        pf.index = i;
                        pf.file = c;
                        pf.outcome = Outcome::Failed;
                        const Status s = Status::fromException(e, "importing");
                        pf.code = s.code();
                        pf.reason = s.message();
                        results.push(std::move(pf));
                    }
                });
            }
            if (!ready.count(nextWrite)) {
                if (inFlight == 0) break;   // stopped: nothing more will arrive
                PreparedFile pf = results.pop();
                --inFlight;
                ready.emplace(pf.index, std::move(pf));
                continue;
            }
            while (!ready.empty() && ready.begin()->first == nextWrite) {
                PreparedFile pf = std::move(ready.begin()->second);
                ready.erase(ready.begin());
                ++nextWrite;
                if (pf.outcome != Outcome::Unchanged &&
                    static_cast<uint64_t>(std::max<int64_t>(0, pf.file.size)) <= req.limits.maxFileBytes)
                    bytesInFlight -= std::min<uint64_t>(bytesInFlight, static_cast<uint64_t>(std::max<int64_t>(0, pf.file.size)));
                if (pf.outcome == Outcome::Cancelled || stopped()) continue;   // not written; the next run redoes it
                if (Status s = writer.write(pf); !s) {
                    failure = s.withContext("writing '" + pf.file.path + "'");
                    continue;
                }
                meter.advance(1, static_cast<uint64_t>(std::max<int64_t>(0, pf.file.size)), pf.file.path);
                if (writer.batchDue(req)) {
                    if (Status s = writer.commit(); !s) failure = s;
                }
            }
            if (stopped() && inFlight == 0 && !ready.count(nextWrite)) break;
        }
        // Drain what is still running so the pool's threads never outlive the queue they push to.
        while (inFlight > 0) {
            (void)results.pop();
            --inFlight;
        }
    }
    report.cancelled = cancel && cancel->isCancelled();

    // Files under the walked roots that the walk did not see are gone. Only inferred after a
    // complete walk and write: a cancelled run has not seen everything.
    if (failure.isOk() && !report.cancelled) {
        std::unordered_set<std::string> seen;
        seen.reserve(w.files.size());
        for (const Candidate& c : w.files) seen.insert(c.path);
        std::vector<std::pair<std::string, int64_t>> gone;
        for (const auto& [path, entry] : known)
            if (entry.second.status != "deleted" && !seen.count(path) && underRoot(path, w.roots) &&
                !underRoot(path, w.unlisted))
                gone.emplace_back(path, entry.first);
        std::sort(gone.begin(), gone.end());
        for (const auto& [path, id] : gone) {
            if (Status s = writer.markDeleted(id, path); !s) {
                failure = s;
                break;
            }
        }
    }
    if (failure.isOk()) failure = writer.commit();
    if (!failure.isOk()) writer.abandon();

    report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    {
        const char* status = !failure.isOk() ? "failed" : report.cancelled ? "cancelled" : "completed";
        Result<Stmt> fin = db.prepare("UPDATE import_runs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1");
        if (fin) {
            fin->bind(1, runId).bind(2, status).bind(3, nowUnix());
            if (failure.isOk()) fin->bindNull(4);
            else fin->bind(4, failure.toString());
            (void)fin->run();
        }
    }
    meter.finish();
    if (!failure.isOk()) return failure;
    return report;
}

nlohmann::json toJson(const ImportReport& r) {
    nlohmann::json files = nlohmann::json::array();
    for (const FileReport& f : r.files) {
        nlohmann::json j = {{"path", f.path}, {"outcome", f.outcome}, {"documents", f.nDocuments}};
        if (!f.importer.empty()) j["importer"] = f.importer;
        if (!f.errorCode.empty()) j["error_code"] = f.errorCode;
        if (!f.reason.empty()) j["reason"] = f.reason;
        files.push_back(std::move(j));
    }
    return {{"run_id", r.runId},
            {"collection", r.collection},
            {"cancelled", r.cancelled},
            {"seconds", r.seconds},
            {"files_seen", r.nSeen},
            {"imported", r.nImported},
            {"updated", r.nUpdated},
            {"unchanged", r.nUnchanged + r.nTouched},
            {"touched", r.nTouched},
            {"skipped", r.nSkipped},
            {"failed", r.nFailed},
            {"deleted", r.nDeleted},
            {"documents", r.nDocuments},
            {"new_documents", r.nNewDocuments},
            {"memory_documents", r.nMemoryDocuments},
            {"bytes_read", r.nBytes},
            {"bytes_seen", r.nBytesSeen},
            {"files_per_second", r.seconds > 0 ? static_cast<double>(r.nSeen) / r.seconds : 0.0},
            {"mb_per_second", r.seconds > 0 ? static_cast<double>(r.nBytesSeen) / 1e6 / r.seconds : 0.0},
            {"files", std::move(files)}};
}

}  // namespace msa::catalog

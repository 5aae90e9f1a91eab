// catalog_history.cpp: the chat history (schema v2: conversations, chat_turns) and the portable
// documents a bank archive carries (Catalog::portableDocuments / addPortableDocuments).
#include "core/catalog/catalog.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <map>

namespace msa::catalog {
namespace {

int64_t nowUnix() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string jsonText(const nlohmann::json& j) {
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::vector<int64_t> parseIdArray(const std::string& text) {
    std::vector<int64_t> out;
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& v : j)
        if (v.is_number_integer()) out.push_back(v.get<int64_t>());
    return out;
}

constexpr const char* kTurnSelect =
    "SELECT id, conversation_id, ordinal, question, answer, citations_json, trace_json, method, created_at, seconds "
    "FROM chat_turns ";

ChatTurn turnRow(const Stmt& s) {
    ChatTurn t;
    t.id = s.int64(0);
    t.conversationId = s.int64(1);
    t.ordinal = s.int64(2);
    t.question = s.text(3);
    t.answer = s.text(4);
    t.citations = parseIdArray(s.text(5));
    t.traceJson = s.text(6);
    t.method = s.text(7);
    t.createdAt = s.int64(8);
    t.seconds = s.real(9);
    return t;
}

constexpr const char* kConversationSelect =
    "SELECT c.id, c.title, c.created_at, c.bank_path, c.model_fingerprint, "
    "(SELECT count(*) FROM chat_turns t WHERE t.conversation_id = c.id) FROM conversations c ";

ConversationInfo conversationRow(const Stmt& s) {
    ConversationInfo c;
    c.id = s.int64(0);
    c.title = s.text(1);
    c.createdAt = s.int64(2);
    c.bankPath = s.text(3);
    c.modelFingerprint = s.text(4);
    c.nTurns = s.int64(5);
    return c;
}

}  // namespace

// ---- chat history ---------------------------------------------------------------------------------

Status Catalog::requireSchema(int version, std::string_view what) const {
    if (m_schemaVersion >= version) return {};
    return unsupported("catalog " + quotedName(path().string()) + " has schema version " + std::to_string(m_schemaVersion) +
                       "; " + std::string(what) + " needs version " + std::to_string(version) +
                       " (a read-write open upgrades it, e.g. msa history --catalog FILE)");
}

Result<int64_t> Catalog::createConversation(const std::string& title, const std::string& bankPath,
                                            const std::string& modelFingerprint) {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(
        "INSERT INTO conversations(title, created_at, bank_path, model_fingerprint) VALUES (?, ?, ?, ?)"));
    s.bind(1, title).bind(2, nowUnix()).bind(3, bankPath).bind(4, modelFingerprint);
    MSA_RETURN_IF_ERROR(s.run().withContext("creating a conversation in " + quotedName(path().string())));
    return m_db.lastInsertRowid();
}

Result<int64_t> Catalog::addChatTurn(const ChatTurn& t) {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    if (t.question.empty()) return invalidArgument("a chat turn needs a question");
    const nlohmann::json trace = nlohmann::json::parse(t.traceJson, nullptr, false);
    if (trace.is_discarded()) return invalidArgument("the routing trace of a chat turn is not valid JSON");
    Transaction tx(m_db);
    MSA_RETURN_IF_ERROR(tx.begin());
    MSA_ASSIGN_OR_RETURN(Stmt c, m_db.prepare(
        "SELECT (SELECT count(*) FROM conversations WHERE id = ?1), "
        "(SELECT coalesce(max(ordinal) + 1, 0) FROM chat_turns WHERE conversation_id = ?1)"));
    c.bind(1, t.conversationId);
    MSA_ASSIGN_OR_RETURN(bool row, c.step());
    if (!row || c.int64(0) == 0)
        return notFound("no conversation " + std::to_string(t.conversationId) + " in catalog " + quotedName(path().string()));
    const int64_t ordinal = c.int64(1);
    c.reset();
    MSA_ASSIGN_OR_RETURN(Stmt ins, m_db.prepare(
        "INSERT INTO chat_turns(conversation_id, ordinal, question, answer, citations_json, trace_json, method, "
        "created_at, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    ins.bind(1, t.conversationId).bind(2, ordinal).bind(3, t.question).bind(4, t.answer)
        .bind(5, jsonText(nlohmann::json(t.citations))).bind(6, t.traceJson).bind(7, t.method)
        .bind(8, t.createdAt ? t.createdAt : nowUnix()).bind(9, t.seconds);
    MSA_RETURN_IF_ERROR(ins.run());
    const int64_t id = m_db.lastInsertRowid();
    MSA_RETURN_IF_ERROR(tx.commit());
    return id;
}

Result<std::vector<ConversationInfo>> Catalog::conversations() const {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(std::string(kConversationSelect) + "ORDER BY c.created_at DESC, c.id DESC"));
    std::vector<ConversationInfo> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        out.push_back(conversationRow(s));
    }
    return out;
}

Result<ConversationInfo> Catalog::conversation(int64_t conversationId) const {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(std::string(kConversationSelect) + "WHERE c.id = ?"));
    s.bind(1, conversationId);
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) return notFound("no conversation " + std::to_string(conversationId) + " in catalog " + quotedName(path().string()));
    return conversationRow(s);
}

Result<std::vector<ChatTurn>> Catalog::turns(int64_t conversationId) const {
    MSA_ASSIGN_OR_RETURN(ConversationInfo c, conversation(conversationId));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(std::string(kTurnSelect) + "WHERE conversation_id = ? ORDER BY ordinal"));
    s.bind(1, c.id);
    std::vector<ChatTurn> out;
    for (;;) {
        MSA_ASSIGN_OR_RETURN(bool row, s.step());
        if (!row) break;
        out.push_back(turnRow(s));
    }
    return out;
}

Result<ChatTurn> Catalog::turn(int64_t turnId) const {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare(std::string(kTurnSelect) + "WHERE id = ?"));
    s.bind(1, turnId);
    MSA_ASSIGN_OR_RETURN(bool row, s.step());
    if (!row) return notFound("no chat turn " + std::to_string(turnId) + " in catalog " + quotedName(path().string()));
    return turnRow(s);
}

Status Catalog::deleteConversation(int64_t conversationId) {
    MSA_RETURN_IF_ERROR(requireSchema(2, "the chat history"));
    MSA_ASSIGN_OR_RETURN(Stmt s, m_db.prepare("DELETE FROM conversations WHERE id = ?"));
    s.bind(1, conversationId);
    MSA_RETURN_IF_ERROR(s.run());
    if (m_db.changes() == 0)
        return notFound("no conversation " + std::to_string(conversationId) + " in catalog " + quotedName(path().string()));
    return {};
}

// ---- portable documents ---------------------------------------------------------------------------

Result<std::vector<PortableDocument>> Catalog::portableDocuments(std::span<const int64_t> ids) const {
    MSA_ASSIGN_OR_RETURN(Stmt seg, m_db.prepare(
        "SELECT id, document_id, segment_index, segment_kind, span_start, span_end, coalesce(label,''), token_estimate, "
        "token_count FROM memory_documents WHERE id = ?"));
    std::map<int64_t, std::vector<MemoryDocumentInfo>> byDocument;
    for (const int64_t id : ids) {
        seg.reset();
        seg.bind(1, id);
        MSA_ASSIGN_OR_RETURN(bool row, seg.step());
        if (!row) continue;
        MemoryDocumentInfo m;
        m.id = seg.int64(0);
        m.segmentIndex = static_cast<int>(seg.int64(2));
        m.segmentKind = seg.text(3);
        m.spanStart = seg.int64(4);
        m.spanEnd = seg.int64(5);
        m.label = seg.text(6);
        m.tokenEstimate = seg.int64(7);
        m.tokenCount = seg.optInt64(8);
        byDocument[seg.int64(1)].push_back(std::move(m));
    }
    MSA_ASSIGN_OR_RETURN(Stmt src, m_db.prepare(
        "SELECT c.name, f.path, coalesce(ds.locator,'') FROM document_sources ds "
        "JOIN source_files f ON f.id = ds.source_file_id JOIN collections c ON c.id = f.collection_id "
        "WHERE ds.document_id = ? ORDER BY c.name, f.path, ds.ordinal"));
    std::vector<PortableDocument> out;
    for (auto& [documentId, segments] : byDocument) {
        PortableDocument p;
        MSA_ASSIGN_OR_RETURN(p.document, document(documentId));
        std::sort(segments.begin(), segments.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        p.document.segments = std::move(segments);
        src.reset();
        src.bind(1, documentId);
        for (;;) {
            MSA_ASSIGN_OR_RETURN(bool row, src.step());
            if (!row) break;
            p.sources.push_back({src.text(0), src.text(1), src.text(2)});
        }
        out.push_back(std::move(p));
    }
    return out;
}

Result<PortableImportReport> Catalog::addPortableDocuments(const std::vector<PortableDocument>& docs) {
    PortableImportReport rep;
    Transaction tx(m_db);
    MSA_RETURN_IF_ERROR(tx.begin());
    const int64_t now = nowUnix();
    MSA_ASSIGN_OR_RETURN(Stmt findDoc, m_db.prepare("SELECT id FROM documents WHERE content_hash = ?"));
    MSA_ASSIGN_OR_RETURN(Stmt insDoc, m_db.prepare(
        "INSERT INTO documents(content_hash, kind, title, author, participants_json, date_unix, metadata_json, text, "
        "n_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    MSA_ASSIGN_OR_RETURN(Stmt insColl, m_db.prepare("INSERT OR IGNORE INTO collections(name, created_at) VALUES (?, ?)"));
    MSA_ASSIGN_OR_RETURN(Stmt findFile, m_db.prepare(
        "SELECT f.id FROM source_files f JOIN collections c ON c.id = f.collection_id WHERE c.name = ? AND f.path = ?"));
    MSA_ASSIGN_OR_RETURN(Stmt insFile, m_db.prepare(
        "INSERT INTO source_files(collection_id, path, size, mtime_ns, importer, status, updated_at) "
        "SELECT id, ?, 0, 0, ?, 'imported', ? FROM collections WHERE name = ?"));
    MSA_ASSIGN_OR_RETURN(Stmt findLink, m_db.prepare(
        "SELECT count(*) FROM document_sources WHERE source_file_id = ? AND document_id = ?"));
    MSA_ASSIGN_OR_RETURN(Stmt insLink, m_db.prepare(
        "INSERT INTO document_sources(source_file_id, ordinal, document_id, locator) SELECT ?1, "
        "(SELECT coalesce(max(ordinal) + 1, 0) FROM document_sources WHERE source_file_id = ?1), ?2, ?3"));
    MSA_ASSIGN_OR_RETURN(Stmt findSeg, m_db.prepare(
        "SELECT document_id, span_start, span_end FROM memory_documents WHERE id = ?"));
    MSA_ASSIGN_OR_RETURN(Stmt insSeg, m_db.prepare(
        "INSERT INTO memory_documents(id, document_id, segment_index, segment_kind, span_start, span_end, label, "
        "token_estimate, token_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    for (const PortableDocument& p : docs) {
        const DocumentInfo& d = p.document;
        if (d.contentHash.empty() || d.kind.empty())
            return invalidArgument("a portable document needs a content hash and a kind");
        if (p.sources.empty())
            return invalidArgument("portable document " + quotedName(d.title) + " has no source (collection and path)");
        findDoc.reset();
        findDoc.bind(1, d.contentHash);
        MSA_ASSIGN_OR_RETURN(bool have, findDoc.step());
        int64_t docId = have ? findDoc.int64(0) : 0;
        findDoc.reset();
        if (!have) {
            insDoc.reset();
            insDoc.bind(1, d.contentHash).bind(2, d.kind).bind(3, d.title);
            if (d.author.empty()) insDoc.bindNull(4); else insDoc.bind(4, d.author);
            insDoc.bind(5, jsonText(nlohmann::json(d.participants))).bind(6, d.dateUnix)
                .bind(7, d.metadataJson.empty() ? std::string("{}") : d.metadataJson).bind(8, d.text)
                .bind(9, static_cast<int64_t>(d.text.size())).bind(10, now);
            MSA_RETURN_IF_ERROR(insDoc.run().withContext("adding document " + quotedName(d.title)));
            docId = m_db.lastInsertRowid();
            ++rep.nDocumentsAdded;
        }
        for (const PortableSource& s : p.sources) {
            insColl.reset();
            insColl.bind(1, s.collection).bind(2, now);
            MSA_RETURN_IF_ERROR(insColl.run());
            findFile.reset();
            findFile.bind(1, s.collection).bind(2, s.path);
            MSA_ASSIGN_OR_RETURN(bool haveFile, findFile.step());
            int64_t fileId = haveFile ? findFile.int64(0) : 0;
            findFile.reset();
            if (!haveFile) {
                insFile.reset();
                insFile.bind(1, s.path).bind(2, d.kind).bind(3, now).bind(4, s.collection);
                MSA_RETURN_IF_ERROR(insFile.run());
                fileId = m_db.lastInsertRowid();
            }
            findLink.reset();
            findLink.bind(1, fileId).bind(2, docId);
            MSA_ASSIGN_OR_RETURN(bool linkRow, findLink.step());
            const bool linked = linkRow && findLink.int64(0) > 0;
            findLink.reset();
            if (!linked) {
                insLink.reset();
                insLink.bind(1, fileId).bind(2, docId);
                if (s.locator.empty()) insLink.bindNull(3); else insLink.bind(3, s.locator);
                MSA_RETURN_IF_ERROR(insLink.run());
            }
        }
        for (const MemoryDocumentInfo& m : d.segments) {
            if (m.spanStart < 0 || m.spanEnd < m.spanStart || m.spanEnd > static_cast<int64_t>(d.text.size()))
                return invalidArgument("memory document " + std::to_string(m.id) + ": span outside its document's text");
            findSeg.reset();
            findSeg.bind(1, m.id);
            MSA_ASSIGN_OR_RETURN(bool segRow, findSeg.step());
            if (segRow) {
                const bool same = findSeg.int64(0) == docId && findSeg.int64(1) == m.spanStart && findSeg.int64(2) == m.spanEnd;
                findSeg.reset();
                if (!same)
                    return Status(ErrorCode::Mismatch,
                                  "memory document " + std::to_string(m.id) + " already exists in catalog " +
                                      quotedName(path().string()) + " with other text; import the bank's documents into a new catalog");
                ++rep.nMemoryDocumentsPresent;
                continue;
            }
            findSeg.reset();
            insSeg.reset();
            insSeg.bind(1, m.id).bind(2, docId).bind(3, static_cast<int64_t>(m.segmentIndex)).bind(4, m.segmentKind)
                .bind(5, m.spanStart).bind(6, m.spanEnd);
            if (m.label.empty()) insSeg.bindNull(7); else insSeg.bind(7, m.label);
            insSeg.bind(8, m.tokenEstimate).bind(9, m.tokenCount);
            Status st = insSeg.run();
            if (!st) {
                if (st.code() == ErrorCode::Internal)   // UNIQUE(document_id, segment_index): another segmentation
                    return Status(ErrorCode::Mismatch, "memory document " + std::to_string(m.id) + " clashes with the "
                                                       "segments of document " + quotedName(d.title) + " in catalog " +
                                                       quotedName(path().string()) + ": " + st.message());
                return st;
            }
            ++rep.nMemoryDocumentsAdded;
        }
    }
    MSA_RETURN_IF_ERROR(tx.commit());
    return rep;
}

}  // namespace msa::catalog

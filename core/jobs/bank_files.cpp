// bank_files.cpp: bank archives with their catalog documents (see bank_files.h).
#include "core/jobs/bank_files.h"

#include "core/model/model_files.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace msa::jobs {
namespace fs = std::filesystem;

namespace {
constexpr size_t kBatch = 256;   // memory documents per catalog query / transaction

bool isFingerprint(const std::string& s) {
    return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
}  // namespace

Result<std::string> modelFingerprintOf(const std::string& m) {
    std::error_code ec;
    if (isFingerprint(m) && !fs::exists(m, ec)) return m;
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<model::ModelFiles> files, model::ModelFiles::open(m));
    return files->fingerprint().hex();
}

nlohmann::json portableToJson(const catalog::PortableDocument& p) {
    const catalog::DocumentInfo& d = p.document;
    nlohmann::json sources = nlohmann::json::array();
    for (const auto& s : p.sources) sources.push_back({{"collection", s.collection}, {"path", s.path}, {"locator", s.locator}});
    nlohmann::json segs = nlohmann::json::array();
    for (const auto& m : d.segments) {
        nlohmann::json sj = {{"id", m.id}, {"segment_index", m.segmentIndex}, {"segment_kind", m.segmentKind},
                             {"span_start", m.spanStart}, {"span_end", m.spanEnd}, {"label", m.label},
                             {"token_estimate", m.tokenEstimate}};
        sj["token_count"] = m.tokenCount ? nlohmann::json(*m.tokenCount) : nlohmann::json(nullptr);
        segs.push_back(std::move(sj));
    }
    nlohmann::json j = {{"content_hash", d.contentHash}, {"kind", d.kind}, {"title", d.title}, {"author", d.author},
                        {"participants", d.participants}, {"metadata_json", d.metadataJson}, {"text", d.text},
                        {"sources", std::move(sources)}, {"memory_documents", std::move(segs)}};
    j["date_unix"] = d.dateUnix ? nlohmann::json(*d.dateUnix) : nlohmann::json(nullptr);
    return j;
}

Result<catalog::PortableDocument> portableFromJson(const nlohmann::json& j) {
    try {
        catalog::PortableDocument p;
        catalog::DocumentInfo& d = p.document;
        d.contentHash = j.at("content_hash").get<std::string>();
        d.kind = j.at("kind").get<std::string>();
        d.title = j.at("title").get<std::string>();
        d.author = j.at("author").get<std::string>();
        d.participants = j.at("participants").get<std::vector<std::string>>();
        if (!j.at("date_unix").is_null()) d.dateUnix = j.at("date_unix").get<int64_t>();
        d.metadataJson = j.at("metadata_json").get<std::string>();
        d.text = j.at("text").get<std::string>();
        for (const auto& s : j.at("sources"))
            p.sources.push_back({s.at("collection").get<std::string>(), s.at("path").get<std::string>(),
                                 s.at("locator").get<std::string>()});
        for (const auto& s : j.at("memory_documents")) {
            catalog::MemoryDocumentInfo m;
            m.id = s.at("id").get<int64_t>();
            m.segmentIndex = s.at("segment_index").get<int>();
            m.segmentKind = s.at("segment_kind").get<std::string>();
            m.spanStart = s.at("span_start").get<int64_t>();
            m.spanEnd = s.at("span_end").get<int64_t>();
            m.label = s.at("label").get<std::string>();
            m.tokenEstimate = s.at("token_estimate").get<int64_t>();
            if (!s.at("token_count").is_null()) m.tokenCount = s.at("token_count").get<int64_t>();
            d.segments.push_back(std::move(m));
        }
        return p;
    } catch (const std::exception& e) {
        return invalidArgument(std::string("not a portable document record: ") + e.what());
    }
}

Result<BankExportResult> exportBank(const BankExportRequest& r) {
    BankExportResult res;
    std::optional<catalog::Catalog> cat;
    memory::BankExportOptions o;
    o.zstd = r.zstd;
    o.cancel = r.cancel;
    o.progress = r.progress;
    if (r.catalog) {
        MSA_ASSIGN_OR_RETURN(cat, catalog::Catalog::open(*r.catalog, {.readOnly = true, .create = false}));
        o.documentsOrigin = fs::absolute(*r.catalog).lexically_normal().string();
        o.documents = [&](std::span<const int64_t> ids, const memory::DocumentLineSink& emit) -> Status {
            for (size_t at = 0; at < ids.size(); at += kBatch) {
                const auto batch = ids.subspan(at, std::min(kBatch, ids.size() - at));
                MSA_ASSIGN_OR_RETURN(std::vector<catalog::PortableDocument> docs, cat->portableDocuments(batch));
                size_t found = 0;
                for (const auto& d : docs) {
                    found += d.document.segments.size();
                    MSA_RETURN_IF_ERROR(emit(portableToJson(d).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
                }
                res.nMissingDocuments += batch.size() - found;
            }
            return {};
        };
    }
    MSA_ASSIGN_OR_RETURN(res.archive, memory::exportBankArchive(r.bank, r.file, o));
    return res;
}

Result<BankImportResult> importBank(const BankImportRequest& r) {
    BankImportResult res;
    memory::BankImportOptions o;
    o.force = r.force;
    o.cancel = r.cancel;
    o.progress = r.progress;
    if (r.model) {
        auto fp = modelFingerprintOf(*r.model);
        if (!fp) return fp.status().withContext("reading the model given with --model");
        o.expectFingerprint = *fp;
    }
    MSA_ASSIGN_OR_RETURN(memory::BankArchiveInfo info, memory::readBankArchiveInfo(r.file));
    res.documentsInArchive = info.hasDocuments;
    const fs::path target = r.bank ? *r.bank : fs::current_path() / info.bankName;
    std::optional<catalog::Catalog> cat;
    if (r.catalog) {
        if (!info.hasDocuments)
            return notFound(quotedName(r.file.string()) + " holds no memory documents (it was exported without --catalog)");
        o.documents = [&](const fs::path& jsonl, uint64_t) -> Status {
            // Opened only now, after every checksum passed: a refused archive never creates a catalog.
            MSA_ASSIGN_OR_RETURN(cat, catalog::Catalog::open(*r.catalog));
            std::ifstream in(jsonl, std::ios::binary);
            if (!in) return ioError("cannot read the extracted documents " + quotedName(jsonl.string()));
            std::vector<catalog::PortableDocument> batch;
            uint64_t line = 0;
            auto flush = [&]() -> Status {
                if (batch.empty()) return {};
                MSA_ASSIGN_OR_RETURN(catalog::PortableImportReport rep, cat->addPortableDocuments(batch));
                res.documents.nDocumentsAdded += rep.nDocumentsAdded;
                res.documents.nMemoryDocumentsAdded += rep.nMemoryDocumentsAdded;
                res.documents.nMemoryDocumentsPresent += rep.nMemoryDocumentsPresent;
                batch.clear();
                return {};
            };
            for (std::string text; std::getline(in, text);) {
                ++line;
                const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
                auto p = j.is_discarded() ? Result<catalog::PortableDocument>(invalidArgument("not JSON")) : portableFromJson(j);
                if (!p) return corrupt("documents line " + std::to_string(line) + ": " + p.status().message());
                batch.push_back(std::move(p).value());
                if (batch.size() >= kBatch) MSA_RETURN_IF_ERROR(flush());
            }
            return flush();
        };
    }
    MSA_ASSIGN_OR_RETURN(res.archive, memory::importBankArchive(r.file, target, o));
    return res;
}

nlohmann::json toJson(const BankExportResult& r) {
    const auto& a = r.archive;
    return {{"file", a.file.string()}, {"model_fingerprint", a.modelFingerprint}, {"generation", a.generation},
            {"files", a.nFiles}, {"documents", a.nDocuments}, {"document_records", a.nDocumentRecords},
            {"missing_documents", r.nMissingDocuments}, {"raw_bytes", a.rawBytes}, {"file_bytes", a.fileBytes},
            {"compression", a.compressed ? "zstd" : "none"}, {"seconds", a.seconds}};
}

nlohmann::json toJson(const BankImportResult& r) {
    const auto& a = r.archive;
    return {{"bank", a.bank.string()}, {"model_fingerprint", a.modelFingerprint}, {"files", a.nFiles},
            {"documents", a.nDocuments}, {"document_records", a.nDocumentRecords}, {"raw_bytes", a.rawBytes},
            {"replaced", a.replaced}, {"documents_in_archive", r.documentsInArchive},
            {"catalog_documents_added", r.documents.nDocumentsAdded},
            {"catalog_memory_documents_added", r.documents.nMemoryDocumentsAdded},
            {"catalog_memory_documents_present", r.documents.nMemoryDocumentsPresent}, {"seconds", a.seconds}};
}

}  // namespace msa::jobs

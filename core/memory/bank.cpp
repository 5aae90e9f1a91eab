// bank.cpp: memory bank files (layout in core/memory/README.md). The reader derives the exact layout
// a file must have from the manifest and the file's own counts, and refuses any deviation, so every
// offset and length it later hands out lies inside a mapped file.
#include "core/memory/bank.h"

#include "core/util/checksum.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

namespace msa::memory {
namespace fs = std::filesystem;

namespace {

constexpr char kShardMagic[8] = {'M', 'S', 'A', 'B', 'S', 'H', 'R', 'D'};
constexpr char kTemplateMagic[8] = {'M', 'S', 'A', 'B', 'T', 'M', 'P', 'L'};
constexpr uint64_t kHeaderBytes = 64;
constexpr uint64_t kTableEntryBytes = 32;
constexpr uint64_t kDocRecordBytes = 48;
constexpr uint64_t kAlign = 64;   // sections start on a cache line (and any element boundary)
constexpr const char* kManifestName = "manifest.json";
constexpr const char* kTemplateName = "template.msab";

enum class SectionKind : uint32_t { DocTable = 1, Strings = 2, RoutingKeys = 3, Keys = 4, Values = 5,
                                    TemplateKeys = 6, TemplateValues = 7 };

std::string sectionName(SectionKind k, uint32_t layer) {
    const char* n = "?";
    switch (k) {
    case SectionKind::DocTable: return "document table";
    case SectionKind::Strings: return "string pool";
    case SectionKind::RoutingKeys: n = "routing keys"; break;
    case SectionKind::Keys: n = "keys"; break;
    case SectionKind::Values: n = "values"; break;
    case SectionKind::TemplateKeys: n = "template keys"; break;
    case SectionKind::TemplateValues: n = "template values"; break;
    }
    return std::string(n) + " [layer " + std::to_string(layer) + "]";
}

struct Section {
    SectionKind kind;
    uint32_t layer;   // routing-layer position (shards) or model layer (template); 0 for tables
    uint64_t offset = 0;
    uint64_t length = 0;
    uint64_t checksum = 0;
};

uint64_t alignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// Fixes offsets of `secs` (kinds/lengths given) and returns the file size.
uint64_t layOut(std::vector<Section>& secs) {
    uint64_t pos = alignUp(kHeaderBytes + kTableEntryBytes * secs.size());
    for (Section& s : secs) {
        s.offset = pos;
        pos = alignUp(pos + s.length);
    }
    return pos;
}

size_t elemBytes(model::DType t) { return t == model::DType::F32 ? 4 : 2; }

std::vector<Section> shardSections(const BankParams& p, uint64_t nDocs, uint64_t nChunks, uint64_t nStringBytes) {
    const uint64_t es = elemBytes(p.storage);
    std::vector<Section> s;
    s.push_back({SectionKind::DocTable, 0, 0, nDocs * kDocRecordBytes, 0});
    s.push_back({SectionKind::Strings, 0, 0, nStringBytes, 0});
    for (uint32_t l = 0; l < p.routingLayers.size(); ++l) {
        s.push_back({SectionKind::RoutingKeys, l, 0, nChunks * p.nRouteHeads * p.headDim * es, 0});
        if (!p.keysShared) s.push_back({SectionKind::Keys, l, 0, nChunks * p.nKvHeads * p.headDim * es, 0});
        s.push_back({SectionKind::Values, l, 0, nChunks * p.nKvHeads * p.headDim * es, 0});
    }
    return s;
}

std::vector<Section> templateSections(const BankParams& p) {
    const uint64_t len = uint64_t(p.nTemplateTokens) * p.nKvHeads * p.headDim * elemBytes(p.storage);
    std::vector<Section> s;
    for (uint32_t l = 0; l < p.nLayers; ++l) {
        s.push_back({SectionKind::TemplateKeys, l, 0, len, 0});
        s.push_back({SectionKind::TemplateValues, l, 0, len, 0});
    }
    return s;
}

template <typename T>
void putLe(std::byte* dst, T v) { std::memcpy(dst, &v, sizeof v); }   // x86-64/aarch64: little-endian
template <typename T>
T getLe(const std::byte* src) { T v; std::memcpy(&v, src, sizeof v); return v; }

struct FileHeader {
    uint64_t seq = 0, nDocs = 0, nChunks = 0, fileBytes = 0;
};

// Header + section table bytes (everything before the first section).
std::vector<std::byte> encodeHeader(const char (&magic)[8], const FileHeader& h, const std::vector<Section>& secs) {
    std::vector<std::byte> out(kHeaderBytes + kTableEntryBytes * secs.size());
    std::memcpy(out.data(), magic, 8);
    putLe<uint32_t>(&out[8], kBankFormatVersion);
    putLe<uint32_t>(&out[12], static_cast<uint32_t>(secs.size()));
    putLe<uint64_t>(&out[16], h.seq);
    putLe<uint64_t>(&out[24], h.nDocs);
    putLe<uint64_t>(&out[32], h.nChunks);
    putLe<uint64_t>(&out[40], h.fileBytes);
    for (size_t i = 0; i < secs.size(); ++i) {
        std::byte* e = &out[kHeaderBytes + kTableEntryBytes * i];
        putLe<uint32_t>(e, static_cast<uint32_t>(secs[i].kind));
        putLe<uint32_t>(e + 4, secs[i].layer);
        putLe<uint64_t>(e + 8, secs[i].offset);
        putLe<uint64_t>(e + 16, secs[i].length);
        putLe<uint64_t>(e + 24, secs[i].checksum);
    }
    putLe<uint64_t>(&out[48], xxh3_64(std::span<const std::byte>(out).subspan(kHeaderBytes)));
    putLe<uint64_t>(&out[56], xxh3_64(std::span<const std::byte>(out).first(56)));
    return out;
}

// ---- writing ------------------------------------------------------------------------------------

Status writeErrno(int err, const fs::path& file, std::string_view what) {
    // RLIMIT_FSIZE (with SIGXFSZ ignored) reports EFBIG: for the bank that is a full disk too.
    if (err == EFBIG) return {ErrorCode::DiskFull, "writing " + quotedName(file.string()) + ": " + std::string(what) +
                                                       ": file size limit reached"};
    return statusFromErrno(err, "writing " + quotedName(file.string()) + ": " + std::string(what));
}

class OutFile {
public:
    ~OutFile() { if (m_fd >= 0) ::close(m_fd); }
    Status open(const fs::path& p) {
        m_path = p;
        m_fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (m_fd < 0) return writeErrno(errno, p, "create");
        return {};
    }
    Status write(std::span<const std::byte> data) {
        while (!data.empty()) {
            const ssize_t n = ::write(m_fd, data.data(), data.size());
            if (n < 0) {
                if (errno == EINTR) continue;
                return writeErrno(errno, m_path, "write");
            }
            if (n == 0) return writeErrno(ENOSPC, m_path, "write");
            data = data.subspan(static_cast<size_t>(n));
            m_pos += static_cast<uint64_t>(n);
        }
        return {};
    }
    Status padTo(uint64_t offset) {
        static const std::byte zeros[kAlign] = {};
        while (m_pos < offset) MSA_RETURN_IF_ERROR(write({zeros, static_cast<size_t>(std::min<uint64_t>(kAlign, offset - m_pos))}));
        return {};
    }
    Status syncAndClose() {
        if (::fsync(m_fd) != 0) return writeErrno(errno, m_path, "fsync");
        const int fd = m_fd;
        m_fd = -1;
        if (::close(fd) != 0) return writeErrno(errno, m_path, "close");
        return {};
    }
    uint64_t pos() const { return m_pos; }

private:
    int m_fd = -1;
    uint64_t m_pos = 0;
    fs::path m_path;
};

Status syncDir(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "opening folder " + quotedName(dir.string()));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) return writeErrno(err, dir, "fsync of the folder");
    return {};
}

struct Written {
    uint64_t fileBytes = 0;
    uint64_t headerChecksum = 0;
};

// Writes a whole container file: pieces[i] are the byte runs of section i, concatenated.
Result<Written> writeContainer(const fs::path& file, const char (&magic)[8], FileHeader h, std::vector<Section> secs,
                      const std::vector<std::vector<std::span<const std::byte>>>& pieces) {
    h.fileBytes = layOut(secs);
    for (size_t i = 0; i < secs.size(); ++i) {
        Hasher hs;
        uint64_t len = 0;
        for (auto p : pieces[i]) { hs.update(p); len += p.size(); }
        if (len != secs[i].length) return Status{ErrorCode::Internal, "section size mismatch while writing " + file.string()};
        secs[i].checksum = hs.digest64();
    }
    OutFile out;
    MSA_RETURN_IF_ERROR(out.open(file));
    const std::vector<std::byte> header = encodeHeader(magic, h, secs);
    MSA_RETURN_IF_ERROR(out.write(header));
    for (size_t i = 0; i < secs.size(); ++i) {
        MSA_RETURN_IF_ERROR(out.padTo(secs[i].offset));
        for (auto p : pieces[i]) MSA_RETURN_IF_ERROR(out.write(p));
    }
    MSA_RETURN_IF_ERROR(out.padTo(h.fileBytes));
    MSA_RETURN_IF_ERROR(out.syncAndClose());
    return Written{h.fileBytes, getLe<uint64_t>(&header[56])};
}

std::vector<std::byte> convert(std::span<const float> in, model::DType storage) {
    std::vector<std::byte> out(in.size() * elemBytes(storage));
    if (storage == model::DType::F32) {
        if (!in.empty()) std::memcpy(out.data(), in.data(), out.size());
    } else {
        for (size_t i = 0; i < in.size(); ++i) putLe<uint16_t>(&out[2 * i], model::f32ToBf16(in[i]));
    }
    return out;
}

// ---- manifest -----------------------------------------------------------------------------------

struct ShardRecord {
    std::string file;
    uint64_t seq = 0, nDocs = 0, nChunks = 0, nTokens = 0, bytes = 0, headerChecksum = 0;
    std::vector<uint32_t> deletedRows;   // sorted
};

struct ManifestState {
    BankParams params;
    uint64_t generation = 0;
    uint64_t templateBytes = 0, templateHeaderChecksum = 0;
    std::vector<ShardRecord> shards;
    uint64_t nextSeq = 1;
    uint64_t nDocs = 0, nChunks = 0, nTokens = 0, nTombstones = 0, nChunksTotal = 0;
};

std::string shardName(uint64_t seq) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "shard-%08" PRIu64 ".msab", seq);
    return buf;
}

nlohmann::ordered_json manifestJson(const ManifestState& m) {
    const BankParams& p = m.params;
    nlohmann::ordered_json shards = nlohmann::ordered_json::array();
    for (const ShardRecord& s : m.shards)
        shards.push_back({{"file", s.file}, {"seq", s.seq}, {"documents", s.nDocs}, {"chunks", s.nChunks},
                          {"tokens", s.nTokens}, {"bytes", s.bytes}, {"header_checksum", hex64(s.headerChecksum)},
                          {"deleted_rows", s.deletedRows}});
    nlohmann::ordered_json j = {
        {"format", "msa-memory-bank"},
        {"format_version", kBankFormatVersion},
        {"generation", m.generation},
        {"params",
         {{"model_fingerprint", p.modelFingerprint}, {"tokenizer_hash", p.tokenizerHash},
          {"chunk_size", p.chunkSize}, {"top_k", p.topK}, {"routing_layers", p.routingLayers},
          {"layers", p.nLayers}, {"kv_heads", p.nKvHeads}, {"routing_heads", p.nRouteHeads},
          {"head_dim", p.headDim}, {"storage_dtype", std::string(model::dtypeName(p.storage))},
          {"scoring", std::string(scoringBranchName(p.scoring))}, {"keys_shared", p.keysShared},
          {"template_tokens", p.nTemplateTokens}, {"max_shard_bytes", p.maxShardBytes}}},
        {"template", {{"file", kTemplateName}, {"bytes", m.templateBytes},
                      {"header_checksum", hex64(m.templateHeaderChecksum)}}},
        {"shards", shards},
        {"next_shard_seq", m.nextSeq},
        {"counts", {{"documents", m.nDocs}, {"chunks", m.nChunks}, {"tokens", m.nTokens},
                    {"tombstones", m.nTombstones}, {"chunks_total", m.nChunksTotal}}},
    };
    return j;
}

std::string manifestText(const ManifestState& m) {
    nlohmann::ordered_json j = manifestJson(m);
    const std::string body = j.dump();
    j["checksum"] = hex64(xxh3_64(body));
    return j.dump(1) + "\n";
}

Status writeManifest(const fs::path& dir, const ManifestState& m) {
    const fs::path tmp = dir / "manifest.json.tmp";
    const std::string text = manifestText(m);
    OutFile out;
    Status st = out.open(tmp);
    if (st) st = out.write(std::as_bytes(std::span<const char>(text.data(), text.size())));
    if (st) st = out.syncAndClose();
    if (st && ::rename(tmp.c_str(), (dir / kManifestName).c_str()) != 0) st = writeErrno(errno, tmp, "rename");
    if (!st) {
        ::unlink(tmp.c_str());
        return st;
    }
    return syncDir(dir);
}

Result<uint64_t> parseHex64(const nlohmann::json& v, const std::string& what) {
    if (!v.is_string() || v.get<std::string>().size() != 16) return corrupt("manifest.json: " + what + " is not 16 hex digits");
    uint64_t r = 0;
    for (char c : v.get<std::string>()) {
        r <<= 4;
        if (c >= '0' && c <= '9') r |= uint64_t(c - '0');
        else if (c >= 'a' && c <= 'f') r |= uint64_t(c - 'a' + 10);
        else return corrupt("manifest.json: " + what + " is not 16 hex digits");
    }
    return r;
}

Status validateParams(const BankParams& p) {
    auto bad = [](std::string m) { return invalidArgument("bank parameters: " + m); };
    if (p.modelFingerprint.size() != 32 ||
        p.modelFingerprint.find_first_not_of("0123456789abcdef") != std::string::npos)
        return bad("model fingerprint must be 32 lowercase hex digits");
    if (p.tokenizerHash.empty()) return bad("tokenizer hash is empty");
    if (p.chunkSize == 0 || p.topK == 0 || p.nLayers == 0 || p.nKvHeads == 0 || p.nRouteHeads == 0 || p.headDim == 0)
        return bad("chunk size, top-k, layers, heads and head dim must be positive");
    if (p.routingLayers.empty()) return bad("no routing layers");
    // Generous bounds that keep every size product far from 64-bit overflow.
    if (p.nLayers > 4096 || p.nKvHeads > 4096 || p.nRouteHeads > 4096 || p.headDim > 65536 ||
        p.nTemplateTokens > 65536 || p.chunkSize > (1u << 20))
        return bad("a dimension is implausibly large");
    for (size_t i = 0; i < p.routingLayers.size(); ++i) {
        if (p.routingLayers[i] >= p.nLayers) return bad("routing layer " + std::to_string(p.routingLayers[i]) + " >= layers");
        if (i && p.routingLayers[i] <= p.routingLayers[i - 1]) return bad("routing layers must increase");
    }
    if (p.storage != model::DType::BF16 && p.storage != model::DType::F32)
        return unsupported("bank storage dtype " + std::string(model::dtypeName(p.storage)) + " (bf16 or f32)");
    if (p.keysShared && p.nRouteHeads != p.nKvHeads) return bad("shared keys need routing heads == KV heads");
    if (p.maxShardBytes < 4096) return bad("max shard bytes below 4096");
    return {};
}

Result<ManifestState> readManifest(const fs::path& dir) {
    const fs::path file = dir / kManifestName;
    std::error_code ec;
    if (!fs::exists(file, ec)) return notFound("no memory bank at " + quotedName(dir.string()) + " (no manifest.json)");
    std::ifstream in(file, std::ios::binary);
    if (!in) return statusFromErrno(errno, "reading " + quotedName(file.string()));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string where = quotedName(file.string()) + ": ";
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return corrupt(where + "not valid JSON");
    try {
        if (j.value("format", "") != "msa-memory-bank") return corrupt(where + "not a memory bank manifest");
        if (!j.contains("format_version") || !j["format_version"].is_number_unsigned()) return corrupt(where + "no format_version");
        const uint64_t version = j["format_version"].get<uint64_t>();
        if (version != kBankFormatVersion)
            return unsupported(where + "format version " + std::to_string(version) + " (this build reads " +
                               std::to_string(kBankFormatVersion) + ")");
        if (!j.contains("checksum")) return corrupt(where + "no checksum");
        MSA_ASSIGN_OR_RETURN(const uint64_t sum, parseHex64(j["checksum"], "checksum"));
        j.erase("checksum");
        if (xxh3_64(j.dump()) != sum) return corrupt(where + "checksum mismatch (the manifest was altered or damaged)");

        ManifestState m;
        const auto& pj = j.at("params");
        BankParams& p = m.params;
        p.modelFingerprint = pj.at("model_fingerprint").get<std::string>();
        p.tokenizerHash = pj.at("tokenizer_hash").get<std::string>();
        p.chunkSize = pj.at("chunk_size").get<uint32_t>();
        p.topK = pj.at("top_k").get<uint32_t>();
        p.routingLayers = pj.at("routing_layers").get<std::vector<uint32_t>>();
        p.nLayers = pj.at("layers").get<uint32_t>();
        p.nKvHeads = pj.at("kv_heads").get<uint32_t>();
        p.nRouteHeads = pj.at("routing_heads").get<uint32_t>();
        p.headDim = pj.at("head_dim").get<uint32_t>();
        const std::string dt = pj.at("storage_dtype").get<std::string>();
        if (dt == "bf16") p.storage = model::DType::BF16;
        else if (dt == "f32") p.storage = model::DType::F32;
        else return unsupported(where + "storage dtype " + quotedName(dt));
        const std::string sc = pj.at("scoring").get<std::string>();
        if (sc == "dot") p.scoring = ScoringBranch::Dot;
        else if (sc == "cosine") p.scoring = ScoringBranch::Cosine;
        else return unsupported(where + "scoring branch " + quotedName(sc));
        p.keysShared = pj.at("keys_shared").get<bool>();
        p.nTemplateTokens = pj.at("template_tokens").get<uint32_t>();
        p.maxShardBytes = pj.at("max_shard_bytes").get<uint64_t>();
        Status ps = validateParams(p);
        if (!ps) return ps.code() == ErrorCode::Unsupported ? ps : corrupt(where + ps.message());

        m.generation = j.at("generation").get<uint64_t>();
        if (j.at("template").at("file").get<std::string>() != kTemplateName) return corrupt(where + "unexpected template file name");
        m.templateBytes = j.at("template").at("bytes").get<uint64_t>();
        MSA_ASSIGN_OR_RETURN(m.templateHeaderChecksum, parseHex64(j.at("template").at("header_checksum"), "template header checksum"));
        m.nextSeq = j.at("next_shard_seq").get<uint64_t>();
        for (const auto& sj : j.at("shards")) {
            ShardRecord s;
            s.seq = sj.at("seq").get<uint64_t>();
            s.file = sj.at("file").get<std::string>();
            if (s.file != shardName(s.seq) || s.seq >= m.nextSeq) return corrupt(where + "bad shard entry " + quotedName(s.file));
            s.nDocs = sj.at("documents").get<uint64_t>();
            s.nChunks = sj.at("chunks").get<uint64_t>();
            s.nTokens = sj.at("tokens").get<uint64_t>();
            s.bytes = sj.at("bytes").get<uint64_t>();
            MSA_ASSIGN_OR_RETURN(s.headerChecksum, parseHex64(sj.at("header_checksum"), "header checksum of " + s.file));
            s.deletedRows = sj.at("deleted_rows").get<std::vector<uint32_t>>();
            for (size_t i = 0; i < s.deletedRows.size(); ++i)
                if (s.deletedRows[i] >= s.nDocs || (i && s.deletedRows[i] <= s.deletedRows[i - 1]))
                    return corrupt(where + "bad deleted row list of " + quotedName(s.file));
            if (!m.shards.empty() && s.seq <= m.shards.back().seq) return corrupt(where + "shards out of order");
            m.shards.push_back(std::move(s));
        }
        const auto& cj = j.at("counts");
        m.nDocs = cj.at("documents").get<uint64_t>();
        m.nChunks = cj.at("chunks").get<uint64_t>();
        m.nTokens = cj.at("tokens").get<uint64_t>();
        m.nTombstones = cj.at("tombstones").get<uint64_t>();
        m.nChunksTotal = cj.at("chunks_total").get<uint64_t>();
        return m;
    } catch (const std::exception& e) {
        return corrupt(where + "missing or malformed field: " + e.what());
    }
}

// Validates a mapped container against the layout it must have; fills checksums into `secs`.
Status checkContainer(const FileMapping& map, const char (&magic)[8], const FileHeader& expect,
                      uint64_t expectHeaderChecksum, std::vector<Section>& secs) {
    const std::string name = quotedName(map.path().filename().string());
    const uint64_t fileBytes = layOut(secs);
    if (map.size() != fileBytes)
        return corrupt(name + ": size " + std::to_string(map.size()) + " bytes, the manifest implies " +
                       std::to_string(fileBytes) + " (truncated or extended)");
    MSA_ASSIGN_OR_RETURN(auto head, map.slice(0, kHeaderBytes + kTableEntryBytes * secs.size(), "header"));
    if (std::memcmp(head.data(), magic, 8) != 0) return corrupt(name + ": header: bad magic");
    const uint64_t hsum = getLe<uint64_t>(&head[56]);
    if (xxh3_64(head.first(56)) != hsum) return corrupt(name + ": header: checksum mismatch");
    if (hsum != expectHeaderChecksum) return corrupt(name + ": header: not the file the manifest committed");
    if (getLe<uint32_t>(&head[8]) != kBankFormatVersion)
        return unsupported(name + ": format version " + std::to_string(getLe<uint32_t>(&head[8])));
    if (getLe<uint32_t>(&head[12]) != secs.size()) return corrupt(name + ": header: section count");
    if (getLe<uint64_t>(&head[16]) != expect.seq || getLe<uint64_t>(&head[24]) != expect.nDocs ||
        getLe<uint64_t>(&head[32]) != expect.nChunks || getLe<uint64_t>(&head[40]) != fileBytes)
        return corrupt(name + ": header: counts disagree with the manifest");
    if (xxh3_64(head.subspan(kHeaderBytes)) != getLe<uint64_t>(&head[48])) return corrupt(name + ": section table: checksum mismatch");
    for (size_t i = 0; i < secs.size(); ++i) {
        const std::byte* e = &head[kHeaderBytes + kTableEntryBytes * i];
        Section& s = secs[i];
        if (getLe<uint32_t>(e) != static_cast<uint32_t>(s.kind) || getLe<uint32_t>(e + 4) != s.layer ||
            getLe<uint64_t>(e + 8) != s.offset || getLe<uint64_t>(e + 16) != s.length)
            return corrupt(name + ": section table: entry " + std::to_string(i) + " is not " + sectionName(s.kind, s.layer) +
                           " at its offset and size");
        MSA_RETURN_IF_ERROR(map.slice(s.offset, s.length, sectionName(s.kind, s.layer)).status());
        s.checksum = getLe<uint64_t>(e + 24);
    }
    return {};
}

Status checkSection(const FileMapping& map, const Section& s) {
    MSA_ASSIGN_OR_RETURN(auto bytes, map.slice(s.offset, s.length, sectionName(s.kind, s.layer)));
    if (xxh3_64(bytes) != s.checksum)
        return corrupt(quotedName(map.path().filename().string()) + ": section " + sectionName(s.kind, s.layer) +
                       ": checksum mismatch");
    return {};
}

}  // namespace

std::string_view scoringBranchName(ScoringBranch b) { return b == ScoringBranch::Cosine ? "cosine" : "dot"; }

void toF32(model::DType storage, std::span<const std::byte> in, std::span<float> out) {
    if (storage == model::DType::F32) {
        std::memcpy(out.data(), in.data(), std::min(in.size(), out.size() * 4));
        return;
    }
    const size_t n = std::min(in.size() / 2, out.size());
    for (size_t i = 0; i < n; ++i) out[i] = model::bf16ToF32(getLe<uint16_t>(&in[2 * i]));
}

// ---- Bank ---------------------------------------------------------------------------------------

struct ShardData {
    FileMapping map;
    std::vector<Section> secs;
    uint64_t firstChunk = 0;
    std::vector<std::span<const std::byte>> route, keys, values;   // per routing layer
};

struct Bank::Impl {
    fs::path dir;
    ManifestState m;
    FileMapping tmplMap;
    std::vector<Section> tmplSecs;
    std::vector<std::span<const std::byte>> tmplK, tmplV;
    std::vector<ShardData> shards;
    std::vector<DocumentEntry> docs;
    std::unordered_map<int64_t, size_t> liveById;
    uint64_t diskBytes = 0;
    uint64_t nOrphans = 0;

    uint64_t rowBytes(bool route) const {
        return uint64_t(route ? m.params.nRouteHeads : m.params.nKvHeads) * m.params.headDim * elemBytes(m.params.storage);
    }
};

Bank::Bank() = default;
Bank::~Bank() = default;
Bank::Bank(Bank&&) noexcept = default;
Bank& Bank::operator=(Bank&&) noexcept = default;

Result<Bank> Bank::open(const fs::path& dir, const OpenOptions& options) {
    // A compaction may commit and delete the shards named by the manifest we just read: the shard is
    // then NotFound while a newer manifest exists. Read again (a few times) before reporting it.
    for (int attempt = 0;; ++attempt) {
        Result<Bank> b = openOnce(dir, options);
        if (b.ok() || b.status().code() != ErrorCode::NotFound || attempt == 3) return b;
        std::error_code ec;
        if (!fs::exists(dir / kManifestName, ec)) return b;
    }
}

Result<Bank> Bank::openOnce(const fs::path& dir, const OpenOptions& options) {
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    MSA_ASSIGN_OR_RETURN(impl->m, readManifest(dir));
    const ManifestState& m = impl->m;
    const BankParams& p = m.params;
    if (options.expectFingerprint && *options.expectFingerprint != p.modelFingerprint)
        return Status{ErrorCode::Mismatch, "bank " + quotedName(dir.string()) + " was built with model " +
                                               p.modelFingerprint + ", not " + *options.expectFingerprint};
    std::error_code ec;
    impl->diskBytes = fs::file_size(dir / kManifestName, ec);

    // Template head.
    MSA_ASSIGN_OR_RETURN(impl->tmplMap, FileMapping::open(dir / kTemplateName));
    impl->tmplSecs = templateSections(p);
    MSA_RETURN_IF_ERROR(checkContainer(impl->tmplMap, kTemplateMagic, {0, 0, 0, 0}, m.templateHeaderChecksum, impl->tmplSecs));
    for (const Section& s : impl->tmplSecs) {
        MSA_RETURN_IF_ERROR(checkSection(impl->tmplMap, s));
        auto span = impl->tmplMap.bytes().subspan(s.offset, s.length);
        (s.kind == SectionKind::TemplateKeys ? impl->tmplK : impl->tmplV).push_back(span);
    }
    impl->diskBytes += impl->tmplMap.size();

    // Shards.
    uint64_t globalChunk = 0, nLive = 0, nLiveChunks = 0, nLiveTokens = 0, nDead = 0;
    for (uint32_t si = 0; si < m.shards.size(); ++si) {
        const ShardRecord& rec = m.shards[si];
        ShardData sd;
        MSA_ASSIGN_OR_RETURN(sd.map, FileMapping::open(dir / rec.file));
        const std::string name = quotedName(rec.file);
        if (sd.map.size() != rec.bytes)
            return corrupt(name + ": size " + std::to_string(sd.map.size()) + " bytes, committed " + std::to_string(rec.bytes));
        if (sd.map.size() < kHeaderBytes) return corrupt(name + ": header: truncated");
        const uint64_t minChunkBytes = uint64_t(p.nKvHeads) * p.headDim * elemBytes(p.storage);
        if (rec.nDocs == 0 || rec.nDocs > sd.map.size() / kDocRecordBytes || rec.nChunks < rec.nDocs ||
            rec.nChunks > sd.map.size() / minChunkBytes)
            return corrupt(name + ": the manifest's document/chunk counts do not fit the file");
        // The string pool length is the only size not in the manifest: read it from the table entry,
        // then the full layout must match exactly.
        MSA_ASSIGN_OR_RETURN(auto head, sd.map.slice(0, kHeaderBytes + 2 * kTableEntryBytes, "header"));
        const uint64_t nStringBytes = getLe<uint64_t>(&head[kHeaderBytes + kTableEntryBytes + 16]);
        if (nStringBytes > sd.map.size()) return corrupt(name + ": section table: string pool larger than the file");
        sd.secs = shardSections(p, rec.nDocs, rec.nChunks, nStringBytes);
        MSA_RETURN_IF_ERROR(checkContainer(sd.map, kShardMagic, {rec.seq, rec.nDocs, rec.nChunks, 0}, rec.headerChecksum, sd.secs));
        MSA_RETURN_IF_ERROR(checkSection(sd.map, sd.secs[0]));
        MSA_RETURN_IF_ERROR(checkSection(sd.map, sd.secs[1]));
        const auto table = sd.map.bytes().subspan(sd.secs[0].offset, sd.secs[0].length);
        const auto strings = sd.map.bytes().subspan(sd.secs[1].offset, sd.secs[1].length);
        uint64_t localChunk = 0, tokens = 0;
        size_t nextDeleted = 0;
        for (uint32_t r = 0; r < rec.nDocs; ++r) {
            const std::byte* e = &table[kDocRecordBytes * r];
            DocumentEntry d;
            d.id = getLe<int64_t>(e);
            const uint64_t first = getLe<uint64_t>(e + 8);
            d.nTokens = getLe<uint64_t>(e + 16);
            d.nChunks = getLe<uint32_t>(e + 24);
            d.flags = getLe<uint32_t>(e + 28);
            const uint64_t hashOff = getLe<uint64_t>(e + 32);
            const uint32_t hashLen = getLe<uint32_t>(e + 40);
            const std::string rowName = name + ": document table row " + std::to_string(r);
            if (first != localChunk) return corrupt(rowName + ": first chunk " + std::to_string(first) + ", expected " + std::to_string(localChunk));
            if (d.nChunks == 0 || d.nChunks != (d.nTokens + p.chunkSize - 1) / p.chunkSize)
                return corrupt(rowName + ": " + std::to_string(d.nChunks) + " chunks for " + std::to_string(d.nTokens) + " tokens");
            if (d.flags != 0) return corrupt(rowName + ": unknown flags");
            if (hashOff > strings.size() || hashLen > strings.size() - hashOff) return corrupt(rowName + ": content hash outside the string pool");
            d.contentHash.assign(reinterpret_cast<const char*>(strings.data()) + hashOff, hashLen);
            d.firstChunk = globalChunk + first;
            d.shard = si;
            d.row = r;
            if (nextDeleted < rec.deletedRows.size() && rec.deletedRows[nextDeleted] == r) {
                d.flags |= kDocTombstone;
                ++nextDeleted;
                ++nDead;
            } else {
                if (!impl->liveById.emplace(d.id, impl->docs.size()).second)
                    return corrupt(rowName + ": document id " + std::to_string(d.id) + " is live twice");
                ++nLive;
                nLiveChunks += d.nChunks;
                nLiveTokens += d.nTokens;
            }
            localChunk += d.nChunks;
            tokens += d.nTokens;
            impl->docs.push_back(std::move(d));
        }
        if (localChunk != rec.nChunks || tokens != rec.nTokens) return corrupt(name + ": document table: chunk or token total disagrees with the manifest");
        for (const Section& s : sd.secs) {
            auto span = sd.map.bytes().subspan(s.offset, s.length);
            if (s.kind == SectionKind::RoutingKeys) sd.route.push_back(span);
            else if (s.kind == SectionKind::Keys) sd.keys.push_back(span);
            else if (s.kind == SectionKind::Values) sd.values.push_back(span);
        }
        if (p.keysShared) sd.keys = sd.route;
        sd.firstChunk = globalChunk;
        globalChunk += rec.nChunks;
        impl->diskBytes += sd.map.size();
        impl->shards.push_back(std::move(sd));
    }
    if (nLive != m.nDocs || nLiveChunks != m.nChunks || nLiveTokens != m.nTokens || nDead != m.nTombstones ||
        globalChunk != m.nChunksTotal)
        return corrupt(quotedName((dir / kManifestName).string()) + ": counts disagree with the shards");

    // Files that no commit names: torn appends or compaction leftovers. Never read.
    std::set<std::string> known = {kManifestName, kTemplateName, "lock"};
    for (const ShardRecord& r : m.shards) known.insert(r.file);
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (!known.count(entry.path().filename().string())) ++impl->nOrphans;

    Bank b;
    b.m_impl = std::move(impl);
    if (options.verifyData) MSA_RETURN_IF_ERROR(b.verify().status());
    return b;
}

const fs::path& Bank::path() const { return m_impl->dir; }
const BankParams& Bank::params() const { return m_impl->m.params; }
size_t Bank::elementBytes() const { return elemBytes(m_impl->m.params.storage); }
uint64_t Bank::nDocuments() const { return m_impl->m.nDocs; }
uint64_t Bank::nChunks() const { return m_impl->m.nChunks; }
uint64_t Bank::nTokens() const { return m_impl->m.nTokens; }
uint64_t Bank::nTombstones() const { return m_impl->m.nTombstones; }
uint64_t Bank::nChunksTotal() const { return m_impl->m.nChunksTotal; }
uint64_t Bank::diskBytes() const { return m_impl->diskBytes; }
uint64_t Bank::generation() const { return m_impl->m.generation; }
size_t Bank::nShards() const { return m_impl->shards.size(); }
const std::vector<DocumentEntry>& Bank::documents() const { return m_impl->docs; }

std::optional<size_t> Bank::findDocument(int64_t id) const {
    auto it = m_impl->liveById.find(id);
    if (it == m_impl->liveById.end()) return std::nullopt;
    return it->second;
}

std::optional<std::string> Bank::contentHash(int64_t id) const {
    auto row = findDocument(id);
    if (!row) return std::nullopt;
    return m_impl->docs[*row].contentHash;
}

std::optional<size_t> Bank::documentOfChunk(uint64_t globalChunk) const {
    const auto& docs = m_impl->docs;
    if (globalChunk >= m_impl->m.nChunksTotal) return std::nullopt;
    auto it = std::upper_bound(docs.begin(), docs.end(), globalChunk,
                               [](uint64_t c, const DocumentEntry& d) { return c < d.firstChunk; });
    return static_cast<size_t>(it - docs.begin()) - 1;
}

std::vector<uint32_t> Bank::chunkToDocument() const {
    std::vector<uint32_t> out(m_impl->m.nChunksTotal);
    for (size_t r = 0; r < m_impl->docs.size(); ++r) {
        const DocumentEntry& d = m_impl->docs[r];
        std::fill_n(out.begin() + static_cast<ptrdiff_t>(d.firstChunk), d.nChunks, static_cast<uint32_t>(r));
    }
    return out;
}

std::vector<ShardSpan> Bank::routingKeys(size_t layer) const {
    std::vector<ShardSpan> out;
    for (size_t s = 0; s < m_impl->shards.size(); ++s)
        out.push_back({m_impl->shards[s].route.at(layer), m_impl->shards[s].firstChunk, m_impl->m.shards[s].nChunks});
    return out;
}

static std::span<const std::byte> docRows(const Bank::Impl& impl, const std::vector<std::span<const std::byte>>& sec,
                                          const DocumentEntry& d, size_t layer, bool route) {
    const uint64_t rb = impl.rowBytes(route);
    const uint64_t local = d.firstChunk - impl.shards[d.shard].firstChunk;
    return sec.at(layer).subspan(local * rb, d.nChunks * rb);
}

std::span<const std::byte> Bank::routingKeysOf(size_t docRow, size_t layer) const {
    const DocumentEntry& d = m_impl->docs.at(docRow);
    return docRows(*m_impl, m_impl->shards[d.shard].route, d, layer, true);
}
std::span<const std::byte> Bank::keys(size_t docRow, size_t layer) const {
    const DocumentEntry& d = m_impl->docs.at(docRow);
    return docRows(*m_impl, m_impl->shards[d.shard].keys, d, layer, m_impl->m.params.keysShared);
}
std::span<const std::byte> Bank::values(size_t docRow, size_t layer) const {
    const DocumentEntry& d = m_impl->docs.at(docRow);
    return docRows(*m_impl, m_impl->shards[d.shard].values, d, layer, false);
}
std::span<const std::byte> Bank::templateKeys(size_t modelLayer) const { return m_impl->tmplK.at(modelLayer); }
std::span<const std::byte> Bank::templateValues(size_t modelLayer) const { return m_impl->tmplV.at(modelLayer); }

Result<VerifyReport> Bank::verify() const { return verify(nullptr); }

Result<VerifyReport> Bank::verify(const CancelToken* cancel) const {
    VerifyReport r;
    auto one = [&](const FileMapping& map, const std::vector<Section>& secs) -> Status {
        for (const Section& s : secs) {
            if (cancel && cancel->isCancelled()) return Status(ErrorCode::Cancelled, "bank verification cancelled");
            MSA_RETURN_IF_ERROR(checkSection(map, s));
            ++r.nSections;
            r.nBytes += s.length;
        }
        return {};
    };
    MSA_RETURN_IF_ERROR(one(m_impl->tmplMap, m_impl->tmplSecs));
    for (const ShardData& s : m_impl->shards) {
        MSA_RETURN_IF_ERROR(one(s.map, s.secs));
        ++r.nShards;
    }
    r.nOrphanFiles = m_impl->nOrphans;
    return r;
}

// ---- BankWriter ---------------------------------------------------------------------------------

namespace {
struct PendingDoc {
    int64_t id;
    std::string hash;
    uint64_t nTokens;
    uint32_t nChunks;
    std::vector<std::vector<std::byte>> route, keys, values;   // per routing layer
};
struct LiveDoc {
    uint32_t shard, row;
    uint64_t nChunks, nTokens;
    std::string hash;
};
// Byte views of a document for writing a shard (from a pending doc or from a mapped bank).
struct DocBlob {
    int64_t id;
    std::string hash;
    uint64_t nTokens;
    uint32_t nChunks;
    std::vector<std::span<const std::byte>> route, keys, values;
};
}  // namespace

struct BankWriter::Impl {
    fs::path dir;
    int lockFd = -1;
    ManifestState m;
    std::unordered_map<int64_t, LiveDoc> live;
    std::vector<PendingDoc> pending;
    std::unordered_map<int64_t, uint64_t> pendingIds;           // id -> buffered bytes
    std::set<std::pair<uint32_t, uint32_t>> pendingRemovals;   // (shard, row)
    uint64_t pendingBytes = 0;

    ~Impl() { if (lockFd >= 0) ::close(lockFd); }

    Status lock() {
        const fs::path p = dir / "lock";
        lockFd = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lockFd < 0) return statusFromErrno(errno, "opening " + quotedName(p.string()));
        if (::flock(lockFd, LOCK_EX | LOCK_NB) != 0)
            return Status{ErrorCode::Busy, "memory bank " + quotedName(dir.string()) + " is being written by another process"};
        return {};
    }

    // Writes one shard of `docs`; returns its record (not yet committed).
    Result<ShardRecord> writeShard(uint64_t seq, const std::vector<DocBlob>& docs) {
        const BankParams& p = m.params;
        ShardRecord rec;
        rec.seq = seq;
        rec.file = shardName(seq);
        std::vector<std::byte> table(docs.size() * kDocRecordBytes);
        std::string strings;
        for (size_t i = 0; i < docs.size(); ++i) {
            std::byte* e = &table[i * kDocRecordBytes];
            putLe<int64_t>(e, docs[i].id);
            putLe<uint64_t>(e + 8, rec.nChunks);
            putLe<uint64_t>(e + 16, docs[i].nTokens);
            putLe<uint32_t>(e + 24, docs[i].nChunks);
            putLe<uint32_t>(e + 28, 0);
            putLe<uint64_t>(e + 32, strings.size());
            putLe<uint32_t>(e + 40, static_cast<uint32_t>(docs[i].hash.size()));
            putLe<uint32_t>(e + 44, 0);
            strings += docs[i].hash;
            rec.nChunks += docs[i].nChunks;
            rec.nTokens += docs[i].nTokens;
        }
        rec.nDocs = docs.size();
        std::vector<Section> secs = shardSections(p, rec.nDocs, rec.nChunks, strings.size());
        std::vector<std::vector<std::span<const std::byte>>> pieces(secs.size());
        pieces[0].push_back(table);
        pieces[1].push_back(std::as_bytes(std::span<const char>(strings.data(), strings.size())));
        for (size_t si = 2; si < secs.size(); ++si)
            for (const DocBlob& d : docs) {
                const uint32_t l = secs[si].layer;
                pieces[si].push_back(secs[si].kind == SectionKind::RoutingKeys ? d.route[l]
                                     : secs[si].kind == SectionKind::Keys      ? d.keys[l]
                                                                               : d.values[l]);
            }
        const fs::path file = dir / rec.file;
        Result<Written> w = writeContainer(file, kShardMagic, {seq, rec.nDocs, rec.nChunks, 0}, secs, pieces);
        if (!w) {
            ::unlink(file.c_str());
            return w.status();
        }
        rec.bytes = w->fileBytes;
        rec.headerChecksum = w->headerChecksum;
        return rec;
    }

    void recount(ManifestState& s) const {
        s.nDocs = s.nChunks = s.nTokens = s.nTombstones = s.nChunksTotal = 0;
        for (const ShardRecord& r : s.shards) {
            s.nChunksTotal += r.nChunks;
            s.nTombstones += r.deletedRows.size();
        }
        for (const auto& [id, d] : live) {
            (void)id;
            ++s.nDocs;
            s.nChunks += d.nChunks;
            s.nTokens += d.nTokens;
        }
    }

    Status loadFrom(const Bank& b) {
        m = ManifestState{};
        MSA_ASSIGN_OR_RETURN(m, readManifest(dir));
        live.clear();
        for (const DocumentEntry& d : b.documents())
            if (d.live()) live[d.id] = {d.shard, d.row, d.nChunks, d.nTokens, d.contentHash};
        return {};
    }

    void removeOrphans() {
        std::set<std::string> known = {kManifestName, kTemplateName, "lock"};
        for (const ShardRecord& r : m.shards) known.insert(r.file);
        std::error_code ec;
        std::vector<fs::path> doomed;
        for (const auto& e : fs::directory_iterator(dir, ec))
            if (!known.count(e.path().filename().string())) doomed.push_back(e.path());
        for (const fs::path& pth : doomed) fs::remove(pth, ec);
    }
};

BankWriter::BankWriter() = default;
BankWriter::~BankWriter() = default;
BankWriter::BankWriter(BankWriter&&) noexcept = default;
BankWriter& BankWriter::operator=(BankWriter&&) noexcept = default;

const BankParams& BankWriter::params() const { return m_impl->m.params; }
uint64_t BankWriter::nPendingDocuments() const { return m_impl->pending.size(); }

Result<BankWriter> BankWriter::create(const fs::path& dir, const BankParams& params, const TemplateHead& th) {
    MSA_RETURN_IF_ERROR(validateParams(params));
    const uint64_t tmplElems = uint64_t(params.nTemplateTokens) * params.nKvHeads * params.headDim;
    if (th.keys.size() != params.nLayers || th.values.size() != params.nLayers)
        return Status{ErrorCode::Mismatch, "template head has " + std::to_string(th.keys.size()) + " layers, the bank " +
                                               std::to_string(params.nLayers)};
    for (uint32_t l = 0; l < params.nLayers; ++l)
        if (th.keys[l].size() != tmplElems || th.values[l].size() != tmplElems)
            return Status{ErrorCode::Mismatch, "template head layer " + std::to_string(l) + ": expected " +
                                                   std::to_string(tmplElems) + " values"};
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return statusFromErrno(ec.value(), "creating bank folder " + quotedName(dir.string()));
    if (fs::exists(dir / kManifestName, ec))
        return Status{ErrorCode::AlreadyExists, "a memory bank already exists at " + quotedName(dir.string())};
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    MSA_RETURN_IF_ERROR(impl->lock());
    impl->m.params = params;

    std::vector<Section> secs = templateSections(params);
    std::vector<std::vector<std::byte>> conv;
    conv.reserve(secs.size());
    std::vector<std::vector<std::span<const std::byte>>> pieces(secs.size());
    for (size_t i = 0; i < secs.size(); ++i) {
        const auto& src = secs[i].kind == SectionKind::TemplateKeys ? th.keys[secs[i].layer] : th.values[secs[i].layer];
        conv.push_back(convert(src, params.storage));
        pieces[i].push_back(conv.back());
    }
    MSA_ASSIGN_OR_RETURN(Written tw, writeContainer(dir / kTemplateName, kTemplateMagic, {}, secs, pieces));
    impl->m.templateBytes = tw.fileBytes;
    impl->m.templateHeaderChecksum = tw.headerChecksum;
    MSA_RETURN_IF_ERROR(writeManifest(dir, impl->m));
    // The new folder's own entry must survive a crash too (best effort: the parent may be read-only).
    (void)syncDir(dir.has_parent_path() ? dir.parent_path() : fs::path("."));
    BankWriter w;
    w.m_impl = std::move(impl);
    return w;
}

Result<BankWriter> BankWriter::open(const fs::path& dir) {
    auto impl = std::make_unique<Impl>();
    impl->dir = dir;
    std::error_code ec;
    if (!fs::exists(dir / kManifestName, ec)) return notFound("no memory bank at " + quotedName(dir.string()) + " (no manifest.json)");
    MSA_RETURN_IF_ERROR(impl->lock());
    MSA_ASSIGN_OR_RETURN(Bank b, Bank::open(dir));
    MSA_RETURN_IF_ERROR(impl->loadFrom(b));
    impl->removeOrphans();
    BankWriter w;
    w.m_impl = std::move(impl);
    return w;
}

Status BankWriter::append(const DocumentInput& doc) {
    Impl& I = *m_impl;
    const BankParams& p = I.m.params;
    const std::string name = "memory document " + std::to_string(doc.id);
    if (I.live.count(doc.id)) {
        auto it = I.live.find(doc.id);
        if (!I.pendingRemovals.count({it->second.shard, it->second.row}))
            return invalidArgument(name + " is already in the bank (use replace)");
    }
    if (I.pendingIds.count(doc.id)) return invalidArgument(name + " was already appended");
    if (doc.nChunks == 0 || doc.nChunks != (doc.nTokens + p.chunkSize - 1) / p.chunkSize)
        return Status{ErrorCode::Mismatch, name + ": " + std::to_string(doc.nChunks) + " chunks for " +
                                               std::to_string(doc.nTokens) + " tokens at P=" + std::to_string(p.chunkSize)};
    const size_t nL = p.routingLayers.size();
    if (doc.routingKeys.size() != nL || doc.values.size() != nL || doc.keys.size() != (p.keysShared ? 0 : nL))
        return Status{ErrorCode::Mismatch, name + ": tensors for the wrong number of routing layers"};
    const uint64_t kvElems = uint64_t(doc.nChunks) * p.nKvHeads * p.headDim;
    const uint64_t rElems = uint64_t(doc.nChunks) * p.nRouteHeads * p.headDim;
    PendingDoc pd{doc.id, doc.contentHash, doc.nTokens, doc.nChunks, {}, {}, {}};
    uint64_t bytes = 0;
    for (size_t l = 0; l < nL; ++l) {
        if (doc.routingKeys[l].size() != rElems || doc.values[l].size() != kvElems ||
            (!p.keysShared && doc.keys[l].size() != kvElems))
            return Status{ErrorCode::Mismatch, name + ": routing layer " + std::to_string(l) + ": tensor sizes do not match [" +
                                                   std::to_string(doc.nChunks) + " chunks][heads][" + std::to_string(p.headDim) + "]"};
        pd.route.push_back(convert(doc.routingKeys[l], p.storage));
        if (!p.keysShared) pd.keys.push_back(convert(doc.keys[l], p.storage));
        pd.values.push_back(convert(doc.values[l], p.storage));
        bytes += (rElems + kvElems * (p.keysShared ? 1 : 2)) * elemBytes(p.storage);
    }
    I.pending.push_back(std::move(pd));
    I.pendingIds[doc.id] = bytes;
    I.pendingBytes += bytes;
    if (I.pendingBytes >= p.maxShardBytes) return commit();
    return {};
}

Status BankWriter::remove(int64_t id) {
    Impl& I = *m_impl;
    if (auto pit = I.pendingIds.find(id); pit != I.pendingIds.end()) {
        I.pendingBytes -= pit->second;
        I.pendingIds.erase(pit);
        I.pending.erase(std::find_if(I.pending.begin(), I.pending.end(), [&](const PendingDoc& d) { return d.id == id; }));
        return {};
    }
    auto it = I.live.find(id);
    if (it == I.live.end() || I.pendingRemovals.count({it->second.shard, it->second.row}))
        return notFound("memory document " + std::to_string(id) + " is not in bank " + quotedName(I.dir.string()));
    I.pendingRemovals.insert({it->second.shard, it->second.row});
    return {};
}

Status BankWriter::replace(const DocumentInput& doc) {
    Impl& I = *m_impl;
    auto it = I.live.find(doc.id);
    const bool had = it != I.live.end() && !I.pendingRemovals.count({it->second.shard, it->second.row});
    if (had) MSA_RETURN_IF_ERROR(remove(doc.id));
    Status st = append(doc);
    if (!st && had && st.code() != ErrorCode::DiskFull && st.code() != ErrorCode::IoError)
        I.pendingRemovals.erase({it->second.shard, it->second.row});
    return st;
}

void BankWriter::rollback() {
    m_impl->pending.clear();
    m_impl->pendingIds.clear();
    m_impl->pendingRemovals.clear();
    m_impl->pendingBytes = 0;
}

std::optional<std::string> BankWriter::contentHash(int64_t id) const {
    auto it = m_impl->live.find(id);
    if (it == m_impl->live.end()) return std::nullopt;
    return it->second.hash;
}

Status BankWriter::commit() {
    Impl& I = *m_impl;
    if (I.pending.empty() && I.pendingRemovals.empty()) return {};
    ManifestState next = I.m;
    std::optional<ShardRecord> rec;
    if (!I.pending.empty()) {
        std::vector<DocBlob> blobs;
        for (const PendingDoc& d : I.pending) {
            DocBlob b{d.id, d.hash, d.nTokens, d.nChunks, {}, {}, {}};
            for (auto& v : d.route) b.route.emplace_back(v);
            for (auto& v : d.keys) b.keys.emplace_back(v);
            for (auto& v : d.values) b.values.emplace_back(v);
            blobs.push_back(std::move(b));
        }
        MSA_ASSIGN_OR_RETURN(ShardRecord r, I.writeShard(next.nextSeq, blobs));
        rec = r;
        next.shards.push_back(r);
        ++next.nextSeq;
    }
    for (const auto& [shard, row] : I.pendingRemovals) {
        auto& rows = next.shards[shard].deletedRows;
        rows.insert(std::upper_bound(rows.begin(), rows.end(), row), row);
    }
    ++next.generation;
    // Counts of the state after this commit.
    std::unordered_map<int64_t, LiveDoc> nextLive = I.live;
    for (auto it = nextLive.begin(); it != nextLive.end();)
        it = I.pendingRemovals.count({it->second.shard, it->second.row}) ? nextLive.erase(it) : std::next(it);
    if (rec)
        for (uint32_t r = 0; r < I.pending.size(); ++r)
            nextLive[I.pending[r].id] = {static_cast<uint32_t>(next.shards.size() - 1), r, I.pending[r].nChunks,
                                         I.pending[r].nTokens, I.pending[r].hash};
    std::swap(I.live, nextLive);
    I.recount(next);
    std::swap(I.live, nextLive);
    Status st = writeManifest(I.dir, next);
    if (!st) {
        if (rec) ::unlink((I.dir / rec->file).c_str());
        return st.withContext("committing to memory bank " + quotedName(I.dir.string()));
    }
    I.m = std::move(next);
    I.live = std::move(nextLive);
    rollback();
    return {};
}

Result<CompactReport> BankWriter::compact() {
    Impl& I = *m_impl;
    MSA_RETURN_IF_ERROR(commit());
    CompactReport rep;
    std::vector<std::string> oldFiles;
    {
        MSA_ASSIGN_OR_RETURN(Bank b, Bank::open(I.dir, {.verifyData = true, .expectFingerprint = std::nullopt}));
        rep.bytesBefore = b.diskBytes();
        rep.nRemoved = b.nTombstones();
        for (const ShardRecord& r : I.m.shards) oldFiles.push_back(r.file);
        ManifestState next = I.m;
        next.shards.clear();
        const BankParams& p = I.m.params;
        const uint64_t perChunk = (uint64_t(p.nRouteHeads) + uint64_t(p.nKvHeads) * (p.keysShared ? 1 : 2)) * p.headDim *
                                  elemBytes(p.storage) * p.routingLayers.size();
        std::vector<DocBlob> batch;
        uint64_t batchBytes = 0;
        auto flush = [&]() -> Status {
            if (batch.empty()) return {};
            MSA_ASSIGN_OR_RETURN(ShardRecord r, I.writeShard(next.nextSeq++, batch));
            next.shards.push_back(std::move(r));
            batch.clear();
            batchBytes = 0;
            return {};
        };
        Status st;
        const auto& docs = b.documents();
        for (size_t row = 0; row < docs.size() && st; ++row) {
            const DocumentEntry& d = docs[row];
            if (!d.live()) continue;
            const uint64_t bytes = perChunk * d.nChunks;
            if (!batch.empty() && batchBytes + bytes > p.maxShardBytes) st = flush();
            DocBlob blob{d.id, d.contentHash, d.nTokens, d.nChunks, {}, {}, {}};
            for (size_t l = 0; l < p.routingLayers.size(); ++l) {
                blob.route.push_back(b.routingKeysOf(row, l));
                if (!p.keysShared) blob.keys.push_back(b.keys(row, l));
                blob.values.push_back(b.values(row, l));
            }
            batch.push_back(std::move(blob));
            batchBytes += bytes;
            ++rep.nDocuments;
        }
        if (st) st = flush();
        if (st) {
            ++next.generation;
            next.nTombstones = 0;
            next.nChunksTotal = next.nChunks;
            st = writeManifest(I.dir, next);
        }
        if (!st) {
            for (const ShardRecord& r : next.shards) ::unlink((I.dir / r.file).c_str());
            return st.withContext("compacting memory bank " + quotedName(I.dir.string()));
        }
    }
    for (const std::string& f : oldFiles) ::unlink((I.dir / f).c_str());
    (void)syncDir(I.dir);
    MSA_ASSIGN_OR_RETURN(Bank after, Bank::open(I.dir));
    MSA_RETURN_IF_ERROR(I.loadFrom(after));
    rep.bytesAfter = after.diskBytes();
    return rep;
}

}  // namespace msa::memory

// safetensors_file.cpp: header parsing (nlohmann_json, no exceptions escape) and validation.
#include "core/model/safetensors_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

namespace msa::model {

namespace {

constexpr uint64_t kMaxHeaderSize = 100'000'000;   // the reference implementation's limit

// Every dtype the safetensors format defines (for the message: a known-but-unhandled dtype and an
// unknown string are both Unsupported, since the format gains dtypes over time).
const std::set<std::string, std::less<>> kKnownDtypes = {
    "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "I16", "U16",
    "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64"};

std::string fileMsg(const std::filesystem::path& p, const std::string& what) {
    std::string m = "'";   // appended piecewise: GCC 12 raises a false -Wrestrict on "'" + std::string
    m += p.string();
    m += "': ";
    m += what;
    return m;
}

Status parseHeader(const std::filesystem::path& path, std::span<const std::byte> header, uint64_t dataSize,
                   std::vector<SafetensorsTensor>& tensors, std::map<std::string, std::string>& metadata) {
    const auto* begin = reinterpret_cast<const char*>(header.data());
    nlohmann::json j = nlohmann::json::parse(begin, begin + header.size(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return corrupt(fileMsg(path, "the header is not valid JSON"));
    if (!j.is_object()) return corrupt(fileMsg(path, "the header is not a JSON object"));

    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const nlohmann::json& e = it.value();
        if (name == "__metadata__") {
            if (!e.is_object()) return corrupt(fileMsg(path, "__metadata__ is not an object"));
            for (auto m = e.begin(); m != e.end(); ++m) {
                if (!m->is_string()) return corrupt(fileMsg(path, "__metadata__ value '" + m.key() + "' is not a string"));
                metadata[m.key()] = m->get<std::string>();
            }
            continue;
        }
        const std::string tn = "tensor '" + name + "'";
        if (!e.is_object()) return corrupt(fileMsg(path, tn + ": entry is not an object"));
        auto dt = e.find("dtype");
        auto sh = e.find("shape");
        auto off = e.find("data_offsets");
        if (dt == e.end() || !dt->is_string()) return corrupt(fileMsg(path, tn + ": missing or non-string dtype"));
        if (sh == e.end() || !sh->is_array()) return corrupt(fileMsg(path, tn + ": missing or non-array shape"));
        if (off == e.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            return corrupt(fileMsg(path, tn + ": data_offsets must be two non-negative integers"));

        SafetensorsTensor t;
        t.name = name;
        const std::string& dts = dt->get_ref<const std::string&>();
        if (dts == "F32") t.dtype = DType::F32;
        else if (dts == "F16") t.dtype = DType::F16;
        else if (dts == "BF16") t.dtype = DType::BF16;
        else if (kKnownDtypes.count(dts))
            return unsupported(fileMsg(path, tn + ": dtype " + dts + " is not supported (supported: F32, F16, BF16)"));
        else   // possibly a dtype added to the format after this build: Unsupported, like GGUF
            return unsupported(fileMsg(path, tn + ": unknown dtype '" + dts.substr(0, 32) + "'"));

        uint64_t nElements = 1;
        for (const nlohmann::json& d : *sh) {
            if (!d.is_number_unsigned()) return corrupt(fileMsg(path, tn + ": shape entries must be non-negative integers"));
            const uint64_t v = d.get<uint64_t>();
            if (v != 0 && nElements > std::numeric_limits<uint64_t>::max() / v)
                return corrupt(fileMsg(path, tn + ": element count overflows 64 bits"));
            nElements *= v;
            t.shape.push_back(v);
        }
        if (t.shape.size() > 8) return corrupt(fileMsg(path, tn + ": " + std::to_string(t.shape.size()) + " dimensions"));
        const uint64_t elemBytes = dtypeInfo(t.dtype).blockBytes;
        if (nElements > std::numeric_limits<uint64_t>::max() / elemBytes)
            return corrupt(fileMsg(path, tn + ": byte size overflows 64 bits"));
        t.begin = (*off)[0].get<uint64_t>();
        t.end = (*off)[1].get<uint64_t>();
        if (t.begin > t.end) return corrupt(fileMsg(path, tn + ": data_offsets end before they begin"));
        if (t.end > dataSize)
            return corrupt(fileMsg(path, tn + ": data [" + std::to_string(t.begin) + ", " + std::to_string(t.end) +
                                             ") runs past the end of the file (data section holds " +
                                             std::to_string(dataSize) + " bytes)"));
        if (t.end - t.begin != nElements * elemBytes)
            return corrupt(fileMsg(path, tn + ": holds " + std::to_string(t.end - t.begin) + " bytes but shape and " +
                                             dts + " need " + std::to_string(nElements * elemBytes)));
        tensors.push_back(std::move(t));
    }

    std::vector<const SafetensorsTensor*> byOffset;
    for (const SafetensorsTensor& t : tensors)
        if (t.end > t.begin) byOffset.push_back(&t);   // empty tensors occupy no bytes
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < byOffset.size(); ++i)
        if (byOffset[i - 1]->end > byOffset[i]->begin)
            return corrupt(fileMsg(path, "tensor '" + byOffset[i]->name + "' overlaps tensor '" + byOffset[i - 1]->name + "'"));
    return Status::ok();
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
    MSA_ASSIGN_OR_RETURN(FileMapping map, FileMapping::open(path));
    SafetensorsFile f;
    f.m_map = std::move(map);
    f.m_path = std::make_unique<std::filesystem::path>(path);
    if (f.m_map.size() < 8)
        return corrupt(fileMsg(path, "truncated: " + std::to_string(f.m_map.size()) + " bytes, too short for the header length"));
    uint64_t n = 0;
    std::memcpy(&n, f.m_map.data(), 8);
    if (n > f.m_map.size() - 8)
        return corrupt(fileMsg(path, "truncated: the header length " + std::to_string(n) + " exceeds the " +
                                         std::to_string(f.m_map.size() - 8) + " bytes after it"));
    if (n > kMaxHeaderSize)
        return corrupt(fileMsg(path, "header length " + std::to_string(n) + " exceeds the 100 MB limit"));
    if (n < 2) return corrupt(fileMsg(path, "header length " + std::to_string(n) + " is too short for a JSON object"));
    f.m_headerSize = n;
    const uint64_t dataSize = f.m_map.size() - 8 - n;
    try {
        MSA_RETURN_IF_ERROR(parseHeader(path, f.headerBytes(), dataSize, f.m_tensors, f.m_metadata));
    } catch (const std::exception& e) {
        return Status::fromException(e, "'" + path.string() + "': reading the safetensors header");
    }
    const std::byte* data = f.m_map.data() + 8 + n;
    for (size_t i = 0; i < f.m_tensors.size(); ++i) {
        SafetensorsTensor& t = f.m_tensors[i];
        t.data = std::span<const std::byte>(data + t.begin, static_cast<size_t>(t.end - t.begin));
        t.file = f.m_path.get();
        f.m_index.emplace(t.name, i);
    }
    return f;
}

std::span<const std::byte> SafetensorsFile::headerBytes() const {
    return m_map.bytes().subspan(8, static_cast<size_t>(m_headerSize));
}

const SafetensorsTensor* SafetensorsFile::findTensor(std::string_view name) const {
    auto it = m_index.find(std::string(name));
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

Result<SafetensorsSet> SafetensorsSet::open(const std::filesystem::path& path) {
    SafetensorsSet set;
    const std::string fn = path.filename().string();
    const bool isIndex = fn.size() > 5 && fn.ends_with(".json");
    if (!isIndex) {
        MSA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(path));
        set.m_files.push_back(std::move(f));
    } else {
        MSA_ASSIGN_OR_RETURN(FileMapping map, FileMapping::open(path));
        const auto* b = reinterpret_cast<const char*>(map.data());
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(b, b + map.size(), nullptr, false);
        } catch (const std::exception& e) {
            return Status::fromException(e, "'" + path.string() + "'");
        }
        if (j.is_discarded() || !j.is_object()) return corrupt(fileMsg(path, "the index is not a JSON object"));
        auto wm = j.find("weight_map");
        if (wm == j.end() || !wm->is_object()) return corrupt(fileMsg(path, "the index has no weight_map object"));
        std::vector<std::string> shardNames;
        std::unordered_map<std::string, size_t> shardOf;
        std::vector<std::pair<std::string, std::string>> listed;
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it->is_string()) return corrupt(fileMsg(path, "weight_map entry '" + it.key() + "' is not a string"));
            const std::string& shard = it->get_ref<const std::string&>();
            // Only plain names of files beside the index: an index must not reach elsewhere on disk.
            if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
                shard == "." || shard == "..")
                return corrupt(fileMsg(path, "weight_map names shard '" + shard + "' for tensor '" + it.key() +
                                                 "', which is not a plain file name"));
            if (!shardOf.count(shard)) {
                shardOf.emplace(shard, shardNames.size());
                shardNames.push_back(shard);
            }
            listed.emplace_back(it.key(), shard);
        }
        if (shardNames.empty()) return corrupt(fileMsg(path, "the weight_map is empty"));
        for (const std::string& s : shardNames) {
            Result<SafetensorsFile> f = SafetensorsFile::open(path.parent_path() / s);
            if (!f) return f.status().withContext("shard of '" + path.string() + "'");
            set.m_files.push_back(std::move(f).value());
        }
        for (const auto& [tensor, shard] : listed)
            if (!set.m_files[shardOf[shard]].findTensor(tensor))
                return corrupt(fileMsg(path, "weight_map puts tensor '" + tensor + "' in shard '" + shard +
                                                 "', which does not contain it"));
    }
    for (size_t fi = 0; fi < set.m_files.size(); ++fi) {
        const auto& ts = set.m_files[fi].tensors();
        for (size_t ti = 0; ti < ts.size(); ++ti) {
            if (!set.m_index.emplace(ts[ti].name, std::make_pair(fi, ti)).second)
                return corrupt(fileMsg(set.m_files[fi].path(), "tensor '" + ts[ti].name + "' also appears in shard '" +
                                                                   set.m_files[set.m_index[ts[ti].name].first].path().string() + "'"));
        }
    }
    return set;
}

std::vector<const SafetensorsTensor*> SafetensorsSet::tensors() const {
    std::vector<const SafetensorsTensor*> out;
    for (const SafetensorsFile& f : m_files)
        for (const SafetensorsTensor& t : f.tensors()) out.push_back(&t);
    return out;
}

const SafetensorsTensor* SafetensorsSet::findTensor(std::string_view name) const {
    auto it = m_index.find(std::string(name));
    return it == m_index.end() ? nullptr : &m_files[it->second.first].tensors()[it->second.second];
}

}  // namespace msa::model

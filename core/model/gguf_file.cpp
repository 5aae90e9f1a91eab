// gguf_file.cpp: GGUF parsing with validation of every value read from the file before it is used.
#include "core/model/gguf_file.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

namespace msa::model {

namespace {

constexpr uint64_t kMaxDims = 4;          // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;         // arrays of arrays deeper than this are not a real model
constexpr uint64_t kDefaultAlignment = 32;
// The largest real metadata arrays are vocabularies and merge lists (a few hundred thousand entries).
// The limit bounds the memory a corrupt count can make the parser spend.
constexpr uint64_t kMaxArrayLength = uint64_t{1} << 23;

constexpr std::array<std::string_view, 40> kGgmlNames = {
    "f32", "f16", "q4_0", "q4_1", "q4_2 (removed)", "q4_3 (removed)", "q5_0", "q5_1", "q8_0", "q8_1",
    "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "q8_K", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
    "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
    "bf16", "q4_0_4_4 (removed)", "q4_0_4_8 (removed)", "q4_0_8_8 (removed)", "tq1_0", "tq2_0",
    "iq4_nl_4_4 (removed)", "iq4_nl_4_8 (removed)", "iq4_nl_8_8 (removed)", "mxfp4",
};

// Smallest encoding of one element of each type, to reject counts larger than the bytes left.
uint64_t minEncodedSize(GgufType t) {
    switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: case GgufType::String: return 8;
    case GgufType::Array: return 12;
    }
    return 1;
}

bool validType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

std::string printable(std::string_view s) {
    std::string out = "'";
    // Names come from an untrusted file: keep messages printable and short.
    for (char c : s.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    if (s.size() > 200) out += "...";
    out += "'";
    return out;
}

}  // namespace

std::string_view ggufTypeName(GgufType type) {
    static constexpr std::array<std::string_view, 13> names = {"u8",  "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                                               "bool", "string", "array", "u64", "i64", "f64"};
    const auto i = static_cast<uint32_t>(type);
    return i < names.size() ? names[i] : "invalid";
}

std::string_view ggmlTypeName(uint32_t ggmlType) { return ggmlType < kGgmlNames.size() ? kGgmlNames[ggmlType] : ""; }

// Reads the file front to back. The first failure is kept in m_error; later reads then fail fast,
// so the parse code reads straight through and checks once per entry.
class GgufParser {
public:
    GgufParser(const FileMapping& map, GgufFile& out)
        : m_bytes(reinterpret_cast<const uint8_t*>(map.data())), m_size(map.size()), m_out(out) {
        m_file = map.path().string();
    }

    Status parse();

private:
    const Status& fail(ErrorCode code, const std::string& what) {
        if (m_error.isOk()) m_error = Status(code, "'" + m_file + "': " + what);
        return m_error;
    }
    const Status& truncated(const std::string& what) {
        return fail(ErrorCode::Corrupt, "truncated: " + what + " at offset " + std::to_string(m_pos) +
                                            " runs past the end of the file (" + std::to_string(m_size) + " bytes)");
    }
    uint64_t left() const { return m_size - m_pos; }

    template <typename T>
    bool read(T& v, const char* what) {
        if (!m_error.isOk()) return false;
        if (left() < sizeof(T)) {
            truncated(what);
            return false;
        }
        std::memcpy(&v, m_bytes + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return true;
    }

    bool readString(std::string_view& s, const std::string& what) {
        uint64_t len = 0;
        if (!read(len, "string length")) return false;
        if (len > left()) {
            fail(ErrorCode::Corrupt, what + ": string length " + std::to_string(len) + " at offset " +
                                         std::to_string(m_pos - 8) + " exceeds the " + std::to_string(left()) +
                                         " bytes left in the file (truncated or corrupt)");
            return false;
        }
        s = std::string_view(reinterpret_cast<const char*>(m_bytes + m_pos), static_cast<size_t>(len));
        m_pos += len;
        return true;
    }

    bool readValue(GgufType type, GgufValue& v, const std::string& key, int depth);

    const uint8_t* m_bytes;
    uint64_t m_size;
    uint64_t m_pos = 0;
    std::string m_file;
    Status m_error;
    GgufFile& m_out;
};

bool GgufParser::readValue(GgufType type, GgufValue& v, const std::string& key, int depth) {
    v.type = type;
    switch (type) {
    case GgufType::U8: { uint8_t x; if (!read(x, "u8 value")) return false; v.value = uint64_t{x}; return true; }
    case GgufType::I8: { int8_t x; if (!read(x, "i8 value")) return false; v.value = int64_t{x}; return true; }
    case GgufType::U16: { uint16_t x; if (!read(x, "u16 value")) return false; v.value = uint64_t{x}; return true; }
    case GgufType::I16: { int16_t x; if (!read(x, "i16 value")) return false; v.value = int64_t{x}; return true; }
    case GgufType::U32: { uint32_t x; if (!read(x, "u32 value")) return false; v.value = uint64_t{x}; return true; }
    case GgufType::I32: { int32_t x; if (!read(x, "i32 value")) return false; v.value = int64_t{x}; return true; }
    case GgufType::U64: { uint64_t x; if (!read(x, "u64 value")) return false; v.value = x; return true; }
    case GgufType::I64: { int64_t x; if (!read(x, "i64 value")) return false; v.value = x; return true; }
    case GgufType::F32: { float x; if (!read(x, "f32 value")) return false; v.value = double{x}; return true; }
    case GgufType::F64: { double x; if (!read(x, "f64 value")) return false; v.value = x; return true; }
    case GgufType::Bool: {
        uint8_t x;
        if (!read(x, "bool value")) return false;
        if (x > 1) {
            fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": bool value " + std::to_string(x) + " is not 0 or 1");
            return false;
        }
        v.value = x == 1;
        return true;
    }
    case GgufType::String: {
        std::string_view s;
        if (!readString(s, "metadata " + printable(key))) return false;
        v.value = s;
        return true;
    }
    case GgufType::Array: {
        if (depth >= kMaxArrayDepth) {
            fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": arrays nested deeper than " +
                                         std::to_string(kMaxArrayDepth) + " levels");
            return false;
        }
        uint32_t et = 0;
        uint64_t n = 0;
        if (!read(et, "array element type") || !read(n, "array length")) return false;
        if (!validType(et)) {
            fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": invalid array element type " + std::to_string(et));
            return false;
        }
        v.elemType = static_cast<GgufType>(et);
        if (n > left() / minEncodedSize(v.elemType)) {
            fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": array of " + std::to_string(n) + " " +
                                         std::string(ggufTypeName(v.elemType)) + " values cannot fit in the " +
                                         std::to_string(left()) + " bytes left in the file");
            return false;
        }
        if (n > kMaxArrayLength) {
            fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": array of " + std::to_string(n) +
                                         " values is larger than any model needs (limit " +
                                         std::to_string(kMaxArrayLength) + ")");
            return false;
        }
        // Grown while reading, so memory follows the bytes actually parsed, not the claimed count.
        std::vector<GgufValue> items;
        items.reserve(static_cast<size_t>(std::min<uint64_t>(n, 65536)));
        for (uint64_t k = 0; k < n; ++k) {
            items.emplace_back();
            if (!readValue(v.elemType, items.back(), key, depth + 1)) return false;
        }
        v.value = std::move(items);
        return true;
    }
    }
    fail(ErrorCode::Corrupt, "metadata " + printable(key) + ": invalid value type " + std::to_string(static_cast<uint32_t>(type)));
    return false;
}

Status GgufParser::parse() {
    if (m_size < 4) return truncated("magic");
    if (std::memcmp(m_bytes, "GGUF", 4) != 0) return fail(ErrorCode::Corrupt, "not a GGUF file (bad magic)");
    m_pos = 4;
    uint32_t version = 0;
    if (!read(version, "version")) return m_error;
    if (version != 2 && version != 3) {
        std::string why = "GGUF version " + std::to_string(version) + " is not supported (only 2 and 3)";
        if (version == 1) why += "; re-convert the model with a current llama.cpp";
        if ((version & 0xFFFFu) == 0 && version != 0) why += "; the file looks big-endian";
        return fail(ErrorCode::Unsupported, why);
    }
    m_out.m_version = version;
    uint64_t nTensors = 0, nKv = 0;
    if (!read(nTensors, "tensor count") || !read(nKv, "metadata count")) return m_error;
    // A key-value entry takes at least 8 (key length) + 4 (type) + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8.
    if (nKv > left() / 13)
        return fail(ErrorCode::Corrupt, "metadata count " + std::to_string(nKv) + " cannot fit in the " +
                                            std::to_string(left()) + " bytes left (truncated or corrupt)");
    if (nTensors > left() / 32)
        return fail(ErrorCode::Corrupt, "tensor count " + std::to_string(nTensors) + " cannot fit in the " +
                                            std::to_string(left()) + " bytes left (truncated or corrupt)");

    m_out.m_kv.reserve(static_cast<size_t>(std::min<uint64_t>(nKv, 4096)));
    for (uint64_t i = 0; i < nKv; ++i) {
        const uint64_t start = m_pos;
        GgufKeyValue kv;
        if (!readString(kv.key, "metadata key #" + std::to_string(i))) return m_error;
        uint32_t type = 0;
        if (!read(type, "metadata value type")) return m_error;
        if (!validType(type))
            return fail(ErrorCode::Corrupt, "metadata " + printable(kv.key) + ": invalid value type " + std::to_string(type));
        if (!readValue(static_cast<GgufType>(type), kv.value, std::string(kv.key), 0)) return m_error;
        kv.raw = std::span<const std::byte>(reinterpret_cast<const std::byte*>(m_bytes + start), m_pos - start);
        if (m_out.m_kvIndex.count(kv.key)) return fail(ErrorCode::Corrupt, "duplicate metadata key " + printable(kv.key));
        m_out.m_kvIndex.emplace(kv.key, m_out.m_kv.size());
        m_out.m_kv.push_back(std::move(kv));
    }

    if (const GgufValue* a = m_out.find("general.alignment")) {
        const uint64_t* al = std::get_if<uint64_t>(&a->value);
        if (a->type != GgufType::U32 || !al)
            return fail(ErrorCode::Corrupt, "general.alignment must be a u32, found " + std::string(ggufTypeName(a->type)));
        if (*al == 0 || (*al & (*al - 1)) != 0)
            return fail(ErrorCode::Corrupt, "general.alignment " + std::to_string(*al) + " is not a power of two");
        m_out.m_alignment = *al;
    } else {
        m_out.m_alignment = kDefaultAlignment;
    }

    m_out.m_tensors.reserve(static_cast<size_t>(std::min<uint64_t>(nTensors, 65536)));
    for (uint64_t i = 0; i < nTensors; ++i) {
        GgufTensorInfo t;
        if (!readString(t.name, "tensor name #" + std::to_string(i))) return m_error;
        const std::string tn = "tensor " + printable(t.name);
        uint32_t nDims = 0;
        if (!read(nDims, "tensor dimension count")) return m_error;
        if (nDims == 0 || nDims > kMaxDims)
            return fail(ErrorCode::Corrupt, tn + ": " + std::to_string(nDims) + " dimensions (must be 1.." +
                                                std::to_string(kMaxDims) + ")");
        t.shape.resize(nDims);
        for (uint64_t& d : t.shape)
            if (!read(d, "tensor dimension")) return m_error;
        uint32_t ggml = 0;
        uint64_t offset = 0;
        if (!read(ggml, "tensor type") || !read(offset, "tensor offset")) return m_error;

        uint64_t nElements = 1;
        for (uint64_t d : t.shape) {
            if (d == 0 || d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                return fail(ErrorCode::Corrupt, tn + ": invalid dimension " + std::to_string(d));
            if (nElements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / d)
                return fail(ErrorCode::Corrupt, tn + ": element count overflows 63 bits");
            nElements *= d;
        }
        const std::optional<DType> dt = dtypeFromGgml(ggml);
        if (!dt) {
            const std::string_view gn = ggmlTypeName(ggml);
            // An id past the known table is most likely a type added by a newer llama.cpp: valid
            // input this build cannot handle, so Unsupported (the message says so), not Corrupt.
            if (gn.empty())
                return fail(ErrorCode::Unsupported, tn + ": unknown GGML type id " + std::to_string(ggml) +
                                                        " (from a newer llama.cpp, or a corrupt file)");
            return fail(ErrorCode::Unsupported, tn + ": GGML type " + std::string(gn) + " (" + std::to_string(ggml) +
                                                    ") is not supported (supported: f32, f16, bf16, q8_0, q4_0, "
                                                    "q4_1, q4_K, q6_K)");
        }
        t.dtype = *dt;
        Result<uint64_t> bytes = tensorBytes(t.dtype, t.shape);
        if (!bytes) return fail(ErrorCode::Corrupt, tn + ": " + bytes.status().message());
        t.nElements = nElements;
        t.nBytes = *bytes;
        t.offset = offset;
        if (offset % m_out.m_alignment != 0)
            return fail(ErrorCode::Corrupt, tn + ": data offset " + std::to_string(offset) + " is not a multiple of the " +
                                                "alignment " + std::to_string(m_out.m_alignment));
        if (m_out.m_tensorIndex.count(t.name)) return fail(ErrorCode::Corrupt, "duplicate " + tn);
        m_out.m_tensorIndex.emplace(t.name, m_out.m_tensors.size());
        m_out.m_tensors.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment after the tensor infos.
    const uint64_t a = m_out.m_alignment;
    const uint64_t pad = (a - m_pos % a) % a;
    if (nTensors > 0 && pad > left())
        return fail(ErrorCode::Corrupt, "truncated: the data section would start past the end of the file");
    m_out.m_dataOffset = std::min<uint64_t>(m_pos + pad, m_size);
    const uint64_t dataSize = m_size - m_out.m_dataOffset;

    for (GgufTensorInfo& t : m_out.m_tensors) {
        if (t.offset > dataSize || t.nBytes > dataSize - t.offset)
            return fail(ErrorCode::Corrupt, "tensor " + printable(t.name) + ": data [" + std::to_string(t.offset) + ", +" +
                                                std::to_string(t.nBytes) + ") runs past the end of the file (data "
                                                "section holds " + std::to_string(dataSize) + " bytes)");
        t.data = std::span<const std::byte>(reinterpret_cast<const std::byte*>(m_bytes + m_out.m_dataOffset + t.offset),
                                            static_cast<size_t>(t.nBytes));
    }
    std::vector<const GgufTensorInfo*> byOffset;
    byOffset.reserve(m_out.m_tensors.size());
    for (const GgufTensorInfo& t : m_out.m_tensors) byOffset.push_back(&t);
    std::sort(byOffset.begin(), byOffset.end(), [](auto* x, auto* y) { return x->offset < y->offset; });
    for (size_t i = 1; i < byOffset.size(); ++i) {
        const GgufTensorInfo* p = byOffset[i - 1];
        if (p->offset + p->nBytes > byOffset[i]->offset)   // no overflow: both checked against dataSize
            return fail(ErrorCode::Corrupt, "tensor " + printable(byOffset[i]->name) + " overlaps tensor " + printable(p->name));
    }
    return Status::ok();
}

Result<GgufFile> GgufFile::open(const std::filesystem::path& path) {
    MSA_ASSIGN_OR_RETURN(FileMapping map, FileMapping::open(path));
    GgufFile f;
    f.m_map = std::move(map);
    GgufParser parser(f.m_map, f);
    MSA_RETURN_IF_ERROR(parser.parse());
    return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = m_kvIndex.find(key);
    return it == m_kvIndex.end() ? nullptr : &m_kv[it->second].value;
}

const GgufTensorInfo* GgufFile::findTensor(std::string_view name) const {
    auto it = m_tensorIndex.find(name);
    return it == m_tensorIndex.end() ? nullptr : &m_tensors[it->second];
}

Status GgufFile::typeMismatch(std::string_view key, const GgufValue& v, std::string_view wanted) const {
    // Appended piecewise: GCC 12 raises a false -Wrestrict on "literal" + std::string here.
    std::string m = "'";
    m += path().string();
    m += "': metadata '";
    m += key;
    m += "' holds ";
    m += ggufTypeName(v.type);
    if (v.type == GgufType::Array) {
        m += " of ";
        m += ggufTypeName(v.elemType);
    }
    m += ", expected ";
    m += wanted;
    return {ErrorCode::Mismatch, std::move(m)};
}

#define MSA_GGUF_FIND_OR_RETURN(var, key)                                                                 \
    const GgufValue* var = find(key);                                                                     \
    if (!var) return notFound("'" + path().string() + "': no metadata key '" + std::string(key) + "'")

Result<std::string> GgufFile::getString(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* s = std::get_if<std::string_view>(&v->value)) return std::string(*s);
    return typeMismatch(key, *v, "string");
}

Result<uint64_t> GgufFile::getU64(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* u = std::get_if<uint64_t>(&v->value)) return *u;
    if (const auto* i = std::get_if<int64_t>(&v->value); i && *i >= 0) return static_cast<uint64_t>(*i);
    return typeMismatch(key, *v, "a non-negative integer");
}

Result<uint32_t> GgufFile::getU32(std::string_view key) const {
    MSA_ASSIGN_OR_RETURN(uint64_t u, getU64(key));
    if (u > std::numeric_limits<uint32_t>::max())
        return Status(ErrorCode::Mismatch, "'" + path().string() + "': metadata '" + std::string(key) + "' value " +
                                               std::to_string(u) + " does not fit in 32 bits");
    return static_cast<uint32_t>(u);
}

Result<int64_t> GgufFile::getI64(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* i = std::get_if<int64_t>(&v->value)) return *i;
    if (const auto* u = std::get_if<uint64_t>(&v->value);
        u && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return static_cast<int64_t>(*u);
    return typeMismatch(key, *v, "an integer");
}

Result<float> GgufFile::getF32(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* d = std::get_if<double>(&v->value)) return static_cast<float>(*d);
    return typeMismatch(key, *v, "f32");
}

Result<bool> GgufFile::getBool(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* b = std::get_if<bool>(&v->value)) return *b;
    return typeMismatch(key, *v, "bool");
}

Result<const std::vector<GgufValue>*> GgufFile::getArray(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (const auto* a = v->array()) return a;
    return typeMismatch(key, *v, "array");
}

Result<std::vector<std::string_view>> GgufFile::getStringArray(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (v->type != GgufType::Array || v->elemType != GgufType::String) return typeMismatch(key, *v, "array of string");
    std::vector<std::string_view> out;
    out.reserve(v->array()->size());
    for (const GgufValue& e : *v->array()) out.push_back(std::get<std::string_view>(e.value));
    return out;
}

Result<std::vector<int64_t>> GgufFile::getIntArray(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    const auto* a = v->array();
    if (!a) return typeMismatch(key, *v, "array of integers");
    std::vector<int64_t> out;
    out.reserve(a->size());
    for (const GgufValue& e : *a) {
        if (const auto* i = std::get_if<int64_t>(&e.value)) out.push_back(*i);
        else if (const auto* u = std::get_if<uint64_t>(&e.value);
                 u && *u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            out.push_back(static_cast<int64_t>(*u));
        else return typeMismatch(key, *v, "array of integers");
    }
    return out;
}

Result<std::vector<float>> GgufFile::getF32Array(std::string_view key) const {
    MSA_GGUF_FIND_OR_RETURN(v, key);
    if (v->type != GgufType::Array || (v->elemType != GgufType::F32 && v->elemType != GgufType::F64))
        return typeMismatch(key, *v, "array of f32");
    std::vector<float> out;
    out.reserve(v->array()->size());
    for (const GgufValue& e : *v->array()) out.push_back(static_cast<float>(std::get<double>(e.value)));
    return out;
}

#undef MSA_GGUF_FIND_OR_RETURN

}  // namespace msa::model

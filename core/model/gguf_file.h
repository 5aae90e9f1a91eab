// gguf_file.h: a validating reader for GGUF v2/v3 model files (the llama.cpp format), memory-mapped.
//
// Layout (little-endian): "GGUF" u32 version, u64 tensor_count, u64 kv_count, then kv_count
// metadata entries (string key, u32 type, value; arrays are u32 element type + u64 count + values,
// arrays of arrays allowed), then tensor_count tensor infos (string name, u32 n_dims, u64 ne[n_dims]
// fastest-varying first, u32 ggml type, u64 offset relative to the data section), then padding to
// `general.alignment` (default 32), then the data section. Strings are u64 length + bytes (no NUL).
//
// Everything read from the file is validated before use: every count against the bytes left, every
// string length, nesting depth, dims (1..4, each >= 1, element count and byte size overflow-safe),
// dtype, row length a multiple of the block size, offset alignment, data inside the file, no two
// tensors overlapping, no duplicate names or keys. Errors name the file and the tensor or key.
//
// Ownership: a GgufFile owns its FileMapping; metadata strings and tensor byte spans point into that
// mapping and stay valid while the GgufFile lives (moving it keeps them valid). Move-only. Read-only
// after open(): any number of threads may read at once.
//
// Failure codes of open(): NotFound / PermissionDenied / IoError (from the mapping); Corrupt (bad
// magic, truncation, absurd counts, offsets past the end, overlapping or misaligned tensor data,
// duplicate names, bad alignment, shape not matching the type's block size); Unsupported (GGUF
// version other than 2/3, a GGML type this build does not implement, including ids newer than it knows).
// Typed accessors: NotFound (no such key), Mismatch (the key holds another type or the value does not
// fit the requested type).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(msa::model::GgufFile gguf, msa::model::GgufFile::open(path));
//     MSA_ASSIGN_OR_RETURN(std::string arch, gguf.getString("general.architecture"));
//     const GgufTensorInfo* t = gguf.findTensor("blk.0.attn_q.weight");
//     float y = dotRow(t->dtype, t->data.data(), x, t->shape[0]);
#pragma once

#include "core/model/dtype.h"
#include "core/util/file_map.h"
#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace msa::model {

enum class GgufType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
    String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view ggufTypeName(GgufType type);

// One metadata value. Integers are widened to 64 bits, floats to double; `type` keeps the stored type.
struct GgufValue {
    GgufType type = GgufType::U8;
    GgufType elemType = GgufType::U8;   // arrays only
    std::variant<uint64_t, int64_t, double, bool, std::string_view, std::vector<GgufValue>> value;

    const std::vector<GgufValue>* array() const { return std::get_if<std::vector<GgufValue>>(&value); }
};

struct GgufKeyValue {
    std::string_view key;
    GgufValue value;
    std::span<const std::byte> raw;   // the entry's bytes in the file (key, type and value): for hashing
};

struct GgufTensorInfo {
    std::string_view name;
    std::vector<uint64_t> shape;      // GGML order: shape[0] is the row length (fastest-varying)
    DType dtype = DType::F32;
    uint64_t offset = 0;              // relative to the data section
    uint64_t nElements = 0;
    uint64_t nBytes = 0;
    std::span<const std::byte> data;  // validated view into the mapping
};

class GgufFile {
public:
    GgufFile() = default;
    GgufFile(GgufFile&&) noexcept = default;
    GgufFile& operator=(GgufFile&&) noexcept = default;
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    static Result<GgufFile> open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return m_map.path(); }
    uint32_t version() const { return m_version; }
    uint64_t alignment() const { return m_alignment; }
    uint64_t dataOffset() const { return m_dataOffset; }   // absolute file offset of the data section
    uint64_t fileSize() const { return m_map.size(); }

    const std::vector<GgufKeyValue>& metadata() const { return m_kv; }
    const GgufValue* find(std::string_view key) const;

    Result<std::string> getString(std::string_view key) const;
    Result<uint32_t> getU32(std::string_view key) const;      // any integer type whose value fits
    Result<uint64_t> getU64(std::string_view key) const;
    Result<int64_t> getI64(std::string_view key) const;
    Result<float> getF32(std::string_view key) const;         // f32 or f64
    Result<bool> getBool(std::string_view key) const;
    Result<const std::vector<GgufValue>*> getArray(std::string_view key) const;
    Result<std::vector<std::string_view>> getStringArray(std::string_view key) const;
    Result<std::vector<int64_t>> getIntArray(std::string_view key) const;
    Result<std::vector<float>> getF32Array(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const { return m_tensors; }
    const GgufTensorInfo* findTensor(std::string_view name) const;

private:
    friend class GgufParser;
    Status typeMismatch(std::string_view key, const GgufValue& v, std::string_view wanted) const;

    FileMapping m_map;
    uint32_t m_version = 0;
    uint64_t m_alignment = 32;
    uint64_t m_dataOffset = 0;
    std::vector<GgufKeyValue> m_kv;
    std::vector<GgufTensorInfo> m_tensors;
    std::unordered_map<std::string_view, size_t> m_kvIndex;
    std::unordered_map<std::string_view, size_t> m_tensorIndex;
};

// Name of a GGML type id for messages ("q5_0"), or "" when the id is not a GGML type at all.
std::string_view ggmlTypeName(uint32_t ggmlType);

}  // namespace msa::model

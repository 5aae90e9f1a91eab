// safetensors_file.h: validating readers for Hugging Face safetensors checkpoints, memory-mapped.
//
// Format: u64 little-endian header length N, N bytes of JSON (an object: tensor name ->
// {"dtype", "shape", "data_offsets": [begin, end]} plus an optional "__metadata__" object of strings),
// then the data section; offsets are relative to its start. Shapes are row-major (PyTorch order:
// the last dimension is the row length).
//
// A SafetensorsFile validates, before any tensor is exposed: N against the file size (and a 100 MB
// cap, as the reference implementation), the JSON being an object of well-formed entries, every dtype
// (F32/F16/BF16 are supported; any other dtype string is Unsupported naming the tensor),
// shape entries (non-negative integers, product and byte size overflow-safe),
// begin <= end <= data size, end - begin == product(shape) * element size, and no two tensors
// overlapping. A SafetensorsSet is one file or the shards named by `model.safetensors.index.json`
// (`weight_map`: tensor -> shard file name in the same folder); every name the index lists must be in
// its shard, shard names must be plain file names, and no tensor may appear in two shards.
//
// Ownership: each SafetensorsFile owns its mapping; tensor spans point into it and stay valid while
// the file (or the set holding it) lives, moves included. Read-only after open; thread-safe reads.
//
// Failure codes: NotFound / PermissionDenied / IoError (opening files, a shard named by the index
// that does not exist: NotFound); Corrupt (truncation, bad header length, invalid JSON, malformed
// entries, offsets outside the data section, size not matching shape and dtype, overlaps, an index
// naming a tensor its shard lacks, duplicate tensors across shards); Unsupported (a dtype other than
// F32/F16/BF16, naming the tensor).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(auto set, msa::model::SafetensorsSet::open(folder / "model.safetensors.index.json"));
//     const SafetensorsTensor* t = set.findTensor("model.embed_tokens.weight");
#pragma once

#include "core/model/dtype.h"
#include "core/util/file_map.h"
#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace msa::model {

struct SafetensorsTensor {
    std::string name;
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;       // row-major, outermost first; may be empty (a scalar)
    uint64_t begin = 0, end = 0;       // relative to the data section
    std::span<const std::byte> data;   // validated view into the owning file's mapping
    const std::filesystem::path* file = nullptr;   // the shard holding it (owned by the SafetensorsFile)
};

class SafetensorsFile {
public:
    SafetensorsFile() = default;
    SafetensorsFile(SafetensorsFile&&) noexcept = default;
    SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

    static Result<SafetensorsFile> open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return *m_path; }
    uint64_t headerSize() const { return m_headerSize; }
    std::span<const std::byte> headerBytes() const;   // the JSON header as stored
    const std::map<std::string, std::string>& metadata() const { return m_metadata; }
    const std::vector<SafetensorsTensor>& tensors() const { return m_tensors; }
    const SafetensorsTensor* findTensor(std::string_view name) const;

private:
    FileMapping m_map;
    // Heap-held so that SafetensorsTensor::file stays valid when the file object moves.
    std::unique_ptr<std::filesystem::path> m_path;
    uint64_t m_headerSize = 0;
    std::map<std::string, std::string> m_metadata;
    std::vector<SafetensorsTensor> m_tensors;
    std::unordered_map<std::string, size_t> m_index;
};

class SafetensorsSet {
public:
    // `path` is a .safetensors file or a `*.safetensors.index.json` index.
    static Result<SafetensorsSet> open(const std::filesystem::path& path);

    const std::vector<SafetensorsFile>& files() const { return m_files; }
    // Every tensor of every shard, in shard order then header order.
    std::vector<const SafetensorsTensor*> tensors() const;
    const SafetensorsTensor* findTensor(std::string_view name) const;

private:
    std::vector<SafetensorsFile> m_files;
    std::unordered_map<std::string, std::pair<size_t, size_t>> m_index;   // name -> (file, tensor)
};

}  // namespace msa::model

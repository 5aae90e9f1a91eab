// file_map.h: read-only memory mapping of whole files (model weights, memory-bank shards).
//
// Ownership: a FileMapping owns its mapping and unmaps it on destruction; it is move-only. Views
// (bytes()) are valid while the FileMapping lives. Read-only mappings may be read from any number of
// threads at once.
//
// An empty file maps to an empty view (mmap of length 0 is an error on Linux, so no mapping is made).
//
// Failure codes of open(): NotFound (no such file), PermissionDenied, InvalidArgument (a directory),
// IoError (mmap/fstat failed).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(msa::FileMapping map, msa::FileMapping::open(path));
//     std::span<const std::byte> all = map.bytes();
#pragma once

#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

namespace msa {

class FileMapping {
public:
    FileMapping() = default;
    ~FileMapping();
    FileMapping(FileMapping&& other) noexcept;
    FileMapping& operator=(FileMapping&& other) noexcept;
    FileMapping(const FileMapping&) = delete;
    FileMapping& operator=(const FileMapping&) = delete;

    static Result<FileMapping> open(const std::filesystem::path& path);

    std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(m_data), m_size}; }
    const std::byte* data() const { return static_cast<const std::byte*>(m_data); }
    size_t size() const { return m_size; }
    const std::filesystem::path& path() const { return m_path; }

    // Bounds-checked sub-view: Corrupt (naming the file and `what`) when [offset, offset+length)
    // does not lie inside the file. Parsers call this for every offset they read from the file.
    Result<std::span<const std::byte>> slice(uint64_t offset, uint64_t length, std::string_view what) const;

    // Hint to the kernel that the whole file will be read sequentially / soon (best effort).
    void adviseSequential() const;
    void adviseWillNeed() const;

private:
    void reset() noexcept;

    void* m_data = nullptr;
    size_t m_size = 0;
    std::filesystem::path m_path;
};

}  // namespace msa

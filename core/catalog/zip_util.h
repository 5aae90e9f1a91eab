// zip_util.h: read-only access to a zip archive held in memory, through libzip (internal to
// core/catalog; used by the DOCX and Slack importers).
//
// Every member read is bounded (maxBytes) so a zip bomb cannot exhaust memory; archives with more
// than maxEntries members are refused. Nested archives are never opened.
//
// Ownership: owns the libzip handle; the bytes passed to open() must outlive the reader.
// Thread affinity: one thread.
// Failure codes: Corrupt (not a zip, truncated, CRC error), NotFound (no such member),
// Unsupported (encrypted member, too many members, member too large).
#pragma once

#include "core/util/status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct zip;

namespace msa::catalog {

class ZipReader {
public:
    ZipReader() = default;
    ~ZipReader();
    ZipReader(ZipReader&& other) noexcept;
    ZipReader& operator=(ZipReader&& other) noexcept;
    ZipReader(const ZipReader&) = delete;
    ZipReader& operator=(const ZipReader&) = delete;

    static Result<ZipReader> open(std::string_view bytes, int maxEntries);

    const std::vector<std::string>& names() const { return m_names; }
    bool contains(const std::string& name) const;
    Result<std::string> read(const std::string& name, uint64_t maxBytes) const;

private:
    zip* m_zip = nullptr;
    std::vector<std::string> m_names;
};

}  // namespace msa::catalog

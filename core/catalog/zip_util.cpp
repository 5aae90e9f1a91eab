#include "core/catalog/zip_util.h"

#include <zip.h>

#include <algorithm>
#include <utility>

namespace msa::catalog {

ZipReader::~ZipReader() {
    if (m_zip) zip_discard(m_zip);
}
ZipReader::ZipReader(ZipReader&& other) noexcept
    : m_zip(std::exchange(other.m_zip, nullptr)), m_names(std::move(other.m_names)) {}
ZipReader& ZipReader::operator=(ZipReader&& other) noexcept {
    if (this != &other) {
        if (m_zip) zip_discard(m_zip);
        m_zip = std::exchange(other.m_zip, nullptr);
        m_names = std::move(other.m_names);
    }
    return *this;
}

Result<ZipReader> ZipReader::open(std::string_view bytes, int maxEntries) {
    zip_error_t err;
    zip_error_init(&err);
    zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err);
    if (!src) {
        Status s = corrupt(std::string("zip: ") + zip_error_strerror(&err));
        zip_error_fini(&err);
        return s;
    }
    zip_t* z = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err);
    if (!z) {
        Status s = corrupt(std::string("malformed or truncated zip archive: ") + zip_error_strerror(&err));
        zip_error_fini(&err);
        zip_source_free(src);
        return s;
    }
    zip_error_fini(&err);
    ZipReader r;
    r.m_zip = z;
    const zip_int64_t n = zip_get_num_entries(z, 0);
    if (n < 0 || n > maxEntries)
        return unsupported("zip archive with " + std::to_string(n) + " members (limit " + std::to_string(maxEntries) + ")");
    r.m_names.reserve(static_cast<size_t>(n));
    for (zip_int64_t i = 0; i < n; ++i) {
        const char* name = zip_get_name(z, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_GUESS);
        r.m_names.emplace_back(name ? name : "");
    }
    return r;
}

bool ZipReader::contains(const std::string& name) const {
    return std::find(m_names.begin(), m_names.end(), name) != m_names.end();
}

Result<std::string> ZipReader::read(const std::string& name, uint64_t maxBytes) const {
    const zip_int64_t index = zip_name_locate(m_zip, name.c_str(), ZIP_FL_ENC_GUESS);
    if (index < 0) return notFound("zip member '" + name + "' not found");
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(m_zip, static_cast<zip_uint64_t>(index), 0, &st) != 0)
        return corrupt("zip member '" + name + "': " + zip_strerror(m_zip));
    if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE)
        return unsupported("zip member '" + name + "' is encrypted");
    if ((st.valid & ZIP_STAT_SIZE) && st.size > maxBytes)
        return unsupported("zip member '" + name + "' is " + std::to_string(st.size) +
                           " bytes uncompressed (limit " + std::to_string(maxBytes) + ")");
    zip_file_t* f = zip_fopen_index(m_zip, static_cast<zip_uint64_t>(index), 0);
    if (!f) return corrupt("zip member '" + name + "': " + zip_strerror(m_zip));
    std::string out;
    out.reserve(static_cast<size_t>(std::min<uint64_t>(st.size, maxBytes)));
    char buf[65536];
    for (;;) {
        const zip_int64_t got = zip_fread(f, buf, sizeof buf);
        if (got < 0) {
            Status s = corrupt("zip member '" + name + "': " + zip_error_strerror(zip_file_get_error(f)));
            zip_fclose(f);
            return s;
        }
        if (got == 0) break;
        out.append(buf, static_cast<size_t>(got));
        // The header's size may lie; the bound holds on the bytes actually inflated.
        if (out.size() > maxBytes) {
            zip_fclose(f);
            return unsupported("zip member '" + name + "' inflates beyond " + std::to_string(maxBytes) + " bytes");
        }
    }
    if (zip_fclose(f) != 0) return corrupt("zip member '" + name + "': CRC or read error");
    return out;
}

}  // namespace msa::catalog

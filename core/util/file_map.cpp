#include "core/util/file_map.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace msa {

FileMapping::~FileMapping() { reset(); }

FileMapping::FileMapping(FileMapping&& other) noexcept
    : m_data(other.m_data), m_size(other.m_size), m_path(std::move(other.m_path)) {
    other.m_data = nullptr;
    other.m_size = 0;
}

FileMapping& FileMapping::operator=(FileMapping&& other) noexcept {
    if (this != &other) {
        reset();
        m_data = other.m_data;
        m_size = other.m_size;
        m_path = std::move(other.m_path);
        other.m_data = nullptr;
        other.m_size = 0;
    }
    return *this;
}

void FileMapping::reset() noexcept {
    if (m_data != nullptr && m_size > 0) ::munmap(m_data, m_size);
    m_data = nullptr;
    m_size = 0;
}

Result<FileMapping> FileMapping::open(const std::filesystem::path& path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "cannot open '" + name + "'");

    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        return statusFromErrno(err, "cannot stat '" + name + "'");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return invalidArgument("'" + name + "' is not a regular file");
    }

    FileMapping map;
    map.m_path = path;
    map.m_size = static_cast<size_t>(st.st_size);
    if (map.m_size > 0) {
        void* p = ::mmap(nullptr, map.m_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            map.m_size = 0;
            return statusFromErrno(err, "cannot map '" + name + "'");
        }
        map.m_data = p;
    }
    ::close(fd);   // the mapping keeps the file referenced
    return map;
}

Result<std::span<const std::byte>> FileMapping::slice(uint64_t offset, uint64_t length,
                                                      std::string_view what) const {
    // Written so that offset + length cannot overflow.
    if (offset > m_size || length > m_size - offset) {
        // Appended piecewise: GCC 12 raises a false -Wrestrict on "literal" + std::string here.
        std::string m = "'";
        m += m_path.string();
        m += "': ";
        m += what;
        m += " at offset " + std::to_string(offset) + " with length " + std::to_string(length);
        m += " runs past the end of the file (" + std::to_string(m_size) + " bytes)";
        return corrupt(std::move(m));
    }
    return std::span<const std::byte>(data() + offset, static_cast<size_t>(length));
}

void FileMapping::adviseSequential() const {
    if (m_data && m_size) ::madvise(m_data, m_size, MADV_SEQUENTIAL);
}

void FileMapping::adviseWillNeed() const {
    if (m_data && m_size) ::madvise(m_data, m_size, MADV_WILLNEED);
}

}  // namespace msa

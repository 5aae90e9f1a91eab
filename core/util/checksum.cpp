#include "core/util/checksum.h"

#define XXH_INLINE_ALL   // header-only use: the hashing loops inline into our calls
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace msa {

std::string hex64(uint64_t value) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(value));
    return buf;
}

std::string Digest128::hex() const { return hex64(high) + hex64(low); }

uint64_t xxh3_64(std::span<const std::byte> data, uint64_t seed) {
    return XXH3_64bits_withSeed(data.data(), data.size(), seed);
}
uint64_t xxh3_64(std::string_view text, uint64_t seed) {
    return XXH3_64bits_withSeed(text.data(), text.size(), seed);
}
Digest128 xxh3_128(std::span<const std::byte> data, uint64_t seed) {
    const XXH128_hash_t h = XXH3_128bits_withSeed(data.data(), data.size(), seed);
    return {h.high64, h.low64};
}
Digest128 xxh3_128(std::string_view text, uint64_t seed) {
    const XXH128_hash_t h = XXH3_128bits_withSeed(text.data(), text.size(), seed);
    return {h.high64, h.low64};
}

// XXH3 keeps separate 64- and 128-bit streaming states; both are fed so either digest is available.
struct Hasher::State {
    XXH3_state_t s64;
    XXH3_state_t s128;
};

Hasher::Hasher(uint64_t seed) : m_state(std::make_unique<State>()) {
    XXH3_64bits_reset_withSeed(&m_state->s64, seed);
    XXH3_128bits_reset_withSeed(&m_state->s128, seed);
}
Hasher::~Hasher() = default;

void Hasher::update(std::span<const std::byte> data) {
    XXH3_64bits_update(&m_state->s64, data.data(), data.size());
    XXH3_128bits_update(&m_state->s128, data.data(), data.size());
}
void Hasher::update(std::string_view text) {
    update(std::span<const std::byte>(reinterpret_cast<const std::byte*>(text.data()), text.size()));
}
uint64_t Hasher::digest64() const { return XXH3_64bits_digest(&m_state->s64); }
Digest128 Hasher::digest128() const {
    const XXH128_hash_t h = XXH3_128bits_digest(&m_state->s128);
    return {h.high64, h.low64};
}

Result<Digest128> hashFile(const std::filesystem::path& path, const CancelToken* cancel) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return statusFromErrno(errno, "cannot open '" + name + "'");
    XXH3_state_t state;
    XXH3_128bits_reset(&state);
    std::vector<char> buf(1 << 20);
    for (;;) {
        if (cancel && cancel->isCancelled()) {
            ::close(fd);
            return cancelled("hashing '" + name + "' cancelled");
        }
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return statusFromErrno(err, "cannot read '" + name + "'");
        }
        if (n == 0) break;
        XXH3_128bits_update(&state, buf.data(), static_cast<size_t>(n));
    }
    ::close(fd);
    const XXH128_hash_t h = XXH3_128bits_digest(&state);
    return Digest128{h.high64, h.low64};
}

}  // namespace msa

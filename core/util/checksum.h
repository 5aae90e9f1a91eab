// checksum.h: fast non-cryptographic checksums (xxHash XXH3) for file change detection in the
// catalog, per-section checksums in memory banks, and model fingerprints.
//
// XXH3 is used because it runs at memory bandwidth (tens of GB/s), so checksumming a multi-GB bank
// section costs about as much as reading it. It detects corruption and changes, not tampering.
//
// Thread affinity: the free functions are thread-safe; a Hasher is used by one thread at a time.
//
// Usage:
//     uint64_t h = msa::xxh3_64(bytes);
//     msa::Hasher hs; hs.update(a); hs.update(b); std::string hex = hs.digest128Hex();
//     MSA_ASSIGN_OR_RETURN(msa::Digest128 d, msa::hashFile(path, &cancel));
#pragma once

#include "core/util/progress.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace msa {

struct Digest128 {
    uint64_t high = 0;
    uint64_t low = 0;
    bool operator==(const Digest128&) const = default;
    std::string hex() const;   // 32 lowercase hex digits, high word first (xxhsum's canonical order)
};

uint64_t xxh3_64(std::span<const std::byte> data, uint64_t seed = 0);
uint64_t xxh3_64(std::string_view text, uint64_t seed = 0);
Digest128 xxh3_128(std::span<const std::byte> data, uint64_t seed = 0);
Digest128 xxh3_128(std::string_view text, uint64_t seed = 0);
std::string hex64(uint64_t value);   // 16 lowercase hex digits

// Streaming XXH3 (64 and 128 bits over the same input).
class Hasher {
public:
    explicit Hasher(uint64_t seed = 0);
    ~Hasher();
    Hasher(const Hasher&) = delete;
    Hasher& operator=(const Hasher&) = delete;

    void update(std::span<const std::byte> data);
    void update(std::string_view text);
    uint64_t digest64() const;
    Digest128 digest128() const;

private:
    struct State;
    std::unique_ptr<State> m_state;
};

// Hashes a whole file with XXH3-128, reading it in blocks; checks `cancel` between blocks.
// Failure codes: NotFound, PermissionDenied, IoError, Cancelled.
Result<Digest128> hashFile(const std::filesystem::path& path, const CancelToken* cancel = nullptr);

}  // namespace msa

// test_files.h: helpers shared by the core/model tests: reading fixtures, writing byte buffers to
// files, and a tiny builder for GGUF and safetensors files so that corrupt-file tests can start from
// a valid file and break exactly one thing.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace msa::model::testing {

using Bytes = std::vector<uint8_t>;

inline Bytes readFileBytes(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
}

inline void writeFileBytes(const std::filesystem::path& p, const Bytes& b) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline std::vector<float> readF32(const std::filesystem::path& p) {
    const Bytes b = readFileBytes(p);
    std::vector<float> v(b.size() / 4);
    std::memcpy(v.data(), b.data(), v.size() * 4);
    return v;
}

// resize + memcpy rather than insert(): GCC 12 raises a false -Wstringop-overflow on the latter.
inline void putRaw(Bytes& b, const void* p, size_t n) {
    const size_t at = b.size();
    b.resize(at + n);
    if (n) std::memcpy(b.data() + at, p, n);
}
template <typename T>
void put(Bytes& b, T v) {
    putRaw(b, &v, sizeof(T));
}
inline void putStr(Bytes& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    putRaw(b, s.data(), s.size());
}

// Builds a GGUF v3 file in memory. Tensor offsets are assigned densely at `alignment` unless a test
// overrides one; every field can be tampered with before build().
struct GgufBuilder {
    struct Tensor {
        std::string name;
        std::vector<uint64_t> ne;   // GGML order
        uint32_t type = 0;
        uint64_t nBytes = 0;
        int64_t offsetOverride = -1;
    };
    uint32_t version = 3;
    uint32_t alignment = 32;
    bool writeAlignmentKey = false;
    std::vector<std::pair<std::string, Bytes>> kv;   // key -> (type + value) bytes
    std::vector<Tensor> tensors;
    int64_t tensorCountOverride = -1, kvCountOverride = -1;

    void addU32(const std::string& k, uint32_t v) { Bytes b; put<uint32_t>(b, 4); put(b, v); kv.emplace_back(k, b); }
    void addF32(const std::string& k, float v) { Bytes b; put<uint32_t>(b, 6); put(b, v); kv.emplace_back(k, b); }
    void addStr(const std::string& k, const std::string& v) { Bytes b; put<uint32_t>(b, 8); putStr(b, v); kv.emplace_back(k, b); }
    void addStrArray(const std::string& k, const std::vector<std::string>& v) {
        Bytes b;
        put<uint32_t>(b, 9);
        put<uint32_t>(b, 8);
        put<uint64_t>(b, v.size());
        for (const auto& s : v) putStr(b, s);
        kv.emplace_back(k, b);
    }
    void addTensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t nBytes) {
        tensors.push_back({name, std::move(ne), type, nBytes, -1});
    }

    Bytes build(uint8_t fill = 0x11) const {
        Bytes b = {'G', 'G', 'U', 'F'};
        put(b, version);
        put<uint64_t>(b, tensorCountOverride >= 0 ? static_cast<uint64_t>(tensorCountOverride) : tensors.size());
        const uint64_t nKv = kv.size() + (writeAlignmentKey ? 1 : 0);
        put<uint64_t>(b, kvCountOverride >= 0 ? static_cast<uint64_t>(kvCountOverride) : nKv);
        if (writeAlignmentKey) {
            putStr(b, "general.alignment");
            put<uint32_t>(b, 4);
            put<uint32_t>(b, alignment);
        }
        for (const auto& [k, v] : kv) {
            putStr(b, k);
            putRaw(b, v.data(), v.size());
        }
        uint64_t off = 0;
        uint64_t end = 0;
        for (const Tensor& t : tensors) {
            putStr(b, t.name);
            put<uint32_t>(b, static_cast<uint32_t>(t.ne.size()));
            for (uint64_t d : t.ne) put(b, d);
            put(b, t.type);
            const uint64_t o = t.offsetOverride >= 0 ? static_cast<uint64_t>(t.offsetOverride) : off;
            put(b, o);
            off = (o + t.nBytes + alignment - 1) / alignment * alignment;
            end = std::max(end, o + t.nBytes);
        }
        while (b.size() % alignment) b.push_back(0);
        b.resize(b.size() + end, fill);
        return b;
    }
};

// A safetensors file from a header object and a data section size (filled with a pattern).
inline Bytes buildSafetensors(const nlohmann::json& header, uint64_t dataSize, uint8_t fill = 0x3c) {
    std::string h = header.dump();
    while (h.size() % 8) h += ' ';
    Bytes b;
    put<uint64_t>(b, h.size());
    putRaw(b, h.data(), h.size());
    b.resize(b.size() + dataSize, fill);
    return b;
}

}  // namespace msa::model::testing

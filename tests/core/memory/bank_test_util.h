// bank_test_util.h: deterministic bank parameters and documents shared by tst_bank and the crash
// helper, so a parent test can check every value a killed child wrote.
#pragma once

#include "core/memory/bank.h"

#include <cstdint>
#include <string>
#include <vector>

namespace msa::memory::testing {

inline BankParams smallParams(model::DType storage, bool keysShared = false) {
    BankParams p;
    p.modelFingerprint = "0123456789abcdef0123456789abcdef";
    p.tokenizerHash = "tok-test";
    p.chunkSize = 64;
    p.topK = 4;
    p.nLayers = 6;
    p.routingLayers = {3, 4, 5};
    p.nKvHeads = 2;
    p.nRouteHeads = keysShared ? 2 : 4;
    p.headDim = 16;
    p.storage = storage;
    p.keysShared = keysShared;
    p.nTemplateTokens = 3;
    return p;
}

// A reproducible value for (document, tensor, layer, element): spread over several binades so bf16
// rounding is exercised, never NaN/Inf.
inline float testValue(int64_t id, int tensor, size_t layer, size_t i) {
    uint64_t x = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull ^ (uint64_t(tensor) << 56) ^ (uint64_t(layer) << 48) ^ i;
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    const double u = double(x >> 11) / double(1ull << 53);   // [0, 1)
    return static_cast<float>((u - 0.5) * 8.0 * (1.0 + double(i % 7)));
}

inline TemplateHead makeTemplate(const BankParams& p) {
    TemplateHead t;
    const size_t n = size_t(p.nTemplateTokens) * p.nKvHeads * p.headDim;
    for (uint32_t l = 0; l < p.nLayers; ++l) {
        std::vector<float> k(n), v(n);
        for (size_t i = 0; i < n; ++i) { k[i] = testValue(-1, 10, l, i); v[i] = testValue(-1, 11, l, i); }
        t.keys.push_back(std::move(k));
        t.values.push_back(std::move(v));
    }
    return t;
}

// Owns the f32 tensors a DocumentInput points into. Tensor 0 = K̄, 1 = V̄, 2 = K̄ᴿ.
struct TestDoc {
    std::vector<std::vector<float>> k, v, r;
    DocumentInput input;
};

inline TestDoc makeDoc(const BankParams& p, int64_t id, uint64_t nTokens, const std::string& hash = {}) {
    TestDoc d;
    const uint32_t nChunks = static_cast<uint32_t>((nTokens + p.chunkSize - 1) / p.chunkSize);
    const size_t kv = size_t(nChunks) * p.nKvHeads * p.headDim, rr = size_t(nChunks) * p.nRouteHeads * p.headDim;
    for (size_t l = 0; l < p.routingLayers.size(); ++l) {
        std::vector<float> k(kv), v(kv), r(rr);
        for (size_t i = 0; i < kv; ++i) { k[i] = testValue(id, 0, l, i); v[i] = testValue(id, 1, l, i); }
        for (size_t i = 0; i < rr; ++i) r[i] = testValue(id, 2, l, i);
        d.k.push_back(std::move(k));
        d.v.push_back(std::move(v));
        d.r.push_back(std::move(r));
    }
    d.input.id = id;
    d.input.contentHash = hash.empty() ? "hash-" + std::to_string(id) : hash;
    d.input.nTokens = nTokens;
    d.input.nChunks = nChunks;
    for (size_t l = 0; l < p.routingLayers.size(); ++l) {
        if (!p.keysShared) d.input.keys.emplace_back(d.k[l]);
        d.input.values.emplace_back(d.v[l]);
        d.input.routingKeys.emplace_back(p.keysShared ? d.k[l] : d.r[l]);
    }
    return d;
}

// Token count of document `id` in the crash/disk-full runs (1..4 chunks, last one partial).
inline uint64_t tokensFor(int64_t id) { return 1 + static_cast<uint64_t>(id * 37 % 250); }

}  // namespace msa::memory::testing

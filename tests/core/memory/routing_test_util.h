// routing_test_util.h: seeded routing configurations and queries shared by the routing tests
// (tst_shard_merge, tst_quant_route, tests/gpu/tst_gpu_routing), so that every scan — CPU, 8-bit
// reference, GPU — is checked on the same kind of input. Header-only, test code only.
#pragma once

#include "core/memory/router.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <span>

namespace msa::memory::testutil {

// A decoupled routing config for one layer: scaled dot (INFONCE_DECOUPLE) or cosine (INFONCE).
inline RoutingConfig makeConfig(size_t H, size_t G, size_t D, bool cosine, size_t topK = 8) {
    RoutingConfig c;
    c.layers = {0};
    c.topK = topK;
    c.nQueryHeads = H;
    c.nRouteHeads = G;
    c.headDim = D;
    c.normalize = cosine;
    c.decoupled = true;
    c.auxLossMethod = cosine ? "INFONCE" : "INFONCE_DECOUPLE";
    c.queryScale = cosine ? 1.0f : 1.0f / std::sqrt(float(D));
    return c;
}

// nTokens seeded normal query rows for the config's first layer, prepared for its branch.
inline RoutingQueries makeQueries(const RoutingConfig& c, size_t nTokens, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    RoutingQueries q;
    q.layer = c.layers.empty() ? 0 : c.layers[0];
    q.nTokens = nTokens;
    q.nHeads = c.nQueryHeads;
    q.headDim = c.headDim;
    q.q.resize(nTokens * q.nHeads * q.headDim);
    for (float& x : q.q) x = nd(rng);
    prepareQueries(c, q.q, q.headDim);
    return q;
}

// Scales every D-element row of `rows` to unit L2 norm (the cosine branch's stored keys), with the
// norm accumulated in double so the result does not depend on the row's summation order.
inline void normalizeRows(std::span<float> rows, size_t D) {
    for (size_t r = 0; r + D <= rows.size(); r += D) {
        double n2 = 0;
        for (size_t i = 0; i < D; ++i) n2 += double(rows[r + i]) * rows[r + i];
        for (size_t i = 0; i < D; ++i) rows[r + i] = float(rows[r + i] / std::sqrt(n2));
    }
}

}  // namespace msa::memory::testutil

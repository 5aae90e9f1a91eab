// forward_checks.h: the argument checks every backend's Session::forward() applies before it touches
// its caches (token ids, positions, packed segments, memory hook, pooling), in one place so the CPU
// and CUDA backends refuse exactly the same calls with the same messages.
//
// Ownership/threads: a pure function on caller-owned data; call from any thread.
//
// Usage:
//     MSA_RETURN_IF_ERROR(checkForwardArguments(tokens, positions, opt,
//                                               {.vocab = nVocab, .nLayers = nLayers, .hidden = hidden,
//                                                .kvDim = nKv * hd, .nPast = m_nPast, .prefixRows = m_prefix}));
//
// Failure codes: InvalidArgument (no token, positions/tokens count, token id outside the vocabulary,
// an empty segment, segments not covering the tokens, segments over a non-empty context, segments
// with a memory hook, a memory hook after cached tokens, pooling without pooledHook or the reverse,
// and validatePooling()'s), Mismatch (validatePooling()'s).
#pragma once

#include "core/engine/backend.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <span>

namespace msa::engine {

// What the checks need to know of the model and the session.
struct ForwardShape {
    size_t vocab = 0;                     // rows of the token embedding
    size_t nLayers = 0;
    size_t hidden = 0;
    size_t kvDim = 0;                     // nKvHeads * headDim
    size_t nPast = 0;                     // local tokens already cached
    std::span<const size_t> prefixRows;   // per layer: prefix rows in front of the local tokens
};

Status checkForwardArguments(std::span<const int32_t> tokens, std::span<const int32_t> positions, const ForwardOptions& opt,
                             const ForwardShape& shape);

}  // namespace msa::engine

#include "core/engine/forward_checks.h"

#include "core/engine/chunk_pool.h"

#include <algorithm>
#include <string>

namespace msa::engine {

Status checkForwardArguments(std::span<const int32_t> tokens, std::span<const int32_t> positions, const ForwardOptions& opt,
                             const ForwardShape& shape) {
    const size_t n = tokens.size();
    if (n == 0) return invalidArgument("forward() needs at least one token");
    if (positions.size() != n)
        return invalidArgument("forward(): " + std::to_string(n) + " tokens but " + std::to_string(positions.size()) + " positions");
    for (int32_t t : tokens)
        if (t < 0 || static_cast<size_t>(t) >= shape.vocab)
            return invalidArgument("token id " + std::to_string(t) + " is outside the vocabulary (" + std::to_string(shape.vocab) + ")");
    if (!opt.segments.empty()) {
        uint64_t sum = 0;
        for (uint32_t len : opt.segments) {
            if (len == 0) return invalidArgument("forward(): an empty segment");
            sum += len;
        }
        if (sum != n)
            return invalidArgument("forward(): segments cover " + std::to_string(sum) + " tokens, " + std::to_string(n) + " given");
        if (shape.nPast != 0 || std::any_of(shape.prefixRows.begin(), shape.prefixRows.end(), [](size_t p) { return p != 0; }))
            return invalidArgument("forward(): segments need an empty context (no cached tokens and no prefix rows)");
        // Memory rows are placed in front of a layer's tokens and every token sees them; packed
        // segments must see only their own tokens, so the two do not combine (no caller needs it).
        if (opt.memoryHook)
            return invalidArgument("forward(): packed segments cannot be combined with a memory hook");
    }
    if (opt.memoryHook && shape.nPast != 0)
        return invalidArgument("forward(): memory is assembled in a round's prefill, but the session already holds " +
                               std::to_string(shape.nPast) + " tokens");
    if (static_cast<bool>(opt.pooledHook) != (opt.pooling != nullptr))
        return invalidArgument("forward(): pooling needs both ForwardOptions::pooling and pooledHook");
    if (opt.pooling) MSA_RETURN_IF_ERROR(validatePooling(*opt.pooling, shape.nLayers, shape.hidden, shape.kvDim));
    return Status::ok();
}

}  // namespace msa::engine

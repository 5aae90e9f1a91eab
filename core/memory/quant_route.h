// quant_route.h: routing over 8-bit routing keys (issue 6 items 3-4) — the CPU side of the quantized
// GPU scan: quantizing a RouteKeys table row by row (key_quant.h: one f32 scale per (chunk, key head)
// row of headDim), its dequantized f32 copy (what the CPU reference routes over with the Router),
// and the head-mean-folded score written out in both orders a kernel may use, so the algebra is
// tested on the CPU (tst_quant_route).
//
// The algebra. Keys row (c, G) holds x̂_{c,G,i} = decode(code_{c,G,i}) · s_{c,G} (one f32 multiply,
// the key_quant contract). With head mean over H query heads and g = H / nKv heads per key head:
//     score_t(c) = (1/H) Σ_h q_t[h] · x̂_{c,h/g} = Σ_G q'_t[G] · x̂_{c,G},   q'_t[G] = (1/H) Σ_{h∈G} q_t[h]
// (foldHeadMean; the scale never crosses a group, since every head h of group G meets the same row
// (c, G)), and because s_{c,G} is constant along the row,
//     score_t(c) = Σ_G s_{c,G} · (q'_t[G] · decode(code_{c,G}))                    (ScaleAfterDot)
// which is equal in real arithmetic, not bit for bit. The GPU kernel uses DequantizeFirst: it forms
// x̂ exactly as the contract says when it stages a key tile (once per 16 query tokens, so the multiply
// is nearly free), and then its scores differ from the Router's over dequantized keys only by f32
// summation order — the same tolerance as the bf16 scan. ScaleAfterDot is what a tensor-core
// variant would have to do (x̂ has up to 24 significant bits, a bf16 operand 8); it is kept here so
// its distance from the reference is measured (tst_quant_route) before anyone builds one.
//
// Cosine branch: a bank stores its routing keys already L2-normalised per head (bank build), so the
// 8-bit copy is made from the normalised keys and is NOT normalised again: x̂ rows have norm 1 ± the
// quantization error. The reference routes over exactly those x̂ (no re-normalisation), as the kernel.
//
// Ownership/threads: pure functions and value types; safe from any thread. No CUDA, no Qt.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(QuantizedRows q, quantizeRouteKeys(QuantFormat::Int8, keys));
//     MSA_ASSIGN_OR_RETURN(DequantizedRouteKeys dq, dequantizeRouteKeys(q, keys));
//     MSA_ASSIGN_OR_RETURN(auto scores, router.scoreDocuments(cfg, queries, dq.view(keys), {}));
//
// Failure codes: routeKeysAsF32(), quantizeRouteKeys(): InvalidArgument (dtype other than f32/bf16,
// a key span of the wrong size, chunk range outside the table, a non-finite key naming its row),
// OutOfMemory. dequantizeRouteKeys(): InvalidArgument (rows that do not match the table).
// foldedQuantizedScores(): InvalidArgument (head max, shapes, filter size, rows vs table).
#pragma once

#include "core/memory/key_quant.h"
#include "core/memory/route_scanner.h"
#include "core/memory/router.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace msa::memory {

// The 8-bit format of a storage; nullopt for Native.
std::optional<QuantFormat> quantFormatOf(KeyStorage s);

// Chunks [firstChunk, firstChunk + nChunks) of a table as f32 (bf16 widened exactly) into out
// (nChunks × nHeads × headDim floats).
Status routeKeysAsF32(const RouteKeys& keys, size_t firstChunk, size_t nChunks, std::span<float> out);

// The whole table quantized: rows = nChunks × nHeads, rowLength = headDim; row (c, G) = c·nHeads + G.
Result<QuantizedRows> quantizeRouteKeys(QuantFormat f, const RouteKeys& keys);

// Dequantized keys (the key_quant reader, bit for bit) with the table's shape; view() borrows the
// values and takes the document table and ids from `table` (the keys they were made from).
struct DequantizedRouteKeys {
    std::vector<float> values;
    size_t nChunks = 0, nHeads = 0, headDim = 0;
    RouteKeys view(const RouteKeys& table) const;
};
Result<DequantizedRouteKeys> dequantizeRouteKeys(const QuantizedRows& q, const RouteKeys& table);

// Element e (0 ≤ e < nHeads·headDim) of chunk c of an 8-bit routing table (codes
// [chunks][nHeads][headDim] bytes, scales [chunks·nHeads]) as f32: decode(code) · the scale of its
// (chunk, head) row, one f32 multiply (__fmul_rn on the device, which is never fused). This is the GPU
// score kernel's key loader; tst_quant_route checks it against dequantizeRouteKeys on every element.
MSA_QUANT_HD inline float quantizedKeyElement(bool fp8, const uint8_t* codes, const float* scales, size_t width,
                                              uint32_t nHeads, uint32_t headDim, size_t c, size_t e) {
    const uint8_t code = codes[c * width + e];
    const float decoded = fp8 ? decodeE4M3Bits(code) : decodeInt8Bits(code);
    const float scale = scales[c * nHeads + static_cast<uint32_t>(e) / headDim];
#if defined(__CUDA_ARCH__)
    return __fmul_rn(decoded, scale);
#else
    return decoded * scale;
#endif
}

enum class QuantDotOrder { DequantizeFirst, ScaleAfterDot };

// Every document's score (−inf for filtered or empty documents, as Router::scoreDocuments) from the
// head-mean-folded queries and the quantized rows, in the given order (see the header comment), with
// the Router's token and chunk reductions. A plain f32 loop (dots accumulated in
// element order per head), meant for tests, not speed.
Result<std::vector<float>> foldedQuantizedScores(const RoutingConfig& cfg, const RoutingQueries& queries, const QuantizedRows& q,
                                                 const RouteKeys& table, std::span<const uint8_t> allowed, QuantDotOrder order);

}  // namespace msa::memory

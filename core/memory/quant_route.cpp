#include "core/memory/quant_route.h"

#include "core/model/dtype.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <string>

namespace msa::memory {
namespace {

Status checkTable(const RouteKeys& keys) {
    if (keys.dtype != model::DType::F32 && keys.dtype != model::DType::BF16)
        return Status(ErrorCode::InvalidArgument, "8-bit routing keys are made from f32 or bf16 keys");
    const size_t elem = keys.dtype == model::DType::F32 ? 4 : 2;
    if (keys.headDim == 0 || keys.nHeads == 0 || keys.data.size() != keys.nChunks * keys.nHeads * keys.headDim * elem)
        return Status(ErrorCode::InvalidArgument, "routing keys hold " + std::to_string(keys.data.size()) + " bytes for " +
                                                      std::to_string(keys.nChunks) + " chunks of " + std::to_string(keys.nHeads) +
                                                      " x " + std::to_string(keys.headDim));
    return Status::ok();
}

}  // namespace

std::optional<QuantFormat> quantFormatOf(KeyStorage s) {
    switch (s) {
    case KeyStorage::Fp8E4M3: return QuantFormat::Fp8E4M3;
    case KeyStorage::Int8: return QuantFormat::Int8;
    case KeyStorage::Native: break;
    }
    return std::nullopt;
}

Status routeKeysAsF32(const RouteKeys& keys, size_t firstChunk, size_t nChunks, std::span<float> out) {
    MSA_RETURN_IF_ERROR(checkTable(keys));
    const size_t width = keys.nHeads * keys.headDim;
    if (firstChunk > keys.nChunks || nChunks > keys.nChunks - firstChunk || out.size() < nChunks * width)
        return Status(ErrorCode::InvalidArgument, "chunks " + std::to_string(firstChunk) + " + " + std::to_string(nChunks) +
                                                      " outside a table of " + std::to_string(keys.nChunks));
    const size_t elem = keys.dtype == model::DType::F32 ? 4 : 2;
    model::dequantizeRow(keys.dtype, keys.data.data() + firstChunk * width * elem, out.data(), nChunks * width);
    return Status::ok();
}

Result<QuantizedRows> quantizeRouteKeys(QuantFormat f, const RouteKeys& keys) {
    MSA_RETURN_IF_ERROR(checkTable(keys));
    const size_t D = keys.headDim, width = keys.nHeads * D;
    QuantizedRows q;
    q.format = f;
    q.rowLength = D;
    q.nRows = keys.nChunks * keys.nHeads;
    std::vector<float> block;
    constexpr size_t kBlockChunks = 4096;   // bounds the f32 scratch (a layer can be GBs of keys)
    try {
        q.codes.resize(q.nRows * D);
        q.scales.resize(q.nRows);
        block.resize(std::min(kBlockChunks, keys.nChunks) * width);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "8-bit copy of " + std::to_string(keys.nChunks) + " routing-key chunks");
    }
    for (size_t c0 = 0; c0 < keys.nChunks; c0 += kBlockChunks) {
        const size_t nc = std::min(kBlockChunks, keys.nChunks - c0);
        MSA_RETURN_IF_ERROR(routeKeysAsF32(keys, c0, nc, block));
        const size_t r0 = c0 * keys.nHeads, nr = nc * keys.nHeads;
        MSA_RETURN_IF_ERROR(quantizeRowsInto(f, std::span<const float>(block.data(), nr * D), D,
                                             std::span(q.codes).subspan(r0 * D, nr * D), std::span(q.scales).subspan(r0, nr), r0));
    }
    return q;
}

RouteKeys DequantizedRouteKeys::view(const RouteKeys& table) const {
    return RouteKeys{std::as_bytes(std::span(values)), model::DType::F32, nChunks, nHeads, headDim, table.chunkOffsets, table.docIds};
}

Result<DequantizedRouteKeys> dequantizeRouteKeys(const QuantizedRows& q, const RouteKeys& table) {
    if (q.rowLength != table.headDim || q.nRows != table.nChunks * table.nHeads || q.codes.size() != q.nRows * q.rowLength ||
        q.scales.size() != q.nRows)
        return Status(ErrorCode::InvalidArgument, "quantized rows (" + std::to_string(q.nRows) + " x " + std::to_string(q.rowLength) +
                                                      ") do not match a table of " + std::to_string(table.nChunks) + " chunks of " +
                                                      std::to_string(table.nHeads) + " x " + std::to_string(table.headDim));
    DequantizedRouteKeys d;
    d.nChunks = table.nChunks;
    d.nHeads = table.nHeads;
    d.headDim = table.headDim;
    try {
        d.values.resize(q.nRows * q.rowLength);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "dequantized copy of " + std::to_string(q.nRows) + " routing-key rows");
    }
    dequantizeRows(q, d.values);
    return d;
}

Result<std::vector<float>> foldedQuantizedScores(const RoutingConfig& cfg, const RoutingQueries& queries, const QuantizedRows& q,
                                                 const RouteKeys& table, std::span<const uint8_t> allowed, QuantDotOrder order) {
    if (cfg.headReduce != HeadReduce::Mean) return Status(ErrorCode::InvalidArgument, "head max does not fold");
    const size_t G = table.nHeads, D = table.headDim, nQ = queries.nTokens, nDocs = table.nDocs();
    if (queries.headDim != D || nQ == 0)
        return Status(ErrorCode::InvalidArgument, "queries of head dim " + std::to_string(queries.headDim) + " for keys of " +
                                                      std::to_string(D) + " (" + std::to_string(nQ) + " tokens)");
    if (q.rowLength != D || q.nRows != table.nChunks * G || q.scales.size() != q.nRows || q.codes.size() != q.nRows * D)
        return Status(ErrorCode::InvalidArgument, "quantized rows do not match the document table");
    if (!allowed.empty() && allowed.size() != nDocs)
        return Status(ErrorCode::InvalidArgument, "candidate filter has " + std::to_string(allowed.size()) + " entries for " +
                                                      std::to_string(nDocs) + " documents");
    if (nDocs > 0 && (table.chunkOffsets.front() != 0 || table.chunkOffsets.back() != table.nChunks ||
                      !std::is_sorted(table.chunkOffsets.begin(), table.chunkOffsets.end())))
        return Status(ErrorCode::InvalidArgument, "document table does not cover the chunks 0.." + std::to_string(table.nChunks));
    MSA_ASSIGN_OR_RETURN(std::vector<float> folded, foldHeadMean(queries, G));
    const float negInf = -std::numeric_limits<float>::infinity();
    std::vector<float> scores(nDocs, negInf), row(nQ), x(D);
    for (size_t d = 0; d < nDocs; ++d) {
        const size_t c0 = table.chunkOffsets[d], c1 = table.chunkOffsets[d + 1];
        if (c0 == c1 || (!allowed.empty() && !allowed[d])) continue;
        float docMax = negInf;
        double docSum = 0;
        for (size_t c = c0; c < c1; ++c) {
            for (size_t t = 0; t < nQ; ++t) {
                float s = 0;
                for (size_t g = 0; g < G; ++g) {
                    const size_t r = c * G + g;
                    const uint8_t* codes = q.codes.data() + r * D;
                    const float* qp = folded.data() + (t * G + g) * D;
                    if (order == QuantDotOrder::DequantizeFirst) {
                        dequantizeRow(q.format, codes, q.scales[r], x.data(), D);   // x̂ = decode · scale
                        for (size_t i = 0; i < D; ++i) s += qp[i] * x[i];
                    } else {
                        float dot = 0;   // q'_G · decode(codes), then one multiply by the row's scale
                        for (size_t i = 0; i < D; ++i)
                            dot += qp[i] * (q.format == QuantFormat::Fp8E4M3 ? decodeE4M3Bits(codes[i]) : decodeInt8Bits(codes[i]));
                        s += q.scales[r] * dot;
                    }
                }
                row[t] = s;
            }
            float sc = 0;
            switch (cfg.queryReduce) {
            case QueryReduce::Max: sc = *std::max_element(row.begin(), row.end()); break;
            case QueryReduce::Mean: {
                float sum = 0;
                for (float v : row) sum += v;
                sc = sum / static_cast<float>(nQ);
                break;
            }
            case QueryReduce::Last: sc = row[nQ - 1]; break;
            }
            if (cfg.chunkReduce == ChunkReduce::Max) docMax = std::max(docMax, sc);
            else docSum += sc;
        }
        scores[d] = cfg.chunkReduce == ChunkReduce::Max ? docMax : static_cast<float>(docSum / static_cast<double>(c1 - c0));
    }
    return scores;
}

}  // namespace msa::memory

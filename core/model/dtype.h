// dtype.h: the weight element types a model file may hold, their GGML block layouts, and the row
// kernels the CPU forward pass needs (dequantize a row, dot a quantized row with an activation).
//
// Layouts (little-endian, identical to GGML's so GGUF tensor bytes are used in place):
//   f32   1 element,    4 bytes
//   f16   1 element,    2 bytes (IEEE binary16)
//   bf16  1 element,    2 bytes (upper half of an f32)
//   q8_0  32 elements, 34 bytes: f16 d, int8 q[32]                    x = q*d
//   q4_0  32 elements, 18 bytes: f16 d, u8 qs[16] (low nibbles = elements 0..15, high = 16..31)
//                                                                      x = d*(q-8)
//   q4_1  32 elements, 20 bytes: f16 d, f16 m, u8 qs[16]               x = d*q + m
//   q4_K 256 elements, 144 bytes: f16 d, f16 dmin, u8 scales[12] (8 packed 6-bit scale/min pairs),
//                                 u8 qs[128] (4 groups of 64: low nibbles = first 32, high = next 32)
//                                                                      x = (d*sc)*q - (dmin*m)
//   q6_K 256 elements, 210 bytes: u8 ql[128], u8 qh[64], int8 scales[16], f16 d
//                                                                      x = (d*sc)*(q-32)
// Dequantization evaluates exactly these expressions in f32 with the same rounding steps as the
// reference (the `gguf` Python package), so results are bit-identical (tests/core/model/tst_dtype).
//
// Dot products accumulate in f32 with a different summation order than a plain loop, so they agree
// with dequantize-then-dot within float rounding (relative ~1e-6 of sum|w*x|), not bit-exactly.
// An AVX2+FMA version of each kernel is compiled with a function target attribute and selected at
// run time (cpuid); the scalar version is the fallback and the reference (see README.md).
//
// Ownership/threads: stateless free functions on caller-owned memory; thread-safe.
//
// Usage:
//     const DTypeInfo& info = dtypeInfo(DType::Q4_1);
//     MSA_ASSIGN_OR_RETURN(uint64_t bytes, rowBytes(DType::Q4_1, nCols));
//     dequantizeRow(DType::Q4_1, rowPtr, out.data(), nCols);
//     float y = dotRow(DType::Q4_1, rowPtr, x.data(), nCols);
//
// Failure codes: rowBytes / tensorBytes return InvalidArgument (row length not a multiple of the
// block size, zero-sized dimension where not allowed) or Unsupported (size overflows 64 bits).
#pragma once

#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace msa::model {

enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K };

inline constexpr int kDTypeCount = 8;

struct DTypeInfo {
    DType type;
    std::string_view name;    // GGML spelling: "f32", "q4_K"
    uint32_t blockElems;      // elements per block (1 for plain floats)
    uint32_t blockBytes;      // bytes per block
    uint32_t ggmlType;        // the GGML type id stored in GGUF tensor infos
    bool quantized;
};

const DTypeInfo& dtypeInfo(DType type);
std::string_view dtypeName(DType type);
// GGML type id -> DType; nullopt for ids this build does not implement (Q5_0, IQ*, ...).
std::optional<DType> dtypeFromGgml(uint32_t ggmlType);
// "f32", "F32", "q4_K", "Q4_K", "bf16", "BF16" ...; nullopt when unknown.
std::optional<DType> dtypeFromName(std::string_view name);

// Bytes of one row of nElements; InvalidArgument when nElements is not a multiple of the block size.
Result<uint64_t> rowBytes(DType type, uint64_t nElements);
// Bytes of a whole tensor (shape[0] is the row length, GGML order: fastest-varying first).
// InvalidArgument for a row length that is not a multiple of the block; Unsupported on overflow.
Result<uint64_t> tensorBytes(DType type, std::span<const uint64_t> shape);

// IEEE half and bfloat16 to f32 (exact).
float f16ToF32(uint16_t h);
float bf16ToF32(uint16_t b);
// Round-to-nearest-even conversions (used by tests and the q8 activation quantizer).
uint16_t f32ToF16(float f);
uint16_t f32ToBf16(float f);

// Converts the first n elements of a row (n a multiple of the block size; asserted) to f32.
void dequantizeRow(DType type, const void* src, float* dst, size_t n);
// Converts blocks [firstBlock, firstBlock + nBlocks) of a row to f32 (dst receives nBlocks*blockElems).
void dequantizeBlocks(DType type, const void* row, size_t firstBlock, size_t nBlocks, float* dst);
// As dequantizeRow, forced onto the scalar path (the SIMD path evaluates the same expressions with
// the same roundings, so both are bit-exact; the tests check both).
void dequantizeRowScalar(DType type, const void* src, float* dst, size_t n);

// sum_i w[i]*x[i] over one row of n elements (n a multiple of the block size; asserted).
float dotRow(DType type, const void* row, const float* x, size_t n);

// As dotRow, but forced onto the portable scalar path (tests compare both paths).
float dotRowScalar(DType type, const void* row, const float* x, size_t n);

// Activations quantized to 32-element blocks (q8_0 style: x ~= d * q, q in [-127, 127]) for the
// integer dot products below. Quantizing the activation once per matrix-vector product lets the
// inner loop multiply 8-bit weights by 8-bit activations (AVX2 maddubs), about 2-3x faster than
// converting every weight to f32; the cost is the activation's rounding error (relative ~0.4% per
// element), the same trade llama.cpp makes. Use dotRow() where f32 accuracy matters.
struct Q8Activations {
    size_t n = 0;
    std::vector<int8_t> q;     // n values
    std::vector<float> d;      // one scale per 32 values
    std::vector<float> sum;    // d * sum(q) per block (for the weight types with an offset: q4_1, q4_K)
};
// n must be a multiple of 32 (asserted). Reuses out's buffers.
void quantizeActivations(const float* x, size_t n, Q8Activations& out);
// sum_i w[i] * (d*q)[i] over one row of x.n elements. For quantized weight types (q8_0, q4_0, q4_1,
// q4_K, q6_K); plain float types are computed against the dequantized activation (no speed gain).
float dotRowQ8(DType type, const void* row, const Q8Activations& x);
float dotRowQ8Scalar(DType type, const void* row, const Q8Activations& x);

// Whether the AVX2+FMA kernels are in use on this CPU (reported by `msa info` and the tests).
bool simdKernelsActive();

}  // namespace msa::model

// key_quant.h: 8-bit storage formats for the pooled memory rows of a bank (issue 6 item 4): the
// routing keys K̄ᴿ and the content K̄/V̄, each [chunks][heads][headDim], quantized row by row, one
// row = one (chunk, head) pair of headDim elements with one f32 scale.
//
//   FP8 E4M3 ("fp8-e4m3"): the OCP FP8 / NVIDIA __nv_fp8_e4m3 encoding: 1 sign, 4 exponent bits with
//     bias 7, 3 mantissa bits; no infinities; S.1111.111 is NaN, so the largest finite value is
//     S.1111.110 = 448; subnormals 2^-6 · m/8 (smallest 2^-9). Conversion from f32 rounds to nearest,
//     ties to even, and saturates (|x| ≥ 448 and ±inf → ±448, as __NV_SATFINITE does); NaN → 0x7F
//     with the input's sign bit (decodes as NaN). Row scale = amax / 448.
//   int8 ("int8"): symmetric, codes −127..127 (−128 is never written), round to nearest, ties to
//     even, saturating. Row scale = amax / 127.
//
// The contract a reader (the CPU reference here, a GPU kernel elsewhere) must match bit-exactly:
//     value[i] = decode(code[i]) * scale          (one f32 multiply, no fused or reordered math)
// where decode() is exact (every E4M3 value and every int8 is an f32). The writer computes
//     scale = amax / qmax                         (f32 division; qmax 448 or 127)
//     code[i] = encode(x[i] / scale)              (f32 division, then the format's rounding)
// with two documented exceptions: an all-zero row gets scale 0 and all codes 0 (it decodes to zeros),
// and a row whose amax / qmax would be below FLT_MIN gets scale FLT_MIN (a scale is never subnormal,
// so x / scale never overflows; such rows' values all round to zero or near it), and near FLT_MAX the
// scale is lowered by ulps until qmax · scale is finite (the largest code never decodes to inf).
//
// Error bound per element: int8 |x − x̂| ≤ scale/2; E4M3 |x − x̂| ≤ max(2^-4 |x|, 2^-10 · scale) (half an
// ulp of a 3-bit mantissa in the normal range, half the subnormal step below it); plus, for both, the
// f32 roundings of x / scale and decode × scale (tested with a slack of 1e-6·|x| + 2^-20·scale).
//
// Storage cost per row: headDim bytes + 4 (the scale); bf16 is 2 · headDim bytes. Codes are row-major
// [rows][headDim] bytes (int8 as two's complement), scales [rows] f32.
//
// Ownership/threads: pure functions and a value type; safe from any thread. No CUDA, no Qt.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(QuantizedRows q, quantizeRows(QuantFormat::Fp8E4M3, keysF32, headDim));
//     std::vector<float> back(q.nRows * q.rowLength);
//     dequantizeRows(q, back);
//
// Failure codes: quantizeRows(): InvalidArgument (row length 0, a size that is not a whole number of
// rows, or a NaN/inf input value, naming the row), OutOfMemory; quantizeRowsInto(): the same, and
// InvalidArgument for buffers that are too small.
#pragma once

#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace msa::memory {

enum class QuantFormat { Fp8E4M3, Int8 };

std::string_view quantFormatName(QuantFormat f);   // "fp8-e4m3", "int8"
std::optional<QuantFormat> parseQuantFormat(std::string_view name);

inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kInt8Max = 127.0f;
float quantFormatMax(QuantFormat f);                 // 448 or 127

// Scalar conversions (the format definitions; tested bit-exactly against PyTorch's float8_e4m3fn).
uint8_t encodeE4M3(float x);
float decodeE4M3(uint8_t code);
int8_t encodeInt8(float x);                          // NaN → 0
inline float decodeInt8(int8_t code) { return static_cast<float>(code); }

// The decoders again as branch-light functions a CUDA kernel can call too (nvcc sees __host__
// __device__; core never includes a CUDA header, the macro only spells the qualifiers). They equal
// decodeE4M3()/decodeInt8() bit for bit on every code (tst_key_quant), so a GPU reader that applies
// them and one f32 multiply by the scale reproduces dequantizeRow() exactly.
#if defined(__CUDACC__)
#define MSA_QUANT_HD __host__ __device__
#else
#define MSA_QUANT_HD
#endif
MSA_QUANT_HD inline float quantBitsToFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(bits);
#else
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}
// E4M3 from the definition: exponent field e, mantissa m; e == 0: m · 2^-9 (exact in f32);
// e 1..15: the f32 with exponent e − 7 and mantissa m in its top 3 bits; S.1111.111: NaN.
MSA_QUANT_HD inline float decodeE4M3Bits(uint8_t code) {
    const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
    const uint32_t e = (code >> 3) & 15u, m = code & 7u;
    if (e == 15u && m == 7u) return quantBitsToFloat(sign | 0x7FC00000u);
    if (e == 0u) {
        const float v = static_cast<float>(m) * 0.001953125f;   // 2^-9
        return sign ? -v : v;
    }
    return quantBitsToFloat(sign | ((e + 120u) << 23) | (m << 20));
}
MSA_QUANT_HD inline float decodeInt8Bits(uint8_t code) { return static_cast<float>(static_cast<int8_t>(code)); }

// The scale the writer uses for a row (see the contract above).
float rowScale(QuantFormat f, std::span<const float> row);

struct QuantizedRows {
    QuantFormat format = QuantFormat::Fp8E4M3;
    size_t nRows = 0, rowLength = 0;
    std::vector<uint8_t> codes;   // nRows × rowLength
    std::vector<float> scales;    // nRows
    size_t bytes() const { return codes.size() + scales.size() * sizeof(float); }
};

// Bytes one row of rowLength elements occupies in a format (codes + scale).
inline size_t quantizedRowBytes(size_t rowLength) { return rowLength + sizeof(float); }

// Quantizes values (a whole number of rows of rowLength) row by row.
Result<QuantizedRows> quantizeRows(QuantFormat f, std::span<const float> values, size_t rowLength);

// The same into caller-owned buffers (e.g. page-locked staging for a device upload): codes holds
// values.size() bytes, scales values.size() / rowLength floats. Same failures as quantizeRows(),
// plus InvalidArgument when the buffers are too small. firstRow only numbers rows in messages.
Status quantizeRowsInto(QuantFormat f, std::span<const float> values, size_t rowLength, std::span<uint8_t> codes,
                        std::span<float> scales, size_t firstRow = 0);

// One row back to f32: out[i] = decode(codes[i]) * scale. The reference every reader matches.
void dequantizeRow(QuantFormat f, const uint8_t* codes, float scale, float* out, size_t n);
// All rows; out.size() must be nRows × rowLength (smaller outputs are filled as far as they go).
void dequantizeRows(const QuantizedRows& q, std::span<float> out);

// Quantizes and dequantizes in place (what a reader of the quantized copy would see). Same failures
// as quantizeRows().
Status roundTripRows(QuantFormat f, std::span<float> values, size_t rowLength);

}  // namespace msa::memory

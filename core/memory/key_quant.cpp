#include "core/memory/key_quant.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cfloat>
#include <cmath>
#include <string>

namespace msa::memory {
namespace {

// Divides a non-negative integer by 2^shift, rounding to nearest with ties to even.
uint32_t shiftRightNearestEven(uint32_t v, uint32_t shift) {
    if (shift == 0) return v;
    if (shift > 31) return 0;   // v < 2^24 here, so v / 2^shift < 1/2 rounds to 0
    const uint32_t q = v >> shift;
    const uint32_t rem = v & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    return q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
}

// Every E4M3 code as f32, from the definition: exponent field e, mantissa m;
// e == 0: m/8 · 2^-6; e in 1..15: (1 + m/8) · 2^(e-7); S.1111.111: NaN.
std::array<float, 256> makeE4M3Table() {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const int e = (c >> 3) & 15, m = c & 7;
        float v;
        if (e == 15 && m == 7) v = std::numeric_limits<float>::quiet_NaN();
        else if (e == 0) v = std::ldexp(static_cast<float>(m), -9);
        else v = std::ldexp(static_cast<float>(8 + m), e - 10);
        t[static_cast<size_t>(c)] = (c & 0x80) ? -v : v;
    }
    return t;
}

const std::array<float, 256>& e4m3Table() {
    static const std::array<float, 256> table = makeE4M3Table();
    return table;
}

}  // namespace

std::string_view quantFormatName(QuantFormat f) { return f == QuantFormat::Fp8E4M3 ? "fp8-e4m3" : "int8"; }

std::optional<QuantFormat> parseQuantFormat(std::string_view name) {
    if (name == "fp8-e4m3" || name == "fp8" || name == "e4m3") return QuantFormat::Fp8E4M3;
    if (name == "int8") return QuantFormat::Int8;
    return std::nullopt;
}

float quantFormatMax(QuantFormat f) { return f == QuantFormat::Fp8E4M3 ? kE4M3Max : kInt8Max; }

uint8_t encodeE4M3(float x) {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
    const uint32_t mag = bits & 0x7FFFFFFFu;
    if (mag > 0x7F800000u) return static_cast<uint8_t>(sign | 0x7Fu);                 // NaN
    if (mag >= std::bit_cast<uint32_t>(kE4M3Max)) return static_cast<uint8_t>(sign | 0x7Eu);   // saturate (inf too)
    const int exponent = static_cast<int>(mag >> 23) - 127;   // unbiased; f32 subnormals read as -127
    if (exponent < -12) return sign;                           // |x| < 2^-12 < half the smallest subnormal (2^-10)
    const uint32_t significand = (mag & 0x7FFFFFu) | 0x800000u;   // 1.m × 2^23
    // Codes are monotonic in the value and a carry out of the mantissa lands on the next binade's
    // code, so the code is (binade's first code) + rounded significand in units of the binade's step.
    if (exponent < -6) {
        // Subnormal target: units of 2^-9; |x| / 2^-9 = significand × 2^(exponent - 23 + 9).
        const uint32_t units = shiftRightNearestEven(significand, static_cast<uint32_t>(14 - exponent));
        return static_cast<uint8_t>(sign | units);   // units ≤ 8; 8 is code 0x08 = 2^-6, the smallest normal
    }
    // Normal: 4 significant bits (1.mmm), units of 2^(exponent - 3); code = (e_field − 1) · 8 + units.
    const uint32_t units = shiftRightNearestEven(significand, 20);   // 8..16
    const uint32_t code = static_cast<uint32_t>(exponent + 7 - 1) * 8u + units;   // ≤ 0x7E since |x| < 448
    return static_cast<uint8_t>(sign | code);
}

float decodeE4M3(uint8_t code) { return e4m3Table()[code]; }

int8_t encodeInt8(float x) {
    if (std::isnan(x)) return 0;
    const float r = std::nearbyint(std::clamp(x, -kInt8Max, kInt8Max));   // default rounding: nearest, ties to even
    return static_cast<int8_t>(r);
}

float rowScale(QuantFormat f, std::span<const float> row) {
    float amax = 0;
    for (float v : row) amax = std::max(amax, std::fabs(v));
    if (amax == 0) return 0;
    const float qmax = quantFormatMax(f);
    float scale = std::max(amax / qmax, FLT_MIN);
    // Near FLT_MAX the rounded quotient can make qmax × scale overflow; the largest code must decode finite.
    while (!std::isfinite(qmax * scale)) scale = std::nextafter(scale, 0.0f);
    return scale;
}

Status quantizeRowsInto(QuantFormat f, std::span<const float> values, size_t rowLength, std::span<uint8_t> codes,
                        std::span<float> scales, size_t firstRow) {
    if (rowLength == 0) return Status(ErrorCode::InvalidArgument, "quantized rows need a row length above 0");
    if (values.size() % rowLength != 0)
        return Status(ErrorCode::InvalidArgument, std::to_string(values.size()) + " values are not whole rows of " +
                                                      std::to_string(rowLength));
    const size_t nRows = values.size() / rowLength;
    if (codes.size() < values.size() || scales.size() < nRows)
        return Status(ErrorCode::InvalidArgument, "quantization buffers hold " + std::to_string(codes.size()) + " codes and " +
                                                      std::to_string(scales.size()) + " scales for " + std::to_string(nRows) +
                                                      " rows of " + std::to_string(rowLength));
    for (size_t r = 0; r < nRows; ++r) {
        const std::span<const float> row = values.subspan(r * rowLength, rowLength);
        for (float v : row)
            if (!std::isfinite(v))
                return Status(ErrorCode::InvalidArgument, "row " + std::to_string(firstRow + r) + " holds a non-finite value (" +
                                                              std::to_string(v) + "); it cannot be quantized");
        const float scale = rowScale(f, row);
        scales[r] = scale;
        uint8_t* out = codes.data() + r * rowLength;
        if (scale == 0) {
            std::fill(out, out + rowLength, uint8_t(0));
            continue;
        }
        if (f == QuantFormat::Fp8E4M3)
            for (size_t i = 0; i < rowLength; ++i) out[i] = encodeE4M3(row[i] / scale);
        else
            for (size_t i = 0; i < rowLength; ++i) out[i] = static_cast<uint8_t>(encodeInt8(row[i] / scale));
    }
    return Status::ok();
}

Result<QuantizedRows> quantizeRows(QuantFormat f, std::span<const float> values, size_t rowLength) {
    if (rowLength == 0) return Status(ErrorCode::InvalidArgument, "quantized rows need a row length above 0");
    if (values.size() % rowLength != 0)
        return Status(ErrorCode::InvalidArgument, std::to_string(values.size()) + " values are not whole rows of " +
                                                      std::to_string(rowLength));
    QuantizedRows q;
    q.format = f;
    q.rowLength = rowLength;
    q.nRows = values.size() / rowLength;
    try {
        q.codes.resize(values.size());
        q.scales.resize(q.nRows);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "quantized copy of " + std::to_string(values.size()) + " values");
    }
    MSA_RETURN_IF_ERROR(quantizeRowsInto(f, values, rowLength, q.codes, q.scales));
    return q;
}

void dequantizeRow(QuantFormat f, const uint8_t* codes, float scale, float* out, size_t n) {
    if (f == QuantFormat::Fp8E4M3) {
        const std::array<float, 256>& t = e4m3Table();
        for (size_t i = 0; i < n; ++i) out[i] = t[codes[i]] * scale;
    } else {
        for (size_t i = 0; i < n; ++i) out[i] = decodeInt8(static_cast<int8_t>(codes[i])) * scale;
    }
}

void dequantizeRows(const QuantizedRows& q, std::span<float> out) {
    const size_t nRows = q.rowLength ? std::min(q.nRows, out.size() / q.rowLength) : 0;
    for (size_t r = 0; r < nRows; ++r)
        dequantizeRow(q.format, q.codes.data() + r * q.rowLength, q.scales[r], out.data() + r * q.rowLength, q.rowLength);
}

Status roundTripRows(QuantFormat f, std::span<float> values, size_t rowLength) {
    MSA_ASSIGN_OR_RETURN(QuantizedRows q, quantizeRows(f, values, rowLength));
    dequantizeRows(q, values);
    return Status::ok();
}

}  // namespace msa::memory

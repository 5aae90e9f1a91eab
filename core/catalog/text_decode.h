// text_decode.h: turning bytes of unknown encoding into normalised UTF-8 (used by every importer).
//
// Decision order (decodeText): UTF-8 BOM -> UTF-8; UTF-16 LE/BE BOM -> UTF-16; valid UTF-8 -> as is;
// mostly UTF-8 (at least as many valid multi-byte sequences as invalid ones) -> UTF-8 with each
// invalid sequence replaced by U+FFFD and a warning; otherwise Windows-1252 (a superset of the
// printable Latin-1 range) with a warning. Windows-1252 never fails, so every byte string decodes.
//
// normalizeText: CRLF/CR -> LF, NUL and C0 controls other than TAB/LF dropped, trailing blanks on a
// line trimmed, runs of more than two line breaks cut to two, leading/trailing blank lines removed.
// Unicode normalisation (NFC) is left to the tokenizer, which applies the model's own normaliser.
//
// Thread affinity: pure functions, thread-safe. None fails: every byte string decodes.
//
// Usage:
//     DecodedText d = decodeText(fileBytes);
//     std::string text = normalizeText(d.utf8);   // d.warnings go to the import report
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace msa::catalog {

struct DecodedText {
    std::string utf8;
    std::string encoding;          // "utf-8", "utf-8-bom", "utf-16le", "utf-16be", "windows-1252"
    size_t nReplaced = 0;          // invalid sequences replaced with U+FFFD
    std::vector<std::string> warnings;
};

DecodedText decodeText(std::string_view bytes);

// True when `bytes` is valid UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool isValidUtf8(std::string_view bytes);
// Replaces invalid sequences with U+FFFD; returns how many were replaced.
size_t repairUtf8(std::string_view bytes, std::string& out);
// Decodes Windows-1252 (undefined bytes 0x81 0x8D 0x8F 0x90 0x9D map to the C1 code point).
std::string windows1252ToUtf8(std::string_view bytes);
// Encodes a code point (invalid ones become U+FFFD).
void appendUtf8(std::string& out, uint32_t cp);

std::string normalizeText(std::string_view utf8);

// Heuristic: does this look like binary data rather than text in some encoding?
// (NUL bytes outside UTF-16, or many C0 control bytes.)
bool looksBinary(std::string_view head);

// Largest prefix length <= n that does not cut a UTF-8 sequence.
size_t utf8Floor(std::string_view s, size_t n);

}  // namespace msa::catalog

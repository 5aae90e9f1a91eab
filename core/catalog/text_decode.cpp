#include "core/catalog/text_decode.h"

#include <algorithm>
#include <array>

namespace msa::catalog {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not valid UTF-8.
size_t validSequenceLength(std::string_view s, size_t i) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    if (c < 0x80) return 1;
    const size_t left = s.size() - i;
    auto cont = [&](size_t k) { return (b(k) & 0xC0) == 0x80; };
    if (c >= 0xC2 && c <= 0xDF) return left >= 2 && cont(i + 1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (left < 3 || !cont(i + 1) || !cont(i + 2)) return 0;
        if (c == 0xE0 && b(i + 1) < 0xA0) return 0;   // overlong
        if (c == 0xED && b(i + 1) > 0x9F) return 0;   // surrogates
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (left < 4 || !cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
        if (c == 0xF0 && b(i + 1) < 0x90) return 0;   // overlong
        if (c == 0xF4 && b(i + 1) > 0x8F) return 0;   // above U+10FFFF
        return 4;
    }
    return 0;
}

std::string utf16ToUtf8(std::string_view bytes, bool littleEndian, size_t& nReplaced) {
    std::string out;
    out.reserve(bytes.size());
    const auto unit = [&](size_t i) -> uint32_t {
        const auto lo = static_cast<unsigned char>(bytes[littleEndian ? i : i + 1]);
        const auto hi = static_cast<unsigned char>(bytes[littleEndian ? i + 1 : i]);
        return static_cast<uint32_t>(hi) << 8 | lo;
    };
    size_t i = 0;
    for (; i + 1 < bytes.size(); i += 2) {
        uint32_t u = unit(i);
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (i + 3 < bytes.size()) {
                const uint32_t lo = unit(i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    appendUtf8(out, 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00));
                    i += 2;
                    continue;
                }
            }
            ++nReplaced;
            u = 0xFFFD;
        } else if (u >= 0xDC00 && u <= 0xDFFF) {
            ++nReplaced;
            u = 0xFFFD;
        }
        appendUtf8(out, u);
    }
    if (i < bytes.size()) ++nReplaced;   // odd trailing byte
    return out;
}

}  // namespace

void appendUtf8(std::string& out, uint32_t cp) {
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

bool isValidUtf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t n = validSequenceLength(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

size_t repairUtf8(std::string_view s, std::string& out) {
    size_t nReplaced = 0;
    out.reserve(out.size() + s.size());
    for (size_t i = 0; i < s.size();) {
        const size_t n = validSequenceLength(s, i);
        if (n) {
            out.append(s.substr(i, n));
            i += n;
            continue;
        }
        // Skip the maximal invalid prefix: the lead byte and any continuation bytes after it.
        ++i;
        while (i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) ++i;
        out.append("\xEF\xBF\xBD");
        ++nReplaced;
    }
    return nReplaced;
}

std::string windows1252ToUtf8(std::string_view bytes) {
    static constexpr std::array<uint16_t, 32> kC1 = {
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
        0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};
    std::string out;
    out.reserve(bytes.size() + bytes.size() / 8);
    for (char ch : bytes) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x80) out.push_back(ch);
        else if (c < 0xA0) appendUtf8(out, kC1[c - 0x80]);
        else appendUtf8(out, c);
    }
    return out;
}

DecodedText decodeText(std::string_view bytes) {
    DecodedText d;
    if (bytes.size() >= 3 && bytes.substr(0, 3) == "\xEF\xBB\xBF") {
        bytes.remove_prefix(3);
        d.encoding = "utf-8-bom";
    } else if (bytes.size() >= 2 && (bytes.substr(0, 2) == "\xFF\xFE" || bytes.substr(0, 2) == "\xFE\xFF")) {
        const bool le = bytes[0] == '\xFF';
        d.encoding = le ? "utf-16le" : "utf-16be";
        d.utf8 = utf16ToUtf8(bytes.substr(2), le, d.nReplaced);
        if (d.nReplaced)
            d.warnings.push_back(std::to_string(d.nReplaced) + " invalid UTF-16 units replaced with U+FFFD");
        return d;
    }
    size_t nValidMulti = 0, nInvalid = 0;
    for (size_t i = 0; i < bytes.size();) {
        const size_t n = validSequenceLength(bytes, i);
        if (n == 0) {
            ++nInvalid;
            ++i;
            continue;
        }
        if (n > 1) ++nValidMulti;
        i += n;
    }
    if (nInvalid == 0) {
        if (d.encoding.empty()) d.encoding = "utf-8";
        d.utf8.assign(bytes);
        return d;
    }
    if (nValidMulti >= nInvalid || d.encoding == "utf-8-bom") {
        d.encoding = "utf-8";
        d.nReplaced = repairUtf8(bytes, d.utf8);
        d.warnings.push_back("invalid UTF-8: " + std::to_string(d.nReplaced) +
                             " invalid byte sequence(s) replaced with U+FFFD");
        return d;
    }
    d.encoding = "windows-1252";
    d.utf8 = windows1252ToUtf8(bytes);
    d.warnings.push_back("not UTF-8 (" + std::to_string(nInvalid) + " invalid sequences); decoded as Windows-1252");
    return d;
}

std::string normalizeText(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    size_t pendingNewlines = 0;
    bool started = false;
    std::string line;
    auto flushLine = [&]() {
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.pop_back();
        if (line.empty()) {
            if (started) ++pendingNewlines;
            return;
        }
        if (started) out.append(std::min<size_t>(pendingNewlines + 1, 2), '\n');
        out += line;
        started = true;
        pendingNewlines = 0;
        line.clear();
    };
    for (size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c == '\r') {
            if (i + 1 < in.size() && in[i + 1] == '\n') ++i;
            flushLine();
        } else if (c == '\n') {
            flushLine();
        } else if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
            if (c == '\f' || c == '\v') line.push_back(' ');   // page/vertical breaks become spacing
        } else if (c == '\x7f') {
        } else {
            line.push_back(c);
        }
    }
    flushLine();
    return out;
}

bool looksBinary(std::string_view head) {
    if (head.size() >= 2 && (head.substr(0, 2) == "\xFF\xFE" || head.substr(0, 2) == "\xFE\xFF")) return false;
    size_t nControl = 0;
    for (char ch : head) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == 0) return true;
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b) ++nControl;
    }
    return !head.empty() && nControl * 10 > head.size();   // more than 10% control bytes
}

size_t utf8Floor(std::string_view s, size_t n) {
    if (n >= s.size()) return s.size();
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return n;
}

}  // namespace msa::catalog

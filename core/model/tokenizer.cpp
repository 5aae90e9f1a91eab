// tokenizer.cpp: byte-level BPE (see tokenizer.h and TOKENIZER.md).
//
// Layout of this file: UTF-8 helpers; the GPT-2 byte<->character table; regex splitting (PCRE2);
// added-token matching; normalisation (utf8proc); the BPE merge loop with its cache; loading from
// tokenizer.json and from GGUF metadata; decoding.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/model/tokenizer.h"

#include "core/util/checksum.h"
#include "core/util/file_map.h"

#include <nlohmann/json.hpp>
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <queue>
#include <unordered_map>

namespace msa::model {

namespace {

// ---- UTF-8 -------------------------------------------------------------------------------------

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";   // U+FFFD

// Well-formed sequences per Unicode Table 3-7. Returns the sequence length when `s[i..]` starts a
// complete well-formed character; otherwise 0 and sets `*subpart` to the length of the maximal
// ill-formed subpart (>= 1) and `*truncated` when the subpart is a valid prefix cut off by the end.
size_t utf8SequenceAt(std::string_view s, size_t i, size_t* subpart, bool* truncated) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    *truncated = false;
    if (b0 < 0x80) return 1;
    size_t need = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        *subpart = 1;
        return 0;
    }
    size_t k = 0;   // valid continuation bytes seen
    while (k < need) {
        const size_t j = i + 1 + k;
        if (j >= s.size()) {
            *subpart = 1 + k;
            *truncated = true;
            return 0;
        }
        const auto b = static_cast<unsigned char>(s[j]);
        const unsigned char l = (k == 0) ? lo : 0x80;
        const unsigned char h = (k == 0) ? hi : 0xBF;
        if (b < l || b > h) {
            *subpart = 1 + k;
            return 0;
        }
        ++k;
    }
    return need + 1;
}

// Offset of the first ill-formed byte, or s.size() when all of `s` is valid UTF-8.
size_t firstInvalidUtf8(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        // ASCII fast path, 8 bytes at a time.
        while (i + 8 <= s.size()) {
            uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= s.size()) break;
        size_t subpart = 0;
        bool truncated = false;
        const size_t n = utf8SequenceAt(s, i, &subpart, &truncated);
        if (n == 0) return i;
        i += n;
    }
    return s.size();
}

void appendUtf8(std::string& out, uint32_t cp) {
    char buf[4];
    const utf8proc_ssize_t n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp),
                                                    reinterpret_cast<utf8proc_uint8_t*>(buf));
    out.append(buf, static_cast<size_t>(n));
}

// Decodes one code point of valid UTF-8 at s[i]; returns its length.
size_t decodeUtf8(std::string_view s, size_t i, uint32_t* cp) {
    utf8proc_int32_t c = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                                static_cast<utf8proc_ssize_t>(s.size() - i), &c);
    if (n <= 0) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = static_cast<uint32_t>(c);
    return static_cast<size_t>(n);
}

bool isAsciiOnly(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

// Rust's char::is_whitespace (the Unicode White_Space property), used by lstrip/rstrip.
bool isUnicodeWhitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Rust regex's Unicode \w (HF's single_word test): Alphabetic, marks, decimal digits, connector
// punctuation, join controls. Alphabetic is taken as letters + Nl + the enclosed Latin letters
// (Other_Alphabetic outside the marks); marks cover the rest of Other_Alphabetic.
bool isWordChar(uint32_t cp) {
    if (cp == 0x200C || cp == 0x200D) return true;
    if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) || (cp >= 0x1F150 && cp <= 0x1F169) ||
        (cp >= 0x1F170 && cp <= 0x1F189))
        return true;
    switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

// ---- GPT-2 byte <-> printable character table -------------------------------------------------

struct ByteTable {
    std::array<uint32_t, 256> byteToCp{};
    std::array<int16_t, 512> cpToByte{};   // -1 where a code point is not a byte image
    ByteTable() {
        cpToByte.fill(-1);
        // Printable Latin-1 bytes stand for themselves; the others are moved to 256, 257, ... in
        // byte order, so every byte has a visible, non-whitespace image.
        uint32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            byteToCp[b] = printable ? static_cast<uint32_t>(b) : next++;
            cpToByte[byteToCp[b]] = static_cast<int16_t>(b);
        }
    }
};

const ByteTable& byteTable() {
    static const ByteTable t;
    return t;
}

std::string bytesToByteLevel(std::string_view bytes) {
    const ByteTable& t = byteTable();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) appendUtf8(out, t.byteToCp[static_cast<unsigned char>(c)]);
    return out;
}

std::string byteLevelToBytes(std::string_view text) {
    const ByteTable& t = byteTable();
    std::string out;
    out.reserve(text.size());
    size_t i = 0;
    while (i < text.size()) {
        uint32_t cp = 0;
        const size_t n = decodeUtf8(text, i, &cp);
        if (cp < t.cpToByte.size() && t.cpToByte[cp] >= 0) {
            out.push_back(static_cast<char>(t.cpToByte[cp]));
        } else {
            out.append(text.substr(i, n));   // not a byte image: keep the character itself (as HF does)
        }
        i += n;
    }
    return out;
}

// ---- regex splitting ---------------------------------------------------------------------------

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous };

struct Pcre2CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};

class Regex {
public:
    static Result<std::shared_ptr<Regex>> compile(const std::string& pattern, bool literal) {
        int err = 0;
        PCRE2_SIZE errOffset = 0;
        uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK;
        if (literal) opts |= PCRE2_LITERAL;
        pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts,
                                         &err, &errOffset, nullptr);
        if (!code) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return corrupt("pre-tokenizer regex does not compile at offset " + std::to_string(errOffset) + ": " +
                           reinterpret_cast<const char*>(msg) + " (pattern: " + pattern + ")");
        }
        auto r = std::make_shared<Regex>();
        r->m_code.reset(code);
        r->m_pattern = pattern;
        // JIT is an optimisation only: matching falls back to the interpreter when it is unavailable.
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
        return r;
    }
    pcre2_code* code() const { return m_code.get(); }
    const std::string& pattern() const { return m_pattern; }

private:
    std::unique_ptr<pcre2_code, Pcre2CodeDeleter> m_code;
    std::string m_pattern;
};

// Per-encode() scratch for PCRE2: match data and a JIT stack big enough for long whitespace runs.
class MatchScratch {
public:
    MatchScratch() {
        m_data = pcre2_match_data_create(8, nullptr);
        m_context = pcre2_match_context_create(nullptr);
        m_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, nullptr);
        if (m_context && m_stack) pcre2_jit_stack_assign(m_context, nullptr, m_stack);
    }
    ~MatchScratch() {
        if (m_stack) pcre2_jit_stack_free(m_stack);
        if (m_context) pcre2_match_context_free(m_context);
        if (m_data) pcre2_match_data_free(m_data);
    }
    MatchScratch(const MatchScratch&) = delete;
    MatchScratch& operator=(const MatchScratch&) = delete;

    // Next match of `re` in `s` at or after `from`; false when there is none.
    bool find(const Regex& re, std::string_view s, size_t from, size_t* begin, size_t* end) {
        int rc = pcre2_match(re.code(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from,
                             PCRE2_NO_UTF_CHECK, m_data, m_context);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            // A resource limit of the JIT: retry with the interpreter, which has its own heap limit.
            rc = pcre2_match(re.code(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), from,
                             PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, m_data, nullptr);
        }
        if (rc < 0) return false;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m_data);
        *begin = ov[0];
        *end = ov[1];
        return true;
    }

private:
    pcre2_match_data* m_data = nullptr;
    pcre2_match_context* m_context = nullptr;
    pcre2_jit_stack* m_stack = nullptr;
};

struct SplitStep {
    std::shared_ptr<Regex> regex;
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
    bool prefixSpace = false;   // ByteLevel add_prefix_space: prepend ' ' to pieces that lack it first
    bool splits = true;         // false for a ByteLevel step with use_regex=false (only prefixSpace)
    std::string name;           // for describe()
};

// Splits `s` into (range, isMatch) parts covering it, non-empty ones only.
void findParts(MatchScratch& scratch, const Regex& re, std::string_view s,
               std::vector<std::pair<std::string_view, bool>>& parts) {
    parts.clear();
    size_t pos = 0, prev = 0;
    while (pos <= s.size()) {
        size_t b = 0, e = 0;
        if (!scratch.find(re, s, pos, &b, &e)) break;
        if (e == b) {   // empty match: not a piece; step one character forward
            if (b >= s.size()) break;
            uint32_t cp = 0;
            pos = b + decodeUtf8(s, b, &cp);
            continue;
        }
        if (b > prev) parts.emplace_back(s.substr(prev, b - prev), false);
        parts.emplace_back(s.substr(b, e - b), true);
        prev = pos = e;
    }
    if (prev < s.size()) parts.emplace_back(s.substr(prev), false);
}

// Pieces are views into either the normalised segment or `arena` (pieces that got a prefix space).
void applySplit(MatchScratch& scratch, const SplitStep& step, std::vector<std::string_view>& pieces,
                std::deque<std::string>& arena) {
    std::vector<std::string_view> out;
    out.reserve(pieces.size() * 2);
    std::vector<std::pair<std::string_view, bool>> parts;
    for (std::string_view piece : pieces) {
        if (step.prefixSpace && !piece.empty() && piece.front() != ' ') {
            arena.push_back(" " + std::string(piece));
            piece = arena.back();
        }
        if (!step.splits) {
            out.push_back(piece);
            continue;
        }
        findParts(scratch, *step.regex, piece, parts);
        if (step.invert)
            for (auto& p : parts) p.second = !p.second;
        // Views are contiguous inside `piece`, so merging two neighbours is widening a view.
        auto join = [](std::string_view a, std::string_view b) {
            return std::string_view(a.data(), static_cast<size_t>(b.data() + b.size() - a.data()));
        };
        switch (step.behavior) {
        case SplitBehavior::Isolated:
            for (const auto& p : parts) out.push_back(p.first);
            break;
        case SplitBehavior::Removed:
            for (const auto& p : parts)
                if (!p.second) out.push_back(p.first);
            break;
        case SplitBehavior::MergedWithPrevious: {
            const size_t start = out.size();
            for (const auto& p : parts) {
                if (p.second && out.size() > start) out.back() = join(out.back(), p.first);
                else out.push_back(p.first);
            }
            break;
        }
        case SplitBehavior::MergedWithNext: {
            std::optional<std::string_view> pending;
            for (const auto& p : parts) {
                if (p.second) {
                    pending = pending ? join(*pending, p.first) : p.first;
                } else {
                    out.push_back(pending ? join(*pending, p.first) : p.first);
                    pending.reset();
                }
            }
            if (pending) out.push_back(*pending);
            break;
        }
        case SplitBehavior::Contiguous: {
            bool lastMatch = false;
            const size_t start = out.size();
            for (const auto& p : parts) {
                if (p.second && lastMatch && out.size() > start) out.back() = join(out.back(), p.first);
                else out.push_back(p.first);
                lastMatch = p.second;
            }
            break;
        }
        }
    }
    pieces.swap(out);
}

// ---- added tokens ------------------------------------------------------------------------------

struct AddedToken {
    std::string content;
    TokenId id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
    bool singleWord = false;
};

// Leftmost-longest matching of a small set of strings (HF uses Aho-Corasick with LeftmostLongest;
// with a few dozen tokens a first-byte index and memcmp is as fast and simpler).
class AddedMatcher {
public:
    void add(const AddedToken* t) {
        if (t->content.empty()) return;
        m_byFirst[static_cast<unsigned char>(t->content[0])].push_back(t);
        m_any = true;
    }
    bool empty() const { return !m_any; }

    struct Part {
        std::string_view text;
        const AddedToken* token = nullptr;   // null: ordinary text
    };

    // Splits `s` into text and added-token parts, as HF's AddedVocabulary::find_matches: take the
    // leftmost-longest match; a match that is a special token while !matchSpecial, or that violates
    // single_word, is discarded and scanning resumes after it (not inside it).
    void split(std::string_view s, bool matchSpecial, std::vector<Part>& out) const {
        size_t textStart = 0, i = 0;
        while (i < s.size()) {
            const auto& cands = m_byFirst[static_cast<unsigned char>(s[i])];
            const AddedToken* best = nullptr;
            for (const AddedToken* t : cands) {
                if (t->content.size() > s.size() - i) continue;
                if (std::memcmp(s.data() + i, t->content.data(), t->content.size()) != 0) continue;
                if (!best || t->content.size() > best->content.size()) best = t;
            }
            if (!best) {
                ++i;
                continue;
            }
            size_t b = i, e = i + best->content.size();
            if ((!matchSpecial && best->special) || (best->singleWord && !isSingleWord(s, b, e))) {
                i = e;
                continue;
            }
            if (best->lstrip) {
                while (b > textStart) {
                    size_t p = b - 1;
                    while (p > textStart && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
                    uint32_t cp = 0;
                    decodeUtf8(s, p, &cp);
                    if (!isUnicodeWhitespace(cp)) break;
                    b = p;
                }
            }
            if (best->rstrip) {
                while (e < s.size()) {
                    uint32_t cp = 0;
                    const size_t n = decodeUtf8(s, e, &cp);
                    if (!isUnicodeWhitespace(cp)) break;
                    e += n;
                }
            }
            if (b > textStart) out.push_back({s.substr(textStart, b - textStart), nullptr});
            out.push_back({s.substr(b, e - b), best});
            textStart = i = e;
        }
        if (textStart < s.size()) out.push_back({s.substr(textStart), nullptr});
    }

private:
    static bool isSingleWord(std::string_view s, size_t b, size_t e) {
        if (b > 0) {
            size_t p = b - 1;
            while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
            uint32_t cp = 0;
            decodeUtf8(s, p, &cp);
            if (isWordChar(cp)) return false;
        }
        if (e < s.size()) {
            uint32_t cp = 0;
            decodeUtf8(s, e, &cp);
            if (isWordChar(cp)) return false;
        }
        return true;
    }
    std::array<std::vector<const AddedToken*>, 256> m_byFirst;
    bool m_any = false;
};

// ---- normalisation -----------------------------------------------------------------------------

enum class NormForm { Nfc, Nfd, Nfkc, Nfkd };

std::string normalizeWith(std::string_view s, NormForm form) {
    int opts = UTF8PROC_STABLE;
    switch (form) {
    case NormForm::Nfc: opts |= UTF8PROC_COMPOSE; break;
    case NormForm::Nfd: opts |= UTF8PROC_DECOMPOSE; break;
    case NormForm::Nfkc: opts |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::Nfkd: opts |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
    }
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            static_cast<utf8proc_ssize_t>(s.size()), &dst,
                                            static_cast<utf8proc_option_t>(opts));
    if (n < 0 || !dst) {   // only on invalid UTF-8 or out of memory; input was sanitised before
        std::free(dst);
        return std::string(s);
    }
    std::string out(reinterpret_cast<const char*>(dst), static_cast<size_t>(n));
    std::free(dst);
    return out;
}

const char* normName(NormForm f) {
    switch (f) {
    case NormForm::Nfc: return "NFC";
    case NormForm::Nfd: return "NFD";
    case NormForm::Nfkc: return "NFKC";
    case NormForm::Nfkd: return "NFKD";
    }
    return "?";
}

// ---- known pre-tokenizer regexes (the strings the corresponding tokenizer.json files carry) ------

// ByteLevel(use_regex=true) in HF tokenizers: the GPT-2 split pattern.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Qwen2 / Qwen2.5 / Qwen3 tokenizer.json Split pattern.
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Llama-3 tokenizer.json Split pattern.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Oniguruma (the regex engine of HF tokenizers) defines \s as the Unicode White_Space property.
// PCRE2 10.42 with UCP matches \h and \v for \s, which adds U+180E MONGOLIAN VOWEL SEPARATOR (White_Space
// only before Unicode 6.3). So the model's own pattern is rewritten, not replaced:
//   \s  -> [^\S\x{180E}]          \S -> [\S\x{180E}]
//   [^...\s...] -> (?:[^...\s...]|\x{180E})      [...\s...] -> (?:(?!\x{180E})[...\s...])
// (exact as long as no other item of such a class matches U+180E, true of every pattern we know).
std::string adaptPatternForPcre2(const std::string& p) {
    std::string out;
    out.reserve(p.size() + 32);
    size_t i = 0;
    while (i < p.size()) {
        const char c = p[i];
        if (c == '\\' && i + 1 < p.size()) {
            const char n = p[i + 1];
            if (n == 's') out += "[^\\S\\x{180E}]";
            else if (n == 'S') out += "[\\S\\x{180E}]";
            else out += p.substr(i, 2);
            i += 2;
            continue;
        }
        if (c == '[') {
            // Find the end of the class: escapes, a leading ']' and POSIX [:name:] do not close it.
            size_t j = i + 1;
            const bool negated = j < p.size() && p[j] == '^';
            if (negated) ++j;
            if (j < p.size() && p[j] == ']') ++j;
            bool hasSpace = false;
            while (j < p.size() && p[j] != ']') {
                if (p[j] == '\\' && j + 1 < p.size()) {
                    if (p[j + 1] == 's') hasSpace = true;
                    j += 2;
                } else if (p[j] == '[' && j + 1 < p.size() && p[j + 1] == ':') {
                    const size_t close = p.find(":]", j + 2);
                    j = close == std::string::npos ? p.size() : close + 2;
                } else {
                    ++j;
                }
            }
            const std::string cls = p.substr(i, std::min(j + 1, p.size()) - i);
            if (!hasSpace) out += cls;
            else if (negated) out += "(?:" + cls + "|\\x{180E})";
            else out += "(?:(?!\\x{180E})" + cls + ")";
            i = j + 1;
            continue;
        }
        out += c;
        ++i;
    }
    return out;
}

}  // namespace

// ---- the implementation object -------------------------------------------------------------------

struct Tokenizer::Impl {
    std::string sourceName;
    std::vector<std::string> idToText;                 // vocabulary string per id ("" for holes)
    std::vector<std::string> idToBytes;                // decoded bytes per id
    std::vector<uint8_t> idIsSpecial;
    std::unordered_map<std::string, TokenId> textToId;
    std::unordered_map<uint64_t, std::pair<int32_t, TokenId>> merges;   // (left,right) -> (rank, merged)
    size_t nMerges = 0;
    std::array<TokenId, 256> byteIds{};                // id of each single-byte token, -1 if none
    std::optional<TokenId> unkId;
    bool ignoreMerges = false;

    std::deque<AddedToken> added;                      // stable addresses for the matchers
    AddedMatcher rawMatcher;                           // normalized == false
    AddedMatcher normMatcher;                          // normalized == true

    std::vector<NormForm> normalizers;
    std::vector<SplitStep> steps;

    SpecialTokenIds special;
    bool addBos = false;
    std::string chatTemplate;
    std::string pipeline;

    mutable std::mutex cacheMutex;
    mutable std::unordered_map<std::string, std::vector<TokenId>> cache;
    static constexpr size_t kCacheMaxEntries = 1 << 16;
    static constexpr size_t kCacheMaxWordBytes = 64;

    void bpeWord(std::string_view word, std::vector<TokenId>& out) const;
    void encodeText(std::string_view segment, MatchScratch& scratch, std::vector<TokenId>& out) const;
    std::string normalize(std::string_view segment) const;
    void encodeNormalized(std::string_view text, MatchScratch& scratch, std::vector<TokenId>& out) const;
    Status finish();
};

namespace {

struct Symbol {
    TokenId id;
    int prev, next;
};

struct Candidate {
    int32_t rank;
    int pos;
    TokenId left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

}  // namespace

// Merges one pre-token. Merge order is HF's: lowest rank first, leftmost among equal ranks, each
// merge re-evaluating only its two new neighbour pairs (priority queue with lazy invalidation).
void Tokenizer::Impl::bpeWord(std::string_view word, std::vector<TokenId>& out) const {
    if (word.empty()) return;
    const bool cacheable = word.size() <= kCacheMaxWordBytes;
    if (cacheable) {
        std::lock_guard lock(cacheMutex);
        auto it = cache.find(std::string(word));
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    if (ignoreMerges) {   // a pre-token that is itself a token is not merged (Llama-3)
        auto it = textToId.find(bytesToByteLevel(word));
        if (it != textToId.end()) {
            out.push_back(it->second);
            return;
        }
    }
    std::vector<Symbol> sym;
    sym.reserve(word.size());
    for (char c : word) {
        const TokenId id = byteIds[static_cast<unsigned char>(c)];
        if (id < 0) {
            // A byte without a token: HF emits the unknown token when there is one, else drops it.
            if (unkId) sym.push_back({*unkId, 0, 0});
            continue;
        }
        sym.push_back({id, 0, 0});
    }
    const int n = static_cast<int>(sym.size());
    for (int i = 0; i < n; ++i) {
        sym[i].prev = i - 1;
        sym[i].next = (i + 1 < n) ? i + 1 : -1;
    }
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
    auto consider = [&](int i) {
        if (i < 0) return;
        const int j = sym[i].next;
        if (j < 0) return;
        auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(sym[i].id)) << 32) |
                              static_cast<uint32_t>(sym[j].id));
        if (it != merges.end()) queue.push({it->second.first, i, sym[i].id, sym[j].id});
    };
    for (int i = 0; i + 1 < n; ++i) consider(i);
    std::vector<uint8_t> alive(static_cast<size_t>(n), 1);
    while (!queue.empty()) {
        const Candidate c = queue.top();
        queue.pop();
        if (!alive[c.pos] || sym[c.pos].id != c.left) continue;
        const int j = sym[c.pos].next;
        if (j < 0 || sym[j].id != c.right) continue;
        auto it = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(c.left)) << 32) |
                              static_cast<uint32_t>(c.right));
        sym[c.pos].id = it->second.second;
        alive[j] = 0;
        sym[c.pos].next = sym[j].next;
        if (sym[j].next >= 0) sym[sym[j].next].prev = c.pos;
        consider(sym[c.pos].prev);
        consider(c.pos);
    }
    const size_t first = out.size();
    for (int i = 0; i < n; i = sym[i].next) {
        out.push_back(sym[i].id);
        if (sym[i].next < 0) break;
    }
    if (cacheable) {
        std::lock_guard lock(cacheMutex);
        if (cache.size() >= kCacheMaxEntries) cache.clear();
        cache.emplace(std::string(word), std::vector<TokenId>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
    }
}

void Tokenizer::Impl::encodeNormalized(std::string_view text, MatchScratch& scratch, std::vector<TokenId>& out) const {
    std::vector<std::string_view> pieces{text};
    std::deque<std::string> arena;
    for (const SplitStep& step : steps) applySplit(scratch, step, pieces, arena);
    for (std::string_view p : pieces) bpeWord(p, out);
}

// ASCII characters are starters that every normal form leaves alone and that never compose with
// what precedes them, so only the stretches from the ASCII character before a non-ASCII run (a
// possible base of a combining mark) to the next ASCII character go through utf8proc. Mostly-ASCII
// text (the novel: 3,554 non-ASCII characters in 704,190) then costs a copy instead of a full pass.
std::string Tokenizer::Impl::normalize(std::string_view s) const {
    std::string out;
    out.reserve(s.size() + 16);
    size_t i = 0;
    while (i < s.size()) {
        size_t j = i;
        while (j < s.size() && static_cast<unsigned char>(s[j]) < 0x80) ++j;
        if (j == s.size()) {
            out.append(s.substr(i));
            break;
        }
        const size_t start = j > i ? j - 1 : j;
        out.append(s.substr(i, start - i));
        size_t k = j;
        while (k < s.size() && static_cast<unsigned char>(s[k]) >= 0x80) ++k;
        std::string part(s.substr(start, k - start));
        for (NormForm f : normalizers) part = normalizeWith(part, f);
        out += part;
        i = k;
    }
    return out;
}

void Tokenizer::Impl::encodeText(std::string_view segment, MatchScratch& scratch, std::vector<TokenId>& out) const {
    std::string normalized;
    std::string_view text = segment;
    if (!normalizers.empty() && !isAsciiOnly(segment)) {
        normalized = normalize(segment);
        text = normalized;
    }
    if (normMatcher.empty()) {
        encodeNormalized(text, scratch, out);
        return;
    }
    std::vector<AddedMatcher::Part> parts;
    normMatcher.split(text, true, parts);
    for (const auto& p : parts) {
        if (p.token) out.push_back(p.token->id);
        else encodeNormalized(p.text, scratch, out);
    }
}

Status Tokenizer::Impl::finish() {
    const ByteTable& bt = byteTable();
    for (int b = 0; b < 256; ++b) {
        std::string s;
        appendUtf8(s, bt.byteToCp[b]);
        auto it = textToId.find(s);
        byteIds[b] = (it == textToId.end()) ? -1 : it->second;
    }
    idToBytes.resize(idToText.size());
    idIsSpecial.assign(idToText.size(), 0);
    for (size_t i = 0; i < idToText.size(); ++i) idToBytes[i] = byteLevelToBytes(idToText[i]);
    for (const AddedToken& t : added) {
        idToBytes[static_cast<size_t>(t.id)] = t.content;   // added tokens decode to their literal content
        idIsSpecial[static_cast<size_t>(t.id)] = t.special ? 1 : 0;
        (t.normalized ? normMatcher : rawMatcher).add(&t);
    }
    std::string d;
    for (NormForm f : normalizers) d += std::string(normName(f)) + " | ";
    for (const SplitStep& s : steps) d += s.name + " | ";
    d += "BPE " + std::to_string(nMerges) + " merges, " + std::to_string(idToText.size()) + " ids, " +
         std::to_string(added.size()) + " added tokens";
    pipeline = d;
    return {};
}

// ---- construction --------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

namespace {

using nlohmann::json;

Status setToken(Tokenizer::Impl& impl, TokenId id, const std::string& text, std::string_view source) {
    if (id < 0 || id > 16'000'000)
        return corrupt(std::string(source) + ": token id " + std::to_string(id) + " out of range");
    if (static_cast<size_t>(id) >= impl.idToText.size()) impl.idToText.resize(static_cast<size_t>(id) + 1);
    impl.idToText[static_cast<size_t>(id)] = text;
    impl.textToId[text] = id;
    return {};
}

Status addMerge(Tokenizer::Impl& impl, const std::string& left, const std::string& right, std::string_view source) {
    auto l = impl.textToId.find(left), r = impl.textToId.find(right), m = impl.textToId.find(left + right);
    if (l == impl.textToId.end() || r == impl.textToId.end() || m == impl.textToId.end())
        return corrupt(std::string(source) + ": merge '" + left + " " + right + "' names a token not in the vocabulary");
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(l->second)) << 32) |
                         static_cast<uint32_t>(r->second);
    // The first (highest-priority) occurrence of a pair wins, as in HF.
    impl.merges.emplace(key, std::make_pair(static_cast<int32_t>(impl.nMerges), m->second));
    ++impl.nMerges;
    return {};
}

Result<SplitStep> makeSplit(const std::string& pattern, bool literal, SplitBehavior behavior, bool invert,
                            std::string name, std::string_view source) {
    Result<std::shared_ptr<Regex>> compiled = Regex::compile(literal ? pattern : adaptPatternForPcre2(pattern), literal);
    if (!compiled) return compiled.status().withContext(source);
    std::shared_ptr<Regex> re = std::move(compiled).value();
    SplitStep s;
    s.regex = std::move(re);
    s.behavior = behavior;
    s.invert = invert;
    s.name = std::move(name);
    return s;
}

Status parseNormalizer(Tokenizer::Impl& impl, const json& n, std::string_view source) {
    if (n.is_null()) return {};
    const std::string type = n.value("type", "");
    if (type == "Sequence") {
        for (const json& sub : n.at("normalizers")) MSA_RETURN_IF_ERROR(parseNormalizer(impl, sub, source));
        return {};
    }
    if (type == "NFC") impl.normalizers.push_back(NormForm::Nfc);
    else if (type == "NFD") impl.normalizers.push_back(NormForm::Nfd);
    else if (type == "NFKC") impl.normalizers.push_back(NormForm::Nfkc);
    else if (type == "NFKD") impl.normalizers.push_back(NormForm::Nfkd);
    else return unsupported(std::string(source) + ": normalizer '" + type + "' is not supported");
    return {};
}

Result<SplitBehavior> parseBehavior(const std::string& b, std::string_view source) {
    if (b == "Isolated") return SplitBehavior::Isolated;
    if (b == "Removed") return SplitBehavior::Removed;
    if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
    if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
    if (b == "Contiguous") return SplitBehavior::Contiguous;
    return unsupported(std::string(source) + ": split behavior '" + b + "' is not supported");
}

Status parsePreTokenizer(Tokenizer::Impl& impl, const json& p, std::string_view source) {
    if (p.is_null()) return {};
    const std::string type = p.value("type", "");
    if (type == "Sequence") {
        for (const json& sub : p.at("pretokenizers")) MSA_RETURN_IF_ERROR(parsePreTokenizer(impl, sub, source));
        return {};
    }
    if (type == "Split") {
        const json& pat = p.at("pattern");
        bool literal = false;
        std::string pattern;
        if (pat.contains("Regex")) {
            pattern = pat.at("Regex").get<std::string>();
        } else if (pat.contains("String")) {
            pattern = pat.at("String").get<std::string>();
            literal = true;
        } else {
            return corrupt(std::string(source) + ": Split pre-tokenizer without a pattern");
        }
        MSA_ASSIGN_OR_RETURN(SplitBehavior b, parseBehavior(p.value("behavior", "Isolated"), source));
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(pattern, literal, b, p.value("invert", false),
                                                    "Split(" + p.value("behavior", "Isolated") + ")", source));
        impl.steps.push_back(std::move(s));
        return {};
    }
    if (type == "ByteLevel") {
        const bool prefix = p.value("add_prefix_space", false);
        const bool useRegex = p.value("use_regex", true);
        if (useRegex) {
            MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(kGpt2Pattern, false, SplitBehavior::Isolated, false,
                                                        "ByteLevel(gpt2 regex)", source));
            s.prefixSpace = prefix;
            impl.steps.push_back(std::move(s));
        } else if (prefix) {
            SplitStep s;
            s.splits = false;
            s.prefixSpace = true;
            s.name = "ByteLevel(prefix space)";
            impl.steps.push_back(std::move(s));
        }
        return {};
    }
    if (type == "Digits") {
        const bool individual = p.value("individual_digits", false);
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(individual ? "\\p{N}" : "\\p{N}+", false,
                                                    SplitBehavior::Isolated, false,
                                                    individual ? "Digits(individual)" : "Digits", source));
        impl.steps.push_back(std::move(s));
        return {};
    }
    return unsupported(std::string(source) + ": pre-tokenizer '" + type + "' is not supported");
}

std::optional<std::string> specialContent(const json& cfg, const char* key) {
    if (!cfg.contains(key)) return std::nullopt;
    const json& v = cfg.at(key);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
    return std::nullopt;
}

Status loadJson(Tokenizer::Impl& impl, std::string_view text, std::string_view source, std::string_view configText) {
    const json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return corrupt(std::string(source) + ": not a JSON object");
    if (!j.contains("model") || !j.at("model").is_object()) return corrupt(std::string(source) + ": no \"model\" section");
    const json& model = j.at("model");
    const std::string modelType = model.value("type", "BPE");
    if (modelType != "BPE")
        return unsupported(std::string(source) + ": model type '" + modelType + "' (only byte-level BPE is supported)");
    if (model.value("byte_fallback", false))
        return unsupported(std::string(source) + ": BPE byte_fallback (SentencePiece-style) is not supported");
    if (model.contains("continuing_subword_prefix") && model.at("continuing_subword_prefix").is_string() &&
        !model.at("continuing_subword_prefix").get<std::string>().empty())
        return unsupported(std::string(source) + ": BPE continuing_subword_prefix is not supported");
    if (model.contains("end_of_word_suffix") && model.at("end_of_word_suffix").is_string() &&
        !model.at("end_of_word_suffix").get<std::string>().empty())
        return unsupported(std::string(source) + ": BPE end_of_word_suffix is not supported");
    impl.ignoreMerges = model.value("ignore_merges", false);
    if (!model.contains("vocab") || !model.at("vocab").is_object())
        return corrupt(std::string(source) + ": model.vocab missing");
    for (const auto& [tok, id] : model.at("vocab").items()) {
        if (!id.is_number_integer()) return corrupt(std::string(source) + ": vocab entry '" + tok + "' has no integer id");
        MSA_RETURN_IF_ERROR(setToken(impl, id.get<TokenId>(), tok, source));
    }
    if (!model.contains("merges") || !model.at("merges").is_array())
        return corrupt(std::string(source) + ": model.merges missing");
    for (const json& m : model.at("merges")) {
        if (m.is_string()) {
            const std::string s = m.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                return corrupt(std::string(source) + ": merge '" + s + "' is not two tokens separated by one space");
            MSA_RETURN_IF_ERROR(addMerge(impl, s.substr(0, sp), s.substr(sp + 1), source));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            MSA_RETURN_IF_ERROR(addMerge(impl, m[0].get<std::string>(), m[1].get<std::string>(), source));
        } else {
            return corrupt(std::string(source) + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
        }
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
        auto it = impl.textToId.find(model.at("unk_token").get<std::string>());
        if (it != impl.textToId.end()) impl.unkId = it->second;
    }
    if (j.contains("added_tokens") && j.at("added_tokens").is_array()) {
        for (const json& a : j.at("added_tokens")) {
            AddedToken t;
            t.id = a.at("id").get<TokenId>();
            t.content = a.at("content").get<std::string>();
            t.special = a.value("special", false);
            t.lstrip = a.value("lstrip", false);
            t.rstrip = a.value("rstrip", false);
            t.normalized = a.value("normalized", !t.special);
            t.singleWord = a.value("single_word", false);
            MSA_RETURN_IF_ERROR(setToken(impl, t.id, t.content, source));
            impl.added.push_back(std::move(t));
        }
    }
    if (j.contains("normalizer")) MSA_RETURN_IF_ERROR(parseNormalizer(impl, j.at("normalizer"), source));
    if (j.contains("pre_tokenizer")) MSA_RETURN_IF_ERROR(parsePreTokenizer(impl, j.at("pre_tokenizer"), source));
    if (j.contains("decoder") && !j.at("decoder").is_null()) {
        const std::string dt = j.at("decoder").value("type", "");
        if (dt != "ByteLevel")
            return unsupported(std::string(source) + ": decoder '" + dt + "' is not supported (only ByteLevel)");
    }

    auto idOf = [&](const std::string& s) -> std::optional<TokenId> {
        auto it = impl.textToId.find(s);
        if (it == impl.textToId.end()) return std::nullopt;
        return it->second;
    };
    if (!configText.empty()) {
        const json cfg = json::parse(configText.begin(), configText.end(), nullptr, false);
        if (cfg.is_discarded() || !cfg.is_object())
            return corrupt(std::string(source) + ": tokenizer_config.json is not a JSON object");
        if (auto s = specialContent(cfg, "bos_token")) impl.special.bos = idOf(*s);
        if (auto s = specialContent(cfg, "eos_token")) impl.special.eos = idOf(*s);
        if (auto s = specialContent(cfg, "pad_token")) impl.special.padding = idOf(*s);
        if (auto s = specialContent(cfg, "unk_token")) impl.special.unknown = idOf(*s);
        impl.addBos = cfg.value("add_bos_token", false) && impl.special.bos.has_value();
        if (cfg.contains("chat_template")) {
            const json& ct = cfg.at("chat_template");
            if (ct.is_string()) {
                impl.chatTemplate = ct.get<std::string>();
            } else if (ct.is_array()) {   // [{"name": "default", "template": "..."}, ...]
                for (const json& e : ct)
                    if (e.value("name", "") == "default") impl.chatTemplate = e.value("template", "");
            }
        }
    }
    if (!impl.special.eos) impl.special.eos = idOf("<|endoftext|>");
    if (auto e = idOf("<|eot_id|>")) impl.special.eot = e;
    else if (auto im = idOf("<|im_end|>")) impl.special.eot = im;
    if (!impl.special.unknown) impl.special.unknown = impl.unkId;
    return {};
}

}  // namespace

Result<Tokenizer> Tokenizer::fromJsonText(std::string_view tokenizerJson, std::string_view sourceName,
                                          std::string_view tokenizerConfigJson) {
    auto impl = std::make_unique<Impl>();
    impl->sourceName = std::string(sourceName);
    try {
        MSA_RETURN_IF_ERROR(loadJson(*impl, tokenizerJson, sourceName, tokenizerConfigJson));
    } catch (const nlohmann::json::exception& e) {
        // Wrong types or missing keys deep inside the file (nlohmann throws on .at()/.get()).
        return corrupt(std::string(sourceName) + ": unexpected structure: " + e.what());
    }
    MSA_RETURN_IF_ERROR(impl->finish());
    return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::fromJsonFile(const std::filesystem::path& path) {
    MSA_ASSIGN_OR_RETURN(FileMapping map, FileMapping::open(path));
    const std::string_view text(reinterpret_cast<const char*>(map.data()), map.size());
    std::string config;
    const std::filesystem::path cfgPath = path.parent_path() / "tokenizer_config.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(cfgPath, ec)) {
        MSA_ASSIGN_OR_RETURN(FileMapping cfgMap, FileMapping::open(cfgPath));
        config.assign(reinterpret_cast<const char*>(cfgMap.data()), cfgMap.size());
    }
    return fromJsonText(text, path.string(), config);
}

Result<Tokenizer> Tokenizer::fromSpec(const TokenizerSpec& spec, std::string_view sourceName) {
    const std::string src(sourceName);
    if (spec.model != "gpt2")
        return unsupported(src + ": tokenizer model '" + spec.model + "' (only gpt2 byte-level BPE is supported)");
    if (spec.tokens.empty()) return corrupt(src + ": tokenizer.ggml.tokens is empty");
    if (!spec.tokenTypes.empty() && spec.tokenTypes.size() != spec.tokens.size())
        return corrupt(src + ": tokenizer.ggml.token_type has " + std::to_string(spec.tokenTypes.size()) +
                       " entries for " + std::to_string(spec.tokens.size()) + " tokens");
    auto impl = std::make_unique<Impl>();
    impl->sourceName = src;
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
        const TokenId id = static_cast<TokenId>(i);
        MSA_RETURN_IF_ERROR(setToken(*impl, id, spec.tokens[i], src));
        const int32_t type = spec.tokenTypes.empty() ? 1 : spec.tokenTypes[i];
        if (type == static_cast<int32_t>(GgufTokenType::Control) ||
            type == static_cast<int32_t>(GgufTokenType::UserDefined)) {
            AddedToken t;
            t.id = id;
            t.content = spec.tokens[i];
            t.special = type == static_cast<int32_t>(GgufTokenType::Control);
            impl->added.push_back(std::move(t));
        }
    }
    // Re-insert so that the first id wins for duplicate strings (GGUF vocabularies may repeat one).
    for (size_t i = spec.tokens.size(); i-- > 0;) impl->textToId[spec.tokens[i]] = static_cast<TokenId>(i);
    for (const std::string& m : spec.merges) {
        const size_t sp = m.find(' ');
        if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos)
            return corrupt(src + ": merge '" + m + "' is not two tokens separated by one space");
        MSA_RETURN_IF_ERROR(addMerge(*impl, m.substr(0, sp), m.substr(sp + 1), src));
    }
    const std::string& pre = spec.preTokenizer;
    if (pre == "qwen2" || pre == "qwen3" || pre == "deepseek-r1-qwen") {
        impl->normalizers.push_back(NormForm::Nfc);
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(kQwen2Pattern, false, SplitBehavior::Isolated, false, "Split(qwen2)", src));
        impl->steps.push_back(std::move(s));
    } else if (pre == "llama-bpe" || pre == "llama3") {
        impl->ignoreMerges = true;   // Llama-3's tokenizer.json sets ignore_merges
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(kLlama3Pattern, false, SplitBehavior::Isolated, false, "Split(llama3)", src));
        impl->steps.push_back(std::move(s));
    } else if (pre == "smollm") {
        MSA_ASSIGN_OR_RETURN(SplitStep d, makeSplit("\\p{N}", false, SplitBehavior::Isolated, false, "Digits(individual)", src));
        impl->steps.push_back(std::move(d));
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(kGpt2Pattern, false, SplitBehavior::Isolated, false, "ByteLevel(gpt2 regex)", src));
        impl->steps.push_back(std::move(s));
    } else if (pre == "gpt-2" || pre == "gpt2" || pre == "default" || pre.empty()) {
        MSA_ASSIGN_OR_RETURN(SplitStep s, makeSplit(kGpt2Pattern, false, SplitBehavior::Isolated, false, "ByteLevel(gpt2 regex)", src));
        impl->steps.push_back(std::move(s));
    } else {
        return unsupported(src + ": pre-tokenizer '" + pre + "' is not known (known: qwen2, llama-bpe, smollm, gpt-2)");
    }
    auto checkId = [&](const std::optional<TokenId>& id, const char* what) -> Status {
        if (id && (*id < 0 || static_cast<size_t>(*id) >= spec.tokens.size()))
            return corrupt(src + ": " + what + " id " + std::to_string(*id) + " is not a token");
        return {};
    };
    MSA_RETURN_IF_ERROR(checkId(spec.bosId, "bos"));
    MSA_RETURN_IF_ERROR(checkId(spec.eosId, "eos"));
    MSA_RETURN_IF_ERROR(checkId(spec.eotId, "eot"));
    MSA_RETURN_IF_ERROR(checkId(spec.unknownId, "unknown"));
    MSA_RETURN_IF_ERROR(checkId(spec.paddingId, "padding"));
    impl->special = {spec.bosId, spec.eosId, spec.eotId, spec.unknownId, spec.paddingId};
    if (!impl->special.eot) {
        auto it = impl->textToId.find("<|eot_id|>");
        if (it == impl->textToId.end()) it = impl->textToId.find("<|im_end|>");
        if (it != impl->textToId.end()) impl->special.eot = it->second;
    }
    impl->addBos = spec.addBos && spec.bosId.has_value();
    impl->chatTemplate = spec.chatTemplate;
    MSA_RETURN_IF_ERROR(impl->finish());
    return Tokenizer(std::move(impl));
}

// ---- encode / decode -----------------------------------------------------------------------------

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
    const Impl& im = *m_impl;
    std::vector<TokenId> out;
    out.reserve(text.size() / 3 + 4);
    if (options.addBos && im.special.bos) out.push_back(*im.special.bos);
    std::string sanitized;
    if (firstInvalidUtf8(text) != text.size()) {
        sanitized = sanitizeUtf8(text);
        text = sanitized;
    }
    // Reused by later calls on this thread: a JIT stack costs an mmap, noticeable when streaming.
    thread_local MatchScratch scratch;
    if (im.rawMatcher.empty()) {
        im.encodeText(text, scratch, out);
        return out;
    }
    std::vector<AddedMatcher::Part> parts;
    im.rawMatcher.split(text, options.matchSpecial, parts);
    for (const auto& p : parts) {
        if (p.token) out.push_back(p.token->id);
        else im.encodeText(p.text, scratch, out);
    }
    return out;
}

std::string Tokenizer::decodeBytes(std::span<const TokenId> ids, bool skipSpecial) const {
    std::string out;
    for (TokenId id : ids) {
        if (id < 0 || static_cast<size_t>(id) >= m_impl->idToBytes.size()) continue;
        if (skipSpecial && m_impl->idIsSpecial[static_cast<size_t>(id)]) continue;
        out += m_impl->idToBytes[static_cast<size_t>(id)];
    }
    return out;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skipSpecial) const {
    return sanitizeUtf8(decodeBytes(ids, skipSpecial));
}

std::string Tokenizer::tokenBytes(TokenId id) const {
    if (id < 0 || static_cast<size_t>(id) >= m_impl->idToBytes.size()) return {};
    return m_impl->idToBytes[static_cast<size_t>(id)];
}

const std::string& Tokenizer::tokenText(TokenId id) const {
    static const std::string kEmpty;
    if (id < 0 || static_cast<size_t>(id) >= m_impl->idToText.size()) return kEmpty;
    return m_impl->idToText[static_cast<size_t>(id)];
}

std::optional<TokenId> Tokenizer::findToken(std::string_view vocabText) const {
    auto it = m_impl->textToId.find(std::string(vocabText));
    if (it == m_impl->textToId.end()) return std::nullopt;
    return it->second;
}

bool Tokenizer::isSpecial(TokenId id) const {
    return id >= 0 && static_cast<size_t>(id) < m_impl->idIsSpecial.size() && m_impl->idIsSpecial[static_cast<size_t>(id)];
}

size_t Tokenizer::vocabSize() const { return m_impl->idToText.size(); }
const SpecialTokenIds& Tokenizer::specialIds() const { return m_impl->special; }
bool Tokenizer::addBosByDefault() const { return m_impl->addBos; }
const std::string& Tokenizer::chatTemplateSource() const { return m_impl->chatTemplate; }
std::string Tokenizer::describe() const { return m_impl->pipeline; }

uint64_t Tokenizer::contentHash() const {
    Hasher h;
    const std::string_view sep("\0", 1);
    for (const std::string& t : m_impl->idToText) {
        h.update(t);
        h.update(sep);
    }
    std::vector<std::pair<int32_t, uint64_t>> merges;
    merges.reserve(m_impl->merges.size());
    for (const auto& [pair, v] : m_impl->merges) merges.emplace_back(v.first, pair);
    std::sort(merges.begin(), merges.end());
    for (const auto& [rank, pair] : merges) {
        h.update(std::string_view(reinterpret_cast<const char*>(&pair), sizeof pair));
    }
    for (const AddedToken& t : m_impl->added) {
        h.update(t.content);
        const std::string flags = std::to_string(t.id) + (t.special ? "s" : "") + (t.lstrip ? "l" : "") +
                                  (t.rstrip ? "r" : "") + (t.normalized ? "n" : "") + (t.singleWord ? "w" : "");
        h.update(flags);
    }
    for (const SplitStep& s : m_impl->steps) {
        h.update(s.regex ? s.regex->pattern() : std::string("-"));
        h.update(std::to_string(static_cast<int>(s.behavior)) + (s.invert ? "i" : "") + (s.prefixSpace ? "p" : ""));
    }
    h.update(m_impl->pipeline);
    return h.digest64();
}

// ---- UTF-8 helpers (public) ----------------------------------------------------------------------

std::string sanitizeUtf8(std::string_view bytes) {
    const size_t firstBad = firstInvalidUtf8(bytes);
    if (firstBad == bytes.size()) return std::string(bytes);
    std::string out;
    out.reserve(bytes.size() + 8);
    out.append(bytes.substr(0, firstBad));
    size_t i = firstBad;
    while (i < bytes.size()) {
        size_t subpart = 0;
        bool truncated = false;
        const size_t n = utf8SequenceAt(bytes, i, &subpart, &truncated);
        if (n > 0) {
            out.append(bytes.substr(i, n));
            i += n;
        } else {
            out.append(kReplacement);
            i += subpart;
        }
    }
    return out;
}

size_t completeUtf8Prefix(std::string_view bytes) {
    size_t i = 0;
    while (i < bytes.size()) {
        size_t subpart = 0;
        bool truncated = false;
        const size_t n = utf8SequenceAt(bytes, i, &subpart, &truncated);
        if (n > 0) {
            i += n;
        } else if (truncated) {
            return i;   // may still complete
        } else {
            i += subpart;
        }
    }
    return i;
}

// ---- StreamingDecoder ----------------------------------------------------------------------------

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skipSpecial)
    : m_tokenizer(&tokenizer), m_skipSpecial(skipSpecial) {}

std::string StreamingDecoder::push(TokenId id) {
    if (m_skipSpecial && m_tokenizer->isSpecial(id)) return {};
    m_pending += m_tokenizer->tokenBytes(id);
    const size_t n = completeUtf8Prefix(m_pending);
    if (n == 0) return {};
    std::string out = sanitizeUtf8(std::string_view(m_pending).substr(0, n));
    m_pending.erase(0, n);
    return out;
}

std::string StreamingDecoder::finish() {
    std::string out = sanitizeUtf8(m_pending);
    m_pending.clear();
    return out;
}

}  // namespace msa::model

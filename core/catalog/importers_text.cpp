// importers_text.cpp: plain text, Markdown and source code importers, and the date helpers.
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace msa::catalog {
namespace {

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

std::string unquote(std::string s) {
    if (s.size() >= 2 && ((s.front() == '"' && s.back() == '"') || (s.front() == '\'' && s.back() == '\'')))
        return s.substr(1, s.size() - 2);
    return s;
}

// Title of a plain text: the first non-empty line when it is short, else the file name.
std::string titleFromText(const std::string& text, const std::filesystem::path& path) {
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = trim(std::string_view(text).substr(start, end - start));
        if (!line.empty()) {
            if (line.size() <= 120) return line;
            break;
        }
        start = end + 1;
    }
    return path.filename().string();
}

// Boundaries at blank-line-separated lines that look like headings in plain text ("CHAPTER 3",
// "Chapter 12.", all-caps short lines), used to cut long books at chapters.
std::vector<Boundary> plainTextHeadings(const std::string& text) {
    std::vector<Boundary> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string_view line = std::string_view(text).substr(start, end - start);
        const bool afterBlank = start == 0 || (start >= 2 && text[start - 1] == '\n' && text[start - 2] == '\n');
        if (afterBlank && !line.empty() && line.size() <= 60) {
            const std::string t = trim(line);
            std::string low = t;
            std::transform(low.begin(), low.end(), low.begin(), [](unsigned char c) { return std::tolower(c); });
            bool allCaps = t.size() >= 4;
            for (unsigned char c : t)
                if (std::islower(c)) allCaps = false;
            if (low.rfind("chapter ", 0) == 0 || low.rfind("part ", 0) == 0 || low.rfind("section ", 0) == 0 ||
                (allCaps && std::any_of(t.begin(), t.end(), [](unsigned char c) { return std::isalpha(c); })))
                out.push_back({start, t});
        }
        start = end + 1;
    }
    return out;
}

std::optional<int64_t> parseTime(std::string_view s, int64_t day) {
    int hh = 0, mm = 0, ss = 0;
    char buf[64] = {};
    std::memcpy(buf, s.data(), std::min(s.size(), sizeof(buf) - 1));
    if (std::sscanf(buf, "%d:%d:%d", &hh, &mm, &ss) < 2) return std::nullopt;
    int64_t t = day * 86400 + hh * 3600 + mm * 60 + ss;
    // Zone suffix: Z, +hh:mm, +hhmm.
    const char* z = std::strpbrk(buf + 3, "Z+-");
    if (z && *z != 'Z') {
        int zh = 0, zm = 0;
        if (std::sscanf(z + 1, "%2d:%2d", &zh, &zm) >= 1 || std::sscanf(z + 1, "%2d%2d", &zh, &zm) >= 1) {
            const int64_t off = zh * 3600 + zm * 60;
            t += (*z == '+') ? -off : off;
        }
    }
    return t;
}

}  // namespace

int64_t daysFromCivil(int64_t y, unsigned m, unsigned d) {
    // Howard Hinnant's days_from_civil.
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

std::string formatDay(int64_t t) {
    int64_t z = (t >= 0 ? t : t - 86399) / 86400 + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02u", static_cast<long long>(y), m, d);
    return buf;
}

std::optional<int64_t> parseDate(std::string_view in) {
    const std::string s = trim(in);
    int y = 0, mo = 0, d = 0;
    int n = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && n == 10) {
        if (mo < 1 || mo > 12 || d < 1 || d > 31) return std::nullopt;
        const int64_t day = daysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
        if (s.size() > 11 && (s[10] == 'T' || s[10] == ' ')) {
            if (auto t = parseTime(std::string_view(s).substr(11), day)) return t;
        }
        return day * 86400;
    }
    // RFC 2822: [Day,] DD Mon YYYY HH:MM[:SS] [zone]
    static const char* kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
    std::string rest = s;
    if (const size_t comma = rest.find(','); comma != std::string::npos && comma < 5) rest = trim(rest.substr(comma + 1));
    char mon[8] = {};
    int hh = 0, mm = 0, ss = 0;
    char zone[16] = {};
    const int got = std::sscanf(rest.c_str(), "%d %3s %d %d:%d:%d %15s", &d, mon, &y, &hh, &mm, &ss, zone);
    if (got >= 3) {
        for (char& c : mon) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        int month = 0;
        for (int i = 0; i < 12; ++i)
            if (std::strcmp(mon, kMonths[i]) == 0) month = i + 1;
        if (month == 0 || d < 1 || d > 31) return std::nullopt;
        if (y < 100) y += y < 50 ? 2000 : 1900;
        int64_t t = daysFromCivil(y, static_cast<unsigned>(month), static_cast<unsigned>(d)) * 86400;
        if (got >= 5) t += hh * 3600 + mm * 60 + (got >= 6 ? ss : 0);
        if (got >= 7 && (zone[0] == '+' || zone[0] == '-') && std::strlen(zone) >= 5) {
            const int zh = (zone[1] - '0') * 10 + (zone[2] - '0');
            const int zm = (zone[3] - '0') * 10 + (zone[4] - '0');
            const int64_t off = zh * 3600 + zm * 60;
            t += zone[0] == '+' ? -off : off;
        }
        return t;
    }
    return std::nullopt;
}

Result<Extraction> extractPlainText(const std::filesystem::path& path, std::string_view bytes) {
    DecodedText dec = decodeText(bytes);
    ExtractedDocument doc;
    doc.kind = "text";
    doc.text = normalizeText(dec.utf8);
    if (doc.text.empty()) return invalidArgument("no text (only whitespace/control characters)");
    doc.title = titleFromText(doc.text, path);
    doc.metadata["encoding"] = dec.encoding;
    doc.boundaries = plainTextHeadings(doc.text);
    Extraction ex;
    ex.warnings = std::move(dec.warnings);
    ex.documents.push_back(std::move(doc));
    return ex;
}

Result<Extraction> extractCode(const std::filesystem::path& path, std::string_view bytes, const std::string& language) {
    DecodedText dec = decodeText(bytes);
    ExtractedDocument doc;
    doc.kind = "code";
    doc.text = normalizeText(dec.utf8);
    if (doc.text.empty()) return invalidArgument("no text (only whitespace)");
    doc.title = path.filename().string();
    doc.metadata["language"] = language;
    doc.metadata["encoding"] = dec.encoding;
    Extraction ex;
    ex.language = language;
    ex.warnings = std::move(dec.warnings);
    ex.documents.push_back(std::move(doc));
    return ex;
}

Result<Extraction> extractMarkdown(const std::filesystem::path& path, std::string_view bytes) {
    DecodedText dec = decodeText(bytes);
    std::string text = normalizeText(dec.utf8);
    ExtractedDocument doc;
    doc.kind = "markdown";
    doc.metadata["encoding"] = dec.encoding;

    // YAML front matter: "---" line, simple "key: value" pairs (lists inline "[a, b]" or "- item"), "---".
    if (text.rfind("---\n", 0) == 0) {
        const size_t close = text.find("\n---", 3);
        if (close != std::string::npos && (close + 4 == text.size() || text[close + 4] == '\n')) {
            const std::string block = text.substr(4, close - 4);
            std::string lastKey;
            nlohmann::json front = nlohmann::json::object();
            size_t start = 0;
            while (start <= block.size()) {
                size_t end = block.find('\n', start);
                if (end == std::string::npos) end = block.size();
                const std::string line = block.substr(start, end - start);
                start = end + 1;
                const std::string t = trim(line);
                if (t.empty() || t[0] == '#') continue;
                if (t.rfind("- ", 0) == 0 && !lastKey.empty()) {
                    if (!front[lastKey].is_array()) front[lastKey] = nlohmann::json::array();
                    front[lastKey].push_back(unquote(trim(t.substr(2))));
                    continue;
                }
                const size_t colon = line.find(':');
                if (colon == std::string::npos || line[0] == ' ') continue;
                lastKey = trim(line.substr(0, colon));
                std::string value = trim(line.substr(colon + 1));
                if (value.size() >= 2 && value.front() == '[' && value.back() == ']') {
                    nlohmann::json arr = nlohmann::json::array();
                    std::string inner = value.substr(1, value.size() - 2);
                    size_t p = 0;
                    while (p <= inner.size()) {
                        size_t q = inner.find(',', p);
                        if (q == std::string::npos) q = inner.size();
                        std::string item = unquote(trim(inner.substr(p, q - p)));
                        if (!item.empty()) arr.push_back(item);
                        p = q + 1;
                    }
                    front[lastKey] = arr;
                } else {
                    front[lastKey] = unquote(value);
                }
            }
            if (front.contains("title") && front["title"].is_string()) doc.title = front["title"].get<std::string>();
            for (const char* key : {"date", "created", "updated"}) {
                if (!doc.dateUnix && front.contains(key) && front[key].is_string())
                    doc.dateUnix = parseDate(front[key].get<std::string>());
            }
            for (const char* key : {"author", "authors"}) {
                if (doc.author.empty() && front.contains(key)) {
                    if (front[key].is_string()) doc.author = front[key].get<std::string>();
                    else if (front[key].is_array() && !front[key].empty() && front[key][0].is_string())
                        doc.author = front[key][0].get<std::string>();
                }
            }
            if (front.contains("tags")) doc.metadata["tags"] = front["tags"];
            doc.metadata["front_matter"] = front;
            text = normalizeText(text.substr(std::min(close + 4, text.size())));
        }
    }
    if (text.empty()) return invalidArgument("no text after the front matter");

    // ATX headings ("# Title") outside fenced code blocks become section boundaries labelled with
    // their heading path.
    std::vector<std::string> path_;   // heading stack
    bool inFence = false;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string_view line = std::string_view(text).substr(start, end - start);
        if (line.rfind("```", 0) == 0 || line.rfind("~~~", 0) == 0) inFence = !inFence;
        if (!inFence && !line.empty() && line[0] == '#') {
            size_t level = 0;
            while (level < line.size() && line[level] == '#') ++level;
            if (level <= 6 && level < line.size() && line[level] == ' ') {
                std::string heading = trim(line.substr(level));
                while (!heading.empty() && heading.back() == '#') heading.pop_back();
                heading = trim(heading);
                path_.resize(std::min(path_.size(), level - 1));
                while (path_.size() < level - 1) path_.push_back({});
                path_.push_back(heading);
                std::string label;
                for (const std::string& h : path_)
                    if (!h.empty()) label += (label.empty() ? "" : " > ") + h;
                doc.boundaries.push_back({start, label});
                if (doc.title.empty() && level == 1) doc.title = heading;
            }
        }
        start = end + 1;
    }
    if (doc.title.empty()) doc.title = doc.boundaries.empty() ? path.stem().string() : doc.boundaries.front().label;
    doc.metadata["headings"] = static_cast<int64_t>(doc.boundaries.size());
    doc.text = std::move(text);
    Extraction ex;
    ex.warnings = std::move(dec.warnings);
    ex.documents.push_back(std::move(doc));
    return ex;
}

}  // namespace msa::catalog

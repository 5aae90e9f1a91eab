#include "core/catalog/segmenter.h"

#include "core/catalog/text_decode.h"

#include <algorithm>
#include <cmath>

namespace msa::catalog {
namespace {

int64_t estimateTokens(size_t bytes, double bytesPerToken) {
    return static_cast<int64_t>(std::ceil(static_cast<double>(bytes) / std::max(1.0, bytesPerToken)));
}

// Label of the last boundary at or before `offset` (empty when none).
std::string labelAt(const std::vector<Boundary>& bs, size_t offset) {
    auto it = std::upper_bound(bs.begin(), bs.end(), offset,
                               [](size_t o, const Boundary& b) { return o < b.offset; });
    if (it == bs.begin()) return {};
    return std::prev(it)->label;
}

}  // namespace

std::vector<Segment> segmentDocument(const ExtractedDocument& doc, const ImportLimits& limits) {
    const std::string& text = doc.text;
    const size_t budget = static_cast<size_t>(std::max(64.0, limits.tokenBudget * limits.bytesPerToken));
    std::vector<Segment> out;
    if (text.size() <= budget) {
        out.push_back({doc.unitKind, 0, text.size(), {}, estimateTokens(text.size(), limits.bytesPerToken)});
        return out;
    }
    std::vector<Boundary> bs = doc.boundaries;
    std::sort(bs.begin(), bs.end(), [](const Boundary& a, const Boundary& b) { return a.offset < b.offset; });
    size_t pos = 0;
    while (pos < text.size()) {
        while (pos < text.size() && (text[pos] == '\n' || text[pos] == ' ')) ++pos;
        if (pos >= text.size()) break;
        size_t end;
        if (text.size() - pos <= budget) {
            end = text.size();
        } else {
            const size_t limit = pos + budget;
            // A heading is worth a short part (sections stay whole); a page or message boundary is
            // only taken when it keeps the part at least a quarter of the budget long.
            const size_t minCut = doc.splitKind == "section" ? pos : pos + budget / 4;
            const size_t halfCut = pos + budget / 2;
            end = 0;
            // 1. an importer boundary (heading, page, message)
            auto it = std::upper_bound(bs.begin(), bs.end(), limit,
                                       [](size_t o, const Boundary& b) { return o < b.offset; });
            if (it != bs.begin() && std::prev(it)->offset > minCut) end = std::prev(it)->offset;
            // 2. paragraph, 3. line, 4. word
            // Searched only inside the window's second half, so a text without breaks costs O(n).
            const std::string_view window = std::string_view(text).substr(halfCut, limit - halfCut);
            for (std::string_view sep : {std::string_view("\n\n"), std::string_view("\n"), std::string_view(" ")}) {
                if (end) break;
                const size_t at = window.rfind(sep);
                if (at != std::string_view::npos) end = halfCut + at + sep.size();
            }
            // 5. a character boundary
            if (!end) end = utf8Floor(text, limit);
            if (end <= pos) end = std::min(text.size(), pos + budget);   // a single huge code point run
        }
        size_t trimmedEnd = end;
        while (trimmedEnd > pos && (text[trimmedEnd - 1] == '\n' || text[trimmedEnd - 1] == ' ')) --trimmedEnd;
        Segment s;
        s.kind = doc.splitKind;
        s.start = pos;
        s.end = trimmedEnd;
        const std::string first = labelAt(bs, pos);
        const std::string last = labelAt(bs, trimmedEnd > 0 ? trimmedEnd - 1 : 0);
        s.label = first == last ? first : first.empty() ? last : first + " … " + last;
        s.tokenEstimate = estimateTokens(trimmedEnd - pos, limits.bytesPerToken);
        if (trimmedEnd > pos) out.push_back(std::move(s));
        pos = end;
    }
    if (out.empty()) out.push_back({doc.unitKind, 0, text.size(), {}, estimateTokens(text.size(), limits.bytesPerToken)});
    return out;
}

}  // namespace msa::catalog

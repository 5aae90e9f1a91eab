#include "core/catalog/xml_util.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <cctype>
#include <mutex>

namespace msa::catalog {

void ensureXmlInitialised() {
    static std::once_flag once;
    std::call_once(once, [] { xmlInitParser(); });
}

std::string nodeText(const xmlNode* node) {
    std::string out;
    xmlChar* s = xmlNodeGetContent(const_cast<xmlNode*>(node));
    if (s) {
        out = reinterpret_cast<const char*>(s);
        xmlFree(s);
    }
    return out;
}

std::string attribute(const xmlNode* node, const char* name) {
    std::string out;
    xmlChar* s = xmlGetProp(const_cast<xmlNode*>(node), reinterpret_cast<const xmlChar*>(name));
    if (s) {
        out = reinterpret_cast<const char*>(s);
        xmlFree(s);
    }
    return out;
}

std::string collapseSpaces(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (std::isspace(static_cast<unsigned char>(c))) {
            if (!out.empty() && out.back() != ' ') out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out;
}

std::vector<Boundary> locateHeadings(const std::string& text, const std::vector<std::string>& headings) {
    std::vector<Boundary> out;
    size_t from = 0;
    for (const std::string& h : headings) {
        if (h.empty()) continue;
        const size_t at = text.find(h, from);
        if (at == std::string::npos) continue;
        size_t lineStart = text.rfind('\n', at);
        lineStart = lineStart == std::string::npos ? 0 : lineStart + 1;
        if (out.empty() || out.back().offset != lineStart) out.push_back({lineStart, h});
        from = at + h.size();
    }
    return out;
}

}  // namespace msa::catalog

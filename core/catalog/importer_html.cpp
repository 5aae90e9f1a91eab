// importer_html.cpp: HTML to text with libxml2's error-recovering HTML parser (never a regex).
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"
#include "core/catalog/xml_util.h"

#include <libxml/HTMLparser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstring>
#include <unordered_set>

namespace msa::catalog {
namespace {

bool nameIs(const xmlNode* n, const char* name) {
    return n->name && xmlStrcasecmp(n->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

const std::unordered_set<std::string>& blockElements() {
    static const std::unordered_set<std::string> s = {
        "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "section", "article", "header",
        "footer", "blockquote", "pre", "hr", "form", "nav", "aside", "figure", "figcaption", "main", "address",
        "h1", "h2", "h3", "h4", "h5", "h6", "tbody", "thead", "caption", "center", "body"};
    return s;
}

struct Walker {
    std::string out;
    std::vector<std::string> headings;
    HtmlText* result = nullptr;
    int preDepth = 0;

    void breakLines(int n) {
        if (out.empty()) return;
        while (!out.empty() && out.back() == ' ') out.pop_back();
        int have = 0;
        for (auto it = out.rbegin(); it != out.rend() && *it == '\n' && have < n; ++it) ++have;
        out.append(static_cast<size_t>(n - have), '\n');
    }

    void text(const char* s) {
        if (preDepth > 0) {
            out += s;
            return;
        }
        for (const char* p = s; *p; ++p) {
            const auto c = static_cast<unsigned char>(*p);
            if (std::isspace(c)) {
                if (!out.empty() && out.back() != ' ' && out.back() != '\n') out.push_back(' ');
            } else {
                out.push_back(static_cast<char>(c));
            }
        }
    }

    void walk(xmlNode* node) {
        for (xmlNode* n = node; n; n = n->next) {
            if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
                if (n->content) text(reinterpret_cast<const char*>(n->content));
                continue;
            }
            if (n->type != XML_ELEMENT_NODE) continue;
            if (nameIs(n, "script") || nameIs(n, "style") || nameIs(n, "noscript") || nameIs(n, "template") ||
                nameIs(n, "svg") || nameIs(n, "iframe") || nameIs(n, "object")) continue;
            if (nameIs(n, "title")) {
                if (result->title.empty()) result->title = collapseSpaces(nodeText(n));
                continue;
            }
            if (nameIs(n, "meta")) {
                const std::string name = attribute(n, "name");
                if ((name == "author" || name == "Author") && result->author.empty())
                    result->author = attribute(n, "content");
                continue;
            }
            if (nameIs(n, "head")) {
                walk(n->children);   // only title/meta contribute; text in head is ignored below
                continue;
            }
            const std::string name = n->name ? reinterpret_cast<const char*>(n->name) : "";
            const bool block = blockElements().count(name) > 0;
            const bool heading = name.size() == 2 && (name[0] == 'h' || name[0] == 'H') && name[1] >= '1' && name[1] <= '6';
            if (name == "br") {
                breakLines(1);
                continue;
            }
            if (block) breakLines(heading || name == "p" ? 2 : 1);
            if (heading) {
                const std::string h = collapseSpaces(nodeText(n));
                if (!h.empty()) headings.push_back(h);
            }
            if (name == "pre") ++preDepth;
            if (name == "td" || name == "th") text(" ");
            if (name == "li") out += "- ";
            walk(n->children);
            if (name == "pre") --preDepth;
            if (block) breakLines(heading || name == "p" ? 2 : 1);
        }
    }
};

}  // namespace

HtmlText htmlToText(std::string_view html) {
    ensureXmlInitialised();
    HtmlText result;
    // RECOVER: real pages are rarely valid. NONET: never fetch DTDs or entities from the network.
    htmlDocPtr doc = htmlReadMemory(html.data(), static_cast<int>(std::min<size_t>(html.size(), INT_MAX)),
                                    nullptr, nullptr,
                                    HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING |
                                        HTML_PARSE_NONET | HTML_PARSE_NOBLANKS | HTML_PARSE_COMPACT);
    if (!doc) return result;
    Walker w;
    w.result = &result;
    w.walk(xmlDocGetRootElement(doc));
    xmlFreeDoc(doc);
    // libxml2 hands out UTF-8, but a page that lies about its charset can still yield invalid bytes.
    std::string text;
    if (isValidUtf8(w.out)) text = std::move(w.out);
    else repairUtf8(w.out, text);
    result.text = normalizeText(text);
    result.boundaries = locateHeadings(result.text, w.headings);
    return result;
}

Result<Extraction> extractHtml(const std::filesystem::path& path, std::string_view bytes) {
    HtmlText h = htmlToText(bytes);
    if (h.text.empty()) return invalidArgument("no text in the HTML page");
    ExtractedDocument doc;
    doc.kind = "html";
    doc.title = h.title.empty() ? (h.boundaries.empty() ? path.stem().string() : h.boundaries.front().label) : h.title;
    doc.author = h.author;
    doc.text = std::move(h.text);
    doc.boundaries = std::move(h.boundaries);
    Extraction ex;
    ex.documents.push_back(std::move(doc));
    return ex;
}

}  // namespace msa::catalog

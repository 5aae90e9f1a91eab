// importer_docx.cpp: Office Open XML word-processing documents: the zip is read with libzip
// (bounded inflation), word/document.xml and docProps/core.xml with libxml2 (no network, no
// external entities). Paragraphs become blank-line-separated text; Heading/Title styles become
// section boundaries.
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"
#include "core/catalog/xml_util.h"
#include "core/catalog/zip_util.h"

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace msa::catalog {
namespace {

bool localIs(const xmlNode* n, const char* name) {
    return n->type == XML_ELEMENT_NODE && n->name && std::strcmp(reinterpret_cast<const char*>(n->name), name) == 0;
}

struct DocxWalker {
    std::string out;
    std::string paragraph;
    bool paragraphIsHeading = false;
    std::vector<std::string> headings;

    void walk(const xmlNode* node) {
        for (const xmlNode* n = node; n; n = n->next) {
            if (n->type != XML_ELEMENT_NODE) continue;
            if (localIs(n, "p")) {
                paragraph.clear();
                paragraphIsHeading = false;
                walk(n->children);
                const std::string p = collapseSpaces(paragraph);
                if (!p.empty()) {
                    if (!out.empty()) out += "\n\n";
                    out += paragraph;
                    if (paragraphIsHeading) headings.push_back(p);
                }
                continue;
            }
            if (localIs(n, "pStyle")) {
                const std::string style = attribute(n, "val");
                if (style.rfind("Heading", 0) == 0 || style == "Title" || style.rfind("heading", 0) == 0)
                    paragraphIsHeading = true;
                continue;
            }
            if (localIs(n, "t")) {
                paragraph += nodeText(n);
                continue;
            }
            if (localIs(n, "tab")) {
                paragraph += '\t';
                continue;
            }
            if (localIs(n, "br") || localIs(n, "cr")) {
                paragraph += '\n';
                continue;
            }
            // Deleted revisions and instruction text are not part of the visible document.
            if (localIs(n, "del") || localIs(n, "instrText") || localIs(n, "delText")) continue;
            walk(n->children);
        }
    }
};

xmlDocPtr parseXml(const std::string& xml) {
    return xmlReadMemory(xml.data(), static_cast<int>(std::min<size_t>(xml.size(), INT_MAX)), nullptr, nullptr,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

}  // namespace

Result<Extraction> extractDocx(const std::filesystem::path& path, std::string_view bytes, const ImportLimits& limits) {
    ensureXmlInitialised();
    MSA_ASSIGN_OR_RETURN(ZipReader zip, ZipReader::open(bytes, limits.maxZipEntries));
    Result<std::string> body = zip.read("word/document.xml", limits.maxUncompressedBytes);
    if (!body) {
        if (body.status().code() == ErrorCode::NotFound) return corrupt("not a Word document: no word/document.xml");
        return body.status();
    }
    xmlDocPtr doc = parseXml(*body);
    if (!doc) return corrupt("malformed word/document.xml");
    DocxWalker w;
    w.walk(xmlDocGetRootElement(doc));
    xmlFreeDoc(doc);

    ExtractedDocument out;
    out.kind = "docx";
    std::string text;
    if (isValidUtf8(w.out)) text = std::move(w.out);
    else repairUtf8(w.out, text);
    out.text = normalizeText(text);
    if (out.text.empty()) return invalidArgument("no text in the Word document");
    out.boundaries = locateHeadings(out.text, w.headings);

    if (Result<std::string> core = zip.read("docProps/core.xml", 1 << 20); core) {
        if (xmlDocPtr props = parseXml(*core)) {
            for (const xmlNode* n = xmlDocGetRootElement(props) ? xmlDocGetRootElement(props)->children : nullptr; n;
                 n = n->next) {
                if (localIs(n, "title")) out.title = collapseSpaces(nodeText(n));
                else if (localIs(n, "creator")) out.author = collapseSpaces(nodeText(n));
                else if (localIs(n, "created")) out.dateUnix = parseDate(nodeText(n));
            }
            xmlFreeDoc(props);
        }
    }
    if (out.title.empty()) out.title = w.headings.empty() ? path.stem().string() : w.headings.front();
    Extraction ex;
    ex.documents.push_back(std::move(out));
    return ex;
}

}  // namespace msa::catalog

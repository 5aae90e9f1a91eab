// xml_util.h: small libxml2 helpers shared by the HTML and DOCX importers (internal to core/catalog).
// Thread affinity: after ensureXmlInitialised() (idempotent, thread-safe) libxml2 parsing is
// thread-safe for separate documents.
#pragma once

#include "core/catalog/importer.h"

#include <string>
#include <string_view>
#include <vector>

struct _xmlNode;

namespace msa::catalog {

void ensureXmlInitialised();
std::string nodeText(const _xmlNode* node);          // concatenated text of a subtree
std::string attribute(const _xmlNode* node, const char* name);
std::string collapseSpaces(std::string_view s);      // trims and folds whitespace runs to one space
// Finds each heading, in order, in the normalised text and returns boundaries at the start of the
// line holding it (headings not found are dropped).
std::vector<Boundary> locateHeadings(const std::string& text, const std::vector<std::string>& headings);

}  // namespace msa::catalog

// segmenter.h: cutting a document into memory documents (routing units, DESIGN.md §3 step 2).
//
// Rule: a document whose text fits the token budget is one memory document of the importer's unit
// kind ("whole", "email", "chat-day", "conversation"). A longer one is cut into parts of at most the
// budget, each of the importer's split kind ("section", "pages", "chat-day-part",
// "conversation-part"); a cut prefers, in order: the last importer boundary in the window (a heading
// anywhere after the part's start; a page or message start only in the window's last three
// quarters), then a blank line or line break or space in the window's second half, and
// finally a UTF-8 character boundary. Every part records its byte span in the document text and a
// label (the heading/page/time at its start, and at its end when different), so a routing decision
// can always be traced to a passage.
//
// Token counts are estimated as bytes / bytesPerToken (4 by default) until a model's tokenizer
// fills memory_documents.token_count.
//
// Thread affinity: pure function (called on the import's worker threads).
//
// Usage:
//     for (const Segment& s : segmentDocument(doc, limits)) store(s.kind, s.start, s.end, s.label);
#pragma once

#include "core/catalog/importer.h"

#include <string>
#include <vector>

namespace msa::catalog {

struct Segment {
    std::string kind;
    size_t start = 0;
    size_t end = 0;   // exclusive
    std::string label;
    int64_t tokenEstimate = 0;
};

std::vector<Segment> segmentDocument(const ExtractedDocument& doc, const ImportLimits& limits);

}  // namespace msa::catalog

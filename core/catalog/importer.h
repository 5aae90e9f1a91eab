// importer.h: turning one file into documents plus metadata (DESIGN.md §3 step 1).
//
// detectFileType() picks an importer from the extension and the first bytes (magic numbers, mail
// headers, chat-export line patterns, JSON shapes); extractFile() runs it. Every importer returns
// either the documents of the file or a Status whose code and message say why not (Corrupt for a
// malformed PDF/zip, PermissionDenied for a password-protected PDF, Unsupported for a binary file
// of unknown type, ...); none throws and none crashes on hostile input.
//
// Importers and the libraries they use are listed in core/catalog/README.md.
//
// Thread affinity: extractFile() is thread-safe and is called from the import pipeline's worker
// threads; it touches no catalog state.
//
// Usage:
//     Detection det = detectFileType(path, head);
//     MSA_ASSIGN_OR_RETURN(Extraction ex, extractFile(path, det, bytes, limits, &cancel));
#pragma once

#include "core/util/progress.h"
#include "core/util/status.h"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace msa::catalog {

enum class FileType { Unknown, Text, Markdown, Html, Pdf, Docx, Email, Mbox, WhatsApp, SlackZip, Telegram, ChatGpt, Code };

// Stable importer name stored in source_files.importer ("text", "pdf", "mbox", ...).
std::string_view fileTypeName(FileType type);

struct Detection {
    FileType type = FileType::Unknown;
    std::string language;   // for Code: "cpp", "python", ...
    std::string reason;     // for Unknown: why it is skipped
};

// `head` is the first few KiB of the file (may be shorter or empty).
Detection detectFileType(const std::filesystem::path& path, std::string_view head);

struct ImportLimits {
    // Files larger than this are skipped with a reason and never read (hashing streams, but
    // extraction needs the bytes in memory). 256 MiB covers books, mailboxes and chat exports.
    uint64_t maxFileBytes = 256ull << 20;
    // Zip members (DOCX, Slack) larger than this uncompressed are refused (zip bombs).
    uint64_t maxUncompressedBytes = 512ull << 20;
    int maxZipEntries = 100000;
    int tokenBudget = 2048;            // memory-document size bound
    double bytesPerToken = 4.0;        // token estimate until a model's tokenizer counts
};

// A preferred split point inside a document's text, for segmentation (a heading, a page start).
struct Boundary {
    size_t offset = 0;
    std::string label;   // "Chapter 3 > A Ball", "page 12"
};

struct ExtractedDocument {
    std::string kind;                    // document kind: text, markdown, html, pdf, docx, email, chat, code
    std::string title;
    std::string author;
    std::vector<std::string> participants;
    std::optional<int64_t> dateUnix;
    nlohmann::json metadata = nlohmann::json::object();
    std::string text;                    // normalised UTF-8
    std::string locator;                 // where in the file ("message 3", "#general 2016-01-14")
    std::string unitKind = "whole";      // segment kind when the document fits in one memory document
    std::string splitKind = "section";   // segment kind of the parts when it does not ("section", "pages")
    std::vector<Boundary> boundaries;    // sorted by offset
};

struct Extraction {
    std::vector<ExtractedDocument> documents;
    std::vector<std::string> warnings;   // e.g. "invalid UTF-8: 3 sequences replaced"
    std::string language;                // Code only
};

// Runs the importer for `det.type` on the file's bytes. `path` names the file in messages and
// provides a fallback title. Failure codes: Unsupported (unknown/binary type, unsupported variant),
// Corrupt (malformed PDF/zip/JSON/XML), PermissionDenied (password-protected PDF), InvalidArgument
// (empty or no extractable text), Cancelled.
Result<Extraction> extractFile(const std::filesystem::path& path, const Detection& det, std::string_view bytes,
                               const ImportLimits& limits, const CancelToken* cancel);

// Individual importers (also used by tests and by each other: e-mail uses htmlToText).
Result<Extraction> extractPlainText(const std::filesystem::path& path, std::string_view bytes);
Result<Extraction> extractMarkdown(const std::filesystem::path& path, std::string_view bytes);
Result<Extraction> extractCode(const std::filesystem::path& path, std::string_view bytes, const std::string& language);
Result<Extraction> extractHtml(const std::filesystem::path& path, std::string_view bytes);
Result<Extraction> extractPdf(const std::filesystem::path& path, std::string_view bytes, const CancelToken* cancel);
Result<Extraction> extractDocx(const std::filesystem::path& path, std::string_view bytes, const ImportLimits& limits);
Result<Extraction> extractEmail(const std::filesystem::path& path, std::string_view bytes, bool mbox,
                                const CancelToken* cancel);
Result<Extraction> extractWhatsApp(const std::filesystem::path& path, std::string_view bytes);
Result<Extraction> extractSlackZip(const std::filesystem::path& path, std::string_view bytes,
                                   const ImportLimits& limits, const CancelToken* cancel);
Result<Extraction> extractTelegram(const std::filesystem::path& path, std::string_view bytes);
Result<Extraction> extractChatGpt(const std::filesystem::path& path, std::string_view bytes);

struct HtmlText {
    std::string title;
    std::string text;
    std::string author;
    std::vector<Boundary> boundaries;   // headings
};
// HTML to plain text with libxml2's HTML parser: script/style/noscript/template dropped, entities
// decoded, block elements become line breaks. Never fails (libxml2 recovers), may return empty text.
HtmlText htmlToText(std::string_view html);

// Parses dates met in metadata ("2024-03-01", "2024-03-01T10:00:00Z", "2024-03-01 10:00",
// RFC 2822 "Fri, 01 Mar 2024 10:00:00 +0100") into Unix seconds; nullopt when unparseable.
std::optional<int64_t> parseDate(std::string_view text);
// "YYYY-MM-DD" in UTC.
std::string formatDay(int64_t unixSeconds);
int64_t daysFromCivil(int64_t y, unsigned m, unsigned d);

}  // namespace msa::catalog

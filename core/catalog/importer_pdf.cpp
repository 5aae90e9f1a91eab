// importer_pdf.cpp: PDF text per page through poppler-cpp. Password-protected, empty, truncated
// and malformed files become Statuses (poppler-cpp reports them as a null document or a locked one;
// it does not throw). poppler's own error chatter is routed to our debug log.
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"
#include "core/util/log.h"

#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>

#include <climits>
#include <memory>
#include <mutex>

namespace msa::catalog {
namespace {

void popplerToLog(const std::string& message, void*) { MSA_LOG(Debug) << "poppler: " << message; }

std::string toUtf8(const poppler::ustring& s) {
    const poppler::byte_array bytes = s.to_utf8();
    std::string out(bytes.begin(), bytes.end());
    // Strip a trailing NUL some versions include.
    while (!out.empty() && out.back() == '\0') out.pop_back();
    return out;
}

}  // namespace

Result<Extraction> extractPdf(const std::filesystem::path& path, std::string_view bytes, const CancelToken* cancel) {
    static std::once_flag once;
    std::call_once(once, [] { poppler::set_debug_error_function(popplerToLog, nullptr); });
    if (bytes.size() < 8 || bytes.substr(0, 5) != "%PDF-")
        return corrupt("not a PDF file (no %PDF- header)");
    if (bytes.size() > static_cast<size_t>(INT_MAX)) return unsupported("PDF larger than 2 GiB");
    std::unique_ptr<poppler::document> doc(
        poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
    if (!doc) return corrupt("malformed PDF: poppler could not open it");
    if (doc->is_locked()) return Status(ErrorCode::PermissionDenied, "password-protected PDF (no password given)");

    ExtractedDocument out;
    out.kind = "pdf";
    out.splitKind = "pages";
    const int nPages = doc->pages();
    if (nPages <= 0) return corrupt("malformed PDF: no pages");
    size_t nEmptyPages = 0;
    for (int i = 0; i < nPages; ++i) {
        if (cancel && cancel->isCancelled()) return cancelled();
        std::unique_ptr<poppler::page> page(doc->create_page(i));
        if (!page) {
            ++nEmptyPages;
            continue;
        }
        std::string raw = toUtf8(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout));
        std::string fixed;
        if (!isValidUtf8(raw)) {
            repairUtf8(raw, fixed);
            raw.swap(fixed);
        }
        const std::string text = normalizeText(raw);
        if (text.empty()) {
            ++nEmptyPages;
            continue;
        }
        if (!out.text.empty()) out.text += "\n\n";
        out.boundaries.push_back({out.text.size(), "page " + std::to_string(i + 1)});
        out.text += text;
    }
    if (out.text.empty())
        return invalidArgument("no extractable text in " + std::to_string(nPages) +
                               " page(s) (a scanned or image-only PDF?)");
    out.title = normalizeText(toUtf8(doc->get_title()));
    if (out.title.empty() || out.title.find('\n') != std::string::npos) out.title = path.stem().string();
    out.author = normalizeText(toUtf8(doc->get_author()));
    const time_t created = doc->get_creation_date_t();
    if (created != static_cast<time_t>(-1) && created > 0) out.dateUnix = static_cast<int64_t>(created);
    out.metadata["pages"] = nPages;
    out.metadata["pages_without_text"] = static_cast<int64_t>(nEmptyPages);
    Extraction ex;
    if (nEmptyPages) ex.warnings.push_back(std::to_string(nEmptyPages) + " page(s) without extractable text");
    ex.documents.push_back(std::move(out));
    return ex;
}

}  // namespace msa::catalog

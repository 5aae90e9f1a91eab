// detect.cpp: file type detection (extension + content sniffing) and the importer dispatcher.
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"

#include <algorithm>
#include <cctype>
#include <regex>
#include <unordered_map>

namespace msa::catalog {
namespace {

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

const std::unordered_map<std::string, std::string>& codeLanguages() {
    static const std::unordered_map<std::string, std::string> m = {
        {".c", "c"}, {".h", "c"}, {".cc", "cpp"}, {".cpp", "cpp"}, {".cxx", "cpp"}, {".hpp", "cpp"},
        {".hh", "cpp"}, {".cu", "cuda"}, {".cuh", "cuda"}, {".py", "python"}, {".rs", "rust"}, {".go", "go"},
        {".java", "java"}, {".kt", "kotlin"}, {".js", "javascript"}, {".mjs", "javascript"},
        {".ts", "typescript"}, {".tsx", "typescript"}, {".jsx", "javascript"}, {".rb", "ruby"},
        {".php", "php"}, {".cs", "csharp"}, {".swift", "swift"}, {".scala", "scala"}, {".sh", "shell"},
        {".bash", "shell"}, {".zsh", "shell"}, {".pl", "perl"}, {".lua", "lua"}, {".r", "r"},
        {".sql", "sql"}, {".css", "css"}, {".scss", "scss"}, {".json", "json"}, {".yaml", "yaml"},
        {".yml", "yaml"}, {".toml", "toml"}, {".xml", "xml"}, {".cmake", "cmake"}, {".el", "elisp"},
        {".hs", "haskell"}, {".ml", "ocaml"}, {".ex", "elixir"}, {".erl", "erlang"}, {".clj", "clojure"},
        {".dart", "dart"}, {".m", "objc"}, {".mm", "objcpp"}, {".f90", "fortran"}, {".jl", "julia"},
        {".vim", "vim"}, {".ps1", "powershell"}, {".bat", "batch"}, {".ini", "ini"}, {".proto", "protobuf"},
        {".tex", "latex"}, {".qml", "qml"}, {".ui", "xml"}};
    return m;
}

bool looksLikeWhatsApp(std::string_view head) {
    // The first non-empty line starts with a timestamp and has " - " or "] " before the sender.
    static const std::regex line(
        R"(^(?:\xE2\x80\x8E)?\[?\d{1,4}[./-]\d{1,2}[./-]\d{2,4},?\s+\d{1,2}:\d{2}(:\d{2})?(\s?[AaPp]\.?[Mm]\.?)?\]?\s*(-\s)?.+)");
    size_t start = 0;
    int nMatched = 0, nLines = 0;
    while (start < head.size() && nLines < 5) {
        size_t end = head.find('\n', start);
        if (end == std::string_view::npos) break;   // the last line may be cut by the head limit
        std::string l(head.substr(start, end - start));
        start = end + 1;
        if (!l.empty() && l.back() == '\r') l.pop_back();
        if (l.empty()) continue;
        ++nLines;
        if (l.size() > 120) l.resize(120);   // bounded: std::regex recurses per character
        if (std::regex_search(l, line)) ++nMatched;
    }
    return nMatched > 0 && nMatched * 2 >= nLines;
}

bool looksLikeMailHeaders(std::string_view head) {
    // RFC 5322 header block: several "Name: value" lines before the first blank line, with a From/Date.
    int nHeaders = 0;
    bool hasKey = false;
    size_t start = 0;
    while (start < head.size()) {
        size_t end = head.find('\n', start);
        std::string_view l = head.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
        if (l.empty()) break;
        if (l[0] == ' ' || l[0] == '\t') {
        } else {
            const size_t colon = l.find(':');
            if (colon == std::string_view::npos || colon == 0) return false;
            for (size_t i = 0; i < colon; ++i)
                if (!(std::isalnum(static_cast<unsigned char>(l[i])) || l[i] == '-')) return false;
            const std::string name = lower(std::string(l.substr(0, colon)));
            if (name == "from" || name == "date" || name == "message-id" || name == "received" || name == "subject")
                hasKey = true;
            ++nHeaders;
        }
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return hasKey && nHeaders >= 2;
}

}  // namespace

std::string_view fileTypeName(FileType type) {
    switch (type) {
        case FileType::Unknown: return "unknown";
        case FileType::Text: return "text";
        case FileType::Markdown: return "markdown";
        case FileType::Html: return "html";
        case FileType::Pdf: return "pdf";
        case FileType::Docx: return "docx";
        case FileType::Email: return "email";
        case FileType::Mbox: return "mbox";
        case FileType::WhatsApp: return "whatsapp";
        case FileType::SlackZip: return "slack";
        case FileType::Telegram: return "telegram";
        case FileType::ChatGpt: return "chatgpt";
        case FileType::Code: return "code";
    }
    return "unknown";
}

Detection detectFileType(const std::filesystem::path& path, std::string_view head) {
    Detection d;
    const std::string ext = lower(path.extension().string());
    const std::string name = lower(path.filename().string());

    // Magic numbers first: the content wins over a misleading extension.
    if (startsWith(head, "%PDF-")) return {FileType::Pdf, {}, {}};
    if (startsWith(head, "PK\x03\x04") || startsWith(head, "PK\x05\x06")) {
        if (ext == ".docx") return {FileType::Docx, {}, {}};
        if (ext == ".zip") return {FileType::SlackZip, {}, {}};   // verified inside: channels.json/users.json
        d.reason = "zip archive of an unsupported kind (" + (ext.empty() ? std::string("no extension") : ext) + ")";
        return d;
    }
    if (ext == ".pdf") return {FileType::Pdf, {}, {}};   // e.g. an empty or truncated PDF: the importer reports it
    if (ext == ".docx") return {FileType::Docx, {}, {}};
    if (ext == ".zip") return {FileType::SlackZip, {}, {}};
    if (ext == ".mbox" || ext == ".mbx" || (startsWith(head, "From ") && looksLikeMailHeaders(
                                                 head.substr(std::min(head.find('\n') + 1, head.size())))))
        return {FileType::Mbox, {}, {}};
    if (ext == ".eml") return {FileType::Email, {}, {}};
    if (looksBinary(head)) {
        d.reason = "binary file of unknown type";
        return d;
    }
    if (ext == ".md" || ext == ".markdown" || ext == ".mdown" || ext == ".mkd") return {FileType::Markdown, {}, {}};
    if (ext == ".html" || ext == ".htm" || ext == ".xhtml") return {FileType::Html, {}, {}};
    if (ext == ".json") {
        if (name == "conversations.json") return {FileType::ChatGpt, {}, {}};
        if (name == "result.json") return {FileType::Telegram, {}, {}};
    }
    if (ext == ".txt" && looksLikeWhatsApp(head)) return {FileType::WhatsApp, {}, {}};
    if (ext == ".txt" || ext == ".text" || ext == ".rst" || ext == ".org" || ext == ".log" || ext == ".csv" ||
        ext == ".tsv" || name == "readme" || name == "license" || name == "copying")
        return {FileType::Text, {}, {}};
    if (auto it = codeLanguages().find(ext); it != codeLanguages().end()) return {FileType::Code, it->second, {}};
    if (name == "makefile" || name == "cmakelists.txt" || name == "dockerfile")
        return {FileType::Code, name == "makefile" ? "make" : name == "dockerfile" ? "dockerfile" : "cmake", {}};
    if (ext.empty() && startsWith(head, "#!")) return {FileType::Code, "shell", {}};
    if (ext.empty() && looksLikeMailHeaders(head)) return {FileType::Email, {}, {}};
    if (ext.empty() && !head.empty()) return {FileType::Text, {}, {}};   // extension-less notes
    d.reason = head.empty() ? "empty file" : "unknown file type '" + ext + "'";
    return d;
}

Result<Extraction> extractFile(const std::filesystem::path& path, const Detection& det, std::string_view bytes,
                               const ImportLimits& limits, const CancelToken* cancel) {
    if (bytes.empty()) return invalidArgument("empty file (0 bytes)");
    switch (det.type) {
        case FileType::Text: return extractPlainText(path, bytes);
        case FileType::Markdown: return extractMarkdown(path, bytes);
        case FileType::Code: return extractCode(path, bytes, det.language);
        case FileType::Html: return extractHtml(path, bytes);
        case FileType::Pdf: return extractPdf(path, bytes, cancel);
        case FileType::Docx: return extractDocx(path, bytes, limits);
        case FileType::Email: return extractEmail(path, bytes, false, cancel);
        case FileType::Mbox: return extractEmail(path, bytes, true, cancel);
        case FileType::WhatsApp: return extractWhatsApp(path, bytes);
        case FileType::SlackZip: return extractSlackZip(path, bytes, limits, cancel);
        case FileType::Telegram: return extractTelegram(path, bytes);
        case FileType::ChatGpt: return extractChatGpt(path, bytes);
        case FileType::Unknown: break;
    }
    return unsupported(det.reason.empty() ? std::string("unknown file type") : det.reason);
}

}  // namespace msa::catalog

// importer_email.cpp: RFC 5322 / MIME messages (.eml) and mailboxes (.mbox) through GMime 3
// (multipart, quoted-printable/base64, RFC 2047 headers, charsets via iconv). One document per
// message with from/to/cc/date/subject; thread ids from References/In-Reply-To/Message-ID. glib and
// GMime types stay inside this file (no public header mentions them).
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"

#include <gmime/gmime.h>

#include <algorithm>
#include <mutex>

namespace msa::catalog {
namespace {

struct GFreeString {
    char* p = nullptr;
    ~GFreeString() { g_free(p); }
    std::string str() const { return p ? std::string(p) : std::string(); }
};

template <typename T>
struct GRef {
    T* p = nullptr;
    explicit GRef(T* q) : p(q) {}
    ~GRef() {
        if (p) g_object_unref(p);
    }
    GRef(const GRef&) = delete;
    GRef& operator=(const GRef&) = delete;
};

std::string cleanUtf8(std::string_view s) {
    if (isValidUtf8(s)) return std::string(s);
    std::string out;
    repairUtf8(s, out);
    return out;
}

void collectAddresses(InternetAddressList* list, std::vector<std::string>& out) {
    if (!list) return;
    const int n = internet_address_list_length(list);
    for (int i = 0; i < n; ++i) {
        InternetAddress* ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            collectAddresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), out);
            continue;
        }
        const char* name = internet_address_get_name(ia);
        const char* addr = INTERNET_ADDRESS_IS_MAILBOX(ia) ? internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)) : nullptr;
        std::string s;
        if (name && *name) s = name;
        if (addr && *addr) s += s.empty() ? std::string(addr) : " <" + std::string(addr) + ">";
        if (!s.empty()) out.push_back(cleanUtf8(s));
    }
}

std::string listToString(InternetAddressList* list) {
    if (!list || internet_address_list_length(list) == 0) return {};
    GFreeString s{internet_address_list_to_string(list, nullptr, FALSE)};
    return cleanUtf8(s.str());
}

struct Body {
    std::string plain;
    std::string html;
    std::vector<std::string> attachments;
};

void collectBody(GMimeObject* part, Body& body, int depth) {
    if (!part || depth > 32) return;   // hostile nesting
    if (GMIME_IS_MULTIPART(part)) {
        GMimeMultipart* mp = GMIME_MULTIPART(part);
        const int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; ++i) collectBody(g_mime_multipart_get_part(mp, i), body, depth + 1);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(part)) {
        // A forwarded/attached message: keep its subject as an attachment name, not its body.
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
        const char* subject = inner ? g_mime_message_get_subject(inner) : nullptr;
        body.attachments.push_back("message: " + cleanUtf8(subject ? subject : "(no subject)"));
        return;
    }
    if (!GMIME_IS_PART(part)) return;
    GMimePart* p = GMIME_PART(part);
    GMimeContentType* ct = g_mime_object_get_content_type(part);
    const bool attachment = g_mime_part_is_attachment(p);
    if (!attachment && GMIME_IS_TEXT_PART(part) && ct) {
        const bool plain = g_mime_content_type_is_type(ct, "text", "plain");
        const bool html = g_mime_content_type_is_type(ct, "text", "html");
        if (plain || html) {
            GFreeString text{g_mime_text_part_get_text(GMIME_TEXT_PART(part))};
            std::string t = cleanUtf8(text.str());
            std::string& dest = plain ? body.plain : body.html;
            if (!dest.empty() && !t.empty()) dest += "\n\n";
            dest += t;
            return;
        }
    }
    const char* filename = g_mime_part_get_filename(p);
    GFreeString mime{ct ? g_mime_content_type_get_mime_type(ct) : nullptr};
    body.attachments.push_back(cleanUtf8(filename ? filename : mime.str()));
}

ExtractedDocument messageToDocument(GMimeMessage* msg) {
    ExtractedDocument doc;
    doc.kind = "email";
    doc.unitKind = "email";
    const char* subject = g_mime_message_get_subject(msg);
    doc.title = cleanUtf8(subject && *subject ? subject : "(no subject)");

    std::vector<std::string> from, to, cc;
    collectAddresses(g_mime_message_get_from(msg), from);
    collectAddresses(g_mime_message_get_to(msg), to);
    collectAddresses(g_mime_message_get_cc(msg), cc);
    doc.author = from.empty() ? std::string() : from.front();
    for (auto* list : {&from, &to, &cc})
        for (const std::string& a : *list)
            if (std::find(doc.participants.begin(), doc.participants.end(), a) == doc.participants.end())
                doc.participants.push_back(a);

    std::string dateText;
    if (GDateTime* dt = g_mime_message_get_date(msg)) {
        doc.dateUnix = g_date_time_to_unix(dt);
        GFreeString iso{g_date_time_format_iso8601(dt)};
        dateText = iso.str();
    }

    const char* mid = g_mime_message_get_message_id(msg);
    const std::string messageId = mid ? cleanUtf8(mid) : std::string();
    std::string inReplyTo;
    std::vector<std::string> references;
    if (const char* irt = g_mime_object_get_header(GMIME_OBJECT(msg), "In-Reply-To")) {
        if (GMimeReferences* refs = g_mime_references_parse(nullptr, irt)) {
            if (g_mime_references_length(refs) > 0) inReplyTo = cleanUtf8(g_mime_references_get_message_id(refs, 0));
            g_mime_references_free(refs);
        }
    }
    if (const char* r = g_mime_object_get_header(GMIME_OBJECT(msg), "References")) {
        if (GMimeReferences* refs = g_mime_references_parse(nullptr, r)) {
            const int n = g_mime_references_length(refs);
            for (int i = 0; i < n; ++i) references.push_back(cleanUtf8(g_mime_references_get_message_id(refs, i)));
            g_mime_references_free(refs);
        }
    }
    const std::string threadId = !references.empty() ? references.front() : !inReplyTo.empty() ? inReplyTo : messageId;

    Body body;
    collectBody(g_mime_message_get_mime_part(msg), body, 0);
    std::string bodyText = !body.plain.empty() ? normalizeText(body.plain) : htmlToText(body.html).text;

    // The routing unit carries its own header lines so the model sees who wrote to whom and when.
    std::string text = "From: " + listToString(g_mime_message_get_from(msg)) + "\n";
    if (!to.empty()) text += "To: " + listToString(g_mime_message_get_to(msg)) + "\n";
    if (!cc.empty()) text += "Cc: " + listToString(g_mime_message_get_cc(msg)) + "\n";
    if (!dateText.empty()) text += "Date: " + dateText + "\n";
    text += "Subject: " + doc.title + "\n";
    if (!body.attachments.empty()) {
        text += "Attachments:";
        for (const std::string& a : body.attachments) text += " " + a + ";";
        text.pop_back();
        text += "\n";
    }
    text += "\n" + bodyText;
    doc.text = normalizeText(text);

    doc.metadata["message_id"] = messageId;
    doc.metadata["in_reply_to"] = inReplyTo;
    doc.metadata["references"] = references;
    doc.metadata["thread_id"] = threadId;
    doc.metadata["from"] = from;
    doc.metadata["to"] = to;
    doc.metadata["cc"] = cc;
    doc.metadata["attachments"] = body.attachments;
    if (!dateText.empty()) doc.metadata["date"] = dateText;
    return doc;
}

}  // namespace

Result<Extraction> extractEmail(const std::filesystem::path& path, std::string_view bytes, bool mbox,
                                const CancelToken* cancel) {
    static std::once_flag once;
    std::call_once(once, [] { g_mime_init(); });
    (void)path;
    GRef<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(bytes.data(), bytes.size()));
    GRef<GMimeParser> parser(g_mime_parser_new_with_stream(stream.p));
    g_mime_parser_set_format(parser.p, mbox ? GMIME_FORMAT_MBOX : GMIME_FORMAT_MESSAGE);
    Extraction ex;
    int index = 0;
    while (!g_mime_parser_eos(parser.p)) {
        if (cancel && cancel->isCancelled()) return cancelled();
        GRef<GMimeMessage> msg(g_mime_parser_construct_message(parser.p, nullptr));
        if (!msg.p) {
            if (ex.documents.empty())
                return corrupt(mbox ? "not an mbox mailbox (no \"From \" separator line)" : "not a MIME message");
            ex.warnings.push_back("mailbox ends with unparseable data after message " + std::to_string(index));
            break;
        }
        ++index;
        ExtractedDocument doc = messageToDocument(msg.p);
        doc.locator = mbox ? "message " + std::to_string(index) : std::string();
        if (mbox) doc.metadata["mbox_index"] = index;
        ex.documents.push_back(std::move(doc));
        if (!mbox) break;
    }
    if (ex.documents.empty()) return invalidArgument(mbox ? "empty mailbox" : "no message");
    return ex;
}

}  // namespace msa::catalog

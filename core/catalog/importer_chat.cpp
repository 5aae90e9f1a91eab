// importer_chat.cpp: chat exports. WhatsApp "export chat" .txt, Slack workspace export .zip,
// Telegram Desktop result.json and ChatGPT conversations.json. WhatsApp, Slack and Telegram chats
// become one document per chat and day (the routing unit "chat-day"); a ChatGPT conversation is one
// document (unit "conversation", split at message boundaries when longer than the token budget).
// Sender names and timestamps are kept in every line ("HH:MM Name: text").
//
// Timestamps without a zone (WhatsApp, Telegram "date") are taken as UTC: the export does not say
// which zone the phone was in, and a consistent reading matters more than a guessed offset.
#include "core/catalog/importer.h"
#include "core/catalog/text_decode.h"
#include "core/catalog/zip_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <regex>
#include <set>
#include <unordered_map>

namespace msa::catalog {
namespace {

struct ChatMessage {
    int64_t time = 0;
    std::string sender;   // empty for system lines
    std::string text;
};

std::string hhmm(int64_t t) {
    const int64_t s = ((t % 86400) + 86400) % 86400;
    char buf[16];
    std::snprintf(buf, sizeof buf, "%02d:%02d", static_cast<int>(s / 3600), static_cast<int>(s / 60 % 60));
    return buf;
}

std::string clean(std::string_view s) {
    if (isValidUtf8(s)) return std::string(s);
    std::string out;
    repairUtf8(s, out);
    return out;
}

// One chat-day document from the messages of one day (in time order).
void appendChatDocument(const std::string& platform, const std::string& chat, const std::string& dayText,
                        const std::vector<ChatMessage>& messages, Extraction& ex) {
    if (messages.empty()) return;
    ExtractedDocument doc;
    doc.kind = "chat";
    doc.unitKind = "chat-day";
    doc.splitKind = "chat-day-part";
    doc.title = chat + " " + dayText;
    doc.locator = chat + " " + dayText;
    doc.dateUnix = messages.front().time;
    std::string text;
    for (const ChatMessage& m : messages) {
        if (!m.sender.empty() &&
            std::find(doc.participants.begin(), doc.participants.end(), m.sender) == doc.participants.end())
            doc.participants.push_back(m.sender);
        doc.boundaries.push_back({text.size(), hhmm(m.time)});
        text += hhmm(m.time) + " " + (m.sender.empty() ? std::string() : m.sender + ": ") + m.text + "\n";
    }
    // Lines were built normalised except for the message bodies; when normalising changes more
    // than the final line break (CRs or blank lines inside a message), the boundaries are dropped
    // and the segmenter falls back to line breaks.
    std::string norm = normalizeText(text);
    if (norm.size() + 1 != text.size() || text.compare(0, norm.size(), norm) != 0) doc.boundaries.clear();
    doc.text = std::move(norm);
    if (doc.text.empty()) return;
    doc.metadata["platform"] = platform;
    doc.metadata["chat"] = chat;
    doc.metadata["day"] = dayText;
    doc.metadata["messages"] = static_cast<int64_t>(messages.size());
    ex.documents.push_back(std::move(doc));
}

int64_t dayOf(int64_t t) { return t >= 0 ? t / 86400 : (t - 86399) / 86400; }

// Groups messages (any order) into one document per UTC day.
void appendChatDays(const std::string& platform, const std::string& chat, std::vector<ChatMessage> messages,
                    Extraction& ex) {
    std::stable_sort(messages.begin(), messages.end(),
                     [](const ChatMessage& a, const ChatMessage& b) { return a.time < b.time; });
    size_t i = 0;
    while (i < messages.size()) {
        const int64_t day = dayOf(messages[i].time);
        size_t j = i;
        while (j < messages.size() && dayOf(messages[j].time) == day) ++j;
        appendChatDocument(platform, chat, formatDay(day * 86400),
                           std::vector<ChatMessage>(messages.begin() + static_cast<ptrdiff_t>(i),
                                                    messages.begin() + static_cast<ptrdiff_t>(j)),
                           ex);
        i = j;
    }
}

Result<nlohmann::json> parseJson(std::string_view bytes, const std::string& what) {
    nlohmann::json j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return corrupt("malformed JSON in " + what);
    return j;
}

std::string jsonString(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return {};
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return {};
    return clean(it->get_ref<const std::string&>());
}

}  // namespace

// ---- WhatsApp ----------------------------------------------------------------------------------

Result<Extraction> extractWhatsApp(const std::filesystem::path& path, std::string_view bytes) {
    DecodedText dec = decodeText(bytes);
    // "[15-01-20 02:22:56] Mary: text", "06.08.2016, 13:23 - Ash: text", "8/6/16, 1:23 PM - Ash: text"
    // Only the line's head goes through std::regex: libstdc++'s matcher recurses once per character
    // consumed, so a multi-megabyte line would overflow the stack. The message is the rest of the line.
    static const std::regex header(
        R"(^(?:\xE2\x80\x8E)?\[?(\d{1,4})[./-](\d{1,2})[./-](\d{1,4}),?\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s?([AaPp])?\.?[Mm]?\.?\]?\s*(?:-\s)?)");
    struct Raw { int a, b, c, hh, mm, ss; bool pm, am; std::string rest; };
    std::vector<Raw> raws;
    size_t start = 0;
    const std::string& text = dec.utf8;
    bool dayFirstEvidence = false, monthFirstEvidence = false, yearFirst = false;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string l = text.substr(start, end - start);
        start = end + 1;
        if (!l.empty() && l.back() == '\r') l.pop_back();
        std::smatch m;
        const std::string head = l.substr(0, 64);
        if (std::regex_search(head, m, header)) {
            Raw r{std::stoi(m[1]), std::stoi(m[2]), std::stoi(m[3]), std::stoi(m[4]), std::stoi(m[5]),
                  m[6].matched ? std::stoi(m[6]) : 0, false, false, l.substr(static_cast<size_t>(m.length(0)))};
            if (m[7].matched) (m[7].str() == "p" || m[7].str() == "P" ? r.pm : r.am) = true;
            if (m[1].length() == 4) yearFirst = true;
            else if (r.a > 12) dayFirstEvidence = true;
            else if (r.b > 12) monthFirstEvidence = true;
            raws.push_back(std::move(r));
        } else if (!raws.empty()) {
            raws.back().rest += "\n" + l;   // a message continued over several lines
        }
    }
    if (raws.empty()) return invalidArgument("no WhatsApp message lines found");
    const bool monthFirst = monthFirstEvidence && !dayFirstEvidence;
    std::vector<ChatMessage> messages;
    messages.reserve(raws.size());
    for (const Raw& r : raws) {
        int y, mo, d;
        if (yearFirst) { y = r.a; mo = r.b; d = r.c; }
        else if (monthFirst) { mo = r.a; d = r.b; y = r.c; }
        else { d = r.a; mo = r.b; y = r.c; }
        if (y < 100) y += 2000;
        if (mo < 1 || mo > 12 || d < 1 || d > 31) continue;
        int hh = r.hh;
        if (r.pm && hh < 12) hh += 12;
        if (r.am && hh == 12) hh = 0;
        ChatMessage msg;
        msg.time = daysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d)) * 86400 + hh * 3600 +
                   r.mm * 60 + r.ss;
        // "Sender: text"; lines without ": " are system notices (encryption, joins).
        const size_t colon = r.rest.find(": ");
        if (colon != std::string::npos && colon < 80) {
            msg.sender = r.rest.substr(0, colon);
            msg.text = r.rest.substr(colon + 2);
        } else {
            msg.text = r.rest;
        }
        messages.push_back(std::move(msg));
    }
    Extraction ex;
    ex.warnings = std::move(dec.warnings);
    std::string chat = path.stem().string();
    if (chat.rfind("WhatsApp Chat with ", 0) == 0) chat = chat.substr(19);
    appendChatDays("whatsapp", "WhatsApp " + chat, std::move(messages), ex);
    if (ex.documents.empty()) return invalidArgument("no WhatsApp messages with valid dates");
    return ex;
}

// ---- Slack -------------------------------------------------------------------------------------

Result<Extraction> extractSlackZip(const std::filesystem::path& path, std::string_view bytes,
                                   const ImportLimits& limits, const CancelToken* cancel) {
    (void)path;
    MSA_ASSIGN_OR_RETURN(ZipReader zip, ZipReader::open(bytes, limits.maxZipEntries));
    if (!zip.contains("channels.json") && !zip.contains("users.json"))
        return unsupported("zip archive is not a Slack export (no channels.json/users.json)");
    std::unordered_map<std::string, std::string> users;
    if (zip.contains("users.json")) {
        MSA_ASSIGN_OR_RETURN(std::string raw, zip.read("users.json", limits.maxUncompressedBytes));
        MSA_ASSIGN_OR_RETURN(nlohmann::json j, parseJson(raw, "users.json"));
        if (j.is_array()) {
            for (const auto& u : j) {
                std::string name = jsonString(u.value("profile", nlohmann::json::object()), "display_name");
                if (name.empty()) name = jsonString(u, "real_name");
                if (name.empty()) name = jsonString(u, "name");
                users[jsonString(u, "id")] = name;
            }
        }
    }
    static const std::regex mention(R"(<@([A-Z0-9]+)(\|[^>]*)?>)");
    static const std::regex channelRef(R"(<#[A-Z0-9]+\|([^>]*)>)");
    static const std::regex link(R"(<(https?://[^|>]+)\|([^>]*)>)");
    static const std::regex bareLink(R"(<(https?://[^>]+)>)");
    auto render = [&](std::string t) {
        // libstdc++'s regex recurses per character: very long texts skip the markup rendering.
        if (t.size() > 16384) return t;
        std::string out;
        std::sregex_iterator it(t.begin(), t.end(), mention), end;
        size_t last = 0;
        for (; it != end; ++it) {
            out += t.substr(last, static_cast<size_t>(it->position()) - last);
            auto u = users.find((*it)[1]);
            out += "@" + (u != users.end() && !u->second.empty() ? u->second : (*it)[1].str());
            last = static_cast<size_t>(it->position() + it->length());
        }
        out += t.substr(last);
        out = std::regex_replace(out, channelRef, "#$1");
        out = std::regex_replace(out, link, "$2 ($1)");
        out = std::regex_replace(out, bareLink, "$1");
        // Slack escapes only these three in message text.
        for (auto [from, to] : {std::pair<std::string, std::string>{"&lt;", "<"}, {"&gt;", ">"}, {"&amp;", "&"}}) {
            size_t p = 0;
            while ((p = out.find(from, p)) != std::string::npos) {
                out.replace(p, from.size(), to);
                p += to.size();
            }
        }
        return out;
    };

    Extraction ex;
    static const std::regex dayFile(R"(^(.+)/(\d{4}-\d{2}-\d{2})\.json$)");
    // One document per channel-day file: Slack already partitioned the days in the workspace's time
    // zone, which regrouping by UTC day would undo. Ordered by name for deterministic output.
    std::map<std::string, std::vector<ChatMessage>> byFile;
    std::map<std::string, std::pair<std::string, std::string>> fileDay;   // member -> (channel, day)
    for (const std::string& name : zip.names()) {
        std::smatch m;
        if (!std::regex_match(name, m, dayFile)) continue;
        if (cancel && cancel->isCancelled()) return cancelled();
        Result<std::string> raw = zip.read(name, limits.maxUncompressedBytes);
        if (!raw) {
            ex.warnings.push_back(name + ": " + raw.status().message());
            continue;
        }
        nlohmann::json j = nlohmann::json::parse(*raw, nullptr, false);
        if (j.is_discarded() || !j.is_array()) {
            ex.warnings.push_back(name + ": malformed JSON, skipped");
            continue;
        }
        std::vector<ChatMessage>& msgs = byFile[name];
        fileDay[name] = {m[1], m[2]};
        for (const auto& msg : j) {
            if (!msg.is_object()) continue;
            const std::string text = jsonString(msg, "text");
            const std::string ts = jsonString(msg, "ts");
            if (ts.empty()) continue;
            ChatMessage cm;
            cm.time = static_cast<int64_t>(std::floor(std::strtod(ts.c_str(), nullptr)));
            const std::string uid = jsonString(msg, "user");
            auto u = users.find(uid);
            cm.sender = u != users.end() && !u->second.empty() ? u->second : uid;
            if (cm.sender.empty()) cm.sender = jsonString(msg, "username");
            if (cm.sender.empty()) cm.sender = jsonString(msg, "bot_id");
            cm.text = render(text);
            // Bots and link unfurls carry their content in attachments.
            if (auto att = msg.find("attachments"); att != msg.end() && att->is_array()) {
                for (const auto& a : *att) {
                    std::string part = jsonString(a, "pretext");
                    const std::string body = jsonString(a, "text").empty() ? jsonString(a, "fallback") : jsonString(a, "text");
                    if (!body.empty()) part += (part.empty() ? "" : " ") + body;
                    if (!part.empty()) cm.text += (cm.text.empty() ? "" : " ") + render(part);
                }
            }
            if (auto files = msg.find("files"); files != msg.end() && files->is_array())
                for (const auto& f : *files) cm.text += " [file: " + jsonString(f, "name") + "]";
            if (cm.text.empty()) continue;
            msgs.push_back(std::move(cm));
        }
    }
    for (auto& [name, msgs] : byFile) {
        std::stable_sort(msgs.begin(), msgs.end(), [](const ChatMessage& a, const ChatMessage& b) { return a.time < b.time; });
        appendChatDocument("slack", "#" + clean(fileDay[name].first), fileDay[name].second, msgs, ex);
    }
    if (ex.documents.empty()) return invalidArgument("Slack export without messages");
    return ex;
}

// ---- Telegram ----------------------------------------------------------------------------------

Result<Extraction> extractTelegram(const std::filesystem::path& path, std::string_view bytes) {
    (void)path;
    MSA_ASSIGN_OR_RETURN(nlohmann::json j, parseJson(bytes, "Telegram export"));
    std::vector<const nlohmann::json*> chats;
    if (j.is_object() && j.contains("chats") && j["chats"].is_object() && j["chats"].contains("list") &&
        j["chats"]["list"].is_array()) {
        for (const auto& c : j["chats"]["list"]) chats.push_back(&c);
    } else if (j.is_object() && j.contains("messages") && j["messages"].is_array()) {
        chats.push_back(&j);
    } else {
        return unsupported("JSON file is not a Telegram Desktop export (no chats.list or messages)");
    }
    Extraction ex;
    for (const nlohmann::json* chat : chats) {
        if (!chat->is_object() || !chat->contains("messages") || !(*chat)["messages"].is_array()) continue;
        std::string name = jsonString(*chat, "name");
        if (name.empty()) name = "chat " + std::to_string(chat->value("id", int64_t{0}));
        std::vector<ChatMessage> msgs;
        for (const auto& m : (*chat)["messages"]) {
            if (!m.is_object() || jsonString(m, "type") != "message") continue;
            ChatMessage cm;
            const std::string unixTime = jsonString(m, "date_unixtime");
            if (!unixTime.empty()) {
                cm.time = std::strtoll(unixTime.c_str(), nullptr, 10);
            } else {
                auto t = parseDate(jsonString(m, "date"));
                if (!t) continue;
                cm.time = *t;
            }
            cm.sender = jsonString(m, "from");
            const auto& text = m.contains("text") ? m["text"] : nlohmann::json();
            if (text.is_string()) {
                cm.text = clean(text.get_ref<const std::string&>());
            } else if (text.is_array()) {
                for (const auto& part : text) {
                    if (part.is_string()) cm.text += clean(part.get_ref<const std::string&>());
                    else cm.text += jsonString(part, "text");
                }
            }
            if (cm.text.empty()) {
                const std::string media = jsonString(m, "media_type");
                const std::string file = jsonString(m, "file");
                if (media.empty() && file.empty()) continue;
                cm.text = "[" + (media.empty() ? std::string("file") : media) + (file.empty() ? "" : ": " + file) + "]";
            }
            msgs.push_back(std::move(cm));
        }
        appendChatDays("telegram", "Telegram " + name, std::move(msgs), ex);
    }
    if (ex.documents.empty()) return invalidArgument("Telegram export without messages");
    return ex;
}

// ---- ChatGPT -----------------------------------------------------------------------------------

Result<Extraction> extractChatGpt(const std::filesystem::path& path, std::string_view bytes) {
    (void)path;
    MSA_ASSIGN_OR_RETURN(nlohmann::json j, parseJson(bytes, "ChatGPT export"));
    if (!j.is_array()) return unsupported("JSON file is not a ChatGPT conversations.json (not an array)");
    Extraction ex;
    int index = 0;
    for (const auto& conv : j) {
        ++index;
        if (!conv.is_object() || !conv.contains("mapping") || !conv["mapping"].is_object()) continue;
        const auto& mapping = conv["mapping"];
        // The visible branch: from current_node up through parents (edits create side branches).
        std::vector<const nlohmann::json*> chain;
        std::string node = jsonString(conv, "current_node");
        std::set<std::string> seen;
        while (!node.empty() && mapping.contains(node) && seen.insert(node).second) {
            chain.push_back(&mapping[node]);
            node = jsonString(mapping[node], "parent");
        }
        std::reverse(chain.begin(), chain.end());
        ExtractedDocument doc;
        doc.kind = "chat";
        doc.unitKind = "conversation";
        doc.splitKind = "conversation-part";
        doc.title = jsonString(conv, "title");
        if (doc.title.empty()) doc.title = "ChatGPT conversation " + std::to_string(index);
        if (conv.contains("create_time") && conv["create_time"].is_number())
            doc.dateUnix = static_cast<int64_t>(conv["create_time"].get<double>());
        std::string text;
        size_t nMessages = 0;
        for (const nlohmann::json* n : chain) {
            if (!n->contains("message") || !(*n)["message"].is_object()) continue;
            const auto& msg = (*n)["message"];
            const auto author = msg.value("author", nlohmann::json::object());
            std::string role = jsonString(author, "role");
            if (role == "system" || role.empty()) continue;
            std::string content;
            const auto c = msg.value("content", nlohmann::json::object());
            if (c.contains("parts") && c["parts"].is_array()) {
                for (const auto& part : c["parts"])
                    if (part.is_string() && !part.get_ref<const std::string&>().empty())
                        content += (content.empty() ? "" : "\n") + clean(part.get_ref<const std::string&>());
            } else if (c.contains("text") && c["text"].is_string()) {
                content = clean(c["text"].get_ref<const std::string&>());
            }
            content = normalizeText(content);
            if (content.empty()) continue;
            const std::string name = jsonString(author, "name");
            const std::string who = name.empty() ? role : name;
            if (std::find(doc.participants.begin(), doc.participants.end(), who) == doc.participants.end())
                doc.participants.push_back(who);
            if (!text.empty()) text += "\n\n";
            std::string stamp;
            if (msg.contains("create_time") && msg["create_time"].is_number())
                stamp = formatDay(static_cast<int64_t>(msg["create_time"].get<double>())) + " " +
                        hhmm(static_cast<int64_t>(msg["create_time"].get<double>())) + " ";
            doc.boundaries.push_back({text.size(), who});
            text += stamp + who + ": " + content;
            ++nMessages;
        }
        if (nMessages == 0) continue;
        doc.text = std::move(text);   // parts were normalised one by one; joins keep it normalised
        doc.locator = "conversation " + std::to_string(index);
        doc.metadata["platform"] = "chatgpt";
        doc.metadata["conversation_id"] = jsonString(conv, "conversation_id").empty() ? jsonString(conv, "id")
                                                                                      : jsonString(conv, "conversation_id");
        doc.metadata["messages"] = static_cast<int64_t>(nMessages);
        ex.documents.push_back(std::move(doc));
    }
    if (ex.documents.empty()) return invalidArgument("ChatGPT export without conversations");
    return ex;
}

}  // namespace msa::catalog

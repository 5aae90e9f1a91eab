// chat_template.cpp: native renderings of the chat template families listed in chat_template.h.
// Each render function mirrors its Jinja source statement by statement; the comments quote the
// template parts whose whitespace handling is easy to get wrong.
#include "core/model/chat_template.h"

#include <cstdint>

namespace msa::model {

namespace {

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// Python's str.isspace() for one code point, as used by Jinja's `trim` filter (str.strip()).
bool isPySpace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

// Decodes the code point starting at s[i] (valid UTF-8 assumed; a stray byte counts as itself).
uint32_t codePointAt(std::string_view s, size_t i, size_t* len) {
    const auto b = static_cast<unsigned char>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size()) n = 1;
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1Fu) : n == 3 ? (b & 0x0Fu) : (b & 0x07u);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
    *len = n;
    return cp;
}

std::string pyStrip(std::string_view s) {
    size_t b = 0;
    while (b < s.size()) {
        size_t n = 0;
        if (!isPySpace(codePointAt(s, b, &n))) break;
        b += n;
    }
    size_t e = s.size();
    while (e > b) {
        size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        size_t n = 0;
        if (!isPySpace(codePointAt(s, p, &n))) break;
        e = p;
    }
    return std::string(s.substr(b, e - b));
}

// str.strip('\n') / lstrip('\n') / rstrip('\n').
std::string_view lstripNl(std::string_view s) {
    while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
    return s;
}
std::string_view rstripNl(std::string_view s) {
    while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    return s;
}

// The default system prompt a ChatML template writes when the conversation has none: a literal
// `<|im_start|>system\n` ... `<|im_end|>` inside one Jinja string literal.
std::string findDefaultSystemPrompt(std::string_view src) {
    const std::string_view head = "<|im_start|>system";
    size_t pos = 0;
    while ((pos = src.find(head, pos)) != std::string_view::npos) {
        size_t p = pos + head.size();
        pos = p;
        if (src.substr(p, 2) == "\\n") p += 2;
        else if (src.substr(p, 1) == "\n") p += 1;
        else continue;
        const size_t end = src.find("<|im_end|>", p);
        if (end == std::string_view::npos) break;
        const std::string_view raw = src.substr(p, end - p);
        // A concatenation (`' + messages[0]['content'] + '`) or an expression is not a literal.
        if (raw.empty() || contains(raw, "'") || contains(raw, "\"") || contains(raw, "{{") || contains(raw, "{%"))
            continue;
        std::string out;
        for (size_t i = 0; i < raw.size(); ++i) {
            if (raw[i] == '\\' && i + 1 < raw.size()) {
                const char c = raw[++i];
                out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
            } else {
                out += raw[i];
            }
        }
        return out;
    }
    return {};
}

void imBlock(std::string& out, std::string_view role, std::string_view content) {
    out += "<|im_start|>";
    out += role;
    out += '\n';
    out += content;
    out += "<|im_end|>\n";
}

std::string renderChatMl(std::span<const ChatMessage> messages, const ChatTemplateOptions& options,
                         const std::string& defaultSystem) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        // {% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n...<|im_end|>\n' }}
        if (i == 0 && messages[0].role != "system" && !defaultSystem.empty()) imBlock(out, "system", defaultSystem);
        imBlock(out, messages[i].role, messages[i].content);
    }
    if (options.addGenerationPrompt) out += "<|im_start|>assistant\n";
    return out;
}

bool isToolResponse(std::string_view c) {
    return c.starts_with("<tool_response>") && c.ends_with("</tool_response>");
}

std::string renderQwen3(std::span<const ChatMessage> messages, const ChatTemplateOptions& options) {
    std::string out;
    const size_t n = messages.size();
    if (n > 0 && messages[0].role == "system") imBlock(out, "system", messages[0].content);
    // The last user message that is a real query (not a wrapped tool response).
    size_t lastQuery = n == 0 ? 0 : n - 1;
    for (size_t k = n; k-- > 0;) {
        if (messages[k].role == "user" && !isToolResponse(messages[k].content)) {
            lastQuery = k;
            break;
        }
    }
    for (size_t i = 0; i < n; ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "user" || (m.role == "system" && i != 0)) {
            imBlock(out, m.role, m.content);
        } else if (m.role == "assistant") {
            std::string_view content = m.content;
            std::string reasoning;
            const size_t close = m.content.rfind("</think>");
            if (close != std::string::npos) {
                // content = message.content.split('</think>')[-1].lstrip('\n')
                content = lstripNl(std::string_view(m.content).substr(close + 8));
                // reasoning = message.content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n')
                std::string_view before = rstripNl(std::string_view(m.content).substr(0, m.content.find("</think>")));
                const size_t open = before.rfind("<think>");
                if (open != std::string_view::npos) before = before.substr(open + 7);
                reasoning = std::string(lstripNl(before));
            }
            out += "<|im_start|>" + m.role + "\n";
            if (i > lastQuery && (i + 1 == n || !reasoning.empty())) {
                out += "<think>\n";
                out += lstripNl(rstripNl(reasoning));
                out += "\n</think>\n\n";
                out += lstripNl(content);
            } else {
                out += content;
            }
            out += "<|im_end|>\n";
        } else if (m.role == "tool") {
            if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
            out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
            if (i + 1 == n || messages[i + 1].role != "tool") out += "<|im_end|>\n";
        }
    }
    if (options.addGenerationPrompt) {
        out += "<|im_start|>assistant\n";
        if (options.enableThinking.has_value() && !*options.enableThinking) out += "<think>\n\n</think>\n\n";
    }
    return out;
}

std::string renderLlama3(std::span<const ChatMessage> messages, const ChatTemplateOptions& options) {
    std::string out;
    for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0) out += options.bosToken;
        out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + pyStrip(messages[i].content) +
               "<|eot_id|>";
    }
    if (options.addGenerationPrompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

}  // namespace

Result<ChatTemplate> ChatTemplate::detect(std::string_view src) {
    if (src.empty()) return invalidArgument("the model has no chat template");
    if (contains(src, "<|start_header_id|>") && contains(src, "<|eot_id|>"))
        return ChatTemplate(ChatTemplateKind::Llama3, {});
    if (contains(src, "<|im_start|>")) {
        if (contains(src, "<think>") || contains(src, "enable_thinking") || contains(src, "reasoning_content"))
            return ChatTemplate(ChatTemplateKind::Qwen3, {});
        return ChatTemplate(ChatTemplateKind::ChatMl, findDefaultSystemPrompt(src));
    }
    return unsupported("chat template not recognised: looked for ChatML (<|im_start|>, with <think> for Qwen3) "
                       "and Llama-3 (<|start_header_id|> and <|eot_id|>) markers");
}

ChatTemplate ChatTemplate::chatMl(std::string defaultSystemPrompt) {
    return ChatTemplate(ChatTemplateKind::ChatMl, std::move(defaultSystemPrompt));
}

std::string ChatTemplate::apply(std::span<const ChatMessage> messages, const ChatTemplateOptions& options) const {
    switch (m_kind) {
    case ChatTemplateKind::ChatMl: return renderChatMl(messages, options, m_defaultSystem);
    case ChatTemplateKind::Qwen3: return renderQwen3(messages, options);
    case ChatTemplateKind::Llama3: return renderLlama3(messages, options);
    }
    return {};
}

std::string ChatTemplate::endOfTurn() const {
    return m_kind == ChatTemplateKind::Llama3 ? "<|eot_id|>" : "<|im_end|>";
}

const char* ChatTemplate::kindName(ChatTemplateKind kind) {
    switch (kind) {
    case ChatTemplateKind::ChatMl: return "chatml";
    case ChatTemplateKind::Qwen3: return "qwen3";
    case ChatTemplateKind::Llama3: return "llama3";
    }
    return "?";
}

}  // namespace msa::model

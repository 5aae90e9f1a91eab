// chat_template.h: renders a conversation into the prompt text a chat model was trained on.
//
// Purpose: models ship their chat format as a Jinja template (tokenizer_config.json `chat_template`,
// GGUF `tokenizer.chat_template`). We do not run Jinja; we recognise the template family by markers
// in its source and render it natively, byte for byte as transformers' apply_chat_template does for
// the supported features (checked against jinja2 in tests/core/model/tst_chat_template.cpp):
//   - Qwen3 ChatML: "<|im_start|>" plus "<think>"/"enable_thinking"/"reasoning_content". System only
//     when given; assistant "<think>...</think>" reasoning kept only after the last user query;
//     role "tool" folded into user turns as <tool_response>; enable_thinking=false adds an empty
//     think block to the generation prompt. Tool definitions and tool_calls are not rendered.
//   - ChatML (SmolLM2, Qwen2.5, ...): "<|im_start|>". `<|im_start|>role\ncontent<|im_end|>\n` per
//     message, `<|im_start|>assistant\n` as generation prompt, and the template's default system
//     prompt (a literal `<|im_start|>system\n...<|im_end|>` in the source, e.g. SmolLM2's "You are a
//     helpful AI assistant named SmolLM, trained by Hugging Face") when the first message is not one.
//   - Llama-3: "<|start_header_id|>" and "<|eot_id|>". bos_token first, then
//     `<|start_header_id|>role<|end_header_id|>\n\n` + trim(content) + `<|eot_id|>` per message.
//     (Llama-3.1's dated system header and tools are not reproduced.)
//
// Ownership / threads: an immutable value; share freely.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::detect(tokenizer.chatTemplateSource()));
//     std::string prompt = t.apply({{"user", "Hi"}}, {});
//     std::vector<TokenId> ids = tokenizer.encode(prompt);
//
// Failure codes: detect() returns Unsupported when no family is recognised (the message says which
// markers were looked for) and InvalidArgument for an empty template.
#pragma once

#include "core/util/status.h"

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace msa::model {

struct ChatMessage {
    std::string role;      // "system", "user", "assistant" (and "tool" for Qwen3)
    std::string content;
};

struct ChatTemplateOptions {
    bool addGenerationPrompt = true;
    std::optional<bool> enableThinking;   // Qwen3: false adds "<think>\n\n</think>\n\n" to the prompt
    std::string bosToken;                 // Llama-3: the text of the BOS token ("<|begin_of_text|>")
};

enum class ChatTemplateKind { ChatMl, Qwen3, Llama3 };

class ChatTemplate {
public:
    // Recognises the family of a Jinja chat template (see the header comment for the markers).
    static Result<ChatTemplate> detect(std::string_view templateSource);
    // A plain ChatML template with an optional default system prompt (for models without metadata).
    static ChatTemplate chatMl(std::string defaultSystemPrompt = {});

    std::string apply(std::span<const ChatMessage> messages, const ChatTemplateOptions& options = {}) const;

    ChatTemplateKind kind() const { return m_kind; }
    const std::string& defaultSystemPrompt() const { return m_defaultSystem; }
    // The text that ends an assistant turn ("<|im_end|>" or "<|eot_id|>"): a stop string for generation.
    std::string endOfTurn() const;
    static const char* kindName(ChatTemplateKind kind);

private:
    ChatTemplate(ChatTemplateKind kind, std::string defaultSystem)
        : m_kind(kind), m_defaultSystem(std::move(defaultSystem)) {}
    ChatTemplateKind m_kind;
    std::string m_defaultSystem;
};

}  // namespace msa::model

// wrap.h: the token layouts routing depends on (msa-spec §5.1-5.3): memory documents wrapped as
// `<|im_start|>[i]. text[i]<|im_end|>` (MSA models; msa-spec §5.2, utils/tools.py:95-98), the
// 3-token template head `<|im_start|>user\n`, and the round-1 query whose routing mask marks exactly
// the QUESTION_BLOCK tokens (doc_id 0), with the template tail `<|im_end|>\n` (doc_id -2) and the
// response head `<|im_start|>` (doc_id -1) unmarked, at positions 3 + k, 4 + k, ... (msa-spec §4).
//
// For ordinary (training-free) models the same structure uses the model's own chat format
// (ROUTING.md "Wrapping"): ChatML/Qwen3 models share MSA's strings; Llama-3 uses
// `<|start_header_id|>user<|end_header_id|>\n\n` as turn opener and `<|eot_id|>` as closer, with the
// BOS token in front of every separately encoded sequence (documents and the template head), because
// Llama-3 always sees BOS at position 0. The routing mask covers the question text only.
//
// Ownership/threads: pure functions; the Tokenizer is shared read-only.
//
// Usage:
//     DocumentWrapping w = documentWrapping(true, model::ChatTemplateKind::Qwen3, {});
//     std::vector<TokenId> doc = wrapDocumentTokens(tokenizer, w, 7, "Bill Watts was born ...");
//     QueryPrompt q = round1Query(tokenizer, w, "When was ...?", cfg.topK);
//
// Failure codes: none.
#pragma once

#include "core/model/chat_template.h"
#include "core/model/tokenizer.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace msa::memory {

struct DocumentWrapping {
    bool msaProtocol = true;     // MSA's exact strings and QUESTION_BLOCK
    std::string bos;             // text prepended to each separately encoded sequence ("" for Qwen)
    std::string docOpen;         // "<|im_start|>"
    std::string docClose;        // "<|im_end|>"
    std::string templateHead;    // "<|im_start|>user\n" (encoded at positions 0..)
    std::string templateTail;    // "<|im_end|>\n"
    std::string responseHead;    // "<|im_start|>"
};

// msaModel: the model has trained router tensors (MSA protocol). bosText: the BOS token's text, used
// for Llama-3 only.
DocumentWrapping documentWrapping(bool msaModel, model::ChatTemplateKind kind, std::string bosText);

// "<|im_start|>[i]. text[i]<|im_end|>" (with the wrapping's opener/closer).
std::string wrapDocumentText(const DocumentWrapping& w, size_t index, std::string_view text);
// Tokenized with special tokens recognised and no BOS added by the tokenizer (msa-spec §5.2).
std::vector<model::TokenId> wrapDocumentTokens(const model::Tokenizer& tok, const DocumentWrapping& w, size_t index,
                                               std::string_view text);
std::vector<model::TokenId> templateHeadTokens(const model::Tokenizer& tok, const DocumentWrapping& w);

// msa_service.py:1702-1732 (msa-spec §5.3).
std::string questionBlock(std::string_view question);

struct QueryPrompt {
    std::vector<model::TokenId> head;     // the template head (positions 0..head.size()-1, from the cache)
    std::vector<model::TokenId> tokens;   // the prompt after the memory
    std::vector<uint8_t> routeMask;       // 1 where doc_id == 0
    int32_t firstPosition = 0;            // head.size() + k (msa-spec §4, B2)
};

QueryPrompt round1Query(const model::Tokenizer& tok, const DocumentWrapping& w, std::string_view question, size_t topK);

}  // namespace msa::memory

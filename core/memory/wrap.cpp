#include "core/memory/wrap.h"

namespace msa::memory {

namespace {
std::vector<model::TokenId> encodeRaw(const model::Tokenizer& tok, std::string_view text) {
    model::EncodeOptions o;
    o.matchSpecial = true;   // special-token strings inside the text map to their ids (msa-spec §5.2)
    o.addBos = false;        // add_special_tokens=False
    return tok.encode(text, o);
}
}  // namespace

DocumentWrapping documentWrapping(bool msaModel, model::ChatTemplateKind kind, std::string bosText) {
    DocumentWrapping w;
    w.msaProtocol = msaModel;
    if (!msaModel && kind == model::ChatTemplateKind::Llama3) {
        w.bos = std::move(bosText);
        w.docOpen = "<|start_header_id|>user<|end_header_id|>\n\n";
        w.docClose = "<|eot_id|>";
        w.templateHead = "<|start_header_id|>user<|end_header_id|>\n\n";
        w.templateTail = "<|eot_id|>";
        w.responseHead = "<|start_header_id|>assistant<|end_header_id|>\n\n";
        return w;
    }
    w.docOpen = "<|im_start|>";
    w.docClose = "<|im_end|>";
    w.templateHead = "<|im_start|>user\n";
    w.templateTail = "<|im_end|>\n";
    // MSA generates right after a bare <|im_start|> (msa-spec §5.3); a stock ChatML model gets its role.
    w.responseHead = msaModel ? "<|im_start|>" : "<|im_start|>assistant\n";
    return w;
}

std::string wrapDocumentText(const DocumentWrapping& w, size_t index, std::string_view text) {
    std::string id(1, '[');
    id += std::to_string(index);
    id += ']';
    std::string s = w.bos;
    s += w.docOpen;
    s += id;
    s += ". ";
    s += text;
    s += id;
    s += w.docClose;
    return s;
}

std::vector<model::TokenId> wrapDocumentTokens(const model::Tokenizer& tok, const DocumentWrapping& w, size_t index,
                                               std::string_view text) {
    return encodeRaw(tok, wrapDocumentText(w, index, text));
}

std::vector<model::TokenId> templateHeadTokens(const model::Tokenizer& tok, const DocumentWrapping& w) {
    return encodeRaw(tok, w.bos + w.templateHead);
}

std::string questionBlock(std::string_view question) {
    std::string s = "\nPlease answer the question based on the above historical document information\n\n";
    s += question;
    s += "\nPlease return all documents related to the question\n";
    return s;
}

QueryPrompt round1Query(const model::Tokenizer& tok, const DocumentWrapping& w, std::string_view question, size_t topK) {
    QueryPrompt q;
    q.head = templateHeadTokens(tok, w);
    // Each role region is tokenized on its own, as the reference does (msa_service.py:1702-1732).
    const auto block = encodeRaw(tok, w.msaProtocol ? questionBlock(question) : std::string(question));
    const auto tail = encodeRaw(tok, w.templateTail);
    const auto resp = encodeRaw(tok, w.responseHead);
    q.tokens = block;
    q.routeMask.assign(block.size(), 1);
    q.tokens.insert(q.tokens.end(), tail.begin(), tail.end());
    q.tokens.insert(q.tokens.end(), resp.begin(), resp.end());
    q.routeMask.resize(q.tokens.size(), 0);
    q.firstPosition = static_cast<int32_t>(q.head.size() + topK);
    return q;
}

}  // namespace msa::memory

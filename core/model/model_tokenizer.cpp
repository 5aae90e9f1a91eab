#include "core/model/model_tokenizer.h"

#include "core/model/gguf_file.h"

namespace msa::model {

Result<TokenizerSpec> tokenizerSpecFromGguf(const GgufFile& g) {
    const std::string file = quotedName(g.path().string());
    TokenizerSpec spec;
    MSA_ASSIGN_OR_RETURN(spec.model, g.getString("tokenizer.ggml.model"));
    if (g.find("tokenizer.ggml.pre")) {
        MSA_ASSIGN_OR_RETURN(spec.preTokenizer, g.getString("tokenizer.ggml.pre"));
    }
    MSA_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens, g.getStringArray("tokenizer.ggml.tokens"));
    spec.tokens.assign(tokens.begin(), tokens.end());
    if (g.find("tokenizer.ggml.merges")) {
        MSA_ASSIGN_OR_RETURN(std::vector<std::string_view> merges, g.getStringArray("tokenizer.ggml.merges"));
        spec.merges.assign(merges.begin(), merges.end());
    }
    if (g.find("tokenizer.ggml.token_type")) {
        MSA_ASSIGN_OR_RETURN(std::vector<int64_t> types, g.getIntArray("tokenizer.ggml.token_type"));
        if (types.size() != spec.tokens.size())
            return corrupt(file + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                           " entries for " + std::to_string(spec.tokens.size()) + " tokens");
        spec.tokenTypes.assign(types.begin(), types.end());
    }
    auto optionalId = [&](const char* key, std::optional<TokenId>& out) -> Status {
        if (!g.find(key)) return Status::ok();
        MSA_ASSIGN_OR_RETURN(uint32_t id, g.getU32(key));
        if (id >= spec.tokens.size())
            return corrupt(file + ": " + key + " = " + std::to_string(id) + " is outside the vocabulary");
        out = static_cast<TokenId>(id);
        return Status::ok();
    };
    MSA_RETURN_IF_ERROR(optionalId("tokenizer.ggml.bos_token_id", spec.bosId));
    MSA_RETURN_IF_ERROR(optionalId("tokenizer.ggml.eos_token_id", spec.eosId));
    MSA_RETURN_IF_ERROR(optionalId("tokenizer.ggml.eot_token_id", spec.eotId));
    MSA_RETURN_IF_ERROR(optionalId("tokenizer.ggml.unknown_token_id", spec.unknownId));
    MSA_RETURN_IF_ERROR(optionalId("tokenizer.ggml.padding_token_id", spec.paddingId));
    if (g.find("tokenizer.ggml.add_bos_token")) {
        MSA_ASSIGN_OR_RETURN(spec.addBos, g.getBool("tokenizer.ggml.add_bos_token"));
    }
    if (g.find("tokenizer.chat_template")) {
        MSA_ASSIGN_OR_RETURN(spec.chatTemplate, g.getString("tokenizer.chat_template"));
    }
    return spec;
}

Result<Tokenizer> loadTokenizer(const ModelFiles& model) {
    if (model.format() == ModelFormat::Gguf) {
        if (!model.gguf()) return notFound(quotedName(model.path().string()) + " has no GGUF metadata");
        MSA_ASSIGN_OR_RETURN(TokenizerSpec spec, tokenizerSpecFromGguf(*model.gguf()));
        return Tokenizer::fromSpec(spec, model.path().string());
    }
    if (model.tokenizerJsonPath().empty()) return notFound(quotedName(model.path().string()) + " has no tokenizer.json");
    return Tokenizer::fromJsonFile(model.tokenizerJsonPath());
}

}  // namespace msa::model

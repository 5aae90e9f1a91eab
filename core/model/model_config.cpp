// model_config.cpp: config.json and GGUF metadata -> ModelConfig, with the reference defaults.
#include "core/model/model_config.h"

#include "core/model/gguf_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <limits>

namespace msa::model {

namespace {

using nlohmann::json;

std::string cat(std::initializer_list<std::string_view> parts) {
    std::string s;
    for (std::string_view p : parts) s += p;
    return s;
}

// Reads a positive int field; `fallback` (when given) applies if the key is absent or null.
Result<int> intField(const json& j, const char* key, const std::string& src, std::optional<int64_t> fallback = {},
                     int64_t minValue = 1) {
    auto it = j.find(key);
    int64_t v = 0;
    if (it == j.end() || it->is_null()) {
        if (!fallback) return notFound(cat({src, ": required field '", key, "' is missing"}));
        v = *fallback;
    } else if (it->is_number_integer()) {
        v = it->get<int64_t>();
    } else {
        return corrupt(cat({src, ": field '", key, "' is not an integer"}));
    }
    if (v < minValue || v > std::numeric_limits<int>::max())
        return corrupt(cat({src, ": field '", key, "' has the impossible value ", std::to_string(v)}));
    return static_cast<int>(v);
}

Result<double> numberField(const json& j, const char* key, const std::string& src, double fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number()) return corrupt(cat({src, ": field '", key, "' is not a number"}));
    const double v = it->get<double>();
    if (!(v > 0) || v > 1e300) return corrupt(cat({src, ": field '", key, "' has the impossible value ", std::to_string(v)}));
    return v;
}

Result<bool> boolField(const json& j, const char* key, const std::string& src, bool fallback) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) return corrupt(cat({src, ": field '", key, "' is not a boolean"}));
    return it->get<bool>();
}

std::optional<int> tokenIdField(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return std::nullopt;
    if (it->is_number_unsigned() && it->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max()))
        return static_cast<int>(it->get<uint64_t>());
    if (it->is_array() && !it->empty() && (*it)[0].is_number_unsigned())   // eos_token_id may be a list
        return static_cast<int>((*it)[0].get<uint64_t>());
    return std::nullopt;
}

Status checkShapes(const ModelConfig& c, const std::string& src) {
    // Far above any real model, far below what would make per-layer tables exhaust memory: a corrupt
    // count is refused here rather than allocated for.
    if (c.nLayers > 100000)
        return corrupt(cat({src, ": ", std::to_string(c.nLayers), " layers is not a plausible model"}));
    if (c.nHeads % c.nKvHeads != 0)
        return corrupt(cat({src, ": ", std::to_string(c.nHeads), " attention heads are not a multiple of ",
                            std::to_string(c.nKvHeads), " KV heads"}));
    if (c.headDim % 2 != 0) return corrupt(cat({src, ": head dimension ", std::to_string(c.headDim), " is odd (RoPE needs pairs)"}));
    return Status::ok();
}

Result<MsaSettings> msaFromJson(const json& m, int nLayers, const std::string& src) {
    if (!m.is_object()) return corrupt(cat({src, ": msa_config is not an object"}));
    MsaSettings s;
    auto str = [&](const char* key, std::string& out) -> Status {
        auto it = m.find(key);
        if (it == m.end() || it->is_null()) return Status::ok();
        if (!it->is_string()) return corrupt(cat({src, ": msa_config.", key, " is not a string"}));
        out = it->get<std::string>();
        return Status::ok();
    };
    auto optInt = [&](const char* key, std::optional<int>& out) -> Status {
        auto it = m.find(key);
        if (it == m.end() || it->is_null()) return Status::ok();
        if (!it->is_number_unsigned() || it->get<uint64_t>() == 0 || it->get<uint64_t>() > 1u << 30)
            return corrupt(cat({src, ": msa_config.", key, " is not a positive integer"}));
        out = static_cast<int>(it->get<uint64_t>());
        return Status::ok();
    };
    auto rl = m.find("router_layer_idx");
    if (rl == m.end() || rl->is_null()) {
        s.routerLayerSpec = "all";   // configuration_msa.py reads a missing key as None; the engine default is "all"
    } else if (rl->is_string()) {
        s.routerLayerSpec = rl->get<std::string>();
    } else if (rl->is_array()) {
        for (const json& e : *rl) {
            if (!e.is_number_unsigned()) return corrupt(cat({src, ": msa_config.router_layer_idx has a non-integer entry"}));
            if (!s.routerLayerSpec.empty()) s.routerLayerSpec += ",";
            s.routerLayerSpec += std::to_string(e.get<uint64_t>());
        }
    } else {
        return corrupt(cat({src, ": msa_config.router_layer_idx is neither a string nor a list"}));
    }
    Result<std::vector<int>> layers = parseRouterLayers(s.routerLayerSpec, nLayers);
    if (!layers) return layers.status().withContext(src + ": msa_config.router_layer_idx");
    s.routerLayers = std::move(layers).value();
    std::optional<int> docTopK;
    MSA_RETURN_IF_ERROR(optInt("doc_top_k", docTopK));
    if (docTopK) s.docTopK = *docTopK;
    MSA_RETURN_IF_ERROR(optInt("top_k_docs", s.topKDocs));
    MSA_RETURN_IF_ERROR(optInt("pooling_kernel_size", s.poolingKernelSize));
    auto dr = m.find("decouple_router");
    if (dr != m.end() && !dr->is_null()) {
        if (!dr->is_boolean()) return corrupt(cat({src, ": msa_config.decouple_router is not a boolean"}));
        s.decoupleRouter = dr->get<bool>();
    }
    MSA_RETURN_IF_ERROR(str("aux_loss_method", s.auxLossMethod));
    MSA_RETURN_IF_ERROR(str("head_reduce_method", s.headReduceMethod));
    MSA_RETURN_IF_ERROR(str("query_reduce_method", s.queryReduceMethod));
    MSA_RETURN_IF_ERROR(str("chunk_reduce_method", s.chunkReduceMethod));
    return s;
}

}  // namespace

std::string_view architectureName(Architecture a) {
    switch (a) {
    case Architecture::Llama: return "llama";
    case Architecture::Qwen2: return "qwen2";
    case Architecture::Qwen3: return "qwen3";
    }
    return "?";
}

std::string_view ropeStyleName(RopeStyle s) { return s == RopeStyle::NeoX ? "neox" : "interleaved"; }

Result<std::vector<int>> parseRouterLayers(const std::string& spec, int nLayers) {
    std::vector<int> out;
    if (spec == "all") {
        for (int i = 0; i < nLayers; ++i) out.push_back(i);
        return out;
    }
    std::vector<bool> seen(static_cast<size_t>(nLayers), false);
    size_t pos = 0;
    while (pos <= spec.size()) {
        size_t comma = spec.find(',', pos);
        if (comma == std::string::npos) comma = spec.size();
        std::string_view item(spec.data() + pos, comma - pos);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        int lo = 0, hi = 0;
        const size_t dash = item.find('-');
        const std::string_view a = item.substr(0, dash);
        const std::string_view b = dash == std::string_view::npos ? a : item.substr(dash + 1);
        auto ra = std::from_chars(a.data(), a.data() + a.size(), lo);
        auto rb = std::from_chars(b.data(), b.data() + b.size(), hi);
        if (item.empty() || ra.ec != std::errc() || ra.ptr != a.data() + a.size() || rb.ec != std::errc() ||
            rb.ptr != b.data() + b.size() || lo > hi)
            return corrupt("layer list '" + spec + "' has a malformed entry '" + std::string(item) + "'");
        if (lo < 0 || hi >= nLayers)
            return corrupt("layer list '" + spec + "' names a layer outside 0.." + std::to_string(nLayers - 1));
        for (int l = lo; l <= hi; ++l) {
            if (!seen[static_cast<size_t>(l)]) out.push_back(l);
            seen[static_cast<size_t>(l)] = true;
        }
        pos = comma + 1;
    }
    std::sort(out.begin(), out.end());
    return out;
}

Result<ModelConfig> configFromHfJson(const json& j, const std::string& src) {
    if (!j.is_object()) return corrupt(src + ": not a JSON object");
    auto mt = j.find("model_type");
    if (mt == j.end() || !mt->is_string()) return notFound(src + ": required field 'model_type' is missing");
    ModelConfig c;
    c.modelType = mt->get<std::string>();
    if (c.modelType == "llama") c.arch = Architecture::Llama;
    else if (c.modelType == "qwen2") c.arch = Architecture::Qwen2;
    else if (c.modelType == "qwen3" || c.modelType == "msa") c.arch = Architecture::Qwen3;
    else
        return unsupported(src + ": model_type '" + c.modelType + "' is not supported (llama, qwen2, qwen3, msa)");

    MSA_ASSIGN_OR_RETURN(c.nLayers, intField(j, "num_hidden_layers", src));
    MSA_ASSIGN_OR_RETURN(c.nHeads, intField(j, "num_attention_heads", src));
    // transformers: num_key_value_heads defaults to num_attention_heads (plain multi-head attention).
    MSA_ASSIGN_OR_RETURN(c.nKvHeads, intField(j, "num_key_value_heads", src, c.nHeads));
    MSA_ASSIGN_OR_RETURN(c.hiddenSize, intField(j, "hidden_size", src));
    MSA_ASSIGN_OR_RETURN(c.ffnSize, intField(j, "intermediate_size", src));
    MSA_ASSIGN_OR_RETURN(c.vocabSize, intField(j, "vocab_size", src));
    // Qwen3Config defaults head_dim to 128; Llama/Qwen2 derive it from hidden_size / heads.
    const int64_t derivedHeadDim = c.arch == Architecture::Qwen3 ? 128 : c.hiddenSize / c.nHeads;
    MSA_ASSIGN_OR_RETURN(c.headDim, intField(j, "head_dim", src, derivedHeadDim));
    // Every one of the three config classes defaults max_position_embeddings/rope_theta/rms_norm_eps
    // as below when the key is absent (transformers LlamaConfig/Qwen2Config/Qwen3Config).
    const int64_t defaultCtx = c.arch == Architecture::Llama ? 2048 : 32768;
    MSA_ASSIGN_OR_RETURN(const int ctx, intField(j, "max_position_embeddings", src, defaultCtx));
    c.contextLength = ctx;
    // transformers >= 5 writes RoPE settings as rope_parameters {rope_theta, rope_type}; older files
    // have top-level rope_theta / rope_scaling. Both are read; a non-default rope_type is refused.
    const double defaultTheta = 10000.0;
    MSA_ASSIGN_OR_RETURN(c.ropeTheta, numberField(j, "rope_theta", src, defaultTheta));
    if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object()) {
        MSA_ASSIGN_OR_RETURN(c.ropeTheta, numberField(*rp, "rope_theta", src + " rope_parameters", c.ropeTheta));
        if (auto type = rp->find("rope_type"); type != rp->end() && !(type->is_string() && *type == "default"))
            return unsupported(src + ": rope_parameters.rope_type " + type->dump() + " is not supported");
    }
    MSA_ASSIGN_OR_RETURN(const double eps, numberField(j, "rms_norm_eps", src, 1e-6));
    c.rmsNormEps = static_cast<float>(eps);
    MSA_ASSIGN_OR_RETURN(c.tieWordEmbeddings, boolField(j, "tie_word_embeddings", src, false));
    // Qwen2's attention always has q/k/v bias; Llama and Qwen3 have it only with attention_bias.
    MSA_ASSIGN_OR_RETURN(const bool bias, boolField(j, "attention_bias", src, false));
    c.attentionBias = c.arch == Architecture::Qwen2 || bias;
    c.qkNorm = c.arch == Architecture::Qwen3;
    c.ropeStyle = RopeStyle::NeoX;
    c.bosTokenId = tokenIdField(j, "bos_token_id");
    c.eosTokenId = tokenIdField(j, "eos_token_id");
    if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null())
        return unsupported(src + ": rope_scaling " + rs->dump() + " is not supported");
    MSA_RETURN_IF_ERROR(checkShapes(c, src));

    auto mc = j.find("msa_config");
    if (c.modelType == "msa" && (mc == j.end() || mc->is_null()))
        return notFound(src + ": model_type 'msa' but no msa_config");
    if (mc != j.end() && !mc->is_null()) {
        MSA_ASSIGN_OR_RETURN(MsaSettings s, msaFromJson(*mc, c.nLayers, src));
        c.msa = std::move(s);
    }
    return c;
}

Result<ModelConfig> configFromGguf(const GgufFile& g) {
    const std::string src = "'" + g.path().string() + "'";
    MSA_ASSIGN_OR_RETURN(std::string a, g.getString("general.architecture"));
    ModelConfig c;
    c.modelType = a;
    if (a == "llama") c.arch = Architecture::Llama;
    else if (a == "qwen2") c.arch = Architecture::Qwen2;
    else if (a == "qwen3") c.arch = Architecture::Qwen3;
    else return unsupported(src + ": architecture '" + a + "' is not supported (llama, qwen2, qwen3)");

    auto req = [&](const std::string& key) -> Result<int> {
        MSA_ASSIGN_OR_RETURN(uint32_t v, g.getU32(a + "." + key));
        if (v == 0 || v > static_cast<uint32_t>(std::numeric_limits<int>::max()))
            return corrupt(src + ": metadata '" + a + "." + key + "' has the impossible value " + std::to_string(v));
        return static_cast<int>(v);
    };
    auto opt = [&](const std::string& key, int fallback) -> Result<int> {
        if (!g.find(a + "." + key)) return fallback;
        return req(key);
    };
    MSA_ASSIGN_OR_RETURN(c.nLayers, req("block_count"));
    MSA_ASSIGN_OR_RETURN(c.nHeads, req("attention.head_count"));
    MSA_ASSIGN_OR_RETURN(c.nKvHeads, opt("attention.head_count_kv", c.nHeads));   // llama.cpp default
    MSA_ASSIGN_OR_RETURN(c.hiddenSize, req("embedding_length"));
    MSA_ASSIGN_OR_RETURN(c.ffnSize, req("feed_forward_length"));
    MSA_ASSIGN_OR_RETURN(c.headDim, opt("attention.key_length", c.hiddenSize / c.nHeads));   // llama.cpp default
    MSA_ASSIGN_OR_RETURN(const int ctx, req("context_length"));
    c.contextLength = ctx;
    if (g.find(a + ".vocab_size")) {
        MSA_ASSIGN_OR_RETURN(c.vocabSize, req("vocab_size"));
    } else if (const GgufTensorInfo* e = g.findTensor("token_embd.weight"); e && e->shape.size() == 2) {
        // Older converters omit vocab_size; llama.cpp then takes the embedding's row count.
        c.vocabSize = static_cast<int>(std::min<uint64_t>(e->shape[1], std::numeric_limits<int>::max()));
    } else {
        return notFound(src + ": neither metadata '" + a + ".vocab_size' nor tensor 'token_embd.weight'");
    }
    if (g.find(a + ".rope.freq_base")) {
        MSA_ASSIGN_OR_RETURN(const float theta, g.getF32(a + ".rope.freq_base"));
        if (!(theta > 0)) return corrupt(src + ": metadata '" + a + ".rope.freq_base' is not positive");
        c.ropeTheta = theta;
    } else {
        c.ropeTheta = 10000.0;   // llama.cpp's default when the key is absent
    }
    MSA_ASSIGN_OR_RETURN(c.rmsNormEps, g.getF32(a + ".attention.layer_norm_rms_epsilon"));
    if (!(c.rmsNormEps > 0)) return corrupt(src + ": metadata '" + a + ".attention.layer_norm_rms_epsilon' is not positive");
    if (g.find(a + ".rope.scaling.type")) {
        MSA_ASSIGN_OR_RETURN(std::string st, g.getString(a + ".rope.scaling.type"));
        if (st != "none") return unsupported(src + ": rope scaling '" + st + "' is not supported");
    }
    if (g.find(a + ".rope.dimension_count")) {
        MSA_ASSIGN_OR_RETURN(uint32_t rd, g.getU32(a + ".rope.dimension_count"));
        if (static_cast<int>(rd) != c.headDim)
            return unsupported(src + ": partial RoPE (" + std::to_string(rd) + " of " + std::to_string(c.headDim) +
                               " dimensions) is not supported");
    }
    c.tieWordEmbeddings = g.findTensor("output.weight") == nullptr;
    c.attentionBias = g.findTensor("blk.0.attn_q.bias") != nullptr;
    c.qkNorm = c.arch == Architecture::Qwen3;
    c.ropeStyle = c.arch == Architecture::Llama ? RopeStyle::Interleaved : RopeStyle::NeoX;
    if (g.find("tokenizer.ggml.bos_token_id")) {
        MSA_ASSIGN_OR_RETURN(uint32_t v, g.getU32("tokenizer.ggml.bos_token_id"));
        c.bosTokenId = static_cast<int>(std::min<uint32_t>(v, std::numeric_limits<int>::max()));
    }
    if (g.find("tokenizer.ggml.eos_token_id")) {
        MSA_ASSIGN_OR_RETURN(uint32_t v, g.getU32("tokenizer.ggml.eos_token_id"));
        c.eosTokenId = static_cast<int>(std::min<uint32_t>(v, std::numeric_limits<int>::max()));
    }
    MSA_RETURN_IF_ERROR(checkShapes(c, src));
    return c;
}

json ModelConfig::toJson() const {
    json j = {
        {"architecture", std::string(architectureName(arch))},
        {"model_type", modelType},
        {"n_layers", nLayers},
        {"n_heads", nHeads},
        {"n_kv_heads", nKvHeads},
        {"head_dim", headDim},
        {"hidden_size", hiddenSize},
        {"ffn_size", ffnSize},
        {"vocab_size", vocabSize},
        {"context_length", contextLength},
        {"rope_theta", ropeTheta},
        {"rms_norm_eps", rmsNormEps},
        {"rope_style", std::string(ropeStyleName(ropeStyle))},
        {"attention_bias", attentionBias},
        {"qk_norm", qkNorm},
        {"tie_word_embeddings", tieWordEmbeddings},
    };
    j["bos_token_id"] = bosTokenId ? json(*bosTokenId) : json(nullptr);
    j["eos_token_id"] = eosTokenId ? json(*eosTokenId) : json(nullptr);
    if (msa) {
        json m = {{"router_layers", msa->routerLayers},
                  {"router_layer_idx", msa->routerLayerSpec},
                  {"doc_top_k", msa->docTopK},
                  {"decouple_router", msa->decoupleRouter},
                  {"aux_loss_method", msa->auxLossMethod},
                  {"head_reduce_method", msa->headReduceMethod},
                  {"query_reduce_method", msa->queryReduceMethod},
                  {"chunk_reduce_method", msa->chunkReduceMethod}};
        m["top_k_docs"] = msa->topKDocs ? json(*msa->topKDocs) : json(nullptr);
        m["pooling_kernel_size"] = msa->poolingKernelSize ? json(*msa->poolingKernelSize) : json(nullptr);
        j["msa"] = std::move(m);
    }
    return j;
}

std::string ModelConfig::canonicalJson() const { return toJson().dump(); }   // std::map keys: sorted

}  // namespace msa::model

// model_files.cpp: format detection, canonical naming, the architecture's tensor checklist, routing
// mode and the fingerprint.
#include "core/model/model_files.h"

#include "core/model/gguf_file.h"
#include "core/model/safetensors_file.h"
#include "core/util/file_map.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <system_error>

namespace msa::model {

namespace fs = std::filesystem;

namespace {

std::string shapeText(std::span<const uint64_t> s) {
    std::string t = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) t += ", ";
        t += std::to_string(s[i]);
    }
    return t + "]";
}

struct LayerName {
    std::string_view hf;
    std::string_view canonical;
};

constexpr LayerName kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"self_attn.router_q_proj.0.weight", "router_q.weight"},
    {"self_attn.router_k_proj.0.weight", "router_k.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

// configFromHfJson checks every JSON type before reading it; this is the module boundary for anything
// nlohmann_json might still throw (bad_alloc included).
Result<ModelConfig> configFromHfJsonNoThrow(const nlohmann::json& j, const fs::path& configPath) {
    try {
        return configFromHfJson(j, "'" + configPath.string() + "'");
    } catch (const std::exception& e) {
        return Status::fromException(e, "'" + configPath.string() + "'");
    }
}

}  // namespace

uint64_t TensorView::nRows() const {
    uint64_t n = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
    return n;
}

const TensorView* TensorSource::find(std::string_view canonicalName) const {
    auto it = m_index.find(std::string(canonicalName));
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

void TensorSource::add(TensorView view) {
    m_index.emplace(view.name, m_tensors.size());
    m_tensors.push_back(std::move(view));
}

std::string canonicalTensorName(std::string_view hf) {
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    constexpr std::string_view prefix = "model.layers.";
    if (!hf.starts_with(prefix)) return {};
    hf.remove_prefix(prefix.size());
    unsigned layer = 0;
    auto r = std::from_chars(hf.data(), hf.data() + hf.size(), layer);
    if (r.ec != std::errc() || r.ptr == hf.data() || r.ptr == hf.data() + hf.size() || *r.ptr != '.') return {};
    const std::string_view rest(r.ptr + 1, static_cast<size_t>(hf.data() + hf.size() - (r.ptr + 1)));
    for (const LayerName& n : kLayerNames)
        if (rest == n.hf) return "blk." + std::to_string(layer) + "." + std::string(n.canonical);
    return {};
}

std::string_view routingModeName(RoutingMode m) { return m == RoutingMode::MsaTrained ? "msa-trained" : "training-free"; }

ModelFiles::~ModelFiles() = default;

Result<std::unique_ptr<ModelFiles>> ModelFiles::open(const fs::path& pathIn) {
    std::error_code ec;
    fs::path path = pathIn;
    if (!fs::exists(path, ec)) return notFound("model '" + path.string() + "' does not exist");
    if (fs::is_regular_file(path, ec) && path.filename() == "config.json") path = path.parent_path();

    std::unique_ptr<ModelFiles> m(new ModelFiles());
    m->m_path = path;
    if (fs::is_directory(path, ec)) {
        m->m_format = ModelFormat::HuggingFace;
        const fs::path configPath = path / "config.json";
        if (!fs::exists(configPath, ec)) return notFound("'" + path.string() + "': no config.json in the model folder");
        MSA_ASSIGN_OR_RETURN(FileMapping cm, FileMapping::open(configPath));
        const auto* b = reinterpret_cast<const char*>(cm.data());
        nlohmann::json cj;
        try {
            cj = nlohmann::json::parse(b, b + cm.size(), nullptr, false);
        } catch (const std::exception& e) {
            return Status::fromException(e, "'" + configPath.string() + "'");
        }
        if (cj.is_discarded()) return corrupt("'" + configPath.string() + "': not valid JSON");
        MSA_ASSIGN_OR_RETURN(m->m_config, configFromHfJsonNoThrow(cj, configPath));

        fs::path weights;
        if (fs::exists(path / "model.safetensors.index.json", ec)) {
            weights = path / "model.safetensors.index.json";
        } else if (fs::exists(path / "model.safetensors", ec)) {
            weights = path / "model.safetensors";
        } else {
            std::vector<fs::path> found;
            for (const fs::directory_entry& e : fs::directory_iterator(path, ec))
                if (e.path().extension() == ".safetensors") found.push_back(e.path());
            if (found.size() != 1)
                return notFound("'" + path.string() + "': no model.safetensors or model.safetensors.index.json" +
                                (found.empty() ? std::string() : " (and several other .safetensors files)"));
            weights = found[0];
        }
        MSA_ASSIGN_OR_RETURN(SafetensorsSet set, SafetensorsSet::open(weights));
        m->m_safetensors = std::make_unique<SafetensorsSet>(std::move(set));
        for (const SafetensorsTensor* t : m->m_safetensors->tensors()) {
            TensorView v;
            v.fileName = t->name;
            v.name = canonicalTensorName(t->name);
            if (v.name.empty()) v.name = t->name;
            if (m->m_tensors.find(v.name))
                return corrupt("'" + t->file->string() + "': tensors '" + t->name + "' and '" +
                               m->m_tensors.find(v.name)->fileName + "' both map to '" + v.name + "'");
            v.dtype = t->dtype;
            v.shape = t->shape;
            v.bytes = t->data;
            m->m_tensors.add(std::move(v));
        }
        m->m_tokenizerJson = path / "tokenizer.json";
        if (!fs::exists(m->m_tokenizerJson, ec))
            return notFound("'" + path.string() + "': no tokenizer.json in the model folder");
    } else if (path.extension() == ".safetensors" || path.extension() == ".json") {
        return invalidArgument("'" + path.string() + "' is part of a Hugging Face model: pass its folder");
    } else {
        m->m_format = ModelFormat::Gguf;
        MSA_ASSIGN_OR_RETURN(GgufFile g, GgufFile::open(path));
        m->m_gguf = std::make_unique<GgufFile>(std::move(g));
        MSA_ASSIGN_OR_RETURN(m->m_config, configFromGguf(*m->m_gguf));
        for (const GgufTensorInfo& t : m->m_gguf->tensors()) {
            TensorView v;
            v.name = std::string(t.name);
            v.fileName = v.name;
            v.dtype = t.dtype;
            v.shape.assign(t.shape.rbegin(), t.shape.rend());
            v.bytes = t.data;
            m->m_tensors.add(std::move(v));
        }
        if (!m->m_gguf->find("tokenizer.ggml.tokens"))
            return notFound("'" + path.string() + "': no tokenizer (metadata 'tokenizer.ggml.tokens' is missing)");
    }
    MSA_RETURN_IF_ERROR(m->validateTensors());
    MSA_RETURN_IF_ERROR(m->computeFingerprint());
    return m;
}

Status ModelFiles::validateTensors() {
    const ModelConfig& c = m_config;
    const auto H = static_cast<uint64_t>(c.hiddenSize), F = static_cast<uint64_t>(c.ffnSize),
               V = static_cast<uint64_t>(c.vocabSize), D = static_cast<uint64_t>(c.headDim);
    const uint64_t Q = static_cast<uint64_t>(c.nHeads) * D, KV = static_cast<uint64_t>(c.nKvHeads) * D;
    const std::string where = "'" + m_path.string() + "'";

    auto check = [&](const std::string& name, std::initializer_list<uint64_t> shape, bool required) -> Status {
        const TensorView* t = m_tensors.find(name);
        if (!t) {
            if (!required) return Status::ok();
            return notFound(where + ": tensor '" + name + "' required by " + std::string(architectureName(c.arch)) +
                            " is missing");
        }
        const std::vector<uint64_t> want(shape);
        if (t->shape != want)
            return {ErrorCode::Mismatch, where + ": tensor '" + t->fileName + "' has shape " + shapeText(t->shape) +
                                             ", the config needs " + shapeText(want)};
        return Status::ok();
    };

    MSA_RETURN_IF_ERROR(check("token_embd.weight", {V, H}, true));
    MSA_RETURN_IF_ERROR(check("output_norm.weight", {H}, true));
    MSA_RETURN_IF_ERROR(check("output.weight", {V, H}, false));
    m_config.tieWordEmbeddings = m_tensors.find("output.weight") == nullptr;   // tie when lm_head is absent

    m_routerLayers.clear();
    for (int l = 0; l < c.nLayers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        MSA_RETURN_IF_ERROR(check(p + "attn_norm.weight", {H}, true));
        MSA_RETURN_IF_ERROR(check(p + "attn_q.weight", {Q, H}, true));
        MSA_RETURN_IF_ERROR(check(p + "attn_k.weight", {KV, H}, true));
        MSA_RETURN_IF_ERROR(check(p + "attn_v.weight", {KV, H}, true));
        MSA_RETURN_IF_ERROR(check(p + "attn_output.weight", {H, Q}, true));
        MSA_RETURN_IF_ERROR(check(p + "ffn_norm.weight", {H}, true));
        MSA_RETURN_IF_ERROR(check(p + "ffn_gate.weight", {F, H}, true));
        MSA_RETURN_IF_ERROR(check(p + "ffn_up.weight", {F, H}, true));
        MSA_RETURN_IF_ERROR(check(p + "ffn_down.weight", {H, F}, true));
        MSA_RETURN_IF_ERROR(check(p + "attn_q.bias", {Q}, c.attentionBias));
        MSA_RETURN_IF_ERROR(check(p + "attn_k.bias", {KV}, c.attentionBias));
        MSA_RETURN_IF_ERROR(check(p + "attn_v.bias", {KV}, c.attentionBias));
        MSA_RETURN_IF_ERROR(check(p + "attn_q_norm.weight", {D}, c.qkNorm));
        MSA_RETURN_IF_ERROR(check(p + "attn_k_norm.weight", {D}, c.qkNorm));
        const bool hasQ = m_tensors.find(p + "router_q.weight") != nullptr;
        const bool hasK = m_tensors.find(p + "router_k.weight") != nullptr;
        if (hasQ || hasK) {
            // A router layer needs both projectors (msa-spec §1.5); one alone is a broken checkpoint.
            MSA_RETURN_IF_ERROR(check(p + "router_q.weight", {Q, H}, true));
            MSA_RETURN_IF_ERROR(check(p + "router_k.weight", {KV, H}, true));
            m_routerLayers.push_back(l);
        }
    }
    if (c.msa && c.msa->decoupleRouter) {
        for (int l : c.msa->routerLayers)
            if (!std::binary_search(m_routerLayers.begin(), m_routerLayers.end(), l))
                return notFound(where + ": msa_config routes at layer " + std::to_string(l) + " but tensor 'blk." +
                                std::to_string(l) + ".router_q.weight' (HF 'model.layers." + std::to_string(l) +
                                ".self_attn.router_q_proj.0.weight') is missing");
        for (int l : m_routerLayers)
            if (!std::binary_search(c.msa->routerLayers.begin(), c.msa->routerLayers.end(), l))
                return {ErrorCode::Mismatch, where + ": layer " + std::to_string(l) +
                                                 " has router tensors but msa_config.router_layer_idx '" +
                                                 c.msa->routerLayerSpec + "' does not list it"};
    }
    m_routing = m_routerLayers.empty() ? RoutingMode::TrainingFree : RoutingMode::MsaTrained;
    return Status::ok();
}

Status ModelFiles::computeFingerprint() {
    Hasher h;
    h.update(std::string_view("msa-model-fingerprint-v1\n"));
    h.update(m_config.canonicalJson());
    h.update(std::string_view("\ntensors\n"));
    std::vector<const TensorView*> sorted;
    for (const TensorView& t : m_tensors.all()) sorted.push_back(&t);
    std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->name < b->name; });
    for (const TensorView* t : sorted) {
        std::string line = t->name;
        line += '\t';
        line += dtypeName(t->dtype);
        line += '\t';
        line += shapeText(t->shape);
        line += '\n';
        h.update(line);
    }
    h.update(std::string_view("tokenizer\n"));
    if (m_gguf) {
        for (const GgufKeyValue& kv : m_gguf->metadata())
            if (kv.key.starts_with("tokenizer.")) h.update(kv.raw);
    } else {
        for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
            const fs::path p = m_path / name;
            std::error_code ec;
            if (!fs::exists(p, ec)) continue;
            MSA_ASSIGN_OR_RETURN(FileMapping f, FileMapping::open(p));
            h.update(std::string_view(name));
            h.update(f.bytes());
        }
    }
    m_fingerprint = h.digest128();
    return Status::ok();
}

std::map<std::string, ModelFiles::DTypeTotals> ModelFiles::totalsByDtype() const {
    std::map<std::string, DTypeTotals> out;
    for (const TensorView& t : m_tensors.all()) {
        DTypeTotals& d = out[std::string(dtypeName(t.dtype))];
        ++d.nTensors;
        d.nBytes += t.bytes.size();
        d.nElements += t.nElements();
    }
    return out;
}

uint64_t ModelFiles::totalBytes() const {
    uint64_t n = 0;
    for (const TensorView& t : m_tensors.all()) n += t.bytes.size();
    return n;
}

}  // namespace msa::model

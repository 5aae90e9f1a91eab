// model_config.h: a model's hyper-parameters, read from a Hugging Face config.json or GGUF metadata.
//
// Architectures: Llama (SmolLM2), Qwen2 (QKV bias), Qwen3 (QK-norm) and MSA checkpoints
// (`model_type: "msa"`, a Qwen3 backbone plus `msa_config`, ../shared/msa-spec.md §1), which load as
// Qwen3 with their MSA settings kept in `msa`. Every value comes from the file. Where a key is absent
// the default is the one the reference implementation (transformers / llama.cpp) applies for that
// architecture, named in the code next to it (e.g. rope_theta 10000 for Llama); no model size is
// assumed anywhere.
//
// Ownership/threads: plain value type.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(ModelConfig c, configFromHfJson(json, "config.json"));
//     int qRows = c.nHeads * c.headDim;
//
// Failure codes: Corrupt (config.json is not JSON / a field has the wrong JSON type or an impossible
// value such as 0 heads or heads not dividing the KV heads), NotFound (a required field is missing,
// naming it), Unsupported (an architecture other than llama/qwen2/qwen3/msa).
#pragma once

#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace msa::model {

class GgufFile;

enum class Architecture { Llama, Qwen2, Qwen3 };
std::string_view architectureName(Architecture a);   // "llama", "qwen2", "qwen3"

// How RoPE pairs dimensions. Hugging Face checkpoints use rotate-half (NeoX) for all three
// architectures; llama.cpp's converter permutes the rows of Llama's Q/K weights so that GGUF Llama
// files use adjacent pairs (GGML "normal" rope) while Qwen GGUF files keep NeoX.
enum class RopeStyle { NeoX, Interleaved };
std::string_view ropeStyleName(RopeStyle s);

// `msa_config` (msa-spec §1.3). Keys absent from the file read as the defaults listed there for
// inference (doc_top_k 16) or stay empty (their absence is visible to the caller).
struct MsaSettings {
    std::vector<int> routerLayers;          // resolved from router_layer_idx ("all" or "18,19,...")
    std::string routerLayerSpec;            // as written
    int docTopK = 16;                       // `doc_top_k`, default 16 (msa-spec §1.3)
    std::optional<int> topKDocs;            // `top_k_docs` (training only)
    std::optional<int> poolingKernelSize;   // `pooling_kernel_size` (chunk size P)
    bool decoupleRouter = false;
    std::string auxLossMethod, headReduceMethod, queryReduceMethod, chunkReduceMethod;
};

struct ModelConfig {
    Architecture arch = Architecture::Llama;
    std::string modelType;          // as written: "llama", "qwen2", "qwen3", "msa"
    int nLayers = 0;
    int nHeads = 0;
    int nKvHeads = 0;
    int headDim = 0;
    int hiddenSize = 0;
    int ffnSize = 0;
    int vocabSize = 0;
    int64_t contextLength = 0;
    double ropeTheta = 0;
    float rmsNormEps = 0;
    RopeStyle ropeStyle = RopeStyle::NeoX;
    bool attentionBias = false;     // Qwen2: bias on q/k/v projections
    bool qkNorm = false;            // Qwen3: per-head RMSNorm on Q and K
    bool tieWordEmbeddings = false; // as declared; ModelFiles resolves it against the tensors present
    std::optional<int> bosTokenId, eosTokenId;
    std::optional<MsaSettings> msa; // present for model_type "msa"

    // A canonical JSON text of every field above (sorted keys): an input of the model fingerprint.
    std::string canonicalJson() const;
    nlohmann::json toJson() const;
};

Result<ModelConfig> configFromHfJson(const nlohmann::json& config, const std::string& source);
Result<ModelConfig> configFromGguf(const GgufFile& gguf);

// "all" -> 0..nLayers-1; "18,19,20" -> those; ranges "18-35" are accepted too.
Result<std::vector<int>> parseRouterLayers(const std::string& spec, int nLayers);

}  // namespace msa::model

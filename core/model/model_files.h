// model_files.h: opening a model (a .gguf file or a Hugging Face folder) as one validated unit:
// hyper-parameters, the tensors under canonical names, the tokenizer's source, routing mode and the
// model fingerprint. The CPU/GPU forward passes read weights through TensorSource only, so they never
// care which file format a tensor came from.
//
// Canonical tensor names (GGUF spelling, which is short and architecture-neutral):
//   token_embd.weight, output_norm.weight, output.weight (absent when tied),
//   blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q_norm, attn_k_norm,
//          ffn_norm, ffn_gate, ffn_up, ffn_down}.weight, blk.N.attn_{q,k,v}.bias,
//   blk.N.router_q.weight, blk.N.router_k.weight (MSA: HF `...self_attn.router_{q,k}_proj.0.weight`).
// HF names map as model.embed_tokens -> token_embd, model.norm -> output_norm, lm_head -> output,
// model.layers.N.input_layernorm -> blk.N.attn_norm, self_attn.{q,k,v,o}_proj -> attn_{q,k,v,output},
// self_attn.{q,k}_norm -> attn_{q,k}_norm, post_attention_layernorm -> ffn_norm,
// mlp.{gate,up,down}_proj -> ffn_{gate,up,down}. Tensors with no canonical meaning (e.g. MSA's
// `temperature`) are kept under their file name.
//
// Canonical shapes are row-major, outermost first (PyTorch order): a linear weight is
// [outFeatures, inFeatures], so shape.back() is the row length that dotRow() takes. GGUF's reversed
// dimension order is undone here. NOTE for Llama GGUF files: llama.cpp's converter permuted the rows
// of attn_q/attn_k for adjacent-pair RoPE; ModelConfig::ropeStyle says which RoPE the weights expect.
//
// Validation at open(): the config must parse, every tensor the architecture needs must exist
// (NotFound naming it) with the expected shape (Mismatch naming it, the expected and found shapes),
// and the tokenizer must be present (tokenizer.json beside config.json, or tokenizer.ggml.tokens).
//
// Fingerprint: xxh3-128 over "msa-model-fingerprint-v1", the canonical config JSON, the tensor table
// (canonical names sorted, with dtype and shape) and the tokenizer (tokenizer.json bytes, plus
// tokenizer_config.json when present; for GGUF the raw bytes of every tokenizer.* metadata entry).
// It identifies what the model computes and how it tokenizes, not the weight values (hashing
// gigabytes at every load would cost seconds); a memory bank stores it to refuse a different model.
//
// Ownership: ModelFiles owns the mappings; TensorView spans stay valid while it lives. Immutable
// after open(): share it read-only between threads.
//
// Failure codes of open(): InvalidArgument (a .safetensors/.json file other than config.json was given
// instead of its folder), NotFound (path, config.json, tokenizer, a required tensor), Corrupt and
// Unsupported (from the file readers and the config), Mismatch (a tensor's shape or an inconsistent
// routing setup), PermissionDenied / IoError.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(std::unique_ptr<ModelFiles> m, ModelFiles::open(path));
//     const TensorView& wq = *m->tensors().find("blk.0.attn_q.weight");
//     float y = dotRow(wq.dtype, wq.row(i), x, wq.rowLength());
#pragma once

#include "core/model/dtype.h"
#include "core/model/model_config.h"
#include "core/util/checksum.h"
#include "core/util/status.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace msa::model {

class GgufFile;
class SafetensorsSet;

struct TensorView {
    std::string name;                  // canonical
    std::string fileName;              // as stored in the file
    DType dtype = DType::F32;
    std::vector<uint64_t> shape;       // row-major, outermost first
    std::span<const std::byte> bytes;  // validated against shape and dtype

    uint64_t rowLength() const { return shape.empty() ? 1 : shape.back(); }
    uint64_t nRows() const;
    uint64_t nElements() const { return nRows() * rowLength(); }
    uint64_t rowBytes() const { return rowLength() / dtypeInfo(dtype).blockElems * dtypeInfo(dtype).blockBytes; }
    const std::byte* row(uint64_t i) const { return bytes.data() + i * rowBytes(); }
};

// Canonical-name lookup over whichever file(s) hold the weights.
class TensorSource {
public:
    const TensorView* find(std::string_view canonicalName) const;
    const std::vector<TensorView>& all() const { return m_tensors; }
    void add(TensorView view);

private:
    std::vector<TensorView> m_tensors;
    std::unordered_map<std::string, size_t> m_index;
};

// HF name -> canonical name ("" when it is not a known model tensor, then the HF name is kept).
std::string canonicalTensorName(std::string_view hfName);

enum class ModelFormat { Gguf, HuggingFace };
enum class RoutingMode { MsaTrained, TrainingFree };
std::string_view routingModeName(RoutingMode m);   // "msa-trained", "training-free"

class ModelFiles {
public:
    ~ModelFiles();
    ModelFiles(const ModelFiles&) = delete;
    ModelFiles& operator=(const ModelFiles&) = delete;

    // `path`: a .gguf file, a HF folder (config.json + model.safetensors[.index.json] + tokenizer.json)
    // or a config.json inside one.
    static Result<std::unique_ptr<ModelFiles>> open(const std::filesystem::path& path);

    const std::filesystem::path& path() const { return m_path; }
    ModelFormat format() const { return m_format; }
    const ModelConfig& config() const { return m_config; }
    const TensorSource& tensors() const { return m_tensors; }
    RoutingMode routingMode() const { return m_routing; }
    const std::vector<int>& routerLayers() const { return m_routerLayers; }   // layers with router tensors
    const Digest128& fingerprint() const { return m_fingerprint; }

    // The tokenizer's source: for HF, tokenizer.json's path; for GGUF, the GgufFile (metadata).
    const std::filesystem::path& tokenizerJsonPath() const { return m_tokenizerJson; }
    const GgufFile* gguf() const { return m_gguf.get(); }

    // Bytes and tensor counts per dtype, for `msa info`.
    struct DTypeTotals { uint64_t nTensors = 0, nBytes = 0, nElements = 0; };
    std::map<std::string, DTypeTotals> totalsByDtype() const;
    uint64_t totalBytes() const;

private:
    ModelFiles() = default;
    Status validateTensors();
    Status computeFingerprint();

    std::filesystem::path m_path;
    ModelFormat m_format = ModelFormat::Gguf;
    ModelConfig m_config;
    TensorSource m_tensors;
    RoutingMode m_routing = RoutingMode::TrainingFree;
    std::vector<int> m_routerLayers;
    Digest128 m_fingerprint;
    std::filesystem::path m_tokenizerJson;
    std::unique_ptr<GgufFile> m_gguf;
    std::unique_ptr<SafetensorsSet> m_safetensors;
};

}  // namespace msa::model

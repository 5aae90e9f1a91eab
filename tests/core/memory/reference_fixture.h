// reference_fixture.h: reads the golden outputs of the OFFICIAL MSA reference code
// (tests/fixtures/msa-reference/<branch>/golden.json + data.bin, written by
// tests/tools/msa_reference_golden.py; format in tests/fixtures/msa-reference/README.md) into plain
// structs, for any test that wants parity with the reference (encoder, router, sparse generation,
// Memory Interleave).
//
// Ownership/threads: ReferenceFixture is a value that owns everything it read (the arrays are
// converted to f32 on access); use it from one thread or share it read-only.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(msa::testing::ReferenceFixture fx, msa::testing::ReferenceFixture::load(dir / "dot"));
//     std::vector<float> k = fx.array("doc/3/k/2").value().data;   // [nChunks][nKvHeads][headDim]
//     const auto& r0 = fx.interleave.rounds[0];                       // prompt ids, mask, top-k, forcing script
//
// Failure codes: load(): NotFound (missing file), InvalidArgument (malformed JSON, array outside
// data.bin, unknown dtype). array(): NotFound (no array of that name).
#pragma once

#include "core/model/dtype.h"
#include "core/util/status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace msa::testing {

struct RefArray {
    std::string dtype;              // dtype stored in data.bin ("bf16" or "f32"); data is always f32
    std::vector<size_t> shape;
    std::vector<float> data;
    size_t size() const { return data.size(); }
};

struct RefTopK {
    std::vector<int64_t> ids;       // recall_topk.topk_doc_ids: global document ids, reference order
    std::vector<float> scores;      // bf16 values
};

// One call of the logits processor = one decoding-loop step of src/msa/generate.py (prefill included).
struct RefProcessorCall {
    int32_t argmax = -1;                // argmax of the REAL logits (lowest index on ties)
    std::optional<int32_t> forced;      // the scripted token that replaced the real pick, if any
    std::vector<int32_t> top5Ids;
    std::vector<float> top5Values;
};

// One model forward inside the call, as the reference fed it.
struct RefForward {
    std::string stage;                  // "prefill_stage2" or "generate"
    std::vector<int32_t> inputIds, positions, attentionMask;
};

struct RefCall {
    std::string prefix;                 // array-name prefix: "greedy", "interleave/round0", ...
    std::string prompt;                 // the prompt string given to MSAEngine.generate
    std::vector<int32_t> inputIds;      // prompt ids after the template (no template head)
    std::vector<int32_t> docIds;        // the reference's doc_ids per prompt token
    std::vector<uint8_t> routingMask;   // 1 where doc_id == 0
    std::vector<int32_t> positions;     // 3 + k, 4 + k, ...
    std::map<int, RefTopK> recallTopk;  // per routing layer
    std::vector<RefForward> forwards;
    std::vector<RefProcessorCall> processorCalls;
    std::vector<int32_t> selectedTokens;   // per processor call: forced or argmax
    std::vector<std::optional<int32_t>> script;   // forcing script (interleave rounds), nullopt = greedy
    std::string outputText;             // tokenizer.batch_decode of the returned ids (special tokens kept)
    std::vector<int32_t> outputIds;
    std::string response;               // after app/benchmark.py's surgery (interleave rounds)
    std::optional<std::string> nextPrompt;   // "<regenerate>..." or none (the loop ends)
};

struct RefDocument {
    int64_t id = 0;
    std::string text, wrapped;
    std::vector<int32_t> ids;
    size_t nChunks = 0, firstChunk = 0;
};

struct ReferenceFixture {
    std::filesystem::path dir;
    nlohmann::json json;                // everything, for fields without a struct member
    std::string branch, auxLossMethod;
    double scaling = 0;                 // query scale; -1 = cosine (no scale)
    size_t docTopK = 0, poolingKernelSize = 0;
    std::vector<int> routerLayers;
    std::vector<int32_t> templateHeadIds;
    int32_t queryPositionStart = 0;
    std::vector<RefDocument> documents;
    RefCall greedy;
    std::vector<RefCall> rounds;        // the interleave rounds
    std::string question, finalResponse, answer;
    std::map<std::string, double> topkMargins;   // "<prefix>/<layer>" -> gap k-th/(k+1)-th in bf16 ulps
    // The f32 shadow run (same code, model in float32): per call prefix and routing layer its top-k,
    // and its boundary margins (same keys as topkMargins).
    std::map<std::string, std::map<int, RefTopK>> shadowTopk;
    std::map<std::string, double> shadowTopkMargins;

    bool has(const std::string& name) const { return json["arrays"].contains(name); }

    Result<RefArray> array(const std::string& name) const {
        const auto& idx = json["arrays"];
        if (!idx.contains(name)) return Status(ErrorCode::NotFound, "no array '" + name + "' in " + (dir / "golden.json").string());
        const auto& e = idx[name];
        RefArray a;
        a.dtype = e["dtype"].get<std::string>();
        size_t n = 1;
        for (const auto& d : e["shape"]) {
            a.shape.push_back(d.get<size_t>());
            n *= a.shape.back();
        }
        const size_t off = e["offset"].get<size_t>();
        const size_t width = a.dtype == "bf16" ? 2 : a.dtype == "f32" ? 4 : 0;
        if (width == 0) return Status(ErrorCode::InvalidArgument, "array '" + name + "': unknown dtype " + a.dtype);
        if (off + n * width > m_blob.size())
            return Status(ErrorCode::InvalidArgument, "array '" + name + "' lies outside " + (dir / "data.bin").string());
        a.data.resize(n);
        for (size_t i = 0; i < n; ++i) {
            const unsigned char* p = m_blob.data() + off + i * width;
            if (width == 2) {
                a.data[i] = model::bf16ToF32(uint16_t(p[0] | (p[1] << 8)));
            } else {
                const uint32_t u = uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
                std::memcpy(&a.data[i], &u, 4);
            }
        }
        return a;
    }

    static Result<ReferenceFixture> load(const std::filesystem::path& dir) {
        ReferenceFixture f;
        f.dir = dir;
        std::ifstream js(dir / "golden.json");
        if (!js) return Status(ErrorCode::NotFound, "cannot open " + (dir / "golden.json").string());
        std::ifstream bin(dir / "data.bin", std::ios::binary);
        if (!bin) return Status(ErrorCode::NotFound, "cannot open " + (dir / "data.bin").string());
        f.m_blob.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
        try {
            f.json = nlohmann::json::parse(js);
            const auto& j = f.json;
            f.branch = j["branch"];
            f.auxLossMethod = j["aux_loss_method"];
            f.scaling = j["scaling"];
            f.docTopK = j["doc_top_k"];
            f.poolingKernelSize = j["pooling_kernel_size"];
            f.routerLayers = j["router_layers"].get<std::vector<int>>();
            f.templateHeadIds = j["template_head_ids"].get<std::vector<int32_t>>();
            f.queryPositionStart = j["query_position_start"];
            for (const auto& d : j["documents"]) {
                f.documents.push_back({d["id"], d["text"], d["wrapped"], d["ids"].get<std::vector<int32_t>>(), d["n_chunks"],
                                       d["first_chunk"]});
            }
            f.greedy = parseCall(j["greedy"], "greedy");
            const auto& il = j["interleave"];
            for (size_t r = 0; r < il["rounds"].size(); ++r)
                f.rounds.push_back(parseCall(il["rounds"][r], "interleave/round" + std::to_string(r)));
            f.question = il["question"];
            f.finalResponse = il["final_response"];
            f.answer = il["answer"];
            for (const auto& [k, v] : j["topk_boundary_margin_bf16_ulps"].items()) f.topkMargins[k] = v.get<double>();
            const auto& sh = j["f32_shadow"];
            for (const auto& [call, layers] : sh["recall_topk"].items())
                for (const auto& [layer, t] : layers.items())
                    f.shadowTopk[call][std::stoi(layer)] = {t["ids"].get<std::vector<int64_t>>(), t["scores"].get<std::vector<float>>()};
            for (const auto& [k, v] : sh["topk_boundary_margin_bf16_ulps"].items()) f.shadowTopkMargins[k] = v.get<double>();
        } catch (const std::exception& e) {
            return Status(ErrorCode::InvalidArgument, (dir / "golden.json").string() + ": " + e.what());
        }
        return f;
    }

private:
    std::vector<unsigned char> m_blob;

    static RefCall parseCall(const nlohmann::json& c, const std::string& prefix) {
        RefCall r;
        r.prefix = prefix;
        r.prompt = c["prompt"];
        r.inputIds = c["input_ids"].get<std::vector<int32_t>>();
        r.docIds = c["doc_ids"].get<std::vector<int32_t>>();
        for (int m : c["routing_mask"].get<std::vector<int>>()) r.routingMask.push_back(uint8_t(m));
        r.positions = c["positions"].get<std::vector<int32_t>>();
        for (const auto& [layer, t] : c["recall_topk"].items())
            r.recallTopk[std::stoi(layer)] = {t["ids"].get<std::vector<int64_t>>(), t["scores"].get<std::vector<float>>()};
        for (const auto& fw : c["forwards"])
            r.forwards.push_back({fw["stage"], fw["input_ids"].get<std::vector<int32_t>>(), fw["positions"].get<std::vector<int32_t>>(),
                                  fw["attention_mask"].get<std::vector<int32_t>>()});
        for (const auto& pc : c["processor_calls"]) {
            RefProcessorCall p;
            p.argmax = pc["argmax"];
            if (!pc["forced"].is_null()) p.forced = pc["forced"].get<int32_t>();
            p.top5Ids = pc["top5_ids"].get<std::vector<int32_t>>();
            p.top5Values = pc["top5_values"].get<std::vector<float>>();
            r.processorCalls.push_back(std::move(p));
        }
        r.selectedTokens = c["selected_tokens"].get<std::vector<int32_t>>();
        if (c.contains("script"))
            for (const auto& s : c["script"]) r.script.push_back(s.is_null() ? std::nullopt : std::optional<int32_t>(s.get<int32_t>()));
        r.outputText = c["output_text"];
        r.outputIds = c["output_ids"].get<std::vector<int32_t>>();
        if (c.contains("response")) r.response = c["response"];
        if (c.contains("next_prompt") && !c["next_prompt"].is_null()) r.nextPrompt = c["next_prompt"].get<std::string>();
        return r;
    }
};

}  // namespace msa::testing

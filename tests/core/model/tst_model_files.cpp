// tst_model_files: ModelConfig + ModelFiles (core/model/model_config.h, model_files.h).
//
// Covers: Hugging Face folders for Llama, Qwen2 (QKV bias), Qwen3 (QK-norm, explicit head_dim) and
// MSA (`model_type: "msa"`, msa_config, router tensors) built in the test from a config and the
// architecture's tensor list; HF -> canonical names; required-tensor (NotFound) and shape (Mismatch)
// checks naming the tensor; routing mode; fingerprint stability and sensitivity (config, tensor table,
// tokenizer); sharded folders; a GGUF Llama built with the test builder (reversed shapes, RoPE style);
// parseRouterLayers. To extend: add an architecture variant to makeHf() and a slot that opens it.
#include "core/model/model_files.h"

#include "core/model/gguf_file.h"
#include "test_files.h"

#include <QTemporaryDir>
#include <set>
#include <QtTest/QtTest>

#include <random>

using namespace msa::model;
using namespace msa::model::testing;
using msa::ErrorCode;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Tiny {
    std::string modelType = "llama";
    int layers = 2, hidden = 8, heads = 2, kvHeads = 1, ffn = 16, vocab = 12;
    int headDim = 4;              // written as head_dim when explicitHeadDim
    bool explicitHeadDim = false;
    bool tie = true;
    json msa;                     // msa_config when not null
    std::vector<int> routerLayers;
    std::set<std::string> drop;   // HF tensor names to leave out
    std::map<std::string, std::vector<uint64_t>> reshape;
    std::string tokenizer = R"({"model": {"type": "BPE"}})";
};

std::vector<std::pair<std::string, std::vector<uint64_t>>> hfTensors(const Tiny& t) {
    const uint64_t H = t.hidden, F = t.ffn, V = t.vocab, D = t.headDim;
    const uint64_t Q = t.heads * D, KV = t.kvHeads * D;
    std::vector<std::pair<std::string, std::vector<uint64_t>>> out = {
        {"model.embed_tokens.weight", {V, H}}, {"model.norm.weight", {H}}};
    if (!t.tie) out.push_back({"lm_head.weight", {V, H}});
    for (int l = 0; l < t.layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        out.push_back({p + "input_layernorm.weight", {H}});
        out.push_back({p + "self_attn.q_proj.weight", {Q, H}});
        out.push_back({p + "self_attn.k_proj.weight", {KV, H}});
        out.push_back({p + "self_attn.v_proj.weight", {KV, H}});
        out.push_back({p + "self_attn.o_proj.weight", {H, Q}});
        out.push_back({p + "post_attention_layernorm.weight", {H}});
        out.push_back({p + "mlp.gate_proj.weight", {F, H}});
        out.push_back({p + "mlp.up_proj.weight", {F, H}});
        out.push_back({p + "mlp.down_proj.weight", {H, F}});
        if (t.modelType == "qwen2") {
            out.push_back({p + "self_attn.q_proj.bias", {Q}});
            out.push_back({p + "self_attn.k_proj.bias", {KV}});
            out.push_back({p + "self_attn.v_proj.bias", {KV}});
        }
        if (t.modelType == "qwen3" || t.modelType == "msa") {
            out.push_back({p + "self_attn.q_norm.weight", {D}});
            out.push_back({p + "self_attn.k_norm.weight", {D}});
        }
        if (std::find(t.routerLayers.begin(), t.routerLayers.end(), l) != t.routerLayers.end()) {
            out.push_back({p + "self_attn.router_q_proj.0.weight", {Q, H}});
            out.push_back({p + "self_attn.router_k_proj.0.weight", {KV, H}});
        }
    }
    if (!t.msa.is_null()) out.push_back({"temperature", {}});
    return out;
}

// Writes config.json, model.safetensors (bf16 weights; or two shards) and tokenizer.json.
void makeHf(const fs::path& dir, const Tiny& t, bool sharded = false) {
    fs::create_directories(dir);
    json cfg = {{"model_type", t.modelType},     {"num_hidden_layers", t.layers}, {"hidden_size", t.hidden},
                {"num_attention_heads", t.heads}, {"num_key_value_heads", t.kvHeads},
                {"intermediate_size", t.ffn},     {"vocab_size", t.vocab},        {"rope_theta", 12345.0},
                {"rms_norm_eps", 1e-5},           {"max_position_embeddings", 4096},
                {"tie_word_embeddings", t.tie},   {"bos_token_id", 1},            {"eos_token_id", {2, 3}}};
    if (t.explicitHeadDim) cfg["head_dim"] = t.headDim;
    if (!t.msa.is_null()) cfg["msa_config"] = t.msa;
    std::ofstream(dir / "config.json") << cfg.dump(2);
    std::ofstream(dir / "tokenizer.json") << t.tokenizer;

    std::vector<json> headers(sharded ? 2 : 1, json::object());
    std::vector<uint64_t> sizes(headers.size(), 0);
    json weightMap = json::object();
    size_t i = 0;
    for (auto [name, shape] : hfTensors(t)) {
        if (t.drop.count(name)) continue;
        if (t.reshape.count(name)) shape = t.reshape.at(name);
        uint64_t n = 1;
        for (uint64_t d : shape) n *= d;
        const size_t f = sharded ? (i++ % 2) : 0;
        const bool f32 = shape.size() <= 1;
        const uint64_t bytes = n * (f32 ? 4 : 2);
        headers[f][name] = {{"dtype", f32 ? "F32" : "BF16"}, {"shape", shape}, {"data_offsets", {sizes[f], sizes[f] + bytes}}};
        sizes[f] += bytes;
        weightMap[name] = "model-0000" + std::to_string(f + 1) + "-of-00002.safetensors";
    }
    if (!sharded) {
        writeFileBytes(dir / "model.safetensors", buildSafetensors(headers[0], sizes[0]));
    } else {
        for (size_t f = 0; f < 2; ++f)
            writeFileBytes(dir / ("model-0000" + std::to_string(f + 1) + "-of-00002.safetensors"),
                           buildSafetensors(headers[f], sizes[f]));
        std::ofstream(dir / "model.safetensors.index.json") << json{{"weight_map", weightMap}}.dump();
    }
}

// A Llama GGUF with the architecture's tensors in GGML order (row length first).
GgufBuilder tinyLlamaGguf() {
    GgufBuilder b;
    b.addStr("general.architecture", "llama");
    b.addU32("llama.block_count", 1);
    b.addU32("llama.context_length", 256);
    b.addU32("llama.embedding_length", 64);
    b.addU32("llama.feed_forward_length", 96);
    b.addU32("llama.attention.head_count", 4);
    b.addU32("llama.attention.head_count_kv", 2);
    b.addF32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    b.addF32("llama.rope.freq_base", 500000.0f);
    b.addStrArray("tokenizer.ggml.tokens", {"a", "b", "c", "d", "e", "f", "g", "h"});
    auto q41 = [](uint64_t cols, uint64_t rows) { return cols / 32 * 20 * rows; };
    b.addTensor("token_embd.weight", {64, 8}, 8, 64 / 32 * 34 * 8);
    b.addTensor("output_norm.weight", {64}, 0, 256);
    b.addTensor("blk.0.attn_norm.weight", {64}, 0, 256);
    b.addTensor("blk.0.ffn_norm.weight", {64}, 0, 256);
    b.addTensor("blk.0.attn_q.weight", {64, 64}, 3, q41(64, 64));
    b.addTensor("blk.0.attn_k.weight", {64, 32}, 3, q41(64, 32));
    b.addTensor("blk.0.attn_v.weight", {64, 32}, 3, q41(64, 32));
    b.addTensor("blk.0.attn_output.weight", {64, 64}, 3, q41(64, 64));
    b.addTensor("blk.0.ffn_gate.weight", {64, 96}, 3, q41(64, 96));
    b.addTensor("blk.0.ffn_up.weight", {64, 96}, 3, q41(64, 96));
    b.addTensor("blk.0.ffn_down.weight", {96, 64}, 3, q41(96, 64));
    return b;
}

}  // namespace

class TstModelFiles : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    int m_n = 0;
    fs::path fresh() { return fs::path(m_dir.path().toStdString()) / ("m" + std::to_string(m_n++)); }
    static msa::Status openStatus(const fs::path& p) {
        auto r = ModelFiles::open(p);
        return r.ok() ? msa::Status::ok() : r.status();
    }

private slots:
    void initTestCase() { QVERIFY(m_dir.isValid()); }

    void canonicalNames() {
        QCOMPARE(canonicalTensorName("model.layers.0.self_attn.q_proj.weight"), std::string("blk.0.attn_q.weight"));
        QCOMPARE(canonicalTensorName("model.layers.17.mlp.down_proj.weight"), std::string("blk.17.ffn_down.weight"));
        QCOMPARE(canonicalTensorName("model.layers.3.self_attn.router_k_proj.0.weight"), std::string("blk.3.router_k.weight"));
        QCOMPARE(canonicalTensorName("model.layers.3.self_attn.k_norm.weight"), std::string("blk.3.attn_k_norm.weight"));
        QCOMPARE(canonicalTensorName("model.embed_tokens.weight"), std::string("token_embd.weight"));
        QCOMPARE(canonicalTensorName("lm_head.weight"), std::string("output.weight"));
        QCOMPARE(canonicalTensorName("model.layers.x.mlp.up_proj.weight"), std::string());
        QCOMPARE(canonicalTensorName("temperature"), std::string());
    }

    void routerLayerSpecs() {
        QCOMPARE(*parseRouterLayers("all", 3), (std::vector<int>{0, 1, 2}));
        QCOMPARE(*parseRouterLayers("2,1, 1", 3), (std::vector<int>{1, 2}));
        QCOMPARE(*parseRouterLayers("18-20", 36), (std::vector<int>{18, 19, 20}));
        QCOMPARE(parseRouterLayers("3", 3).status().code(), ErrorCode::Corrupt);
        QCOMPARE(parseRouterLayers("1,,2", 3).status().code(), ErrorCode::Corrupt);
        QCOMPARE(parseRouterLayers("a", 3).status().code(), ErrorCode::Corrupt);
    }

    void llamaFolder() {
        const fs::path dir = fresh();
        makeHf(dir, Tiny{});
        auto m = ModelFiles::open(dir);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        const ModelConfig& c = (*m)->config();
        QCOMPARE(c.arch, Architecture::Llama);
        QCOMPARE(c.nLayers, 2);
        QCOMPARE(c.headDim, 4);   // hidden / heads
        QCOMPARE(c.ropeTheta, 12345.0);
        QCOMPARE(c.rmsNormEps, 1e-5f);
        QCOMPARE(c.contextLength, int64_t{4096});
        QCOMPARE(*c.eosTokenId, 2);
        QCOMPARE(c.ropeStyle, RopeStyle::NeoX);
        QVERIFY(c.tieWordEmbeddings);
        QCOMPARE((*m)->routingMode(), RoutingMode::TrainingFree);
        const TensorView* q = (*m)->tensors().find("blk.1.attn_q.weight");
        QVERIFY(q);
        QCOMPARE(q->fileName, std::string("model.layers.1.self_attn.q_proj.weight"));
        QCOMPARE(q->shape, (std::vector<uint64_t>{8, 8}));
        QCOMPARE(q->dtype, DType::BF16);
        QCOMPARE(q->rowBytes(), uint64_t{16});
        QCOMPARE(q->nRows(), uint64_t{8});
        QCOMPARE((*m)->tokenizerJsonPath(), dir / "tokenizer.json");
        // Opening config.json itself selects the folder; a weights file alone is refused with advice.
        QVERIFY(ModelFiles::open(dir / "config.json").ok());
        QCOMPARE(openStatus(dir / "model.safetensors").code(), ErrorCode::InvalidArgument);
    }

    void fingerprint() {
        const fs::path a = fresh(), b = fresh(), c = fresh(), d = fresh();
        makeHf(a, Tiny{});
        makeHf(b, Tiny{});
        Tiny t2;
        t2.tokenizer = R"({"model": {"type": "BPE", "x": 1}})";
        makeHf(c, t2);
        Tiny t3;
        t3.vocab = 13;
        makeHf(d, t3);
        const auto fa = (*ModelFiles::open(a))->fingerprint();
        QCOMPARE((*ModelFiles::open(b))->fingerprint(), fa);              // same model, other folder
        QVERIFY(!((*ModelFiles::open(c))->fingerprint() == fa));          // tokenizer differs
        QVERIFY(!((*ModelFiles::open(d))->fingerprint() == fa));          // config + shapes differ
        QVERIFY(!(fa == msa::Digest128{}));
    }

    void shardedFolder() {
        const fs::path dir = fresh();
        makeHf(dir, Tiny{}, /*sharded=*/true);
        auto m = ModelFiles::open(dir);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        QVERIFY((*m)->tensors().find("blk.1.ffn_down.weight"));
        const fs::path single = fresh();
        makeHf(single, Tiny{});
        QCOMPARE((*m)->fingerprint(), (*ModelFiles::open(single))->fingerprint());   // sharding is not identity
    }

    void qwen2NeedsBias() {
        Tiny t;
        t.modelType = "qwen2";
        t.tie = false;
        const fs::path ok = fresh();
        makeHf(ok, t);
        auto m = ModelFiles::open(ok);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        QVERIFY((*m)->config().attentionBias);
        QVERIFY(!(*m)->config().tieWordEmbeddings);
        QVERIFY((*m)->tensors().find("output.weight"));
        t.drop = {"model.layers.1.self_attn.k_proj.bias"};
        const fs::path bad = fresh();
        makeHf(bad, t);
        const msa::Status s = openStatus(bad);
        QCOMPARE(s.code(), ErrorCode::NotFound);
        QVERIFY2(s.message().find("blk.1.attn_k.bias") != std::string::npos, s.message().c_str());
    }

    void qwen3HeadDimAndQkNorm() {
        Tiny t;
        t.modelType = "qwen3";
        t.headDim = 6;   // not hidden / heads: must come from the config
        t.explicitHeadDim = true;
        const fs::path dir = fresh();
        makeHf(dir, t);
        auto m = ModelFiles::open(dir);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        QCOMPARE((*m)->config().headDim, 6);
        QVERIFY((*m)->config().qkNorm);
        QCOMPARE((*m)->tensors().find("blk.0.attn_q.weight")->shape, (std::vector<uint64_t>{12, 8}));
        t.drop = {"model.layers.0.self_attn.q_norm.weight"};
        const fs::path bad = fresh();
        makeHf(bad, t);
        QCOMPARE(openStatus(bad).code(), ErrorCode::NotFound);
    }

    void shapeMismatch() {
        Tiny t;
        t.reshape["model.layers.0.self_attn.k_proj.weight"] = {8, 8};
        const fs::path dir = fresh();
        makeHf(dir, t);
        const msa::Status s = openStatus(dir);
        QCOMPARE(s.code(), ErrorCode::Mismatch);
        QVERIFY2(s.message().find("model.layers.0.self_attn.k_proj.weight") != std::string::npos, s.message().c_str());
        QVERIFY2(s.message().find("[4, 8]") != std::string::npos, s.message().c_str());
    }

    void msaCheckpoint() {
        Tiny t;
        t.modelType = "msa";
        t.layers = 3;
        t.explicitHeadDim = true;
        t.msa = {{"router_layer_idx", "1,2"}, {"decouple_router", true}, {"aux_loss_method", "INFONCE_DECOUPLE"},
                 {"head_reduce_method", "mean"}, {"query_reduce_method", "max"}, {"chunk_reduce_method", "max"},
                 {"pooling_kernel_size", 64}, {"top_k_docs", 16}};
        t.routerLayers = {1, 2};
        const fs::path dir = fresh();
        makeHf(dir, t);
        auto m = ModelFiles::open(dir);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        const ModelConfig& c = (*m)->config();
        QCOMPARE(c.arch, Architecture::Qwen3);
        QCOMPARE(c.modelType, std::string("msa"));
        QVERIFY(c.msa.has_value());
        QCOMPARE(c.msa->routerLayers, (std::vector<int>{1, 2}));
        QCOMPARE(c.msa->docTopK, 16);   // absent -> the inference default
        QCOMPARE(*c.msa->poolingKernelSize, 64);
        QCOMPARE(c.msa->auxLossMethod, std::string("INFONCE_DECOUPLE"));
        QCOMPARE((*m)->routingMode(), RoutingMode::MsaTrained);
        QCOMPARE((*m)->routerLayers(), (std::vector<int>{1, 2}));
        QCOMPARE((*m)->tensors().find("blk.2.router_q.weight")->shape, (std::vector<uint64_t>{8, 8}));
        QCOMPARE((*m)->tensors().find("blk.2.router_k.weight")->shape, (std::vector<uint64_t>{4, 8}));
        QVERIFY((*m)->tensors().find("temperature"));   // kept under its own name

        Tiny missing = t;
        missing.drop = {"model.layers.2.self_attn.router_q_proj.0.weight", "model.layers.2.self_attn.router_k_proj.0.weight"};
        const fs::path d2 = fresh();
        makeHf(d2, missing);
        const msa::Status s = openStatus(d2);
        QCOMPARE(s.code(), ErrorCode::NotFound);
        QVERIFY2(s.message().find("router_q_proj") != std::string::npos, s.message().c_str());

        Tiny half = t;
        half.drop = {"model.layers.1.self_attn.router_k_proj.0.weight"};
        const fs::path d3 = fresh();
        makeHf(d3, half);
        QCOMPARE(openStatus(d3).code(), ErrorCode::NotFound);

        Tiny extra = t;
        extra.routerLayers = {0, 1, 2};
        const fs::path d4 = fresh();
        makeHf(d4, extra);
        QCOMPARE(openStatus(d4).code(), ErrorCode::Mismatch);

        Tiny noConfig = t;
        noConfig.msa = nullptr;
        const fs::path d5 = fresh();
        makeHf(d5, noConfig);
        QCOMPARE(openStatus(d5).code(), ErrorCode::NotFound);   // model_type msa needs msa_config
    }

    void qwen3WithoutRoutersIsTrainingFree() {
        Tiny t;
        t.modelType = "qwen3";
        t.explicitHeadDim = true;
        const fs::path dir = fresh();
        makeHf(dir, t);
        auto m = ModelFiles::open(dir);
        QVERIFY(m.ok());
        QCOMPARE((*m)->routingMode(), RoutingMode::TrainingFree);
        QCOMPARE(std::string(routingModeName((*m)->routingMode())), std::string("training-free"));
    }

    void folderErrors() {
        QCOMPARE(openStatus(fresh()).code(), ErrorCode::NotFound);   // does not exist
        const fs::path empty = fresh();
        fs::create_directories(empty);
        QCOMPARE(openStatus(empty).code(), ErrorCode::NotFound);     // no config.json
        const fs::path noTok = fresh();
        makeHf(noTok, Tiny{});
        fs::remove(noTok / "tokenizer.json");
        const msa::Status s = openStatus(noTok);
        QCOMPARE(s.code(), ErrorCode::NotFound);
        QVERIFY(s.message().find("tokenizer.json") != std::string::npos);
        Tiny gpt;
        gpt.modelType = "gpt2";
        const fs::path g = fresh();
        makeHf(g, gpt);
        QCOMPARE(openStatus(g).code(), ErrorCode::Unsupported);
        const fs::path badJson = fresh();
        makeHf(badJson, Tiny{});
        std::ofstream(badJson / "config.json") << "{\"model_type\": ";
        QCOMPARE(openStatus(badJson).code(), ErrorCode::Corrupt);
        const fs::path badHeads = fresh();
        Tiny bh;
        bh.kvHeads = 3;   // 2 heads are not a multiple of 3 KV heads
        makeHf(badHeads, bh);
        QCOMPARE(openStatus(badHeads).code(), ErrorCode::Corrupt);
        const fs::path noModel = fresh();
        makeHf(noModel, Tiny{});
        fs::remove(noModel / "model.safetensors");
        QCOMPARE(openStatus(noModel).code(), ErrorCode::NotFound);
    }

    void ggufLlama() {
        const GgufBuilder b = tinyLlamaGguf();
        const fs::path p = fresh().string() + ".gguf";
        writeFileBytes(p, b.build(0));
        auto m = ModelFiles::open(p);
        QVERIFY2(m.ok(), m.status().toString().c_str());
        const ModelConfig& c = (*m)->config();
        QCOMPARE(c.vocabSize, 8);   // no llama.vocab_size: taken from token_embd
        QCOMPARE(c.headDim, 16);
        QCOMPARE(c.ropeTheta, 500000.0);
        QCOMPARE(c.ropeStyle, RopeStyle::Interleaved);
        QVERIFY(c.tieWordEmbeddings);
        QCOMPARE((*m)->tensors().find("blk.0.ffn_down.weight")->shape, (std::vector<uint64_t>{64, 96}));
        QCOMPARE((*m)->tensors().find("blk.0.attn_k.weight")->rowBytes(), uint64_t{40});
        const auto totals = (*m)->totalsByDtype();
        QCOMPARE(totals.at("q4_1").nTensors, uint64_t{7});
        QCOMPARE(totals.at("f32").nTensors, uint64_t{3});

        // The same file with a wrong FFN size in the metadata: the tensor table disagrees.
        GgufBuilder b2 = b;
        for (auto& [k, v] : b2.kv)
            if (k == "llama.feed_forward_length") { v.clear(); put<uint32_t>(v, 4); put<uint32_t>(v, 128); }
        const fs::path p2 = fresh().string() + ".gguf";
        writeFileBytes(p2, b2.build(0));
        const msa::Status s = openStatus(p2);
        QCOMPARE(s.code(), ErrorCode::Mismatch);
        QVERIFY2(s.message().find("blk.0.ffn_gate.weight") != std::string::npos, s.message().c_str());

        // No tokenizer in the metadata.
        GgufBuilder b3 = b;
        b3.kv.erase(std::remove_if(b3.kv.begin(), b3.kv.end(), [](auto& kv) { return kv.first == "tokenizer.ggml.tokens"; }),
                    b3.kv.end());
        const fs::path p3 = fresh().string() + ".gguf";
        writeFileBytes(p3, b3.build(0));
        QCOMPARE(openStatus(p3).code(), ErrorCode::NotFound);

        // An architecture we do not run.
        GgufBuilder b4 = b;
        b4.kv[0].second.clear();
        put<uint32_t>(b4.kv[0].second, 8);
        putStr(b4.kv[0].second, "mamba");
        const fs::path p4 = fresh().string() + ".gguf";
        writeFileBytes(p4, b4.build(0));
        QCOMPARE(openStatus(p4).code(), ErrorCode::Unsupported);
    }

    void fuzzGgufModel() {
        // Random corruptions of a valid model file: ModelFiles::open must answer with a code, never
        // crash, and whatever it accepts must pass its own checks again.
        const Bytes base = tinyLlamaGguf().build(0);
        std::mt19937_64 rng(99);
        const fs::path p = fresh().string() + ".gguf";
        int nOk = 0;
        for (int it = 0; it < 1500; ++it) {
            Bytes b = base;
            const int flips = 1 + static_cast<int>(rng() % 3);
            for (int f = 0; f < flips; ++f) b[rng() % std::min<size_t>(b.size(), 1200)] = static_cast<uint8_t>(rng());
            if (rng() % 8 == 0) b.resize(rng() % b.size());
            writeFileBytes(p, b);
            auto m = ModelFiles::open(p);
            if (m.ok()) {
                ++nOk;
                for (const TensorView& t : (*m)->tensors().all()) QCOMPARE(uint64_t{t.bytes.size()}, t.nRows() * t.rowBytes());
                continue;
            }
            const ErrorCode c = m.status().code();
            QVERIFY2(c == ErrorCode::Corrupt || c == ErrorCode::Unsupported || c == ErrorCode::NotFound ||
                         c == ErrorCode::Mismatch,
                     m.status().toString().c_str());
        }
        qInfo("gguf model fuzz: %d of 1500 opened", nOk);
    }

    void fuzzHfConfig() {
        // Adversarial values in config.json fields (the weights stay valid).
        const fs::path dir = fresh();
        Tiny t;
        t.modelType = "msa";
        t.layers = 3;
        t.explicitHeadDim = true;
        t.msa = {{"router_layer_idx", "1,2"}, {"decouple_router", true}};
        t.routerLayers = {1, 2};
        makeHf(dir, t);
        std::ifstream in(dir / "config.json");
        const json base = json::parse(in);
        const std::vector<json> values = {0, -1, 1, 2, 3, 7, 1 << 30, 2147483648LL, -2147483649LL, 1e308, -0.0, 0.5,
                                          nullptr, "x", "all", "0-2", "2-1", "99", json::array(), json::object(),
                                          true, json::array({1, 2}), json::array({"a"})};
        std::vector<std::string> keys;
        for (const auto& [k, v] : base.items()) keys.push_back(k);
        std::mt19937_64 rng(5);
        int nOk = 0;
        for (int it = 0; it < 1500; ++it) {
            json cfg = base;
            const int edits = 1 + static_cast<int>(rng() % 2);
            for (int e = 0; e < edits; ++e) {
                if (rng() % 4 == 0 && cfg["msa_config"].is_object()) {
                    static const char* msaKeys[] = {"router_layer_idx", "doc_top_k", "decouple_router", "pooling_kernel_size"};
                    cfg["msa_config"][msaKeys[rng() % 4]] = values[rng() % values.size()];
                } else {
                    cfg[keys[rng() % keys.size()]] = values[rng() % values.size()];
                }
            }
            std::ofstream(dir / "config.json", std::ios::trunc) << cfg.dump();
            auto m = ModelFiles::open(dir);
            if (m.ok()) {
                ++nOk;
                continue;
            }
            const ErrorCode c = m.status().code();
            QVERIFY2(c == ErrorCode::Corrupt || c == ErrorCode::Unsupported || c == ErrorCode::NotFound ||
                         c == ErrorCode::Mismatch,
                     m.status().toString().c_str());
        }
        qInfo("config fuzz: %d of 1500 opened", nOk);
        QVERIFY(nOk > 0);
    }
};

QTEST_GUILESS_MAIN(TstModelFiles)
#include "tst_model_files.moc"

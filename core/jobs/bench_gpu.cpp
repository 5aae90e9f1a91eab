// bench_gpu.cpp: the device-independent half of `msa bench gpu` (see bench_gpu.h): the random
// checkpoint, the four measurements through the Backend interface, the peer subprocess, the report.
#include "core/jobs/bench_gpu.h"

#include "core/engine/backend.h"
#include "core/engine/compute_threads.h"
#include "core/memory/router.h"
#include "core/model/dtype.h"
#include "core/model/model_files.h"
#include "core/util/format.h"

#include <algorithm>
#include <cerrno>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <unistd.h>

namespace msa::jobs {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// One tensor of the checkpoint: its name, shape and how its values are drawn.
struct TensorSpec {
    std::string name;
    std::vector<uint64_t> shape;
    bool norm = false;   // RMSNorm weights: near 1
    uint64_t elements() const {
        uint64_t n = 1;
        for (uint64_t d : shape) n *= d;
        return n;
    }
};

std::vector<TensorSpec> tensorsOf(const BenchModelShape& s) {
    const auto H = static_cast<uint64_t>(s.hidden), D = static_cast<uint64_t>(s.headDim), F = static_cast<uint64_t>(s.ffn);
    const auto nQ = static_cast<uint64_t>(s.nHeads) * D, nKv = static_cast<uint64_t>(s.nKvHeads) * D;
    std::vector<TensorSpec> t;
    t.push_back({"model.embed_tokens.weight", {static_cast<uint64_t>(s.vocab), H}, false});
    for (int l = 0; l < s.nLayers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        t.push_back({p + "input_layernorm.weight", {H}, true});
        t.push_back({p + "self_attn.q_proj.weight", {nQ, H}, false});
        t.push_back({p + "self_attn.k_proj.weight", {nKv, H}, false});
        t.push_back({p + "self_attn.v_proj.weight", {nKv, H}, false});
        t.push_back({p + "self_attn.o_proj.weight", {H, nQ}, false});
        t.push_back({p + "self_attn.q_norm.weight", {D}, true});
        t.push_back({p + "self_attn.k_norm.weight", {D}, true});
        t.push_back({p + "post_attention_layernorm.weight", {H}, true});
        t.push_back({p + "mlp.gate_proj.weight", {F, H}, false});
        t.push_back({p + "mlp.up_proj.weight", {F, H}, false});
        t.push_back({p + "mlp.down_proj.weight", {H, F}, false});
    }
    t.push_back({"model.norm.weight", {H}, true});
    return t;
}

// Multiply-adds per token of every matrix (not the embedding lookup; the tied lm_head separately).
double matrixMacsPerToken(const BenchModelShape& s) {
    const double H = s.hidden, D = s.headDim, F = s.ffn;
    const double perLayer = H * s.nHeads * D * 2 + H * s.nKvHeads * D * 2 + 3 * H * F;
    return perLayer * s.nLayers;
}

// The GPT-2 byte-level alphabet: printable bytes map to themselves, the others to U+0100.. in order.
std::string byteSymbol(int b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    int cp = b;
    if (!printable) {
        int n = 0;
        for (int x = 0; x < b; ++x)
            if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
        cp = 256 + n;
    }
    std::string s;
    if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
    } else {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    return s;
}

// A byte-level BPE tokenizer with one token per byte and no merges (ModelFiles requires a tokenizer;
// the benchmark drives the model by token ids). Ids ≥ 256 of the random vocabulary have no text.
nlohmann::json byteTokenizer() {
    const nlohmann::json byteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
    nlohmann::json vocab = nlohmann::json::object();
    for (int b = 0; b < 256; ++b) vocab[byteSymbol(b)] = b;
    return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", nlohmann::json::array()},
            {"normalizer", nullptr}, {"pre_tokenizer", byteLevel}, {"post_processor", nullptr}, {"decoder", byteLevel},
            {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                       {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                       {"ignore_merges", false}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
}

std::string shellQuote(const std::string& s) {
    std::string q(1, '\'');
    for (char c : s) {
        if (c == '\'') q.append("'\\''");
        else q.push_back(c);
    }
    q.push_back('\'');
    return q;
}

std::string fmt(double v, int precision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", precision, v);
    return buf;
}

}  // namespace

BenchModelShape BenchModelShape::msa4b() {
    BenchModelShape s;
    s.name = "msa-4b";
    return s;
}

BenchModelShape BenchModelShape::tiny() {
    BenchModelShape s;
    s.name = "tiny";
    s.nLayers = 4;
    s.hidden = 64;
    s.nHeads = 4;
    s.nKvHeads = 2;
    s.headDim = 16;
    s.ffn = 128;
    s.vocab = 512;
    s.docTokens = 256;
    s.docsPerForward = 2;
    s.nSelectedDocs = 4;
    s.questionTokens = 32;
    s.decodeTokens = 8;
    s.bankTokens = {65536, 262144};
    return s;
}

uint64_t BenchModelShape::nParameters() const {
    uint64_t n = 0;
    for (const TensorSpec& t : tensorsOf(*this)) n += t.elements();
    return n;
}

Status writeRandomCheckpoint(const fs::path& dir, const BenchModelShape& s, uint64_t seed) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return ioError("cannot create " + quotedName(dir.string()) + ": " + ec.message());
    nlohmann::json config = {
        {"architectures", {"Qwen3ForCausalLM"}},
        {"model_type", "qwen3"},
        {"attention_bias", false},
        {"attention_dropout", 0.0},
        {"bos_token_id", 1},
        {"eos_token_id", 2},
        {"head_dim", s.headDim},
        {"hidden_act", "silu"},
        {"hidden_size", s.hidden},
        {"initializer_range", 0.02},
        {"intermediate_size", s.ffn},
        {"max_position_embeddings", 40960},
        {"max_window_layers", s.nLayers},
        {"num_attention_heads", s.nHeads},
        {"num_hidden_layers", s.nLayers},
        {"num_key_value_heads", s.nKvHeads},
        {"rms_norm_eps", 1e-6},
        {"rope_scaling", nullptr},
        {"rope_theta", 1000000.0},
        {"sliding_window", nullptr},
        {"tie_word_embeddings", true},
        {"use_cache", true},
        {"use_sliding_window", false},
        {"vocab_size", s.vocab},
        {"torch_dtype", "bfloat16"},
    };
    {
        std::ofstream c(dir / "config.json");
        c << config.dump(2) << "\n";
        if (!c) return ioError("cannot write " + quotedName((dir / "config.json").string()));
    }
    {
        std::ofstream t(dir / "tokenizer.json");
        t << byteTokenizer().dump(1) << "\n";
        if (!t) return ioError("cannot write " + quotedName((dir / "tokenizer.json").string()));
    }
    const std::vector<TensorSpec> tensors = tensorsOf(s);
    nlohmann::json header = nlohmann::json::object();
    uint64_t offset = 0;
    for (const TensorSpec& t : tensors) {
        const uint64_t bytes = t.elements() * 2;
        header[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    header["__metadata__"] = {{"format", "pt"}, {"msa_bench_seed", std::to_string(seed)}};
    std::string text = header.dump();
    while (text.size() % 8) text += ' ';
    const fs::path path = dir / "model.safetensors";
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const uint64_t n = text.size();
    std::array<char, 8> len{};
    for (int i = 0; i < 8; ++i) len[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
    f.write(len.data(), 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::vector<uint16_t> buf(1 << 20);
    uint64_t tensorIndex = 0;
    for (const TensorSpec& t : tensors) {
        uint64_t state = splitmix(seed ^ (0xA5A5A5A5ull + tensorIndex++));
        // Matrices: the sum of two uniforms in ±0.05 (triangular, std ≈ 0.029): small enough that 36
        // random layers keep activations finite in bf16. Norm weights: 1 ± 0.05.
        for (uint64_t done = 0, total = t.elements(); done < total;) {
            const size_t m = static_cast<size_t>(std::min<uint64_t>(buf.size(), total - done));
            for (size_t i = 0; i < m; ++i) {
                state = splitmix(state);
                const float u1 = static_cast<float>(state >> 40) / 16777216.0f - 0.5f;
                const float u2 = static_cast<float>((state >> 16) & 0xFFFFFF) / 16777216.0f - 0.5f;
                const float v = t.norm ? 1.0f + 0.1f * u1 : 0.1f * (u1 + u2);
                buf[i] = model::f32ToBf16(v);
            }
            f.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(m * 2));
            done += m;
        }
    }
    f.flush();
    if (!f) return statusFromErrno(errno, "writing " + quotedName(path.string()));
    return Status::ok();
}

void fillSyntheticKeys(std::span<uint16_t> out, uint64_t firstChunk, size_t rowElems, uint64_t seed) {
    // value = (byte - 128) / 64: exactly representable in bf16, so the peer (numpy) reproduces it
    // bit for bit: splitmix64(seed * 2^32 + element index), top byte.
    const uint64_t base = firstChunk * rowElems;
    for (size_t i = 0; i < out.size(); ++i) {
        const uint64_t h = splitmix((seed << 32) + base + i);
        const float v = static_cast<float>(static_cast<int>(h >> 56) - 128) / 64.0f;
        out[i] = model::f32ToBf16(v);
    }
}

namespace {

// memory::Router over one layer of host keys (through the CPU RouteScanner, which is the Router
// for native keys and the Router over the dequantized copy for 8-bit storage: the reference).
class CpuScanner final : public BenchScanner {
public:
    CpuScanner(const ScanSpec& spec, size_t nThreads) : m_spec(spec), m_scanner(nThreads, spec.keyStorage) {
        const size_t rowElems = spec.nHeads * spec.headDim;
        m_keys.resize(static_cast<size_t>(spec.nChunks) * rowElems);
        engine::ComputeThreads team(nThreads);
        team.parallelFor(static_cast<size_t>(spec.nChunks), [&](size_t b, size_t e, size_t) {
            fillSyntheticKeys(std::span<uint16_t>(m_keys).subspan(b * rowElems, (e - b) * rowElems), b, rowElems, spec.seed);
        }, 1024);
        for (uint64_t c = 0; c < spec.nChunks; c += spec.chunksPerDoc) m_offsets.push_back(c);
        m_offsets.push_back(spec.nChunks);
        m_ids.resize(m_offsets.size() - 1);
        for (size_t d = 0; d < m_ids.size(); ++d) m_ids[d] = d;
        m_cfg.nQueryHeads = spec.nQueryHeads;
        m_cfg.nRouteHeads = spec.nHeads;
        m_cfg.headDim = spec.headDim;
        m_cfg.layers = {0};
    }
    Result<std::vector<uint32_t>> scan(std::span<const float> queries, size_t nTokens, size_t k) override {
        memory::RoutingQueries q;
        q.layer = 0;
        q.nTokens = nTokens;
        q.nHeads = m_spec.nQueryHeads;
        q.headDim = m_spec.headDim;
        q.q.assign(queries.begin(), queries.end());
        memory::ScanShard shard;
        shard.keys.data = std::as_bytes(std::span<const uint16_t>(m_keys));
        shard.keys.dtype = model::DType::BF16;
        shard.keys.nChunks = static_cast<size_t>(m_spec.nChunks);
        shard.keys.nHeads = m_spec.nHeads;
        shard.keys.headDim = m_spec.headDim;
        shard.keys.chunkOffsets = m_offsets;
        shard.keys.docIds = m_ids;
        MSA_ASSIGN_OR_RETURN(std::vector<memory::ShardScan> r,
                             m_scanner.scan(m_cfg, 0, q, std::span<const memory::ScanShard>(&shard, 1), k, nullptr));
        std::vector<uint32_t> out;
        for (const auto& d : r.front().top) out.push_back(d.index);
        return out;
    }
    uint64_t keyBytesPerLayer() const override {
        const uint64_t rows = m_spec.nChunks * m_spec.nHeads;
        return m_spec.keyStorage == memory::KeyStorage::Native ? rows * m_spec.headDim * 2 : rows * (m_spec.headDim + 4);
    }

private:
    ScanSpec m_spec;
    memory::CpuRouteScanner m_scanner;
    memory::RoutingConfig m_cfg;
    std::vector<uint16_t> m_keys;
    std::vector<uint64_t> m_offsets, m_ids;
};

}  // namespace

DeviceBenchHooks cpuBenchHooks(size_t nThreads) {
    DeviceBenchHooks h;
    h.deviceId = "cpu";
    h.deviceName = engine::cpuModelName();
    h.peakSource = "unknown for a CPU (no bf16 matrix peak is assumed)";
    h.copyBandwidth = [nThreads](uint64_t bytes) -> Result<double> {
        engine::ComputeThreads team(nThreads);
        std::vector<char> a(bytes, 1), b(bytes, 0);
        std::vector<double> rates;
        for (int rep = 0; rep < 4; ++rep) {
            const auto t0 = Clock::now();
            team.parallelFor(bytes, [&](size_t s, size_t e, size_t) { std::memcpy(b.data() + s, a.data() + s, e - s); }, 1 << 20);
            if (rep) rates.push_back(2.0 * static_cast<double>(bytes) / secondsSince(t0));
        }
        return median(rates);
    };
    h.openScanner = [nThreads](const ScanSpec& spec) -> Result<std::unique_ptr<BenchScanner>> {
        return std::unique_ptr<BenchScanner>(std::make_unique<CpuScanner>(spec, nThreads));
    };
    return h;
}

Result<nlohmann::json> runPeer(const std::string& python, const fs::path& script, const std::vector<std::string>& args) {
    std::string cmd = shellQuote(python) + " " + shellQuote(script.string());
    for (const std::string& a : args) {
        cmd += ' ';
        cmd += shellQuote(a);
    }
    char errName[] = "/tmp/msa-peer-stderr-XXXXXX";
    const int errFd = ::mkstemp(errName);
    if (errFd < 0) return statusFromErrno(errno, "creating a temporary file for the peer's stderr");
    ::close(errFd);
    cmd += " 2>" + shellQuote(errName);
    std::string out;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return statusFromErrno(errno, "starting the peer");
    std::array<char, 4096> buf{};
    size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    const int rc = ::pclose(p);
    std::string err;
    {
        std::ifstream e(errName);
        std::stringstream ss;
        ss << e.rdbuf();
        err = ss.str();
    }
    std::remove(errName);
    if (err.size() > 2000) err = "..." + err.substr(err.size() - 2000);
    if (rc != 0) return Status(ErrorCode::Internal, "the peer exited with status " + std::to_string(rc) + ": " + err);
    const auto brace = out.find('{');
    if (brace == std::string::npos) return Status(ErrorCode::Internal, "the peer printed no JSON: " + err);
    try {
        return nlohmann::json::parse(out.substr(brace));
    } catch (const std::exception& e) {
        return Status(ErrorCode::Internal, std::string("the peer's JSON does not parse: ") + e.what());
    }
}

namespace {

struct Work {
    fs::path dir;
    bool remove = false;
    ~Work() {
        std::error_code ec;
        if (remove) fs::remove_all(dir, ec);
    }
};

std::string millions(uint64_t tokens) {
    if (tokens >= 1000000 && tokens % 1000000 == 0) return std::to_string(tokens / 1000000) + "M";
    if (tokens >= 1000 && tokens % 1024 == 0) return std::to_string(tokens / 1024) + "K";
    return std::to_string(tokens);
}

std::vector<int32_t> randomTokens(std::mt19937& rng, size_t n, int vocab) {
    std::uniform_int_distribution<int32_t> pick(3, vocab - 1);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = pick(rng);
    return t;
}

}  // namespace

Result<GpuBenchResult> runGpuBench(const GpuBenchOptions& o) {
    const BenchModelShape& s = o.shape;
    GpuBenchResult r;
    r.device = o.hooks.deviceName;
    r.deviceId = o.hooks.deviceId;
    r.shape = s.name;
    r.peakBf16Flops = o.hooks.peakBf16Flops;
    r.peakSource = o.hooks.peakSource;
    r.nParameters = s.nParameters();
    r.peerDevice = o.peerDevice;

    Work work;
    if (o.workDir.empty()) {
        char tmpl[] = "/tmp/msa-bench-gpu-XXXXXX";
        if (!::mkdtemp(tmpl)) return statusFromErrno(errno, "creating a temporary folder");
        work.dir = tmpl;
        work.remove = !o.keepWorkDir;
    } else {
        work.dir = o.workDir;
    }
    const fs::path modelDir = work.dir / ("random-" + s.name);
    r.modelDir = modelDir.string();
    MSA_RETURN_IF_ERROR(writeRandomCheckpoint(modelDir, s, o.seed));

    // Device-to-device copy of 2 GiB (1 GiB for the CPU and tiny shapes): the bandwidth limit.
    const uint64_t copyBytes = s.name == "tiny" ? (uint64_t{256} << 20) : (uint64_t{2} << 30);
    if (o.hooks.copyBandwidth) {
        MSA_ASSIGN_OR_RETURN(r.copyBandwidth, o.hooks.copyBandwidth(copyBytes));
    }
    // The copy's bytes read + written per second is the memory's total rate; a kernel that only
    // reads (keys, weights) can at best stream at that rate, so it is the limit (as STREAM/nvbandwidth count).
    const double readBw = r.copyBandwidth;

    const size_t repeats = std::max<size_t>(1, o.repeats);
    std::mt19937 rng(static_cast<uint32_t>(o.seed));
    const size_t D = static_cast<size_t>(s.headDim), G = static_cast<size_t>(s.nKvHeads), H = static_cast<size_t>(s.nHeads);
    const int lastRouting = s.nLayers - 1;
    const int nRouting = s.nRoutingLayers();
    const size_t nChunkRows = s.nSelectedDocs * s.docTokens / s.chunkSize;
    const double weightBytes = static_cast<double>(r.nParameters) * 2.0;

    // A figure our engine cannot produce (an operation the backend does not support yet, a device
    // fault) keeps the reason in its note and the run goes on: the peer and the other figures still
    // come out of a first run on a new device.
    auto notMeasured = [](Figure& f, const Status& st) {
        f.value = 0;
        f.note = "not measured: " + st.toString() + (f.note.empty() ? "" : " (" + f.note + ")");
    };

    std::unique_ptr<engine::Backend> backend;
    std::shared_ptr<const engine::LoadedModel> loaded;
    Status loadStatus = [&]() -> Status {
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<model::ModelFiles> opened, model::ModelFiles::open(modelDir));
        std::shared_ptr<const model::ModelFiles> files = std::move(opened);
        MSA_ASSIGN_OR_RETURN(backend, o.device.create());
        MSA_ASSIGN_OR_RETURN(loaded, backend->load(files));
        return Status::ok();
    }();
    // ModelFiles problems are bugs of the writer, not of the device: they stop the run.
    if (!loadStatus && loadStatus.code() != ErrorCode::Unsupported && loadStatus.code() != ErrorCode::Unimplemented &&
        loadStatus.code() != ErrorCode::DeviceError && loadStatus.code() != ErrorCode::OutOfMemory)
        return loadStatus;

    // ---- encoding ----
    Figure enc{.name = "encoding", .unit = "tokens/s", .target = s.name == "msa-4b" ? 60000.0 : 0.0, .note = {}};
    // FLOPs per token: 2 × matrix MACs + attention (QKᵀ and PV: 4 × H × D × mean context).
    const double flopsPerToken = 2 * matrixMacsPerToken(s) + 4.0 * static_cast<double>(H * D) *
                                                                 (static_cast<double>(s.docTokens) + 1) / 2 * s.nLayers;
    if (r.peakBf16Flops > 0) enc.limit = r.peakBf16Flops / flopsPerToken;
    enc.note = fmt(flopsPerToken / 1e6, 1) + " MFLOP/token";
    Status encStatus = !loadStatus ? loadStatus : [&]() -> Status {
        const size_t nTok = s.docTokens * s.docsPerForward;
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                             loaded->createSession({.maxTokens = nTok + 8, .nThreads = o.nThreads}));
        const std::vector<int32_t> tokens = randomTokens(rng, nTok, s.vocab);
        std::vector<int32_t> pos(nTok);
        std::vector<uint32_t> segments(s.docsPerForward, static_cast<uint32_t>(s.docTokens));
        for (size_t i = 0; i < nTok; ++i) pos[i] = static_cast<int32_t>(i % s.docTokens);
        engine::ForwardOptions fo;
        fo.computeLogits = false;
        fo.stopAfterLayer = lastRouting;
        fo.segments = segments;
        // What a bank build does: pool every routing layer's chunks in the engine and take the rows
        // to the host (training-free keys: the random checkpoint has no router_k_proj).
        engine::PoolingOptions pooling;
        std::vector<float> bankRows;
        if (session->supportsPooling()) {
            pooling.chunkSize = s.chunkSize;
            for (int l = s.firstRoutingLayer(); l < s.nLayers; ++l) pooling.layers.push_back(l);
            fo.pooling = &pooling;
            fo.pooledHook = [&](const engine::PooledRows& rows) {
                const size_t n = rows.nChunks * static_cast<size_t>(G * D);
                bankRows.assign(rows.k, rows.k + n);
                bankRows.insert(bankRows.end(), rows.v, rows.v + n);
            };
        }
        std::vector<double> runs;
        for (size_t rep = 0; rep <= repeats; ++rep) {
            session->truncate(0);
            const auto t0 = Clock::now();
            MSA_RETURN_IF_ERROR(session->forward(tokens, pos, fo).status());
            if (rep) runs.push_back(static_cast<double>(nTok) / secondsSince(t0));
        }
        enc.value = median(runs);
        if (fo.pooling) enc.note += ", pooled rows to the host included";
        return Status::ok();
    }();
    if (!encStatus) notMeasured(enc, encStatus);

    // The first token's floor besides the scan: the question's prefill (compute, or one read of the
    // weights, whichever is longer) plus one decode step's weight read.
    double prefillFloorMs = 0;
    if (r.peakBf16Flops > 0 && readBw > 0) {
        const double qFlops = (2 * matrixMacsPerToken(s) + 4.0 * static_cast<double>(H * D) * (static_cast<double>(s.questionTokens) / 2 + static_cast<double>(nChunkRows)) * s.nLayers) *
                              static_cast<double>(s.questionTokens);
        prefillFloorMs = (std::max(qFlops / r.peakBf16Flops, weightBytes / readBw) + weightBytes / readBw) * 1e3;
    }

    // Synthetic memory content: the selected documents' chunk rows (K̄, V̄), random, in every routing layer.
    engine::LayerPrefix memoryRows;
    memoryRows.nRows = nChunkRows;
    {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        memoryRows.k.resize(nChunkRows * G * D);
        memoryRows.v.resize(nChunkRows * G * D);
        for (float& x : memoryRows.k) x = nd(rng);
        for (float& x : memoryRows.v) x = nd(rng);
    }
    const std::vector<int32_t> question = randomTokens(rng, s.questionTokens, s.vocab);
    std::vector<int32_t> questionPos(question.size());
    for (size_t i = 0; i < question.size(); ++i) questionPos[i] = static_cast<int32_t>(i);

    // ---- routing scan + ttft per bank ----
    std::vector<Figure> scans, scans8, ttfts;
    for (uint64_t bankTokens : s.bankTokens) {
        Figure sf{.name = "scan " + millions(bankTokens), .unit = "ms", .higherIsBetter = false, .note = {}};
        Figure tf{.name = "ttft " + millions(bankTokens), .unit = "ms", .higherIsBetter = false, .note = {}};
        if (s.name == "msa-4b") {
            sf.target = bankTokens <= 1000000 ? 0.5 : bankTokens <= 10000000 ? 2.0 : 20.0;
            tf.target = bankTokens == 10000000 ? 7.0 : bankTokens == 100000000 ? 25.0 : 0.0;
        }
        ScanSpec spec;
        spec.nChunks = (bankTokens + s.chunkSize - 1) / s.chunkSize;
        spec.chunksPerDoc = s.docTokens / s.chunkSize;
        spec.nHeads = G;
        spec.headDim = D;
        spec.nQueryHeads = H;
        spec.seed = 7;
        const double keyBytes = static_cast<double>(spec.nChunks * G * D * 2) * nRouting;
        if (readBw > 0) sf.limit = keyBytes / readBw * 1e3;
        if (sf.limit > 0 && prefillFloorMs > 0) tf.limit = sf.limit + prefillFloorMs;
        sf.note = formatBytes(keyBytes) + " of keys";

        // One set of queries per bank: every storage's row and the CPU check scan the same. Values
        // j/8 (|j| ≤ 8): their head-mean fold (a sum of H/G of them over H, H a power of two) is
        // exact in bf16, and every product with a key (b−128)/64 and every partial sum of a dot of
        // 1024 of them is exact in f32 — so the device's score of a native chunk equals the CPU
        // Router's bit for bit whatever the summation order or the tensor-core split, and the top-k
        // check below cannot trip on a near-tie. (Speed does not depend on the values.)
        std::vector<float> queries(s.questionTokens * H * D);
        {
            std::uniform_int_distribution<int> pick(-8, 8);
            for (float& x : queries) x = static_cast<float>(pick(rng)) / 8.0f;
        }
        // The 18-layer scan: the device's clock when the scanner has one, else the host's.
        auto timeScanner = [&](BenchScanner& sc, Figure& f) -> Status {
            std::vector<double> runs;
            std::string clock = "CUDA events";
            Result<std::vector<double>> dev = sc.timeLayers(queries, s.questionTokens, s.topK, static_cast<size_t>(nRouting), repeats);
            if (dev) {
                runs = std::move(dev).value();
            } else if (dev.status().code() == ErrorCode::Unimplemented) {
                clock = "host clock";
                for (size_t rep = 0; rep <= repeats; ++rep) {
                    const auto t0 = Clock::now();
                    for (int l = 0; l < nRouting; ++l) MSA_RETURN_IF_ERROR(sc.scan(queries, s.questionTokens, s.topK).status());
                    if (rep) runs.push_back(secondsSince(t0) * 1e3);
                }
            } else {
                return dev.status();
            }
            f.value = median(runs);
            const double bytes = sc.keyBytesPerLayer() ? static_cast<double>(sc.keyBytesPerLayer()) * nRouting : keyBytes;
            if (readBw > 0) f.limit = bytes / readBw * 1e3;
            f.note = formatBytes(bytes) + " of keys read";
            if (f.value > 0) f.note += ", " + formatBytes(bytes / (f.value * 1e-3)) + "/s";
            if (readBw > 0) f.note += " (copy " + formatBytes(readBw) + "/s)";
            f.note += ", " + clock;
            return Status::ok();
        };
        // Layer 0's top-k against the CPU Router on the same keys (8-bit: over the same dequantized keys).
        auto checkScanner = [&](BenchScanner& sc, const ScanSpec& sp, Figure& f) -> Status {
            if (bankTokens > o.hooks.checkAgainstCpuUpTo) return Status::ok();
            MSA_ASSIGN_OR_RETURN(std::vector<uint32_t> dev, sc.scan(queries, s.questionTokens, s.topK));
            CpuScanner cpu(sp, o.nThreads);
            MSA_ASSIGN_OR_RETURN(std::vector<uint32_t> ref, cpu.scan(queries, s.questionTokens, s.topK));
            auto list = [](const std::vector<uint32_t>& v) {
                std::string t = "[";
                for (size_t i = 0; i < v.size(); ++i) {
                    if (i) t.push_back(',');
                    t.append(std::to_string(v[i]));
                }
                t.push_back(']');
                return t;
            };
            const std::string what = "layer-0 top-" + std::to_string(s.topK);
            std::string line = f.name + ": " + what;
            if (dev == ref) {
                line += " identical to the CPU Router's " + list(ref);
                f.note += "; " + what + " = CPU Router's";
            } else {
                line += " DIFFERS from the CPU Router's: device " + list(dev) + ", CPU " + list(ref);
                f.note += "; " + what + " DIFFERS from the CPU Router's";
                r.scanChecksPassed = false;
            }
            r.scanChecks.push_back(std::move(line));
            return Status::ok();
        };

        std::unique_ptr<BenchScanner> scanner;
        Status scanStatus = [&]() -> Status {
            if (!o.hooks.openScanner) return unimplemented("no routing scan for this device");
            MSA_ASSIGN_OR_RETURN(scanner, o.hooks.openScanner(spec));
            MSA_RETURN_IF_ERROR(timeScanner(*scanner, sf));
            return checkScanner(*scanner, spec, sf);
        }();
        if (!scanStatus) notMeasured(sf, scanStatus);
        // The 8-bit storages: the same keys quantized on upload, one scanner at a time.
        for (memory::KeyStorage storage : o.hooks.extraKeyStorages) {
            ScanSpec spec8 = spec;
            spec8.keyStorage = storage;
            Figure f8{.name = sf.name + " " + std::string(memory::keyStorageName(storage)), .unit = "ms", .higherIsBetter = false, .note = {}};
            const Status st8 = [&]() -> Status {
                MSA_ASSIGN_OR_RETURN(std::unique_ptr<BenchScanner> sc8, o.hooks.openScanner(spec8));
                MSA_RETURN_IF_ERROR(timeScanner(*sc8, f8));
                return checkScanner(*sc8, spec8, f8);
            }();
            if (!st8) notMeasured(f8, st8);
            scans8.push_back(std::move(f8));
        }

        // Time to first token: prefill of the question with the scan in each routing layer (the
        // memory hook gathers the selected documents' rows), then the first decode step.
        Status ttftStatus = !loadStatus ? loadStatus : !scanStatus ? scanStatus : [&]() -> Status {
            MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                                 loaded->createSession({.maxTokens = s.questionTokens + 8, .nThreads = o.nThreads}));
            engine::ForwardOptions fo;
            BenchScanner* sc = scanner.get();
            const size_t nQ = s.questionTokens;
            fo.memoryHook = [&](const engine::LayerTensors& lt) -> Result<engine::LayerPrefix> {
                if (lt.layer < s.firstRoutingLayer()) return engine::LayerPrefix{};
                std::vector<float> q(lt.q, lt.q + lt.nTokens * H * D);
                const float scale = 1.0f / std::sqrt(static_cast<float>(D));
                for (float& x : q) x *= scale;
                MSA_ASSIGN_OR_RETURN(std::vector<uint32_t> top, sc->scan(q, nQ, s.topK));
                (void)top;   // the synthetic content stands for the selected documents' rows
                return memoryRows;
            };
            std::vector<double> ttftRuns;
            for (size_t rep = 0; rep <= repeats; ++rep) {
                session->truncate(0);
                MSA_RETURN_IF_ERROR(session->setPrefix(std::vector<engine::LayerPrefix>(static_cast<size_t>(s.nLayers))));
                const auto t0 = Clock::now();
                MSA_ASSIGN_OR_RETURN(std::span<const float> logits, session->forward(question, questionPos, fo));
                const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
                const std::array<int32_t, 1> one = {next};
                const std::array<int32_t, 1> onePos = {static_cast<int32_t>(nQ)};
                MSA_RETURN_IF_ERROR(session->forward(one, onePos, {}).status());
                if (rep) ttftRuns.push_back(secondsSince(t0) * 1e3);
            }
            tf.value = median(ttftRuns);
            return Status::ok();
        }();
        if (!ttftStatus) notMeasured(tf, ttftStatus);
        scans.push_back(std::move(sf));
        ttfts.push_back(std::move(tf));
    }

    // ---- decode ----
    Figure dec{.name = "decode", .unit = "ms/token", .target = s.name == "msa-4b" ? 3.0 : 0.0, .higherIsBetter = false, .note = {}};
    // Bytes read per token: every weight once (the tied embedding as lm_head) + the K/V of the
    // context (memory rows in routing layers, the question everywhere), bf16.
    const double kvBytes = (static_cast<double>(nChunkRows) * nRouting + static_cast<double>(s.questionTokens) * s.nLayers) *
                           static_cast<double>(2 * G * D * 2);
    if (readBw > 0) dec.limit = (weightBytes + kvBytes) / readBw * 1e3;
    dec.note = formatBytes(weightBytes + kvBytes) + " read per token";
    Status decStatus = !loadStatus ? loadStatus : [&]() -> Status {
        const size_t ctx = s.questionTokens + s.decodeTokens + 8;
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                             loaded->createSession({.maxTokens = ctx, .nThreads = o.nThreads}));
        std::vector<engine::LayerPrefix> prefix(static_cast<size_t>(s.nLayers));
        for (int l = s.firstRoutingLayer(); l < s.nLayers; ++l) prefix[static_cast<size_t>(l)] = memoryRows;
        MSA_RETURN_IF_ERROR(session->setPrefix(std::move(prefix)));
        MSA_RETURN_IF_ERROR(session->forward(question, questionPos, {}).status());
        std::vector<double> steps;
        int32_t next = question.back();
        for (size_t i = 0; i <= s.decodeTokens; ++i) {
            const std::array<int32_t, 1> one = {next};
            const std::array<int32_t, 1> pos = {static_cast<int32_t>(question.size() + i)};
            const auto t0 = Clock::now();
            MSA_ASSIGN_OR_RETURN(std::span<const float> logits, session->forward(one, pos, {}));
            next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
            if (i) steps.push_back(secondsSince(t0) * 1e3);
        }
        dec.value = median(steps);
        return Status::ok();
    }();
    if (!decStatus) notMeasured(dec, decStatus);

    // ---- the peer ----
    // Our model leaves the device first: the peer loads its own copy of the weights beside its keys.
    loaded.reset();
    backend.reset();
    if (!o.peerPython.empty()) {
        std::vector<std::string> args = {"bench", "--checkpoint", modelDir.string(), "--device", o.peerDevice,
                                         "--dtype", o.peerDevice == "cpu" ? "float32" : "bfloat16",
                                         "--doc-tokens", std::to_string(s.docTokens),
                                         "--docs-per-forward", std::to_string(s.docsPerForward),
                                         "--memory-rows", std::to_string(nChunkRows),
                                         "--question-tokens", std::to_string(s.questionTokens),
                                         "--decode-tokens", std::to_string(s.decodeTokens),
                                         "--chunk", std::to_string(s.chunkSize), "--top-k", std::to_string(s.topK),
                                         "--routing-layers", std::to_string(nRouting),
                                         "--repeats", std::to_string(repeats), "--bank-tokens"};
        for (uint64_t b : s.bankTokens) args.push_back(std::to_string(b));
        Result<nlohmann::json> peer = runPeer(o.peerPython, o.peerScript, args);
        if (peer) {
            r.peer = *peer;
            const nlohmann::json& p = *peer;
            enc.peer = p.value("encoding_tokens_per_s", 0.0);
            dec.peer = p.value("decode_ms_per_token", 0.0);
            if (p.contains("scan_ms"))
                for (size_t i = 0; i < scans.size() && i < p["scan_ms"].size(); ++i) scans[i].peer = p["scan_ms"][i].get<double>();
            if (p.contains("ttft_ms"))
                for (size_t i = 0; i < ttfts.size() && i < p["ttft_ms"].size(); ++i) ttfts[i].peer = p["ttft_ms"][i].get<double>();
            r.peerVersions = p.value("versions", std::string());
        } else {
            r.peerError = peer.status().message();
        }
    } else {
        r.peerError = "no peer (--peer none, or python3 with torch and transformers was not found)";
    }
    r.figures.push_back(enc);
    for (auto& f : scans) r.figures.push_back(std::move(f));
    for (auto& f : scans8) r.figures.push_back(std::move(f));
    r.figures.push_back(dec);
    for (auto& f : ttfts) r.figures.push_back(std::move(f));
    return r;
}

nlohmann::json toJson(const GpuBenchResult& r) {
    nlohmann::json figs = nlohmann::json::array();
    for (const Figure& f : r.figures) {
        nlohmann::json j = {{"name", f.name}, {"unit", f.unit}, {"value", f.value}, {"limit", f.limit}, {"peer", f.peer},
                            {"target", f.target}, {"higher_is_better", f.higherIsBetter}, {"note", f.note}};
        if (f.value > 0 && f.limit > 0) j["fraction_of_limit"] = f.higherIsBetter ? f.value / f.limit : f.limit / f.value;
        if (f.value > 0 && f.peer > 0) j["speedup_vs_peer"] = f.higherIsBetter ? f.value / f.peer : f.peer / f.value;
        figs.push_back(std::move(j));
    }
    return {{"device", r.device},
            {"device_id", r.deviceId},
            {"shape", r.shape},
            {"parameters", r.nParameters},
            {"model_dir", r.modelDir},
            {"copy_bandwidth_bytes_per_s", r.copyBandwidth},
            {"peak_bf16_flops", r.peakBf16Flops},
            {"peak_source", r.peakSource},
            {"figures", figs},
            {"peer_device", r.peerDevice},
            {"peer_error", r.peerError},
            {"scan_checks", r.scanChecks},
            {"scan_checks_passed", r.scanChecksPassed},
            {"peer", r.peer}};
}

std::string toText(const GpuBenchResult& r) {
    std::ostringstream o;
    o << "device           " << r.device << " (" << r.deviceId << ")\n";
    const double params = static_cast<double>(r.nParameters);
    o << "model            random " << r.shape << ", "
      << (params >= 1e9 ? fmt(params / 1e9, 2) + " B" : fmt(params / 1e6, 2) + " M") << " parameters, bf16\n";
    o << "copy bandwidth   " << formatBytes(r.copyBandwidth) << "/s (device-to-device, read + write)\n";
    o << "bf16 peak        " << (r.peakBf16Flops > 0 ? fmt(r.peakBf16Flops / 1e12, 0) + " TFLOP/s" : std::string("unknown"))
      << " (" << r.peakSource << ")\n";
    o << "peer             " << (r.peerError.empty() ? "PyTorch on " + r.peerDevice + " " + r.peerVersions : r.peerError) << "\n\n";
    char line[256];
    std::snprintf(line, sizeof line, "%-12s %-9s %12s %12s %8s %12s %8s %10s\n", "figure", "unit", "ours", "limit",
                  "of limit", "peer", "vs peer", "target");
    o << line;
    for (const Figure& f : r.figures) {
        auto num = [](double v) { return v > 0 ? (v >= 1000 ? fmt(v, 0) : fmt(v, 3)) : std::string("-"); };
        const std::string frac = f.value > 0 && f.limit > 0
                                     ? fmt(100 * (f.higherIsBetter ? f.value / f.limit : f.limit / f.value), 0) + "%"
                                     : "-";
        const std::string vs = f.value > 0 && f.peer > 0
                                   ? fmt(f.higherIsBetter ? f.value / f.peer : f.peer / f.value, 2) + "x"
                                   : "-";
        std::snprintf(line, sizeof line, "%-12s %-9s %12s %12s %8s %12s %8s %10s", f.name.c_str(), f.unit.c_str(),
                      num(f.value).c_str(), num(f.limit).c_str(), frac.c_str(), num(f.peer).c_str(), vs.c_str(),
                      f.target > 0 ? ((f.higherIsBetter ? "≥ " : "≤ ") + num(f.target)).c_str() : "-");
        o << line;
        if (!f.note.empty()) o << "  " << f.note;
        o << "\n";
    }
    for (const std::string& c : r.scanChecks) o << "check            " << c << "\n";
    return o.str();
}

}  // namespace msa::jobs

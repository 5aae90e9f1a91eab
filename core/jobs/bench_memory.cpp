#include "core/jobs/bench_memory.h"

#include "core/catalog/catalog.h"
#include "core/catalog/import_pipeline.h"
#include "core/engine/backend.h"
#include "core/engine/backend_registry.h"
#include "core/engine/compute_threads.h"
#include "core/jobs/memory_jobs.h"
#include "core/jobs/model_runtime.h"
#include "core/memory/bank.h"
#include "core/memory/router.h"
#include "core/util/paths.h"

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>

namespace fs = std::filesystem;

namespace msa::jobs {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double secondsSince(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU seconds of the whole process (all threads): on a shared machine the wall clock also counts the
// time other people's processes held the cores, so the scan and the bandwidth are also given per
// on-CPU second (bytes × threads ÷ CPU seconds), which compares the kernel with the memory system.
double processCpuSeconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// STREAM-like read: every thread sums its share of a buffer much larger than the caches, as 64-bit
// integers (a reduction the compiler vectorises without reassociating floats). Bytes read per second,
// median of 5.
double measureReadBandwidth(engine::ComputeThreads& team, double* onCpuBytesPerSecond) {
    const size_t nWords = (size_t(256) << 20) / sizeof(uint64_t);
    std::vector<uint64_t> buf(nWords);
    for (size_t i = 0; i < nWords; ++i) buf[i] = i;
    std::vector<uint64_t> sink(team.size());
    std::vector<double> rates, cpuRates;
    for (int rep = 0; rep < 6; ++rep) {
        const auto t0 = Clock::now();
        const double c0 = processCpuSeconds();
        team.parallelFor(nWords / 4096, [&](size_t begin, size_t end, size_t thread) {
            const uint64_t* p = buf.data() + begin * 4096;
            const size_t n = (end - begin) * 4096;
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (size_t i = 0; i < n; i += 4) {
                s0 += p[i];
                s1 += p[i + 1];
                s2 += p[i + 2];
                s3 += p[i + 3];
            }
            sink[thread] += s0 + s1 + s2 + s3;
        });
        const double wall = secondsSince(t0), cpu = processCpuSeconds() - c0;
        if (rep > 0) {   // the first pass is page faults
            rates.push_back(static_cast<double>(nWords * sizeof(uint64_t)) / wall);
            cpuRates.push_back(static_cast<double>(nWords * sizeof(uint64_t) * team.size()) / std::max(cpu, 1e-9));
        }
    }
    *onCpuBytesPerSecond = median(cpuRates);
    volatile uint64_t keep = std::accumulate(sink.begin(), sink.end(), uint64_t(0));
    (void)keep;
    return median(rates);
}

// The compute side of the scan's roofline: the f32 sgemm rate for the scan's own block shape
// (64 chunk rows × query tokens × G·D, operands in cache) per on-CPU second of one thread.
double measureScanSgemm(size_t nQ, size_t width) {
    std::vector<float> a(64 * width, 0.5f), b(nQ * width, 0.25f), c(64 * nQ);
    const int iters = 2000;
    std::vector<double> rates;
    for (int rep = 0; rep < 5; ++rep) {
        const double c0 = processCpuSeconds();
        for (int it = 0; it < iters; ++it)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 64, static_cast<int>(nQ), static_cast<int>(width), 1.0f, a.data(),
                        static_cast<int>(width), b.data(), static_cast<int>(width), 0.0f, c.data(), static_cast<int>(nQ));
        rates.push_back(2.0 * 64 * static_cast<double>(nQ * width) * iters / std::max(processCpuSeconds() - c0, 1e-9));
    }
    return median(rates);
}

// The demo's suggested question (questions.json beside the archive, "suggested": true), else the first.
std::string suggestedQuestion(const fs::path& archive) {
    std::ifstream in(demoQuestionsFile(archive));
    if (!in) return {};
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_array()) return {};
    for (const auto& q : j)
        if (q.value("suggested", false)) return q.value("question", std::string());
    return j.empty() ? std::string() : j.front().value("question", std::string());
}

uint64_t peakRss() {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<uint64_t>(ru.ru_maxrss) * 1024;   // Linux: KiB
}

Status benchBuildAndAsk(const MemoryBenchOptions& o, const fs::path& work, MemoryBenchResult& r) {
    // (a) prefill throughput of the model: fresh forwards of prefillTokens tokens, first one untimed.
    {
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, o.device.create());
        MSA_ASSIGN_OR_RETURN(ModelRuntime rt, openModelRuntime(o.model, *backend));
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                             rt.model->createSession({.maxTokens = o.prefillTokens + 8, .nThreads = o.nThreads}));
        std::mt19937 rng(1234);
        std::uniform_int_distribution<int32_t> pick(100, static_cast<int32_t>(session->vocabSize()) - 1);
        std::vector<int32_t> prompt(o.prefillTokens), positions(o.prefillTokens);
        for (auto& t : prompt) t = pick(rng);
        std::iota(positions.begin(), positions.end(), 0);
        for (size_t rep = 0; rep <= std::max<size_t>(1, o.repeats); ++rep) {
            session->truncate(0);
            const auto t0 = Clock::now();
            MSA_RETURN_IF_ERROR(session->forward(prompt, positions, {}).status());
            if (rep > 0) r.prefillRuns.push_back(static_cast<double>(prompt.size()) / secondsSince(t0));
        }
        r.prefillTokensPerSecond = median(r.prefillRuns);
    }

    // The demo archive into a fresh catalog, then the bank.
    const fs::path catalogPath = work / "catalog.sqlite", bankPath = work / "bank";
    {
        MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath));
        catalog::ImportRequest req;
        req.collection = "demo";
        req.paths = {r.archive};
        MSA_ASSIGN_OR_RETURN(catalog::ImportReport rep, catalog::importPaths(cat, req, {}, nullptr));
        (void)rep;
    }
    BuildOptions b;
    b.catalog = catalogPath;
    b.collection = "demo";
    b.model = o.model;
    b.bank = bankPath;
    b.nThreads = o.nThreads;
    b.batchTokens = o.batchTokens;
    b.device = o.device;
    MSA_ASSIGN_OR_RETURN(BuildReport built, buildMemory(b));
    r.buildDocuments = built.nEncoded;
    r.buildTokens = built.nTokens;
    r.buildSeconds = built.seconds;
    r.encodeSeconds = built.encodeSeconds;
    r.buildTokensPerSecond = built.encodeSeconds > 0 ? static_cast<double>(built.nTokens) / built.encodeSeconds : 0;

    // (b) bytes per memory token vs msa-spec §6.6.
    MSA_ASSIGN_OR_RETURN(memory::Bank bank, memory::Bank::open(bankPath));
    const memory::BankParams& p = bank.params();
    r.storage = bank.elementBytes() == 2 ? "bf16" : "f32";
    r.bankBytes = bank.diskBytes();
    r.bankTokens = bank.nTokens();
    r.bankChunks = bank.nChunks();
    r.nRoutingLayers = p.routingLayers.size();
    r.nKvHeads = p.nRouteHeads;
    r.headDim = p.headDim;
    r.chunkSize = p.chunkSize;
    r.nTensors = p.keysShared ? 2 : 3;   // K̄ᴿ stored once when it is K̄ itself (training-free)
    const double perChunk = static_cast<double>(r.nTensors * r.nRoutingLayers * r.nKvHeads * r.headDim * bank.elementBytes());
    r.specBytesPerToken = perChunk / static_cast<double>(r.chunkSize);
    r.specBytesForChunks = perChunk * static_cast<double>(r.bankChunks);
    r.bankBytesPerToken = r.bankTokens ? static_cast<double>(r.bankBytes) / static_cast<double>(r.bankTokens) : 0;

    // (e) time to first token of the suggested question; the stream stops after the first piece.
    r.question = suggestedQuestion(r.archive);
    if (!r.question.empty()) {
        for (size_t rep = 0; rep < std::min<size_t>(3, std::max<size_t>(1, o.repeats)); ++rep) {
            AskRequest a;
            a.route.bank = bankPath;
            a.route.model = o.model;
            a.route.catalog = catalogPath;
            a.route.question = r.question;
            a.route.nThreads = o.nThreads;
            a.route.device = o.device;
            a.maxTokens = o.askTokens;
            double first = 0;
            const auto t0 = Clock::now();
            MSA_ASSIGN_OR_RETURN(AskReport ans, askQuestion(a, [&](std::string_view) {
                                     if (first == 0) first = secondsSince(t0);
                                     return true;
                                 }));
            r.firstTokenRuns.push_back(first);
            r.answerSeconds = secondsSince(t0);
            r.answerTokens = ans.answerTokens;
        }
        r.firstTokenSeconds = median(r.firstTokenRuns);
    }

    // (d) before the synthetic scan and the bandwidth buffer, which are not part of the product.
    r.peakRssBytes = peakRss();
    std::error_code ec;
    r.modelBytes = fs::is_regular_file(o.model, ec) ? fs::file_size(o.model, ec) : 0;
    if (fs::is_directory(o.model, ec))
        for (const auto& e : fs::directory_iterator(o.model, ec))
            if (e.is_regular_file()) r.modelBytes += e.file_size();
    r.mappedBytes = r.modelBytes + r.bankBytes;
    return Status::ok();
}

// (c) synthetic routing keys: random bf16 rows, documents of 6 chunks (≈ a demo document).
Status benchScan(const MemoryBenchOptions& o, MemoryBenchResult& r) {
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, o.device.create());
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<model::ModelFiles> opened, model::ModelFiles::open(o.model));
    MSA_ASSIGN_OR_RETURN(memory::RoutingConfig cfg, memory::routingConfigFor(*opened));
    const size_t G = cfg.nRouteHeads, D = cfg.headDim, H = cfg.nQueryHeads;
    if (r.nRoutingLayers == 0) r.nRoutingLayers = cfg.layers.size();
    r.scanQueryTokens = o.scanQueryTokens;
    std::mt19937 rng(99);
    std::normal_distribution<float> nd;

    memory::RoutingQueries q;
    q.layer = cfg.layers.front();
    q.nTokens = o.scanQueryTokens;
    q.nHeads = H;
    q.headDim = D;
    q.q.resize(q.nTokens * H * D);
    for (float& x : q.q) x = nd(rng);
    memory::prepareQueries(cfg, q.q, D);

    engine::ComputeThreads team(o.nThreads);
    r.readBandwidthBytesPerSecond = measureReadBandwidth(team, &r.readBandwidthOnCpuBytesPerSecond);
    // Roofline: 2 × nQ FLOP per key element of 2 bytes; the scan cannot read faster than the
    // sgemm rate allows (per thread, on-CPU) divided by that intensity.
    r.scanFlopsPerByte = 2.0 * static_cast<double>(o.scanQueryTokens) / 2.0;
    r.scanSgemmFlopsPerCpuSecond = measureScanSgemm(o.scanQueryTokens, G * D);
    r.scanComputeLimitOnCpuBytesPerSecond = r.scanSgemmFlopsPerCpuSecond * static_cast<double>(r.nThreads) / r.scanFlopsPerByte;
    memory::Router router(o.nThreads);
    for (uint64_t tokens : o.scanTokens) {
        ScanFigure f;
        f.memoryTokens = tokens;
        f.nChunks = std::max<uint64_t>(1, (tokens + cfg.chunkSize - 1) / cfg.chunkSize);
        const uint64_t rowElems = G * D;
        std::vector<uint16_t> keys(f.nChunks * rowElems);
        // Random bf16 of unit-normal values; a cheap generator (filling 10M tokens' keys with
        // std::normal_distribution would take longer than the scans).
        uint64_t s = 0x9E3779B97F4A7C15ull;
        for (auto& k : keys) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            const float v = static_cast<float>(static_cast<int32_t>(s & 0xFFFF) - 32768) / 16384.0f;
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            k = static_cast<uint16_t>(bits >> 16);
        }
        std::vector<uint64_t> offsets;
        for (uint64_t c = 0; c < f.nChunks; c += 6) offsets.push_back(c);
        offsets.push_back(f.nChunks);
        f.nDocuments = offsets.size() - 1;
        memory::RouteKeys rk;
        rk.data = std::as_bytes(std::span<const uint16_t>(keys));
        rk.dtype = model::DType::BF16;
        rk.nChunks = f.nChunks;
        rk.nHeads = G;
        rk.headDim = D;
        rk.chunkOffsets = offsets;
        f.keyBytes = keys.size() * sizeof(uint16_t);
        std::vector<double> cpuRuns;
        for (size_t rep = 0; rep <= std::max<size_t>(1, o.repeats); ++rep) {
            const auto t0 = Clock::now();
            const double c0 = processCpuSeconds();
            MSA_ASSIGN_OR_RETURN(memory::RouteResult res, router.route(cfg, q, rk, {.topK = cfg.topK}));
            if (res.selected.empty()) return Status(ErrorCode::Internal, "the synthetic scan selected nothing");
            if (rep > 0) {   // the first: page faults of the fresh keys
                f.runs.push_back(secondsSince(t0));
                cpuRuns.push_back(processCpuSeconds() - c0);
            }
        }
        f.layerSeconds = median(f.runs);
        f.layerCpuSeconds = median(cpuRuns);
        f.onCpuBytesPerSecond = f.layerCpuSeconds > 0 ? static_cast<double>(f.keyBytes * r.nThreads) / f.layerCpuSeconds : 0;
        f.onCpuFractionOfBandwidth = r.readBandwidthOnCpuBytesPerSecond > 0 ? f.onCpuBytesPerSecond / r.readBandwidthOnCpuBytesPerSecond : 0;
        f.querySeconds = f.layerSeconds * static_cast<double>(r.nRoutingLayers);
        f.bytesPerSecond = f.layerSeconds > 0 ? static_cast<double>(f.keyBytes) / f.layerSeconds : 0;
        f.fractionOfBandwidth = r.readBandwidthBytesPerSecond > 0 ? f.bytesPerSecond / r.readBandwidthBytesPerSecond : 0;
        r.scans.push_back(std::move(f));
    }
    return Status::ok();
}

}  // namespace

Result<MemoryBenchResult> runMemoryBench(const MemoryBenchOptions& o) {
    MemoryBenchResult r;
    r.model = o.model.string();
    r.cpu = engine::cpuModelName();
    r.nThreads = engine::ComputeThreads(o.nThreads).size();
    if (!o.skipBuild) {
        r.archive = (o.archive.empty() ? findDemoArchive() : o.archive).string();
        std::error_code ec;
        if (r.archive.empty() || !fs::is_directory(r.archive, ec))
            return notFound("the demo archive was not found (resources/demo/archive); give --archive");
        fs::path work = o.workDir;
        if (work.empty()) work = fs::temp_directory_path() / ("msa-bench-memory-" + std::to_string(::getpid()));
        fs::create_directories(work, ec);
        if (ec) return Status(ErrorCode::IoError, "cannot create " + quotedName(work.string()) + ": " + ec.message());
        Status s = benchBuildAndAsk(o, work, r);
        if (!o.keepWorkDir) fs::remove_all(work, ec);
        MSA_RETURN_IF_ERROR(s);
    }
    MSA_RETURN_IF_ERROR(benchScan(o, r));
    return r;
}

nlohmann::json toJson(const MemoryBenchResult& r) {
    nlohmann::json scans = nlohmann::json::array();
    for (const auto& f : r.scans)
        scans.push_back({{"memory_tokens", f.memoryTokens}, {"chunks", f.nChunks}, {"documents", f.nDocuments},
                         {"key_bytes_per_layer", f.keyBytes}, {"layer_seconds", f.layerSeconds},
                         {"query_seconds", f.querySeconds}, {"bytes_per_s", f.bytesPerSecond},
                         {"fraction_of_bandwidth", f.fractionOfBandwidth}, {"runs", f.runs},
                         {"layer_cpu_seconds", f.layerCpuSeconds}, {"on_cpu_bytes_per_s", f.onCpuBytesPerSecond},
                         {"on_cpu_fraction_of_bandwidth", f.onCpuFractionOfBandwidth}});
    return {{"model", r.model},
            {"archive", r.archive},
            {"cpu", r.cpu},
            {"threads", r.nThreads},
            {"build", {{"documents", r.buildDocuments}, {"tokens", r.buildTokens}, {"seconds", r.buildSeconds},
                       {"encode_seconds", r.encodeSeconds}, {"tokens_per_s", r.buildTokensPerSecond},
                       {"prefill_tokens_per_s", r.prefillTokensPerSecond}, {"prefill_runs", r.prefillRuns},
                       {"fraction_of_prefill", r.prefillTokensPerSecond > 0 ? r.buildTokensPerSecond / r.prefillTokensPerSecond : 0}}},
            {"bank", {{"storage", r.storage}, {"bytes", r.bankBytes}, {"tokens", r.bankTokens}, {"chunks", r.bankChunks},
                      {"routing_layers", r.nRoutingLayers}, {"kv_heads", r.nKvHeads}, {"head_dim", r.headDim},
                      {"chunk_size", r.chunkSize}, {"tensors", r.nTensors}, {"bytes_per_token", r.bankBytesPerToken},
                      {"spec_bytes_per_token", r.specBytesPerToken}, {"spec_bytes_for_chunks", r.specBytesForChunks}}},
            {"scan", {{"read_bandwidth_bytes_per_s", r.readBandwidthBytesPerSecond},
                      {"read_bandwidth_on_cpu_bytes_per_s", r.readBandwidthOnCpuBytesPerSecond}, {"query_tokens", r.scanQueryTokens},
                      {"flops_per_key_byte", r.scanFlopsPerByte}, {"sgemm_flops_per_cpu_s", r.scanSgemmFlopsPerCpuSecond},
                      {"compute_limit_on_cpu_bytes_per_s", r.scanComputeLimitOnCpuBytesPerSecond},
                      {"sizes", scans}}},
            {"memory", {{"peak_rss_bytes", r.peakRssBytes}, {"mapped_bytes", r.mappedBytes}, {"model_bytes", r.modelBytes}}},
            {"ask", {{"question", r.question}, {"first_token_seconds", r.firstTokenSeconds},
                     {"first_token_runs", r.firstTokenRuns}, {"answer_seconds", r.answerSeconds},
                     {"answer_tokens", r.answerTokens}}}};
}

std::string toText(const MemoryBenchResult& r) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(1);
    const auto pct = [](double a, double b) { return b > 0 ? 100.0 * a / b : 0.0; };
    o << "model     " << r.model << "\n";
    o << "cpu       " << r.cpu << ", " << r.nThreads << " threads\n";
    if (!r.archive.empty()) {
        o << "archive   " << r.archive << "\n\n";
        o << "(a) build      " << r.buildTokensPerSecond << " tokens/s in the encoder (" << r.buildTokens << " tokens, "
          << r.buildDocuments << " documents, " << r.encodeSeconds << " s; whole build " << r.buildSeconds << " s)\n"
          << "               vs prefill " << r.prefillTokensPerSecond << " tokens/s: " << pct(r.buildTokensPerSecond, r.prefillTokensPerSecond)
          << " % (target >= 70 %)\n";
        o << "(b) bank       " << r.bankBytesPerToken << " bytes per memory token (" << r.bankBytes << " bytes, " << r.bankTokens
          << " tokens, " << r.bankChunks << " chunks)\n"
          << "               vs spec 6.6 " << r.specBytesPerToken << " = " << r.nTensors << " x " << r.nRoutingLayers << " layers x "
          << r.nKvHeads << " heads x " << r.headDim << " x " << r.storage << " / " << r.chunkSize << "; for these chunks "
          << r.specBytesForChunks << " bytes (" << pct(r.specBytesForChunks, static_cast<double>(r.bankBytes)) << " % of the bank)\n";
    }
    o << "(c) scan       read bandwidth " << r.readBandwidthBytesPerSecond / 1e9 << " GB/s (per on-CPU second "
      << r.readBandwidthOnCpuBytesPerSecond / 1e9 << " GB/s); " << r.scanQueryTokens
      << " query tokens; per routing layer, and x " << r.nRoutingLayers << " layers per query:\n"
      << "               compute roofline: " << r.scanFlopsPerByte << " FLOP per key byte, sgemm " << r.scanSgemmFlopsPerCpuSecond / 1e9
      << " GFLOP/s per thread -> at most " << r.scanComputeLimitOnCpuBytesPerSecond / 1e9 << " GB/s per on-CPU second\n";
    o.precision(2);
    for (const auto& f : r.scans)
        o << "               " << static_cast<double>(f.memoryTokens) / 1e6 << "M tokens (" << f.nChunks << " chunks, "
          << static_cast<double>(f.keyBytes) / 1e6 << " MB/layer): " << f.layerSeconds * 1e3 << " ms/layer, " << f.querySeconds * 1e3
          << " ms/query, " << f.bytesPerSecond / 1e9 << " GB/s = " << 100.0 * f.fractionOfBandwidth << " % of bandwidth (target >= 50 %)\n"
          << "                 per on-CPU second: " << f.layerCpuSeconds * 1e3 << " CPU ms/layer, " << f.onCpuBytesPerSecond / 1e9
          << " GB/s = " << 100.0 * f.onCpuFractionOfBandwidth << " % of the on-CPU read rate, "
          << 100.0 * f.onCpuBytesPerSecond / std::max(1.0, r.scanComputeLimitOnCpuBytesPerSecond) << " % of the compute roofline\n";
    o.precision(1);
    if (!r.archive.empty()) {
        o << "(d) memory     peak RSS " << static_cast<double>(r.peakRssBytes) / 1e6 << " MB vs mapped working set "
          << static_cast<double>(r.mappedBytes) / 1e6 << " MB (model " << static_cast<double>(r.modelBytes) / 1e6 << " MB + bank): "
          << pct(static_cast<double>(r.peakRssBytes), static_cast<double>(r.mappedBytes)) << " %\n";
        o.precision(2);
        o << "(e) ask        first token after " << r.firstTokenSeconds << " s (median of " << r.firstTokenRuns.size()
          << "): \"" << r.question << "\"\n";
    }
    return o.str();
}

}  // namespace msa::jobs

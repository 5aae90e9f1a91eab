#include "core/jobs/bench.h"

#include "core/engine/backend.h"
#include "core/engine/backend_registry.h"
#include "core/engine/compute_threads.h"
#include "core/model/dtype.h"
#include "core/model/model_files.h"

#include <cblas.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <sstream>

namespace msa::jobs {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// memcpy of 256 MiB split over the team, median of 5: bytes read + written per second.
double measureCopyBandwidth(engine::ComputeThreads& team) {
    const size_t n = size_t(256) << 20;
    std::vector<char> a(n, 1), b(n, 0);
    std::vector<double> rates;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = Clock::now();
        team.parallelFor(n / 4096, [&](size_t begin, size_t end, size_t) {
            std::memcpy(b.data() + begin * 4096, a.data() + begin * 4096, (end - begin) * 4096);
        });
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        rates.push_back(2.0 * static_cast<double>(n) / s);
    }
    return median(rates);
}

// f32 sgemm rate of OpenBLAS for a prefill-shaped product (128 tokens × 576 × 1536), each thread
// running its own single-threaded call on its share of the columns, as the engine does.
double measureSgemm(engine::ComputeThreads& team) {
    const int m = 128, k = 576, nCols = 1536;
    std::vector<float> x(size_t(m) * k, 0.5f), w(size_t(nCols) * k, 0.25f), y(size_t(m) * nCols);
    std::vector<double> rates;
    for (int rep = 0; rep < 5; ++rep) {
        const auto t0 = Clock::now();
        const int inner = 10;
        for (int it = 0; it < inner; ++it)
            team.parallelFor(nCols / 64, [&](size_t begin, size_t end, size_t) {
                const int c0 = static_cast<int>(begin * 64), cols = static_cast<int>((end - begin) * 64);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, k, 1.0f, x.data(), k,
                            w.data() + size_t(c0) * k, k, 0.0f, y.data() + c0, nCols);
            });
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        rates.push_back(2.0 * m * k * nCols * inner / s);
    }
    return median(rates);
}

}  // namespace

Result<CpuBenchResult> runCpuBench(const CpuBenchOptions& o) {
    CpuBenchResult r;
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<model::ModelFiles> opened, model::ModelFiles::open(o.model));
    std::shared_ptr<const model::ModelFiles> files = std::move(opened);
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Backend> backend, o.device.create());
    MSA_ASSIGN_OR_RETURN(std::shared_ptr<const engine::LoadedModel> loaded, backend->load(files));
    MSA_ASSIGN_OR_RETURN(std::unique_ptr<engine::Session> session,
                         loaded->createSession({.maxTokens = o.promptTokens + o.decodeTokens + 8, .nThreads = o.nThreads}));
    engine::ComputeThreads team(o.nThreads);
    r.model = o.model.string();
    r.cpu = engine::cpuModelName();
    r.nThreads = team.size();
    r.simd = model::simdKernelsActive() ? "avx2" : "scalar";

    // Bytes and multiply-adds per token: every 2-D weight once (the tied embedding doubles as
    // lm_head; the embedding lookup itself reads one row only).
    const auto& c = files->config();
    const bool tied = files->tensors().find("output.weight") == nullptr;
    for (const auto& t : files->tensors().all()) {
        if (t.shape.size() != 2) continue;
        if (t.name == "token_embd.weight" && !tied) continue;
        r.weightBytesPerToken += t.bytes.size();
        r.macsPerToken += static_cast<double>(t.nElements());
    }
    (void)c;

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> pick(100, static_cast<int32_t>(session->vocabSize()) - 1);
    std::vector<int32_t> prompt(o.promptTokens);
    for (auto& t : prompt) t = pick(rng);
    std::vector<int32_t> positions(prompt.size());
    std::iota(positions.begin(), positions.end(), 0);

    // One untimed warm-up: the first touch of the mapped weights is page faults, not compute.
    session->truncate(0);
    MSA_RETURN_IF_ERROR(session->forward(prompt, positions, {}).status());

    for (size_t rep = 0; rep < std::max<size_t>(1, o.repeats); ++rep) {
        session->truncate(0);
        const auto t0 = Clock::now();
        auto logits = session->forward(prompt, positions, {});
        if (!logits) return logits.status();
        const double prefill = std::chrono::duration<double>(Clock::now() - t0).count();
        r.prefillRuns.push_back(static_cast<double>(prompt.size()) / prefill);

        int32_t token = static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
        const auto t1 = Clock::now();
        for (size_t i = 0; i < o.decodeTokens; ++i) {
            const int32_t pos = static_cast<int32_t>(session->nPast());
            auto l = session->forward(std::span<const int32_t>(&token, 1), std::span<const int32_t>(&pos, 1), {});
            if (!l) return l.status();
            token = static_cast<int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
        }
        const double decode = std::chrono::duration<double>(Clock::now() - t1).count();
        r.decodeRuns.push_back(static_cast<double>(o.decodeTokens) / decode);
    }
    r.prefillTokensPerSecond = median(r.prefillRuns);
    r.decodeTokensPerSecond = median(r.decodeRuns);

    r.copyBandwidthBytesPerSecond = measureCopyBandwidth(team);
    r.readBandwidthBytesPerSecond = r.copyBandwidthBytesPerSecond / 2;
    r.decodeLimitTokensPerSecond = r.readBandwidthBytesPerSecond / static_cast<double>(r.weightBytesPerToken);
    r.sgemmFlopsPerSecond = measureSgemm(team);
    r.prefillLimitTokensPerSecond = r.sgemmFlopsPerSecond / (2.0 * r.macsPerToken);
    return r;
}

nlohmann::json toJson(const CpuBenchResult& r) {
    return {{"model", r.model},
            {"cpu", r.cpu},
            {"threads", r.nThreads},
            {"simd", r.simd},
            {"weight_bytes_per_token", r.weightBytesPerToken},
            {"macs_per_token", r.macsPerToken},
            {"prefill_tokens_per_s", r.prefillTokensPerSecond},
            {"decode_tokens_per_s", r.decodeTokensPerSecond},
            {"prefill_runs", r.prefillRuns},
            {"decode_runs", r.decodeRuns},
            {"copy_bandwidth_bytes_per_s", r.copyBandwidthBytesPerSecond},
            {"read_bandwidth_bytes_per_s", r.readBandwidthBytesPerSecond},
            {"decode_limit_tokens_per_s", r.decodeLimitTokensPerSecond},
            {"decode_fraction_of_limit", r.decodeLimitTokensPerSecond > 0 ? r.decodeTokensPerSecond / r.decodeLimitTokensPerSecond : 0},
            {"sgemm_flops_per_s", r.sgemmFlopsPerSecond},
            {"prefill_limit_tokens_per_s", r.prefillLimitTokensPerSecond},
            {"prefill_fraction_of_limit", r.prefillLimitTokensPerSecond > 0 ? r.prefillTokensPerSecond / r.prefillLimitTokensPerSecond : 0}};
}

std::string toText(const CpuBenchResult& r) {
    std::ostringstream o;
    o.setf(std::ios::fixed);
    o.precision(1);
    o << "model     " << r.model << "\n";
    o << "cpu       " << r.cpu << ", " << r.nThreads << " threads, " << r.simd << " row kernels\n";
    o << "weights   " << static_cast<double>(r.weightBytesPerToken) / (1 << 20) << " MiB read per decoded token, "
      << r.macsPerToken / 1e6 << " M multiply-adds per token\n\n";
    o << "                    measured (median)   limit of this machine      fraction\n";
    o << "prefill tokens/s    " << r.prefillTokensPerSecond << "\t\t" << r.prefillLimitTokensPerSecond
      << "  (sgemm " << r.sgemmFlopsPerSecond / 1e9 << " GFLOP/s)\t" << 100.0 * r.prefillTokensPerSecond / std::max(1e-9, r.prefillLimitTokensPerSecond) << " %\n";
    o << "decode tokens/s     " << r.decodeTokensPerSecond << "\t\t" << r.decodeLimitTokensPerSecond
      << "  (read " << r.readBandwidthBytesPerSecond / 1e9 << " GB/s)\t" << 100.0 * r.decodeTokensPerSecond / std::max(1e-9, r.decodeLimitTokensPerSecond) << " %\n";
    return o.str();
}

}  // namespace msa::jobs

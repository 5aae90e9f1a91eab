// cmd_generate.cpp: `msa generate` — stream a model's continuation of a prompt (or, with --chat, its
// answer to a user message in the model's chat template) to stdout. SIGINT cancels cleanly: what was
// generated so far is kept and the timing line is still printed.
#include "app/backend_setup.h"
#include "app/commands.h"
#include "app/signal_cancel.h"

#include "core/jobs/bench.h"
#include "core/jobs/bench_import.h"
#include "core/jobs/bench_memory.h"
#include "core/jobs/model_runtime.h"
#include "core/util/status.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <cstdio>
#include <iostream>

namespace msa::app {
int reportFailure(const std::string& command, const Status& status, bool json) {
    std::fprintf(stderr, "msa %s: %s\n", command.c_str(), status.toString().c_str());
    if (json) {
        nlohmann::json j = {{"ok", false},
                            {"error",
                             {{"code", std::string(errorCodeName(status.code()))},
                              {"code_number", static_cast<int>(status.code())},
                              {"message", status.message()}}}};
        std::cout << j.dump(2) << std::endl;
    }
    return exitCodeFor(status.code());
}


int runGenerate(const GenerateArgs& a) {
    if (a.maxTokens < 0) return reportFailure("generate", invalidArgument("--max-tokens must be >= 0"), a.json);
    if (a.temperature < 0) return reportFailure("generate", invalidArgument("--temperature must be >= 0"), a.json);
    if (a.topP <= 0 || a.topP > 1) return reportFailure("generate", invalidArgument("--top-p must be in (0, 1]"), a.json);
    auto device = selectDevice(a.device, "generate");
    if (!device) return reportFailure("generate", device.status(), a.json);
    auto backend = device->create();
    if (!backend) return reportFailure("generate", backend.status(), a.json);
    auto rt = jobs::openModelRuntime(a.modelPath, **backend);
    if (!rt) return reportFailure("generate", rt.status(), a.json);
    const std::vector<int32_t> prompt = jobs::promptTokens(*rt, a.prompt, a.chat);
    if (prompt.empty()) return reportFailure("generate", invalidArgument("the prompt is empty"), a.json);

    engine::SessionOptions so;
    so.nThreads = static_cast<size_t>(std::max(0, a.threads));
    so.maxTokens = prompt.size() + static_cast<size_t>(a.maxTokens) + 1;
    auto session = rt->model->createSession(so);
    if (!session) return reportFailure("generate", session.status(), a.json);

    CancelToken cancel;
    std::optional<CancelOnSignal> signals(std::in_place, cancel);
    engine::GenerateOptions go;
    go.maxTokens = static_cast<size_t>(a.maxTokens);
    go.sampler = {.temperature = a.temperature, .topK = a.topK, .topP = a.topP, .repetitionPenalty = a.repeatPenalty,
                  .seed = a.seed};
    if (a.chat) go.stopStrings = jobs::chatStopStrings(*rt);
    go.cancel = &cancel;
    auto result = engine::generate(**session, *rt->tokenizer, prompt, go, [&](std::string_view piece, int32_t) {
        if (!a.json) {
            std::fwrite(piece.data(), 1, piece.size(), stdout);
            std::fflush(stdout);
        }
        return true;
    });
    signals.reset();
    if (!result) return reportFailure("generate", result.status(), a.json);
    const auto& r = *result;
    const double prefillRate = r.prefillSeconds > 0 ? static_cast<double>(r.nPromptTokens) / r.prefillSeconds : 0;
    const double decodeRate = r.decodeSeconds > 0 ? static_cast<double>(r.tokens.size()) / r.decodeSeconds : 0;
    if (a.json) {
        nlohmann::json j = {{"ok", true},
                            {"text", r.text},
                            {"tokens", r.tokens},
                            {"prompt_tokens", r.nPromptTokens},
                            {"stop_reason", r.stopReason},
                            {"prefill_seconds", r.prefillSeconds},
                            {"decode_seconds", r.decodeSeconds},
                            {"prefill_tokens_per_s", prefillRate},
                            {"decode_tokens_per_s", decodeRate},
                            {"device", deviceJson(*device)}};
        std::cout << j.dump(2) << std::endl;
    } else {
        std::fprintf(stderr, "\n[%zu prompt tokens at %.1f tok/s, %zu generated at %.1f tok/s, stop: %s, device: %s]\n",
                     r.nPromptTokens, prefillRate, r.tokens.size(), decodeRate, r.stopReason.c_str(),
                     device->describe().c_str());
    }
    return r.stopReason == "cancelled" ? exitCodeFor(ErrorCode::Cancelled) : 0;
}

}  // namespace msa::app

namespace msa::app {

int runBench(const BenchArgs& a) {
    if (a.what == "import") {
        jobs::ImportBenchOptions io;
        if (!a.sizes.empty()) io.sizes = a.sizes;
        io.nThreads = a.threads > 0 ? a.threads : 2;
        auto runs = jobs::runImportBench(io);
        if (!runs) return reportFailure("bench", runs.status(), a.json);
        if (a.json) {
            nlohmann::json j = {{"ok", true}, {"import", jobs::toJson(*runs)}};
            std::cout << j.dump(2) << std::endl;
        } else {
            std::cout << jobs::toText(*runs);
        }
        return 0;
    }
    if (a.what == "memory") {
        if (a.modelPath.empty()) return reportFailure("bench", invalidArgument("msa bench memory needs --model PATH"), a.json);
        jobs::MemoryBenchOptions mo;
        auto device = selectDevice(a.device.empty() ? "cpu" : a.device, "bench");
        if (!device) return reportFailure("bench", device.status(), a.json);
        mo.device = *device;
        mo.model = a.modelPath;
        mo.archive = a.archive;
        mo.nThreads = static_cast<size_t>(std::max(0, a.threads));
        mo.batchTokens = static_cast<size_t>(std::max(0, a.batchTokens));
        mo.repeats = static_cast<size_t>(std::max(1, a.repeats));
        mo.skipBuild = a.scanOnly;
        mo.scanTokens.clear();
        for (double m : a.scanMillions) mo.scanTokens.push_back(static_cast<uint64_t>(std::max(1.0, m * 1e6)));
        auto r = jobs::runMemoryBench(mo);
        if (!r) return reportFailure("bench", r.status(), a.json);
        if (a.json) {
            nlohmann::json j = jobs::toJson(*r);
            j["ok"] = true;
            j["device"] = deviceJson(mo.device);
            std::cout << j.dump(2) << std::endl;
        } else {
            std::cout << jobs::toText(*r);
        }
        return 0;
    }
    if (a.what == "gpu") return runBenchGpu(a);
    if (a.what != "cpu")
        return reportFailure("bench", unimplemented("'msa bench " + a.what + "' is not available (cpu, import, memory and gpu are)"), a.json);
    if (a.modelPath.empty()) return reportFailure("bench", invalidArgument("msa bench cpu needs --model PATH"), a.json);
    jobs::CpuBenchOptions o;
    auto device = selectDevice(a.device.empty() ? "cpu" : a.device, "bench");
    if (!device) return reportFailure("bench", device.status(), a.json);
    o.device = *device;
    o.model = a.modelPath;
    o.nThreads = static_cast<size_t>(std::max(0, a.threads));
    o.promptTokens = static_cast<size_t>(std::max(1, a.promptTokens));
    o.decodeTokens = static_cast<size_t>(std::max(1, a.decodeTokens));
    o.repeats = static_cast<size_t>(std::max(1, a.repeats));
    auto r = jobs::runCpuBench(o);
    if (!r) return reportFailure("bench", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        j["device"] = deviceJson(o.device);
        std::cout << j.dump(2) << std::endl;
    } else {
        std::cout << jobs::toText(*r);
    }
    return 0;
}

}  // namespace msa::app

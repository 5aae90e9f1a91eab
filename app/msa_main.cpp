// msa_main.cpp: the `msa` command line, a composition root (CONVENTIONS.md #1). It parses options
// with CLI11, calls the library (core/jobs), and prints either text or --json. Every capability it
// exposes lives in a library so the GUI and the tests reach the same code.
//
// Exit codes: 0 success; 2 usage errors (CLI11 parse errors, bad option values); otherwise
// msa::exitCodeFor(status.code()) — see README.md "Exit codes". Errors print one line on stderr,
// "msa <command>: <code>: <message>", and with --json also an {"ok": false, "error": {...}} object on
// stdout so that scripts never parse text.
#include "app/backend_setup.h"
#include "core/jobs/doctor.h"
#include "core/model/model_files.h"
#include "core/util/build_info.h"
#include "core/util/log.h"
#include "core/util/status.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cinttypes>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

struct CommonFlags {
    bool json = false;
};

// Prints a failure the way every subcommand does and returns the exit code.
int reportFailure(const std::string& command, const msa::Status& status, bool json) {
    std::fprintf(stderr, "msa %s: %s\n", command.c_str(), status.toString().c_str());
    if (json) {
        nlohmann::json j = {{"ok", false},
                            {"error",
                             {{"code", std::string(msa::errorCodeName(status.code()))},
                              {"code_number", static_cast<int>(status.code())},
                              {"message", status.message()}}}};
        std::cout << j.dump(2) << std::endl;
    }
    return msa::exitCodeFor(status.code());
}

int runDoctor(bool json, bool requireModel, bool requireGpu) {
    const msa::engine::BackendRegistry registry = msa::app::makeBackendRegistry();
    const msa::jobs::DoctorReport report = msa::jobs::runDoctor(registry);
    if (json) {
        nlohmann::json j = msa::jobs::toJson(report);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
    } else {
        std::cout << msa::jobs::toText(report);
    }
    if (requireModel && !(report.demoModel.present && report.demoModel.looksValid)) {
        const msa::ErrorCode code = report.demoModel.present ? msa::ErrorCode::Corrupt : msa::ErrorCode::NotFound;
        std::fprintf(stderr, "msa doctor: %s: demo model %s\n", std::string(msa::errorCodeName(code)).c_str(),
                     report.demoModel.problem.c_str());
        return msa::exitCodeFor(code);
    }
    if (requireGpu) {
        const msa::engine::BackendInfo* cuda = registry.find("cuda");
        if (!cuda || !cuda->usable) {
            std::fprintf(stderr, "msa doctor: device_error: no usable GPU: %s\n",
                         cuda ? cuda->reason.c_str() : "no CUDA backend registered");
            return msa::exitCodeFor(msa::ErrorCode::DeviceError);
        }
    }
    return 0;
}

// `msa info --model PATH`: what a model is, from its files alone (no weights are read beyond the
// headers, so it is instant even for large models).
int runInfo(const std::string& modelPath, bool json) {
    using namespace msa::model;
    if (modelPath.empty()) return reportFailure("info", msa::invalidArgument("--model PATH is required"), json);
    msa::Result<std::unique_ptr<ModelFiles>> opened = ModelFiles::open(modelPath);
    if (!opened) return reportFailure("info", opened.status(), json);
    const ModelFiles& m = **opened;
    const ModelConfig& c = m.config();
    const auto totals = m.totalsByDtype();
    if (json) {
        nlohmann::json j = {{"ok", true},
                            {"path", m.path().string()},
                            {"format", m.format() == ModelFormat::Gguf ? "gguf" : "huggingface"},
                            {"config", c.toJson()},
                            {"tensor_count", m.tensors().all().size()},
                            {"tensor_bytes", m.totalBytes()},
                            {"fingerprint", m.fingerprint().hex()},
                            {"routing_mode", std::string(routingModeName(m.routingMode()))},
                            {"router_layers", m.routerLayers()},
                            {"simd_kernels", simdKernelsActive() ? "avx2" : "scalar"}};
        nlohmann::json d = nlohmann::json::object();
        for (const auto& [name, t] : totals)
            d[name] = {{"tensors", t.nTensors}, {"bytes", t.nBytes}, {"elements", t.nElements}};
        j["dtypes"] = std::move(d);
        std::cout << j.dump(2) << std::endl;
        return 0;
    }
    std::printf("model            %s (%s)\n", m.path().string().c_str(),
                m.format() == ModelFormat::Gguf ? "GGUF" : "Hugging Face safetensors");
    std::printf("architecture     %s (model_type %s)\n", std::string(architectureName(c.arch)).c_str(),
                c.modelType.c_str());
    std::printf("layers           %d\n", c.nLayers);
    std::printf("heads            %d query, %d key/value, head dim %d\n", c.nHeads, c.nKvHeads, c.headDim);
    std::printf("hidden size      %d\n", c.hiddenSize);
    std::printf("FFN size         %d\n", c.ffnSize);
    std::printf("vocabulary       %d\n", c.vocabSize);
    std::printf("context length   %" PRId64 "\n", c.contextLength);
    std::printf("rope theta       %g (%s)\n", c.ropeTheta, std::string(ropeStyleName(c.ropeStyle)).c_str());
    std::printf("rms norm eps     %g\n", static_cast<double>(c.rmsNormEps));
    std::printf("embeddings       %s\n", c.tieWordEmbeddings ? "tied (output = token_embd)" : "separate output");
    std::printf("tensors          %zu, %.1f MiB\n", m.tensors().all().size(),
                static_cast<double>(m.totalBytes()) / (1024.0 * 1024.0));
    for (const auto& [name, t] : totals)
        std::printf("  %-6s         %" PRIu64 " tensors, %.1f MiB\n", name.c_str(), t.nTensors,
                    static_cast<double>(t.nBytes) / (1024.0 * 1024.0));
    std::printf("routing          %s", std::string(routingModeName(m.routingMode())).c_str());
    if (!m.routerLayers().empty())
        std::printf(" (router tensors in %zu layers, %d..%d)", m.routerLayers().size(), m.routerLayers().front(),
                    m.routerLayers().back());
    std::printf("\n");
    if (c.msa)
        std::printf("msa_config       router layers '%s', doc_top_k %d, aux_loss_method %s\n",
                    c.msa->routerLayerSpec.c_str(), c.msa->docTopK, c.msa->auxLossMethod.c_str());
    std::printf("fingerprint      %s\n", m.fingerprint().hex().c_str());
    return 0;
}

// A subcommand whose implementation arrives with a later issue: it is listed so that `msa --help`
// shows the whole surface, accepts its documented options, and fails with a specific code.
struct PlannedCommand {
    const char* name;
    const char* description;
    const char* arrivesWith;
    std::vector<std::pair<const char*, const char*>> options;   // "--name,-n" + description
    const char* positional;                                      // nullptr when none
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"MSA Workbench command line: import personal archives, build Memory Sparse Attention "
                 "memory banks with a local model, ask and inspect routing.",
                 "msa"};
    app.set_version_flag("--version", "msa " + std::string(msa::versionString()));
    app.require_subcommand(1);
    app.fallthrough(false);
    bool verbose = false;
    app.add_flag("-v,--verbose", verbose, "Log debug messages to stderr");

    // ---- doctor --------------------------------------------------------------------------------
    CommonFlags doctorFlags;
    bool requireModel = false;
    bool requireGpu = false;
    CLI::App* doctor = app.add_subcommand(
        "doctor", "Report version, backends and devices (and why a GPU is not usable), the demo model and archive");
    doctor->add_flag("--json", doctorFlags.json, "Print the report as one JSON object");
    doctor->add_flag("--require-model", requireModel, "Fail (exit 3/5) when the demo model is absent or invalid");
    doctor->add_flag("--require-gpu", requireGpu, "Fail (exit 9) when no CUDA device is usable");

    // ---- info ----------------------------------------------------------------------------------
    CommonFlags infoFlags;
    std::string infoModel;
    CLI::App* info = app.add_subcommand("info", "Print a model's architecture, sizes, dtypes, fingerprint and routing mode");
    info->add_flag("--json", infoFlags.json, "Print the description as one JSON object");
    info->add_option("--model", infoModel, "Model file (GGUF) or Hugging Face folder")->required();

    // ---- subcommands that later issues fill ---------------------------------------------------
    const std::vector<PlannedCommand> planned = {
        {"tokenize", "Print the token ids of TEXT under a model's tokenizer", "the model runtime",
         {{"--model", "Model file or folder"}}, "TEXT"},
        {"generate", "Stream a model's continuation of PROMPT", "the model runtime",
         {{"--model", "Model file or folder"}, {"--max-tokens", "Tokens to generate"}}, "PROMPT"},
        {"import", "Import files and folders into a catalog collection", "the catalog",
         {{"--catalog", "Catalog database file"}, {"--collection", "Collection name"}}, "PATH"},
        {"search", "Full-text search (FTS5, BM25) in a catalog", "the catalog",
         {{"--catalog", "Catalog database file"}, {"--collection", "Restrict to a collection"}}, "QUERY"},
        {"build", "Build or update a memory bank from a collection with a model", "the MSA memory engine",
         {{"--catalog", "Catalog database file"}, {"--collection", "Collection name"}, {"--model", "Model"},
          {"--bank", "Memory bank path"}, {"--device", "cpu|cuda|cuda:N|cuda:all"}}, nullptr},
        {"route", "Print the documents each routing layer selects for QUESTION", "the MSA memory engine",
         {{"--bank", "Memory bank path"}, {"--top-k", "Documents per layer"}}, "QUESTION"},
        {"ask", "Answer QUESTION from a memory bank with Memory Interleave", "the MSA memory engine",
         {{"--bank", "Memory bank path"}, {"--hops", "Maximum interleave rounds"}}, "QUESTION"},
        {"bank", "Inspect, verify, compact, export or import memory banks", "the MSA memory engine",
         {{"--bank", "Memory bank path"}}, "ACTION"},
        {"eval", "Evaluate routing and answers on MuSiQue / LoCoMo / the demo questions", "the MSA memory engine",
         {{"--bank", "Memory bank path"}, {"--dataset", "Dataset file"}}, nullptr},
        {"bench", "Measure throughput beside the physical limit and a peer", "the model runtime and CUDA backend",
         {{"--model", "Model file or folder"}, {"--device", "cpu|cuda"}}, "WHAT"},
    };
    std::vector<CommonFlags> plannedFlags(planned.size());
    std::vector<std::vector<std::string>> plannedValues(planned.size());
    std::vector<std::vector<std::string>> plannedPositionals(planned.size());
    std::vector<CLI::App*> plannedApps;
    for (size_t i = 0; i < planned.size(); ++i) {
        const PlannedCommand& p = planned[i];
        CLI::App* sc = app.add_subcommand(p.name, p.description);
        sc->add_flag("--json", plannedFlags[i].json, "Print results as JSON");
        plannedValues[i].resize(p.options.size());
        for (size_t o = 0; o < p.options.size(); ++o)
            sc->add_option(p.options[o].first, plannedValues[i][o], p.options[o].second);
        if (p.positional) sc->add_option(p.positional, plannedPositionals[i], "")->required();
        plannedApps.push_back(sc);
    }

    // Name an unknown command instead of CLI11's generic "A subcommand is required".
    if (argc > 1 && argv[1][0] != '-') {
        bool known = false;
        for (const CLI::App* sc : app.get_subcommands([](CLI::App*) { return true; }))
            known = known || sc->get_name() == argv[1];
        if (!known) {
            std::fprintf(stderr, "msa: usage error: unknown command '%s' (run 'msa --help')\n", argv[1]);
            return 2;
        }
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        // One line, with where to look; CLI11's own message names the option or subcommand.
        std::fprintf(stderr, "msa: usage error: %s (run 'msa --help')\n", e.what());
        return 2;
    }

    msa::setLogLevel(verbose ? msa::LogLevel::Debug : msa::LogLevel::Info);

    try {
        if (doctor->parsed()) return runDoctor(doctorFlags.json, requireModel, requireGpu);
        if (info->parsed()) return runInfo(infoModel, infoFlags.json);
        for (size_t i = 0; i < planned.size(); ++i) {
            if (!plannedApps[i]->parsed()) continue;
            return reportFailure(planned[i].name,
                                 msa::unimplemented(std::string("not available in msa ") +
                                                    std::string(msa::versionString()) + " yet; it arrives with " +
                                                    planned[i].arrivesWith),
                                 plannedFlags[i].json);
        }
    } catch (const std::exception& e) {
        // Library code returns Status values; this only catches a bug or a third-party throw.
        return reportFailure("", msa::Status::fromException(e, "unexpected error"), false);
    }
    return 0;
}

// commands.h: the msa subcommands implemented outside msa_main.cpp (one file per area), each a thin
// layer over core/jobs that parses nothing itself and prints text or JSON. Exit codes follow
// msa::exitCodeFor(); errors print one line on stderr.
#pragma once

#include "core/util/status.h"

#include <cstdint>
#include <string>
#include <vector>

namespace msa::app {

struct GenerateArgs {
    std::string modelPath;
    std::string prompt;
    bool chat = false;
    int maxTokens = 128;
    float temperature = 0.0f;
    int topK = 0;
    float topP = 1.0f;
    float repeatPenalty = 1.0f;
    uint64_t seed = 0;
    int threads = 0;
    std::string device = "auto";   // --device: auto | cpu | cuda | cuda:N | cuda:all (core/engine/device_select.h)
    bool json = false;
};
int runGenerate(const GenerateArgs& args);

struct BenchArgs {
    std::string what;            // "cpu" | "import"
    std::string modelPath;
    int threads = 0;
    int promptTokens = 128;
    int decodeTokens = 64;
    int repeats = 3;
    std::vector<size_t> sizes;   // import: files per generated archive
    std::string archive;         // memory: the demo archive (default: found like the GUI finds it)
    std::vector<double> scanMillions = {1, 10};   // memory: synthetic routing scans, millions of tokens
    int batchTokens = 512;      // memory: encoder packing
    bool scanOnly = false;       // memory: only the routing scan (no build, no ask)
    std::string device;           // --device; empty: cpu for `bench cpu|memory` (CPU figures), auto for `bench gpu`
    std::string shape = "msa-4b"; // gpu: msa-4b (the real shape, random weights) | tiny (harness tests on the CPU)
    std::string peer = "auto";    // gpu: auto | none | the Python interpreter running tests/tools/bench_peer_torch.py
    std::string peerScript;       // gpu: the peer script (default: found beside the source tree or installed)
    std::string workDir;          // gpu: where the random checkpoint is written and kept (default: a temporary folder, removed)
    std::vector<double> bankMillions;   // gpu: routing-scan bank sizes, millions of tokens (empty: the shape's: 1, 10, 100)
    bool json = false;
    std::string bank, questions; // quant: an existing bank (no build); questions.json (default: the demo's)
    int greedyTokens = 16;       // quant: greedy steps compared per question
    int maxQuestions = 0;        // quant: 0 = all
};
int runBench(const BenchArgs& args);
int runBenchQuant(const BenchArgs& args);   // cmd_bench_quant.cpp
// `msa bench gpu` (cmd_bench_gpu.cpp): core/jobs/bench_gpu.h with the chosen device's hooks and the PyTorch peer.
int runBenchGpu(const BenchArgs& args);

struct BuildArgs {
    std::string catalog, collection, modelPath, bank;
    std::string storage = "bf16";
    int threads = 0;
    int batchTokens = 512;
    std::string device = "auto";   // --device: auto | cpu | cuda | cuda:N | cuda:all (core/engine/device_select.h)
    bool quiet = false;
    bool json = false;
};
int runBuild(const BuildArgs& args);

// Candidate filter options shared by route and ask (empty string = not given).
struct FilterArgs {
    std::string collection, kind, since, until, participant;   // dates: YYYY-MM-DD (UTC)
};

struct RouteArgs {
    std::string bank, modelPath, catalog, question;
    int topN = 10;
    int threads = 0;
    std::string device = "auto";   // --device: auto | cpu | cuda | cuda:N | cuda:all (core/engine/device_select.h)
    std::string keyStorage = "native";   // --key-storage: native | fp8 | int8 (memory::parseKeyStorage)
    bool json = false;
    FilterArgs filter;
};
int runRoute(const RouteArgs& args);

struct AskArgs {
    std::string bank, modelPath, catalog, question;
    int nDocuments = 4;
    int maxTokens = 256;
    int threads = 0;
    std::string device = "auto";   // --device: auto | cpu | cuda | cuda:N | cuda:all (core/engine/device_select.h)
    bool json = false;
    bool trace = false;
    std::string method = "auto";          // auto | interleave | training-free
    std::string injection = "original";   // original | compressed
    int hops = 1;
    int maxRounds = 8;
    bool reference = false;
    bool noHistory = false;
    float temperature = 0.0f;
    std::string keyStorage = "native";   // --key-storage: native | fp8 | int8 (memory::parseKeyStorage)
    FilterArgs filter;
};
int runAsk(const AskArgs& args);

struct EvalArgs {
    std::string bank, modelPath, catalog, questions, archiveRoot;
    std::string file, workdir;   // a MuSiQue/LoCoMo (or demo questions) file; its work folder
    int limit = 0;
    bool memoryOfLimit = false;
    bool answers = false;
    int answerTokens = 48;
    int answerDocuments = 4;
    int k = 0;
    int threads = 0;
    std::string device = "auto";   // --device: auto | cpu | cuda | cuda:N | cuda:all (core/engine/device_select.h)
    bool json = false;
};
int runEval(const EvalArgs& args);

// msa bank export BANK FILE [--zstd] [--catalog DB] / msa bank import FILE [--bank DIR] [--catalog DB]
// [--model M] [--force]: one self-contained file per bank (core/memory/README.md "Bank archive files").
struct BankFileArgs {
    std::string bank, file, catalog, model;
    bool zstd = false;
    bool force = false;
    bool quiet = false;
    bool json = false;
};
int runBankExport(const BankFileArgs& args);
int runBankImport(const BankFileArgs& args);

// msa history [--catalog DB] [--json] / msa history show TURN_ID [--json]: stored chat turns.
struct HistoryArgs {
    std::string action;          // "" (list) | "show"
    std::string catalog;
    int64_t turnId = 0;
    bool json = false;
};
int runHistory(const HistoryArgs& args);

// The one failure printer of every subcommand: "msa <command>: <code name>: <message>" on stderr,
// plus {"ok": false, "error": {...}} on stdout with --json. Returns msa::exitCodeFor(status.code()).
int reportFailure(const std::string& command, const Status& status, bool json);

}  // namespace msa::app

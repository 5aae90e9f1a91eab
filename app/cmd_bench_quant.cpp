// cmd_bench_quant.cpp: `msa bench quant` — FP8 E4M3 / int8 storage of a bank's rows vs bf16: top-k
// agreement per routing layer and the effect on compressed-memory generation (core/jobs/bench_quant.h).
#include "app/commands.h"

#include "core/jobs/bench_quant.h"
#include "core/util/status.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>

namespace msa::app {

int runBenchQuant(const BenchArgs& a) {
    jobs::QuantBenchOptions o;
    o.model = a.modelPath;
    o.archive = a.archive;
    o.questions = a.questions;
    o.bank = a.bank;
    o.batchTokens = static_cast<size_t>(std::max(1, a.batchTokens));
    o.maxQuestions = static_cast<size_t>(std::max(0, a.maxQuestions));
    o.measure.nThreads = static_cast<size_t>(std::max(0, a.threads));
    o.measure.greedyTokens = static_cast<size_t>(std::max(1, a.greedyTokens));
    auto r = jobs::runQuantBench(o);
    if (!r) return reportFailure("bench", r.status(), a.json);
    if (a.json) {
        nlohmann::json j = jobs::toJson(*r);
        j["ok"] = true;
        std::cout << j.dump(2) << std::endl;
    } else {
        std::cout << jobs::toText(*r);
    }
    return 0;
}

}  // namespace msa::app

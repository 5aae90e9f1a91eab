// bank_crash_helper: a child process for tst_bank. It appends deterministic documents to a bank,
// committing after each, until it is killed (crash test) or a write fails (disk-full test).
//   bank_crash_helper create DIR
//   bank_crash_helper append DIR COUNT [FSIZE_LIMIT_BYTES] [TOKENS_PER_DOC]
//   bank_crash_helper compact DIR
// Exit status: 0 after COUNT documents; otherwise the ErrorCode number of the failure.
#include "tests/core/memory/bank_test_util.h"

#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace msa::memory;

int main(int argc, char** argv) {
    if (argc < 3) return 64;
    const std::string cmd = argv[1];
    const std::filesystem::path dir = argv[2];
    const BankParams params = testing::smallParams(msa::model::DType::BF16);
    if (cmd == "create") {
        auto w = BankWriter::create(dir, params, testing::makeTemplate(params));
        if (!w) { std::fprintf(stderr, "%s\n", w.status().toString().c_str()); return static_cast<int>(w.status().code()); }
        return 0;
    }
    if (cmd == "compact") {
        auto w = BankWriter::open(dir);
        if (!w) return static_cast<int>(w.status().code());
        auto r = w->compact();
        return r.ok() ? 0 : static_cast<int>(r.status().code());
    }
    if (cmd != "append" || argc < 4) return 64;
    const long count = std::atol(argv[3]);
    if (argc > 4) {
        // A full disk, as the kernel reports it past RLIMIT_FSIZE once SIGXFSZ no longer kills us.
        std::signal(SIGXFSZ, SIG_IGN);
        const rlim_t limit = std::strtoull(argv[4], nullptr, 10);
        rlimit rl{limit, limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) return 65;
    }
    const uint64_t fixedTokens = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 0;
    auto w = BankWriter::open(dir);
    if (!w) { std::fprintf(stderr, "%s\n", w.status().toString().c_str()); return static_cast<int>(w.status().code()); }
    auto bank = Bank::open(dir);
    if (!bank) return static_cast<int>(bank.status().code());
    int64_t next = 1;
    for (const DocumentEntry& d : bank->documents()) next = std::max(next, d.id + 1);
    for (long i = 0; i < count; ++i, ++next) {
        testing::TestDoc d = testing::makeDoc(params, next, fixedTokens ? fixedTokens : testing::tokensFor(next));
        msa::Status st = w->append(d.input);
        if (st) st = w->commit();
        if (!st) {
            std::fprintf(stderr, "%s\n", st.toString().c_str());
            return static_cast<int>(st.code());
        }
        std::printf("%lld\n", static_cast<long long>(next));
        std::fflush(stdout);
    }
    return 0;
}

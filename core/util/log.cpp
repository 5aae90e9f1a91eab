#include "core/util/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace msa {
namespace {
std::mutex g_hookMutex;
LogHook g_hook;   // guarded by g_hookMutex; empty means "stderr"
std::atomic<int> g_level{static_cast<int>(LogLevel::Info)};
}  // namespace

std::string_view logLevelName(LogLevel level) {
    switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warning: return "warning";
    case LogLevel::Error: return "error";
    }
    return "?";
}

LogHook setLogHook(LogHook hook) {
    std::lock_guard lock(g_hookMutex);
    LogHook previous = std::move(g_hook);
    g_hook = std::move(hook);
    return previous;
}

void setLogLevel(LogLevel level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
LogLevel logLevel() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

void logMessage(LogLevel level, std::string_view message) {
    if (level < logLevel()) return;
    std::lock_guard lock(g_hookMutex);
    if (g_hook) {
        g_hook(level, message);
        return;
    }
    std::fprintf(stderr, "[%.*s] %.*s\n", static_cast<int>(logLevelName(level).size()),
                 logLevelName(level).data(), static_cast<int>(message.size()), message.data());
}

}  // namespace msa

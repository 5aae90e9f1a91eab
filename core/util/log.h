// log.h: one process-wide logging hook so that the CLI (stderr), the GUI (a log panel on the GUI
// thread) and tests (capture) decide where messages go; the library never prints by itself.
//
// Thread affinity: logMessage() may be called from any thread. The hook is called on the calling
// thread, serialised by a mutex, so a hook must be quick and must not log recursively. A GUI hook
// forwards the message through a queued signal.
//
// Usage:
//     msa::setLogHook([](msa::LogLevel l, std::string_view m) { std::fprintf(stderr, ...); });
//     MSA_LOG(Info) << "loaded " << nTensors << " tensors from " << path;
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace msa {

enum class LogLevel : int { Debug = 0, Info = 1, Warning = 2, Error = 3 };

std::string_view logLevelName(LogLevel level);

using LogHook = std::function<void(LogLevel, std::string_view)>;

// Replaces the hook (an empty function restores the default, which writes "[level] msg" to stderr).
// Returns the previous hook so a test can restore it.
LogHook setLogHook(LogHook hook);
// Messages below this level are dropped before formatting reaches the hook. Default: Info.
void setLogLevel(LogLevel level);
LogLevel logLevel();

void logMessage(LogLevel level, std::string_view message);

namespace detail {
// Collects one message with operator<< and hands it to logMessage() when the statement ends.
class LogLine {
public:
    explicit LogLine(LogLevel level) : m_level(level) {}
    ~LogLine() { logMessage(m_level, m_stream.str()); }
    LogLine(const LogLine&) = delete;
    LogLine& operator=(const LogLine&) = delete;
    template <typename T>
    LogLine& operator<<(const T& v) { m_stream << v; return *this; }
private:
    LogLevel m_level;
    std::ostringstream m_stream;
};
}  // namespace detail

}  // namespace msa

// The level check happens before any argument is formatted.
#define MSA_LOG(level)                                                       \
    if (::msa::LogLevel::level < ::msa::logLevel()) {                        \
    } else                                                                   \
        ::msa::detail::LogLine(::msa::LogLevel::level)

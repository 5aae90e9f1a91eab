// progress.h: the cancel token and progress callback that every long operation takes
// (import, bank build, generation, export, benchmark). CONVENTIONS.md #9.
//
// CancelToken: one per request, shared between the requester (GUI/CLI signal handler) and the worker.
// cancel() may be called from any thread at any time; workers poll isCancelled() between units of work
// (files, documents, layers, tokens) and return Status{ErrorCode::Cancelled} after leaving their
// state consistent. A token is never reset; a new request gets a new token.
//
// ProgressFn: called on the worker thread. It must be cheap and must not block (a GUI forwards it
// through a queued signal, coalesced). ProgressMeter throttles calls and computes rate and ETA.
//
// Usage:
//     auto cancel = std::make_shared<msa::CancelToken>();
//     msa::ProgressMeter meter("import", nFiles, onProgress);
//     for (...) { if (cancel->isCancelled()) return msa::cancelled(); ...; meter.advance(1, bytes, path); }
//     meter.finish();
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace msa {

class CancelToken {
public:
    void cancel() noexcept { m_cancelled.store(true, std::memory_order_release); }
    bool isCancelled() const noexcept { return m_cancelled.load(std::memory_order_acquire); }

private:
    std::atomic<bool> m_cancelled{false};
};

// A snapshot of a long operation. Units are the operation's own (files, documents, tokens);
// total == 0 means "unknown" and then etaSeconds is negative.
struct Progress {
    std::string stage;           // "import", "build", "export", ...
    uint64_t done = 0;
    uint64_t total = 0;
    uint64_t bytesDone = 0;
    uint64_t bytesTotal = 0;
    double unitsPerSecond = 0;   // over the whole run so far
    double bytesPerSecond = 0;
    double elapsedSeconds = 0;
    double etaSeconds = -1;      // negative when unknown
    std::string current;         // the file/document being worked on, for display
    bool finished = false;

    double fraction() const { return total ? static_cast<double>(done) / static_cast<double>(total) : 0.0; }
};

using ProgressFn = std::function<void(const Progress&)>;

// Keeps counts, derives rate and ETA, and calls the callback at most every `interval`
// (plus once at finish()). Used by one worker thread; not thread-safe.
class ProgressMeter {
public:
    using Clock = std::chrono::steady_clock;

    ProgressMeter(std::string stage, uint64_t total, ProgressFn callback,
                  std::chrono::milliseconds interval = std::chrono::milliseconds(100),
                  uint64_t bytesTotal = 0);

    void advance(uint64_t units, uint64_t bytes = 0, std::string current = {});
    void setTotal(uint64_t total, uint64_t bytesTotal = 0);
    void finish();
    const Progress& snapshot();   // refreshes rate/ETA and returns the current state

private:
    void refresh(Clock::time_point now);

    Progress m_progress;
    ProgressFn m_callback;
    std::chrono::milliseconds m_interval;
    Clock::time_point m_start;
    Clock::time_point m_lastReport;
};

}  // namespace msa

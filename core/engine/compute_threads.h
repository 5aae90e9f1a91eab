// compute_threads.h: a fork-join team of threads for the forward pass: parallelFor(n, fn) splits
// [0, n) into contiguous ranges, runs them on the team plus the calling thread, and returns when all
// are done.
//
// Why not core/util/ThreadPool: a forward pass of the demo model issues ~200 parallel regions per
// token, each a few microseconds long. A queue of std::function tasks behind a mutex costs more than
// the work; here the workers spin briefly on an atomic generation counter before sleeping, and the
// caller takes a share of the work itself, as llama.cpp's and OpenMP's runtimes do.
//
// Ownership/threads: owned by one session (one engine thread). parallelFor() must be called from that
// thread only and is not reentrant. fn is called concurrently on disjoint ranges and must not throw.
//
// Usage:
//     ComputeThreads team(2);
//     team.parallelFor(nRows, [&](size_t begin, size_t end, size_t thread) { ... });
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace msa::engine {

class ComputeThreads {
public:
    using RangeFn = std::function<void(size_t begin, size_t end, size_t threadIndex)>;

    // nThreads counts the caller: 1 means "no extra threads". 0 picks hardware_concurrency().
    explicit ComputeThreads(size_t nThreads);
    ~ComputeThreads();
    ComputeThreads(const ComputeThreads&) = delete;
    ComputeThreads& operator=(const ComputeThreads&) = delete;

    size_t size() const { return m_workers.size() + 1; }

    // Runs fn over [0, n) split into at most size() contiguous ranges of at least `grain` items.
    void parallelFor(size_t n, const RangeFn& fn, size_t grain = 1);

private:
    void workerLoop(size_t index);

    std::vector<std::thread> m_workers;
    const RangeFn* m_fn = nullptr;
    size_t m_n = 0;
    size_t m_nParts = 0;
    std::atomic<uint64_t> m_generation{0};
    std::atomic<size_t> m_pending{0};
    std::atomic<bool> m_stop{false};
    std::mutex m_mutex;
    std::condition_variable m_wake;
};

}  // namespace msa::engine

// thread_pool.h: a small fixed-size pool of std::threads running queued tasks (file extraction in
// the catalog import; other CPU-bound fan-out later).
//
// Why not std::async: we want a bounded number of threads (2 cores are shared by several jobs) and a
// bounded queue, so that a producer walking 100,000 files cannot queue 100,000 closures; submit()
// blocks while the queue is full (back-pressure keeps memory flat in the number of tasks).
//
// Ownership: the pool owns its threads. The destructor runs every task already queued, then joins.
// Thread affinity: submit() and waitIdle() may be called from any thread except a pool thread
// (a task that submits to its own full pool would deadlock).
// Tasks must not throw: an escaping exception is caught, logged as a bug, and dropped (no exception
// crosses the thread boundary, CONVENTIONS.md #7); report failures through the task's own result.
//
// Usage:
//     msa::ThreadPool pool(2, /*maxQueued=*/64);
//     for (auto& f : files) pool.submit([&, f] { results.push(extract(f)); });
//     pool.waitIdle();
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace msa {

class ThreadPool {
public:
    // nThreads == 0 picks std::thread::hardware_concurrency() (at least 1). maxQueued == 0 means
    // unbounded.
    explicit ThreadPool(size_t nThreads, size_t maxQueued = 0);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    // Queues a task; blocks while maxQueued tasks are already waiting.
    void submit(std::function<void()> task);
    // Blocks until the queue is empty and no task is running.
    void waitIdle();

    size_t threadCount() const { return m_threads.size(); }

private:
    void workerLoop();

    std::mutex m_mutex;
    std::condition_variable m_hasWork;
    std::condition_variable m_hasRoom;
    std::condition_variable m_idle;
    std::deque<std::function<void()>> m_queue;
    std::vector<std::thread> m_threads;
    size_t m_maxQueued = 0;
    size_t m_running = 0;
    bool m_stopping = false;
};

}  // namespace msa

#include "core/util/thread_pool.h"

#include "core/util/log.h"

#include <algorithm>
#include <exception>

namespace msa {

ThreadPool::ThreadPool(size_t nThreads, size_t maxQueued) : m_maxQueued(maxQueued) {
    if (nThreads == 0) nThreads = std::max<size_t>(1, std::thread::hardware_concurrency());
    m_threads.reserve(nThreads);
    for (size_t i = 0; i < nThreads; ++i) m_threads.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(m_mutex);
        m_stopping = true;
    }
    m_hasWork.notify_all();
    for (std::thread& t : m_threads) t.join();
}

void ThreadPool::submit(std::function<void()> task) {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_hasRoom.wait(lock, [this] { return m_maxQueued == 0 || m_queue.size() < m_maxQueued; });
    m_queue.push_back(std::move(task));
    lock.unlock();
    m_hasWork.notify_one();
}

void ThreadPool::waitIdle() {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_idle.wait(lock, [this] { return m_queue.empty() && m_running == 0; });
}

void ThreadPool::workerLoop() {
    for (;;) {
        std::function<void()> task;
        {
            std::unique_lock<std::mutex> lock(m_mutex);
            // On shutdown the queue is drained first: tasks already accepted always run.
            m_hasWork.wait(lock, [this] { return m_stopping || !m_queue.empty(); });
            if (m_queue.empty()) return;
            task = std::move(m_queue.front());
            m_queue.pop_front();
            ++m_running;
        }
        m_hasRoom.notify_one();
        try {
            task();
        } catch (const std::exception& e) {
            MSA_LOG(Error) << "bug: a thread-pool task threw: " << e.what();
        } catch (...) {
            MSA_LOG(Error) << "bug: a thread-pool task threw a non-standard exception";
        }
        {
            std::lock_guard<std::mutex> lock(m_mutex);
            --m_running;
            if (m_queue.empty() && m_running == 0) m_idle.notify_all();
        }
    }
}

}  // namespace msa

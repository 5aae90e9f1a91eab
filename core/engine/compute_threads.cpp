#include "core/engine/compute_threads.h"

#include <algorithm>

namespace msa::engine {
namespace {
// Spin this many iterations for new work before sleeping: long enough to cover the gap between two
// layers' regions (microseconds), short enough not to burn a core while the user reads.
constexpr int kSpinIterations = 20000;
// After this many pause instructions a waiting thread yields its core instead of burning it.
constexpr int kYieldAfter = 2000;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
}  // namespace

ComputeThreads::ComputeThreads(size_t nThreads) {
    if (nThreads == 0) nThreads = std::max(1u, std::thread::hardware_concurrency());
    for (size_t i = 1; i < nThreads; ++i) m_workers.emplace_back([this, i] { workerLoop(i); });
}

ComputeThreads::~ComputeThreads() {
    {
        std::lock_guard lock(m_mutex);
        m_stop.store(true);
        m_generation.fetch_add(1);
    }
    m_wake.notify_all();
    for (auto& t : m_workers) t.join();
}

static void runPart(const ComputeThreads::RangeFn& fn, size_t n, size_t nParts, size_t part) {
    const size_t begin = n * part / nParts;
    const size_t end = n * (part + 1) / nParts;
    if (begin < end) fn(begin, end, part);
}

void ComputeThreads::parallelFor(size_t n, const RangeFn& fn, size_t grain) {
    if (n == 0) return;
    const size_t maxParts = grain ? std::max<size_t>(1, n / grain) : n;
    const size_t nParts = std::min(size(), maxParts);
    if (nParts <= 1) {
        fn(0, n, 0);
        return;
    }
    m_fn = &fn;
    m_n = n;
    m_nParts = nParts;
    // Every worker acknowledges every region, even with no part in it, so none can lag into the next one.
    m_pending.store(m_workers.size(), std::memory_order_relaxed);
    {
        std::lock_guard lock(m_mutex);   // pairs with the sleepers' predicate check
        m_generation.fetch_add(1, std::memory_order_release);
    }
    m_wake.notify_all();
    runPart(fn, n, nParts, 0);
    // Spin, then yield: when the machine is oversubscribed a descheduled worker needs our core.
    for (int spin = 0; m_pending.load(std::memory_order_acquire) != 0; ++spin) {
        if (spin < kYieldAfter) cpuRelax();
        else std::this_thread::yield();
    }
    m_fn = nullptr;
}

void ComputeThreads::workerLoop(size_t index) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t gen = m_generation.load(std::memory_order_acquire);
        for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
            if (spin < kYieldAfter) cpuRelax();
            else std::this_thread::yield();
            gen = m_generation.load(std::memory_order_acquire);
        }
        if (gen == seen) {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_generation.load(std::memory_order_acquire) != seen; });
            gen = m_generation.load(std::memory_order_acquire);
        }
        seen = gen;
        if (m_stop.load()) return;
        // Workers beyond the parts of this region have nothing to do this time.
        if (index < m_nParts) runPart(*m_fn, m_n, m_nParts, index);
        m_pending.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace msa::engine

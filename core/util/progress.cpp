#include "core/util/progress.h"

namespace msa {

ProgressMeter::ProgressMeter(std::string stage, uint64_t total, ProgressFn callback,
                             std::chrono::milliseconds interval, uint64_t bytesTotal)
    : m_callback(std::move(callback)), m_interval(interval), m_start(Clock::now()) {
    m_progress.stage = std::move(stage);
    m_progress.total = total;
    m_progress.bytesTotal = bytesTotal;
    m_lastReport = m_start - m_interval;   // the first advance() reports at once
}

void ProgressMeter::setTotal(uint64_t total, uint64_t bytesTotal) {
    m_progress.total = total;
    m_progress.bytesTotal = bytesTotal;
}

void ProgressMeter::refresh(Clock::time_point now) {
    const double elapsed = std::chrono::duration<double>(now - m_start).count();
    m_progress.elapsedSeconds = elapsed;
    if (elapsed > 0) {
        m_progress.unitsPerSecond = static_cast<double>(m_progress.done) / elapsed;
        m_progress.bytesPerSecond = static_cast<double>(m_progress.bytesDone) / elapsed;
    }
    // ETA from the fraction that is measurable: bytes when both totals are known (files differ in
    // size, bytes predict time better), else units.
    double fraction = -1;
    if (m_progress.bytesTotal > 0)
        fraction = static_cast<double>(m_progress.bytesDone) / static_cast<double>(m_progress.bytesTotal);
    else if (m_progress.total > 0)
        fraction = static_cast<double>(m_progress.done) / static_cast<double>(m_progress.total);
    if (fraction > 0 && elapsed > 0)
        m_progress.etaSeconds = fraction >= 1.0 ? 0.0 : elapsed * (1.0 - fraction) / fraction;
    else
        m_progress.etaSeconds = -1;
}

void ProgressMeter::advance(uint64_t units, uint64_t bytes, std::string current) {
    m_progress.done += units;
    m_progress.bytesDone += bytes;
    if (!current.empty()) m_progress.current = std::move(current);
    const auto now = Clock::now();
    if (m_callback && now - m_lastReport >= m_interval) {
        refresh(now);
        m_lastReport = now;
        m_callback(m_progress);
    }
}

void ProgressMeter::finish() {
    refresh(Clock::now());
    m_progress.finished = true;
    m_progress.etaSeconds = 0;
    if (m_callback) m_callback(m_progress);
}

const Progress& ProgressMeter::snapshot() {
    refresh(Clock::now());
    return m_progress;
}

}  // namespace msa

#include "core/engine/sampler.h"

#include "core/engine/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_set>

namespace msa::engine {

Sampler::Sampler(SamplerParams params) : m_params(params), m_rng(params.seed) {}

void applyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> history, float penalty, int window) {
    if (penalty == 1.0f || history.empty()) return;
    const size_t start = (window > 0 && history.size() > static_cast<size_t>(window)) ? history.size() - window : 0;
    std::unordered_set<int32_t> seen;
    for (size_t i = start; i < history.size(); ++i) {
        const int32_t t = history[i];
        if (t < 0 || static_cast<size_t>(t) >= logits.size() || !seen.insert(t).second) continue;
        float& l = logits[static_cast<size_t>(t)];
        l = l > 0 ? l / penalty : l * penalty;
    }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
    applyRepetitionPenalty(logits, history, m_params.repetitionPenalty, m_params.repetitionWindow);
    if (m_params.temperature <= 0.0f || m_params.topK == 1)
        return static_cast<int32_t>(cpu::argmax(logits.data(), logits.size()));

    // Candidates sorted by logit descending, index ascending on ties (deterministic order).
    const size_t n = logits.size();
    m_order.resize(n);
    std::iota(m_order.begin(), m_order.end(), 0);
    size_t keep = n;
    if (m_params.topK > 0 && static_cast<size_t>(m_params.topK) < n) keep = static_cast<size_t>(m_params.topK);
    auto better = [&](int32_t a, int32_t b) {
        return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    };
    std::partial_sort(m_order.begin(), m_order.begin() + static_cast<std::ptrdiff_t>(keep), m_order.end(), better);
    m_order.resize(keep);

    m_probs.resize(keep);
    const float invT = 1.0f / m_params.temperature;
    for (size_t i = 0; i < keep; ++i) m_probs[i] = logits[m_order[i]] * invT;
    cpu::softmax(m_probs.data(), keep);

    if (m_params.topP < 1.0f) {
        // Smallest prefix whose mass reaches topP (at least one token).
        float cum = 0.0f;
        size_t cut = keep;
        for (size_t i = 0; i < keep; ++i) {
            cum += m_probs[i];
            if (cum >= m_params.topP) {
                cut = i + 1;
                break;
            }
        }
        keep = cut;
        float sum = 0.0f;
        for (size_t i = 0; i < keep; ++i) sum += m_probs[i];
        for (size_t i = 0; i < keep; ++i) m_probs[i] /= sum;
    }

    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const double u = uniform(m_rng);
    double cum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        cum += m_probs[i];
        if (u < cum) return m_order[i];
    }
    return m_order[keep - 1];   // rounding left a sliver: the last kept candidate
}

}  // namespace msa::engine

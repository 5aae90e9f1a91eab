// sampler.h: choosing the next token from logits: greedy (temperature 0; the lowest index wins
// ties), or temperature + top-k + top-p sampling with a seeded generator; an optional repetition
// penalty over the recent history (Hugging Face's rule: positive logits divided, negative ones
// multiplied by the penalty).
//
// Ownership/threads: a Sampler belongs to one session and is used by one thread; it owns its random
// generator, so the same seed, logits and history give the same tokens on every run.
//
// Usage:
//     msa::engine::Sampler s({.temperature = 0.7f, .topP = 0.9f, .seed = 42});
//     int32_t next = s.sample(logits, history);
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace msa::engine {

struct SamplerParams {
    float temperature = 0.0f;        // 0: greedy
    int topK = 0;                    // 0: no top-k filter
    float topP = 1.0f;               // 1: no nucleus filter
    float repetitionPenalty = 1.0f;  // 1: off
    int repetitionWindow = 64;       // how many recent tokens the penalty looks at (0: all)
    uint64_t seed = 0;
};

class Sampler {
public:
    explicit Sampler(SamplerParams params = {});

    // Picks a token. `logits` is modified (penalty, temperature); `history` is the token sequence so far.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);

    const SamplerParams& params() const { return m_params; }

private:
    SamplerParams m_params;
    std::mt19937_64 m_rng;
    std::vector<int32_t> m_order;   // scratch: candidate indices
    std::vector<float> m_probs;     // scratch
};

// Applies the repetition penalty in place (each distinct token once).
void applyRepetitionPenalty(std::span<float> logits, std::span<const int32_t> history, float penalty, int window);

}  // namespace msa::engine

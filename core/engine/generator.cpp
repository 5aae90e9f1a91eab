#include "core/engine/generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace msa::engine {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Length of the longest suffix of `text` that is a proper prefix of some stop string: that much must
// be held back because the next token may complete the stop string.
size_t heldBackForStops(std::string_view text, const std::vector<std::string>& stops) {
    size_t hold = 0;
    for (const auto& s : stops)
        for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len)
            if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
                hold = len;
                break;
            }
    return hold;
}

}  // namespace

Result<GenerateResult> generate(Session& session, const model::Tokenizer& tokenizer, std::span<const int32_t> prompt,
                                const GenerateOptions& options, const TokenCallback& onPiece) {
    GenerateResult result;
    result.nPromptTokens = prompt.size();
    if (prompt.empty()) return invalidArgument("generate() needs a non-empty prompt");

    ForwardOptions fwd;
    fwd.cancel = options.cancel;
    std::span<const float> logits;
    const auto t0 = Clock::now();
    std::vector<int32_t> positions;
    const size_t chunk = std::max<size_t>(1, options.prefillChunk);
    for (size_t start = 0; start < prompt.size(); start += chunk) {
        const size_t n = std::min(chunk, prompt.size() - start);
        positions.resize(n);
        std::iota(positions.begin(), positions.end(), options.positionOffset + static_cast<int32_t>(session.nPast()));
        auto r = session.forward(prompt.subspan(start, n), positions, fwd);
        if (!r) {
            if (r.status().code() == ErrorCode::Cancelled) {
                result.stopReason = "cancelled";
                result.prefillSeconds = secondsSince(t0);
                return result;
            }
            return r.status().withContext("prefill");
        }
        logits = *r;
    }
    result.prefillSeconds = secondsSince(t0);

    Sampler sampler(options.sampler);
    std::vector<int32_t> history(prompt.begin(), prompt.end());
    std::vector<float> work;
    model::StreamingDecoder decoder(tokenizer, /*skipSpecial=*/true);
    std::string pending;   // decoded text not yet streamed (may start a stop string)
    const auto& special = tokenizer.specialIds();
    const auto t1 = Clock::now();

    auto emit = [&](std::string_view piece, int32_t token) {
        result.text += piece;
        return onPiece ? onPiece(piece, token) : true;
    };

    for (size_t step = 0;; ++step) {
        if (options.cancel && options.cancel->isCancelled()) {
            result.stopReason = "cancelled";
            break;
        }
        if (step >= options.maxTokens) {
            result.stopReason = "max-tokens";
            break;
        }
        work.assign(logits.begin(), logits.end());
        const int32_t token = sampler.sample(work, history);
        result.tokens.push_back(token);
        history.push_back(token);
        const bool isEnd = options.stopAtEos && ((special.eos && token == *special.eos) || (special.eot && token == *special.eot));
        if (isEnd) {
            result.stopReason = "eos";
            break;
        }
        pending += decoder.push(token);
        // A stop string ends generation; what precedes it is streamed.
        size_t stopAt = std::string::npos;
        for (const auto& s : options.stopStrings)
            if (!s.empty()) stopAt = std::min(stopAt, pending.find(s));
        if (stopAt != std::string::npos) {
            if (stopAt > 0) emit(std::string_view(pending).substr(0, stopAt), token);
            pending.clear();
            result.stopReason = "stop-string";
            break;
        }
        const size_t hold = heldBackForStops(pending, options.stopStrings);
        if (pending.size() > hold) {
            const bool more = emit(std::string_view(pending).substr(0, pending.size() - hold), token);
            pending.erase(0, pending.size() - hold);
            if (!more) {
                result.stopReason = "callback";
                break;
            }
        }
        const int32_t pos = options.positionOffset + static_cast<int32_t>(session.nPast());
        auto r = session.forward(std::span<const int32_t>(&token, 1), std::span<const int32_t>(&pos, 1), fwd);
        if (!r) {
            if (r.status().code() == ErrorCode::Cancelled) {
                result.stopReason = "cancelled";
                break;
            }
            return r.status().withContext("decode step " + std::to_string(step));
        }
        logits = *r;
    }
    if (result.stopReason != "stop-string") {
        pending += decoder.finish();
        if (!pending.empty()) emit(pending, -1);
    }
    result.decodeSeconds = secondsSince(t1);
    return result;
}

}  // namespace msa::engine

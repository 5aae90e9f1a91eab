#include "core/memory/interleave.h"

#include "core/util/log.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <set>

namespace msa::memory {
namespace {

using Clock = std::chrono::steady_clock;
double secondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr std::string_view kAnswerPrefix = "\nPlease answer the question based";
constexpr std::string_view kQuestionStart = "historical document information\n\n";
constexpr std::string_view kQuestionEnd = "\nPlease return all documents related to the question";
constexpr std::string_view kRegion2Anchor = "Please return all documents related to the question";
constexpr std::string_view kRegion1Marker = "]<|object_ref_end|>[";

bool contains(std::string_view s, std::string_view what) { return s.find(what) != std::string_view::npos; }

// tokenizer(text, add_special_tokens=False): special-token strings inside the text are single ids.
std::vector<int32_t> encodeRaw(const model::Tokenizer& tok, std::string_view text) {
    return tok.encode(text, {.matchSpecial = true, .addBos = false});
}

// Python's len() of a str: code points (the text is valid UTF-8 after decoding).
size_t codePoints(std::string_view s) {
    return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string pyStrip(std::string_view s) {
    auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    size_t b = 0, e = s.size();
    while (b < e && ws(s[b])) ++b;
    while (e > b && ws(s[e - 1])) --e;
    return std::string(s.substr(b, e - b));
}

// torch.argmax: the first maximal index.
int32_t argmax(std::span<const float> logits) {
    size_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[best]) best = i;
    return static_cast<int32_t>(best);
}

// The question the reference recovers from the decoded inputs of the call (msa/generate.py:197-198).
std::string recoverQuestion(std::string_view allInputs) {
    size_t at = allInputs.rfind(kQuestionStart);
    std::string_view q = at == std::string_view::npos ? allInputs : allInputs.substr(at + kQuestionStart.size());
    const size_t end = q.find(kQuestionEnd);
    if (end != std::string_view::npos) q = q.substr(0, end);
    return std::string(q);
}

struct CallContext {
    engine::Session& session;
    MemoryIndex& index;
    const model::Tokenizer& tok;
    const DocumentLookup& documents;
    const InterleaveOptions& opt;
    size_t forcedUsed = 0;
    std::optional<Clock::time_point> firstToken;
};

bool isEos(const InterleaveOptions& o, int32_t t) { return std::find(o.eosIds.begin(), o.eosIds.end(), t) != o.eosIds.end(); }

// One reference generate() call, batch 1 (msa/generate.py:100-320), iteration by iteration.
Result<InterleaveRound> runCall(CallContext& c, size_t round, std::vector<int32_t> prompt, std::vector<uint8_t> mask,
                                int32_t firstPosition) {
    const InterleaveOptions& o = c.opt;
    InterleaveRound r;
    r.prompt = prompt;
    r.routeMask = mask;
    r.firstPosition = firstPosition;

    std::vector<int32_t> inputs = std::move(prompt);
    std::vector<int32_t> positions(inputs.size());
    std::iota(positions.begin(), positions.end(), firstPosition);
    std::vector<int32_t> callTokens;          // all_model_inputs['input_ids']
    std::string allInputs;                    // all_input_str
    std::string inner, resp;                  // inner_string, response_string
    bool prefill = true, roundEnd = false, copied = false, hasStage3 = false, unfinished = true;
    bool roundFlag = false, retrFlag = false;
    int stage = 1;
    size_t cnt = 0;
    model::StreamingDecoder stream(c.tok);
    auto emit = [&](std::string_view piece, bool generated) -> Status {
        if (piece.empty() || !o.onText) return Status::ok();
        if (!o.onText(piece, generated)) return Status(ErrorCode::Cancelled, "answer cancelled");
        return Status::ok();
    };
    r.stopReason = "eos";

    while (unfinished) {
        callTokens.insert(callTokens.end(), inputs.begin(), inputs.end());
        allInputs += c.tok.decode(inputs);
        if (roundEnd) {
            r.stopReason = "ids";
            break;
        }
        const auto t0 = Clock::now();
        std::span<const float> logits;
        if (prefill) {
            MSA_ASSIGN_OR_RETURN(SparsePrefill p, sparsePrefill(c.session, c.index, inputs, positions, mask, {.topN = o.topN, .cancel = o.cancel}));
            logits = p.logits;
            r.routing = std::move(p.layers);
            r.prefillSeconds += secondsSince(t0);
        } else {
            engine::ForwardOptions fo;
            fo.cancel = o.cancel;
            fo.causal = !(o.reference && copied && inputs.size() > 1);   // B3: the stage-3 injection
            MSA_ASSIGN_OR_RETURN(logits, c.session.forward(inputs, positions, fo));
            r.decodeSeconds += secondsSince(t0);
        }
        prefill = false;
        const int32_t lastPos = positions.back();
        const bool injecting = stage == 2 || stage == 3;
        int32_t next = argmax(logits);
        if (!injecting && c.forcedUsed < o.forcedTokens.size()) next = o.forcedTokens[c.forcedUsed++];
        if (o.onStep) o.onStep({round, cnt, logits, next, !injecting});

        if (injecting) {
            // The pick after the round's last token is discarded; the injection is built (:194-219).
            std::string inj;
            const std::string restatement = "<|im_start|>The user's question is: " + recoverQuestion(allInputs) + "\n<|object_ref_end|>";
            if (stage == 2) {
                if (contains(inner, kEndOfRetrieve)) {
                    inj = restatement;
                } else {
                    std::set<int64_t> ids;
                    for (int64_t id : parseIds(inner)) ids.insert(id);
                    for (int64_t id : ids) {
                        std::optional<std::string> text = c.documents ? c.documents(id) : std::nullopt;
                        if (!text) continue;
                        r.injectedIds.push_back(id);
                        inj += '[';
                        inj += std::to_string(id);
                        inj += "]. ";
                        inj += *text;
                        inj += '\n';
                    }
                    inj += kObjectRefEnd;
                }
            } else if (contains(resp, kEndOfRetrieve)) {
                inj = restatement;
                r.restated = true;
            }
            inputs = c.tok.encode(inj, {.matchSpecial = true, .addBos = c.tok.addBosByDefault()});
            positions.resize(inputs.size());
            std::iota(positions.begin(), positions.end(), lastPos + 1);
            copied = true;
            inner.clear();
            roundFlag = false;
            MSA_RETURN_IF_ERROR(emit(stream.finish(), true));
            MSA_RETURN_IF_ERROR(emit(c.tok.decode(inputs), false));
            if (stage == 2) {
                roundEnd = true;
                stage = 1;
            } else {
                stage = 4;
                if (inputs.empty()) {   // undefined in the reference (a zero-length forward): end the call
                    r.stopReason = "retrieval-limit";
                    break;
                }
            }
        } else {
            if (isEos(o, next)) unfinished = false;   // stopping criterion; the EOS id is not returned
            inputs.assign(1, next);
            positions.assign(1, lastPos + 1);
            if (unfinished) {
                r.generated.push_back(next);
                if (!c.firstToken) c.firstToken = Clock::now();
                MSA_RETURN_IF_ERROR(emit(stream.push(next), true));
            }
            const std::string piece = c.tok.decode(std::span<const int32_t>(&next, 1));
            resp += piece;
            inner += piece;
            roundFlag = roundFlag || contains(inner, kObjectRefEnd);
            retrFlag = retrFlag || contains(resp, kEndOfRetrieve);
            if (!copied) retrFlag = retrFlag || codePoints(resp) > o.retrieveCharLimit;
            if (!hasStage3) {
                // Batch-1 form of :308-316: a finished or retrieval-ended sample counts as "round end".
                if (!unfinished || retrFlag || roundFlag) stage = 2;
                if (!unfinished || retrFlag) {
                    stage = 3;
                    hasStage3 = true;
                }
            }
            if (!unfinished) r.stopReason = stage == 4 || r.restated ? "answer" : "eos";
        }
        if (++cnt > o.maxGenerateTokens) {
            r.stopReason = "cap";
            break;
        }
    }
    r.iterations = cnt;
    MSA_RETURN_IF_ERROR(emit(stream.finish(), true));
    r.text = c.tok.decode(callTokens);   // batch_decode with special tokens kept (msa_service.py:1354)
    r.generatedText = c.tok.decode(r.generated);
    return r;
}

}  // namespace

std::vector<int64_t> parseIds(std::string_view text) {
    std::vector<int64_t> out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '[') continue;
        size_t j = i + 1;
        while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
        if (j == i + 1 || j >= text.size() || text[j] != ']') continue;
        if (j - i - 1 <= 18) out.push_back(std::stoll(std::string(text.substr(i + 1, j - i - 1))));
        i = j;
    }
    return out;
}

std::string responseOf(std::string_view callText) {
    std::string out(kAnswerPrefix);
    size_t first = callText.find(kAnswerPrefix);
    std::string_view rest = first == std::string_view::npos ? callText : callText.substr(first + kAnswerPrefix.size());
    const size_t second = rest.find(kAnswerPrefix);
    if (second != std::string_view::npos) rest = rest.substr(0, second);   // Python's split(...)[1]
    out += rest;
    for (size_t at; (at = out.find("<|endoftext|>")) != std::string::npos;) out.erase(at, 13);
    return out;
}

std::string extractAnswer(std::string_view response) {
    const size_t at = response.rfind(kAnswerMarker);
    std::string_view a = at == std::string_view::npos ? response : response.substr(at + kAnswerMarker.size());
    const size_t end = a.find("<|im_end|>");
    if (end != std::string_view::npos) a = a.substr(0, end);
    return pyStrip(a);
}

std::vector<uint8_t> regenerateRouteMask(const model::Tokenizer& tok, std::string_view q, std::span<const int32_t> ids,
                                         bool reference) {
    std::vector<uint8_t> mask(ids.size(), 0);
    // Byte ranges of the two regions in the prompt text.
    std::vector<std::pair<size_t, size_t>> regions;
    const size_t marker = q.rfind(kRegion1Marker);
    if (marker != std::string_view::npos) {
        const size_t start = marker + kRegion1Marker.size() - 1;   // the '['
        const size_t next = q.find(kObjectRefEnd, start);
        if (next != std::string_view::npos) regions.push_back({start, next});
    }
    const size_t anchor = q.find(kRegion2Anchor);
    if (anchor != std::string_view::npos) regions.push_back({0, anchor + kRegion2Anchor.size()});

    // Byte offsets of the tokens, when the tokens spell the text exactly (byte-level BPE does).
    std::vector<size_t> offsets{0};
    for (int32_t id : ids) offsets.push_back(offsets.back() + tok.tokenBytes(id).size());
    const bool exact = !reference && offsets.back() == q.size();
    if (!reference && !exact) {
        MSA_LOG(Warning) << "regenerate prompt: token bytes do not spell the text; marking routing regions by token counts";
    }
    for (auto [b, e] : regions) {
        if (exact) {
            for (size_t i = 0; i < ids.size(); ++i)
                if (offsets[i] < e && offsets[i + 1] > b) mask[i] = 1;
        } else {
            // msa_service.py:1746-1768 (B10): lengths of separately tokenized prefix and region.
            const size_t prefixLen = b == 0 ? 0 : encodeRaw(tok, q.substr(0, b)).size();
            const size_t regionLen = encodeRaw(tok, q.substr(b, e - b)).size();
            for (size_t i = prefixLen; i < prefixLen + regionLen && i < mask.size(); ++i) mask[i] = 1;
        }
    }
    return mask;
}

Result<InterleaveResult> memoryInterleave(engine::Session& session, MemoryIndex& index, const model::Tokenizer& tok,
                                          const DocumentWrapping& wrapping, std::string_view question,
                                          const DocumentLookup& documents, const InterleaveOptions& options) {
    if (question.empty()) return Status(ErrorCode::InvalidArgument, "empty question");
    const auto t0 = Clock::now();
    InterleaveResult out;
    CallContext c{session, index, tok, documents, options, 0, std::nullopt};
    const QueryPrompt q1 = round1Query(tok, wrapping, question, index.config().topK);
    const int32_t firstPosition = static_cast<int32_t>(index.templateLength() + index.config().topK);
    std::vector<int32_t> prompt = q1.tokens;
    std::vector<uint8_t> mask = q1.routeMask;
    out.stopReason = "eos";
    for (size_t round = 0;; ++round) {
        MSA_ASSIGN_OR_RETURN(InterleaveRound r, runCall(c, round, std::move(prompt), std::move(mask), firstPosition));
        out.response = responseOf(r.text);
        out.stopReason = r.stopReason;
        out.rounds.push_back(std::move(r));
        const bool again = out.response.size() >= kObjectRefEnd.size() &&
                           std::string_view(out.response).substr(out.response.size() - kObjectRefEnd.size()) == kObjectRefEnd &&
                           !contains(out.response, kAnswerMarker);
        if (!again) break;
        if (round + 1 >= options.maxRounds) {
            out.stopReason = "round-cap";
            break;
        }
        // "<regenerate>" + response, re-encoded as one string with no template tail (§5.5).
        prompt = encodeRaw(tok, out.response);
        mask = regenerateRouteMask(tok, out.response, prompt, options.reference);
    }
    if (out.stopReason == "eos" && contains(out.response, kAnswerMarker)) out.stopReason = "answer";
    out.answer = extractAnswer(out.response);
    std::set<int64_t> ids;
    for (int64_t id : parseIds(out.response)) ids.insert(id);
    out.predictedIds.assign(ids.begin(), ids.end());
    out.seconds = secondsSince(t0);
    out.firstTokenSeconds = c.firstToken ? std::chrono::duration<double>(*c.firstToken - t0).count() : out.seconds;
    return out;
}

}  // namespace msa::memory

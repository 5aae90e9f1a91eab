// history.h: the chat history as jobs (issue 5 item 6, storage): storing an answered question with
// its routing trace in the catalog, and reading turns back with the trace parsed. The catalog keeps
// the trace as JSON text (it does not depend on core/memory); this layer converts.
//
// Ownership/threads: each call opens the catalog, works on the caller's thread and closes it.
//
// Usage (one line in `msa ask` once it has its RoutingTrace):
//     MSA_ASSIGN_OR_RETURN(jobs::RecordedTurn t, jobs::recordTurn(catalogPath, trace));
//     // or, to continue a conversation: jobs::recordTurn(catalogPath, trace, conversationId)
//
// Failure codes: those of Catalog::open/createConversation/addChatTurn/turn (NotFound for an
// unknown conversation or turn, InvalidArgument for an empty question, Busy, DiskFull, IoError),
// and Corrupt when a stored trace does not parse (loadTurn).
#pragma once

#include "core/catalog/catalog.h"
#include "core/memory/trace.h"
#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace msa::jobs {

struct RecordedTurn {
    int64_t conversationId = 0;
    int64_t turnId = 0;
    int64_t ordinal = 0;
};

// Stores one answered question: question, answer, citations, method and seconds are taken from the
// trace (RoutingTrace carries them all). Without a conversation id a new conversation is created,
// titled with the question (cut to 80 bytes on a UTF-8 boundary), for trace.bank and trace.model.
Result<RecordedTurn> recordTurn(const std::filesystem::path& catalogPath, const memory::RoutingTrace& trace,
                                std::optional<int64_t> conversationId = std::nullopt);

// The same with the fields given separately (callers without a full trace, e.g. a plain answer).
struct TurnInput {
    std::string question, answer, method;
    std::vector<int64_t> citations;
    const memory::RoutingTrace* trace = nullptr;   // stored as toJson(*trace); "{}" when null
    double seconds = 0;
    std::string bankPath, modelFingerprint;        // for a new conversation
};
Result<RecordedTurn> recordTurn(const std::filesystem::path& catalogPath, const TurnInput& turn,
                                std::optional<int64_t> conversationId = std::nullopt);

// A stored turn with its trace parsed (nullopt when the turn was stored without one).
struct LoadedTurn {
    catalog::ChatTurn turn;
    catalog::ConversationInfo conversation;
    std::optional<memory::RoutingTrace> trace;
};
Result<LoadedTurn> loadTurn(const std::filesystem::path& catalogPath, int64_t turnId);

// Title from a question: the first line, at most 80 bytes, never splitting a UTF-8 sequence.
std::string conversationTitle(const std::string& question);

nlohmann::json toJson(const catalog::ConversationInfo& c);
nlohmann::json toJson(const catalog::ChatTurn& t, bool withTrace);   // trace embedded as JSON
nlohmann::json toJson(const LoadedTurn& t);

}  // namespace msa::jobs

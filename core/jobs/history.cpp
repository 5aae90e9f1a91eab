// history.cpp: chat turns with routing traces in the catalog (see history.h).
#include "core/jobs/history.h"

#include <nlohmann/json.hpp>

namespace msa::jobs {

std::string conversationTitle(const std::string& question) {
    std::string t = question.substr(0, question.find('\n'));
    constexpr size_t kMax = 80;
    if (t.size() > kMax) {
        size_t cut = kMax;
        while (cut > 0 && (static_cast<unsigned char>(t[cut]) & 0xC0) == 0x80) --cut;   // not inside a sequence
        t = t.substr(0, cut) + "…";
    }
    return t;
}

Result<RecordedTurn> recordTurn(const std::filesystem::path& catalogPath, const TurnInput& in,
                                std::optional<int64_t> conversationId) {
    if (in.question.empty()) return invalidArgument("cannot record a turn without a question");
    MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath, {.readOnly = false, .create = false}));
    RecordedTurn r;
    if (conversationId) {
        r.conversationId = *conversationId;
    } else {
        MSA_ASSIGN_OR_RETURN(r.conversationId, cat.createConversation(conversationTitle(in.question), in.bankPath,
                                                                      in.modelFingerprint));
    }
    catalog::ChatTurn t;
    t.conversationId = r.conversationId;
    t.question = in.question;
    t.answer = in.answer;
    t.citations = in.citations;
    t.traceJson = in.trace ? memory::toJson(*in.trace).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
                           : std::string("{}");
    t.method = in.method;
    t.seconds = in.seconds;
    MSA_ASSIGN_OR_RETURN(r.turnId, cat.addChatTurn(t));
    MSA_ASSIGN_OR_RETURN(catalog::ChatTurn stored, cat.turn(r.turnId));
    r.ordinal = stored.ordinal;
    return r;
}

Result<RecordedTurn> recordTurn(const std::filesystem::path& catalogPath, const memory::RoutingTrace& trace,
                                std::optional<int64_t> conversationId) {
    TurnInput in;
    in.question = trace.question;
    in.answer = trace.answer;
    in.method = trace.method;
    in.citations = trace.citations;
    in.trace = &trace;
    in.seconds = trace.seconds;
    in.bankPath = trace.bank;
    in.modelFingerprint = trace.model;
    return recordTurn(catalogPath, in, conversationId);
}

Result<LoadedTurn> loadTurn(const std::filesystem::path& catalogPath, int64_t turnId) {
    MSA_ASSIGN_OR_RETURN(catalog::Catalog cat, catalog::Catalog::open(catalogPath, {.readOnly = false, .create = false}));
    LoadedTurn l;
    MSA_ASSIGN_OR_RETURN(l.turn, cat.turn(turnId));
    MSA_ASSIGN_OR_RETURN(l.conversation, cat.conversation(l.turn.conversationId));
    const nlohmann::json j = nlohmann::json::parse(l.turn.traceJson, nullptr, false);
    if (j.is_discarded()) return corrupt("chat turn " + std::to_string(turnId) + ": the stored trace is not JSON");
    if (!(j.is_object() && j.empty())) {
        auto t = memory::traceFromJson(j);
        if (!t) return t.status().withContext("chat turn " + std::to_string(turnId));
        l.trace = std::move(t).value();
    }
    return l;
}

nlohmann::json toJson(const catalog::ConversationInfo& c) {
    return {{"id", c.id}, {"title", c.title}, {"created_at", c.createdAt}, {"bank", c.bankPath},
            {"model_fingerprint", c.modelFingerprint}, {"turns", c.nTurns}};
}

nlohmann::json toJson(const catalog::ChatTurn& t, bool withTrace) {
    nlohmann::json j = {{"id", t.id}, {"conversation_id", t.conversationId}, {"ordinal", t.ordinal},
                        {"question", t.question}, {"answer", t.answer}, {"citations", t.citations},
                        {"method", t.method}, {"created_at", t.createdAt}, {"seconds", t.seconds}};
    if (withTrace) {
        nlohmann::json tr = nlohmann::json::parse(t.traceJson, nullptr, false);
        j["trace"] = tr.is_discarded() ? nlohmann::json(t.traceJson) : tr;
    }
    return j;
}

nlohmann::json toJson(const LoadedTurn& t) {
    nlohmann::json j = toJson(t.turn, true);
    j["conversation"] = toJson(t.conversation);
    return j;
}

}  // namespace msa::jobs

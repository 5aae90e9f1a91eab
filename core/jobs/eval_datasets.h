// eval_datasets.h: the evaluation data sets of `msa eval` (issue 5 item 8, msa-spec §8) as one shape,
// plus the scoring rules (routing/BM25 recall@k, SQuAD answer exact-match and F1).
//
//   MuSiQue (a JSON array of {id, question, answer, answer_aliases, paragraphs[{title,
//   paragraph_text, is_supporting}]}): one memory document per distinct paragraph (title + text,
//   deduplicated by that content over the WHOLE file, so every question routes over one memory, as
//   the paper does); gold = the question's supporting paragraphs.
//
//   LoCoMo (a JSON array of {sample_id, conversation{speaker_a, speaker_b, session_N,
//   session_N_date_time}, qa[{question, answer | adversarial_answer, evidence[dia ids], category}]}):
//   one memory document per SESSION (its date and "Speaker: text" lines, shared photos as their
//   caption). Why a session and not a turn: a turn is ~25 tokens, under one 64-token routing chunk,
//   so its pooled key would be mostly template; a session (~700 tokens, at most ~1400 here) is a
//   few chunks, fits one memory document of the import budget, and is the unit LoCoMo's own RAG
//   baselines retrieve. Gold = the sessions holding the evidence turns (dia id "D3:7" → session 3 of
//   that conversation; the mapping is kept per question in `goldTurns`). Evidence ids that name no
//   turn (the real file has a few, e.g. "D") are dropped and counted in `nUnresolvedEvidence`.
//   Adversarial questions (category 5, no `answer`) keep their routing gold but have no gold answer.
//
//   Demo questions (resources/demo/questions.json: {id, question, supporting_files}) are only
//   detected here: they are evaluated over an existing bank + catalog by jobs::evaluateRouting.
//
// Ownership: plain values. Thread affinity: pure functions, any thread.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(EvalDataset ds, loadEvalDataset("musique-100.json"));
//     double f1 = bestF1(answer, ds.questions[0].answers);
//
// Failure codes: loadEvalDataset / parseEvalDataset — NotFound (file missing), IoError (unreadable),
// Corrupt (not JSON, or a field of the wrong shape: the message names the field and the question or
// conversation index, e.g. "question 3: paragraphs[2].paragraph_text is not a string"), Unsupported
// (valid JSON of no known evaluation format), InvalidArgument (an empty data set).
#pragma once

#include "core/util/status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace msa::jobs {

enum class DatasetFormat { DemoQuestions, Musique, Locomo };
const char* datasetFormatName(DatasetFormat f);

// One memory document of the evaluation memory.
struct EvalDocument {
    std::string key;     // stable within the data set: "p00017" (MuSiQue), "conv-26/session_3" (LoCoMo)
    std::string title;
    std::string text;    // the body (the memory document's text is title + "\n\n" + text)
    std::string content() const { return title + "\n\n" + text; }
};

struct EvalItem {
    std::string id;
    std::string question;
    std::vector<std::string> answers;    // gold answer first, then aliases; empty: no gold answer
    std::vector<size_t> gold;            // indices into EvalDataset::documents, ascending, distinct
    std::vector<size_t> context;         // the documents that came with the question (its paragraphs / its conversation's sessions)
    std::vector<std::string> goldTurns;  // LoCoMo: the evidence dia ids as given
    std::string category;                // LoCoMo category; MuSiQue: hop count from the id ("2hop")
    size_t nUnresolvedEvidence = 0;
};

struct EvalDataset {
    DatasetFormat format = DatasetFormat::Musique;
    std::vector<EvalDocument> documents;
    std::vector<EvalItem> questions;
};

Result<DatasetFormat> detectDatasetFormat(const nlohmann::json& root);
Result<DatasetFormat> detectDatasetFile(const std::filesystem::path& path);
// `name` prefixes error messages (usually the file name).
Result<EvalDataset> parseEvalDataset(const nlohmann::json& root, const std::string& name);
Result<EvalDataset> loadEvalDataset(const std::filesystem::path& path);

// Keeps the first nQuestions questions (0: all) and, when restrictMemory, only the documents of
// their contexts (documents re-indexed, order kept). Without restrictMemory the memory stays the
// union over the whole file even when fewer questions are asked.
EvalDataset limitDataset(EvalDataset ds, size_t nQuestions, bool restrictMemory);

// --- scoring -------------------------------------------------------------------------------------

// The official SQuAD v1.1 evaluation's normalize_answer: lower case, drop ASCII punctuation,
// drop the words a/an/the, collapse white space. (Lower-casing is ASCII only: bytes ≥ 0x80 are kept
// as they are and count as word characters.)
std::string normalizeAnswer(const std::string& s);
// SQuAD v1.1: exact match of the normalised strings; token F1 on normalised white-space tokens (0
// when nothing is shared, so an empty prediction scores 0).
double exactMatch(const std::string& prediction, const std::string& gold);
double tokenF1(const std::string& prediction, const std::string& gold);
// The maximum over the gold answer and its aliases (0 when `golds` is empty).
double bestExactMatch(const std::string& prediction, const std::vector<std::string>& golds);
double bestF1(const std::string& prediction, const std::vector<std::string>& golds);
// A model's answer without its citation markers ("[12]", "[3, 4]"), which are not answer words.
std::string stripCitations(const std::string& answer);
// The numbers cited as [n] or [n, m] in an answer, in order of appearance, distinct.
std::vector<long long> citedNumbers(const std::string& answer);

// Share of `gold` among the first k distinct entries of `ranking` (NaN-free: 0 when gold is empty).
double recallAt(const std::vector<size_t>& ranking, const std::vector<size_t>& gold, size_t k);

// A question as a safe FTS5 query: its words (letters/digits, lower case, ≥ 2 bytes, common English
// function words dropped) each double-quoted and OR-joined, so no word is FTS5 syntax; "" when none.
std::string ftsQueryFor(const std::string& question);

}  // namespace msa::jobs

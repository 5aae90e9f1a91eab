// dataset_eval.h: `msa eval` on a MuSiQue- or LoCoMo-style data set (issue 5 item 8): ONE memory from
// the union of the data set's documents (eval_datasets.h says what a document is), routed over by every
// question, with routing recall@1/@5/@k of the gold documents per routing layer and over all layers,
// the same recall for BM25 (the catalog's FTS5) over the same documents, and, with `answers`, the
// training-free answer (jobs::askQuestion) scored by SQuAD exact match / F1 and the documents it cites.
//
// The memory is a real catalog + bank in a work folder (default: userCacheDir()/eval/<file stem>-<hash
// of the data set file and of the memory's document set when restricted>): each document is written as a text file docs/<key>.txt
// (rewritten only when its content changed, so its mtime stays), imported with the ordinary import
// pipeline into collection "eval" of catalog.msacat, and encoded by jobs::buildMemory into
// bank-<model file stem>/. Both steps are incremental: a second run re-imports and re-encodes nothing.
//
// Ownership: plain values. Thread affinity: one (engine) thread; progress is reported on it.
//
// Usage:
//     DatasetEvalRequest r; r.dataset = "musique-100.json"; r.model = "m.gguf"; r.limit = 20;
//     MSA_ASSIGN_OR_RETURN(DatasetEvalReport rep, evaluateDataset(r));
//
// Failure codes: those of loadEvalDataset (Corrupt naming the field and question index, Unsupported
// for the demo questions format, NotFound), IoError/DiskFull writing the work folder, the import
// pipeline's (Busy when another process imports into the same work folder), buildMemory's and the
// routing context's (Mismatch). Cancelled when the token fires.
#pragma once

#include "core/jobs/eval_datasets.h"
#include "core/jobs/memory_jobs.h"
#include "core/util/progress.h"

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace msa::jobs {

struct DatasetEvalRequest {
    std::filesystem::path dataset;
    std::filesystem::path model;
    std::filesystem::path workdir;       // empty: the default cache folder
    size_t limit = 0;                    // questions evaluated (0: all)
    bool memoryOfLimit = false;          // memory = only the limited questions' own documents (+ their distractors)
    size_t k = 10;                       // the @k of recall (besides @1 and @5)
    bool answers = false;
    size_t nAnswerDocuments = 4;
    size_t maxAnswerTokens = 48;
    size_t nThreads = 0;
    engine::BackendChoice device;        // default: the CPU backend
    const CancelToken* cancel = nullptr;
    ProgressFn buildProgress;            // the bank build (documents)
    std::function<void(size_t done, size_t total)> questionProgress;
};

struct RecallSet {
    double at1 = 0, at5 = 0, atK = 0;
};

struct DatasetEvalQuestion {
    std::string id, question, category;
    std::vector<std::string> gold;        // document keys
    std::vector<std::string> goldTurns;   // LoCoMo evidence ids
    RecallSet routed, bm25;
    RecallSet layerMean;                  // the mean of the per-layer recalls (the overall ranking's votes
                                          // saturate when top-k is close to the memory's size)
    std::vector<RecallSet> layers;        // per routing layer, in DatasetEvalReport::layers order
    std::vector<std::string> routedTop, bm25Top;   // document keys, first k
    bool answered = false;                // an answer was generated
    bool hasGoldAnswer = false;
    std::string answer;
    std::vector<std::string> goldAnswers;
    double exactMatch = 0, f1 = 0;
    std::vector<std::string> cited;       // document keys the answer cites as [id]
    size_t nCitedGold = 0;
    double routeSeconds = 0, answerSeconds = 0;
};

struct DatasetEvalReport {
    std::string dataset, format, workdir, catalog, bank, routing;
    size_t k = 0, topK = 0;
    size_t nMemoryDocuments = 0;          // documents in the evaluation memory
    size_t nQuestionsInFile = 0;
    BuildReport build;
    double importSeconds = 0;
    std::vector<int> layers;
    std::vector<DatasetEvalQuestion> questions;
    // Means over the questions that have gold documents (nScored of them).
    size_t nScored = 0;
    RecallSet routed, bm25, layerMean;
    std::vector<RecallSet> layerMeans;
    // Means over the answered questions with a gold answer (nAnswerScored of them).
    size_t nAnswerScored = 0;
    double exactMatch = 0, f1 = 0;
    double routeSeconds = 0, answerSeconds = 0, seconds = 0;
    bool cancelled = false;
};

Result<DatasetEvalReport> evaluateDataset(const DatasetEvalRequest& request);
nlohmann::json toJson(const DatasetEvalReport& r);

// The default work folder for a data set file: one for its whole memory (restricted == nullptr), and
// one per restricted document set (so --limit 10 and --limit 20 that keep the same documents share it).
std::filesystem::path defaultEvalWorkdir(const std::filesystem::path& dataset, const EvalDataset* restricted);

}  // namespace msa::jobs

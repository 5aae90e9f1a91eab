// bank.h: the MSA memory bank on disk (core/memory/README.md documents every byte).
//
// A bank is a folder: manifest.json (the commit record), template.msab (template-head K/V of every
// layer) and immutable shard files shard-NNNNNNNN.msab, each holding a contiguous range of documents
// for all routing layers: per layer the pooled routing keys K̄ᴿ [nChunks][nRouteHeads][D] in one
// contiguous section (one sequential scan), and, in separate sections, the content K̄ and V̄
// [nChunks][nKv][D]. In training-free mode the routing key *is* the attention key, so a bank made
// with `keysShared` stores it once (the routing section) and keys() returns that section.
//
// Crash safety: BankWriter buffers appended documents, then commit() writes one new shard file,
// fsyncs it, and only then atomically replaces manifest.json (write manifest.json.tmp, fsync, rename,
// fsync the folder). A process killed at any moment leaves either the old or the new manifest; shard
// files the manifest does not name are torn appends: Bank ignores them, BankWriter deletes them.
// A full disk (ENOSPC, EDQUOT, EFBIG) fails the commit with DiskFull and leaves the last committed
// state readable. Tombstones (delete, replace) are committed the same way; compact() rewrites the
// live documents into new bounded shards and drops the old ones.
//
// Ownership/threads: Bank is move-only, owns the read-only mappings; its const accessors may be used
// from any number of threads at once. Spans stay valid while the Bank lives. BankWriter is used by
// one thread and holds an exclusive lock (flock on <bank>/lock) so two writers never interleave.
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(BankWriter w, BankWriter::create(dir, params, templateHead));
//     MSA_RETURN_IF_ERROR(w.append(doc));          // many times
//     MSA_RETURN_IF_ERROR(w.commit());             // durable from here on
//     MSA_ASSIGN_OR_RETURN(Bank b, Bank::open(dir));
//     for (const ShardSpan& s : b.routingKeys(layerIndex)) scan(s.bytes, s.firstChunk, s.nChunks);
//     std::span<const std::byte> v = b.values(docRow, layerIndex);
//
// Failure codes: NotFound (no bank / no document), Corrupt (any offset, size, checksum or count that
// contradicts the format; the message names the file and the section), Unsupported (format version,
// dtype or scoring branch this build does not know), Mismatch (a document or template whose shape does
// not match the bank, opening with an unexpected model fingerprint), InvalidArgument (bad parameters,
// duplicate live document id), AlreadyExists (create over an existing bank), Busy (another writer holds
// the lock), DiskFull, IoError, PermissionDenied.
#pragma once

#include "core/model/dtype.h"
#include "core/util/file_map.h"
#include "core/util/progress.h"
#include "core/util/status.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace msa::memory {

inline constexpr uint32_t kBankFormatVersion = 1;

enum class ScoringBranch : uint8_t { Dot, Cosine };
std::string_view scoringBranchName(ScoringBranch b);   // "dot", "cosine"

// Everything fixed when a bank is created (manifest.json "params").
struct BankParams {
    std::string modelFingerprint;          // 32 hex digits, msa::model::ModelFiles::fingerprint().hex()
    std::string tokenizerHash;             // the caller's hash of the tokenizer (free-form, non-empty)
    uint32_t chunkSize = 64;               // P
    uint32_t topK = 16;                    // k
    std::vector<uint32_t> routingLayers;   // model layer numbers, strictly increasing
    uint32_t nLayers = 0;                  // all layers of the model (template head covers each)
    uint32_t nKvHeads = 0;
    uint32_t nRouteHeads = 0;              // heads of K̄ᴿ (== nKvHeads when keysShared)
    uint32_t headDim = 0;
    model::DType storage = model::DType::BF16;   // BF16 or F32
    ScoringBranch scoring = ScoringBranch::Dot;
    bool keysShared = false;               // training-free: K̄ᴿ == K̄, stored once
    uint32_t nTemplateTokens = 0;          // length of the template head (3 for "<|im_start|>user\n")
    uint64_t maxShardBytes = 256ull << 20; // a commit or compaction never writes a larger shard (unless one document is larger)
};

// Template-head K and V for every model layer, each [nTemplateTokens][nKvHeads][headDim] f32.
struct TemplateHead {
    std::vector<std::vector<float>> keys;     // [nLayers]
    std::vector<std::vector<float>> values;   // [nLayers]
};

// One memory document as the encoder produces it (f32; converted to the storage dtype).
// Each span holds nChunks*heads*headDim floats, indexed by routing-layer position (not layer number).
struct DocumentInput {
    int64_t id = 0;                   // the catalog's memory document id
    std::string contentHash;          // hash of the text it was built from (incremental builds)
    uint64_t nTokens = 0;             // wrapped-document length n (nChunks == ceil(n / P))
    uint32_t nChunks = 0;
    std::vector<std::span<const float>> keys;         // K̄  [nChunks][nKv][D]; empty when keysShared
    std::vector<std::span<const float>> values;       // V̄  [nChunks][nKv][D]
    std::vector<std::span<const float>> routingKeys;  // K̄ᴿ [nChunks][nRouteHeads][D]
};

enum DocumentFlags : uint32_t { kDocTombstone = 1u << 0 };

// A row of the bank's document table (in bank order: shard by shard, row by row).
struct DocumentEntry {
    int64_t id = 0;
    uint64_t firstChunk = 0;   // global chunk index (over all shards, tombstones included)
    uint32_t nChunks = 0;
    uint64_t nTokens = 0;
    uint32_t flags = 0;        // kDocTombstone when deleted (or replaced) and not yet compacted
    uint32_t shard = 0;        // position in the shard list
    uint32_t row = 0;          // row inside the shard
    std::string contentHash;
    bool live() const { return (flags & kDocTombstone) == 0; }
};

// The routing keys (or K̄ / V̄) of one layer inside one shard: rows of chunks, contiguous.
struct ShardSpan {
    std::span<const std::byte> bytes;   // nChunks * heads * headDim * element size
    uint64_t firstChunk = 0;            // global index of the first row
    uint64_t nChunks = 0;
};

struct OpenOptions {
    // Also check the checksums of the bulk K̄ᴿ/K̄/V̄ sections (the same as verify()); the manifest,
    // shard headers, document tables and template are always checked.
    bool verifyData = false;
    std::optional<std::string> expectFingerprint;   // Mismatch when the bank was built with another model
};

struct VerifyReport {
    uint64_t nShards = 0;
    uint64_t nSections = 0;
    uint64_t nBytes = 0;
    uint64_t nOrphanFiles = 0;   // torn appends lying in the folder (ignored; a writer deletes them)
};

class Bank {
public:
    Bank();
    ~Bank();
    Bank(Bank&&) noexcept;
    Bank& operator=(Bank&&) noexcept;
    Bank(const Bank&) = delete;
    Bank& operator=(const Bank&) = delete;

    static Result<Bank> open(const std::filesystem::path& dir, const OpenOptions& options = {});

    const std::filesystem::path& path() const;
    const BankParams& params() const;
    size_t elementBytes() const;   // 2 (bf16) or 4 (f32)
    uint64_t nDocuments() const;   // live
    uint64_t nChunks() const;      // live
    uint64_t nTokens() const;      // live
    uint64_t nTombstones() const;
    uint64_t nChunksTotal() const; // rows in the routing sections, tombstones included
    uint64_t diskBytes() const;    // manifest + template + shards
    uint64_t generation() const;   // increments with every commit
    size_t nShards() const;

    const std::vector<DocumentEntry>& documents() const;   // bank order, tombstones included
    std::optional<size_t> findDocument(int64_t id) const; // the live row with this id
    std::optional<std::string> contentHash(int64_t id) const;
    // Row of the document that owns a global chunk index (binary search); nullopt when out of range.
    std::optional<size_t> documentOfChunk(uint64_t globalChunk) const;
    // Document row for every global chunk (the candidate mapping a scan uses).
    std::vector<uint32_t> chunkToDocument() const;

    // For the scan of routing-layer position `layer`: one contiguous span per shard, in order.
    std::vector<ShardSpan> routingKeys(size_t layer) const;
    // For assembly: the chunks of one document in one layer, [nChunks][heads][D] storage dtype.
    std::span<const std::byte> routingKeysOf(size_t docRow, size_t layer) const;
    std::span<const std::byte> keys(size_t docRow, size_t layer) const;
    std::span<const std::byte> values(size_t docRow, size_t layer) const;
    // Template head of model layer `modelLayer`, [nTemplateTokens][nKv][D] storage dtype.
    std::span<const std::byte> templateKeys(size_t modelLayer) const;
    std::span<const std::byte> templateValues(size_t modelLayer) const;

    // Checks every checksum of every committed file (bulk data included).
    Result<VerifyReport> verify() const;
    // The same, stopping with Cancelled between sections when `cancel` is set.
    Result<VerifyReport> verify(const CancelToken* cancel) const;

    struct Impl;

private:
    static Result<Bank> openOnce(const std::filesystem::path& dir, const OpenOptions& options);
    std::unique_ptr<Impl> m_impl;
};

// Converts stored elements to f32 (bf16 is exact to widen).
void toF32(model::DType storage, std::span<const std::byte> in, std::span<float> out);

struct CompactReport {
    uint64_t nDocuments = 0;
    uint64_t nRemoved = 0;
    uint64_t bytesBefore = 0;
    uint64_t bytesAfter = 0;
};

class BankWriter {
public:
    BankWriter();
    ~BankWriter();
    BankWriter(BankWriter&&) noexcept;
    BankWriter& operator=(BankWriter&&) noexcept;
    BankWriter(const BankWriter&) = delete;
    BankWriter& operator=(const BankWriter&) = delete;

    // Creates the folder (it must not hold a bank yet) with the template head and an empty manifest.
    static Result<BankWriter> create(const std::filesystem::path& dir, const BankParams& params,
                                     const TemplateHead& templateHead);
    // Opens an existing bank for appending (deletes torn, uncommitted shard files).
    static Result<BankWriter> open(const std::filesystem::path& dir);

    const BankParams& params() const;
    // Buffers one document (validated and converted now). Commits by itself when the buffer reaches
    // maxShardBytes. InvalidArgument when a live or pending document already has this id.
    Status append(const DocumentInput& doc);
    // Tombstones the live document `id` (NotFound when there is none); takes effect at commit().
    Status remove(int64_t id);
    // Tombstones the live document doc.id, if any, and appends doc.
    Status replace(const DocumentInput& doc);
    // Makes every append/remove so far durable. DiskFull/IoError leave the last commit intact.
    Status commit();
    // Discards what was appended or removed since the last commit.
    void rollback();
    // Rewrites the live documents into fresh bounded shards (commits pending work first).
    Result<CompactReport> compact();

    // The committed bank plus nothing pending: a live document's content hash, for incremental builds.
    std::optional<std::string> contentHash(int64_t id) const;
    uint64_t nPendingDocuments() const;

    struct Impl;

private:
    std::unique_ptr<Impl> m_impl;
};

}  // namespace msa::memory

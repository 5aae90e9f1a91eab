// route_scan.cu: see route_scan.h for the design.
#include "gpu/route_scan.h"

#include "core/memory/key_quant.h"
#include "core/memory/quant_route.h"
#include "core/memory/shard_merge.h"
#include "core/util/log.h"
#include "gpu/cuda_check.h"
#include "gpu/device_util.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>

namespace msa::gpu {

namespace {

constexpr int kChunkTile = 16;    // chunks per block
constexpr int kTokenTile = 16;    // query tokens per pass
constexpr int kKTile = 128;       // key elements per shared-memory stage
constexpr int kScoreThreads = kChunkTile * kTokenTile;
constexpr int kSortKeys = static_cast<int>(memory::kTopKBlockKeys);   // keys per top-k block
constexpr int kSortThreads = 1024;

enum : int { kQueryMax = 0, kQueryMean = 1, kQueryLast = 2 };

// Key loaders of the FMA score kernel: element e (0..width) of chunk c as f32.
template <typename T>
struct NativeKeys {
    const T* keys;
    size_t width;
    __device__ __forceinline__ float operator()(size_t c, size_t e) const {
        if constexpr (std::is_same_v<T, float>) return keys[c * width + e];
        else return __bfloat162float(keys[c * width + e]);
    }
};
// 8-bit keys: exactly key_quant's reader, x̂ = decode(code) · scale of the (chunk, key head) row, one
// f32 multiply that nvcc may not contract into the following FMA (quant_route.h, tested on the CPU).
template <bool kFp8>
struct QuantKeys {
    const uint8_t* codes;
    const float* scales;
    size_t width;
    uint32_t nHeads, headDim;
    __device__ __forceinline__ float operator()(size_t c, size_t e) const {
        return memory::quantizedKeyElement(kFp8, codes, scales, width, nHeads, headDim, c, e);
    }
};

// Document keys: memory::candidateScoreBits (shard_merge.h, tested on the CPU) — 0 for NaN and −inf
// (never candidates, as in selectTop), −0 folded into +0 so equal scores tie and rank by id.
// Chunk max: an atomic max over the chunks' bits. Chunk mean: a double sum of every chunk's score,
// NaN and ±inf included as the CPU sums them (a NaN chunk makes the document NaN: no candidate).
__device__ __forceinline__ void reduceChunkScore(float sc, bool chunkMean, uint32_t doc, uint32_t* docKey, double* docSum) {
    if (chunkMean) {
        atomicAdd(&docSum[doc], static_cast<double>(sc));
    } else if (const uint32_t bits = memory::candidateScoreBits(sc)) {
        atomicMax(&docKey[doc], bits);
    }
}

// Score kernel (route_scan.h step 1). Grid-strides over tiles of kChunkTile chunks.
template <typename Keys>
__global__ void scoreKernel(const Keys keys, const uint32_t* __restrict__ chunkDoc,
                            const uint8_t* __restrict__ allowed, const float* __restrict__ q, size_t nChunks,
                            size_t width, int nTokens, int queryReduce, int chunkMean, uint32_t* __restrict__ docKey,
                            double* __restrict__ docSum) {
    __shared__ float ks[kChunkTile][kKTile + 1];
    __shared__ float qs[kTokenTile][kKTile + 1];
    __shared__ float red[kChunkTile][kTokenTile];
    __shared__ float run[kChunkTile];
    __shared__ uint32_t docOf[kChunkTile];
    __shared__ int valid[kChunkTile];
    const int tid = threadIdx.x;
    const int myChunk = tid / kTokenTile, myToken = tid % kTokenTile;
    const size_t nTiles = (nChunks + kChunkTile - 1) / kChunkTile;
    for (size_t tile = blockIdx.x; tile < nTiles; tile += gridDim.x) {
        const size_t c0 = tile * kChunkTile;
        int mine = 0;
        if (tid < kChunkTile) {
            const size_t c = c0 + tid;
            if (c < nChunks) {
                const uint32_t d = chunkDoc[c];
                docOf[tid] = d;
                mine = allowed == nullptr || allowed[d] != 0;
            }
            valid[tid] = mine;
            run[tid] = queryReduce == kQueryMax ? -INFINITY : 0.0f;
        }
        if (!__syncthreads_or(mine)) continue;   // no candidate chunk: nothing loaded
        for (int t0 = 0; t0 < nTokens; t0 += kTokenTile) {
            float acc = 0.0f;
            for (size_t k0 = 0; k0 < width; k0 += kKTile) {
                for (int i = tid; i < kChunkTile * kKTile; i += kScoreThreads) {
                    const int r = i / kKTile, k = i % kKTile;
                    const size_t c = c0 + r;
                    ks[r][k] = (valid[r] && k0 + k < width) ? keys(c, k0 + k) : 0.0f;
                }
                for (int i = tid; i < kTokenTile * kKTile; i += kScoreThreads) {
                    const int r = i / kKTile, k = i % kKTile;
                    qs[r][k] = (t0 + r < nTokens && k0 + k < width) ? q[size_t(t0 + r) * width + k0 + k] : 0.0f;
                }
                __syncthreads();
#pragma unroll 8
                for (int k = 0; k < kKTile; ++k) acc = fmaf(ks[myChunk][k], qs[myToken][k], acc);
                __syncthreads();
            }
            red[myChunk][myToken] = acc;
            __syncthreads();
            if (tid < kChunkTile && valid[tid]) {
                // Tokens in order, as the CPU reduces them.
                const int nt = min(kTokenTile, nTokens - t0);
                float r = run[tid];
                for (int t = 0; t < nt; ++t) {
                    const float s = red[tid][t];
                    if (queryReduce == kQueryMax) r = fmaxf(r, s);
                    else if (queryReduce == kQueryMean) r += s;
                    else if (t0 + t == nTokens - 1) r = s;
                }
                run[tid] = r;
            }
            __syncthreads();
        }
        if (tid < kChunkTile && valid[tid]) {
            float sc = run[tid];
            if (queryReduce == kQueryMean) sc = sc / static_cast<float>(nTokens);
            reduceChunkScore(sc, chunkMean != 0, docOf[tid], docKey, docSum);
        }
        // run/valid/docOf are rewritten next tile only after the __syncthreads_or above.
    }
}

// Chunk mean: document score = sum / chunks for candidates (route_scan.h step 1, second half).
__global__ void chunkMeanKernel(const double* __restrict__ docSum, const uint32_t* __restrict__ docChunks,
                                const uint8_t* __restrict__ allowed, size_t nDocs, uint32_t* __restrict__ docKey) {
    for (size_t d = blockIdx.x * size_t(blockDim.x) + threadIdx.x; d < nDocs; d += size_t(gridDim.x) * blockDim.x) {
        const uint32_t n = docChunks[d];
        const bool ok = n > 0 && (allowed == nullptr || allowed[d] != 0);
        docKey[d] = ok ? memory::candidateScoreBits(static_cast<float>(docSum[d] / static_cast<double>(n))) : 0u;
    }
}

// Tensor-core score kernel (bf16 keys, width a multiple of 16). One warp per tile of 16 chunks, 16
// query tokens per pass: S = K̄ᴿ_tile · (q'_hi + q'_lo)ᵀ with two bf16 MMAs per 16-wide K step and
// f32 accumulation. The folded query is split into bf16 hi + lo halves (splitQueryKernel), so the
// products carry ~16 significant bits of q' instead of 8: scores stay within ~1e-5 relative of the
// f32 scan (tst_shard_merge checks the split's accuracy on the CPU). Keys need 16 rows of zero
// padding after the last chunk (DeviceRouteShard allocates them); queries tPad rows (zeros beyond
// nTokens).
constexpr int kMmaWarps = 4;
__global__ void mmaScoreKernel(const __nv_bfloat16* __restrict__ keys, const uint32_t* __restrict__ chunkDoc,
                               const uint8_t* __restrict__ allowed, const __nv_bfloat16* __restrict__ qHi,
                               const __nv_bfloat16* __restrict__ qLo, size_t nChunks, int width, int nTokens, int tPad,
                               int queryReduce, int chunkMean, uint32_t* __restrict__ docKey, double* __restrict__ docSum) {
    using namespace nvcuda;
    __shared__ __align__(128) float tileOut[kMmaWarps][16 * 16];   // store_matrix_sync wants 256-bit alignment
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t nTiles = (nChunks + 15) / 16;
    // Warp-uniform loop; only warp-level synchronisation inside.
    for (size_t tile = size_t(blockIdx.x) * kMmaWarps + warp; tile < nTiles; tile += size_t(gridDim.x) * kMmaWarps) {
        const size_t c0 = tile * 16;
        bool mine = false;
        uint32_t doc = 0;
        if (lane < 16 && c0 + lane < nChunks) {
            doc = chunkDoc[c0 + lane];
            mine = allowed == nullptr || allowed[doc] != 0;
        }
        if (!__any_sync(0xFFFFFFFFu, mine)) continue;
        float run = queryReduce == kQueryMax ? -INFINITY : 0.0f;
        for (int t0 = 0; t0 < tPad; t0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int k0 = 0; k0 < width; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> bh, bl;
                wmma::load_matrix_sync(a, keys + c0 * size_t(width) + k0, width);
                wmma::load_matrix_sync(bh, qHi + size_t(t0) * width + k0, width);
                wmma::load_matrix_sync(bl, qLo + size_t(t0) * width + k0, width);
                wmma::mma_sync(acc, a, bh, acc);
                wmma::mma_sync(acc, a, bl, acc);
            }
            wmma::store_matrix_sync(tileOut[warp], acc, 16, wmma::mem_row_major);
            __syncwarp();
            if (mine) {
                const int nt = min(16, nTokens - t0);
                for (int t = 0; t < nt; ++t) {
                    const float sc = tileOut[warp][lane * 16 + t];
                    if (queryReduce == kQueryMax) run = fmaxf(run, sc);
                    else if (queryReduce == kQueryMean) run += sc;
                    else if (t0 + t == nTokens - 1) run = sc;
                }
            }
            __syncwarp();
        }
        if (mine) {
            float sc = run;
            if (queryReduce == kQueryMean) sc = sc / static_cast<float>(nTokens);
            reduceChunkScore(sc, chunkMean != 0, doc, docKey, docSum);
        }
    }
}

// q' (nTokens × width f32) → bf16 hi = rn(q'), lo = rn(q' − hi), tPad rows (zeros past nTokens).
__global__ void splitQueryKernel(const float* __restrict__ q, int nTokens, int tPad, int width,
                                 __nv_bfloat16* __restrict__ hi, __nv_bfloat16* __restrict__ lo) {
    const size_t total = size_t(tPad) * width;
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total; i += size_t(gridDim.x) * blockDim.x) {
        const float x = i < size_t(nTokens) * width ? q[i] : 0.0f;
        const __nv_bfloat16 h = __float2bfloat16_rn(x);
        hi[i] = h;
        lo[i] = __float2bfloat16_rn(x - __bfloat162float(h));
    }
}

__device__ void bitonicSortDescending(uint64_t* s) {
    for (int k = 2; k <= kSortKeys; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < kSortKeys; i += blockDim.x)
                memory::bitonicCompareExchange(s, static_cast<uint32_t>(i), static_cast<uint32_t>(j), static_cast<uint32_t>(k));
            __syncthreads();
        }
}

// First top-k pass: document keys → per-block top n; counts candidates.
__global__ void topkFirstKernel(const uint32_t* __restrict__ docKey, const uint32_t* __restrict__ rank, size_t nDocs,
                                int n, uint64_t* __restrict__ out, unsigned* __restrict__ count) {
    __shared__ uint64_t s[kSortKeys];
    __shared__ unsigned blockCount;
    if (threadIdx.x == 0) blockCount = 0;
    __syncthreads();
    const size_t base = size_t(blockIdx.x) * kSortKeys;
    unsigned mine = 0;
    for (int i = threadIdx.x; i < kSortKeys; i += blockDim.x) {
        const size_t d = base + i;
        uint64_t key = 0;
        if (d < nDocs) {
            const uint32_t bits = docKey[d];
            if (bits != 0) {   // candidateScoreBits: every nonzero key is a candidate (+inf too, as on the CPU)
                key = (uint64_t(bits) << 32) | uint64_t(~rank[d]);
                ++mine;
            }
        }
        s[i] = key;
    }
    if (mine) atomicAdd(&blockCount, mine);
    __syncthreads();
    bitonicSortDescending(s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[size_t(blockIdx.x) * n + i] = s[i];
    if (threadIdx.x == 0 && blockCount) atomicAdd(count, blockCount);
}

// Later passes: candidate keys → per-block top n.
__global__ void topkNextKernel(const uint64_t* __restrict__ in, size_t count, int n, uint64_t* __restrict__ out) {
    __shared__ uint64_t s[kSortKeys];
    const size_t base = size_t(blockIdx.x) * kSortKeys;
    for (int i = threadIdx.x; i < kSortKeys; i += blockDim.x) s[i] = base + i < count ? in[base + i] : 0;
    __syncthreads();
    bitonicSortDescending(s);
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[size_t(blockIdx.x) * n + i] = s[i];
}

__global__ void decodeKernel(const uint64_t* __restrict__ keys, int n, const uint32_t* __restrict__ rankToRow,
                             const uint64_t* __restrict__ ids, const unsigned* __restrict__ count,
                             DeviceCandidate* __restrict__ out) {
    for (int i = threadIdx.x; i <= n; i += blockDim.x) {
        DeviceCandidate c{-INFINITY, kNoCandidate, 0};
        if (i == n) {
            c.id = *count;
        } else {
            const uint64_t key = keys[i];
            if (key != 0) {
                const uint32_t row = rankToRow[~uint32_t(key & 0xFFFFFFFFu)];
                c.score = memory::scoreFromOrderedBits(uint32_t(key >> 32));
                c.index = row;
                c.id = ids[row];
            }
        }
        out[i] = c;
    }
}

template <typename T>
Status cudaAllocCopy(T** dst, const T* src, size_t count, cudaStream_t stream) {
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(dst), std::max<size_t>(count, 1) * sizeof(T)));
    if (count) MSA_CUDA_CHECK(cudaMemcpyAsync(*dst, src, count * sizeof(T), cudaMemcpyHostToDevice, stream));
    return Status::ok();
}

void freeAll(std::initializer_list<void*> ptrs) {
    for (void* p : ptrs)
        if (p) cudaFree(p);
}

// Two page-locked buffers (codes + scales) that alternate between host quantization and the copy
// engine; freed only after the stream has drained (error paths included).
struct PinnedStaging {
    cudaStream_t stream = nullptr;
    uint8_t* codes[2] = {nullptr, nullptr};
    float* scales[2] = {nullptr, nullptr};
    cudaEvent_t done[2] = {nullptr, nullptr};
    bool inFlight[2] = {false, false};
    PinnedStaging() = default;
    PinnedStaging(const PinnedStaging&) = delete;
    PinnedStaging& operator=(const PinnedStaging&) = delete;
    ~PinnedStaging() {
        if (stream) cudaStreamSynchronize(stream);
        for (int b = 0; b < 2; ++b) {
            if (codes[b]) cudaFreeHost(codes[b]);
            if (scales[b]) cudaFreeHost(scales[b]);
            if (done[b]) cudaEventDestroy(done[b]);
        }
        cudaGetLastError();
    }
};

// The 8-bit upload (route_scan.h "8-bit keys"): parts' keys block by block to f32, key_quant's writer
// into pinned staging, async copies to codes [rows][D] and scales [rows], rows = chunk · nKv + head.
Status uploadQuantizedKeys(std::span<const memory::RouteKeys> parts, memory::QuantFormat format, uint8_t* dCodes,
                           float* dScales, cudaStream_t stream) {
    const size_t nKv = parts[0].nHeads, D = parts[0].headDim, width = nKv * D;
    const size_t blockChunks = std::max<size_t>(1, (size_t(4) << 20) / width);
    PinnedStaging st;
    for (int b = 0; b < 2; ++b) {
        MSA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&st.codes[b]), blockChunks * width));
        MSA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&st.scales[b]), blockChunks * nKv * sizeof(float)));
        MSA_CUDA_CHECK(cudaEventCreateWithFlags(&st.done[b], cudaEventDisableTiming));
    }
    st.stream = stream;
    std::vector<float> values;
    try {
        values.resize(blockChunks * width);
    } catch (const std::bad_alloc&) {
        return Status(ErrorCode::OutOfMemory, "routing-key quantization scratch of " + std::to_string(blockChunks * width) + " floats");
    }
    size_t chunkBase = 0;
    int b = 0;
    for (const memory::RouteKeys& part : parts) {
        for (size_t c0 = 0; c0 < part.nChunks; c0 += blockChunks) {
            const size_t nc = std::min(blockChunks, part.nChunks - c0), nRows = nc * nKv;
            const size_t row0 = (chunkBase + c0) * nKv;
            MSA_RETURN_IF_ERROR(memory::routeKeysAsF32(part, c0, nc, values));
            if (st.inFlight[b]) MSA_CUDA_CHECK(cudaEventSynchronize(st.done[b]));
            st.inFlight[b] = false;
            const Status q = memory::quantizeRowsInto(format, std::span<const float>(values.data(), nc * width), D,
                                                      std::span<uint8_t>(st.codes[b], nc * width),
                                                      std::span<float>(st.scales[b], nRows), row0);
            if (!q.isOk())
                return Status(q.code(), "routing keys to " + std::string(memory::quantFormatName(format)) +
                                            " (rows are chunk x key head of the layer's table): " + q.message());
            MSA_CUDA_CHECK(cudaMemcpyAsync(dCodes + row0 * D, st.codes[b], nc * width, cudaMemcpyHostToDevice, stream));
            MSA_CUDA_CHECK(cudaMemcpyAsync(dScales + row0, st.scales[b], nRows * sizeof(float), cudaMemcpyHostToDevice, stream));
            MSA_CUDA_CHECK(cudaEventRecord(st.done[b], stream));
            st.inFlight[b] = true;
            b ^= 1;
        }
        chunkBase += part.nChunks;
    }
    MSA_CUDA_CHECK(cudaStreamSynchronize(stream));
    return Status::ok();
}

}  // namespace

// ---- DeviceRouteShard ----------------------------------------------------------------------------

Result<std::unique_ptr<DeviceRouteShard>> DeviceRouteShard::upload(const memory::RouteKeys& keys, cudaStream_t stream,
                                                                   KeyStorage storage) {
    return upload(std::span<const memory::RouteKeys>(&keys, 1), stream, storage);
}

Result<std::unique_ptr<DeviceRouteShard>> DeviceRouteShard::upload(std::span<const memory::RouteKeys> parts, cudaStream_t stream,
                                                                   KeyStorage storage) {
    using model::DType;
    if (parts.empty()) return Status(ErrorCode::InvalidArgument, "no routing keys to upload");
    const DType dtype = parts[0].dtype;
    if (dtype != DType::F32 && dtype != DType::BF16) return Status(ErrorCode::InvalidArgument, "routing keys must be f32 or bf16 on the GPU");
    const size_t elem = dtype == DType::F32 ? 4 : 2;
    const size_t width = parts[0].nHeads * parts[0].headDim;
    size_t nDocs = 0, nChunks = 0, nBytes = 0;
    for (const memory::RouteKeys& keys : parts) {
        if (keys.dtype != dtype || keys.nHeads != parts[0].nHeads || keys.headDim != parts[0].headDim)
            return Status(ErrorCode::InvalidArgument, "routing key parts of different dtype or shape");
        if (width == 0 || keys.data.size() != keys.nChunks * width * elem)
            return Status(ErrorCode::InvalidArgument, "routing keys hold " + std::to_string(keys.data.size()) + " bytes for " +
                                                          std::to_string(keys.nChunks) + " chunks of " + std::to_string(width));
        const size_t nd = keys.nDocs();
        if (nd > 0 && (keys.chunkOffsets.front() != 0 || keys.chunkOffsets.back() != keys.nChunks ||
                       !std::is_sorted(keys.chunkOffsets.begin(), keys.chunkOffsets.end())))
            return Status(ErrorCode::InvalidArgument, "document table does not cover the chunks 0.." + std::to_string(keys.nChunks));
        if (keys.docIds.size() != nd) return Status(ErrorCode::InvalidArgument, "the GPU scan needs one document id per document");
        nDocs += nd;
        nChunks += keys.nChunks;
        nBytes += keys.data.size();
    }
    if (nDocs >= kNoCandidate || nChunks >= (uint64_t(1) << 32))
        return Status(ErrorCode::InvalidArgument, "a routing table of more than 2^32 documents or chunks");
    std::unique_ptr<DeviceRouteShard> s(new DeviceRouteShard());
    MSA_CUDA_CHECK(cudaGetDevice(&s->m_device));
    s->m_nDocs = nDocs;
    s->m_nChunks = nChunks;
    s->m_width = width;
    s->m_nHeads = parts[0].nHeads;
    s->m_headDim = parts[0].headDim;
    s->m_dtype = dtype;
    s->m_storage = storage;
    std::vector<uint32_t> chunkDoc(nChunks), docChunks(nDocs);
    std::vector<uint64_t> ids;
    ids.reserve(nDocs);
    size_t d0 = 0, c0 = 0;
    for (const memory::RouteKeys& keys : parts) {
        s->m_sources.push_back({keys.data.data(), keys.data.size(), keys.chunkOffsets.data(), keys.docIds.data(), keys.nDocs()});
        for (size_t d = 0; d < keys.nDocs(); ++d) {
            docChunks[d0 + d] = static_cast<uint32_t>(keys.chunkOffsets[d + 1] - keys.chunkOffsets[d]);
            for (uint64_t c = keys.chunkOffsets[d]; c < keys.chunkOffsets[d + 1]; ++c) chunkDoc[c0 + c] = static_cast<uint32_t>(d0 + d);
        }
        ids.insert(ids.end(), keys.docIds.begin(), keys.docIds.end());
        d0 += keys.nDocs();
        c0 += keys.nChunks;
    }
    const std::vector<uint32_t> rank = memory::idRanks(ids);
    std::vector<uint32_t> rankToRow(nDocs);
    for (size_t d = 0; d < nDocs; ++d) rankToRow[rank[d]] = static_cast<uint32_t>(d);
    // The key bytes come straight from the bank's mapped spans (pageable: the runtime stages them;
    // page-locked by a ContentTier: direct DMA). 16 zero rows after the last chunk: the tensor-core
    // kernel loads whole 16-chunk tiles.
    size_t keyAlloc = 0;
    if (const std::optional<memory::QuantFormat> format = memory::quantFormatOf(storage)) {
        // 8-bit: codes (1 byte per element) and one f32 scale per (chunk, key head) row, each with
        // the same 16 zero chunks of padding.
        const size_t codeBytes = nChunks * width, padCodes = 16 * width;
        const size_t nRows = nChunks * s->m_nHeads, padRows = 16 * s->m_nHeads;
        MSA_CUDA_CHECK(cudaMalloc(&s->m_keys, codeBytes + padCodes));
        MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s->m_scales), (nRows + padRows) * sizeof(float)));
        MSA_CUDA_CHECK(cudaMemsetAsync(static_cast<std::byte*>(s->m_keys) + codeBytes, 0, padCodes, stream));
        MSA_CUDA_CHECK(cudaMemsetAsync(s->m_scales + nRows, 0, padRows * sizeof(float), stream));
        MSA_RETURN_IF_ERROR(uploadQuantizedKeys(parts, *format, static_cast<uint8_t*>(s->m_keys), s->m_scales, stream));
        s->m_keyBytes = codeBytes + nRows * sizeof(float);
        keyAlloc = codeBytes + padCodes + (nRows + padRows) * sizeof(float);
    } else {
        const size_t padBytes = 16 * width * elem;
        MSA_CUDA_CHECK(cudaMalloc(&s->m_keys, nBytes + padBytes));
        size_t at = 0;
        for (const memory::RouteKeys& keys : parts) {
            if (!keys.data.empty())
                MSA_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::byte*>(s->m_keys) + at, keys.data.data(), keys.data.size(),
                                               cudaMemcpyHostToDevice, stream));
            at += keys.data.size();
        }
        MSA_CUDA_CHECK(cudaMemsetAsync(static_cast<std::byte*>(s->m_keys) + nBytes, 0, padBytes, stream));
        s->m_keyBytes = nBytes;
        keyAlloc = nBytes + padBytes;
    }
    MSA_RETURN_IF_ERROR(cudaAllocCopy(&s->m_chunkDoc, chunkDoc.data(), chunkDoc.size(), stream));
    MSA_RETURN_IF_ERROR(cudaAllocCopy(&s->m_docChunks, docChunks.data(), docChunks.size(), stream));
    MSA_RETURN_IF_ERROR(cudaAllocCopy(&s->m_rank, rank.data(), rank.size(), stream));
    MSA_RETURN_IF_ERROR(cudaAllocCopy(&s->m_rankToRow, rankToRow.data(), rankToRow.size(), stream));
    MSA_RETURN_IF_ERROR(cudaAllocCopy(&s->m_ids, ids.data(), ids.size(), stream));
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&s->m_allowed), std::max<size_t>(nDocs, 1)));
    // The host vectors above die at return: the copies must be done first.
    MSA_CUDA_CHECK(cudaStreamSynchronize(stream));
    s->m_bytes = keyAlloc + (chunkDoc.size() + 3 * nDocs) * 4 + nDocs * 9;
    return Result<std::unique_ptr<DeviceRouteShard>>(std::move(s));
}

DeviceRouteShard::~DeviceRouteShard() {
    int prev = 0;
    if (cudaGetDevice(&prev) == cudaSuccess && prev != m_device) cudaSetDevice(m_device);
    freeAll({m_keys, m_scales, m_chunkDoc, m_docChunks, m_rank, m_rankToRow, m_ids, m_allowed});
    if (prev != m_device) cudaSetDevice(prev);
    cudaGetLastError();
}

bool DeviceRouteShard::sameSource(std::span<const memory::RouteKeys> parts) const {
    if (parts.size() != m_sources.size()) return false;
    for (size_t i = 0; i < parts.size(); ++i) {
        const memory::RouteKeys& k = parts[i];
        const Source& s = m_sources[i];
        if (k.data.data() != s.data || k.data.size() != s.bytes || k.chunkOffsets.data() != s.offsets ||
            k.docIds.data() != s.ids || k.nDocs() != s.nDocs || k.dtype != m_dtype)
            return false;
    }
    return true;
}

Status DeviceRouteShard::setAllowed(std::span<const uint8_t> allowed, cudaStream_t stream) {
    if (allowed.empty()) {
        m_filtered = false;
        return Status::ok();
    }
    if (allowed.size() != m_nDocs)
        return Status(ErrorCode::InvalidArgument, "candidate filter has " + std::to_string(allowed.size()) + " entries for " +
                                                      std::to_string(m_nDocs) + " documents");
    if (!m_filtered || m_hostAllowed.size() != allowed.size() ||
        std::memcmp(m_hostAllowed.data(), allowed.data(), allowed.size()) != 0) {
        m_hostAllowed.assign(allowed.begin(), allowed.end());
        MSA_CUDA_CHECK(cudaMemcpyAsync(m_allowed, m_hostAllowed.data(), m_hostAllowed.size(), cudaMemcpyHostToDevice, stream));
        // m_hostAllowed stays alive and unchanged until the next call, which synchronises first.
        MSA_CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    m_filtered = true;
    return Status::ok();
}

DeviceRouteShard::DevicePtrs DeviceRouteShard::ptrs() const {
    return {m_keys, m_scales, m_chunkDoc, m_docChunks, m_rank, m_rankToRow, m_ids, m_filtered ? m_allowed : nullptr};
}

// ---- ScanWorkspace -------------------------------------------------------------------------------

ScanWorkspace::~ScanWorkspace() { release(); }

void ScanWorkspace::release() {
    freeAll({docKey, docSum, candA, candB, count, qHi, qLo});
    docKey = nullptr, docSum = nullptr, candA = candB = nullptr, count = nullptr;
    qHi = qLo = nullptr;
    m_docs = m_cand = m_query = 0;
}

Status ScanWorkspace::reserveQueries(size_t elements, cudaStream_t stream) {
    if (elements <= m_query && qHi) return Status::ok();
    MSA_CUDA_CHECK(cudaStreamSynchronize(stream));
    freeAll({qHi, qLo});
    qHi = qLo = nullptr;
    m_query = 0;
    MSA_CUDA_CHECK(cudaMalloc(&qHi, elements * 2));
    MSA_CUDA_CHECK(cudaMalloc(&qLo, elements * 2));
    m_query = elements;
    return Status::ok();
}

Status ScanWorkspace::reserve(size_t nDocs, size_t n, cudaStream_t stream) {
    const size_t cand = memory::topKScratchKeys(nDocs, n);
    if (nDocs <= m_docs && cand <= m_cand && count) return Status::ok();
    MSA_CUDA_CHECK(cudaStreamSynchronize(stream));   // nothing may still use the old buffers
    freeAll({docKey, docSum, candA, candB, count});
    docKey = nullptr, docSum = nullptr, candA = candB = nullptr, count = nullptr;
    m_docs = m_cand = 0;
    const size_t docs = std::max(nDocs, m_docs) + 1;
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&docKey), docs * sizeof(uint32_t)));
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&docSum), docs * sizeof(double)));
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&candA), cand * sizeof(uint64_t)));
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&candB), cand * sizeof(uint64_t)));
    MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&count), sizeof(unsigned)));
    m_docs = docs;
    m_cand = cand;
    return Status::ok();
}

// ---- the scan --------------------------------------------------------------------------------------

bool tensorCoreShape(const DeviceRouteShard& shard) {
    return shard.storage() == KeyStorage::Native && shard.dtype() == model::DType::BF16 && shard.width() % 16 == 0 &&
           shard.width() <= (1u << 30);
}

Status enqueueScan(const DeviceRouteShard& shard, const float* dFolded, size_t nTokens, memory::QueryReduce queryReduce,
                   memory::ChunkReduce chunkReduce, size_t n, ScanWorkspace& ws, DeviceCandidate* out, cudaStream_t stream,
                   ScanKernel kernel) {
    if (n == 0 || n > kMaxScanTopN)
        return Status(ErrorCode::InvalidArgument, "GPU top-k of " + std::to_string(n) + " (1.." + std::to_string(kMaxScanTopN) + ")");
    if (nTokens == 0 || nTokens > (1u << 30)) return Status(ErrorCode::InvalidArgument, "no routing-query token");
    const size_t nDocs = shard.nDocs();
    MSA_RETURN_IF_ERROR(ws.reserve(nDocs, n, stream));
    const DeviceRouteShard::DevicePtrs p = shard.ptrs();
    const bool chunkMean = chunkReduce == memory::ChunkReduce::Mean;
    const int qr = queryReduce == memory::QueryReduce::Max ? kQueryMax : queryReduce == memory::QueryReduce::Mean ? kQueryMean : kQueryLast;
    MSA_CUDA_CHECK(cudaMemsetAsync(ws.docKey, 0, std::max<size_t>(nDocs, 1) * sizeof(uint32_t), stream));
    if (chunkMean) MSA_CUDA_CHECK(cudaMemsetAsync(ws.docSum, 0, std::max<size_t>(nDocs, 1) * sizeof(double), stream));
    MSA_CUDA_CHECK(cudaMemsetAsync(ws.count, 0, sizeof(unsigned), stream));
    const size_t nTiles = (shard.nChunks() + kChunkTile - 1) / kChunkTile;
    const bool mma = kernel != ScanKernel::Fma && tensorCoreShape(shard);
    if (nTiles > 0 && mma) {
        const size_t tPad = (nTokens + 15) / 16 * 16;
        MSA_RETURN_IF_ERROR(ws.reserveQueries(tPad * shard.width(), stream));
        const size_t total = tPad * shard.width();
        splitQueryKernel<<<static_cast<unsigned>(std::min<size_t>((total + 255) / 256, 4096)), 256, 0, stream>>>(
            dFolded, static_cast<int>(nTokens), static_cast<int>(tPad), static_cast<int>(shard.width()),
            static_cast<__nv_bfloat16*>(ws.qHi), static_cast<__nv_bfloat16*>(ws.qLo));
        MSA_CUDA_CHECK_LAUNCH("routing query split kernel");
        const unsigned grid = static_cast<unsigned>(std::min<size_t>((nTiles + kMmaWarps - 1) / kMmaWarps, 65535u * 8u));
        mmaScoreKernel<<<grid, kMmaWarps * 32, 0, stream>>>(static_cast<const __nv_bfloat16*>(p.keys), p.chunkDoc, p.allowed,
                                                            static_cast<const __nv_bfloat16*>(ws.qHi),
                                                            static_cast<const __nv_bfloat16*>(ws.qLo), shard.nChunks(), static_cast<int>(shard.width()),
                                                            static_cast<int>(nTokens), static_cast<int>(tPad), qr, chunkMean,
                                                            ws.docKey, ws.docSum);
        MSA_CUDA_CHECK_LAUNCH("routing score kernel (tensor cores)");
    } else if (nTiles > 0) {
        const unsigned grid = static_cast<unsigned>(std::min<size_t>(nTiles, 65535u * 8u));
        const size_t w = shard.width();
        const int nt = static_cast<int>(nTokens);
        if (shard.storage() != KeyStorage::Native) {
            if (shard.headDim() == 0 || shard.headDim() > (1u << 30) || !p.scales)
                return Status(ErrorCode::InvalidArgument, "8-bit routing table without scales or head dim");
            const auto* codes = static_cast<const uint8_t*>(p.keys);
            const auto nh = static_cast<uint32_t>(shard.nHeads()), hd = static_cast<uint32_t>(shard.headDim());
            if (shard.storage() == KeyStorage::Fp8E4M3)
                scoreKernel<QuantKeys<true>><<<grid, kScoreThreads, 0, stream>>>(QuantKeys<true>{codes, p.scales, w, nh, hd}, p.chunkDoc,
                                                                               p.allowed, dFolded, shard.nChunks(), w, nt, qr,
                                                                               chunkMean, ws.docKey, ws.docSum);
            else
                scoreKernel<QuantKeys<false>><<<grid, kScoreThreads, 0, stream>>>(QuantKeys<false>{codes, p.scales, w, nh, hd}, p.chunkDoc,
                                                                                p.allowed, dFolded, shard.nChunks(), w, nt, qr,
                                                                                chunkMean, ws.docKey, ws.docSum);
        } else if (shard.dtype() == model::DType::BF16) {
            scoreKernel<NativeKeys<__nv_bfloat16>><<<grid, kScoreThreads, 0, stream>>>(
                NativeKeys<__nv_bfloat16>{static_cast<const __nv_bfloat16*>(p.keys), w}, p.chunkDoc, p.allowed, dFolded,
                shard.nChunks(), w, nt, qr, chunkMean, ws.docKey, ws.docSum);
        } else {
            scoreKernel<NativeKeys<float>><<<grid, kScoreThreads, 0, stream>>>(NativeKeys<float>{static_cast<const float*>(p.keys), w},
                                                                             p.chunkDoc, p.allowed, dFolded, shard.nChunks(), w, nt,
                                                                             qr, chunkMean, ws.docKey, ws.docSum);
        }
        MSA_CUDA_CHECK_LAUNCH("routing score kernel");
    }
    if (chunkMean && nDocs > 0) {
        const unsigned grid = static_cast<unsigned>(std::min<size_t>((nDocs + 255) / 256, 4096));
        chunkMeanKernel<<<grid, 256, 0, stream>>>(ws.docSum, p.docChunks, p.allowed, nDocs, ws.docKey);
        MSA_CUDA_CHECK_LAUNCH("routing chunk-mean kernel");
    }
    // The pass plan is memory::topKPassBlocks (emulated and tested on the CPU: tst_shard_merge).
    const int nk = static_cast<int>(n);
    const std::vector<size_t> plan = memory::topKPassBlocks(nDocs, n);
    topkFirstKernel<<<static_cast<unsigned>(plan[0]), kSortThreads, 0, stream>>>(ws.docKey, p.rank, nDocs, nk, ws.candA, ws.count);
    MSA_CUDA_CHECK_LAUNCH("routing top-k kernel (first pass)");
    uint64_t* in = ws.candA;
    uint64_t* next = ws.candB;
    for (size_t pass = 1; pass < plan.size(); ++pass) {
        topkNextKernel<<<static_cast<unsigned>(plan[pass]), kSortThreads, 0, stream>>>(in, plan[pass - 1] * n, nk, next);
        MSA_CUDA_CHECK_LAUNCH("routing top-k kernel (merge pass)");
        std::swap(in, next);
    }
    decodeKernel<<<1, 256, 0, stream>>>(in, nk, p.rankToRow, p.ids, ws.count, out);
    MSA_CUDA_CHECK_LAUNCH("routing top-k decode kernel");
    return Status::ok();
}

memory::ShardScan decodeCandidates(std::span<const DeviceCandidate> slots, size_t n) {
    memory::ShardScan s;
    for (size_t i = 0; i < n && i < slots.size(); ++i)
        if (slots[i].index != kNoCandidate) s.top.push_back({slots[i].id, slots[i].index, slots[i].score});
    if (slots.size() > n) s.nCandidates = static_cast<size_t>(slots[n].id);
    return s;
}

// ---- CudaRouteScanner ----------------------------------------------------------------------------

Result<std::unique_ptr<CudaRouteScanner>> CudaRouteScanner::create(int device, size_t nCpuThreads, KeyStorage storage) {
    MSA_RETURN_IF_ERROR(checkDeviceIndex(device));
    DeviceGuard g;
    MSA_RETURN_IF_ERROR(g.enter(device));
    std::unique_ptr<CudaRouteScanner> s(new CudaRouteScanner());
    s->m_device = device;
    s->m_cpuThreads = nCpuThreads;
    s->m_storage = storage;
    MSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s->m_stream, cudaStreamNonBlocking));
    return Result<std::unique_ptr<CudaRouteScanner>>(std::move(s));
}

CudaRouteScanner::~CudaRouteScanner() {
    int prev = -1;
    cudaGetDevice(&prev);
    cudaSetDevice(m_device);
    // Drain the stream before freeing anything it may still read (a scan that returned an error
    // half-way leaves kernels and copies enqueued).
    if (m_stream) cudaStreamSynchronize(m_stream);
    m_layers.clear();
    if (m_folded) cudaFree(m_folded);
    if (m_out) cudaFree(m_out);
    if (m_hostOut) cudaFreeHost(m_hostOut);
    if (m_stream) cudaStreamDestroy(m_stream);
    m_ws.release();   // on this scanner's device; the member destructor then frees nothing
    if (prev >= 0) cudaSetDevice(prev);
    cudaGetLastError();
}

std::string CudaRouteScanner::name() const { return "cuda:" + std::to_string(m_device); }

size_t CudaRouteScanner::residentBytes() const {
    size_t b = 0;
    for (const auto& [k, s] : m_layers) b += s->deviceBytes();
    return b;
}

Result<std::vector<memory::ShardScan>> CudaRouteScanner::scan(const memory::RoutingConfig& cfg, size_t layerPos,
                                                              const memory::RoutingQueries& queries,
                                                              std::span<const memory::ScanShard> shards, size_t n,
                                                              const CancelToken* cancel) {
    if (cfg.headReduce != memory::HeadReduce::Mean || n > kMaxScanTopN) {
        // Head max is not linear (no fold); the CPU scan is exact for it.
        if (!m_cpu) {
            MSA_LOG(Info) << "routing scan on the CPU: " << (n > kMaxScanTopN ? "top-n above the GPU limit" : "head max is not folded on the GPU");
            m_cpu = std::make_unique<memory::CpuRouteScanner>(m_cpuThreads, m_storage);
        }
        return m_cpu->scan(cfg, layerPos, queries, shards, n, cancel);
    }
    std::vector<memory::ShardScan> out(shards.size());
    if (n == 0) return out;
    DeviceGuard g;
    MSA_RETURN_IF_ERROR(g.enter(m_device));
    size_t width = 0;
    for (const memory::ScanShard& s : shards)
        if (s.keys.nDocs() > 0) width = s.keys.nHeads;
    if (width == 0) return out;   // no documents anywhere
    MSA_ASSIGN_OR_RETURN(std::vector<float> folded, memory::foldHeadMean(queries, width));
    const size_t foldedFloats = folded.size();
    if (foldedFloats > m_foldedCapacity) {
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        if (m_folded) cudaFree(m_folded);
        m_folded = nullptr;
        m_foldedCapacity = 0;
        MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&m_folded), foldedFloats * sizeof(float)));
        m_foldedCapacity = foldedFloats;
    }
    if (n + 1 > m_outCapacity) {
        MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
        if (m_out) cudaFree(m_out);
        if (m_hostOut) cudaFreeHost(m_hostOut);
        m_out = nullptr;
        m_hostOut = nullptr;
        m_outCapacity = 0;
        MSA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&m_out), (n + 1) * sizeof(DeviceCandidate)));
        MSA_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&m_hostOut), (n + 1) * sizeof(DeviceCandidate)));
        m_outCapacity = n + 1;
    }
    // All shards of the layer form one device table (a bank has hundreds of shards at 100M tokens:
    // one scan instead of one per shard). Its top-n is split back by shard; merging those lists
    // gives the same top-n as merging each shard's own top-n (route_scanner.h).
    std::vector<memory::RouteKeys> parts;
    std::vector<size_t> partShard, firstDoc{0};
    bool filtered = false;
    for (size_t si = 0; si < shards.size(); ++si) {
        const memory::ScanShard& s = shards[si];
        if (s.keys.nDocs() == 0) continue;
        if (s.keys.nHeads != width || queries.headDim != s.keys.headDim || queries.nHeads % s.keys.nHeads != 0)
            return Status(ErrorCode::InvalidArgument, "query heads " + std::to_string(queries.nHeads) + " x " +
                                                          std::to_string(queries.headDim) + " do not map onto key heads " +
                                                          std::to_string(s.keys.nHeads) + " x " + std::to_string(s.keys.headDim));
        if (!s.allowed.empty() && s.allowed.size() != s.keys.nDocs())
            return Status(ErrorCode::InvalidArgument, "candidate filter has " + std::to_string(s.allowed.size()) + " entries for " +
                                                          std::to_string(s.keys.nDocs()) + " documents");
        parts.push_back(s.keys);
        partShard.push_back(si);
        firstDoc.push_back(firstDoc.back() + s.keys.nDocs());
        filtered = filtered || !s.allowed.empty();
    }
    std::unique_ptr<DeviceRouteShard>& table = m_layers[layerPos];
    if (!table || !table->sameSource(parts)) {
        table.reset();
        MSA_ASSIGN_OR_RETURN(table, DeviceRouteShard::upload(parts, m_stream, m_storage));
    }
    std::vector<uint8_t> allowed;
    if (filtered) {
        allowed.reserve(firstDoc.back());
        for (size_t p = 0; p < parts.size(); ++p) {
            const memory::ScanShard& s = shards[partShard[p]];
            if (s.allowed.empty()) allowed.insert(allowed.end(), s.keys.nDocs(), uint8_t(1));
            else allowed.insert(allowed.end(), s.allowed.begin(), s.allowed.end());
        }
    }
    if (cancel && cancel->isCancelled()) return Status(ErrorCode::Cancelled, "routing scan cancelled");
    MSA_RETURN_IF_ERROR(table->setAllowed(allowed, m_stream));
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_folded, folded.data(), foldedFloats * sizeof(float), cudaMemcpyHostToDevice, m_stream));
    MSA_RETURN_IF_ERROR(enqueueScan(*table, m_folded, queries.nTokens, cfg.queryReduce, cfg.chunkReduce, n, m_ws, m_out, m_stream, m_kernel));
    MSA_CUDA_CHECK(cudaMemcpyAsync(m_hostOut, m_out, (n + 1) * sizeof(DeviceCandidate), cudaMemcpyDeviceToHost, m_stream));
    // Also finishes the copy out of the pageable `folded` before it dies.
    MSA_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    const memory::ShardScan all = decodeCandidates({m_hostOut, n + 1}, n);
    for (const memory::ScoredDocument& d : all.top) {
        const size_t p = static_cast<size_t>(std::upper_bound(firstDoc.begin(), firstDoc.end(), size_t(d.index)) - firstDoc.begin()) - 1;
        if (p >= parts.size()) return Status(ErrorCode::DeviceError, "the routing scan returned a row outside its table");
        out[partShard[p]].top.push_back({d.id, static_cast<uint32_t>(d.index - firstDoc[p]), d.score});
    }
    // Candidates per shard: the allowed non-empty documents (each has a finite score with finite
    // keys and queries); the device's own count must agree.
    size_t total = 0;
    for (size_t p = 0; p < parts.size(); ++p) {
        const memory::ScanShard& s = shards[partShard[p]];
        size_t c = 0;
        for (size_t d = 0; d < s.keys.nDocs(); ++d)
            c += (s.keys.chunkOffsets[d + 1] > s.keys.chunkOffsets[d] && (s.allowed.empty() || s.allowed[d])) ? 1 : 0;
        out[partShard[p]].nCandidates = c;
        total += c;
    }
    if (total != all.nCandidates)   // a NaN score never becomes a candidate (as on the CPU); say so
        MSA_LOG(Warning) << "routing layer position " << layerPos << ": " << (total - std::min(total, size_t(all.nCandidates)))
                         << " candidate documents have no finite score (non-finite routing keys or queries)";
    return out;
}

void registerRouteScanner() {
    static std::atomic<bool> done{false};
    if (done.exchange(true)) return;
    memory::registerRouteScannerFactory("cuda", [](const memory::RouteScannerOptions& o) -> Result<std::unique_ptr<memory::RouteScanner>> {
        MSA_ASSIGN_OR_RETURN(std::unique_ptr<CudaRouteScanner> s, CudaRouteScanner::create(o.device, o.nThreads, o.keyStorage));
        return std::unique_ptr<memory::RouteScanner>(std::move(s));
    });
}

}  // namespace msa::gpu

// tst_gpu_ops.cpp (label: gpu): every CUDA operator in gpu/ops.h against its CPU reference in
// core/engine/cpu_ops.h on seeded random inputs with awkward sizes (1, odd, not multiples of a warp
// or block), within atol + rtol·|ref| (CONVENTIONS.md #15). Skips (whole executable) without a usable
// device. Extend: one slot (or data row) per new operator.
// The bf16-forward kernels (gpu/kernels_bf16.h) follow the f32 baseline ops: embedding gather,
// RMSNorm to bf16, the fused QKV post-processing (bias, QK-norm, RoPE), KV append, SwiGLU, flash
// attention (prefix, causal / bidirectional / packed, GQA, split-K decode, nPast from device memory)
// and argmax. The tensor-core prefill attention (gpu/flash_attn_tc.h) is checked against the CPU
// reference (bf16 tolerance) and against its host emulation (gpu/flash_attn_tc_math.h, tighter).
#include "gpu/flash_attn_tc.h"
#include "gpu/flash_attn_tc_math.h"
// and argmax. Chunk pooling (gpu/pool_kernels.h): the segment-aware pooling kernel must equal the CPU
// backend's engine::poolChunkRows bit for bit (same summation order), and the ChunkPooler (kernel,
// routing-key GEMM, one async copy per layer into double-buffered pinned memory on a second stream)
// must hand every layer's rows to the hook in order, K̄/V̄ bit-equal, K̄ᴿ within f32 rounding of the
// reference's project-then-pool.
#include "core/engine/chunk_pool.h"
#include "gpu/kernels_bf16.h"
#include "gpu/launch_plan.h"
#include "gpu/ops.h"
#include "gpu/pool_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>

#include <QtTest>

#include <cmath>
#include <random>
#include <vector>

using namespace msa;

namespace {
std::vector<float> randomVector(size_t n, uint32_t seed, float sd = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

// A device copy of a host vector, freed at scope exit.
struct DeviceBuffer {
    void* ptr = nullptr;
    size_t bytes = 0;
    template <typename T>
    explicit DeviceBuffer(const std::vector<T>& host) : bytes(host.size() * sizeof(T)) {
        if (cudaMalloc(&ptr, std::max<size_t>(bytes, 1)) == cudaSuccess && bytes)
            cudaMemcpy(ptr, host.data(), bytes, cudaMemcpyHostToDevice);
    }
    ~DeviceBuffer() { cudaFree(ptr); }
    template <typename T>
    T* as() { return static_cast<T*>(ptr); }
    template <typename T>
    std::vector<T> download() const {
        std::vector<T> out(bytes / sizeof(T));
        cudaMemcpy(out.data(), ptr, bytes, cudaMemcpyDeviceToHost);
        return out;
    }
};

bool close(const std::vector<float>& got, const std::vector<float>& ref, float atol, float rtol, QString* where) {
    for (size_t i = 0; i < ref.size(); ++i)
        if (!(std::abs(got[i] - ref[i]) <= atol + rtol * std::abs(ref[i]))) {
            *where = QString("index %1: gpu %2, cpu %3").arg(i).arg(got[i]).arg(ref[i]);
            return false;
        }
    return true;
}

// Output buffers start as NaN so that a kernel that writes nothing cannot pass.
std::vector<float> poison(size_t n) { return std::vector<float>(n, std::nanf("")); }
std::vector<uint16_t> toBf16(const std::vector<float>& x) {
    std::vector<uint16_t> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = gpu::f32ToBf16(x[i]);
    return out;
}
std::vector<float> fromBf16(const std::vector<uint16_t>& x) {
    std::vector<float> out(x.size());
    for (size_t i = 0; i < x.size(); ++i) out[i] = gpu::bf16ToF32(x[i]);
    return out;
}
}  // namespace

class TestGpuOps : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
            cudaGetLastError();
            QSKIP("no usable CUDA device: the GPU parity tests need one");
        }
    }

    void rmsNorm_data() {
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("dim");
        QTest::newRow("1x1") << 1 << 1;
        QTest::newRow("3x37") << 3 << 37;
        QTest::newRow("7x576") << 7 << 576;
        QTest::newRow("2x2560") << 2 << 2560;
    }
    void rmsNorm() {
        QFETCH(int, rows);
        QFETCH(int, dim);
        auto x = randomVector(size_t(rows) * dim, 1), w = randomVector(dim, 2);
        std::vector<float> ref(x.size());
        cpu::rmsNorm(x.data(), w.data(), ref.data(), rows, dim, 1e-6f);
        DeviceBuffer dx(x), dw(w), dy{poison(ref.size())};
        QVERIFY(gpu::rmsNorm(dx.as<float>(), dw.as<float>(), dy.as<float>(), rows, dim, 1e-6f, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dy.download<float>(), ref, 1e-5f, 1e-5f, &where), qPrintable(where));
    }

    void rope_data() {
        QTest::addColumn<bool>("neox");
        QTest::newRow("neox") << true;
        QTest::newRow("adjacent") << false;
    }
    void rope() {
        QFETCH(bool, neox);
        const size_t tokens = 5, heads = 3, hd = 64;
        auto x = randomVector(tokens * heads * hd, 3);
        const std::vector<int32_t> pos = {0, 1, 2, 19, 4097};
        auto ref = x;
        const auto style = neox ? cpu::RopeStyle::NeoX : cpu::RopeStyle::Adjacent;
        cpu::rope(ref.data(), tokens, heads, hd, hd, pos.data(), 100000.0f, style);
        DeviceBuffer dx(x), dp(pos);
        QVERIFY(gpu::rope(dx.as<float>(), tokens, heads, hd, hd, dp.as<int32_t>(), 100000.0f, style, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dx.download<float>(), ref, 1e-4f, 1e-4f, &where), qPrintable(where));
    }

    void swiglu() {
        const size_t n = 1537;
        auto g = randomVector(n, 4), u = randomVector(n, 5);
        std::vector<float> ref(n);
        cpu::swiglu(g.data(), u.data(), ref.data(), n);
        DeviceBuffer dg(g), du(u), dout{poison(ref.size())};
        QVERIFY(gpu::swiglu(dg.as<float>(), du.as<float>(), dout.as<float>(), n, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 1e-6f, 1e-5f, &where), qPrintable(where));
    }

    void attentionWithPrefixAndGqa() {
        const size_t nHeads = 9, nKv = 3, hd = 64, nQ = 5, prefix = 70, nCtx = prefix + nQ, stride = 96;
        auto q = randomVector(nQ * nHeads * hd, 6), k = randomVector(nKv * stride * hd, 7), v = randomVector(nKv * stride * hd, 8);
        std::vector<float> ref(nQ * nHeads * hd), scratch(nCtx);
        cpu::attention(q.data(), k.data(), v.data(), ref.data(), nQ, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        DeviceBuffer dq(q), dk(k), dv(v), dout{poison(ref.size())};
        QVERIFY(gpu::attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), nQ, nCtx, nHeads, nKv, hd,
                               stride, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 1e-5f, 1e-4f, &where), qPrintable(where));
        QCOMPARE(gpu::attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), 1,
                                gpu::kMaxAttentionContext + 1, nHeads, nKv, hd, stride, nullptr).code(),
                 ErrorCode::Unsupported);
    }
    // ---- bf16 forward kernels (gpu/kernels_bf16.h) ----

    void embeddingBf16() {
        const size_t vocab = 37, dim = 67;
        const auto table = toBf16(randomVector(vocab * dim, 20));
        const std::vector<int32_t> tokens = {0, 36, 5, 5, 17};
        std::vector<float> ref(tokens.size() * dim);
        for (size_t t = 0; t < tokens.size(); ++t)
            for (size_t c = 0; c < dim; ++c) ref[t * dim + c] = gpu::bf16ToF32(table[size_t(tokens[t]) * dim + c]);
        DeviceBuffer dt(table), dtok(tokens), dx{poison(ref.size())};
        QVERIFY(gpu::embeddingBf16(dt.as<uint16_t>(), dtok.as<int32_t>(), dx.as<float>(), tokens.size(), dim, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QCOMPARE(dx.download<float>(), ref);
    }

    void rmsNormToBf16_data() { rmsNorm_data(); }
    void rmsNormToBf16() {
        QFETCH(int, rows);
        QFETCH(int, dim);
        auto x = randomVector(size_t(rows) * dim, 21), w = randomVector(dim, 22);
        std::vector<float> ref(x.size());
        cpu::rmsNorm(x.data(), w.data(), ref.data(), rows, dim, 1e-6f);
        DeviceBuffer dx(x), dw(w), dyF{poison(ref.size())}, dyB{std::vector<uint16_t>(x.size(), 0x7fc0)};
        QVERIFY(gpu::rmsNormToBf16(dx.as<float>(), dw.as<float>(), dyB.as<uint16_t>(), dyF.as<float>(), rows, dim, 1e-6f, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dyF.download<float>(), ref, 1e-5f, 1e-5f, &where), qPrintable(where));
        QVERIFY2(close(fromBf16(dyB.download<uint16_t>()), ref, 1e-6f, 1.0f / 128, &where), qPrintable(where));
        // The bf16 output is the f32 output rounded to nearest-even (the weight upload's rounding),
        // not merely close to it: truncation would pass the tolerance above.
        QCOMPARE(dyB.download<uint16_t>(), toBf16(dyF.download<float>()));
    }

    void qkvPost_data() {
        QTest::addColumn<int>("hd");
        QTest::addColumn<bool>("neox");
        QTest::addColumn<bool>("qkNorm");
        QTest::addColumn<bool>("bias");
        QTest::newRow("hd16 neox qknorm") << 16 << true << true << false;
        QTest::newRow("hd64 adjacent bias") << 64 << false << false << true;
        QTest::newRow("hd128 neox qknorm bias") << 128 << true << true << true;
    }
    void qkvPost() {
        QFETCH(int, hd);
        QFETCH(bool, neox);
        QFETCH(bool, qkNorm);
        QFETCH(bool, bias);
        const size_t n = 5, nH = 9, nKv = 3, width = (nH + 2 * nKv) * hd;
        const std::vector<int32_t> pos = {0, 1, 2, 300, 4097};
        auto qkv = randomVector(n * width, 23), b = randomVector(width, 24), qn = randomVector(hd, 25), kn = randomVector(hd, 26);
        const auto style = neox ? cpu::RopeStyle::NeoX : cpu::RopeStyle::Adjacent;
        // Reference: split, bias, per-head RMSNorm, RoPE with the CPU operators.
        std::vector<float> q(n * nH * hd), k(n * nKv * hd), v(n * nKv * hd);
        for (size_t t = 0; t < n; ++t)
            for (size_t c = 0; c < width; ++c) {
                const float val = qkv[t * width + c] + (bias ? b[c] : 0.0f);
                if (c < nH * hd) q[t * nH * hd + c] = val;
                else if (c < (nH + nKv) * hd) k[t * nKv * hd + c - nH * hd] = val;
                else v[t * nKv * hd + c - (nH + nKv) * hd] = val;
            }
        if (qkNorm) {
            cpu::rmsNorm(q.data(), qn.data(), q.data(), n * nH, hd, 1e-6f);
            cpu::rmsNorm(k.data(), kn.data(), k.data(), n * nKv, hd, 1e-6f);
        }
        cpu::rope(q.data(), n, nH, hd, hd, pos.data(), 1000000.0f, style);
        cpu::rope(k.data(), n, nKv, hd, hd, pos.data(), 1000000.0f, style);
        DeviceBuffer dqkv(qkv), db(b), dqn(qn), dkn(kn), dpos(pos), dfreq(gpu::ropeInverseFrequencies(hd, 1000000.0f)),
            dq{poison(q.size())}, dk{poison(k.size())}, dv{poison(v.size())};
        gpu::QkvPostArgs a;
        a.qkv = dqkv.as<float>();
        a.bias = bias ? db.as<float>() : nullptr;
        a.qNorm = qkNorm ? dqn.as<float>() : nullptr;
        a.kNorm = qkNorm ? dkn.as<float>() : nullptr;
        a.invFreq = dfreq.as<float>();
        a.positions = dpos.as<int32_t>();
        a.q = dq.as<float>();
        a.k = dk.as<float>();
        a.v = dv.as<float>();
        a.nTokens = n;
        a.nHeads = nH;
        a.nKv = nKv;
        a.headDim = hd;
        a.style = style;
        QVERIFY(gpu::qkvPost(a, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dq.download<float>(), q, 1e-4f, 1e-4f, &where), qPrintable("q " + where));
        QVERIFY2(close(dk.download<float>(), k, 1e-4f, 1e-4f, &where), qPrintable("k " + where));
        QVERIFY2(close(dv.download<float>(), v, 0.0f, 0.0f, &where), qPrintable("v " + where));
    }

    void appendKvAfterPrefixAndPast() {
        const size_t n = 3, nKv = 2, hd = 16, cap = 40, prefix = 7;
        const std::vector<int32_t> past = {5};
        auto k = randomVector(n * nKv * hd, 27), v = randomVector(n * nKv * hd, 28);
        std::vector<float> kc(nKv * cap * hd, -1.0f), vc = kc, kRef = kc, vRef = vc;
        for (size_t t = 0; t < n; ++t)
            for (size_t g = 0; g < nKv; ++g)
                for (size_t d = 0; d < hd; ++d) {
                    kRef[(g * cap + prefix + 5 + t) * hd + d] = k[(t * nKv + g) * hd + d];
                    vRef[(g * cap + prefix + 5 + t) * hd + d] = v[(t * nKv + g) * hd + d];
                }
        DeviceBuffer dk(k), dv(v), dkc(kc), dvc(vc), dp(past);
        QVERIFY(gpu::appendKv(dk.as<float>(), dv.as<float>(), dkc.as<float>(), dvc.as<float>(), n, nKv, hd, cap, prefix,
                              dp.as<int32_t>(), nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QCOMPARE(dkc.download<float>(), kRef);
        QCOMPARE(dvc.download<float>(), vRef);
    }

    void swigluBf16() {
        const size_t n = 3, ffn = 515;
        auto gu = randomVector(n * 2 * ffn, 29);
        std::vector<float> g(n * ffn), u(n * ffn), ref(n * ffn);
        for (size_t t = 0; t < n; ++t)
            for (size_t c = 0; c < ffn; ++c) {
                g[t * ffn + c] = gu[t * 2 * ffn + c];
                u[t * ffn + c] = gu[t * 2 * ffn + ffn + c];
            }
        cpu::swiglu(g.data(), u.data(), ref.data(), n * ffn);
        DeviceBuffer dgu(gu), dout{std::vector<uint16_t>(n * ffn, 0x7fc0)};
        QVERIFY(gpu::swigluBf16(dgu.as<float>(), dout.as<uint16_t>(), n, ffn, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(fromBf16(dout.download<uint16_t>()), ref, 1e-6f, 1.0f / 128, &where), qPrintable(where));
    }

    void flashAttention_data() {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("prefix");
        QTest::addColumn<int>("past");
        QTest::addColumn<int>("hd");
        QTest::addColumn<bool>("causal");
        QTest::addColumn<int>("splits");   // 0: planAttention's choice for an H100-sized GPU
        QTest::newRow("1 token, no context") << 1 << 0 << 0 << 64 << true << 1;
        QTest::newRow("prefill 37 after prefix 70") << 37 << 70 << 0 << 64 << true << 1;
        QTest::newRow("prefill split 3") << 37 << 70 << 0 << 64 << true << 3;
        QTest::newRow("decode 5000 keys planned") << 1 << 3000 << 1999 << 128 << true << 0;
        QTest::newRow("decode odd, hd16, 7 splits") << 1 << 11 << 1000 << 16 << true << 7;
        QTest::newRow("3 tokens after cache, hd32") << 3 << 0 << 45 << 32 << true << 1;
        QTest::newRow("bidirectional 7 after 20") << 7 << 20 << 0 << 64 << false << 1;
        QTest::newRow("bidirectional split 2") << 7 << 20 << 0 << 16 << false << 2;
        QTest::newRow("129 tokens, hd128") << 129 << 0 << 0 << 128 << true << 1;
    }
    void flashAttention() {
        QFETCH(int, n);
        QFETCH(int, prefix);
        QFETCH(int, past);
        QFETCH(int, hd);
        QFETCH(bool, causal);
        QFETCH(int, splits);
        const size_t nHeads = 9, nKv = 3, nCtx = size_t(prefix + past + n), stride = nCtx + 13;
        auto q = randomVector(size_t(n) * nHeads * hd, 30), k = randomVector(nKv * stride * hd, 31), v = randomVector(nKv * stride * hd, 32);
        // Cache rows past the context are NaN, as never-written cudaMalloc memory may be: a kernel that
        // loads them into a tile and weights them by a zero probability (0 · NaN) fails here.
        for (size_t g = 0; g < nKv; ++g)
            for (size_t r = nCtx; r < stride; ++r)
                for (size_t d = 0; d < size_t(hd); ++d) k[(g * stride + r) * hd + d] = v[(g * stride + r) * hd + d] = std::nanf("");
        std::vector<float> ref(size_t(n) * nHeads * hd), scratch(nCtx);
        const size_t qRow = nHeads * hd;
        if (causal)
            cpu::attention(q.data(), k.data(), v.data(), ref.data(), n, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        else
            for (int i = 0; i < n; ++i)
                cpu::attention(q.data() + i * qRow, k.data(), v.data(), ref.data() + i * qRow, 1, nCtx, nHeads, nKv, hd, stride, 0,
                               nHeads, scratch.data());
        const gpu::AttentionPlan plan = gpu::planAttention(n, nHeads, nKv, nCtx, 132);
        if (splits == 0) splits = plan.nSplits;
        const std::vector<int32_t> pastOnDevice = {past};
        DeviceBuffer dq(q), dk(k), dv(v), dout{poison(ref.size())}, dpast(pastOnDevice),
            dws{std::vector<float>(size_t(splits) * n * nHeads * (hd + 2) + 1)}, doutB{std::vector<uint16_t>(ref.size(), 0x7fc0)};
        gpu::FlashAttentionArgs a;
        a.q = dq.as<float>();
        a.kCache = dk.as<float>();
        a.vCache = dv.as<float>();
        a.outF32 = dout.as<float>();
        a.nTokens = n;
        a.nHeads = nHeads;
        a.nKv = nKv;
        a.headDim = hd;
        a.kvStride = stride;
        a.prefixRows = prefix;
        a.nPast = dpast.as<int32_t>();
        a.causal = causal;
        a.nSplits = splits;
        a.workspace = dws.as<float>();
        QVERIFY(gpu::flashAttention(a, nullptr).isOk());
        // The bf16-output variant, with the context length given on the host.
        gpu::FlashAttentionArgs b = a;
        b.outF32 = nullptr;
        b.outBf16 = doutB.as<uint16_t>();
        b.nPast = nullptr;
        b.hostPast = past;
        QVERIFY(gpu::flashAttention(b, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 1e-5f, 1e-4f, &where), qPrintable(where));
        QVERIFY2(close(fromBf16(doutB.download<uint16_t>()), ref, 1e-4f, 1.0f / 128, &where), qPrintable("bf16 " + where));
    }

    void flashAttentionPackedSegments() {
        const std::vector<uint32_t> segs = {1, 17, 33, 5, 40};
        std::vector<int32_t> segStart;
        size_t n = 0;
        for (uint32_t len : segs) {
            for (uint32_t i = 0; i < len; ++i) segStart.push_back(static_cast<int32_t>(n));
            n += len;
        }
        const size_t nHeads = 8, nKv = 2, hd = 64;
        auto q = randomVector(n * nHeads * hd, 33), k = randomVector(nKv * n * hd, 34), v = randomVector(nKv * n * hd, 35);
        std::vector<float> ref(n * nHeads * hd), scratch(cpu::segmentedAttentionScratch(segs.data(), segs.size(), 16));
        cpu::segmentedAttention(q.data(), k.data(), v.data(), ref.data(), segs.data(), segs.size(), nHeads, nKv, hd, n, 0, nHeads, 16,
                                scratch.data());
        DeviceBuffer dq(q), dk(k), dv(v), dout{poison(ref.size())}, dseg(segStart);
        gpu::FlashAttentionArgs a;
        a.q = dq.as<float>();
        a.kCache = dk.as<float>();
        a.vCache = dv.as<float>();
        a.outF32 = dout.as<float>();
        a.nTokens = n;
        a.nHeads = nHeads;
        a.nKv = nKv;
        a.headDim = hd;
        a.kvStride = n;
        a.segStart = dseg.as<int32_t>();
        QVERIFY(gpu::flashAttention(a, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 1e-5f, 1e-4f, &where), qPrintable(where));
        a.headDim = 80;
        QCOMPARE(gpu::flashAttention(a, nullptr).code(), ErrorCode::Unsupported);
    }

    void tensorCoreAttention_data() {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("prefix");
        QTest::addColumn<int>("past");
        QTest::addColumn<int>("hd");
        QTest::addColumn<int>("nHeads");
        QTest::addColumn<int>("nKv");
        QTest::addColumn<bool>("causal");
        QTest::newRow("1 token") << 1 << 0 << 0 << 64 << 2 << 1 << true;
        QTest::newRow("63 tokens, GQA 4:1") << 63 << 0 << 0 << 64 << 8 << 2 << true;
        QTest::newRow("65 after 70 prefix rows, hd128") << 65 << 70 << 0 << 128 << 4 << 1 << true;
        QTest::newRow("130 after prefix 9 + past 40, 32/8") << 130 << 9 << 40 << 128 << 32 << 8 << true;
        QTest::newRow("non-causal 97 after 33") << 97 << 33 << 0 << 64 << 4 << 4 << false;
        QTest::newRow("non-causal 1 after 200, hd128") << 1 << 200 << 0 << 128 << 4 << 1 << false;
        QTest::newRow("517 tokens, GQA 4:1") << 517 << 0 << 0 << 128 << 8 << 2 << true;
    }
    void tensorCoreAttention() {
        QFETCH(int, n);
        QFETCH(int, prefix);
        QFETCH(int, past);
        QFETCH(int, hd);
        QFETCH(int, nHeads);
        QFETCH(int, nKv);
        QFETCH(bool, causal);
        const size_t nCtx = size_t(prefix + past + n), stride = nCtx + 13, qRow = size_t(nHeads) * hd;
        auto q = randomVector(size_t(n) * qRow, 60 + n), k = randomVector(size_t(nKv) * stride * hd, 61 + n),
             v = randomVector(size_t(nKv) * stride * hd, 62 + n);
        std::vector<float> ref(size_t(n) * qRow), emu(ref.size()), scratch(nCtx);
        if (causal)
            cpu::attention(q.data(), k.data(), v.data(), ref.data(), n, nCtx, nHeads, nKv, hd, stride, 0, nHeads, scratch.data());
        else
            for (int i = 0; i < n; ++i)
                cpu::attention(q.data() + i * qRow, k.data(), v.data(), ref.data() + i * qRow, 1, nCtx, nHeads, nKv, hd, stride, 0,
                               nHeads, scratch.data());
        gpu::tc::TcEmulationArgs e;
        e.q = q.data();
        e.k = k.data();
        e.v = v.data();
        e.out = emu.data();
        e.nTokens = n;
        e.nHeads = nHeads;
        e.nKv = nKv;
        e.headDim = hd;
        e.kvStride = stride;
        e.base = prefix + past;
        e.causal = causal;
        gpu::tc::emulateTcAttention(e);

        const std::vector<int32_t> pastOnDevice = {past};
        DeviceBuffer dq(q), dk(toBf16(k)), dv(toBf16(v)), dkF(k), dvF(v), dout{poison(ref.size())}, dpast(pastOnDevice),
            doutB{std::vector<uint16_t>(ref.size(), 0x7fc0)};
        gpu::FlashAttentionTcArgs a;
        a.q = dq.as<float>();
        a.kBf16 = dk.as<uint16_t>();
        a.vBf16 = dv.as<uint16_t>();
        a.outF32 = dout.as<float>();
        a.nTokens = n;
        a.nHeads = nHeads;
        a.nKv = nKv;
        a.headDim = hd;
        a.kvStride = stride;
        a.prefixRows = prefix;
        a.nPast = dpast.as<int32_t>();
        a.causal = causal;
        QVERIFY(gpu::flashAttentionTc(a, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        const std::vector<float> got = dout.download<float>();
        QString where;
        QVERIFY2(close(got, ref, 3e-2f, 2e-2f, &where), qPrintable("vs cpu " + where));
        // The tensor cores sum in another order than the emulation; the rest is the same arithmetic.
        QVERIFY2(close(got, emu, 8e-3f, 8e-3f, &where), qPrintable("vs emulation " + where));

        // The backend's entry point: f32 cache converted to bf16, bf16 output, length on the host.
        gpu::FlashAttentionArgs b;
        b.q = dq.as<float>();
        b.kCache = dkF.as<float>();
        b.vCache = dvF.as<float>();
        b.outBf16 = doutB.as<uint16_t>();
        b.nTokens = n;
        b.nHeads = nHeads;
        b.nKv = nKv;
        b.headDim = hd;
        b.kvStride = stride;
        b.prefixRows = prefix;
        b.hostPast = past;
        b.causal = causal;
        QCOMPARE(gpu::useTensorCoreAttention(b), size_t(n) >= gpu::tc::kMinTokens);
        QVERIFY(gpu::flashAttentionPrefill(b, nCtx, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QVERIFY2(close(fromBf16(doutB.download<uint16_t>()), ref, 3e-2f, 2e-2f, &where), qPrintable("prefill bf16 " + where));
    }

    void tensorCoreAttentionPackedSegments() {
        const std::vector<uint32_t> segs = {1, 17, 70, 5, 64, 33};
        std::vector<int32_t> segStart;
        size_t n = 0;
        for (uint32_t len : segs) {
            for (uint32_t i = 0; i < len; ++i) segStart.push_back(static_cast<int32_t>(n));
            n += len;
        }
        const size_t nHeads = 8, nKv = 2, hd = 128;
        auto q = randomVector(n * nHeads * hd, 63), k = randomVector(nKv * n * hd, 64), v = randomVector(nKv * n * hd, 65);
        std::vector<float> ref(n * nHeads * hd), scratch(cpu::segmentedAttentionScratch(segs.data(), segs.size(), 16));
        cpu::segmentedAttention(q.data(), k.data(), v.data(), ref.data(), segs.data(), segs.size(), nHeads, nKv, hd, n, 0, nHeads, 16,
                                scratch.data());
        DeviceBuffer dq(q), dk(toBf16(k)), dv(toBf16(v)), dout{poison(ref.size())}, dseg(segStart);
        gpu::FlashAttentionTcArgs a;
        a.q = dq.as<float>();
        a.kBf16 = dk.as<uint16_t>();
        a.vBf16 = dv.as<uint16_t>();
        a.outF32 = dout.as<float>();
        a.nTokens = n;
        a.nHeads = nHeads;
        a.nKv = nKv;
        a.headDim = hd;
        a.kvStride = n;
        a.segStart = dseg.as<int32_t>();
        QVERIFY(gpu::flashAttentionTc(a, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 3e-2f, 2e-2f, &where), qPrintable(where));
        a.headDim = 80;
        QCOMPARE(gpu::flashAttentionTc(a, nullptr).code(), ErrorCode::Unsupported);
    }

    void argmaxRows() {
        const size_t rows = 4, n = 1001;
        auto x = randomVector(rows * n, 36);
        x[1 * n + 7] = 50.0f;   // a tie: the lower index wins
        x[1 * n + 900] = 50.0f;
        x[2 * n + 1000] = 60.0f;   // the last element
        x[3 * n + 0] = 70.0f;      // the first element
        std::vector<int32_t> ref(rows);
        for (size_t r = 0; r < rows; ++r) ref[r] = static_cast<int32_t>(cpu::argmax(x.data() + r * n, n));
        DeviceBuffer dx(x), dout{std::vector<int32_t>(rows, -1)};
        QVERIFY(gpu::argmaxRows(dx.as<float>(), rows, n, dout.as<int32_t>(), nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QCOMPARE(dout.download<int32_t>(), ref);
        QCOMPARE(ref[1], 7);
        // A row of one element.
        DeviceBuffer one{std::vector<float>{-3.0f}};
        QVERIFY(gpu::argmaxRows(one.as<float>(), 1, 1, dout.as<int32_t>(), nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QCOMPARE(dout.download<int32_t>()[0], 0);
    }

    void convertToBf16MatchesHostRounding() {
        auto x = randomVector(1003, 37, 100.0f);
        DeviceBuffer dx(x), dy{std::vector<uint16_t>(x.size(), 0x7fc0)};
        QVERIFY(gpu::convertToBf16(dx.as<float>(), dy.as<uint16_t>(), x.size(), nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QCOMPARE(dy.download<uint16_t>(), toBf16(x));
    }

    void poolChunks_data() {
        QTest::addColumn<std::vector<uint32_t>>("segments");
        QTest::addColumn<int>("chunk");
        QTest::addColumn<int>("kvDim");
        QTest::addColumn<int>("xDim");
        QTest::newRow("one token") << std::vector<uint32_t>{1} << 64 << 8 << 0;
        QTest::newRow("odd, partial last chunk") << std::vector<uint32_t>{131} << 64 << 24 << 40;
        QTest::newRow("packed segments") << std::vector<uint32_t>{5, 1, 64, 65, 3, 200} << 64 << 128 << 0;
        QTest::newRow("packed, x, P=4") << std::vector<uint32_t>{3, 11, 40, 1, 17} << 4 << 72 << 136;
    }
    void poolChunks() {
        QFETCH(std::vector<uint32_t>, segments);
        QFETCH(int, chunk);
        QFETCH(int, kvDim);
        QFETCH(int, xDim);
        size_t n = 0;
        for (uint32_t s : segments) n += s;
        const auto plan = engine::segmentChunks(segments, n, size_t(chunk));
        const auto k = randomVector(n * kvDim, 41), v = randomVector(n * kvDim, 42), x = randomVector(n * std::max(xDim, 1), 43, 3.0f);
        DeviceBuffer dk(k), dv(v), dx(x), dplan(plan), dkv(poison(2 * plan.size() * kvDim)),
            dxo(poison(plan.size() * std::max(xDim, 1)));
        QVERIFY(gpu::poolChunksF32(dk.as<float>(), dv.as<float>(), xDim ? dx.as<float>() : nullptr, kvDim, xDim,
                                   dplan.as<engine::ChunkSpan>(), plan.size(), dkv.as<float>(), dxo.as<float>(), nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        std::vector<float> want(2 * plan.size() * kvDim);
        engine::poolChunkRows(k.data(), kvDim, plan, 0, plan.size(), want.data());
        engine::poolChunkRows(v.data(), kvDim, plan, 0, plan.size(), want.data() + plan.size() * kvDim);
        const auto got = dkv.download<float>();
        QVERIFY2(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0, "K̄/V̄ differ from poolChunkRows");
        if (xDim) {
            std::vector<float> wantX(plan.size() * xDim);
            engine::poolChunkRows(x.data(), xDim, plan, 0, plan.size(), wantX.data());
            const auto gotX = dxo.download<float>();
            QVERIFY2(std::memcmp(gotX.data(), wantX.data(), wantX.size() * sizeof(float)) == 0, "x̄ differs from poolChunkRows");
        }
    }

    void chunkPoolerHandsOverEveryLayer() {
        const size_t kvDim = 48, hidden = 80;
        const std::vector<uint32_t> segments = {7, 64, 1, 130};
        size_t n = 0;
        for (uint32_t s : segments) n += s;
        const auto plan = engine::segmentChunks(segments, n, 64);
        auto wHost = randomVector(kvDim * hidden, 50, 0.2f);
        model::TensorView w;
        w.name = "blk.1.router_k.weight";
        w.dtype = model::DType::F32;
        w.shape = {kvDim, hidden};
        w.bytes = std::as_bytes(std::span<const float>(wHost));
        engine::PoolingOptions opt;
        opt.chunkSize = 64;
        opt.layers = {1, 2, 4};
        opt.routeKeyProj = {&w, nullptr, &w};
        struct Layer {
            std::vector<float> k, v, x;
        };
        std::vector<Layer> layers;
        for (uint32_t l = 0; l < 5; ++l)
            layers.push_back({randomVector(n * kvDim, 60 + l), randomVector(n * kvDim, 70 + l), randomVector(n * hidden, 80 + l)});
        cudaStream_t stream = nullptr;
        QVERIFY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess);
        cublasHandle_t cublas = nullptr;
        QVERIFY(cublasCreate(&cublas) == CUBLAS_STATUS_SUCCESS);
        QVERIFY(cublasSetStream(cublas, stream) == CUBLAS_STATUS_SUCCESS);
        std::vector<int> seen;
        QString failure;
        {
            gpu::ChunkPooler pooler;
            engine::PooledHook hook = [&](const engine::PooledRows& r) {
                seen.push_back(r.layer);
                if (r.nChunks != plan.size()) failure = "chunk count";
                const Layer& L = layers[size_t(r.layer)];
                std::vector<float> want(plan.size() * kvDim);
                engine::poolChunkRows(L.k.data(), kvDim, plan, 0, plan.size(), want.data());
                if (std::memcmp(want.data(), r.k, want.size() * sizeof(float))) failure = QString("K̄ of layer %1").arg(r.layer);
                engine::poolChunkRows(L.v.data(), kvDim, plan, 0, plan.size(), want.data());
                if (std::memcmp(want.data(), r.v, want.size() * sizeof(float))) failure = QString("V̄ of layer %1").arg(r.layer);
                const bool proj = r.layer != 2;
                if (proj != (r.routeKey != nullptr)) failure = QString("K̄ᴿ presence in layer %1").arg(r.layer);
                if (!proj || !r.routeKey) return;
                // The reference: project every token, then pool (in double here).
                std::vector<float> rows(n * kvDim);
                for (size_t t = 0; t < n; ++t)
                    for (size_t o = 0; o < kvDim; ++o) {
                        double acc = 0;
                        for (size_t h = 0; h < hidden; ++h) acc += double(wHost[o * hidden + h]) * L.x[t * hidden + h];
                        rows[t * kvDim + o] = float(acc);
                    }
                engine::poolChunkRows(rows.data(), kvDim, plan, 0, plan.size(), want.data());
                QString where;
                if (!close(std::vector<float>(r.routeKey, r.routeKey + want.size()), want, 1e-5f, 1e-5f, &where))
                    failure = QString("K̄ᴿ of layer %1: %2").arg(r.layer).arg(where);
            };
            for (int round = 0; round < 2; ++round) {   // a second forward reuses the buffers
                seen.clear();
                QVERIFY(pooler.begin(plan, opt, kvDim, hidden, stream).isOk());
                std::vector<std::unique_ptr<DeviceBuffer>> bufs;
                for (uint32_t l = 0; l < 5; ++l) {
                    bufs.push_back(std::make_unique<DeviceBuffer>(layers[l].k));
                    bufs.push_back(std::make_unique<DeviceBuffer>(layers[l].v));
                    bufs.push_back(std::make_unique<DeviceBuffer>(layers[l].x));
                    const Status st = pooler.layer(int(l), bufs[3 * l]->as<float>(), bufs[3 * l + 1]->as<float>(),
                                                   bufs[3 * l + 2]->as<float>(), cublas, hook);
                    QVERIFY2(st.isOk(), st.toString().c_str());
                }
                QVERIFY(pooler.finish(hook).isOk());
                QVERIFY(cudaStreamSynchronize(stream) == cudaSuccess);
                QVERIFY2(failure.isEmpty(), qPrintable(failure));
                QCOMPARE(seen, (std::vector<int>{1, 2, 4}));
            }
        }
        cublasDestroy(cublas);
        cudaStreamDestroy(stream);
    }
};

QTEST_GUILESS_MAIN(TestGpuOps)
#include "tst_gpu_ops.moc"

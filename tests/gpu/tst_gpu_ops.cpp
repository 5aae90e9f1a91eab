// tst_gpu_ops.cpp (label: gpu): every CUDA operator in gpu/ops.h against its CPU reference in
// core/engine/cpu_ops.h on seeded random inputs with awkward sizes (1, odd, not multiples of a warp
// or block), within atol + rtol·|ref| (CONVENTIONS.md #15). Skips (whole executable) without a usable
// device. Extend: one slot (or data row) per new operator.
#include "gpu/ops.h"

#include <cuda_runtime_api.h>

#include <QtTest>

#include <cmath>
#include <random>
#include <vector>

using namespace msa;

namespace {
std::vector<float> randomVector(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
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
        DeviceBuffer dx(x), dw(w), dy(ref);
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
        DeviceBuffer dg(g), du(u), dout(ref);
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
        DeviceBuffer dq(q), dk(k), dv(v), dout(ref);
        QVERIFY(gpu::attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), nQ, nCtx, nHeads, nKv, hd,
                               stride, nullptr).isOk());
        QVERIFY(cudaDeviceSynchronize() == cudaSuccess);
        QString where;
        QVERIFY2(close(dout.download<float>(), ref, 1e-5f, 1e-4f, &where), qPrintable(where));
        QCOMPARE(gpu::attention(dq.as<float>(), dk.as<float>(), dv.as<float>(), dout.as<float>(), 1,
                                gpu::kMaxAttentionContext + 1, nHeads, nKv, hd, stride, nullptr).code(),
                 ErrorCode::Unsupported);
    }
};

QTEST_GUILESS_MAIN(TestGpuOps)
#include "tst_gpu_ops.moc"

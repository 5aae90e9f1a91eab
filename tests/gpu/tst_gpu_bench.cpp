// tst_gpu_bench.cpp (label: gpu): the CUDA half of `msa bench gpu` (gpu/bench_gpu.h). The data-sheet
// peak table is host code and is checked everywhere; with a usable device, the copy bandwidth is
// measured and plausible (HBM-class: > 100 GB/s), the hooks name the device, the routing-scan hook
// (gpu/route_scan's real scan over one layer of the 1M-token synthetic bank) selects at layer 0 the
// same top-16 documents in the same order as the CPU Router on the same keys and queries — native
// bf16, and fp8/int8 against the CPU Router over the same dequantized keys — and its CUDA-event
// timing runs; and — when the CUDA backend can create sessions — the harness runs the tiny random
// model on the device with its own scan checks passing. Figures are printed, not asserted
// (DESIGN.md §7: timing stays out of correctness tests).
#include "core/engine/device_select.h"
#include "core/jobs/bench_gpu.h"
#include "gpu/bench_gpu.h"
#include "gpu/register.h"

#include <QtTest>

#include <algorithm>
#include <cmath>
#include <random>

using namespace msa;

class TestGpuBench : public QObject {
    Q_OBJECT
private slots:
    void peakTable() {
        std::string source;
        QCOMPARE(gpu::bf16PeakFlops("NVIDIA H100 80GB HBM3", &source), 989e12);
        QVERIFY(source.find("H100 SXM") != std::string::npos);
        QCOMPARE(gpu::bf16PeakFlops("NVIDIA H100 PCIe", &source), 756e12);
        QCOMPARE(gpu::bf16PeakFlops("NVIDIA H100 NVL", &source), 835e12);
        QCOMPARE(gpu::bf16PeakFlops("NVIDIA H200", &source), 989e12);
        QCOMPARE(gpu::bf16PeakFlops("NVIDIA A100-SXM4-80GB", &source), 312e12);
        QCOMPARE(gpu::bf16PeakFlops("Tesla T4", &source), 0.0);
        QCOMPARE(source, std::string("unknown for Tesla T4"));
    }

    void hooksOnARealDevice() {
        engine::BackendRegistry reg = engine::BackendRegistry::withCpu();
        gpu::registerBackends(reg);
        const engine::BackendInfo* cuda = reg.find("cuda");
        if (!cuda || !cuda->usable) QSKIP(qPrintable(QString::fromStdString("no usable CUDA device: " + (cuda ? cuda->reason : ""))));
        Result<jobs::DeviceBenchHooks> hooks = gpu::cudaBenchHooks(0);
        QVERIFY2(hooks.ok(), hooks.ok() ? "" : hooks.status().toString().c_str());
        QVERIFY(!hooks->deviceName.empty());
        Result<double> bw = hooks->copyBandwidth(uint64_t{256} << 20);
        QVERIFY2(bw.ok(), bw.ok() ? "" : bw.status().toString().c_str());
        qInfo("%s: copy %.0f GB/s, bf16 peak %.0f TFLOP/s (%s)", hooks->deviceName.c_str(), *bw / 1e9,
              hooks->peakBf16Flops / 1e12, hooks->peakSource.c_str());
        QVERIFY(*bw > 100e9);

        // The 1M-token bank of `msa bench gpu` (MSA-4B routing shape: 8 KV heads x 128, 32 query
        // heads, P = 64, 4K-token documents), layer 0, against the CPU Router on the same keys.
        jobs::ScanSpec spec;
        spec.nChunks = (1000000 + 63) / 64;   // 15625 chunks, 244 documents and a partial one, as the harness
        spec.chunksPerDoc = 64;
        spec.nHeads = 8;
        spec.headDim = 128;
        spec.nQueryHeads = 32;
        spec.seed = 7;
        const size_t nTokens = 64, k = 16;
        std::vector<float> queries(nTokens * spec.nQueryHeads * spec.headDim);
        std::mt19937 rng(11);
        // j/8 values, as the harness: native bf16 scores are then exact in f32 on both sides (see
        // runGpuBench), so the comparison is exact; 8-bit keys differ by summation order only.
        std::uniform_int_distribution<int> pick(-8, 8);
        for (float& x : queries) x = static_cast<float>(pick(rng)) / 8.0f;
        const jobs::DeviceBenchHooks cpuHooks = jobs::cpuBenchHooks(0);
        for (memory::KeyStorage storage : {memory::KeyStorage::Native, memory::KeyStorage::Fp8E4M3, memory::KeyStorage::Int8}) {
            spec.keyStorage = storage;
            const std::string name(memory::keyStorageName(storage));
            auto scanner = hooks->openScanner(spec);
            QVERIFY2(scanner.ok(), scanner.ok() ? "" : scanner.status().toString().c_str());
            auto reference = cpuHooks.openScanner(spec);
            QVERIFY(reference.ok());
            Result<std::vector<uint32_t>> dev = (*scanner)->scan(queries, nTokens, k);
            QVERIFY2(dev.ok(), dev.ok() ? "" : dev.status().toString().c_str());
            Result<std::vector<uint32_t>> ref = (*reference)->scan(queries, nTokens, k);
            QVERIFY(ref.ok());
            QCOMPARE(ref->size(), k);
            QVERIFY2(*dev == *ref, ("layer-0 top-16 (" + name + ") differs from the CPU Router's").c_str());
            QCOMPARE((*scanner)->keyBytesPerLayer(), (*reference)->keyBytesPerLayer());
            Result<std::vector<double>> runs = (*scanner)->timeLayers(queries, nTokens, k, 18, 3);
            QVERIFY2(runs.ok(), runs.ok() ? "" : runs.status().toString().c_str());
            QCOMPARE(runs->size(), size_t{3});
            for (double ms : *runs) QVERIFY(ms > 0);
            std::vector<double> sorted = *runs;
            std::sort(sorted.begin(), sorted.end());
            const double bytes = static_cast<double>((*scanner)->keyBytesPerLayer()) * 18;
            qInfo("1M bank, %s: 18-layer scan %.3f ms (CUDA events), %.0f GB/s of keys", name.c_str(), sorted[1],
                  bytes / (sorted[1] * 1e-3) / 1e9);
            // The scan after timing still answers the same.
            Result<std::vector<uint32_t>> again = (*scanner)->scan(queries, nTokens, k);
            QVERIFY(again.ok());
            QVERIFY(*again == *ref);
        }

        if (!cuda->create) QSKIP("the CUDA backend has no factory yet: the harness cannot run models on the GPU");
        Result<engine::BackendChoice> choice = engine::chooseBackend(reg, "cuda:0");
        QVERIFY(choice.ok());
        jobs::GpuBenchOptions o;
        o.shape = jobs::BenchModelShape::tiny();
        o.device = *choice;
        o.hooks = *hooks;
        o.repeats = 1;
        Result<jobs::GpuBenchResult> r = jobs::runGpuBench(o);
        QVERIFY2(r.ok(), r.ok() ? "" : r.status().toString().c_str());
        qInfo("%s", jobs::toText(*r).c_str());
        QCOMPARE(r->figures.front().name, std::string("encoding"));
        QVERIFY(r->figures.front().value > 0);
        // Tiny banks are ≤ 1M tokens: every (bank, storage) was checked against the CPU Router.
        QCOMPARE(r->scanChecks.size(), o.shape.bankTokens.size() * 3);
        QVERIFY2(r->scanChecksPassed, jobs::toText(*r).c_str());
    }
};

QTEST_GUILESS_MAIN(TestGpuBench)
#include "tst_gpu_bench.moc"

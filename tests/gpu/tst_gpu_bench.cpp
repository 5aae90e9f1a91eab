// tst_gpu_bench.cpp (label: gpu): the CUDA half of `msa bench gpu` (gpu/bench_gpu.h). The data-sheet
// peak table is host code and is checked everywhere; with a usable device, the copy bandwidth is
// measured and plausible (HBM-class: > 100 GB/s), the hooks name the device, the routing-scan hook
// says it is not wired yet (Unimplemented, not a crash), and — when the CUDA backend can create
// sessions — the harness runs the tiny random model on the device. Figures are printed, not asserted
// (DESIGN.md §7: timing stays out of correctness tests).
#include "core/engine/device_select.h"
#include "core/jobs/bench_gpu.h"
#include "gpu/bench_gpu.h"
#include "gpu/register.h"

#include <QtTest>

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
        auto scanner = hooks->openScanner(jobs::ScanSpec{});
        QVERIFY(!scanner.ok());
        QCOMPARE(scanner.status().code(), ErrorCode::Unimplemented);

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
    }
};

QTEST_GUILESS_MAIN(TestGpuBench)
#include "tst_gpu_bench.moc"

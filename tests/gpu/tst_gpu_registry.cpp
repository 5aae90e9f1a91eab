// tst_gpu_registry.cpp (label: gpu): the CUDA backend registers itself; without a usable device it
// says why (and the test skips); with one, every listed device passed the self-test kernel and
// reports a name, memory and SM count. Extend with parity tests per op as gpu/ grows.
#include "gpu/register.h"

#include <QtTest>

class TestGpuRegistry : public QObject {
    Q_OBJECT
private slots:
    void registersCudaBackend() {
        msa::engine::BackendRegistry reg = msa::engine::BackendRegistry::withCpu();
        msa::gpu::registerBackends(reg);
        const msa::engine::BackendInfo* cuda = reg.find("cuda");
        QVERIFY(cuda != nullptr);
        QVERIFY(cuda->built);
        bool hasRuntime = false;
        for (const auto& [k, v] : cuda->facts) hasRuntime = hasRuntime || (k == "cuda runtime" && !v.empty());
        QVERIFY(hasRuntime);
        QVERIFY2(static_cast<bool>(cuda->create), "the CUDA entry has no backend factory");
        if (!cuda->usable) {
            QVERIFY(!cuda->reason.empty());
            // Creating the backend anyway fails with a status, never an abort.
            auto created = cuda->create(0);
            QVERIFY(!created.ok());
            QVERIFY(created.status().code() == msa::ErrorCode::DeviceError || created.status().code() == msa::ErrorCode::NotFound);
            QVERIFY(cuda->devices.empty());
            QCOMPARE(reg.preferred().name, std::string("cpu"));
            QSKIP(qPrintable(QString::fromStdString("no usable CUDA device: " + cuda->reason)));
        }
        QVERIFY(!cuda->devices.empty());
        for (const auto& d : cuda->devices) {
            QVERIFY(d.id.rfind("cuda:", 0) == 0);
            QVERIFY(!d.name.empty());
            QVERIFY(d.memoryBytes > (1ull << 30));
            QVERIFY(d.computeUnits > 0);
        }
        QCOMPARE(reg.preferred().name, std::string("cuda"));
    }
};

QTEST_GUILESS_MAIN(TestGpuRegistry)
#include "tst_gpu_registry.moc"

// tst_device_select.cpp: core/engine/device_select.h — what each --device spec selects on a machine
// without a usable GPU (this build's situation in CI) and on registries with one and two CUDA
// devices (hand-built: the chooser reads only the registry, so the GPU cases run on the CPU).
// Extend: add a spec to both tables when the chooser learns it.
#include "core/engine/device_select.h"

#include <QtTest>

using namespace msa;
using namespace msa::engine;

namespace {

BackendRegistry withoutCuda(const std::string& reason) {
    BackendRegistry reg = BackendRegistry::withCpu();
    BackendInfo cuda;
    cuda.name = "cuda";
    cuda.reason = reason;
    reg.add(std::move(cuda));
    return reg;
}

// A registry whose "cuda" backend has the given device indices. Its factory records the index it
// was asked for and returns a CPU backend (the chooser only forwards the index).
BackendRegistry withGpus(std::vector<int> indices, int* lastCreated) {
    BackendRegistry reg = BackendRegistry::withCpu();
    BackendInfo cuda;
    cuda.name = "cuda";
    cuda.built = true;
    cuda.usable = true;
    for (int i : indices) {
        DeviceInfo d;
        d.id = "cuda:" + std::to_string(i);
        d.name = "Test GPU " + std::to_string(i);
        cuda.devices.push_back(d);
    }
    cuda.create = [lastCreated](int index) -> Result<std::unique_ptr<Backend>> {
        *lastCreated = index;
        return createCpuBackend();
    };
    reg.add(std::move(cuda));
    return reg;
}

}  // namespace

class TestDeviceSelect : public QObject {
    Q_OBJECT
private slots:
    void cpuIsAlwaysTheCpu() {
        const BackendRegistry reg = withoutCuda("built without CUDA");
        Result<BackendChoice> c = chooseBackend(reg, "cpu");
        QVERIFY(c.ok());
        QCOMPARE(c->backend, std::string("cpu"));
        QCOMPARE(c->deviceId, std::string("cpu"));
        QVERIFY(!c->fellBack);
        QVERIFY(c->note.empty());
        QCOMPARE(c->deviceName, reg.find("cpu")->devices.front().name);
        Result<std::unique_ptr<Backend>> b = c->create();
        QVERIFY(b.ok());
        QCOMPARE(std::string((*b)->name()), std::string("cpu"));
    }

    void autoWithoutGpuIsTheCpuWithTheReason() {
        const BackendRegistry reg = withoutCuda("built without CUDA");
        for (const char* spec : {"", "auto"}) {
            Result<BackendChoice> c = chooseBackend(reg, spec);
            QVERIFY(c.ok());
            QCOMPARE(c->backend, std::string("cpu"));
            QVERIFY2(!c->fellBack, "auto is no explicit GPU request");
            QVERIFY2(c->note.find("built without CUDA") != std::string::npos, c->note.c_str());
            QCOMPARE(c->gpuProblem, std::string("built without CUDA"));
        }
    }

    void cudaFallsBackToTheCpuAndSaysWhy() {
        const BackendRegistry reg = withoutCuda("no usable CUDA device: cudaErrorInsufficientDriver");
        for (const char* spec : {"cuda", "cuda:all", "cuda:0"}) {
            Result<BackendChoice> c = chooseBackend(reg, spec);
            QVERIFY2(c.ok(), spec);
            QCOMPARE(c->backend, std::string("cpu"));
            QCOMPARE(c->deviceId, std::string("cpu"));
            QVERIFY(c->fellBack);
            QCOMPARE(c->requested, std::string(spec));
            QCOMPARE(c->note, std::string(spec) + " requested but not usable: no usable CUDA device: "
                                                  "cudaErrorInsufficientDriver; running on the CPU");
        }
        // A registry without any cuda entry still explains itself.
        Result<BackendChoice> bare = chooseBackend(BackendRegistry::withCpu(), "cuda");
        QVERIFY(bare.ok());
        QVERIFY2(bare->note.find("no cuda backend in this build") != std::string::npos, bare->note.c_str());
    }

    void missingDeviceAndGarbageAreInvalidArguments() {
        const BackendRegistry reg = withoutCuda("built without CUDA");
        for (const char* spec : {"cuda:7", "gpu", "cuda:", "cuda:-1", "cuda:1x", "CPU", "cuda:all:0"}) {
            Result<BackendChoice> c = chooseBackend(reg, spec);
            QVERIFY2(!c.ok(), spec);
            QCOMPARE(c.status().code(), ErrorCode::InvalidArgument);
            const std::string m = c.status().message();
            QVERIFY2(m.find(spec) != std::string::npos, m.c_str());
            QVERIFY2(m.find("available: auto, cpu (cuda: built without CUDA)") != std::string::npos, m.c_str());
        }
    }

    void gpusAreChosenByIndex() {
        int created = -1;
        const BackendRegistry reg = withGpus({0, 1}, &created);
        Result<BackendChoice> a = chooseBackend(reg, "auto");
        QVERIFY(a.ok());
        QCOMPARE(a->backend, std::string("cuda"));
        QCOMPARE(a->deviceId, std::string("cuda:0"));
        QVERIFY(a->note.empty() && !a->fellBack);
        Result<BackendChoice> one = chooseBackend(reg, "cuda:1");
        QVERIFY(one.ok());
        QCOMPARE(one->devices, std::vector<int>{1});
        QCOMPARE(one->describe(), std::string("cuda:1 (Test GPU 1)"));
        QVERIFY(one->create().ok());
        QCOMPARE(created, 1);
        Result<BackendChoice> all = chooseBackend(reg, "cuda:all");
        QVERIFY(all.ok());
        QCOMPARE(all->deviceId, std::string("cuda:all"));
        QCOMPARE(all->devices, (std::vector<int>{0, 1}));
        Result<BackendChoice> missing = chooseBackend(reg, "cuda:5");
        QVERIFY(!missing.ok());
        QVERIFY2(missing.status().message().find("available: auto, cpu, cuda:0, cuda:1, cuda:all") != std::string::npos,
                 missing.status().message().c_str());
        QCOMPARE(deviceSpecs(reg), (std::vector<std::string>{"auto", "cpu", "cuda:0", "cuda:1", "cuda:all"}));
    }

    void oneGpuMakesCudaAllTheFirstDevice() {
        int created = -1;
        // Device 0 failed its self-test and is absent: indices come from the ids, not positions.
        const BackendRegistry reg = withGpus({1}, &created);
        Result<BackendChoice> all = chooseBackend(reg, "cuda:all");
        QVERIFY(all.ok());
        QCOMPARE(all->deviceId, std::string("cuda:1"));
        QCOMPARE(all->devices, std::vector<int>{1});
        QVERIFY(!chooseBackend(reg, "cuda:0").ok());   // a GPU exists, so cuda:0 is a wrong name, not a fallback
        QCOMPARE(deviceSpecs(reg), (std::vector<std::string>{"auto", "cpu", "cuda:1"}));
    }
};

QTEST_GUILESS_MAIN(TestDeviceSelect)
#include "tst_device_select.moc"

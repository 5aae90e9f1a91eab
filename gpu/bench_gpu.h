// bench_gpu.h: the CUDA half of `msa bench gpu` (core/jobs/bench_gpu.h holds the harness): the
// device's name and data-sheet bf16 peak, the HBM bandwidth measured by a device-to-device copy, and
// the routing scan over device-resident synthetic keys. A plain C++ header (no CUDA types), so the
// mains include it; only app/ does, and only when MSA_HAVE_CUDA.
//
// Thread affinity: the hooks bind the device on the calling thread (cudaSetDevice) and may be called
// from any one thread at a time. Failure codes: DeviceError (a CUDA call failed; the message names
// the statement and device), OutOfMemory (an allocation failed), InvalidArgument (a scan spec or
// query shape the scan cannot take, top-k above kMaxScanTopN).
//
// Usage:
//     MSA_ASSIGN_OR_RETURN(jobs::DeviceBenchHooks hooks, gpu::cudaBenchHooks(0));
//     options.hooks = hooks;  jobs::runGpuBench(options);
#pragma once

#include "core/jobs/bench_gpu.h"
#include "core/util/status.h"

#include <string>

namespace msa::gpu {

// Dense bf16 tensor-core peak from the data sheet for a device name (989e12 for H100 SXM / H200,
// 756e12 for H100 PCIe, 835e12 for H100 NVL, 312e12 for A100); 0 and "unknown" otherwise. Host code.
double bf16PeakFlops(const std::string& deviceName, std::string* source);

// Hooks for device `device`: name, peak, copy bandwidth, and the routing scan: openScanner keeps one
// layer of fillSyntheticKeys keys resident (gpu/route_scan's DeviceRouteShard, native bf16 or 8-bit
// per ScanSpec::keyStorage; generated on the host in page-locked memory and uploaded, since a shard is
// made from host keys) and scans it with enqueueScan; timeLayers times nLayers scans with CUDA
// events. fp8-e4m3 and int8 are measured as extra rows, and banks of ≤ 1M tokens are checked against
// the CPU Router (layer-0 top-k identical, GpuBenchResult::scanChecks).
Result<jobs::DeviceBenchHooks> cudaBenchHooks(int device);

// Bytes read + written per second by cudaMemcpyAsync device-to-device of `bytes` (median of 10 after
// a warm-up, timed with CUDA events).
Result<double> measureCopyBandwidth(int device, uint64_t bytes);

}  // namespace msa::gpu

#!/usr/bin/env bash
# gpu-session.sh: what a session that is lent a GPU machine runs for issue 6 (the CUDA backend).
#
# The GPU machine has CUDA, cuBLAS, NCCL (through PyTorch's wheels), CMake and Python with torch and
# transformers, but no Qt, SQLite, poppler or OpenBLAS development packages, and no network. So the
# binaries are built HERE (Debian 12, CUDA 13 toolkit) and travel with the working tree:
#
#   here:        packaging/gpu-session.sh bundle     # builds the gpu targets, fills .gpu-bundle/
#   device tool: run(command="packaging/gpu-session.sh run", carry=[".gpu-bundle"])
#
# `run` (on the GPU machine, in the repository root) writes everything to $OUT (or ./gpu-out):
#   nvidia-smi.txt, doctor.json, one <test>.txt per GPU test (Qt Test plain output),
#   sanitizer-<test>.txt (compute-sanitizer memcheck over the parity tests), bench-gpu.json and
#   bench-gpu.txt (msa bench gpu against the PyTorch peer), summary.txt.
# Exit status: 0 when every GPU test passed and the sanitizer found nothing, 1 otherwise.
#
# The tests find their fixtures through the absolute source path compiled into them; `run` links that
# path to the device's checkout when the two differ (commands there run as root).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=$ROOT/.gpu-bundle
BUILD=${MSA_BUILD_DIR:-$ROOT/build}

die() { echo "gpu-session: $*" >&2; exit 2; }

# Libraries the GPU machine provides itself (glibc, the CUDA driver/runtime/math libraries, NCCL):
# never copied, so the device's own, matching versions are used.
system_lib() {
    case "$1" in
        linux-vdso*|ld-linux*|libc.so*|libm.so*|libdl.so*|libpthread.so*|librt.so*) return 0 ;;
        libcuda.so*|libcudart.so*|libcublas*|libnccl*|libnvrtc*|libnvJitLink*) return 0 ;;
    esac
    return 1
}

bundle() {
    command -v ninja >/dev/null || die "ninja is not installed (run packaging/setup.sh build first)"
    [ -f "$BUILD/CMakeCache.txt" ] || die "no build tree at $BUILD (run packaging/setup.sh build first)"
    local targets
    targets=$(ninja -C "$BUILD" -t targets all 2>/dev/null | sed -n 's|^\(tests/gpu/tst_[a-z_0-9]*\): CXX_EXECUTABLE_LINKER.*|\1|p' | sort -u)
    [ -n "$targets" ] || die "no GPU test targets in $BUILD: it was configured without the CUDA backend (nvcc not found)"
    ninja -C "$BUILD" -j2 msa $targets || die "build failed"
    rm -rf "$BUNDLE"
    local stage
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' RETURN
    mkdir -p "$stage/bin" "$stage/lib"
    cp "$BUILD/app/msa" "$stage/bin/"
    for t in $targets; do cp "$BUILD/$t" "$stage/bin/"; done
    # Every shared library the binaries need that the GPU machine may lack (Qt, ICU, SQLite, ...).
    local lib path
    for bin in "$stage"/bin/*; do
        ldd "$bin" | awk '/=>/ {print $1, $3}' | while read -r lib path; do
            system_lib "$lib" && continue
            [ -f "$path" ] && [ ! -e "$stage/lib/$lib" ] && cp -L "$path" "$stage/lib/$lib"
        done
    done
    strip --strip-unneeded "$stage"/bin/* "$stage"/lib/* 2>/dev/null || true
    sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$BUILD/CMakeCache.txt" >"$stage/source-dir"
    git rev-parse HEAD >"$stage/commit" 2>/dev/null || true
    # The device tool carries at most 64 MiB with the working tree: xz gets the ~110 MB of binaries
    # and libraries (ICU's data, poppler, Qt) well under that, and xz/lzma exists on the GPU machine.
    mkdir -p "$BUNDLE"
    tar -C "$stage" -cf - . | xz -T2 -6 >"$BUNDLE/bundle.tar.xz" || die "packing the bundle failed"
    du -sh "$BUNDLE"
    echo "gpu-session: bundle ready; on the GPU machine run: packaging/gpu-session.sh run (carry .gpu-bundle)"
}

run() {
    [ -f "$BUNDLE/bundle.tar.xz" ] || die "no .gpu-bundle here: run 'packaging/gpu-session.sh bundle' on the build machine and carry it"
    rm -rf "$BUNDLE/bin" "$BUNDLE/lib"
    xz -dc "$BUNDLE/bundle.tar.xz" | tar -C "$BUNDLE" -xf - || die "unpacking the bundle failed"
    local out=${OUT:-$ROOT/gpu-out}
    mkdir -p "$out"
    # The device's CUDA math libraries and NCCL: the toolkit's, else the ones PyTorch's wheels carry.
    local libdirs="$BUNDLE/lib"
    for name in libcublas.so.13 libcublasLt.so.13 libnccl.so.2 libcudart.so.13; do
        local found
        found=$(find /usr/local/cuda*/ /usr/lib /opt -name "$name" 2>/dev/null | head -1)
        [ -n "$found" ] && libdirs="$libdirs:$(dirname "$found")"
    done
    export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    local src
    src=$(cat "$BUNDLE/source-dir")
    if [ -n "$src" ] && [ "$src" != "$ROOT" ] && [ ! -e "$src" ]; then
        mkdir -p "$(dirname "$src")" && ln -s "$ROOT" "$src"
    fi
    export MSA_TEST_DATA_DIR=${MSA_TEST_DATA_DIR:-$ROOT/shared/data}
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    "$BUNDLE/bin/msa" doctor --json >"$out/doctor.json" 2>&1 || true
    local failed=0 summary="$out/summary.txt"
    : >"$summary"
    for t in "$BUNDLE"/bin/tst_*; do
        local name
        name=$(basename "$t")
        if "$t" -o "$out/$name.txt,txt" >/dev/null 2>&1; then
            echo "PASS $name" >>"$summary"
        else
            echo "FAIL $name" >>"$summary"
            failed=1
        fi
        grep -q "SKIP   :" "$out/$name.txt" 2>/dev/null && echo "  (skipped: $(grep -m1 'SKIP   :' "$out/$name.txt" | cut -c1-200))" >>"$summary"
    done
    if command -v compute-sanitizer >/dev/null; then
        for t in "$BUNDLE"/bin/tst_gpu_ops "$BUNDLE"/bin/tst_gpu_routing "$BUNDLE"/bin/tst_gpu_backend; do
            [ -x "$t" ] || continue
            local name
            name=$(basename "$t")
            if compute-sanitizer --tool memcheck --error-exitcode 42 "$t" >"$out/sanitizer-$name.txt" 2>&1; then
                echo "SANITIZER-CLEAN $name" >>"$summary"
            else
                echo "SANITIZER-ERRORS $name (see sanitizer-$name.txt)" >>"$summary"
                failed=1
            fi
        done
    else
        echo "compute-sanitizer not found: memcheck not run" >>"$summary"
    fi
    if [ "${MSA_GPU_SESSION_BENCH:-1}" = 1 ]; then
        "$BUNDLE/bin/msa" bench gpu --json >"$out/bench-gpu.json" 2>"$out/bench-gpu.txt" ||
            echo "msa bench gpu failed (exit $?): see bench-gpu.txt" >>"$summary"
    fi
    cat "$summary"
    return $failed
}

case "${1:-}" in
    bundle) bundle ;;
    run) run ;;
    *) echo "usage: packaging/gpu-session.sh bundle|run" >&2; exit 2 ;;
esac

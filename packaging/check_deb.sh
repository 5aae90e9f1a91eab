#!/usr/bin/env bash
# packaging/check_deb.sh BUILD_DIR [DEB]: builds the Debian package with CPack (unless DEB is given),
# checks that it holds both executables, the desktop entry, the icon and the demo archive, that its
# Depends were computed (dpkg-shlibdeps) and name the Qt 6, QCustomPlot and SQLite libraries, then
# unpacks it with `dpkg -x` into a temporary root and runs `msa doctor` and an offscreen
# `msa-workbench --screenshot` from there. Prints the package's path and size. Exit 0 when all hold.
set -euo pipefail
build="$(cd "${1:?usage: check_deb.sh BUILD_DIR [DEB]}" && pwd)"
deb="${2:-}"
fail() { echo "check_deb: FAIL: $*" >&2; exit 1; }

if [ -z "$deb" ]; then
  (cd "$build" && cpack -G DEB > "$build/cpack-deb.log" 2>&1) || { cat "$build/cpack-deb.log" >&2; fail "cpack -G DEB failed"; }
  deb="$(ls -t "$build"/msa-workbench_*.deb | head -n 1)"
fi
[ -f "$deb" ] || fail "no package at '$deb'"

files="$(dpkg-deb -c "$deb" | awk '{print $6}')"
for want in ./usr/bin/msa ./usr/bin/msa-workbench ./usr/share/applications/msa-workbench.desktop \
            ./usr/share/icons/hicolor/scalable/apps/msa-workbench.svg ./usr/share/msa-workbench/demo/questions.json \
            ./usr/share/msa-workbench/demo/archive/; do
  grep -qxF "$want" <<<"$files" || fail "the package lacks $want"
done
n_archive="$(grep -c '^\./usr/share/msa-workbench/demo/archive/.*[^/]$' <<<"$files" || true)"
n_source="$(cd "$(dirname "$0")/../resources/demo/archive" && find . -type f | wc -l)"
[ "$n_archive" -eq "$n_source" ] || fail "the package has $n_archive demo archive files, the source tree $n_source"

depends="$(dpkg-deb -f "$deb" Depends)"
for lib in libqt6widgets6 libqcustomplot2.1-qt6 libsqlite3-0 libc6; do
  grep -q "$lib" <<<"$depends" || fail "Depends lacks $lib: $depends"
done

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
dpkg -x "$deb" "$root"
unset MSA_DEMO_ARCHIVE MSA_DEMO_MODEL
doctor_rc=0
"$root/usr/bin/msa" doctor > "$root/doctor.txt" 2>&1 || doctor_rc=$?
cat "$root/doctor.txt"
# Exit 1 only means "not healthy" (e.g. no demo model on this machine); anything else is a failure.
[ "$doctor_rc" -le 1 ] || fail "msa doctor exited with $doctor_rc"
grep -qi "archive" "$root/doctor.txt" || fail "msa doctor did not report the demo archive"
# On this (development) machine the source tree's archive comes first; hide it in a private mount
# namespace, when we may, to see the unpacked package find its own copy as on a clean system.
src="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$(id -u)" = 0 ] && unshare -m true 2> /dev/null; then
  unshare -m bash -c "mount -t tmpfs none '$src/resources' && '$root/usr/bin/msa' doctor" > "$root/doctor-clean.txt" 2>&1 || true
  grep -qF "demo archive: $root/usr/share/msa-workbench/demo/archive" "$root/doctor-clean.txt" ||
    { cat "$root/doctor-clean.txt" >&2; fail "with the source tree hidden, msa doctor did not find the packaged demo archive"; }
  echo "check_deb: with the source tree hidden: $(grep 'demo archive' "$root/doctor-clean.txt")"
fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$root/xdg}"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
QT_QPA_PLATFORM=offscreen "$root/usr/bin/msa-workbench" --settings "$root/s.ini" --catalog "$root/c.sqlite" \
  --size 1280x800 --screenshot "$root/shot.png" || fail "msa-workbench --screenshot failed"
[ -s "$root/shot.png" ] || fail "no screenshot written"
if command -v desktop-file-validate > /dev/null; then
  desktop-file-validate "$root/usr/share/applications/msa-workbench.desktop" || fail "desktop entry does not validate"
fi
echo "check_deb: OK: $deb ($(du -h "$deb" | cut -f1), $(stat -c %s "$deb") bytes; installed size $(dpkg-deb -f "$deb" Installed-Size) KiB)"
echo "check_deb: Depends: $depends"

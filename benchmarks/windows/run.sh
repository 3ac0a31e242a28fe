#!/usr/bin/env bash
# The Windows backend's C-level query cost under Wine, against the fwpuclnt.dll double of tests/windows/:
#   bash benchmarks/windows/run.sh
# Builds the double and benchmarks/windows/bench.c (x64, mingw-w64), runs it in its own Wine prefix under
# build/bench-windows/, prints one JSON line. Needs gcc-mingw-w64-x86-64 and wine (wine64).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench-windows
CC=x86_64-w64-mingw32-gcc
for tool in $CC wine wineboot wineserver; do
    command -v "$tool" >/dev/null || { echo "windows bench: $tool is missing (apt-get install gcc-mingw-w64-x86-64 wine wine64)" >&2; exit 1; }
done
mkdir -p "$OUT"
flags=(-std=c11 -Wall -Wextra -O2 -static -static-libgcc)
"$CC" "${flags[@]}" -shared -o "$OUT/fwpuclnt.dll" tests/windows/fwpuclnt_double.c tests/windows/fwpuclnt.def \
    -Wl,--kill-at -lws2_32 -ladvapi32
# csrc/windows/*.c includes test_hooks.c, which needs SECSOCK_TEST_HOOKS (as tests/windows/run.sh builds it).
"$CC" "${flags[@]}" -DSECSOCK_TEST_HOOKS -Icsrc -Itests/windows -o "$OUT/bench.exe" benchmarks/windows/bench.c csrc/windows/*.c \
    csrc/secsock_common.c -lws2_32 -lfwpuclnt -ladvapi32
export WINEPREFIX=$OUT/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="fwpuclnt=n;mscoree=;mshtml="
unset DISPLAY WAYLAND_DISPLAY
[[ -f $WINEPREFIX/system.reg ]] || { wineboot -i >"$OUT/wineboot.log" 2>&1; wineserver -w; }
(cd "$OUT" && wine ./bench.exe) | tr -d '\r'
wineserver -k >/dev/null 2>&1 || true

#!/usr/bin/env bash
# The csrc/ layout's two rules (issue 10), checked cheaply:
# 1. A .c file is compiled once, as a unit: no file #includes one (fuzz targets, drivers and benchmarks link the
#    units they exercise, through the internal headers csrc/linux/backend_linux.h and csrc/windows/backend_windows.h).
# 2. The test hooks (csrc/linux/test_hooks.c and csrc/windows/test_hooks.c, ss_debug_*) are not in the extension:
#    not in its symbol table (Linux, built here), not among its sources (setup.py, every platform). The Windows
#    build is checked where it is made: tools/windows_python.py reads setup.py's Extension (no test_hooks.c among
#    its sources) and the built .pyd's symbols (no ss_debug_*, no writable sys_calls pointer).
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
if grep -rnIE --include='*.c' --include='*.h' '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"][^">]*\.c[">]' \
    csrc tests hardening benchmarks; then
    echo "check_layout: the lines above #include a .c file; link the unit instead" >&2
    status=1
fi
if grep -n 'test_hooks' setup.py; then
    echo "check_layout: setup.py builds a test-hooks unit into the extension; only the tests link it" >&2
    status=1
fi
shopt -s nullglob
modules=(src/secsock/_secsock*.so)
if ((${#modules[@]} == 0)); then
    echo "check_layout: no built extension under src/secsock/ (build it first)" >&2
    status=1
elif nm -D --defined-only "${modules[@]}" | grep -w 'ss_debug_[a-z_]*'; then
    echo "check_layout: the extension exports the test hooks above; they belong to tests/linux_c only" >&2
    status=1
fi
exit $status

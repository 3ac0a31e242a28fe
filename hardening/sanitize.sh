#!/usr/bin/env bash
# Build the C extension and the Linux C driver (tests/linux_c) with clang's AddressSanitizer and
# UndefinedBehaviorSanitizer, run the whole host pytest suite against them, and fail on any sanitizer report.
#
#   bash hardening/sanitize.sh [extra pytest args...]
#
# Nothing in the checkout is touched: the package's .py files are copied into a temporary directory next to
# the sanitized _secsock.abi3.so, and that directory goes first on PYTHONPATH (before the editable install's
# src/). The ASan runtime is LD_PRELOADed into the venv's python and everything it starts (probes in network
# namespaces, the C driver, ip), and every report from any process is written under the temporary directory;
# a single report file fails the run even if the test around it passed.
# Leak detection is off for Python (CPython's own allocations at exit are not ours); the C driver, which has
# no interpreter, is run once more with LeakSanitizer on.
# Needs: clang-14 and libclang-rt-14-dev (the sanitizer runtimes), root for the netns tests.
# Last line: "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python

die() {
    echo "sanitize: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

[[ -x $PY ]] || die "no venv at $ROOT/.venv (run: bash tools/setup.sh)"
CC=${SANITIZE_CC:-$(command -v clang-14 || command -v clang || true)}
[[ -n $CC ]] || die "clang is missing (apt-get install clang-14)"
ASAN_RT=$("$CC" -print-file-name=libclang_rt.asan-x86_64.so)
[[ -f $ASAN_RT ]] || die "the ASan runtime $ASAN_RT is missing (apt-get install libclang-rt-14-dev)"
RT_DIR=$(dirname "$ASAN_RT")

WORK=$(mktemp -d /tmp/secsock-sanitize.XXXXXX)
[[ -n ${KEEP_SANITIZE_DIR:-} ]] || trap 'rm -rf "$WORK"' EXIT
REPORTS=$WORK/reports
mkdir -p "$WORK/pkg/secsock" "$REPORTS"

SAN_FLAGS=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all -shared-libasan -g -O1)

echo "== build the extension with $CC ${SAN_FLAGS[*]}"
cp "$ROOT"/src/secsock/*.py "$ROOT"/src/secsock/py.typed "$WORK/pkg/secsock/" || die "cannot copy the package"
cp "$ROOT"/src/secsock/*.pyi "$WORK/pkg/secsock/" 2>/dev/null
# setup.py's own source list and macros, built by setuptools into the temporary package (never in place).
CC=$CC LDSHARED="$CC -shared" CFLAGS="${SAN_FLAGS[*]}" LDFLAGS="${SAN_FLAGS[*]} -Wl,-rpath,$RT_DIR" \
    "$PY" setup.py -q build_ext --force --build-lib "$WORK/pkg" --build-temp "$WORK/obj" >"$WORK/build.log" 2>&1 ||
    { cat "$WORK/build.log"; die "the sanitized extension did not build"; }
grep -E 'warning|error' "$WORK/build.log" | grep -v -E 'setuptools|SetuptoolsDeprecationWarning|easy_install|!!' || true
[[ -f $WORK/pkg/secsock/_secsock.abi3.so ]] || die "setup.py built no secsock/_secsock.abi3.so under $WORK/pkg"
[[ $(nm -D "$WORK/pkg/secsock/_secsock.abi3.so") == *__asan_init* ]] || die "the built extension is not instrumented"

echo "== build the C driver (tests/linux_c) with the sanitizers"
DRIVER_FLAGS="${SAN_FLAGS[*]} -Wl,-rpath,$RT_DIR"
CC=$CC EXTRA_CFLAGS=$DRIVER_FLAGS sh "$ROOT/tests/linux_c/build.sh" "$WORK/driver" ||
    die "the sanitized C driver did not build"

export PYTHONPATH=$WORK/pkg
export PYTHONDONTWRITEBYTECODE=1
export LD_PRELOAD=$ASAN_RT
# Reports go to files (one per process) so a child's report cannot be lost in a test's captured output.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87:log_path=$REPORTS/ubsan"
# The test that builds the C driver itself (tests/test_linux_xfrm_host.py) builds it sanitized too.
export CC EXTRA_CFLAGS=$DRIVER_FLAGS

# The build must be the one under test: fail loudly if Python picks up another.
loaded=$("$PY" -c 'import secsock._secsock as m; print(m.__file__)') || die "the sanitized extension does not import"
[[ $loaded == "$WORK/pkg/secsock/_secsock.abi3.so" ]] || die "python loaded $loaded, not the sanitized build"
echo "== python loads $loaded"

passed=0
failed=0

echo "== pytest under ASan+UBSan"
"$PY" -m pytest -p no:cacheprovider -q --junitxml="$WORK/junit.xml" "$ROOT/tests" "$@"
status=$?
counts=$("$PY" "$ROOT/tools/junit_counts.py" "$WORK/junit.xml")
passed=$((passed + ${counts% *}))
failed=$((failed + ${counts#* }))
if ((status != 0 && ${counts#* } == 0)); then
    echo "sanitize: pytest exited $status (a crash or sanitizer abort in the test process?)" >&2
    failed=$((failed + 1))
fi

echo "== C driver with LeakSanitizer: errors, repeated queries, 10 namespaces in turn (8 kept, evictions, fini)"
if [[ $(id -u) -ne 0 ]]; then
    echo "sanitize: the driver leak check needs root (network namespace)" >&2
    failed=$((failed + 1))
else
    ns=secsock-sanitize-$$
    others=()
    for i in 1 2 3 4 5 6 7 8 9; do
        ip netns add "$ns-$i" && ip -n "$ns-$i" link set lo up && ip -n "$ns-$i" addr add 10.79.0.1/24 dev lo &&
            others+=("$ns-$i")
    done
    if ((${#others[@]} == 9)) && ip netns add "$ns" && ip -n "$ns" link set lo up &&
        ip -n "$ns" addr add 10.79.0.1/24 dev lo &&
        ip -n "$ns" xfrm policy add src 10.79.0.1 dst 10.79.0.2 dir out tmpl proto esp mode transport &&
        ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=0/detect_leaks=1}" LD_PRELOAD= \
            ip netns exec "$ns" "$WORK/driver" repeat 200 10.79.0.1 10.79.0.2 500 >"$WORK/driver-repeat.out" &&
        ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=0/detect_leaks=1}" LD_PRELOAD= \
            ip netns exec "$ns" "$WORK/driver" errors >"$WORK/driver-errors.out" &&
        ASAN_OPTIONS="${ASAN_OPTIONS/detect_leaks=0/detect_leaks=1}" LD_PRELOAD= \
            "$WORK/driver" nscycle 2 10.79.0.1 10.79.0.2 500 "$ns" "${others[@]}" >"$WORK/driver-nscycle.out" &&
        tail -n 1 "$WORK/driver-nscycle.out" | grep -Eq '"fds_before":([0-9]+),"fds_after":\1\}'; then
        passed=$((passed + 1))
    else
        echo "sanitize: the sanitized driver failed (see the reports below)" >&2
        failed=$((failed + 1))
    fi
    for other in "$ns" "${others[@]}"; do
        ip netns del "$other" 2>/dev/null
    done
fi

echo "== sanitizer reports"
shopt -s nullglob
reports=("$REPORTS"/*)
if ((${#reports[@]})); then
    for report in "${reports[@]}"; do
        echo "---- $report"
        head -n 60 "$report"
    done
    echo "sanitize: ${#reports[@]} sanitizer report(s)" >&2
    failed=$((failed + ${#reports[@]}))
else
    echo "none"
fi
echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Runs every test layer (after tools/setup.sh): lint and types; the extension built with -Werror; pytest on
# this machine; the Windows backend under Wine (x64 and x86) against the fwpuclnt double; the whole pytest
# suite on the official Windows CPythons 3.9 and 3.13 under Wine with the wheel built from the sdist; the Linux
# backend over real IPsec in a VM; the host suite under ASan+UBSan and a short fuzz run; the packaging checks;
# pytest without CAP_NET_ADMIN as in a manylinux container; and the sdist installed into a fresh venv and tested,
# as root and as an unprivileged user (the workflow's sdist job).
# Each suite runs even if an earlier one failed; a suite that ran nothing, skipped a test or could not start
# counts as failed. The last line sums them all.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PATH="$ROOT/.venv/bin:$PATH"
LOGS="$ROOT/build/test-logs"
mkdir -p "$LOGS"

total_passed=0
total_failed=0
summary=()

record() { # name passed failed [deselected]
    total_passed=$((total_passed + $2))
    total_failed=$((total_failed + $3))
    summary+=("$(printf '%-32s %4d passed, %d failed' "$1" "$2" "$3")${4:+ ($4 deselected)}")
}

# A check: one command, one pass or one failure.
check() { # name command...
    local name=$1
    shift
    echo "== $name"
    if "$@" >"$LOGS/$name.log" 2>&1; then
        record "$name" 1 0
    else
        echo "FAILED: $name (exit $?); its output:"
        tail -n 40 "$LOGS/$name.log"
        record "$name" 0 1
    fi
}

# A suite whose last line is `N passed, M failed` (the Wine and VM runners).
suite() { # name command...
    local name=$1 status line passed failed
    shift
    echo "== $name"
    "$@" 2>&1 | tee "$LOGS/$name.log"
    status=${PIPESTATUS[0]}
    line=$(tail -n 1 "$LOGS/$name.log")
    if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
    else
        passed=0 failed=0
    fi
    if ((status != 0 || passed == 0)) && ((failed == 0)); then
        failed=1 # it could not run, or ran nothing: never a pass
    fi
    record "$name" "$passed" "$failed"
}

# pytest run by a command, which gets pytest's options appended (python -m pytest; or in another venv, or
# with a capability dropped), read from its JUnit report so skips count as failures (no suite passes by skipping).
pytest_suite_via() { # name command... (its last words are pytest's arguments)
    local name=$1 counts
    shift
    echo "== $name"
    rm -f "$LOGS/$name.xml"
    "$@" -p no:cacheprovider --junitxml="$LOGS/$name.xml" 2>&1 | tee "$LOGS/$name.log"
    counts=$(python "$ROOT/tools/junit_counts.py" "$LOGS/$name.xml")
    record "$name" ${counts% *} ${counts#* }
}

pytest_suite() { # name pytest-args...
    local name=$1
    shift
    pytest_suite_via "$name" python -m pytest "$@"
}

# The whole pytest suite on an official Windows CPython under Wine, on the wheel built from the sdist
# (tools/windows_python.py prepare), with the fwpuclnt double beside the module; read like pytest_suite. The
# report's path is relative: Windows' Python reads the checkout through Wine's drive, not as a POSIX path.
windows_pytest_suite() { # name version
    local name=$1 version=$2 counts deselected
    echo "== $name"
    rm -f "$LOGS/$name.xml"
    python tools/windows_python.py run "$version" -m pytest -p no:cacheprovider \
        --junitxml="build/test-logs/$name.xml" tests 2>&1 | tee "$LOGS/$name.log"
    counts=$(python "$ROOT/tools/junit_counts.py" "$LOGS/$name.xml")
    # The Linux-only tests it does not select (the report does not hold them): pytest's last line says.
    deselected=$(grep -Eo '[0-9]+ deselected' "$LOGS/$name.log" | tail -n 1 | cut -d' ' -f1)
    record "$name" ${counts% *} ${counts#* } "${deselected:-0}"
}

check "ruff" ruff check src tests tools benchmarks hardening examples
check "ruff-format" ruff format --check src tests tools examples
check "mypy" mypy
# MSVC's rule that mstcpip.h comes before ws2tcpip.h, which mingw-w64's headers do not enforce (issue 11).
# SECSOCK_TEST_HOOKS: test_hooks.c builds only with it (the extension's sources are built without it below).
check "windows-sdk-include-order" x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror \
    -Werror=implicit-function-declaration -fsyntax-only -DSECSOCK_TEST_HOOKS -Itools/sdk_include_order -Icsrc \
    csrc/windows/*.c
check "build-werror" env CFLAGS="-Werror" python -m pip install -q --no-build-isolation --no-deps -e .
check "layout" bash tools/check_layout.sh # no .c file #included; no test hook in the extension
pytest_suite "pytest-host" tests
# The Linux driver's tests again with every query first tried at once (secsock_query_at_once, the GIL kept): the
# driver compares each answer given at once with secsock_query's, and its assertions stop anything that waits
# from running at once (issue 14; outside review of i14-gil).
pytest_suite_via "pytest-host-driver-at-once" env SECSOCK_DRIVER_AT_ONCE=1 python -m pytest \
    tests/test_linux_xfrm_host.py tests/test_linux_module.py
suite "wine-windows-backend" bash tests/windows/run.sh
check "windows-python-wheel" python tools/windows_python.py prepare
windows_pytest_suite "windows-python-3.9" 3.9
windows_pytest_suite "windows-python-3.13" 3.13
suite "vm-linux-ipsec" bash tests/vm/run.sh
suite "sanitizers-asan-ubsan" bash hardening/sanitize.sh
suite "fuzz-short" bash hardening/fuzz.sh
check "cibuildwheel-identifiers" bash tools/check_packaging.sh identifiers
check "actionlint" bash tools/check_packaging.sh actionlint
check "abi3audit" bash tools/check_packaging.sh abi3audit
check "package-metadata" bash tools/check_packaging.sh metadata
# What GitHub's manylinux containers run: no CAP_NET_ADMIN, the tests that need it deselected (not skipped).
pytest_suite_via "pytest-without-net-admin" bash tools/without_net_admin.sh python -m pytest tests -m "not netns and not net_admin"
# The sdist installed from the tarball alone into a fresh venv, its own tests run against that install.
pytest_suite_via "sdist-install-test" bash tools/sdist_check.sh
# The same as the workflow's sdist job runs it: an unprivileged user, no capabilities, the tests that need
# CAP_NET_ADMIN or CAP_NET_RAW deselected.
pytest_suite_via "sdist-install-test-unprivileged" bash tools/sdist_check.sh --unprivileged \
    -m "not netns and not net_admin and not net_raw"

echo
echo "== summary"
printf '%s\n' "${summary[@]}"
echo "$total_passed passed, $total_failed failed"
((total_failed == 0 && total_passed > 0))

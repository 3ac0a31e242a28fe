#!/usr/bin/env bash
# The VM suite: real ESP/AH, which this machine's kernel lacks. Boots ONE virtme-ng VM (software emulation)
# with Debian's kernel, runs pytest on tests/vm inside it (the tests make their own network namespaces), and
# prints as its LAST line "N passed, M failed". Exits non-zero on any failure, on zero tests, or when the VM
# does not boot or finish: a missing tool fails loudly, never skips.
#
# Needs: vng (pip: virtme-ng), qemu-system-x86 and linux-image-amd64 (Debian), iproute2, gcc, and a Python with
# secsock (linux backend) and pytest: $SECSOCK_VM_PYTHON, default .venv/bin/python. $PYTHONPATH is passed in.
# Environment: SECSOCK_VM_KERNEL (default: the newest /boot/vmlinuz-*-amd64), SECSOCK_VM_TIMEOUT (s, 1800),
# SECSOCK_VM_PYTEST_ARGS (extra pytest arguments, shell-quoted: -k "esp and not ipv6").
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$HERE/out
PY=${SECSOCK_VM_PYTHON:-$ROOT/.venv/bin/python}
TIMEOUT=${SECSOCK_VM_TIMEOUT:-1800}

fail() {
    echo "vm: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}

VNG=$(command -v vng || true)
[[ -z $VNG && -x $ROOT/.venv/bin/vng ]] && VNG=$ROOT/.venv/bin/vng
[[ -n $VNG ]] || fail "virtme-ng (vng) is not installed (pip install virtme-ng)"
command -v qemu-system-x86_64 >/dev/null || fail "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
KERNEL=${SECSOCK_VM_KERNEL:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)}
[[ -n $KERNEL && -r $KERNEL ]] || fail "no Debian kernel in /boot (apt-get install linux-image-amd64)"
[[ -x $PY ]] || fail "no Python at $PY (run tools/setup.sh, or set SECSOCK_VM_PYTHON)"
"$PY" -c 'import pytest, secsock; assert secsock.BACKEND == "linux", secsock.BACKEND' ||
    fail "$PY cannot import pytest and secsock with the linux backend"

# The guest sees the host's files read-only; only $OUT is writable, and reaches the host.
rm -rf "$OUT"
mkdir -p "$OUT"
printf '%s\n' "${SECSOCK_VM_PYTEST_ARGS:-}" >"$OUT/pytest-args" # extra pytest arguments, e.g. "-x -k esp"
# The C driver reports the backend's dump and update counters, which Python does not show.
sh "$ROOT/tests/linux_c/build.sh" "$OUT/driver" || fail "the C driver (tests/linux_c) did not build"
echo "vm: booting $KERNEL (software emulation, one boot for the whole suite)"
start=$(date +%s)
timeout "$TIMEOUT" "$VNG" --disable-kvm -r "$KERNEL" --memory 1G --rwdir="$OUT" \
    -- "bash $HERE/inside.sh $PY $OUT ${PYTHONPATH:-}" >"$OUT/vm.log" 2>&1
status=$?
echo "vm: the VM ran $(($(date +%s) - start)) s (exit $status)"
[[ -s $OUT/pytest.log ]] && cat "$OUT/pytest.log"
if [[ ! -s $OUT/summary.txt ]]; then
    tail -n 30 "$OUT/vm.log" >&2
    fail "the VM did not boot or did not finish the suite (exit $status); see $OUT/vm.log"
fi
line=$(tail -n 1 "$OUT/summary.txt")
[[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]] || fail "unreadable summary from the VM: $line"
passed=${BASH_REMATCH[1]} failed=${BASH_REMATCH[2]}
echo "$line"
((status == 0 && failed == 0 && passed > 0))

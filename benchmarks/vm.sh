#!/usr/bin/env bash
# The benchmark with real ESP SAs: boots one virtme-ng VM (software emulation: absolute times are slower than
# on hardware, the ratios to getpeername measured in the same VM are what to read), loads the IPsec modules and
# runs benchmarks/run.py --secured inside: the flow crosses a veth pair between two namespaces with ESP SAs and
# policies both ways, and run.py refuses to report unless every answer is SECURED|ENCRYPTED by the flow's SAs
# (a flow over lo is clear: lo has disable_xfrm/disable_policy). Usage (root):
#   [BENCH_REV=HEAD] bash benchmarks/vm.sh [run.py arguments]   default: --scales 0,1000,10000 --sas 1000 --quick
#   BENCH_REV="REV1 REV2" [BENCH_ROUNDS=2] bash benchmarks/vm.sh ...   the builds alternating in one VM boot
# Writes build/bench-vm/results-vm.json and prints the table. Needs vng (pip virtme-ng), qemu-system-x86 and a
# Debian kernel in /boot (linux-image-amd64).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/bench-vm
VNG=$(command -v vng || echo "$ROOT/.venv/bin/vng")
[[ -x $VNG ]] || { echo "bench vm: vng is missing (pip install virtme-ng)" >&2; exit 1; }
# vng runs virtme-run, installed beside it (in the venv when it came from there): find it by PATH.
PATH=$(dirname "$VNG"):$PATH
command -v qemu-system-x86_64 >/dev/null || { echo "bench vm: qemu-system-x86_64 is missing" >&2; exit 1; }
KERNEL=${SECSOCK_VM_KERNEL:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sort -V | tail -n 1)}
[[ -r $KERNEL ]] || { echo "bench vm: no Debian kernel in /boot (apt-get install linux-image-amd64)" >&2; exit 1; }
# BENCH_REV=REV: measure the extension as built from that commit (on the host, outside the working tree).
# BENCH_REV="REV1 REV2 ...": each, one after the other, BENCH_ROUNDS times (default 2) in one VM boot, so that
# builds are compared under the same conditions (table.txt holds one table per run, each headed by its commit).
build_paths=()
names=()
if [[ -n ${BENCH_REV:-} ]]; then
    build=$(mktemp -d /tmp/secsock-bench-vm.XXXXXX)
    trap 'rm -rf "$build"' EXIT
    for rev in $BENCH_REV; do
        sha=$(git rev-parse --verify "$rev^{commit}")
        mkdir -p "$build/$sha"
        git archive "$sha" csrc src setup.py pyproject.toml README.md | tar -x -C "$build/$sha/"
        (cd "$build/$sha" && "$ROOT/.venv/bin/python" setup.py -q build_ext --build-lib "$build/$sha/pkg" \
            --build-temp "$build/$sha/obj" >"$build/$sha/build.log" 2>&1) || { cat "$build/$sha/build.log"; exit 1; }
        cp "$build/$sha"/src/secsock/*.py "$build/$sha/src/secsock/py.typed" "$build/$sha/pkg/secsock/"
        build_paths+=("PYTHONPATH=$build/$sha/pkg SECSOCK_BENCH_COMMIT=$sha")
        names+=("${sha:0:12}")
        echo "bench vm: measuring ${sha:0:12}" >&2
    done
else
    build_paths=("")
    names=("the working tree")
fi
args=("$@")
((${#args[@]})) || args=(--scales 0,1000,10000 --sas 1000 --quick)
rounds=1
((${#build_paths[@]} > 1)) && rounds=${BENCH_ROUNDS:-2}
rm -rf "$OUT"
mkdir -p "$OUT"
# The VM's command goes in a script in $OUT (the kernel's command line, which carries it, is 2 KiB at most).
{
    echo "set -e"
    echo "modprobe -a xfrm_user esp4 esp6 veth"
    echo "cd $ROOT"
    for ((round = 1; round <= rounds; round++)); do
        for i in "${!build_paths[@]}"; do
            out=$OUT/results-vm.json
            ((${#build_paths[@]} > 1)) && out=$OUT/results-vm-${names[$i]}-$round.json
            echo "echo '== ${names[$i]} (round $round)' >>$OUT/table.txt"
            echo "env PYTHONDONTWRITEBYTECODE=1 ${build_paths[$i]} $ROOT/.venv/bin/python benchmarks/run.py --secured \
${args[*]} --out $out >>$OUT/table.txt 2>>$OUT/stderr.txt"
        done
    done
} >"$OUT/inner.sh"
inner="sh $OUT/inner.sh; echo \$? >$OUT/status"
timeout "${SECSOCK_VM_TIMEOUT:-1800}" "$VNG" --disable-kvm -r "$KERNEL" --memory 2G --rwdir="$OUT" -- "$inner" \
    >"$OUT/vm.log" 2>&1 || true
cat "$OUT/table.txt" 2>/dev/null || true
if [[ $(cat "$OUT/status" 2>/dev/null) != 0 ]]; then
    tail -n 20 "$OUT/stderr.txt" "$OUT/vm.log" >&2 2>/dev/null || true
    echo "bench vm: the benchmark did not finish in the VM" >&2
    exit 1
fi

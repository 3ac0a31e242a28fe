#!/usr/bin/env bash
# Build the libFuzzer targets (clang -fsanitize=fuzzer,address,undefined) and run each over its seed corpus.
#
#   bash hardening/fuzz.sh              CI: each target for a fixed number of runs (FUZZ_RUNS, 200000)
#   bash hardening/fuzz.sh SECONDS      by hand: each target for SECONDS; new inputs are kept in
#                                       build/fuzz/corpus/<target> (copy the interesting ones into the repo)
#
# Targets (hardening/fuzz/): xfrm_policy, xfrm_sa, xfrm_sa_notify and xfrm_policy_notify (the XFRM message
# parsers), nl_dump (a netlink datagram split into messages and parsed, as the dump and notification paths do),
# xfrm_lookup (the snapshot indexes built from fuzzed dumps and a fuzzed flow looked up in them), xfrm_sa_apply
# and xfrm_policy_apply (differential: the SA or policy table updated in place from notifications against a
# fresh one built from the same SAs or policies), xfrm_alloc_fail (the Nth allocation of the snapshot's build,
# re-index, SA updates and frees fails: allocation-failure injection under ASan, issue 14 item 9).
# Seeds: hardening/fuzz/corpus/<target>/, read only (make_corpus.sh regenerates them); files named regress-*
# reproduce bugs found before and run first.
# win_decode: the Windows result decoder (csrc/windows/secsock_decode.c), built natively. The parser targets
# link csrc/linux/parse.c alone; xfrm_lookup and the differential ones link every unit of csrc/linux/;
# xfrm_alloc_fail builds the two that allocate the snapshot with their allocations counted, links the others.
# A crash leaves its input in build/fuzz/artifacts/.
# Needs: clang-14 and libclang-rt-14-dev. Last line: "N passed, M failed" (one per target).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGETS=(xfrm_policy xfrm_sa xfrm_sa_notify xfrm_policy_notify nl_dump xfrm_lookup xfrm_sa_apply xfrm_policy_apply
    xfrm_alloc_fail win_decode)

fail_all() {
    echo "fuzz: $*" >&2
    echo "0 passed, ${#TARGETS[@]} failed"
    exit 1
}

CC=${FUZZ_CC:-$(command -v clang-14 || command -v clang || true)}
[[ -n $CC ]] || fail_all "clang is missing (apt-get install clang-14)"
FUZZER_LIB=$("$CC" -print-file-name=libclang_rt.fuzzer-x86_64.a)
[[ -f $FUZZER_LIB ]] || fail_all "libFuzzer ($FUZZER_LIB) is missing (apt-get install libclang-rt-14-dev)"

seconds=${1:-}
if [[ -n $seconds && ! $seconds =~ ^[0-9]+$ ]]; then
    fail_all "usage: hardening/fuzz.sh [SECONDS per target]"
fi
runs=${FUZZ_RUNS:-200000}
OUT=$ROOT/build/fuzz
mkdir -p "$OUT/bin" "$OUT/artifacts" "$OUT/logs"
FLAGS=(-std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
    -Wall -Wextra -I"$ROOT/csrc" -I"$ROOT/hardening/fuzz")
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

passed=0
failed=0
for target in "${TARGETS[@]}"; do
    echo "== $target"
    src=$ROOT/hardening/fuzz/fuzz_$target.c
    bin=$OUT/bin/fuzz_$target
    if [[ $target == win_decode ]]; then
        sources=("$src" "$ROOT/csrc/windows/secsock_decode.c" "$ROOT/csrc/secsock_common.c") # the Windows decoder
    elif [[ $target == xfrm_lookup || $target == xfrm_sa_apply || $target == xfrm_policy_apply ]]; then
        sources=("$src" "$ROOT"/csrc/linux/*.c "$ROOT/csrc/secsock_common.c") # the snapshot, index and lookup
    elif [[ $target == xfrm_alloc_fail ]]; then
        # The units that allocate the snapshot with their allocations counted (alloc_counter.h, force-included);
        # the others as they are.
        sources=("$src" "$ROOT/csrc/secsock_common.c")
        : >"$OUT/logs/$target.units.log"
        for unit in "$ROOT"/csrc/linux/*.c; do
            case $unit in
            */snapshot_index.c | */snapshot.c)
                obj=$OUT/bin/alloc_fail_$(basename "$unit" .c).o
                "$CC" "${FLAGS[@]}" -include "$ROOT/hardening/fuzz/alloc_counter.h" -c "$unit" -o "$obj" \
                    >>"$OUT/logs/$target.units.log" 2>&1 || cat "$OUT/logs/$target.units.log"
                sources+=("$obj")
                ;;
            *) sources+=("$unit") ;;
            esac
        done
    else
        sources=("$src" "$ROOT/csrc/linux/parse.c") # the record parsers: one unit, nothing else
    fi
    if ! "$CC" "${FLAGS[@]}" "${sources[@]}" -o "$bin" -lpthread >"$OUT/logs/$target.build.log" 2>&1; then
        cat "$OUT/logs/$target.build.log"
        echo "FAILED: $target did not build"
        failed=$((failed + 1))
        continue
    fi
    seeds=$ROOT/hardening/fuzz/corpus/$target
    [[ -d $seeds ]] || { echo "FAILED: no seed corpus at $seeds"; failed=$((failed + 1)); continue; }
    if [[ -n $seconds ]]; then
        work=$OUT/corpus/$target
        limit=(-max_total_time="$seconds")
    else
        work=$(mktemp -d)
        limit=(-runs="$runs")
    fi
    mkdir -p "$work"
    # The regression inputs first, one by one: they must pass before any fuzzing counts.
    regress=("$seeds"/regress-*)
    ok=1
    if [[ -e ${regress[0]} ]] && ! "$bin" -artifact_prefix="$OUT/artifacts/$target-" "${regress[@]}" \
        >"$OUT/logs/$target.regress.log" 2>&1; then
        grep -E 'ERROR|runtime error|SUMMARY|Running:' "$OUT/logs/$target.regress.log" | head -n 20
        echo "FAILED: $target: a regression input fails (log: $OUT/logs/$target.regress.log)"
        ok=0
    fi
    if ((ok)) && ! "$bin" -artifact_prefix="$OUT/artifacts/$target-" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${limit[@]}" "$work" "$seeds" >"$OUT/logs/$target.log" 2>&1; then
        grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$OUT/logs/$target.log" | head -n 20
        echo "FAILED: $target (log: $OUT/logs/$target.log)"
        ok=0
    fi
    [[ -n $seconds ]] || rm -rf "$work"
    if ((ok)); then
        grep -E '^stat::number_of_executed_units|^Done' "$OUT/logs/$target.log" | tail -n 1
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# Time each step of the Linux backend's policy-table refresh with N policies installed (default 100000):
#   sudo bash benchmarks/profile/refresh.sh [N] [ROUNDS]
# Prints one JSON line: the kernel's dump alone, the dump with parsing, sorting and indexing, and the whole
# refresh_locked() a query pays after a change. Needs root, ip, clang-14 (or gcc) and the venv's python.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
ROUNDS=${2:-10}
CC=${CC:-$(command -v clang-14 || command -v gcc || true)}
[[ -n $CC ]] || { echo "refresh.sh: no C compiler (apt-get install clang-14)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "refresh.sh: needs root" >&2; exit 1; }
work=$(mktemp -d)
ns=secsock-profile-$$
trap 'ip netns del "$ns" 2>/dev/null; rm -rf "$work"' EXIT
"$CC" -std=gnu11 -O2 -g -Icsrc benchmarks/profile/refresh.c csrc/linux/*.c csrc/secsock_common.c -o "$work/refresh" \
    -lpthread
ip netns add "$ns"
ip netns exec "$ns" .venv/bin/python -c "
import sys
sys.path.insert(0, 'benchmarks')
import run, xfrm_nl
with xfrm_nl.XfrmSocket() as xs:
    xs.add_policies(run.policies($N))
"
ip netns exec "$ns" "$work/refresh" "$ROUNDS"

#!/usr/bin/env bash
# Run the benchmark against the extension as built from one commit, whatever the working tree holds:
#   sudo bash benchmarks/at_commit.sh [REV] [run.py arguments...]     REV defaults to HEAD
# Exports REV's csrc/, src/ and setup.py with git archive into a temporary directory, builds the extension
# there (setup.py build_ext, never in place), and runs this checkout's benchmarks/run.py with that build first
# on PYTHONPATH. Needs git, a C compiler and the venv (tools/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=${1:-HEAD}
shift || true
sha=$(git rev-parse --verify "$REV^{commit}")
work=$(mktemp -d /tmp/secsock-bench-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
git archive "$sha" csrc src setup.py pyproject.toml README.md | tar -x -C "$work/"
(cd "$work" && "$ROOT/.venv/bin/python" setup.py -q build_ext --build-lib "$work/pkg" --build-temp "$work/obj" \
    >"$work/build.log" 2>&1) || { cat "$work/build.log"; echo "at_commit: the build of $sha failed" >&2; exit 1; }
cp "$work"/src/secsock/*.py "$work/src/secsock/py.typed" "$work/pkg/secsock/"
echo "at_commit: benchmarking ${sha:0:12} ($(git log -1 --format=%s "$sha"))" >&2
SECSOCK_BENCH_COMMIT=$sha PYTHONPATH=$work/pkg "$ROOT/.venv/bin/python" benchmarks/run.py "$@"

#!/usr/bin/env bash
# What of the Windows/manylinux packaging can be checked on a Linux machine.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$1" in
identifiers)
    # Exactly the intended builds: one abi3 wheel per architecture.
    diff <(cibuildwheel --print-build-identifiers --platform windows) - <<<$'cp39-win32\ncp39-win_amd64\ncp39-win_arm64'
    diff <(cibuildwheel --print-build-identifiers --platform linux) - <<<$'cp39-manylinux_x86_64\ncp39-manylinux_aarch64'
    ;;
actionlint)
    actionlint -color=false .github/workflows/*.yml
    ;;
abi3audit)
    # The module built here with the same Py_LIMITED_API setting must stay inside the stable ABI, so the
    # Windows build (same module file) does not reach outside it either.
    rm -rf build/wheelhouse
    python -m build --wheel --no-isolation --outdir build/wheelhouse . >/dev/null
    wheel=(build/wheelhouse/*.whl)
    [[ ${wheel[0]} == *-cp39-abi3-* ]] || { echo "not an abi3 wheel: ${wheel[0]}"; exit 1; }
    abi3audit --strict --report "${wheel[0]}"
    ;;
*)
    echo "usage: $0 identifiers|actionlint|abi3audit" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# What of the Windows/manylinux packaging can be checked on a Linux machine.
set -euo pipefail
cd "$(dirname "$0")/.."

case "$1" in
identifiers)
    # Exactly the intended builds, per architecture: the abi3 wheel built on cp39 and tested there and on
    # cp315 (the newest; cibuildwheel reuses the abi3 wheel), and the free-threaded cp314t and cp315t wheels.
    diff <(cibuildwheel --print-build-identifiers --platform windows) - <<EOF
cp39-win32
cp39-win_amd64
cp314t-win32
cp314t-win_amd64
cp315-win32
cp315t-win32
cp315-win_amd64
cp315t-win_amd64
cp39-win_arm64
cp314t-win_arm64
cp315-win_arm64
cp315t-win_arm64
EOF
    diff <(cibuildwheel --print-build-identifiers --platform linux) - <<EOF
cp39-manylinux_x86_64
cp314t-manylinux_x86_64
cp315-manylinux_x86_64
cp315t-manylinux_x86_64
cp39-manylinux_aarch64
cp314t-manylinux_aarch64
cp315-manylinux_aarch64
cp315t-manylinux_aarch64
EOF
    ;;
actionlint)
    actionlint -color=false .github/workflows/*.yml
    # actionlint knows the publish action's inputs by its branch (release/v1), not by the commit it is pinned
    # to: a copy naming the branch has them checked too.
    mkdir -p build
    sed -E 's|pypa/gh-action-pypi-publish@[0-9a-f]{40} # v[0-9.]+$|pypa/gh-action-pypi-publish@release/v1|' \
        .github/workflows/wheels.yml >build/wheels-by-branch.yml
    if grep -n 'pypa/gh-action-pypi-publish@[0-9a-f]' build/wheels-by-branch.yml; then
        echo "actionlint: pin the publish action as @<40-hex commit> # vX.Y.Z" >&2
        exit 1
    fi
    grep -q 'pypa/gh-action-pypi-publish@release/v1' build/wheels-by-branch.yml
    actionlint -color=false build/wheels-by-branch.yml
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
metadata)
    # What the index shows: sdist, then the wheel built from it (as the workflow does), and their metadata.
    rm -rf build/metadata
    mkdir -p build
    python -m build --outdir build/metadata . >build/metadata.log 2>&1 || { cat build/metadata.log; exit 1; }
    python tools/check_metadata.py build/metadata/*.whl build/metadata/*.tar.gz
    ;;
*)
    echo "usage: $0 identifiers|actionlint|abi3audit|metadata" >&2
    exit 2
    ;;
esac

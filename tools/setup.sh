#!/usr/bin/env bash
# Sets up everything the tests need on a Debian 12 machine (run as root): the cross compilers and Wine for
# the Windows backend, qemu + a Debian kernel + busybox for the IPsec VM, clang, and a virtualenv (.venv)
# holding secsock (editable) with the test and lint tools. Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    gcc-mingw-w64-x86-64 gcc-mingw-w64-i686  # cross-compile the Windows backend, x64 and x86
    wine64 wine wine32:i386                  # run the Windows test programs (wine32 for the x86 one)
    qemu-system-x86 linux-image-amd64 busybox-static  # the VM with real ESP/AH (virtme-ng boots it)
    iproute2 kmod util-linux                 # ip xfrm / ip netns, modprobe, setpriv
    clang gcc python3-dev
)

missing=()
for package in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    if [[ " ${missing[*]} " == *":i386 "* ]] && ! dpkg --print-foreign-architectures | grep -qx i386; then
        dpkg --add-architecture i386
    fi
    # The mirror is sometimes caught mid-sync (an index of the wrong size): try again rather than fail.
    for attempt in 1 2 3 4 5; do
        if apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${missing[@]}"; then
            break
        fi
        if ((attempt == 5)); then
            echo "setup: apt-get could not install ${missing[*]}" >&2
            exit 1
        fi
        echo "setup: apt-get failed (attempt $attempt), retrying in 20 s" >&2
        sleep 20
    done
fi

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=70" wheel
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup: done ($(.venv/bin/python -c 'import secsock; print("secsock", secsock.__version__, "backend", secsock.BACKEND)'))"

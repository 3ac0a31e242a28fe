#!/usr/bin/env bash
# Sets up everything the tests need on a Debian 12 machine (run as root): the cross compilers and Wine for
# the Windows backend, qemu + a Debian kernel + busybox for the IPsec VM, clang, and a virtualenv (.venv)
# holding secsock (editable) with the test and lint tools (the PEP 735 group dev). Safe to run again; installs
# only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    gcc-mingw-w64-x86-64 gcc-mingw-w64-i686  # cross-compile the Windows backend, x64 and x86
    wine64 wine                              # run the Windows test programs (x64; x86 in tools/x86_root.sh)
    debootstrap                              # the i386 Debian root the x86 Wine suite runs in
    qemu-system-x86 linux-image-amd64 busybox-static  # the VM with real ESP/AH (virtme-ng boots it)
    iproute2 kmod util-linux                 # ip xfrm / ip netns, modprobe, setpriv, unshare
    clang libclang-rt-14-dev gcc             # ASan/UBSan/libFuzzer builds (hardening/); the extension
    python3-dev python3-venv                 # the system's Python, which an unprivileged user can run (sdist_check.sh)
    strongswan-charon strongswan-swanctl     # the VM suite's IKEv2 pair (charon + swanctl, issue 14)
    strace                                   # counts a query's netlink requests (test_linux_xfrm_host.py)
)

missing() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
    done
}

apt_update() {
    # One stale index (the mirror caught mid-sync) makes apt-get update exit non-zero although every other
    # index is fresh: go on, and let apt-get install say whether what we need is there.
    apt-get update -q || echo "setup: apt-get update reported errors; continuing" >&2
}

apt_install() { # attempts packages...
    local attempts=$1 attempt
    shift
    for ((attempt = 1; attempt <= attempts; attempt++)); do
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && return 0
        ((attempt < attempts)) && { echo "setup: apt-get install failed (attempt $attempt), retrying in 20 s" >&2; sleep 20; }
    done
    return 1
}

mapfile -t needed < <(missing "${APT_PACKAGES[@]}")
if ((${#needed[@]})); then
    echo "setup: installing ${needed[*]}"
    apt_install 3 "${needed[@]}" || { echo "setup: apt-get could not install ${needed[*]}" >&2; exit 1; }
fi

# The x86 Wine suite runs in an i386 Debian root of its own (the host's wine32:i386 needs the host's i386 index).
bash tools/x86_root.sh make

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
# pip 25.1 installs PEP 735 dependency groups (--group); setuptools 77 reads PEP 639 licence metadata.
.venv/bin/python -m pip install -q --upgrade "pip>=25.1" "setuptools>=77" wheel
.venv/bin/python -m pip install -q -e . --group dev
echo "setup: done ($(.venv/bin/python -c 'import secsock; print("secsock", secsock.__version__, "backend", secsock.BACKEND)'))"

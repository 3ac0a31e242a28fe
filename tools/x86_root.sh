#!/usr/bin/env bash
# An i386 Debian 12 root with Wine in it, for running the x86 Windows test programs. The host's own
# wine32:i386 depends on i386 libraries at the same versions as the host's amd64 ones, which a mirror with a
# stale i386 security index cannot give; a root of its own from bookworm main does not depend on that index.
#
#   tools/x86_root.sh make            build it under build/x86-root (once; kept until its recipe changes)
#   tools/x86_root.sh run DIR CMD...  run CMD inside it, with DIR (a host directory) at the same path inside
#
# `run` works in a mount namespace of its own: /proc, /dev and DIR are mounted only there, so they go away with
# it on every exit path (an error, a signal, a kill) and never pile up on the host. Needs root and debootstrap.
set -euo pipefail
root_dir="$(cd "$(dirname "$0")/.." && pwd)/build/x86-root"
mirror=http://deb.debian.org/debian
# What the root is made of; a root made from another recipe is made again.
recipe="bookworm i386 minbase main + wine wine32 (1)"

die() {
    echo "x86_root.sh: ERROR: $*" >&2
    exit 2
}

made_from_recipe() {
    [[ "$(cat "$root_dir/.secsock-recipe" 2>/dev/null)" == "$recipe" ]]
}

make_root() {
    if made_from_recipe; then
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap is missing (apt-get install debootstrap)"
    local tmp="$root_dir.tmp"
    rm -rf "$tmp" "$root_dir"
    mkdir -p "$(dirname "$root_dir")"
    echo "x86_root.sh: making the i386 root in $root_dir"
    # debootstrap mounts /proc and more in the target itself; its own namespace drops them even if it fails.
    unshare --mount --propagation private \
        debootstrap --arch=i386 --variant=minbase --components=main bookworm "$tmp" "$mirror" \
        >"$root_dir.log" 2>&1 || { tail -n 20 "$root_dir.log" >&2; die "debootstrap failed (log: $root_dir.log)"; }
    in_root "$tmp" / env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wine wine32 \
        >>"$root_dir.log" 2>&1 || { tail -n 20 "$root_dir.log" >&2; die "installing wine in the i386 root failed"; }
    in_root "$tmp" / apt-get clean
    printf '%s' "$recipe" >"$tmp/.secsock-recipe"
    mv "$tmp" "$root_dir"
}

in_root() { # root host-dir command...
    local root=$1 dir=$2
    shift 2
    # Within the new namespace: the root's /proc and /dev, and DIR at its own path, then chroot.
    unshare --mount --propagation private /bin/sh -euc '
        root=$1 dir=$2
        shift 2
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"
        if [ "$dir" != / ]; then
            mkdir -p "$root$dir"
            mount --bind "$dir" "$root$dir"
        fi
        exec chroot "$root" "$@"' in_root "$root" "$dir" "$@"
}

case "${1:-}" in
make) make_root ;;
run)
    [[ $# -ge 3 ]] || die "usage: $0 run DIR COMMAND..."
    made_from_recipe || die "no i386 root of this recipe at $root_dir: run tools/setup.sh (or $0 make)"
    dir="$(cd "$2" && pwd)"
    shift 2
    in_root "$root_dir" "$dir" "$@"
    ;;
*) die "usage: $0 make | run DIR COMMAND..." ;;
esac

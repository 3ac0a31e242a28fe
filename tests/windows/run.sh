#!/usr/bin/env bash
# Build the fwpuclnt.dll double and the backend test program for x64 and x86 with mingw-w64, run each under
# Wine, and print the summed `N passed, M failed` last. Fails loudly (non-zero exit) when a compiler or Wine is
# missing, or when an exe cannot run: never a skip that looks like a pass.
# Needs (Debian 12): gcc-mingw-w64-x86-64 gcc-mingw-w64-i686 wine wine64 debootstrap; the x86 exe runs in the
# i386 root that tools/setup.sh makes (tools/x86_root.sh).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
mkdir -p "$out"

die() {
    echo "run.sh: ERROR: $*" >&2
    echo "0 passed, 1 failed"
    exit 2
}

for tool in x86_64-w64-mingw32-gcc i686-w64-mingw32-gcc wine; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (run tools/setup.sh)"
done

cflags=(-std=c11 -Wall -Wextra -Werror -Werror=implicit-function-declaration -O1 -g -static -static-libgcc)

build() { # arch cc [extra dll flags...]
    local arch=$1 cc=$2
    shift 2
    local dir="$out/$arch"
    mkdir -p "$dir"
    "$cc" "${cflags[@]}" -shared -o "$dir/fwpuclnt.dll" "$here/fwpuclnt_double.c" "$here/fwpuclnt.def" \
        -Wl,--kill-at "$@" -lws2_32 -ladvapi32 || die "building the fwpuclnt double for $arch failed"
    # The code under test links mingw's real import library for fwpuclnt.dll; the double answers at run time.
    # SECSOCK_TEST_HOOKS: the system-call table is writable, for test_hooks.c (the extension's is constant).
    "$cc" "${cflags[@]}" -DSECSOCK_TEST_HOOKS -I"$root/csrc" -I"$here" -o "$dir/test_backend.exe" "$here/test_backend.c" \
        "$root"/csrc/windows/*.c "$root/csrc/secsock_common.c" -lws2_32 -lfwpuclnt -ladvapi32 \
        || die "building test_backend.exe for $arch failed"
}

build x64 x86_64-w64-mingw32-gcc
# x86: the compiler decorates the stdcall export as WSAQuerySocketSecurity@28; the .def names it undecorated.
build x86 i686-w64-mingw32-gcc -Wl,--enable-stdcall-fixup

export WINEDEBUG=-all
# Our fwpuclnt.dll (beside the exe) instead of Wine's builtin; no Mono/Gecko install prompts; no display.
export WINEDLLOVERRIDES="fwpuclnt=n;mscoree=;mshtml="
unset DISPLAY WAYLAND_DISPLAY

# Runs a shell script with Wine set up for ARCH, in $out/ARCH: x64 with the host's Wine, x86 with the Wine of
# the i386 Debian root (tools/x86_root.sh), which does not depend on the host's i386 packages. Each has a Wine
# prefix of its own; a prefix made by another Wine installation fails to load kernel32, so a stamp of the
# installation is kept in it and the prefix is made again when that changed.
wine_run() { # arch script
    local arch=$1 script=$2
    local prepare='
        export WINEPREFIX="$PWD/wineprefix"
        stamp="$(ls -l /usr/lib/wine/wine /usr/lib/wine/wine64 2>/dev/null; wine --version 2>/dev/null)"
        if [ ! -f "$WINEPREFIX/system.reg" ] || [ "$(cat "$WINEPREFIX/.secsock-stamp" 2>/dev/null)" != "$stamp" ]; then
            rm -rf "$WINEPREFIX"
            wineboot -i >wineboot.log 2>&1 || { echo "wineboot failed to create $WINEPREFIX" >&2; exit 125; }
            wineserver -w
            printf "%s" "$stamp" >"$WINEPREFIX/.secsock-stamp"
        fi
        '
    local finish='rc=$?; wineserver -k >/dev/null 2>&1; exit $rc'
    if [ "$arch" = x86 ]; then
        bash "$root/tools/x86_root.sh" run "$out" /bin/sh -c "cd '$out/x86' && $prepare $script; $finish"
    else
        (cd "$out/$arch" && sh -c "$prepare $script; $finish")
    fi
}

total_pass=0
total_fail=0
summary=()
for arch in x64 x86; do
    log="$out/$arch/test.log"
    wine_run "$arch" "timeout 120 wine ./test_backend.exe" >"$log" 2>"$out/$arch/stderr.log"
    rc=$?
    sed -e "s/^/[$arch] /" "$log"
    last="$(tail -n 1 "$log" | tr -d '\r')"
    if [[ ! "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
        echo "run.sh: ERROR: $arch test_backend.exe did not run to its summary (exit $rc); stderr:" >&2
        tail -n 20 "$out/$arch/stderr.log" >&2
        die "the $arch exe could not run under Wine"
    fi
    p=${BASH_REMATCH[1]}
    f=${BASH_REMATCH[2]}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # a non-zero exit is a failure even if the summary says otherwise
    fi
    summary+=("$arch: $p passed, $f failed")
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
done

for line in "${summary[@]}"; do echo "$line"; done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ] && [ "$total_pass" -gt 0 ]

#!/bin/sh
# Build the C driver for the Linux backend with warnings as errors. Usage: tests/linux_c/build.sh [OUT]
# It links every unit of csrc/linux/, test_hooks.c included (the driver reads the backend's counters), and
# synthetic.c (snapshots built in memory, for records no kernel here can make).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$here/out/driver}
mkdir -p "$(dirname "$out")"
${CC:-gcc} -std=gnu11 -Wall -Wextra -Werror -O1 -g ${EXTRA_CFLAGS:-} -I"$root/csrc" \
    "$root"/csrc/linux/*.c "$root/csrc/secsock_common.c" "$here/driver.c" "$here/synthetic.c" -o "$out" -lpthread

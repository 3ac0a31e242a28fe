#!/usr/bin/env bash
# Regenerate the fuzz seed corpus under hardening/fuzz/corpus/<target>/ (committed; run by hand, as root).
# Installs a variety of XFRM policies in a throw-away network namespace, captures the kernel's dump of them
# and the notifications of further policy changes with hardening/fuzz/make_corpus.c, and adds hand-built SA
# and control messages (see that file).
#
#   bash hardening/make_corpus.sh                 every target's seeds
#   bash hardening/make_corpus.sh TARGET...       only these targets' (e.g. xfrm_policy_notify xfrm_policy_apply)
#
# The files it writes are overwritten; the others in a target's folder (regress-*, inputs merged from fuzzing
# runs, seeds made by hand) are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CC=${CC:-$(command -v clang-14 || command -v clang || command -v gcc || true)}
[[ -n $CC ]] || { echo "make_corpus: no C compiler (apt-get install clang-14)" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || { echo "make_corpus: needs root (ip netns, ip xfrm)" >&2; exit 1; }
command -v ip >/dev/null || { echo "make_corpus: ip is missing (apt-get install iproute2)" >&2; exit 1; }

work=$(mktemp -d)
ns=secsock-corpus-$$
trap 'ip netns del "$ns" 2>/dev/null; rm -rf "$work"' EXIT
"$CC" -std=gnu11 -Wall -Wextra -Werror -O1 hardening/fuzz/make_corpus.c -o "$work/make_corpus"

ip netns add "$ns"
ip -n "$ns" link set lo up
# The bulk first: the kernel dumps the newest first, so the distinct policies lead the first datagram.
for i in $(seq 1 300); do
    echo "xfrm policy add src 10.20.$((i / 250)).$((i % 250 + 1)) dst 10.30.0.0/16 dir out priority $i tmpl proto esp mode transport reqid $i"
done | ip -n "$ns" -batch -
ip -n "$ns" -batch - <<'POL'
xfrm policy add src 10.9.0.1 dst 10.9.0.2 dir out priority 100 tmpl proto esp mode transport reqid 1
xfrm policy add src 10.9.0.2 dst 10.9.0.1 dir in priority 100 tmpl proto esp mode transport reqid 1
xfrm policy add src 10.9.0.0/24 dst 10.9.1.0/24 proto tcp dport 443 dir out priority 50 tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel reqid 2
xfrm policy add src 10.9.1.0/24 dst 10.9.0.0/24 proto tcp sport 443 dir in priority 50 tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel reqid 2 level use
xfrm policy add src 10.9.0.1 dst 10.9.0.3 dir out action block
xfrm policy add src 10.9.0.1 dst 10.9.0.4 proto udp dport 500 dir out priority 1
xfrm policy add src 10.9.0.1 dst 10.9.0.5 dir out mark 0x10 mask 0xff tmpl proto ah mode transport tmpl proto esp mode transport
xfrm policy add src 10.9.0.1 dst 10.9.0.6 dir out if_id 7 tmpl src 10.9.0.1 dst 10.9.0.6 proto esp mode tunnel
xfrm policy add src 10.9.0.0/16 dst 0.0.0.0/0 dir fwd tmpl proto esp mode transport
xfrm policy add src 10.9.0.1 dst 10.9.0.7 dir out ptype sub tmpl proto comp mode transport level use tmpl proto esp mode transport
xfrm policy add src fd09::1 dst fd09::2 dir out priority 10 tmpl proto esp mode transport
xfrm policy add src fd09::2 dst fd09::1 dir in priority 10 tmpl proto esp mode transport
xfrm policy add src fd09::/64 dst fd0a::/48 proto udp sport 4500 dir out tmpl src fd09::1 dst fd0a::1 proto esp mode beet
xfrm policy add src ::/0 dst ::/0 proto ipv6-icmp type 135 dir out priority 1
POL
ip netns exec "$ns" "$work/make_corpus" "$work/corpus"
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=($(ls "$work/corpus"))
for t in "${targets[@]}"; do
    [[ -d $work/corpus/$t ]] || { echo "make_corpus: no seeds made for $t" >&2; exit 1; }
    mkdir -p "hardening/fuzz/corpus/$t"
    cp "$work/corpus/$t"/* "hardening/fuzz/corpus/$t/"
    echo "$(ls "$work/corpus/$t" | wc -l) seeds written to hardening/fuzz/corpus/$t ($(ls "hardening/fuzz/corpus/$t" | wc -l) there)"
done

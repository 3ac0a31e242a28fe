"""What a steady (cached, repeated) query on the secured path costs in system calls, and that what it leaves
out cannot change the answer (issue 14, speed). Whether an IPv4 peer is one of the host's addresses is asked
of the routing table and kept 1 s; it is keyed without the socket's mark, owner, TOS and SO_DONTROUTE while
the namespace's rules and routes make them irrelevant (the bare local rule first, no rule on mark, uid or
DSCP, no TOS route, no local route outside the local table; for SO_DONTROUTE, no route via a gateway inside a
local prefix), and those are then not read at all; without its ports and protocol too unless a rule reads
them, so that new connections between two local addresses share one answer.

The host kernel has no ESP: the flows here meet policies whose templates have no SA, which takes a query
down the same path as a secured one (every per-socket fact is read; the SAs only come from the snapshot).
Needs root; run by tools/test.sh and CI.
"""

from __future__ import annotations

import errno
import json
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from linux_netns import Netns, child_env, require_root, run

pytestmark = pytest.mark.netns

A, B = "10.77.0.1", "10.77.0.2"  # on lo's /24: B is one of the host's addresses
V, W = "10.79.0.1", "10.79.0.2"  # V on the veth vc; W beyond it (a remote peer)
QUERIES = 100
IP_UNICAST_IF = 50  # linux/in.h; not in Python's socket module
# Memory management the interpreter may do between two queries: not the query's.
NOT_THE_QUERYS = ("brk", "mmap", "munmap", "mremap", "madvise")

# The first query reads what the later ones keep; umask marks where the steady ones begin and end.
COUNT_QUERIES = """
import os, socket, sys, secsock
local, peer, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if sys.argv[5] == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((local, 0))
    s.connect((peer, port))
else:
    s = socket.create_connection((peer, port), source_address=(local, 0))
print(secsock.query(s).reason)
os.umask(0o22)
for _ in range(n):
    secsock.query(s)
os.umask(0o22)
"""


@pytest.fixture
def ns() -> Iterator[Netns]:
    require_root()
    netns = Netns("steady")
    try:
        netns.ip("addr", "add", f"{A}/24", "dev", "lo")
        netns.ip("link", "add", "vc", "type", "veth", "peer", "name", "vcp")
        netns.ip("link", "set", "vc", "up")
        netns.ip("addr", "add", f"{V}/24", "dev", "vc")
        yield netns
    finally:
        netns.close()


def policies(ns: Netns, local: str, peer: str, level: str = "required") -> None:
    for src, dst, direction in ((local, peer, "out"), (peer, local, "in")):
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", direction,
              "tmpl", "proto", "esp", "mode", "transport", "level", level)  # fmt: skip


def lo_xfrm_on(ns: Netns) -> None:
    """lo's own disable_xfrm/disable_policy off: a flow to a local peer then meets the policies."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))


def listener(where: Netns, addr: str) -> socket.socket:
    def listen() -> socket.socket:
        s = socket.socket()
        s.bind((addr, 0))
        s.listen()
        return s

    return where.call(listen)


def steady_syscalls(ns: Netns, local: str, peer: str, port: int, kind: str = "tcp") -> tuple[str, list[str]]:
    """The first query's reason and the system calls QUERIES steady queries made, as strace writes them
    (between markers)."""
    with tempfile.NamedTemporaryFile(prefix="secsock-strace-") as out:
        argv = ns.exec_argv("strace", "-f", "-qq", "-o", out.name, sys.executable, "-c", COUNT_QUERIES,
                            local, peer, str(port), str(QUERIES), kind)  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        lines = Path(out.name).read_text().splitlines()
    marks = [i for i, line in enumerate(lines) if "umask(" in line]
    assert len(marks) == 2, "the markers were not traced"
    calls = [line.split(None, 1)[1] for line in lines[marks[0] + 1 : marks[1]]]
    return done.stdout.strip(), [call for call in calls if call.split("(", 1)[0] not in NOT_THE_QUERYS]


@pytest.mark.parametrize(
    ("where", "expected"),
    [("remote", 4), ("remote-lo-route-elsewhere", 4), ("local", 5), ("remote-udp", 6)],
    ids=["remote", "remote-lo-route-elsewhere", "local", "remote-udp"],
)
def test_a_steady_secured_query_makes_four_to_six_system_calls(ns: Netns, where: str, expected: int) -> None:
    """A connected TCP socket's steady query: SO_COOKIE, getsockname, getpeername and the notification
    socket's poll (epoll_wait); toward a local peer also SO_BINDTOIFINDEX (the device the route is asked
    from), which a peer that no local route covers does not need; SO_DONTROUTE only while a route via a
    gateway lies inside a local prefix (none here). It made 9 toward a remote peer (SO_BINDTOIFINDEX,
    SO_DONTROUTE, fstat, IP_TOS, SO_MARK for the key of whether the peer is local) and 10 toward a local one
    (and SIOCGIFNAME for loopback's name). A route by lo to another peer (finding 3 of the review of
    29b7b40) costs the remote peer nothing: only a peer such a route covers has its output device read.
    A connected IPv4 UDP socket also reads the device it sends by (SO_BINDTOIFINDEX, IP_UNICAST_IF), once a
    query: sending by lo, it would go by lo in the clear (review of 12e26e8, item 1; 7 before the value was
    kept for the query's second direction, review of d4aba7b, item 2)."""
    peers = Netns("steady-peer")
    try:
        if where == "remote-lo-route-elsewhere":
            ns.ip("route", "add", "10.99.0.5", "dev", "lo")
        if where.startswith("remote"):
            ns.ip("link", "set", "vcp", "netns", peers.name)
            peers.ip("link", "set", "vcp", "up")
            peers.ip("addr", "add", f"{W}/24", "dev", "vcp")
            if where == "remote-udp":
                server = peers.call(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                server.bind((W, 0))
            else:
                server = listener(peers, W)
            local, peer = V, W
        else:
            lo_xfrm_on(ns)
            local, peer, server = A, B, listener(ns, B)
        with server:
            policies(ns, local, peer, level="use")  # optional: the handshake needs no SA
            kind = "udp" if where == "remote-udp" else "tcp"
            reason, calls = steady_syscalls(ns, local, peer, server.getsockname()[1], kind)
    finally:
        peers.close()
    assert "no ESP or AH SA protects the flow" in reason, f"not the secured path: {reason}"
    per_query = calls[: len(calls) // QUERIES]
    assert len(calls) == expected * QUERIES, (
        f"{len(calls) / QUERIES} system calls a query; one query's: {per_query}"
    )
    if where == "remote-udp":  # the two more: the device the socket sends by, each read once
        options = [call.split(", ")[2] for call in per_query if call.startswith("getsockopt(")]
        assert sorted(options) == ["IP_UNICAST_IF", "SO_BINDTOIFINDEX", "SO_COOKIE"], per_query


def probe_getsockopts(ns: Netns, steps: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The probe's results and the getsockopt calls it made (strace)."""
    with tempfile.NamedTemporaryFile(prefix="secsock-strace-") as out:
        results = ns.probe(steps, wrap=("strace", "-f", "-qq", "-e", "trace=getsockopt", "-o", out.name))
        return results, Path(out.name).read_text()


def reasons(results: list[dict[str, Any]]) -> list[str]:
    return [r["reason"] for r in results]


NO_SA = "no SA fits a template the policy requires"
DISABLED = "disable_xfrm"  # (out) and disable_policy (in): lo's, for a peer reached over lo


@pytest.mark.parametrize(
    ("selector", "sockopt", "fact"),
    [(("tos", "0x10"), {"tos": 0x10}, "IP_TOS"), (("fwmark", "1"), {"mark": 1}, "SO_MARK")],
    ids=["tos", "fwmark"],
)
def test_a_rule_on_tos_or_mark_keeps_local_peer_answers_apart(
    ns: Netns, selector: tuple[str, str], sockopt: dict[str, int], fact: str
) -> None:
    """With no rule on them (nor a local route outside the local table), the steady queries do not read the
    socket's TOS or mark at all (only the first query, which asks the route, reads them). Then W is made
    remote but through table 100, which holds a local route for it: a socket whose TOS or mark a rule sends
    there reaches W over lo (whose disable_xfrm/disable_policy then apply), the other by vc. The two sockets'
    answers stay apart."""
    policies(ns, V, W)
    plain = {"op": "udp", "name": "plain", "local": V, "peer": W, "port": 500}
    steady = [{"op": "query", "name": "plain", "peer": [W, 500]}] * 20
    results, traced = probe_getsockopts(ns, [plain, *steady])
    assert all(NO_SA in reason for reason in reasons(results)), reasons(results)[0]
    assert traced.count(fact) <= 1, f"{traced.count(fact)} reads of {fact} for 21 queries and no rule on it"

    ns.ip("route", "add", "local", W, "dev", "lo", "table", "100")
    ns.ip("rule", "add", *selector, "lookup", "100")
    marked = {**plain, "name": "marked", **sockopt}
    again = [{"op": "query", "name": name, "peer": [W, 500]} for name in ("plain", "marked")]
    results, _ = probe_getsockopts(ns, [plain, marked, *again])
    first, second, plain_again, marked_again = reasons(results)
    assert NO_SA in first and NO_SA in plain_again, "the socket the rule does not select reaches W by vc"
    assert DISABLED in second and DISABLED in marked_again, "the socket the rule selects reaches W over lo"


def test_a_dontroute_sockets_local_peer_behind_a_rule_ahead_of_the_local_table(ns: Netns) -> None:
    """An SO_DONTROUTE socket's lookups are link-scoped (ip_sock_rt_scope): fib_table_lookup passes over a
    route via a gateway. With the local rule first and no such route inside a local prefix, whether B is
    local is the same at any scope: decided (lo's settings apply), where it was "not decidable". Behind a rule
    ahead of the local table whose table routes B via a gateway, the plain socket reaches B by vc while the
    SO_DONTROUTE one passes that route over and finds B in the local table: its answer is not decidable
    again, never the plain socket's."""
    policies(ns, A, B)
    dontroute = {"op": "udp", "name": "dr", "local": A, "peer": B, "port": 500, "dontroute": True}
    (result,) = ns.probe([dontroute])
    assert DISABLED in result["reason"], result["reason"]

    ns.ip("route", "add", f"{B}/32", "via", "10.79.0.9", "dev", "vc", "table", "100")
    ns.ip("rule", "del", "pref", "0", "lookup", "local")
    ns.ip("rule", "add", "pref", "10", "lookup", "local")
    ns.ip("rule", "add", "pref", "5", "lookup", "100")
    plain = {**dontroute, "name": "plain", "dontroute": False}
    plain_result, dontroute_result = ns.probe([plain, dontroute])
    assert NO_SA in plain_result["reason"], "the plain socket reaches B by vc, where the policies apply"
    assert "not decidable" in dontroute_result["reason"] or "cannot be told" in dontroute_result["reason"], (
        dontroute_result["reason"]
    )


def test_a_dontroute_sockets_peer_in_a_local_prefix_a_gateway_route_takes_out(ns: Netns) -> None:
    """With no custom rule the local table is merged into main (fib_lookup skips the rules): one longest
    prefix match over both. A /25 via a gateway inside lo's local /24 takes P out by vc, but a link-scoped
    lookup (SO_DONTROUTE: ip_sock_rt_scope) passes the gateway route over and finds the local /24: the
    SO_DONTROUTE socket reaches P over lo (seen on 6.18), which RTM_GETROUTE cannot ask. Its answer is not
    decidable, never the plain socket's (review of i14-speed3, item 1)."""
    peer = "10.77.0.200"
    ns.ip("route", "add", "10.77.0.128/25", "via", "10.79.0.9", "dev", "vc")
    policies(ns, V, peer)
    plain = {"op": "udp", "name": "plain", "local": V, "peer": peer, "port": 500}
    dontroute = {**plain, "name": "dr", "dontroute": True}
    plain_result, dontroute_result = ns.probe([plain, dontroute])
    assert NO_SA in plain_result["reason"], "the plain socket reaches P by vc, where the policies apply"
    assert "not decidable" in dontroute_result["reason"] or "cannot be told" in dontroute_result["reason"], (
        dontroute_result["reason"]
    )


def test_an_ipv6_query_dumps_no_ipv4_routes(ns: Netns) -> None:
    """The IPv4 route dump tells only whether an IPv4 peer's local answer may leave the socket's settings out
    (conf_local_dev): an IPv6 flow that reads the rules (whether one has a uidrange: its policies name a
    device, so its route is asked) dumps no IPv4 routes (review of i14-speed3, item 3). An IPv4 one whose
    peer may be local does, once."""
    a6, w6 = "fd79::1", "fd79::2"
    ns.ip("addr", "add", f"{a6}/64", "dev", "vc", "nodad")
    ns.ip("-6", "route", "add", f"{w6}/128", "dev", "vc")
    for src, dst, direction in ((a6, w6, "out"), (w6, a6, "in")):  # dev: the route is asked (resolve_oif)
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dev", "vc", "dir", direction,
              "tmpl", "proto", "esp", "mode", "transport", "level", "required")  # fmt: skip
    policies(ns, V, W)
    trace = ("strace", "-f", "-qq", "-e", "trace=sendto")

    def dumps_made(local: str, peer: str) -> int:
        step = {"op": "tcp-syn", "local": local, "peer": peer, "port": 500}
        with tempfile.NamedTemporaryFile(prefix="secsock-strace-") as out:
            (result,) = ns.probe([step], wrap=(*trace, "-o", out.name))
            assert "error" not in result, result
            lines = Path(out.name).read_text().splitlines()
        dumps = [line for line in lines if "NLM_F_DUMP" in line]
        return sum("RTM_GETRULE" in line for line in dumps), sum("RTM_GETROUTE" in line for line in dumps)

    assert dumps_made(a6, w6) == (1, 0)
    assert dumps_made(V, W) == (1, 1)


def test_an_address_that_makes_a_remote_peer_local_is_seen_after_the_interval(ns: Netns) -> None:
    """Toward a peer that no local route covers, the device the socket sends by is not read: the local
    table's local routes are kept with the rules for the interval (1 s), like every cached route answer.
    W made one of the host's addresses (on lo, whose disable_xfrm/disable_policy then apply) is seen by a
    query after the interval."""
    policies(ns, V, W)
    sock = {"op": "udp", "name": "s", "local": V, "peer": W, "port": 500}
    ask = {"op": "query", "name": "s", "peer": [W, 500]}
    add = {"op": "run", "argv": ["ip", "addr", "add", f"{W}/32", "dev", "lo"]}
    wait = {"op": "run", "argv": ["sleep", "1.2"]}
    before, after = reasons(ns.probe([sock, add, wait, ask]))
    assert NO_SA in before, before
    assert DISABLED in after, after


# New connections from local to peer, each queried once (each has its own local port); their reasons.
NEW_CONNECTIONS = """
import json, socket, sys, secsock
local, peer, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
socks = [socket.create_connection((peer, port), source_address=(local, 0)) for _ in range(n)]
print(json.dumps([secsock.query(s).reason for s in socks]))
"""
CONNECTIONS = 6


@pytest.mark.parametrize(
    ("family", "rule", "asks"),
    [((), (), 1)]
    + [((), rule, CONNECTIONS) for rule in (("ipproto", "tcp"), ("dport", "9-10"), ("sport", "9-10"))]
    + [(("-6",), ("ipproto", "tcp"), 1)],
    ids=["plain", "ipproto", "dport", "sport", "ipv6-ipproto"],
)
def test_new_connections_to_a_local_peer_share_its_route_unless_a_rule_reads_ports(
    ns: Netns, family: tuple[str, ...], rule: tuple[str, ...], asks: int
) -> None:
    """Whether B is local was kept keyed by the connection's ports and protocol too: every new connection
    from A to B (a client on the same host) missed the kept answer and asked the route again (RTM_GETROUTE:
    one per connection), which a query tried with the GIL held may not do (refused, then redone). The
    kernel's lookup reads the ports and protocol only in a rule that selects on them (fib4_rule_match): with
    none, the connections share one answer. A rule on ipproto, dport or sport, even one none of them
    matches, puts them back in the key: one request per connection, as before. (Port ranges: a single port's
    rule also carries FRA_DPORT_MASK or FRA_SPORT_MASK on 6.18, an attribute secsock does not know, which
    takes the full path, keyed by everything the route is asked with.) An IPv6 rule on the protocol is not
    met by an IPv4 lookup (fib4_rule_match reads IPv4 rules only): the connections share one answer still."""
    if rule:
        ns.ip(*family, "rule", "add", "pref", "100", *rule, "lookup", "main")
    policies(ns, A, B)  # templates: whether B is local is asked (lo's disable_xfrm then applies)
    with listener(ns, B) as server, tempfile.NamedTemporaryFile(prefix="secsock-strace-") as out:
        port = str(server.getsockname()[1])
        argv = ns.exec_argv("strace", "-f", "-qq", "-e", "trace=sendto", "-o", out.name,
                            sys.executable, "-c", NEW_CONNECTIONS, A, B, port, str(CONNECTIONS))  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120)
        assert done.returncode == 0, done.stderr
        lines = Path(out.name).read_text().splitlines()
    assert all(DISABLED in reason for reason in json.loads(done.stdout)), done.stdout
    routes = [line for line in lines if "RTM_GETROUTE" in line and "NLM_F_DUMP" not in line]
    assert len(routes) == asks, f"{len(routes)} route requests for {CONNECTIONS} new connections"


LO_ROUTED = "10.99.0.5"  # not one of the host's addresses, routed by lo (`ip route add ... dev lo`)
DISABLED_BOTH_WAYS = "XFRM is disabled for the flow"


def lo_tx_packets(ns: Netns) -> int:
    (link,) = json.loads(ns.ip("-j", "-s", "link", "show", "lo"))
    packets: int = link["stats64"]["tx"]["packets"]
    return packets


def lo_settings(ns: Netns, value: int) -> None:
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}={value}"))


@pytest.mark.parametrize("rule", [(), ("fwmark", "1", "lookup", "100")], ids=["plain-rules", "a-mark-rule"])
@pytest.mark.parametrize("lo_disabled", [1, 0], ids=["lo-disables-xfrm", "lo-does-not"])
def test_a_remote_peer_routed_by_lo_follows_los_settings(
    ns: Netns, lo_disabled: int, rule: tuple[str, ...]
) -> None:
    """Outside review of 29b7b40, finding 3: a peer that is not one of the host's addresses but whose route
    leaves by lo (type unicast, dev lo) is sent as lo sends: __mkroute_output takes DST_NOXFRM from the
    output device's disable_xfrm, and xfrm_lookup_with_ifid then looks no policy up. The kernel shows it
    here: under a policy that requires ESP, the SYN leaves on lo in the clear with lo's disable_xfrm 1 and is
    held (no SA) with 0. The backend counted lo's settings out for every peer not local and answered "no SA
    fits a template" both times: with an SA, SECURED while the SYN went out in the clear. lo's
    disable_policy then decides inbound too (what answers comes back over lo: ip_rcv_finish_core), as for a
    local peer. With plain rules the IPv4 route dump says which peers such a route covers; with a rule on
    the mark (the routes are then not dumped) the route asked whether the peer is local answers for the
    output device too: one route request either way."""
    if rule:
        ns.ip("rule", "add", *rule)
    ns.ip("route", "add", LO_ROUTED, "dev", "lo")
    lo_settings(ns, lo_disabled)
    policies(ns, V, LO_ROUTED)
    before = lo_tx_packets(ns)
    with tempfile.NamedTemporaryFile(prefix="secsock-strace-") as out:
        (result,) = ns.probe([{"op": "tcp-syn", "local": V, "peer": LO_ROUTED, "port": 500}],
                             wrap=("strace", "-f", "-qq", "-e", "trace=sendto", "-o", out.name))  # fmt: skip
        lines = Path(out.name).read_text().splitlines()
    sent_on_lo = lo_tx_packets(ns) - before
    routes = [line for line in lines if "RTM_GETROUTE" in line and "NLM_F_DUMP" not in line]
    assert len(routes) == 1, routes
    if lo_disabled:
        assert sent_on_lo > 0, "the kernel held the SYN: the test does not show the bypass"
        assert result["reason"].count(DISABLED_BOTH_WAYS) == 2, result
    else:
        assert sent_on_lo == 0, "the SYN left on lo though XFRM applies"
        assert result["reason"].count(NO_SA) == 2, result
    assert not result["secured"]


def sent_by_lo(ns: Netns, local: str, sport: int, peer: str) -> bool:
    """Does a datagram from local:sport to peer:500 leave by lo (lo's transmit counter), as the kernel
    routes it? (Not `ip route get`: iproute2's print_route trips AddressSanitizer, which
    hardening/sanitize.sh preloads into everything the tests start.)"""

    def send() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((local, sport))
            s.sendto(b"x", (peer, 500))

    before = lo_tx_packets(ns)
    ns.call(send)
    return lo_tx_packets(ns) > before


def test_a_multipath_route_with_a_lo_nexthop_is_read_per_flow(ns: Netns) -> None:
    """The same for a multipath route with a `dev lo` nexthop: each flow takes the nexthop the kernel's hash
    picks (the L4 hash here, so each source port may take another), and the backend asks the route with
    all the flow's keys. Flows hashed onto lo get lo's setting (XFRM disabled), the others the policy's
    verdict; both kinds are met among the ports tried, each agreeing with where the kernel sends a datagram
    of the same flow. (A is taken off lo: on 6.18, with A there, fib_select_multipath never picked lo's
    nexthop for a flow from V.)"""
    peer = "10.99.0.6"
    ns.ip("addr", "del", f"{A}/24", "dev", "lo")
    ns.ip("link", "set", "vcp", "up")  # vc has a carrier: its nexthop is alive
    run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"))
    ns.ip("route", "add", peer, "nexthop", "dev", "lo", "nexthop", "via", "10.79.0.9", "dev", "vc")
    policies(ns, V, peer)
    ports = range(40000, 40024)
    steps = [{"op": "udp", "name": f"s{port}", "local": V, "sport": port, "peer": peer, "port": 500}
             for port in ports]  # fmt: skip
    seen = set()
    for port, result in zip(ports, ns.probe(steps)):
        by_lo = sent_by_lo(ns, V, port, peer)
        seen.add(by_lo)
        expected = DISABLED_BOTH_WAYS if by_lo else NO_SA
        assert result["reason"].count(expected) == 2, (port, by_lo, result)
    assert seen == {True, False}, "every port took the same nexthop: the test shows one side only"


def test_a_rule_on_a_port_keeps_that_ports_error_apart(ns: Netns) -> None:
    """A throw route in the local table sends P (inside lo's local /24) on to the later rules, where a
    `prohibit` rule on TCP ports 600-601 refuses those alone (EACCES) and main sends the others by vc. With
    ports left out of the key, a query for port 600 after one for 602 would get 602's kept answer ("not
    local", by vc) for a flow the kernel refuses; the rule keeps them in: its error. (A socket bound to a
    device other than the local route's misses the local table as well, but ip_route_output_key_hash_rcu
    then makes a route by that device whatever error the rules give: no port changes its answer.)"""
    peer = "10.77.0.9"
    ns.ip("route", "add", "throw", peer, "table", "local", "scope", "link")  # link: the routes stay plain
    ns.ip("route", "add", peer, "dev", "vc")
    ns.ip("rule", "add", "pref", "100", "ipproto", "tcp", "dport", "600-601", "prohibit")
    refused = run(*ns.exec_argv("ip", "route", "get", peer, "from", A, "ipproto", "tcp", "dport", "600"),
                  check=False)  # fmt: skip
    assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
    policies(ns, A, peer)
    syn = {"op": "tcp-syn", "local": A, "peer": peer}
    by_vc, prohibited = ns.probe([{**syn, "port": 602}, {**syn, "port": 600}])
    assert NO_SA in by_vc.get("reason", ""), by_vc
    assert prohibited.get("errno") == errno.EACCES, prohibited


def query_then_send(ns: Netns, prepare: Callable[[socket.socket], None]) -> tuple[Any, int]:
    """In ns: a UDP socket made ready by prepare, its answer, then one datagram sent (or held by the policy)
    and the packets lo's transmit counter gained by it: the kernel's own word on the device it took."""

    def query_and_send() -> tuple[Any, int]:
        import secsock

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            prepare(sock)
            info = secsock.query(sock)
            before = lo_tx_packets(ns)
            sock.send(b"x")  # a policy with no SA drops it silently (larval_drop): no error either way
            return info, lo_tx_packets(ns) - before

    return ns.call(query_and_send)


def assert_follows_lo(info: Any, sent_on_lo: int, lo_disabled: int) -> None:
    """lo's disable_xfrm 1: the datagram went by lo (in the clear), and the answer says XFRM is disabled both
    ways; 0: the policy held it (no SA), and the answer is the policy's."""
    if lo_disabled:
        assert sent_on_lo > 0, "the datagram did not leave by lo: the test does not show the bypass"
        assert info.reason.count(DISABLED_BOTH_WAYS) == 2, info
    else:
        assert sent_on_lo == 0, "the datagram left by lo though XFRM applies"
        assert info.reason.count(NO_SA) == 2, info
    assert not info.secured


@pytest.mark.parametrize("lo_disabled", [1, 0], ids=["lo-disables-xfrm", "lo-does-not"])
def test_limited_broadcast_from_an_address_on_lo_follows_los_settings(ns: Netns, lo_disabled: int) -> None:
    """Outside review of f7d6545, item 2: 255.255.255.255 from a source address and no device leaves by the
    device holding that address (ip_route_output_key_hash_rcu: __ip_dev_find), lo for an address on lo, and
    takes lo's disable_xfrm (__mkroute_output); no route by lo covers the peer, so the route scan alone missed
    it and the policy answered. The kernel shows the device: the datagram is counted on lo."""
    lo_settings(ns, lo_disabled)
    policies(ns, A, "255.255.255.255")

    def broadcast(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((A, 0))
        sock.connect(("255.255.255.255", 500))

    assert_follows_lo(*query_then_send(ns, broadcast), lo_disabled)


def test_so_dontroute_set_after_a_kept_route_is_not_answered_from_it(ns: Netns) -> None:
    """Outside review of f7d6545, item 3: the kept output device of a peer a route by lo covers is keyed by
    what RTM_GETROUTE is asked with, which has no SO_DONTROUTE. A link-scoped lookup passes over the gateway
    route and finds the route by lo; the kept answer (by vc) was given to the same socket after it set
    SO_DONTROUTE. Now the socket's routing facts are read before the kept answers: "not decidable"."""
    ns.ip("route", "add", "10.99.0.0/16", "dev", "lo")
    ns.ip("route", "add", LO_ROUTED, "via", "10.79.0.9", "dev", "vc")
    policies(ns, V, LO_ROUTED)

    def query_twice() -> Any:
        import secsock

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((V, 0))
            sock.connect((LO_ROUTED, 500))
            first = secsock.query(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
            return first, secsock.query(sock)

    first, dontroute = ns.call(query_twice)
    assert first.reason.count(NO_SA) == 2, first  # by vc, the gateway route: the policy answers
    assert dontroute.reason.startswith("outbound: not decidable here"), dontroute
    assert not dontroute.secured


@pytest.mark.parametrize("lo_disabled", [1, 0], ids=["lo-disables-xfrm", "lo-does-not"])
@pytest.mark.parametrize("how", ["SO_BINDTODEVICE", "IP_UNICAST_IF"])
def test_an_ipv4_udp_socket_sending_by_lo_to_a_remote_peer_follows_los_settings(
    ns: Netns, how: str, lo_disabled: int
) -> None:
    """Outside review of 12e26e8, item 1: an IPv4 UDP socket that sends by lo (bound to it, or IP_UNICAST_IF)
    toward a peer no route by lo covers gets the kernel's "assume the destination is on link" route by lo
    (ip_route_output_key_hash_rcu), RTCF_LOCAL and with lo's disable_xfrm: the datagram goes in the clear to
    any local socket on that port, though a policy requires ESP (no SA here: the kernel would otherwise hold
    it). The backend answered from the policy (with an SA: SECURED). No privilege is needed for either
    option, nor to receive. The datagram's device is lo's transmit counter."""
    ns.ip("route", "add", "default", "via", "10.79.0.9", "dev", "vc")
    lo_settings(ns, lo_disabled)
    policies(ns, V, W)

    def by_lo(sock: socket.socket) -> None:
        if how == "SO_BINDTODEVICE":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_UNICAST_IF, socket.htonl(1))
        sock.bind((V, 0))  # the policy's source (lo's own address would be chosen otherwise)
        sock.connect((W, 500))

    assert_follows_lo(*query_then_send(ns, by_lo), lo_disabled)

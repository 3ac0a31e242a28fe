"""secsock benchmark (Linux): the cost of secsock.query() next to sock.getpeername(), with 0 to 100,000 XFRM
policies installed, steady and right after a change, and against what a Linux user would do instead.

    sudo .venv/bin/python benchmarks/run.py            # prints a table, writes benchmarks/results.json
    sudo .venv/bin/python benchmarks/run.py --quick    # 0 and 1,000 policies, fewer rounds (a smoke run)

Needs root: each scale point runs in a network namespace made here (``ip netns add``), in a worker process
(this file with --worker) started inside it with ``ip netns exec``. Policies are written through a netlink
client (benchmarks/xfrm_nl.py), many per datagram. Timing: batches of calls, the two calls interleaved on
the same connected TCP socket, medians over the batches. Not a test: nothing here asserts a time.

--secured (what benchmarks/vm.sh runs, on a kernel with ESP): the flow crosses a veth pair to a second
namespace holding the peers, with ESP transport SAs and policies both ways, so the kernel really encrypts it
(a flow over lo is clear whatever the policies say: lo has disable_xfrm/disable_policy). The harness then
refuses to report unless each measured answer is SECURED|ENCRYPTED with the expected SPIs and reason and ESP
packets crossed the flow's SAs, and unless each cache-miss answer really missed. Without it every answer
must be clear (the host: no ESP).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCALES = [0, 1_000, 10_000, 100_000]
TARGET_STEADY_RATIO = 3.0  # at 10,000 policies, no changes
TARGET_FIRST_AFTER_CHANGE_MS = 50.0  # at 100,000 policies

LOCAL, PEER = "10.55.0.1", "10.55.0.2"  # the measured flow (on lo, or across a veth pair)
# A second peer, whose SAs' answer lands in the same slot of the extension's cache of recent answers as the
# measured flow's: asking for the two in turn misses every time (results.c, details_object).
PEER2 = "10.55.0.3"
FLOW_SPIS = (0x100, 0x101)  # the measured flow's ESP SAs: outbound, inbound
DETAILS_CACHE = 256  # results.c's slots (module.h DETAILS_CACHE)
ESP, TRANSPORT = 50, 0
# The first query of a connection: FRESH_BATCHES batches of FRESH_BATCH new sockets (FRESH_BATCHES_QUICK with
# --quick), half of them timed with query, half with getpeername.
FRESH_BATCH = 50
FRESH_BATCHES = 20
FRESH_BATCHES_QUICK = 8
REMOTE_REASON = "outbound: no XFRM policy selects the flow; inbound: no XFRM policy selects the flow"
SECURED_REASON = "outbound: protected by SAs that encrypt; inbound: protected by SAs that encrypt"
KEY = "0x" + "11" * 20  # rfc4106(gcm(aes)) with a 128-bit ICV: 16 key bytes + 4 salt bytes


def details_slot(outbound: list[int], inbound: list[int]) -> int:
    """results.c's details_hash of an answer of ESP transport SAs with reqid 0, as its cache slot."""
    h = 2166136261
    for spis in (outbound, inbound):
        h = ((h ^ len(spis)) * 16777619) & 0xFFFFFFFF
        for spi in spis:
            h = ((h ^ spi) * 16777619) & 0xFFFFFFFF
            h = (h * 16777619) & 0xFFFFFFFF  # reqid 0
            h = ((h ^ (ESP << 8 | TRANSPORT)) * 16777619) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & (DETAILS_CACHE - 1)


def colliding_spis() -> tuple[int, int]:
    """SPIs for PEER2's pair (outbound, outbound + 1) whose answer shares the measured flow's slot."""
    want = details_slot([FLOW_SPIS[0]], [FLOW_SPIS[1]])
    return next((s, s + 1) for s in range(0x200, 0x100000, 2) if details_slot([s], [s + 1]) == want)


# --- the worker, inside a namespace -----------------------------------------------------------------------


def policies(n: int, secured: bool = False, remote: bool = False) -> list[Any]:
    """n policies that do not select the measured flow, in both directions, with a realistic spread of
    prefix lengths (mostly host pairs, some /24 and /16 subnets), plus the flow's own ESP policies (at 0
    extra policies only when secured: on the host the 0 row is the answer without any policy; never with
    --remote, whose flow no policy selects)."""
    import xfrm_nl as x

    out = []
    for i in range(n):
        a, b, c = 20 + (i >> 16), (i >> 8) & 255, i & 255
        kind = i % 20
        if kind == 0:
            sel = x.selector(f"10.{a}.{b}.0", f"172.{16 + (i >> 16)}.{c}.0", 24, 24)
        elif kind == 1:
            sel = x.selector(f"10.{a}.{b}.{c}", f"172.{16 + (i >> 16)}.0.0", 32, 16)
        else:
            sel = x.selector(f"10.{a}.{b}.{c}", f"192.{168 - (i >> 16)}.{b}.{c}", proto=6 if kind & 1 else 0)
        out.append(
            x.Policy(
                sel,
                direction=x.XFRM_POLICY_OUT if i & 2 else x.XFRM_POLICY_IN,
                priority=1000 + (i % 97),
                esp_transport=True,
            )
        )
    if (n or secured) and not remote:
        for peer in (PEER, PEER2):
            for sel, direction in (
                (x.selector(LOCAL, peer), x.XFRM_POLICY_OUT),
                (x.selector(peer, LOCAL), x.XFRM_POLICY_IN),
            ):
                out.append(x.Policy(sel, direction=direction, priority=500, esp_transport=True))
    return out


def compiled_loop(
    target: str,
    iterable: str,
    statement: str,
    result: str,
    namespace: dict[str, Any],
    coroutine: bool = False,
) -> Any:
    """_loop(_arg, _clock): `for target in iterable: statement` timed, compiled as a user writes it (as timeit
    does); returns `result` computed from the elapsed ns `_ns`. coroutine: an async def."""
    source = (
        f"{'async ' if coroutine else ''}def _loop(_arg, _clock):\n"
        "    _t0 = _clock()\n"
        f"    for {target} in {iterable}:\n"
        f"        {statement}\n"
        "    _ns = _clock() - _t0\n"
        f"    return {result}\n"
    )
    scope = dict(namespace)
    exec(compile(source, f"<timed {statement}>", "exec"), scope)
    return scope["_loop"]


def timed_loop(statement: str, namespace: dict[str, Any], coroutine: bool = False) -> Any:
    """loop(size) -> ns for `size` runs of `statement`, compiled into the loop as a user writes it (as timeit
    does): no lambda or call around it, so both sides of a ratio pay the same loop and nothing more. The
    garbage collector stays on (timeit turns it off), since a server runs with it. coroutine: the loop is an
    async def (loop(size) is then awaited), timed from inside it, so the event loop's scheduling is not."""
    inner = compiled_loop("_", "range(_arg)", statement, "_ns", namespace, coroutine)
    return lambda size: inner(size, time.perf_counter_ns)


def timed_each(statement: str, namespace: dict[str, Any]) -> Any:
    """loop(sockets) -> ns per socket for `statement` run once on each socket `_s`, compiled as timed_loop
    does: the first query of a connection is timed over many new sockets, each asked once."""
    inner = compiled_loop("_s", "_arg", statement, "_ns / len(_arg)", namespace)
    return lambda sockets: inner(sockets, time.perf_counter_ns)


def batch_median(loop: Any, batches: int, size: int) -> list[float]:
    """Per-call times (ns) of `size` calls in a row, for each batch."""
    return [loop(size) / size for _ in range(batches)]


def interleaved(a: Any, b: Any, rounds: int, size: int) -> tuple[list[float], list[float]]:
    """Per-call ns of a and b, batch by batch, alternating which goes first."""
    ta: list[float] = []
    tb: list[float] = []
    for r in range(rounds):
        first, second = (a, b) if r % 2 == 0 else (b, a)
        x = batch_median(first, 1, size)[0]
        y = batch_median(second, 1, size)[0]
        ta.append(x if r % 2 == 0 else y)
        tb.append(y if r % 2 == 0 else x)
    return ta, tb


def parse_ip_xfrm(text: str, local: str, peer: str) -> bool:
    """The shell user's way: find a 'src LOCAL/32 dst PEER/32 ... dir out' block in `ip xfrm policy`."""
    want = re.compile(rf"^src {re.escape(local)}/32 dst {re.escape(peer)}/32")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if want.match(line) and i + 1 < len(lines) and "dir out" in lines[i + 1]:
            return True
    return False


def flow_sa_lines() -> list[str]:
    """`ip -batch` lines for the flow's own ESP pair and PEER2's (the cache-miss figure's): the same in the
    measured namespace and, --secured, in the peers' one."""
    lines = []
    for peer, (out_spi, in_spi) in ((PEER, FLOW_SPIS), (PEER2, colliding_spis())):
        lines += [
            f"xfrm state add src {LOCAL} dst {peer} proto esp spi {out_spi} reqid 0 mode transport "
            f"aead 'rfc4106(gcm(aes))' {KEY} 128",
            f"xfrm state add src {peer} dst {LOCAL} proto esp spi {in_spi} reqid 0 mode transport "
            f"aead 'rfc4106(gcm(aes))' {KEY} 128",
        ]
    return lines


def peer_policy_lines() -> list[str]:
    """`ip -batch` lines for the peers' side of the flows' ESP policies (--secured)."""
    lines = []
    for peer in (PEER, PEER2):
        for src, dst, direction in ((peer, LOCAL, "out"), (LOCAL, peer, "in")):
            lines.append(
                f"xfrm policy add src {src}/32 dst {dst}/32 dir {direction} priority 500 "
                "tmpl proto esp mode transport"
            )
    return lines


def sa_lines(n: int) -> list[str]:
    """`ip -batch` lines for n ESP SAs that do not serve the measured flow, plus flow_sa_lines()."""
    lines = flow_sa_lines()
    for i in range(n):
        a, b, c = 20 + (i >> 16), (i >> 8) & 255, i & 255
        lines.append(
            f"xfrm state add src 10.{a}.{b}.{c} dst 192.{168 - (i >> 16)}.{b}.{c} proto esp spi {0x1000 + i} "
            f"mode transport aead 'rfc4106(gcm(aes))' {KEY} 128"
        )
    return lines


# The peers' side of --secured: in their namespace, connect one TCP socket from each peer address to the
# listener, say so, and hold them until stdin closes.
# argv: LISTENER:PORT FRESH ADDR...: one connection from each ADDR, then FRESH more from the first.
PEER_CLIENTS = """
import socket, sys
host, port = sys.argv[1].split(":")
socks = []
for addr in sys.argv[3:] + [sys.argv[3]] * int(sys.argv[2]):
    s = socket.socket()
    s.bind((addr, 0))
    s.connect((host, int(port)))
    socks.append(s)
print("connected", flush=True)
sys.stdin.read()
"""


def refuse(why: str) -> SystemExit:
    return SystemExit(f"benchmark REFUSES to report: {why}")


def check_secured(info: Any, spis: tuple[int, int], what: str) -> None:
    """Refuse unless `info` is SECURED|ENCRYPTED by exactly the ESP SAs `spis` (outbound, inbound)."""
    got = (
        None
        if info.ipsec is None
        else ([sa.spi for sa in info.ipsec.outbound], [sa.spi for sa in info.ipsec.inbound])
    )
    if (
        not (info.secured and info.encrypted)
        or got != ([spis[0]], [spis[1]])
        or info.reason != SECURED_REASON
    ):
        raise refuse(f"{what}: expected SECURED|ENCRYPTED by SPIs {spis[0]:#x}/{spis[1]:#x}, got {info!r}")


def esp_packets(src: str, dst: str, spi: int) -> int:
    """Packets the kernel counted on an SA of this namespace (`ip -s xfrm state get`)."""
    out = subprocess.run(
        ["ip", "-s", "xfrm", "state", "get", "src", src, "dst", dst, "proto", "esp", "spi", str(spi)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"(\d+)\(bytes\), (\d+)\(packets\)", out)
    if found is None:
        raise refuse(f"no packet count for SA {spi:#x} in:\n{out}")
    return int(found.group(2))


def worker(
    n: int, quick: bool, sas: int = 0, peer_ns: str | None = None, remote: bool = False
) -> dict[str, Any]:
    """peer_ns (--secured, --remote): the peers' namespace, joined to this one by a veth pair (setup_peers);
    with remote, no IPsec on the way: the clear answer toward a remote peer that no policy selects."""
    sys.path.insert(0, str(HERE))
    import xfrm_nl as x

    import secsock

    secured = peer_ns is not None and not remote
    result: dict[str, Any] = {"policies": n, "secured": secured, "remote_peer": peer_ns is not None}
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if peer_ns is None:
        subprocess.run(["ip", "addr", "add", f"{LOCAL}/24", "dev", "lo"], check=True)
        subprocess.run(["ip", "addr", "add", f"{PEER}/24", "dev", "lo"], check=True)
        subprocess.run(["ip", "addr", "add", f"{PEER2}/24", "dev", "lo"], check=True)
    # SAs: the flow's own ESP pair, and `sas` more, where the kernel has ESP (not on this project's host).
    t0 = time.perf_counter()
    sa = subprocess.run(
        ["ip", "-batch", "-"],
        input="\n".join(sa_lines(sas)) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    result["sas"] = (sas + 4) if sa.returncode == 0 else 0
    result["sa_install_s"] = time.perf_counter() - t0
    if sa.returncode != 0:
        if secured:
            raise refuse(f"the flow's ESP SAs could not be installed: {sa.stderr.strip()}")
        result["sa_error"] = (
            sa.stderr.strip().splitlines()[0] if sa.stderr.strip() else f"exit {sa.returncode}"
        )
        subprocess.run(["ip", "xfrm", "state", "flush"], check=False)

    xs = x.XfrmSocket()
    pols = policies(n, secured, remote)
    t0 = time.perf_counter()
    xs.add_policies(pols)
    result["install_s"] = time.perf_counter() - t0

    # Every connection now: the measured flow (PEER), the cache-miss figure's (PEER2), and the new connections
    # (from PEER too) whose first query is timed, in batches of FRESH_BATCH.
    fresh_count = FRESH_BATCH * (FRESH_BATCHES_QUICK if quick else FRESH_BATCHES)
    listener = socket.create_server((LOCAL, 0), backlog=fresh_count + 8)
    clients: list[socket.socket] = []
    peers_proc = None
    if peer_ns is not None:
        peers_proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                str(peer_ns),
                sys.executable,
                "-c",
                PEER_CLIENTS,
                f"{LOCAL}:{listener.getsockname()[1]}",
                str(fresh_count),
                PEER,
                PEER2,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peers_proc.stdout is not None
        if peers_proc.stdout.readline().strip() != "connected":
            raise refuse("the peers' namespace did not connect across the veth pair")
    else:
        for addr in [PEER, PEER2] + [PEER] * fresh_count:
            clients.append(socket.socket())
            clients[-1].bind((addr, 0))
            clients[-1].connect(listener.getsockname())
    accepted = [listener.accept()[0] for _ in range(fresh_count + 2)]
    from_peer = [conn for conn in accepted if conn.getpeername()[0] == PEER]
    server, fresh = from_peer[0], from_peer[1:]
    (server2,) = [conn for conn in accepted if conn.getpeername()[0] == PEER2]

    t0 = time.perf_counter()
    info = secsock.query(server)
    result["first_query_ms"] = (time.perf_counter() - t0) * 1e3
    result["answer"] = repr(info)
    # What the row says, checked before anything is timed.
    if secured:
        check_secured(info, FLOW_SPIS, "the measured flow")
        check_secured(secsock.query(server2), colliding_spis(), "the second peer's flow")
        packets = {
            "out": esp_packets(LOCAL, PEER, FLOW_SPIS[0]),
            "in": esp_packets(PEER, LOCAL, FLOW_SPIS[1]),
        }
        if min(packets.values()) == 0:
            raise refuse(f"no ESP packets on the flow's SAs: {packets}")
        result["esp_packets_at_connect"] = packets
    elif info.flags:
        raise refuse(f"a row without --secured must be clear, got {info!r}")
    elif remote and info.reason != REMOTE_REASON:
        raise refuse(f"a --remote row must be the answer without a policy, got {info!r}")

    size = 50
    rounds = 60 if quick else 400
    namespace = {"secsock": secsock, "server": server}
    query_loop = timed_loop("secsock.query(server)", namespace)
    getpeername_loop = timed_loop("server.getpeername()", namespace)
    for _ in range(3):  # warm caches
        batch_median(query_loop, 2, size)
    windows = []
    all_q: list[float] = []
    all_g: list[float] = []
    for _ in range(2 if quick else 5):
        q, g = interleaved(query_loop, getpeername_loop, rounds // 5 or 1, size)
        windows.append(statistics.median(q))
        all_q += q
        all_g += g
    result["query_ns"] = statistics.median(all_q)
    result["getpeername_ns"] = statistics.median(all_g)
    result["ratio"] = result["query_ns"] / result["getpeername_ns"]
    result["query_ns_windows"] = windows  # flat while nothing changes
    result["query_ns_p90"] = sorted(all_q)[int(len(all_q) * 0.9)]

    if secured:  # unchanged over the timing
        check_secured(secsock.query(server), FLOW_SPIS, "the measured flow after timing")
    elif remote and (secsock.query(server).flags or secsock.query(server).reason != REMOTE_REASON):
        raise refuse("the --remote answer changed over the timing")

    # Cache misses: the measured flow and PEER2's connection, whose answers take turns in one slot of the
    # extension's cache, asked in turn; against getpeername() on both, interleaved the same way. Only where
    # the answers are secured (policies and SAs both there); "miss_checked" says each answer really missed.
    first, other = secsock.query(server), secsock.query(server2)
    if first.ipsec and first.ipsec.outbound and other.ipsec and other.ipsec.outbound:
        result["miss_checked"] = secsock.query(server).ipsec is not first.ipsec
        if secured and not result["miss_checked"]:
            raise refuse("the cache-miss figure's answers did not miss (the slot guess is wrong)")
        pair_namespace = dict(namespace, server2=server2)
        miss_loop = timed_loop("secsock.query(server); secsock.query(server2)", pair_namespace)
        pair_getpeername = timed_loop("server.getpeername(); server2.getpeername()", pair_namespace)
        batch_median(miss_loop, 2, size)
        m, g = interleaved(miss_loop, pair_getpeername, rounds // 2 or 1, size)
        result["miss_query_ns"] = statistics.median(m) / 2
        result["miss_getpeername_ns"] = statistics.median(g) / 2
        result["miss_ratio"] = statistics.median(m) / statistics.median(g)
    if secured and "miss_checked" not in result:
        raise refuse("the cache-miss figure was not measured: the answers are not secured")

    # The first query of a connection, what a server pays per accepted connection: the socket's type, protocol
    # and namespace are not cached yet (three system calls more). Batches of new sockets, each used once:
    # query and getpeername take turns batch by batch (getpeername too on sockets no call has touched).
    fresh_query = timed_each("secsock.query(_s)", namespace)
    fresh_getpeername = timed_each("_s.getpeername()", namespace)
    batches = [fresh[i : i + FRESH_BATCH] for i in range(0, len(fresh), FRESH_BATCH)]
    fq = [fresh_query(batch) for batch in batches[0::2]]
    fg = [fresh_getpeername(batch) for batch in batches[1::2]]
    result["fresh_query_ns"] = statistics.median(fq)
    result["fresh_getpeername_ns"] = statistics.median(fg)
    result["fresh_ratio"] = result["fresh_query_ns"] / result["fresh_getpeername_ns"]
    result["fresh_connections"] = len(fresh)
    for conn in fresh:  # each new connection's answer is the measured flow's
        answer = secsock.query(conn)
        if secured:
            check_secured(answer, FLOW_SPIS, "a new connection's flow")
        elif answer.flags or (remote and answer.reason != REMOTE_REASON):
            raise refuse(f"a new connection's answer is not the measured flow's: {answer!r}")

    # The extension's own function without the facade's Python: the call query(sock) makes, query_sock since
    # 080d139 (older builds, as at_commit.sh may run them: query_info; before 2026-11-24 the raw query).
    from secsock import _secsock

    if hasattr(_secsock, "query_sock"):
        c_loop = timed_loop("query_sock(server)", dict(namespace, query_sock=_secsock.query_sock))
        result["c_call"] = "query_sock"
    elif hasattr(_secsock, "query_info"):
        c_namespace = dict(namespace, query_info=_secsock.query_info)
        c_loop = timed_loop("query_info(server, None, 0, False)", c_namespace)
        result["c_call"] = "query_info"
    else:
        c_loop = timed_loop("query(fd, None, 0, False)", dict(fd=server.fileno(), query=_secsock.query))
        result["c_call"] = "query"
    c_times = batch_median(c_loop, rounds, size)
    result["c_query_ns"] = statistics.median(c_times)

    # The first query after a change: add (or delete) one policy, then time one query, at once (what a
    # server sees: the kernel may still be rehashing its policy table on the other core) and after 200 ms.
    changes = []
    settled = []
    extra = [
        x.Policy(x.selector(f"10.250.{i >> 8}.{i & 255}", "10.251.0.1"), priority=7, esp_transport=True)
        for i in range(1, (6 if quick else 21) + 1)
    ]
    for i, policy in enumerate(extra + extra):
        if i % 2 == 0:
            xs.add_policies([policy])
        else:
            xs.delete_policies([(extra + extra)[i - 1]])
        if i >= len(extra):
            time.sleep(0.2)
        t0 = time.perf_counter()
        secsock.query(server)
        (changes if i < len(extra) else settled).append((time.perf_counter() - t0) * 1e3)
    result["after_change_ms"] = statistics.median(changes)
    result["after_change_ms_max"] = max(changes)
    result["after_change_ms_all"] = changes
    result["after_change_settled_ms"] = statistics.median(settled)
    result["after_change_settled_ms_max"] = max(settled)
    t0 = time.perf_counter_ns()
    for _ in range(size):
        secsock.query(server)
    result["steady_after_change_ns"] = (time.perf_counter_ns() - t0) / size

    # The first query after an SA change (a rekey adds and deletes SAs), where the kernel has ESP.
    if result["sas"]:
        key = "0x" + "22" * 20
        sa_changes = []
        for i in range(6 if quick else 20):
            spi = 0x9000 + i // 2
            if i % 2 == 0:
                cmd = [
                    "ip",
                    "xfrm",
                    "state",
                    "add",
                    "src",
                    "10.99.0.1",
                    "dst",
                    "10.99.0.2",
                    "proto",
                    "esp",
                    "spi",
                    str(spi),
                    "mode",
                    "transport",
                    "aead",
                    "rfc4106(gcm(aes))",
                    key,
                    "128",
                ]
            else:
                cmd = [
                    "ip",
                    "xfrm",
                    "state",
                    "del",
                    "src",
                    "10.99.0.1",
                    "dst",
                    "10.99.0.2",
                    "proto",
                    "esp",
                    "spi",
                    str(spi),
                ]
            subprocess.run(cmd, check=True)
            t0 = time.perf_counter()
            secsock.query(server)
            sa_changes.append((time.perf_counter() - t0) * 1e3)
        result["after_sa_change_ms"] = statistics.median(sa_changes)
        result["after_sa_change_ms_max"] = max(sa_changes)

    # What a Linux user would do instead, per query.
    reps = 3 if n >= 10_000 or quick else 20
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pol = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True, check=True).stdout
        subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True, check=True)
        parse_ip_xfrm(pol, LOCAL, PEER)
        times.append(time.perf_counter() - t0)
    result["ip_subprocess_ms"] = statistics.median(times) * 1e3
    times = []
    lport, pport = server.getsockname()[1], server.getpeername()[1]
    for _ in range(reps * 3):
        t0 = time.perf_counter()
        x.query_by_dump(xs, LOCAL, PEER, lport, pport, socket.IPPROTO_TCP)
        times.append(time.perf_counter() - t0)
    result["netlink_dump_ms"] = statistics.median(times) * 1e3
    steady_ms = result["query_ns"] / 1e6
    result["ip_subprocess_ratio"] = result["ip_subprocess_ms"] / steady_ms
    result["netlink_dump_ratio"] = result["netlink_dump_ms"] / steady_ms

    if secured:
        check_secured(secsock.query(server), FLOW_SPIS, "the measured flow at the end")
        result["esp_packets_at_end"] = {
            "out": esp_packets(LOCAL, PEER, FLOW_SPIS[0]),
            "in": esp_packets(PEER, LOCAL, FLOW_SPIS[1]),
        }
    for sock in (*clients, server, server2, listener):
        sock.close()
    if peers_proc is not None:
        peers_proc.communicate("")
    xs.close()
    return result


# --- the driver -------------------------------------------------------------------------------------------


def setup_peers(ns: str, peer_ns: str, esp: bool = True) -> None:
    """--secured, --remote: a veth pair from the measured namespace (LOCAL) to the peers' (PEER, PEER2), and
    (esp, --secured) the peers' side of the flows' ESP: the same SAs and the mirror policies (the measured
    side is the worker's)."""
    subprocess.run(["ip", "netns", "add", peer_ns], check=True)
    for argv in (
        [
            "ip",
            "link",
            "add",
            "bench0",
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            "bench1",
            "netns",
            peer_ns,
        ],
        ["ip", "-n", ns, "addr", "add", f"{LOCAL}/24", "dev", "bench0"],
        ["ip", "-n", ns, "link", "set", "bench0", "up"],
        ["ip", "-n", peer_ns, "link", "set", "lo", "up"],
        ["ip", "-n", peer_ns, "addr", "add", f"{PEER}/24", "dev", "bench1"],
        ["ip", "-n", peer_ns, "addr", "add", f"{PEER2}/24", "dev", "bench1"],
        ["ip", "-n", peer_ns, "link", "set", "bench1", "up"],
    ):
        subprocess.run(argv, check=True)
    if not esp:
        return
    lines = flow_sa_lines() + peer_policy_lines()
    done = subprocess.run(
        ["ip", "-n", peer_ns, "-batch", "-"], input="\n".join(lines) + "\n", text=True, capture_output=True
    )
    if done.returncode != 0:
        raise refuse(f"the peers' ESP SAs or policies could not be installed (no ESP here?): {done.stderr}")


def run_scale(n: int, quick: bool, sas: int, secured: bool = False, remote: bool = False) -> dict[str, Any]:
    ns = f"secsock-bench-{os.getpid()}-{n}"
    peer_ns = ns + "-peers"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        argv = ["ip", "netns", "exec", ns, sys.executable, __file__, "--worker", str(n), "--sas", str(sas)]
        if quick:
            argv.append("--quick")
        if secured or remote:
            setup_peers(ns, peer_ns, esp=secured)
            argv += ["--peer-ns", peer_ns] + (["--remote"] if remote else [])
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, check=False)
        if done.returncode != 0:
            raise SystemExit(f"benchmark worker for {n} policies failed ({done.returncode}):\n{done.stderr}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        if secured or remote:
            subprocess.run(["ip", "netns", "del", peer_ns], check=False)


def table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'policies':>9} {'SAs':>3} {'query ns':>9} {'getpeername ns':>14} {'ratio':>6} {'C call ns':>9} "
        f"{'1st query ms':>12} {'after change ms (med/max)':>25} {'settled':>8} {'ip xfrm ms':>10} {'x':>7} "
        f"{'nl dump ms':>10} {'x':>6}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(
            f"{r['policies']:>9,} {r['sas']:>3} {r['query_ns']:>9.0f} {r['getpeername_ns']:>14.0f} "
            f"{r['ratio']:>6.1f} {r['c_query_ns']:>9.0f} {r['first_query_ms']:>12.2f} "
            f"{r['after_change_ms']:>12.2f} / {r['after_change_ms_max']:>9.2f} "
            f"{r['after_change_settled_ms']:>8.2f} "
            f"{r['ip_subprocess_ms']:>10.1f} {r['ip_subprocess_ratio']:>7.0f} "
            f"{r['netlink_dump_ms']:>10.2f} {r['netlink_dump_ratio']:>6.0f}"
        )
        if r.get("secured"):
            rows.append(
                f"{'':>9} answer checked before and after timing: SECURED|ENCRYPTED, SPIs "
                f"{FLOW_SPIS[0]:#x}/{FLOW_SPIS[1]:#x}, real ESP across veth (packets out/in at the end: "
                f"{r['esp_packets_at_end']['out']}/{r['esp_packets_at_end']['in']})"
            )
        elif r.get("remote_peer"):
            rows.append(
                f"{'':>9} answer checked before and after timing: clear, no policy selects the flow either "
                "way, the peer across a veth pair (--remote)"
            )
        if "fresh_ratio" in r:
            rows.append(
                f"{'':>9} first query of a connection ({r['fresh_connections']} new sockets, each asked "
                f"once): {r['fresh_query_ns']:.0f} ns, {r['fresh_ratio']:.1f}x getpeername on new sockets "
                f"({r['fresh_getpeername_ns']:.0f} ns)"
            )
        if "miss_ratio" in r:
            rows.append(
                f"{'':>9} cache misses (two peers in one slot, in turn): {r['miss_query_ns']:.0f} ns/query, "
                f"{r['miss_ratio']:.1f}x getpeername ({r['miss_getpeername_ns']:.0f} ns)"
                f"{'' if r['miss_checked'] else ' -- NOT a miss: the slot guess is wrong'}"
            )
        if "after_sa_change_ms" in r:
            rows.append(
                f"{'':>9} after an SA change: {r['after_sa_change_ms']:.2f} ms median, "
                f"{r['after_sa_change_ms_max']:.2f} ms max"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer-ns", help=argparse.SUPPRESS)
    parser.add_argument(
        "--secured",
        action="store_true",
        help="real ESP across a veth pair to a second namespace; refuse to report unless every answer is "
        "SECURED|ENCRYPTED by the flow's SAs (needs a kernel with ESP and veth: the VM)",
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="the peers in a second namespace across a veth pair, no IPsec and no policy for the flow: the "
        "clear answer a server gives a remote peer (without it the peers are local addresses, over lo)",
    )
    parser.add_argument("--quick", action="store_true", help="0 and 1,000 policies, fewer rounds")
    parser.add_argument(
        "--sas", type=int, default=0, help="also install this many ESP SAs (needs a kernel with ESP: the VM)"
    )
    parser.add_argument("--scales", type=lambda s: [int(v) for v in s.split(",")], help="e.g. 0,1000")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.quick, args.sas, args.peer_ns, args.remote)))
        return
    if args.secured and args.remote:
        raise SystemExit("benchmarks/run.py: --secured and --remote are two different rows; give one")
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/run.py needs root: it makes network namespaces and XFRM policies")
    for tool in ("ip",):
        if subprocess.run(["which", tool], capture_output=True, check=False).returncode != 0:
            raise SystemExit(f"benchmarks/run.py needs {tool} (apt-get install iproute2)")
    scales = args.scales or ([0, 1_000] if args.quick else SCALES)
    results = []
    for n in scales:
        print(f"... {n:,} policies", file=sys.stderr, flush=True)
        results.append(run_scale(n, args.quick, args.sas, args.secured, args.remote))
    print(table(results))
    by_n = {r["policies"]: r for r in results}
    targets: dict[str, Any] = {}
    if 10_000 in by_n:
        ratio = by_n[10_000]["ratio"]
        targets["steady_ratio_at_10k"] = {
            "measured": ratio,
            "target": TARGET_STEADY_RATIO,
            "met": ratio <= TARGET_STEADY_RATIO,
        }
    if 100_000 in by_n:
        ms = by_n[100_000]["after_change_ms"]
        worst = by_n[100_000]["after_change_ms_max"]
        settled = by_n[100_000]["after_change_settled_ms"]
        targets["first_after_change_ms_at_100k"] = {
            "median": ms,
            "max": worst,
            "settled_median": settled,
            "target": TARGET_FIRST_AFTER_CHANGE_MS,
            "met": worst < TARGET_FIRST_AFTER_CHANGE_MS,
        }
    for name, t in targets.items():
        print(f"target {name}: {json.dumps(t)}")
    import secsock

    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        },
        "secsock_module": str(Path(secsock.__file__).parent),
        "secsock_commit": os.environ.get("SECSOCK_BENCH_COMMIT", "the working tree"),
        "results": results,
        "targets": targets,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

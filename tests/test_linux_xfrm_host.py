"""The Linux backend against this machine's kernel, in network namespaces the tests make themselves.

The host kernel has XFRM but no ESP/AH transforms, so no SA can be added here: these tests cover what needs
no SA (policy lookup, bypass, errors, privileges, freshness of the snapshot). Real ESP/AH runs in the VM suite
(tests/vm). Which policy a query matched is read through the C driver (tests/linux_c), whose test hook reports
it; what Python users see is checked through secsock.query in a probe process inside the namespace.
Needs root; run by tools/test.sh and CI.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import secsock
from linux_netns import Netns, child_env, require_root, run
from reason_enum import reason_names

pytestmark = pytest.mark.netns

ROOT = Path(__file__).resolve().parent.parent
A, B = "10.77.0.1", "10.77.0.2"
A6, B6 = "fd77::1", "fd77::2"


@pytest.fixture
def ns() -> Iterator[Netns]:
    require_root()
    netns = Netns("host")
    try:
        netns.ip("addr", "add", f"{A}/24", "dev", "lo")
        netns.ip("addr", "add", f"{A6}/64", "dev", "lo", "nodad")
        yield netns
    finally:
        netns.close()


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("driver") / "driver"
    run("sh", str(ROOT / "tests" / "linux_c" / "build.sh"), str(out))
    return str(out)


def drive(ns: Netns, driver: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(ns.exec_argv(driver, *args), capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"driver printed nothing ({done.returncode}): {done.stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def esp_policies(ns: Netns, local: str, peer: str, *extra: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", local, "dst", peer, "dir", "out", *extra,
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", peer, "dst", local, "dir", "in", *extra,
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip


def udp(local: str, peer: str, port: int = 500, **extra: Any) -> dict[str, Any]:
    return {"op": "udp", "name": "s", "local": local, "peer": peer, "port": port, **extra}


# --- what Python callers see ------------------------------------------------------------------------------


def test_cleartext_without_policy_reports_no_flags(ns: Netns) -> None:
    (result,) = ns.probe([udp(A, B)])
    assert result == {
        "flags": 0,
        "secured": False,
        "encrypted": False,
        "protocol": int(secsock.SecurityProtocol.IPSEC),
        "outbound": [],
        "inbound": [],
        "reason": "outbound: no XFRM policy selects the flow; inbound: no XFRM policy selects the flow",
    }


def reason_of(result: dict[str, Any]) -> tuple[str, str]:
    assert "error" not in result, result
    outbound, inbound = result["reason"].split("; ")
    return outbound.removeprefix("outbound: "), inbound.removeprefix("inbound: ")


def test_every_answer_says_why(ns: Netns) -> None:
    """Issue 14 item 8: a reason per direction, for what the backend saw (no SA can exist on this host)."""
    # B is local too (A's /24 on lo makes the whole prefix local): its flows follow lo's settings, which
    # would disable XFRM for them. Turned off, the policies apply as they would toward a remote peer.
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, B, "priority", "10")  # out and in: a required ESP template without an SA
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "proto", "udp", "dport", "501", "dir", "out",
          "action", "block")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "proto", "udp", "dport", "502", "dir", "out")
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "proto", "udp", "dport", "503", "dir", "out",
          "tmpl", "proto", "esp", "mode", "transport", "level", "use")  # fmt: skip
    results = ns.probe([udp(A, B, port) for port in (500, 501, 502, 503)] + [udp(A, "10.77.0.9")])
    no_sa = (
        "no SA fits a template the policy requires (none exists yet, or its addresses, reqid, mark, if_id or "
        "selector do not fit the flow)"
    )
    optional = (
        "no ESP or AH SA protects the flow for sure (the policy's ESP/AH templates are optional, or it has "
        "IPComp only)"
    )
    assert [reason_of(r) for r in results] == [
        (no_sa, no_sa),
        ("the policy blocks the flow", no_sa),
        ("the policy allows the flow without IPsec", no_sa),
        (optional, no_sa),
        ("no XFRM policy selects the flow", "no XFRM policy selects the flow"),
    ]
    assert {r["flags"] for r in results} == {0}


def test_connected_udp_and_ipv6_without_policy(ns: Netns) -> None:
    results = ns.probe([udp(A, B, connect=True), {**udp(A6, B6), "name": "s6"}])
    assert [r["flags"] for r in results] == [0, 0]


def test_esp_policy_without_sa_is_not_secured(ns: Netns, driver: str) -> None:
    esp_policies(ns, A, B)
    (result,) = ns.probe([udp(A, B)])
    assert result["flags"] == 0 and result["outbound"] == [] and result["inbound"] == []
    # The policy did match: not secured because its template has no SA, not because nothing applied.
    matched = drive(ns, driver, "udp-peer", A, B, "500")
    assert matched["pol_out"] is not None and matched["pol_in"] is not None


def test_bypass_policy_is_matched_and_not_secured(ns: Netns, driver: str) -> None:
    esp_policies(ns, A, B, "priority", "100")
    ns.ip("xfrm", "policy", "add", "src", "10.77.0.0/24", "dst", B, "dir", "out", "priority", "10",
          "index", "0x119")  # fmt: skip
    matched = drive(ns, driver, "udp-peer", A, B, "500")
    assert matched["pol_out"] == {"index": 0x119, "priority": 10}
    assert matched["flags"] == 0


def test_lower_priority_value_wins(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", f"{A}/32", "dst", f"{B}/32", "dir", "out",
          "priority", "50", "index", "0x201", "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", "10.77.0.0/16", "dst", "10.77.0.0/16", "dir", "out",
          "priority", "40", "index", "0x209")  # fmt: skip
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"] == {"index": 0x209, "priority": 40}
    ns.ip("xfrm", "policy", "update", "src", "10.77.0.0/16", "dst", "10.77.0.0/16", "dir", "out",
          "priority", "60", "index", "0x209")  # fmt: skip
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"] == {"index": 0x201, "priority": 50}


def test_equal_priority_the_older_policy_wins(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", "10.77.0.0/24", "dst", f"{B}/32", "dir", "out",
          "priority", "7", "index", "0x301")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", f"{A}/32", "dst", "10.77.0.0/24", "dir", "out",
          "priority", "7", "index", "0x309")  # fmt: skip
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"]["index"] == 0x301


def policy_index(ns: Netns, *selector: str) -> int:
    shown = ns.ip("-s", "xfrm", "policy", "get", *selector, "dir", "out")
    return int(shown.split(" index ")[1].split()[0])


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ((f"src {A}/32 dst {B}/32"), (f"src {A}/32 dst {B}/32 proto udp")),  # one hash chain (both /32)
        (("src 10.77.0.0/24 dst 10.77.0.0/24"), ("src 10.77.0.0/16 dst 10.77.0.0/16")),  # both by prefix
    ],
    ids=["exact", "prefix"],
)
def test_an_updated_policy_keeps_its_place_on_a_priority_tie(
    ns: Netns, driver: str, older: str, newer: str
) -> None:
    """Issue 14 item 7: on a priority tie the older policy wins, and an update (same selector) keeps the
    replaced policy's place: xfrm_policy_insert_list / xfrm_policy_insert_inexact_list put the new policy
    where delpol was, and xfrm_policy_insert gives it delpol->index. Seen on 6.1 (VM) and on this kernel: a
    block updated in place keeps blocking over a newer equal-priority bypass. The dump lists the updated
    policy first (newest), so dump order is not the kernel's order. Nor is the index (the test after this
    one): the same dump may come from an update that moved the block, so the backend calls this tie between
    a block and a bypass not decidable."""
    # Loopback bypasses XFRM output by default (disable_xfrm): turn that off so the kernel's own choice shows.
    run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.conf.lo.disable_xfrm=0"))
    ns.ip("xfrm", "policy", "add", *older.split(), "dir", "out", "priority", "7", "action", "block")
    ns.ip("xfrm", "policy", "add", *newer.split(), "dir", "out", "priority", "7")
    first = policy_index(ns, *older.split())
    ns.ip("xfrm", "policy", "update", *older.split(), "dir", "out", "priority", "7", "action", "block")
    assert policy_index(ns, *older.split()) == first  # the update kept the index
    sent = subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{B}/500"), capture_output=True)
    assert sent.returncode != 0, "the kernel let the datagram through: the update moved the block"
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"] is None
    (result,) = ns.probe([udp(A, B)])
    assert result["flags"] == 0 and reason_of(result)[0].startswith(TIE), result


TIE = "not decidable here: policies of the same priority that differ select the flow"


@pytest.mark.parametrize(
    ("block", "bypass", "first_priority"),
    [
        ((f"src {A}/32 dst {B}/32"), (f"src {A}/32 dst {B}/32 proto udp"), "5"),  # updated to a new priority
        (("dst 10.77.0.0/16"), ("src 10.77.0.0/16"), "7"),  # two inexact candidate lists (6.18: pos)
    ],
    ids=["new-priority", "across-lists"],
)
def test_an_update_moves_a_policy_behind_its_priority_tie(
    ns: Netns, driver: str, block: str, bypass: str, first_priority: str
) -> None:
    """Issue 14 review, item 1: an updated policy keeps its index but not always its place. Updated to a new
    priority, xfrm_policy_insert_list puts it after every policy of that priority; on 6.18 __xfrm_policy_link
    gives it a fresh pos (xfrm_gen_pos), which __xfrm_policy_eval_candidates compares across inexact lists.
    Either way the kernel uses the newer bypass and sends, while "lower index wins" said the block. The
    kernel's list order is not in the dump: a tie between policies that differ is not decidable (never
    SECURED by guess); ties between equivalent policies stay decided."""
    run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.conf.lo.disable_xfrm=0"))  # so the kernel's own choice shows
    ns.ip("xfrm", "policy", "add", *block.split(), "dir", "out", "priority", first_priority,
          "action", "block")  # fmt: skip
    ns.ip("xfrm", "policy", "add", *bypass.split(), "dir", "out", "priority", "7")
    ns.ip("xfrm", "policy", "update", *block.split(), "dir", "out", "priority", "7", "action", "block")
    sent = subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{B}/500"), capture_output=True)
    assert sent.returncode == 0, "the kernel kept blocking: the update did not move the block"
    (result,) = ns.probe([udp(A, B)])
    assert result["flags"] == 0 and reason_of(result)[0].startswith(TIE), result
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"] is None
    # The same tie between two equivalent policies decides nothing: the answer stays decided.
    ns.ip("xfrm", "policy", "update", *block.split(), "dir", "out", "priority", "7")
    (result,) = ns.probe([udp(A, B)])
    assert reason_of(result)[0] == "the policy allows the flow without IPsec", result


def test_port_selector_miss_falls_through(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "proto", "udp", "dport", "501", "dir", "out",
          "priority", "1", "index", "0x401")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "priority", "9", "index", "0x409")
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"]["index"] == 0x409
    assert drive(ns, driver, "udp-peer", A, B, "501")["pol_out"]["index"] == 0x401
    # The inbound flow swaps the ports: dport 501 there is our local port, which is not 501.
    assert drive(ns, driver, "udp-peer", A, B, "501")["pol_in"] is None


def test_protocol_selector_and_ipv6(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "proto", "tcp", "dir", "out", "index", "0x501")
    assert drive(ns, driver, "udp-peer", A6, B6, "500")["pol_out"] is None
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "proto", "udp", "dir", "out", "index", "0x509")
    assert drive(ns, driver, "udp-peer", A6, B6, "500")["pol_out"]["index"] == 0x509


def test_ipv4_mapped_flow_uses_ipv4_policies(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0x601")
    matched = drive(ns, driver, "udp-peer", f"::ffff:{A}", f"::ffff:{B}", "500")
    assert matched["pol_out"]["index"] == 0x601


DEV_UNDECIDABLE = "not decidable here: a selector that names a device"


def test_interface_selector_uses_the_route_toward_the_peer(ns: Netns) -> None:
    """The route to B leaves by lo; a policy for another device does not apply, one for lo does (a TCP
    socket: an IPv4 UDP message may name its own device, test_an_ipv4_udp_message_may_name_another_device)."""
    ns.ip("link", "add", "other0", "type", "veth", "peer", "name", "other1")
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dev", "other0", "dir", "out", "index", "0xc01")
    (result,) = ns.probe([{"op": "tcp-local", "addr": B, "port": 600}])
    assert reason_of(result)[0] == "no XFRM policy selects the flow", result
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dev", "lo", "dir", "out", "index", "0xc09")
    (result,) = ns.probe([{"op": "tcp-local", "addr": B, "port": 600}])
    assert reason_of(result)[0] == "the policy allows the flow without IPsec", result


def test_a_missing_proc_sys_is_an_error_not_settings_left_unset(ns: Netns, driver: str) -> None:
    """Outside review: /proc/sys/net/ipv4/conf/all/disable_xfrm and disable_policy exist on every kernel, so
    ENOENT there means /proc/sys is not mounted (a sandbox). It was read as "not disabled", and the answer
    went on as if the kernel applied the policies it could not check. A fresh process (no cached settings)
    in its own mount namespace with an empty /proc/sys: an error naming the path, not an answer."""
    esp_policies(ns, A, B)
    hidden = 'mount -t tmpfs none /proc/sys && exec "$0" "$@"'
    argv = ns.exec_argv("unshare", "-m", "sh", "-c", hidden, driver, "udp-peer", A, B, "500")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"driver printed nothing ({done.returncode}): {done.stderr}"
    result = json.loads(lines[-1])
    assert "error" in result, result
    assert result["error"]["errnum"] == errno.ENOENT, result
    assert "/proc/sys/net/ipv4/conf/all/disable_" in result["error"]["message"], result


def in_counters(ns: Netns) -> int:
    """The sum of the XfrmIn* counters: any inbound drop by XFRM counts in one of them."""
    stat = run(*ns.exec_argv("cat", "/proc/net/xfrm_stat")).stdout.split()
    return sum(int(stat[i + 1]) for i, name in enumerate(stat) if name.startswith("XfrmIn"))


@pytest.mark.parametrize(("dev", "applies"), [("vb", False), ("lo", True)])
def test_an_inbound_selector_device_is_loopback_for_local_delivery(
    ns: Netns, dev: str, applies: bool
) -> None:
    """Issue 14 review, item 3: inbound, decode_session4/6 set flowi_oif from skb_dst(skb)->dev, the input
    route's device, which for local delivery is loopback (ip_rt_get_dev), whatever the packet arrived by. The
    backend compared the route toward the peer: a `dev vb` ESP policy was said to apply (SECURED once SAs
    exist) while the kernel let plaintext in, and a `dev lo` one was said not to while the kernel dropped."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    ns.ip("link", "add", "vb", "type", "veth", "peer", "name", "vb-peer")
    ns.ip("link", "set", "vb", "up")
    ns.ip("link", "set", "vb-peer", "up")
    ns.ip("route", "add", f"{B}/32", "dev", "vb")  # the route toward the peer leaves by vb
    ns.ip("xfrm", "policy", "add", "src", A, "dst", A, "dev", dev, "dir", "in",
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", B, "dst", A, "dev", dev, "dir", "in",
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    before = in_counters(ns)
    subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{A}/600"), capture_output=True)
    assert (in_counters(ns) > before) == applies, "the kernel compared another device than loopback"
    results = ns.probe([udp(A, A, 600), udp(A, B, 600)])
    no_sa = "no SA fits a template the policy requires"
    for result in results:
        inbound = reason_of(result)[1]
        assert inbound.startswith(no_sa) if applies else inbound == "no XFRM policy selects the flow", result


def test_an_ipv6_outbound_selector_device_is_the_sockets_not_the_routes(ns: Netns) -> None:
    """Issue 14 review, item 3: IPv6 outbound, flowi6_oif is what the socket set (a link-local peer's scope,
    its bound device, IPV6_UNICAST_IF); ip6_route_output does not write the route's device into it, as IPv4
    does. A `dev lo` block, lo being the route's device: the kernel sends from an unbound socket, and the
    backend said the block applies. From a socket bound to lo the kernel blocks (and the backend says so).
    Outside review: an unbound UDP socket's device may come from a sticky IPV6_PKTINFO (before
    IPV6_UNICAST_IF), which no getsockopt returns, or from a message's own: for a selector that names a
    device it is not decidable (the backend said no policy applies while the kernel blocked)."""
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "dev", "lo", "dir", "out", "action", "block")
    sent = subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{B6}/500"), capture_output=True)
    assert sent.returncode == 0, "the kernel blocked an unbound socket's datagram"
    sticky = (
        "import socket, struct, sys\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, struct.pack('16si', bytes(16), 1))\n"
        "try:\n"
        f"    s.sendto(b'x', ('{B6}', 500))\n"
        "except OSError as e:\n"
        "    sys.exit(e.errno)\n"
    )
    pinned = subprocess.run(ns.exec_argv(sys.executable, "-c", sticky), capture_output=True, text=True)
    assert pinned.returncode == errno.EPERM, f"a sticky IPV6_PKTINFO for lo did not meet the block: {pinned}"
    unbound, bound = ns.probe([udp(A6, B6), udp(A6, B6, device="lo")])
    assert reason_of(unbound)[0].startswith("not decidable here: a selector that names a device"), unbound
    assert reason_of(bound)[0] == "the policy blocks the flow", bound
    # IPv4 outbound compares the route's device, as ip_route_output_key_hash_rcu writes it into flowi4_oif
    # (a TCP socket: an IPv4 UDP message may name its own device).
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dev", "lo", "dir", "out")
    (v4,) = ns.probe([{"op": "tcp-local", "addr": B, "port": 600}])
    assert reason_of(v4)[0] == "the policy allows the flow without IPsec", v4


C = "10.78.0.1"  # an address of vb's, for the tests of a socket bound to vb
SEND_FROM_VB = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"vb")
s.bind(("{C}", 0))
try:
    s.sendto(b"x", ("{C}", 600))
except OSError as e:
    sys.exit(e.errno)
"""


def test_a_bound_sockets_ipv4_selector_device_is_the_routes_not_the_bound_one(ns: Netns) -> None:
    """Outside review: IPv4 outbound, ip_route_output_key_hash_rcu writes the route's device into flowi4_oif
    even for a socket bound to a device; toward a local peer that is lo. The backend took the bound device
    without asking the route, so a `dev lo` policy was passed over and the one below it answered (an ESP
    one: SECURED once an SA exists, for a flow the kernel sends in clear). A block below the bypass shows
    the kernel's choice here, where no ESP SA can exist: the datagram leaves only while the bypass applies."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    ns.ip("link", "add", "vb", "type", "veth", "peer", "name", "vb-peer")
    ns.ip("link", "set", "vb", "up")
    ns.ip("addr", "add", f"{C}/24", "dev", "vb")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", C, "dir", "out", "priority", "100", "action", "block")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", C, "dev", "lo", "dir", "out", "priority", "10")
    sent = subprocess.run(ns.exec_argv(sys.executable, "-c", SEND_FROM_VB), capture_output=True, text=True)
    assert sent.returncode == 0, f"the kernel did not apply the lo bypass: {sent.stderr}"
    # A TCP socket bound to vb: the route's device, lo, is compared. (A UDP one's message may name another
    # device with IP_PKTINFO, even on a bound socket: not decidable, as the datagram's device is not known.)
    (result, datagram) = ns.probe([{"op": "tcp-local", "addr": C, "port": 600, "device": "vb"},
                                   udp(C, C, 600, device="vb")])  # fmt: skip
    assert reason_of(result)[0] == "the policy allows the flow without IPsec", result
    assert reason_of(datagram)[0].startswith(DEV_UNDECIDABLE), datagram
    # Without the bypass the kernel blocks the same socket's datagram.
    ns.ip("xfrm", "policy", "del", "src", C, "dst", C, "dev", "lo", "dir", "out")
    unsent = subprocess.run(ns.exec_argv(sys.executable, "-c", SEND_FROM_VB), capture_output=True, text=True)
    assert unsent.returncode == errno.EPERM, "the block did not apply"


def vb_and_vc(ns: Netns) -> None:
    """Two veths up: vb with C, vc with 10.79.0.1/24."""
    for name, net in (("vb", f"{C}/24"), ("vc", "10.79.0.1/24")):
        ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}-peer")
        ns.ip("link", "set", name, "up")
        ns.ip("addr", "add", net, "dev", name)


def send_from_c(ns: Netns, sockopt: str, peer: str) -> subprocess.CompletedProcess[str]:
    """One datagram from C to peer:600 on a socket given setsockopt(sockopt); exit status the errno."""
    send = (
        "import socket, struct, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.setsockopt({sockopt})\n"
        f"s.bind(('{C}', 0))\n"
        "try:\n"
        f"    s.sendto(b'x', ('{peer}', 600))\n"
        "except OSError as e:\n"
        "    sys.exit(e.errno)\n"
    )
    return subprocess.run(ns.exec_argv(sys.executable, "-c", send), capture_output=True, text=True)


def test_an_ipv4_udp_sockets_unicast_if_chooses_the_selector_device(ns: Netns) -> None:
    """Outside review: udp_sendmsg starts the route lookup from IP_UNICAST_IF (inet->uc_index) when the
    socket is not bound to a device, and the route then leaves by that device even where the table names
    another. The backend asked the route without it: a `dev vb` block the kernel applies was said not to.
    Since a message's IP_PKTINFO can name yet another device (test_an_ipv4_udp_message_may_name_another_
    device), an IPv4 UDP socket's selector device is not decidable, IP_UNICAST_IF or not."""
    peer = "10.79.0.2"
    vb_and_vc(ns)
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dev", "vb", "dir", "out", "action", "block")
    sent = send_from_c(ns, "socket.IPPROTO_IP, 50, struct.pack('!I', socket.if_nametoindex('vb'))", peer)
    assert sent.returncode == errno.EPERM, f"the kernel did not block by vb: {sent.stderr}"
    plain, pinned = ns.probe([udp(C, peer, 600), udp(C, peer, 600, unicast_if="vb")])
    assert reason_of(plain)[0].startswith(DEV_UNDECIDABLE), plain
    assert reason_of(pinned)[0].startswith(DEV_UNDECIDABLE), pinned


SEND_WITH_PKTINFO = """
import socket, struct, sys
bound, named, peer = sys.argv[1:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if bound != "-":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bound.encode())
s.bind(("10.78.0.1", 0))
info = struct.pack("i4s4s", socket.if_nametoindex(named), bytes(4), bytes(4))  # struct in_pktinfo
try:
    s.sendmsg([b"x"], [(socket.IPPROTO_IP, 8, info)], 0, (peer, 600))  # 8: IP_PKTINFO
except OSError as e:
    sys.exit(e.errno)
"""


def test_an_ipv4_udp_message_may_name_another_device(ns: Netns) -> None:
    """Outside review (f): udp_sendmsg starts ipc.oif from the bound device (ipcm_init_sk) and a message's
    IP_PKTINFO replaces it whenever ipi_ifindex is set (ip_cmsg_send), with no check against the bound device
    (IPv6's ip6_datagram_send_ctl has one). So an IPv4 UDP socket's outbound device, bound or not, cannot be
    read: the backend took the route's (vc) and said the `dev vb` block does not apply, while the kernel
    applies it to a message naming vb, from an unbound socket and from one bound to vc."""
    peer = "10.79.0.2"
    vb_and_vc(ns)
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dev", "vb", "dir", "out", "action", "block")
    for bound in ("-", "vc"):
        sent = subprocess.run(ns.exec_argv(sys.executable, "-c", SEND_WITH_PKTINFO, bound, "vb", peer),
                              capture_output=True, text=True)  # fmt: skip
        assert sent.returncode == errno.EPERM, f"bound {bound}: the kernel did not block by vb: {sent.stderr}"
    unbound, bound_vc = ns.probe([udp(C, peer, 600), udp(C, peer, 600, device="vc")])
    assert reason_of(unbound)[0].startswith(DEV_UNDECIDABLE), unbound
    assert reason_of(bound_vc)[0].startswith(DEV_UNDECIDABLE), bound_vc


SEND_AND_ASK = """
import errno, json, os, socket, sys
import secsock
local, peer, key = sys.argv[1:4]
# TCP: an IPv4 UDP message may name its own device (IP_PKTINFO), which makes a `dev` selector not decidable.
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if key == "uidrange":
    os.fchown(s.fileno(), 1000, -1)  # sockfs_setattr: the socket's sk_uid becomes 1000
if key == "tos":
    s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
s.bind((local, 5555 if key == "sport" else 0))
s.setblocking(False)
sent = s.connect_ex((peer, 600))  # EINPROGRESS once the SYN is routed, EPERM if a policy blocks it
sent = 0 if sent == errno.EINPROGRESS else sent
print(json.dumps({"sent": sent, "reason": secsock.query(s, peer=(peer, 600)).reason}))
"""


def a_rule_sends_the_peer_by_vc(ns: Netns, peer: str, *rule: str) -> None:
    """Main sends peer's /24 by vb, the rule's table by vc; a `dev vc` bypass above a block for C -> peer."""
    vb_and_vc(ns)
    ns.ip("route", "add", "10.80.0.0/24", "dev", "vb")
    ns.ip("route", "add", "10.80.0.0/24", "dev", "vc", "table", "100")
    ns.ip("rule", "add", *rule, "lookup", "100")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dev", "vc", "dir", "out", "priority", "10")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dir", "out", "priority", "100", "action", "block")


@pytest.mark.parametrize(
    "rule",
    [("uidrange", "1000-1000"), ("tos", "0x10"), ("ipproto", "tcp"), ("sport", "5555"), ("dport", "600")],
    ids=lambda rule: rule[0],
)
def test_the_route_is_asked_with_what_ip_rules_select_on(ns: Netns, rule: tuple[str, str]) -> None:
    """Outside review (d): the socket's own route lookup carries its sk_uid, TOS, protocol and ports
    (flowi4_init_output), and `ip rule` selects tables on each (fib_rule_match, fib4_rule_match). The
    backend asked RTM_GETROUTE with addresses, mark and device only (and so the caller's uid, and UDP as
    the protocol): the socket's SYN leaves by vc (the rule's table) and passes by a `dev vc` bypass,
    while the backend asked the main table, got vb, and answered with the block below the bypass (the
    kernel's answer for vb: the send is refused)."""
    peer = "10.80.0.2"
    a_rule_sends_the_peer_by_vc(ns, peer, *rule)
    done = subprocess.run(
        ns.exec_argv(sys.executable, "-c", SEND_AND_ASK, C, peer, rule[0]),
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sent"] == 0, "the kernel did not route the packet by vc"
    assert result["reason"].startswith("outbound: the policy allows the flow without IPsec;"), result


def test_an_ipv4_multicast_flows_selector_device_is_not_decidable(ns: Netns) -> None:
    """Outside review: toward a multicast peer udp_sendmsg starts from IP_MULTICAST_IF's index (mc_index),
    which no getsockopt returns (IP_MULTICAST_IF gives the address). The backend took the route's device: a
    `dev vb` block the kernel applies to a socket whose multicast device is vb was said not to apply."""
    group = "224.1.1.7"
    vb_and_vc(ns)
    ns.ip("route", "add", "224.0.0.0/4", "dev", "vc")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", group, "dev", "vb", "dir", "out", "action", "block")
    mreqn = "struct.pack('4s4si', bytes(4), bytes(4), socket.if_nametoindex('vb'))"
    sent = send_from_c(ns, f"socket.IPPROTO_IP, socket.IP_MULTICAST_IF, {mreqn}", group)
    assert sent.returncode == errno.EPERM, f"the kernel did not block by vb: {sent.stderr}"
    (result,) = ns.probe([udp(C, group, 600)])
    assert reason_of(result)[0].startswith("not decidable here: a selector that names a device"), result


@pytest.fixture(scope="session")
def bindtoifindex_fails(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An LD_PRELOAD shim whose getsockopt(SO_BINDTOIFINDEX) fails (tests/linux_c/bindtoifindex_fails.c)."""
    out = tmp_path_factory.mktemp("shim") / "bindtoifindex_fails.so"
    run("gcc", "-shared", "-fPIC", "-Wall", "-Werror", "-o", str(out),
        str(ROOT / "tests" / "linux_c" / "bindtoifindex_fails.c"), "-ldl")  # fmt: skip
    return str(out)


def with_preloaded(shim: str) -> str:
    """LD_PRELOAD with shim after what is already preloaded (the sanitizer run's ASan runtime must stay
    first)."""
    return " ".join(filter(None, (os.environ.get("LD_PRELOAD", ""), shim)))


def test_a_bound_device_is_read_by_name_where_its_index_cannot_be(
    ns: Netns, bindtoifindex_fails: str
) -> None:
    """Outside review (e): a failed getsockopt(SO_BINDTOIFINDEX) was read as "not bound". A kernel that
    cannot read the option back says ENOPROTOOPT: the bound device is then read by name (SO_BINDTODEVICE)
    and its index asked in the socket's namespace (SIOCGIFINDEX). The backend took a UDPv6 socket bound to
    lo for an unbound one (not decidable) where the kernel blocks it. Any other failure raises, naming the
    call, where it was read as "not bound" too."""
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "dev", "lo", "dir", "out", "action", "block")
    preload = ("env", f"LD_PRELOAD={with_preloaded(bindtoifindex_fails)}")
    unsupported = (*preload, f"SECSOCK_TEST_BINDTOIFINDEX_ERRNO={errno.ENOPROTOOPT}")
    bound, unbound = ns.probe([udp(A6, B6, device="lo"), udp(A6, B6)], wrap=unsupported)
    assert reason_of(bound)[0] == "the policy blocks the flow", bound
    assert reason_of(unbound)[0].startswith(DEV_UNDECIDABLE), unbound
    (failed,) = ns.probe([udp(A6, B6, device="lo")],
                         wrap=(*preload, f"SECSOCK_TEST_BINDTOIFINDEX_ERRNO={errno.EACCES}"))  # fmt: skip
    assert failed.get("errno") == errno.EACCES, failed
    assert "SO_BINDTOIFINDEX" in failed["message"], failed


FOREIGN_THREAD_QUERY = """
import ctypes, json, os, socket, sys, threading
import secsock
name, device, local, peer = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
made = {}
def inside() -> None:  # only this thread enters the namespace
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    assert libc.setns(fd, 0x40000000) == 0, ctypes.get_errno()  # CLONE_NEWNET
    os.close(fd)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
    s.bind((local, 0))
    made["s"] = s
thread = threading.Thread(target=inside)
thread.start()
thread.join()
try:
    print(json.dumps({"reason": secsock.query(made["s"], peer=(peer, 500)).reason}))
except OSError as exc:
    print(json.dumps({"error": type(exc).__name__, "errno": exc.errno, "message": str(exc)}))
"""


def test_a_bound_device_is_read_by_name_in_the_sockets_namespace(ns: Netns, bindtoifindex_fails: str) -> None:
    """Issue 14 review 2, item 9: the fallback's SIOCGIFINDEX must ask the socket's namespace, not the
    querying thread's. The test above binds to lo, device 1 in every namespace, and queries from inside, so
    if_nametoindex in the caller's namespace would pass it too. Here the socket is bound to a veth that the
    root namespace does not have, made by a thread that entered the namespace, and queried by the main
    thread in the root namespace. Item 12: a rename between the two reads of the name (the shim answers
    another name the second time) raises instead of taking another device's index."""
    ns.ip("link", "add", "vq", "type", "veth", "peer", "name", "vqp")
    with pytest.raises(OSError):
        socket.if_nametoindex("vq")  # not in the root namespace: a lookup there cannot answer
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "dev", "vq", "dir", "out", "action", "block")
    env = {**os.environ, "LD_PRELOAD": with_preloaded(bindtoifindex_fails),
           "SECSOCK_TEST_BINDTOIFINDEX_ERRNO": str(errno.ENOPROTOOPT)}  # fmt: skip

    def foreign_query(**extra: str) -> dict[str, Any]:
        argv = [sys.executable, "-c", FOREIGN_THREAD_QUERY, ns.name, "vq", A6, B6]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**env, **extra})
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result

    result = foreign_query()
    assert result.get("reason", "").startswith("outbound: the policy blocks the flow"), result
    renamed = foreign_query(SECSOCK_TEST_BINDTODEVICE_RENAMED="vq2")
    assert renamed.get("errno") == errno.EBUSY and "renamed" in renamed["message"], renamed


def test_a_local_peer_is_asked_from_the_device_the_socket_sends_by(ns: Netns) -> None:
    """Outside review (g): whether a peer is one of the host's addresses (reached over lo, whose
    disable_xfrm bypasses XFRM) was asked of the route without the socket's device. fib_table_lookup passes
    over a local route whose device is not the flow's oif: a socket bound to vb (or with IP_UNICAST_IF vb)
    reaches vc's address by vb, where XFRM applies (no SA: the datagram is dropped, XfrmOutNoStates), while
    an unbound one reaches it over lo (sent in the clear). The backend said "XFRM is disabled" for all three.
    Toward a multicast peer the device (IP_MULTICAST_IF) cannot be read: not decidable."""
    peer, group = "10.79.0.1", "224.1.1.7"
    vb_and_vc(ns)
    ns.ip("route", "add", "224.0.0.0/4", "dev", "vc")
    for dst in (peer, group):
        ns.ip("xfrm", "policy", "add", "src", C, "dst", dst, "dir", "out", "tmpl", "proto", "esp",
              "mode", "transport")  # fmt: skip

    def no_states_after(sockopt: str) -> int:
        """XfrmOutNoStates gained by one datagram to peer (a flow XFRM meets and finds no SA for)."""
        before = xfrm_stat(ns, "XfrmOutNoStates")
        assert send_from_c(ns, sockopt, peer).returncode == 0
        return xfrm_stat(ns, "XfrmOutNoStates") - before

    by_vb = "socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'vb'"
    assert no_states_after(by_vb) == 1, "XFRM did not apply by vb"
    assert no_states_after("socket.SOL_SOCKET, socket.SO_REUSEADDR, 1") == 0, "not over lo"
    steps = [udp(C, peer, 600), udp(C, peer, 600, device="vb"), udp(C, peer, 600, unicast_if="vb")]
    unbound, bound, pinned, multicast = ns.probe([*steps, udp(C, group, 600)])
    assert reason_of(unbound)[0].startswith("XFRM is disabled for the flow"), unbound
    no_sa = "no SA fits a template the policy requires"
    assert reason_of(bound)[0].startswith(no_sa), bound
    assert reason_of(pinned)[0].startswith(no_sa), pinned
    assert reason_of(multicast)[0].startswith(OUT_DEV_UNDECIDABLE), multicast


def test_policy_mark_must_match_the_socket_mark(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "mark", "5", "mask", "0xff",
          "index", "0x701")  # fmt: skip
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"] is None
    assert drive(ns, driver, "udp-peer", A, B, "500", "5")["pol_out"]["index"] == 0x701
    assert drive(ns, driver, "udp-peer", A, B, "500", str(0x105))["pol_out"]["index"] == 0x701


def test_a_policy_with_a_mark_makes_the_answer_undecidable(ns: Netns) -> None:
    """Issue 14 item 4: the kernel compares the packet's mark, which inbound is skb->mark (not SO_MARK) and
    outbound may come from a VTI key or netfilter. A policy with a mark that selects the flow makes that
    direction undecidable (not protected, and the reason says why), unless outbound SO_MARK matches it."""
    ns.ip("xfrm", "policy", "add", "src", B, "dst", A, "dir", "in", "mark", "5", "mask", "0xff",
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "mark", "5", "mask", "0xff",
          "action", "block")  # fmt: skip
    unmarked, marked = ns.probe([udp(A, B), {**udp(A, B, mark=5), "name": "m"}])
    undecidable = "not decidable here: a policy with a mark selects the flow"
    assert reason_of(unmarked)[0].startswith(undecidable) and reason_of(unmarked)[1].startswith(undecidable)
    assert reason_of(marked)[0] == "the policy blocks the flow"  # outbound: the socket's own mark matches
    assert reason_of(marked)[1].startswith(undecidable)  # inbound: SO_MARK says nothing about the packets
    assert unmarked["flags"] == marked["flags"] == 0


def test_the_best_marked_policy_decides_not_the_first_met(ns: Netns, driver: str) -> None:
    """Issue 14 review item 1: the lookup meets policies longest prefix first, not by priority. A worse marked
    policy at /32 must not hide a better marked one at /24: the kernel may apply that one (its mark is the
    packet's), so inbound is not decidable, never SECURED by the unmarked /16 behind them."""
    esp = ("tmpl", "proto", "esp", "mode", "transport")
    add = ("xfrm", "policy", "add", "src", "0.0.0.0/0", "dst")
    ns.ip(*add, f"{A}/32", "dir", "in", "mark", "1", "mask", "1", "priority", "100", "index", "0x1108", *esp)
    ns.ip(*add, "10.77.0.0/24", "dir", "in", "mark", "2", "mask", "2", "priority", "5", "index", "0x1110")
    ns.ip(*add, "10.77.0.0/16", "dir", "in", "priority", "50", "index", "0x1118", *esp)
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_in"] is None
    (result,) = ns.probe([udp(A, B)])
    undecidable = "not decidable here: a policy with a mark selects the flow"
    assert reason_of(result)[1].startswith(undecidable), result
    ns.ip("xfrm", "policy", "delete", "dir", "in", "index", "0x1110", "mark", "2", "mask", "2")
    # Without the better marked one, P1 (priority 100) cannot beat the unmarked /16 (priority 50).
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_in"] == {"index": 0x1118, "priority": 50}


def test_sub_policies_are_consulted_before_main(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "priority", "1", "index", "0x801")
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "ptype", "sub",
          "priority", "99", "index", "0x809")  # fmt: skip
    assert drive(ns, driver, "udp-peer", A, B, "500")["pol_out"]["index"] == 0x809


def test_forward_and_other_direction_policies_do_not_apply(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "fwd", "index", "0x902")
    ns.ip("xfrm", "policy", "add", "src", B, "dst", A, "dir", "out", "index", "0x909")
    matched = drive(ns, driver, "udp-peer", A, B, "500")
    assert matched["pol_out"] is None and matched["pol_in"] is None


def test_if_id_policy_outside_an_xfrm_interface_is_skipped(ns: Netns, driver: str) -> None:
    # Issue 14 item 3. The route to B leaves by lo, not by an XFRM interface: the kernel skips a policy with
    # an if_id for this flow (xfrm_policy_match), so the next one applies. Flows through an XFRM interface:
    # tests/vm. (A TCP socket: an IPv4 UDP one's device is not known, the next test.)
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "priority", "1", "if_id", "7",
          "action", "block", "index", "0x1001")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "priority", "9", "index", "0x1009")
    (result,) = ns.probe([{"op": "tcp-local", "addr": B, "port": 600}])
    assert result["flags"] == 0
    assert reason_of(result)[0] == "the policy allows the flow without IPsec", result


OUT_DEV_UNDECIDABLE = "not decidable here: the device the socket sends by decides"
MULTIPATH_UNDECIDABLE = "not decidable here: the connection may carry its data over other paths"


def test_an_mptcp_connection_is_not_decidable_where_a_policy_exists(ns: Netns) -> None:
    """Issue 14 review 2, item 3: an MPTCP socket was looked up as TCP from its first subflow's addresses
    and device (what getsockname/getpeername/SO_BINDTOIFINDEX describe), but the path manager may open or
    accept further subflows from and to other addresses and devices (__mptcp_subflow_connect, MP_JOIN), each
    looked up as its own flow: where the direction has any policy, the answer for the first subflow does not
    hold for the connection. The backend answered from the first subflow ("the policy allows the flow
    without IPsec"); now not decidable. Without any policy, every subflow meets none: still decided."""
    ns.ip("xfrm", "policy", "add", "src", "10.99.0.0/24", "dst", "10.99.0.0/24", "dir", "in")
    (alone,) = ns.probe([{"op": "tcp-local", "addr": B, "port": 600, "mptcp": True}])
    outbound, inbound = reason_of(alone)
    assert outbound == "no XFRM policy selects the flow", alone
    assert inbound.startswith(MULTIPATH_UNDECIDABLE), alone
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out")
    mptcp, tcp = ns.probe([{"op": "tcp-local", "addr": B, "port": 601, "mptcp": True},
                           {"op": "tcp-local", "addr": B, "port": 602}])  # fmt: skip
    assert reason_of(mptcp)[0].startswith(MULTIPATH_UNDECIDABLE), mptcp
    assert mptcp["flags"] == 0, mptcp
    assert reason_of(tcp)[0] == "the policy allows the flow without IPsec", tcp


def test_an_if_id_is_not_decidable_where_the_sending_device_is_not(ns: Netns, driver: str) -> None:
    """Outside review (a): resolve_if_id took the XFRM interface from the route where the device a socket
    sends by cannot be read (an IPv4 UDP message's IP_PKTINFO, an unbound UDPv6 socket's IPV6_PKTINFO): such
    a message can leave by an XFRM interface the route does not name, or by another device than the one it
    names, and with it go the interface's if_id policies. The backend said the if_id 0 bypass applies (here
    no interface exists, which it does not know without reading every link): not decidable now, for both
    families; a TCP socket and a UDPv6 socket bound to a device stay decided. Outbound, a flow the if_id 0
    lookup blocks or transforms never reaches an interface, whatever the device: still decided."""
    for local, peer in ((A, B), (A6, B6)):
        ns.ip("xfrm", "policy", "add", "src", local, "dst", peer, "dir", "out", "priority", "1", "if_id", "7",
              "action", "block")  # fmt: skip
        ns.ip("xfrm", "policy", "add", "src", local, "dst", peer, "dir", "out", "priority", "9")
    v4, v6, v6_bound, stream = ns.probe([udp(A, B), udp(A6, B6), udp(A6, B6, device="lo"),
                                         {"op": "tcp-local", "addr": B, "port": 600}])  # fmt: skip
    assert reason_of(v4)[0].startswith(OUT_DEV_UNDECIDABLE), v4
    assert reason_of(v6)[0].startswith(OUT_DEV_UNDECIDABLE), v6
    assert reason_of(v6_bound)[0] == "the policy allows the flow without IPsec", v6_bound
    assert reason_of(stream)[0] == "the policy allows the flow without IPsec", stream
    ns.ip("xfrm", "policy", "update", "src", A, "dst", B, "dir", "out", "priority", "9", "action", "block")
    (v4,) = ns.probe([udp(A, B)])
    assert reason_of(v4)[0] == "the policy blocks the flow", v4
    # ... and one it transforms (review 2, item 14): lo's disable_xfrm off, so the templates are looked at.
    run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.conf.lo.disable_xfrm=0"))
    ns.ip("xfrm", "policy", "update", "src", A, "dst", B, "dir", "out", "priority", "9",
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    (v4,) = ns.probe([udp(A, B)])
    assert reason_of(v4)[0].startswith("no SA fits a template the policy requires"), v4
    # Inbound, the interface the peer's packets arrive by decides the if_id: not decidable either.
    ns.ip("xfrm", "policy", "add", "src", B, "dst", A, "dir", "in", "if_id", "7", "action", "block")
    (v4,) = ns.probe([udp(A, B)])
    assert reason_of(v4)[1].startswith(OUT_DEV_UNDECIDABLE), v4


def test_block_policy_is_matched_and_not_secured(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "action", "block", "index", "0xb01")
    matched = drive(ns, driver, "udp-peer", A, B, "500")
    assert matched["pol_out"]["index"] == 0xB01
    assert matched["flags"] == 0 and matched["out"] == []


# --- namespaces: the socket's own XFRM state, whatever thread asks ----------------------------------------


def netns_queries(driver: str, *namespaces: str) -> list[tuple[str, dict[str, Any]]]:
    """For each namespace, a thread of one driver process enters it, makes a socket and queries it; the main
    thread, which stays in the root namespace, queries the same socket. (who, result) pairs in order."""
    argv = [driver, "netns", A, B, "500", *namespaces]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pairs = [line.split(" ", 1) for line in done.stdout.splitlines()]
    return [(who, json.loads(result)) for who, result in pairs]


def test_a_socket_is_answered_from_its_own_namespace(ns: Netns, driver: str) -> None:
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0xe01")
    (who1, inside), (who2, outside) = netns_queries(driver, ns.name)
    assert (who1, who2) == ("thread", "main")
    assert inside["pol_out"]["index"] == 0xE01
    # The main thread is in another namespace, yet the socket's own XFRM state answers.
    assert outside["pol_out"] == inside["pol_out"]


def test_threads_in_two_namespaces_get_their_own_answers(ns: Netns, driver: str) -> None:
    other = Netns("other")
    try:
        other.ip("addr", "add", f"{A}/24", "dev", "lo")
        ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0xe09")
        other.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0xe11")
        # Alternate, so the one snapshot must follow each switch.
        results = netns_queries(driver, ns.name, other.name, ns.name, other.name)
        indexes = [result["pol_out"]["index"] for _, result in results]
        assert indexes == [0xE09, 0xE09, 0xE11, 0xE11, 0xE09, 0xE09, 0xE11, 0xE11]
    finally:
        other.close()


def test_thread_is_back_in_its_namespace_after_a_foreign_socket(ns: Netns) -> None:
    home = os.stat("/proc/thread-self/ns/net")

    def bound() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((A, 0))
        return s

    with ns.call(bound) as sock:
        assert secsock.query(sock, peer=(B, 500)).flags == 0
    after = os.stat("/proc/thread-self/ns/net")
    assert (after.st_dev, after.st_ino) == (home.st_dev, home.st_ino)


# --- the snapshot: cost and freshness ----------------------------------------------------------------------


def test_queries_make_no_dump_while_nothing_changes(ns: Netns, driver: str) -> None:
    esp_policies(ns, A, B)
    result = drive(ns, driver, "repeat", "200", A, B, "500")
    assert result == {"repeat": 200, "dumps_during": 0, "conf_asks_during": 0}


@pytest.mark.parametrize(("local", "peer"), [(A, B), (A6, B6)], ids=["ipv4", "ipv6"])
def test_repeated_secured_path_queries_ask_the_kernel_nothing(
    ns: Netns, driver: str, local: str, peer: str
) -> None:
    """Issue 14: a flow that a policy with templates selects needs `all`'s disable_xfrm and disable_policy,
    whether the peer is one of the host's addresses (RTM_GETROUTE) and that device's settings (RTM_GETLINK).
    Each query read them all (/proc opens, two netlink requests), which a clear answer never did; they are
    kept per namespace for SS_XCHECK_INTERVAL_MS, so the queries after the first ask nothing (the clock is
    frozen: no time passes). B is in A's prefix on lo, a local route: lo's settings are read too."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, local, peer)
    result = drive(ns, driver, "repeat", "200", local, peer, "500")
    assert result == {"repeat": 200, "dumps_during": 0, "conf_asks_during": 0}
    first = drive(ns, driver, "udp-peer", local, peer, "500")
    assert first["conf_asks"] > 0, "the first query read nothing: the test does not reach the secured path"


def test_a_bound_devices_kind_is_kept_within_the_interval(ns: Netns, driver: str) -> None:
    """Outside review (i): whether a socket's bound device is a VRF master was an RTM_GETLINK on every query
    a device-naming selector met. It is kept per thread and namespace for SS_XCHECK_INTERVAL_MS like the
    other link facts (and counted with them): 50 queries within the interval (the clock is frozen) make
    none; they made 50. The socket: UDPv6 bound to lo, whose selector device is its bound one."""
    ns.ip("xfrm", "policy", "add", "src", A6, "dst", B6, "dev", "lo", "dir", "out", "action", "block")
    argv = ns.exec_argv("env", "SECSOCK_DRIVER_DEVICE=lo", "strace", "-f", "-qq", "-e", "trace=%network",
                        driver, "repeat", "50", A6, B6, "500")  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    *_, line = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert json.loads(line) == {"repeat": 50, "dumps_during": 0, "conf_asks_during": 0}
    link_asks = done.stderr.count("RTM_GETLINK")
    assert 0 < link_asks <= 2, f"{link_asks} RTM_GETLINK requests for 51 queries"


def test_a_devices_disable_xfrm_costs_a_steady_query_nothing_more(ns: Netns, driver: str) -> None:
    """A device's disable_xfrm (vb's here: a gateway's internal interface) makes an IPv4 outbound query ask
    which device its flow leaves by (vc): the route toward the peer, one RTM_GETROUTE, which each query
    asked again; it is kept with the other settings, keyed by what the route lookup carries, so the
    queries after the first ask nothing (frozen clock)."""
    peer = "10.79.0.2"
    vb_and_vc(ns)
    run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.conf.vb.disable_xfrm=1"))
    esp_policies(ns, C, peer)
    result = drive(ns, driver, "repeat", "200", C, peer, "500")
    assert result == {"repeat": 200, "dumps_during": 0, "conf_asks_during": 0}


def test_a_disable_xfrm_change_is_seen_within_the_interval(ns: Netns, driver: str) -> None:
    """The sysctls send no notification: what was read stands until SS_XCHECK_INTERVAL_MS (1 s) has passed
    on the (frozen, test-driven) clock, then the next query reads the new value. B is in A's prefix on lo (a
    local route): lo's own settings are turned off so that only `all`'s decides."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, B)
    flip = "sysctl -qw net.ipv4.conf.all.disable_xfrm=1"
    first, frozen, flipped, later = steps(ns, driver, "@clock 0", flip, "@clock 1000")
    assert first["reasons"] == frozen["reasons"] == flipped["reasons"], "a change seen before the interval"
    assert flipped["conf_asks"] == frozen["conf_asks"], "the query within the interval asked the kernel"
    assert later["reasons"][0] != flipped["reasons"][0] == first["reasons"][1], "not seen after the interval"
    assert later["reasons"][1] == flipped["reasons"][1]  # disable_xfrm decides outbound only
    assert later["conf_asks"] > flipped["conf_asks"]


def test_a_change_is_seen_by_the_very_next_query(ns: Netns, driver: str) -> None:
    steps = [
        f"ip xfrm policy add src {A} dst {B} dir out priority 5 index 0xf01",
        f"ip xfrm policy add src {A} dst {B} proto udp dir out priority 1 index 0xf09",
        f"ip xfrm policy delete src {A} dst {B} proto udp dir out",
        "ip xfrm policy flush",
    ]
    done = subprocess.run(
        ns.exec_argv(driver, "steps", A, B, "500", *steps), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    matched = [r["pol_out"]["index"] if r["pol_out"] else None for r in results]
    assert matched == [None, 0xF01, 0xF09, 0xF01, None]


def test_a_wildcard_bound_sockets_steady_query_keeps_the_thread_cache(ns: Netns, driver: str) -> None:
    """409e075: finish_flow's route lookups come before the query's namespace is known; b858093 kept that
    conf_for miss for the whole query, so every later cached fact was read again (300 asks in 50 queries,
    6 a query). What is left is the rules dump before the namespace is known: one a query, as before.
    (Outside review of i14-cpath.)"""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, B)
    result = drive(ns, driver, "repeat", "50", "0.0.0.0", B, "500")
    assert result["dumps_during"] == 0
    assert result["conf_asks_during"] <= 50, result


def test_an_ipv6_socket_bound_to_the_ipv4_wildcard_finds_its_source(ns: Netns, driver: str) -> None:
    """An AF_INET6 socket bound to ::ffff:0.0.0.0 (the IPv4 wildcard) is wildcard-bound: its source is the
    route's (A), as for 0.0.0.0. It was matched as source 0.0.0.0, so the policy for any source (0x619, an ESP
    template: with its SAs a false SECURED) won over the kernel's pick for src A (0x611, no template). Outside
    review of i14-cpath."""
    ns.ip("xfrm", "policy", "add", "src", f"{A}/32", "dst", f"{B}/32", "dir", "out", "priority", "10",
          "index", "0x611")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", "0.0.0.0/0", "dst", f"{B}/32", "dir", "out", "priority", "100",
          "index", "0x619", "tmpl", "src", A, "dst", B, "proto", "esp", "mode", "tunnel")  # fmt: skip
    for local in ("0.0.0.0", "::", "::ffff:0.0.0.0"):
        peer = B if local == "0.0.0.0" else f"::ffff:{B}"
        result = drive(ns, driver, "udp-peer", local, peer, "500")
        assert result["pol_out"]["index"] == 0x611, (local, result["pol_out"])


def steps_at_once(
    ns: Netns, driver: str, local: str, peer: str, steps: list[str], prefix: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The driver's steps with every query tried at once first (SECSOCK_DRIVER_AT_ONCE): its JSON lines.
    prefix runs it under another command (strace)."""
    env = dict(os.environ, SECSOCK_DRIVER_AT_ONCE="1")
    done = subprocess.run(
        ns.exec_argv(*prefix, driver, "steps", local, peer, "500", *steps),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_flow_needing_an_uncached_lookup_is_not_tried_at_once_again(
    ns: Netns, driver: str, tmp_path: Path
) -> None:
    """A socket bound to :: finds its source by a probe on every query (source_toward_peer: no cache keeps
    it), which an attempt at once must refuse; its next 64 queries on the thread are then not tried at once at
    all (secsock_query_at_once's skip), rather than reading the socket twice each time. Counted with strace:
    each attempt, at once or in full, reads the socket's SO_COOKIE once (outside review of i14-gil)."""
    trace = tmp_path / "cookie.strace"
    strace = ("strace", "-f", "-qq", "-e", "trace=getsockopt", "-o", str(trace))
    results = steps_at_once(ns, driver, "::", A6, ["true"] * 5, prefix=strace)
    assert [r["at_once"] for r in results] == [False] * 6
    cookies = sum("SO_COOKIE" in line for line in trace.read_text().splitlines())
    # Six full queries; two attempts at once: the first (no snapshot yet: refused before the flow) and the
    # second (refused at the probe, which starts the skip). Without the skip: twelve.
    assert cookies == 6 + 2, cookies


def test_only_a_steady_query_is_answered_at_once(ns: Netns, driver: str) -> None:
    """secsock_query_at_once keeps the caller's lock, the GIL (issue 14, speed): it answers only a query that
    finds the snapshot steady, and then exactly what secsock_query answers (the driver compares the two on
    every query it answered at once, and fails otherwise); a queued change, a cross-check due, a cached fact
    past its second or a mutex held elsewhere leave it to secsock_query, without waiting. The driver is built
    with assertions, which stop it if anything that waits runs at once (outside review of i14-gil)."""
    steps = [
        "true",  # nothing changed: at once
        f"ip xfrm policy add src {A} dst {B} dir out priority 5 index 0xf41",  # queued: not at once
        "true",  # applied by the full query: at once, the policy seen
        "@clock 0",  # the freshness clock frozen where it is: still within the cross-check's second
        "@clock 1000",  # the cross-check is due: not at once
        "true",
        "@held",  # the snapshot's mutex held: refused at once (no query follows)
        "@heldkind",  # the socket-facts cache's mutex held: the same
        "true",
        # With templates the flow's facts are read (lo's disable_xfrm, disable_policy: both peers are local)
        f"ip xfrm policy add src {A} dst {B} proto udp dir out priority 3 index 0xf49"
        " tmpl proto esp mode transport",
        "true",  # the facts within their second: at once
        "@checked 1000",  # the facts' second over, the cross-check not due: refused where they are read
        "true",
    ]
    results = steps_at_once(ns, driver, A, B, steps)
    said = [r["held_at_once"] if "held_at_once" in r else r["at_once"] for r in results]
    # The first query (before any step) reads the tables: not at once.
    T, F = True, False
    assert said == [F, T, F, T, T, F, T, F, F, T, F, T, F, T], said
    queries = [r for r in results if "at_once" in r]
    matched = [r["pol_out"]["index"] if r.get("pol_out") else None for r in queries]
    assert matched == [None, None, 0xF41, 0xF41, 0xF41, 0xF41, 0xF41, 0xF41, 0xF49, 0xF49, 0xF49, 0xF49]
    asks = [r["conf_asks"] for r in queries]
    assert asks[9] == asks[8] and asks[10] > asks[9] and asks[11] == asks[10], asks


def test_no_ipv4_route_dump_in_a_namespace_not_known(ns: Netns, driver: str, tmp_path: Path) -> None:
    """conf_local_dev dumps the IPv4 routes while the rules are plain, and keeps them for the namespace
    (conf_for). In a namespace not known (f.ns.known 0: no SIOCGSKNS and no /proc) nothing keeps them, and
    every call dumped up to 4,096 routes: now it never dumps them there and takes the full path (c07c407).
    flow_xfrm_disabled asked three times (tests/linux_c/synthetic.c, local-dev-netns-*), the dumps counted
    with strace: the rules read each time but no routes when not known; both once when known."""

    def dumps(case: str) -> tuple[int, int]:
        trace = tmp_path / f"{case}.strace"
        strace = ("strace", "-f", "-qq", "-e", "trace=sendto", "-o", str(trace))
        argv = ns.exec_argv(*strace, driver, "synthetic", case)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["answers"]) == 3
        lines = [line for line in trace.read_text().splitlines() if "NLM_F_DUMP" in line]
        return sum("RTM_GETRULE" in line for line in lines), sum("RTM_GETROUTE" in line for line in lines)

    rules, routes = dumps("local-dev-netns-unknown")
    assert rules >= 3 and routes == 0, (rules, routes)
    assert dumps("local-dev-netns-known") == (1, 1)


def test_notification_overrun_falls_back_to_a_full_dump(ns: Netns, driver: str) -> None:
    # A 1-byte request gives the kernel's smallest notification buffer: 300 changes overrun it.
    proc = subprocess.Popen(
        ns.exec_argv(driver, "overrun", "1", A, B, "500"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdin is not None
    assert proc.stderr.readline().strip() == "ready"
    ns.ip_batch(
        [f"xfrm policy add src 10.78.{i // 250}.{i % 250}/32 dst {B}/32 dir out" for i in range(300)]
        + [f"xfrm policy add src {A}/32 dst {B}/32 dir out priority 3 index 0xa01"]
    )
    out, err = proc.communicate("go\n", timeout=60)
    assert proc.returncode == 0, err
    first, second, overruns = (json.loads(line) for line in out.splitlines() if line.startswith("{"))
    assert first["pol_out"] is None
    assert overruns["overruns"] >= 1, "the test did not overrun the notification queue"
    assert second["pol_out"] == {"index": 0xA01, "priority": 3}
    assert second["dumps"] > first["dumps"]


# --- privileges and bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        ("setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin"),
        ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all"),
    ],
    ids=["root-without-cap_net_admin", "nobody"],
)
def test_without_cap_net_admin_permission_error(ns: Netns, wrap: tuple[str, ...]) -> None:
    (result,) = ns.probe([udp(A, B)], wrap=wrap, other_user=True)
    assert result["error"] == "PermissionError", result
    assert result["errno"] == errno.EPERM
    assert "CAP_NET_ADMIN" in result["message"]


DROP_MARK_CAPS = """
import ctypes, socket, sys
import secsock
v6 = ":" in sys.argv[1]
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 7)
s.bind(("::" if v6 else "0.0.0.0", 0))  # the wildcard address: the query finds the source toward the peer
secsock.query(s, peer=(sys.argv[1], 500))  # with the capabilities: the namespace's snapshot is kept
libc = ctypes.CDLL(None, use_errno=True)
header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
data = (ctypes.c_uint32 * 6)()
assert libc.capget(header, data) == 0
data[0] &= ~((1 << 12) | (1 << 13))  # effective: no CAP_NET_ADMIN, no CAP_NET_RAW
assert libc.capset(header, data) == 0
try:
    secsock.query(s, peer=(sys.argv[1], 500))
except OSError as e:
    print(e)
else:
    print("answered")
"""


def test_a_source_probe_that_cannot_carry_the_mark_raises(ns: Netns) -> None:
    """Outside review (h): the source address of a socket bound to the wildcard address comes from a probe
    socket given the socket's mark, so that mark rules pick the same route. A failed setsockopt(SO_MARK)
    (it needs CAP_NET_RAW or CAP_NET_ADMIN) was ignored, and the answer was for the route of an unmarked
    flow, which the socket never sends. The thread loses both capabilities after a first query (the
    snapshot is kept, so nothing else needs them): the second query raises, naming the call. IPv4 asks
    the socket's own route instead (review of i14-route, item 3: RTA_MARK needs no privilege), and answers."""
    for peer in (B, B6):
        argv = ns.exec_argv(sys.executable, "-c", DROP_MARK_CAPS, peer)
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env())
        assert done.returncode == 0, done.stderr
        if peer == B:
            assert done.stdout.strip() == "answered", done.stdout
        else:
            assert "setsockopt(SO_MARK)" in done.stdout and os.strerror(errno.EPERM) in done.stdout, (
                done.stdout
            )


def test_not_a_socket_is_enotsock() -> None:
    with open(os.devnull, "rb") as f, pytest.raises(OSError) as caught:
        secsock.query(f.fileno())
    assert caught.value.errno == errno.ENOTSOCK
    assert "SO_DOMAIN" in str(caught.value)


def test_closed_descriptor_is_ebadf() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = s.detach()
    os.close(fd)
    with pytest.raises(OSError) as caught:
        secsock.query(fd)
    assert caught.value.errno == errno.EBADF


def test_unix_socket_is_refused_by_family() -> None:
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError, match="AF_INET"):
        secsock.query(a)


def test_unconnected_udp_needs_peer() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="peer"):
            secsock.query(s)
        with pytest.raises(ValueError, match="peer"):
            secsock.query(s, peer=("::1", 500))


def test_unconnected_tcp_is_enotconn() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError) as caught:
        secsock.query(s)
    assert caught.value.errno == errno.ENOTCONN


def test_raw_socket_is_refused_by_type() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        with pytest.raises(ValueError, match="SOCK_STREAM or SOCK_DGRAM"):
            secsock.query(s, peer=("127.0.0.1", 1))


def test_backend_error_paths_leak_no_descriptor(ns: Netns) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for _ in range(50):
            with pytest.raises(ValueError):
                secsock.query(s)
            secsock.query(s, peer=("127.0.0.2", 500))
    assert (
        len(os.listdir("/proc/self/fd")) <= before + 3
    )  # the snapshot's notification socket, its epoll and request sockets


# --- the fast path: netns cookie, fork generation, marks read per query -----------------------------------


def test_foreign_thread_route_lookup_happens_in_the_sockets_namespace(ns: Netns, driver: str) -> None:
    # The thread inside builds the snapshot; the main thread (root namespace) then asks about the same socket:
    # equal netns cookies let it use that snapshot, but the inbound interface selector needs a route lookup,
    # which must be asked in the socket's namespace (in the root namespace A is not local, and its device
    # unknown).
    ns.ip("xfrm", "policy", "add", "src", B, "dst", A, "dev", "lo", "dir", "in", "index", "0xe20")
    (who1, inside), (who2, outside) = netns_queries(driver, ns.name)
    assert (who1, who2) == ("thread", "main")
    assert inside["pol_in"]["index"] == 0xE20
    assert outside["pol_in"] == inside["pol_in"]


PROBE_HEAD = f"""
import os, socket, subprocess, sys
import secsock

def ask(s):
    # A block policy for the flow is what these tests look for (its reason says so).
    reason = secsock.query(s, peer=({B!r}, 500)).reason
    return "blocked" if reason.startswith("outbound: the policy blocks") else "clear"

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({A!r}, 0))
"""


def run_probe(ns: Netns, body: str) -> list[str]:
    done = subprocess.run(
        ns.exec_argv(sys.executable, "-c", PROBE_HEAD + body),
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_fork_child_reads_its_own_notifications(ns: Netns) -> None:
    # The child must not read the parent's notification socket: if it did, it would take the notification
    # of its own change away from the parent, whose next query would then miss the change.
    body = f"""
print(ask(s)); sys.stdout.flush()
pid = os.fork()
if pid == 0:
    subprocess.run(["ip", "xfrm", "policy", "add", "src", {A!r}, "dst", {B!r}, "dir", "out",
                    "action", "block"], check=True)
    os.write(1, (ask(s) + "\\n").encode())
    os._exit(0)
os.waitpid(pid, 0)
print(ask(s))
"""
    assert run_probe(ns, body) == ["clear", "blocked", "blocked"]


def test_a_mark_set_between_queries_is_seen(ns: Netns) -> None:
    # SO_MARK is read per query (only when a policy has a mark mask): a live socket may change it any time.
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "mark", "5", "mask", "0xff",
          "action", "block")  # fmt: skip
    body = """
answers = [ask(s)]
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 5)
answers.append(ask(s))
s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, 6)
answers.append(ask(s))
print(*answers)
"""
    assert run_probe(ns, body) == ["clear", "blocked", "clear"]


def test_a_datagram_socket_that_reconnects_is_answered_for_its_new_peer(ns: Netns) -> None:
    # Type, protocol and namespace are cached per socket cookie; the addresses never are.
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "proto", "udp", "dport", "500", "dir", "out",
          "action", "block")  # fmt: skip
    body = f"""
answers = []
for port in (500, 501, 500):
    s.connect(({B!r}, port))
    blocked = secsock.query(s).reason.startswith("outbound: the policy blocks")
    answers.append("blocked" if blocked else "clear")
print(*answers)
"""
    assert run_probe(ns, body) == ["blocked", "clear", "blocked"]


def test_a_reused_descriptor_number_is_not_taken_for_the_old_socket() -> None:
    require_root()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        tcp = socket.create_connection(listener.getsockname())
        with tcp, listener.accept()[0]:
            fd = tcp.fileno()
            assert secsock.query(tcp).flags == 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                os.dup2(udp.fileno(), fd)  # the same number, now a datagram socket that is not connected
                with pytest.raises(ValueError, match="peer is required"):
                    secsock.query(fd)


def test_policy_changes_are_applied_in_place_without_a_dump(ns: Netns, driver: str) -> None:
    steps = [
        f"ip xfrm policy add src {A} dst {B} dir out priority 5 index 0xf21",
        f"ip xfrm policy add src {A} dst {B} proto udp dir out priority 1 index 0xf29",
        f"ip xfrm policy add src {A} dst {B} dir fwd priority 1",
        f"ip xfrm policy delete src {A} dst {B} proto udp dir out",
        f"ip xfrm policy update src {A} dst {B} dir out priority 7",
        # A tie on priority goes to the older policy; an update makes a policy the newest, as in a dump.
        f"ip xfrm policy add src {A} dst {B} proto udp dir out priority 7 index 0xf31",
        f"ip xfrm policy update src {A} dst {B} dir out priority 7",
    ]
    done = subprocess.run(
        ns.exec_argv(driver, "steps", A, B, "500", *steps), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    matched = [(r["pol_out"]["index"], r["pol_out"]["priority"]) if r["pol_out"] else None for r in results]
    assert matched[:6] == [None, (0xF21, 5), (0xF29, 1), (0xF29, 1), (0xF21, 5), (0xF21, 7)]
    assert matched[6] == (0xF21, 7)  # the older of two at priority 7
    assert {r["dumps"] for r in results} == {results[0]["dumps"]}, "a policy change made a dump"
    assert [r["pol_updates"] for r in results] == [0, 1, 2, 2, 3, 4, 5, 6]
    # The last answer is what a fresh dump of the same table gives.
    fresh = drive(ns, driver, "udp-peer", A, B, "500")
    assert (fresh["pol_out"]["index"], fresh["pol_out"]["priority"]) == matched[7]


def test_a_policy_flush_still_dumps(ns: Netns, driver: str) -> None:
    steps = [f"ip xfrm policy add src {A} dst {B} dir out index 0xf41", "ip xfrm policy flush"]
    done = subprocess.run(
        ns.exec_argv(driver, "steps", A, B, "500", *steps), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    first, added, flushed = (json.loads(line) for line in done.stdout.splitlines())
    assert added["pol_out"]["index"] == 0xF41 and added["dumps"] == first["dumps"]
    assert flushed["pol_out"] is None and flushed["dumps"] > added["dumps"]


# --- freshness: lost notifications and namespaces (issue 14 items 11 and 12) --------------------------------


def steps(ns: Netns, driver: str, *commands: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        ns.exec_argv(driver, "steps", A, B, "500", *commands), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_sa_table_is_read_again_when_a_time_limits_maybe_settles(ns: Netns, driver: str) -> None:
    """A time limit read as maybe acted on schedules a read of the SA table for when it turns sure
    (recheck_at, ss_sa_settle); nothing tested that the read is made. The hook sets the time on the frozen
    freshness clock: no read before it, one read once it has passed, none after (the read clears it)."""
    results = steps(ns, driver, "@clock 0", "@recheck 500", "@clock 400", "@clock 200", "@clock 100")
    dumps = [r["dumps"] for r in results]
    assert dumps[1:] == [dumps[0]] * 3 + [dumps[0] + 1] * 2, dumps


def test_a_lost_policy_notification_is_caught_by_the_counts_or_the_maximum_age(
    ns: Netns, driver: str
) -> None:
    """The kernel drops a notification whose GFP_ATOMIC allocation fails, silently: the count cross-check
    (once a second) catches an added policy, the maximum age (30 s) an update that leaves the counts equal.
    The clock is the test hook's, frozen first and moved on by hand: the first check is made at the first
    step, whenever the dump before it was, and the rest follows from it."""
    results = steps(
        ns, driver,
        "@clock 1000",  # frozen a second past the first dump: the counts are checked (equal) here
        "@drop 1",
        f"ip xfrm policy add src {A}/32 dst {B}/32 dir out priority 10 index 0x209 action allow",
        "@clock 999",  # within the interval: no check yet
        "@clock 1",  # the interval is over: the counts differ (maybe a change in flight)
        "@clock 1000",  # the same difference a second later: dumped again
        "@drop 1",
        f"ip xfrm policy update src {A}/32 dst {B}/32 dir out priority 20 index 0x209 action allow",
        "@clock 1000",  # counts equal: nothing seen
        "@clock 29000",  # 30 s since the policies were dumped
    )  # fmt: skip
    matched = [r["pol_out"]["priority"] if r["pol_out"] else None for r in results]
    assert matched == [None, None, None, None, None, None, 10, 10, 10, 10, 20]
    assert [r["xcheck"] for r in results] == [0] * 6 + [1] * 5
    assert results[5]["dumps"] == results[0]["dumps"] and results[6]["dumps"] == results[0]["dumps"] + 1
    assert results[9]["dumps"] == results[6]["dumps"], "equal counts made a dump"


def test_an_sa_count_change_no_notification_announces_is_not_reread_at_once(ns: Netns, driver: str) -> None:
    """An IKE daemon's XFRM_MSG_ALLOCSPI adds a larval SA with no notification (as xfrm_state_find adds an
    acquire's, and xfrm_state_add removes it silently): the SAD count differs while it lives. A difference
    seen once is not a re-read; the same difference at the next check is (a lost notification, or a larval
    SA that stays), and one that went away by then is forgotten."""
    allocspi = f"ip xfrm state allocspi src {A} dst {B} proto esp >/dev/null"
    results = steps(
        ns, driver,
        "@clock 1000",  # checked, equal
        allocspi,  # the kernel's SAD count +1, nothing told
        "@clock 1000",  # differs by one: not yet
        f"ip xfrm state deleteall src {A} dst {B} proto esp",  # as a real SA replacing it: count equal
        "@clock 1000",  # equal: the difference is forgotten
        allocspi,
        "@clock 1000",  # differs by one
        "@clock 1000",  # the same difference again: the SA table is dumped
        "@clock 1000",  # equal now
    )  # fmt: skip
    assert [r["xcheck"] for r in results] == [0] * 8 + [1] * 2
    assert results[7]["dumps"] == results[0]["dumps"] and results[8]["dumps"] == results[0]["dumps"] + 1
    assert results[9]["dumps"] == results[8]["dumps"]
    assert all(r["counts_agree"] for r in results)


def test_forward_policies_do_not_make_the_cross_check_reread(ns: Netns, driver: str) -> None:
    """Forward policies are skipped by the snapshot and not in the kernel's in/out counts: with some dumped
    and one more announced, the checks of the steady state find the counts equal (no re-read)."""
    for i, (src, dst) in enumerate(((A, B), (B, A), (f"{A}/24", f"{B}/31"))):
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", "fwd", "index", hex(0x502 + 8 * i))
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0x521", "action", "allow")
    results = steps(
        ns, driver,
        "@clock 1000", "@clock 1000",
        f"ip xfrm policy add src {B}/31 dir fwd index 0x532",
        "@clock 1000", "@clock 1000", "@clock 1000",
    )  # fmt: skip
    assert [r["xcheck"] for r in results] == [0] * 7
    assert {r["dumps"] for r in results} == {results[0]["dumps"]}
    assert all(r["pol_out"] == {"index": 0x521, "priority": 0} for r in results)


def test_the_running_counts_equal_a_walk_after_mixed_changes(ns: Netns, driver: str) -> None:
    """The cross-check reads counts kept as the snapshot changes (not a walk of every record each second):
    after policies of every direction are added, updated and deleted in place, and SAs dumped and deleted,
    they equal a walk of the snapshot (the test hook), and the checks find nothing to dump again."""
    results = steps(
        ns, driver,
        f"ip xfrm state allocspi src {A} dst {B} proto esp >/dev/null",
        "@clock 1000",
        "@clock 1000",  # dumped: the larval SA is in the snapshot
        f"ip xfrm policy add src {A} dst {B} dir out index 0x301 priority 5 action allow",
        f"ip xfrm policy add src {B} dst {A} dir in index 0x308 priority 5 action allow",
        f"ip xfrm policy add src {B} dst {A} dir fwd index 0x30a priority 5 action allow",
        f"ip xfrm policy update src {A} dst {B} dir out index 0x301 priority 6 action allow",
        f"ip xfrm policy add src {A}/32 dst {B}/31 dir out index 0x309 priority 7 action allow",
        "ip xfrm policy delete dir in index 0x308",
        "ip xfrm policy delete dir fwd index 0x30a",
        f"ip xfrm state deleteall src {A} dst {B} proto esp",  # applied in place
        "@clock 1000",
        "@clock 1000",
    )  # fmt: skip
    assert all(r["counts_agree"] for r in results), [r["counts_agree"] for r in results]
    assert [r["xcheck"] for r in results] == [0, 0, 0] + [1] * 11
    assert {r["dumps"] for r in results[3:]} == {results[3]["dumps"]}, "a change in place made a dump"
    assert results[-1]["pol_out"] == {"index": 0x301, "priority": 6}


def nscycle(driver: str, rounds: int, namespaces: list[Netns]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Each namespace's socket queried in turn from the main thread, which is in none of them."""
    names = [n.name for n in namespaces]
    done = subprocess.run(
        [driver, "nscycle", str(rounds), A, B, "500", *names], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    queries = [
        {"round": int(r), "ns": name, **json.loads(rest)}
        for r, name, rest in (line.split(" ", 2) for line in lines[:-2])
    ]
    fds = {**json.loads(lines[-2]), **json.loads(lines[-1])}
    return queries, fds


def more_namespaces(count: int) -> list[Netns]:
    made = []
    try:
        for _ in range(count):
            made.append(Netns("kept"))
            made[-1].ip("addr", "add", f"{A}/24", "dev", "lo")
    except BaseException:
        for ns in made:
            ns.close()
        raise
    return made


def test_alternating_namespaces_keep_their_snapshots(ns: Netns, driver: str) -> None:
    """A server querying sockets of two namespaces in turn dumps once per namespace, not at each switch, and
    each answer is its own namespace's (the policy is in one of them only)."""
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0x219", "action", "allow")
    (other,) = more_namespaces(1)
    try:
        queries, fds = nscycle(driver, 3, [ns, other])
    finally:
        other.close()
    assert [(q["ns"], q["pol_out"]) for q in queries] == [
        (n.name, {"index": 0x219, "priority": 0} if n is ns else None) for _ in range(3) for n in (ns, other)
    ]
    assert [q["dumps"] for q in queries[2:]] == [queries[1]["dumps"]] * 4, "a switch dumped again"
    assert queries[0]["dumps"] == 2 and queries[1]["dumps"] == 4
    # Two sockets, and per kept namespace a notification socket, its epoll instance and a request socket;
    # fini closes them.
    assert fds["fds_rounds"] == fds["fds_before"] + 2 + 3 * 2
    assert fds["fds_after"] == fds["fds_before"]


def test_namespaces_beyond_the_bound_are_evicted(ns: Netns, driver: str) -> None:
    """Eight namespaces keep their snapshots; a ninth evicts the least recently used one (its descriptors
    closed), so a cycle over nine dumps at every query: the bound holds, and nothing leaks."""
    others = more_namespaces(8)
    try:
        kept, kept_fds = nscycle(driver, 2, [ns, *others[:7]])
        evicted, evicted_fds = nscycle(driver, 2, [ns, *others])
    finally:
        for other in others:
            other.close()
    assert [q["dumps"] for q in kept if q["round"] == 1] == [16] * 8
    assert [q["dumps"] for q in evicted if q["round"] == 1] == list(range(20, 38, 2))
    assert max(q["kept"] for q in evicted) == 8
    for fds, sockets in ((kept_fds, 8), (evicted_fds, 9)):
        assert fds["fds_rounds"] == fds["fds_before"] + sockets + 3 * 8
        assert fds["fds_after"] == fds["fds_before"]


def nssteps(
    driver: str, namespaces: list[Netns], *commands: str, inside: Netns | None = None
) -> list[dict[str, Any]]:
    """Steps run by the driver's main thread, in none of the namespaces (or in inside): "?NAME" queries NAME's
    socket (a dict with "ns"), "@fds" gives {"fds", "overruns"}, "@clock"/"@drop"/"@failroutes"/"@rcvbuf"/
    "@nosysadmin" are test hooks, anything else a shell command."""
    names = [n.name for n in namespaces]
    argv = [driver, "nssteps", A, B, "500", *names, "--", *commands]
    done = subprocess.run(
        inside.exec_argv(*argv) if inside else argv, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    out: list[dict[str, Any]] = []
    for line in done.stdout.splitlines():
        name, _, rest = line.partition(" ")
        out.append({"ns": name, **json.loads(rest)} if name in names else json.loads(line))
    return out


def test_a_failed_route_dump_takes_the_full_path_not_an_error(ns: Netns, driver: str) -> None:
    """The IPv4 route dump that tells whether the routes are plain (read with the rules, at most once a
    second) can fail on a host whose routes churn (interrupted twice: EAGAIN; ENOBUFS; a timeout): the
    query then reads the socket's settings as without the shortcut and answers, where it raised (review of
    i14-speed3, item 2). The test hook fails the next dump."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, B)
    out = nssteps(driver, [ns], "@clock 0", "@failroutes 1", f"?{ns.name}", "@clock 1000", f"?{ns.name}")
    assert [q.get("error") for q in out] == [None] * 2, out
    no_sa = 4  # SECSOCK_REASON_NO_SA (secsock_backend.h)
    assert [q["reasons"] for q in out] == [[no_sa, no_sa]] * 2


def test_each_namespace_keeps_its_own_xfrm_settings(ns: Netns, driver: str) -> None:
    """The disable_xfrm/disable_policy values kept for 1 s are kept per namespace: a thread answering for
    sockets of two namespaces in turn reads each one's once, and never answers with the other's (`all`'s
    disable_xfrm is set in one of them only)."""
    (other,) = more_namespaces(1)
    try:
        for where in (ns, other):
            for name in ("disable_xfrm", "disable_policy"):
                run(*where.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
            esp_policies(where, A, B)
        run(*other.exec_argv("sysctl", "-qw", "net.ipv4.conf.all.disable_xfrm=1"))
        out = nssteps(
            driver, [ns, other],
            "@clock 0", f"?{ns.name}", f"?{other.name}", f"?{ns.name}", f"?{other.name}",
        )  # fmt: skip
    finally:
        other.close()
    assert [q.get("error") for q in out] == [None] * 4
    no_sa, disabled = 4, 10  # SECSOCK_REASON_NO_SA, SECSOCK_REASON_XFRM_DISABLED (secsock_backend.h)
    assert [q["reasons"] for q in out] == [[no_sa, no_sa], [disabled, no_sa]] * 2
    assert out[1]["conf_asks"] > out[0]["conf_asks"] > 0
    assert out[3]["conf_asks"] == out[2]["conf_asks"] == out[1]["conf_asks"], "a switch read them again"


def churn(ns: Netns) -> str:
    """A shell command adding 64 policies in ns: more notifications than a 1 KiB buffer holds."""
    add = f"ip xfrm policy add src 10.88.0.$i dst {B} dir out index $((i*8+1)) action allow"
    return f"ip netns exec {ns.name} sh -c 'for i in $(seq 1 64); do {add}; done'"


def test_a_thread_without_cap_sys_admin_keeps_answering_across_checks(ns: Netns, driver: str) -> None:
    """A thread outside the socket's namespace, once the snapshot is kept, answers from it without setns: the
    count cross-check and the maximum-age dumps go over the request socket made in that namespace with the
    notification socket, so they need no CAP_SYS_ADMIN either."""
    ns.ip("xfrm", "policy", "add", "src", A, "dst", B, "dir", "out", "index", "0x411", "action", "allow")
    out = nssteps(
        driver, [ns],
        f"?{ns.name}", "@nosysadmin", f"?{ns.name}",
        "@clock 1000", f"?{ns.name}",  # a cross-check
        f"ip -n {ns.name} xfrm policy add src {A} dst {B}/31 dir out index 0x419 action allow",
        "@clock 1000", f"?{ns.name}",
        "@clock 30000", f"?{ns.name}",  # past the maximum age: both tables dumped again
    )  # fmt: skip
    assert [q.get("error") for q in out] == [None] * 5
    assert [q["pol_out"] for q in out] == [{"index": 0x411, "priority": 0}] * 5
    assert out[4]["dumps"] == out[3]["dumps"] + 2 and out[3]["dumps"] == out[0]["dumps"]


def test_a_parked_snapshot_past_the_maximum_age_is_closed_at_the_next_switch(ns: Netns, driver: str) -> None:
    """A parked snapshot both of whose tables are past the maximum age is worth nothing (its return re-reads
    them) but would keep the namespace alive after `ip netns del`, three descriptors open and its queue full:
    the next switch closes it, and does not park a current one as old."""
    (other,) = more_namespaces(1)
    try:
        out = nssteps(
            driver, [ns, other],
            f"?{ns.name}", f"?{other.name}", "@fds",  # both kept
            "@clock 30000", f"?{ns.name}", "@fds",  # both past the age: other not parked, ns's closed
        )  # fmt: skip
    finally:
        other.close()
    _, second, kept, again, after = out
    assert (second["kept"], again["kept"]) == (2, 1)
    assert after["fds"] == kept["fds"] - 3
    assert again["dumps"] == second["dumps"] + 2


def test_a_queue_of_a_spent_snapshot_is_dropped_unread(ns: Netns, driver: str) -> None:
    """When both tables are past the maximum age, what queued on the notification socket could only mark them
    stale again: the socket is replaced, its queue unread (an overrun there is not even seen), then dumped.
    The querying thread is in the namespace (one elsewhere may not be able to enter it, so drains instead)."""
    out = nssteps(
        driver, [ns],
        "@rcvbuf 1024", f"?{ns.name}",
        churn(ns),  # overruns the small buffer
        "@clock 30000", f"?{ns.name}", "@fds",
        inside=ns,
    )  # fmt: skip
    first, aged, fds = out
    assert fds["overruns"] == 0, "the queue was read"
    assert aged["dumps"] == first["dumps"] + 2


def test_a_change_in_a_parked_namespace_is_applied_on_return(ns: Netns, driver: str) -> None:
    """A parked namespace's notifications wait in its socket: back there, the added policy is seen and the
    deleted one gone, applied in place, with no dump."""
    (other,) = more_namespaces(1)
    try:
        out = nssteps(
            driver, [ns, other],
            f"?{ns.name}", f"?{other.name}",
            f"ip -n {ns.name} xfrm policy add src {A} dst {B} dir out index 0x401 priority 3 action allow",
            f"?{ns.name}",
            f"?{other.name}",
            f"ip -n {ns.name} xfrm policy delete dir out index 0x401",
            f"?{ns.name}",
        )  # fmt: skip
    finally:
        other.close()
    assert [(q["ns"], q["pol_out"]) for q in out] == [
        (ns.name, None), (other.name, None), (ns.name, {"index": 0x401, "priority": 3}),
        (other.name, None), (ns.name, None),
    ]  # fmt: skip
    assert {q["dumps"] for q in out[1:]} == {4}, "a parked namespace's change made a dump"
    assert all(q["counts_agree"] for q in out)


def test_an_overrun_while_parked_rereads_on_return(ns: Netns, driver: str) -> None:
    """A parked namespace's socket overruns (a small buffer, many changes): back there the overrun is seen,
    both tables are read once, and the answer is the namespace's own."""
    (other,) = more_namespaces(1)
    try:
        out = nssteps(
            driver, [ns, other],
            "@rcvbuf 1024", f"?{ns.name}", f"?{other.name}",
            churn(ns),
            f"ip -n {ns.name} xfrm policy add src {A} dst {B} dir out index 0x401 priority 3 action allow",
            "@fds", f"?{ns.name}", "@fds", f"?{ns.name}",
        )  # fmt: skip
    finally:
        other.close()
    _, second, before, back, after, again = out
    assert (before["overruns"], after["overruns"]) == (0, 1)
    assert back["pol_out"] == {"index": 0x401, "priority": 3}
    assert back["dumps"] == second["dumps"] + 2 and again["dumps"] == back["dumps"]


def test_python_queries_alternating_two_namespaces_dump_once_each(ns: Netns) -> None:
    """The extension's path (the socket's namespace found by its cookie, the thread in neither): after the
    first query in each namespace, switching back and forth reads no table again."""
    from secsock import _secsock

    def tcp_pair() -> tuple[socket.socket, ...]:
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        return listener, client, listener.accept()[0]

    ns.ip("xfrm", "policy", "add", "src", "127.0.0.1", "dst", "127.0.0.1", "dir", "out", "action", "allow")
    (other,) = more_namespaces(1)
    try:
        pairs = {ns.name: ns.call(tcp_pair), other.name: other.call(tcp_pair)}
        try:
            answers = []
            for _ in range(3):
                for name, (_, _, conn) in pairs.items():
                    answers.append((name, secsock.query(conn).reason, _secsock.backend_stats()[0]))
        finally:
            for sockets in pairs.values():
                for s in sockets:
                    s.close()
    finally:
        other.close()
    assert [(name, str(reason).split(";")[0]) for name, reason, _ in answers] == [
        (ns.name, "outbound: the policy allows the flow without IPsec"),
        (other.name, "outbound: no XFRM policy selects the flow"),
    ] * 3
    assert {reloads for _, _, reloads in answers[1:]} == {answers[1][2]}, answers


FORK_CHILD_SCRIPT = """
import os, socket, sys, threading
from linux_netns import _enter_netns
import secsock

def tcp_pair_in(name):
    made = []
    def make():
        _enter_netns(name)
        listener = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(listener.getsockname())
        made.extend((listener, client, listener.accept()[0]))
    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    return made

here, there = tcp_pair_in(sys.argv[1]), tcp_pair_in(sys.argv[2])
secsock.query(here[2]).close()
secsock.query(there[2]).close()  # both kept now (three descriptors each), there's the current one
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    before = len(os.listdir("/proc/self/fd"))
    secsock.query(there[2]).close()
    os.write(write_end, f"{before} {len(os.listdir('/proc/self/fd'))}".encode())
    os._exit(0)
os.close(write_end)
print(os.fdopen(read_end).read())
assert os.waitpid(pid, 0)[1] == 0
"""


def test_a_fork_child_closes_its_copies_of_every_kept_namespace(ns: Netns) -> None:
    """After fork the child must not read the parent's notification sockets: its first query closes its
    copies of every kept namespace's three descriptors and opens its own for the one it needs. In a process of
    its own, so that no other test's kept namespaces count."""
    (other,) = more_namespaces(1)
    try:
        env = child_env()
        env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "tests"), env["PYTHONPATH"]))
        done = subprocess.run(
            [sys.executable, "-c", FORK_CHILD_SCRIPT, ns.name, other.name],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        other.close()
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.split())
    assert after == before - 3 * 2 + 3


def test_the_backend_builds_against_linux_4_18_xfrm_headers(tmp_path: Path) -> None:
    """manylinux_2_28 builds against kernel 4.18's headers: every XFRM constant newer than that (XFRMA_IF_ID
    4.19, XFRM_OFFLOAD_PACKET 6.2, XFRMA_SA_DIR 6.10, XFRMA_SA_PCPU 6.13) needs a fallback. This host's
    linux/xfrm.h and linux/if_link.h without them, found first on the include path, must still build the
    backend."""
    newer = ("XFRM_OFFLOAD_PACKET", "XFRMA_SET_MARK", "XFRMA_IF_ID", "XFRMA_MTIMER_THRESH", "XFRMA_SA_DIR",
             "XFRMA_NAT_KEEPALIVE", "XFRMA_SA_PCPU", "XFRMA_OUTPUT_MARK XFRMA_SET_MARK")  # fmt: skip
    header = Path("/usr/include/linux/xfrm.h").read_text().splitlines()
    (tmp_path / "linux").mkdir()
    (tmp_path / "linux" / "xfrm.h").write_text(
        "\n".join(line for line in header if not any(name in line for name in newer)) + "\n"
    )
    # linux/if_link.h's IFLA_XFRM_IF_ID came with XFRMA_IF_ID (4.19); found by the outside review of the uapi
    # fallbacks (helper-55, item 9).
    link = Path("/usr/include/linux/if_link.h").read_text().splitlines()
    newer_link = ("IFLA_XFRM_IF_ID", "IFLA_XFRM_COLLECT")
    (tmp_path / "linux" / "if_link.h").write_text(
        "\n".join(line for line in link if not any(name in line for name in newer_link)) + "\n"
    )
    env = {**os.environ, "EXTRA_CFLAGS": f"-I{tmp_path}"}
    done = subprocess.run(["sh", str(ROOT / "tests" / "linux_c" / "build.sh"), str(tmp_path / "driver")],
                          capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr


def synthetic(driver: str, case: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run([driver, "synthetic", case], capture_output=True, text=True, timeout=60, check=True)
    return {line["dir"]: line for line in map(json.loads, done.stdout.splitlines())}


def reason_code(name: str) -> int:
    """SECSOCK_REASON_<name>'s value, read from the enum in csrc/secsock_backend.h (numbered from 0)."""
    return reason_names().index(name)


def test_the_reason_names_are_the_enums_members_and_no_more() -> None:
    """The VM suite read every SECSOCK_REASON_ token after NONE, the count and anything past the enum
    included: its codes now come from the same reader as the host's, which stops at SECSOCK_REASON_COUNT."""
    names = reason_names()
    assert len(names) == len(set(names)) and "COUNT" not in names, names
    assert names[0] == "NONE" and names[-1] == "SEC_CTX_UNDECIDABLE", names


def reason_text(name: str) -> str:
    """SecurityInfo.reason's text for SECSOCK_REASON_<name>, from reason_texts in csrc/module/results.c."""
    source = (ROOT / "csrc" / "module" / "results.c").read_text()
    body = source.split("reason_texts[SECSOCK_REASON_COUNT] = {")[1].split("};")[0]
    entries = re.findall(r'((?:"(?:[^"\\]|\\.)*"\s*)+),', body)
    return ["".join(re.findall(r'"((?:[^"\\]|\\.)*)"', entry)) for entry in entries][reason_code(name)]


def assert_out(driver: str, case: str, expected: tuple[int, str, list[int]]) -> None:
    """The synthetic case's outbound answer is (protected, reason name, SPIs)."""
    out = synthetic(driver, case)["out"]
    protected, reason, spis = expected
    assert (out["protected"], out["reason"], out["spis"]) == (protected, reason_code(reason), spis)


def test_outbound_best_sa_for_the_other_direction_drops_the_flow(driver: str) -> None:
    """Issue 14 item 7: an SA marked `dir in` (XFRMA_SA_DIR, kernel 6.10) is a candidate for
    xfrm_state_find like any other; when it is the best (the newest), xfrm_tmpl_resolve_one drops the flow
    (x->dir != XFRM_SA_DIR_OUT: -EINVAL) instead of using the older SA without a direction. Neither kernel
    here can make such an SA (6.1 has no SA direction, this host no ESP): a snapshot built in memory
    (tests/linux_c/synthetic.c) is looked up by the backend's own eval_dir."""
    out = synthetic(driver, "sa-dir-in-best")["out"]
    assert (out["protected"], out["encrypted"], out["spis"]) == (0, 0, [])
    assert out["reason"] == reason_code("SA_WRONG_DIR")


def test_a_sub_bypass_is_bundled_before_an_xfrm_interfaces_second_lookup(driver: str) -> None:
    """Issue 14 review, item 5: through an XFRM interface the if_id 0 lookup bundles a sub bypass with the
    main policy (xfrm_expand_policies); a main block blocks there, so xfrmi_xmit2's second lookup with the
    interface's if_id never happens. The backend took the sub bypass alone as untransformed and looked the
    flow up again, finding the if_id policy and its SA: protected, where the kernel blocks. No kernel here
    can make an XFRM interface: a snapshot built in memory (tests/linux_c/synthetic.c)."""
    out = synthetic(driver, "xfrmi-sub-bypass-main-block")["out"]
    assert (out["protected"], out["reason"], out["spis"]) == (0, reason_code("BLOCK"), [])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("sa-maybe-newer", (0, "DEV_UNDECIDABLE", [])),
        ("sa-maybe-older", (1, "ENCRYPTED", [0x1001])),
        ("sa-same-second", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-source-any-newer", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-acquire-source-any", (0, "SA_ORDER_UNDECIDABLE", [])),
    ],
)
def test_outbound_sa_pick_follows_xfrm_state_find_or_is_not_decidable(
    driver: str, case: str, expected: tuple[int, str, list[int]]
) -> None:
    """Outbound the kernel uses the SA xfrm_state_find picks: from the flow's source chain first (the
    source-any chain only when that finds no valid SA and no acquire), and in each xfrm_state_look_at's least
    dying, then newest, else the first met. The backend skipped an SA whose selector only maybe matches (a
    device it cannot know) though it would outrank the sure one, broke a same-second tie by its own order, and
    mixed the two chains: each answered SECURED with an SA the kernel may not use. Now such a choice between
    SAs that answer differently is not decidable, and a maybe-SA the sure one outranks changes nothing
    (tests/linux_c/synthetic.c)."""
    assert_out(driver, case, expected)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("sa-tunnel-source-any-both", (0, "TUNNEL_SOURCE_UNDECIDABLE", [])),
        ("sa-tunnel-source-any-other", (0, "TUNNEL_SOURCE_UNDECIDABLE", [])),
        ("sa-tunnel-source-any-wild", (1, "ENCRYPTED", [0x1003])),
        ("sa-wildcard-other-source", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-wildcard-other-source-older", (1, "ENCRYPTED", [0x1001])),
    ],
)
def test_outbound_sa_pick_with_an_unknown_or_wildcard_source(
    driver: str, case: str, expected: tuple[int, str, list[int]]
) -> None:
    """A tunnel template whose source is any gets the route's preferred source toward its gateway
    (xfrm_tmpl_resolve_one: xfrm_get_saddr), which the backend does not read: it took every SA toward the
    gateway as a candidate and named the newest (ENCRYPTED with an AES-GCM SA from another address where the
    kernel uses the null-cipher SA from its own source, or SECURED where the kernel acquires). And
    xfrm_state_find's source-any pass matches the destination only, so an SA from another specific source in
    that bucket competes there: it was ignored. Both are now not decidable when such an SA answers differently
    (tests/linux_c/synthetic.c)."""
    assert_out(driver, case, expected)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("sa-soft-use-dying", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-soft-add-just-due", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-soft-add-just-due-alone", (1, "ENCRYPTED", [0x1001])),
        ("sa-soft-add-both-due", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-limit-hard-add-just-due", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-limit-soft-add-wraps", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-limit-soft-bytes-crossed", (0, "SA_ORDER_UNDECIDABLE", [])),
        ("sa-limit-soft-packets-passed", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-dying-notified-redump", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-dying-notified-readded", (1, "ENCRYPTED", [0x1001])),
        ("sa-dying-notified-flushed", (1, "ENCRYPTED", [0x1001])),
        ("sa-dying-notified-flushed-ah", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-dying-notified-flushed-esp", (1, "ENCRYPTED", [0x1001])),
        ("sa-dying-notified-flushed-all", (1, "ENCRYPTED", [0x1001])),
        ("sa-dying-notified-flushed-fresh", (1, "ENCRYPTED", [0x1001])),
        ("sa-dying-notified-stale-expire", (1, "NOT_ENCRYPTING", [0x1002])),
        ("sa-expire-from-userspace", (1, "ENCRYPTED", [0x1001])),
        ("sa-expire-from-kernel", (1, "NOT_ENCRYPTING", [0x1002])),
    ],
)
def test_outbound_sa_pick_reads_dying_as_xfrm_timer_proc_sets_it(
    driver: str, case: str, expected: tuple[int, str, list[int]]
) -> None:
    """xfrm_state_look_at prefers an SA that is not dying; xfrm_timer_proc makes one dying when a soft add or
    a soft use limit (from use_time, once the SA was used) falls due. The parser ignored the use limit (the
    newer, dying SA was named) and took an add limit that falls due this second as already acted on, though
    the timer may not have run: now the use limit counts, and when the pick changes with it, the direction is
    not decidable. And a dying state learnt from a soft-expire notification was lost at the next dump (the
    limits do not show it): it is kept by SA id and add time, also when the notification is read while the
    table is stale (it was lost then); a flush of its protocol (one named, every one, or IPSEC_PROTO_ANY;
    seen while the table is stale or not) forgets it, or an SA added again with the same SPI in the same
    second, whose NEWSA the dump came before, was read as dying (tests/linux_c/synthetic.c)."""
    assert_out(driver, case, expected)


@pytest.mark.parametrize(
    ("case", "expected", "recheck"),
    [
        ("sa-due-soft-2s-ago", (0, "SA_ORDER_UNDECIDABLE", []), True),
        ("sa-due-hard-2s-ago", (0, "SA_ORDER_UNDECIDABLE", []), False),
        ("sa-due-hard-10s-ago", (0, "SA_ORDER_UNDECIDABLE", []), False),
        ("sa-due-soft-bytes", (0, "SA_ORDER_UNDECIDABLE", []), False),
        ("sa-update-soft-still-due", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-expired", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-while-stale-extended", (1, "ENCRYPTED", [0x1001]), None),
        ("sa-update-while-stale-still-due", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-while-stale-readded", (1, "ENCRYPTED", [0x1001]), None),
        ("sa-update-burst", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-burst-new", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-while-stale-deleted", (1, "ENCRYPTED", [0x1001]), None),
        ("sa-update-lost-overrun", (0, "SA_ORDER_UNDECIDABLE", []), None),
        ("sa-update-lost-truncated", (0, "SA_ORDER_UNDECIDABLE", []), None),
    ],
)
def test_a_time_limit_counts_as_maybe_acted_on_while_the_kernels_timer_may_be_late(
    driver: str, case: str, expected: tuple[int, str, list[int]], recheck: bool | None
) -> None:
    """xfrm_timer_handler acts on a time limit when its hrtimer runs, which may be late: a limit due 2 s ago
    was read as acted on (an SA dying or expired for sure) though the kernel may still use it as before. And
    an update clears km.dying and restarts the timer in 1 s (xfrm_state_update): an SA dumped just after an
    XFRM_MSG_UPDSA was read as dying though not yet marked again; an update of an SA read as expired was
    applied as if it replaced a larval one (the request's add time, not the SA's: ENCRYPTED); an update that
    came while the table was stale kept a notified dying across the dump, though the update had cleared it
    and its new lifetimes showed no soft limit reached. Now a time limit is maybe acted on for 3 s after it
    fell due and after an update was seen (ranked both ways), an update of an expired SA reads the table
    again, and a time limit's maybe schedules that read for when it turns sure; a byte limit's maybe does not
    (the counters are not read per query). A keyed SA's hard time limit is maybe however long ago it fell due,
    with no read scheduled: xfrm_timer_handler deletes the SA when it acts, so one a dump shows was not acted
    on (a late timer after a forward clock step): read as expired, the older SA was answered ENCRYPTED. An SA
    deleted (and added again with the same SPI in the same second) while the table was stale kept its notified
    dying across the dump, which matches by id and add time: now a delete or add clears it as an update does.
    Four adds or updates of other SAs after an update evicted its note (four kept), so the dump read the
    updated SA's due soft limit as surely acted on: now an add is noted only with a time limit due, and a
    note that still matters is never evicted (every SA counts as seen then, as after lost notifications).
    And an update lost with other notifications (the reader sees ENOBUFS, or a datagram truncated) leaves no
    note: the whole table counts as seen then (seen_all_at), or the dump reads the due soft limit the update
    cleared as surely acted on (tests/linux_c/synthetic.c)."""
    result = synthetic(driver, case)
    protected, reason, spis = expected
    assert (result["out"]["protected"], result["out"]["reason"], result["out"]["spis"]) == (
        protected,
        reason_code(reason),
        spis,
    )
    if recheck is not None:
        in_ms = result["recheck"]["in_ms"]
        assert (0 < in_ms <= 1000) if recheck else in_ms == -1, in_ms


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("sa-cache-6.1", (1, "ENCRYPTED", [0x1001])),
        ("sa-cache-6.13", (0, "SA_CACHE_UNDECIDABLE", [])),
        ("sa-cache-same-protection", (1, "ENCRYPTED", [0x1001])),
        ("sa-pcpu", (0, "SA_KIND_UNDECIDABLE", [])),
        ("sa-offload-packet", (0, "SA_KIND_UNDECIDABLE", [])),
    ],
)
def test_outbound_sa_pick_is_not_decidable_where_the_kernel_keeps_history(
    driver: str, case: str, expected: tuple[int, str, list[int]]
) -> None:
    """From 6.13 xfrm_state_find walks the policy's state cache first (pol->state_cache_list: the SA it
    used before, kept until that SA is deleted or the policy killed), so after a rekey it keeps the old SA
    while the dump's newest was named. Per-CPU SAs (XFRMA_SA_PCPU) depend on the sending CPU, and
    packet-offload SAs (XFRMA_OFFLOAD_DEV, XFRM_OFFLOAD_PACKET) are skipped by software policies: both were
    read as ordinary SAs (tests/linux_c/synthetic.c)."""
    assert_out(driver, case, expected)


def test_sas_of_equal_protection_tied_in_the_chain_answer_the_protection(driver: str) -> None:
    """Two SAs added in the same second, both AES-GCM: the kernel's hash chain order picks one, which the dump
    does not show, but either protects the flow alike. The direction was not decidable; now it is ENCRYPTED
    and lists one of them (the SPI the kernel uses may be the other: README, "how the answer is read")."""
    out = synthetic(driver, "sa-same-second-same-protection")["out"]
    assert (out["protected"], out["encrypted"], out["reason"]) == (1, 1, reason_code("ENCRYPTED"))
    assert len(out["spis"]) == 1 and out["spis"][0] in (0x1001, 0x1002)


@pytest.mark.parametrize(
    ("release", "cache"),
    [
        ("6.1.0-28-amd64", 0),
        ("6.11.9", 0),
        ("6.12.48+deb13-amd64", 1),  # 6.12-stable has the cache (backported, 6.12.13)
        ("6.12.0", 1),  # the patch level is not trusted: a vendor may backport it
        ("6.13.0", 1),
        ("7.0.1", 1),
        ("4.18.0-553.el8_10.x86_64", 0),  # older: by version alone (README says so)
        ("5.15.0-1-generic", 0),
        ("", 1),  # not read as MAJOR.MINOR: taken as one with the cache
        ("linux", 1),
        ("6", 1),
    ],
)
def test_the_state_cache_rule_by_kernel_release(driver: str, release: str, cache: int) -> None:
    """The per-policy state cache (xfrm_state_find: pol->state_cache_list) came in 6.13 and was backported to
    6.12-stable; the rule was 6.13+, so on Debian 13's 6.12 a rekey overlap could answer with the newer SA
    while the kernel kept the older. Now 6.12+, and a release it cannot read counts as having the cache."""
    done = subprocess.run([driver, "release-cache", release], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == cache


def test_an_unreadable_policy_is_seen_by_a_lookup_that_starts_at_main(driver: str) -> None:
    """An unreadable policy is kept in the SUB bucket whatever its real type. A sub bypass bundles MAIN's
    pick (xfrm_expand_policies), and that lookup starts at MAIN: it never met the unreadable policy, whose
    priority (5) beats the main bypass's (10) if it really is MAIN, and answered "bypass" for a flow the
    kernel may treat by a policy nobody read. Now it is the unreadable-policy error."""
    out = synthetic(driver, "unreadable-under-sub-bypass")["out"]
    assert "secsock cannot read" in out["error"], out


@pytest.mark.parametrize(
    ("case", "direction", "expected"),
    [
        ("sec-ctx-policy", "out", (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-policy-behind", "out", (1, "ENCRYPTED", [0x1001])),
        ("sec-ctx-policy-tie-older", "out", (0, "TIE_UNDECIDABLE", [])),
        ("sec-ctx-policy-tie-newer", "out", (0, "TIE_UNDECIDABLE", [])),
        ("sec-ctx-sa-out-newer", "out", (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-sa-out-older", "out", (1, "ENCRYPTED", [0x1001])),
        ("sec-ctx-sa-out-alone", "out", (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-sa-in-only", "in", (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-sa-in-beside", "in", (1, "ENCRYPTED", [0x2001])),
        ("sa-unreadable-out", "out", (0, "SA_KIND_UNDECIDABLE", [])),
    ],
)
def test_security_labels_are_not_decidable_where_they_may_apply(
    driver: str, case: str, direction: str, expected: tuple[int, str, list[int]]
) -> None:
    """XFRMA_SEC_CTX was ignored. The kernel asks the LSM whether a labeled policy may serve the flow's label
    (xfrm_policy_match -> security_xfrm_policy_lookup) and whether a labeled SA fits the policy and flow
    (xfrm_state_look_at -> security_xfrm_state_pol_flow_match); the flow's label is not read here. So a
    labeled policy that could win, or a labeled outbound SA that could be the pick, was taken as surely
    applying (ENCRYPTED, NOT_ENCRYPTING): now not decidable; a labeled policy tied with the pick is a priority
    tie; an inbound labeled SA counts only when no unlabeled one fits. And an outbound SA the dump could not
    read, toward the template's peer, was ignored though it may be the pick (ENCRYPTED): now not decidable.
    Only an LSM keeps labels, so the records are built by hand as the kernel dumps them
    (tests/linux_c/synthetic.c)."""
    got = synthetic(driver, case)[direction]
    protected, reason, spis = expected
    assert (got["protected"], got["reason"], got["spis"]) == (protected, reason_code(reason), spis)
    if case == "sa-unreadable-out":
        # The reason's text names this cause too, not only per-CPU and packet-offload SAs.
        assert "an SA the dump could not read" in reason_text(reason), reason_text(reason)


@pytest.mark.parametrize(
    ("case", "redumped", "expected"),
    [
        ("sec-ctx-notify-new", True, (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-notify-upd", True, (0, "SEC_CTX_UNDECIDABLE", [])),
        ("sec-ctx-notify-new-no-labels", False, (1, "ENCRYPTED", [0x1001])),
        ("sec-ctx-notify-del-by-selector", False, (0, "SEC_CTX_UNDECIDABLE", [])),
    ],
)
def test_a_policy_notification_never_loses_a_label(
    driver: str, case: str, redumped: bool, expected: tuple[int, str, list[int]]
) -> None:
    """The kernel's policy notifications carry no label: xfrm_notify_policy (NEWPOLICY, UPDPOLICY, DELPOLICY)
    writes the policy, its templates, type, mark and if_id, never XFRMA_SEC_CTX, which only dumps, GETPOLICY
    replies and POLEXPIRE carry. Applied in place, a labeled policy added or updated while the snapshot was
    fresh was kept as unlabeled, and a lookup it won answered ENCRYPTED instead of not decidable. Now, where
    a label can exist (selinuxfs registered: only SELinux keeps labels), an add or update makes the policy
    table stale and it is dumped again; where none can (the kernel drops the label), it is still applied in
    place. A delete is applied in place either way: it removes by the index the message carries, so of two
    policies that differ only in their label, deleted by selector, the other stays
    (tests/linux_c/synthetic.c)."""
    got = synthetic(driver, case)
    note = got["notify"]
    assert (note["stale"], note["applied"]) == ((1, 0) if redumped else (0, 1)), note
    protected, reason, spis = expected
    out = got["out"]
    assert (out["protected"], out["reason"], out["spis"]) == (protected, reason_code(reason), spis)


def test_labels_are_possible_exactly_where_selinuxfs_is_registered(driver: str, tmp_path: Path) -> None:
    """Whether a policy can carry a label is read from /proc/filesystems: SELinux, the only LSM that keeps
    XFRM labels, registers selinuxfs when it is enabled at boot; a file that cannot be read counts as yes (a
    dump per policy change is the safe side)."""

    def labels(*args: str) -> int:
        done = subprocess.run([driver, "policy-labels", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    listed = tmp_path / "filesystems"
    listed.write_text("nodev\tsysfs\nnodev\tproc\nnodev\tselinuxfs\n\text4\n")
    assert labels(str(listed)) == 1
    listed.write_text("nodev\tsysfs\nnodev\tselinuxfs2\n\text4\n")
    assert labels(str(listed)) == 0
    assert labels(str(tmp_path / "absent")) == 1
    # opened, but not readable: fgets fails (EISDIR), which counts as yes
    assert labels(str(tmp_path)) == 1
    registered = Path("/proc/filesystems").read_text().splitlines()
    here = any(line.split("\t")[-1] == "selinuxfs" for line in registered)
    assert labels() == int(here)


@pytest.mark.parametrize(
    ("main", "reason"),
    [
        (("tmpl", "proto", "esp", "mode", "transport"), "no SA fits a template the policy requires"),
        (("action", "block"), "the policy blocks the flow"),
    ],
    ids=["main-template", "main-block"],
)
def test_a_sub_policy_that_allows_is_bundled_with_the_main_policy(
    ns: Netns, main: tuple[str, ...], reason: str
) -> None:
    """Issue 14 item 7: with CONFIG_XFRM_SUB_POLICY (set in Debian's 6.1 and this kernel) a sub policy that
    allows is not the whole answer: xfrm_expand_policies (out) and __xfrm_policy_check (in) also look up the
    main policy; a main block blocks, and its templates join the sub policy's. A sub bypass over a main ESP
    policy still needs ESP (no SA can exist here: the kernel refuses to send), over a main block blocks."""
    for name in ("disable_xfrm", "disable_policy"):  # so the kernel's own choice shows (B is local, over lo)
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    for direction, src, dst in (("out", A, B), ("in", B, A)):
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", direction, "ptype", "sub")
        ns.ip("xfrm", "policy", "add", "src", src, "dst", dst, "dir", direction, *main)

    def no_states() -> int:  # XfrmOutNoStates: a template found no SA (the main policy's ESP here)
        stat = run(*ns.exec_argv("cat", "/proc/net/xfrm_stat")).stdout.split()
        return int(stat[stat.index("XfrmOutNoStates") + 1])

    before = no_states()
    sent = subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{B}/500"), capture_output=True)
    # A block fails the send; a template without an SA drops it quietly (a blackhole route) and counts it.
    assert sent.returncode != 0 or no_states() > before, "the kernel sent in the clear: the sub bypass alone"
    (result,) = ns.probe([udp(A, B)])
    assert result["flags"] == 0
    # Inbound too (__xfrm_policy_check looks up the main policy after a sub one that allows).
    assert all(why.startswith(reason) for why in reason_of(result)), result


def test_a_link_local_peer_keeps_its_scope(ns: Netns) -> None:
    """Issue 14 item 7: peer="fe80::2%lo" for a UDP socket bound to ::. The backend dropped the scope id, so
    finding the source address failed (connect() to a link-local address without a scope: EINVAL). The kernel
    sends by the scope's interface (udpv6_sendmsg: flowi6_oif = sin6_scope_id), which a selector naming a
    device is matched against (xfrm_selector_match: sel->ifindex == fl->flowi_oif)."""
    ns.ip("link", "add", "vs", "type", "veth", "peer", "name", "vs-peer")
    ns.ip("addr", "add", "fe80::1/64", "dev", "vs", "nodad")
    ns.ip("link", "set", "vs", "up")
    ns.ip("addr", "add", "fe80::1/64", "dev", "lo", "nodad")  # a second route to fe80::/64, by lo
    ns.ip("xfrm", "policy", "add", "src", "fe80::1", "dst", "fe80::2", "dev", "vs", "dir", "out",
          "tmpl", "proto", "esp", "mode", "transport")  # fmt: skip
    ns.ip("xfrm", "policy", "add", "src", "fe80::1", "dst", "fe80::2", "dev", "lo", "dir", "out",
          "priority", "1", "action", "block")  # fmt: skip
    (result,) = ns.probe([{"op": "udp", "name": "s", "local": "::", "peer": "fe80::2%vs", "port": 500}])
    assert "error" not in result, result
    assert reason_of(result)[0].startswith("no SA fits a template the policy requires"), result
    # A multicast peer of the reserved scope 0 needs no scope id (__ipv6_addr_needs_scope_id): the kernel
    # ignores the one given, so it does not choose the device; that unbound UDP socket may choose one per
    # message (IPV6_PKTINFO), so a selector naming a device is not decidable.
    ns.ip("xfrm", "policy", "add", "dst", "ff00::1", "dev", "vs", "dir", "out", "action", "block")
    (result,) = ns.probe([{"op": "udp", "name": "s", "local": "fd77::1", "peer": "ff00::1%vs", "port": 500}])
    assert reason_of(result)[0].startswith("not decidable here: a selector that names a device"), result


DISABLED = (
    "XFRM is disabled for the flow (disable_xfrm outbound, disable_policy inbound: set for all interfaces, "
    "on the device the flow leaves by, or on loopback, which the flow runs over)"
)


def xfrm_stat(ns: Netns, name: str) -> int:
    stat = run(*ns.exec_argv("cat", "/proc/net/xfrm_stat")).stdout.split()
    return int(stat[stat.index(name) + 1])


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("setting", ["disable_xfrm", "disable_policy"])
def test_all_interfaces_setting_disables_xfrm_for_every_flow(ns: Netns, setting: str, family: str) -> None:
    """Issue 14 review, item 2: IPv4 reads disable_xfrm and disable_policy as IN_DEV_ORCONF, the device's OR
    `all`'s (__mkroute_output: DST_NOXFRM; ip_rcv_finish_core: IPSKB_NOPOLICY), so `all` set disables XFRM
    for every IPv4 flow, not only loopback's. With lo's own settings 0 and all's 1 the kernel sends past an
    ESP policy without SA (XfrmOutNoStates stays), and the backend said "no SA fits" (SECURED once SAs
    exist). IPv6 has no disable_xfrm; its all.disable_policy marks every local address's route
    DST_NOPOLICY (addrconf_f6i_alloc), so inbound is disabled."""
    for name in ("disable_xfrm", "disable_policy"):
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    proto = "ipv6" if family == "ipv6" and setting == "disable_policy" else "ipv4"
    run(*ns.exec_argv("sysctl", "-qw", f"net.{proto}.conf.all.{setting}=1"))
    local, peer = (A6, B6) if family == "ipv6" else (A, B)
    esp_policies(ns, local, peer)
    before = xfrm_stat(ns, "XfrmOutNoStates")
    subprocess.run(ns.exec_argv("bash", "-c", f"echo x > /dev/udp/{peer}/500"), capture_output=True)
    sent_in_clear = xfrm_stat(ns, "XfrmOutNoStates") == before
    assert sent_in_clear == (setting == "disable_xfrm" and family == "ipv4")
    (result,) = ns.probe([udp(local, peer)])
    no_sa = "no SA fits a template the policy requires"
    outbound, inbound = reason_of(result)
    assert result["flags"] == 0
    assert (outbound == DISABLED) == sent_in_clear and (sent_in_clear or outbound.startswith(no_sa)), result
    assert inbound == DISABLED if setting == "disable_policy" else inbound.startswith(no_sa), result


@pytest.mark.parametrize("device", ["vc", "vb"])
def test_the_output_devices_disable_xfrm_decides_outbound(ns: Netns, device: str) -> None:
    """Outside review: __mkroute_output gives the route DST_NOXFRM from IN_DEV_ORCONF(NOXFRM) of its output
    device, so disable_xfrm on the device toward a remote peer sends past an ESP policy in the clear; only
    `all`'s and loopback's were read, and the backend said "no SA fits" (SECURED once SAs exist). The flow
    leaves by vc: vc's setting disables XFRM for it, vb's does not."""
    peer = "10.79.0.2"
    vb_and_vc(ns)
    run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.{device}.disable_xfrm=1"))
    esp_policies(ns, C, peer)
    before = xfrm_stat(ns, "XfrmOutNoStates")
    sent = send_from_c(ns, "socket.SOL_SOCKET, socket.SO_REUSEADDR, 1", peer)
    in_clear = xfrm_stat(ns, "XfrmOutNoStates") == before
    assert in_clear == (device == "vc") and sent.returncode == 0, sent.stderr
    # Asked for TCP: an IPv4 UDP message may name another device (IP_PKTINFO), so with a device's
    # disable_xfrm set a UDP socket's outbound answer is not decidable.
    (result,) = ns.probe([{"op": "tcp-syn", "local": C, "peer": peer, "port": 600}])
    outbound = reason_of(result)[0]
    assert outbound == DISABLED if in_clear else outbound.startswith("no SA fits a template"), result
    # Review of i14-dev, item 6: a UDP message's IP_PKTINFO may name the device that has it set
    # (xfrm_lookup_with_ifid: DST_NOXFRM and no if_id -> nopol), whichever device the route names.
    (datagram,) = ns.probe([udp(C, peer, 600)])
    assert reason_of(datagram)[0].startswith("not decidable here: a device of the namespace has"), datagram


def mac_of(ns: Netns, device: str) -> str:
    link: list[dict[str, Any]] = json.loads(ns.ip("-j", "link", "show", device))
    return str(link[0]["address"])


def test_a_devices_disable_policy_makes_inbound_not_decidable(ns: Netns) -> None:
    """Outside review: inbound, ip_rcv_finish_core sets IPSKB_NOPOLICY from IN_DEV_ORCONF(NOPOLICY) of the
    device a packet ARRIVES by, and xfrm_policy_check then lets it in past an ESP policy. Which device a
    remote peer's packets arrive by cannot be known here (routing need not be symmetric), so with any
    device but loopback so set the inbound answer is "not decidable"; the backend said "no SA fits"
    (SECURED once SAs exist) while the kernel took plaintext arriving on vb."""
    peer = "10.78.0.2"
    vb_and_vc(ns)
    other = Netns("peer")
    try:
        ns.ip("link", "set", "vb-peer", "netns", other.name)
        other.ip("addr", "add", f"{peer}/24", "dev", "vb-peer")
        other.ip("link", "set", "vb-peer", "up")
        esp_policies(ns, C, peer)
        # Static neighbours: the datagram goes at once, and is received before the send returns (veth).
        ns.ip("neigh", "add", peer, "lladdr", mac_of(other, "vb-peer"), "dev", "vb")
        other.ip("neigh", "add", C, "lladdr", mac_of(ns, "vb"), "dev", "vb-peer")
        for disabled in (0, 1):
            run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.vb.disable_policy={disabled}"))
            before = in_counters(ns)
            subprocess.run(other.exec_argv("bash", "-c", f"echo x > /dev/udp/{C}/600"), capture_output=True)
            assert (in_counters(ns) > before) == (not disabled), "the kernel ignored vb's setting"
        (result,) = ns.probe([udp(C, peer, 600)])
        assert reason_of(result)[1].startswith("not decidable here: a device of the namespace has "), result
        run(*ns.exec_argv("sysctl", "-qw", "net.ipv4.conf.vb.disable_policy=0"))
        (result,) = ns.probe([udp(C, peer, 600)])
        assert reason_of(result)[1].startswith("no SA fits a template"), result
    finally:
        other.close()


@pytest.mark.parametrize("device", ["none", "vb", "vc"])
def test_an_ipv6_devices_disable_policy_makes_inbound_not_decidable(ns: Netns, device: str) -> None:
    """Outside review: IPv6 inbound, addrconf_f6i_alloc (and addrconf_disable_policy on a change) marks a
    local address's route DST_NOPOLICY from its device's disable_policy, and the kernel lets plaintext in
    past an ESP policy; only `all`'s was read, and the backend said "no SA fits" (SECURED once SAs exist).
    Here the local address is on vc and the peer's packets arrive by vb: vc's setting decides, vb's does
    not (6.18). Which device holds the address is not read: either makes the answer not decidable."""
    local, peer = "fd79::1", "fd78::2"
    vb_and_vc(ns)
    other = Netns("peer")
    try:
        ns.ip("link", "set", "vb-peer", "netns", other.name)
        ns.ip("addr", "add", "fd78::1/64", "dev", "vb", "nodad")
        ns.ip("addr", "add", f"{local}/128", "dev", "vc", "nodad")
        other.ip("addr", "add", f"{peer}/64", "dev", "vb-peer", "nodad")
        other.ip("link", "set", "vb-peer", "up")
        other.ip("route", "add", f"{local}/128", "via", "fd78::1")
        ns.ip("neigh", "add", peer, "lladdr", mac_of(other, "vb-peer"), "dev", "vb")
        other.ip("neigh", "add", "fd78::1", "lladdr", mac_of(ns, "vb"), "dev", "vb-peer")
        if device != "none":
            run(*ns.exec_argv("sysctl", "-qw", f"net.ipv6.conf.{device}.disable_policy=1"))
        esp_policies(ns, local, peer)
        before = in_counters(ns)
        subprocess.run(other.exec_argv("bash", "-c", f"echo x > /dev/udp/{local}/600"), capture_output=True)
        assert (in_counters(ns) > before) == (device != "vc"), "the kernel's choice of device changed"
        (result,) = ns.probe([udp(local, peer, 600)])
        inbound = reason_of(result)[1]
        if device == "none":
            assert inbound.startswith("no SA fits a template"), result
        else:
            assert inbound.startswith("not decidable here: a device of the namespace has "), result
    finally:
        other.close()


@pytest.mark.parametrize("peer", [A, "10.77.0.3"], ids=["own-address", "another-local-address"])
@pytest.mark.parametrize(
    "enabled", [(), ("disable_xfrm",), ("disable_policy",)], ids=["lo-default", "out", "in"]
)
def test_each_direction_follows_its_own_loopback_setting(
    ns: Netns, peer: str, enabled: tuple[str, ...]
) -> None:
    """Issue 14 review, items 4 and 5: a flow between two of the host's addresses runs over lo too (the route
    is RTN_LOCAL, its device lo), so lo's settings apply to it as to a flow to the socket's own address; the
    backend recognised only 127.0.0.0/8 and the own address, and reported the ESP policy as applying (SECURED
    once SAs exist) while the kernel sent in the clear. disable_xfrm decides outbound only, disable_policy
    inbound only: each is turned off alone."""
    ns.ip("addr", "add", "10.77.0.3/32", "dev", "lo")
    for name in enabled:
        run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, peer)
    before = xfrm_stat(ns, "XfrmOutNoStates")
    send = f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(({A!r}, 0)); "
    send += f"s.sendto(b'x', ({peer!r}, 500))"  # from A: toward another local address the source would be it
    subprocess.run(ns.exec_argv(sys.executable, "-c", send), capture_output=True)
    out_disabled = "disable_xfrm" not in enabled
    assert (xfrm_stat(ns, "XfrmOutNoStates") == before) == out_disabled, (
        "the kernel did not follow lo's setting"
    )
    (result,) = ns.probe([udp(A, peer)])
    no_sa = "no SA fits a template the policy requires"
    outbound, inbound = reason_of(result)
    assert outbound == DISABLED if out_disabled else outbound.startswith(no_sa), result
    assert inbound == DISABLED if "disable_policy" not in enabled else inbound.startswith(no_sa), result


@pytest.mark.parametrize("disabled", [True, False], ids=["lo-default", "lo-xfrm-enabled"])
def test_loopback_flows_follow_los_disable_xfrm(ns: Netns, disabled: bool) -> None:
    """Issue 14 item 7: a flow to 127.0.0.0/8 or to the socket's own address runs over lo, whose
    disable_xfrm (out) and disable_policy (in) are on by default: the kernel bypasses XFRM (xfrm_lookup:
    DST_NOXFRM; xfrm_policy_check: DST_NOPOLICY) and sends in the clear despite an ESP policy without SA.
    Turned off, the policy applies again (the send is dropped for want of an SA, XfrmOutNoStates)."""
    if not disabled:
        for name in ("disable_xfrm", "disable_policy"):
            run(*ns.exec_argv("sysctl", "-qw", f"net.ipv4.conf.lo.{name}=0"))
    esp_policies(ns, A, A)
    (result,) = ns.probe([udp(A, A)])
    loopback = DISABLED
    no_sa = "no SA fits a template the policy requires"
    assert result["flags"] == 0
    if disabled:
        assert reason_of(result) == (loopback, loopback), result
    else:
        assert all(why.startswith(no_sa) for why in reason_of(result)), result


WILDCARD_SEND_AND_ASK = """
import errno, json, os, socket, sys
import secsock
peer, uid = sys.argv[1], int(sys.argv[2])
def no_states():
    with open("/proc/net/xfrm_stat") as stat:
        return next(int(line.split()[1]) for line in stat if line.startswith("XfrmOutNoStates"))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if uid:
    os.fchown(s.fileno(), uid, -1)  # sockfs_setattr: the socket's sk_uid
s.bind(("0.0.0.0", 0))  # the wildcard address: udp_sendmsg routes with saddr 0
before = no_states()
try:
    s.sendto(b"x", (peer, 600))
    sent = 0
except OSError as e:
    sent = e.errno
# read before the query: the old source probe's connect() itself counted (ip_route_connect's second lookup)
clear = no_states() == before
print(json.dumps({"sent": sent, "clear": clear, "reason": secsock.query(s, peer=(peer, 600)).reason}))
"""


def wildcard_send_and_ask(ns: Netns, peer: str, uid: int = 0) -> dict[str, Any]:
    done = subprocess.run(ns.exec_argv(sys.executable, "-c", WILDCARD_SEND_AND_ASK, peer, str(uid)),
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def a_rule_sends_b_by_vc(ns: Netns, *selector: str) -> None:
    """A rule ahead of the local table's (moved behind it) sends a flow it selects to B by vc."""
    vb_and_vc(ns)
    ns.ip("route", "add", "10.77.0.0/24", "dev", "vc", "table", "100")
    ns.ip("rule", "add", "pref", "200", "lookup", "local")
    ns.ip("rule", "del", "pref", "0")
    ns.ip("rule", "add", "pref", "100", *selector, "lookup", "100")


def test_a_wildcard_bound_sockets_route_is_asked_without_a_source(ns: Netns) -> None:
    """Review of i14-route, item 2: udp_sendmsg on a socket bound to the wildcard address looks its route up
    with saddr 0, so an `ip rule from` the source it then picks does not apply to it. The backend asked the
    route from that source (RTA_SRC): the rule sent B by vc, a remote peer, and the answer was "no SA fits"
    (SECURED once SAs exist) while the kernel's lookup found B local, over lo, whose disable_xfrm sends the
    datagram past the ESP policy in the clear."""
    a_rule_sends_b_by_vc(ns, "from", "10.77.0.0/24")
    esp_policies(ns, A, B)
    result = wildcard_send_and_ask(ns, B)
    assert result["sent"] == 0 and result["clear"], ("the kernel did not send over lo", result)
    assert result["reason"].startswith(f"outbound: {DISABLED}"), result


def test_a_wildcard_bound_sockets_source_is_the_one_its_route_picks(ns: Netns) -> None:
    """Review of i14-route, item 3: the source address of a socket bound to the wildcard address came from a
    probe socket's connect(), which routes with the querier's uid, no TOS and UDP: a uidrange rule the
    socket's owner meets (here its table's route prefers 10.79.0.1) was missed, and the policies were matched
    for the main table's source (C: no policy, "clear") while the kernel blocks the socket's datagram from
    10.79.0.1. Asked now as the socket's own route (RTA_UID and the rest) and read from RTA_PREFSRC."""
    peer = "10.80.0.2"
    vb_and_vc(ns)
    ns.ip("route", "add", "10.80.0.0/24", "dev", "vb", "src", C)
    ns.ip("route", "add", "10.80.0.0/24", "dev", "vc", "src", "10.79.0.1", "table", "100")
    ns.ip("rule", "add", "uidrange", "1000-1000", "lookup", "100")
    ns.ip("xfrm", "policy", "add", "src", "10.79.0.1", "dst", peer, "dir", "out", "action", "block")
    result = wildcard_send_and_ask(ns, peer, uid=1000)
    assert result["sent"] == errno.EPERM, "the kernel did not block the datagram from 10.79.0.1"
    assert result["reason"].startswith("outbound: the policy blocks the flow"), result


TWO_OWNERS_ASK = """
import json, os, socket, sys
import secsock
reasons = []
for uid in (0, 1000):  # one process, within the 1 s the answers are kept
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    os.fchown(s.fileno(), uid, -1)  # sockfs_setattr: the socket's sk_uid
    s.bind((sys.argv[1], 0))
    reasons.append(secsock.query(s, peer=(sys.argv[2], 600)).reason)
print(json.dumps(reasons))
"""


def test_kept_local_peer_routes_are_keyed_by_all_the_route_is_asked_with(ns: Netns) -> None:
    """Review of i14-route, items 5 and 12: whether a peer is one of the host's addresses (over lo, whose
    disable_xfrm sends in the clear) was kept per peer, local address and device only, but route_get asks
    with the socket's uid (and TOS, protocol, ports, mark): a second socket, owned by the uid a rule sends by
    vc, got the first one's answer ("XFRM is disabled") for a flow the kernel transforms."""
    a_rule_sends_b_by_vc(ns, "uidrange", "1000-1000")
    esp_policies(ns, A, B)
    done = subprocess.run(ns.exec_argv(sys.executable, "-c", TWO_OWNERS_ASK, A, B),
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    root, other = json.loads(done.stdout)
    assert root.startswith(f"outbound: {DISABLED}"), root
    assert other.startswith("outbound: no SA fits a template"), other


DONTROUTE_SEND_AND_ASK = """
import errno, json, socket, sys
import secsock
local, peer = sys.argv[1:3]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)  # ip_sock_rt_scope: RT_SCOPE_LINK
s.bind((local, 0))
s.setblocking(False)
sent = s.connect_ex((peer, 600))  # EINPROGRESS once the SYN is routed, EPERM if a policy blocks it
sent = 0 if sent == errno.EINPROGRESS else sent
print(json.dumps({"sent": sent, "reason": secsock.query(s, peer=(peer, 600)).reason}))
"""


def test_a_dontroute_sockets_device_is_not_decidable(ns: Netns) -> None:
    """Review of i14-route, item 6: SO_DONTROUTE makes the socket's route lookup link-scoped
    (ip_sock_rt_scope), so fib_table_lookup passes over a route via a gateway (its scope is below link) and
    the flow leaves by an on-link route's device instead, which RTM_GETROUTE cannot ask for (no scope
    attribute). The backend asked, got the gateway route's vb, and answered with the block below the `dev vc`
    bypass the kernel's SYN passes by: not decidable now, as a `dev` selector's device is unknown."""
    peer = "10.80.0.2"
    vb_and_vc(ns)
    ns.ip("route", "add", "10.80.0.0/24", "via", "10.78.0.2", "dev", "vb")
    ns.ip("route", "add", "10.80.0.0/16", "dev", "vc")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dev", "vc", "dir", "out", "priority", "10")
    ns.ip("xfrm", "policy", "add", "src", C, "dst", peer, "dir", "out", "priority", "100", "action", "block")
    done = subprocess.run(ns.exec_argv(sys.executable, "-c", DONTROUTE_SEND_AND_ASK, C, peer),
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sent"] == 0, "the kernel did not route the SYN by vc"
    assert result["reason"].startswith(f"outbound: {DEV_UNDECIDABLE}"), result


OVERFLOW_OWNER_ASK = """
import json, os, socket, sys
import secsock
local, peer = sys.argv[1:3]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
os.fchown(s.fileno(), 65534, -1)  # what fstat reports for an owner unmapped in the querier's user namespace
s.bind((local, 0))
s.setblocking(False)
s.connect_ex((peer, 600))
print(json.dumps(secsock.query(s, peer=(peer, 600)).reason))
"""


@pytest.mark.parametrize("rule", [("uidrange", "1000-1000"), ("dport", "601")], ids=["uidrange", "other"])
def test_an_overflow_owner_is_not_decidable_where_a_rule_selects_on_the_uid(
    ns: Netns, rule: tuple[str, str]
) -> None:
    """Review of i14-route, item 11: fstat reports a socket owner unmapped in the querier's user namespace as
    the overflow uid (65534), and RTA_UID then asks the route for 65534, not the socket's sk_uid: with a
    uidrange rule in the namespace the route, and a `dev` selector's answer, may be another owner's. The
    backend answered from that route (the block, here); now not decidable while some rule selects on the
    uid, and decided as before otherwise. (The owner is set to 65534 with fchown: same fstat.)"""
    peer = "10.80.0.2"
    a_rule_sends_the_peer_by_vc(ns, peer, *rule)
    done = subprocess.run(ns.exec_argv(sys.executable, "-c", OVERFLOW_OWNER_ASK, C, peer),
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    reason = json.loads(done.stdout)
    if rule[0] == "uidrange":
        assert reason.startswith(f"outbound: {DEV_UNDECIDABLE}"), reason
    else:
        assert reason.startswith("outbound: the policy blocks the flow"), reason


ACCEPTED_ASK = """
import json, os, socket, sys
import secsock
a, b = sys.argv[1:3]
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.bind((a, 0))
listener.listen()
client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
client.bind((b, 0))
client.connect(listener.getsockname())
accepted, _ = listener.accept()
answers = {"accepted": secsock.query(accepted).reason}
# sockfs_setattr: the accepted socket's sk_uid becomes 1000 (as sock_graft gives it the owner of a service
# running as another user than the listener's, systemd's socket activation); its route stays the listener's.
os.fchown(accepted.fileno(), 1000, -1)
answers["accepted-by-another-owner"] = secsock.query(accepted).reason
# A socket connecting as uid 1000 (its SYN routed by vc): no listener on its port.
other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
os.fchown(other.fileno(), 1000, -1)
other.bind((b, 0))
other.setblocking(False)
other.connect_ex(listener.getsockname())
answers["connecting"] = secsock.query(other, peer=listener.getsockname()).reason
print(json.dumps(answers))
"""


def test_an_accepted_socket_owned_apart_from_its_listener_is_not_decidable_under_a_uid_rule(
    ns: Netns,
) -> None:
    """Review of i14-route, item 1: inet_csk_route_child_sock builds an accepted socket's route with the
    listener's sk_uid, and the socket keeps it when sock_graft (or fchown) gives it another owner; the
    backend asked the route as the socket's owner: with a uidrange rule (here: uid 1000's flows to B leave
    by vc) it took the vc route, where the kernel's is the listener's, over lo (whose disable_xfrm sends in
    the clear). Now not decidable while the listener's owner differs; the same owner and a connecting socket
    (no listener on its port) stay decided."""
    a_rule_sends_b_by_vc(ns, "uidrange", "1000-1000")
    esp_policies(ns, A, B)
    esp_policies(ns, B, A)
    done = subprocess.run(ns.exec_argv(sys.executable, "-c", ACCEPTED_ASK, A, B),
                          capture_output=True, text=True, env=child_env())  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout)
    assert answers["accepted"].startswith(f"outbound: {DISABLED}"), answers
    assert answers["accepted-by-another-owner"].startswith("outbound: not decidable"), answers
    assert answers["connecting"].startswith("outbound: no SA fits a template"), answers

"""Runs inside a network namespace (``ip netns exec NS python xfrm_probe.py STEPS_JSON``) for the Linux XFRM
tests: makes sockets, asks secsock.query about them and prints one ``RESULT {json}`` line per query.

STEPS_JSON is a list of steps, run in order in this one process (so later queries use the snapshot that
earlier ones built):
  {"op": "udp", "name": N, "local": ADDR, "peer": ADDR, "port": P, "connect": bool, "sport": P, "mark": M,
   "tos": T, "dontroute": bool, "device": IFNAME, "unicast_if": IFNAME}  (IP_TOS; SO_DONTROUTE;
   SO_BINDTODEVICE; IPv4 IP_UNICAST_IF)
  {"op": "query", "name": N, "peer": [ADDR, P] | null}   query a socket made earlier
  {"op": "run", "argv": [...]}                          a command (ip xfrm ...) that must succeed
  {"op": "tcp-serve", "addr": ADDR, "port": P}          accept one client, query the accepted socket,
                                                        then wait for the client to close
  {"op": "tcp-connect", "addr": ADDR, "port": P, "name": N}   connect and query; kept open as N if named
  {"op": "tcp-local", "addr": ADDR, "port": P, "device": IFNAME, "mptcp": bool}   a listener on one of this
                                                        host's addresses and a client (SO_BINDTODEVICE if
                                                        given; both MPTCP if asked) connected to it: query
                                                        the client
  {"op": "tcp-syn", "local": ADDR, "peer": ADDR, "port": P}   a non-blocking connect (the SYN routed, no
                                                        answer needed): query it with peer=
  {"op": "udp-serve", "addr": ADDR, "port": P}          receive one datagram, query with its sender as peer
  {"op": "udp-send", "addr": ADDR, "port": P}           connected UDP: query, then send one datagram
  {"op": "send", "name": N}                             one datagram on connected UDP socket N
  {"op": "data", "name": N}                             one ping/echo over TCP socket N (prints DATA)
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from typing import Any

import secsock


def describe(info: secsock.SecurityInfo) -> dict[str, Any]:
    def sas(direction: tuple[secsock.SecurityAssociation, ...]) -> list[dict[str, Any]]:
        return [
            {
                "proto": int(sa.protocol),
                "mode": int(sa.mode),
                "spi": sa.spi,
                "reqid": sa.reqid,
                "encryption": sa.encryption,
                "integrity": sa.integrity,
                "aead": sa.aead,
            }
            for sa in direction
        ]

    assert info.ipsec is not None, "the Linux backend always reports the per-direction SAs"
    return {
        "flags": int(info.flags),
        "secured": info.secured,
        "encrypted": info.encrypted,
        "protocol": int(info.protocol),
        "outbound": sas(info.ipsec.outbound),
        "inbound": sas(info.ipsec.inbound),
        "reason": info.reason,
    }


def ask(sock: socket.socket, peer: tuple[str, int] | None = None) -> None:
    try:
        result = describe(secsock.query(sock, peer=peer))
    except Exception as exc:  # reported to the test, which asserts on the type and text
        result = {
            "error": type(exc).__name__,
            "errno": getattr(exc, "errno", None),
            "message": str(exc),
            "bases": [cls.__name__ for cls in type(exc).__mro__],
        }
    print("RESULT " + json.dumps(result), flush=True)


IP_UNICAST_IF = 50  # linux/in.h; not in Python's socket module


def family_of(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def main() -> None:
    steps = json.loads(sys.argv[1])
    socks: dict[str, socket.socket] = {}
    peers: dict[str, tuple[str, int] | None] = {}
    for step in steps:
        op = step["op"]
        if op == "udp":
            s = socket.socket(family_of(step["peer"]), socket.SOCK_DGRAM)
            if step.get("mark"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, step["mark"])
            if step.get("tos"):
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, step["tos"])
            if step.get("dontroute"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_DONTROUTE, 1)
            if step.get("device"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, step["device"].encode())
            if step.get("unicast_if"):
                index = struct.pack("!I", socket.if_nametoindex(step["unicast_if"]))  # network order
                s.setsockopt(socket.IPPROTO_IP, IP_UNICAST_IF, index)
            s.bind((step.get("local", "0.0.0.0" if ":" not in step["peer"] else "::"), step.get("sport", 0)))
            peer = (step["peer"], step["port"])
            if step.get("connect"):
                s.connect(peer)
            socks[step["name"]] = s
            peers[step["name"]] = None if step.get("connect") else peer
            ask(s, peers[step["name"]])
        elif op == "query":
            peer = tuple(step["peer"]) if step.get("peer") else peers[step["name"]]
            ask(socks[step["name"]], peer)  # type: ignore[arg-type]
        elif op == "run":
            subprocess.run(step["argv"], check=True)
        elif op == "tcp-serve":
            with socket.socket(family_of(step["addr"]), socket.SOCK_STREAM) as listener:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((step["addr"], step["port"]))
                listener.listen(1)
                listener.settimeout(30)
                print("READY", flush=True)
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(30)
                    ask(conn)
                    data = conn.recv(16)  # the client's request, or b"" when it closes
                    if data:
                        conn.sendall(data)
                        conn.recv(16)
        elif op == "tcp-connect":
            s = socket.create_connection((step["addr"], step["port"]), timeout=15)
            ask(s)
            if step.get("name"):  # kept open for later steps; closed at the end
                socks[step["name"]] = s
                peers[step["name"]] = None
            else:
                s.close()
        elif op == "tcp-local":
            family = family_of(step["addr"])
            proto = socket.IPPROTO_MPTCP if step.get("mptcp") else 0
            with (
                socket.socket(family, socket.SOCK_STREAM, proto) as listener,
                socket.socket(family, socket.SOCK_STREAM, proto) as client,
            ):
                listener.bind((step["addr"], step["port"]))
                listener.listen(1)
                if step.get("device"):
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, step["device"].encode())
                client.settimeout(15)
                client.connect((step["addr"], step["port"]))
                ask(client)
        elif op == "tcp-syn":
            with socket.socket(family_of(step["peer"]), socket.SOCK_STREAM) as s:
                s.bind((step["local"], 0))
                s.setblocking(False)
                s.connect_ex((step["peer"], step["port"]))  # EINPROGRESS, or EPERM where a policy blocks
                ask(s, (step["peer"], step["port"]))
        elif op == "send":
            try:
                socks[step["name"]].send(b"x")
            except OSError:
                pass  # the kernel may refuse the packet (an SA that just expired): only its effect matters
        elif op == "data":
            s = socks[step["name"]]
            s.sendall(b"ping")
            print("DATA " + json.dumps(s.recv(16).decode()), flush=True)
        elif op == "udp-serve":
            with socket.socket(family_of(step["addr"]), socket.SOCK_DGRAM) as s:
                s.bind((step["addr"], step["port"]))
                s.settimeout(30)
                print("READY", flush=True)
                _, sender = s.recvfrom(64)
                ask(s, (sender[0], sender[1]))
        elif op == "udp-send":
            with socket.socket(family_of(step["addr"]), socket.SOCK_DGRAM) as s:
                s.connect((step["addr"], step["port"]))
                ask(s)
                s.send(b"x")
        else:
            raise SystemExit(f"xfrm_probe: unknown step {op!r}")
    for s in socks.values():
        s.close()


if __name__ == "__main__":
    main()

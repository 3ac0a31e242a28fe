"""A minimal NETLINK_XFRM client in pure Python (socket module only), for the benchmark and the fault tests.

- XfrmSocket adds and deletes policies fast: many requests per datagram, acknowledgements checked, so
  100,000 policies take seconds instead of 100,000 ``ip`` processes.
- dump() is "what a Linux user would write instead": an XFRM_MSG_GETPOLICY (or GETSA) dump per call.
- query_by_dump() is the straightforward dump-per-query client the benchmark compares secsock with: dump every
  policy, find the one the kernel would apply to a flow (lowest priority value among the matching selectors),
  then dump the SAs and look for the template's SA.

Layouts are the kernel's uapi (linux/xfrm.h, x86_64/aarch64): struct xfrm_userpolicy_info is 168 bytes.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_XFRM = 6
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400
XFRM_MSG_NEWSA, XFRM_MSG_GETSA = 0x10, 0x12
XFRM_MSG_NEWPOLICY, XFRM_MSG_DELPOLICY, XFRM_MSG_GETPOLICY = 0x13, 0x14, 0x15
XFRM_MSG_FLUSHPOLICY = 0x1D
XFRMA_TMPL, XFRMA_IF_ID = 5, 31
XFRM_POLICY_IN, XFRM_POLICY_OUT = 0, 1
XFRM_POLICY_ALLOW, XFRM_POLICY_BLOCK = 0, 1
XFRM_INF = 0xFFFFFFFFFFFFFFFF
IPPROTO_ESP = 50

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
# struct xfrm_selector: daddr, saddr, dport, dport_mask, sport, sport_mask, family, prefixlen_d, prefixlen_s,
# proto, 3 pad, ifindex, user (56 bytes).
_SELECTOR = struct.Struct("=16s16sHHHHHBBB3xiI")
# struct xfrm_userpolicy_info: sel, lft (8 x u64), curlft (4 x u64), priority, index, dir, action, flags,
# share.
_POLICY_INFO = struct.Struct("=56s8Q4QIIBBBB4x")
# struct xfrm_userpolicy_id: sel, index, dir, 3 pad.
_POLICY_ID = struct.Struct("=56sIB3x")
# struct xfrm_user_tmpl: id (daddr, spi, proto, 3 pad), family, 2 pad, saddr, reqid, mode, share, optional,
# 1 pad, aalgos, ealgos, calgos.
_TMPL = struct.Struct("=16sIB3xH2x16sIBBBxIII")
assert _SELECTOR.size == 56 and _POLICY_INFO.size == 168 and _POLICY_ID.size == 64 and _TMPL.size == 64


def _align(n: int) -> int:
    return (n + 3) & ~3


def _addr(text: str) -> tuple[int, bytes]:
    address = ipaddress.ip_address(text)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return family, address.packed.ljust(16, b"\0")


def selector(
    src: str,
    dst: str,
    plen_s: int | None = None,
    plen_d: int | None = None,
    proto: int = 0,
    sport: int = 0,
    dport: int = 0,
) -> bytes:
    family, saddr = _addr(src)
    _, daddr = _addr(dst)
    full = 32 if family == socket.AF_INET else 128
    return _SELECTOR.pack(
        daddr,
        saddr,
        socket.htons(dport),
        0xFFFF if dport else 0,
        socket.htons(sport),
        0xFFFF if sport else 0,
        family,
        full if plen_d is None else plen_d,
        full if plen_s is None else plen_s,
        proto,
        0,
        0,
    )


@dataclass
class Policy:
    sel: bytes
    direction: int = XFRM_POLICY_OUT
    priority: int = 0
    action: int = XFRM_POLICY_ALLOW
    esp_transport: bool = False  # one ESP transport template (reqid 0)
    if_id: int = 0

    def payload(self) -> bytes:
        info = _POLICY_INFO.pack(
            self.sel,
            XFRM_INF,
            XFRM_INF,
            XFRM_INF,
            XFRM_INF,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            self.priority,
            0,
            self.direction,
            self.action,
            0,
            0,
        )
        attrs = b""
        if self.esp_transport:
            family = struct.unpack_from("=H", self.sel, 40)[0]
            tmpl = _TMPL.pack(
                b"\0" * 16,
                0,
                IPPROTO_ESP,
                family,
                b"\0" * 16,
                0,
                0,
                0,
                0,
                ~0 & 0xFFFFFFFF,
                ~0 & 0xFFFFFFFF,
                ~0 & 0xFFFFFFFF,
            )
            attrs += _attr(XFRMA_TMPL, tmpl)
        if self.if_id:
            attrs += _attr(XFRMA_IF_ID, struct.pack("=I", self.if_id))
        return info + attrs

    def id_payload(self) -> bytes:
        """What XFRM_MSG_DELPOLICY needs to find it: selector and direction, and its if_id if any."""
        attrs = _attr(XFRMA_IF_ID, struct.pack("=I", self.if_id)) if self.if_id else b""
        return _POLICY_ID.pack(self.sel, 0, self.direction) + attrs


def _attr(kind: int, data: bytes) -> bytes:
    raw = _NLATTR.pack(4 + len(data), kind) + data
    return raw.ljust(_align(len(raw)), b"\0")


def _message(kind: int, flags: int, seq: int, payload: bytes) -> bytes:
    raw = _NLMSGHDR.pack(16 + len(payload), kind, flags, seq, 0) + payload
    return raw.ljust(_align(len(raw)), b"\0")


def messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) for each message in one datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < 16 or offset + length > len(data):
            raise OSError("malformed netlink datagram")
        yield kind, flags, seq, data[offset + 16 : offset + length]
        offset += _align(length)


class XfrmSocket:
    """One NETLINK_XFRM socket in the calling process's network namespace."""

    def __init__(self, rcvbuf: int = 8 << 20) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> XfrmSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        return self.seq

    def requests(self, kind: int, payloads: Iterable[bytes], flags: int = 0, batch: int = 64) -> int:
        """Send one request per payload, many per datagram, each acknowledged; raise on the first error."""
        sent = 0
        chunk: list[bytes] = []
        for payload in payloads:
            chunk.append(_message(kind, NLM_F_REQUEST | NLM_F_ACK | flags, self._next_seq(), payload))
            if len(chunk) == batch:
                self._send_and_ack(chunk)
                sent += len(chunk)
                chunk = []
        if chunk:
            self._send_and_ack(chunk)
            sent += len(chunk)
        return sent

    def _send_and_ack(self, chunk: list[bytes]) -> None:
        self.sock.send(b"".join(chunk))
        pending = len(chunk)
        while pending:
            for kind, _, _, payload in messages(self.sock.recv(1 << 20)):
                if kind == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    if error:
                        raise OSError(-error, f"XFRM request failed: {os.strerror(-error)}")
                    pending -= 1

    def add_policies(self, policies: Iterable[Policy]) -> int:
        return self.requests(XFRM_MSG_NEWPOLICY, (p.payload() for p in policies), NLM_F_CREATE | NLM_F_EXCL)

    def delete_policies(self, policies: Iterable[Policy]) -> int:
        return self.requests(XFRM_MSG_DELPOLICY, (p.id_payload() for p in policies))

    def flush_policies(self) -> None:
        self.requests(XFRM_MSG_FLUSHPOLICY, [b"\0" * 4])

    def dump(self, kind: int) -> Iterator[tuple[int, bytes]]:
        """(type, payload) of every message of a GETPOLICY/GETSA dump."""
        seq = self._next_seq()
        self.sock.send(_message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, b""))
        while True:
            for mtype, _, mseq, payload in messages(self.sock.recv(1 << 20)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return
                if mtype == NLMSG_ERROR:
                    (error,) = struct.unpack_from("=i", payload)
                    raise OSError(-error, f"XFRM dump failed: {os.strerror(-error)}")
                yield mtype, payload


def _prefix_match(a: bytes, b: bytes, plen: int) -> bool:
    full, rest = divmod(plen, 8)
    if a[:full] != b[:full]:
        return False
    if rest:
        mask = (0xFF00 >> rest) & 0xFF
        return (a[full] & mask) == (b[full] & mask)
    return True


def query_by_dump(xs: XfrmSocket, local: str, peer: str, lport: int, pport: int, proto: int) -> bool:
    """The straightforward client: dump everything on every query; True when an outbound ESP SA applies."""
    family, laddr = _addr(local)
    _, paddr = _addr(peer)
    best: tuple[int, bytes] | None = None
    for kind, payload in xs.dump(XFRM_MSG_GETPOLICY):
        if kind != XFRM_MSG_NEWPOLICY or len(payload) < _POLICY_INFO.size:
            continue
        fields = _POLICY_INFO.unpack_from(payload)
        sel, priority, direction, action = fields[0], fields[13], fields[15], fields[16]
        if direction != XFRM_POLICY_OUT:
            continue
        daddr, saddr, dport, dmask, sport, smask, sfamily, plen_d, plen_s, sproto, _, _ = _SELECTOR.unpack(
            sel
        )
        if sfamily != family or (sproto and sproto != proto):
            continue
        if (socket.htons(pport) ^ dport) & dmask or (socket.htons(lport) ^ sport) & smask:
            continue
        if not (_prefix_match(paddr, daddr, plen_d) and _prefix_match(laddr, saddr, plen_s)):
            continue
        if best is None or priority < best[0]:
            best = (priority, payload[_POLICY_INFO.size :] if action == XFRM_POLICY_ALLOW else b"")
    if best is None or not best[1]:
        return False
    # The policy has templates: is there an ESP SA toward the peer?
    for kind, payload in xs.dump(XFRM_MSG_GETSA):
        if kind == XFRM_MSG_NEWSA and payload[56:72] == paddr and payload[76] == IPPROTO_ESP:
            return True
    return False

"""python -m secsock: is this connection really protected?

    python -m secsock probe HOST PORT [--udp] [--json]   connect (or send one datagram) and print the answer
    python -m secsock serve PORT [--host H] [--udp] [--count N] [--json]
                                                         accept and print each peer's answer

Exit status: 0 when every query succeeded, 1 when a query failed, 2 for bad usage, 3 on a platform without
a backend (it says why).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from . import SecurityInfo, SecurityProtocol, UnsupportedPlatformError, _extension, query
from ._types import _flags_text, _sas_text

EXIT_FAILED = 1
EXIT_UNSUPPORTED = 3
TOKEN_QUERY = 0x0008  # enough to read the peer's identity from its tokens (Windows)


def describe(info: SecurityInfo, local: Any, peer: Any, transport: str) -> dict[str, Any]:
    """The answer as plain data, for --json and for the text form."""
    protocol = info.protocol.name if isinstance(info.protocol, SecurityProtocol) else int(info.protocol)
    data: dict[str, Any] = {
        "local": _address_text(local),
        "peer": _address_text(peer),
        "transport": transport,
        "protocol": protocol,
        "flags": int(info.flags),
        "secured": info.secured,
        "encrypted": info.encrypted,
        "peer_application_token": info.peer_application_token is not None,
        "peer_machine_token": info.peer_machine_token is not None,
    }
    identity = _identity(info)
    if identity is not None:
        data["peer_identity"] = identity
    if info.ipsec is not None:
        data["ipsec"] = {
            direction: [
                {
                    "protocol": getattr(sa.protocol, "name", sa.protocol),
                    "mode": getattr(sa.mode, "name", sa.mode),
                    "spi": sa.spi,
                    "reqid": sa.reqid,
                    "encryption": sa.encryption,
                    "integrity": sa.integrity,
                    "aead": sa.aead,
                }
                for sa in sas
            ]
            for direction, sas in (("outbound", info.ipsec.outbound), ("inbound", info.ipsec.inbound))
        }
    return data


def _identity(info: SecurityInfo) -> dict[str, Any] | None:
    """Who the peer is, from its tokens (Windows, when IPsec authenticated it); None without tokens."""
    tokens = {"application": info.peer_application_token, "machine": info.peer_machine_token}
    identity: dict[str, Any] = {}
    for kind, token in tokens.items():
        if token is None:
            continue
        try:
            user = token.user
            identity[kind] = {"sid": user.sid, "name": user.name}
        except OSError as exc:  # the token came back but could not be read: say so, never guess
            identity[kind] = {"error": str(exc)}
    return identity or None


def _address_text(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_answer(info: SecurityInfo, data: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(data, sort_keys=True), file=out, flush=True)
        return
    lines = [
        f"{data['local']} <-> {data['peer']} ({data['transport']})",
        f"  protocol   {data['protocol']}",
        f"  flags      {_flags_text(info.flags)}",
        f"  secured    {'yes' if info.secured else 'no'}",
        f"  encrypted  {'yes' if info.encrypted else 'no'}",
    ]
    if info.ipsec is not None:
        lines.append(f"  outbound   {_sas_text(info.ipsec.outbound)}")
        lines.append(f"  inbound    {_sas_text(info.ipsec.inbound)}")
    for kind, who in (data.get("peer_identity") or {}).items():
        text = who.get("name") or who.get("sid") if "error" not in who else f"unreadable ({who['error']})"
        lines.append(f"  peer {kind:<11} {text}")
    print("\n".join(lines), file=out, flush=True)


def _print_error(exc: OSError, peer: Any, as_json: bool, out: TextIO) -> None:
    if as_json:
        error = {"peer": _address_text(peer) if peer else None, "error": str(exc), "errno": exc.errno}
        if getattr(exc, "winerror", None) is not None:
            error["winerror"] = exc.winerror  # type: ignore[attr-defined]
        print(json.dumps(error, sort_keys=True), file=out, flush=True)
    else:
        print(f"query failed: {exc}", file=sys.stderr, flush=True)


def _query_and_print(sock: socket.socket, peer: Any, transport: str, as_json: bool, out: TextIO) -> bool:
    try:
        with query(sock, peer=peer[:2] if transport == "udp" else None, token_access=TOKEN_QUERY) as info:
            _print_answer(info, describe(info, sock.getsockname(), peer, transport), as_json, out)
    except OSError as exc:
        _print_error(exc, peer, as_json, out)
        return False
    return True


def probe(host: str, port: int, udp: bool, as_json: bool, timeout: float, out: TextIO) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        if udp:
            sock.send(b"secsock probe\n")  # the policy lookup and any SA negotiation start on traffic
        peer = sock.getpeername()
        ok = _query_and_print(sock, peer, "udp" if udp else "tcp", as_json, out)
    return 0 if ok else EXIT_FAILED


def serve(host: str, port: int, udp: bool, count: int | None, as_json: bool, out: TextIO) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ok, served = True, 0
    if udp:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, port))
            _announce(sock, "udp", as_json)
            while count is None or served < count:
                _, peer = sock.recvfrom(65535)
                ok = _query_and_print(sock, peer, "udp", as_json, out) and ok
                served += 1
        return 0 if ok else EXIT_FAILED
    with socket.create_server((host, port), family=family) as listener:
        _announce(listener, "tcp", as_json)
        while count is None or served < count:
            conn, peer = listener.accept()
            with conn:
                ok = _query_and_print(conn, peer, "tcp", as_json, out) and ok
            served += 1
    return 0 if ok else EXIT_FAILED


def _announce(sock: socket.socket, transport: str, as_json: bool) -> None:
    # On stderr, so --json output stays one answer per line; tests read the port from here.
    print(f"listening on {_address_text(sock.getsockname())} ({transport})", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m secsock", description="Is this connection really protected?"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    probe_cmd = commands.add_parser("probe", help="connect to HOST PORT and print how the traffic is secured")
    probe_cmd.add_argument("host", help="a numeric IP address")
    probe_cmd.add_argument("port", type=int)
    probe_cmd.add_argument("--udp", action="store_true", help="send one datagram instead of connecting TCP")
    probe_cmd.add_argument("--timeout", type=float, default=10.0, help="connect time-out in seconds")
    serve_cmd = commands.add_parser("serve", help="accept on PORT and print each peer's answer")
    serve_cmd.add_argument("port", type=int)
    serve_cmd.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve_cmd.add_argument("--udp", action="store_true", help="answer each datagram's sender")
    serve_cmd.add_argument("--count", type=int, default=None, help="stop after N peers")
    for command in (probe_cmd, serve_cmd):
        command.add_argument("--json", action="store_true", help="one JSON object per answer")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = out if out is not None else sys.stdout
    if not _extension.has_backend():
        message = UnsupportedPlatformError.__doc__ or "no backend for this platform"
        print(f"secsock: {message} This is {sys.platform!r}.", file=sys.stderr)
        return EXIT_UNSUPPORTED
    try:
        if args.command == "probe":
            return probe(args.host, args.port, args.udp, args.json, args.timeout, out)
        return serve(args.host, args.port, args.udp, args.count, args.json, out)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # connect or bind failed: say so, never a traceback
        print(f"secsock {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

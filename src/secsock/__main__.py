"""secsock (or python -m secsock): is this connection really protected?

    secsock probe HOST PORT [--udp] [--require secured|encrypted|none] [--json]
                                       connect (or send one datagram), print the answer, check the demand
    secsock explain HOST PORT [--udp] [--json]
                                       the same, with the reason the backend gives for its answer
    secsock serve PORT [--host H] [--udp] [--count N] [--json]
                                       accept and print each peer's answer
    secsock --version

HOST is a numeric IP address: a security check never depends on a DNS answer.

Exit status:
  0    every query succeeded (and, for probe, the answer met --require)
  1    a query failed
  2    bad usage (an unknown option, a port out of range, a host that is not a numeric IP address)
  3    no backend on this platform (it says why)
  4    probe: the answer did not meet --require (default: secured; --require none never exits 4)
  5    the connection or the listener could not be set up (connect, bind, accept failed)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from . import (
    BACKEND,
    ConnectionFlags,
    NotSecuredError,
    Requirement,
    SecurityInfo,
    SecurityProtocol,
    UnsupportedPlatformError,
    __version__,
    _extension,
    query,
)
from ._types import _flags_text, _sas_text

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNSUPPORTED = 3
EXIT_NOT_MET = 4
EXIT_NO_CONNECTION = 5
EXIT_INTERRUPTED = 130
TOKEN_QUERY = 0x0008  # enough to read the peer's identity from its tokens (Windows)
REQUIREMENTS = {
    "secured": Requirement(secured=True),
    "encrypted": Requirement(encrypted=True),
    "none": Requirement(secured=False),
}
# Every --json line has these keys, answer or error, so a reader never meets a missing one.
_ANSWER_KEYS = tuple(SecurityInfo(SecurityProtocol.DEFAULT, ConnectionFlags(0)).as_dict())


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


def _record(local: Any, peer: Any, transport: str, required: str | None) -> dict[str, Any]:
    """A --json line's keys, all present, before the answer or the error fills them."""
    record: dict[str, Any] = {
        "ok": False,
        "local": _address_text(local) if local else None,
        "peer": _address_text(peer) if peer else None,
        "transport": transport,
        "error": None,
        "errno": None,
        "winerror": None,
        "required": required,
        "met": None,
        "failed": None,
        "peer_identity": None,
        "reason": None,  # the backend's reason for its answer (Linux); kept on error lines too
    }
    record.update(dict.fromkeys(_ANSWER_KEYS))
    return record


def _print_answer(
    info: SecurityInfo, data: dict[str, Any], as_json: bool, explain: bool, out: TextIO
) -> None:
    if as_json:
        print(json.dumps(data, sort_keys=True), file=out, flush=True)
        return
    lines = [f"{data['local']} <-> {data['peer']} ({data['transport']})"]
    if info.secured:  # the protocol securing the traffic: none when nothing does
        lines.append(f"  protocol   {data['protocol']}")
    lines += [
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
    if explain:
        lines.append(f"  reason     {data['reason'] or 'this backend gives no reason for its answer'}")
    if data["required"] not in (None, "none"):
        verdict = "met" if data["met"] else f"NOT MET (not {data['failed']})"
        lines.append(f"  required   {data['required']}: {verdict}")
    print("\n".join(lines), file=out, flush=True)


def _print_error(exc: OSError, data: dict[str, Any], as_json: bool, out: TextIO) -> None:
    data.update(error=str(exc), errno=exc.errno, winerror=getattr(exc, "winerror", None))
    if as_json:
        print(json.dumps(data, sort_keys=True), file=out, flush=True)
    else:
        print(f"query failed: {exc}", file=sys.stderr, flush=True)


def _query_and_print(
    sock: socket.socket,
    peer: Any,
    transport: str,
    as_json: bool,
    out: TextIO,
    required: str | None = None,
    explain: bool = False,
) -> int:
    """Query sock, print the answer (or the error); 0, EXIT_FAILED or EXIT_NOT_MET."""
    data = _record(sock.getsockname(), peer, transport, required)
    try:
        with query(sock, peer=peer[:2] if transport == "udp" else None, token_access=TOKEN_QUERY) as info:
            data.update(info.as_dict(), ok=True, peer_identity=_identity(info))
            status = 0
            if required is not None:
                try:
                    REQUIREMENTS[required].verify(info)
                    data["met"] = True
                except NotSecuredError as exc:
                    data.update(met=False, failed=exc.demand)
                    status = EXIT_NOT_MET
            _print_answer(info, data, as_json, explain, out)
    except OSError as exc:
        _print_error(exc, data, as_json, out)
        return EXIT_FAILED
    return status


def probe(
    host: str,
    port: int,
    udp: bool,
    as_json: bool,
    timeout: float,
    out: TextIO,
    required: str | None = None,
    explain: bool = False,
) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        if udp:
            sock.send(b"secsock probe\n")  # the policy lookup and any SA negotiation start on traffic
        peer = sock.getpeername()
        return _query_and_print(sock, peer, "udp" if udp else "tcp", as_json, out, required, explain)


def serve(host: str, port: int, udp: bool, count: int | None, as_json: bool, out: TextIO) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ok, served = True, 0
    if udp:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((host, port))
            _announce(sock, "udp", as_json)
            while count is None or served < count:
                _, peer = sock.recvfrom(65535)
                ok = _query_and_print(sock, peer, "udp", as_json, out) == 0 and ok
                served += 1
        return 0 if ok else EXIT_FAILED
    with socket.create_server((host, port), family=family) as listener:
        _announce(listener, "tcp", as_json)
        while count is None or served < count:
            conn, peer = listener.accept()
            with conn:
                ok = _query_and_print(conn, peer, "tcp", as_json, out) == 0 and ok
            served += 1
    return 0 if ok else EXIT_FAILED


def _announce(sock: socket.socket, transport: str, as_json: bool) -> None:
    # On stderr, so --json output stays one answer per line; tests read the port from here.
    print(f"listening on {_address_text(sock.getsockname())} ({transport})", file=sys.stderr, flush=True)


def _host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a numeric IP address (names are not resolved: a security check never "
            "depends on a DNS answer)"
        ) from None
    return text


def _port(lowest: int) -> Any:
    def port(text: str) -> int:
        # ASCII digits only: int() would also take " 80", "+80", "8_0" and other scripts' digits.
        value = int(text) if text.isascii() and text.isdigit() else -1
        if not lowest <= value <= 0xFFFF:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number ({lowest} to 65535)")
        return value

    return port


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive count")
    return int(text)


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time-out in seconds (a positive number)")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage block: "secsock probe: error: argument port: ..."
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="secsock",
        description="Is this connection really protected?",
        epilog="exit status: 0 ok; 1 a query failed; 2 bad usage; 3 no backend on this platform; 4 probe: "
        "--require not met; 5 could not connect, bind or accept; 130 interrupted",
    )
    parser.add_argument(
        "--version", action="version", version=f"secsock {__version__} (backend {BACKEND or 'none'})"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    probe_cmd = commands.add_parser("probe", help="connect to HOST PORT and print how the traffic is secured")
    explain_cmd = commands.add_parser(
        "explain", help="as probe, and print the reason the backend gives for its answer"
    )
    for command in (probe_cmd, explain_cmd):
        command.add_argument("host", type=_host, help="a numeric IP address (names are not resolved)")
        command.add_argument("port", type=_port(1), help="1 to 65535")
        command.add_argument("--udp", action="store_true", help="send one datagram instead of connecting TCP")
        command.add_argument("--timeout", type=_timeout, default=10.0, help="connect time-out in seconds")
    probe_cmd.add_argument(
        "--require",
        choices=tuple(REQUIREMENTS),
        default="secured",
        help="exit 4 unless the connection is this (default: secured; none: only report)",
    )
    serve_cmd = commands.add_parser("serve", help="accept on PORT and print each peer's answer")
    serve_cmd.add_argument("port", type=_port(0), help="0 to 65535 (0: any free port)")
    serve_cmd.add_argument(
        "--host", type=_host, default="0.0.0.0", help="numeric address to listen on (default 0.0.0.0)"
    )
    serve_cmd.add_argument("--udp", action="store_true", help="answer each datagram's sender")
    serve_cmd.add_argument("--count", type=_count, default=None, help="stop after N peers")
    for command in (probe_cmd, explain_cmd, serve_cmd):
        command.add_argument("--json", action="store_true", help="one JSON object per answer or error")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The command line; returns the exit status (see the module's docstring)."""
    args = _parser().parse_args(argv)
    out = out if out is not None else sys.stdout
    if not _extension.has_backend():
        message = UnsupportedPlatformError.__doc__ or "no backend for this platform"
        print(f"secsock: {message} This is {sys.platform!r}.", file=sys.stderr)
        return EXIT_UNSUPPORTED
    try:
        if args.command in ("probe", "explain"):
            required = args.require if args.command == "probe" else None
            explain = args.command == "explain"
            return probe(args.host, args.port, args.udp, args.json, args.timeout, out, required, explain)
        return serve(args.host, args.port, args.udp, args.count, args.json, out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:  # connect or bind failed: say so, never a traceback
        print(f"secsock {args.command}: {exc}", file=sys.stderr)
        if args.json:
            transport = "udp" if args.udp else "tcp"
            peer = (args.host, args.port) if args.command != "serve" else None
            _print_error(exc, _record(None, peer, transport, getattr(args, "require", None)), True, out)
        return EXIT_NO_CONNECTION


if __name__ == "__main__":
    sys.exit(main())

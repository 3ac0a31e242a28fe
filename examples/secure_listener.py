"""Microsoft's "Using Secure Socket Extensions" secure server, in Python (Windows).

    python examples/secure_listener.py [--host 0.0.0.0] [--port 27015] [--member-of GROUP] [--count N]

The sample's steps, each one secsock call: WSASetSocketSecurity on the listening socket before bind
(SecureSocket.secure_listener), accept, WSAQuerySocketSecurity with a template asking for the peer's
tokens (query_security(token_access=...)), the authorization decision (here Requirement.verify: encrypted,
and the peer a member of a group when --member-of is given), then WSAImpersonateSocketPeer around the work
done for the peer and WSARevertImpersonation on every exit path (impersonate_peer()).

On Linux the first step raises secsock.UnsupportedOperation (IPsec there is system policy, and no peer
tokens exist): the program says so in one line and exits 3.
"""

from __future__ import annotations

import argparse
import socket
import sys

import secsock

TOKEN_QUERY, TOKEN_DUPLICATE = 0x0008, 0x0002
EXIT_UNSUPPORTED = 3


def serve_one(conn: secsock.SecureSocket, address: object, requirement: secsock.Requirement) -> None:
    with conn.query_security(token_access=TOKEN_QUERY | TOKEN_DUPLICATE) as info:
        try:
            requirement.verify(info)
        except secsock.NotSecuredError as refused:
            print(f"refused {address}: {refused}", file=sys.stderr, flush=True)
            return
        token = info.peer_application_token
        who = str(token.user) if token is not None else "an unauthenticated user"
        with conn.impersonate_peer():  # reverted on every exit path, exceptions included
            request = conn.recv(1024)  # work done here runs as the peer (this thread only)
        conn.sendall(b"hello " + who.encode() + b", you sent " + request)
        print(f"served {who} at {address}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=27015)
    parser.add_argument("--member-of", default=None, help='a SID or "DOMAIN\\group" the peer must belong to')
    parser.add_argument("--count", type=int, default=None, help="stop after N connections")
    args = parser.parse_args(argv)
    try:
        requirement = secsock.Requirement(encrypted=True, member_of=args.member_of)
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET  # a numeric host
        # set_security before bind, as the sample does
        listener = secsock.SecureSocket.secure_listener((args.host, args.port), family=family)
    except secsock.UnsupportedOperation as exc:
        print(f"secure_listener: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    with listener:
        host, port = listener.getsockname()[:2]
        print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
        served = 0
        while args.count is None or served < args.count:
            conn, address = listener.accept()
            with conn:
                serve_one(conn, address, requirement)
            served += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

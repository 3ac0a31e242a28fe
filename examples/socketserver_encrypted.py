"""An echo server that serves only IPsec-encrypted connections, with socketserver.

    python examples/socketserver_encrypted.py [--host 0.0.0.0] [--port 7000] [--require encrypted] [--count N]

RequireSecurityMixIn asks secsock on each accepted connection, in verify_request, before a handler is
made: a connection in the clear is closed without a word (and logged at INFO on the "secsock" logger).
Encryption is system policy (Windows: connection security rules / WSASetSocketSecurity; Linux: ip xfrm,
strongSwan, Libreswan), so on a plain loopback every connection is refused; ``--require none`` serves all.
"""

from __future__ import annotations

import argparse
import logging
import socketserver
import sys

import secsock

REQUIREMENTS = {
    "encrypted": secsock.Requirement(encrypted=True),
    "secured": secsock.Requirement(secured=True),
    "none": secsock.Requirement(secured=False),
}


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--require", choices=tuple(REQUIREMENTS), default="encrypted")
    parser.add_argument("--count", type=int, default=None, help="stop after N connections (served or not)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    class Server(secsock.RequireSecurityMixIn, socketserver.ThreadingTCPServer):
        requirement = REQUIREMENTS[args.require]
        allow_reuse_address = True

    with Server((args.host, args.port), EchoHandler) as server:
        host, port = server.socket.getsockname()[:2]  # server_address may be bytes, as typeshed says
        print(f"listening on {host}:{port}, requiring {args.require}", file=sys.stderr, flush=True)
        if args.count is None:
            server.serve_forever()
        for _ in range(args.count or 0):
            server.handle_request()


if __name__ == "__main__":
    main()

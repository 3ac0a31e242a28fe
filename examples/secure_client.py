"""Microsoft's "Using Secure Socket Extensions" secure client, in Python (Windows).

    python examples/secure_client.py HOST PORT TARGET_NAME     e.g. 192.0.2.10 27015 host/server.corp.example

The sample's steps: WSASetSocketSecurity demanding encryption (SecuritySettings with
GUARANTEE_ENCRYPTION), WSASetSocketPeerTargetName with the server's SPN, so IPsec authenticates the server
it connects to, both before connect (SecureSocket.secure_connect does all three, in that order); then send
and receive as on any socket, and ask how the connection is secured.

On Linux the first step raises secsock.UnsupportedOperation (IPsec is system policy there, and peer target
names are an AuthIP notion): the program says so in one line and exits 3.
"""

from __future__ import annotations

import argparse
import socket
import sys

import secsock

EXIT_UNSUPPORTED = 3


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("host", help="the server's numeric IP address")
    parser.add_argument("port", type=int)
    parser.add_argument("target_name", help="the server's SPN, e.g. host/server.corp.example")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    settings = secsock.SecuritySettings(flags=secsock.SecuritySettingsFlags.GUARANTEE_ENCRYPTION)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET  # a numeric host: its family is plain
    try:
        conn = secsock.SecureSocket.secure_connect(
            (args.host, args.port), args.target_name, settings, family=family, timeout=args.timeout
        )
    except secsock.UnsupportedOperation as exc:
        print(f"secure_client: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    with conn:
        with conn.query_security() as info:
            print(f"connected: secured={info.secured} encrypted={info.encrypted}", flush=True)
        conn.sendall(b"hello")
        print(conn.recv(1024).decode(errors="replace"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

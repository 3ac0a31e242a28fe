"""An asyncio echo server that serves only secured (or encrypted) connections.

    python examples/asyncio_server.py [--host 0.0.0.0] [--port 7001] [--require secured] [--count N]

Requirement.guard wraps the connection callback: each connection is checked first (on Linux inline, with
no thread; on Windows' proactor loop by waiting on the query's event) and closed without calling the
handler when it fails. The handler also shows await secsock.query_async(writer) for the whole answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

import secsock

REQUIREMENTS = {
    "encrypted": secsock.Requirement(encrypted=True),
    "secured": secsock.Requirement(secured=True),
    "none": secsock.Requirement(secured=False),
}


async def serve(args: argparse.Namespace) -> None:
    done = asyncio.Event()
    connections = 0

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            with await secsock.query_async(writer) as info:  # a StreamWriter is enough
                writer.write((json.dumps(info.as_dict(), sort_keys=True) + "\n").encode())
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except ConnectionError as exc:  # the client reset or went away: nothing left to serve
            print(f"client left: {exc}", file=sys.stderr, flush=True)
        finally:
            writer.close()

    guarded = REQUIREMENTS[args.require].guard(echo)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        try:
            await guarded(reader, writer)
        finally:
            connections += 1
            if args.count is not None and connections >= args.count:
                done.set()

    server = await asyncio.start_server(on_connect, args.host, args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}, requiring {args.require}", file=sys.stderr, flush=True)
    async with server:
        if args.count is None:
            await server.serve_forever()
        await done.wait()


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=7001)
    parser.add_argument("--require", choices=tuple(REQUIREMENTS), default="secured")
    parser.add_argument("--count", type=int, default=None, help="stop after N connections (served or not)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

"""secsock benchmark (Linux): what `secsock.query`'s calling convention costs, in one process.

    sudo .venv/bin/python benchmarks/entry_convention.py    # ~5 s; prints the figures

`query` takes its arguments as an array (METH_FASTCALL) on CPython 3.10 and later, where the stable ABI has
it, and as a tuple (METH_VARARGS) on 3.9 (csrc/module/query_entry.c). The extension makes the 3.9 entry for
an interpreter whose sys.hexversion says 3.9, so this script binds both entries in one process (the second by
telling bind_query it runs on 3.9) and times `query(sock)` through each on the same socket, batches
alternating, next to `sock.getpeername()`. Runs itself in a fresh network namespace (`unshare --net`), so no
XFRM state of this host changes the answer. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import ctypes
import os
import statistics
import subprocess
import sys

from run import interleaved, timed_loop  # benchmarks/run.py, beside this file

METH_FASTCALL = 0x0080
ROUNDS, SIZE = 300, 100


def main() -> None:
    if os.environ.get("SECSOCK_BENCH_IN_NS") != "1":
        env = dict(os.environ, SECSOCK_BENCH_IN_NS="1")
        raise SystemExit(subprocess.call(["unshare", "--net", sys.executable, __file__], env=env))
    import socket

    import secsock
    from secsock import _extension, _query, _secsock

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server = listener.accept()[0]

    running = sys.hexversion
    sys.hexversion = 0x030911F0  # bind_query reads it: the entry a 3.9 interpreter gets
    try:
        varargs = _secsock.bind_query(
            _query._general_query,
            vars(_extension),
            _query._debug_memo_dict,
            _query._DEBUG,
            _query._after_direct_query,
        )
    finally:
        sys.hexversion = running
    fastcall = secsock.query
    get_flags = ctypes.pythonapi.PyCFunction_GetFlags
    get_flags.argtypes = [ctypes.py_object]
    if not get_flags(fastcall) & METH_FASTCALL or get_flags(varargs) & METH_FASTCALL:
        raise SystemExit("entry_convention: the two entries are not METH_FASTCALL and METH_VARARGS")
    if varargs(server) != fastcall(server):
        raise SystemExit("entry_convention: the two entries answer differently")

    namespace = {"fastcall": fastcall, "varargs": varargs, "server": server}
    loop = {name: timed_loop(f"{name}(server)", namespace) for name in ("fastcall", "varargs")}
    fast, var = interleaved(loop["fastcall"], loop["varargs"], ROUNDS, SIZE)
    # getpeername against the fast entry, batches alternating the same way, for the ratio users see.
    fast_again, peer = interleaved(
        loop["fastcall"], timed_loop("server.getpeername()", namespace), ROUNDS, SIZE
    )
    ratio = statistics.median(fast_again) / statistics.median(peer)
    saved = statistics.median(b - a for a, b in zip(fast, var))
    print(f"query(sock), METH_FASTCALL (3.10+): {statistics.median(fast):.0f} ns")
    print(f"query(sock), METH_VARARGS (3.9):    {statistics.median(var):.0f} ns")
    print(f"the tuple's cost: {saved:.0f} ns a call, {saved / statistics.median(peer):.2f}x getpeername")
    print(f"getpeername: {statistics.median(peer):.0f} ns; query (METH_FASTCALL) {ratio:.2f}x getpeername")
    client.close()


if __name__ == "__main__":
    main()

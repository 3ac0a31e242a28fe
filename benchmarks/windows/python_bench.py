"""secsock.query(sock) on real Windows CPython (under Wine, against the fwpuclnt double of tests/windows/),
next to sock.getpeername() and the same query written with ctypes, what a user would write without secsock.

Run by benchmarks/windows/python.sh (one command). Each call is compiled into its own loop as a user writes it
(benchmarks/run.py's timed_loop); the three loops take turns, 7 rounds of 2,000 calls each, and the minimum
per call counts. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import platform
import socket
import sys
from ctypes import wintypes
from pathlib import Path

import secsock

ROOT = Path(__file__).resolve().parent.parent.parent
ROUNDS, CALLS = 7, 2000
TARGET_VS_CTYPES = 1.0  # query() no slower than the ctypes version
TARGET_VS_GETPEERNAME = 3.0


def timed_loop_factory() -> object:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.timed_loop


class SOCKET_SECURITY_QUERY_INFO(ctypes.Structure):  # mstcpip.h
    _fields_ = [
        ("SecurityProtocol", ctypes.c_int),
        ("Flags", wintypes.ULONG),
        ("PeerApplicationAccessTokenHandle", ctypes.c_uint64),
        ("PeerMachineAccessTokenHandle", ctypes.c_uint64),
    ]


def ctypes_query_function() -> object:
    """What a user writes: WSAQuerySocketSecurity with a NULL template (default information), as
    Microsoft's sample calls it, and the flags out of the structure."""
    fwpuclnt = ctypes.WinDLL("fwpuclnt")
    call = fwpuclnt.WSAQuerySocketSecurity
    call.argtypes = [
        ctypes.c_size_t,
        ctypes.c_void_p,
        wintypes.ULONG,
        ctypes.POINTER(SOCKET_SECURITY_QUERY_INFO),
        ctypes.POINTER(wintypes.ULONG),
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    call.restype = ctypes.c_int
    ws2_32 = ctypes.WinDLL("ws2_32")

    def query(sock: socket.socket) -> int:
        info = SOCKET_SECURITY_QUERY_INFO()
        size = wintypes.ULONG(ctypes.sizeof(info))
        if call(sock.fileno(), None, 0, ctypes.byref(info), ctypes.byref(size), None, None) != 0:
            raise ctypes.WinError(ws2_32.WSAGetLastError())
        return int(info.Flags)

    return query


def module_path(name: str) -> str:
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.GetModuleHandleW.restype = ctypes.c_void_p
    handle = kernel32.GetModuleHandleW(name)
    buffer = ctypes.create_unicode_buffer(520)
    kernel32.GetModuleFileNameW(ctypes.c_void_p(handle), buffer, 520)
    return buffer.value


def main() -> None:
    timed_loop = timed_loop_factory()
    ctypes_query = ctypes_query_function()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        sock, _ = listener.accept()
    with client, sock:
        # The same answer three ways, from the same DLL (the double beside secsock's module).
        assert secsock.query(sock).flags == ctypes_query(sock) == 0
        namespace = {"secsock": secsock, "sock": sock, "ctypes_query": ctypes_query}
        statements = {
            "secsock.query(sock)": "secsock.query(sock)",
            "sock.getpeername()": "sock.getpeername()",
            "ctypes WSAQuerySocketSecurity": "ctypes_query(sock)",
        }
        loops = {name: timed_loop(stmt, namespace) for name, stmt in statements.items()}  # type: ignore[operator]
        for loop in loops.values():
            loop(200)  # warm-up
        best = {name: float("inf") for name in loops}
        for _ in range(ROUNDS):
            for name, loop in loops.items():
                best[name] = min(best[name], loop(CALLS) / CALLS / 1000)
    query_us = best["secsock.query(sock)"]
    result = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "fwpuclnt": module_path("fwpuclnt.dll"),
        "rounds": ROUNDS,
        "calls": CALLS,
        "us": {name: round(value, 2) for name, value in best.items()},
        "query_vs_getpeername": round(query_us / best["sock.getpeername()"], 2),
        "query_vs_ctypes": round(query_us / best["ctypes WSAQuerySocketSecurity"], 2),
    }
    print(f"CPython {result['python']} under Wine, fwpuclnt = {result['fwpuclnt']}")
    print(f"min of {ROUNDS} x {CALLS:,} calls, per call:")
    for name, value in best.items():
        print(f"  {name:32} {value:8.2f} us  ({value / query_us:.2f}x query)")
    print(
        f"query() = {result['query_vs_getpeername']}x getpeername (target <= {TARGET_VS_GETPEERNAME}), "
        f"{result['query_vs_ctypes']}x the ctypes version (target <= {TARGET_VS_CTYPES})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Reproducer: the Linux backend answers from the *calling thread's* network namespace, not the socket's.

    sudo .venv/bin/python hardening/repro/cross_netns.py     # exit 1 while the bug is there

A socket made in namespace A (whose XFRM state has a block policy selecting the flow, which the answer's
reason names) is queried twice: from a thread inside A ("the policy blocks the flow", right) and from the main
thread in the root namespace (an answer "no policy" read from the root namespace's XFRM state: wrong).
With ESP SAs in the caller's namespace the same mix-up can report a clear socket as encrypted.
"""

import ctypes
import os
import socket
import subprocess
import sys
import threading

import secsock

NS = f"secsock-repro-{os.getpid()}"
CLONE_NEWNET = 0x40000000


def main() -> int:
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        for cmd in (
            ["link", "set", "lo", "up"],
            ["addr", "add", "10.77.1.1/24", "dev", "lo"],
            [
                "xfrm",
                "policy",
                "add",
                "src",
                "10.77.1.1",
                "dst",
                "10.77.1.2",
                "dir",
                "out",
                "action",
                "block",
            ],
        ):
            subprocess.run(["ip", "-n", NS, *cmd], check=True)
        libc = ctypes.CDLL(None, use_errno=True)
        box = {}

        def in_namespace() -> None:
            fd = os.open(f"/run/netns/{NS}", os.O_RDONLY)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
            os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("10.77.1.1", 0))
            box["sock"] = sock
            box["inside"] = ask(sock)

        thread = threading.Thread(target=in_namespace)
        thread.start()
        thread.join()
        outside = ask(box["sock"])
        print("from a thread in the socket's namespace:", box["inside"])
        print("from the main thread (another namespace):", outside)
        if box["inside"] != outside:
            print(
                "BUG: the same socket gets two answers; the second comes from another namespace's XFRM state"
            )
            return 1
        return 0
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def ask(sock: socket.socket) -> str:
    try:
        info = secsock.query(sock, peer=("10.77.1.2", 500))
        return f"answer flags={int(info.flags)} ({info.reason})"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


if __name__ == "__main__":
    sys.exit(main())

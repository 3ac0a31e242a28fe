"""Network namespaces for the Linux XFRM tests (host and VM): each test makes its own and removes it.

Needs root (CAP_SYS_ADMIN for ``ip netns``, CAP_NET_ADMIN for ``ip xfrm``); without it the tests fail with
a clear message rather than skip.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import secsock

HERE = Path(__file__).resolve().parent
PROBE = HERE / "xfrm_probe.py"
_counter = itertools.count()
_T = TypeVar("_T")
CLONE_NEWNET = 0x40000000


def child_env() -> dict[str, str]:
    """The environment for a probe: it must import the same secsock as this test process."""
    env = dict(os.environ)
    package_root = str(Path(secsock.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def require_root() -> None:
    if os.geteuid() != 0:
        raise AssertionError("the Linux XFRM tests need root: they create network namespaces and XFRM state")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


class Netns:
    """One network namespace with loopback up."""

    def __init__(self, tag: str) -> None:
        self.name = f"secsock-{tag}-{os.getpid()}-{next(_counter)}"
        run("ip", "netns", "add", self.name)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> str:
        return run("ip", "-n", self.name, *args).stdout

    def ip_batch(self, commands: list[str]) -> None:
        """Many ip commands in one process (ip -batch), for tables of hundreds of entries."""
        subprocess.run(
            ["ip", "-n", self.name, "-batch", "-"],
            input="\n".join(commands) + "\n",
            text=True,
            check=True,
            timeout=120,
        )

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def probe(
        self, steps: list[dict[str, Any]], wrap: tuple[str, ...] = (), other_user: bool = False
    ) -> list[dict[str, Any]]:
        """Run the steps in one Python process inside the namespace; the results of its queries, in order.

        other_user: the probe runs as another user (wrap drops to it), who may not be able to enter the
        checkout (a clone in a folder only its owner reads): it runs the base interpreter on a copy of secsock
        and the probe in a folder anyone can read."""
        if other_user:
            with tempfile.TemporaryDirectory(prefix="secsock-probe-") as tmp:
                os.chmod(tmp, 0o755)
                shutil.copytree(Path(secsock.__file__).resolve().parent, Path(tmp, "secsock"))
                shutil.copy(PROBE, tmp)
                env = child_env()
                env["PYTHONPATH"] = tmp
                python = os.path.realpath(sys.executable)
                argv = self.exec_argv(*wrap, python, str(Path(tmp, PROBE.name)), json.dumps(steps))
                done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
        else:
            argv = self.exec_argv(*wrap, sys.executable, str(PROBE), json.dumps(steps))
            done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=60)
        if done.returncode != 0:
            raise AssertionError(f"probe failed ({done.returncode}): {done.stderr.strip()}")
        return results_of(done.stdout)

    def start_probe(self, steps: list[dict[str, Any]]) -> subprocess.Popen[str]:
        """Start a serving probe and wait until it prints READY."""
        argv = self.exec_argv(sys.executable, str(PROBE), json.dumps(steps))
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
        )
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = proc.stdout.readline()
        if line.strip() != "READY" or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            raise AssertionError(f"the serving probe did not start: {line!r} {err.strip()}")
        return proc

    def start_thread(self, fn: Callable[[], _T]) -> NetnsThread[_T]:
        """Run fn in a new thread of this process that first enters this namespace (setns)."""
        return NetnsThread(self, fn)

    def call(self, fn: Callable[[], _T], timeout: float = 60) -> _T:
        """fn() in this namespace, from a thread of this process (no new interpreter to start)."""
        return self.start_thread(fn).result(timeout)

    def close(self) -> None:
        run("ip", "netns", "del", self.name, check=False)


def _enter_netns(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsThread(threading.Thread, Generic[_T]):
    """A thread that lives in one network namespace: only this thread moves (setns), not the process."""

    def __init__(self, ns: Netns, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True, name=f"in-{ns.name}")
        self._ns, self._fn = ns, fn
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            _enter_netns(self._ns.name)
            self._value = self._fn()
        except BaseException as exc:  # handed to result()
            self._error = exc

    def result(self, timeout: float = 60) -> _T:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"{self.name} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        value: _T = self._value
        return value


def results_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("RESULT ") :]) for line in stdout.splitlines() if line.startswith("RESULT ")]


def finish_probe(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the serving probe did not finish: {err.strip()}") from None
    if proc.returncode != 0:
        raise AssertionError(f"the serving probe failed ({proc.returncode}): {err.strip()}")
    return results_of(out)

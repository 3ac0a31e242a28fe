"""Network namespaces for the Linux XFRM tests (host and VM): each test makes its own and removes it.

Needs root (CAP_SYS_ADMIN for ``ip netns``, CAP_NET_ADMIN for ``ip xfrm``); without it the tests fail with
a clear message rather than skip.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import secsock

HERE = Path(__file__).resolve().parent
PROBE = HERE / "xfrm_probe.py"
_counter = itertools.count()


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

    def probe(self, steps: list[dict[str, Any]], wrap: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Run the steps in one Python process inside the namespace; the results of its queries, in order."""
        argv = self.exec_argv(*wrap, sys.executable, str(PROBE), json.dumps(steps))
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120)
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

    def close(self) -> None:
        run("ip", "netns", "del", self.name, check=False)


def results_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("RESULT ") :]) for line in stdout.splitlines() if line.startswith("RESULT ")]


def finish_probe(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the serving probe did not finish: {err.strip()}") from None
    if proc.returncode != 0:
        raise AssertionError(f"the serving probe failed ({proc.returncode}): {err.strip()}")
    return results_of(out)

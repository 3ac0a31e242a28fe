"""secsock benchmark (Linux): ``await secsock.query_async(sock)`` next to ``secsock.query(sock)`` on the same
socket, both inside one running asyncio loop (issue 13: at most 1.5x), and with the ``secsock`` logger off
and at DEBUG (item 5: no change).

    sudo .venv/bin/python benchmarks/async_query.py     # ~3 s; prints a table, writes async_results.json

Runs itself in a fresh network namespace (``unshare --net``), so no XFRM state of this host changes the
answer. Timing as in run.py: each statement compiled into its own loop (here inside a coroutine, timed
from inside it, so the loop's scheduling is not counted), batches of the two alternating, medians.
Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from run import timed_loop  # benchmarks/run.py, beside this file

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.5


async def interleaved(loops: dict[str, Any], rounds: int, size: int) -> dict[str, float]:
    """Median per-call ns of each loop, batches alternating in a rotating order."""
    times: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times[name].append(await loops[name](size) / size)
    return {name: statistics.median(values) for name, values in times.items()}


async def measure(quick: bool) -> dict[str, Any]:
    import secsock

    got: asyncio.Future[asyncio.StreamWriter] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(writer)
        await reader.read()  # until the client closes

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    _, client = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer = await got
    sock = writer.get_extra_info("socket")
    namespace = {"secsock": secsock, "sock": sock, "writer": writer, "loop": asyncio.get_running_loop()}
    loops = {
        "query": timed_loop("secsock.query(sock)", namespace, coroutine=True),
        "query_async": timed_loop("await secsock.query_async(sock)", namespace, coroutine=True),
        "query_async_writer": timed_loop("await secsock.query_async(writer)", namespace, coroutine=True),
    }
    size, rounds = 50, (80 if quick else 1000)
    await interleaved(loops, 10, size)  # warm up
    logger = logging.getLogger("secsock")
    result: dict[str, Any] = {"answer": repr(secsock.query(sock))}
    for label, level in (("logging_off", logging.WARNING), ("logging_debug", logging.DEBUG)):
        logger.setLevel(level)
        result[label] = await interleaved(loops, rounds, size)
        result[label]["ratio"] = result[label]["query_async"] / result[label]["query"]
        result[label]["ratio_writer"] = result[label]["query_async_writer"] / result[label]["query"]
    logger.setLevel(logging.NOTSET)
    # What query_async did before (a thread per query), for the record: fewer rounds, it is slow.
    executor = timed_loop("await loop.run_in_executor(None, secsock.query, sock)", namespace, coroutine=True)
    result["executor_ns"] = statistics.median([await executor(size) / size for _ in range(20)])
    client.close()
    writer.close()
    server.close()
    await server.wait_closed()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--out", type=Path, default=HERE / "async_results.json")
    args = parser.parse_args()
    if args.worker:
        logging.basicConfig(stream=open(os.devnull, "w"))  # a handler exists: DEBUG records would be emitted
        print(json.dumps(asyncio.run(measure(args.quick))))
        return
    if os.geteuid() != 0:
        raise SystemExit("benchmarks/async_query.py needs root: it runs in a network namespace of its own")
    argv = [sys.executable, __file__, "--worker"] + (["--quick"] if args.quick else [])
    script = 'ip link set lo up && exec "$0" "$@"'
    done = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker failed ({done.returncode}):\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for label in ("logging_off", "logging_debug"):
        r = result[label]
        print(
            f"{label:>14}: query {r['query']:.0f} ns, await query_async {r['query_async']:.0f} ns "
            f"({r['ratio']:.2f}x), await query_async(writer) {r['query_async_writer']:.0f} ns "
            f"({r['ratio_writer']:.2f}x)"
        )
    print(f"{'before':>14}: await run_in_executor(query) {result['executor_ns']:.0f} ns")
    ratio = result["logging_off"]["ratio"]
    result["target"] = {"ratio": ratio, "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO}
    result["machine"] = {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "commit": os.environ.get("SECSOCK_BENCH_COMMIT"),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"target (await query_async / query <= {TARGET_RATIO}): {verdict}")


if __name__ == "__main__":
    main()

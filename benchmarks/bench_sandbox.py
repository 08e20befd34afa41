"""Sandbox benchmark: each figure beside a baseline measured in the same run.

    uv run --extra dev python benchmarks/bench_sandbox.py [--quick]

Baselines: a fresh ``python -I`` process per evaluation, multiprocessing forkserver, a raw pipe
round trip, and smolagents' LocalPythonExecutor (unisolated, in-process; installed only for
this benchmark in a throwaway environment with ``uv run --no-project --with smolagents``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil
import trio

from legion.sandbox import aevaluate, info, runner

QUICK = "--quick" in sys.argv
N = 100 if QUICK else 400

COMPUTE = {
    "loop of 10^5 additions": "s = 0\nfor i in range(100000):\n    s += i\ns",
    "10^4 dict comprehension": "d = {i: i * i for i in range(10000)}\nlen(d)",
    "recursive fib(20)": "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfib(20)",
}

SMOLAGENTS = r"""
import json, sys, time
from smolagents.local_python_executor import LocalPythonExecutor
codes = json.loads(sys.argv[1])
ex = LocalPythonExecutor(additional_authorized_imports=[])
ex.send_tools({})
out = {}
for name, code in codes.items():
    ts = []
    for _ in range(5):
        t = time.perf_counter(); ex(code); ts.append(time.perf_counter() - t)
    out[name] = sorted(ts)[2]
t = time.perf_counter()
for _ in range(200):
    ex("1+1")
out["1+1"] = (time.perf_counter() - t) / 200
print(json.dumps(out))
"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def ms(x: float) -> str:
    return f"{x * 1e3:7.2f} ms"


def row(name: str, ours: str, base: str, ratio: float | None) -> None:
    r = f"{ratio:6.1f}x" if ratio is not None else "   n/a"
    print(f"  {name:<34} {ours:>18}   {base:>34}   {r}")


# --- baselines -----------------------------------------------------------------------------


def fresh_python(n: int) -> list[float]:
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", "print(1+1)"], capture_output=True, check=True)
        ts.append(time.perf_counter() - t)
    return ts


FORKSERVER = r"""
import json, multiprocessing as mp, operator, sys, time
# the target must be importable by the children: a stdlib callable (a -c script has no module)
if __name__ == "__main__":
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["json", "re", "math"])
    ts = []
    for i in range(int(sys.argv[1]) + 5):
        t = time.perf_counter()
        a, b = ctx.Pipe()
        p = ctx.Process(target=b.send, args=(operator.add(1, 1),))
        p.start()
        a.recv()
        p.join()
        a.close()
        b.close()
        if i >= 5:
            ts.append(time.perf_counter() - t)
    print(json.dumps(ts))
"""


def forkserver(n: int) -> list[float]:
    """multiprocessing forkserver, run from a ``-c`` script so that children have no main
    module to re-import (the benchmark's own imports would dominate otherwise)."""
    proc = subprocess.run(
        [sys.executable, "-I", "-c", FORKSERVER, str(n)], capture_output=True, text=True, check=True
    )
    result: list[float] = json.loads(proc.stdout)
    return result


def _echo(conn: Any) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def pipe_round_trip(n: int) -> float:
    ctx = mp.get_context("fork")
    a, b = ctx.Pipe()
    p = ctx.Process(target=_echo, args=(b,))
    p.start()
    for _ in range(100):
        a.send(1)
        a.recv()
    t = time.perf_counter()
    for _ in range(n):
        a.send(1)
        a.recv()
    dt = (time.perf_counter() - t) / n
    a.send(None)
    p.join()
    return dt


# --- ours ----------------------------------------------------------------------------------


async def latency(n: int, idle: bool) -> list[float]:
    ts = []
    for _ in range(n):
        if idle:
            await trio.sleep(0.01)  # benchmark pacing: an agent waits for its LLM between evals
        t = time.perf_counter()
        ev = await aevaluate("1+1")
        ts.append(time.perf_counter() - t)
        assert ev.value == 2
    return ts


class Echo:
    def ping(self, x: int) -> int:
        return x


async def tool_round_trip(calls: int) -> float:
    code_with = f"for i in range({calls}):\n    Echo.ping(i)"
    code_without = f"for i in range({calls}):\n    i"
    best_with = min([(await aevaluate(code_with, tools=[Echo])).duration for _ in range(5)])
    best_without = min([(await aevaluate(code_without, tools=[Echo])).duration for _ in range(5)])
    return (best_with - best_without) / calls


async def throughput(concurrency: int, seconds: float) -> tuple[float, list[float]]:
    done: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            ev = await aevaluate("sum(range(1000))")
            assert ev.ok
            done.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            nursery.start_soon(worker)
    return len(done) / (time.perf_counter() - t0), done


def fresh_throughput(concurrency: int, seconds: float) -> float:
    import concurrent.futures

    end = time.perf_counter() + seconds
    count = [0]

    def worker() -> None:
        while time.perf_counter() < end:
            subprocess.run(
                [sys.executable, "-I", "-c", "print(sum(range(1000)))"],
                capture_output=True,
                check=True,
            )
            count[0] += 1

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for _ in range(concurrency):
            pool.submit(worker)
    return count[0] / (time.perf_counter() - t0)


async def child_uss() -> float:
    found: list[float] = []

    class Probe:
        def measure(self) -> int:
            zygote = psutil.Process(info().zygote_pid)
            spares = set(runner.SPARES.pids(wait=0))
            for child in zygote.children():
                if child.pid not in spares:
                    found.append(child.memory_full_info().uss)
            return 0

    await aevaluate("x = [i for i in range(100)]\nProbe.measure()", tools=[Probe])
    return statistics.median(found)


def fresh_uss() -> float:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        time.sleep(0.3)
        return float(psutil.Process(proc.pid).memory_full_info().uss)
    finally:
        proc.communicate(b"")


async def compute() -> dict[str, float]:
    out = {}
    for name, code in COMPUTE.items():
        ts = []
        for _ in range(5):
            ev = await aevaluate(code, timeout=30)
            assert ev.ok, ev.error
            ts.append(ev.duration)
        out[name] = sorted(ts)[2]
    return out


def smolagents_compute() -> dict[str, float] | None:
    uv = shutil.which("uv")
    if uv is None:
        return None
    proc = subprocess.run(
        [
            uv,
            "run",
            "--quiet",
            "--no-project",
            "--with",
            "smolagents",
            "python",
            "-c",
            SMOLAGENTS,
            json.dumps(COMPUTE),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd="/tmp",
    )
    if proc.returncode != 0:
        print(f"  (smolagents baseline unavailable: {proc.stderr.strip()[-200:]})")
        return None
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


async def main() -> None:
    t = time.perf_counter()
    sandbox = info()
    start = time.perf_counter() - t
    print(
        f"Legion sandbox benchmark: Python {sandbox.python}, {os.cpu_count()} cores, "
        f"layers {', '.join(sandbox.layers)}; zygote ready in {start * 1e3:.0f} ms, "
        f"RSS {psutil.Process(sandbox.zygote_pid).memory_info().rss / 2**20:.1f} MiB"
    )
    print(f"  {'figure':<34} {'legion sandbox':>18}   {'baseline (same run)':>34}   ratio")

    idle = await latency(N, idle=True)
    busy = await latency(N, idle=False)
    fresh = fresh_python(max(20, N // 8))
    fsrv = forkserver(max(50, N // 4))
    row(
        "1+1 end to end p50 (idle)",
        ms(pct(idle, 0.5)),
        "fresh python -I " + ms(pct(fresh, 0.5)),
        pct(fresh, 0.5) / pct(idle, 0.5),
    )
    row(
        "1+1 end to end p99 (idle)",
        ms(pct(idle, 0.99)),
        "fresh python -I " + ms(pct(fresh, 0.99)),
        pct(fresh, 0.99) / pct(idle, 0.99),
    )
    row(
        "1+1 p50 (idle)",
        ms(pct(idle, 0.5)),
        "mp forkserver " + ms(pct(fsrv, 0.5)),
        pct(fsrv, 0.5) / pct(idle, 0.5),
    )
    row(
        "1+1 p99 (idle)",
        ms(pct(idle, 0.99)),
        "mp forkserver " + ms(pct(fsrv, 0.99)),
        pct(fsrv, 0.99) / pct(idle, 0.99),
    )
    row(
        "1+1 p50 / p99 (back to back)",
        f"{ms(pct(busy, 0.5))}/{pct(busy, 0.99) * 1e3:.1f}",
        "mp forkserver p50 " + ms(pct(fsrv, 0.5)),
        pct(fsrv, 0.5) / pct(busy, 0.5),
    )

    tool = await tool_round_trip(2000)
    pipe = pipe_round_trip(2000)
    row(
        "tool call round trip (mean)",
        f"{tool * 1e6:7.1f} us",
        f"mp.Pipe echo {pipe * 1e6:7.1f} us",
        pipe / tool,
    )

    rate, lat = await throughput(4, 2.0 if QUICK else 4.0)
    base_rate = fresh_throughput(4, 2.0)
    row(
        "throughput, 4 concurrent",
        f"{rate:7.0f} /s",
        f"fresh python -I {base_rate:7.0f} /s",
        rate / base_rate,
    )
    row("  p99 latency at 4 concurrent", ms(pct(lat, 0.99)), "", None)

    uss = await child_uss()
    base_uss = fresh_uss()
    row(
        "child USS",
        f"{uss / 2**20:6.2f} MiB",
        f"fresh python -I {base_uss / 2**20:6.2f} MiB",
        base_uss / uss,
    )

    ours = await compute()
    smol = smolagents_compute()
    for name, dt in ours.items():
        base = smol.get(name) if smol else None
        row(
            name + " (end to end)",
            ms(dt),
            ("smolagents " + ms(base)) if base else "n/a",
            (base / dt) if base else None,
        )
    if smol:
        row(
            "1+1 (smolagents in-process)",
            ms(pct(idle, 0.5)),
            "smolagents " + ms(smol["1+1"]),
            smol["1+1"] / pct(idle, 0.5),
        )
    print("ratio = baseline / legion (> 1: legion is faster or smaller)")


if __name__ == "__main__":
    trio.run(main)

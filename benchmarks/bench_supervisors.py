"""Supervisor benchmark: every figure beside a baseline measured in the same run.

    uv run --locked --extra dev python benchmarks/bench_supervisors.py [--quick]

Figures:
  restart: SIGKILL of a supervised child -> its replacement answers a call (target <= 20 ms p50)
           vs a bare legion.spawn + first call (what a restart cannot beat)
  1,000 children: start and orderly stop under one DynamicSupervisor, at 100 and 1,000 children
           (how it grows), vs the same number of bare legion.start + exit/wait for every Down
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from typing import Any

import legion

QUICK = "--quick" in sys.argv
N_RESTART = 30 if QUICK else 100
SIZES = (100, 300) if QUICK else (100, 1000)


class Echo(legion.Server):
    def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request == "ospid":
            return os.getpid()
        return request


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def restart_times(n: int) -> list[float]:
    spec = legion.child_spec(Echo, name="bench-child")
    sup = legion.start_link(
        legion.Supervisor, legion.SupervisorSpec(children=[spec], max_restarts=10**6)
    )
    assert sup is not None
    times = []
    for _ in range(n):
        old = legion.call("bench-child", "ospid")
        t0 = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        while True:
            try:
                if legion.call("bench-child", "ospid", timeout=5) != old:
                    break
            except legion.ProcessExit:  # NoProc, or the old one died during the call
                pass
        times.append(time.perf_counter() - t0)
    legion.stop(sup, "shutdown")
    return times


def spawn_call_times(n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = legion.spawn(Echo)
        legion.call(pid, "ping")
        times.append(time.perf_counter() - t0)
        legion.exit(pid, "kill")
    return times


def dynamic_start_stop(n: int) -> tuple[float, float]:
    sup = legion.start_link(legion.DynamicSupervisor, None)
    assert sup is not None
    t0 = time.perf_counter()
    for _ in range(n):
        legion.DynamicSupervisor.start_child(sup, legion.child_spec(Echo))
    started = time.perf_counter() - t0
    assert legion.DynamicSupervisor.count_children(sup)["active"] == n
    t0 = time.perf_counter()
    legion.stop(sup, "shutdown", timeout=120)
    stopped = time.perf_counter() - t0
    legion.receive(timeout=10, match=lambda m: isinstance(m, legion.Exit) and m.pid == sup)
    return started, stopped


def bare_start_stop(n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    pids = [legion.start(Echo) for _ in range(n)]
    started = time.perf_counter() - t0
    t0 = time.perf_counter()
    refs = {legion.monitor(pid) for pid in pids}  # type: ignore[arg-type]
    for pid in pids:
        legion.exit(pid, "shutdown")  # type: ignore[arg-type]
    while refs:
        down = legion.receive(timeout=60, match=lambda m: isinstance(m, legion.Down))
        refs.discard(down.ref)
    return started, time.perf_counter() - t0


def main() -> None:
    print(f"legion supervisor benchmark ({'quick' if QUICK else 'full'}), {os.cpu_count()} cores")
    spawn_call_times(5)  # warm the zygote
    ours = restart_times(N_RESTART)
    base = spawn_call_times(N_RESTART)
    r50, b50 = statistics.median(ours) * 1e3, statistics.median(base) * 1e3
    print(
        f"restart after SIGKILL -> replacement answers a call: p50 {r50:.2f} ms, "
        f"p99 {p(ours, 0.99) * 1e3:.2f} ms (target <= 20 ms p50)"
    )
    print(
        f"  vs bare legion.spawn + first call:               p50 {b50:.2f} ms, "
        f"p99 {p(base, 0.99) * 1e3:.2f} ms  (ratio {r50 / b50:.2f}x)"
    )
    results = {}
    for n in SIZES:
        results[n] = (dynamic_start_stop(n), bare_start_stop(n))
        (ds, dt), (bs, bt) = results[n]
        print(
            f"{n:>5} children under one DynamicSupervisor: start {ds:.2f} s, stop {dt:.2f} s"
            f"  |  {n} bare start: {bs:.2f} s, stop: {bt:.2f} s"
            f"  (ratios {ds / bs:.2f}x, {dt / bt:.2f}x)"
        )
    small, large = SIZES
    (ds0, dt0), _ = results[small]
    (ds1, dt1), _ = results[large]
    print(
        f"growth {small} -> {large} children ({large / small:.0f}x): start {ds1 / ds0:.1f}x, "
        f"stop {dt1 / dt0:.1f}x"
    )


if __name__ == "__main__":
    main()

"""The cost of telemetry: agent turns per second with telemetry off, with the node's Prometheus
registry fed and served, and with the default logger attached in the application as well.

    uv run --locked --extra dev python benchmarks/bench_telemetry.py [--quick]

Telemetry is switched per node (`LEGION_TELEMETRY=0` turns every `emit` off), so each mode runs
in its own application and node, the three started side by side and kept alive. The machine is
noisy: a 2-core VM whose speed drifts by 10-40 % from one second to the next, for every process
at once. So the modes take turns, one round each (ROUNDS rounds, the order rotating), only one
working at a time; short rounds keep neighbours in the same state of the machine. Each cost is
given two ways: "paired", the median over the rounds of a round's ratio to the "off" round next
to it (the robust one), and "best", each mode's fastest round against the fastest "off" round.
Beside wall time, the CPU time of every process a turn crosses (application, node, agent; from
/proc schedstat, in ns) is summed per turn: the price of telemetry in CPU.

Two turns are timed, both on a long-lived agent whose model is scripted in this process (each
model request is a runtime call from the agent process to the application): a 1-step turn (the
model returns at once: 6 events, under 1 ms) and a 2-step turn (one sandbox evaluation, then
return: 12 events plus the sandbox child, about 3.5 ms). A turn with a real model takes hundreds
of milliseconds, so these are the worst cases.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil

import legion
from legion import testing

QUICK = "--quick" in sys.argv
TURNS = 40 if QUICK else 50
ROUNDS = 4 if QUICK else 45
MODES = ("off", "metrics", "logger")


class BenchAgent(legion.Agent):
    """Benchmark agent: answers the task."""


def _tree_cpu(root: psutil.Process) -> dict[int, float]:
    """CPU seconds of `root` and every process under it, by pid (every thread, ns precision)."""
    out: dict[int, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        total = 0
        for stat in glob.glob(f"/proc/{proc.pid}/task/*/schedstat"):
            try:
                with open(stat) as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError):
                continue
        out[proc.pid] = total / 1e9
    return out


def timed_turns(steps: list[dict[str, Any]], turns: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every process) per turn on a long-lived agent."""
    counter = [0]

    def answer(request: testing.Request) -> dict[str, Any]:
        step = steps[counter[0] % len(steps)]
        counter[0] += 1
        return step

    me = psutil.Process()
    with testing.FunctionModel(answer):
        pid = legion.start_link(BenchAgent)
        try:
            legion.call(pid, "warm up")
            before = _tree_cpu(me)
            started = time.perf_counter()
            for _ in range(turns):
                legion.call(pid, "task")
            elapsed = time.perf_counter() - started
            after = _tree_cpu(me)  # the agent is still alive: its CPU counts
        finally:
            legion.stop(pid)
    cpu = sum(spent - before.get(pid_, 0.0) for pid_, spent in after.items())
    return elapsed / turns, cpu / turns


def serve_mode(mode: str) -> None:
    """A worker: one application and node in `mode`; runs a round per line on stdin."""
    import logging

    if mode == "logger":
        handler = logging.FileHandler(os.devnull)
        logger = logging.getLogger("legion.telemetry")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        legion.telemetry.attach_default_logger()
    if mode != "off":
        legion.telemetry.serve_metrics(0)
    one = [testing.returns("ok")]
    two = [testing.eval_and_continue("x = 1 + 1\nprint(x)"), testing.returns("2")]
    timed_turns(one, 10)  # warm up: the zygotes, the sandbox, the code paths
    timed_turns(two, 10)
    print("ready", flush=True)
    for line in sys.stdin:
        turns = int(line)
        (one_wall, one_cpu), (two_wall, two_cpu) = timed_turns(one, turns), timed_turns(two, turns)
        figures = {"one_wall": one_wall, "one_cpu": one_cpu, "two_wall": two_wall,
                   "two_cpu": two_cpu}  # fmt: skip
        print(json.dumps(figures), flush=True)
    if mode == "logger":
        legion.telemetry.detach_default_logger()
    legion.shutdown()


def main() -> None:
    workers = {
        mode: subprocess.Popen(
            [sys.executable, __file__, "--mode", mode],
            env=dict(os.environ, LEGION_TELEMETRY="0" if mode == "off" else "1"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for mode in MODES
    }
    for worker in workers.values():
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    try:
        for rnd in range(ROUNDS):
            for mode in MODES[rnd % 3 :] + MODES[: rnd % 3]:  # each mode takes each position
                worker = workers[mode]
                assert worker.stdin is not None and worker.stdout is not None
                worker.stdin.write(f"{TURNS}\n")
                worker.stdin.flush()
                runs[mode].append(json.loads(worker.stdout.readline()))
    finally:
        for worker in workers.values():
            assert worker.stdin is not None
            worker.stdin.close()
        for worker in workers.values():
            worker.wait(60)
    report(runs)


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"cost of telemetry ({TURNS} turns per round, {ROUNDS} rounds per mode; the three")
    print("modes in three applications and nodes alive side by side, taking turns round by round)")
    print("best: the mode's fastest round against the fastest 'off' round (noise only adds time);")
    print("paired: the median over the rounds of the round's ratio to the 'off' round beside it")
    print()
    labels = {
        "off": "events off (LEGION_TELEMETRY=0)",
        "metrics": "events + node registry + /metrics",
        "logger": "... + attach_default_logger()",
    }
    for turn, title in (("one", "1-step turn (return)"), ("two", "2-step turn (eval + return)")):
        print(f"{title:36}{'turns/s':>8}{'best':>8}{'paired':>8}{'CPU/turn':>10}{'best':>8}"
              f"{'paired':>8}")  # fmt: skip
        for mode in MODES:
            cells = []
            for kind in ("wall", "cpu"):
                key = f"{turn}_{kind}"
                best = min(r[key] for r in runs[mode])
                base = min(r[key] for r in runs["off"])
                paired = statistics.median(
                    r[key] / off[key] for r, off in zip(runs[mode], runs["off"], strict=True)
                )
                cells.append((best, (best / base - 1) * 100, (paired - 1) * 100))
            (wall, wall_best, wall_paired), (cpu, cpu_best, cpu_paired) = cells
            print(
                f"  {labels[mode]:34}{1 / wall:>8.0f}{wall_best:>+7.1f}%{wall_paired:>+7.1f}%"
                f"{cpu * 1e6:>7.0f} µs{cpu_best:>+7.1f}%{cpu_paired:>+7.1f}%"
            )
        print()
    spread = [r["one_wall"] for r in runs["off"]]
    print(
        f"noise: the 'off' 1-step rounds alone spread {min(spread) * 1e6:.0f}-"
        f"{max(spread) * 1e6:.0f} µs per turn"
    )


if __name__ == "__main__":
    if "--mode" in sys.argv:
        serve_mode(sys.argv[sys.argv.index("--mode") + 1])
    else:
        main()

"""Runtime benchmark: every figure beside baselines measured in the same run.

    uv run --locked --extra dev python benchmarks/bench_runtime.py [--quick]

Figures (targets from DESIGN.md §6):
  spawn to first reply p50/p99 (≤ 10 ms p50)   vs os.fork+pipe, multiprocessing spawn and forkserver
  call round trip app→process→app (≤ 250 µs)  vs a raw pipe ping-pong, a raw relay through a third
                                               process (a call's topology), multiprocessing Pipe
  one-way messages/s between two processes     vs os.fork+pipe, multiprocessing Pipe (≥ 50 k/s)
  USS of an idle process (≤ 8 MiB)             vs os.fork child, multiprocessing spawn/forkserver
  1,000 idle processes alive at once, and the memory they took

Baselines import the same modules as a legion process (trio, msgspec, legion) where that applies.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from typing import Any

import msgspec
import psutil

import legion

QUICK = "--quick" in sys.argv
N_SPAWN = 30 if QUICK else 100
N_RTT = 1000 if QUICK else 5000
N_MSGS = 20_000 if QUICK else 100_000
N_IDLE = 200 if QUICK else 1000


# -- the processes under test --------------------------------------------------------------------


class Echo(legion.Server):
    def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request == "ospid":
            return os.getpid()
        return request


def sink(arg: Any) -> None:
    """Count `n` messages, then tell `owner` how many arrived."""
    owner, n = arg
    for _ in range(n):
        legion.receive()
    legion.send(owner, "done")


def blast(arg: Any) -> None:
    target, n = arg
    payload = "x" * 32
    for _ in range(n):
        legion.send(target, payload)


def idle() -> None:
    legion.receive()


# -- baselines -----------------------------------------------------------------------------------


def _preload() -> None:
    import trio  # noqa: F401

    import legion  # noqa: F401


def _mp_child(conn: Any) -> None:
    _preload()
    conn.send(("ready", os.getpid()))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send(msg)


def _mp_sink(conn: Any, n: int) -> None:
    for _ in range(n):
        conn.recv()
    conn.send("done")


def fork_pipe_spawn() -> float:
    r, w = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"x")
        os._exit(0)
    os.read(r, 1)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    return elapsed


def fork_pipe_rtt(n: int) -> list[float]:
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        while True:
            data = os.read(a_r, 64)
            if not data or data == b"q":
                os._exit(0)
            os.write(b_w, data)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        os.write(a_w, b"ping-ping-ping-ping")
        os.read(b_r, 64)
        times.append(time.perf_counter() - t)
    os.write(a_w, b"q")
    os.waitpid(pid, 0)
    for fd in (a_r, a_w, b_r, b_w):
        os.close(fd)
    return times


def fork_relay_rtt(n: int) -> list[float]:
    """The same topology as a call, in raw Python: app -> relay -> echo -> relay -> app, pipes."""
    to_relay_r, to_relay_w = os.pipe()
    to_app_r, to_app_w = os.pipe()
    to_echo_r, to_echo_w = os.pipe()
    from_echo_r, from_echo_w = os.pipe()
    echo = os.fork()
    if echo == 0:
        while True:
            data = os.read(to_echo_r, 64)
            if not data or data == b"q":
                os._exit(0)
            os.write(from_echo_w, data)
    relay = os.fork()
    if relay == 0:
        import select

        while True:
            readable, _, _ = select.select([to_relay_r, from_echo_r], [], [])
            if to_relay_r in readable:
                data = os.read(to_relay_r, 64)
                os.write(to_echo_w, data)
                if data == b"q":
                    os._exit(0)
            if from_echo_r in readable:
                os.write(to_app_w, os.read(from_echo_r, 64))
    times = []
    for _ in range(n):
        t = time.perf_counter()
        os.write(to_relay_w, b"ping-ping-ping-ping")
        os.read(to_app_r, 64)
        times.append(time.perf_counter() - t)
    os.write(to_relay_w, b"q")
    os.waitpid(relay, 0)
    os.waitpid(echo, 0)
    for fd in (
        to_relay_r,
        to_relay_w,
        to_app_r,
        to_app_w,
        to_echo_r,
        to_echo_w,
        from_echo_r,
        from_echo_w,
    ):
        os.close(fd)
    return times


def fork_pipe_throughput(n: int) -> float:
    r, w = os.pipe()
    done_r, done_w = os.pipe()
    frame = msgspec.msgpack.encode("x" * 32)
    frame = len(frame).to_bytes(4, "little") + frame
    pid = os.fork()
    if pid == 0:
        os.close(w)
        want = len(frame) * n
        got = 0
        while got < want:
            got += len(os.read(r, 65536))
        os.write(done_w, b"d")
        os._exit(0)
    os.close(r)
    start = time.perf_counter()
    for _ in range(n):
        os.write(w, frame)
    os.read(done_r, 1)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    for fd in (w, done_r, done_w):
        os.close(fd)
    return n / elapsed


def mp_spawn_and_reply(ctx: Any) -> tuple[float, Any, Any]:
    parent, child = ctx.Pipe()
    start = time.perf_counter()
    proc = ctx.Process(target=_mp_child, args=(child,))
    proc.start()
    parent.recv()
    parent.send("hi")
    parent.recv()
    return time.perf_counter() - start, proc, parent


def uss(pid: int) -> float:
    return float(psutil.Process(pid).memory_full_info().uss) / 2**20


# -- reporting -----------------------------------------------------------------------------------


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(what: str, ours: float, unit: str, baselines: dict[str, float], target: str = "") -> None:
    parts = [
        f"{name} {value:,.1f}{unit} (x{ours / value:.2f})" for name, value in baselines.items()
    ]
    line = f"{what:<34} legion {ours:,.1f}{unit}"
    if target:
        line += f"  [target {target}]"
    print(line)
    for part in parts:
        print(f"{'':<36}vs {part}")


def main() -> None:
    print(f"legion runtime benchmark ({'quick' if QUICK else 'full'}), {os.cpu_count()} cores")
    legion.whereis("warm-up")  # start the embedded node and its zygote
    pid = legion.spawn(Echo)
    legion.call(pid, "warm")
    legion.stop(pid)

    # spawn to first reply
    spawn_times = []
    for _ in range(N_SPAWN):
        t = time.perf_counter()
        pid = legion.spawn(Echo)
        legion.call(pid, "first")
        spawn_times.append(time.perf_counter() - t)
        legion.exit(pid, "kill")
    fork_times = [fork_pipe_spawn() for _ in range(N_SPAWN)]
    mp_times: dict[str, list[float]] = {}
    for method in ("spawn", "forkserver"):
        ctx = mp.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["trio", "legion"])
        times = []
        for _ in range(max(5, N_SPAWN // 5)):
            elapsed, proc, conn = mp_spawn_and_reply(ctx)
            times.append(elapsed)
            conn.send(None)
            proc.join()
            conn.close()
        mp_times[method] = times
    ms = 1000.0
    row(
        "spawn→first reply p50 (ms)",
        p(spawn_times, 0.5) * ms,
        "",
        {
            "os.fork+pipe": p(fork_times, 0.5) * ms,
            "mp spawn": p(mp_times["spawn"], 0.5) * ms,
            "mp forkserver": p(mp_times["forkserver"], 0.5) * ms,
        },
        "≤ 10 ms",
    )
    row(
        "spawn→first reply p99 (ms)",
        p(spawn_times, 0.99) * ms,
        "",
        {
            "os.fork+pipe": p(fork_times, 0.99) * ms,
            "mp forkserver": p(mp_times["forkserver"], 0.99) * ms,
        },
    )

    # call round trip, in rounds that alternate with the baselines (the VM's idle states
    # make cross-process wake-ups cost 5-80 µs depending on load, so compare like with like)
    pid = legion.spawn(Echo)
    for _ in range(200):
        legion.call(pid, "warm")
    ctx = mp.get_context("forkserver")
    _, proc, conn = mp_spawn_and_reply(ctx)
    rtts: list[float] = []
    raw: list[float] = []
    relay: list[float] = []
    mp_rtts: list[float] = []
    for _ in range(5):
        for _ in range(N_RTT // 5):
            t = time.perf_counter()
            legion.call(pid, "ping")
            rtts.append(time.perf_counter() - t)
        raw += fork_pipe_rtt(N_RTT // 5)
        relay += fork_relay_rtt(N_RTT // 5)
        for _ in range(N_RTT // 5):
            t = time.perf_counter()
            conn.send("ping")
            conn.recv()
            mp_rtts.append(time.perf_counter() - t)
    conn.send(None)
    proc.join()
    conn.close()
    us = 1e6
    row(
        "call round trip p50 (µs)",
        p(rtts, 0.5) * us,
        "",
        {
            "raw pipe ping-pong": p(raw, 0.5) * us,
            "raw relay app->relay->echo (same topology)": p(relay, 0.5) * us,
            "mp Pipe (forkserver)": p(mp_rtts, 0.5) * us,
        },
        "≤ 250 µs",
    )
    row(
        "call round trip p99 (µs)",
        p(rtts, 0.99) * us,
        "",
        {"raw pipe ping-pong": p(raw, 0.99) * us, "raw relay": p(relay, 0.99) * us},
    )

    # one-way throughput between two processes
    me = legion.self()
    receiver = legion.spawn(sink, (me, N_MSGS))
    t = time.perf_counter()
    legion.spawn(blast, (receiver, N_MSGS))
    legion.receive(timeout=120, match=lambda m: m == "done")
    ours = N_MSGS / (time.perf_counter() - t)
    parent, child = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_mp_sink, args=(child, N_MSGS))
    proc.start()
    t = time.perf_counter()
    for _ in range(N_MSGS):
        parent.send("x" * 32)
    parent.recv()
    mp_rate = N_MSGS / (time.perf_counter() - t)
    proc.join()
    row(
        "one-way messages per second",
        ours,
        "",
        {"os.fork+pipe (framed msgpack)": fork_pipe_throughput(N_MSGS), "mp Pipe": mp_rate},
        "≥ 50,000/s",
    )

    # USS of an idle process
    ospid = legion.call(pid, "ospid")
    ours_uss = uss(ospid)
    r, w = os.pipe()
    child_pid = os.fork()
    if child_pid == 0:
        os.read(r, 1)
        os._exit(0)
    fork_uss = uss(child_pid)
    os.write(w, b"x")
    os.waitpid(child_pid, 0)
    os.close(r)
    os.close(w)
    mp_uss = {}
    for method in ("spawn", "forkserver"):
        _, proc, conn = mp_spawn_and_reply(mp.get_context(method))
        mp_uss[method] = uss(proc.pid)
        conn.send(None)
        proc.join()
    row(
        "USS of an idle process (MiB)",
        ours_uss,
        "",
        {
            "os.fork of this app": fork_uss,
            "mp spawn": mp_uss["spawn"],
            "mp forkserver": mp_uss["forkserver"],
        },
        "≤ 8 MiB",
    )
    legion.stop(pid)

    # many idle processes at once
    before = _available()
    t = time.perf_counter()
    pids = [legion.spawn(idle) for _ in range(N_IDLE)]
    legion.call(legion.spawn(Echo), "barrier")
    spawn_all = time.perf_counter() - t
    ospids = _worker_pids()
    total_uss = sum(uss(x) for x in ospids)
    taken = (before - _available()) / 2**20
    print(
        f"{N_IDLE:,} idle processes alive at once   spawned in {spawn_all:.2f} s; "
        f"{len(ospids):,} worker processes, USS total {total_uss:,.0f} MiB "
        f"({total_uss / max(1, len(ospids)):.2f} MiB each); MemAvailable dropped {taken:,.0f} MiB"
    )
    for x in pids:
        legion.exit(x, "kill")
    legion.shutdown()


def _available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _worker_pids() -> list[int]:
    node = legion.supervisor.client.current()
    assert node is not None and node.node_process is not None
    zygotes = psutil.Process(node.node_process.pid).children()
    return [c.pid for z in zygotes for c in z.children()]


if __name__ == "__main__":
    main()

"""Soak: 10,000 evaluations leave no descriptor, zombie or memory growth (marked slow)."""

from __future__ import annotations

import os

import psutil
import pytest
import trio

from legion.sandbox import aevaluate, info


@pytest.mark.slow
def test_10k_evaluations_leak_nothing() -> None:
    class Echo:
        def echo(self, x: int) -> int:
            return x

    async def batch(n: int) -> None:
        bindings = None
        for i in range(n):
            ev = await aevaluate(f"x = Echo.echo({i})\nx", tools=[Echo], bindings=bindings)
            assert ev.ok and ev.value == i, ev.error
            bindings = ev.bindings

    me = psutil.Process()
    trio.run(batch, 500)  # warm up: zygote, spares, allocator high-water marks
    zygote = psutil.Process(info().zygote_pid)
    fds = len(os.listdir("/proc/self/fd"))
    rss, zygote_rss = me.memory_info().rss, zygote.memory_info().rss
    trio.run(batch, 10_000)
    assert len(os.listdir("/proc/self/fd")) <= fds
    assert zygote.memory_info().rss - zygote_rss <= 1024 * 1024
    assert me.memory_info().rss - rss <= 8 * 1024 * 1024
    # A child that has just exited is a zombie until the zygote reaps it: wait for that, bounded.
    exiting = [p for p in me.children(recursive=True) if _zombie(p)]
    psutil.wait_procs(exiting, timeout=5)
    assert not [p for p in exiting if _zombie(p)], "the zygote did not reap its children"
    assert zygote.pid == info().zygote_pid


def _zombie(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False

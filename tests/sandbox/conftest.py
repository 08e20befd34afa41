"""Sandbox test fixtures: the anyio backend and a leak check around every test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psutil
import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "trio"


def _allowed() -> set[int]:
    """The long-lived zygote and the spare children it keeps ready are expected to stay."""
    from legion.sandbox import runner

    pids = set(runner.SPARES.pids())
    if runner.ZYGOTE.pid is not None:
        pids.add(runner.ZYGOTE.pid)
    return pids


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """No stray process, no zombie and no leaked descriptor after a test."""
    me = psutil.Process()
    fds_before = _fd_count()
    yield
    from legion.sandbox import runner

    spares = len(runner.SPARES.pids())
    # children that are exiting are reaped by the zygote: wait for them (bounded), no sleeping
    strays = [p for p in me.children(recursive=True) if p.pid not in _allowed()]
    _gone, alive = psutil.wait_procs(strays, timeout=3)
    alive = [p for p in alive if p.pid not in _allowed()]
    assert not alive, f"stray processes after the test: {alive}"
    zombies = [
        p
        for p in me.children(recursive=True)
        if p.pid not in _allowed() and p.status() == psutil.STATUS_ZOMBIE
    ]
    assert not zombies
    # The zygote's control socket (3 fds) and each spare (4 fds) may have been opened by the test.
    slack = (3 if runner.ZYGOTE.pid is not None else 0) + 4 * spares
    assert _fd_count() <= fds_before + slack, "descriptors leaked"

"""Test-wide fixtures: every test must leave no stray OS process, zombie or descriptor behind."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

# Long-lived infrastructure a test may leave running: the embedded node and its zygote, and the
# sandbox's zygote with the spare children it keeps ready (legion.sandbox.runner.held()).
_INFRA = ("legion.supervisor.node", "legion.supervisor.zygote", "legion.sandbox.zygote")


def _infra_root(proc: psutil.Process) -> bool:
    """A node or zygote process (not a child forked from a zygote, which shares its cmdline)."""
    try:
        cmd = " ".join(proc.cmdline())
        if not any(marker in cmd for marker in _INFRA):
            return False
        parent = proc.parent()
        return parent is None or " ".join(parent.cmdline()) != cmd
    except psutil.Error:
        return False


def _sandbox_held() -> tuple[set[int], set[int]]:
    runner = sys.modules.get("legion.sandbox.runner")
    if runner is None:
        return set(), set()
    held: tuple[set[int], set[int]] = runner.held()
    return held


def _strays() -> list[psutil.Process]:
    me = psutil.Process()
    held, _ = _sandbox_held()
    return [p for p in me.children(recursive=True) if not _infra_root(p) and p.pid not in held]


def _infra_fds() -> set[str]:
    from legion.supervisor import client

    _, fds = _sandbox_held()
    current = client.current()
    if current is not None and current._sock.fileno() >= 0:
        fds.add(current._sock.fileno())
    return {str(fd) for fd in fds}


@pytest.fixture(autouse=True)
def no_leaks() -> object:
    fds_before = set(os.listdir("/proc/self/fd"))
    yield
    strays = _strays()
    _, alive = psutil.wait_procs(strays, timeout=5)
    # a child that has just exited is a zombie until its zygote reaps it: allow for that
    exiting = [p for p in psutil.Process().children(recursive=True) if _is_zombie(p)]
    psutil.wait_procs(exiting, timeout=5)
    zombies = [p for p in exiting if _is_zombie(p)]
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    leaked_fds = set(os.listdir("/proc/self/fd")) - fds_before - _infra_fds()
    leaked_fds = {fd for fd in leaked_fds if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not alive, f"the test left processes running: {[_describe(p) for p in alive]}"
    assert not zombies, f"the test left zombies: {[_describe(p) for p in zombies]}"
    assert not leaked_fds, f"the test leaked descriptors: {_describe_fds(leaked_fds)}"


def _is_zombie(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:80]}"
    except psutil.Error:
        return str(p.pid)


def _describe_fds(fds: set[str]) -> list[str]:
    out = []
    for fd in sorted(fds):
        try:
            out.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            out.append(fd)
    return out


@pytest.fixture(scope="session", autouse=True)
def _stop_infrastructure_at_end() -> object:
    yield
    import legion

    legion.shutdown()
    try:
        from legion.sandbox import shutdown as sandbox_shutdown  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        sandbox_shutdown()
    left = psutil.Process().children(recursive=True)
    _, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, f"processes outlived the test session: {[_describe(p) for p in alive]}"


@pytest.fixture
def anyio_backend() -> str:
    return "trio"

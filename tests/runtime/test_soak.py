"""Soak: many processes and calls leave nothing behind (marked slow; CI runs `pytest -m slow`)."""

from __future__ import annotations

import os

import psutil
import pytest
from helpers import wait_down
from procs import Probe, crash_at_once

import legion

pytestmark = pytest.mark.slow


def _node() -> psutil.Process:
    from legion.supervisor import client

    endpoint = client.get()
    assert endpoint.node_process is not None, "the soak test needs the embedded node"
    return psutil.Process(endpoint.node_process.pid)


def test_a_thousand_process_lives_leak_no_descriptor_memory_or_process() -> None:
    node = _node()
    warm = legion.start(Probe)
    assert warm is not None
    legion.stop(warm)
    fds_node, fds_app = node.num_fds(), len(os.listdir("/proc/self/fd"))
    rss_node = node.memory_info().rss
    for round_ in range(10):
        pids = [legion.start(Probe) for _ in range(50)]
        refs = []
        for pid in pids:
            assert pid is not None
            assert legion.call(pid, ("echo", round_)) == round_
            refs.append(legion.monitor(pid))
        for pid in pids[:25]:
            assert pid is not None
            legion.stop(pid)
        for pid in pids[25:]:
            assert pid is not None
            legion.exit(pid, "kill")
        crashed = [legion.spawn(crash_at_once, monitor=True)[1] for _ in range(50)]
        for ref in refs + crashed:
            wait_down(ref)
    assert node.num_fds() <= fds_node + 2
    assert len(os.listdir("/proc/self/fd")) == fds_app
    assert node.memory_info().rss < rss_node + 16 * 2**20
    # every worker is gone; what is left under the agent zygote is the node's sandbox zygote
    workers = [c for z in node.children() for c in z.children() if not _sandbox_zygote(c)]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


def _sandbox_zygote(proc: psutil.Process) -> bool:
    try:
        return "legion.sandbox.zygote" in " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False

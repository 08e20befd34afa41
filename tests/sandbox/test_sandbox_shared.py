"""Every process of a node evaluates through one sandbox zygote, started by the agent zygote."""

from __future__ import annotations

import psutil
from sandbox_processes import Evaluator

import legion
from legion.sandbox import info


def test_processes_of_a_node_share_one_sandbox_zygote() -> None:
    a, b = legion.spawn(Evaluator), legion.spawn(Evaluator)
    ok_a, value_a, zygote_a, os_a = legion.call(a, "6 * 7", timeout=30)
    ok_b, value_b, zygote_b, os_b = legion.call(b, "sum(range(10))", timeout=30)
    assert (ok_a, value_a, ok_b, value_b) == (True, 42, True, 45)
    assert os_a != os_b and zygote_a == zygote_b
    assert zygote_a != info().zygote_pid  # the application's own sandbox zygote is another one
    node = legion.supervisor.client.current()
    assert node is not None and node.node_process is not None
    agent_zygote = psutil.Process(node.node_process.pid).children()[0]
    assert zygote_a in [p.pid for p in agent_zygote.children()]
    for pid in (a, b):
        legion.stop(pid)

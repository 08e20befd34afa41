"""DynamicSupervisor (research §3.4, D1-D6, and the dynamic cases of S12, S13, S32)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sup_helpers import kill_and_wait, started, wait_down, wait_exit, worker
from workers import Dyn, stubborn

import legion

D = legion.DynamicSupervisor


def test_D1_only_one_for_one_is_accepted() -> None:
    with pytest.raises(legion.SpecError, match=r"strategy: .*only 'one_for_one'"):
        legion.DynamicSupervisorSpec(strategy="one_for_all")
    with pytest.raises(legion.InitError, match="strategy"):
        legion.start_link(Dyn, {"strategy": "rest_for_one"})


def test_D2_max_children(sups: Any) -> None:
    sup = sups.start(cls=Dyn, arg={"max_children": 2})
    D.start_child(sup, worker("a"))
    b = D.start_child(sup, worker("b"))
    with pytest.raises(legion.MaxChildren):
        D.start_child(sup, worker("c"))
    D.terminate_child(sup, b)
    D.start_child(sup, worker("c"))
    assert D.count_children(sup)["active"] == 2


def test_D3_extra_arguments_come_before_the_child_argument(sups: Any) -> None:
    from workers import echo_arg

    sup = sups.start(cls=Dyn, arg={"extra_arguments": ["x", 1]})
    D.start_child(sup, legion.child_spec(echo_arg, legion.self(), restart="temporary"))
    msg = legion.receive(timeout=10, match=lambda m: isinstance(m, list) and m[0] == "arg")
    assert msg[1] == ["x", 1, legion.self()]


@pytest.mark.parametrize("cls", [legion.DynamicSupervisor, legion.Supervisor])
def test_D5_D6_defaults_are_3_restarts_in_5_seconds(sups: Any, cls: Any) -> None:
    if cls is legion.Supervisor:
        spec: Any = legion.SupervisorSpec()
        assert (spec.max_restarts, spec.max_seconds) == (3, 5.0)
        sup = sups.start([worker("a")])
        pid = started("a")
    else:
        spec = legion.DynamicSupervisorSpec()
        assert (spec.max_restarts, spec.max_seconds) == (3, 5.0)
        sup = sups.start(cls=cls)
        pid = D.start_child(sup, worker("a"))
        started("a")
    for _ in range(3):
        legion.exit(pid, "kill")
        pid = started("a")
    legion.exit(pid, "kill")
    assert wait_exit(sup).reason == "shutdown"


def test_dynamic_children_restart_by_type_and_terminate_by_pid(sups: Any) -> None:
    sup = sups.start(cls=D)
    perm = D.start_child(sup, worker("p"))
    temp = D.start_child(sup, worker("t", restart="temporary"))
    started("p"), started("t")
    legion.exit(perm, "kill")
    new = started("p")
    ref = legion.monitor(temp)
    legion.exit(temp, "kill")
    wait_down(ref)
    assert [c.pid for c in D.which_children(sup)] == [new]
    with pytest.raises(legion.ChildNotFound):
        D.terminate_child(sup, temp)
    D.terminate_child(sup, new)
    assert D.which_children(sup) == []


def test_S33_a_restarted_dynamic_child_whose_init_ignores_is_dropped(sups: Any) -> None:
    sup = sups.start(cls=D)
    legion.register("dyn-ignore-switch")
    try:
        pid = D.start_child(sup, worker("a", ignore_if="nobody-has-this-name"))
        other = D.start_child(sup, worker("b", ignore_if="dyn-ignore-switch"))
        assert other is None  # ignored at start: not kept either
        started("a")
        assert [c.pid for c in D.which_children(sup)] == [pid]
    finally:
        legion.unregister("dyn-ignore-switch")
    sup2 = sups.start(cls=D)
    pid = D.start_child(sup2, worker("c", ignore_if="dyn-ignore-switch"))
    started("c")
    legion.register("dyn-ignore-switch")
    try:
        kill_and_wait(pid)
        assert D.which_children(sup2) == []
    finally:
        legion.unregister("dyn-ignore-switch")


@pytest.mark.slow
def test_S37_S39_count_children_with_1000_dynamic_children(sups: Any) -> None:
    sup = sups.start(cls=D)
    for i in range(1000):
        D.start_child(sup, legion.child_spec(stubborn, None, id=i, shutdown="brutal_kill"))
    assert D.count_children(sup) == {
        "specs": 1000, "active": 1000, "supervisors": 0, "workers": 1000,
    }  # fmt: skip
    t0 = time.monotonic()
    legion.stop(sup, "shutdown", timeout=60)
    assert time.monotonic() - t0 < 30


def test_S13_S12_dynamic_brutal_kill_and_timeout_kill(sups: Any) -> None:
    me = legion.self()
    sup = sups.start(cls=D)
    brutal = D.start_child(sup, worker("a", trap=True, shutdown="brutal_kill"))
    hard = D.start_child(sup, legion.child_spec(stubborn, {"owner": me, "tag": "s"}, shutdown=0.1))
    started("s")
    refs = [legion.monitor(brutal), legion.monitor(hard)]
    legion.stop(sup, "shutdown")
    assert [wait_down(r).reason for r in refs] == ["killed", "killed"]


def test_S32_D4_dynamic_children_stop_concurrently(sups: Any) -> None:
    sup = sups.start(cls=D)
    for i in range(4):
        D.start_child(sup, worker(i, trap=True, slow_stop=0.4))
    t0 = time.monotonic()
    legion.stop(sup, "shutdown", timeout=10)
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 1.2, elapsed  # one slow terminate, not four in a row


@pytest.mark.slow
def test_S38_start_arguments_of_ended_temporary_children_are_not_kept(sups: Any) -> None:
    """300 temporary children, each started with a 64 KiB argument, end by themselves: the
    supervisor keeps no spec and the node (where the supervisor lives) does not grow."""
    import psutil

    from legion.supervisor import client

    endpoint = client.get()
    assert endpoint.node_process is not None
    node = psutil.Process(endpoint.node_process.pid)
    sup = sups.start(cls=D)
    payload = "x" * 65536

    def cycle(n: int) -> None:
        for i in range(n):
            pid = D.start_child(sup, worker(i, restart="temporary", blob=payload))
            ref = legion.monitor(pid)
            legion.call(pid, ("die", "normal"))
            wait_down(ref)
        assert D.count_children(sup)["specs"] == 0

    cycle(50)  # warm up allocator high-water marks
    rss = node.memory_info().rss
    cycle(300)  # 300 x 64 KiB = 19 MiB of arguments had they been kept
    assert node.memory_info().rss - rss < 8 * 2**20

"""auto_shutdown with significant children (research §3.4, S43-S48)."""

from __future__ import annotations

from typing import Any

import pytest
from sup_helpers import nothing_pending, pids, started, wait_down, wait_exit, worker
from workers import Sup

import legion

S = legion.Supervisor


def _ended(pid: legion.Pid, how: str) -> None:
    ref = legion.monitor(pid)
    if how == "kill":
        legion.exit(pid, "kill")
    else:
        legion.call(pid, ("die", how))
    wait_down(ref)


@pytest.mark.parametrize("mode", ["any_significant", "all_significant"])
@pytest.mark.parametrize("restart", ["temporary", "transient"])
def test_S43_nonsignificant_children_never_trigger_auto_shutdown(
    sups: Any, mode: str, restart: str
) -> None:
    sup = sups.start([worker("a", restart=restart)], auto_shutdown=mode)
    _ended(started("a"), "normal")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))
    assert legion.Supervisor.count_children(sup)["active"] == 0


@pytest.mark.parametrize("how", ["kill", "abnormal", "normal"])
def test_S44_temporary_significant_child_exit_shuts_down_any_significant(
    sups: Any, how: str
) -> None:
    sup = sups.start(
        [worker("a", restart="temporary", significant=True), worker("b")],
        auto_shutdown="any_significant",
    )
    b_ref = legion.monitor(started("b"))
    _ended(started("a"), how)
    assert wait_exit(sup).reason == "shutdown"
    assert wait_down(b_ref).reason == "shutdown"


def test_S44_terminate_child_does_not_trigger_auto_shutdown(sups: Any) -> None:
    sup = sups.start(
        [worker("a", restart="temporary", significant=True)], auto_shutdown="any_significant"
    )
    S.terminate_child(sup, "a")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))
    assert S.which_children(sup) == []


def test_S44_all_significant_waits_for_the_last_one(sups: Any) -> None:
    sup = sups.start(
        [worker(t, restart="temporary", significant=True) for t in "ab"],
        auto_shutdown="all_significant",
    )
    a, b = started("a"), started("b")
    _ended(a, "normal")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))
    _ended(b, "abnormal")
    assert wait_exit(sup).reason == "shutdown"


@pytest.mark.parametrize("how", ["kill", "abnormal"])
def test_S45_transient_significant_child_restarts_after_abnormal_exit(sups: Any, how: str) -> None:
    sups.start(
        [worker("a", restart="transient", significant=True)], auto_shutdown="any_significant"
    )
    _ended(started("a"), how)
    started("a")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


def test_S45_transient_significant_child_normal_exit_shuts_down(sups: Any) -> None:
    sup = sups.start(
        [worker("a", restart="transient", significant=True)], auto_shutdown="any_significant"
    )
    _ended(started("a"), "normal")
    assert wait_exit(sup).reason == "shutdown"


def test_S46_a_dynamic_supervisor_rejects_significant_children(sups: Any) -> None:
    sup = sups.start(cls=legion.DynamicSupervisor)
    with pytest.raises(legion.SpecError, match="significant"):
        legion.DynamicSupervisor.start_child(
            sup, worker("a", restart="temporary", significant=True)
        )


def test_S47_significant_bystander_of_a_group_restart_does_not_shut_down(sups: Any) -> None:
    sup = sups.start(
        [worker("a"), worker("t", restart="transient", significant=True)],
        strategy="one_for_all",
        auto_shutdown="any_significant",
    )
    a, _ = started("a"), started("t")
    legion.exit(a, "kill")
    started("a"), started("t")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))
    assert all(isinstance(p, legion.Pid) for p in pids(sup).values())


@pytest.mark.parametrize("significant", [True, False])
def test_S48_auto_shutdown_cascades_only_through_significant_child_supervisors(
    sups: Any, significant: bool
) -> None:
    inner = {
        "children": [worker("x", restart="temporary", significant=True)],
        "auto_shutdown": "any_significant",
    }
    top = sups.start(
        [
            worker("keep"),
            legion.child_spec(Sup, inner, id="inner", restart="transient", significant=significant),
        ],
        auto_shutdown="any_significant",
    )
    started("keep")
    inner_pid = pids(top)["inner"]
    inner_ref = legion.monitor(inner_pid)
    _ended(started("x"), "normal")
    assert wait_down(inner_ref).reason == "shutdown"
    if significant:
        assert wait_exit(top).reason == "shutdown"
    else:
        assert nothing_pending(lambda m: isinstance(m, legion.Exit))
        assert pids(top)["inner"] is None

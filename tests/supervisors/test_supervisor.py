"""Supervisor conformance (research §3.4): start, stop, restart types, intensity, strategies."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from sup_helpers import (
    kill_and_wait,
    next_started,
    nothing_pending,
    pids,
    started,
    terminated,
    until,
    wait_down,
    wait_exit,
    worker,
)
from workers import Sup, Worker, stubborn

import legion

S = legion.Supervisor


@pytest.fixture
def switch() -> Iterator[str]:
    """A registered name children check in `init`: while it is registered, their start fails."""
    yield "fail-switch"
    if legion.whereis("fail-switch") is not None:
        legion.unregister("fail-switch")


# -- start ----------------------------------------------------------------------------------------


def test_S1_empty_supervisor_starts_and_stops_on_shutdown(sups: Any) -> None:
    sup = sups.start()
    assert S.which_children(sup) == []
    assert S.count_children(sup) == {"specs": 0, "active": 0, "supervisors": 0, "workers": 0}
    ref = legion.monitor(sup)
    legion.stop(sup, "shutdown")
    assert wait_down(ref).reason == "shutdown"


def test_S2_init_ignore_returns_none_and_no_exit_leaks() -> None:
    assert legion.start_link(Sup, "ignore") is None
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


def test_S3_child_ignore_keeps_spec_with_no_pid(sups: Any) -> None:
    sup = sups.start([worker("a"), worker("b", fail="ignore")])
    assert pids(sup)["b"] is None
    assert S.count_children(sup) == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}


def test_S4_temporary_child_returning_ignore_is_not_kept(sups: Any) -> None:
    sup = sups.start([worker("a", fail="ignore", restart="temporary")])
    assert S.which_children(sup) == []
    assert S.start_child(sup, worker("b", fail="ignore", restart="temporary")) is None
    assert S.which_children(sup) == []


@pytest.mark.parametrize("arg", ["garbage", "raise"])
def test_S6_bad_init_fails_start_link_without_stray_exit(arg: str) -> None:
    with pytest.raises(legion.InitError):
        legion.start_link(Sup, arg)
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


def test_the_process_api_fails_loudly_in_a_supervisor_init_which_runs_in_the_node() -> None:
    with pytest.raises(legion.InitError, match="not available in a Supervisor's init"):
        legion.start_link(Sup, "use-the-api")


def test_S7_child_start_error_is_returned_and_no_spec_kept(sups: Any) -> None:
    sup = sups.start()
    with pytest.raises(legion.StartChildError) as info:
        S.start_child(sup, worker("a", fail="raise"))
    assert isinstance(info.value.value, legion.Crash)
    assert "start failed on purpose" in str(info.value)
    assert S.which_children(sup) == []


def test_S8_restart_child_whose_start_fails_stays_not_running(sups: Any, switch: str) -> None:
    sup = sups.start([worker("a", fail_if=switch)])
    S.terminate_child(sup, "a")
    legion.register(switch)
    with pytest.raises(legion.StartChildError):
        S.restart_child(sup, "a")
    assert pids(sup) == {"a": None}


def test_S9_defaults_are_filled_in_and_get_childspec_returns_them(sups: Any) -> None:
    spec = legion.child_spec(Worker)
    assert (spec.id, spec.restart, spec.shutdown, spec.type, spec.significant) == (
        "Worker", "permanent", 5.0, "worker", False,
    )  # fmt: skip
    assert spec.modules == ["workers"]
    sup_spec = legion.child_spec(Sup, {"children": []})
    assert (sup_spec.type, sup_spec.shutdown) == ("supervisor", "infinity")
    sup = sups.start([spec])
    assert S.get_childspec(sup, "Worker") == spec
    assert S.get_childspec(sup, pids(sup)["Worker"]) == spec
    with pytest.raises(legion.ChildNotFound):
        S.get_childspec(sup, "nope")


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("restart", "sometimes", "permanent, transient, temporary"),
        ("shutdown", -1, "'brutal_kill' or 'infinity'"),
        ("shutdown", math.nan, "'brutal_kill' or 'infinity'"),
        ("shutdown", 10**400, "'brutal_kill' or 'infinity'"),
        ("shutdown", None, "'brutal_kill' or 'infinity'"),
        ("shutdown", "soon", "'brutal_kill' or 'infinity'"),
        ("type", "manager", "worker, supervisor"),
        ("significant", "yes", "True or False"),
        ("name", 3, "non-empty str"),
    ],
)
def test_S18_bad_child_specs_name_the_field_and_the_allowed_values(
    field: str, value: Any, allowed: str
) -> None:
    with pytest.raises(legion.SpecError, match=f"^{field}: .*{allowed}"):
        legion.child_spec(Worker, **{field: value})


def test_S18_significant_permanent_and_duplicate_ids_are_rejected() -> None:
    with pytest.raises(legion.SpecError, match="significant: a permanent child"):
        legion.child_spec(Worker, restart="permanent", significant=True)
    with pytest.raises(legion.SpecError, match="id: duplicate child id 'a'"):
        legion.SupervisorSpec(children=[worker("a"), worker("a")])
    with pytest.raises(legion.SpecError, match=r"significant: .* auto_shutdown is 'never'"):
        legion.SupervisorSpec(children=[worker("a", restart="temporary", significant=True)])
    with pytest.raises(TypeError, match="top level"):
        legion.child_spec(lambda: None)


def test_S10_a_spec_that_is_not_a_child_spec_is_rejected_by_the_supervisor(sups: Any) -> None:
    sup = sups.start()
    with pytest.raises(legion.SpecError, match="child spec"):
        S.start_child(sup, {"module": "workers"})
    with pytest.raises(legion.SpecError, match="restart: 'x'"):
        S.start_child(sup, {"id": "a", "module": "workers", "qualname": "Worker", "restart": "x"})


def test_S10_a_spec_with_a_shutdown_no_timer_takes_is_refused_at_start_child(sups: Any) -> None:
    """A NaN shutdown used to be accepted, and the supervisor crashed when it stopped that child."""
    sup = sups.start([worker("a")])
    bad = msgspec.structs.replace(worker("b"), shutdown=math.nan)  # past child_spec's check
    with pytest.raises(legion.SpecError, match=r"^shutdown: nan is not a number of seconds"):
        S.start_child(sup, bad)
    assert list(pids(sup)) == ["a"]
    ref = legion.monitor(sup)
    legion.exit(sup, "shutdown")
    assert wait_down(ref).reason == "shutdown"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"strategy": "one_for_some"}, "strategy: 'one_for_some' is not one of one_for_one"),
        ({"max_restarts": -1}, "max_restarts: -1 is not an int >= 0"),
        ({"max_seconds": 0}, "max_seconds: 0 is not a number > 0"),
        ({"auto_shutdown": "sometimes"}, "auto_shutdown: 'sometimes' is not one of never"),
    ],
)
def test_S19_bad_flags_are_rejected(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(legion.SpecError, match=message):
        legion.SupervisorSpec(**flags)
    with pytest.raises(legion.InitError, match=message.split(":")[0]):
        legion.start_link(Sup, flags)


# -- stop -----------------------------------------------------------------------------------------


def test_S11_shutdown_infinity_waits_and_children_exit_with_shutdown(sups: Any) -> None:
    sup = sups.start([worker("a", trap=True, shutdown="infinity", slow_stop=0.2)])
    legion.stop(sup, "shutdown")
    assert terminated()[::2] == ("a", "shutdown")


def test_S12_a_child_outliving_its_timeout_is_killed_a_cooperative_one_exits_shutdown(
    sups: Any,
) -> None:
    me = legion.self()
    hard = legion.child_spec(stubborn, {"owner": me, "tag": "s"}, id="s", shutdown=0.2)
    sup = sups.start([worker("a", trap=True), hard])
    started("s")  # it traps exits from here on
    refs = {tag: legion.monitor(pid) for tag, pid in pids(sup).items()}
    t0 = time.monotonic()
    legion.stop(sup, "shutdown")
    assert time.monotonic() - t0 >= 0.2
    assert wait_down(refs["s"]).reason == "killed"
    assert wait_down(refs["a"]).reason == "shutdown"


def test_S13_brutal_kill_child_dies_killed(sups: Any) -> None:
    sup = sups.start([worker("a", trap=True, shutdown="brutal_kill")])
    ref = legion.monitor(pids(sup)["a"])
    S.terminate_child(sup, "a")
    assert wait_down(ref).reason == "killed"
    assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "terminated")


def test_S14_children_exiting_on_their_own_during_shutdown_keep_their_reason(
    sups: Any,
) -> None:
    sup = sups.start([worker("a"), worker("b", trap=True, slow_stop=0.3)])
    a = pids(sup)["a"]
    ref = legion.monitor(a)
    legion.send(sup, "ignored")  # a supervisor ignores stray messages
    stopper = legion.spawn(_stop_later, sup)
    legion.call(a, ("die", "my-own-reason"))
    assert wait_down(ref).reason == "my-own-reason"
    ref_stopper = legion.monitor(stopper)
    wait_down(ref_stopper)


def _stop_later(sup: legion.Pid) -> None:
    legion.stop(sup, "shutdown", timeout=10)


# -- administration -------------------------------------------------------------------------------


def test_S15_administration_contract(sups: Any) -> None:
    sup = sups.start([worker("a")])
    a = pids(sup)["a"]
    with pytest.raises(legion.AlreadyStarted) as info:
        S.start_child(sup, worker("a"))
    assert info.value.pid == a
    with pytest.raises(legion.ChildRunning):
        S.restart_child(sup, "a")
    with pytest.raises(legion.ChildRunning):
        S.delete_child(sup, "a")
    with pytest.raises(legion.ChildNotFound):
        S.terminate_child(sup, a)  # a static supervisor terminates by id only
    S.terminate_child(sup, "a")
    S.terminate_child(sup, "a")  # already stopped: ok
    with pytest.raises(legion.AlreadyPresent):
        S.start_child(sup, worker("a"))
    new = S.restart_child(sup, "a")
    assert isinstance(new, legion.Pid) and new != a
    S.terminate_child(sup, "a")
    S.delete_child(sup, "a")
    for op in (S.terminate_child, S.restart_child, S.delete_child):
        with pytest.raises(legion.ChildNotFound):
            op(sup, "a")
    b = S.start_child(sup, worker("b"))
    assert pids(sup) == {"b": b}
    legion.stop(sup, "shutdown")
    with pytest.raises(legion.NoProc):
        S.which_children(sup)


def test_S15_admin_calls_have_async_twins(sups: Any) -> None:
    import trio

    sup = sups.start([worker("a")])

    async def main() -> Any:
        await S.aterminate_child(sup, "a")
        pid = await S.arestart_child(sup, "a")
        return pid, await S.awhich_children(sup), await S.acount_children(sup)

    pid, rows, counts = trio.run(main)
    assert rows == [legion.ChildInfo("a", pid, "worker", ["workers"])]
    assert counts["active"] == 1


# -- restart types ---------------------------------------------------------------------------------

REASONS = ["normal", "shutdown", ("shutdown", "done"), "abnormal"]


@pytest.mark.parametrize("reason", REASONS)
def test_S20_permanent_child_is_restarted_after_any_exit(sups: Any, reason: Any) -> None:
    sups.start([worker("a")])
    a = started("a")
    legion.call(a, ("die", reason))
    assert started("a") != a


@pytest.mark.parametrize("reason", REASONS)
def test_S21_transient_child_is_restarted_only_after_an_abnormal_exit(
    sups: Any, reason: Any
) -> None:
    sup = sups.start([worker("a", restart="transient")])
    a = started("a")
    ref = legion.monitor(a)
    legion.call(a, ("die", reason))
    wait_down(ref)
    if reason == "abnormal":
        assert started("a") != a
    else:
        assert pids(sup) == {"a": None}
        assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "started")


@pytest.mark.parametrize("reason", REASONS)
def test_S22_temporary_child_is_never_restarted_and_its_spec_goes(sups: Any, reason: Any) -> None:
    sup = sups.start([worker("a", restart="temporary")])
    a = started("a")
    ref = legion.monitor(a)
    legion.call(a, ("die", reason))
    wait_down(ref)
    assert S.which_children(sup) == []


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_S23_temporary_bystander_is_not_restarted_and_uses_no_intensity(
    sups: Any, strategy: str
) -> None:
    sup = sups.start(
        [worker("a"), worker("t", restart="temporary")], strategy=strategy, max_restarts=1
    )
    a, _ = started("a"), started("t")
    legion.exit(a, "kill")
    started("a")
    assert list(pids(sup)) == ["a"]
    a = pids(sup)["a"]
    # Had the bystander counted, the first kill would already have exceeded max_restarts=1;
    # this second restart is the one that does.
    legion.exit(a, "kill")
    assert wait_exit(sup).reason == "shutdown"


def test_S24_failing_child_start_fails_start_link_with_failed_to_start_child() -> None:
    with pytest.raises(legion.InitError) as info:
        legion.start_link(
            legion.Supervisor,
            legion.SupervisorSpec(children=[worker("a", trap=True), worker("b", fail="raise")]),
        )
    reason = info.value.reason
    assert reason[0] == "shutdown" and reason[1][:2] == ("failed_to_start_child", "b")
    assert terminated()[::2] == ("a", "shutdown")  # the started sibling was stopped
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


# -- intensity ------------------------------------------------------------------------------------


def test_S25_restarts_spaced_beyond_the_period_never_add_up(sups: Any) -> None:
    sups.start([worker("a")], max_restarts=1, max_seconds=0.3)
    a = started("a")
    for _ in range(3):
        time.sleep(0.35)  # the period itself is what is under test
        legion.exit(a, "kill")
        a = started("a")
    assert legion.call(a, ("echo", "alive")) == "alive"


@pytest.mark.parametrize("strategy", ["one_for_one", "one_for_all", "rest_for_one"])
def test_S26_one_restart_too_many_stops_the_supervisor_with_shutdown(
    sups: Any, strategy: str
) -> None:
    sup = sups.start([worker("a"), worker("b")], strategy=strategy, max_restarts=2)
    b = started("b")
    for _ in range(2):
        legion.exit(b, "kill")
        b = started("b")
    refs = [legion.monitor(p) for p in pids(sup).values()]
    legion.exit(b, "kill")
    assert wait_exit(sup).reason == "shutdown"
    for ref in refs:
        wait_down(ref)


def test_S27_a_child_whose_restart_keeps_failing_escalates(sups: Any, switch: str) -> None:
    sup = sups.start([worker("a"), worker("b", fail_if=switch)], max_restarts=3)
    a_ref = legion.monitor(pids(sup)["a"])
    legion.register(switch)
    legion.exit(pids(sup)["b"], "kill")
    assert wait_exit(sup).reason == "shutdown"
    assert wait_down(a_ref).reason == "shutdown"


# -- strategies -----------------------------------------------------------------------------------


def test_S28_one_for_one_restarts_only_the_dead_child(sups: Any) -> None:
    sup = sups.start([worker("a"), worker("b"), worker("c")])
    before = {tag: started(tag) for tag in "abc"}
    kill_and_wait(before["b"])
    after_b = started("b")
    after = pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] == after_b != before["b"]


def test_S29_one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order(
    sups: Any,
) -> None:
    sup = sups.start([worker(t, trap=True) for t in "abc"], strategy="one_for_all")
    before = dict(next_started() for _ in range(3))
    legion.exit(before["b"], "kill")
    assert [terminated()[0] for _ in range(2)] == ["c", "a"]
    again = [next_started() for _ in range(3)]
    assert [tag for tag, _ in again] == ["a", "b", "c"]
    after = pids(sup)
    assert after == dict(again)
    assert not set(after.values()) & set(before.values())


def test_S30_S34_rest_for_one_stops_later_children_in_reverse_and_restarts_in_order(
    sups: Any,
) -> None:
    sup = sups.start([worker(t, trap=True) for t in "abcd"], strategy="rest_for_one")
    first = [next_started() for _ in range(4)]
    assert [tag for tag, _ in first] == ["a", "b", "c", "d"]  # started in list order
    legion.exit(first[1][1], "kill")
    assert [terminated()[0] for _ in range(2)] == ["d", "c"]  # later ones stop in reverse
    again = [next_started() for _ in range(3)]
    assert [tag for tag, _ in again] == ["b", "c", "d"]  # and restart in order
    assert pids(sup) == {"a": first[0][1], **dict(again)}
    legion.stop(sup, "shutdown")
    assert [terminated()[0] for _ in range(4)] == ["d", "c", "b", "a"]


def test_S31_group_restart_with_a_failing_later_child_is_retried(sups: Any, switch: str) -> None:
    sup = sups.start(
        [worker("a", trap=True), worker("b", fail_if=switch)],
        strategy="one_for_all",
        max_restarts=10,
    )
    a, b = started("a"), started("b")
    legion.register(switch)
    legion.exit(b, "kill")
    assert terminated()[:2] == ("a", a)
    a2 = started("a")  # restarted in the round, then stopped when b fails to start
    assert terminated()[:2] == ("a", a2)
    assert S.which_children(sup)[1].pid == "restarting"
    legion.unregister(switch)
    started("a"), started("b")
    assert all(isinstance(p, legion.Pid) for p in pids(sup).values())


def test_S35_a_child_that_unlinked_itself_is_still_stopped(sups: Any) -> None:
    sup = sups.start([worker("a")])
    a = pids(sup)["a"]
    assert legion.call(a, ("unlink_parent",)) == "ok"
    ref = legion.monitor(a)
    S.terminate_child(sup, "a")
    assert wait_down(ref).reason == "shutdown"


def test_S36_nested_tree_restart_restores_only_the_init_children(sups: Any) -> None:
    inner_spec = {"children": [worker("x")]}
    top = sups.start([legion.child_spec(Sup, inner_spec, id="inner")])
    inner = pids(top)["inner"]
    assert S.count_children(top)["supervisors"] == 1
    started("x")
    S.start_child(inner, worker("y"))
    started("y")
    kill_and_wait(inner)
    started("x")
    new_inner = pids(top)["inner"]
    assert new_inner != inner
    assert list(pids(new_inner)) == ["x"]


def test_S37_count_children_counts_a_restarting_child_as_a_spec_not_active(
    sups: Any, switch: str
) -> None:
    sup = sups.start([worker("a"), worker("b", fail_if=switch)], max_restarts=100)
    legion.register(switch)
    legion.exit(pids(sup)["b"], "kill")
    until(lambda: pids(sup)["b"] == "restarting")
    assert S.count_children(sup) == {"specs": 2, "active": 1, "supervisors": 0, "workers": 2}


def test_S40_restarting_child_admin_results(sups: Any, switch: str) -> None:
    sup = sups.start([worker("a", fail_if=switch)], max_restarts=1000, max_seconds=60)
    legion.register(switch)
    legion.exit(pids(sup)["a"], "kill")
    until(lambda: pids(sup)["a"] == "restarting")
    with pytest.raises(legion.AlreadyPresent):
        S.start_child(sup, worker("a"))
    with pytest.raises(legion.ChildRestarting):
        S.restart_child(sup, "a")
    with pytest.raises(legion.ChildRestarting):
        S.delete_child(sup, "a")
    S.terminate_child(sup, "a")
    assert pids(sup) == {"a": None}
    ref = legion.monitor(sup)
    legion.stop(sup, "shutdown")
    assert wait_down(ref).reason == "shutdown"


def test_S41_a_child_whose_name_is_taken_gives_already_started(sups: Any) -> None:
    sup = sups.start()
    legion.register("taken-name")
    try:
        with pytest.raises(legion.AlreadyStarted) as info:
            S.start_child(sup, worker("a", name="taken-name"))
        assert info.value.pid == legion.self()
    finally:
        legion.unregister("taken-name")


def test_S42_a_named_child_registers_again_after_restart(sups: Any) -> None:
    sups.start([worker("a", name="sup-named-a")])
    a = started("a")
    assert legion.whereis("sup-named-a") == a
    legion.exit(a, "kill")
    a2 = started("a")
    assert legion.whereis("sup-named-a") == a2 != a
    assert legion.call("sup-named-a", ("echo", 1)) == 1


def test_S50_which_children_shape(sups: Any) -> None:
    sup = sups.start([worker("a"), legion.child_spec(Sup, {}, id="s")])
    rows = S.which_children(sup)
    assert [(r.id, r.type, r.modules) for r in rows] == [
        ("a", "worker", ["workers"]),
        ("s", "supervisor", ["workers"]),
    ]
    assert all(isinstance(r.pid, legion.Pid) for r in rows)


def test_a_supervisor_is_an_ordinary_process_for_links_monitors_names_and_calls(
    sups: Any,
) -> None:
    sup = sups.start([worker("a")])
    legion.register("a-supervisor", sup)
    assert legion.whereis("a-supervisor") == sup
    assert list(pids("a-supervisor")) == ["a"]  # type: ignore[arg-type]
    a = pids(sup)["a"]
    ref = legion.monitor(a)
    kill_and_wait(sup)
    assert wait_down(ref).reason == "killed"  # its children die with it
    assert legion.whereis("a-supervisor") is None


def test_S49_code_change_reruns_init_updates_flags_and_specs_adds_without_starting(
    sups: Any, tmp_path: Any
) -> None:
    import json

    from workers import FileSup

    path = tmp_path / "sup.json"
    path.write_text(json.dumps({"children": [["a", "permanent"]]}))
    sup = sups.start(cls=FileSup, arg=str(path))
    a = pids(sup)["a"]
    path.write_text(
        json.dumps(
            {
                "children": [["a", "transient"], ["b", "permanent"]],
                "flags": {"strategy": "one_for_all", "max_restarts": 0},
            }
        )
    )
    assert legion.code_change(sup) == 2  # the supervisor's vsn
    assert pids(sup) == {"a": a, "b": None}  # the new spec is added but not started
    assert S.get_childspec(sup, "a").restart == "transient"  # the changed spec is updated
    path.write_text(json.dumps({"children": [], "flags": {"max_restarts": 0}}))
    legion.code_change(sup)
    assert list(pids(sup)) == ["a", "b"]  # removed specs are kept
    path.write_text(json.dumps("garbage"))
    with pytest.raises(legion.UpgradeError):
        legion.code_change(sup)
    with pytest.raises(legion.UpgradeError, match="reload"):
        legion.code_change(sup, reload=True)
    ref = legion.monitor(a)
    legion.exit(a, "kill")  # max_restarts is 0 now: the first restart is one too many
    wait_down(ref)
    assert wait_exit(sup).reason == "shutdown"


@pytest.mark.parametrize("upgrade_to_significant", [True, False])
def test_S49_an_upgrade_changes_significance_and_auto_shutdown(
    sups: Any, tmp_path: Any, upgrade_to_significant: bool
) -> None:
    """significant_upgrade_*: after code_change, a child's normal exit shuts the supervisor down
    exactly when the new spec makes it significant under auto_shutdown=any_significant."""
    import json

    from workers import FileSup

    path = tmp_path / "sup.json"

    def write(significant: bool, auto_shutdown: str) -> None:
        flags = {"auto_shutdown": auto_shutdown}
        children = [["a", "transient", significant], ["b", "permanent"]]
        path.write_text(json.dumps({"children": children, "flags": flags}))

    if upgrade_to_significant:
        write(False, "never")
    else:
        write(True, "any_significant")
    sup = sups.start(cls=FileSup, arg=str(path))
    if upgrade_to_significant:
        write(True, "any_significant")
    else:
        write(False, "never")
    legion.code_change(sup)
    assert S.get_childspec(sup, "a").significant is upgrade_to_significant
    ref = legion.monitor(pids(sup)["a"])
    legion.call(pids(sup)["a"], ("die", "normal"))
    wait_down(ref)
    if upgrade_to_significant:
        assert wait_exit(sup).reason == "shutdown"
    else:
        assert S.count_children(sup)["specs"] == 2  # still running; a stays, not restarted
        assert nothing_pending(lambda m: isinstance(m, legion.Exit) and m.pid == sup)

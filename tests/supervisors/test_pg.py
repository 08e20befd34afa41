"""Process groups (research §3.5: P1-P6, P13-P15), in the default scope and named scopes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sup_helpers import kill_and_wait, nothing_pending, wait_down
from workers import Worker, pg_member

import legion
from legion import pg


@pytest.fixture
def scope() -> Iterator[str]:
    name = "test-scope"
    pid = pg.start(name)
    assert pid is not None
    yield name
    legion.stop(pid, "shutdown")


@pytest.fixture
def procs() -> Iterator[list[legion.Pid]]:
    started: list[legion.Pid] = []
    yield started
    kill_and_wait(*started)


def _spawn(procs: list[legion.Pid], n: int = 1) -> list[legion.Pid]:
    new = []
    for _ in range(n):
        pid = legion.start(Worker)
        assert pid is not None
        new.append(pid)
    procs.extend(new)
    return new


def test_P1_join_leave_and_views_in_the_default_scope(procs: list[legion.Pid]) -> None:
    a, b = _spawn(procs, 2)
    pg.join("p1", a)
    pg.join(("p1", "tuple"), [a, b])
    assert pg.get_members("p1") == [a]
    assert pg.get_local_members(("p1", "tuple")) == [a, b]
    assert {"p1", ("p1", "tuple")} <= set(pg.which_groups())
    assert set(pg.which_local_groups()) == set(pg.which_groups())
    assert pg.leave("p1", a) == "ok"
    assert "p1" not in pg.which_groups()  # a group exists only while it has members
    assert pg.leave(("p1", "tuple"), [a, b]) == "ok"
    assert pg.get_members(("p1", "tuple")) == []


def test_P2_duplicates_not_joined_and_dead_members_leave(
    scope: str, procs: list[legion.Pid]
) -> None:
    a, b = _spawn(procs, 2)
    pg.join("g", [a, a, b], scope=scope)
    pg.join("g", a, scope=scope)
    assert pg.get_members("g", scope=scope) == [a, a, b, a]
    assert pg.leave("g", [a, a], scope=scope) == "ok"
    assert pg.get_members("g", scope=scope) == [b, a]
    assert pg.leave("other", a, scope=scope) == "not_joined"
    pg.join("h", b, scope=scope)
    kill_and_wait(b)
    assert pg.get_members("g", scope=scope) == [a]
    assert "h" not in pg.which_groups(scope=scope)


def test_P3_a_leave_racing_with_the_members_exit_does_not_crash_the_scope(
    scope: str, procs: list[legion.Pid]
) -> None:
    (a,) = _spawn(procs, 1)
    pg.join("g", a, scope=scope)
    legion.exit(a, "kill")
    assert pg.leave("g", a, scope=scope) in ("ok", "not_joined")
    assert pg.get_members("g", scope=scope) == []


def test_P4_non_local_and_non_pid_members_are_rejected(scope: str) -> None:
    with pytest.raises(pg.NotLocal):
        pg.join("g", legion.Pid("elsewhere", 1), scope=scope)
    with pytest.raises(TypeError, match=r"legion\.Pid"):
        pg.join("g", "not-a-pid", scope=scope)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pg.join(["unhashable"], legion.self(), scope=scope)


def test_P5_a_scope_that_is_not_running_is_noproc() -> None:
    with pytest.raises(legion.NoProc):
        pg.join("g", legion.self(), scope="no-such-scope")
    with pytest.raises(legion.NoProc):
        pg.leave("g", legion.self(), scope="no-such-scope")


def test_P6_garbage_requests_to_a_scope_are_rejected_loudly(scope: str) -> None:
    answer = legion.call(scope, "garbage")
    assert answer[:2] == ["error", "bad_request"]
    answer = legion.call(scope, ["$pg", "join", "g", ["nope"]])
    assert answer[:2] == ["error", "bad_request"]
    assert pg.which_groups(scope=scope) == []


def test_P13_monitor_returns_current_members_and_monitor_scope_the_full_map(
    scope: str, procs: list[legion.Pid]
) -> None:
    a, b = _spawn(procs, 2)
    pg.join("g", [a, b], scope=scope)
    pg.join(("t", 1), a, scope=scope)
    ref, members = pg.monitor("g", scope=scope)
    assert members == [a, b]
    sref, groups = pg.monitor_scope(scope=scope)
    assert groups == {"g": [a, b], ("t", 1): [a]}
    assert pg.demonitor(ref, scope=scope) and pg.demonitor(sref, scope=scope)


def _change(ref: legion.Ref) -> legion.GroupChange:
    msg: legion.GroupChange = legion.receive(
        timeout=10, match=lambda m: isinstance(m, legion.GroupChange) and m.ref == ref
    )
    return msg


def test_P14_join_and_leave_notices_arrive_in_order_until_demonitor(
    scope: str, procs: list[legion.Pid]
) -> None:
    a, b = _spawn(procs, 2)
    ref, members = pg.monitor("g", scope=scope)
    sref, _ = pg.monitor_scope(scope=scope)
    assert members == []
    pg.join("g", [a, b], scope=scope)
    pg.join("other", a, scope=scope)
    pg.leave("g", a, scope=scope)
    kill_and_wait(b)
    seen = [(m.kind, m.group, m.pids) for m in (_change(ref) for _ in range(3))]
    assert seen == [("join", "g", [a, b]), ("leave", "g", [a]), ("leave", "g", [b])]
    scope_seen = [(m.kind, m.group) for m in (_change(sref) for _ in range(4))]
    assert scope_seen == [("join", "g"), ("join", "other"), ("leave", "g"), ("leave", "g")]
    assert pg.demonitor(ref, scope=scope) is True
    assert pg.demonitor(ref, scope=scope) is False
    pg.join("g", a, scope=scope)
    assert nothing_pending(lambda m: isinstance(m, legion.GroupChange) and m.ref == ref)


def test_P15_dead_monitoring_members_are_cleaned_up(scope: str) -> None:
    me = legion.self()
    pid = legion.spawn(pg_member, {"groups": ["g"], "monitor": "g", "scope": scope, "owner": me})
    legion.receive(timeout=10, match=lambda m: m == ["joined", pid])
    ref, members = pg.monitor("g", scope=scope)
    assert members == [pid]
    down = legion.monitor(pid)
    legion.send(pid, "stop")
    wait_down(down)
    assert _change(ref).pids == [pid]
    assert pg.get_members("g", scope=scope) == []
    assert pg.which_groups(scope=scope) == []


def test_pg_async_twins(scope: str, procs: list[legion.Pid]) -> None:
    import trio

    (a,) = _spawn(procs, 1)

    async def main() -> Any:
        await pg.ajoin("g", a, scope=scope)
        members = await pg.aget_members("g", scope=scope)
        ref, _ = await pg.amonitor("g", scope=scope)
        left = await pg.aleave("g", a, scope=scope)
        return members, await pg.ademonitor(ref, scope=scope), left

    assert trio.run(main) == ([a], True, "ok")

"""`legion.pg.call`: a pool's front door. It calls a live member, calls another member once when
the first was gone before the request reached it, and never sends a delivered request twice.
A clean shutdown of a pool is quiet."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pool_workers import LaggingScope, Member
from sup_helpers import kill_and_wait, nothing_pending

import legion
from legion import pg

HERE = Path(__file__).resolve().parent


@pytest.fixture
def members() -> Iterator[list[legion.Pid]]:
    started: list[legion.Pid] = []
    yield started
    kill_and_wait(*[pid for pid in started if pid is not None])


def start_members(members: list[legion.Pid], group: Any, n: int) -> list[legion.Pid]:
    new = [legion.start(Member, {"owner": legion.self(), "group": group}) for _ in range(n)]
    members.extend(new)
    return new


def dead_pid() -> legion.Pid:
    pid = legion.start(Member, {"owner": legion.self(), "group": "graveyard"})
    kill_and_wait(pid)
    return pid


def got(timeout: float = 10) -> tuple[legion.Pid, Any]:
    msg = legion.receive(timeout=timeout, match=lambda m: isinstance(m, list) and m[0] == "got")
    return msg[1], msg[2]


def lagging_scope(name: str, views: list[list[legion.Pid]]) -> legion.Pid:
    return legion.start(LaggingScope, views, name=name)


def test_pg_call_answers_from_a_member_of_the_group(members: list[legion.Pid]) -> None:
    group = ("pool", "answers")
    pool = start_members(members, group, 3)
    seen = set()
    for n in range(12):
        who, value = pg.call(group, ("echo", n))
        assert value == n and who in pool
        assert got() == (who, n)  # delivered once, to that member
        seen.add(who)
    assert len(seen) >= 2  # members are picked at random, not always the first
    assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "got")


def test_pg_call_retries_on_another_member_when_the_first_was_never_reached(
    members: list[legion.Pid],
) -> None:
    (live,) = start_members(members, "unused", 1)
    dead = dead_pid()
    scope = lagging_scope("lagging-1", [[dead], [dead, live]])
    try:
        assert pg.call("g", ("echo", 1), scope="lagging-1") == [live, 1]
        assert got() == (live, 1)
        assert legion.call(scope, "reads") == 2  # the second member came from a fresh read
    finally:
        kill_and_wait(scope)


def test_pg_call_retries_only_once(members: list[legion.Pid]) -> None:
    first, second = dead_pid(), dead_pid()
    (live,) = start_members(members, "unused", 1)
    scope = lagging_scope("lagging-2", [[first], [first, second], [live]])
    try:
        with pytest.raises(legion.NoProc) as gone:
            pg.call("g", ("echo", 1), scope="lagging-2")
        assert gone.value.dest == second
        assert legion.call(scope, "reads") == 2
        assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "got")
    finally:
        kill_and_wait(scope)


@pytest.mark.parametrize("reason", ["boom", "noproc"])
def test_pg_call_never_resends_a_request_the_member_received(
    members: list[legion.Pid], reason: str
) -> None:
    """Even a member that exits with reason "noproc" (a call of its own failed) had the
    request: only the node's own "never delivered" answer is a `NoProc`."""
    group = ("pool", "once", reason)
    pool = start_members(members, group, 2)
    with pytest.raises(legion.ProcessExit) as exited:
        pg.call(group, ("die", reason))
    assert exited.value.reason == reason and not isinstance(exited.value, legion.NoProc)
    victim, value = got()
    assert value == reason and victim in pool
    (survivor,) = [pid for pid in pool if pid != victim]
    assert legion.call(survivor, ("echo", "barrier")) == [survivor, "barrier"]
    assert got() == (survivor, "barrier")  # anything it got before the barrier came first
    assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "got")


def test_pg_call_through_a_pool_while_a_member_is_replaced() -> None:
    group = ("pool", "replaced")
    sup = legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec())
    try:
        arg = {"owner": legion.self(), "group": group}
        for i in range(3):
            legion.DynamicSupervisor.start_child(sup, legion.child_spec(Member, arg, id=i))
        ref, before = pg.monitor(group)
        kill_and_wait(before[0])
        for n in range(20):  # the group may list the dead member for a moment: never seen here
            who, value = pg.call(group, ("echo", n))
            assert value == n and who != before[0]
            assert got() == (who, n)
        changes = [legion.receive(timeout=10, match=lambda m: isinstance(m, legion.GroupChange))]
        changes.append(
            legion.receive(timeout=10, match=lambda m: isinstance(m, legion.GroupChange))
        )
        assert [c.kind for c in changes] == ["leave", "join"]
        pg.demonitor(ref)
    finally:
        legion.stop(sup, "shutdown")


def test_a_member_calling_its_own_group_reaches_another_member(
    members: list[legion.Pid],
) -> None:
    group = ("pool", "relay")
    (alone,) = start_members(members, group, 1)
    assert legion.call(alone, ("relay", 0)) == "empty"  # never itself: that would deadlock
    (other,) = start_members(members, group, 1)
    for n in range(1, 6):
        assert legion.call(alone, ("relay", n)) == [other, n]


def test_pg_call_of_an_empty_group_names_the_group() -> None:
    with pytest.raises(pg.EmptyGroup, match=r"'nobody-here'.*no member to call") as empty:
        pg.call("nobody-here", "hi")
    assert isinstance(empty.value, legion.NoProc)


def test_pg_call_timeout_bounds_the_call(members: list[legion.Pid]) -> None:
    group = ("pool", "hangs")
    start_members(members, group, 1)
    with pytest.raises(legion.CallTimeout):
        pg.call(group, ("hang", 1), timeout=0.2)
    got()
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError, match=r"legion\.pg\.call: timeout must be None"):
            pg.call(group, ("echo", 1), timeout=bad)
    assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "got")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_pg_acall_retries_like_call(anyio_backend: str, members: list[legion.Pid]) -> None:
    (live,) = start_members(members, "unused", 1)
    dead = dead_pid()
    name = f"lagging-{anyio_backend}"
    scope = lagging_scope(name, [[dead], [dead, live]])
    try:
        assert await pg.acall("g", ("echo", 2), scope=name) == [live, 2]
        assert got() == (live, 2)
        assert legion.call(scope, "reads") == 2
    finally:
        kill_and_wait(scope)


def test_a_pool_that_exits_while_a_worker_restarts_shuts_down_quietly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(HERE / "quiet_shutdown_app.py"), str(tmp_path / "marker")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    assert "exiting while a worker restarts" in done.stdout
    assert "Traceback" not in done.stderr and "Error" not in done.stderr, done.stderr

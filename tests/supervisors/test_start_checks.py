"""Mistakes a new user makes are refused at the call, with a message that says what to do:
starting a class that cannot run as a process, and timeouts that are not a number of seconds
(NaN, negative, a string) anywhere the public API takes one."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pool_workers import Member, NotAServer, QuietAgent, quick, receive_once
from sup_helpers import kill_and_wait

import legion
from legion import pg

STARTS: list[tuple[str, Callable[[Any], Any]]] = [
    ("legion.spawn", lambda target: legion.spawn(target)),
    ("legion.start", lambda target: legion.start(target)),
    ("legion.start_link", lambda target: legion.start_link(target)),
    ("legion.child_spec", lambda target: legion.child_spec(target)),
]
ASTARTS: list[tuple[str, Callable[[Any], Awaitable[Any]]]] = [
    ("legion.aspawn", lambda target: legion.aspawn(target)),
    ("legion.astart", lambda target: legion.astart(target)),
    ("legion.astart_link", lambda target: legion.astart_link(target)),
]


@pytest.mark.parametrize(("name", "start"), STARTS, ids=[n for n, _ in STARTS])
def test_a_class_that_is_not_a_server_is_a_type_error_at_the_call(
    name: str, start: Callable[[Any], Any]
) -> None:
    with pytest.raises(TypeError, match=rf"{name}: NotAServer is not a legion\.Server subclass"):
        start(NotAServer)
    with pytest.raises(TypeError, match=rf"{name}: cannot run 42 as a process"):
        start(42)


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "start"), ASTARTS, ids=[n for n, _ in ASTARTS])
async def test_the_awaitable_starts_refuse_the_same(
    name: str, start: Callable[[Any], Awaitable[Any]]
) -> None:
    with pytest.raises(TypeError, match=rf"{name}: NotAServer is not a legion\.Server subclass"):
        await start(NotAServer)


def test_functions_servers_and_supervisors_still_start() -> None:
    pid, ref = legion.spawn(quick, monitor=True)
    assert legion.receive(timeout=10, match=lambda m: m == legion.Down(ref, pid, "normal"))
    assert legion.child_spec(quick).qualname == "quick"
    server = legion.start(Member, {"owner": legion.self(), "group": "checks"})
    sup = legion.start_link(legion.DynamicSupervisor, None)
    kill_and_wait(server, sup)


def test_an_agent_starts_with_start_or_its_own_child_spec() -> None:
    with pytest.raises(TypeError, match=r"QuietAgent is a legion\.Agent.*legion\.start_link"):
        legion.spawn(QuietAgent)
    with pytest.raises(TypeError, match=r"QuietAgent is a legion\.Agent.*QuietAgent\.child_spec"):
        legion.child_spec(QuietAgent, "a task")
    assert QuietAgent.child_spec().qualname == "QuietAgent"
    pid = legion.start(QuietAgent)  # unlinked, configured like start_link's
    assert pid is not None
    legion.stop(pid)


def _member() -> legion.Pid:
    pid = legion.start(Member, {"owner": legion.self(), "group": "timeouts"})
    return pid


TIMEOUTS: list[tuple[str, Callable[[legion.Pid, Any], Any]]] = [
    ("legion.call", lambda pid, t: legion.call(pid, ("echo", 1), t)),
    ("legion.receive", lambda pid, t: legion.receive(timeout=t)),
    ("legion.stop", lambda pid, t: legion.stop(pid, timeout=t)),
    ("legion.start", lambda pid, t: legion.start(Member, None, timeout=t)),
    ("legion.start_link", lambda pid, t: legion.start_link(Member, None, timeout=t)),
    ("legion.code_change", lambda pid, t: legion.code_change(pid, timeout=t)),
    ("legion.shutdown", lambda pid, t: legion.shutdown(t)),
    ("legion.pg.call", lambda pid, t: pg.call("timeouts", ("echo", 1), t)),
    ("Supervisor.count_children", lambda pid, t: legion.Supervisor.count_children(pid, timeout=t)),
]
ATIMEOUTS: list[tuple[str, Callable[[legion.Pid, Any], Awaitable[Any]]]] = [
    ("legion.acall", lambda pid, t: legion.acall(pid, ("echo", 1), t)),
    ("legion.areceive", lambda pid, t: legion.areceive(timeout=t)),
    ("legion.astop", lambda pid, t: legion.astop(pid, timeout=t)),
    ("legion.astart", lambda pid, t: legion.astart(Member, None, timeout=t)),
    ("legion.acode_change", lambda pid, t: legion.acode_change(pid, timeout=t)),
    ("legion.pg.acall", lambda pid, t: pg.acall("timeouts", ("echo", 1), t)),
]
BAD = [(math.nan, ValueError), (-1, ValueError), (-math.inf, ValueError), ("5", TypeError)]


@pytest.mark.parametrize(("name", "use"), TIMEOUTS, ids=[n for n, _ in TIMEOUTS])
def test_a_bad_timeout_is_refused_with_the_rule(
    name: str, use: Callable[[legion.Pid, Any], Any]
) -> None:
    pid = _member()
    try:
        for bad, error in BAD:
            with pytest.raises(error, match=rf"^{re_name(name)}: timeout must be None"):
                use(pid, bad)
        assert legion.call(pid, ("echo", "alive"), math.inf)[1] == "alive"  # nothing was lost
    finally:
        kill_and_wait(pid)


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "use"), ATIMEOUTS, ids=[n for n, _ in ATIMEOUTS])
async def test_a_bad_timeout_is_refused_by_the_awaitables_too(
    name: str, use: Callable[[legion.Pid, Any], Awaitable[Any]]
) -> None:
    pid = _member()
    try:
        for bad, error in BAD:
            with pytest.raises(error, match=rf"^{re_name(name)}: timeout must be None"):
                await use(pid, bad)
    finally:
        kill_and_wait(pid)


def test_zero_and_infinite_timeouts_mean_at_once_and_forever() -> None:
    with pytest.raises(TimeoutError):
        legion.receive(timeout=0)
    pid = _member()
    try:
        assert legion.call(pid, ("echo", 3), timeout=math.inf) == [pid, 3]
        assert legion.receive(timeout=math.inf, match=lambda m: m[0] == "got") == ["got", pid, 3]
    finally:
        kill_and_wait(pid)


@pytest.mark.parametrize("long", [1e7, 1e12, 10**400], ids=["115 days", "31,000 years", "10**400"])
def test_a_very_long_timeout_waits_like_any_other(long: float) -> None:
    """Past what one poll() can wait (24.8 days) or the OS at all (threading.TIMEOUT_MAX):
    the application and a process both wait, in slices or for ever."""
    pid = _member()
    try:
        assert legion.call(pid, ("echo", 4), timeout=long) == [pid, 4]
    finally:
        kill_and_wait(pid)
    waiter = legion.spawn(receive_once, legion.self())
    legion.receive(timeout=10, match=lambda m: m == ["waiting"])
    legion.send(waiter, "hi")
    assert legion.receive(timeout=10, match=lambda m: m[0] == "received") == ["received", "hi"]


def re_name(name: str) -> str:
    import re

    return re.escape(name)

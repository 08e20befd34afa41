"""The Server behaviour: checklist G1-G11 of research/otp-runtime.md §3.3."""

from __future__ import annotations

import inspect
import time

import pytest
import trio
from helpers import kill_and_wait, nothing_pending, probe, wait_down
from procs import AsyncProbe, Probe, Slow

import legion

pytestmark = pytest.mark.anyio


def _from(pid: legion.Pid, kind: str) -> list:  # type: ignore[type-arg]
    msg: list = legion.receive(  # type: ignore[type-arg]
        timeout=10, match=lambda m: isinstance(m, list) and m[0] == kind and m[1] == pid
    )
    return msg


def test_G1_start_link_returns_after_init() -> None:
    pid = legion.start_link(Probe, {"owner": legion.self(), "continue": "first"})
    assert pid is not None
    # init's Continue ran before start_link returned? No: only init did; continue runs next.
    assert legion.call(pid, ("seen",)) == [["continue", "first"]]
    kill_and_wait(pid)


def test_G1_init_raising_is_raised_to_the_caller_with_its_traceback() -> None:
    with pytest.raises(legion.InitError) as failed:
        legion.start_link(Probe, {"fail": "raise"})
    reason = failed.value.reason
    assert isinstance(reason, legion.Crash) and reason.type == "ValueError"
    assert "init failed on purpose" in str(failed.value)
    assert "procs.py" in str(failed.value)  # the process's traceback
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))  # no stray exit signal


def test_G1_init_returning_stop_fails_the_start_with_that_reason() -> None:
    with pytest.raises(legion.InitError) as failed:
        legion.start_link(Probe, {"fail": "stop"})
    assert failed.value.reason == ("shutdown", "no thanks")
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


def test_G1_init_returning_ignore_gives_none_and_ends_normally() -> None:
    assert legion.start_link(Probe, {"fail": "ignore"}) is None
    assert nothing_pending(lambda m: isinstance(m, legion.Exit))


def test_G2_call_times_out_after_five_seconds_by_default_and_drops_late_replies() -> None:
    assert inspect.signature(legion.call).parameters["timeout"].default == 5.0
    pid = legion.start(Slow)
    assert pid is not None
    started = time.monotonic()
    with pytest.raises(legion.CallTimeout):
        legion.call(pid, ("sleep", 0.5), timeout=0.1)
    assert time.monotonic() - started < 0.45
    assert legion.call(pid, ("echo",)) == ["echo"]  # served after the slow one replied late
    assert nothing_pending()  # the late reply was dropped, not delivered
    kill_and_wait(pid)


async def test_G3_a_callee_dying_mid_call_fails_the_call_at_once() -> None:
    pid = await legion.astart(Slow)
    assert pid is not None
    failure: list[BaseException] = []

    async def caller() -> None:
        try:
            await legion.acall(pid, ("sleep", 30, legion.self()), timeout=20)
        except legion.ProcessExit as exc:
            failure.append(exc)

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        assert await legion.areceive(timeout=10, match=lambda m: m == "sleeping") == "sleeping"
        legion.exit(pid, "kill")
    assert time.monotonic() - started < 5
    assert isinstance(failure[0], legion.ProcessExit) and failure[0].reason == "killed"


def test_G3_a_callee_raising_fails_the_caller_with_its_reason() -> None:
    pid = legion.start(Slow)
    assert pid is not None
    with pytest.raises(legion.ProcessExit) as failed:
        legion.call(pid, ("die", "custom-reason"))
    assert failed.value.reason == "custom-reason"


async def test_G4_noreply_then_reply_from_another_process_completes_the_call() -> None:
    server, helper = probe(), probe()
    result: list[object] = []

    async def caller() -> None:
        result.append(await legion.acall(server, ("noreply",), timeout=10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        pending = await legion.areceive(timeout=10, match=lambda m: m[0] == "pending")
        from_ = pending[1]
        assert isinstance(from_, legion.From)
        assert await legion.acall(helper, ("reply", from_, 42)) == "ok"
    assert result == [42]
    kill_and_wait(server, helper)


def test_G5_stop_with_reply_replies_then_terminates_then_exits() -> None:
    pid = probe()
    ref = legion.monitor(pid)
    assert legion.call(pid, ("stop", "done", "the reply")) == "the reply"
    assert _from(pid, "terminate")[2] == "done"
    assert wait_down(ref).reason == "done"


def test_G6_a_callback_exception_runs_terminate_and_exits_with_it() -> None:
    pid = probe()
    ref = legion.monitor(pid)
    with pytest.raises(legion.ProcessExit) as failed:
        legion.call(pid, ("raise", "g6"))
    reason = _from(pid, "terminate")[2]
    assert isinstance(reason, legion.Crash) and reason.message == "g6"
    assert failed.value.reason == reason == wait_down(ref).reason


@pytest.mark.parametrize("trap", [True, False])
def test_G7_a_parent_exit_runs_terminate_only_when_trapping(trap: bool) -> None:
    parent = probe()
    child = legion.call(parent, ("start_link", {"owner": legion.self(), "trap": trap}))
    ref = legion.monitor(child)
    legion.exit(parent, "parent-gone")
    assert wait_down(ref).reason == "parent-gone"
    if trap:
        assert _from(child, "terminate")[2] == "parent-gone"
    else:
        assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "terminate")


def test_G8_handle_info_gets_exits_downs_timeouts_and_sends() -> None:
    pid = probe(trap=True)
    legion.send(pid, {"plain": "send"})
    assert _from(pid, "info")[2] == {"plain": "send"}
    other = probe()
    ref = legion.call(pid, ("monitor", other))
    legion.call(pid, ("link", other))
    kill_and_wait(other)
    seen = [_from(pid, "info")[2] for _ in range(2)]
    assert legion.Exit(other, "killed") in seen
    assert legion.Down(ref, other, "killed") in seen
    kill_and_wait(pid)


def test_G8_an_unexpected_message_is_logged_not_fatal() -> None:
    pid = legion.start(Slow)
    assert pid is not None
    legion.send(pid, "unexpected")
    assert legion.call(pid, ("still", "alive")) == ["still", "alive"]
    kill_and_wait(pid)


def test_G9_calling_yourself_is_refused() -> None:
    with pytest.raises(legion.CallingSelf):
        legion.call(legion.self(), "me")
    pid = probe()
    ref = legion.monitor(pid)
    with pytest.raises(legion.ProcessExit) as failed:
        legion.call(pid, ("callme",))
    assert failed.value.reason.type == "legion.supervisor.errors.CallingSelf"
    wait_down(ref)


def test_G11_continue_runs_before_the_next_message() -> None:
    pid = probe(**{"continue": "after-init"})
    assert _from_continued() == "after-init"
    legion.cast(pid, "continue")
    assert legion.call(pid, ("seen",)) == [["continue", "after-init"], ["continue", "from-cast"]]
    kill_and_wait(pid)


def _from_continued() -> object:
    return legion.receive(timeout=10, match=lambda m: m[0] == "continued")[1]


def test_G11_the_idle_timeout_delivers_timeout() -> None:
    pid = probe(idle=0.05)
    assert _from(pid, "info")[2] == "idle-timeout"
    kill_and_wait(pid)


async def test_async_callbacks_and_awaited_calls_between_servers() -> None:
    a = await legion.astart(AsyncProbe)
    b = await legion.astart(AsyncProbe)
    assert a is not None and b is not None
    assert await legion.acall(a, ("count",)) == 1
    assert await legion.acall(a, ("call", b, ("count",))) == 1
    assert await legion.acall(b, ("count",)) == 2
    await legion.astop(a)
    await legion.astop(b)


def test_stop_runs_terminate_and_waits_for_the_exit() -> None:
    pid = probe()
    legion.stop(pid, "bye")
    assert _from(pid, "terminate")[2] == "bye"
    with pytest.raises(legion.NoProc):
        legion.stop(pid)


def test_stop_times_out_on_a_process_that_does_not_end() -> None:
    pid = legion.start(Slow)
    assert pid is not None
    legion.cast(pid, "keeps it busy")  # handle_cast is missing: it crashes... then stop is noproc
    ref = legion.monitor(pid)
    wait_down(ref)
    busy = legion.start(Slow)
    assert busy is not None
    legion.send(busy, "x")
    with pytest.raises(legion.CallTimeout):
        legion.call(busy, ("sleep", 1.0), timeout=0.05)
    with pytest.raises(legion.CallTimeout):
        legion.stop(busy, timeout=0.05)
    kill_and_wait(busy)


def test_call_progress_lifts_an_extendable_timeout_only() -> None:
    from procs import Progressing

    from legion.supervisor import client

    pid = legion.start(Progressing)
    assert pid is not None
    endpoint = client.get()
    assert endpoint.call(pid, 0.3, 0.05, extendable=True) == "done"
    with pytest.raises(legion.CallTimeout):
        endpoint.call(pid, 0.3, 0.05)
    kill_and_wait(pid)

"""Links and exit signals: checklist L1-L12 of research/otp-runtime.md §3.1."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest
from helpers import kill_and_wait, nothing_pending, probe, wait_down, wait_exit
from procs import crash_at_once, hard_exit, idle, send_then_exit

import legion


def _info(pid: legion.Pid, match=lambda m: True):  # type: ignore[no-untyped-def]
    return legion.receive(
        timeout=10,
        match=lambda m: isinstance(m, list) and m[0] == "info" and m[1] == pid and match(m[2]),
    )


def test_L1_normal_exit_does_not_kill_a_non_trapping_partner() -> None:
    a = probe()
    b = legion.spawn(idle)
    assert legion.call(a, ("link", b)) == "ok"
    ref = legion.monitor(b)
    legion.send(b, "go")
    assert wait_down(ref).reason == "normal"
    assert legion.call(a, ("echo", 1)) == 1
    kill_and_wait(a)


def test_L1_normal_exit_reaches_a_trapping_partner_as_a_message() -> None:
    a = probe(trap=True)
    b = legion.spawn(idle)
    legion.call(a, ("link", b))
    legion.send(b, "go")
    assert _info(a)[2] == legion.Exit(b, "normal")
    kill_and_wait(a)


def test_L2_abnormal_exit_kills_partners_transitively_with_the_same_reason() -> None:
    a, b, c = probe(), probe(), probe()
    legion.call(a, ("link", b))
    legion.call(b, ("link", c))
    ref_a, ref_b = legion.monitor(a), legion.monitor(b)
    with pytest.raises(legion.ProcessExit) as failed:
        legion.call(c, ("raise", "chain"))
    reason = failed.value.reason
    assert isinstance(reason, legion.Crash) and reason.message == "chain"
    assert wait_down(ref_b).reason == reason
    assert wait_down(ref_a).reason == reason


def test_L3_kill_is_untrappable_and_seen_as_killed() -> None:
    victim = probe(trap=True)
    partner = probe(trap=True)
    legion.call(partner, ("link", victim))
    ref = legion.monitor(victim)
    legion.exit(victim, "kill")
    assert wait_down(ref).reason == "killed"
    assert _info(partner)[2] == legion.Exit(victim, "killed")
    assert legion.call(partner, ("echo", "alive")) == "alive"
    kill_and_wait(partner)


def test_L4_killed_propagates_to_non_trappers_and_is_trappable() -> None:
    victim, middle, end = probe(), probe(), probe(trap=True)
    legion.call(middle, ("link", victim))
    legion.call(end, ("link", middle))
    ref = legion.monitor(middle)
    legion.exit(victim, "kill")
    assert wait_down(ref).reason == "killed"
    assert _info(end)[2] == legion.Exit(middle, "killed")
    kill_and_wait(end)


def test_L5_exit_signal_without_a_link() -> None:
    p = probe()
    legion.exit(p, "normal")
    assert legion.call(p, ("echo", "still here")) == "still here"
    ref = legion.monitor(p)
    legion.exit(p, "custom")
    assert wait_down(ref).reason == "custom"


def test_L5_exit_self_normal_terminates_the_caller() -> None:
    p = probe()
    ref = legion.monitor(p)
    with contextlib.suppress(legion.ProcessExit):  # it may die before its reply leaves
        legion.call(p, ("exit", p, "normal"))
    assert wait_down(ref).reason == "normal"


def test_L5_a_trapping_process_receives_exit_signals_as_messages() -> None:
    p = probe(trap=True)
    legion.exit(p, "custom")
    assert _info(p)[2] == legion.Exit(legion.self(), "custom")
    kill_and_wait(p)


def test_L6_link_is_idempotent_and_unlink_removes_both_directions() -> None:
    a = probe(trap=True)
    b = probe()
    legion.call(a, ("link", b))
    legion.call(a, ("link", b))
    legion.call(a, ("unlink", b))
    ref = legion.monitor(b)
    with pytest.raises(legion.ProcessExit):
        legion.call(b, ("raise", "after unlink"))
    wait_down(ref)
    legion.call(a, ("echo", "barrier"))  # a handled everything the node sent it before
    assert nothing_pending(lambda m: isinstance(m, list) and m[0] == "info")
    kill_and_wait(a)


def test_L7_linking_to_a_dead_process() -> None:
    dead = legion.spawn(idle)
    kill_and_wait(dead)
    legion.link(dead)  # the application traps exits: a message, not an error
    assert wait_exit(dead).reason == "noproc"
    p = probe()
    ref = legion.monitor(p)
    with pytest.raises(legion.ProcessExit) as exited:  # delivered, so not NoProc
        legion.call(p, ("link", dead))
    assert exited.value.reason == "noproc" and not isinstance(exited.value, legion.NoProc)
    assert wait_down(ref).reason == "noproc"


def test_L8_spawn_link_is_atomic() -> None:
    pid = legion.spawn(crash_at_once, link=True)
    reason = wait_exit(pid).reason
    assert isinstance(reason, legion.Crash) and reason.type == "ValueError"


def test_L9_trap_exit_can_be_toggled_at_run_time() -> None:
    p = probe()
    assert legion.call(p, ("trap", True)) is False
    b = probe()
    legion.call(p, ("link", b))
    kill_and_wait(b)
    assert _info(p)[2] == legion.Exit(b, "killed")
    assert legion.call(p, ("trap", False)) is True
    c = probe()
    legion.call(p, ("link", c))
    ref = legion.monitor(p)
    legion.exit(c, "custom")
    assert wait_down(ref).reason == "custom"


def test_L10_messages_sent_before_death_arrive_before_the_exit_and_down() -> None:
    _pid, _ref = legion.spawn(send_then_exit, (legion.self(), 200, "bye"), link=True, monitor=True)
    received = [legion.receive(timeout=10) for _ in range(202)]
    assert received[:200] == list(range(200))
    assert set(map(type, received[200:])) == {legion.Exit, legion.Down}
    assert all(m.reason == "bye" for m in received[200:])


def test_L11_a_process_killed_by_the_os_is_reported_killed() -> None:
    p = probe()
    ref = legion.monitor(p)
    os.kill(legion.call(p, ("ospid",)), signal.SIGKILL)
    assert wait_down(ref).reason == "killed"


def test_L11_an_uncaught_exception_carries_type_and_traceback() -> None:
    _, ref = legion.spawn(crash_at_once, monitor=True)
    reason = wait_down(ref).reason
    assert isinstance(reason, legion.Crash)
    assert (reason.type, reason.message) == ("ValueError", "crashed at once")
    assert "crash_at_once" in reason.traceback and "Traceback" in reason.traceback


def test_L11_an_exit_status_without_a_reason_is_a_crash() -> None:
    _, ref = legion.spawn(hard_exit, 3, monitor=True)
    reason = wait_down(ref).reason
    assert isinstance(reason, legion.Crash) and "status 3" in reason.message

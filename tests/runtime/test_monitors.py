"""Monitors and registered names: checklist M1-M6 and R1-R3 of research/otp-runtime.md §3.2."""

from __future__ import annotations

import pytest
from helpers import kill_and_wait, nothing_pending, probe, wait_down
from procs import crash_at_once, idle

import legion


def test_M1_each_monitor_gets_exactly_one_down_with_the_reason() -> None:
    p = probe()
    ref = legion.monitor(p)
    assert isinstance(ref, legion.Ref)
    legion.exit(p, "custom")
    down = wait_down(ref)
    assert (down.pid, down.reason, down.name) == (p, "custom", None)
    assert nothing_pending(lambda m: isinstance(m, legion.Down) and m.ref == ref)


def test_M2_monitoring_a_dead_or_unknown_process_gives_noproc_at_once() -> None:
    dead = legion.spawn(idle)
    kill_and_wait(dead)
    assert wait_down(legion.monitor(dead)).reason == "noproc"
    assert wait_down(legion.monitor("nobody-has-this-name")).reason == "noproc"


def test_M3_demonitor_stops_the_down() -> None:
    p = probe()
    ref = legion.monitor(p)
    legion.demonitor(ref)
    kill_and_wait(p)
    assert nothing_pending(lambda m: isinstance(m, legion.Down) and m.ref == ref)


def test_M3_demonitor_with_flush_removes_a_queued_down() -> None:
    p = probe()
    ref = legion.monitor(p)
    kill_and_wait(p)  # its own monitor's Down arrives after ours: ours is queued now
    legion.demonitor(ref, flush=True)
    assert nothing_pending(lambda m: isinstance(m, legion.Down) and m.ref == ref)


def test_M3_demonitor_of_an_unknown_ref_is_harmless() -> None:
    legion.demonitor(legion.Ref("elsewhere", 1, 1))
    legion.demonitor(legion.Ref("elsewhere", 1, 1), flush=True)


def test_M4_monitors_stack_and_do_not_affect_the_target() -> None:
    target = probe()
    watcher = probe()
    legion.call(watcher, ("monitor", target))
    kill_and_wait(watcher)
    assert legion.call(target, ("echo", "unaffected")) == "unaffected"
    first, second = legion.monitor(target), legion.monitor(target)
    assert first != second
    legion.exit(target, "bye")
    assert wait_down(first).reason == "bye" and wait_down(second).reason == "bye"


def test_M5_spawn_monitor_is_atomic() -> None:
    pid, ref = legion.spawn(crash_at_once, monitor=True)
    down = wait_down(ref)
    assert down.pid == pid and isinstance(down.reason, legion.Crash)


def test_M6_monitor_by_name_resolves_once_and_the_down_carries_the_name() -> None:
    p = probe()
    legion.register("m6-target", p)
    ref = legion.monitor("m6-target")
    legion.unregister("m6-target")  # resolved once: the monitor holds on the pid
    legion.exit(p, "gone")
    down = wait_down(ref)
    assert (down.pid, down.name, down.reason) == (p, "m6-target", "gone")


def test_R1_register_refuses_a_taken_name_or_a_second_name() -> None:
    a, b = probe(), probe()
    legion.register("r1-name", a)
    with pytest.raises(legion.AlreadyRegistered) as taken:
        legion.register("r1-name", b)
    assert taken.value.pid == a
    with pytest.raises(legion.AlreadyRegistered):
        legion.register("r1-other", a)
    assert legion.whereis("r1-name") == a
    kill_and_wait(a)
    assert legion.whereis("r1-name") is None  # released on exit
    legion.register("r1-name", b)
    assert legion.whereis("r1-name") == b
    kill_and_wait(b)


def test_R1_register_a_dead_process_is_noproc() -> None:
    dead = legion.spawn(idle)
    kill_and_wait(dead)
    with pytest.raises(legion.NoProc):
        legion.register("r1-dead", dead)


def test_R1_a_process_can_register_itself_and_spawn_can_name() -> None:
    p = probe()
    assert legion.call(p, ("register", "r1-self")) == "ok"
    assert legion.whereis("r1-self") == p
    with pytest.raises(legion.AlreadyRegistered):
        legion.spawn(idle, name="r1-self")
    q = legion.spawn(idle, name="r1-spawned")
    assert legion.whereis("r1-spawned") == q
    kill_and_wait(p, q)


def test_R2_send_to_an_unbound_name_fails_loudly() -> None:
    with pytest.raises(legion.NotRegistered):
        legion.send("r2-nobody", "hello")


def test_R2_send_to_a_dead_pid_is_silently_dropped() -> None:
    dead = legion.spawn(idle)
    kill_and_wait(dead)
    legion.send(dead, "into the void")


def test_R2_send_to_a_name_delivers() -> None:
    p = probe()
    legion.register("r2-probe", p)
    legion.send("r2-probe", "by name")
    assert legion.receive(timeout=10, match=lambda m: m == ["info", p, "by name"])
    kill_and_wait(p)


def test_R3_call_to_an_unbound_name_or_dead_pid_is_noproc_and_cast_never_fails() -> None:
    dead = legion.spawn(idle)
    kill_and_wait(dead)
    with pytest.raises(legion.NoProc):
        legion.call(dead, "x")
    with pytest.raises(legion.NoProc):
        legion.call("r3-nobody", "x")
    legion.cast(dead, "x")
    legion.cast("r3-nobody", "x")


def test_unregister_an_unknown_name_raises() -> None:
    with pytest.raises(legion.NotRegistered):
        legion.unregister("never-registered")

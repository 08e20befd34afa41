"""How events travel: from a process with nothing else to send, from a thread, from the
application itself; what the node forwards to an application; the default logger's thread."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from typing import Any

import pytest
from telemetry_agents import ODD_EVENTS, Emitter

import legion
from legion import telemetry

Record = tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]
EMITTED = ("test", "emitted")


def collect(events: Any = None, handler_id: str = "test-collector") -> list[Record]:
    seen: list[Record] = []
    telemetry.attach(handler_id, events, lambda e, m, md, c: seen.append((e, m, md)))
    return seen


def until(done: Any, timeout: float = 10.0) -> None:
    """Talk to the node (the application reads forwarded events only while it does) until
    `done()`; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not done():
        assert time.monotonic() < deadline, "timed out"
        legion.whereis("nobody-is-called-this")
        pause.wait(0.005)


@pytest.mark.parametrize("how", ["here", "thread"])
@pytest.mark.parametrize("loop", ["alone", "busy"])
def test_an_event_reaches_the_application_with_no_frame_to_ride_on(how: str, loop: str) -> None:
    """A process that emits and then sends nothing still delivers the event (after at most
    EVENT_DELAY), whether it waits on its synchronous fast path or on trio, from its own
    thread or another one."""
    seen = collect([EMITTED])
    pid = legion.start_link(Emitter, loop)
    try:
        legion.cast(pid, how)
        until(lambda: seen)
        assert seen[0][1] == {"n": 1} and seen[0][2] == {"how": how}
    finally:
        legion.stop(pid)


def test_an_event_the_wire_cannot_carry_is_dropped_alone() -> None:
    """The events queued with it still leave (the process prints which event it dropped)."""
    seen = collect([EMITTED, ("test", "odd")])
    pid = legion.start_link(Emitter)
    legion.cast(pid, "odd")
    until(lambda: seen)
    assert [r[0] for r in seen] == [EMITTED]  # the good event, queued with the odd one
    legion.stop(pid)  # the process is fine


@pytest.mark.parametrize("odd", ODD_EVENTS)
def test_an_event_with_values_the_wire_cannot_carry_never_harms_its_process(odd: str) -> None:
    """Deep metadata is sent as a text saying its repr failed; an event the wire still cannot
    carry (nested too deep, a lone surrogate) is dropped alone: the event queued with it
    leaves, the process lives and answers (its reply was not lost)."""
    seen = collect([EMITTED, ("test", "odd")])
    pid = legion.start_link(Emitter)
    try:
        legion.cast(pid, ["odd", odd])
        assert legion.call(pid, "anything") == "done"
        until(lambda: EMITTED in [r[0] for r in seen])
        if odd == "deep metadata":
            assert seen[0] == (
                ("test", "odd"),
                {"n": 1},
                {"payload": "<list: repr() raised RecursionError>"},
            )
        else:
            assert [r[0] for r in seen] == [EMITTED]
    finally:
        legion.stop(pid)


def test_the_node_forwards_only_the_events_the_application_wants(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arrived: list[tuple[str, ...]] = []
    dispatch = telemetry.dispatch

    def spy(event: tuple[str, ...], *args: Any) -> None:
        arrived.append(event)
        dispatch(event, *args)

    monkeypatch.setattr(telemetry, "dispatch", spy)
    seen = collect([EMITTED])
    pid = legion.start_link(Emitter)  # its start emits process events: not wanted here
    legion.cast(pid, "here")
    until(lambda: seen)
    assert set(arrived) == {EMITTED}
    other = collect(None, "everything")  # one handler for every event: all are forwarded
    legion.stop(pid)
    until(lambda: any(r[0] == telemetry.PROCESS_EXITED for r in other))
    assert telemetry.PROCESS_EXITED in arrived


def reloads(port: int) -> dict[str, float]:
    """legion_reloads_total by outcome, scraped from the node (shared by the whole session)."""
    from prometheus_client.parser import text_string_to_metric_families

    legion.whereis("nobody-is-called-this")  # the node has counted every event sent before
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "legion_reloads"
        for sample in family.samples
    }


def test_an_event_emitted_in_the_application_is_counted_by_the_node_once() -> None:
    seen = collect([telemetry.RELOAD])
    port = telemetry.serve_metrics(0)
    before = reloads(port)
    with pytest.raises(legion.ReloadError):
        legion.reload("no_such_module_anywhere")  # a failed reload, counted as an error
    telemetry.emit(telemetry.RELOAD, {"duration": 0.1}, {"outcome": "ok"})
    after = reloads(port)
    assert after["error"] == before["error"] + 1 and after["ok"] == before["ok"] + 1
    legion.whereis("nobody-is-called-this")
    assert [r[2]["outcome"] for r in seen] == ["error", "ok"]  # local, not echoed by the node


def test_forwarded_events_are_handled_on_the_telemetry_thread_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The thread reading the node only queues them; `flush` waits until they are handled."""
    threads: list[str] = []

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            threads.append(threading.current_thread().name)

    spy = Spy()
    logging.getLogger("legion.telemetry").addHandler(spy)
    pid = legion.start_link(Emitter)
    try:
        with caplog.at_level(logging.INFO, logger="legion.telemetry"):
            telemetry.attach_default_logger(events=["runtime"], colour=False)
            legion.cast(pid, ["restarts", 50])
            assert legion.call(pid, "after them") == "done"  # the events came before the reply
            assert telemetry.flush()
            lines = [m for m in caplog.messages if "supervisor:restart" in m]
            assert lines == [f"┃  supervisor:restart supervisor=S{n}" for n in range(50)]
            assert set(threads) == {"legion-telemetry"}
            telemetry.emit(telemetry.SUPERVISOR_RESTART, {}, {"supervisor": "local"})
            assert caplog.messages[-1] == "┃  supervisor:restart supervisor=local"  # at once
            assert threads[-1] == threading.current_thread().name
            assert telemetry.detach_default_logger()
    finally:
        logging.getLogger("legion.telemetry").removeHandler(spy)
        legion.stop(pid)


def test_the_default_logger_does_not_format_what_nobody_would_see(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    formatted: list[tuple[str, ...]] = []
    real = telemetry.format_event

    def counting(event: tuple[str, ...], *args: Any) -> tuple[int, str]:
        formatted.append(event)
        return real(event, *args)

    monkeypatch.setattr(telemetry, "format_event", counting)
    with caplog.at_level(logging.CRITICAL, logger="legion.telemetry"):
        telemetry.attach_default_logger(events=["runtime"])
        telemetry.emit(telemetry.SUPERVISOR_RESTART, {}, {"supervisor": "S"})
        telemetry.detach_default_logger()
    assert formatted == []
    with caplog.at_level(logging.WARNING, logger="legion.telemetry"):
        telemetry.attach_default_logger(events=["sandbox"])
        telemetry.emit(("legion", "sandbox", "eval", "stop"), {"duration": 0.1},
                       {"outcome": "timeout", "error": "took too long"})  # fmt: skip
        telemetry.detach_default_logger()
    assert formatted == [("legion", "sandbox", "eval", "stop")]
    assert "eval:stop timeout" in caplog.text  # a warning gets through an INFO floor

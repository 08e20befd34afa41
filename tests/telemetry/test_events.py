"""Telemetry events (research/legion.md §7): emitted where they happen, seen by the application."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from telemetry_agents import TelemetryAgent

import legion
from legion import telemetry, testing
from legion.testing import eval_and_complete, eval_and_continue, returns

Record = tuple[tuple[str, ...], dict[str, Any], dict[str, Any]]


def collect(events: Any = None) -> list[Record]:
    seen: list[Record] = []

    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append((event, measurements, metadata))

    telemetry.attach("test-collector", events, handler)
    return seen


def wait_for(seen: list[Record], event: tuple[str, ...], timeout: float = 10.0) -> Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in seen:
            if record[0] == event:
                return record
        legion.whereis("nobody-is-called-this")  # any round trip reads what the node forwarded
        time.sleep(0.01)
    raise AssertionError(f"no {event} among {[r[0] for r in seen]}")


def test_local_emit_and_span_reach_local_handlers() -> None:
    seen = collect([("demo", "thing"), ("demo", "op", "stop"), ("demo", "op", "exception")])
    telemetry.emit(("demo", "thing"), {"n": 1}, {"who": "me"})
    telemetry.emit(("demo", "ignored"), {}, {})
    with telemetry.span(("demo", "op"), {"a": 1}) as info:
        info["b"] = 2
        info.measurements["tokens"] = 5
    with pytest.raises(ValueError), telemetry.span(("demo", "op"), {"a": 1}):
        raise ValueError("boom")
    expected = [("demo", "thing"), ("demo", "op", "stop"), ("demo", "op", "exception")]
    assert [r[0] for r in seen] == expected
    assert seen[0][1] == {"n": 1} and seen[0][2] == {"who": "me"}
    assert seen[1][2] == {"a": 1, "b": 2} and seen[1][1]["tokens"] == 5
    assert seen[1][1]["duration"] >= 0
    assert seen[2][2]["kind"] == "ValueError" and seen[2][2]["reason"] == "boom"


def test_attach_twice_raises_and_detach_reports() -> None:
    telemetry.attach("h", None, lambda *a: None)
    with pytest.raises(ValueError):
        telemetry.attach("h", None, lambda *a: None)
    assert telemetry.detach("h") is True
    assert telemetry.detach("h") is False


def test_a_failing_handler_is_detached() -> None:
    def bad(*args: Any) -> None:
        raise RuntimeError("broken handler")

    telemetry.attach("bad", [("demo", "x")], bad)
    telemetry.emit(("demo", "x"))
    assert "bad" not in telemetry.list_handlers()


def test_the_application_sees_every_agent_event() -> None:
    seen = collect()
    script = [eval_and_continue("x = CounterTool.add(1, 2)"), eval_and_complete("x * 2")]
    with testing.ScriptedModel(script):
        assert legion.execute(TelemetryAgent, "add") == 6
    stopped = wait_for(seen, telemetry.AGENT_STOPPED)
    names = [r[0] for r in seen]
    for event in [
        telemetry.AGENT_STARTED,
        ("legion", "agent", "message", "start"),
        ("legion", "agent", "message", "stop"),
        ("legion", "iteration", "start"),
        ("legion", "iteration", "stop"),
        ("legion", "llm", "request", "start"),
        ("legion", "llm", "request", "stop"),
        ("legion", "sandbox", "eval", "start"),
        ("legion", "sandbox", "eval", "stop"),
        ("legion", "tool", "call", "stop"),
        telemetry.PROCESS_SPAWNED,
    ]:
        assert event in names, event
    started = next(r for r in seen if r[0] == telemetry.AGENT_STARTED)
    run_id = started[2]["run_id"]
    assert started[2]["agent"] == "TelemetryAgent"
    assert stopped[2]["run_id"] == run_id and stopped[2]["reason"] in ("normal", "shutdown")
    turn = next(r for r in seen if r[0] == ("legion", "agent", "message", "stop"))
    assert turn[2]["outcome"] == "ok" and turn[2]["iterations"] == 2 and turn[2]["run_id"] == run_id
    assert turn[1]["duration"] > 0
    actions = [r[2]["action"] for r in seen if r[0] == ("legion", "iteration", "stop")]
    assert actions == ["eval_and_continue", "eval_and_complete"]
    llm = [r for r in seen if r[0] == ("legion", "llm", "request", "stop")]
    assert len(llm) == 2 and all("input_tokens" in r[1] and "model" in r[2] for r in llm)
    evals = [r[2]["outcome"] for r in seen if r[0] == ("legion", "sandbox", "eval", "stop")]
    assert evals == ["ok", "ok"]
    tool = next(r for r in seen if r[0] == ("legion", "tool", "call", "stop"))
    assert tool[2]["tool"] == "CounterTool" and tool[2]["function"] == "add"


def test_failures_and_cancels_are_reported() -> None:
    seen = collect()
    with (
        testing.ScriptedModel([eval_and_continue("1/0"), eval_and_continue("1/0")]),
        pytest.raises(legion.AgentCancelled),
    ):
        legion.execute(TelemetryAgent, "fail", max_retries=1)
    wait_for(seen, telemetry.AGENT_STOPPED)
    iterations = [r[2] for r in seen if r[0] == ("legion", "iteration", "stop")]
    assert [i["outcome"] for i in iterations] == ["failure", "failure"]
    assert [i["retried"] for i in iterations] == [True, False]
    evals = [r[2]["outcome"] for r in seen if r[0] == ("legion", "sandbox", "eval", "stop")]
    assert evals == ["exception", "exception"]
    turn = next(r for r in seen if r[0] == ("legion", "agent", "message", "stop"))
    assert turn[2]["outcome"] == "cancel" and turn[2]["reason"] == "reached_max_retries"
    assert "ZeroDivisionError" in turn[2]["error"]  # the last error the turn saw


def test_detached_application_gets_nothing_more() -> None:
    seen = collect()
    telemetry.detach("test-collector")
    with testing.ScriptedModel([returns("hi")]):
        assert legion.execute(TelemetryAgent, "hi") == "hi"
    legion.whereis("nobody-is-called-this")
    assert seen == []


def test_default_logger_writes_one_line_per_event(caplog: pytest.LogCaptureFixture) -> None:
    groups = ["agent", "message", "iteration", "llm", "sandbox"]
    telemetry.attach_default_logger(level="INFO", events=groups)
    with caplog.at_level(logging.INFO, logger="legion.telemetry"):
        with testing.ScriptedModel([eval_and_complete("21 * 2")]):
            assert legion.execute(TelemetryAgent, "go") == 42
        deadline = time.monotonic() + 10
        while "agent:stopped" not in caplog.text and time.monotonic() < deadline:
            legion.whereis("nobody-is-called-this")
            time.sleep(0.01)
    telemetry.detach_default_logger()
    text = caplog.text
    for part in ["agent:started TelemetryAgent", "message:start TelemetryAgent 'go'",
                 "  iteration:start TelemetryAgent #0", "    llm:stop", "    eval:start",
                 "      21 * 2", "    eval:stop ok", "message:stop TelemetryAgent ok iterations=1",
                 "agent:stopped TelemetryAgent"]:  # fmt: skip
        assert part in text, (part, text)
    assert any("\x1b[" in m for m in caplog.messages)  # coloured per run


def test_format_event_levels_and_unknown_events() -> None:
    level, line = telemetry.format_event(
        ("legion", "sandbox", "eval", "stop"), {"duration": 0.01},
        {"outcome": "timeout", "error": "timeout after 1 s"}, colour=False,
    )  # fmt: skip
    assert level == logging.WARNING and "eval:stop timeout" in line and "timeout after" in line
    level, line = telemetry.format_event(("other", "x"), {}, {}, colour=False)
    assert level == logging.WARNING and "unhandled event" in line
    level, line = telemetry.format_event(
        ("legion", "llm", "request", "exception"), {"duration": 1.0},
        {"model": "m", "kind": "LLMError", "reason": "rate limited", "parent_run_id": "p"},
        colour=False,
    )  # fmt: skip
    assert level == logging.ERROR and line.startswith("┃▸") and "LLMError" in line


def test_format_event_shows_a_measurement_of_an_odd_type_as_it_is() -> None:
    """An event a user emits by hand under one of Legion's names, its duration unknown."""
    _, line = telemetry.format_event(
        (*telemetry.TOOL_CALL, "stop"), {"duration": None},
        {"tool": "MyTool", "function": "f", "run_id": "caf\udce9"}, colour=True,
    )  # fmt: skip
    assert "tool:stop MyTool.f" in line and "duration=None" in line


class Unprintable:
    """A value whose text cannot be made: formatting it raises."""

    def __format__(self, spec: str) -> str:
        raise ValueError("no text for this value")


LLM_STOP = (*telemetry.LLM_REQUEST, "stop")


def test_a_line_the_default_logger_cannot_format_is_dropped_alone(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The logger reports the first failure of the event name on stderr and stays attached:
    the lines of every later event are still written (a handler that raises would be
    detached for the rest of the application)."""
    with caplog.at_level(logging.INFO, logger="legion.telemetry"):
        telemetry.attach_default_logger(events=["llm"], colour=False)
        for _ in range(2):
            telemetry.emit(LLM_STOP, {"input_tokens": Unprintable()}, {"model": "odd"})
        telemetry.emit(LLM_STOP, {"input_tokens": 3, "duration": 0.5}, {"model": "fine"})
        assert telemetry.DEFAULT_LOGGER_ID in telemetry.list_handlers()
        telemetry.detach_default_logger()
    assert caplog.messages == ["┃      llm:stop fine tokens=3+0 500.0ms"]
    err = capsys.readouterr().err
    assert err.count("default telemetry logger dropped a line") == 1, err
    assert "('legion', 'llm', 'request', 'stop')" in err and "no text for this value" in err

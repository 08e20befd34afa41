"""User-named labels are capped: each keeps its first `max_label_values` distinct values, later
ones are counted under `other` and in `legion_metrics_label_overflow_total{label}`; the cap is
set by `LEGION_METRICS_MAX_LABEL_VALUES` in the node's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from legion.metrics import CAPPED_LABELS, MAX_LABEL_VALUES, NodeMetrics

HERE = Path(__file__).resolve().parent
TOOL_STOP = ("legion", "tool", "call", "stop")
TOOL_FAILED = ("legion", "tool", "call", "exception")


def samples(metrics: NodeMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = metrics.render().decode()
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def label_values(metrics: NodeMetrics, name: str, label: str) -> set[str]:
    return {dict(k)[label] for k in samples(metrics, name)}


def overflow(metrics: NodeMetrics, label: str) -> float:
    return samples(metrics, "legion_metrics_label_overflow_total")[(("label", label),)]


def test_the_default_cap_is_documented_and_every_capped_label_starts_at_zero() -> None:
    metrics = NodeMetrics()
    assert MAX_LABEL_VALUES == 100
    counts = samples(metrics, "legion_metrics_label_overflow_total")
    assert CAPPED_LABELS == ("agent", "model", "tool", "supervisor", "error_type")
    assert counts == {(("label", name),): 0.0 for name in CAPPED_LABELS}


def test_values_past_the_cap_are_counted_as_other() -> None:
    metrics = NodeMetrics(max_label_values=3)
    for i in range(5):
        metrics.handle(TOOL_STOP, {"duration": 0.1}, {"tool": f"Tool{i}"})
    metrics.handle(TOOL_STOP, {"duration": 0.1}, {"tool": "Tool4"})  # a cached key counts too
    metrics.handle(TOOL_STOP, {"duration": 0.1}, {"tool": "Tool0"})  # an early name stays
    calls = samples(metrics, "legion_tool_calls_total")
    assert calls == {
        (("outcome", "ok"), ("tool", "Tool0")): 2.0,
        (("outcome", "ok"), ("tool", "Tool1")): 1.0,
        (("outcome", "ok"), ("tool", "Tool2")): 1.0,
        (("outcome", "ok"), ("tool", "other")): 3.0,
    }
    assert overflow(metrics, "tool") == 3.0
    durations = "gen_ai_execute_tool_duration_seconds_count"
    assert label_values(metrics, durations, "gen_ai_tool_name") == {
        "Tool0", "Tool1", "Tool2", "other"
    }  # fmt: skip


def test_one_cap_per_label_shared_by_every_metric_that_uses_it() -> None:
    metrics = NodeMetrics(max_label_values=2)
    for agent in ("A", "B", "C"):
        metrics.handle(("legion", "agent", "started"), {}, {"agent": agent})
        metrics.handle(("legion", "agent", "message", "stop"), {"duration": 1.0},
                       {"agent": agent, "outcome": "ok"})  # fmt: skip
    for kind in ("KeyError", "ValueError", "OSError"):  # error types come from user code too
        metrics.handle(TOOL_FAILED, {"duration": 0.1}, {"tool": "T", "kind": kind})
    for model in ("m1", "m2", "m3"):
        metrics.handle(("legion", "llm", "request", "stop"), {"duration": 0.1}, {"model": model})
    assert label_values(metrics, "legion_agent_starts_total", "agent") == {"A", "B", "other"}
    assert label_values(metrics, "legion_agent_turns_total", "agent") == {"A", "B", "other"}
    errors = label_values(metrics, "gen_ai_execute_tool_duration_seconds_count", "error_type")
    assert errors == {"KeyError", "ValueError", "other"}
    models = label_values(metrics, "gen_ai_client_operation_duration_seconds_count",
                          "gen_ai_request_model")  # fmt: skip
    assert models == {"m1", "m2", "other"}
    assert overflow(metrics, "agent") == 2.0  # C's start and C's turn
    assert overflow(metrics, "error_type") == 1.0
    assert overflow(metrics, "model") == 1.0


def run_app(tmp_path: Path, cap: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LEGION_NODE",)}
    if cap is not None:
        env["LEGION_METRICS_MAX_LABEL_VALUES"] = cap
    return subprocess.run(
        [sys.executable, str(HERE / "scrape_app.py"), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_the_node_takes_its_cap_from_the_environment(tmp_path: Path) -> None:
    done = run_app(tmp_path, "4", "--tools", "6", "--kinds", "1")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    assert sorted(report["tools"]) == ["T0", "T1", "T2", "T3", "other"]
    assert report["overflow"]["tool"] == 2.0


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_a_bad_cap_is_refused_with_the_rule(bad: str) -> None:
    env = dict(os.environ, LEGION_METRICS_MAX_LABEL_VALUES=bad)
    done = subprocess.run(
        [sys.executable, "-c", "import legion.metrics"], capture_output=True, text=True,
        env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "LEGION_METRICS_MAX_LABEL_VALUES must be an int >= 1" in done.stderr


def test_an_event_with_odd_values_is_skipped_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An event named like Legion's with a value of the wrong type (a user replaying events by
    hand) is counted only as far as its values allow; the node logs it once per event name,
    never a traceback per event, and goes on counting the good ones."""
    metrics = NodeMetrics()
    with caplog.at_level("WARNING", logger="legion.node"):
        for _ in range(50):
            metrics.handle(TOOL_STOP, {"duration": None}, {"tool": "Odd"})
        metrics.handle(TOOL_STOP, {"duration": 0.1}, {"tool": "Good"})
    lines = [r for r in caplog.records if "was not fully counted" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None, caplog.text
    assert "TypeError" in lines[0].getMessage()
    calls = samples(metrics, "legion_tool_calls_total")
    assert calls[(("outcome", "ok"), ("tool", "Good"))] == 1.0

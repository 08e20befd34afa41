"""The node's Prometheus registry: fed by events, served on /metrics, bounded labels."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from telemetry_agents import TelemetryAgent

import legion
from legion import telemetry, testing
from legion.metrics import NodeMetrics, reason_class
from legion.testing import eval_and_complete, eval_and_continue, llm_error


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    name = sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    total = 0.0
    for sample in families[name].samples:
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            total += sample.value
    return total


def test_metrics_are_served_and_count_agent_work() -> None:
    port = telemetry.serve_metrics(0)
    assert telemetry.serve_metrics(0) == port  # one endpoint per address
    before = scrape(port)
    turns_before = value(before, "legion_agent_turns_total", agent="TelemetryAgent", outcome="ok")
    script = [
        llm_error("rate limited"),
        eval_and_continue("x = CounterTool.add(1, 2)"),
        eval_and_continue("1/0"),
        eval_and_complete("x"),
    ]
    with testing.ScriptedModel(script):
        assert legion.execute(TelemetryAgent, "add") == 3
    after = scrape(port)
    assert value(after, "legion_agent_turns_total", agent="TelemetryAgent", outcome="ok") == (
        turns_before + 1
    )
    assert value(after, "legion_agent_starts_total", agent="TelemetryAgent") >= 1
    assert value(after, "gen_ai_client_operation_duration_seconds_count") >= 3
    assert value(after, "gen_ai_client_token_usage_count", gen_ai_token_type="input") >= 3
    assert value(after, "legion_llm_errors_total") >= 1
    assert value(after, "legion_agent_iterations_total", action="eval_and_continue") >= 2
    assert value(after, "legion_agent_retries_total", agent="TelemetryAgent") >= 2
    assert value(after, "legion_sandbox_evaluations_total", outcome="exception") >= 1
    assert value(after, "legion_sandbox_evaluation_duration_seconds_count", outcome="ok") >= 2
    assert value(after, "legion_tool_calls_total", tool="CounterTool", outcome="ok") >= 1
    assert value(after, "gen_ai_execute_tool_duration_seconds_count") >= 1
    assert value(after, "legion_processes_spawned_total") >= 1
    routed = "legion_messages_routed_total"
    assert value(after, routed) > value(before, routed)
    assert value(after, "legion_processes", kind="application") >= 1
    assert "legion_sandbox_violations" in after and "legion_supervisor_restarts" in after
    for family in after.values():  # bounded labels: no run ids, no pids
        for sample in family.samples:
            for label, text in sample.labels.items():
                assert "<Pid" not in text and len(text) < 100, (family.name, label, text)
                assert label not in ("run_id", "pid", "parent_run_id")


def test_not_found_and_bad_requests() -> None:
    port = telemetry.serve_metrics(0)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 404")


def test_configure_metrics_port_validates() -> None:
    with pytest.raises(legion.ConfigError):
        legion.configure(metrics_port="9000")


def test_registry_unit() -> None:
    metrics = NodeMetrics()
    metrics.handle(("legion", "llm", "request", "stop"), {"duration": 0.5, "input_tokens": 10,
                   "output_tokens": 3, "cost_usd": 0.01}, {"model": "m"})  # fmt: skip
    metrics.handle(("legion", "supervisor", "restart"), {}, {"supervisor": "Sup"})
    metrics.handle(("legion", "sandbox", "eval", "stop"), {"duration": 0.1}, {"outcome": "memory"})
    metrics.handle(("legion", "nothing"), {}, {})
    metrics.handle(("legion", "llm", "request", "stop"), {"duration": "bad"}, {})  # logged only
    text = metrics.render().decode()
    assert 'legion_llm_cost_usd_total{gen_ai_request_model="m"} 0.01' in text
    assert 'legion_supervisor_restarts_total{supervisor="Sup"} 1.0' in text
    assert 'legion_sandbox_violations_total{kind="memory"} 1.0' in text
    assert "_created" not in text
    assert reason_class("normal") == "normal"
    assert reason_class(("shutdown", 1)) == "shutdown"
    assert reason_class({"weird": 1}) == "other"

"""Write the dashboards in `dashboards/` (classic Grafana JSON model): `python grafana/build.py`.

`python grafana/build.py --queries` prints every panel's PromQL instead (with `$__rate_interval`
as 1m), to paste in Prometheus' own UI when no Grafana is at hand.

Every panel reads the `${datasource}` variable (never `__inputs`), so the files import as they are
and the provisioning in `provisioning/` loads them unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(title: str, targets: list[tuple[str, str]], unit: str = "short", kind: str = "timeseries",
          description: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def quantiles(metric: str, by: str) -> list[tuple[str, str]]:
    group = f"le, {by}" if by else "le"
    label = f"{{{{{by}}}}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
            f"{label}p{p}",
        )
        for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
    ]


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    for i, p in enumerate(panels):
        p["id"] = i + 1
        p["gridPos"] = {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}
    return {
        "uid": uid,
        "title": title,
        "tags": ["legion"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [
            {"type": "dashboards", "tags": ["legion"], "title": "Legion", "asDropdown": True}
        ],
        "panels": panels,
    }


OVERVIEW = dashboard("legion-overview", "Legion / Overview", [
    panel("Agents running", [("sum by (agent) (legion_agents_running)", "{{agent}}")]),
    panel("Turns per second by outcome",
          [(f"sum by (outcome) (rate(legion_agent_turns_total[{RATE}]))", "{{outcome}}")], "ops"),
    panel("Turn duration", quantiles("gen_ai_invoke_agent_duration_seconds", ""), "s"),
    panel("Iterations per second by action",
          [(f"sum by (action) (rate(legion_agent_iterations_total[{RATE}]))", "{{action}}")],
          "ops"),
    panel("Retries per second by agent",
          [(f"sum by (agent) (rate(legion_agent_retries_total[{RATE}]))", "{{agent}}")], "ops"),
    panel("Errors per second", [
        (f"sum by (error_type) (rate(legion_llm_errors_total[{RATE}]))", "llm {{error_type}}"),
        (f'sum by (outcome) (rate(legion_sandbox_evaluations_total{{outcome!="ok"}}[{RATE}]))',
         "sandbox {{outcome}}"),
        (f'sum by (agent) (rate(legion_agent_turns_total{{outcome!="ok"}}[{RATE}]))',
         "turn {{agent}}"),
    ], "ops"),
    panel("Agent starts and stops", [
        (f"sum by (agent) (increase(legion_agent_starts_total[{RATE}]))", "start {{agent}}"),
        (f"sum by (agent, reason) (increase(legion_agent_stops_total[{RATE}]))",
         "stop {{agent}} {{reason}}"),
    ]),
    panel("Tool calls per second",
          [(f"sum by (tool, outcome) (rate(legion_tool_calls_total[{RATE}]))",
            "{{tool}} {{outcome}}")], "ops"),
    panel("Questions to a human",
          [(f"sum by (agent) (increase(legion_human_waits_total[{RATE}]))", "{{agent}}")],
          description="HumanTool.ask calls, by agent."),
    panel("Human answer wait", quantiles("legion_human_wait_duration_seconds", "agent"), "s",
          description="How long agents waited for a person's answer."),
])  # fmt: skip

LLM = dashboard("legion-llm", "Legion / LLM", [
    panel("Request latency", quantiles("gen_ai_client_operation_duration_seconds",
                                       "gen_ai_request_model"), "s"),
    panel("Requests per second", [
        (f"sum by (gen_ai_request_model, error_type) "
         f"(rate(gen_ai_client_operation_duration_seconds_count[{RATE}]))",
         "{{gen_ai_request_model}} {{error_type}}"),
    ], "reqps"),
    panel("Tokens per second", [
        (f"sum by (gen_ai_request_model, gen_ai_token_type) "
         f"(rate(gen_ai_client_token_usage_sum[{RATE}]))",
         "{{gen_ai_request_model}} {{gen_ai_token_type}}"),
    ]),
    panel("Tokens per request (p95)", [
        (f"histogram_quantile(0.95, sum by (le, gen_ai_token_type) "
         f"(rate(gen_ai_client_token_usage_bucket[{RATE}])))", "{{gen_ai_token_type}}"),
    ]),
    panel("Cost (USD) over the range",
          [("sum by (gen_ai_request_model) (increase(legion_llm_cost_usd_total[$__range]))",
            "{{gen_ai_request_model}}")], "currencyUSD", "stat"),
    panel("Cost per hour (USD)",
          [(f"sum by (gen_ai_request_model) (rate(legion_llm_cost_usd_total[{RATE}])) * 3600",
            "{{gen_ai_request_model}}")], "currencyUSD"),
    panel("Errors per second",
          [(f"sum by (gen_ai_request_model, error_type) (rate(legion_llm_errors_total[{RATE}]))",
            "{{gen_ai_request_model}} {{error_type}}")], "ops"),
])  # fmt: skip

SANDBOX = dashboard("legion-sandbox", "Legion / Sandbox", [
    panel("Evaluation latency", quantiles("legion_sandbox_evaluation_duration_seconds", ""), "s"),
    panel("Evaluation latency by outcome (p95)", [
        (f"histogram_quantile(0.95, sum by (le, outcome) "
         f"(rate(legion_sandbox_evaluation_duration_seconds_bucket[{RATE}])))", "{{outcome}}"),
    ], "s"),
    panel("Evaluations per second by outcome",
          [(f"sum by (outcome) (rate(legion_sandbox_evaluations_total[{RATE}]))", "{{outcome}}")],
          "ops"),
    panel("Violations by kind",
          [(f"sum by (kind) (increase(legion_sandbox_violations_total[{RATE}]))", "{{kind}}")]),
    panel("Evaluations per second by agent",
          [(f"sum by (agent) (rate(legion_sandbox_evaluations_total[{RATE}]))", "{{agent}}")],
          "ops"),
])  # fmt: skip

RUNTIME = dashboard("legion-runtime", "Legion / Runtime", [
    panel("Processes by kind", [("sum by (kind) (legion_processes)", "{{kind}}")]),
    panel("Spawns per second",
          [(f"sum(rate(legion_processes_spawned_total[{RATE}]))", "spawned")], "ops"),
    panel("Exits per second by reason",
          [(f"sum by (reason) (rate(legion_process_exits_total[{RATE}]))", "{{reason}}")], "ops"),
    panel("Restarts by supervisor",
          [(f"sum by (supervisor) (increase(legion_supervisor_restarts_total[{RATE}]))",
            "{{supervisor}}")]),
    panel("Messages routed per second",
          [(f"sum(rate(legion_messages_routed_total[{RATE}]))", "messages")], "ops"),
    panel("Reloads", [(f"sum by (outcome) (increase(legion_reloads_total[{RATE}]))",
                       "{{outcome}}")]),
    panel("Telemetry events per second", [
        (f"sum(rate(legion_telemetry_events_total[{RATE}]))", "events"),
        (f"sum(rate(legion_telemetry_dropped_total[{RATE}]))", "dropped (unread)"),
    ], "ops"),
    panel("Node scrape up", [('up{job="legion"}', "{{instance}}")], kind="stat"),
])  # fmt: skip

DASHBOARDS = {"overview": OVERVIEW, "llm": LLM, "sandbox": SANDBOX, "runtime": RUNTIME}

if __name__ == "__main__" and "--queries" in sys.argv:
    for model in DASHBOARDS.values():
        for p in model["panels"]:
            for target in p["targets"]:
                expr = target["expr"].replace(RATE, "1m").replace("$__range", "1h")
                print(f"# {model['title']} / {p['title']}\n{expr}")
elif __name__ == "__main__":
    for name, model in DASHBOARDS.items():
        path = HERE / "dashboards" / f"legion-{name}.json"
        path.write_text(json.dumps(model, indent=2) + "\n")
        print(path)

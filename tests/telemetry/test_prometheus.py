"""The real check: a real Prometheus scrapes a node running the demo workload, and every query of
every dashboard panel returns series; `promtool check metrics` accepts our exposition.

Needs Debian's `prometheus` package (prometheus + promtool). Skipped when the binaries are absent,
except in CI (`CI` set), where it must run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import demo_workload
import pytest
from test_grafana import dashboard_queries

from legion import telemetry

HAVE_PROMETHEUS = bool(shutil.which("prometheus") and shutil.which("promtool"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not HAVE_PROMETHEUS and not os.environ.get("CI"),
        reason="prometheus/promtool not installed (apt-get install prometheus)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def query(base: str, expr: str) -> Any:
    data = get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert data["status"] == "success", (expr, data)
    return data["data"]["result"]


MOVED = [
    'legion_reloads_total{outcome="ok"} > 0',
    "legion_human_waits_total > 0",
    "legion_human_wait_duration_seconds_count > 0",
    "legion_supervisor_restarts_total > 0",
    "legion_sandbox_violations_total > 0",
    "legion_llm_errors_total > 0",
    "legion_llm_cost_usd_total > 0",
    "legion_tool_calls_total > 0",
]


def scrapes(base: str, count: int, timeout: float = 60.0) -> None:
    """Wait until Prometheus has scraped the node `count` more times."""

    def taken() -> int:
        result = query(base, 'count_over_time(up{job="legion"}[1h])')
        return int(float(result[0]["value"][1])) if result else 0

    target = taken() + count
    deadline = time.monotonic() + timeout
    while taken() < target:
        assert time.monotonic() < deadline, f"Prometheus took fewer than {count} scrapes"
        time.sleep(0.2)  # polling a separate program's clock: it scrapes every second


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    metrics_port = telemetry.serve_metrics(0)
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: legion\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics_port}']\n"
    )
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if any(r["value"][1] == "1" for r in query(base, 'up{job="legion"}')):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError((workdir / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield base, metrics_port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_real_prometheus_answers_every_dashboard_query(
    prometheus: tuple[str, int], tmp_path: Path
) -> None:
    base, metrics_port = prometheus
    kept = [demo_workload.run()]
    try:
        scrapes(base, 2)
        for _ in range(2):  # rates need two samples of every series, after some change
            kept.append(demo_workload.run(rounds=1))
            scrapes(base, 2)
        for expr in MOVED:  # the workload moved these (the queries alone could see zeros)
            assert query(base, expr), f"no series for {expr}"
        failures = []
        queries = dashboard_queries()
        assert len(queries) > 30
        for dashboard, title, expr in queries:
            if not query(base, expr):
                failures.append(f"{dashboard} / {title}: no series for {expr}")
        assert not failures, "\n".join(failures)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            exposition = r.read()
        result = subprocess.run(
            ["promtool", "check", "metrics"], input=exposition, capture_output=True
        )
        assert result.returncode == 0, (result.stdout + result.stderr).decode()
    finally:
        for alive in kept:
            demo_workload.stop(alive)

"""`grafana/run-local.sh` without Docker: it starts a real Prometheus that scrapes the demo's node,
and starts Grafana with this repository's provisioning and dashboards; Ctrl-C stops it all.

Grafana itself is not packaged by Debian (nor on PyPI), so a stand-in `grafana` on PATH records
how the script runs it; `docker` is a stand-in that fails, as on a machine without Docker.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_prometheus import free_port, query

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "grafana" / "run-local.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("prometheus") is None and not os.environ.get("CI"),
        reason="prometheus not installed (apt-get install prometheus)",
    ),
]

GRAFANA_STANDIN = """#!/bin/sh
python3 - "$@" <<'EOF'
import json, os, sys
keys = [k for k in os.environ if k.startswith(("GF_", "PROMETHEUS_URL", "LEGION_DASHBOARDS"))]
with open(os.environ["STANDIN_RECORD"], "w") as f:
    json.dump({"argv": sys.argv[1:], "env": {k: os.environ[k] for k in keys}}, f)
EOF
exec sleep 600
"""


def test_run_local_without_docker(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "grafana").write_text(GRAFANA_STANDIN)
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    for standin in bin_dir.iterdir():
        standin.chmod(0o755)
    record = tmp_path / "grafana.json"
    metrics_port, prometheus_port, grafana_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        PYTHON=sys.executable,
        PROMETHEUS_PORT=str(prometheus_port),
        GRAFANA_PORT=str(grafana_port),
        STANDIN_RECORD=str(record),
    )
    env.pop("LEGION_NODE", None)
    script = subprocess.Popen(
        ["sh", str(SCRIPT), "--port", str(metrics_port)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{prometheus_port}"
    try:
        deadline = time.monotonic() + 90
        scraped: list[dict[str, object]] = []
        while not scraped:  # polling Prometheus, which scrapes on its own clock (every 5 s)
            assert script.poll() is None, script.communicate()[0].decode()
            assert time.monotonic() < deadline, "Prometheus never scraped a demo turn"
            try:
                scraped = query(base, "legion_agent_turns_total > 0")
            except OSError:
                pass
            time.sleep(0.5)
        up = query(base, 'up{job="legion"}')
        assert up and up[0]["value"][1] == "1"  # type: ignore[index]
        ran = json.loads(record.read_text())
        assert ran["argv"][:2] == ["server", "--homepath"]
        assert ran["env"]["GF_PATHS_PROVISIONING"] == str(ROOT / "grafana" / "provisioning")
        assert ran["env"]["LEGION_DASHBOARDS"] == str(ROOT / "grafana" / "dashboards")
        assert ran["env"]["PROMETHEUS_URL"] == f"http://127.0.0.1:{prometheus_port}"
        assert ran["env"]["GF_SERVER_HTTP_PORT"] == str(grafana_port)
    finally:
        script.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            output = script.communicate(timeout=60)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait()
            raise
    assert "Prometheus on" in output and "Grafana on" in output, output
    left = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if os.getpgid(proc.pid) == script.pid:
                left.append(proc.info["cmdline"])
        except (ProcessLookupError, psutil.Error):
            continue
    assert not left, f"left running: {left}"

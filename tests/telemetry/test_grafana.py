"""The dashboards in grafana/: structure, and every query checked by promtool (if present)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SUBSTITUTIONS = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with Grafana's interval variables filled in)."""
    found = []
    for path in DASHBOARDS:
        model = json.loads(path.read_text())
        for panel in model["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in SUBSTITUTIONS.items():
                    expr = expr.replace(variable, value)
                found.append((path.name, panel["title"], expr))
    return found


def test_there_are_four_dashboards() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert names == {"legion-overview", "legion-llm", "legion-sandbox", "legion-runtime"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    text = path.read_text()
    model: dict[str, Any] = json.loads(text)
    assert "__inputs" not in model and "__requires" not in model
    assert "${DS_" not in text  # no exported-dashboard datasource placeholders
    variables = model["templating"]["list"]
    assert [v["name"] for v in variables if v["type"] == "datasource"] == ["datasource"]
    assert model["uid"].startswith("legion-") and model["panels"]
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["expr"].strip()
            for label in ("run_id", "pid", "parent_run_id"):
                assert label not in target["expr"]


def test_dashboards_are_built_from_build_py() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("grafana_build", GRAFANA / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, model in module.DASHBOARDS.items():
        on_disk = json.loads((GRAFANA / "dashboards" / f"legion-{name}.json").read_text())
        assert on_disk == json.loads(json.dumps(model)), f"run python grafana/build.py ({name})"


def test_provisioning_yaml() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/legion.yaml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/legion.yaml").read_text())
    assert providers["providers"][0]["type"] == "file"


@pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("CI"),
                    reason="promtool is not installed")  # fmt: skip
def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"legion:panel_{i}", "expr": expr}
                    for i, (_, _, expr) in enumerate(dashboard_queries())
                ],
            }
        ]
    }
    path = tmp_path / "panels.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr

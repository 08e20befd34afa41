"""The examples run offline (no API key: the labelled scripted model answers). Marked slow
(a fresh interpreter and node each); `legion run` itself is tested in the default suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("research_agent.py", "saved the 2 with at least 50 points"),
        ("assistant_agent.py", "['desk', 'chair']"),
        ("orchestrator_agent.py", "Paragraph: (a fact about Python 3.13)"),
        ("human_agent.py", "the human approved"),
        ("structured_agent.py", "Sentiment(sentiment='positive', score=0.92"),
        ("pool_agent.py", "handled: Handle this support ticket: late parcel"),
    ],
)
def test_example_runs_offline(script: str, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.pop("LEGION_NODE", None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "OFFLINE DEMO" in proc.stdout
    assert expected in proc.stdout

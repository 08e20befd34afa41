"""The named-pool example runs: workers under a DynamicSupervisor, found through pg, called
through `pg.call` while a killed member is replaced, and it ends without a word on stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pool.py"


def test_the_pool_example_routes_work_and_replaces_a_killed_member_quietly() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "7^2 = 49" in out
    assert "killed a worker" in out and "11^2 = 121" in out
    assert "group change: leave" in out and "group change: join" in out
    assert "'active': 4" in out
    assert done.stderr == "", done.stderr  # no traceback, no warning, at work or at shutdown

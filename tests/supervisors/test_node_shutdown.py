"""At node shutdown a supervision tree stops in order, not all at once; a script's `__main__`
supervisor subclass runs in the node."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import os
    import legion

    LOG = os.environ["SUP_TEST_LOG"]  # the zygote and node import this script too: no argv

    class Worker(legion.Server):
        def init(self, tag):
            legion.trap_exit(True)
            self.tag = tag

        def handle_call(self, request, from_):
            return self.tag

        def terminate(self, reason):
            with open(LOG, "a") as log:
                log.write(f"{self.tag} {reason}\\n")

    class Tree(legion.Supervisor):
        def init(self, arg):
            inner = legion.child_spec(Inner, None, id="inner")
            children = [legion.child_spec(Worker, t, id=t) for t in ("a", "b")]
            return legion.SupervisorSpec(children=[*children, inner])

    class Inner(legion.Supervisor):
        def init(self, arg):
            return [legion.child_spec(Worker, t, id=t) for t in ("c", "d")]

    if __name__ == "__main__":
        start = legion.start_link if os.environ["SUP_TEST_START"] == "link" else legion.start
        sup = start(Tree, None)
        inner = [c.pid for c in legion.Supervisor.which_children(sup) if c.id == "inner"][0]
        assert [legion.call(c.pid, "tag") for c in legion.Supervisor.which_children(inner)] == [
            "c", "d"
        ]
        legion.shutdown()
    """
)


@pytest.mark.parametrize("start", ["link", "nolink"])
def test_node_shutdown_stops_a_tree_in_reverse_start_order(tmp_path: Path, start: str) -> None:
    """Linked to the application, the tree stops when the application's connection ends; not
    linked, when the node stops. Either way the supervisors stop their children in order."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    log = tmp_path / "log"
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SUP_TEST_LOG": str(log), "SUP_TEST_START": start},
    )
    assert done.returncode == 0, done.stderr
    assert log.read_text().split("\n")[:-1] == [
        "d shutdown",
        "c shutdown",
        "b shutdown",
        "a shutdown",
    ]

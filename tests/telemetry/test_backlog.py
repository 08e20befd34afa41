"""An application that attached a handler and stopped talking to the node: the node stops
forwarding it events once TELEMETRY_BACKLOG bytes are unread, and counts what it dropped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

HERE = Path(__file__).parent

QUIET = textwrap.dedent(
    """
    import time
    from legion import telemetry
    telemetry.attach("quiet", None, lambda *args: None)
    print("ready", flush=True)
    time.sleep(600)  # never reads the node again
    """
)

LOUD = textwrap.dedent(
    """
    import legion
    from telemetry_agents import Emitter
    pid = legion.start_link(Emitter)
    legion.cast(pid, ["burst", 12000, 2000])  # about 24 MB of events
    assert legion.call(pid, "counted?") == "done"
    legion.stop(pid)
    """
)


def counters(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name in ("legion_telemetry_dropped", "legion_telemetry_events")
    }


def test_a_quiet_application_costs_the_node_a_bounded_backlog(tmp_path: Path) -> None:
    path = str(tmp_path / "node.sock")
    node = subprocess.Popen(
        [sys.executable, "-m", "legion", "node", "--socket", path, "--metrics-port", "0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert node.stderr is not None
    port = 0
    while not port:
        line = node.stderr.readline()
        assert line, "the node exited"
        if "/metrics on" in line:
            port = int(line.rsplit(":", 1)[1].split("/")[0])
    env = {**os.environ, "LEGION_NODE": path}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    quiet = subprocess.Popen(
        [sys.executable, "-c", QUIET], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert quiet.stdout is not None and quiet.stdout.readline().strip() == "ready"
        subprocess.run([sys.executable, "-c", LOUD], env=env, check=True, timeout=120)
        seen = counters(port)
        assert seen["legion_telemetry_events"] >= 12000  # every event was counted
        # what the quiet application left unread stopped at the cap: the rest was dropped
        assert 12000 - 5000 <= seen["legion_telemetry_dropped"] <= 12000 - 3000, seen
    finally:
        quiet.kill()
        quiet.wait()
        assert quiet.stdout is not None
        quiet.stdout.close()
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        node.stderr.close()

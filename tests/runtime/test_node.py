"""The node controller's life cycle: embedded and service nodes, no orphans (L12, X1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import legion

    class Worker(legion.Server):
        def handle_call(self, request, from_):
            return os.getpid()

    if __name__ == "__main__":
        pids = [legion.spawn(Worker) for _ in range(3)]
        report = {
            "workers": [legion.call(p, "ospid") for p in pids],
            "node": legion.supervisor.client.current().node_process.pid,
        }
        print(json.dumps(report), flush=True)
        if sys.argv[1] == "wait":
            sys.stdin.read()
    """
)


def _run(
    tmp_path: Path, mode: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict]:  # type: ignore[type-arg]
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the application script failed"
    return proc, json.loads(line)


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    """Pids still running after `seconds`. A zombie has ended (init reaps orphans late)."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + seconds
    while True:
        alive = [p for p in procs if _running(p)]
        remaining = deadline - time.monotonic()
        if not alive or remaining <= 0:
            return [p.pid for p in alive]
        psutil.wait_procs(alive, timeout=min(remaining, 0.05))


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_classes_of_a_script_run_under_its_main_guard_and_everything_stops_at_exit(
    tmp_path: Path,
) -> None:
    proc, report = _run(tmp_path, "exit")
    assert proc.wait(30) == 0
    assert len(set(report["workers"])) == 3
    assert _gone_within([*report["workers"], report["node"]], 5) == []


def test_L12_when_the_node_dies_every_process_dies_within_a_second(tmp_path: Path) -> None:
    proc, report = _run(tmp_path, "wait")
    # the agent zygote, the workers, and the sandbox zygote the agent zygote started
    descendants = [c.pid for c in psutil.Process(report["node"]).children(recursive=True)]
    assert len(descendants) >= 5
    os.kill(report["node"], signal.SIGKILL)
    assert _gone_within(descendants, 1.0) == []
    proc.communicate("", timeout=30)


def test_when_the_application_is_killed_its_embedded_node_stops_everything(tmp_path: Path) -> None:
    proc, report = _run(tmp_path, "wait")
    proc.kill()
    proc.wait()
    assert _gone_within([*report["workers"], report["node"]], 10) == []
    assert proc.stdout is not None
    proc.stdout.close()
    assert proc.stdin is not None
    proc.stdin.close()


def test_a_script_without_a_main_guard_gets_a_clear_spawn_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import legion

            class Worker(legion.Server):
                pass

            try:
                legion.spawn(Worker)
            except legion.SpawnError as exc:
                print(exc)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert "if __name__ == '__main__'" in out.stdout, out.stdout + out.stderr


def test_a_service_node_outlives_its_applications(tmp_path: Path) -> None:
    path = str(tmp_path / "node.sock")
    node = subprocess.Popen(
        [sys.executable, "-m", "legion", "node", "--socket", path],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert node.stderr is not None
    assert "listening on" in node.stderr.readline()
    try:
        env = {**os.environ, "LEGION_NODE": path}
        first = textwrap.dedent(
            """
            import legion, procs
            legion.spawn(procs.Probe, {}, name="kept")
            """
        )
        second = textwrap.dedent(
            """
            import legion
            pid = legion.whereis("kept")
            print(legion.call(pid, ("echo", "from the second app")))
            """
        )
        here = str(Path(__file__).parent)
        env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
        subprocess.run([sys.executable, "-c", first], env=env, check=True, timeout=60)
        out = subprocess.run(
            [sys.executable, "-c", second], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "from the second app", out.stderr
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
        node.stderr.close()
    assert not os.path.exists(path)


def test_joining_a_missing_node_is_a_clear_error(tmp_path: Path) -> None:
    code = (
        "import legion\ntry:\n    legion.self()\nexcept legion.NodeUnavailable as e:\n    print(e)"
    )
    env = {**os.environ, "LEGION_NODE": str(tmp_path / "missing.sock")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert "legion node --socket" in out.stdout


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_shutdown_stops_the_embedded_node_and_the_next_call_starts_a_new_one(
    tmp_path: Path,
) -> None:
    script = tmp_path / "again.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, json, legion

            class Worker(legion.Server):
                def handle_call(self, request, from_):
                    return os.getpid()

            if __name__ == "__main__":
                first = legion.call(legion.spawn(Worker), "ospid")
                node = legion.supervisor.client.current().node_process.pid
                legion.shutdown()
                second = legion.call(legion.spawn(Worker), "ospid")
                print(json.dumps([first, node, second]))
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    first, node, second = json.loads(out.stdout)
    assert first != second
    assert _gone_within([first, node], 5) == []

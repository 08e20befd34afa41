"""`legion dev app.py`: the script's folder is on sys.path as under `python app.py`, a save of
a sibling module reaches the live agent, and one line says what was reloaded."""

from __future__ import annotations

import ast
import os
import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from legion import cli

TOOLS = '''
import legion

class Weather(legion.Tool):
    """Looks up the weather."""

    def forecast(self, city: str) -> str:
        """Tomorrow's forecast for a city."""
        return "WORD in " + city
'''

AGENTS = '''
import legion
from my_tools import Weather

class Forecaster(legion.Agent):
    """Answers questions about the weather."""

    tools = [Weather]
'''

APP = """
import sys
import legion
from legion import testing
from legion.testing import eval_and_complete
from my_agents import Forecaster  # a sibling module: the script's folder must be on sys.path

if __name__ == "__main__":
    with testing.ScriptedModel([eval_and_complete("Weather.forecast('Paris')")] * 3):
        agent = legion.start_link(Forecaster)
        print(repr(legion.call(agent, "weather?")), flush=True)
        sys.stdin.readline()  # the test saves my_tools.py meanwhile
        print(repr(legion.call(agent, "weather?")), flush=True)
        fresh = legion.start_link(Forecaster)
        print(repr(legion.call(fresh, "weather?")), flush=True)
        for pid in (agent, fresh):
            legion.unlink(pid)
            legion.stop(pid)
"""


def test_legion_dev_imports_siblings_and_reloads_a_saved_tool_module(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_tools.py").write_text(textwrap.dedent(TOOLS.replace("WORD", "sunny")))
    (project / "my_agents.py").write_text(textwrap.dedent(AGENTS))
    (project / "app.py").write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if k not in ("LEGION_NODE", "PYTHONPATH")}
    app = subprocess.Popen(
        [sys.executable, "-m", "legion", "dev", "project/app.py"], cwd=tmp_path, env=env,
        text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdin, stdout, stderr = app.stdin, app.stdout, app.stderr
    assert stdin is not None and stdout is not None and stderr is not None
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    seen_err: list[str] = []

    def pump(stream: object, into: queue.Queue[str]) -> None:
        for text in stream:  # type: ignore[attr-defined]
            into.put(text.rstrip("\n"))

    readers = [
        threading.Thread(target=pump, args=(stdout, out)),
        threading.Thread(target=pump, args=(stderr, err)),
    ]
    for reader in readers:
        reader.start()

    def reload_line() -> str:
        while True:
            text = err.get(timeout=60)  # a hung script fails the test instead of hanging it
            seen_err.append(text)
            if text.startswith("legion: reloaded"):
                return text

    try:
        first = out.get(timeout=60)
        (project / "my_tools.py").write_text(textwrap.dedent(TOOLS.replace("WORD", "raining")))
        summary = reload_line()
        stdin.write("go\n")
        stdin.flush()
        second = out.get(timeout=60)
        third = out.get(timeout=60)
        app.wait(60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        stdin.close()
        for reader in readers:
            reader.join(10)
        stdout.close()
        stderr.close()
    while not err.empty():
        seen_err.append(err.get())
    assert ast.literal_eval(first) == "sunny in Paris", seen_err
    assert summary == "legion: reloaded my_tools: 1 process switched to the new code"
    assert ast.literal_eval(second) == "raining in Paris"  # the live agent's tool changed
    assert ast.literal_eval(third) == "raining in Paris"  # and an agent started after the save
    assert app.returncode == 0, seen_err


def test_legion_help_lists_dev(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    assert "legion dev app.py" in help_text and "hot reload" in help_text
    assert "dev " in help_text.split("positional arguments:")[1]


def test_legion_dev_names_a_missing_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["dev", "no/such/app.py"]) == 2
    assert "no such script: no/such/app.py" in capsys.readouterr().err


SERVER_MODULE = """
import legion

class Echo(legion.Server):
    def handle_call(self, request, from_):
        return request
"""

FORKING_APP = """
import sys
import legion
from my_server import Echo

if __name__ == "__main__":
    print(legion.call(legion.start(Echo), "before"), flush=True)
    sys.stdin.readline()  # the test saves a broken my_server.py meanwhile
    print(legion.call(legion.start(Echo), "after"), flush=True)  # forked after the save
"""


def test_legion_dev_reports_a_syntax_error_in_one_line(tmp_path: Path) -> None:
    """The watcher names the file and line; the zygote, which meets the same broken file at the
    next fork, does not report it a second time."""
    (tmp_path / "my_server.py").write_text(textwrap.dedent(SERVER_MODULE))
    (tmp_path / "app.py").write_text(textwrap.dedent(FORKING_APP))
    env = {k: v for k, v in os.environ.items() if k not in ("LEGION_NODE", "PYTHONPATH")}
    app = subprocess.Popen(
        [sys.executable, "-m", "legion", "dev", "app.py"], cwd=tmp_path, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdin, stdout, stderr = app.stdin, app.stdout, app.stderr
    assert stdin is not None and stdout is not None and stderr is not None
    err: queue.Queue[str] = queue.Queue()
    seen_err: list[str] = []
    reader = threading.Thread(target=lambda: [err.put(t.rstrip("\n")) for t in stderr])
    reader.start()
    try:
        assert stdout.readline().strip() == "before"
        (tmp_path / "my_server.py").write_text("import legion\n\nclass Echo(legion.Server:\n")
        while not seen_err or not seen_err[-1].startswith("legion: "):
            seen_err.append(err.get(timeout=60))  # the watcher's report
        stdin.write("go\n")
        stdin.flush()
        after = stdout.readline().strip()
        app.wait(60)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        stdin.close()
        reader.join(10)
        stdout.close()
        stderr.close()
    while not err.empty():
        seen_err.append(err.get())
    assert after == "after"  # the new process runs the old code
    assert app.returncode == 0, seen_err
    path = tmp_path / "my_server.py"
    assert seen_err == [
        f"legion: {path}:3: SyntaxError: invalid syntax; my_server keeps its old code"
    ]

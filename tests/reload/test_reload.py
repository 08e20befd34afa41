"""Hot reload: `legion.reload` with real files rewritten on disk while processes run."""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import legion
from legion import testing
from legion.testing import eval_and_complete

SERVER = """
import legion

class Counter(legion.Server):
    vsn = {vsn}

    def init(self, arg):
        self.n = 0

    def handle_call(self, request, from_):
        self.n += 1
        return ("v{vsn}", self.n)
"""

TOOLS = '''
import legion

class Greeter(legion.Tool):
    """Greets people."""

    def __init__(self):
        self.calls = 0

    def {fn}(self, name: str) -> str:
        """Say hello ({tag})."""
        self.calls += 1
        return "{tag} " + name + " " + str(self.calls)
'''

AGENT = '''
import legion
from {tools} import Greeter

class Host(legion.Agent):
    """Hosts guests."""
    tools = [Greeter]
    config = {{"binding_scope": "conversation"}}
'''


@pytest.fixture
def mods(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    tag = tmp_path.name[-8:].replace("-", "_")
    sys.path.insert(0, str(tmp_path))
    yield tag, tmp_path
    sys.path.remove(str(tmp_path))
    for name in list(sys.modules):
        if name.endswith(tag):
            sys.modules.pop(name, None)


def _write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def test_a_live_server_switches_and_keeps_state_and_new_spawns_run_new_code(
    mods: tuple[str, Path],
) -> None:
    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1))
    module = importlib.import_module(name)
    pid = legion.start(module.Counter)
    assert legion.call(pid, "x") == ["v1", 1]
    _write(d / f"{name}.py", SERVER.format(vsn=2) + "\n# longer\n")
    result = legion.reload([name])
    assert result.reloaded == [pid] and result.failed == {}
    assert legion.call(pid, "x") == ["v2", 2]  # new code, kept state
    fresh = legion.start(sys.modules[name].Counter)
    assert legion.call(fresh, "x") == ["v2", 1]  # forked from a zygote with the new code
    legion.stop(pid)
    legion.stop(fresh)


def test_a_syntax_error_is_reported_and_the_old_code_keeps_running(
    mods: tuple[str, Path],
) -> None:
    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1))
    module = importlib.import_module(name)
    pid = legion.start(module.Counter)
    events: list[dict] = []  # type: ignore[type-arg]
    legion.telemetry.attach(
        "reload-test", [legion.telemetry.RELOAD], lambda e, m, meta, c: events.append(meta)
    )
    _write(d / f"{name}.py", "this is not python(")
    with pytest.raises(legion.ReloadError) as caught:
        legion.reload([name])
    path = d / f"{name}.py"
    assert str(caught.value) == (
        f"cannot reload {name}: SyntaxError: '(' was never closed (at {path}:1); the old code "
        "keeps running"
    )
    assert caught.value.line() == (  # what `legion dev` prints: one line, file:line first
        f"legion: {path}:1: SyntaxError: '(' was never closed; {name} keeps its old code"
    )
    assert legion.call(pid, "x") == ["v1", 1]
    fresh = legion.start(module.Counter)
    assert legion.call(fresh, "x") == ["v1", 1]
    legion.telemetry.detach("reload-test")
    assert events and events[-1]["outcome"] == "error"  # emitted in the application: at once
    assert f"{name}" in events[-1]["modules"] and "SyntaxError" in events[-1]["error"]
    legion.stop(pid)
    legion.stop(fresh)


def test_an_agent_finishes_its_turn_on_old_code_then_switches_keeping_state(
    mods: tuple[str, Path],
) -> None:
    tag, d = mods
    tools, agent = f"tools_{tag}", f"agent_{tag}"
    _write(d / f"{tools}.py", TOOLS.format(fn="hello", tag="old"))
    _write(d / f"{agent}.py", AGENT.format(tools=tools))
    module = importlib.import_module(agent)
    entered, release = threading.Event(), threading.Event()

    def model(request: testing.Request) -> dict:  # type: ignore[type-arg]
        task = request.messages[-1]["content"]
        if "hold" in task:
            entered.set()
            release.wait(10)
        if "second" in task:
            return eval_and_complete("kept + Greeter.hi('b')")
        if "new" in task:
            return eval_and_complete("kept = Greeter.hello('a')\nkept")
        return eval_and_complete("kept = Greeter.hello('a')\nkept")

    with testing.FunctionModel(model):
        pid = legion.start_link(module.Host)
        assert legion.call(pid, "first") == "old a 1"
        _write(d / f"{tools}.py", TOOLS.format(fn="hi", tag="new"))
        out: dict[str, object] = {}
        turn = threading.Thread(target=lambda: out.update(r=legion.call(pid, "hold it", 10)))
        turn.start()
        assert entered.wait(10)
        done: dict[str, object] = {}
        rel = threading.Thread(target=lambda: done.update(r=legion.reload([tools, agent])))
        rel.start()
        rel.join(0.5)
        assert rel.is_alive()  # waits for the turn in flight
        release.set()
        turn.join(10)
        rel.join(10)
        assert out["r"] == "old a 2"  # the turn in flight ran on the old code
        result = done["r"]
        assert isinstance(result, legion.ReloadResult) and result.reloaded == [pid]
        # new tool code, same tool instance (calls counter) and bindings (`kept`)
        assert legion.call(pid, "second") == "old a 2new b 3"
        system = legion.get_messages(pid)[0]["content"]
        assert "hi(" in system and "hello(" not in system
        legion.stop(pid)


def test_a_save_is_reloaded_by_the_watcher(mods: tuple[str, Path]) -> None:
    """`legion.configure(reload=True)` / `legion dev`: saving the file is enough."""
    from legion.reload import watch

    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1))
    module = importlib.import_module(name)
    pid = legion.start(module.Counter)
    assert pid is not None
    assert legion.call(pid, "x") == ["v1", 1]
    reloaded = threading.Event()
    legion.telemetry.attach("test-watch", [legion.telemetry.RELOAD], lambda *a: reloaded.set())
    watcher = watch([str(d)])
    try:
        _write(d / f"{name}.py", SERVER.format(vsn=2) + "\n# saved again\n")
        assert reloaded.wait(15), "no reload after the save"
        assert legion.call(pid, "x") == ["v2", 2]  # new code, the count survived
        assert watcher.results and watcher.results[-1].reloaded == [pid]
    finally:
        watcher.stop()
        legion.telemetry.detach("test-watch")
        legion.stop(pid)


def test_configure_reload_starts_the_watcher_and_validates_its_flag() -> None:
    from legion import config

    reload_module = importlib.import_module("legion.reload")  # `legion.reload` is the function

    with pytest.raises(legion.ConfigError, match="reload must be True or False"):
        legion.configure(reload="yes")
    saved = config.global_config()
    try:
        legion.configure(reload=True)
        watcher = reload_module._watcher
        assert watcher is not None and watcher.paths
    finally:
        if reload_module._watcher is not None:
            reload_module._watcher.stop()
            reload_module._watcher = None
        config.install_global(saved)


def test_a_supervised_server_that_cannot_switch_is_restarted_on_the_new_code(
    mods: tuple[str, Path],
) -> None:
    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1))
    module = importlib.import_module(name)
    spec = legion.SupervisorSpec(children=[legion.child_spec(module.Counter, id="c")])
    sup = legion.start_link(legion.Supervisor, spec)
    assert sup is not None
    old = legion.Supervisor.which_children(sup)[0].pid
    assert legion.call(old, "x") == ["v1", 1]
    broken_migration = (
        "\n    def code_change(self, old_vsn, extra):\n        raise ValueError('no')\n"
    )
    _write(d / f"{name}.py", SERVER.format(vsn=2) + broken_migration)
    ref = legion.monitor(old)
    result = legion.reload([name])
    assert result.restarted == [old] and old in result.failed
    assert legion.receive(timeout=10, match=lambda m: m == legion.Down(ref, old, "reload"))
    new = None
    for _ in range(500):  # the supervisor restarts it; ask until the new child is listed
        new = legion.Supervisor.which_children(sup)[0].pid
        if new not in (None, old):
            break
    assert new not in (None, old)
    assert legion.call(new, "x") == ["v2", 1]  # new code, fresh state
    legion.stop(sup, "shutdown")


def test_only_application_modules_are_reloaded_and_nothing_runs_otherwise(
    mods: tuple[str, Path],
) -> None:
    """The standard library, installed packages and Legion are refused by name, before the
    application's own module in the same request is re-executed or any process is asked."""
    import json
    import os

    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1) + "\nLOADED = object()\n")
    module = importlib.import_module(name)
    loaded, environ, dumps = module.LOADED, os.environ, json.dumps
    pid = legion.start(module.Counter)
    assert legion.call(pid, "x") == ["v1", 1]
    _write(d / f"{name}.py", SERVER.format(vsn=2) + "\nLOADED = object()\n")
    with pytest.raises(legion.ReloadError) as caught:
        legion.reload([name, "os", "json", "trio", "legion.tool", "sys"])
    message = str(caught.value)
    assert caught.value.module == "os, json, trio, legion.tool, sys"
    for part in (
        "os is part of the standard library",
        "json is part of the standard library",
        "trio is an installed package",
        "legion.tool is part of Legion",
        "sys is not loaded from a Python source file",
    ):
        assert part in message
    assert name not in message.split(":")[0]  # the application's module is not blamed
    assert os.environ is environ and json.dumps is dumps
    assert module.LOADED is loaded  # not re-executed: refused before anything ran
    assert legion.call(pid, "x") == ["v1", 2]  # the process was never asked
    assert legion.reload([name]).reloaded == [pid]  # alone, the application's module reloads
    assert legion.call(pid, "x") == ["v2", 3]
    legion.stop(pid)


@pytest.mark.parametrize(
    ("args", "error", "text"),
    [
        (([5],), TypeError, "legion.reload: modules are named by str, .*; not int 5"),
        ((None,), TypeError, "legion.reload: modules are named by str, .*not NoneType None"),
        ((["x"], None, float("nan")), ValueError, "legion.reload: timeout must be .* not nan"),
        ((["x"], None, -1), ValueError, "legion.reload: timeout must be .* not -1"),
        ((["x"], None, "3"), TypeError, "legion.reload: timeout must be .* not str '3'"),
        (("no_such_module_anywhere",), legion.ReloadError, "no such module"),
        (("no_such_package.sub",), legion.ReloadError, "no such module"),
    ],
    ids=[
        "int name",
        "no names",
        "nan timeout",
        "negative timeout",
        "str timeout",
        "unknown",
        "unknown package",
    ],
)
def test_bad_reload_arguments_are_named(args: tuple[Any, ...], error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        legion.reload(*args)


def test_the_watcher_never_maps_a_saved_library_file_to_a_reload() -> None:
    """A save under a watched folder that holds a virtualenv must not reach `reload`."""
    import json
    import os

    from legion.reload import modules_of

    assert modules_of([os.__file__, json.__file__, legion.__file__]) == []


def test_a_module_that_raises_is_named_at_its_line(mods: tuple[str, Path]) -> None:
    tag, d = mods
    name = f"counter_{tag}"
    _write(d / f"{name}.py", SERVER.format(vsn=1))
    importlib.import_module(name)
    _write(d / f"{name}.py", "import legion\n\nx = 1 / 0\n")
    with pytest.raises(legion.ReloadError) as caught:
        legion.reload([name])
    assert caught.value.location == f"{d / name}.py:3"
    assert caught.value.line() == (
        f"legion: {d / name}.py:3: ZeroDivisionError: division by zero; {name} keeps its old code"
    )

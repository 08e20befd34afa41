"""Hot reload in the layout projects use: tools in one module, agents in another that does
`from tools import Weather`, servers calling helper modules (`import helpers; helpers.f()` and
`from helpers import f`), and a package with an `__init__.py`. Real files are rewritten in a
folder on sys.path while real processes run."""

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

TOOLS_V1 = '''
import legion

class Weather(legion.Tool):
    """Looks up the weather."""

    def __init__(self):
        self.calls = 0

    def forecast(self, city: str) -> str:
        """Tomorrow's forecast for a city."""
        self.calls += 1
        return f"sunny in {city} ({self.calls})"
'''

TOOLS_V2 = '''
import legion

class Weather(legion.Tool):
    """Looks up the weather."""

    def __init__(self):
        self.calls = 0

    def forecast(self, city: str, days: int = 1) -> str:
        """The forecast for the next `days` days."""
        self.calls += 1
        return f"rain in {city} for {days} day(s) ({self.calls})"
'''

AGENTS = '''
import legion
from {tools} import Weather

class Forecaster(legion.Agent):
    """Answers questions about the weather."""

    tools = [Weather]
'''

HELPERS_V1 = """
def greeting(name):
    return "hello " + name

def shout(text):
    return text.upper()
"""

HELPERS_V2 = """
def greeting(name):
    return "good morning " + name

def shout(text):
    return text.upper() + "!"
"""

SERVERS = """
import legion
import {helpers}
from {helpers} import shout

class Greeter(legion.Server):
    def init(self, arg):
        self.seen = 0

    def handle_call(self, name, from_):
        self.seen += 1
        return [{helpers}.greeting(name), shout(name), self.seen]
"""

ASK = "Weather.forecast('Paris')"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A folder on sys.path (the zygote gets it with each spawn); module names end with a tag
    unique to the test, since the node's zygote outlives it."""
    tag = "_" + tmp_path.name[-8:].replace("-", "_")
    sys.path.insert(0, str(tmp_path))
    yield tag, tmp_path
    sys.path.remove(str(tmp_path))
    for name in list(sys.modules):
        if tag in name:
            sys.modules.pop(name, None)


def _write(path: Path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def _system_prompt(pid: legion.Pid) -> str:
    content: str = legion.get_messages(pid)[0]["content"]
    return content


def test_live_and_new_agents_and_servers_run_the_reloaded_tools_and_helpers(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    tools, agents, helpers, servers = (f"{m}{tag}" for m in ("tools", "agents", "helpers", "srv"))
    _write(d / f"{tools}.py", TOOLS_V1)
    _write(d / f"{agents}.py", AGENTS.format(tools=tools))
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{servers}.py", SERVERS.format(helpers=helpers))
    Forecaster = importlib.import_module(agents).Forecaster
    Greeter = importlib.import_module(servers).Greeter

    with testing.FunctionModel(lambda request: eval_and_complete(ASK)):
        agent = legion.start_link(Forecaster)
        server = legion.start_link(Greeter)
        assert agent is not None and server is not None
        assert legion.call(agent, "weather?") == "sunny in Paris (1)"
        assert legion.call(server, "ann") == ["hello ann", "ANN", 1]
        assert "Tomorrow's forecast" in _system_prompt(agent)

        _write(d / f"{tools}.py", TOOLS_V2)
        _write(d / f"{helpers}.py", HELPERS_V2)
        result = legion.reload([tools, helpers])

        assert sorted(map(repr, result.reloaded)) == sorted(map(repr, [agent, server]))
        assert result.failed == {} and result.restarted == []
        # the live agent: new tool code on the same tool instance (its count goes on)
        assert legion.call(agent, "weather?") == "rain in Paris for 1 day(s) (2)"
        prompt = _system_prompt(agent)
        assert "forecast(city: str, days: int = 1) -> str" in prompt
        assert "next `days` days" in prompt and "Tomorrow's forecast" not in prompt
        # the live server: `helpers.greeting()` and the `shout` it imported both changed
        assert legion.call(server, "ann") == ["good morning ann", "ANN!", 2]

        fresh_agent = legion.start_link(Forecaster)  # the application's old class object
        fresh_server = legion.start_link(Greeter)
        assert fresh_agent is not None and fresh_server is not None
        assert legion.call(fresh_agent, "weather?") == "rain in Paris for 1 day(s) (1)"
        assert "next `days` days" in _system_prompt(fresh_agent)
        assert legion.call(fresh_server, "bob") == ["good morning bob", "BOB!", 1]
        for pid in (agent, server, fresh_agent, fresh_server):
            legion.unlink(pid)
            legion.stop(pid)


def test_tools_in_a_package_reload_in_live_and_new_agents(project: tuple[str, Path]) -> None:
    tag, d = project
    package, agents = f"kit{tag}", f"crew{tag}"
    (d / package).mkdir()
    _write(d / package / "__init__.py", "from .weather import Weather\n")
    _write(d / package / "weather.py", TOOLS_V1)
    _write(d / f"{agents}.py", AGENTS.format(tools=package))
    Forecaster = importlib.import_module(agents).Forecaster

    with testing.FunctionModel(lambda request: eval_and_complete(ASK)):
        agent = legion.start_link(Forecaster)
        assert agent is not None
        assert legion.call(agent, "weather?") == "sunny in Paris (1)"
        _write(d / package / "weather.py", TOOLS_V2)
        result = legion.reload(f"{package}.weather")
        assert result.reloaded == [agent] and result.failed == {}
        assert legion.call(agent, "weather?") == "rain in Paris for 1 day(s) (2)"
        fresh = legion.start_link(Forecaster)
        assert fresh is not None
        assert legion.call(fresh, "weather?") == "rain in Paris for 1 day(s) (1)"
        assert "next `days` days" in _system_prompt(fresh)
        for pid in (agent, fresh):
            legion.unlink(pid)
            legion.stop(pid)


MIGRATING = """
import legion
import {helpers}

class Keeper(legion.Server):
    vsn = {vsn}

    def init(self, arg):
        self.n = 0

    def handle_call(self, request, from_):
        self.n += 1
        return ["v{vsn}", {helpers}.greeting("x"), self.n]

    def code_change(self, old_vsn, extra):
        {migration}
"""

WAITER = """
import legion
import {helpers}

def wait():
    message = legion.receive()
    legion.send(message, {helpers}.greeting("waiter"))
"""


def test_a_process_that_did_not_switch_is_in_failed_with_why_and_keeps_its_old_code(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, keeper, waiter = (f"{m}{tag}" for m in ("helpers", "keeper", "waiter"))
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{keeper}.py", MIGRATING.format(helpers=helpers, vsn=1, migration="pass"))
    _write(d / f"{waiter}.py", WAITER.format(helpers=helpers))
    server = legion.start(importlib.import_module(keeper).Keeper)
    function = legion.spawn(importlib.import_module(waiter).wait)
    assert legion.call(server, "x") == ["v1", "hello x", 1]

    refuse = "raise ValueError('cannot migrate from ' + repr(old_vsn))"
    _write(d / f"{keeper}.py", MIGRATING.format(helpers=helpers, vsn=2, migration=refuse))
    _write(d / f"{helpers}.py", HELPERS_V2)
    result = legion.reload([helpers, keeper])

    assert result.reloaded == [function] and result.restarted == []
    assert list(result.failed) == [server] and "cannot migrate from 1" in result.failed[server]
    # everything it loaded was put back: its own class and the helper it calls
    assert legion.call(server, "x") == ["v1", "hello x", 2]
    legion.send(function, legion.self())  # the function process, waiting, took the new helper
    assert legion.receive(timeout=10) == "good morning waiter"
    legion.stop(server)


BROKEN_AGENTS = '''
import legion
from {tools} import Weather

class Forecaster(legion.Agent):
    """Answers questions about the weather."""

    tools = [Weather, Weather]
'''


def test_an_agent_whose_new_code_fails_keeps_its_tools_and_prompt(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    tools, agents = f"tools{tag}", f"agents{tag}"
    _write(d / f"{tools}.py", TOOLS_V1)
    _write(d / f"{agents}.py", AGENTS.format(tools=tools))
    Forecaster = importlib.import_module(agents).Forecaster

    with testing.FunctionModel(lambda request: eval_and_complete(ASK)):
        agent = legion.start_link(Forecaster)
        assert agent is not None
        assert legion.call(agent, "weather?") == "sunny in Paris (1)"
        _write(d / f"{tools}.py", TOOLS_V2)
        _write(d / f"{agents}.py", BROKEN_AGENTS.format(tools=tools))
        result = legion.reload([tools, agents])
        assert result.reloaded == [] and "Weather" in result.failed[agent]
        assert legion.call(agent, "weather?") == "sunny in Paris (2)"  # all old, state kept
        assert "Tomorrow's forecast" in _system_prompt(agent)
        legion.unlink(agent)
        legion.stop(agent)


@pytest.mark.anyio
async def test_areload_switches_every_live_server_that_calls_the_helper(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, servers = f"helpers{tag}", f"srv{tag}"
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{servers}.py", SERVERS.format(helpers=helpers))
    Greeter = importlib.import_module(servers).Greeter
    pids = [await legion.astart(Greeter) for _ in range(3)]
    assert [await legion.acall(pid, "ann") for pid in pids] == [["hello ann", "ANN", 1]] * 3
    _write(d / f"{helpers}.py", HELPERS_V2)
    result = await legion.areload(helpers)
    assert sorted(map(repr, result.reloaded)) == sorted(map(repr, pids)) and not result.failed
    assert [await legion.acall(pid, "ann") for pid in pids] == [["good morning ann", "ANN!", 2]] * 3
    for pid in pids:
        await legion.astop(pid)


def test_an_agent_busy_past_the_timeout_is_in_failed_and_switches_after_its_turn(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    tools, agents = f"tools{tag}", f"agents{tag}"
    _write(d / f"{tools}.py", TOOLS_V1)
    _write(d / f"{agents}.py", AGENTS.format(tools=tools))
    Forecaster = importlib.import_module(agents).Forecaster
    entered, release = threading.Event(), threading.Event()

    def model(request: testing.Request) -> dict[str, Any]:
        if "hold" in request.messages[-1]["content"]:
            entered.set()
            release.wait(30)
        return eval_and_complete(ASK)

    with testing.FunctionModel(model):
        agent = legion.start_link(Forecaster)
        assert agent is not None
        held: dict[str, Any] = {}
        turn = threading.Thread(target=lambda: held.update(r=legion.call(agent, "hold", 30)))
        turn.start()
        assert entered.wait(30)
        _write(d / f"{tools}.py", TOOLS_V2)
        result = legion.reload(tools, timeout=0.5)
        release.set()
        turn.join(30)
        assert result.reloaded == [] and result.restarted == []
        assert "no answer within 0.5 s" in result.failed[agent]
        assert held["r"] == "sunny in Paris (1)"  # the held turn finished on the old code
        assert (
            legion.call(agent, "weather?") == "rain in Paris for 1 day(s) (2)"
        )  # then it switched
        legion.unlink(agent)
        legion.stop(agent)

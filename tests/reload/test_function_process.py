"""Hot reload reaches plain function processes (`legion.spawn(fn)`), as Erlang's processes take
new code at their next fully qualified call: one waiting in `legion.receive`/`areceive` loads
the changed modules at once, one busy elsewhere at its next receive; the loop running meanwhile
keeps its frame, and its next call through a module object (`helpers.greeting()`) runs the new
code. Processes whose code the application never imported are reached too. Real files are
rewritten in a folder on sys.path while real processes run."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import legion

HELPERS_V1 = """
def greeting(name):
    return "hello " + name
"""

HELPERS_V2 = """
def greeting(name):
    return "good morning " + name
"""

# Each worker answers [its version, helpers.greeting(text)] to [sender, text]; "hold" first
# tells the sender it is holding, then blocks reading a FIFO (busy: not in receive).
SYNC_WORKER = """
import legion
import {helpers}

def serve():
    while True:
        sender, text = legion.receive()
        if text == "hold":
            legion.send(sender, "holding")
            with open({fifo!r}) as f:
                text = f.read()
        legion.send(sender, ["{vsn}", {helpers}.greeting(text)])
"""

ASYNC_WORKER = """
import legion
import {helpers}

async def serve():
    while True:
        sender, text = await legion.areceive()
        legion.send(sender, ["{vsn}", {helpers}.greeting(text)])
"""


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


def _ask(pid: legion.Pid, text: str) -> object:
    legion.send(pid, [legion.self(), text])
    return legion.receive(timeout=10)


@pytest.mark.parametrize("source", [SYNC_WORKER, ASYNC_WORKER], ids=["receive", "areceive"])
def test_a_function_process_waiting_in_receive_switches_and_keeps_its_running_frame(
    project: tuple[str, Path], source: str
) -> None:
    tag, d = project
    helpers, worker = f"helpers{tag}", f"worker{tag}"
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{worker}.py", source.format(helpers=helpers, fifo="", vsn="v1"))
    pid = legion.spawn(importlib.import_module(worker).serve)
    assert _ask(pid, "ann") == ["v1", "hello ann"]

    _write(d / f"{helpers}.py", HELPERS_V2)
    _write(d / f"{worker}.py", source.format(helpers=helpers, fifo="", vsn="v2"))
    result = legion.reload([helpers, worker])

    assert result.reloaded == [pid] and result.failed == {} and result.restarted == []
    # its loop is the frame that was running (still "v1"); the call through the module is new
    assert _ask(pid, "ann") == ["v1", "good morning ann"]
    fresh = legion.spawn(importlib.import_module(worker).serve)
    assert _ask(fresh, "bob") == ["v2", "good morning bob"]
    legion.stop(pid)
    legion.stop(fresh)


POLLER = """
import time
import legion
import {helpers}

def poll(parent):
    legion.send(parent, "polling")
    while True:
        try:
            sender, text = legion.receive(timeout=0)
        except TimeoutError:
            time.sleep(0.005)  # its own work between two polls
            continue
        legion.send(sender, ["v1", {helpers}.greeting(text)])
"""


def test_a_function_process_polling_with_a_zero_timeout_gets_messages_and_new_code(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, worker = f"helpers{tag}", f"poller{tag}"
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{worker}.py", POLLER.format(helpers=helpers))
    pid = legion.spawn(importlib.import_module(worker).poll, legion.self())
    assert legion.receive(timeout=10) == "polling"
    assert _ask(pid, "ann") == ["v1", "hello ann"]  # `receive(timeout=0)` reads what arrived

    _write(d / f"{helpers}.py", HELPERS_V2)
    result = legion.reload(helpers)

    assert result.reloaded == [pid] and result.failed == {}
    assert _ask(pid, "ann") == ["v1", "good morning ann"]
    legion.stop(pid)


def test_a_busy_function_process_is_in_failed_and_switches_at_its_next_receive(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, worker, fifo = f"helpers{tag}", f"worker{tag}", d / "hold.fifo"
    os.mkfifo(fifo)
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{worker}.py", SYNC_WORKER.format(helpers=helpers, fifo=str(fifo), vsn="v1"))
    pid = legion.spawn(importlib.import_module(worker).serve)
    assert _ask(pid, "hold") == "holding"  # now blocked reading the FIFO, not in receive

    _write(d / f"{helpers}.py", HELPERS_V2)
    try:
        result = legion.reload(helpers, timeout=0.5)
    finally:
        with open(fifo, "w") as f:
            f.write("ann")

    assert result.reloaded == [] and result.restarted == []
    assert "no answer within 0.5 s" in result.failed[pid]
    assert "not waiting in legion.receive" in result.failed[pid]
    # the rest of that message runs before its next receive: still the old helper
    assert legion.receive(timeout=10) == ["v1", "hello ann"]
    assert _ask(pid, "ann") == ["v1", "good morning ann"]  # switched in that receive
    legion.stop(pid)


def test_a_function_process_whose_load_fails_is_in_failed_and_keeps_its_old_code(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, worker = f"helpers{tag}", f"worker{tag}"
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{worker}.py", SYNC_WORKER.format(helpers=helpers, fifo="", vsn="v1"))
    pid = legion.spawn(importlib.import_module(worker).serve)
    assert _ask(pid, "ann") == ["v1", "hello ann"]

    only_here = (
        f"import os\nif os.getpid() != {os.getpid()}:\n"
        "    raise RuntimeError('loads in the application only')\n"
    )
    _write(d / f"{helpers}.py", only_here + HELPERS_V2)
    result = legion.reload(helpers)

    assert result.reloaded == [] and result.restarted == []  # not supervised: not restarted
    assert "loads in the application only" in result.failed[pid]
    assert _ask(pid, "ann") == ["v1", "hello ann"]  # everything it loaded was put back
    legion.stop(pid)


STARTER = """
import legion

def start(parent):
    import {worker}  # only here: the application never imports it

    legion.send(parent, [legion.spawn({worker}.serve), legion.start({worker}.Greeter)])
"""

SERVER = """
import legion
import {helpers}

class Greeter(legion.Server):
    def handle_call(self, name, from_):
        return {helpers}.greeting(name)
"""


def test_processes_whose_code_the_application_never_imported_switch_too(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, worker, starter = f"helpers{tag}", f"worker{tag}", f"starter{tag}"
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(
        d / f"{worker}.py",
        SYNC_WORKER.format(helpers=helpers, fifo="", vsn="v1") + SERVER.format(helpers=helpers),
    )
    _write(d / f"{starter}.py", STARTER.format(worker=worker))
    legion.spawn(importlib.import_module(starter).start, legion.self())
    function, server = legion.receive(timeout=10)
    assert worker not in sys.modules and helpers not in sys.modules
    assert _ask(function, "ann") == ["v1", "hello ann"]
    assert legion.call(server, "bob") == "hello bob"

    _write(d / f"{helpers}.py", HELPERS_V2)
    result = legion.reload(helpers)

    assert sorted(map(repr, result.reloaded)) == sorted(map(repr, [function, server]))
    assert result.failed == {}
    assert _ask(function, "ann") == ["v1", "good morning ann"]
    assert legion.call(server, "bob") == "good morning bob"
    legion.stop(function)
    legion.stop(server)


UNRELATED = """
import legion
import trio

async def serve(parent):
    legion.send(parent, "holding")
    async with await trio.open_file({fifo!r}) as f:  # the loop stays free: a thread reads
        await f.read()
"""


def test_a_busy_process_that_never_imported_the_module_answers_at_once(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    helpers, unrelated, fifo = f"helpers{tag}", f"unrelated{tag}", d / "hold.fifo"
    os.mkfifo(fifo)
    _write(d / f"{helpers}.py", HELPERS_V1)
    _write(d / f"{unrelated}.py", UNRELATED.format(fifo=str(fifo)))
    pid = legion.spawn(importlib.import_module(unrelated).serve, legion.self())
    assert legion.receive(timeout=10) == "holding"  # busy, not in receive

    ref = legion.monitor(pid)
    _write(d / f"{helpers}.py", HELPERS_V2)
    try:
        result = legion.reload(helpers, timeout=5)
    finally:
        with open(fifo, "w") as f:
            f.write("done")

    assert result.reloaded == [] and result.failed == {}  # in neither list: it has nothing to do
    assert legion.receive(timeout=10, match=lambda m: isinstance(m, legion.Down)) == legion.Down(
        ref, pid, "normal"
    )


LABELLED = """
import legion

def label():
    return "{vsn}"

def serve():
    while True:
        sender, text = legion.receive()
        legion.send(sender, [label(), text])
"""


def test_code_change_with_reload_loads_a_function_process_own_module(
    project: tuple[str, Path],
) -> None:
    tag, d = project
    worker = f"labelled{tag}"
    _write(d / f"{worker}.py", LABELLED.format(vsn="v1"))
    pid = legion.spawn(importlib.import_module(worker).serve)
    assert _ask(pid, "ann") == ["v1", "ann"]
    _write(d / f"{worker}.py", LABELLED.format(vsn="v2"))
    assert legion.code_change(pid, reload=True) is None  # a function has no vsn
    assert _ask(pid, "ann") == ["v2", "ann"]  # its loop runs on; `label()` is the new one
    legion.stop(pid)

"""A Supervisor subclass runs inside the node controller (its module is imported there): a
module or an `init` that raises `SystemExit` (a `sys.exit("setting missing")` guard, argparse at
import) fails that start alone, with an error that names it; the node and every other process
live on."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from sup_helpers import kill_and_wait
from workers import ExitsInInit, Worker

import legion

MODULE = """
import os
import sys

import legion


class ExitsAtImport(legion.Supervisor):
    def init(self, arg):
        return legion.SupervisorSpec(children=[])


# The guard fires everywhere but in the test's own process, so in the node that hosts it.
if os.getpid() != {app_pid}:
    sys.exit("hosted_guard: LEGACY_DB_URL is not set")
"""


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ModuleType]:
    name = f"hosted_guard_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE.format(app_pid=os.getpid())))
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_a_module_exiting_at_import_in_the_node_fails_that_start_alone(
    guarded: ModuleType,
) -> None:
    bystander = legion.start_link(Worker, {})
    with pytest.raises(
        legion.SpawnError,
        match=r"cannot start ExitsAtImport in the node: .*raised SystemExit: "
        r"hosted_guard: LEGACY_DB_URL is not set",
    ):
        legion.start_link(guarded.ExitsAtImport)
    assert legion.call(bystander, ("echo", "still here")) == "still here"
    kill_and_wait(bystander)


def test_an_init_exiting_in_the_node_is_an_init_error_and_the_node_lives() -> None:
    bystander = legion.start_link(Worker, {})
    with pytest.raises(legion.InitError, match=r"SystemExit.*no children configured"):
        legion.start_link(ExitsInInit)
    assert legion.call(bystander, ("echo", "still here")) == "still here"
    kill_and_wait(bystander)

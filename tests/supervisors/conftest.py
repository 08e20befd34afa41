"""Supervisor tests share the application's connection: each starts with an empty mailbox, and
every supervisor a test starts through `sups` is stopped when it ends (if still alive)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import legion
from legion.supervisor import client


@pytest.fixture(autouse=True)
def empty_mailbox() -> None:
    endpoint = client.get()
    endpoint.sync()
    with endpoint._lock:
        endpoint.mailbox.clear()


class Sups:
    def __init__(self) -> None:
        self.started: list[legion.Pid] = []

    def start(self, children: Any = (), cls: Any = None, **flags: Any) -> legion.Pid:
        if cls is None:
            arg: Any = legion.SupervisorSpec(children=list(children), **flags)
            cls = legion.Supervisor
        else:
            arg = flags.pop("arg", None)
        pid = legion.start_link(cls, arg)
        assert pid is not None
        self.started.append(pid)
        return pid


@pytest.fixture
def sups() -> Iterator[Sups]:
    tracker = Sups()
    yield tracker
    for pid in reversed(tracker.started):
        try:
            legion.stop(pid, "shutdown", timeout=30)
        except legion.ProcessExit:
            pass

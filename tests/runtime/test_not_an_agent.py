"""The agent queries (`legion.get_messages`, `get_usage`, `pending_questions`, `respond`) sent to
a process that is not an agent are a TypeError at the caller naming the pid. The query never
reaches the server's `handle_call` (where an ordinary server crashed on it and an echoing one
returned it as the answer), so the process is untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import kill_and_wait, probe

import legion

QUERIES: list[tuple[str, Callable[[legion.Pid], Any]]] = [
    ("get_messages", lambda p: legion.get_messages(p)),
    ("get_usage", lambda p: legion.get_usage(p)),
    ("pending_questions", lambda p: legion.pending_questions(p)),
    ("respond", lambda p: legion.respond(p, "yes")),
]


class Strict(legion.Server):
    """Counts; any request that is not an int crashes it (`self.count += request`)."""

    def init(self, arg: Any) -> None:
        self.count = 0

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        self.count += request
        return self.count


class Echo(legion.Server):
    def handle_call(self, request: Any, from_: legion.From) -> Any:
        return request


def echo_calls() -> None:
    """A function process that answers every call with its request."""
    while True:
        message = legion.receive()
        if isinstance(message, legion.CallRequest):
            legion.reply(message.from_, message.request)


@pytest.mark.parametrize(("what", "ask"), QUERIES, ids=[q[0] for q in QUERIES])
@pytest.mark.parametrize("kind", ["strict", "echo", "probe", "function", "supervisor"])
def test_an_agent_query_to_a_process_that_is_not_an_agent_is_a_type_error(
    what: str, ask: Callable[[legion.Pid], Any], kind: str
) -> None:
    if kind == "supervisor":
        pid = legion.start_link(legion.Supervisor, legion.SupervisorSpec(children=[]))
    elif kind == "function":
        pid = legion.spawn(echo_calls)
    else:
        pid = probe() if kind == "probe" else legion.start(Strict if kind == "strict" else Echo)
    assert pid is not None
    with pytest.raises(TypeError, match=rf"legion\.{what}: {pid!r} is not an agent"):
        ask(pid)
    if kind == "strict":
        assert legion.call(pid, 2) == 2  # untouched: its count is as it was
    elif kind == "supervisor":
        assert legion.Supervisor.count_children(pid)["specs"] == 0
    else:
        assert legion.call(pid, ("echo", "alive")) in ("alive", ["echo", "alive"])
    kill_and_wait(pid)

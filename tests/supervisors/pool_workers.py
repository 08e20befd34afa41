"""Processes the pool tests start (importable by module path, as workers need)."""

from __future__ import annotations

import os
from typing import Any

import legion
from legion import pg


class Member(legion.Server):
    """Joins `arg["group"]`; tells `arg["owner"]` of each request it receives, then answers.

    Calls: ("echo", x) -> (its pid, x); ("die", reason) -> exits with `reason` after telling
    the owner it got the request (the request was delivered and partly handled);
    ("hang", tag) -> never answers; ("relay", x) -> another member's answer to ("echo", x)
    through `pg.call`, or "empty" if it is alone.
    """

    def init(self, arg: dict[str, Any]) -> None:
        self.owner = arg["owner"]
        group = arg["group"]  # a tuple arrives as a list, which cannot name a group
        self.group = tuple(group) if isinstance(group, list) else group
        pg.join(self.group, legion.self())

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        cmd, value = request
        legion.send(self.owner, ("got", legion.self(), value))
        if cmd == "die":
            raise legion.ProcessExit(value)
        if cmd == "hang":
            return legion.NoReply()
        if cmd == "relay":  # ask another member of its own group
            try:
                return pg.call(self.group, ("echo", value))
            except pg.EmptyGroup:
                return "empty"
        return (legion.self(), value)


class LaggingScope(legion.Server):
    """A pg scope whose view lags the node, as a real scope's does between a member's death
    and the moment it handles the `Down`: it answers `get_members` with the lists it was given,
    one per read (the last one repeats), and counts the reads.

    A real scope is a node-hosted task that handles a member's `Down` before the next request
    can reach it, so a test cannot hold it in that window; this process can.
    """

    def init(self, views: list[list[legion.Pid]]) -> None:
        self.views = views
        self.reads = 0

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request == "reads":
            return self.reads
        tag, op, *_ = request
        assert tag == "$pg" and op == "get_members", request
        view = self.views[min(self.reads, len(self.views) - 1)]
        self.reads += 1
        return ("ok", view)


class LateJoiner(legion.Server):
    """Joins group "late" in `init`. Restarted (its marker file exists), it traps exits (so the
    node's "shutdown" signal waits in its mailbox, as it does for any trapping server), tells
    the owner, then waits until the default pg scope is gone (the node is shutting down) and
    joins only then: the join meets a node that refuses to start a new scope. (A worker whose
    fork completes just as the node starts to stop meets the same node.)"""

    def init(self, arg: dict[str, Any]) -> None:
        marker = arg["marker"]
        if os.path.exists(marker):
            legion.trap_exit(True)
            legion.send(arg["owner"], "restarting")
            ref = legion.monitor("pg")
            legion.receive(match=lambda m: isinstance(m, legion.Down) and m.ref == ref)
        else:
            open(marker, "w").close()
        pg.join("late", legion.self())

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        return request


class NotAServer:
    """A class that forgot to subclass legion.Server."""

    def init(self, arg: Any) -> None:
        pass


def quick(arg: Any = None) -> None:
    """A function process: it returns at once."""


def receive_once(owner: legion.Pid) -> None:
    """Tell `owner` it is about to wait, wait for one message with a timeout of 115 days, and
    send the message back."""
    legion.send(owner, ("waiting",))
    legion.send(owner, ("received", legion.receive(timeout=1e7)))


class QuietAgent(legion.Agent):
    """Answers nothing: the tests only start and stop it."""

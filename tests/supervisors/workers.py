"""Processes the supervisor tests start; importable by module path, as workers need."""

from __future__ import annotations

import time
from typing import Any

import legion


class Worker(legion.Server):
    """A server that reports its life to `owner` and obeys commands.

    arg: {"owner": pid, "tag": any, "trap": bool, "fail": "raise"|"ignore"|None,
    "slow_stop": seconds (terminate sleeps that long), "name": register as}.
    Calls: ("echo", x), ("self",), ("unlink_parent",), ("die", reason).
    """

    def init(self, arg: Any) -> Any:
        arg = arg or {}
        self.owner = arg.get("owner")
        self.tag = arg.get("tag")
        self.slow_stop = arg.get("slow_stop")
        if arg.get("trap"):
            legion.trap_exit(True)
        if arg.get("fail") == "raise":
            raise ValueError("start failed on purpose")
        if arg.get("fail_if") and legion.whereis(arg["fail_if"]) is not None:
            raise ValueError("start failed: the switch is on")
        if arg.get("fail") == "ignore":
            return legion.Ignore()
        if arg.get("ignore_if") and legion.whereis(arg["ignore_if"]) is not None:
            return legion.Ignore()
        if self.owner is not None:
            legion.send(self.owner, ("started", self.tag, legion.self()))
        return None

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        cmd, *args = request
        if cmd == "echo":
            return args[0]
        if cmd == "self":
            return legion.self()
        if cmd == "die":
            return legion.Stop(args[0], reply="ok")
        if cmd == "unlink_parent":
            from legion.supervisor import process

            worker = process.current()
            assert worker is not None and worker.parent is not None
            legion.unlink(worker.parent)
            return "ok"
        raise ValueError(f"unknown command {cmd!r}")

    def handle_info(self, message: Any) -> Any:
        return None

    def terminate(self, reason: Any) -> None:
        if self.slow_stop:
            time.sleep(self.slow_stop)
        if self.owner is not None:
            legion.send(self.owner, ("terminated", self.tag, legion.self(), reason))


def stubborn(arg: Any) -> None:
    """Traps exits and ignores every message: only a kill ends it (a plain function process, so
    no Server loop turns the parent's exit signal into a stop)."""
    legion.trap_exit(True)
    if arg and arg.get("owner") is not None:
        legion.send(arg["owner"], ("started", arg.get("tag"), legion.self()))
    while True:
        legion.receive()


def failing_after(arg: Any) -> None:
    """A function process that ends at once with the given reason."""
    raise legion.ProcessExit(arg)


class Sup(legion.Supervisor):
    """A Supervisor subclass whose init builds its children from `arg`."""

    def init(self, arg: Any) -> Any:
        if arg == "ignore":
            return legion.Ignore()
        if arg == "garbage":
            return 42
        if arg == "raise":
            raise RuntimeError("init raised on purpose")
        if arg == "use-the-api":
            legion.self()
        return arg  # a dict of SupervisorSpec fields (children arrive as dicts)


class ExitsInInit(legion.Supervisor):
    """Its init, run in the node controller, calls `sys.exit` (a configuration guard)."""

    def init(self, arg: Any) -> Any:
        import sys

        sys.exit("exits_in_init: no children configured")


class Dyn(legion.DynamicSupervisor):
    def init(self, arg: Any) -> Any:
        return legion.DynamicSupervisorSpec(**(arg or {}))


def echo_arg(arg: Any) -> None:
    """Send ("arg", arg) to the last element of `arg` (or `arg` itself), then end."""
    owner = arg[-1] if isinstance(arg, list) else arg
    legion.send(owner, ("arg", arg))


def pg_member(arg: Any) -> None:
    """Join the groups in arg["groups"] (scope arg["scope"]), report, then wait for "stop"."""
    for group in arg["groups"]:
        legion.pg.join(group, legion.self(), scope=arg.get("scope", "pg"))
    if arg.get("monitor") is not None:
        legion.pg.monitor(arg["monitor"], scope=arg.get("scope", "pg"))
    legion.send(arg["owner"], ("joined", legion.self()))
    while legion.receive() != "stop":
        pass


class FileSup(legion.Supervisor):
    """Reads its children and flags from a JSON file each time `init` runs (for code_change).

    File: {"children": [[tag, restart(, significant)], ...], "flags": {...}} or "garbage".
    """

    vsn = 2

    def init(self, path: str) -> Any:
        import json

        with open(path) as f:
            data = json.load(f)
        if data == "garbage":
            return 42
        children = [
            legion.child_spec(
                Worker, {"tag": tag}, id=tag, restart=restart, significant=bool(rest and rest[0])
            )
            for tag, restart, *rest in data["children"]
        ]
        return legion.SupervisorSpec(children=children, **data.get("flags", {}))

"""Helpers for supervisor tests: wait for lifecycle messages, deaths and exits."""

from __future__ import annotations

from typing import Any

import legion


def wait_down(ref: legion.Ref, timeout: float = 10) -> legion.Down:
    msg: legion.Down = legion.receive(
        timeout=timeout, match=lambda m: isinstance(m, legion.Down) and m.ref == ref
    )
    return msg


def wait_exit(pid: legion.Pid, timeout: float = 10) -> legion.Exit:
    msg: legion.Exit = legion.receive(
        timeout=timeout, match=lambda m: isinstance(m, legion.Exit) and m.pid == pid
    )
    return msg


def kill_and_wait(*pids: legion.Pid) -> None:
    for pid in pids:
        ref = legion.monitor(pid)
        legion.exit(pid, "kill")
        wait_down(ref)


def started(tag: Any, timeout: float = 10) -> legion.Pid:
    """Wait for worker `tag` to report ("started", tag, pid); its pid."""
    msg = legion.receive(
        timeout=timeout, match=lambda m: isinstance(m, list) and m[:2] == ["started", tag]
    )
    pid: legion.Pid = msg[2]
    return pid


def next_started(timeout: float = 10) -> tuple[Any, legion.Pid]:
    """The next ("started", tag, pid) any worker sent, in arrival order: (tag, pid)."""
    msg = legion.receive(
        timeout=timeout, match=lambda m: isinstance(m, list) and m[:1] == ["started"]
    )
    return msg[1], msg[2]


def terminated(timeout: float = 10) -> tuple[Any, legion.Pid, Any]:
    """The next ("terminated", tag, pid, reason) a trapping worker sent from `terminate`."""
    msg = legion.receive(
        timeout=timeout, match=lambda m: isinstance(m, list) and m[:1] == ["terminated"]
    )
    return msg[1], msg[2], legion.supervisor.terms.normalize_reason(msg[3])


def nothing_pending(match: Any = None) -> bool:
    from legion.supervisor import client

    client.get().sync()
    try:
        legion.receive(timeout=0, match=match)
    except TimeoutError:
        return True
    return False


def pids(sup: legion.Pid) -> dict[Any, Any]:
    return {c.id: c.pid for c in legion.Supervisor.which_children(sup)}


def worker(tag: Any, **opts: Any) -> legion.ChildSpec:
    from workers import Worker

    arg = {"owner": legion.self(), "tag": tag}
    spec_opts = {
        k: opts.pop(k)
        for k in list(opts)
        if k in ("restart", "shutdown", "significant", "name", "type")
    }
    arg.update(opts)
    return legion.child_spec(Worker, arg, id=tag, **spec_opts)


def until(condition: Any, timeout: float = 10) -> None:
    """Poll `condition()` (each poll is a call to a supervisor, so no sleep) until it holds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"

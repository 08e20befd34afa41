"""Small helpers for runtime tests: wait for a process to be gone, receive with a filter."""

from __future__ import annotations

from typing import Any

import legion


def kill_and_wait(*pids: legion.Pid) -> None:
    """Kill each process and wait for its DOWN, so it is gone when this returns."""
    for pid in pids:
        ref = legion.monitor(pid)
        legion.exit(pid, "kill")
        legion.receive(
            timeout=10, match=lambda m, ref=ref: isinstance(m, legion.Down) and m.ref == ref
        )


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


def nothing_pending(match: Any = None) -> bool:
    """True if no matching message is in the mailbox after a node round trip (a barrier)."""
    from legion.supervisor import client

    client.get().sync()
    try:
        legion.receive(timeout=0, match=match)
    except TimeoutError:
        return True
    return False


def probe(owner: bool = True, **opts: Any) -> legion.Pid:
    from procs import Probe

    arg = dict(opts)
    if owner:
        arg["owner"] = legion.self()
    pid = legion.start(Probe, arg)
    assert pid is not None
    return pid

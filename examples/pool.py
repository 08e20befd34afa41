"""A named pool: N plain servers under a DynamicSupervisor, found through a process group.

    uv run --locked --extra dev python examples/pool.py

Each worker joins the group ("pool", name) in its own `init`, so a worker the supervisor
restarts after a crash joins again by itself, and a dead one leaves the group automatically.
Callers route work to a member of the group; nobody keeps a list of pids.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import legion


class PoolWorker(legion.Server):
    """A plain server that joins its pool's group when it starts."""

    def init(self, pool: str) -> None:
        legion.pg.join(("pool", pool), legion.self())

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request == "crash":
            raise RuntimeError("asked to crash")
        return (os.getpid(), request * request)


def start_pool(name: str, size: int) -> legion.Pid:
    """A DynamicSupervisor running `size` workers of pool `name`."""
    sup = legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec())
    assert sup is not None
    for i in range(size):
        legion.DynamicSupervisor.start_child(sup, legion.child_spec(PoolWorker, name, id=(name, i)))
    return sup


_turn = itertools.count()


def route(pool: str, request: Any) -> Any:
    """Send `request` to a member of the pool, round robin over its current members."""
    members = legion.pg.get_members(("pool", pool))
    if not members:
        raise legion.NoProc(pool, "pool member")
    return legion.call(members[next(_turn) % len(members)], request)


def main() -> None:
    sup = start_pool("squares", 4)
    print("members:", legion.pg.get_members(("pool", "squares")))
    for n in range(8):
        ospid, square = route("squares", n)
        print(f"{n}^2 = {square} (worker OS pid {ospid})")

    victim = legion.pg.get_members(("pool", "squares"))[0]
    ref, _ = legion.pg.monitor(("pool", "squares"))
    try:
        legion.call(victim, "crash")
    except legion.ProcessExit as exc:
        print("a worker crashed:", exc.reason)
    for _ in range(2):  # the crashed worker leaves; its replacement joins
        change = legion.receive(timeout=10, match=lambda m: isinstance(m, legion.GroupChange))
        print(f"group change: {change.kind} {change.pids}")
    print("members now:", legion.pg.get_members(("pool", "squares")))
    print("counts:", legion.DynamicSupervisor.count_children(sup))
    legion.pg.demonitor(ref)
    legion.stop(sup, "shutdown")


if __name__ == "__main__":
    main()

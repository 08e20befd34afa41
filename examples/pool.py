"""A named pool: N plain servers under a DynamicSupervisor, found through a process group.

    uv run --locked --extra dev python examples/pool.py

Each worker joins the group ("pool", name) in its own `init`, so a worker the supervisor
restarts joins again by itself, and a dead one leaves the group automatically. Callers send
work with `legion.pg.call(group, request)`, which calls a live member: nobody keeps a list of
pids. While a member is being replaced the group can still list it for a moment; `pg.call`
then calls another member, because the dead one never received the request. A member that dies
*after* receiving a request may have handled it, so that failure (`ProcessExit`) is the
caller's to judge: these squares are safe to ask again, a payment would not be.
"""

from __future__ import annotations

import os

import legion


class PoolWorker(legion.Server):
    """A plain server that joins its pool's group when it starts."""

    def init(self, pool: str) -> None:
        legion.pg.join(("pool", pool), legion.self())

    def handle_call(self, request: int, from_: legion.From) -> tuple[int, int]:
        return (os.getpid(), request * request)


def start_pool(name: str, size: int) -> legion.Pid:
    """A DynamicSupervisor running `size` workers of pool `name`."""
    sup = legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec())
    for i in range(size):
        legion.DynamicSupervisor.start_child(sup, legion.child_spec(PoolWorker, name, id=(name, i)))
    return sup


def square(pool: str, n: int) -> tuple[int, int]:
    """Ask a member of the pool for n². Squaring twice is harmless, so a member that died
    while handling the request is simply asked again (once); non-idempotent work would not."""
    try:
        result: tuple[int, int] = legion.pg.call(("pool", pool), n, timeout=5)
    except legion.ProcessExit as exc:
        if isinstance(exc, legion.NoProc | legion.CallTimeout):
            raise
        result = legion.pg.call(("pool", pool), n, timeout=5)
    return result


def main() -> None:
    sup = start_pool("squares", 4)
    print("members:", legion.pg.get_members(("pool", "squares")))
    for n in range(8):
        ospid, result = square("squares", n)
        print(f"{n}^2 = {result} (worker OS pid {ospid})")

    ref, _ = legion.pg.monitor(("pool", "squares"))
    victim = legion.pg.get_members(("pool", "squares"))[0]
    down = legion.monitor(victim)
    legion.exit(victim, "kill")  # as if the OS killed it: the supervisor starts a replacement
    legion.receive(timeout=10, match=lambda m: isinstance(m, legion.Down) and m.ref == down)
    print("killed a worker:", victim)
    for n in range(8, 12):  # the group may still list the victim: pg.call goes elsewhere
        ospid, result = square("squares", n)
        print(f"{n}^2 = {result} (worker OS pid {ospid})")
    for _ in range(2):  # the killed worker leaves; its replacement joins
        change = legion.receive(timeout=10, match=lambda m: isinstance(m, legion.GroupChange))
        print(f"group change: {change.kind} {change.pids}")
    print("members now:", legion.pg.get_members(("pool", "squares")))
    print("counts:", legion.DynamicSupervisor.count_children(sup))
    legion.pg.demonitor(ref)
    legion.stop(sup, "shutdown")


if __name__ == "__main__":
    main()

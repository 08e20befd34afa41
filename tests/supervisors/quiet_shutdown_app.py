"""An application that exits while its supervisor restarts a worker whose `init` joins a pg
group only after the node has begun to shut down (tests/supervisors/test_pg_call.py runs it)."""

from __future__ import annotations

import sys

from pool_workers import LateJoiner

import legion

if __name__ == "__main__":
    sup = legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec())
    arg = {"owner": legion.self(), "marker": sys.argv[1]}
    pid = legion.DynamicSupervisor.start_child(sup, legion.child_spec(LateJoiner, arg))
    assert pid is not None
    legion.exit(pid, "kill")
    assert legion.receive(timeout=30, match=lambda m: m == "restarting") == "restarting"
    print("exiting while a worker restarts", flush=True)

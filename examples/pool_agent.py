"""A pool of support agents: a DynamicSupervisor, a process group, tickets routed to members.

    uv run python examples/pool_agent.py

Each agent joins the group "support_pool" when it starts (`process_groups`), so one the
supervisor restarts joins again and a dead one leaves by itself; nobody keeps a list of pids.
`legion.pg.call` hands each ticket to a live member (another one if the first was gone before
the ticket reached it; never the same ticket twice to agents that may have started on it).
"""

from __future__ import annotations

from typing import Any

import legion
from legion.run import has_key
from legion.testing import FunctionModel, Request, returns


class SupportAgent(legion.Agent):
    """Handle a customer support ticket and answer in one sentence."""

    process_groups = ("support_pool",)


def offline_model(request: Request) -> dict[str, Any]:
    """The offline demo's model: acknowledges the ticket, naming the agent that handled it."""
    return returns(f"[{request.run_id[:6]}] handled: {request.messages[-1]['content']}")


def main() -> None:
    model = None
    if not has_key("openai:gpt-4o-mini"):
        print("*** OFFLINE DEMO: no API key; a scripted model (not an LLM) answers ***")
        model = FunctionModel(offline_model, name="offline-demo")
        model.__enter__()  # active while the specs are made: the agents inherit it
    try:
        sup = legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec())
        for i in range(3):
            legion.DynamicSupervisor.start_child(sup, SupportAgent.child_spec(id=i))
        for ticket in ["refund for order 17", "password reset", "broken zipper", "late parcel"]:
            task = f"Handle this support ticket: {ticket}"
            print(legion.pg.call("support_pool", task, timeout=None))  # a turn takes its time
        legion.stop(sup)
    finally:
        if model is not None:
            model.__exit__(None, None, None)


if __name__ == "__main__":
    main()

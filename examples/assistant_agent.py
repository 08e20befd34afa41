"""A long-lived assistant: one agent process, many turns, variables kept across turns.

uv run python examples/assistant_agent.py
"""

from __future__ import annotations

import legion
from legion.run import offline_options
from legion.testing import eval_and_complete, eval_and_continue, returns

SALES = [
    {"item": "lamp", "price": 40},
    {"item": "desk", "price": 250},
    {"item": "chair", "price": 120},
]


class DataTool(legion.Tool):
    """The shop's data."""

    def sales(self) -> list[dict]:
        """All sales: a list of {"item": str, "price": int}."""
        return SALES


class AssistantAgent(legion.Agent):
    """Help the user analyse the shop's sales data."""

    tools = [DataTool]
    config = {"share_bindings": True}  # variables survive from one turn to the next


STEPS = [
    eval_and_continue("sales = DataTool.sales()\nlen(sales)"),
    returns("There are 3 sales, loaded as `sales`."),
    eval_and_complete("[s['item'] for s in sales if s['price'] > 100]"),
    eval_and_continue("total = sum(s['price'] for s in sales)\ntotal"),
    returns("Noted: the total is 410."),
]

if __name__ == "__main__":
    pid = legion.start_link(AssistantAgent, **offline_options(STEPS))
    print(legion.call(pid, "Help me analyse the sales data"))
    print(legion.call(pid, "Now filter for items over $100"))
    legion.cast(pid, "Also compute the total")  # fire and forget; the turn runs later
    history = legion.get_messages(pid)  # answered at once, even while a turn runs
    print(f"{len(history)} messages so far")
    legion.stop(pid)

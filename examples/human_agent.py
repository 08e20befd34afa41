"""Human in the loop: the agent asks, the application answers with `legion.respond`.

uv run python examples/human_agent.py
"""

from __future__ import annotations

from typing import Any

import legion
from legion.run import offline_options
from legion.testing import eval_and_continue, returns
from legion.tools import HumanTool


class CarefulAgent(legion.Agent):
    """Delete old records, but ask a human before anything irreversible."""

    tools = [HumanTool]
    config = {"sandbox_timeout": 300.0}  # a question waits inside one evaluation

    def tool_config(self, tool: Any) -> dict[str, Any]:
        return {"timeout": 120.0} if tool is HumanTool else {}


STEPS = [
    eval_and_continue("answer = HumanTool.ask('Delete 42 records older than 2020?')\nanswer"),
    returns("Deleted 42 records (approved by the human)."),
    returns("I asked before deleting; the human approved, so I deleted 42 records."),
]

if __name__ == "__main__":
    pid = legion.start_link(CarefulAgent, **offline_options(STEPS))
    legion.cast(pid, "Clean up the old records")
    # The question arrives as a message (the default handler is the process that started it).
    question = legion.receive(
        timeout=60, match=lambda m: isinstance(m, dict) and m.get("type") == "legion.human_question"
    )
    print(f"agent {question['agent']} (run {question['run_id'][:8]}) asks: {question['question']}")
    legion.respond(pid, "Yes, proceed")
    print(legion.call(pid, "What did you do?"))  # queued behind the first turn
    legion.stop(pid)

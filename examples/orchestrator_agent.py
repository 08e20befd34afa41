"""An orchestrator that delegates to sub-agents with AgentTool.

    uv run python examples/orchestrator_agent.py

Sub-agents are linked children of the orchestrator's process: they stop when it stops.
"""

from __future__ import annotations

from typing import Any

import legion
from legion.run import offline_options
from legion.testing import FunctionModel, Request, eval_and_complete, returns
from legion.tools import AgentTool


class ResearchAgent(legion.Agent):
    """Finds facts about a topic and answers in one sentence."""


class WriterAgent(legion.Agent):
    """Writes a short paragraph from the notes it is given."""


class OrchestratorAgent(legion.Agent):
    """Plan the work, delegate research and writing to sub-agents, and return the text."""

    tools = [AgentTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        if tool is AgentTool:
            return {"agents": [ResearchAgent, WriterAgent]}
        return {}


def offline_model(request: Request) -> dict[str, Any]:
    """The offline demo's model: it answers each agent by name."""
    task = request.messages[-1]["content"]
    if request.agent == "ResearchAgent":
        return returns(f"(a fact about {task})")
    if request.agent == "WriterAgent":
        return returns(f"Paragraph: {task}")
    if len(request.messages) == 2:
        return eval_and_complete(
            "notes = AgentTool.parallel([('ResearchAgent', 'Python 3.13'),"
            " ('ResearchAgent', 'free threading')])\n"
            "AgentTool.call('WriterAgent', ' '.join(notes))"
        )
    return returns("done")


if __name__ == "__main__":
    options = offline_options([])
    if options:
        options["model"] = FunctionModel(offline_model, name="offline-demo")
    print(legion.execute(OrchestratorAgent, "Write a paragraph about Python 3.13", **options))

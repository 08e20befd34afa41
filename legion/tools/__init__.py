"""Built-in tools: `HumanTool` (ask a person) and `AgentTool` (delegate to sub-agents)."""

from __future__ import annotations

from .agent_tool import AgentTool
from .human import HumanTool

__all__ = ["AgentTool", "HumanTool"]

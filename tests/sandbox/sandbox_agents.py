"""Agents and tools the sandbox tests start in real agent processes (importable by path)."""

from __future__ import annotations

from typing import Any

import legion


class AwkwardTool(legion.Tool):
    """Accepts and returns awkward values; holds a callable as state."""

    def __init__(self) -> None:
        self.helper = lambda: "state, not a tool function"

    def echo(self, value: Any) -> str:
        """The type name of what the sandbox sent."""
        return type(value).__name__

    def deep(self) -> Any:
        """A list nested 100,000 levels deep."""
        value: list[Any] = []
        for _ in range(100_000):
            value = [value]
        return value

    def exits(self) -> None:
        """Exits as argparse does on bad input."""
        raise SystemExit(2)

    def interrupted(self) -> None:
        """Raises KeyboardInterrupt, as a library might."""
        raise KeyboardInterrupt


class SandboxAgent(legion.Agent):
    """Runs code in the sandbox for the sandbox tests."""

    tools = [AwkwardTool]
    config = {"binding_scope": "conversation", "max_retries": 2}

"""Agents and tools the agent tests start. They live in a module so agent processes import them."""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

import msgspec

import legion
from legion.tools import AgentTool, HumanTool


class MathTool(legion.Tool):
    """Arithmetic helpers."""

    def add(self, a: int, b: int) -> int:
        """Adds two numbers."""
        return a + b

    def scale(self, x: float) -> float:
        """Multiplies by the configured factor."""
        return x * self.config.get("factor", 1)

    def whoami(self) -> Any:
        """The current user from the Vault."""
        return legion.vault.get("current_user")

    def boom(self) -> None:
        """Always raises."""
        raise RuntimeError("tool exploded")

    def ask_app(self) -> Any:
        """Calls the application (its pid is in the Vault) and waits for the answer."""
        return legion.call(legion.vault.get("app"), "may I go?", timeout=30)

    def delegate(self, task: str) -> Any:
        """Runs WorkerAgent on `task` from inside this (synchronous) tool."""
        return legion.execute(WorkerAgent, task)

    def _private_helper(self) -> str:
        return "SECRET_IN_HELPER"


class SecretTool(legion.Tool):
    """Reads a secret the model must never see."""

    API_KEY = "sk-very-secret-123"

    def fetch(self) -> str:
        """Returns a public value."""
        return "public"


class DescribedTool(legion.Tool):
    """Source docstring that the override hides."""

    description = "A hand-written description of DescribedTool."

    def ping(self) -> str:
        """pong"""
        return "pong"


class ShadowedTool(legion.Tool):
    """A tool whose instance holds callables named like its method, and one of its own."""

    def __init__(self) -> None:
        self.__dict__["lookup"] = lambda *args, **kwargs: "the instance attribute"
        self.__dict__["backdoor"] = lambda: "a callable attribute"

    def lookup(self, key: str) -> str:
        """Looks `key` up."""
        return f"method:{key}"


class ShadowedAgent(legion.Agent):
    """Uses ShadowedTool."""

    tools = [ShadowedTool]


class MathAgent(legion.Agent):
    """Solves arithmetic with MathTool."""

    tools = [MathTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        if tool is MathTool:
            return {"factor": 3}
        return {}


class NoToolAgent(legion.Agent):
    """Answers questions without tools."""


class ConfiguredAgent(legion.Agent):
    """An agent with its own config."""

    config = {"model": "anthropic:claude-agent-config", "max_iterations": 4}


class ReturnOnlyAgent(legion.Agent):
    """Only returns answers."""

    action_types = ("return", "done")


class CustomPromptAgent(legion.Agent):
    """Role text that the custom prompt replaces."""

    system_prompt = "You are a custom prompt. Answer briefly."


class ConversationAgent(legion.Agent):
    """Keeps variables across turns."""

    config = {"binding_scope": "conversation"}


class SchemaAgent(legion.Agent):
    """Returns sentiment as a dict."""

    output_schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative"]},
            "score": {"type": "number"},
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"t": {"type": "string"}}},
            },
        },
        "required": ["sentiment", "score"],
    }


class Sentiment(msgspec.Struct):
    sentiment: str
    score: float


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


class StructAgent(legion.Agent):
    """Returns a Sentiment struct."""

    output_schema = Sentiment


class DataclassAgent(legion.Agent):
    """Returns a Point."""

    output_schema = Point


class TypedDictAgent(legion.Agent):
    """Returns a Movie."""

    output_schema = Movie


class SecretAgent(legion.Agent):
    """Uses a tool that holds a secret."""

    tools = [SecretTool, DescribedTool]


class ModuleToolAgent(legion.Agent):
    """Uses a plain third-party module as a tool."""

    tools = [msgspec.json]


class HumanAgent(legion.Agent):
    """Asks a human before acting."""

    tools = [HumanTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        return {"timeout": 30.0} if tool is HumanTool else {}


class ShortHumanAgent(legion.Agent):
    """Asks a human who never answers."""

    tools = [HumanTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        return {"timeout": 0.2} if tool is HumanTool else {}


class PooledAgent(legion.Agent):
    """Joins a process group when it starts."""

    process_groups = (("agents-pool", "test"),)


class WorkerAgent(legion.Agent):
    """Does one small job for an orchestrator.

    This second paragraph is not in the orchestrator's summary.
    """


class OrchestratorAgent(legion.Agent):
    """Delegates work to WorkerAgent."""

    tools = [AgentTool, MathTool]
    config = {"sandbox_timeout": 30.0}

    def tool_config(self, tool: Any) -> dict[str, Any]:
        if tool is AgentTool:
            return {"agents": [WorkerAgent]}
        return {}


class NotesTool(legion.Tool):
    """Remembers notes in the agent's Vault."""

    def remember(self, key: str, value: Any) -> str:
        """Store a note."""
        legion.vault.put(key, value)
        return "noted"

    def recall(self, key: str) -> Any:
        """Read a note back."""
        return legion.vault.get(key)


class NotesAgent(legion.Agent):
    """Keeps notes with NotesTool."""

    tools = [NotesTool]


class NotesOrchestrator(legion.Agent):
    """Delegates note taking to NotesAgent and keeps notes of its own."""

    tools = [AgentTool, NotesTool]

    def tool_config(self, tool: Any) -> dict[str, Any]:
        if tool is AgentTool:
            return {"agents": [NotesAgent]}
        return {}

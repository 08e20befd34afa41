"""AgentTool: generated code delegates to sub-agents, only those listed in `tool_config`.

``tool_config(AgentTool) -> {"agents": [ResearchAgent, WriterAgent]}``. Code names a sub-agent
by its class's short name (a string): ``AgentTool.call("ResearchAgent", "find ...")``. Sub-agents
are linked children of the calling agent, so they die with it, and the agent stops them when it
stops. `start_link` returns a handle (a string) that only this agent's code can use.
"""

from __future__ import annotations

from typing import Any

from legion.tool import Tool


class AgentTool(Tool):
    """Delegate tasks to sub-agents."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}
        self._agents = {a.__name__: a for a in self.config.get("agents", [])}

    @property  # the sub-agents depend on the config
    def description(self) -> str:  # type: ignore[override]
        import inspect

        lines = ["Your sub-agents (pass the name as a string):"]
        for name, cls in self._agents.items():
            doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0]
            lines.append(f"- {name}: {' '.join(doc.split()) or '(no docstring)'}")
        if not self._agents:
            lines.append("(none configured: every call will fail)")
        lines += [
            "",
            "class AgentTool:",
            "    def call(self, agent: str, task) -> object:",
            '        """One-shot: run a fresh sub-agent on `task` and return its result. Raises',
            '        if the sub-agent cancels. `agent` may also be a handle from start_link."""',
            "    def start_link(self, agent: str, task=None) -> str:",
            '        """Start a long-lived sub-agent (optionally working on `task` at once) and',
            '        return its handle, for call/cast in later steps."""',
            "    def cast(self, handle: str, message) -> None:",
            '        """Send a sub-agent a message without waiting for the result."""',
            "    def parallel(self, tasks: list[tuple[str, object]], timeout: float | None = None)"
            " -> list:",
            '        """Run several one-shot sub-agents at once; results in input order. Serial',
            '        calls cost N turns, parallel costs about one. `timeout` in seconds."""',
            "    def pipeline(self, steps: list[tuple[str, str]]) -> object:",
            '        """Run sub-agents in order; a step task containing "{previous}" gets the',
            '        previous result substituted. Returns the last result."""',
        ]
        return "\n".join(lines)

    def _agent(self, name: Any) -> Any:
        cls = self._agents.get(name) if isinstance(name, str) else None
        if cls is None:
            raise ValueError(f"agent {name!r} is not allowed; allowed agents: {list(self._agents)}")
        return cls

    async def call(self, agent: str, task: Any) -> Any:
        """Run `task` on a fresh sub-agent (or on a handle from start_link) and return the value."""
        from legion import agent as agent_module
        from legion.supervisor import api

        if isinstance(agent, str) and agent in self._handles:
            return await api.acall(self._handles[agent], task, None)
        return await agent_module.aexecute(self._agent(agent), task)

    async def start_link(self, agent: str, task: Any = None) -> str:
        """Start a long-lived sub-agent; returns its handle."""
        from legion import agent as agent_module

        pid = await agent_module.astart_agent(self._agent(agent), task)
        handle = f"{agent}#{len(self._handles) + 1}"
        self._handles[handle] = pid
        return handle

    def cast(self, handle: str, message: Any) -> None:
        """Send a message to a sub-agent started with start_link."""
        from legion.supervisor import api

        if handle not in self._handles:
            raise ValueError(f"unknown sub-agent handle {handle!r}; known: {list(self._handles)}")
        api.cast(self._handles[handle], message)

    async def parallel(self, tasks: list[Any], timeout: float | None = None) -> list[Any]:
        """Run one-shot sub-agents at once; results in input order. With `timeout` (seconds),
        the sub-agents still running then are stopped and the call fails."""
        from legion import agent as agent_module

        pairs = [(self._agent(name), task) for name, task in tasks]
        agent_module.check_sub_agent_room(len(pairs))  # all or none, not half a fan-out
        return await agent_module.aparallel(pairs, timeout)

    async def pipeline(self, steps: list[Any]) -> Any:
        """Run sub-agents in order, threading "{previous}" through the task texts."""
        from legion import agent as agent_module

        previous: Any = None
        for name, task in steps:
            cls = self._agent(name)
            text = task.replace("{previous}", str(previous)) if isinstance(task, str) else task
            previous = await agent_module.aexecute(cls, text)
        return previous

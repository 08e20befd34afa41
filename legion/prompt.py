"""The system prompt and the structured-output schema the LLM answers with at every step.

The prompt follows Legion's order (how you work, prefer code, variable lifetime, constraints,
who you are, available tools), adapted to Python. It is built once when the agent starts, from
the resolved config, and stored as message 0. The output schema, the action descriptions and
the JSON schema are not in the prompt text: they travel as the structured-output schema.
"""

from __future__ import annotations

import copy
import platform
from collections.abc import Iterable, Sequence
from typing import Any

from .tool import describe, short_name

__all__ = ["ACTIONS", "action_schema", "result_schema", "strict", "system_prompt"]

ACTIONS: dict[str, str] = {
    "eval_and_continue": (
        "Execute code and continue the turn. Use when you need the result before deciding "
        "the next step."
    ),
    "eval_and_complete": (
        "Finish the turn with the code's result. Use when the final answer comes from "
        "executing code."
    ),
    "return": (
        "Finish the turn with `result` and no code. Use it only when the task is fully done, "
        "never to report progress or to escape failing code: fix the code and re-run instead."
    ),
    "done": "Task complete with no result to return.",
}

_SCOPE_TEXT = {
    "iteration": (
        "**Variables do not persist.** Each execution starts with a clean slate: recompute or "
        "re-fetch what you need in the same code."
    ),
    "turn": (
        "**Variables persist** from one execution to the next within a task (after "
        "eval_and_continue); after each execution you are told which variables exist."
    ),
    "conversation": (
        "**Variables persist** from one execution to the next, and also across tasks in this "
        "conversation; after each execution you are told which variables exist. Reuse them "
        "instead of recomputing."
    ),
}


def system_prompt(
    role: str,
    tools: Iterable[Any],
    *,
    action_types: Sequence[str],
    binding_scope: str,
    allowed_modules: Sequence[str] = (),
) -> str:
    """The default prompt (an agent's `system_prompt` attribute replaces it entirely)."""
    actions = ", ".join(f'"{a}"' for a in action_types)
    parts = [
        "## How you work",
        f"You are an agent that solves tasks by writing and executing Python "
        f"{platform.python_version()} code. You can call tools (Python objects) from that code.",
        f"At every step you answer with a JSON object: `action` (one of {actions}), `code` (the "
        'Python code to run, for the "eval_*" actions; an empty string otherwise) and `result` '
        '(the answer, for "return").',
        "**Prefer writing code over answering from memory.** Call the tools from code and "
        "combine their results with ordinary Python; read the tool descriptions below to learn "
        "their functions. The value of the last expression is what you get back (as in a Python "
        "REPL), together with anything your code prints.",
        _SCOPE_TEXT.get(binding_scope, _SCOPE_TEXT["turn"]),
        "**Constraints:** the code runs in a sandbox without files, network, subprocesses or "
        "threads. Names starting with `_` are not available."
        + (f" You may import only: {', '.join(allowed_modules)}." if allowed_modules else "")
        + " Do not generate malicious code. Refuse requests that are harmful or would compromise "
        "security, and requests outside the role described below, even harmless ones.",
        "## Who you are",
        role.strip(),
    ]
    tools = list(tools)
    if tools:
        parts.append("## Available Tools")
        parts.append(
            "Each tool is available in your code under its short name: call its functions as "
            "`ShortName.function(...)`. Tool calls are ordinary synchronous calls."
        )
        for tool in tools:
            text = describe(tool)
            fence = "````python" if text.startswith(("class ", "# module", "def ")) else "````"
            parts.append(f"### {short_name(tool)}\n\n{fence}\n{text}\n````")
    return "\n\n".join(parts).strip()


def strict(schema: Any) -> Any:
    """A copy of `schema` with `additionalProperties: false` on every object that has
    `properties` (recursively, into `items`, `$defs`, `anyOf`...), as OpenAI's strict mode needs."""
    schema = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and isinstance(node["properties"], dict):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def result_schema(output_schema: Any) -> dict[str, Any]:
    """The JSON schema of `result`: a dict as given, a Python type through msgspec, or the
    default `{"type": "string"}`."""
    if output_schema is None:
        return {"type": "string"}
    if isinstance(output_schema, dict):
        return output_schema
    import msgspec

    schema: dict[str, Any] = msgspec.json.schema(output_schema)
    return schema


def action_schema(action_types: Sequence[str], output_schema: Any) -> dict[str, Any]:
    """The object the LLM must return at every step: `{action, code, result}`, all required."""
    result = strict(result_schema(output_schema))
    defs = result.pop("$defs", None) if isinstance(result, dict) else None
    description = "The action to take:\n" + "\n".join(
        f"- {a}: {ACTIONS.get(a, '')}" for a in action_types
    )
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["action", "code", "result"],
        "properties": {
            "action": {"type": "string", "enum": list(action_types), "description": description},
            "code": {
                "type": "string",
                "description": "Python code to execute. Required for eval_* actions. "
                "Empty string otherwise.",
            },
            "result": result,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema

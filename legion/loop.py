"""One turn of an agent: Legion's executor loop (research/legion.md §3), in Python.

Each step is one structured-output call returning `{action, code, result}`:

* `return` ends the turn with `result` (validated against `output_schema`; a mismatch is a
  retry); `done` ends it with None;
* `eval_and_continue` runs `code` in the sandbox and feeds the value (and printed output) back;
  `eval_and_complete` runs it and ends the turn with its value;
* anything else (no `action`, an action the agent does not allow, an eval with empty code, a
  provider error, code that raises) is a failure, fed back as a user message.

Counters: `iteration` grows only after a successful `eval_and_continue`, which also resets
`retries`; the loop cancels with "reached_max_iterations" when `iteration >= max_iterations` at
the top of a step, and with "reached_max_retries" when a failure comes with `retries >=
max_retries` (that last failure is not appended). The history keeps everything, cancels too.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import telemetry
from .llm import LLMError, Usage

__all__ = [
    "CURRENT_ACTION",
    "Conversation",
    "TurnSettings",
    "eval_failure",
    "eval_success",
    "normalize_message",
    "run_turn",
    "truncate",
    "validate_result",
]

CURRENT_ACTION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "legion_current_action", default=None
)
"""The action whose code is running (tools such as HumanTool look at it)."""

EVAL_ACTIONS = ("eval_and_continue", "eval_and_complete")


def truncate(text: str, limit: float) -> str:
    """Cut `text` to `limit` UTF-8 bytes without splitting a character, and say how much went."""
    if math.isinf(limit):
        return text
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    kept = data[: int(limit)].decode("utf-8", "ignore")
    dropped = len(data) - len(kept.encode("utf-8"))
    return f"{kept}\n\n[... truncated {dropped} bytes ...]"


def normalize_message(message: Any, limit: float) -> Any:
    """A task as message content, as in Legion: text (truncated); `("image", bytes, media_type)`
    and `("image_url", url)` as one image part; `("multipart", parts)` passed through untouched;
    anything else as its repr (truncated)."""
    if isinstance(message, str):
        return truncate(message, limit)
    if isinstance(message, list | tuple) and message and isinstance(message[0], str):
        tag = message[0]
        if tag == "image" and len(message) == 3 and isinstance(message[1], bytes):
            import base64

            url = f"data:{message[2]};base64,{base64.b64encode(message[1]).decode()}"
            return [{"type": "image_url", "image_url": {"url": url}}]
        if tag == "image_url" and len(message) == 2 and isinstance(message[1], str):
            return [{"type": "image_url", "image_url": {"url": message[1]}}]
        if tag == "multipart" and len(message) == 2 and isinstance(message[1], list | tuple):
            return list(message[1])
    return truncate(repr(message), limit)


def eval_success(
    value_repr: str,
    stdout: str,
    variables: Sequence[str],
    limit: float,
    dropped: Mapping[str, str] | None = None,
) -> str:
    text = f"Code executed successfully. Result:\n```\n{truncate(value_repr, limit)}\n```"
    if stdout:
        text += f"\n\nOutput:\n```\n{truncate(stdout, limit)}\n```"
    if variables:
        text += "\n\nAvailable variables: " + ", ".join(f"`{name}`" for name in variables)
    if dropped:
        why = "; ".join(f"`{name}`: {reason}" for name, reason in dropped.items())
        text += truncate(f"\n\nNot kept for the next step: {why}", limit)
    return text


def eval_failure(error: str, limit: float) -> str:
    return (
        f"Code execution failed:\n\n{truncate(error, limit)}\n\nPlease fix the error and try again."
    )


def llm_failure(error: str, limit: float) -> str:
    return f"LLM request failed:\n\n{truncate(error, limit)}\n\nPlease answer again."


def validate_result(value: Any, output_schema: Any) -> tuple[bool, Any]:
    """(True, value as plain data) or (False, what is wrong). A Python type goes through
    msgspec (dataclass, Struct, TypedDict...); a dict is a JSON schema; None means a string."""
    if output_schema is None:
        if isinstance(value, str):
            return True, value
        return False, f"result must be a string, got {type(value).__name__}"
    if isinstance(output_schema, dict):
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - jsonschema ships with litellm
            return True, value
        try:
            jsonschema.validate(value, output_schema)
        except jsonschema.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            at = f" at {where}" if where else ""
            return False, f"result does not match the output schema{at}: {exc.message}"
        return True, value
    import msgspec

    try:
        converted = msgspec.convert(value, output_schema)
    except msgspec.ValidationError as exc:
        return False, f"result does not match the output schema: {exc}"
    return True, msgspec.to_builtins(converted)


@dataclass(slots=True)
class Conversation:
    """What an agent keeps between turns: the history, the bindings, the usage of every request."""

    messages: list[dict[str, Any]]
    bindings: Any = None
    usage: list[Usage] = field(default_factory=list)


@dataclass(slots=True)
class TurnSettings:
    config: dict[str, Any]
    action_types: Sequence[str]
    schema: dict[str, Any]
    output_schema: Any
    validate_complete: bool
    ask: Callable[[list[dict[str, Any]], dict[str, Any]], Awaitable[tuple[Any, Usage]]]
    evaluate: Callable[[str, Any], Awaitable[Any]]
    agent_name: str = "Agent"
    on_step: Callable[[dict[str, Any]], Any] | None = None


class _Failure(Exception):
    def __init__(self, text: str) -> None:
        self.text = text


async def run_turn(conv: Conversation, message: Any, s: TurnSettings) -> tuple[str, Any]:
    """Run one turn; returns ("ok", value) or ("cancel", reason). Updates `conv` in place."""
    cfg = s.config
    limit = cfg["max_message_length"]
    scope = cfg["binding_scope"]
    conv.messages.append({"role": "user", "content": normalize_message(message, limit)})
    bindings = conv.bindings if scope == "conversation" else None
    iteration = retries = 0
    try:
        while True:
            if iteration >= cfg["max_iterations"]:
                return "cancel", "reached_max_iterations"
            step: dict[str, Any] = {"action": None}
            with telemetry.span(
                telemetry.ITERATION,
                {"agent": s.agent_name, "iteration": iteration, "retries": retries},
            ) as info:
                try:
                    outcome = await _step(conv, s, iteration, bindings, step)
                except _Failure as failure:
                    info["action"] = step["action"]
                    info["outcome"] = "failure"
                    info["retried"] = retries < cfg["max_retries"]
                    if retries >= cfg["max_retries"]:
                        return "cancel", "reached_max_retries"
                    conv.messages.append({"role": "user", "content": failure.text})
                    retries += 1
                    continue
                info["action"] = step["action"]
                info["outcome"] = outcome[0]
            kind, value, new_bindings = outcome
            if kind == "continue":
                bindings = None if scope == "iteration" else new_bindings
                iteration += 1
                retries = 0
                continue
            if kind == "complete" and new_bindings is not None and scope != "iteration":
                bindings = new_bindings
            return "ok", value
    finally:
        conv.bindings = bindings if scope != "iteration" else None


async def _step(
    conv: Conversation, s: TurnSettings, iteration: int, bindings: Any, step: dict[str, Any]
) -> tuple[str, Any, Any]:
    limit = s.config["max_message_length"]
    try:
        obj, usage = await s.ask(conv.messages, {"iteration": iteration})
    except LLMError as exc:
        raise _Failure(llm_failure(str(exc), limit)) from None
    conv.usage.append(usage)
    conv.messages.append({"role": "assistant", "content": json.dumps(obj, default=repr)})
    if s.on_step is not None:
        s.on_step({"iteration": iteration, "object": obj})
    if not isinstance(obj, dict) or "action" not in obj:
        raise _Failure(
            eval_failure(f"Response missing required 'action' field, got: {obj!r}", limit)
        )
    action = obj["action"]
    step["action"] = action if isinstance(action, str) else repr(action)
    if action not in s.action_types:
        raise _Failure(
            eval_failure(
                f"Action {action!r} is not allowed for {s.agent_name}. "
                f"Allowed: {list(s.action_types)}",
                limit,
            )
        )
    if action == "done":
        return "done", None, None
    if action == "return" and "result" in obj:
        ok, value = validate_result(obj["result"], s.output_schema)
        if not ok:
            raise _Failure(eval_failure(value, limit))
        return "return", value, None
    code = obj.get("code")
    if action in EVAL_ACTIONS and isinstance(code, str) and code != "":  # only "" is no code
        token = CURRENT_ACTION.set(action)
        try:
            ev = await s.evaluate(code, bindings)
        finally:
            CURRENT_ACTION.reset(token)
        if s.on_step is not None:
            s.on_step({"iteration": iteration, "evaluation": ev})
        if not ev.ok:
            error = ev.error
            if ev.traceback and ev.error_kind == "exception":
                error = f"{ev.error}\n\n{ev.traceback.strip()}"
            if ev.stdout:
                error += f"\n\nOutput before the error:\n{ev.stdout}"
            raise _Failure(eval_failure(error, limit))
        if action == "eval_and_complete":
            value = ev.value
            if s.validate_complete:
                ok, value = validate_result(ev.value, s.output_schema)
                if not ok:
                    raise _Failure(eval_failure(value, limit))
            return "complete", value, ev.bindings
        names: Sequence[str] = ()
        dropped: Mapping[str, str] = {}
        if s.config["binding_scope"] != "iteration" and ev.bindings is not None:
            names, dropped = ev.bindings.names, ev.dropped_reasons
        content = eval_success(ev.value_repr, ev.stdout, names, limit, dropped)
        conv.messages.append({"role": "user", "content": content})
        return "continue", None, ev.bindings
    raise _Failure(eval_failure(f"Unexpected action: {obj!r}", limit))

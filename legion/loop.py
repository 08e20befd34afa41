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

Provider errors (research/legion.md §3.3 feeds them all back) are split: a transient one (rate
limit, 5xx, timeout) is fed back like any failure, and the next request waits a backoff first
(`llm_backoff`, doubled per retry, a provider's Retry-After honoured); one that asking again
cannot fix (`ProviderError`: bad key, unknown model) cancels the turn at once with
"provider_error". A cancel always carries the last error the turn saw.
"""

from __future__ import annotations

import contextvars
import json
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import telemetry
from .llm import LLMError, ProviderError, Usage

__all__ = [
    "CURRENT_ACTION",
    "Conversation",
    "TurnSettings",
    "backoff_delay",
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

MAX_BACKOFF = 8.0
"""The longest wait (seconds, before jitter) between two requests after a transient provider
error; litellm's own cap. A provider's Retry-After up to 60 s is honoured instead."""


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
    """The success feedback. The value, the printed output, the variable names and the values
    not kept share `limit` bytes (each part keeps what it needs, the long ones split the rest),
    so the whole message stays within `limit` plus its fixed framing and truncation notes."""
    names = ", ".join(f"`{name}`" for name in variables)
    why = "; ".join(f"`{name}`: {reason}" for name, reason in (dropped or {}).items())
    sizes = [len(part.encode("utf-8", "replace")) for part in (value_repr, stdout, names, why)]
    value_room, stdout_room, names_room, why_room = _share(limit, sizes)
    text = f"Code executed successfully. Result:\n```\n{truncate(value_repr, value_room)}\n```"
    if stdout:
        text += f"\n\nOutput:\n```\n{truncate(stdout, stdout_room)}\n```"
    if variables:
        text += "\n\nAvailable variables: " + _names_within(variables, names_room)
    if why:
        text += "\n\nNot kept for the next step: " + truncate(why, why_room)
    return text


def _share(limit: float, sizes: list[int]) -> list[float]:
    """Split `limit` among parts of `sizes`: small parts keep all, big ones share the rest."""
    if math.isinf(limit) or sum(sizes) <= limit:
        return [float(size) for size in sizes]
    rooms = [0.0] * len(sizes)
    remaining = float(limit)
    pending = sorted(range(len(sizes)), key=lambda i: sizes[i])
    while pending:
        fair = remaining // len(pending)
        first = pending[0]
        if sizes[first] > fair:
            for i in pending:
                rooms[i] = fair
            break
        rooms[first] = sizes[first]
        remaining -= sizes[first]
        pending.pop(0)
    return rooms


def _names_within(variables: Sequence[str], room: float) -> str:
    """As many variable names as fit in `room` bytes, then how many more there are."""
    shown: list[str] = []
    used = 0
    for name in variables:
        item = f"`{name}`"
        cost = len(item.encode("utf-8", "replace")) + (2 if shown else 0)
        if used + cost > room:
            continue  # a shorter name further on may still fit
        shown.append(item)
        used += cost
    rest = len(variables) - len(shown)
    if not rest:
        return ", ".join(shown)
    if not shown:
        return f"{rest} (their names are too long to list within max_message_length)"
    return ", ".join(shown) + f" and {rest} more (not listed: max_message_length)"


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
    """A failed step: `text` is the feedback for the model, `error` what went wrong (kept as the
    turn's last error); `transient` asks for a backoff before the next request."""

    def __init__(
        self, text: str, error: str, *, transient: bool = False, retry_after: float | None = None
    ) -> None:
        self.text = text
        self.error = error
        self.transient = transient
        self.retry_after = retry_after


class _Fatal(Exception):
    """A step after which asking again cannot help: the turn ends at once."""

    def __init__(self, reason: str, error: str) -> None:
        self.reason = reason
        self.error = error


def backoff_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Seconds to wait before request `attempt + 1` after a transient provider error: the
    provider's Retry-After if it gave one (at most 60 s), else `base * 2**attempt` capped at
    `MAX_BACKOFF`, plus up to half again of jitter so agents do not retry in step (litellm's
    schedule). `base <= 0` disables waiting."""
    if base <= 0:
        return 0.0
    if retry_after is not None and 0 < retry_after <= 60:
        return retry_after
    delay = min(base * 2.0**attempt, MAX_BACKOFF)
    return delay * (1 + random.random() / 2)


async def run_turn(
    conv: Conversation, message: Any, s: TurnSettings
) -> tuple[str, Any, str | None]:
    """Run one turn; returns ("ok", value, None) or ("cancel", reason, last error or None).
    Updates `conv` in place."""
    cfg = s.config
    limit = cfg["max_message_length"]
    scope = cfg["binding_scope"]
    conv.messages.append({"role": "user", "content": normalize_message(message, limit)})
    bindings = conv.bindings if scope == "conversation" else None
    iteration = retries = 0
    last_error: str | None = None
    try:
        while True:
            if iteration >= cfg["max_iterations"]:
                return "cancel", "reached_max_iterations", last_error
            step: dict[str, Any] = {"action": None}
            with telemetry.span(
                telemetry.ITERATION,
                {"agent": s.agent_name, "iteration": iteration, "retries": retries},
            ) as info:
                try:
                    outcome = await _step(conv, s, iteration, bindings, step)
                except _Fatal as fatal:
                    info["action"] = step["action"]
                    info["outcome"] = "failure"
                    info["retried"] = False
                    return "cancel", fatal.reason, fatal.error
                except _Failure as failure:
                    info["action"] = step["action"]
                    info["outcome"] = "failure"
                    info["retried"] = retries < cfg["max_retries"]
                    last_error = failure.error
                    if retries >= cfg["max_retries"]:
                        return "cancel", "reached_max_retries", last_error
                    conv.messages.append({"role": "user", "content": failure.text})
                    if failure.transient:
                        await _wait(backoff_delay(retries, cfg["llm_backoff"], failure.retry_after))
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
            return "ok", value, None
    finally:
        conv.bindings = bindings if scope != "iteration" else None


async def _wait(seconds: float) -> None:
    if seconds > 0:
        import trio

        await trio.sleep(seconds)


def _failed(error: str, limit: float) -> _Failure:
    """A failure of the model's answer or its code, fed back as `Code execution failed`."""
    error = truncate(error, limit)
    return _Failure(eval_failure(error, math.inf), error)


async def _step(
    conv: Conversation, s: TurnSettings, iteration: int, bindings: Any, step: dict[str, Any]
) -> tuple[str, Any, Any]:
    limit = s.config["max_message_length"]
    try:
        obj, usage = await s.ask(conv.messages, {"iteration": iteration})
    except ProviderError as exc:
        raise _Fatal("provider_error", truncate(str(exc), limit)) from None
    except LLMError as exc:
        error = truncate(str(exc), limit)
        raise _Failure(
            llm_failure(error, math.inf),
            f"LLM request failed: {error}",
            transient=exc.transient,
            retry_after=exc.retry_after,
        ) from None
    conv.usage.append(usage)
    conv.messages.append({"role": "assistant", "content": json.dumps(obj, default=repr)})
    if s.on_step is not None:
        s.on_step({"iteration": iteration, "object": obj})
    if not isinstance(obj, dict) or "action" not in obj:
        raise _failed(f"Response missing required 'action' field, got: {obj!r}", limit)
    action = obj["action"]
    step["action"] = action if isinstance(action, str) else repr(action)
    if action not in s.action_types:
        raise _failed(
            f"Action {action!r} is not allowed for {s.agent_name}. Allowed: {list(s.action_types)}",
            limit,
        )
    if action == "done":
        return "done", None, None
    if action == "return" and "result" in obj:
        ok, value = validate_result(obj["result"], s.output_schema)
        if not ok:
            raise _failed(value, limit)
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
            raise _failed(error, limit)
        scope = s.config["binding_scope"]
        value = ev.value
        if action == "eval_and_complete" and s.validate_complete:
            ok, value = validate_result(ev.value, s.output_schema)
            if not ok:
                raise _failed(value, limit)
        # Listed only where they will exist at the next step: after a complete, next turn.
        listed = scope == "conversation" or (scope == "turn" and action == "eval_and_continue")
        names: Sequence[str] = ()
        dropped: Mapping[str, str] = {}
        if listed and ev.bindings is not None:
            names, dropped = ev.bindings.names, ev.dropped_reasons
        content = eval_success(ev.value_repr, ev.stdout, names, limit, dropped)
        conv.messages.append({"role": "user", "content": content})
        if action == "eval_and_complete":
            return "complete", value, ev.bindings
        return "continue", None, ev.bindings
    raise _failed(f"Unexpected action: {obj!r}", limit)

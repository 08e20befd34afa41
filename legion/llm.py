"""The one boundary to the model: `generate_object(model, messages, schema)` per step.

Real models go through litellm, imported on the first real call (never on `import legion`; the
import costs seconds) with the local price map, called in a worker thread so the agent's trio
loop keeps serving, and always with a timeout. Test models (`legion.testing`) live in the
application process and are reached by a runtime call, so the test sees every request.

Errors split three ways: `LLMError` (provider or transport failure, a reply without an object)
is fed back to the model as a retry; `RealModelBlocked` and `ModelFatal` are loud failures that
end the agent process, because they mean the test itself is wrong.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from legion.errors import LegionError

__all__ = ["LLMError", "ModelFatal", "RealModelBlocked", "Usage", "generate_object", "to_litellm"]


class LLMError(LegionError):
    """The model could not be asked or gave no usable object; fed back as a retry."""


class RealModelBlocked(LegionError):
    """A real LLM call was attempted while real calls are blocked (in tests)."""


class ModelFatal(LegionError):
    """A test model failed (its script ran out or its function raised): the test is wrong."""


@dataclass(slots=True)
class Usage:
    """What one request cost. `cost` is in USD when litellm knows the price, else None."""

    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    duration: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_PROVIDER = re.compile(r"^[A-Za-z0-9_\-]+$")


def to_litellm(model: str) -> str:
    """Legion's `provider:model` -> litellm's `provider/model`; `provider/model` unchanged."""
    head, sep, rest = model.partition(":")
    if sep and "/" not in head and _PROVIDER.match(head):
        return f"{head}/{rest}"
    return model


async def generate_object(
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    *,
    timeout: float,
    test_model: Any = None,
    block_real: bool = False,
    meta: dict[str, Any] | None = None,
) -> tuple[Any, Usage]:
    """Ask the model for one action object. Returns (object, usage)."""
    if test_model is not None:
        return await _ask_test_model(test_model, model, messages, schema, meta or {})
    if block_real and not os.environ.get("LEGION_ALLOW_REAL_LLM"):
        raise RealModelBlocked(
            f"a real LLM call to {model!r} was blocked: this process runs under tests. Use a "
            "legion.testing model (with ScriptedModel(...) as model: ...), or set "
            "LEGION_ALLOW_REAL_LLM=1 for an integration test."
        )
    return await _ask_litellm(model, messages, schema, timeout)


async def _ask_test_model(
    test_model: Any,
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    meta: dict[str, Any],
) -> tuple[Any, Usage]:
    from legion.supervisor import api

    pid, model_id = test_model
    started = time.monotonic()
    payload = {"model": model, "messages": messages, "schema": schema, **meta}
    answer = await api.acall(pid, ["$legion.model", model_id, payload], timeout=None)
    usage = Usage(model, duration=time.monotonic() - started)
    if "usage" in answer:
        usage.prompt_tokens = answer["usage"].get("prompt_tokens", 0)
        usage.completion_tokens = answer["usage"].get("completion_tokens", 0)
        usage.cost = answer["usage"].get("cost")
    if "fatal" in answer:
        raise ModelFatal(answer["fatal"])
    if "error" in answer:
        usage.error = answer["error"]
        raise LLMError(answer["error"])
    return answer["object"], usage


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # errors are fed back to the model, not printed
    return litellm


async def _ask_litellm(
    model: str, messages: list[dict[str, Any]], schema: dict[str, Any], timeout: float
) -> tuple[Any, Usage]:
    import trio

    litellm = await trio.to_thread.run_sync(_import_litellm)
    name = to_litellm(model)
    started = time.monotonic()
    call = functools.partial(
        litellm.completion,
        model=name,
        messages=messages,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "legion_action",
                "schema": schema,
                "strict": strict_compatible(schema),
            },
        },
        timeout=600.0 if math.isinf(timeout) else timeout,
    )
    try:
        response = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    except Exception as exc:  # provider errors are many types; all become a retry
        raise LLMError(f"{type(exc).__name__}: {exc}") from exc
    usage = Usage(model, duration=time.monotonic() - started)
    raw_usage = getattr(response, "usage", None)
    if raw_usage is not None:
        usage.prompt_tokens = getattr(raw_usage, "prompt_tokens", 0) or 0
        usage.completion_tokens = getattr(raw_usage, "completion_tokens", 0) or 0
    try:
        usage.cost = float(litellm.completion_cost(completion_response=response))
    except Exception:  # unknown price: leave None rather than guess
        usage.cost = None
    return _extract(response), usage


def strict_compatible(schema: Any) -> bool:
    """OpenAI's strict mode needs every property of every object listed in `required`; an
    `output_schema` with optional fields is sent non-strict (the agent validates `result`
    itself and feeds a mismatch back, so nothing is lost but the provider's guarantee)."""
    if isinstance(schema, dict):
        props = schema.get("properties")
        if isinstance(props, dict) and set(schema.get("required", ())) != set(props):
            return False
        return all(strict_compatible(v) for v in schema.values())
    if isinstance(schema, list):
        return all(strict_compatible(v) for v in schema)
    return True


def _extract(response: Any) -> Any:
    """The action object: the message's JSON content, else a `structured_output` tool call."""
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError) as exc:
        raise LLMError("LLM response contained no structured object") from exc
    content = getattr(message, "content", None)
    if content:
        try:
            return json.loads(content)
        except json.JSONDecodeError as exc:
            raise LLMError(f"LLM response is not valid JSON: {exc}") from exc
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is not None and getattr(fn, "name", None) == "structured_output":
            try:
                return json.loads(fn.arguments)
            except json.JSONDecodeError as exc:
                raise LLMError(f"LLM tool call arguments are not valid JSON: {exc}") from exc
    raise LLMError("LLM response contained no structured object")

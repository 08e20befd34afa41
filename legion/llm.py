"""The one boundary to the model: `generate_object(model, messages, schema)` per step.

Real models go through litellm, imported on the first real call (never on `import legion`; the
import costs seconds) with the local price map, called in a worker thread so the agent's trio
loop keeps serving, and always with a timeout. Test models (`legion.testing`) live in the
application process and are reached by a runtime call, so the test sees every request.

Errors split four ways:

* `LLMError`: a failure that may heal by asking again. A reply without a usable object (not
  JSON, too deep, a number too big) is the model's mistake and is fed back to it; a transient
  provider failure (rate limit, 5xx, timeout, unreachable host) is fed back too, and the loop
  waits a backoff before the next request (`transient`, `retry_after`).
* `ProviderError`: the provider refused in a way that asking again cannot fix (bad or missing
  credentials, unknown model or provider, a bad request): the turn ends at once, naming the
  provider's message.
* `RealModelBlocked` and `ModelFatal` are loud failures that end the agent process, because
  they mean the test itself is wrong.
"""

from __future__ import annotations

import functools
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from legion.errors import LegionError

__all__ = [
    "COMMON_PROVIDERS",
    "MAX_REPLY_DEPTH",
    "LLMError",
    "ModelFatal",
    "ProviderError",
    "RealModelBlocked",
    "Usage",
    "classify",
    "generate_object",
    "parse_object",
    "provider_of",
    "to_litellm",
]

MAX_REPLY_DEPTH = 64
"""The deepest nesting of lists and objects accepted in a model's reply; deeper is a retry."""

_INT_RANGE = (-(2**63), 2**64 - 1)  # what msgpack, hence every message of the runtime, carries


class LLMError(LegionError):
    """The model could not be asked or gave no usable object; fed back as a retry.

    `transient` is True for a provider failure that time may heal (rate limit, 5xx, timeout,
    unreachable host): the loop waits before asking again, `retry_after` seconds when the
    provider said so."""

    def __init__(self, message: str, *, transient: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class ProviderError(LegionError):
    """The provider refused the request and asking again cannot help (authentication, unknown
    model or provider, missing credentials, a bad request): the turn ends at once."""


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


COMMON_PROVIDERS = frozenset(
    {
        "openai", "anthropic", "gemini", "vertex_ai", "azure", "bedrock", "mistral", "groq",
        "deepseek", "openrouter", "xai", "cohere", "together_ai", "fireworks_ai", "perplexity",
        "huggingface", "cerebras", "ollama", "ollama_chat", "lm_studio", "vllm", "hosted_vllm",
    }
)  # fmt: skip
"""Providers litellm knows, recognised without importing litellm (which costs seconds)."""


def provider_of(model: str, options: Mapping[str, Any] | None = None) -> str:
    """The litellm provider that `model` routes to, or `ConfigError` naming the model string,
    what is wrong with it and how to write it.

    A `provider:model` (or `provider/model`) string whose provider is one of
    `COMMON_PROVIDERS` is answered at once; anything else (a bare model name such as
    `gpt-4o-mini`, a rarer provider, a typo) is asked of litellm, which is imported for it.
    `options` are the agent's `llm_options`: a `custom_llm_provider` or `api_base` there
    routes a model string that names no provider itself."""
    from legion.config import ConfigError

    name = to_litellm(model)
    head, sep, rest = name.partition("/")
    if sep and not rest.strip():
        raise ConfigError(
            f"model {model!r} names the provider {head!r} but no model after it; write "
            f"provider:model, e.g. '{head}:<model name>'"
        )
    if sep and head in COMMON_PROVIDERS:
        return head
    litellm = _import_litellm()
    options = options or {}
    try:
        _, provider, _, _ = litellm.get_llm_provider(
            name,
            custom_llm_provider=options.get("custom_llm_provider"),
            api_base=options.get("api_base"),
        )
    except Exception:  # litellm says "LLM Provider NOT provided" as one of several types
        known = sorted(str(getattr(p, "value", p)) for p in litellm.provider_list)
        raise ConfigError(_unknown_provider(model, head if sep else None, known)) from None
    return str(provider)


def _unknown_provider(model: str, head: str | None, known: list[str]) -> str:
    import difflib

    examples = "openai, anthropic, gemini, mistral, groq, ollama, openrouter"
    if head is None:
        what = f"model {model!r} names no provider litellm knows"
        guess = difflib.get_close_matches(model, known, n=1)
    else:
        what = f"unknown provider {head!r} in model {model!r}"
        guess = difflib.get_close_matches(head, known, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return (
        f"{what}{hint}; write provider:model, e.g. 'openai:gpt-4o-mini' (providers include "
        f"{examples}; {len(known)} in all: https://docs.litellm.ai/docs/providers)"
    )


async def generate_object(
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    *,
    timeout: float,
    test_model: Any = None,
    block_real: bool = False,
    meta: dict[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Any, Usage]:
    """Ask the model for one action object. Returns (object, usage).

    Raises `LLMError` (ask again), `ProviderError` (end the turn), `RealModelBlocked` or
    `ModelFatal`. The object is bounded: nested at most `MAX_REPLY_DEPTH` deep, its integers
    within 64 bits, so nothing downstream (JSON history, messages, telemetry) can choke on it.
    `options` are extra keyword arguments for `litellm.completion` (`api_base`, `api_key`...).
    """
    if test_model is not None:
        return await _ask_test_model(test_model, model, messages, schema, meta or {})
    if block_real and not os.environ.get("LEGION_ALLOW_REAL_LLM"):
        raise RealModelBlocked(
            f"a real LLM call to {model!r} was blocked: this process runs under tests. Use a "
            "legion.testing model (with ScriptedModel(...) as model: ...), or set "
            "LEGION_ALLOW_REAL_LLM=1 for an integration test."
        )
    return await _ask_litellm(model, messages, schema, timeout, dict(options or {}))


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
        if not answer.get("retryable", True):
            raise ProviderError(answer["error"])
        raise LLMError(answer["error"], transient=True, retry_after=answer.get("retry_after"))
    if "raw" in answer:
        return parse_object(answer["raw"]), usage
    check_bounds(answer["object"])
    return answer["object"], usage


def _import_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True  # errors are fed back to the model, not printed
    return litellm


async def _ask_litellm(
    model: str,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    timeout: float,
    options: dict[str, Any],
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
        max_retries=0,  # the loop retries, with backoff, and only what may heal
        **options,
    )
    try:
        response = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    except Exception as exc:  # provider errors are many types: sorted by `classify`
        raise classify(exc, model) from exc
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


# -- which provider errors may heal --------------------------------------------------------------

_TRANSIENT_NAMES = frozenset(
    {"RateLimitError", "Timeout", "APITimeoutError", "APIResponseValidationError"}
)
_FATAL_NAMES = frozenset(
    {
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "BadRequestError",  # with its subclasses: unknown provider, context window, params...
        "UnprocessableEntityError",
    }
)


def classify(exc: BaseException, model: str = "") -> LLMError | ProviderError:
    """Sort an exception from `litellm.completion` into "ask again" or "give up now".

    Transient (`LLMError(transient=True)`): a network failure or timeout anywhere in the cause
    chain, a rate limit, or an HTTP status litellm itself retries (408, 409, 429, 5xx). Fatal
    (`ProviderError`): authentication, permission, not found, bad request (litellm's classes
    and their subclasses), another 4xx, an error raised before any HTTP exchange (missing
    credentials, an unknown provider string: litellm reports these as a 500 or an
    `APIConnectionError`, only their cause tells), and anything else unknown. Classes are
    matched by name along the MRO, so this needs neither litellm nor openai imported.
    """
    chain = _causes(exc)
    message = _provider_message(exc)
    retry_after = _retry_after(exc)
    if any(_is_network(link) for link in chain):
        return LLMError(message, transient=True, retry_after=retry_after)
    names = _names(exc)
    if names & _TRANSIENT_NAMES:
        return LLMError(message, transient=True, retry_after=retry_after)
    if names & _FATAL_NAMES:
        return ProviderError(_with_hint(message, names, model))
    status = getattr(exc, "status_code", None)
    retried_status = isinstance(status, int) and (status in (408, 409, 429) or status >= 500)
    if retried_status and not _raised_locally(chain):
        return LLMError(message, transient=True, retry_after=retry_after)
    return ProviderError(_with_hint(message, names, model))


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain and len(chain) < 16:
        chain.append(link)
        link = link.__cause__ or link.__context__
    return chain


def _raised_locally(chain: list[BaseException]) -> bool:
    """Did the failure start before any HTTP exchange? litellm wraps a client that could not
    even be built (no API key) as a 500, so the status alone would say "retry"."""
    if len(chain) < 2:
        return False
    root = type(chain[-1])
    if root.__module__ == "openai" and root.__name__ == "OpenAIError":  # the client's own check
        return True
    return root.__module__ == "builtins" and not _is_network(chain[-1])


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _is_network(exc: BaseException) -> bool:
    """A transport failure: the request may not have reached a provider that works."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | socket.herror):
        return True  # not any OSError: a missing credentials file is no network failure
    module = type(exc).__module__.split(".")[0]
    names = _names(exc)
    if module in ("httpx", "httpcore") and names & {"TransportError", "TimeoutException"}:
        return True
    return module == "openai" and "APIConnectionError" in names


def _provider_message(exc: BaseException) -> str:
    text = str(exc).split("Traceback (most recent call last)")[0].strip()
    if not text.startswith("litellm."):
        text = f"{type(exc).__name__}: {text}"
    return text


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        value = float(headers.get("retry-after", "")) if headers is not None else math.nan
    except (TypeError, ValueError, AttributeError):
        return None
    return value if 0 < value <= 60 else None


def _with_hint(message: str, names: set[str], model: str) -> str:
    lowered = message.lower()
    if "AuthenticationError" in names or "credential" in lowered or "api key" in lowered:
        hint = (
            "check the provider's API key: set it in the environment the agent runs in (e.g. "
            "OPENAI_API_KEY) or pass config llm_options={'api_key': ...}"
        )
    elif "NotFoundError" in names or "provider not provided" in lowered:
        hint = "check the model string (config 'model', e.g. 'openai:gpt-4o-mini')"
    else:
        hint = "asking again cannot help; fix the request or the configuration"
    return f"{message} [model {model!r}: {hint}]"


# -- reading the reply -------------------------------------------------------------------------


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


def parse_object(text: str | bytes, what: str = "LLM response") -> Any:
    """The JSON of a reply as Python data, or `LLMError` naming what is wrong.

    Decoded by msgspec (no int-string limit to trip, a clean error past its depth limit), then
    bounded by `check_bounds`."""
    import msgspec

    if not isinstance(text, str | bytes):
        raise LLMError(f"{what} is not JSON text but {type(text).__name__}")
    try:
        obj = msgspec.json.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ValueError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise LLMError(f"{what} is not valid JSON: {reason}") from None
    check_bounds(obj, what)
    return obj


def check_bounds(obj: Any, what: str = "LLM response") -> None:
    """Refuse (`LLMError`) data nested deeper than `MAX_REPLY_DEPTH` or holding an integer
    outside 64 bits, without recursion (the check itself cannot overflow the stack)."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > MAX_REPLY_DEPTH:
                raise LLMError(
                    f"{what} is nested more than {MAX_REPLY_DEPTH} levels deep; "
                    "answer with flatter data"
                )
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif type(item) is int and not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
            raise LLMError(
                f"{what} holds an integer of {item.bit_length()} bits; integers must fit in "
                "64 bits (send big numbers as strings)"
            )


def _extract(response: Any) -> Any:
    """The action object: the message's JSON content, else a `structured_output` tool call."""
    try:
        message = response.choices[0].message
    except (AttributeError, IndexError, TypeError, KeyError) as exc:
        raise LLMError("LLM response contained no structured object") from exc
    content = getattr(message, "content", None)
    if content:
        return parse_object(content)
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        if fn is not None and getattr(fn, "name", None) == "structured_output":
            return parse_object(fn.arguments, "LLM tool call")
    raise LLMError("LLM response contained no structured object")

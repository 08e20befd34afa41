"""Agent configuration: defaults <- `legion.configure()` <- the agent's `config` <- start options.

The merge happens in the process that starts the agent, so a bad value raises there, at start,
with the allowed values, and the agent receives one resolved, validated dict. Unknown keys only
warn (and are kept), as in Legion, so a typo is visible without breaking a deployment.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from legion.errors import LegionError

__all__ = ["DEFAULTS", "ConfigError", "configure", "global_config", "resolve"]

BINDING_SCOPES = ("iteration", "turn", "conversation")
NODE_LIMITS = frozenset({"max_frame_bytes", "max_mailbox_bytes"})
"""Read when the application starts its embedded node (docs/runtime.md, "Limits")."""

DEFAULTS: dict[str, Any] = {
    "model": "openai:gpt-4o-mini",
    "max_iterations": 10,
    "max_retries": 3,
    "sandbox_timeout": 60.0,
    "binding_scope": "turn",
    "max_message_length": 20_000,
    "llm_timeout": 120.0,
    "sandbox_modules": (),
    "llm_backoff": 0.5,
    "llm_options": {},
    "max_sub_agents": 16,
    "max_sub_agents_per_turn": 64,
}
"""Built-in defaults. `sandbox_timeout` and `llm_timeout` are seconds; `max_message_length` is
in UTF-8 bytes. `math.inf` (or the string "infinity") disables a timeout or the length cap.
`sandbox_modules` adds modules to the sandbox's allowlist (see docs/sandbox.md).
`llm_backoff` is the first wait (seconds, doubled per retry) after a transient provider error;
0 disables waiting. `llm_options` are extra keyword arguments for `litellm.completion`
(`api_base`, `api_key`, `temperature`...). `max_sub_agents` bounds the sub-agents one agent
runs at once, `max_sub_agents_per_turn` those one turn may start in all."""

RESERVED_LLM_OPTIONS = frozenset(
    {"model", "messages", "response_format", "timeout", "max_retries", "stream"}
)

KNOWN_KEYS = frozenset(DEFAULTS) | {"share_bindings", "metrics_port", "reload"} | NODE_LIMITS

_GLOBAL: dict[str, Any] = {}


class ConfigError(LegionError, ValueError):
    """A configuration value is invalid; the message names the key and the allowed values."""


def configure(**options: Any) -> None:
    """Set application-wide defaults for every agent started from this process afterwards.

    Agents started by an agent (sub-agents) inherit them. Values are validated now.
    """
    merged = {**_GLOBAL, **options}
    _validate(merged, partial=True)
    _GLOBAL.clear()
    _GLOBAL.update(merged)
    if options.get("reload"):
        from legion.supervisor import process

        if process.current() is None:  # the application watches its modules and reloads them
            from legion.reload import watch

            watch()
    if options.get("metrics_port") is not None:
        from legion.supervisor import process

        if process.current() is None:  # the application: the node serves /metrics from now on
            from legion import telemetry

            telemetry.serve_metrics(options["metrics_port"])


def global_config() -> dict[str, Any]:
    """The current `legion.configure` layer (a copy)."""
    return dict(_GLOBAL)


def install_global(layer: Mapping[str, Any]) -> None:
    """Adopt a parent's `configure` layer (done by an agent process at start)."""
    _GLOBAL.clear()
    _GLOBAL.update(layer)


def resolve(agent_config: Mapping[str, Any] | None, options: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the four layers (later wins), normalise aliases and validate the result."""
    merged: dict[str, Any] = dict(DEFAULTS)
    for layer in (_GLOBAL, agent_config or {}, options):
        layer = dict(layer)
        if "share_bindings" in layer:
            share = layer.pop("share_bindings")
            if not isinstance(share, bool):
                raise ConfigError(f"share_bindings must be True or False, got {share!r}")
            if "binding_scope" not in layer:
                layer["binding_scope"] = "conversation" if share else "turn"
        merged.update(layer)
    unknown = sorted(set(merged) - KNOWN_KEYS)
    if unknown:
        warnings.warn(f"Unknown Legion config keys: {unknown}", stacklevel=3)
    _validate(merged, partial=False)
    for key in ("sandbox_timeout", "llm_timeout", "max_message_length"):
        if merged[key] == "infinity":
            merged[key] = math.inf
    return merged


def _validate(config: Mapping[str, Any], *, partial: bool) -> None:
    for key, value in config.items():
        check = _CHECKS.get(key)
        if check is not None:
            check(value)


def _positive_int(key: str) -> Any:
    def check(value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive int, got {value!r}")

    return check


def _seconds(key: str) -> Any:
    def check(value: Any) -> None:
        if value == "infinity" or value == math.inf:
            return
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(
                f"{key} must be a positive number of seconds or math.inf, got {value!r}"
            )

    return check


def _max_message_length(value: Any) -> None:
    if value == "infinity" or value == math.inf:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"max_message_length must be a positive int (bytes) or math.inf, got {value!r}"
        )


def _binding_scope(value: Any) -> None:
    if value not in BINDING_SCOPES:
        allowed = ", ".join(repr(s) for s in BINDING_SCOPES)
        raise ConfigError(f"binding_scope must be one of {allowed}, got {value!r}")


def _model(value: Any) -> None:
    if hasattr(value, "__legion_test_model__"):
        return
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"model must be a non-empty string such as 'openai:gpt-4o-mini' or "
            f"'anthropic/claude-sonnet-4-20250514', got {value!r}"
        )


def _share(value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"share_bindings must be True or False, got {value!r}")


_CHECKS: dict[str, Any] = {
    "model": _model,
    "max_iterations": _positive_int("max_iterations"),
    "max_retries": lambda v: _non_negative_int("max_retries", v),
    "sandbox_timeout": _seconds("sandbox_timeout"),
    "llm_timeout": _seconds("llm_timeout"),
    "binding_scope": _binding_scope,
    "max_message_length": _max_message_length,
    "share_bindings": _share,
    "metrics_port": lambda v: _metrics_port(v),
    "reload": lambda v: _reload_flag(v),
    "sandbox_modules": lambda v: _sandbox_modules(v),
    "llm_backoff": lambda v: _backoff(v),
    "llm_options": lambda v: _llm_options(v),
    "max_sub_agents": _positive_int("max_sub_agents"),
    "max_sub_agents_per_turn": _positive_int("max_sub_agents_per_turn"),
    "max_frame_bytes": _positive_int("max_frame_bytes"),
    "max_mailbox_bytes": _positive_int("max_mailbox_bytes"),
}


def _sandbox_modules(value: Any) -> None:
    from legion.sandbox.guard import allowlist

    if not isinstance(value, list | tuple):
        raise ConfigError(f"sandbox_modules must be a list of module names, got {value!r}")
    try:
        allowlist(value)
    except ValueError as exc:
        raise ConfigError(f"sandbox_modules: {exc}") from None


def _backoff(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 60:
        raise ConfigError(
            f"llm_backoff must be a number of seconds from 0 (no waiting) to 60, got {value!r}"
        )


def _llm_options(value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            "llm_options must be a dict of litellm.completion keyword arguments, such as "
            f"{{'api_base': 'http://localhost:8000/v1'}}, got {value!r}"
        )
    reserved = sorted(RESERVED_LLM_OPTIONS & set(value))
    if reserved:
        raise ConfigError(
            f"llm_options may not set {reserved}: Legion sets them itself (use the config keys "
            "'model' and 'llm_timeout'; retries are the loop's, see 'max_retries')"
        )


def _reload_flag(value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"reload must be True or False, got {value!r}")


def _metrics_port(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"metrics_port must be a TCP port (0 for any free port), got {value!r}")


def _non_negative_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be an int >= 0, got {value!r}")

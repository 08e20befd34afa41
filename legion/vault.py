"""Vault: context (who the user is, tokens, tenant) that flows down to agents, never up or out.

Set it in the application before starting an agent; the agent, its tools and its sub-agents read
it with `legion.vault.get`. It is a copy-on-start snapshot: each agent process gets its starter's
context as it was at start, so a write in a child (`put`) never reaches the parent, and it lives
only in the agent process. Generated code runs in the sandbox child, a fresh process forked from
a clean zygote, which is never given it: sandboxed code cannot read the Vault.

In the application the store is a `contextvars` variable, so each request, task or thread that
copies the context (asyncio tasks, `contextvars.copy_context().run`) has its own. In an agent
process (`install`) there is one store for the whole process: a `put` in a tool (sync tools run
in worker threads) is seen by every later tool call and turn of that agent.
Values must be msgspec-encodable (they cross to the agent process).
"""

from __future__ import annotations

import contextvars
import types
from collections.abc import Mapping
from typing import Any

from legion.errors import LegionError

__all__ = ["VaultError", "get", "init", "put", "snapshot"]

_EMPTY: Mapping[str, Any] = types.MappingProxyType({})
_STORE: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "legion_vault", default=_EMPTY
)


_process: dict[str, Any] | None = None  # an agent process's one store (see `install`)


def _current() -> Mapping[str, Any]:
    return _process if _process is not None else _STORE.get()


class VaultError(LegionError):
    """`init` of a key that is already set (here or inherited from the process that started us)."""


def init(key: str, value: Any) -> None:
    """Set `key` once: raises `VaultError` if it is already set, inherited values included.

    Use it for context that must not be silently replaced (the current user); `put` overwrites.
    """
    store = _current()
    if key in store:
        raise VaultError(f"vault key {key!r} is already set; use legion.vault.put to replace it")
    put(key, value)


def put(key: str, value: Any) -> None:
    """Set or replace `key` for this process (and the agents it starts from now on)."""
    if _process is not None:
        _process[key] = value
    else:
        _STORE.set({**_STORE.get(), key: value})


def get(key: str, default: Any = None) -> Any:
    """The value of `key`, or `default`."""
    return _current().get(key, default)


def snapshot() -> dict[str, Any]:
    """A copy of the whole context, as handed to an agent at start."""
    return dict(_current())


def install(values: Mapping[str, Any]) -> None:
    """Adopt the starter's context as this process's one store (an agent does this in `init`)."""
    global _process
    _process = dict(values)


def clear() -> None:
    """Forget everything (tests)."""
    global _process
    _process = None
    _STORE.set({})

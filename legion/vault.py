"""Vault: context (who the user is, tokens, tenant) that flows down to agents, never up or out.

Set it in the application before starting an agent; the agent, its tools and its sub-agents read
it with `legion.vault.get`. It is a copy-on-start snapshot: each agent process gets its starter's
context as it was at start, so a write in a child (`put`) never reaches the parent, and it lives
only in the agent process. Generated code runs in the sandbox child, a fresh process forked from
a clean zygote, which is never given it: sandboxed code cannot read the Vault.

Within one process the store is a `contextvars` variable, so threads and tasks that copy the
context (asyncio tasks, `contextvars.copy_context().run`) see the values set before they started.
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


class VaultError(LegionError):
    """`init` of a key that is already set (here or inherited from the process that started us)."""


def init(key: str, value: Any) -> None:
    """Set `key` once: raises `VaultError` if it is already set, inherited values included.

    Use it for context that must not be silently replaced (the current user); `put` overwrites.
    """
    store = _STORE.get()
    if key in store:
        raise VaultError(f"vault key {key!r} is already set; use legion.vault.put to replace it")
    _STORE.set({**store, key: value})


def put(key: str, value: Any) -> None:
    """Set or replace `key` for this process (and the agents it starts from now on)."""
    _STORE.set({**_STORE.get(), key: value})


def get(key: str, default: Any = None) -> Any:
    """The value of `key`, or `default`."""
    return _STORE.get().get(key, default)


def snapshot() -> dict[str, Any]:
    """A copy of the whole context, as handed to an agent at start."""
    return dict(_STORE.get())


def install(values: Mapping[str, Any]) -> None:
    """Adopt the starter's context (an agent process does this in `init`)."""
    _STORE.set(dict(values))


def clear() -> None:
    """Forget everything (tests)."""
    _STORE.set({})

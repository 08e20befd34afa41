"""Child specs and supervisor flags: built and validated where the user writes them.

A `ChildSpec` names what to start by module path (the supervisor runs in the node and spawns its
children through the node's zygote, so it never needs the class object) and how to supervise it.
`SupervisorSpec` carries the children and the flags. Both are msgspec Structs so they cross the
wire inside a `start_link` argument or an admin call and are rebuilt, and validated again, in the
node (`from_term`). Every bad value raises `SpecError`, naming the field and the allowed values.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import msgspec

from .api import check_target
from .endpoint import target_path
from .errors import LegionError

__all__ = ["ChildSpec", "SpecError", "SupervisorSpec", "child_spec"]

RESTARTS = ("permanent", "transient", "temporary")
TYPES = ("worker", "supervisor")
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
AUTO_SHUTDOWN = ("never", "any_significant", "all_significant")


class SpecError(LegionError, ValueError):
    """A child spec or supervisor flag is invalid; the message names the field and the choices."""


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How a supervisor starts and looks after one child. Build it with `legion.child_spec`."""

    id: Any
    module: str
    qualname: str
    main_path: str | None = None
    hosted: bool = False
    arg: Any = None
    has_arg: bool = False
    restart: str = "permanent"
    shutdown: float | str = 5.0
    type: str = "worker"
    significant: bool = False
    name: str | None = None

    @property
    def modules(self) -> list[str]:
        return [self.module]


class SupervisorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A supervisor's children and flags: what `Supervisor.init` returns (or `start_link` takes).

    Defaults follow Elixir: `one_for_one`, at most 3 restarts in 5 seconds, `auto_shutdown`
    "never".
    """

    children: list[ChildSpec] = []
    strategy: str = "one_for_one"
    max_restarts: int = 3
    max_seconds: float = 5.0
    auto_shutdown: str = "never"

    def __post_init__(self) -> None:
        validate_flags(self.strategy, self.max_restarts, self.max_seconds, self.auto_shutdown)
        ids: set[Any] = set()
        for spec in self.children:
            if not isinstance(spec, ChildSpec):
                raise SpecError(
                    f"children: expected ChildSpec values (legion.child_spec), got {spec!r}"
                )
            key = _hashable(spec.id)
            if key in ids:
                raise SpecError(f"id: duplicate child id {spec.id!r}; ids must be unique")
            ids.add(key)
            if spec.significant and self.auto_shutdown == "never":
                raise SpecError(
                    f"significant: child {spec.id!r} is significant but auto_shutdown is 'never'; "
                    "set auto_shutdown to 'any_significant' or 'all_significant'"
                )


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


def validate_flags(strategy: Any, max_restarts: Any, max_seconds: Any, auto_shutdown: Any) -> None:
    if strategy not in STRATEGIES:
        raise SpecError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise SpecError(f"max_restarts: {max_restarts!r} is not an int >= 0")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or not max_seconds > 0
    ):
        raise SpecError(f"max_seconds: {max_seconds!r} is not a number > 0")
    if auto_shutdown not in AUTO_SHUTDOWN:
        raise SpecError(
            f"auto_shutdown: {auto_shutdown!r} is not one of {', '.join(AUTO_SHUTDOWN)}"
        )


def _is_shutdown(value: Any) -> bool:
    """'brutal_kill', 'infinity', or seconds the supervisor can wait: a number >= 0 (not NaN,
    which no timer takes; an int too large for a float neither)."""
    if isinstance(value, str):
        return value in ("brutal_kill", "infinity")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return float(value) >= 0
    except OverflowError:
        return False


def validate_child(spec: ChildSpec) -> None:
    if spec.restart not in RESTARTS:
        raise SpecError(f"restart: {spec.restart!r} is not one of {', '.join(RESTARTS)}")
    if spec.type not in TYPES:
        raise SpecError(f"type: {spec.type!r} is not one of {', '.join(TYPES)}")
    if not _is_shutdown(spec.shutdown):
        raise SpecError(
            f"shutdown: {spec.shutdown!r} is not a number of seconds >= 0, 'brutal_kill' or "
            "'infinity'"
        )
    if not isinstance(spec.significant, bool):
        raise SpecError(f"significant: {spec.significant!r} is not True or False")
    if spec.significant and spec.restart == "permanent":
        raise SpecError(
            "significant: a permanent child cannot be significant (it is always restarted); "
            "use restart='transient' or 'temporary'"
        )
    if spec.name is not None and (not isinstance(spec.name, str) or not spec.name):
        raise SpecError(f"name: {spec.name!r} is not a non-empty str or None")
    if spec.id is None:
        raise SpecError("id: a child needs an id (any msgspec-encodable value except None)")


_UNSET: Any = object()


def child_spec(
    cls: Any,
    arg: Any = _UNSET,
    *,
    id: Any = None,
    restart: str = "permanent",
    shutdown: float | str = _UNSET,
    type: str = "worker",
    significant: bool = False,
    name: str | None = None,
) -> ChildSpec:
    """Describe a child: `cls` (a `Server`, a function, or a `Supervisor` subclass) and its `arg`.

    `id` defaults to the class's qualified name. `shutdown` defaults to 5 seconds for a worker and
    "infinity" for a supervisor (OTP's defaults); `type` defaults to "supervisor" when `cls` is a
    supervisor. `name` registers the child under that name each time it starts.
    """
    check_target(cls, "legion.child_spec")
    if getattr(cls, "__legion_agent__", False) is True and not (
        isinstance(arg, dict) and "inherit" in arg  # what Agent.child_spec prepares
    ):
        raise TypeError(
            f"legion.child_spec: {cls.__qualname__} is a legion.Agent, which needs its "
            f"configuration at start: use {cls.__qualname__}.child_spec(task, ...)"
        )
    module, qualname = target_path(cls)
    hosted = bool(getattr(cls, "_legion_host", None))
    main_path = None
    if module in ("__main__", "__mp_main__"):
        main_path = getattr(sys.modules.get(module), "__file__", None)
        main_path = os.path.abspath(main_path) if main_path else None
        module = "__main__"
    if hosted and type == "worker":
        type = "supervisor"
    if shutdown is _UNSET:
        shutdown = "infinity" if type == "supervisor" else 5.0
    spec = ChildSpec(
        id=qualname if id is None else id,
        module=module,
        qualname=qualname,
        main_path=main_path,
        hosted=hosted,
        arg=None if arg is _UNSET else arg,
        has_arg=arg is not _UNSET,
        restart=restart,
        shutdown=shutdown,
        type=type,
        significant=significant,
        name=name,
    )
    validate_child(spec)
    return spec


def spec_from_term(term: Any) -> ChildSpec:
    """A ChildSpec that crossed the wire (as a dict), rebuilt and validated."""
    if isinstance(term, ChildSpec):
        spec = term
    else:
        try:
            spec = msgspec.convert(term, ChildSpec)
        except msgspec.ValidationError as exc:
            raise SpecError(f"not a child spec ({exc}); build one with legion.child_spec") from None
    validate_child(spec)
    return spec


def sup_spec_from_term(term: Any) -> SupervisorSpec:
    """What a supervisor's `init` returned (or its start argument), as a validated spec."""
    if isinstance(term, SupervisorSpec):
        return term
    if isinstance(term, list | tuple):
        return SupervisorSpec(children=[spec_from_term(c) for c in term])
    if isinstance(term, dict):
        children = [spec_from_term(c) for c in term.get("children", [])]
        flags = {k: v for k, v in term.items() if k in SupervisorSpec.__struct_fields__}
        flags["children"] = children
        return SupervisorSpec(**flags)
    raise SpecError(
        f"a supervisor's init must return a legion.SupervisorSpec (or a list of child specs), "
        f"not {term!r}"
    )

"""`DynamicSupervisor` (Elixir's): children added at run time, by pid, one_for_one only.

It starts with no children; `DynamicSupervisor.start_child(sup, spec)` adds one (the spec's id is
ignored, children are named by pid). `max_children` caps how many run at once; `extra_arguments`
are put before each child's own argument (`[*extra_arguments, arg]`). At shutdown every child is
stopped concurrently, each by its own shutdown ladder, so stopping N children takes about as
long as the slowest one, not their sum.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .api import Dest
from .childspec import ChildSpec, SpecError, spec_from_term, validate_flags
from .errors import ChildNotFound, MaxChildren, SupervisorError
from .hosted import Host
from .supervisor import (
    ChildInfo,
    Engine,
    InitEnded,
    _aadmin,
    _admin,
    _children,
    _start_error,
    init_spec,
)
from .terms import Pid

__all__ = ["DynamicSupervisor", "DynamicSupervisorSpec"]


class DynamicSupervisorSpec(msgspec.Struct, frozen=True, kw_only=True):
    """The flags of a DynamicSupervisor (defaults: at most 3 restarts in 5 s, no child cap)."""

    strategy: str = "one_for_one"
    max_restarts: int = 3
    max_seconds: float = 5.0
    max_children: int | None = None
    extra_arguments: list[Any] = []

    def __post_init__(self) -> None:
        if self.strategy != "one_for_one":
            raise SpecError(
                f"strategy: a DynamicSupervisor supports only 'one_for_one', not {self.strategy!r}"
            )
        validate_flags(self.strategy, self.max_restarts, self.max_seconds, "never")
        max_children = self.max_children
        if max_children is not None and (
            isinstance(max_children, bool) or not isinstance(max_children, int) or max_children < 0
        ):
            raise SpecError(f"max_children: {max_children!r} is not None or an int >= 0")


def _dyn_spec(term: Any) -> DynamicSupervisorSpec:
    if term is None:
        return DynamicSupervisorSpec()
    if isinstance(term, DynamicSupervisorSpec):
        return term
    if isinstance(term, dict):
        fields = {k: v for k, v in term.items() if k in DynamicSupervisorSpec.__struct_fields__}
        return DynamicSupervisorSpec(**fields)
    raise SpecError(
        f"a DynamicSupervisor's init must return a legion.DynamicSupervisorSpec, not {term!r}"
    )


class DynamicEngine(Engine):
    concurrent_shutdown = True

    def __init__(self, host: Host, spec: DynamicSupervisorSpec) -> None:
        super().__init__(host, spec.max_restarts, spec.max_seconds)
        self.max_children = spec.max_children
        self.extra = list(spec.extra_arguments)

    def upgrade(self, result: Any) -> None:
        """New flags apply to the children started from now on; running children stay."""
        spec = _dyn_spec(result)
        self.max_restarts, self.max_seconds = spec.max_restarts, spec.max_seconds
        self.max_children, self.extra = spec.max_children, list(spec.extra_arguments)

    def spec_arg(self, spec: ChildSpec) -> tuple[Any, bool]:
        if self.extra:
            return [*self.extra, spec.arg], True
        return spec.arg, spec.has_arg

    def on_restart_ignored(self, child: Any) -> None:
        self.remove(child)  # a restarted dynamic child that returns Ignore() is dropped

    async def op_start_child(self, term: Any) -> Pid | None:
        spec = spec_from_term(term)
        if spec.significant:
            raise SpecError("significant: a DynamicSupervisor has no auto_shutdown")
        if self.max_children is not None and len(self.children) >= self.max_children:
            raise MaxChildren(f"the supervisor already has {self.max_children} children", None)
        result = await self.start(spec)
        if not result.ok:
            raise _start_error(spec.id, result.error)
        if result.pid is not None:
            self.add(spec, result.pid)
        return result.pid

    async def op_terminate_child(self, pid: Any) -> None:
        child = self.by_pid.get(pid) if isinstance(pid, Pid) else None
        if child is None:
            raise ChildNotFound(f"{pid!r} is not a child of this supervisor", pid)
        await self.stop_child(child)
        self.remove(child)

    async def op_restart_child(self, id_: Any) -> None:
        raise SupervisorError("a DynamicSupervisor cannot restart a child by request", id_)

    async def op_delete_child(self, id_: Any) -> None:
        raise SupervisorError("a DynamicSupervisor has no child specs to delete", id_)

    async def op_which_children(self) -> list[Any]:
        return [(None, self.status(c), c.spec.type, c.spec.modules) for c in self.children.values()]


class DynamicSupervisor:
    """A supervisor for children started at run time (pools, connections, sessions).

    `legion.start_link(legion.DynamicSupervisor, legion.DynamicSupervisorSpec(max_children=10))`
    (or None for the defaults), or subclass it and return the spec from `init(arg)`.
    """

    def init(self, arg: Any) -> Any:
        return arg

    @staticmethod
    async def _legion_host(host: Host, cls: type[DynamicSupervisor], arg: Any) -> Any:
        try:
            behaviour, spec = await init_spec(host, cls, arg, _dyn_spec)
        except InitEnded as ended:
            return ended.reason
        engine = DynamicEngine(host, spec)
        engine.behaviour, engine.start_arg = behaviour, arg
        host.init_done(True)
        return await engine.loop()

    @staticmethod
    def start_child(sup: Dest, spec: ChildSpec, *, timeout: float | None = None) -> Pid | None:
        """Start a child: its pid, or None if its `init` returned `Ignore()`.

        Raises `MaxChildren`, `StartChildError`, `AlreadyStarted` (its name is taken) or
        `SpecError`.
        """
        pid: Pid | None = _admin(sup, timeout, "start_child", spec)
        return pid

    @staticmethod
    async def astart_child(
        sup: Dest, spec: ChildSpec, *, timeout: float | None = None
    ) -> Pid | None:
        pid: Pid | None = await _aadmin(sup, timeout, "start_child", spec)
        return pid

    @staticmethod
    def terminate_child(sup: Dest, pid: Pid, *, timeout: float | None = None) -> None:
        """Stop the child `pid` by its shutdown ladder and forget it. Raises `ChildNotFound`."""
        _admin(sup, timeout, "terminate_child", pid)

    @staticmethod
    async def aterminate_child(sup: Dest, pid: Pid, *, timeout: float | None = None) -> None:
        await _aadmin(sup, timeout, "terminate_child", pid)

    @staticmethod
    def which_children(sup: Dest, *, timeout: float | None = None) -> list[ChildInfo]:
        """Every child (ids are None)."""
        return _children(_admin(sup, timeout, "which_children"))

    @staticmethod
    async def awhich_children(sup: Dest, *, timeout: float | None = None) -> list[ChildInfo]:
        return _children(await _aadmin(sup, timeout, "which_children"))

    @staticmethod
    def count_children(sup: Dest, *, timeout: float | None = None) -> dict[str, int]:
        return dict(_admin(sup, timeout, "count_children"))

    @staticmethod
    async def acount_children(sup: Dest, *, timeout: float | None = None) -> dict[str, int]:
        return dict(await _aadmin(sup, timeout, "count_children"))

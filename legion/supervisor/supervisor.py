"""Supervisors (OTP's `supervisor`): node-hosted processes that start, watch and restart children.

A supervisor is a process in the node's table that runs as a trio task inside the node
(`hosted.py`): it traps exits, is linked to each child, and restarts children by spawning
through the node's zygote path. Its children are OS processes or other supervisors.

Semantics follow OTP (research §2.7): children start one after another in list order and stop in
reverse order; `permanent` children always restart, `transient` ones only after an abnormal exit,
`temporary` ones never (and their spec is dropped); more than `max_restarts` restarts within
`max_seconds` makes the supervisor stop its children and exit with "shutdown" (escalation to its
parent); each child stops by the shutdown ladder: exit signal "shutdown", wait `shutdown` seconds
(monitoring it), then kill (reported "killed"); "brutal_kill" kills at once and "infinity" waits.

The administration API (`which_children`, `start_child`, ...) is ordinary calls to the
supervisor's pid, wrapped as static methods with `a`-prefixed async twins.
"""

from __future__ import annotations

import inspect
import time
from collections import deque
from typing import Any, NamedTuple

import msgspec

from . import wire
from .api import Dest, acall, call, check_timeout
from .childspec import ChildSpec, SpecError, SupervisorSpec, spec_from_term, sup_spec_from_term
from .errors import (
    AlreadyPresent,
    AlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    LegionError,
    MaxChildren,
    StartChildError,
    SupervisorError,
)
from .hosted import Host
from .lazy_trio import trio
from .server import AGENT_QUERY, NOT_AN_AGENT, Ignore
from .terms import CodeChange, Crash, Pid, crash_from_exception, normalize_reason

__all__ = ["ChildInfo", "Supervisor"]

_CONTINUE: Any = object()
_TAG = "$sup"


class ChildInfo(NamedTuple):
    """One row of `which_children`: `pid` is a Pid, "restarting", or None (not running)."""

    id: Any
    pid: Pid | str | None
    type: str
    modules: list[str]


class _Child:
    __slots__ = ("key", "pid", "restarting", "spec")

    def __init__(self, key: int, spec: ChildSpec, pid: Pid | None) -> None:
        self.key = key
        self.spec = spec
        self.pid = pid
        self.restarting = False


class _Retry:
    """A restart that failed is retried from the main loop, so calls are served in between."""

    __slots__ = ("keys",)

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys


class StartResult(NamedTuple):
    ok: bool
    pid: Pid | None
    error: Any


def is_shutdown_reason(reason: Any) -> bool:
    return reason in ("normal", "shutdown") or (
        isinstance(reason, tuple) and len(reason) == 2 and reason[0] == "shutdown"
    )


def same_id(a: Any, b: Any) -> bool:
    return bool(normalize_reason(a) == normalize_reason(b))


class Engine:
    """The state and loop of one supervisor, shared by `Supervisor` and `DynamicSupervisor`."""

    concurrent_shutdown = False

    def __init__(self, host: Host, max_restarts: int, max_seconds: float) -> None:
        self.host = host
        self.inbox = host.inbox
        self.children: dict[int, _Child] = {}
        self.by_pid: dict[Pid, _Child] = {}
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self.restarts: deque[float] = deque()
        self._keys = 0

    # -- children --------------------------------------------------------------------------------

    def add(self, spec: ChildSpec, pid: Pid | None) -> _Child:
        self._keys += 1
        child = _Child(self._keys, spec, pid)
        self.children[child.key] = child
        if pid is not None:
            self.by_pid[pid] = child
        return child

    def remove(self, child: _Child) -> None:
        self.children.pop(child.key, None)
        if child.pid is not None:
            self.by_pid.pop(child.pid, None)

    def spec_arg(self, spec: ChildSpec) -> tuple[Any, bool]:
        return spec.arg, spec.has_arg

    async def start(self, spec: ChildSpec) -> StartResult:
        """Start one child linked to the supervisor; wait until its `init` returned."""
        arg, has_arg = self.spec_arg(spec)
        ack = await self.host.spawn_sync(
            spec.module, spec.qualname, spec.main_path, spec.hosted, arg, has_arg, spec.name
        )
        if ack.error is None:
            if ack.value is None:
                return StartResult(True, None, None)
            pid: Pid = ack.value
            self.host.mark_supervised(pid, self.host.pid)
            return StartResult(True, pid, None)
        if ack.error == "name_taken":
            return StartResult(False, None, ("already_started", ack.value))
        return StartResult(False, None, normalize_reason(ack.value))

    async def stop_pid(self, pid: Pid, shutdown: float | str) -> Any:
        """The shutdown ladder for one child: its exit reason."""
        host = self.host
        ref = host.monitor(pid)
        host.unlink(pid)
        early = self.inbox.take(lambda m: type(m) is wire.ExitIn and m.sender == pid)
        if shutdown == "brutal_kill":
            host.exit(pid, "kill")
            down = await self.inbox.wait_for(ref)
        else:
            host.exit(pid, "shutdown")
            timeout = float("inf") if shutdown == "infinity" else float(shutdown)
            down = await self.inbox.wait_for(ref, timeout)
            if down is None:
                host.exit(pid, "kill")
                down = await self.inbox.wait_for(ref)
        if early is not None:
            return normalize_reason(early.reason)  # type: ignore[union-attr]
        assert type(down) is wire.DownIn
        return normalize_reason(down.reason)

    async def stop_child(self, child: _Child) -> Any:
        pid = child.pid
        child.restarting = False
        if pid is None:
            return None
        self.by_pid.pop(pid, None)
        child.pid = None
        reason = await self.stop_pid(pid, child.spec.shutdown)
        if child.spec.restart == "temporary":
            self.remove(child)
        return reason

    async def stop_children(self, children: list[_Child]) -> None:
        """Stop `children` (given in start order): in reverse order, or all at once."""
        if self.concurrent_shutdown:
            async with trio.open_nursery() as nursery:
                for child in children:
                    nursery.start_soon(self.stop_child, child)
        else:
            for child in reversed(children):
                await self.stop_child(child)

    async def stop_all(self) -> None:
        await self.stop_children(list(self.children.values()))

    # -- restarts --------------------------------------------------------------------------------

    def add_restart(self) -> bool:
        """Count a restart; False once more than `max_restarts` fall within `max_seconds`."""
        now = time.monotonic()
        restarts = self.restarts
        restarts.append(now)
        while restarts and restarts[0] < now - self.max_seconds:
            restarts.popleft()
        return len(restarts) <= self.max_restarts

    def group_for(self, child: _Child) -> list[_Child]:
        return [child]

    async def start_group(self, group: list[_Child]) -> bool:
        """(Re)start `group` in order. On a failure, stop what this round started and schedule a
        retry of the group; False then."""
        started: list[_Child] = []
        for child in group:
            if child.key not in self.children or child.pid is not None:
                continue
            result = await self.start(child.spec)
            if result.ok:
                child.restarting = False
                if result.pid is None:
                    self.on_restart_ignored(child)
                    continue
                child.pid = result.pid
                self.by_pid[result.pid] = child
                started.append(child)
                continue
            await self.stop_children(started)
            for other in group:
                if other.key in self.children and other.pid is None:
                    other.restarting = True
            self.inbox.frames.append(_Retry([c.key for c in group]))  # type: ignore[arg-type]
            return False
        return True

    def on_restart_ignored(self, child: _Child) -> None:
        if child.spec.restart == "temporary":
            self.remove(child)

    async def child_exited(self, child: _Child, reason: Any) -> Any:
        """A child ended on its own: restart it (and its group) as its spec and strategy say."""
        self.by_pid.pop(child.pid, None)  # type: ignore[arg-type]
        child.pid = None
        restart = child.spec.restart
        if restart == "temporary":
            self.remove(child)
            return await self.significant_ended(child)
        if restart == "transient" and is_shutdown_reason(reason):
            return await self.significant_ended(child)
        if self.host.node.stopping:
            return _CONTINUE  # the node is stopping: it will not spawn; the spec stays
        if not self.add_restart():
            await self.stop_all()
            return "shutdown"
        group = self.group_for(child)
        _restart_event(self, child, reason)
        await self.stop_children([c for c in group if c is not child])
        await self.start_group(group)
        return _CONTINUE

    async def significant_ended(self, child: _Child) -> Any:
        return _CONTINUE

    async def retry(self, keys: list[int]) -> Any:
        await trio.lowlevel.checkpoint()  # a start that fails at once must not starve the node
        group = [self.children[k] for k in keys if k in self.children]
        if not any(c.restarting for c in group):
            return _CONTINUE
        if self.host.node.stopping:
            return _CONTINUE  # the node refuses spawns now; retrying would only burn intensity
        if not self.add_restart():
            await self.stop_all()
            return "shutdown"
        await self.start_group(group)
        return _CONTINUE

    # -- the loop --------------------------------------------------------------------------------

    async def loop(self) -> Any:
        host = self.host
        while True:
            msg: Any = await self.inbox.get()
            kind = type(msg)
            result = _CONTINUE
            if kind is wire.ExitIn:
                reason = normalize_reason(msg.reason)
                if msg.sender == host.parent or msg.sender == host.node_pid:
                    await self.stop_all()
                    return reason
                child = self.by_pid.get(msg.sender)
                if child is not None:
                    result = await self.child_exited(child, reason)
            elif kind is wire.CallIn:
                await self.serve_call(msg)
            elif kind is wire.StopIn:
                await self.stop_all()
                return normalize_reason(msg.reason)
            elif kind is _Retry:
                result = await self.retry(msg.keys)
            if result is not _CONTINUE:
                return result

    async def serve_call(self, msg: wire.CallIn) -> None:
        try:
            request = normalize_reason(wire.decode_term(msg.payload))
        except Exception as exc:
            request = exc
        if type(request) is CodeChange:
            answer: Any = await self.code_change(request)
        elif isinstance(request, tuple) and len(request) >= 2 and request[0] == AGENT_QUERY:
            answer = NOT_AN_AGENT  # legion.get_messages(a supervisor): a TypeError at the caller
        elif not (isinstance(request, tuple) and len(request) >= 2 and request[0] == _TAG):
            answer = ("error", "bad_request", f"a supervisor does not understand {request!r}")
        else:
            handler = getattr(self, f"op_{request[1]}", None)
            if handler is None:
                answer = ("error", "bad_request", f"unknown supervisor request {request[1]!r}")
            else:
                try:
                    answer = ("ok", await handler(*request[2:]))
                except SupervisorError as exc:
                    answer = ("error", exc.reason, exc.value)
                except (SpecError, TypeError) as exc:
                    answer = ("error", "bad_spec", str(exc))
        self.host.reply(msg.caller, msg.ref, answer)

    # -- upgrade ---------------------------------------------------------------------------------

    behaviour: Any = None
    start_arg: Any = None

    async def code_change(self, request: CodeChange) -> list[Any]:
        """`legion.code_change(sup)`: run `init` again with the start argument and apply what it
        returns (`upgrade`). Children are not restarted. On a bad return nothing changes."""
        if request.reload:
            return ["error", "a supervisor cannot reload its module; upgrade its children"]
        try:
            result = await call_init(self.behaviour, self.start_arg)
            if not isinstance(result, Ignore):
                self.upgrade(result)
        except Exception as exc:
            return ["error", crash_from_exception(exc)]
        return ["ok", getattr(self.behaviour, "vsn", None)]

    def upgrade(self, result: Any) -> None:
        raise NotImplementedError

    # -- administration --------------------------------------------------------------------------

    def find(self, id_: Any) -> _Child:
        for child in self.children.values():
            if same_id(child.spec.id, id_):
                return child
        raise ChildNotFound(f"no child with id {id_!r}", id_)

    def status(self, child: _Child) -> Pid | str | None:
        return "restarting" if child.restarting else child.pid

    async def op_which_children(self) -> list[Any]:
        return [
            (c.spec.id, self.status(c), c.spec.type, c.spec.modules) for c in self.children.values()
        ]

    async def op_count_children(self) -> dict[str, int]:
        children = self.children.values()
        supervisors = sum(1 for c in children if c.spec.type == "supervisor")
        return {
            "specs": len(self.children),
            "active": len(self.by_pid),
            "supervisors": supervisors,
            "workers": len(self.children) - supervisors,
        }

    async def op_get_childspec(self, id_: Any) -> ChildSpec:
        if isinstance(id_, Pid):
            child = self.by_pid.get(id_)
            if child is None:
                raise ChildNotFound(f"no child with pid {id_!r}", id_)
            return child.spec
        return self.find(id_).spec


class StaticEngine(Engine):
    """A `Supervisor`: children by id, in order, with a strategy and auto_shutdown."""

    def __init__(self, host: Host, spec: SupervisorSpec) -> None:
        super().__init__(host, spec.max_restarts, spec.max_seconds)
        self.strategy = spec.strategy
        self.auto_shutdown = spec.auto_shutdown

    async def start_initial(self, specs: list[ChildSpec]) -> Any:
        """Start the children of `init` in order; on a failure stop them and give the reason."""
        for spec in specs:
            result = await self.start(spec)
            if result.ok:
                if result.pid is not None or spec.restart != "temporary":
                    self.add(spec, result.pid)
                continue
            await self.stop_all()
            return ("shutdown", ("failed_to_start_child", spec.id, result.error))
        return None

    def upgrade(self, result: Any) -> None:
        """OTP's rules: new flags apply; a changed spec replaces the old one (the running child
        is kept); a new spec is added but not started; a spec `init` no longer returns stays."""
        spec = sup_spec_from_term(result)
        for new in spec.children:
            if new.significant and spec.auto_shutdown == "never":
                raise SpecError(f"significant: child {new.id!r} needs auto_shutdown")
        self.strategy, self.auto_shutdown = spec.strategy, spec.auto_shutdown
        self.max_restarts, self.max_seconds = spec.max_restarts, spec.max_seconds
        for new in spec.children:
            for child in self.children.values():
                if same_id(child.spec.id, new.id):
                    child.spec = new
                    break
            else:
                self.add(new, None)

    def group_for(self, child: _Child) -> list[_Child]:
        if self.strategy == "one_for_one":
            return [child]
        children = list(self.children.values())
        if self.strategy == "one_for_all":
            return children
        return children[children.index(child) :]

    def on_restart_ignored(self, child: _Child) -> None:
        if child.spec.restart == "temporary":
            self.remove(child)

    async def significant_ended(self, child: _Child) -> Any:
        if not child.spec.significant or self.auto_shutdown == "never":
            return _CONTINUE
        if self.auto_shutdown == "all_significant" and any(
            c.spec.significant and (c.pid is not None or c.restarting)
            for c in self.children.values()
        ):
            return _CONTINUE
        await self.stop_all()
        return "shutdown"

    async def op_start_child(self, term: Any) -> Pid | None:
        spec = spec_from_term(term)
        for child in self.children.values():
            if same_id(child.spec.id, spec.id):
                if child.pid is not None:
                    raise AlreadyStarted(
                        f"child {spec.id!r} is running as {child.pid!r}", child.pid
                    )
                raise AlreadyPresent(f"child {spec.id!r} exists but is not running", spec.id)
        if spec.significant and self.auto_shutdown == "never":
            raise SpecError(
                f"significant: child {spec.id!r} is significant but auto_shutdown is 'never'"
            )
        result = await self.start(spec)
        if not result.ok:
            raise _start_error(spec.id, result.error)
        if result.pid is not None or spec.restart != "temporary":
            self.add(spec, result.pid)
        return result.pid

    async def op_terminate_child(self, id_: Any) -> None:
        if isinstance(id_, Pid):
            raise ChildNotFound(
                "a Supervisor terminates children by id, not by pid (DynamicSupervisor takes pids)",
                id_,
            )
        await self.stop_child(self.find(id_))

    async def op_restart_child(self, id_: Any) -> Pid | None:
        child = self.find(id_)
        if child.restarting:
            raise ChildRestarting(f"child {id_!r} is being restarted", id_)
        if child.pid is not None:
            raise ChildRunning(f"child {id_!r} is running; terminate it first", id_)
        result = await self.start(child.spec)
        if not result.ok:
            raise _start_error(id_, result.error)
        if result.pid is not None and child.key in self.children:
            child.pid = result.pid
            self.by_pid[result.pid] = child
        return result.pid

    async def op_delete_child(self, id_: Any) -> None:
        child = self.find(id_)
        if child.restarting:
            raise ChildRestarting(f"child {id_!r} is being restarted", id_)
        if child.pid is not None:
            raise ChildRunning(f"child {id_!r} is running; terminate it first", id_)
        self.remove(child)


def _start_error(id_: Any, error: Any) -> SupervisorError:
    if isinstance(error, tuple) and len(error) == 2 and error[0] == "already_started":
        return AlreadyStarted(f"child {id_!r}: its name is taken by {error[1]!r}", error[1])
    return StartChildError(f"child {id_!r} failed to start: {error}", error)


def _restart_event(engine: Any, child: _Child, reason: Any) -> None:
    """`("legion", "supervisor", "restart")`: emitted in the node, so it feeds the registry."""
    from .. import telemetry
    from ..metrics import reason_class

    behaviour = getattr(engine, "behaviour", None)
    name = type(behaviour).__qualname__ if behaviour is not None else type(engine).__qualname__
    telemetry.emit(
        telemetry.SUPERVISOR_RESTART,
        {"system_time": time.time()},
        {
            "supervisor": name,
            "pid": engine.host.pid,
            "child": repr(child.spec.id)[:100],
            "reason": reason_class(reason),
        },
    )


async def call_init(behaviour: Any, arg: Any) -> Any:
    result = behaviour.init(arg)
    if inspect.isawaitable(result):
        result = await result
    return result


class InitEnded(Exception):
    """`init` of a hosted supervisor failed or returned `Ignore()`: it ends with `reason`."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(reason)


async def init_spec(host: Host, cls: type, arg: Any, parse: Any) -> tuple[Any, Any]:
    """Run a hosted supervisor's `init` and parse the spec it returns, reporting a failure or an
    `Ignore()` to the process that started it (then raising `InitEnded`)."""
    try:
        behaviour = cls()
        result = await call_init(behaviour, arg)
        if isinstance(result, Ignore):
            host.init_done(False, True)
            raise InitEnded("normal")
        return behaviour, parse(result)
    except InitEnded:
        raise
    except Exception as exc:
        reason = crash_from_exception(exc)
        host.init_done(False, False, reason)
        raise InitEnded(reason) from None


class Supervisor:
    """A supervisor. Start one with `legion.start_link(legion.Supervisor, spec)`, where `spec` is
    a `legion.SupervisorSpec` (or a list of `legion.child_spec(...)`), or subclass it and return
    the spec from `init(arg)` (return `legion.Ignore()` to not start). A subclass must be
    importable by module path (the node imports it), and its `init` runs in the node: keep it
    quick and non-blocking.
    """

    def init(self, arg: Any) -> Any:
        return arg

    @staticmethod
    async def _legion_host(host: Host, cls: type[Supervisor], arg: Any) -> Any:
        try:
            behaviour, spec = await init_spec(host, cls, arg, sup_spec_from_term)
        except InitEnded as ended:
            return ended.reason
        engine = StaticEngine(host, spec)
        engine.behaviour, engine.start_arg = behaviour, arg
        failure = await engine.start_initial(spec.children)
        if failure is not None:
            host.init_done(False, False, failure)
            return failure
        host.init_done(True)
        return await engine.loop()

    # -- administration: calls to the supervisor, with OTP's results as typed errors -------------

    @staticmethod
    def which_children(sup: Dest, *, timeout: float | None = None) -> list[ChildInfo]:
        """Every child in start order: id, pid ("restarting" or None when not running), type."""
        return _children(_admin(sup, timeout, "which_children"))

    @staticmethod
    async def awhich_children(sup: Dest, *, timeout: float | None = None) -> list[ChildInfo]:
        return _children(await _aadmin(sup, timeout, "which_children"))

    @staticmethod
    def count_children(sup: Dest, *, timeout: float | None = None) -> dict[str, int]:
        """{"specs", "active", "supervisors", "workers"}, as OTP's count_children."""
        return dict(_admin(sup, timeout, "count_children"))

    @staticmethod
    async def acount_children(sup: Dest, *, timeout: float | None = None) -> dict[str, int]:
        return dict(await _aadmin(sup, timeout, "count_children"))

    @staticmethod
    def start_child(sup: Dest, spec: ChildSpec, *, timeout: float | None = None) -> Pid | None:
        """Add and start a child: its pid, or None if its `init` returned `Ignore()`.

        Raises `AlreadyStarted`, `AlreadyPresent`, `StartChildError` or `SpecError`.
        """
        spec = spec_from_term(spec)  # a bad spec is a SpecError here, before the supervisor
        pid: Pid | None = _admin(sup, timeout, "start_child", spec)
        return pid

    @staticmethod
    async def astart_child(
        sup: Dest, spec: ChildSpec, *, timeout: float | None = None
    ) -> Pid | None:
        spec = spec_from_term(spec)
        pid: Pid | None = await _aadmin(sup, timeout, "start_child", spec)
        return pid

    @staticmethod
    def terminate_child(sup: Dest, id: Any, *, timeout: float | None = None) -> None:
        """Stop the child by its shutdown ladder; its spec stays (unless temporary)."""
        _admin(sup, timeout, "terminate_child", id)

    @staticmethod
    async def aterminate_child(
        sup: Dest,
        id: Any,
        *,
        timeout: float | None = None,
    ) -> None:
        await _aadmin(sup, timeout, "terminate_child", id)

    @staticmethod
    def restart_child(sup: Dest, id: Any, *, timeout: float | None = None) -> Pid | None:
        """Start a stopped child again. Raises `ChildRunning`, `ChildRestarting`, ...."""
        pid: Pid | None = _admin(sup, timeout, "restart_child", id)
        return pid

    @staticmethod
    async def arestart_child(
        sup: Dest,
        id: Any,
        *,
        timeout: float | None = None,
    ) -> Pid | None:
        pid: Pid | None = await _aadmin(sup, timeout, "restart_child", id)
        return pid

    @staticmethod
    def delete_child(sup: Dest, id: Any, *, timeout: float | None = None) -> None:
        """Forget a stopped child's spec."""
        _admin(sup, timeout, "delete_child", id)

    @staticmethod
    async def adelete_child(
        sup: Dest,
        id: Any,
        *,
        timeout: float | None = None,
    ) -> None:
        await _aadmin(sup, timeout, "delete_child", id)

    @staticmethod
    def get_childspec(sup: Dest, id: Any, *, timeout: float | None = None) -> ChildSpec:
        """The child's full spec, by id (or by pid)."""
        return _spec(_admin(sup, timeout, "get_childspec", id))

    @staticmethod
    async def aget_childspec(
        sup: Dest,
        id: Any,
        *,
        timeout: float | None = None,
    ) -> ChildSpec:
        return _spec(await _aadmin(sup, timeout, "get_childspec", id))


_ERRORS: dict[str, type[SupervisorError]] = {
    cls.reason: cls
    for cls in (
        AlreadyStarted,
        AlreadyPresent,
        ChildRunning,
        ChildRestarting,
        ChildNotFound,
        MaxChildren,
        StartChildError,
    )
}


def unwrap(answer: Any, sup: Dest, op: str) -> Any:
    answer = normalize_reason(answer)
    if isinstance(answer, tuple) and answer and answer[0] == "ok":
        return answer[1]
    if isinstance(answer, tuple) and len(answer) == 3 and answer[0] == "error":
        code, value = answer[1], answer[2]
        if code == "bad_spec":
            raise SpecError(str(value))
        cls = _ERRORS.get(code)
        if cls is None:
            raise LegionError(f"{op} on {sup!r} failed: {code}: {value!r}")
        detail = f": {value}" if isinstance(value, Crash) else f" ({value!r})"
        raise cls(f"{op} on {sup!r}: {code}{detail}", value)
    raise LegionError(f"{sup!r} answered {op} with {answer!r}; is it a supervisor?")


def _request(op: str, *args: Any) -> tuple[Any, ...]:
    return (_TAG, op, *args)


def _admin(sup: Dest, timeout: float | None, op: str, *args: Any) -> Any:
    timeout = check_timeout(timeout, f"Supervisor.{op}")
    return unwrap(call(sup, _request(op, *args), timeout), sup, op)


async def _aadmin(sup: Dest, timeout: float | None, op: str, *args: Any) -> Any:
    timeout = check_timeout(timeout, f"Supervisor.{op}")
    return unwrap(await acall(sup, _request(op, *args), timeout), sup, op)


def _children(rows: list[Any]) -> list[ChildInfo]:
    return [ChildInfo(r[0], r[1], r[2], list(r[3])) for r in rows]


def _spec(value: Any) -> ChildSpec:
    return msgspec.convert(value, ChildSpec)

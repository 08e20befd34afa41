"""The process API: the same functions in the application and inside every process.

Each function acts for the caller: inside a process, as that process; in the application, as the
application's connection (a process that traps exits), connecting to a node on first use.
`dest` is a `Pid` or a registered name. Every function that can block has an awaitable twin with
an `a` prefix (`call`/`acall`), which works under trio and asyncio and never blocks the loop.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from types import CodeType
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from . import client, process
from .endpoint import Endpoint
from .errors import UpgradeError
from .server import Server
from .terms import CodeChange, From, Pid, Ref

if TYPE_CHECKING:
    from .childspec import ChildSpec, SupervisorSpec
    from .dynamic import DynamicSupervisorSpec

Dest = Pid | str


class _DefaultTimeout(float):
    """`call`'s default: 5 s for a server, no limit for an agent started by this process.

    It equals 5.0 (the documented server default) but is recognised by identity."""


_DEFAULT_TIMEOUT: Any = _DefaultTimeout(5.0)

_TURN_KEY = "$legion.turn"


def check_timeout(timeout: Any, what: str) -> Any:
    """`timeout` as the runtime uses it, or a clear error naming `what` took it.

    A timeout is None (no limit) or a number of seconds >= 0; `math.inf` waits forever too, as
    does anything past `threading.TIMEOUT_MAX` (about 292 years, more than the OS can wait).
    NaN and negative numbers are refused with `ValueError` (NaN compares false with everything,
    so it would otherwise mean "forever" in one place and "at once" in another), and anything
    that is not a number with `TypeError`.
    """
    if timeout is None or timeout is _DEFAULT_TIMEOUT:
        return timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{what}: timeout must be None or a number of seconds, "
            f"not {type(timeout).__name__} {timeout!r}"
        )
    if timeout != timeout or timeout < 0:  # NaN is the one value unequal to itself
        raise ValueError(
            f"{what}: timeout must be None (no limit) or a number of seconds >= 0 "
            f"(math.inf also waits forever), not {timeout!r}"
        )
    if timeout > threading.TIMEOUT_MAX:
        return math.inf
    return timeout


def _call_timeout(timeout: Any, what: str) -> tuple[float | None, bool]:
    """(timeout, extendable): the default is 5 s, lifted when the callee reports that it
    accepted a long call (an agent sends `CallProgress` when it accepts a turn)."""
    if timeout is _DEFAULT_TIMEOUT:
        return 5.0, True
    if type(timeout) is _DefaultTimeout:
        return float(timeout), False
    result: float | None = check_timeout(timeout, what)
    return result, False


def unwrap_reply(result: Any) -> Any:
    """An agent's turn reply becomes its value (or raises `AgentCancelled`); others pass."""
    if type(result) is dict and _TURN_KEY in result and len(result) == 1:
        from legion.agent import unwrap_turn

        return unwrap_turn(result)
    return result


def _endpoint() -> Endpoint:
    worker = process.current()
    return worker if worker is not None else client.get()


# -- what can run as a process ---------------------------------------------------------------------


def _is_agent(target: Any) -> bool:
    return getattr(target, "__legion_agent__", False) is True


def check_target(target: Any, what: str) -> None:
    """Refuse, at the call, a target no process could run.

    A process runs a `legion.Server` subclass (an `Agent` is one), a node-hosted behaviour
    (`Supervisor`, `DynamicSupervisor`, a pg scope) or a function. Any other class would be
    called like a function in the new process and end at once (or crash there, far from the
    mistake), so it is a `TypeError` here. The module-path rules (no nested or interactive
    definitions) are checked when the spawn is encoded.
    """
    if isinstance(target, type):
        if _is_agent(target) and what.endswith("spawn"):
            raise TypeError(
                f"{what}: {target.__qualname__} is a legion.Agent, which needs its configuration "
                "at start: use legion.start_link(...) or legion.start(...)"
            )
        if issubclass(target, Server) or callable(getattr(target, "_legion_host", None)):
            return
        raise TypeError(
            f"{what}: {target.__qualname__} is not a legion.Server subclass; a process runs a "
            "legion.Server or legion.Agent subclass, a Supervisor or DynamicSupervisor, or a "
            f"function (subclass legion.Server: `class {target.__qualname__}(legion.Server)`)"
        )
    if not callable(target):
        raise TypeError(
            f"{what}: cannot run {target!r} as a process; pass a legion.Server subclass, a "
            "legion.Agent subclass or a function"
        )


class _Serves(Protocol):
    """A `Server` (or `Agent`) class whose `init`, by its annotation, never returns `Ignore()`:
    starting one gives a `Pid`, never None."""

    def init(self, arg: Any, /) -> Awaitable[None] | None: ...

    def handle_call(self, request: Any, from_: From, /) -> Any: ...


class _Hosted(Protocol):
    """A node-hosted behaviour: `Supervisor`, `DynamicSupervisor`, a pg scope."""

    @property
    def _legion_host(self) -> Callable[..., Awaitable[Any]]: ...


class _Supervises(_Hosted, Protocol):
    """A supervisor whose `init`, by its annotation, never returns `Ignore()`."""

    def init(
        self, arg: Any, /
    ) -> SupervisorSpec | DynamicSupervisorSpec | list[ChildSpec] | None: ...


class _Function(Protocol):
    """A function (plain or `async def`), which runs as a process until it returns."""

    __code__: CodeType

    def __call__(self, *args: Any) -> Any: ...


_Starts = type[_Serves] | type[_Supervises]
_MayIgnore = type[Server] | type[_Hosted]
_Spawnable = type[Server] | type[_Hosted] | _Function


@overload
def spawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: Literal[False] = False,
    name: str | None = None,
) -> Pid: ...


@overload
def spawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: Literal[True],
    name: str | None = None,
) -> tuple[Pid, Ref]: ...


def spawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: bool = False,
    name: str | None = None,
) -> Pid | tuple[Pid, Ref]:
    """Start `target` (a `legion.Server` subclass or a function) as a new OS process.

    Returns its pid as soon as the process exists (before `init` runs), or `(pid, ref)` with
    `monitor=True`. `link`/`monitor` are set up atomically with the spawn. A function receives
    `arg` when one is given. Raises `TypeError` at once for a target no process can run (a class
    that is not a `Server`, say), `SpawnError` if the worker cannot import `target`, and
    `AlreadyRegistered` if `name` is taken.
    """
    check_target(target, "legion.spawn")
    result: Pid | tuple[Pid, Ref] = _endpoint().spawn(
        target, arg, link=link, monitor=monitor, name=name
    )
    return result


@overload
async def aspawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: Literal[False] = False,
    name: str | None = None,
) -> Pid: ...


@overload
async def aspawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: Literal[True],
    name: str | None = None,
) -> tuple[Pid, Ref]: ...


async def aspawn(
    target: _Spawnable,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: bool = False,
    name: str | None = None,
) -> Pid | tuple[Pid, Ref]:
    check_target(target, "legion.aspawn")
    result: Pid | tuple[Pid, Ref] = await _endpoint().aspawn(
        target, arg, link=link, monitor=monitor, name=name
    )
    return result


@overload
def start_link(
    target: _Starts | _Function,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid: ...


@overload
def start_link(
    target: _MayIgnore,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None: ...


def start_link(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    """Start `target` linked to the caller and wait until its `init` returned.

    Returns the pid, or None if `init` returned `Ignore()` (typed `Pid` when the class's `init`
    is annotated to return None, a spec, or nothing that could be an `Ignore`). If `init`
    raises or returns `Stop`, raises `InitError` (its `reason` holds the process's traceback)
    and no exit signal leaks to the caller. A function starts at once (it has no `init`).

    For a `legion.Agent` subclass, `arg` is an optional first task (run at once, its result
    dropped) and `config` overrides the agent's configuration (validated here, at start).
    Raises `TypeError` for a target no process can run, `ValueError` for a bad `timeout`.
    """
    check_target(target, "legion.start_link")
    timeout = check_timeout(timeout, "legion.start_link")
    if _is_agent(target):
        from legion.agent import start_agent

        return start_agent(target, arg, name=name, timeout=timeout, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = _endpoint().spawn(
        target, arg, link=True, name=name, sync=True, timeout=timeout
    )
    return pid


@overload
async def astart_link(
    target: _Starts | _Function,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid: ...


@overload
async def astart_link(
    target: _MayIgnore,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None: ...


async def astart_link(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    check_target(target, "legion.astart_link")
    timeout = check_timeout(timeout, "legion.astart_link")
    if _is_agent(target):
        from legion.agent import astart_agent

        return await astart_agent(target, arg, name=name, timeout=timeout, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = await _endpoint().aspawn(
        target, arg, link=True, name=name, sync=True, timeout=timeout
    )
    return pid


@overload
def start(
    target: _Starts | _Function,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid: ...


@overload
def start(
    target: _MayIgnore,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None: ...


def start(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    """Like `start_link`, without the link."""
    check_target(target, "legion.start")
    timeout = check_timeout(timeout, "legion.start")
    if _is_agent(target):
        from legion.agent import start_agent

        return start_agent(target, arg, name=name, timeout=timeout, link=False, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = _endpoint().spawn(target, arg, name=name, sync=True, timeout=timeout)
    return pid


@overload
async def astart(
    target: _Starts | _Function,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid: ...


@overload
async def astart(
    target: _MayIgnore,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None: ...


async def astart(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    check_target(target, "legion.astart")
    timeout = check_timeout(timeout, "legion.astart")
    if _is_agent(target):
        from legion.agent import astart_agent

        return await astart_agent(target, arg, name=name, timeout=timeout, link=False, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = await _endpoint().aspawn(target, arg, name=name, sync=True, timeout=timeout)
    return pid


def call(dest: Dest, request: Any, timeout: float | None = _DEFAULT_TIMEOUT) -> Any:
    """Send `request` to a server and wait for its reply.

    Raises `CallTimeout` after `timeout` seconds (a late reply is dropped), `NoProc` if `dest` does
    not exist, `ProcessExit` (with the callee's reason) at once if the callee dies during the
    call, and `CallingSelf` if a process calls itself.

    The default timeout is 5 s for a server and no limit for an agent this process started
    (pass `timeout=None` for an agent started elsewhere). An agent's turn returns its value or
    raises `legion.AgentCancelled`.
    """
    return unwrap_reply(_endpoint().call(dest, request, *_call_timeout(timeout, "legion.call")))


async def acall(dest: Dest, request: Any, timeout: float | None = _DEFAULT_TIMEOUT) -> Any:
    limit = _call_timeout(timeout, "legion.acall")
    return unwrap_reply(await _endpoint().acall(dest, request, *limit))


def cast(dest: Dest, message: Any) -> None:
    """Send `message` to a server's `handle_cast`. Never fails, even if `dest` does not exist."""
    _endpoint().cast(dest, message)


def send(dest: Dest, message: Any) -> None:
    """Put `message` in the mailbox of `dest`.

    Sending to a dead pid drops the message silently; sending to a name nobody holds raises
    `NotRegistered` (so a send to a name waits for the node's answer).
    """
    _endpoint().send(dest, message)


async def asend(dest: Dest, message: Any) -> None:
    await _endpoint().asend(dest, message)


def reply(from_: From, value: Any) -> None:
    """Answer a call later: `from_` is what `handle_call` received. Any process may reply."""
    _endpoint().reply(from_, value)


def link(pid: Pid) -> None:
    """Link the caller and `pid`: when either ends, the other gets an exit signal.

    Linking to a process that does not exist raises `NoProc`, or, when the caller traps exits,
    delivers `Exit(pid, "noproc")`.
    """
    _endpoint().link(pid)


async def alink(pid: Pid) -> None:
    await _endpoint().alink(pid)


def unlink(pid: Pid) -> None:
    """Remove the link; once this returns, no exit signal from that link reaches the caller."""
    _endpoint().unlink(pid)


async def aunlink(pid: Pid) -> None:
    await _endpoint().aunlink(pid)


def monitor(dest: Dest) -> Ref:
    """Watch `dest`: when it ends, the caller receives `Down(ref, pid, reason, name)` once.

    A name is resolved once, and the `Down` carries it. A dead or unknown `dest` gives an
    immediate `Down` with reason "noproc".
    """
    return _endpoint().monitor(dest)


def demonitor(ref: Ref, flush: bool = False) -> None:
    """Stop a monitor. With `flush`, also remove its `Down` if it is already in the mailbox."""
    _endpoint().demonitor(ref, flush)


def exit(pid: Pid, reason: Any) -> None:
    """Send an exit signal to `pid`, as if a linked process had ended with `reason`.

    "kill" cannot be trapped (the target's links then see "killed"); "normal" is ignored by a
    process that does not trap exits (unless it is the caller itself).
    """
    _endpoint().exit(pid, reason)


def trap_exit(flag: bool) -> bool:
    """Turn incoming exit signals (except kill) into `Exit` messages. Returns the old flag.

    The application's connection always traps exits; the call has no effect there.
    """
    endpoint = _endpoint()
    if endpoint is client.current():
        return True
    return endpoint.trap_exit(flag)


def register(name: str, pid: Pid | None = None) -> None:
    """Register `pid` (default: the caller) as `name`. The name is released when it exits.

    Raises `AlreadyRegistered` if the name is taken or the process already has a name, and
    `NoProc` if the process is not alive.
    """
    _endpoint().register(name, pid)


async def aregister(name: str, pid: Pid | None = None) -> None:
    await _endpoint().aregister(name, pid)


def unregister(name: str) -> None:
    """Remove a registered name. Raises `NotRegistered` if nobody holds it."""
    _endpoint().unregister(name)


async def aunregister(name: str) -> None:
    await _endpoint().aunregister(name)


def whereis(name: str) -> Pid | None:
    """The pid registered as `name`, or None."""
    return _endpoint().whereis(name)


async def awhereis(name: str) -> Pid | None:
    return await _endpoint().awhereis(name)


def self() -> Pid:
    """The caller's pid (in the application: the pid of its connection)."""
    return _endpoint().pid


def receive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    """Take the oldest message from the caller's mailbox, waiting up to `timeout` seconds.

    With `match`, take the oldest message for which `match(message)` is true, leaving the others
    in order (Erlang's selective receive). Raises `TimeoutError` if none arrives in time.
    """
    if timeout is not None:
        timeout = check_timeout(timeout, "legion.receive")
    return _endpoint().receive(timeout, match)


async def areceive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    return await _endpoint().areceive(check_timeout(timeout, "legion.areceive"), match)


def stop(dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
    """Stop a process with `reason` and wait until it is gone.

    A `Server` runs `terminate(reason)` first. Raises `NoProc` if `dest` is not alive,
    `CallTimeout` if it has not ended within `timeout`.
    """
    _endpoint().stop(dest, reason, check_timeout(timeout, "legion.stop"))


async def astop(dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
    await _endpoint().astop(dest, reason, check_timeout(timeout, "legion.astop"))


def code_change(
    dest: Dest, extra: Any = None, *, reload: bool = False, timeout: float | None = 5.0
) -> Any:
    """Upgrade a running server: optionally reload its module, then run its `code_change`.

    With `reload=True` the server's module is re-imported inside that process and the live
    object switches to the new class (state on `self` is kept). `Server.code_change(old_vsn,
    extra)` then migrates the state, between two messages. Returns the new `vsn`; raises
    `UpgradeError` (the server keeps running the old code) if the reload or migration fails.
    """
    timeout = check_timeout(timeout, "legion.code_change")
    return _upgrade_result(dest, _endpoint().call(dest, CodeChange(extra, reload), timeout))


async def acode_change(
    dest: Dest, extra: Any = None, *, reload: bool = False, timeout: float | None = 5.0
) -> Any:
    timeout = check_timeout(timeout, "legion.acode_change")
    return _upgrade_result(dest, await _endpoint().acall(dest, CodeChange(extra, reload), timeout))


def _upgrade_result(dest: Dest, result: Any) -> Any:
    status, value = result
    if status != "ok":
        raise UpgradeError(f"code_change of {dest!r} failed: {value}", value)
    return value


def shutdown(timeout: float = 30.0) -> None:
    """Disconnect the application from its node (an embedded node stops all its processes).

    Called automatically at interpreter exit. The next API call starts a new connection.
    """
    client.shutdown(check_timeout(timeout, "legion.shutdown"))

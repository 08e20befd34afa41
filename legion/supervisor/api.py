"""The process API: the same functions in the application and inside every process.

Each function acts for the caller: inside a process, as that process; in the application, as the
application's connection (a process that traps exits), connecting to a node on first use.
`dest` is a `Pid` or a registered name. Every function that can block has an awaitable twin with
an `a` prefix (`call`/`acall`), which works under trio and asyncio and never blocks the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import client, process
from .endpoint import Endpoint
from .errors import UpgradeError
from .terms import CodeChange, From, Pid, Ref

Dest = Pid | str


class _DefaultTimeout(float):
    """`call`'s default: 5 s for a server, no limit for an agent started by this process.

    It equals 5.0 (the documented server default) but is recognised by identity."""


_DEFAULT_TIMEOUT: Any = _DefaultTimeout(5.0)

_TURN_KEY = "$legion.turn"


def _call_timeout(dest: Dest, timeout: Any) -> tuple[float | None, bool]:
    """(timeout, extendable): the default is 5 s, lifted when the callee reports that it
    accepted a long call (an agent sends `CallProgress` when it accepts a turn)."""
    if timeout is _DEFAULT_TIMEOUT:
        return 5.0, True
    if type(timeout) is _DefaultTimeout:
        return float(timeout), False
    result: float | None = timeout
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


def spawn(
    target: Any,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: bool = False,
    name: str | None = None,
) -> Any:
    """Start `target` (a `legion.Server` subclass or a function) as a new OS process.

    Returns its pid as soon as the process exists (before `init` runs), or `(pid, ref)` with
    `monitor=True`. `link`/`monitor` are set up atomically with the spawn. A function receives
    `arg` when one is given. Raises `SpawnError` if the worker cannot import `target`, and
    `AlreadyRegistered` if `name` is taken.
    """
    return _endpoint().spawn(target, arg, link=link, monitor=monitor, name=name)


async def aspawn(
    target: Any,
    arg: Any = None,
    *,
    link: bool = False,
    monitor: bool = False,
    name: str | None = None,
) -> Any:
    return await _endpoint().aspawn(target, arg, link=link, monitor=monitor, name=name)


def start_link(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    """Start `target` linked to the caller and wait until its `init` returned.

    Returns the pid, or None if `init` returned `Ignore()`. If `init` raises or returns `Stop`,
    raises `InitError` (its `reason` holds the process's traceback) and no exit signal leaks to
    the caller.

    For a `legion.Agent` subclass, `arg` is an optional first task (run at once, its result
    dropped) and `config` overrides the agent's configuration (validated here, at start).
    """
    if getattr(target, "__legion_agent__", False) is True:
        from legion.agent import start_agent

        return start_agent(target, arg, name=name, timeout=timeout, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = _endpoint().spawn(
        target, arg, link=True, name=name, sync=True, timeout=timeout
    )
    return pid


async def astart_link(
    target: Any,
    arg: Any = None,
    *,
    name: str | None = None,
    timeout: float | None = None,
    **config: Any,
) -> Pid | None:
    if getattr(target, "__legion_agent__", False) is True:
        from legion.agent import astart_agent

        return await astart_agent(target, arg, name=name, timeout=timeout, **config)
    if config:
        raise TypeError(f"unexpected keyword arguments for a server: {sorted(config)}")
    pid: Pid | None = await _endpoint().aspawn(
        target, arg, link=True, name=name, sync=True, timeout=timeout
    )
    return pid


def start(
    target: Any, arg: Any = None, *, name: str | None = None, timeout: float | None = None
) -> Pid | None:
    """Like `start_link`, without the link."""
    pid: Pid | None = _endpoint().spawn(target, arg, name=name, sync=True, timeout=timeout)
    return pid


async def astart(
    target: Any, arg: Any = None, *, name: str | None = None, timeout: float | None = None
) -> Pid | None:
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
    return unwrap_reply(_endpoint().call(dest, request, *_call_timeout(dest, timeout)))


async def acall(dest: Dest, request: Any, timeout: float | None = _DEFAULT_TIMEOUT) -> Any:
    return unwrap_reply(await _endpoint().acall(dest, request, *_call_timeout(dest, timeout)))


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
    return _endpoint().receive(timeout, match)


async def areceive(timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
    return await _endpoint().areceive(timeout, match)


def stop(dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
    """Stop a process with `reason` and wait until it is gone.

    A `Server` runs `terminate(reason)` first. Raises `NoProc` if `dest` is not alive,
    `CallTimeout` if it has not ended within `timeout`.
    """
    _endpoint().stop(dest, reason, timeout)


async def astop(dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
    await _endpoint().astop(dest, reason, timeout)


def code_change(
    dest: Dest, extra: Any = None, *, reload: bool = False, timeout: float | None = 5.0
) -> Any:
    """Upgrade a running server: optionally reload its module, then run its `code_change`.

    With `reload=True` the server's module is re-imported inside that process and the live
    object switches to the new class (state on `self` is kept). `Server.code_change(old_vsn,
    extra)` then migrates the state, between two messages. Returns the new `vsn`; raises
    `UpgradeError` (the server keeps running the old code) if the reload or migration fails.
    """
    return _upgrade_result(dest, _endpoint().call(dest, CodeChange(extra, reload), timeout))


async def acode_change(
    dest: Dest, extra: Any = None, *, reload: bool = False, timeout: float | None = 5.0
) -> Any:
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
    client.shutdown(timeout)

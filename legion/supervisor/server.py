"""The Server behaviour (Erlang's gen_server): a process that answers calls and casts in order.

Subclass `Server` and override the callbacks you need; each may be a plain or an `async` method.
State lives on `self`. A callback's return value steers the loop:

* `handle_call` returns the reply, or `Reply(value, timeout=, continue_=)`, `NoReply(...)` (answer
  later with `legion.reply(from_, value)`), or `Stop(reason, reply=...)`;
* `handle_cast`, `handle_info` and `handle_continue` return None, `NoReply(timeout=, continue_=)`,
  `Continue(term)` or `Stop(reason)`;
* `init` returns None, `Continue(term)`, `NoReply(timeout=...)`, `Ignore()` (the start returns
  None and the process ends normally) or `Stop(reason)` (the start fails with that reason).

`timeout` is an idle timeout: if no message arrives within it, `handle_info(legion.Timeout)` runs.
`continue_`/`Continue(term)` runs `handle_continue(term)` before the next message is read.

`terminate(reason)` runs when a callback returns `Stop`, when a callback raises, on
`legion.stop()`, and when the process traps exits and its parent (or the node, at shutdown) sends
an exit signal. It does not run when the process is killed or dies of an untrapped exit signal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import wire
from .process import SystemStop, Worker, call_maybe_async, reason_of
from .terms import CallRequest, CastRequest, CodeChange, Exit, From, Timeout

if TYPE_CHECKING:
    from .wire import Boot

__all__ = ["Continue", "Ignore", "NoReply", "Reply", "Server", "Stop"]

log = logging.getLogger("legion")

_UNSET: Any = type("_Unset", (), {"__repr__": lambda self: "UNSET"})()

AGENT_QUERY = "$legion.agent"
"""The first item of an agent query (`legion.get_messages`, `respond`, ...)."""
NOT_AN_AGENT = [AGENT_QUERY, "not_an_agent"]
"""The runtime's answer to an agent query sent to a server that is not an agent: the query
never reaches its `handle_call` (where it would crash an ordinary server or be echoed back)."""


def _check_timeout(timeout: Any, what: str) -> None:
    """The rule every timeout of the runtime follows (`api.check_timeout`): None or seconds
    >= 0; NaN, negative numbers and non-numbers are refused when the value is made."""
    from .api import check_timeout  # api imports this module

    check_timeout(timeout, what)


@dataclass(frozen=True, slots=True)
class Reply:
    """Reply `value` to the caller, then optionally set an idle timeout or continue."""

    value: Any
    timeout: float | None = None
    continue_: Any = _UNSET

    def __post_init__(self) -> None:
        if self.timeout is not None:
            _check_timeout(self.timeout, "legion.Reply")


@dataclass(frozen=True, slots=True)
class NoReply:
    """No reply now (the caller waits for `legion.reply`); outside calls: carry on."""

    timeout: float | None = None
    continue_: Any = _UNSET

    def __post_init__(self) -> None:
        if self.timeout is not None:
            _check_timeout(self.timeout, "legion.NoReply")


@dataclass(frozen=True, slots=True)
class Continue:
    """Run `handle_continue(term)` before reading the next message."""

    term: Any


@dataclass(frozen=True, slots=True)
class Stop:
    """End the process with `reason` (after replying `reply`, in `handle_call`)."""

    reason: Any = "normal"
    reply: Any = _UNSET


@dataclass(frozen=True, slots=True)
class Ignore:
    """Returned from `init`: do not start; the start returns None and the process ends normally."""


class Server:
    """Base class of a server process. See the module documentation for the callback contract."""

    idle_timeout: float | None = None
    """Default idle timeout applied after every callback that does not set one itself."""

    vsn: Any = None
    """The version of this code, passed to `code_change` as `old_vsn` after an upgrade."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "idle_timeout" in cls.__dict__ and cls.idle_timeout is not None:
            _check_timeout(cls.idle_timeout, f"{cls.__qualname__}.idle_timeout")

    def init(self, arg: Any) -> Any:
        return None

    def handle_call(self, request: Any, from_: From) -> Any:
        raise NotImplementedError(
            f"{type(self).__qualname__} received a call ({request!r}) but defines no handle_call"
        )

    def handle_cast(self, message: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__qualname__} received a cast ({message!r}) but defines no handle_cast"
        )

    def handle_info(self, message: Any) -> Any:
        log.warning("%s received an unexpected message: %r", type(self).__qualname__, message)
        return None

    def handle_continue(self, term: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__qualname__} returned Continue({term!r}) but defines no handle_continue"
        )

    def terminate(self, reason: Any) -> Any:
        return None

    def code_change(self, old_vsn: Any, extra: Any) -> Any:
        """Migrate the state on `self` after an upgrade (`legion.code_change`).

        It runs between two messages, so no call sees a half-migrated state. If it raises, the
        upgrade is undone (the old class is put back) and the server carries on.
        """
        return None


class _Steer:
    """What a callback's return value asks the loop to do next."""

    __slots__ = ("cont", "stop", "timeout")

    def __init__(self, timeout: float | None, cont: Any, stop: Any) -> None:
        self.timeout, self.cont, self.stop = timeout, cont, stop


def _steer(server: Server, result: Any) -> _Steer:
    default = server.idle_timeout
    if result is None:
        return _Steer(default, _UNSET, _UNSET)
    if isinstance(result, Reply | NoReply):
        return _Steer(
            result.timeout if result.timeout is not None else default, result.continue_, _UNSET
        )
    if isinstance(result, Continue):
        return _Steer(default, result.term, _UNSET)
    if isinstance(result, Stop):
        return _Steer(None, _UNSET, result.reason)
    return _Steer(default, _UNSET, _UNSET)


async def serve(worker: Worker, cls: type[Server], boot: Boot) -> Any:
    """Run a server process from `init` to its exit reason."""
    server = cls()
    try:
        arg = wire.decode_term(boot.arg) if boot.has_arg else None
        result = await call_maybe_async(server.init, arg)
        if server.idle_timeout is not None:  # init may set it on the instance
            _check_timeout(server.idle_timeout, f"{cls.__qualname__}.idle_timeout")
    except BaseException as exc:
        reason = reason_of(exc)
        if boot.sync:
            worker.send_init_done(wire.InitDone(False, False, reason))
        return reason
    if isinstance(result, Ignore):
        if boot.sync:
            worker.send_init_done(wire.InitDone(False, True, None))
        return "normal"
    if isinstance(result, Stop):
        if boot.sync:
            worker.send_init_done(wire.InitDone(False, False, result.reason))
        return result.reason
    if boot.sync:
        worker.send_init_done(wire.InitDone(True, False, None))
    return await _loop(worker, server, _steer(server, result))


async def _loop(worker: Worker, server: Server, steer: _Steer) -> Any:
    node_pid = None
    if worker.parent is not None:
        from .terms import Pid

        node_pid = Pid(worker.pid.node, 0)
    try:
        while True:
            while steer.cont is not _UNSET and steer.stop is _UNSET:
                steer = _steer(server, await call_maybe_async(server.handle_continue, steer.cont))
            if steer.stop is not _UNSET:
                return await _terminate(server, steer.stop)
            message = await worker.next_message(steer.timeout)
            if message is None:
                message = Timeout
            steer = await _handle(worker, server, message, node_pid)
    except BaseException as exc:
        return await _terminate(server, reason_of(exc))


async def _handle(worker: Worker, server: Server, message: Any, node_pid: Any) -> _Steer:
    if type(message) is CallRequest:
        if type(message.request) is CodeChange:
            worker.reply(message.from_, await _code_change(server, message.request))
            return _steer(server, None)
        if _is_agent_query(message.request) and getattr(server, "__legion_agent__", 0) is not True:
            worker.reply(message.from_, NOT_AN_AGENT)
            return _steer(server, None)
        result = await call_maybe_async(server.handle_call, message.request, message.from_)
        if isinstance(result, Reply):
            worker.reply(message.from_, result.value)
        elif isinstance(result, Stop):
            if result.reply is not _UNSET:
                worker.reply(message.from_, result.reply)
        elif not isinstance(result, NoReply):
            worker.reply(message.from_, result)
            return _steer(server, None)
        return _steer(server, result)
    if type(message) is CastRequest:
        return _steer(server, await call_maybe_async(server.handle_cast, message.message))
    if type(message) is SystemStop:
        return _Steer(None, _UNSET, message.reason)
    if (
        type(message) is Exit
        and worker.trapping
        and (message.pid == worker.parent or message.pid == node_pid)
    ):
        return _Steer(None, _UNSET, message.reason)
    return _steer(server, await call_maybe_async(server.handle_info, message))


def _is_agent_query(request: Any) -> bool:
    return type(request) is list and len(request) >= 2 and request[0] == AGENT_QUERY


async def _code_change(server: Server, request: CodeChange) -> Any:
    """Load new code (if asked), swap the server's class and migrate its state; undo it all
    if any step fails, so the server carries on with its old code and state.

    `request.reload` is False (`legion.code_change`: migrate only), True (re-execute the
    server's own module first) or a list of module names (`legion.reload`: re-execute those
    this process has imported; `code_change` runs only when the server's own module is among
    them). The reply is `["ok", vsn]`, with the modules loaded here appended for a list, or
    `["error", reason]`.
    """
    from . import codeload

    old_cls = type(server)
    old_vsn = old_cls.vsn  # read now: a class patched in place already holds the new vsn
    loaded = None
    try:
        if request.reload is not False:
            names = request.reload if isinstance(request.reload, list) else [old_cls.__module__]
            loaded = codeload.load(names)
            server.__class__ = codeload.current(old_cls)
        if loaded is None or old_cls.__module__ in loaded.modules:
            await call_maybe_async(server.code_change, old_vsn, request.extra)
    except BaseException as exc:
        server.__class__ = old_cls
        if loaded is not None:
            loaded.undo()
        return ["error", reason_of(exc)]
    if isinstance(request.reload, list):
        return ["ok", type(server).vsn, loaded.modules if loaded is not None else []]
    return ["ok", type(server).vsn]


async def _terminate(server: Server, reason: Any) -> Any:
    try:
        await call_maybe_async(server.terminate, reason)
    except BaseException as exc:
        return reason_of(exc)
    return reason

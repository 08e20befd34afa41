"""One end of a connection to the node: what the application and every process share.

An `Endpoint` turns the process API (`call`, `link`, `monitor`, `receive`, ...) into protocol frames
and turns the frames the node sends back into replies, acknowledgements and mailbox messages. It
does not know how it waits: the application's client (`client.py`) waits on threads and on any
event loop, a process (`process.py`) waits inside its own trio loop. Each subclass supplies
`_write`, `_wait` (blocking) and `_await` (async); everything else lives here, once.

Every blocking operation has an awaitable twin named with an `a` prefix.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from . import wire
from .errors import (
    AlreadyRegistered,
    CallingSelf,
    CallTimeout,
    LegionError,
    MessageTooLarge,
    NoProc,
    NotRegistered,
    ProcessExit,
    SpawnError,
)
from .mailbox import Mailbox
from .terms import (
    CallProgress,
    CallRequest,
    CastRequest,
    Down,
    Exit,
    From,
    Pid,
    Ref,
    normalize_reason,
)

Dest = Pid | str
DEMONITORED = -1  # the `req` of the Ack that confirms a Demonitor; its value is the Ref


class InitError(SpawnError):
    """`init` of a synchronously started process raised or asked to stop.

    `reason` is the process's exit reason (a `Crash` with the remote traceback for an exception).
    """


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else time.monotonic() + timeout


def target_path(target: Any) -> tuple[str, str]:
    """The (module, qualname) by which a worker imports `target`, or a clear error."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(
            f"cannot run {target!r} as a process: pass a legion.Server subclass or a function "
            "defined at the top level of a module"
        )
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise TypeError(
            f"cannot run {qualname} as a process: it is defined inside a function; processes "
            "import their class or function by module path, so define it at a module's top level"
        )
    return module, qualname


class Endpoint:
    """The process API over one connection to the node."""

    pid: Pid

    def __init__(self) -> None:
        self._reqs = itertools.count(1)
        self._refs = itertools.count(1)
        self._results: dict[int | Ref, wire.Frame] = {}
        self._calls: set[Ref] = set()
        self._extended: set[Ref] = set()  # calls whose callee said it is working (CallProgress)
        self._dropped: set[Ref] = set()
        self.mailbox = Mailbox()
        self.trapping = False
        self.max_frame = wire.DEFAULT_MAX_FRAME  # the node's limit, told in Welcome or Boot
        self._lock: AbstractContextManager[Any] = nullcontext()

    # -- supplied by subclasses ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Block until `ready()` or the deadline; True if ready."""
        raise NotImplementedError

    async def _await(self, ready: Callable[[], bool], deadline: float) -> bool:
        raise NotImplementedError

    # -- incoming frames -------------------------------------------------------------------------

    def dispatch(self, msg: wire.Frame, size: int = 0) -> None:
        """File one frame from the node: a reply for a waiter, or a message for the mailbox
        (counted as `size` bytes, the frame's size where the reader knows it)."""
        if type(msg) is wire.MessageIn:
            value = wire.decode_term(msg.payload)
            if type(value) is CallProgress:
                if value.ref in self._calls:
                    self._extended.add(value.ref)
            else:
                self.mailbox.append(value, size)
        elif type(msg) is wire.Ack:
            if msg.req == DEMONITORED:
                self._dropped.discard(msg.value)
            else:
                self._results[msg.req] = msg
        elif type(msg) is wire.ReplyIn or type(msg) is wire.CallFailed:
            if msg.ref in self._calls:
                self._results[msg.ref] = msg
        elif type(msg) is wire.DownIn:
            if msg.ref in self._calls:
                self._results[msg.ref] = msg
            elif msg.ref not in self._dropped:
                down = Down(msg.ref, msg.pid, normalize_reason(msg.reason), msg.name)
                self.mailbox.append(down, size)
        elif type(msg) is wire.ExitIn:
            self.mailbox.append(Exit(msg.sender, normalize_reason(msg.reason)), size)
        elif type(msg) is wire.CallIn:
            self.file_call(msg, size)
        elif type(msg) is wire.CastIn:
            self.mailbox.append(CastRequest(wire.decode_term(msg.payload)), size)
        else:
            self.dispatch_other(msg)

    def file_call(self, msg: wire.CallIn, size: int) -> None:
        """File a call for the mailbox (a worker answers code changes first: `Worker`)."""
        self.mailbox.append(
            CallRequest(From(msg.caller, msg.ref), wire.decode_term(msg.payload)), size
        )

    def dispatch_other(self, msg: wire.Frame) -> None:
        raise LegionError(f"unexpected frame from the node: {type(msg).__name__}")

    # -- helpers ---------------------------------------------------------------------------------

    def send_frame(self, msg: wire.Frame) -> None:
        """Write one frame; one larger than the node accepts is refused here, unsent
        (`MessageTooLarge`), so the connection and the node never see it."""
        data = wire.encode(msg)
        if len(data) - 4 > self.max_frame:
            raise MessageTooLarge(len(data) - 4, self.max_frame)
        self._write(data)

    def make_ref(self) -> Ref:
        return Ref(self.pid.node, self.pid.serial, next(self._refs))

    def _has(self, key: int | Ref) -> Callable[[], bool]:
        results = self._results
        return lambda: key in results

    def _take(self, key: int | Ref) -> wire.Frame:
        with self._lock:
            return self._results.pop(key)

    def _request(self, build: Callable[[int], wire.Frame]) -> int:
        req = next(self._reqs)
        self.send_frame(build(req))
        return req

    def _ack(self, req: int, dest: Any = None) -> Any:
        ack = self._take(req)
        assert type(ack) is wire.Ack
        if ack.error is not None:
            raise _ack_error(ack, dest)
        return ack.value

    def _ack_or_timeout(self, req: int, ok: bool, dest: Any, timeout: float | None) -> Any:
        if not ok:
            assert timeout is not None
            raise CallTimeout(dest, timeout)
        return self._ack(req, dest)

    # -- spawning --------------------------------------------------------------------------------

    def _spawn_frame(
        self,
        target: Any,
        arg: Any,
        has_arg: bool,
        link: bool,
        monitor: bool,
        name: str | None,
        sync: bool,
    ) -> tuple[Callable[[int], wire.Frame], Ref | None]:
        import os
        import sys

        module, qualname = target_path(target)
        main_path = None
        if module == "__main__":
            main_mod = sys.modules.get("__main__")
            main_path = getattr(main_mod, "__file__", None)
            if main_path is None:
                raise TypeError(
                    f"cannot run {qualname} as a process: it is defined in an interactive "
                    "session; define it in a module (or a script run with `python script.py`)"
                )
            main_path = os.path.abspath(main_path)
        elif module == "__mp_main__":
            main_path = getattr(sys.modules.get("__mp_main__"), "__file__", None)
            module = "__main__"
        if name is not None and not isinstance(name, str):
            raise TypeError(f"a process name must be a str, not {type(name).__name__}")
        _check_flag(link, "link")
        _check_flag(monitor, "monitor")
        _check_flag(sync, "sync")
        payload = wire.encode_term(arg)
        ref = self.make_ref() if monitor else None
        sys_path = _sys_path()
        cwd = os.getcwd()
        hosted = callable(getattr(target, "_legion_host", None))
        if hosted and main_path is None:
            main_file = getattr(sys.modules.get("__main__"), "__file__", None)
            main_path = os.path.abspath(main_file) if main_file else None

        def build(req: int) -> wire.Frame:
            return wire.Spawn(
                req, module, qualname, main_path, sys_path, cwd, payload, has_arg, link, ref,
                name, sync, hosted,
            )  # fmt: skip

        return build, ref

    def spawn(
        self,
        target: Any,
        arg: Any = None,
        *,
        link: bool = False,
        monitor: bool = False,
        name: str | None = None,
        sync: bool = False,
        timeout: float | None = None,
    ) -> Any:
        build, ref = self._spawn_frame(target, arg, arg is not None, link, monitor, name, sync)
        req = self._request(build)
        ok = self._wait(self._has(req), _deadline(timeout))
        pid = self._spawn_result(req, ok, target, timeout)
        return (pid, ref) if monitor else pid

    async def aspawn(
        self,
        target: Any,
        arg: Any = None,
        *,
        link: bool = False,
        monitor: bool = False,
        name: str | None = None,
        sync: bool = False,
        timeout: float | None = None,
    ) -> Any:
        build, ref = self._spawn_frame(target, arg, arg is not None, link, monitor, name, sync)
        req = self._request(build)
        ok = await self._await(self._has(req), _deadline(timeout))
        pid = self._spawn_result(req, ok, target, timeout)
        return (pid, ref) if monitor else pid

    def _spawn_result(self, req: int, ok: bool, target: Any, timeout: float | None) -> Any:
        if not ok:
            assert timeout is not None
            raise CallTimeout(getattr(target, "__qualname__", target), timeout)
        return self._ack(req, target)

    # -- call, cast, send, reply -----------------------------------------------------------------

    def _start_call(self, dest: Dest, request: Any) -> Ref:
        if type(dest) is not Pid:
            _check_dest(dest, "call")
        if dest == self.pid:
            raise CallingSelf(f"{self.pid!r} called itself, which would deadlock")
        payload = wire.encode_term(request)
        ref = self.make_ref()
        with self._lock:
            self._calls.add(ref)
        try:
            self.send_frame(wire.Call(dest, ref, payload))
        except BaseException:  # refused (MessageTooLarge) or the node is gone
            with self._lock:
                self._calls.discard(ref)
            raise
        return ref

    def _finish_call(self, ref: Ref, ok: bool, dest: Dest, timeout: float | None) -> Any:
        with self._lock:
            self._calls.discard(ref)
            self._extended.discard(ref)
            msg = self._results.pop(ref, None) if ok else None
        if msg is None:
            self.send_frame(wire.CancelCall(ref))
            assert timeout is not None
            raise CallTimeout(dest, timeout)
        if type(msg) is wire.ReplyIn:
            return wire.decode_term(msg.payload)
        assert type(msg) is wire.CallFailed or type(msg) is wire.DownIn
        reason = normalize_reason(msg.reason)
        if reason == "noproc" and type(msg) is wire.CallFailed:
            raise NoProc(dest)  # never delivered; a callee that exited "noproc" had it
        if reason == "calling_self":
            raise CallingSelf(f"{self.pid!r} called itself (through {dest!r}), a deadlock")
        raise ProcessExit(reason, f"{dest!r} exited during the call: {reason}")

    def _answered(self, ref: Ref, extendable: bool) -> Callable[[], bool]:
        results, extended = self._results, self._extended
        if extendable:
            return lambda: ref in results or ref in extended
        return lambda: ref in results

    def call(
        self, dest: Dest, request: Any, timeout: float | None = 5.0, extendable: bool = False
    ) -> Any:
        """With `extendable`, a `CallProgress` from the callee lifts the timeout."""
        ref = self._start_call(dest, request)
        ok = self._wait(self._answered(ref, extendable), _deadline(timeout))
        if ok and ref not in self._results:
            ok = self._wait(self._has(ref), math.inf)
        return self._finish_call(ref, ok, dest, timeout)

    async def acall(
        self, dest: Dest, request: Any, timeout: float | None = 5.0, extendable: bool = False
    ) -> Any:
        ref = self._start_call(dest, request)
        ok = await self._await(self._answered(ref, extendable), _deadline(timeout))
        if ok and ref not in self._results:
            ok = await self._await(self._has(ref), math.inf)
        return self._finish_call(ref, ok, dest, timeout)

    def cast(self, dest: Dest, message: Any) -> None:
        if type(dest) is not Pid:
            _check_dest(dest, "cast")
        self.send_frame(wire.Cast(dest, wire.encode_term(message)))

    def send(self, dest: Dest, message: Any) -> None:
        if type(dest) is not Pid:  # the hot path sends to a Pid: one comparison
            _check_dest(dest, "send")
        payload = wire.encode_term(message)
        if isinstance(dest, str):
            req = self._request(lambda r: wire.Send(dest, payload, r))
            self._wait(self._has(req), math.inf)
            self._ack(req, dest)
        else:
            self.send_frame(wire.Send(dest, payload, 0))

    async def asend(self, dest: Dest, message: Any) -> None:
        _check_dest(dest, "send")
        payload = wire.encode_term(message)
        if isinstance(dest, str):
            req = self._request(lambda r: wire.Send(dest, payload, r))
            await self._await(self._has(req), math.inf)
            self._ack(req, dest)
        else:
            self.send_frame(wire.Send(dest, payload, 0))

    def reply(self, from_: From, value: Any) -> None:
        if (
            not isinstance(from_, From)
            or not isinstance(from_.pid, Pid)
            or not isinstance(from_.ref, Ref)
        ):
            raise TypeError(f"reply() needs the From a call delivered, not {from_!r}")
        self.send_frame(wire.Reply(from_.pid, from_.ref, wire.encode_term(value)))

    # -- links, monitors, exits ------------------------------------------------------------------

    def _acked(self, build: Callable[[int], wire.Frame], dest: Any) -> Any:
        req = self._request(build)
        self._wait(self._has(req), math.inf)
        return self._ack(req, dest)

    async def _aacked(self, build: Callable[[int], wire.Frame], dest: Any) -> Any:
        req = self._request(build)
        await self._await(self._has(req), math.inf)
        return self._ack(req, dest)

    def link(self, pid: Pid) -> None:
        _check_pid(pid)
        self._acked(lambda r: wire.Link(r, pid), pid)

    async def alink(self, pid: Pid) -> None:
        _check_pid(pid)
        await self._aacked(lambda r: wire.Link(r, pid), pid)

    def unlink(self, pid: Pid) -> None:
        _check_pid(pid)
        self._acked(lambda r: wire.Unlink(r, pid), pid)

    async def aunlink(self, pid: Pid) -> None:
        _check_pid(pid)
        await self._aacked(lambda r: wire.Unlink(r, pid), pid)

    def monitor(self, dest: Dest) -> Ref:
        _check_dest(dest, "monitor")
        ref = self.make_ref()
        self.send_frame(wire.Monitor(ref, dest))
        return ref

    def demonitor(self, ref: Ref, flush: bool = False) -> None:
        """Stop the monitor. No `Down` for it is added to the mailbox afterwards; with `flush`,
        one already there is removed too. Unknown references are ignored."""
        if not isinstance(ref, Ref):
            raise TypeError(f"demonitor() needs a Ref from monitor(), not {ref!r}")
        with self._lock:
            # Until the node confirms (DEMONITORED), a Down for `ref` may still be on its way.
            self._dropped.add(ref)
            if flush:
                self.mailbox.drop(lambda m: type(m) is Down and m.ref == ref)
        self.send_frame(wire.Demonitor(ref))

    def exit(self, pid: Pid, reason: Any) -> None:
        _check_pid(pid)
        wire.encode_term(reason)
        self.send_frame(wire.ExitSignal(pid, reason))

    def trap_exit(self, flag: bool) -> bool:
        old, self.trapping = self.trapping, bool(flag)
        self.send_frame(wire.TrapExit(bool(flag)))
        return old

    # -- names -----------------------------------------------------------------------------------

    def register(self, name: str, pid: Pid | None = None) -> None:
        _check_name(name)
        target = self.pid if pid is None else pid
        _check_pid(target)
        self._acked(lambda r: wire.Register(r, name, target), target)

    async def aregister(self, name: str, pid: Pid | None = None) -> None:
        _check_name(name)
        target = self.pid if pid is None else pid
        _check_pid(target)
        await self._aacked(lambda r: wire.Register(r, name, target), target)

    def unregister(self, name: str) -> None:
        _check_name(name)
        self._acked(lambda r: wire.Unregister(r, name), name)

    async def aunregister(self, name: str) -> None:
        _check_name(name)
        await self._aacked(lambda r: wire.Unregister(r, name), name)

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> int:
        """Ask the node to serve `/metrics` on `host:port`; the port it listens on.

        Raises `TypeError` for a port that is not an int or a host that is not a str, and
        `ValueError` for a port outside 0..65535, here, before the node is asked."""
        check_port(port, "serve_metrics")
        if not isinstance(host, str) or not host:
            raise TypeError(f"serve_metrics: host must be a non-empty str, got {host!r}")
        value: int = self._acked(lambda r: wire.ServeMetrics(r, host, port), None)
        return value

    def whereis(self, name: str) -> Pid | None:
        _check_name(name)
        value: Pid | None = self._acked(lambda r: wire.Whereis(r, name), name)
        return value

    async def awhereis(self, name: str) -> Pid | None:
        _check_name(name)
        value: Pid | None = await self._aacked(lambda r: wire.Whereis(r, name), name)
        return value

    # -- stop, sync ------------------------------------------------------------------------------

    def _stop_result(
        self, req: int, ok: bool, dest: Dest, reason: Any, timeout: float | None
    ) -> None:
        actual = normalize_reason(self._ack_or_timeout(req, ok, dest, timeout))
        if actual != reason:
            raise ProcessExit(actual, f"{dest!r} exited with {actual!r} instead of {reason!r}")

    def stop(self, dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
        _check_dest(dest, "stop")
        if dest == self.pid:
            raise CallingSelf("a process cannot stop() itself; raise legion.ProcessExit instead")
        req = self._request(lambda r: wire.StopProcess(r, dest, reason))
        ok = self._wait(self._has(req), _deadline(timeout))
        self._stop_result(req, ok, dest, reason, timeout)

    async def astop(self, dest: Dest, reason: Any = "normal", timeout: float | None = 5.0) -> None:
        _check_dest(dest, "stop")
        if dest == self.pid:
            raise CallingSelf("a process cannot stop() itself; raise legion.ProcessExit instead")
        req = self._request(lambda r: wire.StopProcess(r, dest, reason))
        ok = await self._await(self._has(req), _deadline(timeout))
        self._stop_result(req, ok, dest, reason, timeout)

    def sync(self) -> None:
        """Wait until the node has handled every frame this endpoint sent before."""
        self._acked(lambda r: wire.Sync(r), None)

    async def async_(self) -> None:
        await self._aacked(lambda r: wire.Sync(r), None)

    # -- receive ---------------------------------------------------------------------------------

    def _match(self, match: Callable[[Any], bool] | None) -> Callable[[], bool]:
        box = self.mailbox
        if match is None:
            return lambda: bool(box)
        return lambda: any(match(m) for m in box)

    def _pop(self, match: Callable[[Any], bool] | None) -> Any:
        with self._lock:
            if match is None:
                return self.mailbox.popleft()
            for i, m in enumerate(self.mailbox):
                if match(m):
                    del self.mailbox[i]
                    return m
        raise AssertionError("matched message vanished")

    def receive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        if not self._wait(self._match(match), _deadline(timeout)):
            assert timeout is not None
            raise TimeoutError(f"no message within {timeout} s")
        return self._pop(match)

    async def areceive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        if not await self._await(self._match(match), _deadline(timeout)):
            assert timeout is not None
            raise TimeoutError(f"no message within {timeout} s")
        return self._pop(match)


def _sys_path() -> list[str]:
    """The caller's `sys.path` for a worker to import by: its str entries ("" as the current
    directory) and path objects as str; other entries (bytes) the import system ignores."""
    import os
    import sys

    entries = []
    for entry in sys.path:
        path = os.fspath(entry) if isinstance(entry, os.PathLike) else entry
        if isinstance(path, str):
            entries.append(path or os.getcwd())
    return entries


def check_port(port: Any, what: str) -> int:
    """`port` if it is a TCP port number (0: any free port); else a clear error."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"{what}: the port must be an int, got {port!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"{what}: the port must be in 0..65535 (0: any free port), got {port}")
    return port


def _check_flag(value: Any, what: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {value!r}")


def _check_dest(dest: Any, what: str) -> None:
    if not isinstance(dest, (Pid, str)):
        raise TypeError(
            f"{what}: the destination must be a legion.Pid or a registered name (str), got {dest!r}"
        )


def _check_pid(pid: Any) -> None:
    if not isinstance(pid, Pid):
        raise TypeError(f"expected a legion.Pid, got {pid!r}")


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a registered name must be a non-empty str, got {name!r}")


def _ack_error(ack: wire.Ack, dest: Any) -> LegionError:
    code = ack.error
    if code == "noproc":
        return NoProc(dest)
    if code == "name_taken":
        return AlreadyRegistered(f"the name is already registered to {ack.value!r}", ack.value)
    if code == "has_name":
        return AlreadyRegistered(f"{dest!r} is already registered as {ack.value!r}", dest)
    if code == "not_registered":
        return NotRegistered(f"no process is registered as {dest!r}")
    if code == "spawn_failed":
        return SpawnError(str(ack.value))
    if code == "init_failed":
        reason = normalize_reason(ack.value)
        text = getattr(reason, "traceback", "") or ""
        name = getattr(dest, "__qualname__", dest)
        detail = f"\n\nIn the process:\n{text}" if text else ""
        return InitError(f"init of {name} failed: {reason}{detail}", reason)
    if code == "calling_self":
        return CallingSelf(f"{dest!r} is the caller itself")
    if code == "bad_request":
        return LegionError(str(ack.value))
    return LegionError(f"{code}: {ack.value!r}")

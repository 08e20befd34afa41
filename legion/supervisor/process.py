"""A process, seen from inside: its trio loop, its connection to the node, its mailbox.

The zygote forks, the child calls `run()`, and from then on the process is one `trio.run()`:
a reader task files every frame from the node (replies to waiters, everything else into the
mailbox), and the main task runs the target: a `Server` behaviour (`server.py`) or a plain
function. When the target ends, the process tells the node its exit reason and leaves with
`os._exit`, so nothing the zygote inherited (atexit hooks, buffers) runs twice.

Blocking API calls made by synchronous code inside the process (a plain `def handle_call` that
calls `legion.call`) run on the loop's own thread: they read the socket themselves until their
answer arrives, filing other frames exactly as the reader task would. Async code awaits instead.
If the node goes away (EOF), the process exits at once: no orphans.

Hot reload (`legion.reload`) asks every process with one `CodeChange` call, and the process
decides what it means (`Worker.dispatch`): one that imported none of the modules answers at
once, whatever it is doing; a server loads them between two messages, an agent between two
turns; a function process, whose mailbox never sees the request, at its next `legion.receive`
or `areceive`, or at once while it waits in one (`Worker.receive`).
"""

from __future__ import annotations

import inspect
import math
import os
import select
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from . import wire
from .endpoint import Endpoint, _deadline
from .errors import ProcessExit
from .terms import CallRequest, CodeChange, Crash, From, Pid, crash_from_exception, utf8_safe

if TYPE_CHECKING:
    import trio

EXIT_NODE_GONE = 70
EXIT_NO_REASON = 71  # the process could not write its exit reason: never reported as "normal"
EVENT_DELAY = 0.05  # seconds queued telemetry may wait for a frame to ride on
EVENT_BATCH = 256  # events queued at most before they are written without waiting

_current: Worker | None = None


def current() -> Worker | None:
    """The process this code runs in, or None in the application."""
    return _current


class SystemStop:
    """`legion.stop()` reached this process: end with `reason` (running `terminate`)."""

    __slots__ = ("reason",)

    def __init__(self, reason: Any) -> None:
        self.reason = reason


class Worker(Endpoint):
    """The endpoint of a process: waits happen on the process's own trio loop."""

    def __init__(self, sock: socket.socket, target: Any) -> None:
        import trio

        super().__init__()
        self.target = target
        self.is_server = False
        self.boot: wire.Boot | None = None
        self.parent: Pid | None = None
        self._sock = sock
        self._fd = sock.fileno()
        self._frames = wire.FrameReader()
        self._arrival = trio.Event()
        self._loop_thread = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()
        self._write_lock = threading.Lock()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self.base_tasks = 0  # trio tasks alive when the target starts: the loop's own and ours
        self.events: list[wire.TelemetryEvent] = []  # not yet written (see `queue_event`)
        self._flush_scope: trio.CancelScope | None = None
        self.init_failure_sent = False  # the spawner got the failure of `init` (and prints it)
        self.kind = _kind(target)
        self.code_changes: deque[CallRequest] = deque()  # a function's, until its next receive

    # -- the connection --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            with self._write_lock:
                if self.events:  # queued telemetry goes first: the node sees frames in order
                    data = _encode_events(self.events, self.max_frame) + data
                    self.events = []  # the flush deadline stays: see `queue_event`
                wire.send_all(self._sock, data)
        except OSError:
            node_gone()

    def send_init_done(self, msg: wire.InitDone) -> None:
        """Tell a `start`/`start_link` caller how `init` went. A failure's reason goes to the
        spawner (which raises it: the process does not print it again), made sendable first."""
        if not msg.ok:
            self.init_failure_sent = True
            try:
                wire.encode(msg)  # a rare path: the reason the spawner gets must be sendable
            except TypeError as exc:
                msg = wire.InitDone(False, msg.ignore, sendable_reason(msg.reason, exc))
        self.send_frame(msg)

    def _on_loop(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def queue_event(self, event: wire.TelemetryEvent) -> None:
        """Queue a telemetry event: it leaves with the next frame this process writes, or after
        EVENT_DELAY seconds without one (`flush_events_later`). A turn's events thus ride on its
        model requests and its reply, and never wake the node on their own while it runs."""
        with self._write_lock:
            events = self.events
            events.append(event)
            if len(events) >= EVENT_BATCH:
                self.events = []
                self._send_events(events)  # a long burst goes in frames of a bounded size
                return
            if len(events) > 1:
                return  # not the first: its batch is already on its way
        if not self._on_loop():
            self.flush_events()  # another thread: the loop may be blocked, write now
        elif self._flush_scope is not None and self._flush_scope.deadline == math.inf:
            import trio

            # A deadline, not a wake-up: it schedules nothing until it expires. It is left to
            # expire even when a frame carries the events first (moving a trio deadline costs
            # more than one idle wake-up per EVENT_DELAY), so a busy process sets it at most
            # once per EVENT_DELAY.
            self._flush_scope.deadline = trio.current_time() + EVENT_DELAY

    async def flush_events_later(self) -> None:
        """A task of the process: writes the queued events when their deadline expires."""
        import trio

        while True:
            with trio.CancelScope() as self._flush_scope:
                await trio.sleep_forever()
            self.flush_events()

    def flush_events(self) -> None:
        with self._write_lock:
            events, self.events = self.events, []
            if events:
                self._send_events(events)

    def _send_events(self, events: list[wire.TelemetryEvent]) -> None:
        """Write `events` now (the write lock held)."""
        try:
            wire.send_all(self._sock, _encode_events(events, self.max_frame))
        except OSError:
            pass  # the node is gone: the process learns it from its next read

    def pump(self) -> None:
        """Read whatever the node sent, without blocking, and file it."""
        import trio

        got = False
        while True:
            try:
                data = self._sock.recv(262144)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                node_gone()
            for body in self._frames.feed(data):
                self.dispatch(wire.decode(body), len(body))
            got = True
            if len(data) < 262144:
                break
        if got:
            arrived, self._arrival = self._arrival, trio.Event()
            arrived.set()

    async def reader(self) -> None:
        import trio

        while True:
            await trio.lowlevel.wait_readable(self._sock)
            self.pump()

    def file_call(self, msg: wire.CallIn, size: int) -> None:
        request = wire.decode_term(msg.payload)
        call = CallRequest(From(msg.caller, msg.ref), request)
        if type(request) is not CodeChange:
            self.mailbox.append(call, size)
        elif _loads_nothing(request):
            self.reply(call.from_, ["ok", None, []])  # now, even in the middle of other work
        elif self.kind == "function":
            self.code_changes.append(call)  # never a message: see `receive`
        else:
            self.mailbox.append(_for_agent(call) if self.kind == "agent" else call, size)

    def dispatch_other(self, msg: wire.Frame) -> None:
        if type(msg) is wire.Boot:
            self.boot = msg
            self.pid = msg.pid
            self.parent = msg.parent
            self.max_frame = msg.max_frame
            reason = ("mailbox_full", msg.max_mailbox)  # what it holds itself: mailbox.py
            self.mailbox.bound(msg.max_mailbox, lambda: finish(self, reason))
        elif type(msg) is wire.StopIn:
            if self.is_server:
                self.mailbox.append(SystemStop(msg.reason))
            else:
                finish(self, msg.reason)
        else:
            super().dispatch_other(msg)

    # -- waiting ---------------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        import trio

        if threading.get_ident() != self._loop_thread:
            result: bool = trio.from_thread.run(
                self._await, ready, deadline, trio_token=self._token
            )
            return result
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.pump()  # what arrived by the deadline counts: `receive(timeout=0)` polls
                return ready()
            if self.events:
                remaining = min(remaining, EVENT_DELAY)
            wait_ms = (
                None if remaining == math.inf else max(1, min(int(remaining * 1000), 2**31 - 1))
            )
            if not self._poll.poll(wait_ms):
                self.flush_events()  # idle for a moment: the queued events go now
            self.pump()
        return True

    async def _await(self, ready: Callable[[], bool], deadline: float) -> bool:
        import trio

        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with trio.move_on_after(remaining):
                await self._arrival.wait()
        return True

    # -- receive, where a function process takes new code --------------------------------------

    def receive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        """`legion.receive` in this process. A function process loads new code here first
        (`switch_code`), and while it waits a `CodeChange` wakes it to load at once: Erlang's
        processes likewise take new code at their next fully qualified call, and the frame
        running now (the loop around this receive) keeps its old code until it returns."""
        changes = self.code_changes
        if match is None and not changes and self.mailbox:  # the hot path: one is waiting
            with self._lock:
                return self.mailbox.popleft()
        deadline = _deadline(timeout)
        ready = self._match(match)
        while True:
            while changes:
                self.switch_code(changes.popleft())
            if ready():
                return self._pop(match)
            if not self._wait(lambda: bool(changes) or ready(), deadline):
                raise TimeoutError(f"no message within {timeout} s")

    async def areceive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        deadline = _deadline(timeout)
        ready = self._match(match)
        changes = self.code_changes
        while True:
            while changes:
                self.switch_code(changes.popleft())
            if ready():
                return self._pop(match)
            if not await self._await(lambda: bool(changes) or ready(), deadline):
                raise TimeoutError(f"no message within {timeout} s")

    def switch_code(self, call: CallRequest) -> None:
        """Load the modules a `CodeChange` names that this process has imported, patched in
        place (`codeload`): the next call through a module object or a held function runs the
        new code. Answers `["ok", None, modules loaded]` (`legion.reload`), `["ok", None]`
        (`legion.code_change`, whose `reload=True` means the function's own module), or
        `["error", why]` with everything put back."""
        from . import codeload

        change: CodeChange = call.request
        if isinstance(change.reload, list):
            names = change.reload
        else:
            own = getattr(self.target, "__module__", None)
            names = [own] if change.reload is True and isinstance(own, str) else []
        try:
            loaded = codeload.load(names)
        except codeload.LoadError as exc:
            answer: list[Any] = ["error", f"cannot load {exc}"]
        else:
            answer = ["ok", None]
            if isinstance(change.reload, list):
                answer.append(loaded.modules)
        self.reply(call.from_, answer)

    async def next_message(self, timeout: float | None) -> Any:
        """The oldest message in the mailbox, waiting up to `timeout`; None if none came.

        When nothing else lives in this trio loop (the usual state of a server between
        messages), it waits for the socket synchronously: a message then costs no trio
        scheduling at all, which is most of a call's cost in this process.
        """
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self.mailbox:
            if self._alone():
                if not self._wait(lambda: bool(self.mailbox), deadline):
                    return None
            elif not await self._await(lambda: bool(self.mailbox), deadline):
                return None
        return self.mailbox.popleft()

    def _alone(self) -> bool:
        import trio

        stats = trio.lowlevel.current_statistics()
        next_deadline = stats.seconds_to_next_deadline
        flush = self._flush_scope
        if (  # the event flusher's deadline does not count: `_wait` flushes events itself
            next_deadline != math.inf
            and flush is not None
            and next_deadline >= flush.deadline - trio.current_time() - 0.001
        ):
            next_deadline = math.inf
        return (
            stats.tasks_living <= self.base_tasks
            and stats.tasks_runnable == 0
            and stats.run_sync_soon_queue_size == 0
            and next_deadline == math.inf
        )


def _kind(target: Any) -> str:
    """What runs here: a "server", an "agent" (a server that loads new code between its
    turns) or a "function"."""
    from .server import Server

    if not (isinstance(target, type) and issubclass(target, Server)):
        return "function"
    return "agent" if getattr(target, "__legion_agent__", False) is True else "server"


def _loads_nothing(change: CodeChange) -> bool:
    """A `legion.reload` none of whose modules this process has imported: it can answer at
    once, whatever it is doing, since there is nothing to switch."""
    if not isinstance(change.reload, list):
        return False
    names = ("__mp_main__" if n == "__main__" else n for n in change.reload)
    return not any(name in sys.modules for name in names)


def _for_agent(call: CallRequest) -> CallRequest:
    """`legion.reload`'s `CodeChange` as the agent's own reload request, which it handles
    between two turns and which rebuilds its tools and prompt (`Agent._reload`)."""
    change: CodeChange = call.request
    if not isinstance(change.reload, list):
        return call  # `legion.code_change`: the server's own path
    from .server import AGENT_QUERY  # the agent's control requests (legion/agent.py)

    return CallRequest(call.from_, [AGENT_QUERY, "reload", change.reload])


def _encode_events(events: list[wire.TelemetryEvent], limit: int) -> bytes:
    """Telemetry frames for the queued events, one frame when it fits in `limit` bytes. An event
    the wire cannot carry (a measurement of an odd type, nested too deep, a str holding a lone
    surrogate: `wire.encode`'s TypeError) or larger than the limit is dropped with a line on
    stderr, never the frames it rides with nor the process."""
    try:
        data = wire.encode(wire.Telemetry(events))
        if len(data) - 4 <= limit:
            return data
    except TypeError:
        pass
    frames = []
    for one in events:
        try:
            frame = wire.encode(wire.Telemetry([one]))
        except TypeError as exc:
            _to_stderr(f"legion: telemetry event {one[0]!r} dropped: {exc}\n")
            continue
        if len(frame) - 4 > limit:
            _to_stderr(
                f"legion: telemetry event {one[0]!r} dropped: {len(frame) - 4} bytes, over the "
                f"node's limit of {limit} (max_frame_bytes)\n"
            )
            continue
        frames.append(frame)
    return b"".join(frames)


def node_gone() -> NoReturn:
    """The node controller is gone: a process must not outlive it."""
    os._exit(EXIT_NODE_GONE)


def finish(worker: Worker, reason: Any) -> NoReturn:
    """Tell the node why this process ends, then end it.

    The exit status says whether the node got the reason: 0 only once the `Exiting` frame is
    written (the node then reports that reason), never when it could not be, so a crash is
    never reported as "normal". Nothing on the way (a traceback that cannot be printed because
    stderr is a closed pipe, a reason the wire cannot carry) stops the frame: see
    `print_crash` and `_exiting_frame`."""
    status = EXIT_NO_REASON
    try:
        if isinstance(reason, Crash) and reason.traceback and not worker.init_failure_sent:
            print_crash(getattr(worker.target, "__qualname__", "process"), worker.pid, reason)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a broken stream: nowhere to report it, and the frame must go
                pass
        worker._write(_exiting_frame(reason, worker.max_frame))
        status = 0
    except BaseException:
        import traceback

        _to_stderr(f"legion: {worker.pid!r} could not send its exit reason:\n")
        _to_stderr(traceback.format_exc())
    finally:
        os._exit(status)


def print_crash(name: str, pid: Pid, reason: Crash) -> None:
    """A crash's traceback on stderr, once per crash: by the process, or by the node when the
    process handed it to a spawner that does not raise it (see `Node.on_init_done`).

    Never raises: stderr may be a pipe whose reader has gone (`python app.py 2>&1 | head`), a
    closed file, or a stream that refuses the text; the crash itself must still reach the node,
    and there is nowhere left to report that the traceback could not be written."""
    _to_stderr(f"legion: {name} {pid!r} crashed:\n{reason.traceback}\n")


def _to_stderr(text: str) -> None:
    """Write `text` on stderr, or nothing if stderr cannot take it (see `print_crash`)."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except Exception:  # a closed pipe, a closed file, an encoding it refuses: nowhere to say so
        pass


def _exiting_frame(reason: Any, limit: int) -> bytes:
    """The last frame: the exit reason, whatever it is. One the wire cannot carry is sent as
    `sendable_reason` makes it (its texts UTF-8-safe, else its repr, else a `Crash` saying
    why); one larger than the node accepts (a crash with a huge message, say) is cut short."""
    try:
        frame = wire.encode(wire.Exiting(reason))
    except TypeError as exc:
        reason = sendable_reason(reason, exc)
        frame = wire.encode(wire.Exiting(reason))
    if len(frame) - 4 <= limit:
        return frame
    keep = limit // 16  # three texts of `keep` characters, 4 UTF-8 bytes at most: 3/4 of it
    if isinstance(reason, Crash):
        reason = Crash(reason.type[:keep], reason.message[:keep], reason.traceback[-keep:])
    else:
        text = _safe_repr(reason) or f"<an exit reason of type {type(reason).__qualname__}>"
        reason = text[:keep]
    return wire.encode(wire.Exiting(reason))


def sendable_reason(reason: Any, error: TypeError) -> Any:
    """An exit reason the wire can carry, for a `reason` it could not (`error`, from
    `wire.encode`). Texts holding lone surrogates are made UTF-8-safe in place (a `Crash`, a
    str, or one inside a tuple, list or dict), so the reason keeps its shape and a supervisor
    matching on it still matches; anything else becomes its repr (at most 65,536 characters);
    a reason whose repr fails too (nested too deep, say) becomes a `Crash` of type
    `legion.UnsendableReason` that says so."""
    try:
        safe = _utf8_safe_value(reason, 0)
        wire.encode_term(safe)
        return safe
    except (TypeError, RecursionError):
        pass
    text = _safe_repr(reason)
    if text is not None:
        return text[:65536]
    return Crash(
        "legion.UnsendableReason",
        f"the process ended with a reason of type {type(reason).__qualname__} that can neither "
        f"be sent nor shown ({utf8_safe(str(error))[:1000]}); its repr() failed too",
    )


def _utf8_safe_value(value: Any, depth: int) -> Any:
    """`value` with the lone surrogates of its texts escaped (`utf8_safe`), through tuples,
    lists and dicts up to a depth of 100 (deeper: a RecursionError, and the caller's repr)."""
    if depth > 100:
        raise RecursionError("an exit reason nested deeper than 100")
    kind = type(value)
    if kind is str:
        return utf8_safe(value)
    if kind is tuple or kind is list:
        return kind(_utf8_safe_value(item, depth + 1) for item in value)
    if kind is dict:
        return {
            _utf8_safe_value(k, depth + 1): _utf8_safe_value(v, depth + 1) for k, v in value.items()
        }
    if kind is Crash and all(type(text) is str for text in value.fields()):
        return Crash(*(utf8_safe(text) for text in value.fields()))
    return value


def _safe_repr(value: Any) -> str | None:
    """`repr(value)` made UTF-8-safe, or None when `repr` itself fails."""
    try:
        return utf8_safe(repr(value))
    except Exception:  # RecursionError for a deep value, or a __repr__ that raises
        return None


def reason_of(exc: BaseException) -> Any:
    """The exit reason an uncaught exception gives its process."""
    if isinstance(exc, ProcessExit):
        return exc.reason
    trio = sys.modules.get("trio")
    if trio is not None and isinstance(exc, trio.Cancelled):
        # The process's own nursery is ending (its runtime side failed): the cancellation must
        # reach it, so `run` reports the real cause; never an exit reason of its own.
        raise exc
    return crash_from_exception(exc)


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


# -- entry point, called by the zygote in the forked child -----------------------------------------


def run(fd: int, target: Any) -> NoReturn:
    import trio

    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    try:
        trio.run(_main, sock, target)
    except BaseException as exc:
        # A fault of the runtime's own side of the process (its reader, a frame it cannot
        # file): never a silent exit 1 — the traceback goes to stderr and the node gets it as
        # the exit reason, so links, monitors and callers see what happened.
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        worker = _current
        if worker is not None and worker.boot is not None:
            finish(worker, crash_from_exception(exc))
        import traceback

        traceback.print_exception(exc)
    finally:
        os._exit(1)


async def _main(sock: socket.socket, target: Any) -> None:
    import trio

    global _current
    worker = Worker(sock, target)
    _current = worker
    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker.reader)
        nursery.start_soon(worker.flush_events_later)
        await worker._await(lambda: worker.boot is not None, math.inf)
        worker.base_tasks = trio.lowlevel.current_statistics().tasks_living
        reason = await _run_target(worker, target)
        finish(worker, reason)


async def _run_target(worker: Worker, target: Any) -> Any:
    from .server import Server, serve

    boot = worker.boot
    assert boot is not None
    if isinstance(target, type) and issubclass(target, Server):
        worker.is_server = True
        return await serve(worker, target, boot)
    if boot.sync:
        worker.send_init_done(wire.InitDone(True, False, None))
    try:
        args = (wire.decode_term(boot.arg),) if boot.has_arg else ()
        await call_maybe_async(target, *args)
    except BaseException as exc:
        return reason_of(exc)
    return "normal"

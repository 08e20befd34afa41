"""The parent side: the zygote handle (one per process, started lazily, restarted after a
crash) and the trio driver of one evaluation (spawn, request, tool calls, result, kill).

Only fds and pidfds are shared with the event loop, so one zygote serves every ``trio.run``,
the blocking API and asyncio callers (through a worker thread).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import inspect
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import trio

from . import protocol
from .errors import SandboxCrashed, SandboxUnavailable
from .outcome import Bindings, ErrorKind, Evaluation
from .protocol import Call, Exited, Limits, Ready, Refused, Reply, Request, Result, Spawned
from .proxy import UNTIMED, ToolTable
from .zygote import BOOTSTRAP

MIB = 1024 * 1024
DEFAULT_MAX_MEMORY = 512 * MIB
DEFAULT_MAX_OUTPUT = 1_000_000
READY_TIMEOUT = 30.0
EXIT_WAIT = 2.0
MAX_CPU_SECONDS = 10_000_000  # the CPU rlimit of an evaluation without a time limit (~4 months)

ToolCaller = Callable[[Callable[..., Any], list[Any], dict[str, Any]], Awaitable[Any]]


def _zygote_paths() -> list[str]:
    """The few directories the zygote needs: the one holding ``legion`` and those of msgspec and
    pyseccomp (located without importing them)."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    paths = [root]
    for name in ("msgspec", "pyseccomp"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            origin = Path(spec.origin)
            base = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            if str(base) not in paths:
                paths.append(str(base))
    return paths


class Zygote:
    """The parent's handle on the zygote process. Thread-safe.

    Forked children forget it, unless it is *shared* (`share_with_forks`): then they keep the
    control socket and use the same zygote. Each request carries its own status socket and
    pipes, so processes sharing the control socket never see each other's children.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctl: socket.socket | None = None
        self.ready: Ready | None = None
        self.starts = 0
        self.shared = False
        self._inherited = False  # this process got the control socket by fork

    @property
    def pid(self) -> int | None:
        if self._inherited:
            return self.ready.pid if self.ready is not None and _alive(self.ready.pid) else None
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def ensure(self) -> Ready:
        with self._lock:
            if self.ready is not None and self.pid is not None:
                return self.ready
            self._stop_locked()
            return self._start_locked()

    def _start_locked(self) -> Ready:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        debug = os.environ.get("LEGION_SANDBOX_DEBUG")
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-B",
                    "-c",
                    BOOTSTRAP,
                    str(theirs.fileno()),
                    *_zygote_paths(),
                ],
                pass_fds=[theirs.fileno()],
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=None if debug else subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ours.settimeout(READY_TIMEOUT)
        try:
            data = ours.recv(65536)
            ready = protocol.zygote_decoder.decode(data) if data else None
        except (OSError, msgspec.DecodeError):
            ready = None
        if not isinstance(ready, Ready):
            ours.close()
            proc.kill()
            proc.wait()
            raise SandboxCrashed(
                "the sandbox zygote did not start (set LEGION_SANDBOX_DEBUG=1 to see its errors)"
            )
        ours.settimeout(None)
        self._proc, self._ctl, self.ready = proc, ours, ready
        self.starts += 1
        return ready

    def spawn(self, limits: Limits) -> tuple[socket.socket, int, int]:
        """Ask for a child; returns (status socket, fd to child, fd from child)."""
        self.ensure()
        for attempt in (0, 1):
            p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
            c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                with self._lock:
                    ctl = self._ctl
                    if ctl is None:
                        raise BrokenPipeError
                    socket.send_fds(
                        ctl,
                        [protocol.encode(protocol.Spawn(limits))],
                        [p2c_r, c2p_w, theirs.fileno()],
                    )
            except OSError:
                mine.close()
                for fd in (p2c_w, c2p_r):
                    os.close(fd)
                if attempt:
                    raise SandboxCrashed("the sandbox zygote could not be reached") from None
                with self._lock:
                    self._stop_locked()
                self.ensure()
                continue
            finally:
                theirs.close()
                os.close(p2c_r)
                os.close(c2p_w)
            return mine, p2c_w, c2p_r
        raise AssertionError("unreachable")

    def _stop_locked(self) -> None:
        ctl, proc = self._ctl, self._proc
        self._ctl, self._proc, self.ready = None, None, None
        self._inherited = self.shared = False
        if ctl is not None:
            ctl.close()  # EOF: the zygote kills its children and exits
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop(self) -> None:
        with self._lock:
            self._stop_locked()

    def forget(self) -> None:
        """In a forked copy of the parent: drop our copy of the control socket (the zygote then
        sees EOF when the original process ends), or keep it if the zygote is shared."""
        self._lock = threading.Lock()
        if self.shared and self._ctl is not None and self.ready is not None:
            self._proc, self._inherited = None, True
            return
        if self._ctl is not None:
            self._ctl.close()
        self._ctl, self._proc, self.ready = None, None, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def share_with_forks() -> None:
    """Start the zygote now and let processes forked from this one use it too.

    The agent zygote calls this before it forks agent processes, so every agent of a node
    evaluates through one sandbox zygote instead of starting its own. The zygote stops when the
    last process holding its control socket exits.
    """
    ZYGOTE.ensure()
    ZYGOTE.shared = True


class Spares:
    """Children forked ahead of need, hardened and blocked on their first read.

    A child's hardening (fds, prctl, Landlock, rlimits, seccomp: about 1-2 ms with the fork)
    does not depend on the code it will run, only on its limits, so the next child is asked for
    as soon as one is taken: the zygote forks it while the current evaluation runs. A spare has
    seen no data; it holds about 2 MiB of private memory.
    """

    def __init__(self, size: int = 1) -> None:
        self._lock = threading.Lock()
        self._limits: Limits | None = None
        self._children: list[Child] = []
        self.size = size

    def take(self, limits: Limits) -> Child | None:
        with self._lock:
            if self._limits == limits and self._children:
                return self._children.pop()
        return None

    def refill(self, limits: Limits) -> None:
        stale: list[Child] = []
        with self._lock:
            if self._limits != limits:
                stale, self._children, self._limits = self._children, [], limits
            want = self.size - len(self._children)
        for child in stale:
            child.close()
        for _ in range(max(0, want)):
            try:
                child = Child.request(limits)
            except SandboxCrashed:
                return
            with self._lock:
                if self._limits == limits and len(self._children) < self.size:
                    self._children.append(child)
                    child = None  # type: ignore[assignment]
            if child is not None:
                child.close()

    def clear(self) -> None:
        with self._lock:
            children, self._children, self._limits = self._children, [], None
        for child in children:
            child.close()  # EOF on its input: the spare exits

    def pids(self, wait: float = 5.0) -> list[int]:
        """The spares' pids (waiting, bounded, for the zygote to report each one)."""
        with self._lock:
            children = list(self._children)
        pids = []
        for child in children:
            try:
                if not child.pid:
                    child.status.settimeout(wait)
                    try:
                        child.try_spawned()
                    finally:
                        child.status.setblocking(False)
            except (SandboxCrashed, OSError):
                continue
            if child.pid:
                pids.append(child.pid)
        return pids


ZYGOTE = Zygote()
SPARES = Spares()


def held() -> tuple[set[int], set[int]]:
    """(pids, fds) the sandbox keeps between evaluations: the zygote and its ready spares.

    For leak checks: anything else a test leaves behind is a leak.
    """
    pids = set(SPARES.pids())
    fds: set[int] = set()
    if ZYGOTE.pid is not None:
        pids.add(ZYGOTE.pid)
        if ZYGOTE._ctl is not None:
            fds.add(ZYGOTE._ctl.fileno())
    with SPARES._lock:
        for child in SPARES._children:
            fds.update(
                fd
                for fd in (child.status.fileno(), child.to_child, child.from_child, child.pidfd)
                if fd >= 0
            )
    return pids, fds


def _stop() -> None:
    SPARES.clear()
    ZYGOTE.stop()


def _forget() -> None:
    """In a forked copy of this process: drop our copies of the spares' fds and of the control
    socket, so the spares and the zygote still see EOF when the original process ends."""
    for child in SPARES._children:
        child.close()
    SPARES.__init__()  # type: ignore[misc]
    ZYGOTE.forget()


os.register_at_fork(after_in_child=_forget)
atexit.register(_stop)


class _Violation(Exception):
    def __init__(self, message: str, kind: ErrorKind = "crashed") -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


class Child:
    """The parent's end of one child: pipes, status socket, pidfd."""

    def __init__(self, status: socket.socket, to_child: int, from_child: int) -> None:
        self.status = status
        self.to_child = to_child
        self.from_child = from_child
        self.pidfd = -1
        self.pid = 0
        self.buffer = bytearray()
        self.exited: Exited | None = None
        self.closed = False
        self.finished = False  # no longer usable for another request (session mode)
        os.set_blocking(to_child, False)
        os.set_blocking(from_child, False)
        status.setblocking(False)

    @classmethod
    def request(cls, limits: Limits) -> Child:
        """Ask the zygote for a child without waiting for it (it hardens in the background)."""
        status, to_child, from_child = ZYGOTE.spawn(limits)
        return cls(status, to_child, from_child)

    @classmethod
    async def spawn(cls, limits: Limits, *, spares: bool = True) -> Child:
        """A hardened child: a spare prepared earlier when one matches, else a new one."""
        spare = SPARES.take(limits) if spares else None
        if spare is not None:
            try:
                await spare.spawned()
                if spare.alive():
                    SPARES.refill(limits)
                    return spare
            except SandboxCrashed:
                pass
            spare.close()
        for attempt in (0, 1):
            child = cls.request(limits)
            try:
                await child.spawned()
                if spares:
                    SPARES.refill(limits)
                return child
            except SandboxCrashed:
                child.close()
                if attempt:
                    raise
                ZYGOTE.ensure()
        raise AssertionError("unreachable")

    def alive(self) -> bool:
        """False if the zygote already reported this child's end (or died)."""
        try:
            data = self.status.recv(1024, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        return False if not data else not isinstance(protocol.zygote_decoder.decode(data), Exited)

    def try_spawned(self) -> bool:
        """Read the zygote's ``Spawned`` report if it is there; True once the pid is known."""
        if self.pid:
            return True
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.status, 1024, 1)
        except BlockingIOError:
            return False
        except OSError:
            data, fds = b"", []
        if not data:
            raise SandboxCrashed("the sandbox zygote stopped before starting the child")
        msg = protocol.zygote_decoder.decode(data)
        if not isinstance(msg, Spawned) or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise SandboxCrashed("unexpected message from the sandbox zygote")
        self.pid, self.pidfd = msg.pid, fds[0]
        return True

    async def spawned(self) -> None:
        while not self.try_spawned():
            await trio.lowlevel.wait_readable(self.status)

    async def send(self, msg: Any) -> None:
        view = memoryview(protocol.frame(msg))
        while view:
            try:
                view = view[os.write(self.to_child, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.to_child)

    async def receive(self) -> Any:
        """The next child message, or None on EOF. Raises _Violation on a bad frame."""
        header = protocol.FRAME_HEADER.size
        need = header
        while True:
            if len(self.buffer) >= header:
                (size,) = protocol.FRAME_HEADER.unpack_from(self.buffer)
                if size > protocol.MAX_FRAME:
                    raise _Violation(
                        f"output limit exceeded: the sandbox sent more than "
                        f"{protocol.MAX_FRAME // MIB} MiB",
                        "output_limit",
                    )
                need = header + size
                if len(self.buffer) >= need:
                    body = bytes(self.buffer[header:need])
                    del self.buffer[:need]
                    try:
                        return protocol.child_decoder.decode(body)
                    except msgspec.MsgspecError as exc:
                        raise _Violation(f"protocol violation by the sandbox: {exc}") from None
                    except RecursionError:  # a child that ignored MAX_DEPTH
                        raise _Violation(
                            "the sandbox sent a value nested too deeply to decode (the limit "
                            f"is {protocol.MAX_DEPTH} levels)"
                        ) from None
            try:
                chunk = os.read(self.from_child, max(65536, need - len(self.buffer)))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.from_child)
                continue
            if not chunk:
                if self.buffer:
                    raise _Violation("the sandbox closed its pipe in the middle of a frame")
                return None
            self.buffer += chunk

    def kill(self) -> None:
        if self.pidfd >= 0:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    async def wait_exited(self, timeout: float = EXIT_WAIT) -> Exited | None:
        """The zygote's report of the child's end (bounded wait)."""
        if self.exited is not None or self.closed:
            return self.exited
        with trio.move_on_after(timeout):
            while True:
                try:
                    data = self.status.recv(1024)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(self.status)
                    continue
                except OSError:
                    return None
                if not data:
                    return None
                msg = protocol.zygote_decoder.decode(data)
                if isinstance(msg, Exited):
                    self.exited = msg
                    return msg
        return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in (self.to_child, self.from_child, self.pidfd):
            if fd >= 0:
                os.close(fd)
        self.status.close()


async def call_tool_trio(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _serve_call(
    child: Child, call: Call, tools: ToolTable, caller: ToolCaller, scope: trio.CancelScope
) -> None:
    fns = tools.get(call.tool)
    if fns is None:
        raise _Violation(f"the sandbox called an unknown tool {call.tool!r}")
    fn = fns.get(call.fn)
    if fn is None:
        raise _Violation(f"the sandbox called an unknown function {call.tool}.{call.fn}")
    try:
        if getattr(fn, UNTIMED, False):  # its waiting does not count against the timeout
            deadline, started = scope.deadline, trio.current_time()
            scope.deadline = math.inf
            try:
                value = await caller(fn, call.args, call.kwargs)
            finally:
                scope.deadline = deadline + (trio.current_time() - started)
        else:
            value = await caller(fn, call.args, call.kwargs)
        reply = Reply(call.id, True, value)
        problem = _unsendable(reply)
        if problem:
            reply = Reply(call.id, False, None, f"{call.tool}.{call.fn} returned {problem}")
    except trio.Cancelled:
        raise
    except BaseException as exc:  # SystemExit (argparse), KeyboardInterrupt...: the model's error
        if isinstance(exc, BaseExceptionGroup) and exc.subgroup(trio.Cancelled) is not None:
            raise
        reply = Reply(call.id, False, None, utf8_safe(describe_exception(exc)))
    await child.send(reply)


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` for a tool's exception, named by its own type even when its
    ``__str__`` fails."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except BaseException as inner:  # a broken __str__ must not hide the tool's failure
        text = f"<its message could not be shown: {type(inner).__name__}>"
    return f"{name}: {text}" if text else name


def utf8_safe(text: str) -> str:
    """``text`` with lone surrogates (a non-UTF-8 file name, say) escaped as ``\\udcXX``: what
    crosses the wire must be valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _unsendable(reply: Reply) -> str:
    """Why a tool's reply cannot go to the sandbox (too deep, too large, not plain data), or ""."""
    try:
        size = len(protocol.encode(reply))
    except RecursionError:
        return (
            f"a value nested too deeply for the sandbox (lists and dicts may nest at most "
            f"{protocol.MAX_DEPTH} levels)"
        )
    except OverflowError:
        return "an int outside the 64-bit range, which cannot be passed to the sandbox"
    except UnicodeEncodeError as exc:
        return (
            f"a str holding a lone surrogate ({exc.object[exc.start : exc.end]!r} at position "
            f"{exc.start}; what os.fsdecode or errors='surrogateescape' gives for bytes that are "
            f"not UTF-8), which cannot be passed to the sandbox; return bytes or decode with "
            f"errors='replace'"
        )
    except (TypeError, ValueError, msgspec.EncodeError):
        return (
            f"a value of type {type(reply.value).__name__}, which cannot be passed to the "
            "sandbox; tools must return plain values (str, int, float, bool, None, bytes, list, "
            "dict, datetime)"
        )
    if size > protocol.MAX_FRAME // 2:
        return (
            f"a value too large for the sandbox ({size >> 20} MiB; the limit is "
            f"{protocol.MAX_FRAME >> 21} MiB)"
        )
    return ""


def _from_exit(exited: Exited | None, limits: Limits) -> tuple[ErrorKind, str]:
    if exited is None:
        return "crashed", "the sandbox stopped unexpectedly; evaluation aborted"
    sig = exited.signal
    if sig == signal.SIGSYS:
        return "forbidden", "forbidden system call, evaluation aborted"
    if sig == signal.SIGXCPU or (
        sig == signal.SIGKILL and exited.cpu_seconds >= limits.max_cpu - 0.05
    ):
        return "cpu", f"CPU limit exceeded ({limits.max_cpu} s)"
    if exited.exit_code == protocol.EXIT_MEMORY:
        return "memory", f"memory limit exceeded ({limits.max_memory // MIB} MiB)"
    if sig is not None:
        name = signal.Signals(sig).name
        return "crashed", f"the sandboxed interpreter crashed ({name}); evaluation aborted"
    if exited.exit_code == protocol.EXIT_HARDENING:
        return "crashed", "the sandboxed child could not harden itself; evaluation aborted"
    if exited.exit_code == protocol.EXIT_PROTOCOL:
        return "crashed", "the sandbox runtime failed while sending the result; evaluation aborted"
    return "crashed", f"the sandboxed interpreter exited (code {exited.exit_code}) without a result"


async def exchange(
    child: Child,
    request: Request,
    tools: ToolTable,
    limits: Limits,
    deadline: float,
    timeout: float,
    previous: Bindings | None,
    caller: ToolCaller,
    started: float,
) -> Evaluation:
    """Send one request and serve the child until its result, its death or the deadline."""
    result: Result | None = None
    failure: tuple[ErrorKind, str] | None = None
    calls = 0
    with trio.move_on_at(deadline) as scope:
        try:
            try:
                await child.send(request)
            except BrokenPipeError:
                pass  # it is gone; what it wrote first (a refusal, say) is still in the pipe
            while True:
                msg = await child.receive()
                if msg is None:
                    break
                if isinstance(msg, Result):
                    result = msg
                    break
                if isinstance(msg, Refused):
                    child.kill()
                    raise SandboxUnavailable(
                        f"the sandbox refused to run code: {msg.reason}. Pass unsafe=True to run "
                        "without this layer (see docs/sandbox.md)"
                    )
                calls += 1
                if calls > protocol.MAX_TOOL_CALLS:
                    raise _Violation(
                        f"too many tool calls (more than {protocol.MAX_TOOL_CALLS})", "forbidden"
                    )
                await _serve_call(child, msg, tools, caller, scope)
        except _Violation as exc:
            failure = (exc.kind, str(exc))
            child.kill()
        except BrokenPipeError:
            pass  # the child died; its exit status says why
    if scope.cancelled_caught:
        child.kill()
        failure = ("timeout", f"timeout after {timeout:g} s")
    duration = time.perf_counter() - started
    if result is not None:
        if not limits.session:
            child.kill()  # it is exiting anyway; make sure a forged Result cannot linger
        blob = result.bindings
        if result.ok and blob is not None:
            kept = tuple(n for n in result.variables if n not in result.dropped)
            bindings: Bindings | None = Bindings(blob, kept)
        else:
            bindings = previous
        value = result.value if result.value_native else result.value_repr
        return Evaluation(
            ok=result.ok,
            value=value if result.ok else None,
            value_repr=result.value_repr,
            stdout=result.stdout,
            error=result.error,
            error_kind=(result.error_kind or None) if not result.ok else None,  # type: ignore[arg-type]
            traceback=result.traceback,
            variables=dict(result.variables),
            bindings=bindings,
            dropped=tuple(result.dropped),
            dropped_reasons=dict(result.dropped),
            layers=tuple(result.layers),
            duration=duration,
        )
    child.kill()
    child.finished = True
    exited = await child.wait_exited()
    if failure is None:
        failure = _from_exit(exited, limits)
    kind, message = failure
    return Evaluation(
        ok=False,
        error=message,
        error_kind=kind,
        bindings=previous,
        duration=time.perf_counter() - started,
    )


def make_limits(
    *,
    timeout: float,
    max_memory: int | None,
    max_cpu: float | None,
    max_output: int,
    unsafe: bool,
    session: bool,
    guard: bool,
    break_seccomp: bool,
) -> Limits:
    from ..supervisor.api import check_timeout

    if not check_timeout(timeout, "legion.sandbox"):  # None or 0 pass the general rule
        raise ValueError(
            f"legion.sandbox: timeout must be a number of seconds > 0 (math.inf: no wall-clock "
            f"limit), not {timeout!r}"
        )
    if max_cpu is not None and not (
        isinstance(max_cpu, (int, float)) and not isinstance(max_cpu, bool) and max_cpu > 0
    ):
        raise ValueError(
            f"legion.sandbox: max_cpu must be None (timeout + 1) or a number of CPU seconds > 0, "
            f"not {max_cpu!r}"
        )
    if max_memory is not None and not (
        isinstance(max_memory, int) and not isinstance(max_memory, bool) and max_memory > 0
    ):
        raise ValueError(
            f"legion.sandbox: max_memory must be None (512 MiB) or an int number of bytes > 0, "
            f"not {max_memory!r}"
        )
    if not (isinstance(max_output, int) and not isinstance(max_output, bool) and max_output > 0):
        raise ValueError(
            f"legion.sandbox: max_output must be an int number of characters > 0, "
            f"not {max_output!r}"
        )
    cpu = min(max_cpu if max_cpu is not None else timeout + 1, MAX_CPU_SECONDS)
    return Limits(
        max_memory=max_memory or DEFAULT_MAX_MEMORY,
        max_cpu=max(1, math.ceil(cpu)),
        max_output=max_output,
        unsafe=unsafe,
        session=session,
        guard=guard,
        break_seccomp=break_seccomp,
    )


def check_bindings(bindings: object) -> None:
    """Refuse anything but None or the ``bindings`` of an earlier :class:`Evaluation`."""
    if bindings is not None and not isinstance(bindings, Bindings):
        raise TypeError(
            f"legion.sandbox: bindings must be None or the .bindings of an earlier Evaluation "
            f"(a legion.sandbox.Bindings), not {type(bindings).__name__}; to start from plain "
            f"values, put them in the code or pass them through a tool"
        )


async def evaluate_trio(
    code: str,
    tools: ToolTable,
    bindings: Bindings | None,
    timeout: float,
    limits: Limits,
    caller: ToolCaller = call_tool_trio,
    modules: tuple[str, ...] = (),
) -> Evaluation:
    """One evaluation in a fresh child (the default, fork-per-evaluation mode). ``modules`` is
    the allowlist (from :func:`legion.sandbox.guard.allowlist`; empty: the default one)."""
    check_bindings(bindings)
    if ZYGOTE.ready is None or ZYGOTE.pid is None:
        await trio.to_thread.run_sync(ZYGOTE.ensure)
    started = time.perf_counter()
    deadline = trio.current_time() + timeout
    child = await Child.spawn(limits)
    try:
        request = Request(
            code,
            {n: sorted(f) for n, f in tools.items()},
            bindings.blob if bindings is not None else None,
            modules=modules,
        )
        return await exchange(
            child, request, tools, limits, deadline, timeout, bindings, caller, started
        )
    finally:
        child.close()

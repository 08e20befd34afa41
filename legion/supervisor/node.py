"""The node controller: the kernel of the runtime, one trio program per host (or per application).

It is the single authority over processes. Every frame between processes passes through it, one
reader task per connection handling frames in the order they were sent, so a message a process sent
before it died is always routed before the `Exit`/`Down` its death causes (per-pair order). It
owns the tables: processes, links, monitors, registered names. It spawns processes through the
zygote (`zygote.py`), and turns each death (the `Exiting` frame a process sends, or the exit
status the zygote reports) into an exit reason that it fans out to links and monitors.

Run embedded (the application's first API call starts one, connected by a socketpair; it stops
when the application disconnects) or as a service, `legion node`, that applications join through
`LEGION_NODE=/path/to/socket`.
"""

from __future__ import annotations

import array
import contextlib
import errno
import functools
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import trio

from .. import telemetry
from . import wire
from .hosted import Inbox
from .process import print_crash
from .terms import Crash, Pid, Ref

log = logging.getLogger("legion.node")

_SHUTDOWN_GRACE = float(os.environ.get("LEGION_SHUTDOWN_TIMEOUT", "5"))
TELEMETRY_BACKLOG = 8 * 2**20
"""Bytes an application may leave unread before the node stops forwarding it telemetry (and
counts what it drops): events reach an application only while it talks to the node, so one that
attached a handler and went quiet must not make the node hold every event since."""


class Conn:
    """The outgoing side of one connection: frames queued in order, then written.

    Handlers only queue (`push`). After each batch of incoming frames the node `flush`es every
    connection it touched with a direct non-blocking send, so a message costs no task switch;
    whatever the socket does not take at once is left to the connection's writer task.
    """

    __slots__ = (
        "_dirty", "_pending", "_raw", "_sock", "_wakeup", "backlog", "closed", "dirty", "limit",
        "overflow",
    )  # fmt: skip

    def __init__(self, stream: trio.SocketStream, dirty: list[Conn]) -> None:
        self._sock = stream.socket
        self._raw = raw_socket(stream)
        self._pending: list[bytes] = []
        self.backlog = 0  # bytes queued or being written: what the peer has not taken yet
        self._wakeup = trio.Event()
        self._dirty = dirty
        self.closed = False
        self.dirty = False
        self.limit = 1 << 62  # a process's mailbox bound (`Node.mailbox_limit`), in bytes
        self.overflow: Callable[[], None] | None = None  # called once past `limit`

    def push(self, msg: wire.Frame) -> None:
        self.push_bytes(wire.encode(msg))

    def push_bytes(self, frame: bytes) -> None:
        """Queue an encoded frame (header included)."""
        if not self.closed:
            self._pending.append(frame)
            self.backlog += len(frame)
            if self.backlog > self.limit and self.overflow is not None:
                self.overflow()
                return
            if not self.dirty:
                self.dirty = True
                self._dirty.append(self)

    def flush(self) -> None:
        """Send what is queued without blocking; wake the writer task for any remainder."""
        self.dirty = False
        if self.closed or not self._pending or self._wakeup.is_set():
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        try:
            sent = self._raw.send(data)  # synchronous and non-blocking
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close()
            return
        self._pending.clear()
        self.backlog = len(data) - sent
        if sent < len(data):
            self._pending.append(data[sent:])
            self._wakeup.set()

    async def writer(self) -> None:
        while not self.closed:
            await self._wakeup.wait()
            while self._pending and not self.closed:
                data = b"".join(self._pending)
                self._pending.clear()
                try:
                    await _send_all(self._sock, data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self.close()
                self.backlog = max(0, self.backlog - len(data))
            self._wakeup = trio.Event()

    def close(self) -> None:
        self.closed = True
        self._pending.clear()
        self.backlog = 0
        self._wakeup.set()


def raw_socket(stream: trio.SocketStream) -> socket.socket:
    """The stdlib socket under a trio stream, for synchronous non-blocking sends and reads."""
    raw: socket.socket = getattr(stream.socket, "_sock")  # noqa: B009
    return raw


async def _send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


class Proc:
    """What the node knows about one process (or one application connection).

    A node-hosted process (a supervisor, a pg scope: `hosted.py`) has no stream, an `Inbox` for
    a `conn`, and `host`, the cancel scope of its task in the node.
    """

    __slots__ = (
        "agent",
        "alive",
        "calls_out",
        "conn",
        "exit_reason",
        "host",
        "is_app",
        "kill_reason",
        "links",
        "monitors",
        "name",
        "os_pid",
        "pid",
        "pidfd",
        "reaped",
        "run_ids",
        "start",
        "status",
        "stop_waiters",
        "stream",
        "supervisor",
        "target",
        "trap_exit",
        "watching",
    )  # fmt: skip

    def __init__(
        self, pid: Pid, stream: trio.SocketStream | None, conn: Conn | Inbox, is_app: bool
    ) -> None:
        self.pid = pid
        self.stream = stream
        self.conn = conn
        self.host: trio.CancelScope | None = None
        self.supervisor: Pid | None = None  # the supervisor that stops it at node shutdown
        self.is_app = is_app
        self.alive = True
        self.trap_exit = is_app
        self.links: set[Pid] = set()
        self.monitors: dict[Ref, tuple[Pid, str | None]] = {}  # monitors on this process
        self.watching: dict[Ref, Pid] = {}  # monitors this process holds
        self.calls_out: set[Ref] = set()
        self.name: str | None = None
        self.os_pid = 0
        self.pidfd = -1
        self.kill_reason: Any = None
        self.exit_reason: Any = None
        self.start: tuple[Pid, int] | None = None
        self.stop_waiters: list[tuple[Pid, int, Any]] = []
        self.reaped = trio.Event()
        self.status = 0
        self.agent: str | None = None  # the agent class, once the process said it started one
        self.run_ids: tuple[Any, Any] = (None, None)
        self.target: tuple[str, str] | None = None  # (module, qualname) of a forked process


class Zygote:
    """The node's side of the zygote: fork requests out, pids, pidfds and exit statuses back."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._sock: trio.socket.SocketType | None = None
        self._process: trio.Process | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._ready = trio.Event()
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the zygote and serve it; restart it if it dies while the node runs."""
        first = True
        while True:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = dict(os.environ)
            here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
            self._process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "legion.supervisor.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
            )
            theirs.close()
            self._sock = trio.socket.from_stdlib_socket(ours)
            data = await self._sock.recv(65536)
            if not data:
                raise RuntimeError("the zygote failed to start (see its stderr above)")
            self._ready.set()
            if first:
                first = False
                task_status.started()
            await self._serve()
            self._ready = trio.Event()
            self._sock.close()
            await self._process.wait()
            for event, box in self._waiting.values():
                box.append(wire.Forked(0, 0, "the zygote died during the spawn"))
                event.set()
            self._waiting.clear()
            self._node.zygote_died()
            if self._node.stopping:
                return
            log.warning("the zygote died; restarting it")

    async def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, ancdata, _, _ = await self._sock.recvmsg(65536, socket.CMSG_SPACE(4 * 2))
            except (OSError, trio.ClosedResourceError):
                return
            if not data:
                return
            msg = wire.decode_zygote(data)
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            if type(msg) is wire.Forked:
                pending = self._waiting.pop(msg.id, None)
                if pending is None:
                    for fd in fds:
                        os.close(fd)
                    continue
                pending[1].extend([msg, fds[0] if fds else -1])
                pending[0].set()
            elif type(msg) is wire.Reaped:
                self._node.reaped(msg.os_pid, msg.status)

    async def fork(self, request: Callable[[int], wire.Fork], fd: int) -> tuple[wire.Forked, int]:
        await self._ready.wait()
        assert self._sock is not None
        msg = request(next(self._ids))
        event = trio.Event()
        box: list[Any] = []
        self._waiting[msg.id] = (event, box)
        fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        data = wire.encode_zygote(msg)
        async with self._lock:
            try:
                await self._sock.sendmsg([data], fds)
            except (OSError, trio.ClosedResourceError) as exc:  # EMSGSIZE, or the zygote died
                self._waiting.pop(msg.id, None)
                error = (
                    f"cannot hand the spawn to the zygote: {exc} (the request is {len(data)} "
                    "bytes, with the caller's sys.path and cwd)"
                )
                log.error("%s", error)
                return wire.Forked(msg.id, 0, error), -1
        await event.wait()
        return box[0], box[1] if len(box) > 1 else -1

    def close(self) -> None:
        """EOF on its control socket: the zygote kills its children and exits."""
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    async def wait_closed(self) -> None:
        if self._process is not None:
            await self._process.wait()


class Node:
    """The controller's state and the handler for every frame kind."""

    def __init__(
        self, name: str | None = None, max_frame: int | None = None, mailbox: int | None = None
    ) -> None:
        self.name = name or f"n{uuid.uuid4().hex[:8]}"
        self.max_frame = wire.max_frame_setting(max_frame)
        self.mailbox_limit = wire.mailbox_setting(mailbox, self.max_frame)
        self.pid = Pid(self.name, 0)
        self.procs: dict[Pid, Proc] = {}
        self.names: dict[str, Pid] = {}
        self.by_os_pid: dict[int, Proc] = {}
        self.serials = itertools.count(1)
        self.zygote = Zygote(self)
        self.stopping = False
        self.nursery: trio.Nursery
        self.all_gone = trio.Event()
        self._dirty: list[Conn] = []
        self.routed = 0  # messages, calls, casts and replies routed: read at scrape time
        self._events: list[list[wire.TelemetryEvent]] = []  # received, counted at the next flush
        # applications that attached telemetry handlers: their connection, the events they want
        self.listeners: dict[Proc, tuple[Conn, frozenset[tuple[str, ...]] | None]] = {}
        self.metrics_ports: dict[tuple[str, int], int] = {}
        from ..metrics import NodeMetrics

        self.metrics = NodeMetrics(self)
        self._handlers: dict[type, Callable[[Proc, Any], None]] = {
            wire.Spawn: self.on_spawn,
            wire.Send: self.on_send,
            wire.Call: self.on_call,
            wire.Reply: self.on_reply,
            wire.Cast: self.on_cast,
            wire.CancelCall: self.on_cancel_call,
            wire.Link: self.on_link,
            wire.Unlink: self.on_unlink,
            wire.Monitor: self.on_monitor,
            wire.Demonitor: self.on_demonitor,
            wire.ExitSignal: self.on_exit_signal,
            wire.TrapExit: self.on_trap_exit,
            wire.Register: self.on_register,
            wire.Unregister: self.on_unregister,
            wire.Whereis: self.on_whereis,
            wire.StopProcess: self.on_stop,
            wire.InitDone: self.on_init_done,
            wire.Exiting: self.on_exiting,
            wire.Sync: self.on_sync,
            wire.TelemetrySubscribe: self.on_telemetry_subscribe,
            wire.ServeMetrics: self.on_serve_metrics,
            wire.Processes: self.on_processes,
        }

    # -- connections -----------------------------------------------------------------------------

    def conn(self, stream: trio.SocketStream) -> Conn:
        return Conn(stream, self._dirty)

    def flush(self) -> None:
        """Write out what the last handlers queued, on every connection they touched.

        Telemetry from processes is counted after that, off the path of the messages routed.
        """
        dirty = self._dirty
        while dirty:
            dirty.pop().flush()
        if self._events:
            self._count_events()
            while dirty:
                dirty.pop().flush()

    async def accept_app(self, stream: trio.SocketStream) -> None:
        """Serve one application connection until it closes.

        A connection whose first frame is not a well-formed `Hello` (garbage, a length beyond
        `max_frame`, truncated or mistyped msgpack) is refused: logged and closed, and nothing
        else is touched.
        """
        reader = wire.FrameReader(self.max_frame)
        hello: Any = None
        try:
            while hello is None:
                data = await stream.receive_some(65536)
                if not data:
                    if reader.pending():
                        log.warning("refused a connection: it closed inside its first frame")
                    await stream.aclose()
                    return
                for body in reader.feed(data):
                    hello = wire.decode(body)
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await stream.aclose()
            return
        except Exception as exc:  # untrusted bytes: FrameError, DecodeError, RecursionError...
            log.warning(
                "refused a connection: its first frame is not a valid Hello (%s: %s)",
                type(exc).__name__,
                exc,
            )
            await stream.aclose()
            return
        if type(hello) is not wire.Hello:
            log.warning(
                "refused a connection: its first frame is %s, not Hello", type(hello).__name__
            )
            await stream.aclose()
            return
        conn = self.conn(stream)
        proc = Proc(Pid(self.name, next(self.serials)), stream, conn, is_app=True)
        self.procs[proc.pid] = proc
        conn.push(wire.Welcome(proc.pid, self.max_frame))
        self.flush()
        self.nursery.start_soon(conn.writer)
        await self.serve(proc, reader)

    async def serve(self, proc: Proc, reader: wire.FrameReader | None = None) -> None:
        """Handle a connection's frames in order; at EOF, the process is dead.

        Errors stay with the connection that caused them. A frame that does not decode is
        dropped with a log line (the stream is still framed); a length beyond `max_frame` (a
        peer that does not check sizes as `Endpoint.send_frame` does) or a handler failing on a
        frame ends this connection only, the process with reason `("protocol_error", text)`.
        """
        reader = reader or wire.FrameReader(self.max_frame)
        handlers = self._handlers
        assert proc.stream is not None
        sock = raw_socket(proc.stream)  # non-blocking: one syscall per read, no checkpoints
        wait_readable = trio.lowlevel.wait_readable
        telemetry_frame = wire.Telemetry
        try:
            while True:
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    await wait_readable(sock)
                    continue
                if not data:
                    break
                for body in reader.feed(data):
                    try:
                        msg = wire.decode(body)
                    except Exception as exc:
                        self._malformed(proc, body, exc)
                        continue
                    try:
                        if type(msg) is telemetry_frame:
                            self.on_telemetry(proc, msg, body)
                            continue
                        handler = handlers.get(type(msg))
                        if handler is None:
                            log.error(
                                "dropped an unexpected %s from %r", type(msg).__name__, proc.pid
                            )
                            continue
                        handler(proc, msg)
                    except Exception as exc:
                        raise _ProtocolError(
                            f"the node could not handle a {type(msg).__name__} frame: {exc!r}"
                        ) from exc
                self.flush()
                if len(data) < 262144:
                    await wait_readable(sock)
        except (OSError, trio.ClosedResourceError):
            pass
        except (wire.FrameError, _ProtocolError) as exc:
            self._protocol_error(proc, exc)
        await self._died(proc)

    def _malformed(self, proc: Proc, body: bytes | memoryview, exc: Exception) -> None:
        """A frame that does not decode is dropped; when it is a request whose number can still
        be read, its sender is answered with the error, so no caller waits for it forever."""
        log.error("dropped a malformed frame from %r: %s", proc.pid, exc)
        found = _request_number(body)
        if found is not None:
            kind, req = found
            text = f"the node could not decode a {kind} request: {exc}"
            proc.conn.push(wire.Ack(req, text, "bad_request"))

    def _protocol_error(self, proc: Proc, exc: Exception) -> None:
        """A connection broke the protocol: log why, then end it (and its process) alone."""
        text = str(exc)
        log.error(
            "closed the connection of %r: %s", proc.pid, text, exc_info=exc.__cause__ is not None
        )
        reason = ("protocol_error", text)
        if proc.is_app:
            proc.exit_reason = reason
        else:
            self.kill(proc, reason)
        self.flush()

    async def _died(self, proc: Proc) -> None:
        if proc.is_app:
            reason = proc.exit_reason if proc.exit_reason is not None else "noconnection"
        elif proc.kill_reason is not None:
            reason = proc.kill_reason
        elif proc.exit_reason is not None:
            reason = proc.exit_reason
        else:
            with trio.move_on_after(5):
                await proc.reaped.wait()
            reason = _status_reason(proc.status) if proc.reaped.is_set() else "killed"
        self.terminate(proc, reason)
        self.flush()
        assert proc.stream is not None
        await proc.stream.aclose()

    def reaped(self, os_pid: int, status: int) -> None:
        proc = self.by_os_pid.pop(os_pid, None)
        if proc is not None:
            proc.status = status
            if proc.pidfd >= 0:
                os.close(proc.pidfd)
                proc.pidfd = -1
            proc.reaped.set()
        self._check_all_gone()

    def zygote_died(self) -> None:
        """Children die with the zygote (PDEATHSIG); their exit statuses will never come."""
        for proc in list(self.by_os_pid.values()):
            self.reaped(proc.os_pid, signal.SIGKILL)

    def _check_all_gone(self) -> None:
        if (
            self.stopping
            and not self.by_os_pid
            and not any(not p.is_app for p in self.procs.values())
        ):
            self.all_gone.set()

    # -- deaths ----------------------------------------------------------------------------------

    def terminate(self, proc: Proc, reason: Any) -> None:
        """`proc` is dead with `reason`: release its name, signal its links and monitors."""
        if not proc.alive:
            return
        proc.alive = False
        del self.procs[proc.pid]
        if proc.is_app:
            self.listeners.pop(proc, None)
        else:
            self._exit_events(proc, reason)
        if proc.name is not None:
            self.names.pop(proc.name, None)
        if proc.start is not None:
            spawner, req = proc.start
            proc.start = None
            proc.links.discard(spawner)
            other = self.procs.get(spawner)
            if other is not None:
                other.links.discard(proc.pid)
                other.conn.push(wire.Ack(req, reason, "init_failed"))
        for linked in proc.links:
            other = self.procs.get(linked)
            if other is not None:
                other.links.discard(proc.pid)
                self.deliver_exit(other, proc.pid, reason)
        for ref, (watcher, name) in proc.monitors.items():
            other = self.procs.get(watcher)
            if other is not None:
                other.watching.pop(ref, None)
                other.calls_out.discard(ref)
                other.conn.push(wire.DownIn(ref, proc.pid, name, reason))
        for ref, target in proc.watching.items():
            other = self.procs.get(target)
            if other is not None:
                other.monitors.pop(ref, None)
        for waiter, req, _ in proc.stop_waiters:
            other = self.procs.get(waiter)
            if other is not None:
                other.conn.push(wire.Ack(req, reason, None))
        proc.conn.close()
        self._check_all_gone()

    def _exit_events(self, proc: Proc, reason: Any) -> None:
        from ..metrics import reason_class

        label = reason_class(reason)
        now = {"system_time": time.time()}
        meta = {"pid": proc.pid, "reason": label, "hosted": proc.host is not None}
        if proc.agent is not None:
            run_id, parent_run_id = proc.run_ids
            agent_meta = {"agent": proc.agent, "run_id": run_id, "reason": label, "pid": proc.pid}
            if parent_run_id is not None:
                agent_meta["parent_run_id"] = parent_run_id
            telemetry.emit(telemetry.AGENT_STOPPED, now, agent_meta)
        telemetry.emit(telemetry.PROCESS_EXITED, now, meta)

    # -- telemetry -------------------------------------------------------------------------------

    def telemetry_sink(self, event: Any, measurements: dict[str, Any], metadata: Any) -> None:
        """Where the node's own events end: the registry, then each application subscribed."""
        self.metrics.handle(event, measurements, metadata)
        if self.listeners:
            self._forward_events(None, [(tuple(event), measurements, telemetry.plain(metadata))])

    def on_telemetry(self, proc: Proc, msg: wire.Telemetry, body: bytes) -> None:
        """Events from a process or an application: forwarded at once (in order with the frames
        around them: one write carries a turn's events and its reply), counted after the frames
        are flushed."""
        events = msg.events
        for event, _, metadata in events:
            if event == telemetry.AGENT_STARTED:
                proc.agent = str(metadata.get("agent", "unknown"))[:100]
                proc.run_ids = (metadata.get("run_id"), metadata.get("parent_run_id"))
        if self.listeners:
            self._forward_events(proc, events, body)
        self._events.append(events)

    def _forward_events(
        self, sender: Proc | None, events: list[wire.TelemetryEvent], body: bytes | None = None
    ) -> None:
        """Forward `events` to every subscribed application but their sender: the bytes as they
        came (`body`, encoded once if None) to one that wants every event, the events it wants
        to the others; none to one that left TELEMETRY_BACKLOG unread (counted as dropped)."""
        raw = b""
        for app, (conn, wanted) in self.listeners.items():
            if app is sender:
                continue
            if conn.backlog > TELEMETRY_BACKLOG:
                self.metrics.dropped += len(events)
            elif wanted is None:
                raw = raw or (wire.frame(body) if body else wire.encode(wire.Telemetry(events)))
                conn.push_bytes(raw)
            else:
                subset = [one for one in events if one[0] in wanted]
                if subset:
                    conn.push_bytes(wire.encode(wire.Telemetry(subset)))

    def _count_events(self) -> None:
        """Count the events received since the last flush (and call the node's own handlers)."""
        batches, self._events = self._events, []
        handle = self.metrics.handle
        local = telemetry.has_handlers()
        for events in batches:
            for event, measurements, metadata in events:
                if local:
                    telemetry.dispatch(event, measurements, metadata)
                handle(event, measurements, metadata)

    def on_telemetry_subscribe(self, proc: Proc, msg: wire.TelemetrySubscribe) -> None:
        if msg.on and isinstance(proc.conn, Conn):
            wanted = None if msg.events is None else frozenset(tuple(e) for e in msg.events)
            self.listeners[proc] = (proc.conn, wanted)
        elif not msg.on:
            self.listeners.pop(proc, None)

    def on_serve_metrics(self, proc: Proc, msg: wire.ServeMetrics) -> None:
        self.nursery.start_soon(self._serve_metrics, proc, msg)

    async def _serve_metrics(self, proc: Proc, msg: wire.ServeMetrics) -> None:
        try:
            port = await self.start_metrics(msg.host, msg.port)
        except Exception as exc:  # a bad address, a port in use, a value the OS refuses
            proc.conn.push(wire.Ack(msg.req, f"cannot serve /metrics: {exc}", "bad_request"))
        else:
            proc.conn.push(wire.Ack(msg.req, port, None))
        self.flush()

    async def start_metrics(self, host: str, port: int) -> int:
        """Serve `/metrics` on `host:port` (once per address); the port it listens on."""
        from ..metrics import serve_metrics

        if not 0 <= port <= 65535:  # the OS would take it modulo 65536 (70000: port 4464)
            raise ValueError(f"a port must be in 0..65535, got {port}")
        for (served_host, asked), bound in self.metrics_ports.items():
            if served_host == host and port in (0, asked, bound):
                return bound
        bound = await self.nursery.start(
            functools.partial(serve_metrics, self.metrics.scrape, host, port)
        )
        self.metrics_ports[(host, port)] = bound
        return int(bound)

    def deliver_exit(self, target: Proc, sender: Pid, reason: Any) -> None:
        """An exit signal from `sender` reaches `target` (OTP's table, research §2.2)."""
        if target.is_app:
            target.conn.push(wire.ExitIn(sender, "killed" if reason == "kill" else reason))
        elif reason == "kill":
            self.kill(target, "killed")
        elif target.trap_exit:
            target.conn.push(wire.ExitIn(sender, reason))
        elif reason == "normal":
            if sender == target.pid:
                self.kill(target, "normal")
        else:
            self.kill(target, reason)

    def kill(self, proc: Proc, reason: Any) -> None:
        """End `proc` now with `reason`; its death is announced when its connection reaches EOF.

        A hosted process's task is cancelled instead; it then terminates with `reason`.
        """
        if proc.kill_reason is None and proc.exit_reason is None:
            proc.kill_reason = reason
        if proc.host is not None:
            proc.kill_reason = reason
            proc.host.cancel()
            return
        if proc.pidfd >= 0:
            try:
                signal.pidfd_send_signal(proc.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif proc.os_pid:
            try:
                os.kill(proc.os_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # -- spawning --------------------------------------------------------------------------------

    def on_spawn(self, proc: Proc, msg: wire.Spawn) -> None:
        if msg.name is not None and msg.name in self.names:
            proc.conn.push(wire.Ack(msg.req, self.names[msg.name], "name_taken"))
            return
        if self.stopping:
            proc.conn.push(wire.Ack(msg.req, "the node is shutting down", "spawn_failed"))
            return
        if msg.hosted:
            self.host(proc, msg)
            return
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE/ENFILE: out of descriptors; the caller hears why
            error = f"cannot start {msg.qualname}: the node cannot open its connection ({exc})"
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                error += "; each process holds 2 of the node's file descriptors: raise the "
                error += "limit (ulimit -n) or run fewer processes"
            log.error("%s", error)
            proc.conn.push(wire.Ack(msg.req, error, "spawn_failed"))
            return
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        conn = self.conn(stream)
        child = Proc(Pid(self.name, next(self.serials)), stream, conn, is_app=False)
        conn.limit = self.mailbox_limit
        conn.overflow = functools.partial(self.mailbox_full, child)
        if msg.name is not None:
            self.names[msg.name] = child.pid
            child.name = msg.name
        parent = proc.pid if msg.link else None
        child.conn.push(
            wire.Boot(
                child.pid,
                parent,
                msg.arg,
                msg.has_arg,
                msg.sync,
                self.max_frame,
                self.mailbox_limit,
            )
        )
        self.nursery.start_soon(self._fork, proc, child, msg, theirs)

    def mailbox_full(self, proc: Proc) -> None:
        """`proc` left more than `mailbox_limit` bytes unread: kill it, as OTP's max_heap_size
        kills a process whose heap (mailbox included) outgrew its bound, with a reason that
        says so; its links, monitors and callers learn it as from any death."""
        conn = proc.conn
        assert isinstance(conn, Conn)
        waiting = conn.backlog
        conn.overflow = None
        conn.close()  # what it would never read is freed now
        self.metrics.mailbox_overflows.inc()
        module, qualname = proc.target or ("?", "?")
        log.error(
            "killed %r (%s.%s): %d bytes of messages waited for it, over its mailbox limit of %d "
            "bytes (max_mailbox_bytes, LEGION_MAX_MAILBOX_BYTES)",
            proc.pid, module, qualname, waiting, self.mailbox_limit,
        )  # fmt: skip
        self.kill(proc, ("mailbox_full", self.mailbox_limit))

    async def _fork(self, proc: Proc, child: Proc, msg: wire.Spawn, theirs: socket.socket) -> None:
        def request(id_: int) -> wire.Fork:
            return wire.Fork(id_, msg.module, msg.qualname, msg.main_path, msg.sys_path, msg.cwd)

        try:
            forked, pidfd = await self.zygote.fork(request, theirs.fileno())
        finally:
            theirs.close()
        if forked.error is not None:
            if child.name is not None:
                self.names.pop(child.name, None)
            assert child.stream is not None
            await child.stream.aclose()
            proc.conn.push(wire.Ack(msg.req, forked.error, "spawn_failed"))
            self.flush()
            return
        child.os_pid, child.pidfd = forked.os_pid, pidfd
        child.target = (msg.module, msg.qualname)
        self.procs[child.pid] = child
        self.by_os_pid[child.os_pid] = child
        if msg.link:
            if proc.alive:
                proc.links.add(child.pid)
                child.links.add(proc.pid)
            else:
                self.deliver_exit(child, proc.pid, "noproc")
        if msg.monitor is not None and proc.alive:
            child.monitors[msg.monitor] = (proc.pid, None)
            proc.watching[msg.monitor] = child.pid
        if msg.sync and proc.alive:
            child.start = (proc.pid, msg.req)
        else:
            proc.conn.push(wire.Ack(msg.req, child.pid, None))
        if child.kill_reason is not None:
            self.kill(child, child.kill_reason)
        telemetry.emit(
            telemetry.PROCESS_SPAWNED,
            {"system_time": time.time()},
            {"pid": child.pid, "module": msg.module, "qualname": msg.qualname},
        )
        self.flush()
        self.nursery.start_soon(child.conn.writer)
        self.nursery.start_soon(self.serve, child)

    def host(self, proc: Proc, msg: wire.Spawn) -> None:
        """Start a node-hosted process (a supervisor): a pid and a task here, no OS process."""
        from . import hosted

        try:
            behaviour = hosted.resolve(msg)
        except (Exception, SystemExit) as exc:  # a module's `sys.exit(...)` must not end the node
            error = (
                f"cannot start {msg.qualname} in the node: loading it from {msg.module!r} "
                f"raised {type(exc).__name__}: {exc} (a hosted supervisor's module is imported "
                "in the node controller)"
            )
            proc.conn.push(wire.Ack(msg.req, error, "spawn_failed"))
            return
        child = Proc(Pid(self.name, next(self.serials)), None, Inbox(), is_app=False)
        child.trap_exit = True
        child.host = trio.CancelScope()
        self.procs[child.pid] = child
        if msg.name is not None:
            self.names[msg.name] = child.pid
            child.name = msg.name
        if msg.link:
            proc.links.add(child.pid)
            child.links.add(proc.pid)
        if msg.monitor is not None:
            child.monitors[msg.monitor] = (proc.pid, None)
            proc.watching[msg.monitor] = child.pid
        if msg.sync:
            child.start = (proc.pid, msg.req)
        else:
            proc.conn.push(wire.Ack(msg.req, child.pid, None))
        parent = proc.pid if msg.link else None
        self.nursery.start_soon(hosted.run, self, child, behaviour, msg, parent)

    def on_init_done(self, proc: Proc, msg: wire.InitDone) -> None:
        spawner, req = proc.start if proc.start is not None else (None, 0)
        proc.start = None
        other = self.procs.get(spawner) if spawner is not None else None
        if msg.ok:
            if other is not None:
                other.conn.push(wire.Ack(req, proc.pid, None))
            return
        crash = msg.reason if isinstance(msg.reason, Crash) and msg.reason.traceback else None
        if crash is not None and (other is None or other.host is not None):
            # the process leaves its traceback to the spawner, which raises it in an InitError
            # when it is an application or a process: print it here for the others
            name = proc.target[1] if proc.target is not None else "process"
            print_crash(name, proc.pid, crash)
        if spawner is not None:
            proc.links.discard(spawner)
        if other is not None:
            other.links.discard(proc.pid)
            if msg.ignore:
                other.conn.push(wire.Ack(req, None, None))
            else:
                other.conn.push(wire.Ack(req, msg.reason, "init_failed"))

    def on_exiting(self, proc: Proc, msg: wire.Exiting) -> None:
        if proc.kill_reason is None and proc.exit_reason is None:
            proc.exit_reason = msg.reason
            if msg.reason == ["mailbox_full", self.mailbox_limit]:  # it held too much itself
                self.metrics.mailbox_overflows.inc()
                module, qualname = proc.target or ("?", "?")
                log.error(
                    "%r (%s.%s) ended itself: the messages it had read and not yet handled "
                    "passed its mailbox limit of %d bytes (max_mailbox_bytes, "
                    "LEGION_MAX_MAILBOX_BYTES)",
                    proc.pid, module, qualname, self.mailbox_limit,
                )  # fmt: skip

    # -- messages --------------------------------------------------------------------------------

    def resolve(self, dest: Any) -> Proc | None:
        if isinstance(dest, str):
            pid = self.names.get(dest)
            return None if pid is None else self.procs.get(pid)
        return self.procs.get(dest) if isinstance(dest, Pid) else None

    def on_send(self, proc: Proc, msg: wire.Send) -> None:
        self.routed += 1
        target = self.resolve(msg.to)
        if target is not None:
            target.conn.push(wire.MessageIn(msg.payload))
        if msg.req:
            error = None if target is not None else "not_registered"
            proc.conn.push(wire.Ack(msg.req, None, error))

    def on_cast(self, proc: Proc, msg: wire.Cast) -> None:
        self.routed += 1
        target = self.resolve(msg.to)
        if target is not None:
            target.conn.push(wire.CastIn(msg.payload))

    def on_call(self, proc: Proc, msg: wire.Call) -> None:
        self.routed += 1
        target = self.resolve(msg.to)
        if target is None:
            proc.conn.push(wire.CallFailed(msg.ref, "noproc"))
        elif target is proc:
            proc.conn.push(wire.CallFailed(msg.ref, "calling_self"))
        else:
            target.monitors[msg.ref] = (proc.pid, None)
            proc.watching[msg.ref] = target.pid
            proc.calls_out.add(msg.ref)
            target.conn.push(wire.CallIn(proc.pid, msg.ref, msg.payload))

    def on_reply(self, proc: Proc, msg: wire.Reply) -> None:
        self.routed += 1
        caller = self.procs.get(msg.to)
        if caller is None or msg.ref not in caller.calls_out:
            return  # the caller gave up (timeout) or died: a late reply is dropped
        caller.calls_out.discard(msg.ref)
        target_pid = caller.watching.pop(msg.ref, None)
        target = self.procs.get(target_pid) if target_pid is not None else None
        if target is not None:
            target.monitors.pop(msg.ref, None)
        caller.conn.push(wire.ReplyIn(msg.ref, msg.payload))

    def on_cancel_call(self, proc: Proc, msg: wire.CancelCall) -> None:
        proc.calls_out.discard(msg.ref)
        self._drop_monitor(proc, msg.ref)

    # -- links, monitors, exit signals -----------------------------------------------------------

    def on_link(self, proc: Proc, msg: wire.Link) -> None:
        if msg.pid == proc.pid:
            proc.conn.push(wire.Ack(msg.req, None, None))
            return
        target = self.procs.get(msg.pid)
        if target is None:
            if proc.trap_exit:
                proc.conn.push(wire.ExitIn(msg.pid, "noproc"))
                proc.conn.push(wire.Ack(msg.req, None, None))
            else:
                proc.conn.push(wire.Ack(msg.req, None, "noproc"))
            return
        proc.links.add(target.pid)
        target.links.add(proc.pid)
        proc.conn.push(wire.Ack(msg.req, None, None))

    def on_unlink(self, proc: Proc, msg: wire.Unlink) -> None:
        proc.links.discard(msg.pid)
        target = self.procs.get(msg.pid)
        if target is not None:
            target.links.discard(proc.pid)
        proc.conn.push(wire.Ack(msg.req, None, None))

    def on_monitor(self, proc: Proc, msg: wire.Monitor) -> None:
        name = msg.dest if isinstance(msg.dest, str) else None
        target = self.resolve(msg.dest)
        if target is None:
            pid = msg.dest if isinstance(msg.dest, Pid) else None
            proc.conn.push(wire.DownIn(msg.ref, pid, name, "noproc"))
            return
        target.monitors[msg.ref] = (proc.pid, name)
        proc.watching[msg.ref] = target.pid

    def on_demonitor(self, proc: Proc, msg: wire.Demonitor) -> None:
        self._drop_monitor(proc, msg.ref)
        proc.conn.push(wire.Ack(-1, msg.ref, None))

    def _drop_monitor(self, proc: Proc, ref: Ref) -> None:
        target_pid = proc.watching.pop(ref, None)
        target = self.procs.get(target_pid) if target_pid is not None else None
        if target is not None:
            target.monitors.pop(ref, None)

    def on_exit_signal(self, proc: Proc, msg: wire.ExitSignal) -> None:
        target = self.procs.get(msg.to)
        if target is not None:
            self.deliver_exit(target, proc.pid, msg.reason)

    def on_trap_exit(self, proc: Proc, msg: wire.TrapExit) -> None:
        if not proc.is_app:
            proc.trap_exit = msg.flag

    # -- names -----------------------------------------------------------------------------------

    def on_register(self, proc: Proc, msg: wire.Register) -> None:
        target = self.procs.get(msg.pid)
        if msg.name in self.names:
            proc.conn.push(wire.Ack(msg.req, self.names[msg.name], "name_taken"))
        elif target is None:
            proc.conn.push(wire.Ack(msg.req, None, "noproc"))
        elif target.name is not None:
            proc.conn.push(wire.Ack(msg.req, target.name, "has_name"))
        else:
            target.name = msg.name
            self.names[msg.name] = target.pid
            proc.conn.push(wire.Ack(msg.req, None, None))

    def on_unregister(self, proc: Proc, msg: wire.Unregister) -> None:
        pid = self.names.pop(msg.name, None)
        if pid is None:
            proc.conn.push(wire.Ack(msg.req, None, "not_registered"))
            return
        target = self.procs.get(pid)
        if target is not None:
            target.name = None
        proc.conn.push(wire.Ack(msg.req, None, None))

    def on_whereis(self, proc: Proc, msg: wire.Whereis) -> None:
        proc.conn.push(wire.Ack(msg.req, self.names.get(msg.name), None))

    # -- stop, sync ------------------------------------------------------------------------------

    def on_stop(self, proc: Proc, msg: wire.StopProcess) -> None:
        target = self.resolve(msg.dest)
        if target is None:
            proc.conn.push(wire.Ack(msg.req, None, "noproc"))
        elif target.is_app:
            proc.conn.push(
                wire.Ack(msg.req, "an application connection cannot be stopped", "bad_request")
            )
        else:
            target.stop_waiters.append((proc.pid, msg.req, msg.reason))
            target.conn.push(wire.StopIn(msg.reason))

    def on_processes(self, proc: Proc, msg: wire.Processes) -> None:
        live = [
            [p.pid, p.target[0], p.target[1], p.supervisor is not None]
            for p in self.procs.values()
            if p.alive and p.target is not None
        ]
        proc.conn.push(wire.Ack(msg.req, live, None))

    def on_sync(self, proc: Proc, msg: wire.Sync) -> None:
        proc.conn.push(wire.Ack(msg.req, None, None))

    # -- shutdown --------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop every process: `shutdown` signals, a grace period, SIGKILL; then the zygote."""
        self.stopping = True
        for proc in list(self.procs.values()):
            if proc.is_app or proc.supervisor in self.procs:
                continue  # a live supervisor stops its own children, in order
            self.deliver_exit(proc, self.pid, "shutdown")
        self.flush()
        self._check_all_gone()
        with trio.move_on_after(_SHUTDOWN_GRACE):
            await self.all_gone.wait()
        for proc in list(self.procs.values()):
            if not proc.is_app:
                self.kill(proc, "killed")
        with trio.move_on_after(2):
            await self.all_gone.wait()
        self.zygote.close()
        with trio.move_on_after(2):
            await self.zygote.wait_closed()


class _ProtocolError(Exception):
    """A frame the node cannot handle: it ends the connection that sent it, nothing else."""


def _request_positions() -> dict[str, int]:
    """For each request frame (one with a `req` field): its tag and where `req` sits in the
    array the frame is encoded as (after the tag)."""
    import typing

    import msgspec

    positions = {}
    for cls in typing.get_args(wire.Frame):
        names = [f.name for f in msgspec.structs.fields(cls)]
        if "req" in names and cls is not wire.Ack:
            positions[cls.__name__] = 1 + names.index("req")
    return positions


_REQUEST_POSITIONS = _request_positions()


def _request_number(body: bytes | memoryview) -> tuple[str, int] | None:
    """(frame kind, request number) of an undecodable request frame, if both can be read."""
    import msgspec

    try:
        fields = msgspec.msgpack.decode(body)
    except Exception:  # not even msgpack: nothing to answer
        return None
    if not isinstance(fields, list) or not fields or not isinstance(fields[0], str):
        return None
    at = _REQUEST_POSITIONS.get(fields[0])
    if at is None or at >= len(fields):
        return None
    req = fields[at]
    if type(req) is not int or req <= 0:  # 0: a request that asked for no answer
        return None
    return fields[0], req


def _status_reason(status: int) -> Any:
    if os.WIFSIGNALED(status):
        return "killed"
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "normal"
    return Crash("SystemExit", f"the process exited with status {code} without a reason")


# -- entry points ---------------------------------------------------------------------------------


def _install(node: Node) -> None:
    """Events emitted inside the node (its own, its supervisors') go to its sink."""
    telemetry.set_forward(node.telemetry_sink)


async def run_embedded(
    fd: int,
    metrics_port: int | None = None,
    max_frame: int | None = None,
    mailbox: int | None = None,
) -> None:
    """Serve one application over the socket `fd`; stop everything when it disconnects.

    `max_frame` and `mailbox`: the node's limits in bytes (None: the environment's or the
    default; see `wire.max_frame_setting`)."""
    node = Node(max_frame=max_frame, mailbox=mailbox)
    _install(node)
    sock = socket.socket(fileno=fd)
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    async with trio.open_nursery() as nursery:
        node.nursery = nursery
        await nursery.start(node.zygote.run)
        if metrics_port is not None:
            await node.start_metrics("127.0.0.1", metrics_port)
        await node.accept_app(stream)
        await node.shutdown()
        nursery.cancel_scope.cancel()


async def run_service(
    path: str,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    max_frame: int | None = None,
    mailbox: int | None = None,
) -> None:
    """Serve applications that connect to the Unix socket `path` until SIGINT/SIGTERM."""
    node = Node(max_frame=max_frame, mailbox=mailbox)
    _install(node)
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(128)
    listeners = [trio.SocketListener(listener)]
    try:
        async with trio.open_nursery() as nursery:
            node.nursery = nursery
            await nursery.start(node.zygote.run)
            if metrics_port is not None:
                port = await node.start_metrics(metrics_host, metrics_port)
                print(f"legion node: /metrics on http://{metrics_host}:{port}/metrics",
                      file=sys.stderr, flush=True)  # fmt: skip
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                nursery.start_soon(trio.serve_listeners, node.accept_app, listeners)
                print(f"legion node {node.name} listening on {path}", file=sys.stderr, flush=True)
                task_status.started()
                async for _ in signals:
                    break
            await node.shutdown()
            nursery.cancel_scope.cancel()
    finally:
        if os.path.exists(path):
            os.unlink(path)


def _raise_fd_limit() -> None:
    """Each process costs the node a socket and a pidfd: allow as many as the hard limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _refuse_the_api_here() -> None:
    """Hosted code (a `Supervisor.init`) runs in this process, which has no connection of its
    own: make the process API fail loudly here rather than start a second node."""
    from . import client
    from .errors import LegionError

    def refuse() -> client.Client:
        raise LegionError(
            "the legion process API is not available in a Supervisor's init: it runs inside the "
            "node controller; return child specs from init and do the work in the children"
        )

    client.get = refuse


def main(argv: list[str] | None = None, prog: str = "python -m legion.supervisor.node") -> None:
    """Run a node: embedded (`--embedded-fd`, started by an application) or as a service on
    `--socket`. Bad arguments or settings are a usage error naming `prog` (`legion node` when
    the `legion` command runs it)."""
    import argparse

    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
        if not 0 <= value <= 65535:
            raise argparse.ArgumentTypeError(f"a port must be in 0..65535, got {value}")
        return value

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--embedded-fd", type=int, help=argparse.SUPPRESS)  # an application's own
    parser.add_argument("--socket")
    parser.add_argument("--metrics-port", type=port)
    parser.add_argument("--metrics-host", default="127.0.0.1")
    parser.add_argument("--max-frame-bytes", type=int, help=f"default: ${wire.MAX_FRAME_ENV}")
    parser.add_argument("--max-mailbox-bytes", type=int, help=f"default: ${wire.MAILBOX_ENV}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="legion node: %(message)s")
    try:
        max_frame = wire.max_frame_setting(args.max_frame_bytes)
        mailbox = wire.mailbox_setting(args.max_mailbox_bytes, max_frame)
    except ValueError as exc:
        parser.error(str(exc))
    if args.embedded_fd is None:
        if not args.socket:
            parser.error("give --socket PATH (the Unix socket to listen on) or --embedded-fd")
        if os.path.isdir(args.socket):
            parser.error(f"--socket {args.socket} is a directory; give the path of a socket file")
    _raise_fd_limit()
    _refuse_the_api_here()
    if args.embedded_fd is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        trio.run(run_embedded, args.embedded_fd, args.metrics_port, max_frame, mailbox)
    else:
        serve = functools.partial(run_service, max_frame=max_frame, mailbox=mailbox)
        trio.run(serve, args.socket, args.metrics_port, args.metrics_host)


if __name__ == "__main__":
    main()

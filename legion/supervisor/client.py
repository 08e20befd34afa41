"""The application's connection to a node: sync, threaded, asyncio and trio code alike.

The first API call of an application connects: to the node at `LEGION_NODE` if that is set, else
to a new embedded node, a child process (`python -m legion.supervisor.node`) joined by a
socketpair. The connection is itself a process with a pid, which always traps exits, so exit
signals and DOWN notices reach the application as `Exit`/`Down` messages instead of killing it.

There is no reader thread: whichever caller waits reads the socket (see `Client`), so a reply
costs no thread hand-off. Blocking calls wait on a condition variable; their awaitable twins
wait on the running loop (trio or asyncio), so service code never blocks its event loop.
When the application exits (or calls
`legion.shutdown()`), the connection closes and an embedded node stops every process it ran.
"""

from __future__ import annotations

import atexit
import math
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from . import wire
from .endpoint import Endpoint
from .errors import LegionError, NodeUnavailable


class Client(Endpoint):
    """The application's endpoint. Whoever waits reads: no reader thread, no hand-off.

    A waiter that finds nobody reading the socket becomes the reader (a sync thread polls, an
    async task awaits readability on its own loop), files every frame that arrives, and wakes
    the others; the rest wait on a condition variable (threads) or a loop event (tasks).
    """

    def __init__(self, sock: socket.socket, pid: Any, node: subprocess.Popen[bytes] | None) -> None:
        super().__init__()
        self.pid = pid
        self.trapping = True
        self.node_process = node
        self._sock = sock
        self._sock.setblocking(False)
        self._fd = sock.fileno()
        self._frames = wire.FrameReader()
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._wakers: set[Callable[[], None]] = set()
        self._reading = False
        self._gone: str | None = None
        self._poller = select.poll()  # used only by the thread that holds the reader role
        self._poller.register(self._fd, select.POLLIN)

    # -- connection ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._gone is not None:
            raise NodeUnavailable(self._gone)
        try:
            with self._send_lock:
                wire.send_all(self._sock, data)
        except OSError as exc:
            raise NodeUnavailable(f"the node connection is closed ({exc})") from None

    def _pump(self) -> None:
        """Read what is there without blocking (the reader only) and file it."""
        msgs: list[wire.Frame] = []
        events: list[bytes] = []
        eof = False
        while True:
            try:
                data = self._sock.recv(262144)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                break
            for body in self._frames.feed(data):
                if body.startswith(wire.TELEMETRY_PREFIX):
                    events.append(body)  # decoded and handled on the telemetry thread
                else:
                    msgs.append(wire.decode(body))
            if len(data) < 262144:
                break
        if events:
            from .. import telemetry

            telemetry.deliver_later(events)
        with self._cond:
            for msg in msgs:
                self.dispatch(msg)
            if eof and self._gone is None:
                self._gone = "the node went away (it exited or was killed)"

    def _release(self) -> None:
        with self._cond:
            self._reading = False
            self._cond.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def close(self, timeout: float = 30.0) -> None:
        """Leave the node; an embedded node then stops all its processes and exits."""
        if self._gone is None:
            try:
                self._write(wire.encode(wire.Exiting("shutdown")))
            except NodeUnavailable:
                pass
            self._gone = "legion.shutdown() closed the connection"
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._sock.close()
        if self.node_process is not None:
            try:
                self.node_process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.node_process.kill()
                self.node_process.wait()

    # -- waiting ---------------------------------------------------------------------------------

    def _wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        poller = self._poller
        while True:
            with self._cond:
                if ready():
                    return True
                if self._gone is not None:
                    raise NodeUnavailable(self._gone)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if self._reading:
                    self._cond.wait(None if remaining == math.inf else remaining)
                    continue
                self._reading = True
            try:
                wait_ms = (
                    None if remaining == math.inf else max(1, min(int(remaining * 1000), 2**31 - 1))
                )
                if poller.poll(wait_ms):  # (poll takes a C int: a long timeout polls again)
                    self._pump()
            finally:
                self._release()

    async def _await(self, ready: Callable[[], bool], deadline: float) -> bool:
        import sniffio

        library = sniffio.current_async_library()
        while True:
            with self._cond:
                if ready():
                    return True
                if self._gone is not None:
                    raise NodeUnavailable(self._gone)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    wait, wake = _loop_event(library)
                    self._wakers.add(wake)
            if lead:
                try:
                    if await _readable(library, self._sock, remaining):
                        self._pump()
                finally:
                    self._release()
            else:
                try:
                    await wait(remaining)
                finally:
                    with self._cond:
                        self._wakers.discard(wake)


async def _readable(library: str, sock: socket.socket, timeout: float) -> bool:
    """Wait until `sock` is readable on the running loop; False on timeout."""
    if library == "trio":
        import trio

        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(sock)
            return True
        return False
    if library == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        loop.add_reader(sock.fileno(), ready)
        try:
            await asyncio.wait_for(future, None if timeout == math.inf else timeout)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(sock.fileno())
    raise LegionError(f"legion's awaitables support trio and asyncio, not {library}")


def _loop_event(library: str) -> tuple[Callable[[float], Any], Callable[[], None]]:
    """An event of the running loop that another thread can set: (wait(timeout), wake())."""
    if library == "trio":
        import trio

        trio_event = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def trio_wake() -> None:
            try:
                token.run_sync_soon(trio_event.set)
            except trio.RunFinishedError:
                pass

        async def trio_wait(timeout: float) -> None:
            with trio.move_on_after(timeout):
                await trio_event.wait()

        return trio_wait, trio_wake
    if library == "asyncio":
        import asyncio

        loop = asyncio.get_running_loop()
        aio_event = asyncio.Event()

        def aio_wake() -> None:
            try:
                loop.call_soon_threadsafe(aio_event.set)
            except RuntimeError:
                pass

        async def aio_wait(timeout: float) -> None:
            try:
                await asyncio.wait_for(aio_event.wait(), None if timeout == math.inf else timeout)
            except TimeoutError:
                pass

        return aio_wait, aio_wake
    raise LegionError(f"legion's awaitables support trio and asyncio, not {library}")


# -- the application's connection ------------------------------------------------------------------

_client: Client | None = None
_client_lock = threading.Lock()


def get() -> Client:
    """The application's connection, made on first use."""
    client = _client
    if client is not None and client._gone is None:
        return client
    with _client_lock:
        if _client is None or _client._gone is not None:
            _connect()
        assert _client is not None
        return _client


def current() -> Client | None:
    return _client


def _connect() -> None:
    global _client
    from . import zygote

    if zygote.importing_user_code:
        raise LegionError(
            "the legion API was called while a worker imported the application's script; "
            "put the script's entry point under `if __name__ == '__main__':`"
        )
    path = os.environ.get("LEGION_NODE")
    node: subprocess.Popen[bytes] | None = None
    if path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise NodeUnavailable(
                f"cannot join the node at LEGION_NODE={path!r}: {exc}. Start one with "
                "`legion node --socket PATH`, or unset LEGION_NODE to run an embedded node"
            ) from None
        try:
            _check_owner(sock, path)
        except NodeUnavailable:
            sock.close()
            raise
    else:
        limits = _node_limits()
        sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        node = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "legion.supervisor.node",
                "--embedded-fd",
                str(theirs.fileno()),
                *limits,
            ],
            pass_fds=[theirs.fileno()],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        theirs.close()
    main_path = getattr(sys.modules.get("__main__"), "__file__", None)
    hello = wire.Hello(
        [p or os.getcwd() for p in sys.path], os.getcwd(), main_path, node is not None
    )
    sock.sendall(wire.encode(hello))
    welcome = _read_one(sock)
    if type(welcome) is not wire.Welcome:
        sock.close()
        raise NodeUnavailable(f"the node answered {type(welcome).__name__} instead of Welcome")
    _client = Client(sock, welcome.pid, node)
    _client.max_frame = welcome.max_frame
    atexit.register(_close_at_exit, _client)


def _check_owner(sock: socket.socket, path: str) -> None:
    """Refuse a node run by another user before sending it anything (SO_PEERCRED): a socket
    planted at LEGION_NODE, in a shared folder say, must never see our frames or secrets."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    peer_pid, peer_uid, _ = struct.unpack("3i", creds)
    ours = os.getuid()
    if peer_uid != ours:
        raise NodeUnavailable(
            f"refused the node at LEGION_NODE={path!r}: its socket is served by uid {peer_uid} "
            f"(pid {peer_pid}), and this application runs as uid {ours}. Only a node of the same "
            "user is joined; start your own with `legion node --socket PATH`"
        )


def _node_limits() -> list[str]:
    """The embedded node's options for the limits set by `legion.configure` (else its
    environment decides); a bad value is a ConfigError here, before any node starts."""
    from ..config import ConfigError, global_config

    layer = global_config()
    try:
        max_frame = wire.max_frame_setting(layer.get("max_frame_bytes"))
        mailbox = wire.mailbox_setting(layer.get("max_mailbox_bytes"), max_frame)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return ["--max-frame-bytes", str(max_frame), "--max-mailbox-bytes", str(mailbox)]


def _read_one(sock: socket.socket) -> wire.Frame:
    frames = wire.FrameReader()
    while True:
        data = sock.recv(65536)
        if not data:
            raise NodeUnavailable("the node closed the connection before answering")
        for body in frames.feed(data):
            return wire.decode(body)


def _close_at_exit(client: Client) -> None:
    if client._owner == os.getpid():
        client.close()


def shutdown(timeout: float = 30.0) -> None:
    """Disconnect from the node; an embedded node stops every process and exits first."""
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None and client._owner == os.getpid():
        client.close(timeout)


def _forget_after_fork() -> None:
    global _client, _client_lock
    _client = None
    _client_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

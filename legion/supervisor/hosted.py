"""Node-hosted processes: a pid in the node's table, a trio task in the node, no OS process.

Supervisors and pg scopes run this way. To the rest of the runtime such a process looks like any
other: it has a `Proc` (so links, monitors, names, `call`, `legion.stop` and exit signals work on
it unchanged), but its `conn` is an `Inbox`, which files frames in memory instead of writing them
to a socket, and what it sends goes straight into the node's handlers (`Host.send`), in the order
it sends them. The node is single-threaded, so per-pair ordering holds exactly as for a socket:
a frame pushed before another is read before it.

Restart is fast because a supervisor spawns through the node's own zygote path with no extra hop.
The cost: a hosted process shares the node's thread, so its code (including a `Supervisor`
subclass's `init`) must not block.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .lazy_trio import trio
from .terms import Pid, Ref, crash_from_exception

if TYPE_CHECKING:
    from .node import Node, Proc

log = logging.getLogger("legion.node")

Key = int | Ref


class Inbox:
    """The `Conn` of a hosted process: frames stay in memory, in order.

    Replies the process is waiting for (an `Ack` by request number, a `DownIn` by monitor
    reference) go straight to their waiter (`expect`/`wait_for`); everything else queues in
    `frames` for the process's main loop. Unexpected acks are dropped.
    """

    __slots__ = ("_arrival", "_slots", "closed", "dirty", "frames")

    def __init__(self) -> None:
        self.frames: deque[wire.Frame] = deque()
        self._slots: dict[Key, list[wire.Frame]] = {}
        self._arrival = trio.Event()
        self.closed = False
        self.dirty = False

    def push(self, msg: wire.Frame) -> None:
        if self.closed:
            return
        kind = type(msg)
        if kind is wire.Ack:
            slot = self._slots.get(msg.req)  # type: ignore[union-attr]
            if slot is not None:
                slot.append(msg)
                self._wake()
            return
        if kind is wire.DownIn:
            slot = self._slots.get(msg.ref)  # type: ignore[union-attr]
            if slot is not None:
                slot.append(msg)
                self._wake()
                return
        self.frames.append(msg)
        self._wake()

    def _wake(self) -> None:
        self._arrival.set()

    def flush(self) -> None:
        pass

    async def writer(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._wake()

    def expect(self, key: Key) -> None:
        """Route the reply keyed `key` to `wait_for` (call before sending the request)."""
        self._slots[key] = []

    def forget(self, key: Key) -> None:
        self._slots.pop(key, None)

    async def wait_for(self, key: Key, timeout: float = math.inf) -> wire.Frame | None:
        """The reply keyed `key`, or None after `timeout` seconds (the key stays expected)."""
        slot = self._slots[key]
        with trio.move_on_after(timeout):
            while not slot:
                await self._next_arrival()
        if slot:
            del self._slots[key]
            return slot[0]
        return None

    async def _next_arrival(self) -> None:
        arrival = self._arrival
        await arrival.wait()
        if self._arrival is arrival:
            self._arrival = trio.Event()

    async def get(self) -> wire.Frame:
        """The oldest queued frame, waiting for one."""
        while not self.frames:
            await self._next_arrival()
        return self.frames.popleft()

    def take(self, match: Callable[[wire.Frame], bool]) -> wire.Frame | None:
        """Remove and return the first queued frame `match` accepts, if any."""
        for i, msg in enumerate(self.frames):
            if match(msg):
                del self.frames[i]
                return msg
        return None


class Host:
    """What a hosted process uses to act: the process API, spoken to the node directly."""

    def __init__(self, node: Node, proc: Proc, parent: Pid | None, spawn: wire.Spawn) -> None:
        self.node = node
        self.proc = proc
        self.pid = proc.pid
        self.parent = parent
        self.spawn_context = spawn  # sys_path, cwd, main_path for the children it spawns
        inbox = proc.conn
        assert isinstance(inbox, Inbox)
        self.inbox = inbox
        self._reqs = itertools.count(1)
        self._refs = itertools.count(1)

    @property
    def node_pid(self) -> Pid:
        return self.node.pid

    def send(self, msg: wire.Frame) -> None:
        """Hand one frame to the node's handler for it, as a process's connection would."""
        self.node._handlers[type(msg)](self.proc, msg)
        self.node.flush()

    def make_ref(self) -> Ref:
        return Ref(self.pid.node, self.pid.serial, next(self._refs))

    def next_req(self) -> int:
        return next(self._reqs)

    def init_done(self, ok: bool, ignore: bool = False, reason: Any = None) -> None:
        self.send(wire.InitDone(ok, ignore, reason))

    def reply(self, caller: Pid, ref: Ref, value: Any) -> None:
        self.send(wire.Reply(caller, ref, wire.encode_term(value)))

    def monitor(self, pid: Pid) -> Ref:
        ref = self.make_ref()
        self.inbox.expect(ref)
        self.send(wire.Monitor(ref, pid))
        return ref

    def demonitor(self, ref: Ref) -> None:
        self.inbox.forget(ref)
        self.send(wire.Demonitor(ref))

    def unlink(self, pid: Pid) -> None:
        self.send(wire.Unlink(0, pid))

    def exit(self, pid: Pid, reason: Any) -> None:
        self.send(wire.ExitSignal(pid, reason))

    def is_alive(self, pid: Pid) -> bool:
        return pid in self.node.procs

    async def spawn_sync(
        self,
        module: str,
        qualname: str,
        main_path: str | None,
        hosted: bool,
        arg: Any,
        has_arg: bool,
        name: str | None,
    ) -> wire.Ack:
        """Start a child linked to this process and wait until its `init` returned."""
        ctx = self.spawn_context
        req = self.next_req()
        self.inbox.expect(req)
        if main_path is None and module == "__main__":
            main_path = ctx.main_path
        payload = wire.encode_term(arg)
        self.send(
            wire.Spawn(
                req,
                module,
                qualname,
                main_path,
                ctx.sys_path,
                ctx.cwd,
                payload,
                has_arg,
                True,
                None,
                name,
                True,
                hosted,
            )
        )
        ack = await self.inbox.wait_for(req)
        assert type(ack) is wire.Ack
        return ack

    def mark_supervised(self, pid: Pid, by: Pid | None) -> None:
        """Tell the node who stops `pid` at node shutdown (so it is not signalled directly)."""
        proc = self.node.procs.get(pid)
        if proc is not None:
            proc.supervisor = by


HostMain = Callable[[Host, Any, Any], Awaitable[Any]]
"""A hosted behaviour's entry: (host, behaviour class, start argument) -> exit reason."""


def resolve(msg: wire.Spawn) -> Any:
    """Import the behaviour class in the node, the way the zygote imports a worker's target."""
    from .zygote import _resolve

    target = _resolve(msg)
    if not callable(getattr(target, "_legion_host", None)):
        raise TypeError(f"{msg.qualname} is not a node-hosted behaviour")
    return target


async def run(node: Node, proc: Proc, behaviour: Any, msg: wire.Spawn, parent: Pid | None) -> None:
    """The life of a hosted process, from its start to `terminate` with its exit reason."""
    host = Host(node, proc, parent, msg)
    arg = wire.decode_term(msg.arg) if msg.has_arg else None
    reason: Any = "killed"
    scope = proc.host
    assert scope is not None
    with scope:
        try:
            reason = await behaviour._legion_host(host, behaviour, arg)
        except (Exception, SystemExit) as exc:  # user code runs in the node: never end it
            log.error("hosted process %r crashed", proc.pid, exc_info=True)
            reason = crash_from_exception(exc)
    if proc.kill_reason is not None:
        reason = proc.kill_reason
    node.terminate(proc, reason)
    node.flush()

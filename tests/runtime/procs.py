"""Processes the runtime tests start. They live in a module so workers can import them by path."""

from __future__ import annotations

from typing import Any

import trio

import legion


class Probe(legion.Server):
    """A server the tests drive by calls; it forwards every other message to its owner.

    arg: {"owner": pid, "trap": bool, "forward": bool}. Calls are commands: ("echo", x),
    ("trap", flag), ("link", pid), ("unlink", pid), ("monitor", dest), ("exit", pid, reason),
    ("raise", text), ("stop", reason, reply), ("call", dest, request, timeout), ("send", dest, msg),
    ("register", name), ("big", n), ("sendbig", dest, n), ("noreply",), ("reply", from_, value),
    ("sleep", seconds), ("self",).
    """

    def init(self, arg: Any) -> Any:
        arg = arg or {}
        self.owner = arg.get("owner")
        if arg.get("trap"):
            legion.trap_exit(True)
        if arg.get("fail") == "raise":
            raise ValueError("init failed on purpose")
        if arg.get("fail") == "stop":
            return legion.Stop(("shutdown", "no thanks"))
        if arg.get("fail") == "ignore":
            return legion.Ignore()
        if arg.get("continue") is not None:
            self.seen = []
            return legion.Continue(arg["continue"])
        if arg.get("idle") is not None:
            return legion.NoReply(timeout=arg["idle"])
        return None

    def handle_continue(self, term: Any) -> Any:
        self.seen.append(("continue", term))
        if self.owner is not None:
            legion.send(self.owner, ("continued", term))

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        cmd, *args = request
        if cmd == "echo":
            return args[0]
        if cmd == "trap":
            return legion.trap_exit(args[0])
        if cmd == "link":
            legion.link(args[0])
            return "ok"
        if cmd == "unlink":
            legion.unlink(args[0])
            return "ok"
        if cmd == "monitor":
            return legion.monitor(args[0])
        if cmd == "exit":
            legion.exit(args[0], args[1])
            return "ok"
        if cmd == "raise":
            raise RuntimeError(args[0])
        if cmd == "stop":
            return legion.Stop(args[0], reply=args[1])
        if cmd == "call":
            return legion.call(args[0], args[1], timeout=args[2])
        if cmd == "send":
            legion.send(args[0], args[1])
            return "ok"
        if cmd == "big":  # a reply of args[0] bytes
            return b"y" * args[0]
        if cmd == "sendbig":  # send args[1] bytes to args[0]
            legion.send(args[0], b"y" * args[1])
            return "ok"
        if cmd == "register":
            legion.register(args[0])
            return "ok"
        if cmd == "noreply":
            legion.send(self.owner, ("pending", from_))
            return legion.NoReply()
        if cmd == "start_link":
            return legion.start_link(Probe, args[0])
        if cmd == "ospid":
            import os

            return os.getpid()
        if cmd == "reply":
            legion.reply(args[0], args[1])
            return "ok"
        if cmd == "self":
            return legion.self()
        if cmd == "seen":
            return self.seen
        if cmd == "callme":
            return legion.call(legion.self(), "x")
        raise ValueError(f"unknown command {cmd!r}")

    def handle_cast(self, message: Any) -> Any:
        if message == "continue":
            return legion.Continue("from-cast")
        if self.owner is not None:
            legion.send(self.owner, ("cast", message))

    def handle_info(self, message: Any) -> Any:
        if message is legion.Timeout:
            message = "idle-timeout"
        if self.owner is not None:
            legion.send(self.owner, ("info", legion.self(), message))

    def terminate(self, reason: Any) -> None:
        if self.owner is not None:
            legion.send(self.owner, ("terminate", legion.self(), reason))


class AsyncProbe(legion.Server):
    """Async callbacks, including an awaited call to another server."""

    async def init(self, arg: Any) -> None:
        await trio.sleep(0)
        self.count = 0

    async def handle_call(self, request: Any, from_: legion.From) -> Any:
        if request[0] == "call":
            return await legion.acall(request[1], request[2])
        if request[0] == "sleep":
            await trio.sleep(request[1])
            return "slept"
        self.count += 1
        return self.count


def idle() -> None:
    """Wait for one message, then end normally."""
    legion.receive()


def crash_with(size: int) -> None:
    """Crash with an exception message of `size` characters."""
    raise ValueError("m" * size)


def emit_then_report(args: Any) -> None:
    """Emit a telemetry event of about `size` bytes, then send "emitted" to `owner`."""
    owner, size = args
    legion.telemetry.emit(("test", "big"), {}, {f"k{i}": "b" * 1000 for i in range(size // 1000)})
    legion.send(owner, "emitted")
    legion.receive()


def crash_at_once() -> None:
    raise ValueError("crashed at once")


def send_then_exit(args: Any) -> None:
    """Send `count` messages to `owner`, then end with `reason`."""
    owner, count, reason = args
    for i in range(count):
        legion.send(owner, i)
    raise legion.ProcessExit(reason)


def hard_exit(code: int) -> None:
    import os

    os._exit(code)


def echo_loop() -> None:
    """Echo ("echo", pid, x) messages back as x until told "stop"."""
    while True:
        message = legion.receive()
        if message == "stop":
            return
        legion.send(message[1], message[2])


async def async_echo_loop() -> None:
    while True:
        message = await legion.areceive()
        if message == "stop":
            return
        legion.send(message[1], message[2])


class Slow(legion.Server):
    """Sleeps in handle_call for the requested seconds; used for timeouts and mid-call deaths."""

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        import time

        if request[0] == "sleep":
            if len(request) > 2:
                legion.send(request[2], "sleeping")
            time.sleep(request[1])
            return "late"
        if request[0] == "die":
            raise legion.ProcessExit(request[1])
        return request


def sleeper() -> None:
    """Block without reading its mailbox (a handler stuck in a long synchronous call)."""
    import time

    time.sleep(3600)


def spin() -> None:
    """Burn CPU in C-level code forever (never returns to the loop)."""
    while True:
        sum(range(1_000_000))


class Progressing(legion.Server):
    """Accepts a long call: tells the caller it is working, then answers late."""

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        import time

        from legion.supervisor.terms import CallProgress

        legion.send(from_.pid, CallProgress(from_.ref))
        time.sleep(request)
        return "done"


class BreakOwnRuntime(legion.Server):
    """Cast `("break", owner)`: its runtime side then fails on the next frame the reader task
    files (a stand-in for a bug in the runtime's reader), while the handler awaits forever."""

    async def handle_cast(self, message: Any) -> Any:
        from legion.supervisor import process

        worker = process.current()
        assert worker is not None

        def broken(msg: Any, size: int = 0) -> None:
            raise RuntimeError("the reader could not file a frame")

        worker.dispatch = broken  # type: ignore[method-assign]
        legion.send(message[1], "broken")
        await trio.sleep_forever()


class UnprintableError(Exception):
    """An exception whose message cannot be made: its `__str__` raises."""

    def __str__(self) -> str:
        raise ValueError("no message")


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def end_with(kind: str) -> Any:
    """End the calling process with an exit reason the wire cannot carry as it is (the keys of
    `ODD_ENDINGS` in test_limits.py): raises, or returns a reason for a server to `Stop` with."""
    import os

    name = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 file name on disk: a lone surrogate
    if kind == "surrogate in a crash message":
        raise FileNotFoundError(f"no such file: {name}")
    if kind == "surrogate reason":
        raise legion.ProcessExit(name)
    if kind == "surrogate inside a reason":
        raise legion.ProcessExit(("bad_file", {"name": name}))
    if kind == "exception whose str raises":
        raise UnprintableError()
    if kind == "reason nested too deep":
        return ("bad", _deep(3000))
    raise AssertionError(kind)


class EndWith(legion.Server):
    """`call(pid, kind)`: ends as `end_with(kind)` says, a returned reason by `Stop`."""

    def handle_call(self, request: Any, from_: legion.From) -> Any:
        return legion.Stop(end_with(request), reply="stopping")


def end_with_in_function(kind: str) -> None:
    raise legion.ProcessExit(end_with(kind))


def unable_to_send_its_reason() -> None:
    """Ends normally, but its runtime side fails to build the last frame (a stand-in for any
    fault on the way to telling the node its reason)."""
    from legion.supervisor import process

    def broken(reason: Any, limit: int) -> bytes:
        raise RuntimeError("cannot build the last frame")

    process._exiting_frame = broken
